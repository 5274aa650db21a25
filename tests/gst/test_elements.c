/* Tests of the ipcringsink and ipcringsrc elements inside one process, in
 * the style of GStreamer's own tests/check/elements: GstHarness and small
 * pipelines. What they pin down:
 *
 *  - both elements are registered from the built plugin, with the documented
 *    properties and defaults;
 *  - a stream written by a sink harness arrives on a src harness exactly:
 *    caps, segment, tags, custom events, gap, every buffer field and byte,
 *    EOS, each in its place;
 *  - caps changes mid-stream arrive between the right buffers;
 *  - the largest buffer a ring carries, and a clear error one byte beyond;
 *  - bad settings and bad files fail with errors a user can act on, leaving
 *    nothing half-created;
 *  - PLAYING -> NULL returns promptly while either element is blocked, with
 *    no fd leak over 1000 rounds;
 *  - a flush while the sink is blocked on a full ring is not an error.
 *
 * Ring files live in a fresh directory (in /dev/shm when there is one),
 * removed at the end of each test, and also at exit if a check fails.
 * The plugin comes from the build tree: meson sets GST_PLUGIN_PATH. */
#define _GNU_SOURCE
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipcring-layout.h"
#include "ipcring-protocol.h"
#include "ipcring.h"

#define MSEC (GST_MSECOND)

/* gst-check multiplies its timeouts by CK_TIMEOUT_MULTIPLIER (20 under
 * valgrind, see tools/valgrind-elements); so does every bound here. */
static gint64
slack (void)
{
  const gchar *s = g_getenv ("CK_TIMEOUT_MULTIPLIER");
  gint64 k = s && *s ? g_ascii_strtoll (s, NULL, 10) : 1;
  return k >= 1 ? k : 1;
}

/* seconds from now, in g_get_monotonic_time() microseconds, with slack */
static gint64
deadline_s (gint seconds)
{
  return g_get_monotonic_time () + seconds * slack () * G_USEC_PER_SEC;
}

/* ---- Temporary directory --------------------------------------------- */

#define IPCRING_TEST_DIR_NAME "ipcring-gst"
#include "gsttestdir.h"

static guint
dir_entries (const gchar * path)
{
  DIR *d = opendir (path);
  guint n = 0;
  struct dirent *e;
  fail_unless (d != NULL, "cannot list %s: %s", path, g_strerror (errno));
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
      n++;
  closedir (d);
  return n;
}

/* Open file descriptors of this process (the count includes the one the
 * count itself uses, the same each time). */
static guint
count_fds (void)
{
  return dir_entries ("/proc/self/fd");
}

/* One line per test: what it checks. */
static void
announce (const gchar * what)
{
  g_print ("  - %s\n", what);
}

/* ---- Looking at a ring without attaching -------------------------------- */

/* The reader generation in a ring file's header, through a read-only
 * mapping so that looking does not attach: 0 while there is no ring file. */
static guint64
ring_reader_generation (const gchar * path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  guint64 gen = 0;

  if (fd < 0)
    return 0;
  if (fstat (fd, &st) == 0 && (gsize) st.st_size >= sizeof (struct ipcring_shared)) {
    void *p = mmap (NULL, sizeof (struct ipcring_shared), PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      struct ipcring_shared *sh = p;
      gen = atomic_load_explicit (&sh->reader_generation, memory_order_acquire);
      munmap (p, sizeof (struct ipcring_shared));
    }
  }
  close (fd);
  return gen;
}

/* Wait (at most 5 s) until a reader of generation >= gen has attached. */
static void
wait_reader_attached (const gchar * path, guint64 gen)
{
  gint64 end = deadline_s (5);
  while (ring_reader_generation (path) < gen) {
    fail_unless (g_get_monotonic_time () < end,
        "no reader attached to %s within 5 s", path);
    g_usleep (500);
  }
}

/* ---- What arrives, in order ---------------------------------------------- */

/* A pad probe that writes every buffer and downstream event reaching a pad
 * as one word ("buffer", "caps:video/x-raw", "segment", ...), so a test can
 * compare the interleaving of events and buffers, which the harness's
 * separate buffer and event queues do not keep. */
typedef struct
{
  GMutex lock;
  GCond cond;
  GString *text;
  gboolean eos;                 /* an EOS reached the pad */
} OrderLog;

static GstPadProbeReturn
order_log_probe (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  OrderLog *log = user_data;
  g_mutex_lock (&log->lock);
  if (log->text->len)
    g_string_append_c (log->text, ' ');
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER) {
    g_string_append (log->text, "buffer");
  } else if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    g_string_append (log->text, "buffer-list");
  } else {
    GstEvent *ev = GST_PAD_PROBE_INFO_EVENT (info);
    g_string_append (log->text, GST_EVENT_TYPE_NAME (ev));
    if (GST_EVENT_TYPE (ev) == GST_EVENT_CAPS) {
      GstCaps *caps;
      gst_event_parse_caps (ev, &caps);
      g_string_append_printf (log->text, ":%s",
          gst_structure_get_name (gst_caps_get_structure (caps, 0)));
    }
    if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS) {
      log->eos = TRUE;
      g_cond_broadcast (&log->cond);
    }
  }
  g_mutex_unlock (&log->lock);
  return GST_PAD_PROBE_OK;
}

static void
order_log_init (OrderLog * log)
{
  g_mutex_init (&log->lock);
  g_cond_init (&log->cond);
  log->text = g_string_new ("");
  log->eos = FALSE;
}

static void
order_log_attach (OrderLog * log, GstPad * pad)
{
  order_log_init (log);
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_DATA_DOWNSTREAM, order_log_probe, log, NULL);
}

static gchar *
order_log_get (OrderLog * log)
{
  g_mutex_lock (&log->lock);
  gchar *s = g_strdup (log->text->str);
  g_mutex_unlock (&log->lock);
  return s;
}

/* The log once an EOS has reached the pad (at most 10 s). The sink's EOS
 * returns when the reader has read everything, which is before the src's
 * streaming thread pushes the EOS on: order_log_get() right after
 * push_eos_bounded() may see the stream without its "eos". */
static gchar *
order_log_get_after_eos (OrderLog * log)
{
  gint64 end = deadline_s (10);
  g_mutex_lock (&log->lock);
  while (!log->eos)
    if (!g_cond_wait_until (&log->cond, &log->lock, end))
      break;
  gboolean eos = log->eos;
  gchar *s = g_strdup (log->text->str);
  g_mutex_unlock (&log->lock);
  fail_unless (eos, "no EOS within 10 s; got: %s", s);
  return s;
}

/* After the harness that fed it is torn down. */
static void
order_log_free (OrderLog * log)
{
  g_string_free (log->text, TRUE);
  g_cond_clear (&log->cond);
  g_mutex_clear (&log->lock);
}

/* A bus of our own: its pending messages hold their source elements, which
 * hold the bus; flushing drops them so that both can go. */
static void
bus_free (GstBus * bus)
{
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
}

/* ---- Harnesses ------------------------------------------------------------ */

/* A sink harness on ring (started, so the ring file exists on return).
 * gst_harness_new() would start the sink before its ring is set, so the
 * element is made and configured first. */
static GstHarness *
sink_harness_new (const gchar * ring, guint64 capacity, GstBus * bus)
{
  GstElement *e = gst_element_factory_make ("ipcringsink", NULL);
  fail_unless (e != NULL, "no ipcringsink");
  g_object_set (e, "ring", ring, "capacity", capacity, NULL);
  if (bus)
    gst_element_set_bus (e, bus);
  GstHarness *h = gst_harness_new_with_element (e, "sink", NULL);
  gst_object_unref (e);
  fail_unless (g_file_test (ring, G_FILE_TEST_EXISTS), "sink started but %s is missing", ring);
  return h;
}

/* A src harness on ring, playing (it waits for the ring if need be). */
static GstHarness *
src_harness_new (const gchar * ring, GstBus * bus, OrderLog * log)
{
  GstHarness *h = gst_harness_new ("ipcringsrc");
  fail_unless (h != NULL, "no ipcringsrc");
  g_object_set (h->element, "ring", ring, NULL);
  if (bus)
    gst_element_set_bus (h->element, bus);
  if (log)
    order_log_attach (log, h->sinkpad);
  gst_harness_play (h);
  return h;
}

/* Pushing from a helper thread, with a bounded wait for it to finish: for
 * pushes that block until a reader drains the ring, or on a full ring. */
typedef struct
{
  GstHarness *h;
  GstBuffer *buf;
  GstEvent *event;
  GstFlowReturn ret;
  gboolean handled;
  gint done;
  GThread *thread;
} PushJob;

static gpointer
push_job_run (gpointer data)
{
  PushJob *job = data;
  if (job->buf)
    job->ret = gst_harness_push (job->h, job->buf);
  else
    job->handled = gst_harness_push_event (job->h, job->event);
  g_atomic_int_set (&job->done, 1);
  return NULL;
}

static PushJob *
push_job_start (GstHarness * h, GstBuffer * buf, GstEvent * event)
{
  PushJob *job = g_new0 (PushJob, 1);
  job->h = h;
  job->buf = buf;
  job->event = event;
  job->ret = GST_FLOW_CUSTOM_ERROR;
  job->thread = g_thread_new ("push", push_job_run, job);
  return job;
}

/* TRUE if the job finished within timeout_ms (then it is joined). */
static gboolean
push_job_wait (PushJob * job, gint64 timeout_ms)
{
  gint64 end = g_get_monotonic_time () + timeout_ms * 1000 * slack ();
  while (!g_atomic_int_get (&job->done)) {
    if (g_get_monotonic_time () >= end)
      return FALSE;
    g_usleep (500);
  }
  g_thread_join (job->thread);
  job->thread = NULL;
  return TRUE;
}

/* Push EOS into a sink harness: the sink waits there until the reader has
 * drained the ring, so this runs in a thread with a bounded wait. */
static void
push_eos_bounded (GstHarness * sink)
{
  PushJob *job = push_job_start (sink, NULL, gst_event_new_eos ());
  fail_unless (push_job_wait (job, 20000), "EOS not through the sink within 20 s");
  fail_unless (job->handled, "sink refused EOS");
  g_free (job);
}

/* ---- Errors on a bus ------------------------------------------------------ */

/* The first error message on bus within timeout: checks its domain and
 * code, prints it, and returns "message\ndebug" for checks on the text. */
static gchar *
expect_error (GstBus * bus, GstClockTime timeout, GQuark domain, gint code)
{
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, timeout * slack (), GST_MESSAGE_ERROR);
  fail_unless (msg != NULL, "no error message within %" GST_TIME_FORMAT,
      GST_TIME_ARGS (timeout));
  GError *err = NULL;
  gchar *dbg = NULL;
  gst_message_parse_error (msg, &err, &dbg);
  g_print ("    error: \"%s\" (%s)\n", err->message, dbg ? dbg : "no details");
  fail_unless (err->domain == domain, "error domain %s, expected %s",
      g_quark_to_string (err->domain), g_quark_to_string (domain));
  fail_unless_equals_int (err->code, code);
  gchar *text = g_strdup_printf ("%s\n%s", err->message, dbg ? dbg : "");
  g_error_free (err);
  g_free (dbg);
  gst_message_unref (msg);
  return text;
}

static void
assert_contains (const gchar * text, const gchar * needle)
{
  fail_unless (strstr (text, needle) != NULL, "\"%s\" does not mention \"%s\"", text, needle);
}

static void
assert_no_error (GstBus * bus)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (msg) {
    GError *err = NULL;
    gst_message_parse_error (msg, &err, NULL);
    fail ("unexpected error message: %s", err->message);
  }
}

/* ---- Buffers ---------------------------------------------------------------- */

/* What a buffer carried when it was pushed: fields and bytes. */
typedef struct
{
  GstClockTime pts, dts, duration;
  guint64 offset, offset_end;
  guint flags;                  /* buffer flags, mini-object bits masked out */
  gsize size;
  guint8 *data;
} BufferSpec;

#define BUFFER_FLAG_MASK (~(guint) (GST_MINI_OBJECT_FLAG_LAST - 1))

static guint8
pattern_byte (guint seed, gsize i)
{
  return (guint8) ((i * 131u + (i >> 9) + seed * 29u + 7u) & 0xff);
}

/* A buffer of size bytes in n_mem memories (at most GST_BUFFER_MEM_MAX),
 * filled with a pattern of seed, with exactly the given buffer flags. */
static GstBuffer *
make_buffer (guint seed, gsize size, guint n_mem, guint flags)
{
  GstBuffer *buf = gst_buffer_new ();
  gsize done = 0;
  if (size > 0 && n_mem == 0)
    n_mem = 1;
  for (guint m = 0; m < n_mem && done < size; m++) {
    gsize part = (m + 1 == n_mem) ? size - done : MAX (size / n_mem, 1);
    GstMemory *mem = gst_allocator_alloc (NULL, part, NULL);
    GstMapInfo map;
    fail_unless (gst_memory_map (mem, &map, GST_MAP_WRITE));
    for (gsize i = 0; i < part; i++)
      map.data[i] = pattern_byte (seed, done + i);
    gst_memory_unmap (mem, &map);
    gst_buffer_append_memory (buf, mem);
    done += part;
  }
  fail_unless_equals_uint64 (gst_buffer_get_size (buf), size);
  /* appending memory sets TAG_MEMORY: start from exactly the flags asked */
  GST_MINI_OBJECT_FLAGS (buf) &= ~BUFFER_FLAG_MASK;
  GST_BUFFER_FLAG_SET (buf, flags);
  return buf;
}

/* Remember what buf carries; extract copies the bytes without merging the
 * memories (gst_buffer_map would merge them). */
static void
spec_from_buffer (BufferSpec * spec, GstBuffer * buf)
{
  spec->pts = GST_BUFFER_PTS (buf);
  spec->dts = GST_BUFFER_DTS (buf);
  spec->duration = GST_BUFFER_DURATION (buf);
  spec->offset = GST_BUFFER_OFFSET (buf);
  spec->offset_end = GST_BUFFER_OFFSET_END (buf);
  spec->flags = GST_BUFFER_FLAGS (buf) & BUFFER_FLAG_MASK;
  spec->size = gst_buffer_get_size (buf);
  spec->data = NULL;
  gst_buffer_extract_dup (buf, 0, spec->size, (gpointer *) & spec->data, &spec->size);
}

static void
spec_clear (BufferSpec * spec)
{
  g_free (spec->data);
  spec->data = NULL;
}

/* Every field and every byte of got equals what was pushed. */
static void
check_buffer (GstBuffer * got, const BufferSpec * want, guint index)
{
  fail_unless (got != NULL, "buffer %u did not arrive", index);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (got), want->pts);
  fail_unless_equals_uint64 (GST_BUFFER_DTS (got), want->dts);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (got), want->duration);
  fail_unless_equals_uint64 (GST_BUFFER_OFFSET (got), want->offset);
  fail_unless_equals_uint64 (GST_BUFFER_OFFSET_END (got), want->offset_end);
  fail_unless (want->flags == (GST_BUFFER_FLAGS (got) & BUFFER_FLAG_MASK),
      "buffer %u: flags 0x%x, sent 0x%x", index, GST_BUFFER_FLAGS (got) & BUFFER_FLAG_MASK,
      want->flags);
  fail_unless_equals_uint64 (gst_buffer_get_size (got), want->size);
  if (want->size)
    fail_unless (gst_buffer_memcmp (got, 0, want->data, want->size) == 0,
        "buffer %u: bytes differ", index);
}

static void
check_segment_equal (const GstSegment * got, const GstSegment * want)
{
  fail_unless_equals_int (got->format, want->format);
  fail_unless_equals_int (got->flags, want->flags);
  fail_unless_equals_float (got->rate, want->rate);
  fail_unless_equals_float (got->applied_rate, want->applied_rate);
  fail_unless_equals_uint64 (got->base, want->base);
  fail_unless_equals_uint64 (got->offset, want->offset);
  fail_unless_equals_uint64 (got->start, want->start);
  fail_unless_equals_uint64 (got->stop, want->stop);
  fail_unless_equals_uint64 (got->time, want->time);
  fail_unless_equals_uint64 (got->position, want->position);
  fail_unless_equals_uint64 (got->duration, want->duration);
}

/* The harness's own pulls wait up to 60 s each; these give up after 10 s
 * so that a failure is reported as one, well within the test timeout. */
#define PULL_TIMEOUT_US (10 * G_USEC_PER_SEC)

static GstBuffer *
pull_buffer (GstHarness * h)
{
  gint64 end = g_get_monotonic_time () + PULL_TIMEOUT_US * slack ();
  GstBuffer *buf;
  while ((buf = gst_harness_try_pull (h)) == NULL && g_get_monotonic_time () < end)
    g_usleep (200);
  return buf;
}

static GstEvent *
pull_event (GstHarness * h)
{
  gint64 end = g_get_monotonic_time () + PULL_TIMEOUT_US * slack ();
  GstEvent *ev;
  while ((ev = gst_harness_try_pull_event (h)) == NULL && g_get_monotonic_time () < end)
    g_usleep (200);
  return ev;
}

/* The next event the src harness received; it must be of this type. */
static GstEvent *
pull_event_of_type (GstHarness * h, GstEventType type)
{
  GstEvent *ev = pull_event (h);
  fail_unless (ev != NULL, "no %s event within 10 s",
      gst_event_type_get_name (type));
  fail_unless (GST_EVENT_TYPE (ev) == type, "got %s, expected %s",
      GST_EVENT_TYPE_NAME (ev), gst_event_type_get_name (type));
  return ev;
}

/* Drain a src harness's events up to and including EOS (at most 10 s
 * per event); returns the EOS event. */
static GstEvent *
pull_event_of_type_any_until_eos (GstHarness * h)
{
  for (;;) {
    GstEvent *ev = pull_event (h);
    fail_unless (ev != NULL, "no EOS within 10 s");
    if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS)
      return ev;
    gst_event_unref (ev);
  }
}

/* The next event of this type from a src harness. Events of other types
 * before it are noted in skipped: the roundtrip test checks the contents
 * first and the exact order last, so that one misplaced event does not
 * hide the other checks. */
static GstEvent *
next_event_of_type (GstHarness * h, GstEventType type, GString * skipped)
{
  for (;;) {
    GstEvent *ev = pull_event (h);
    fail_unless (ev != NULL, "no %s event within 10 s", gst_event_type_get_name (type));
    if (GST_EVENT_TYPE (ev) == type)
      return ev;
    g_string_append_printf (skipped, " %s (before a %s)", GST_EVENT_TYPE_NAME (ev),
        gst_event_type_get_name (type));
    gst_event_unref (ev);
  }
}

static void
check_caps_event (GstEvent * ev, const gchar * want_str)
{
  GstCaps *got, *want = gst_caps_from_string (want_str);
  gst_event_parse_caps (ev, &got);
  fail_unless (gst_caps_is_equal (got, want), "caps %" GST_PTR_FORMAT ", expected %s", got,
      want_str);
  gst_caps_unref (want);
}

/* ---- Registration ---------------------------------------------------------- */

static void
check_enum_default (GObject * obj, const gchar * prop, const gchar * nick,
    const gchar * const *all_nicks)
{
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (obj), prop);
  fail_unless (ps != NULL && G_IS_PARAM_SPEC_ENUM (ps), "no enum property %s", prop);
  GParamSpecEnum *pe = G_PARAM_SPEC_ENUM (ps);
  GEnumValue *def = g_enum_get_value (pe->enum_class, pe->default_value);
  fail_unless (def != NULL);
  fail_unless_equals_string (def->value_nick, nick);
  gint v = -1;
  g_object_get (obj, prop, &v, NULL);
  fail_unless_equals_int (v, pe->default_value);
  guint n = 0;
  for (; all_nicks[n]; n++)
    fail_unless (g_enum_get_value_by_nick (pe->enum_class, all_nicks[n]) != NULL,
        "%s has no value %s", prop, all_nicks[n]);
  fail_unless_equals_int (pe->enum_class->n_values, n);
}

static void
check_plugin_of (const gchar * factory_name)
{
  GstElementFactory *f = gst_element_factory_find (factory_name);
  fail_unless (f != NULL, "%s is not in the registry", factory_name);
  fail_unless_equals_string (gst_plugin_feature_get_plugin_name (GST_PLUGIN_FEATURE (f)),
      "ipcring");
  GstPlugin *p = gst_plugin_feature_get_plugin (GST_PLUGIN_FEATURE (f));
  fail_unless (p != NULL);
  const gchar *file = gst_plugin_get_filename (p);
  g_print ("    %s from %s\n", factory_name, file);
#ifdef IPCRING_BUILD_DIR
  /* the tests must exercise the plugin just built, not an installed one */
  fail_unless (file && g_str_has_prefix (file, IPCRING_BUILD_DIR),
      "%s comes from %s, not from the build tree %s", factory_name, file, IPCRING_BUILD_DIR);
#endif
  gst_object_unref (p);
  gst_object_unref (f);
}

/* Both elements are in the registry, from the built plugin, with every
 * property and its documented default: sink ring=NULL,
 * capacity=67108864 (4096..2^30), perms=0600, on-reader-lost=wait (or
 * error), sync=false; src ring=NULL, is-live=false, on-writer-lost=error
 * (or eos, wait). */
GST_START_TEST (test_registration_and_defaults)
{
  announce ("both elements registered from the build tree, properties and defaults");
  check_plugin_of ("ipcringsink");
  check_plugin_of ("ipcringsrc");

  GstElement *sink = gst_element_factory_make ("ipcringsink", NULL);
  fail_unless (sink != NULL);
  GObjectClass *k = G_OBJECT_GET_CLASS (sink);
  GParamSpec *ps;

  ps = g_object_class_find_property (k, "ring");
  fail_unless (ps && G_IS_PARAM_SPEC_STRING (ps));
  fail_unless (G_PARAM_SPEC_STRING (ps)->default_value == NULL);
  gchar *ring = (gchar *) "unset";
  g_object_get (sink, "ring", &ring, NULL);
  fail_unless (ring == NULL, "ring defaults to %s", ring);

  ps = g_object_class_find_property (k, "capacity");
  fail_unless (ps && G_IS_PARAM_SPEC_UINT64 (ps));
  fail_unless_equals_uint64 (G_PARAM_SPEC_UINT64 (ps)->default_value, 67108864);
  fail_unless_equals_uint64 (G_PARAM_SPEC_UINT64 (ps)->minimum, 4096);
  fail_unless_equals_uint64 (G_PARAM_SPEC_UINT64 (ps)->maximum, G_GUINT64_CONSTANT (1) << 30);
  guint64 capacity = 0;
  g_object_get (sink, "capacity", &capacity, NULL);
  fail_unless_equals_uint64 (capacity, 67108864);

  ps = g_object_class_find_property (k, "perms");
  fail_unless (ps && G_IS_PARAM_SPEC_UINT (ps));
  fail_unless_equals_int (G_PARAM_SPEC_UINT (ps)->default_value, 0600);
  fail_unless_equals_int (G_PARAM_SPEC_UINT (ps)->maximum, 0777);
  guint perms = 0;
  g_object_get (sink, "perms", &perms, NULL);
  fail_unless_equals_int (perms, 384);

  static const gchar *const reader_lost[] = { "wait", "error", NULL };
  check_enum_default (G_OBJECT (sink), "on-reader-lost", "wait", reader_lost);

  gboolean sync = TRUE;
  g_object_get (sink, "sync", &sync, NULL);
  fail_unless (!sync, "the sink syncs to the clock by default");
  gst_object_unref (sink);

  GstElement *src = gst_element_factory_make ("ipcringsrc", NULL);
  fail_unless (src != NULL);
  k = G_OBJECT_GET_CLASS (src);
  ps = g_object_class_find_property (k, "ring");
  fail_unless (ps && G_IS_PARAM_SPEC_STRING (ps));
  fail_unless (G_PARAM_SPEC_STRING (ps)->default_value == NULL);
  ring = (gchar *) "unset";
  g_object_get (src, "ring", &ring, NULL);
  fail_unless (ring == NULL, "ring defaults to %s", ring);

  ps = g_object_class_find_property (k, "is-live");
  fail_unless (ps && G_IS_PARAM_SPEC_BOOLEAN (ps));
  fail_unless (!G_PARAM_SPEC_BOOLEAN (ps)->default_value);
  gboolean live = TRUE;
  g_object_get (src, "is-live", &live, NULL);
  fail_unless (!live);

  static const gchar *const writer_lost[] = { "error", "eos", "wait", NULL };
  check_enum_default (G_OBJECT (src), "on-writer-lost", "error", writer_lost);
  gst_object_unref (src);
}

GST_END_TEST;

/* ---- A whole stream, field by field ------------------------------------- */

#define CAPS_A "video/x-raw, format=(string)I420, width=(int)320, height=(int)240, framerate=(fraction)30/1"
#define CAPS_B "audio/x-raw, format=(string)S16LE, layout=(string)interleaved, rate=(int)48000, channels=(int)2"

typedef struct
{
  gsize size;
  guint n_mem;
  guint flags;
  gboolean none;                /* every timestamp and offset NONE */
} BufferShape;

#define ALL_BUFFER_FLAGS (GST_BUFFER_FLAG_LIVE | GST_BUFFER_FLAG_DECODE_ONLY | \
    GST_BUFFER_FLAG_DISCONT | GST_BUFFER_FLAG_RESYNC | GST_BUFFER_FLAG_CORRUPTED | \
    GST_BUFFER_FLAG_MARKER | GST_BUFFER_FLAG_HEADER | GST_BUFFER_FLAG_GAP | \
    GST_BUFFER_FLAG_DROPPABLE | GST_BUFFER_FLAG_DELTA_UNIT | GST_BUFFER_FLAG_TAG_MEMORY | \
    GST_BUFFER_FLAG_SYNC_AFTER | GST_BUFFER_FLAG_NON_DROPPABLE)

/* Sizes from empty to 3 MiB (in a 4 MiB ring, so the sink waits for the
 * reader), one to sixteen memories (GST_BUFFER_MEM_MAX), varied flags, and
 * one buffer whose timestamps and offsets are all NONE. The first carries
 * DISCONT because GstBaseSrc marks its first buffer DISCONT anyway. */
static const BufferShape stream_shapes[] = {
  {1000, 1, GST_BUFFER_FLAG_DISCONT | GST_BUFFER_FLAG_HEADER, FALSE},
  {0, 0, GST_BUFFER_FLAG_DELTA_UNIT, FALSE},
  {1, 1, GST_BUFFER_FLAG_DELTA_UNIT | GST_BUFFER_FLAG_MARKER, FALSE},
  {7, 3, GST_BUFFER_FLAG_DELTA_UNIT | GST_BUFFER_FLAG_HEADER | GST_BUFFER_FLAG_DISCONT, FALSE},
  {4093, 2, GST_BUFFER_FLAG_DROPPABLE, FALSE},
  {65536, 1, 0, FALSE},
  {300001, 16, GST_BUFFER_FLAG_LIVE | GST_BUFFER_FLAG_RESYNC, FALSE},
  {12345, 1, 0, TRUE},
  {(3u << 20) + 5, 2, ALL_BUFFER_FLAGS, FALSE},
  {1u << 20, 4, GST_BUFFER_FLAG_GAP | GST_BUFFER_FLAG_SYNC_AFTER | GST_BUFFER_FLAG_CORRUPTED,
      FALSE},
  {100, 5, GST_BUFFER_FLAG_NON_DROPPABLE | GST_BUFFER_FLAG_DECODE_ONLY, FALSE},
};

#define N_STREAM_SHAPES G_N_ELEMENTS (stream_shapes)
#define STREAM_SPLIT 5          /* a custom event goes between buffer 4 and 5 */

static GstBuffer *
make_stream_buffer (guint i, const BufferShape * shape)
{
  GstBuffer *buf = make_buffer (i, shape->size, shape->n_mem, shape->flags);
  if (shape->none) {
    GST_BUFFER_PTS (buf) = GST_CLOCK_TIME_NONE;
    GST_BUFFER_DTS (buf) = GST_CLOCK_TIME_NONE;
    GST_BUFFER_DURATION (buf) = GST_CLOCK_TIME_NONE;
    GST_BUFFER_OFFSET (buf) = GST_BUFFER_OFFSET_NONE;
    GST_BUFFER_OFFSET_END (buf) = GST_BUFFER_OFFSET_NONE;
  } else {
    /* inside the segment below (1 s .. 100 s), or basesink would drop it */
    GST_BUFFER_PTS (buf) = GST_SECOND + i * 40 * MSEC;
    GST_BUFFER_DTS (buf) = GST_SECOND + i * 40 * MSEC - 20 * MSEC;
    GST_BUFFER_DURATION (buf) = 40 * MSEC + i;
    GST_BUFFER_OFFSET (buf) = 1000 + i * 7;
    GST_BUFFER_OFFSET_END (buf) = 1000 + i * 7 + 7;
  }
  if (shape->n_mem > 1 && shape->size >= shape->n_mem)
    fail_unless_equals_int (gst_buffer_n_memory (buf), shape->n_mem);
  return buf;
}

static GstTagList *
make_tags (GstTagScope scope)
{
  GDateTime *gdt = g_date_time_new_utc (2024, 2, 29, 13, 14, 15.5);
  GstDateTime *dt = gst_date_time_new_from_g_date_time (gdt);
  GstTagList *tags = gst_tag_list_new (GST_TAG_TITLE,
      "A title with \"quotes\", commas; and \xc3\xbc" "nic\xc3\xb6" "de",
      GST_TAG_ARTIST, "someone", GST_TAG_TRACK_NUMBER, 7, GST_TAG_BITRATE, 128000,
      GST_TAG_BEATS_PER_MINUTE, 120.25, GST_TAG_DATE_TIME, dt, NULL);
  gst_date_time_unref (dt);
  gst_tag_list_set_scope (tags, scope);
  return tags;
}

static GstStructure *
make_custom_structure (const gchar * name, gint n)
{
  return gst_structure_new (name, "int", G_TYPE_INT, -42 * n,
      "u64", G_TYPE_UINT64, G_GUINT64_CONSTANT (0xfedcba9876543210),
      "double", G_TYPE_DOUBLE, 3.25, "bool", G_TYPE_BOOLEAN, TRUE,
      "string", G_TYPE_STRING, "with \"quotes\", commas; = and spaces",
      "fraction", GST_TYPE_FRACTION, 30000, 1001, NULL);
}

static void
check_event_structure (GstEvent * got, GstEvent * want)
{
  const GstStructure *g = gst_event_get_structure (got);
  const GstStructure *w = gst_event_get_structure (want);
  fail_unless (g != NULL);
  fail_unless (gst_structure_is_equal (g, w), "got %" GST_PTR_FORMAT ", sent %" GST_PTR_FORMAT,
      g, w);
  fail_unless_equals_int (gst_event_get_seqnum (got), gst_event_get_seqnum (want));
}

/* A sink harness and a src harness on one ring: caps, a segment with every
 * field set, tags of both scopes, a custom downstream event, a custom sticky
 * one, a gap, buffers with every field set (and one with all NONE), another
 * custom event between buffers, then EOS. The src side gets all of it, in
 * the same order, equal field by field and byte by byte, and EOS; the sink
 * removes the ring file once the reader has read everything. */
GST_START_TEST (test_stream_carried_exactly)
{
  announce ("caps, segment, tags, custom events, gap, buffers and EOS arrive exactly, in order");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  OrderLog log;

  /* The src first, so that it attaches before the sink writes anything:
   * a reader attaching later is given the sticky events again. */
  GstHarness *src = src_harness_new (ring, NULL, &log);
  GstHarness *sink = sink_harness_new (ring, 4u << 20, NULL);
  wait_reader_attached (ring, 1);

  gst_harness_set_src_caps_str (sink, CAPS_A); /* caps and a default segment */

  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.flags = GST_SEGMENT_FLAG_SEGMENT;
  seg.rate = 1.5;
  seg.applied_rate = 0.75;
  seg.base = 2 * GST_SECOND;
  seg.offset = 3 * MSEC;
  seg.start = GST_SECOND;
  seg.stop = 100 * GST_SECOND;
  seg.time = 5 * GST_SECOND;
  seg.position = GST_SECOND + 1;
  seg.duration = 200 * GST_SECOND;
  GstEvent *seg_ev = gst_event_new_segment (&seg);
  gst_event_set_seqnum (seg_ev, 4242);
  GstTagList *stream_tags = make_tags (GST_TAG_SCOPE_STREAM);
  GstTagList *global_tags = make_tags (GST_TAG_SCOPE_GLOBAL);
  gst_tag_list_add (global_tags, GST_TAG_MERGE_REPLACE, GST_TAG_ARTIST, "someone else", NULL);
  GstEvent *tag_ev = gst_event_new_tag (gst_tag_list_ref (stream_tags));
  GstEvent *gtag_ev = gst_event_new_tag (gst_tag_list_ref (global_tags));
  GstEvent *custom = gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
      make_custom_structure ("ipcring-test-custom", 1));
  GstEvent *sticky = gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM_STICKY,
      make_custom_structure ("ipcring-test-sticky", 2));
  GstEvent *between = gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
      make_custom_structure ("ipcring-test-between", 3));
  GstEvent *gap = gst_event_new_gap (GST_SECOND + 500 * MSEC, 40 * MSEC);
  gst_event_set_gap_flags (gap, GST_GAP_FLAG_MISSING_DATA);

  GstEvent *sent[] = { seg_ev, tag_ev, gtag_ev, custom, sticky, gap };
  for (guint i = 0; i < G_N_ELEMENTS (sent); i++)
    fail_unless (gst_harness_push_event (sink, gst_event_ref (sent[i])),
        "sink refused %s", GST_EVENT_TYPE_NAME (sent[i]));

  BufferSpec specs[N_STREAM_SHAPES];
  for (guint i = 0; i < N_STREAM_SHAPES; i++) {
    if (i == STREAM_SPLIT)
      fail_unless (gst_harness_push_event (sink, gst_event_ref (between)));
    GstBuffer *buf = make_stream_buffer (i, &stream_shapes[i]);
    spec_from_buffer (&specs[i], buf);
    fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  }
  push_eos_bounded (sink);
  /* the reader drained everything: the sink removed the ring file */
  fail_if (g_file_test (ring, G_FILE_TEST_EXISTS), "ring file left after a drained EOS");


  /* The events, each equal to what was sent. */
  GString *skipped = g_string_new ("");
  GstEvent *ev = next_event_of_type (src, GST_EVENT_STREAM_START, skipped);
  GstPad *sinkpad = gst_element_get_static_pad (sink->element, "sink");
  GstEvent *sent_ss = gst_pad_get_sticky_event (sinkpad, GST_EVENT_STREAM_START, 0);
  fail_unless (sent_ss != NULL);
  const gchar *got_id, *sent_id;
  gst_event_parse_stream_start (ev, &got_id);
  gst_event_parse_stream_start (sent_ss, &sent_id);
  fail_unless_equals_string (got_id, sent_id);
  gst_event_unref (sent_ss);
  gst_object_unref (sinkpad);
  gst_event_unref (ev);

  ev = next_event_of_type (src, GST_EVENT_CAPS, skipped);
  check_caps_event (ev, CAPS_A);
  gst_event_unref (ev);

  const GstSegment *got_seg;
  GstSegment def_seg;
  gst_segment_init (&def_seg, GST_FORMAT_TIME);
  ev = next_event_of_type (src, GST_EVENT_SEGMENT, skipped);      /* the harness's default one */
  gst_event_parse_segment (ev, &got_seg);
  check_segment_equal (got_seg, &def_seg);
  gst_event_unref (ev);

  ev = next_event_of_type (src, GST_EVENT_SEGMENT, skipped);
  gst_event_parse_segment (ev, &got_seg);
  check_segment_equal (got_seg, &seg);
  fail_unless_equals_int (gst_event_get_seqnum (ev), 4242);
  gst_event_unref (ev);

  GstTagList *want_tags[] = { stream_tags, global_tags };
  GstEvent *want_tag_ev[] = { tag_ev, gtag_ev };
  for (guint i = 0; i < 2; i++) {
    GstTagList *got_tags;
    ev = next_event_of_type (src, GST_EVENT_TAG, skipped);
    gst_event_parse_tag (ev, &got_tags);
    fail_unless (gst_tag_list_is_equal (got_tags, want_tags[i]),
        "tags %" GST_PTR_FORMAT ", sent %" GST_PTR_FORMAT, got_tags, want_tags[i]);
    fail_unless_equals_int (gst_tag_list_get_scope (got_tags),
        gst_tag_list_get_scope (want_tags[i]));
    fail_unless_equals_int (gst_event_get_seqnum (ev), gst_event_get_seqnum (want_tag_ev[i]));
    gst_event_unref (ev);
  }

  ev = next_event_of_type (src, GST_EVENT_CUSTOM_DOWNSTREAM, skipped);
  check_event_structure (ev, custom);
  gst_event_unref (ev);
  ev = next_event_of_type (src, GST_EVENT_CUSTOM_DOWNSTREAM_STICKY, skipped);
  check_event_structure (ev, sticky);
  gst_event_unref (ev);

  ev = next_event_of_type (src, GST_EVENT_GAP, skipped);
  GstClockTime gap_ts, gap_dur;
  GstGapFlags gap_flags = 0;
  gst_event_parse_gap (ev, &gap_ts, &gap_dur);
  gst_event_parse_gap_flags (ev, &gap_flags);
  fail_unless_equals_uint64 (gap_ts, GST_SECOND + 500 * MSEC);
  fail_unless_equals_uint64 (gap_dur, 40 * MSEC);
  fail_unless_equals_int (gap_flags, GST_GAP_FLAG_MISSING_DATA);
  fail_unless_equals_int (gst_event_get_seqnum (ev), gst_event_get_seqnum (gap));
  gst_event_unref (ev);

  ev = next_event_of_type (src, GST_EVENT_CUSTOM_DOWNSTREAM, skipped);
  check_event_structure (ev, between);
  gst_event_unref (ev);

  ev = next_event_of_type (src, GST_EVENT_EOS, skipped);
  gst_event_unref (ev);
  fail_unless (gst_harness_try_pull_event (src) == NULL, "events after EOS");

  /* The buffers, each equal in every field and byte. */
  for (guint i = 0; i < N_STREAM_SHAPES; i++) {
    GstBuffer *got = pull_buffer (src);
    check_buffer (got, &specs[i], i);
    gst_buffer_unref (got);
    spec_clear (&specs[i]);
  }
  fail_unless (gst_harness_try_pull (src) == NULL, "more buffers than were sent");

  /* And the order of it all: buffers and events interleaved exactly as
   * they were sent, with nothing extra.
   * Regression (fixed in gst/gstipcringsrc.c): GstBaseSrc's own default
   * segment, which the src's probe dropped, stayed pending on the src pad
   * (replacing the stream's sticky segment) and was let through by the next
   * event the src pushed itself: a default TIME segment (seqnum of
   * GstBaseSrc) arrived just before the "between" custom event. */
  GString *want = g_string_new ("stream-start caps:video/x-raw segment segment tag tag "
      "custom-downstream custom-downstream-sticky gap");
  for (guint i = 0; i < N_STREAM_SHAPES; i++)
    g_string_append (want, i == STREAM_SPLIT ? " custom-downstream buffer" : " buffer");
  g_string_append (want, " eos");
  gchar *got_order = order_log_get (&log);
  g_print ("    order: %s\n", got_order);
  fail_unless_equals_string (got_order, want->str);
  g_free (got_order);
  g_string_free (want, TRUE);
  fail_unless_equals_string (skipped->str, "");
  g_string_free (skipped, TRUE);

  for (guint i = 0; i < G_N_ELEMENTS (sent); i++)
    gst_event_unref (sent[i]);
  gst_event_unref (between);
  gst_tag_list_unref (stream_tags);
  gst_tag_list_unref (global_tags);
  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  order_log_free (&log);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A src harness logging what reaches it, then a sink harness, on a ring in
 * a fresh test directory, the src attached: returns the ring's path. */
static gchar *
ordered_pair_new (OrderLog * log, guint64 capacity, GstHarness ** src, GstHarness ** sink)
{
  gchar *ring = ring_path_new ();
  *src = src_harness_new (ring, NULL, log);
  *sink = sink_harness_new (ring, capacity, NULL);
  wait_reader_attached (ring, 1);
  return ring;
}

/* Push buf into the sink; it must come out of the src. */
static void
push_pull_one (GstHarness * sink, GstHarness * src, GstBuffer * buf)
{
  fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  GstBuffer *got = pull_buffer (src);
  fail_unless (got != NULL);
  gst_buffer_unref (got);
}

/* End the stream and compare what reached the src's downstream with want. */
static void
check_order_after_eos (GstHarness * sink, GstHarness * src, OrderLog * log, const gchar * want)
{
  push_eos_bounded (sink);
  GstEvent *eos = pull_event_of_type_any_until_eos (src);
  gst_event_unref (eos);
  gchar *order = order_log_get (log);
  g_print ("    order: %s\n", order);
  fail_unless_equals_string (order, want);
  g_free (order);
}

/* The segment stored on the src's pad and on the harness's pad after it. */
static void
check_sticky_segments (GstHarness * src, const GstSegment * want)
{
  GstPad *srcpad = gst_element_get_static_pad (src->element, "src");
  GstPad *pads[] = { src->sinkpad, srcpad };
  for (guint i = 0; i < G_N_ELEMENTS (pads); i++) {
    GstEvent *ev = gst_pad_get_sticky_event (pads[i], GST_EVENT_SEGMENT, 0);
    fail_unless (ev != NULL);
    const GstSegment *got;
    gst_event_parse_segment (ev, &got);
    check_segment_equal (got, want);
    gst_event_unref (ev);
  }
  gst_object_unref (srcpad);
}

/* The end of a test with a sink harness, a src harness and its order log. */
static void
teardown_ordered (GstHarness * sink, GstHarness * src, OrderLog * log, gchar * ring)
{
  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  order_log_free (log);
  g_free (ring);
  test_dir_cleanup ();
}

/* The src keeps the stream's segment: downstream sees exactly the one
 * segment the sink sent, also when a serialized event (a tag update, as
 * encoders send mid-stream) follows buffers, and both the src pad's and the
 * downstream pad's sticky segment stay the sent one.
 * Regression test for a fixed element bug: GstBaseSrc pushes its own default
 * segment before the first buffer; the element's probe dropped it, but the
 * pad kept it as its pending sticky segment in place of the stream's and it
 * went out with the next event the element pushed, so the rest of the
 * stream ran in a default segment downstream. */
GST_START_TEST (test_src_keeps_stream_segment)
{
  announce ("the src never lets its base class's default segment through");
  OrderLog log;
  GstHarness *src, *sink;
  gchar *ring = ordered_pair_new (&log, 1u << 20, &src, &sink);

  GstCaps *test_caps = gst_caps_new_empty_simple ("application/x-test");
  fail_unless (gst_harness_push_event (sink, gst_event_new_caps (test_caps)));
  gst_caps_unref (test_caps);
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.start = 10 * GST_SECOND;
  seg.time = 10 * GST_SECOND;
  seg.base = 3 * GST_SECOND;
  seg.position = 10 * GST_SECOND;
  fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&seg)));
  for (guint i = 0; i < 2; i++) {
    if (i == 1)
      fail_unless (gst_harness_push_event (sink, gst_event_new_tag (gst_tag_list_new
                  (GST_TAG_BITRATE, 64000, NULL))));
    GstBuffer *buf = make_buffer (i, 100, 1, i == 0 ? GST_BUFFER_FLAG_DISCONT : 0);
    GST_BUFFER_PTS (buf) = 10 * GST_SECOND + i * GST_SECOND;
    push_pull_one (sink, src, buf);
  }
  check_order_after_eos (sink, src, &log,
      "stream-start caps:application/x-test segment buffer tag buffer eos");

  check_sticky_segments (src, &seg);
  teardown_ordered (sink, src, &log, ring);
}

GST_END_TEST;

/* Caps A, buffers, caps B, buffers, caps A again, a buffer: the src sends
 * each caps change between the same buffers as on the sink side. The first
 * buffer has no timestamps at all and arrives without any (GstBaseSrc must
 * not invent a first DTS). */
GST_START_TEST (test_caps_renegotiation)
{
  announce ("caps changes arrive between the right buffers");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  OrderLog log;
  GstHarness *src = src_harness_new (ring, NULL, &log);
  GstHarness *sink = sink_harness_new (ring, 1u << 20, NULL);
  wait_reader_attached (ring, 1);

  static const gchar *caps_seq[] = { CAPS_A, CAPS_A, CAPS_B, CAPS_B, CAPS_A };
  BufferSpec specs[G_N_ELEMENTS (caps_seq)];
  gst_harness_set_src_caps_str (sink, caps_seq[0]);
  for (guint i = 0; i < G_N_ELEMENTS (caps_seq); i++) {
    if (i > 0 && strcmp (caps_seq[i], caps_seq[i - 1]) != 0) {
      GstCaps *c = gst_caps_from_string (caps_seq[i]);
      fail_unless (gst_harness_push_event (sink, gst_event_new_caps (c)));
      gst_caps_unref (c);
    }
    GstBuffer *buf = make_buffer (100 + i, 100 + i * 1000, 1,
        i == 0 ? GST_BUFFER_FLAG_DISCONT : 0);
    if (i > 0) {
      GST_BUFFER_PTS (buf) = i * 10 * MSEC;
      GST_BUFFER_DTS (buf) = i * 10 * MSEC;
    }
    spec_from_buffer (&specs[i], buf);
    fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  }
  push_eos_bounded (sink);

  gchar *order = order_log_get_after_eos (&log);
  g_print ("    order: %s\n", order);
  fail_unless_equals_string (order, "stream-start caps:video/x-raw segment buffer buffer "
      "caps:audio/x-raw buffer buffer caps:video/x-raw buffer eos");
  g_free (order);

  GstEvent *ev = pull_event_of_type (src, GST_EVENT_STREAM_START);
  gst_event_unref (ev);
  const gchar *want_caps[] = { CAPS_A, CAPS_B, CAPS_A };
  for (guint i = 0; i < G_N_ELEMENTS (want_caps); i++) {
    ev = pull_event (src);
    if (ev && GST_EVENT_TYPE (ev) == GST_EVENT_SEGMENT) {
      gst_event_unref (ev);
      ev = pull_event (src);
    }
    fail_unless (ev && GST_EVENT_TYPE (ev) == GST_EVENT_CAPS, "caps change %u missing", i);
    check_caps_event (ev, want_caps[i]);
    gst_event_unref (ev);
  }
  for (guint i = 0; i < G_N_ELEMENTS (caps_seq); i++) {
    GstBuffer *got = pull_buffer (src);
    check_buffer (got, &specs[i], i);
    gst_buffer_unref (got);
    spec_clear (&specs[i]);
  }
  GstCaps *cur = gst_pad_get_current_caps (src->sinkpad);
  GstCaps *a = gst_caps_from_string (CAPS_A);
  fail_unless (cur && gst_caps_is_equal (cur, a));
  gst_caps_unref (cur);
  gst_caps_unref (a);

  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  order_log_free (&log);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* With capacity=65536 the largest buffer is ipcring_max_payload(65536)
 * minus the 48-byte buffer header = 65480 bytes: it passes intact (twice,
 * so that once it has to wrap around the ring's end). One byte more and
 * render returns GST_FLOW_ERROR with a resource error on the bus that names
 * the capacity. */
/* Hand-off: a buffer that wakes the sleeping source makes the sink yield its
 * CPU once (ring-handoffs counts it); handoff=false wakes without yielding. */
GST_START_TEST (test_sink_handoff)
{
  announce ("handoff: the sink yields after waking a sleeping source, unless handoff=false");
  for (gint on = 1; on >= 0; on--) {
    gchar *ring = ring_path_new ();
    GstHarness *src = src_harness_new (ring, NULL, NULL);
    GstElement *e = gst_element_factory_make ("ipcringsink", NULL);
    fail_unless (e != NULL);
    gboolean dflt = FALSE;
    g_object_get (e, "handoff", &dflt, NULL);
    fail_unless (dflt, "handoff is off by default");
    g_object_set (e, "ring", ring, "capacity", (guint64) 1 << 20, "handoff", on, NULL);
    GstHarness *sink = gst_harness_new_with_element (e, "sink", NULL);
    gst_object_unref (e);
    wait_reader_attached (ring, 1);
    gst_harness_set_src_caps_str (sink, CAPS_A);
    for (guint i = 0; i < 3; i++) {
      /* Long enough for the source to stop spinning and sleep. */
      g_usleep (30 * 1000);
      fail_unless_equals_int (gst_harness_push (sink, gst_buffer_new_allocate (NULL, 64,
                  NULL)), GST_FLOW_OK);
      GstBuffer *got = pull_buffer (src);
      fail_unless (got != NULL, "buffer %u did not arrive", i);
      gst_buffer_unref (got);
    }
    /* The stats copy the ring's counters at most every 100 ms, and at
     * once on a serialized event: the EOS brings them up to date. */
    push_eos_bounded (sink);
    GstStructure *st = NULL;
    g_object_get (sink->element, "stats", &st, NULL);
    guint64 wakes = 0, handoffs = 0;
    fail_unless (gst_structure_get_uint64 (st, "ring-wakes", &wakes));
    fail_unless (gst_structure_get_uint64 (st, "ring-handoffs", &handoffs));
    gst_structure_free (st);
    g_print ("    handoff=%s: %" G_GUINT64_FORMAT " wake(s), %" G_GUINT64_FORMAT " hand-off(s)\n",
        on ? "true" : "false", wakes, handoffs);
    fail_unless (wakes >= 1, "the source never slept between buffers 30 ms apart");
    if (on)
      fail_unless (handoffs >= 1 && handoffs <= wakes, "%" G_GUINT64_FORMAT " hand-offs for %"
          G_GUINT64_FORMAT " wakes", handoffs, wakes);
    else
      fail_unless_equals_uint64 (handoffs, 0);
    gst_harness_teardown (sink);
    gst_harness_teardown (src);
    g_free (ring);
    test_dir_cleanup ();
  }
}

GST_END_TEST;

GST_START_TEST (test_largest_buffer)
{
  announce ("capacity-56 bytes pass, one more is a clear error");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  const guint64 cap = 65536;
  const gsize largest = ipcring_max_payload (cap) - sizeof (IpcRingWireBuffer);
  fail_unless_equals_uint64 (largest, 65480);

  GstBus *bus = gst_bus_new ();
  GstHarness *src = src_harness_new (ring, NULL, NULL);
  GstHarness *sink = sink_harness_new (ring, cap, bus);
  wait_reader_attached (ring, 1);
  gst_harness_set_src_caps_str (sink, "application/x-test");

  for (guint i = 0; i < 2; i++) {
    GstBuffer *buf = make_buffer (7 + i, largest, 3, i == 0 ? GST_BUFFER_FLAG_DISCONT : 0);
    GST_BUFFER_PTS (buf) = i * GST_SECOND;
    BufferSpec spec;
    spec_from_buffer (&spec, buf);
    fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
    GstBuffer *got = pull_buffer (src);
    check_buffer (got, &spec, i);
    gst_buffer_unref (got);
    spec_clear (&spec);
  }
  assert_no_error (bus);

  GstBuffer *too_big = make_buffer (9, largest + 1, 1, 0);
  fail_unless_equals_int (gst_harness_push (sink, too_big), GST_FLOW_ERROR);
  gchar *text = expect_error (bus, 0, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_WRITE);
  assert_contains (text, "capacity");
  assert_contains (text, "65536");
  g_free (text);

  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  bus_free (bus);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* ---- Errors a user can act on ---------------------------------------------- */

/* Start an unconfigured-as-given sink alone: NULL -> READY must fail and
 * post one error; returns its text. */
static gchar *
sink_start_fails (const gchar * ring, guint64 capacity, gint code)
{
  GstElement *e = gst_element_factory_make ("ipcringsink", NULL);
  fail_unless (e != NULL, "no ipcringsink");
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  if (ring)
    g_object_set (e, "ring", ring, NULL);
  if (capacity)
    g_object_set (e, "capacity", capacity, NULL);
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_READY),
      GST_STATE_CHANGE_FAILURE);
  gchar *text = expect_error (bus, 0, GST_RESOURCE_ERROR, code);
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gst_element_set_bus (e, NULL);
  gst_object_unref (e);
  bus_free (bus);
  return text;
}

/* A src harness on ring whose streaming thread must fail: the error comes
 * within 5 s; returns its text. */
static gchar *
src_fails (const gchar * ring, gint code)
{
  GstBus *bus = gst_bus_new ();
  GstHarness *h = src_harness_new (ring, bus, NULL);
  gchar *text = expect_error (bus, 5 * GST_SECOND, GST_RESOURCE_ERROR, code);
  gst_harness_teardown (h);
  bus_free (bus);
  return text;
}

/* A sink without a ring fails to start and says to set the ring property. */
/* Rings in an inherited descriptor (the fd property of both elements): a
 * sealed memfd carries a buffer from a sink harness to a src harness with no
 * file at all; setting both ring and fd is a clear settings error. */
GST_START_TEST (test_fd_rings)
{
  announce ("fd=N on both sides: a sealed memfd ring carries the stream");
  int fd = ipcring_memfd_create (65536, "test");
  if (fd == -ENOSYS) {
    printf ("    (no memfd here: skipped)\n");
    return;
  }
  fail_unless (fd >= 0, "ipcring_memfd_create: %s", ipcring_strerror (fd));
  GstElement *e = gst_element_factory_make ("ipcringsink", NULL);
  g_object_set (e, "fd", fd, NULL);
  GstHarness *sink = gst_harness_new_with_element (e, "sink", NULL);
  gst_object_unref (e);
  gst_harness_set_src_caps_str (sink, "application/x-test");
  GstHarness *src = gst_harness_new ("ipcringsrc");
  g_object_set (src->element, "fd", fd, NULL);
  gst_harness_play (src);
  GstBuffer *buf = make_buffer (7, 1000, 1, 0);
  GstBuffer *want = gst_buffer_copy_deep (buf);
  fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  GstBuffer *got = gst_harness_pull (src);
  fail_unless (got != NULL);
  GstMapInfo a, b;
  gst_buffer_map (want, &a, GST_MAP_READ);
  gst_buffer_map (got, &b, GST_MAP_READ);
  fail_unless (a.size == b.size && memcmp (a.data, b.data, a.size) == 0, "payload differs");
  gst_buffer_unmap (want, &a);
  gst_buffer_unmap (got, &b);
  gst_buffer_unref (want);
  gst_buffer_unref (got);
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  close (fd);

  announce ("ring and fd both set: start fails, says to set one");
  GstBus *bus = gst_bus_new ();
  e = gst_element_factory_make ("ipcringsink", NULL);
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  g_object_set (e, "fd", 0, "ring", ring, NULL);
  gst_element_set_bus (e, bus);
  fail_unless (gst_element_set_state (e, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE);
  gchar *text = expect_error (bus, 0, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
  assert_contains (text, "Set one of them");
  fail_if (g_file_test (ring, G_FILE_TEST_EXISTS), "a ring file was made");
  g_free (text);
  g_free (ring);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_object_unref (e);
  bus_free (bus);
  test_dir_cleanup ();
}

GST_END_TEST;

GST_START_TEST (test_sink_without_ring)
{
  announce ("no ring: start fails, says to set ring");
  gchar *text = sink_start_fails (NULL, 0, GST_RESOURCE_ERROR_NOT_FOUND);
  assert_contains (text, "ring");
  assert_contains (text, "Set the ring property");
  g_free (text);
}

GST_END_TEST;

/* capacity=100000 (not a power of two) fails to start, names the value and
 * the rule, and creates no file. */
GST_START_TEST (test_sink_bad_capacity)
{
  announce ("capacity not a power of two: start fails, no file");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  gchar *text = sink_start_fails (ring, 100000, GST_RESOURCE_ERROR_SETTINGS);
  assert_contains (text, "capacity=100000");
  assert_contains (text, "power of two");
  g_free (text);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A ring path in a missing directory fails to start, names that directory,
 * and neither creates it nor leaves any file. */
GST_START_TEST (test_sink_missing_directory)
{
  announce ("ring in a missing directory: start fails, names it, no file");
  const gchar *dir = test_dir_new ();
  gchar *missing = g_build_filename (dir, "no-such-dir", NULL);
  gchar *ring = g_build_filename (missing, "ring", NULL);
  gchar *text = sink_start_fails (ring, 0, GST_RESOURCE_ERROR_OPEN_WRITE);
  assert_contains (text, missing);
  assert_contains (text, "does not exist");
  g_free (text);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  g_free (missing);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A second sink on a ring whose sink is running fails with a busy error
 * and leaves the first sink's ring alone (same file, still carrying). */
GST_START_TEST (test_second_sink_busy)
{
  announce ("second sink on a live ring: busy, first sink unharmed");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  GstHarness *sink1 = sink_harness_new (ring, 65536, NULL);
  struct stat before, after;
  fail_unless (stat (ring, &before) == 0);
  /* perms defaults to 0600: only this user may open the ring */
  fail_unless_equals_int (before.st_mode & 07777, 0600);

  gchar *text = sink_start_fails (ring, 65536, GST_RESOURCE_ERROR_BUSY);
  assert_contains (text, ring);
  assert_contains (text, "in use");
  g_free (text);

  fail_unless (stat (ring, &after) == 0, "the failed sink removed the running sink's ring");
  fail_unless (before.st_ino == after.st_ino, "the ring file was replaced");
  fail_unless_equals_int (dir_entries (dir), 1);

  /* the sink1 sink still works end to end */
  GstHarness *src = src_harness_new (ring, NULL, NULL);
  gst_harness_set_src_caps_str (sink1, "application/x-test");
  GstBuffer *buf = make_buffer (3, 999, 1, GST_BUFFER_FLAG_DISCONT);
  BufferSpec spec;
  spec_from_buffer (&spec, buf);
  fail_unless_equals_int (gst_harness_push (sink1, buf), GST_FLOW_OK);
  GstBuffer *got = pull_buffer (src);
  check_buffer (got, &spec, 0);
  gst_buffer_unref (got);
  spec_clear (&spec);

  gst_harness_teardown (sink1);
  gst_harness_teardown (src);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A file of size bytes of text (mode 0600, so only its contents are
 * wrong). */
static gchar *
write_text_file (const gchar * dir, gsize size)
{
  gchar *path = g_build_filename (dir, "text", NULL);
  GString *s = g_string_new ("");
  while (s->len < size)
    g_string_append (s, "This is a plain text file, not a ring.\n");
  g_string_truncate (s, size);
  GError *err = NULL;
  fail_unless (g_file_set_contents_full (path, s->str, s->len, G_FILE_SET_CONTENTS_NONE,
          0600, &err), "%s", err ? err->message : "");
  g_string_free (s, TRUE);
  return path;
}

/* A src on a file that is not a ring (8 KiB of text) posts "is not a ring
 * file" with the path. */
GST_START_TEST (test_src_not_a_ring)
{
  announce ("src on 8 KiB of text: \"is not a ring file\"");
  const gchar *dir = test_dir_new ();
  gchar *path = write_text_file (dir, 8192);

  gchar *text = src_fails (path, GST_RESOURCE_ERROR_OPEN_READ);
  assert_contains (text, path);
  assert_contains (text, "is not a ring file");
  g_free (text);
  /* the file is left as it was */
  fail_unless (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  g_free (path);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A shorter text file (5000 bytes: more than a ring header, less than the
 * smallest ring) is just as much "not a ring file".
 * Regression test for a fixed library bug (ring/ipcring.c reader_attach_fd):
 * the file size was checked before the magic, so a size from 320 to 8191
 * bytes gave -EPROTO and the src called a file that was never a ring
 * "corrupt". */
GST_START_TEST (test_src_short_text_file)
{
  announce ("src on 5000 bytes of text: \"is not a ring file\"");
  const gchar *dir = test_dir_new ();
  gchar *path = write_text_file (dir, 5000);
  gchar *text = src_fails (path, GST_RESOURCE_ERROR_OPEN_READ);
  assert_contains (text, path);
  assert_contains (text, "is not a ring file");
  g_free (text);
  g_free (path);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A src whose ring path is in a missing directory does not wait forever for
 * the ring: it fails and says the directory does not exist. */
GST_START_TEST (test_src_missing_directory)
{
  announce ("src on a ring in a missing directory: error, no endless wait");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "no-such-dir", "ring", NULL);
  gchar *text = src_fails (ring, GST_RESOURCE_ERROR_NOT_FOUND);
  assert_contains (text, ring);
  assert_contains (text, "does not exist");
  g_free (text);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A second src on a ring that a src is already reading fails with a busy
 * error, and the first reader goes on undisturbed. */
GST_START_TEST (test_second_src_busy)
{
  announce ("second src on a ring being read: busy, first reader unharmed");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  GstHarness *reader1 = src_harness_new (ring, NULL, NULL);
  GstHarness *sink = sink_harness_new (ring, 65536, NULL);
  wait_reader_attached (ring, 1);

  gchar *text = src_fails (ring, GST_RESOURCE_ERROR_BUSY);
  assert_contains (text, ring);
  assert_contains (text, "already reading");
  g_free (text);
  fail_unless_equals_uint64 (ring_reader_generation (ring), 1);

  gst_harness_set_src_caps_str (sink, "application/x-test");
  GstBuffer *buf = make_buffer (4, 5000, 2, GST_BUFFER_FLAG_DISCONT);
  BufferSpec spec;
  spec_from_buffer (&spec, buf);
  fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  GstBuffer *got = pull_buffer (reader1);
  check_buffer (got, &spec, 0);
  gst_buffer_unref (got);
  spec_clear (&spec);

  gst_harness_teardown (sink);
  gst_harness_teardown (reader1);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* ---- PLAYING -> NULL while blocked --------------------------------------- */

/* The spec asks for 100 ms; a noisy 2-core machine gets 5x slack: each
 * round must take under 500 ms, and the maximum is printed. */
#define STATE_ROUNDS 1000
#define NULL_BOUND_US (500 * 1000)

typedef struct
{
  gint64 max_us;
  gint64 total_us;
} Timing;

static void
timing_add (Timing * t, gint64 us, guint round)
{
  fail_unless (us < NULL_BOUND_US * slack (), "round %u: PLAYING -> NULL took %" G_GINT64_FORMAT " us",
      round, us);
  t->max_us = MAX (t->max_us, us);
  t->total_us += us;
}

static void
timing_print (const gchar * what, const Timing * t)
{
  g_print ("    %s: PLAYING -> NULL max %.2f ms, mean %.3f ms over %d rounds\n", what,
      t->max_us / 1000.0, t->total_us / 1000.0 / STATE_ROUNDS, STATE_ROUNDS);
}

/* Set pipe to NULL, time it, and check it posted no error. */
static gint64
timed_stop (GstElement * pipe)
{
  gint64 t0 = g_get_monotonic_time ();
  fail_unless_equals_int (gst_element_set_state (pipe, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gint64 dt = g_get_monotonic_time () - t0;
  GstBus *bus = gst_element_get_bus (pipe);
  assert_no_error (bus);
  bus_free (bus);
  return dt;
}

static void
on_handoff (GstElement * e, GstBuffer * buf, GstPad * pad, gpointer data)
{
  g_atomic_int_inc ((gint *) data);
}

static void
wait_count (gint * counter, gint n, const gchar * what)
{
  gint64 end = deadline_s (5);
  while (g_atomic_int_get (counter) < n) {
    fail_unless (g_get_monotonic_time () < end, "%s: only %d of %d within 5 s", what,
        g_atomic_int_get (counter), n);
    g_usleep (100);
  }
}

/* src ! capsfilter ! sink in pipe: fakesrc sends no caps of its own, and
 * ipcringsink refuses data before caps. */
static void
link_with_octet_caps (GstElement * pipe, GstElement * src, GstElement * sink)
{
  GstElement *filter = gst_element_factory_make ("capsfilter", NULL);
  fail_unless (filter != NULL);
  GstCaps *caps = gst_caps_new_empty_simple ("application/octet-stream");
  g_object_set (filter, "caps", caps, NULL);
  gst_caps_unref (caps);
  gst_bin_add_many (GST_BIN (pipe), src, filter, sink, NULL);
  fail_unless (gst_element_link_many (src, filter, sink, NULL));
}

/* One round of fakesrc ! ipcringsink on a 4096-byte ring with no reader:
 * 1024-byte buffers, so the fourth render blocks on the full ring (the
 * first round checks that no fifth buffer comes). */
static gint64
sink_blocked_round (const gchar * ring, guint round)
{
  GstElement *pipe = gst_pipeline_new (NULL);
  GstElement *src = gst_element_factory_make ("fakesrc", NULL);
  GstElement *sink = gst_element_factory_make ("ipcringsink", NULL);
  fail_unless (pipe && src && sink);
  gint handoffs = 0;
  gst_util_set_object_arg (G_OBJECT (src), "sizetype", "fixed");
  gst_util_set_object_arg (G_OBJECT (src), "filltype", "zero");
  g_object_set (src, "sizemax", 1024, "signal-handoffs", TRUE, NULL);
  g_signal_connect (src, "handoff", G_CALLBACK (on_handoff), &handoffs);
  g_object_set (sink, "ring", ring, "capacity", (guint64) 4096, NULL);
  link_with_octet_caps (pipe, src, sink);

  fail_if (gst_element_set_state (pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
  wait_count (&handoffs, 4, "buffers produced");
  if (round == 0) {
    g_usleep (50 * 1000);
    fail_unless_equals_int (g_atomic_int_get (&handoffs), 4);
  } else {
    g_usleep (200);
  }
  gint64 dt = timed_stop (pipe);
  gst_object_unref (pipe);
  fail_if (g_file_test (ring, G_FILE_TEST_EXISTS), "round %u: the sink left its ring", round);
  return dt;
}

/* ipcringsink blocked in render on a full ring (no reader): PLAYING -> NULL
 * returns within the bound, posts no error, removes the ring; 1000 rounds
 * leave no file descriptor open. */
GST_START_TEST (test_sink_stops_while_blocked)
{
  announce ("sink blocked on a full ring: PLAYING -> NULL promptly, x1000");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  Timing t = { 0, 0 };
  sink_blocked_round (ring, 0); /* warm-up: plugins loaded, first-use fds */
  guint fds = count_fds ();
  for (guint i = 0; i < STATE_ROUNDS; i++)
    timing_add (&t, sink_blocked_round (ring, i + 1), i);
  timing_print ("sink blocked on a full ring", &t);
  fail_unless_equals_int (count_fds (), fds);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

static GstElement *
src_pipeline_new (const gchar * ring)
{
  GstElement *pipe = gst_pipeline_new (NULL);
  GstElement *src = gst_element_factory_make ("ipcringsrc", NULL);
  GstElement *sink = gst_element_factory_make ("fakesink", NULL);
  fail_unless (pipe && src && sink);
  g_object_set (src, "ring", ring, NULL);
  gst_bin_add_many (GST_BIN (pipe), src, sink, NULL);
  fail_unless (gst_element_link (src, sink));
  return pipe;
}

/* ipcringsrc waiting for a ring that does not exist yet: PLAYING -> NULL
 * returns within the bound, 1000 times, without an error or an fd leak,
 * and creates nothing. */
GST_START_TEST (test_src_stops_while_waiting_for_ring)
{
  announce ("src waiting for its ring: PLAYING -> NULL promptly, x1000");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "not-yet", NULL);
  Timing t = { 0, 0 };
  guint fds = 0;
  for (guint i = 0; i <= STATE_ROUNDS; i++) {
    if (i == 1)
      fds = count_fds ();       /* after a warm-up round */
    GstElement *pipe = src_pipeline_new (ring);
    fail_unless_equals_int (gst_element_set_state (pipe, GST_STATE_PLAYING),
        GST_STATE_CHANGE_ASYNC);
    /* the src retries opening every 20 ms: 2 ms in, it is waiting */
    g_usleep (2000);
    gint64 dt = timed_stop (pipe);
    gst_object_unref (pipe);
    if (i > 0)
      timing_add (&t, dt, i);
  }
  timing_print ("src waiting for its ring", &t);
  fail_unless_equals_int (count_fds (), fds);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* ipcringsrc attached to a live ring with no data (blocked in peek; the
 * test itself is the writer): PLAYING -> NULL returns within the bound,
 * 1000 times, without an error or an fd leak. */
GST_START_TEST (test_src_stops_while_blocked_in_peek)
{
  announce ("src blocked on an empty live ring: PLAYING -> NULL promptly, x1000");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  ipcring_writer *w = NULL;
  fail_unless_equals_int (ipcring_writer_create (ring, 4096, 0600, 0, &w), 0);
  Timing t = { 0, 0 };
  guint fds = 0;
  for (guint i = 0; i <= STATE_ROUNDS; i++) {
    if (i == 1)
      fds = count_fds ();
    GstElement *pipe = src_pipeline_new (ring);
    fail_unless_equals_int (gst_element_set_state (pipe, GST_STATE_PLAYING),
        GST_STATE_CHANGE_ASYNC);
    fail_unless_equals_int (ipcring_writer_wait_reader (w, 5 * GST_SECOND * slack ()), 0);
    g_usleep (200);             /* from attach to peek */
    gint64 dt = timed_stop (pipe);
    gst_object_unref (pipe);
    fail_unless_equals_int (ipcring_writer_reader_alive (w), 0);
    if (i > 0)
      timing_add (&t, dt, i);
  }
  timing_print ("src blocked in peek", &t);
  fail_unless_equals_int (count_fds (), fds);
  fail_unless_equals_uint64 (ring_reader_generation (ring), STATE_ROUNDS + 1);
  ipcring_writer_unlink (w);
  ipcring_writer_close (w);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* ---- Flushing is not an error --------------------------------------------- */

static GstBuffer *
numbered_buffer (guint n)
{
  GstBuffer *buf = make_buffer (n, 1024, 1, n == 0 ? GST_BUFFER_FLAG_DISCONT : 0);
  GST_BUFFER_OFFSET (buf) = n;
  GST_BUFFER_PTS (buf) = n * 10 * MSEC;
  return buf;
}

/* flush-start reaching a sink blocked on a full ring makes render return
 * FLUSHING with no error message; after flush-stop streaming goes on: a
 * reader gets the buffers from before the flush and after it (the one that
 * was being written when the flush came is dropped, as flushing does). */
GST_START_TEST (test_flush_while_blocked)
{
  announce ("flush while blocked on a full ring: FLUSHING, no error, streaming goes on");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  GstBus *bus = gst_bus_new ();
  GstHarness *sink = sink_harness_new (ring, 4096, bus);
  gst_harness_set_src_caps_str (sink, "application/x-test");

  /* 3 x 1080-byte records fit in 4096 bytes after the stream's first
   * records; the fourth blocks */
  for (guint i = 0; i < 3; i++)
    fail_unless_equals_int (gst_harness_push (sink, numbered_buffer (i)), GST_FLOW_OK);
  PushJob *job = push_job_start (sink, numbered_buffer (3), NULL);
  fail_if (push_job_wait (job, 100), "the fourth buffer did not block on the full ring");

  fail_unless (gst_harness_push_event (sink, gst_event_new_flush_start ()));
  fail_unless (push_job_wait (job, 5000), "render still blocked 5 s after flush-start");
  fail_unless_equals_int (job->ret, GST_FLOW_FLUSHING);
  g_free (job);
  fail_unless (gst_harness_push_event (sink, gst_event_new_flush_stop (TRUE)));
  assert_no_error (bus);

  /* Streaming goes on once a reader drains the ring. (The blocked write
   * had already padded the ring to its end, so even the new segment needs
   * the reader first.) */
  GstHarness *src = src_harness_new (ring, NULL, NULL);
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&seg)));
  for (guint i = 4; i < 10; i++)
    fail_unless_equals_int (gst_harness_push (sink, numbered_buffer (i)), GST_FLOW_OK);
  static const guint want[] = { 0, 1, 2, 4, 5, 6, 7, 8, 9 };
  for (guint i = 0; i < G_N_ELEMENTS (want); i++) {
    GstBuffer *got = pull_buffer (src);
    fail_unless (got != NULL);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (got), want[i]);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (got), want[i] * 10 * MSEC);
    guint8 b0 = 0;
    gst_buffer_extract (got, 1000, &b0, 1);
    fail_unless_equals_int (b0, pattern_byte (want[i], 1000));
    gst_buffer_unref (got);
  }
  assert_no_error (bus);

  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  bus_free (bus);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* Read a ring as a plain reader until want BUFF records came (at most
 * 5 s): returns the offsets they carried, in order. */
static GArray *
read_buffer_offsets (const gchar * ring, guint want)
{
  ipcring_reader *r = NULL;
  fail_unless_equals_int (ipcring_reader_open (ring, 0, &r), 0);
  GArray *offsets = g_array_new (FALSE, FALSE, sizeof (guint64));
  gint64 end = deadline_s (5);
  static guint8 rec[8192];
  while (offsets->len < want && g_get_monotonic_time () < end) {
    size_t len = 0;
    uint32_t tag = 0;
    int rc = ipcring_reader_pop (r, rec, sizeof rec, &len, &tag, 100 * 1000 * 1000);
    if (rc == -ETIMEDOUT)
      continue;
    fail_unless (rc >= 0, "reading the ring: %s", ipcring_strerror (rc));
    if (tag == IPCRING_REC_BUFFER) {
      IpcRingWireBuffer hdr;
      fail_unless (len >= sizeof hdr);
      memcpy (&hdr, rec, sizeof hdr);
      guint64 off = hdr.offset;
      g_array_append_val (offsets, off);
    }
  }
  ipcring_reader_close (r);
  return offsets;
}

/* A flushing seek on a pipeline whose sink is blocked on a full ring:
 * the seek is handled and no error is posted; once a reader comes, the
 * data from after the seek (fakesrc starts again at byte offset 0) flows,
 * and the pipeline prerolls and plays again. */
GST_START_TEST (test_flushing_seek_while_blocked)
{
  announce ("flushing seek while blocked: no error, data after the seek flows");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  GstElement *pipe = gst_pipeline_new (NULL);
  GstElement *src = gst_element_factory_make ("fakesrc", NULL);
  GstElement *sink = gst_element_factory_make ("ipcringsink", NULL);
  gint handoffs = 0;
  gst_util_set_object_arg (G_OBJECT (src), "sizetype", "fixed");
  gst_util_set_object_arg (G_OBJECT (src), "filltype", "zero");
  g_object_set (src, "sizemax", 1024, "signal-handoffs", TRUE, NULL);
  g_signal_connect (src, "handoff", G_CALLBACK (on_handoff), &handoffs);
  g_object_set (sink, "ring", ring, "capacity", (guint64) 4096, NULL);
  link_with_octet_caps (pipe, src, sink);
  GstBus *bus = gst_element_get_bus (pipe);

  fail_if (gst_element_set_state (pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
  fail_unless_equals_int (gst_element_get_state (pipe, NULL, NULL, 5 * GST_SECOND * slack ()),
      GST_STATE_CHANGE_SUCCESS);
  wait_count (&handoffs, 4, "buffers produced");
  g_usleep (20 * 1000);
  fail_unless_equals_int (g_atomic_int_get (&handoffs), 4);

  fail_unless (gst_element_seek_simple (pipe, GST_FORMAT_BYTES, GST_SEEK_FLAG_FLUSH, 0),
      "flushing seek refused");
  assert_no_error (bus);

  GArray *offsets = read_buffer_offsets (ring, 12);
  GString *seen = g_string_new ("");
  guint restarts = 0;
  for (guint i = 0; i < offsets->len; i++) {
    guint64 off = g_array_index (offsets, guint64, i);
    g_string_append_printf (seen, " %" G_GUINT64_FORMAT, off);
    if (i > 0 && off < g_array_index (offsets, guint64, i - 1))
      restarts++;
  }
  g_print ("    buffer offsets through the seek:%s\n", seen->str);
  fail_unless_equals_int (offsets->len, 12);
  fail_unless_equals_uint64 (g_array_index (offsets, guint64, 0), 0);
  fail_unless_equals_int (restarts, 1);
  g_string_free (seen, TRUE);
  g_array_unref (offsets);

  fail_unless_equals_int (gst_element_get_state (pipe, NULL, NULL, 5 * GST_SECOND * slack ()),
      GST_STATE_CHANGE_SUCCESS);
  assert_no_error (bus);
  fail_unless_equals_int (gst_element_set_state (pipe, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  assert_no_error (bus);
  bus_free (bus);
  gst_object_unref (pipe);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* Flushing a src from its own streaming thread, in a probe on its src pad,
 * while it pushes the segment that starts at start: the flush comes while
 * the element handles the producer's segment record. */
typedef struct
{
  GstElement *element;
  GstClockTime start;
  gint fired;
} FlushOnSegment;

static GstPadProbeReturn
flush_on_segment_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  FlushOnSegment *f = data;
  GstEvent *ev = GST_PAD_PROBE_INFO_EVENT (info);
  const GstSegment *seg;
  if (GST_EVENT_TYPE (ev) != GST_EVENT_SEGMENT)
    return GST_PAD_PROBE_OK;
  gst_event_parse_segment (ev, &seg);
  if (seg->start != f->start)
    return GST_PAD_PROBE_OK;
  gst_element_send_event (f->element, gst_event_new_flush_start ());
  g_atomic_int_set (&f->fired, 1);
  return GST_PAD_PROBE_REMOVE;
}

/* Wait (at most 5 s) until the src's streaming task has paused: after a
 * flush-start, it reads nothing more from the ring until the flush-stop. */
static void
wait_task_paused (GstElement * src)
{
  GstPad *pad = gst_element_get_static_pad (src, "src");
  gint64 end = deadline_s (5);
  while (gst_pad_get_task_state (pad) != GST_TASK_PAUSED) {
    fail_unless (g_get_monotonic_time () < end, "the src's task did not pause within 5 s");
    g_usleep (100);
  }
  gst_object_unref (pad);
}

/* After every flush of the src the first thing downstream is the stream's
 * segment again, before any buffer: a flush-stop takes the sticky segment
 * off the src pad and its peer. The flushes: (1) flush-start and flush-stop
 * sent to the element while it waits for data; (2) the same, with a buffer
 * written during the flush (in the ring when streaming starts again); (3) a
 * flushing seek; (4) a flush that starts while the element pushes the
 * producer's new segment (which then never arrives); (5) a flush during
 * which the producer writes another new segment. Every segment downstream is
 * the producer's latest at that point (never GstBaseSrc's default one, which
 * it pushes after each flush), and the last one is on both pads at the end.
 * Regression test for an element bug: after a flush the element's probe
 * dropped GstBaseSrc's segment and never sent the stream's again, so buffers
 * arrived without a segment ("Got data flow before segment event"). */
GST_START_TEST (test_src_segment_after_flush)
{
  announce ("the src sends the stream's segment again after every flush");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  GstBus *bus = gst_bus_new ();
  OrderLog log;
  order_log_init (&log);
  GstHarness *src = src_harness_new (ring, bus, NULL);
  gst_pad_add_probe (src->sinkpad, GST_PAD_PROBE_TYPE_DATA_DOWNSTREAM |
      GST_PAD_PROBE_TYPE_EVENT_FLUSH, order_log_probe, &log, NULL);
  GstHarness *sink = sink_harness_new (ring, 1u << 20, NULL);
  wait_reader_attached (ring, 1);
  GstElement *e = src->element;
  GstPad *srcpad = gst_element_get_static_pad (e, "src");

  GstCaps *test_caps = gst_caps_new_empty_simple ("application/x-test");
  fail_unless (gst_harness_push_event (sink, gst_event_new_caps (test_caps)));
  gst_caps_unref (test_caps);
  GstSegment segs[3];
  for (guint i = 0; i < 3; i++) {
    gst_segment_init (&segs[i], GST_FORMAT_TIME);
    segs[i].start = segs[i].time = segs[i].position = (10 + 10 * i) * GST_SECOND;
    segs[i].base = (3 + i) * GST_SECOND;
  }
  fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&segs[0])));
  FlushOnSegment fos = { e, segs[1].start, 0 };
  for (guint i = 0; i < 6; i++) {
    switch (i) {
      case 1:
        fail_unless (gst_element_send_event (e, gst_event_new_flush_start ()));
        fail_unless (gst_element_send_event (e, gst_event_new_flush_stop (TRUE)));
        break;
      case 2:
        fail_unless (gst_element_send_event (e, gst_event_new_flush_start ()));
        wait_task_paused (e);
        break;
      case 3:
        fail_unless (gst_element_send_event (e, gst_event_new_seek (1.0, GST_FORMAT_TIME,
                    GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1)));
        break;
      case 4:
        gst_pad_add_probe (srcpad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, flush_on_segment_probe,
            &fos, NULL);
        fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&segs[1])));
        wait_count (&fos.fired, 1, "flush-start while the src pushes the new segment");
        fail_unless (gst_element_send_event (e, gst_event_new_flush_stop (TRUE)));
        break;
      case 5:
        fail_unless (gst_element_send_event (e, gst_event_new_flush_start ()));
        wait_task_paused (e);
        fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&segs[2])));
        break;
    }
    GstBuffer *buf = make_buffer (i, 100, 1, 0);
    GstClockTime pts = (i < 4 ? 10 : i == 4 ? 20 : 30) * GST_SECOND + i * GST_SECOND;
    GST_BUFFER_PTS (buf) = pts;
    fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
    if (i == 2 || i == 5)
      fail_unless (gst_element_send_event (e, gst_event_new_flush_stop (TRUE)));
    GstBuffer *got = pull_buffer (src);
    fail_unless (got != NULL, "buffer %u did not arrive", i);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (got), pts);
    gst_buffer_unref (got);
  }
  push_eos_bounded (sink);

  gchar *order = order_log_get_after_eos (&log);
  g_print ("    order: %s\n", order);
  fail_unless_equals_string (order, "stream-start caps:application/x-test segment buffer "
      "flush-start flush-stop segment buffer "
      "flush-start flush-stop segment buffer "
      "flush-start flush-stop segment buffer "
      "flush-start flush-stop segment buffer "
      "flush-start flush-stop segment segment buffer eos");
  g_free (order);

  /* which segment each of those was */
  static const guint want[] = { 0, 0, 0, 0, 1, 1, 2 };
  guint n = 0;
  for (;;) {
    GstEvent *ev = pull_event (src);
    fail_unless (ev != NULL, "no EOS within 10 s");
    if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS) {
      gst_event_unref (ev);
      break;
    }
    if (GST_EVENT_TYPE (ev) == GST_EVENT_SEGMENT) {
      fail_unless (n < G_N_ELEMENTS (want), "more than %u segments",
          (guint) G_N_ELEMENTS (want));
      const GstSegment *got;
      gst_event_parse_segment (ev, &got);
      check_segment_equal (got, &segs[want[n++]]);
    }
    gst_event_unref (ev);
  }
  fail_unless_equals_int (n, G_N_ELEMENTS (want));

  check_sticky_segments (src, &segs[2]);
  gst_object_unref (srcpad);
  assert_no_error (bus);

  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  bus_free (bus);
  order_log_free (&log);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* ---- A pad offset on the src's pad ------------------------------------------ */

/* gst-check fails a test on any GLib warning, from whichever thread; the
 * pad warnings a test looks for are counted instead and checked at its end. */
static gboolean
count_warning (const gchar * domain, GLogLevelFlags level, const gchar * message,
    gpointer data)
{
  (void) domain;
  (void) level;
  (void) message;
  g_atomic_int_inc ((gint *) data);
  return TRUE;
}

static GstCheckLogFilter *
count_pad_warnings (const gchar * regex, gint * counter)
{
  GRegex *re = g_regex_new (regex, 0, 0, NULL);
  fail_unless (re != NULL);
  return gst_check_add_log_filter ("GStreamer", G_LOG_LEVEL_WARNING, re, count_warning,
      counter, NULL);
}

/* Regression (a stress run of both sides restarting): a producer whose
 * segment came before its caps (its upstream restarted it between the two)
 * wrote them in that order, and the src stored the segment on its pad
 * before any caps, which GStreamer warns about ("Sticky event misordering").
 * The src holds such a segment until the caps come. */
GST_START_TEST (test_src_segment_before_caps)
{
  announce ("a producer's segment before its caps: the src sends caps first");
  OrderLog log;
  GstHarness *src, *sink;
  gchar *ring = ordered_pair_new (&log, 1u << 20, &src, &sink);
  /* The producer's pads (the harness's that feeds the sink, and the sink's)
   * warn about the order they are given: expected here. The pads after the
   * src must not. */
  gint sink_warnings = 0;
  GstCheckLogFilter *filter = count_pad_warnings ("<(ipcringsink[0-9]*:sink|'':src)> Sticky "
      "event misordering", &sink_warnings);

  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.base = 2 * GST_SECOND;
  fail_unless (gst_harness_push_event (sink, gst_event_new_stream_start ("s")));
  fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&seg)));
  GstCaps *test_caps = gst_caps_new_empty_simple ("application/x-test");
  fail_unless (gst_harness_push_event (sink, gst_event_new_caps (test_caps)));
  gst_caps_unref (test_caps);
  push_pull_one (sink, src, make_buffer (0, 100, 1, 0));
  check_order_after_eos (sink, src, &log, "stream-start caps:application/x-test segment buffer eos");
  g_print ("    the producer's pads warned %d time(s)\n", sink_warnings);
  check_sticky_segments (src, &seg);
  gst_check_remove_log_filter (filter);
  teardown_ordered (sink, src, &log, ring);
}

GST_END_TEST;

/* Regression (a stress run of both sides restarting, where the src failed
 * with "The producer sent data before caps."): GstPad lets a buffer reach a
 * sink pad that has lost its sticky caps (the pad was deactivated and
 * reactivated while the upstream thread was between sending them and
 * pushing), and the sink wrote it. The sink refuses a buffer before any
 * caps with not-negotiated and a warning, writes nothing for it, and the
 * stream goes on once caps come: the src sees caps before data and posts no
 * error. */
GST_START_TEST (test_sink_refuses_data_before_caps)
{
  announce ("a buffer before any caps: the sink refuses it, the src sees nothing of it");
  GstBus *sink_bus = gst_bus_new ();
  GstBus *src_bus = gst_bus_new ();
  OrderLog log;
  gchar *ring = ring_path_new ();
  GstHarness *src = src_harness_new (ring, src_bus, &log);
  GstHarness *sink = sink_harness_new (ring, 1u << 20, sink_bus);
  wait_reader_attached (ring, 1);

  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (sink, gst_event_new_stream_start ("s")));
  fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&seg)));
  for (guint i = 0; i < 2; i++)
    fail_unless_equals_int (gst_harness_push (sink, make_buffer (i, 100, 1, 0)),
        GST_FLOW_NOT_NEGOTIATED);
  /* one warning, however many buffers */
  GstMessage *msg = gst_bus_pop_filtered (sink_bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "the sink refused data before caps without a warning");
  GError *err = NULL;
  gst_message_parse_warning (msg, &err, NULL);
  g_print ("    warning: \"%s\"\n", err->message);
  fail_unless (err->domain == GST_CORE_ERROR && err->code == GST_CORE_ERROR_NEGOTIATION);
  assert_contains (err->message, "before any caps");
  g_error_free (err);
  gst_message_unref (msg);
  fail_unless (gst_bus_pop_filtered (sink_bus, GST_MESSAGE_WARNING) == NULL);

  /* The producer's pads (the harness's and the sink's) warn about caps
   * after a segment: expected here. */
  gint misordered = 0;
  GstCheckLogFilter *filter = count_pad_warnings ("<(ipcringsink[0-9]*:sink|'':src)> Sticky "
      "event misordering", &misordered);
  GstCaps *test_caps = gst_caps_new_empty_simple ("application/x-test");
  fail_unless (gst_harness_push_event (sink, gst_event_new_caps (test_caps)));
  gst_caps_unref (test_caps);
  gst_check_remove_log_filter (filter);
  GstBuffer *buf = make_buffer (7, 100, 1, 0);
  GST_BUFFER_OFFSET (buf) = 7;
  fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  GstBuffer *got = pull_buffer (src);
  fail_unless (got != NULL);
  fail_unless_equals_uint64 (GST_BUFFER_OFFSET (got), 7);
  gst_buffer_unref (got);
  check_order_after_eos (sink, src, &log, "stream-start caps:application/x-test segment buffer eos");
  assert_no_error (src_bus);
  assert_no_error (sink_bus);
  teardown_ordered (sink, src, &log, ring);
  bus_free (sink_bus);
  bus_free (src_bus);
}

GST_END_TEST;

/* With an offset on the src's pad (gst_pad_set_offset, 1 s, set before it
 * starts) downstream gets stream-start, caps and the stream's segment before
 * the first buffer, the segment with the offset added to its base as GstPad
 * adds it (the src pad's own sticky segment stays the stream's), and no "Got
 * data flow before stream-start/segment event" warning. When the
 * application changes the offset mid-stream (to 2 s), GstPad offers the
 * sticky events again and the segment goes out again with the new base
 * before the next buffer; after a flush the segment goes out again with the
 * offset too.
 * Regression test for an element bug: the probe that drops GstBaseSrc's own
 * stream-start and segment told the element's apart by pointer, but GstPad
 * applies an offset to a copy (a segment is even made anew), so with an
 * offset the probe dropped the stream's stream-start and segment as well and
 * downstream got only caps. */
GST_START_TEST (test_src_pad_offset)
{
  announce ("a pad offset on the src: stream-start, caps, segment (offset) before data");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  gint warnings = 0;
  GstCheckLogFilter *filter =
      count_pad_warnings ("Got data flow before (stream-start|segment) event", &warnings);
  GstBus *bus = gst_bus_new ();
  OrderLog log;
  GstHarness *src = gst_harness_new ("ipcringsrc");
  fail_unless (src != NULL, "no ipcringsrc");
  g_object_set (src->element, "ring", ring, NULL);
  gst_element_set_bus (src->element, bus);
  order_log_init (&log);
  gst_pad_add_probe (src->sinkpad, GST_PAD_PROBE_TYPE_DATA_DOWNSTREAM |
      GST_PAD_PROBE_TYPE_EVENT_FLUSH, order_log_probe, &log, NULL);
  GstPad *srcpad = gst_element_get_static_pad (src->element, "src");
  gst_pad_set_offset (srcpad, GST_SECOND);
  gst_harness_play (src);
  GstHarness *sink = sink_harness_new (ring, 1u << 20, NULL);
  wait_reader_attached (ring, 1);

  GstCaps *test_caps = gst_caps_new_empty_simple ("application/x-test");
  fail_unless (gst_harness_push_event (sink, gst_event_new_caps (test_caps)));
  gst_caps_unref (test_caps);
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.start = seg.time = seg.position = 10 * GST_SECOND;
  seg.base = 3 * GST_SECOND;
  fail_unless (gst_harness_push_event (sink, gst_event_new_segment (&seg)));
  for (guint i = 0; i < 3; i++) {
    if (i == 1)
      gst_pad_set_offset (srcpad, 2 * GST_SECOND);
    if (i == 2) {
      fail_unless (gst_element_send_event (src->element, gst_event_new_flush_start ()));
      fail_unless (gst_element_send_event (src->element, gst_event_new_flush_stop (TRUE)));
    }
    GstBuffer *buf = make_buffer (i, 100, 1, 0);
    GST_BUFFER_PTS (buf) = (10 + i) * GST_SECOND;
    fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
    GstBuffer *got = pull_buffer (src);
    fail_unless (got != NULL, "buffer %u did not arrive", i);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (got), (10 + i) * GST_SECOND);
    gst_buffer_unref (got);
  }
  push_eos_bounded (sink);

  gchar *order = order_log_get_after_eos (&log);
  g_print ("    order: %s\n", order);
  fail_unless_equals_string (order, "stream-start caps:application/x-test segment buffer "
      "stream-start caps:application/x-test segment buffer "
      "flush-start flush-stop segment buffer eos");
  g_free (order);

  /* the segments downstream: the stream's, its base moved by the offset of
   * the moment */
  static const guint64 offsets[] = { GST_SECOND, 2 * GST_SECOND, 2 * GST_SECOND };
  guint n = 0;
  for (;;) {
    GstEvent *ev = pull_event (src);
    fail_unless (ev != NULL, "no EOS within 10 s");
    if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS) {
      gst_event_unref (ev);
      break;
    }
    if (GST_EVENT_TYPE (ev) == GST_EVENT_SEGMENT) {
      fail_unless (n < G_N_ELEMENTS (offsets), "more than %u segments",
          (guint) G_N_ELEMENTS (offsets));
      GstSegment want;
      gst_segment_copy_into (&seg, &want);
      want.base += offsets[n++];
      const GstSegment *got;
      gst_event_parse_segment (ev, &got);
      check_segment_equal (got, &want);
      fail_unless_equals_int64 (gst_event_get_running_time_offset (ev), offsets[n - 1]);
    }
    gst_event_unref (ev);
  }
  fail_unless_equals_int (n, G_N_ELEMENTS (offsets));

  GstEvent *ev = gst_pad_get_sticky_event (srcpad, GST_EVENT_SEGMENT, 0);
  fail_unless (ev != NULL);
  const GstSegment *stored;
  gst_event_parse_segment (ev, &stored);
  check_segment_equal (stored, &seg);
  gst_event_unref (ev);
  gst_object_unref (srcpad);

  fail_unless_equals_int (g_atomic_int_get (&warnings), 0);
  assert_no_error (bus);
  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  gst_check_remove_log_filter (filter);
  bus_free (bus);
  order_log_free (&log);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* ---- Waiting for the ring on a watch of its directory ---------------------------- */

#include <sys/inotify.h>

/* The inotify descriptors of this process with a watch on the directory dir
 * (from /proc/self/fdinfo, "inotify wd:N ino:<hex> ... mask:<hex>"): how
 * many, and in *mask the events the last one asks for. */
static guint
inotify_watches_on (const gchar * dir, guint * mask)
{
  struct stat st;
  fail_unless (stat (dir, &st) == 0, "cannot stat %s: %s", dir, g_strerror (errno));
  GDir *d = g_dir_open ("/proc/self/fd", 0, NULL);
  fail_unless (d != NULL, "cannot list /proc/self/fd");
  guint n = 0;
  const gchar *name;
  while ((name = g_dir_read_name (d)) != NULL) {
    gchar *link = g_build_filename ("/proc/self/fd", name, NULL);
    gchar *target = g_file_read_link (link, NULL);
    g_free (link);
    if (target && strcmp (target, "anon_inode:inotify") == 0) {
      gchar *path = g_build_filename ("/proc/self/fdinfo", name, NULL);
      gchar *info = NULL;
      if (g_file_get_contents (path, &info, NULL, NULL)) {
        for (const gchar * w = strstr (info, "inotify wd:"); w; w = strstr (w + 1,
                "inotify wd:")) {
          const gchar *ino = strstr (w, " ino:"), *m = strstr (w, " mask:");
          guint64 i = 0;
          guint bits = 0;
          if (ino && m && sscanf (ino, " ino:%" G_GINT64_MODIFIER "x", &i) == 1
              && sscanf (m, " mask:%x", &bits) == 1 && i == (guint64) st.st_ino) {
            n++;
            *mask = bits;
          }
        }
      }
      g_free (info);
      g_free (path);
    }
    g_free (target);
  }
  g_dir_close (d);
  return n;
}

/* Wait (at most 5 s) until exactly want watches are on dir. */
static void
wait_watches_on (const gchar * dir, guint want, guint * mask)
{
  gint64 end = deadline_s (5);
  guint n;
  while ((n = inotify_watches_on (dir, mask)) != want) {
    fail_unless (g_get_monotonic_time () < end, "%u inotify watches on %s after 5 s, "
        "expected %u", n, dir, want);
    g_usleep (500);
  }
}

/* One source started before its producer, on ring in dir: while it waits
 * it watches the ring's directory for new names (IN_CREATE, which making a
 * ring with O_TMPFILE and linkat gives, and IN_MOVED_TO); it gets the whole
 * stream once the producer comes; the watch goes once it attached. */
static void
src_first_round (const gchar * dir, const gchar * ring)
{
  guint mask = 0;
  fail_unless_equals_int (inotify_watches_on (dir, &mask), 0);
  OrderLog log;
  GstHarness *src = src_harness_new (ring, NULL, &log);
  wait_watches_on (dir, 1, &mask);
  fail_unless ((mask & (IN_CREATE | IN_MOVED_TO)) == (IN_CREATE | IN_MOVED_TO),
      "the watch on the ring's directory asks for 0x%x", mask);

  GstHarness *sink = sink_harness_new (ring, 1u << 20, NULL);
  gst_harness_set_src_caps_str (sink, "application/x-test");
  for (guint i = 0; i < 2; i++) {
    GstBuffer *buf = make_buffer (i, 100, 1, 0);
    GST_BUFFER_PTS (buf) = i * GST_SECOND;
    fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
    GstBuffer *got = pull_buffer (src);
    fail_unless (got != NULL, "buffer %u did not arrive", i);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (got), i * GST_SECOND);
    gst_buffer_unref (got);
  }
  /* attached: nothing is watched while streaming */
  fail_unless_equals_int (inotify_watches_on (dir, &mask), 0);
  push_eos_bounded (sink);
  GstEvent *eos = pull_event_of_type_any_until_eos (src);
  gst_event_unref (eos);
  gchar *order = order_log_get (&log);
  fail_unless_equals_string (order,
      "stream-start caps:application/x-test segment buffer buffer eos");
  g_free (order);
  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  order_log_free (&log);
  fail_unless_equals_int (inotify_watches_on (dir, &mask), 0);
}

/* A source started before its producer waits for the ring on an inotify
 * watch of the ring's directory (so it opens the ring as soon as the ring
 * appears, not at its next look every 20 ms, which stays as the fallback)
 * and gets the whole stream; the watch is removed once it attached, and
 * after stop the process has exactly the descriptors it had before (a
 * first round makes GStreamer's own lasting ones). */
GST_START_TEST (test_src_waits_on_ring_directory)
{
  announce ("src started first: waits on a watch of the ring's directory, gets the stream");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  src_first_round (dir, ring);
  guint fds = count_fds ();
  src_first_round (dir, ring);
  fail_unless_equals_int (count_fds (), fds);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* A source waiting on the watch of its ring's directory: a flush-start
 * wakes it and its streaming task pauses, removing the watch; after the
 * flush-stop it waits on a watch again and gets the stream when the
 * producer comes. A state change to NULL while it waits returns (the
 * elapsed times are printed) and leaves no descriptor open. */
GST_START_TEST (test_src_unlock_while_waiting_on_watch)
{
  announce ("src waiting on a watch: flush and stop wake it, nothing left open");
  const gchar *dir = test_dir_new ();
  gchar *ring = g_build_filename (dir, "ring", NULL);
  guint mask = 0;

  /* flush while waiting */
  OrderLog log;
  GstHarness *src = src_harness_new (ring, NULL, &log);
  wait_watches_on (dir, 1, &mask);
  gint64 t0 = g_get_monotonic_time ();
  fail_unless (gst_element_send_event (src->element, gst_event_new_flush_start ()));
  wait_task_paused (src->element);
  gint64 flush_us = g_get_monotonic_time () - t0;
  fail_unless_equals_int (inotify_watches_on (dir, &mask), 0);
  fail_unless (gst_element_send_event (src->element, gst_event_new_flush_stop (TRUE)));
  wait_watches_on (dir, 1, &mask);
  GstHarness *sink = sink_harness_new (ring, 1u << 20, NULL);
  gst_harness_set_src_caps_str (sink, "application/x-test");
  GstBuffer *buf = make_buffer (0, 100, 1, 0);
  GST_BUFFER_PTS (buf) = 0;
  fail_unless_equals_int (gst_harness_push (sink, buf), GST_FLOW_OK);
  GstBuffer *got = pull_buffer (src);
  fail_unless (got != NULL, "no buffer after the flush");
  gst_buffer_unref (got);
  gchar *order = order_log_get (&log);
  fail_unless_equals_string (order, "stream-start caps:application/x-test segment buffer");
  g_free (order);
  gst_harness_teardown (sink);
  gst_harness_teardown (src);
  order_log_free (&log);
  fail_unless_equals_int (dir_entries (dir), 0);

  /* stop while waiting */
  guint fds = count_fds ();
  src = src_harness_new (ring, NULL, NULL);
  wait_watches_on (dir, 1, &mask);
  t0 = g_get_monotonic_time ();
  fail_unless_equals_int (gst_element_set_state (src->element, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gint64 stop_us = g_get_monotonic_time () - t0;
  fail_unless_equals_int (inotify_watches_on (dir, &mask), 0);
  gst_harness_teardown (src);
  fail_unless_equals_int (count_fds (), fds);
  g_print ("    flush-start to paused task %.2f ms, PLAYING -> NULL %.2f ms\n",
      flush_us / 1000.0, stop_us / 1000.0);
  fail_unless_equals_int (dir_entries (dir), 0);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

static Suite *
ipcring_elements_suite (void)
{
  Suite *s = suite_create ("ipcring-elements");
  TCase *tc = tcase_create ("general");

  tcase_set_timeout (tc, 120);
  tcase_add_unchecked_fixture (tc, suite_dir_setup, suite_dir_teardown);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_registration_and_defaults);
  tcase_add_test (tc, test_stream_carried_exactly);
  tcase_add_test (tc, test_src_keeps_stream_segment);
  tcase_add_test (tc, test_caps_renegotiation);
  tcase_add_test (tc, test_sink_handoff);
  tcase_add_test (tc, test_src_segment_before_caps);
  tcase_add_test (tc, test_sink_refuses_data_before_caps);
  tcase_add_test (tc, test_largest_buffer);
  tcase_add_test (tc, test_fd_rings);
  tcase_add_test (tc, test_sink_without_ring);
  tcase_add_test (tc, test_sink_bad_capacity);
  tcase_add_test (tc, test_sink_missing_directory);
  tcase_add_test (tc, test_second_sink_busy);
  tcase_add_test (tc, test_src_not_a_ring);
  tcase_add_test (tc, test_src_short_text_file);
  tcase_add_test (tc, test_src_missing_directory);
  tcase_add_test (tc, test_second_src_busy);
  tcase_add_test (tc, test_sink_stops_while_blocked);
  tcase_add_test (tc, test_src_stops_while_waiting_for_ring);
  tcase_add_test (tc, test_src_stops_while_blocked_in_peek);
  tcase_add_test (tc, test_flush_while_blocked);
  tcase_add_test (tc, test_flushing_seek_while_blocked);
  tcase_add_test (tc, test_src_segment_after_flush);
  tcase_add_test (tc, test_src_pad_offset);
  tcase_add_test (tc, test_src_waits_on_ring_directory);
  tcase_add_test (tc, test_src_unlock_while_waiting_on_watch);
  return s;
}

GST_CHECK_MAIN (ipcring_elements);
