/* ipcringsrc's payload handling: zero copy, copy, and buffers held
 * downstream. An ipcringsink harness writes a ring in this process; an
 * ipcringsrc harness reads it, and its harness queue is the downstream that
 * holds buffers for as long as a test likes. What the tests pin down:
 *
 *  - payload=zero-copy: a buffer's memory is ipcringsrc's ring memory, read
 *    only, inside the source's private mapping of the ring file, right
 *    after the record's header, with the bytes that were sent;
 *  - payload=copy: plain system memory, the same bytes;
 *  - payload=auto (the default): ring memory for video/x-raw and
 *    audio/x-raw, copies for other caps, switching with the caps;
 *  - downstream holding more than the ring's capacity (mapped or not) does
 *    not stop the stream, and held buffers keep their bytes while the
 *    producer overwrites the ring (both eviction triggers: held records
 *    spanning more than half the ring, and a producer waiting for room
 *    with one held record larger than half the ring);
 *  - EOS arrives, and the producer's EOS completes, with buffers held; the
 *    source goes to NULL and is freed with buffers held, which keep their
 *    bytes and are released later;
 *  - stopping and restarting with held buffers: the ring is read again at
 *    once (the old reader detached);
 *  - no sticky event stays pending on the source pad once buffers flow
 *    (a pending one is offered again before every buffer).
 *
 * Ring files live in a fresh directory (in /dev/shm when there is one),
 * removed at the end of each test and at exit. */
#define _GNU_SOURCE
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

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

#define RING_MEMORY_TYPE "IpcRingMemory"
#define WAIT_MS 10000

/* ---- Temporary directory --------------------------------------------- */

#define IPCRING_TEST_DIR_NAME "ipcring-srczc"
#include "gsttestdir.h"

static void
announce (const gchar * what)
{
  g_print ("  - %s\n", what);
}

/* ---- Buffers ------------------------------------------------------------ */

static guint8
pattern_byte (guint seed, gsize i)
{
  return (guint8) ((i * 131u + (i >> 9) + seed * 29u + 7u) & 0xff);
}

static GstBuffer *
make_buffer (guint seed, gsize size)
{
  GstBuffer *buf = gst_buffer_new_allocate (NULL, size, NULL);
  GstMapInfo map;
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_WRITE));
  for (gsize i = 0; i < size; i++)
    map.data[i] = pattern_byte (seed, i);
  gst_buffer_unmap (buf, &map);
  GST_BUFFER_PTS (buf) = seed * GST_MSECOND;
  GST_BUFFER_DURATION (buf) = GST_MSECOND;
  return buf;
}

/* The index of the first byte that differs from the pattern, or -1. */
static gssize
pattern_mismatch (const guint8 * data, gsize size, guint seed)
{
  for (gsize i = 0; i < size; i++)
    if (data[i] != pattern_byte (seed, i))
      return (gssize) i;
  return -1;
}

static void
check_buffer (GstBuffer * buf, guint seed, gsize size)
{
  fail_unless_equals_uint64 (gst_buffer_get_size (buf), size);
  GstMapInfo map;
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
  gssize bad = pattern_mismatch (map.data, map.size, seed);
  fail_unless (bad < 0, "buffer %u: byte %" G_GSSIZE_FORMAT " is %u, sent %u", seed, bad,
      bad < 0 ? 0 : map.data[bad], bad < 0 ? 0 : pattern_byte (seed, bad));
  gst_buffer_unmap (buf, &map);
}

static gboolean
is_ring_memory (GstBuffer * buf)
{
  return gst_buffer_n_memory (buf) == 1
      && gst_memory_is_type (gst_buffer_peek_memory (buf, 0), RING_MEMORY_TYPE);
}

/* The permissions of the mapping of this process that holds addr, and
 * whether that mapping is of the file path. */
static gboolean
mapping_of (gconstpointer addr, const gchar * path, gchar perms[5])
{
  gchar *maps = NULL;
  fail_unless (g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL));
  gboolean found = FALSE;
  gchar **lines = g_strsplit (maps, "\n", -1);
  for (gchar ** l = lines; *l && !found; l++) {
    guint64 lo, hi;
    gchar p[5] = { 0 };
    int name_at = 0;
    if (sscanf (*l, "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x %4s %*s %*s %*s %n",
            &lo, &hi, p, &name_at) < 3 || name_at == 0)
      continue;
    if ((guintptr) addr < lo || (guintptr) addr >= hi)
      continue;
    found = strcmp (*l + name_at, path) == 0;
    memcpy (perms, p, 5);
  }
  g_strfreev (lines);
  g_free (maps);
  return found;
}

/* The reader generation in a ring's header, read through a mapping of its
 * own so that looking does not attach. */
static guint64
ring_reader_generation (const gchar * path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  guint64 gen = 0;
  if (fd < 0)
    return 0;
  void *p = mmap (NULL, sizeof (struct ipcring_shared), PROT_READ, MAP_SHARED, fd, 0);
  if (p != MAP_FAILED) {
    struct ipcring_shared *sh = p;
    gen = atomic_load_explicit (&sh->reader_generation, memory_order_acquire);
    munmap (p, sizeof (struct ipcring_shared));
  }
  close (fd);
  return gen;
}

/* Wait (bounded) until a reader of generation >= gen has attached: what the
 * producer writes before that belongs to the earlier reader, and a new one
 * skips it. */
static void
wait_reader_attached (const gchar * path, guint64 gen)
{
  gint64 end = g_get_monotonic_time () + WAIT_MS * 1000;
  while (ring_reader_generation (path) < gen) {
    fail_unless (g_get_monotonic_time () < end, "no reader attached to %s within %d ms",
        path, WAIT_MS);
    g_usleep (500);
  }
}

/* ---- Harnesses ---------------------------------------------------------- */

static GstHarness *
sink_harness_new (const gchar * ring, guint64 capacity, const gchar * caps)
{
  GstElement *e = gst_element_factory_make ("ipcringsink", NULL);
  fail_unless (e != NULL, "no ipcringsink");
  g_object_set (e, "ring", ring, "capacity", capacity, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", NULL);
  gst_object_unref (e);
  gst_harness_set_src_caps_str (h, caps);
  return h;
}

static GstHarness *
src_harness_new (const gchar * ring, const gchar * payload)
{
  GstHarness *h = gst_harness_new ("ipcringsrc");
  fail_unless (h != NULL, "no ipcringsrc");
  g_object_set (h->element, "ring", ring, NULL);
  if (payload)
    gst_util_set_object_arg (G_OBJECT (h->element), "payload", payload);
  gst_harness_play (h);
  return h;
}

/* The next buffer from the source within WAIT_MS. */
static GstBuffer *
pull_bounded (GstHarness * h, guint seed)
{
  gint64 end = g_get_monotonic_time () + WAIT_MS * 1000;
  for (;;) {
    GstBuffer *buf = gst_harness_try_pull (h);
    if (buf)
      return buf;
    fail_unless (g_get_monotonic_time () < end, "buffer %u did not arrive within %d ms",
        seed, WAIT_MS);
    g_usleep (1000);
  }
}

/* The producer: pushes buffers first .. first+n-1 of size bytes (and EOS if
 * asked) from a thread, since a push waits while the ring is full. */
typedef struct
{
  GstHarness *h;
  guint first, n;
  gsize size;
  gboolean eos;
  gint done;
  gint pushed;
  GstFlowReturn ret;
  gboolean eos_handled;
  GThread *thread;
} Producer;

static gpointer
producer_run (gpointer data)
{
  Producer *p = data;
  p->ret = GST_FLOW_OK;
  for (guint i = 0; i < p->n && p->ret == GST_FLOW_OK; i++) {
    p->ret = gst_harness_push (p->h, make_buffer (p->first + i, p->size));
    g_atomic_int_inc (&p->pushed);
  }
  if (p->eos)
    p->eos_handled = gst_harness_push_event (p->h, gst_event_new_eos ());
  g_atomic_int_set (&p->done, 1);
  return NULL;
}

static Producer *
producer_start (GstHarness * sink, guint first, guint n, gsize size, gboolean eos)
{
  Producer *p = g_new0 (Producer, 1);
  p->h = sink;
  p->first = first;
  p->n = n;
  p->size = size;
  p->eos = eos;
  p->thread = g_thread_new ("producer", producer_run, p);
  return p;
}

/* Waits (bounded) for the producer to finish, checks it succeeded, frees it. */
static void
producer_finish (Producer * p)
{
  gint64 end = g_get_monotonic_time () + WAIT_MS * 1000;
  while (!g_atomic_int_get (&p->done)) {
    fail_unless (g_get_monotonic_time () < end,
        "the producer is stuck after %d of %u buffers%s", g_atomic_int_get (&p->pushed),
        p->n, p->eos ? " (or in EOS)" : "");
    g_usleep (1000);
  }
  g_thread_join (p->thread);
  fail_unless_equals_int (p->ret, GST_FLOW_OK);
  if (p->eos)
    fail_unless (p->eos_handled, "the sink refused EOS");
  g_free (p);
}

/* ---- Tests -------------------------------------------------------------- */

#define VIDEO_CAPS "video/x-raw, format=(string)GRAY8, width=(int)100, height=(int)100, framerate=(fraction)30/1"
#define AUDIO_CAPS "audio/x-raw, format=(string)S16LE, layout=(string)interleaved, rate=(int)48000, channels=(int)2"
#define H264_CAPS "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au"
#define OCTET_CAPS "application/octet-stream"

/* payload is an enum property, default auto, values copy, zero-copy and
 * auto, settable in READY. */
GST_START_TEST (test_payload_property)
{
  announce ("payload: enum copy/zero-copy/auto, default auto, mutable in READY");
  GstElement *src = gst_element_factory_make ("ipcringsrc", NULL);
  fail_unless (src != NULL);
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (src), "payload");
  fail_unless (ps != NULL && G_IS_PARAM_SPEC_ENUM (ps), "no enum property payload");
  GEnumClass *ec = G_PARAM_SPEC_ENUM (ps)->enum_class;
  GEnumValue *def = g_enum_get_value (ec, G_PARAM_SPEC_ENUM (ps)->default_value);
  fail_unless (def != NULL);
  fail_unless_equals_string (def->value_nick, "auto");
  fail_unless_equals_int (ec->n_values, 3);
  fail_unless (g_enum_get_value_by_nick (ec, "copy") != NULL);
  fail_unless (g_enum_get_value_by_nick (ec, "zero-copy") != NULL);
  fail_unless (ps->flags & GST_PARAM_MUTABLE_READY);
  gst_util_set_object_arg (G_OBJECT (src), "payload", "copy");
  gint v = -1;
  g_object_get (src, "payload", &v, NULL);
  fail_unless_equals_int (v, g_enum_get_value_by_nick (ec, "copy")->value);
  gst_object_unref (src);
}

GST_END_TEST;

/* payload=zero-copy: the buffer's only memory is the ring's (read only), in
 * a private mapping of the ring file (the sink and the reader map it
 * shared), and the 48 bytes before it are the record's BUFF header with this
 * buffer's PTS: the memory is the record itself. The bytes are the ones
 * sent; a write map gives a copy, the ring stays as it was. */
GST_START_TEST (test_zero_copy_is_ring_record)
{
  announce ("zero-copy: the buffer's memory is the ring record, read only, same bytes");
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 1 << 20, OCTET_CAPS);
  GstHarness *src = src_harness_new (ring, "zero-copy");
  Producer *p = producer_start (sink, 1, 4, 10000, FALSE);
  for (guint i = 1; i <= 4; i++) {
    GstBuffer *buf = pull_bounded (src, i);
    check_buffer (buf, i, 10000);
    fail_unless (is_ring_memory (buf), "buffer %u is not ring memory", i);
    GstMemory *mem = gst_buffer_peek_memory (buf, 0);
    fail_unless (GST_MEMORY_IS_READONLY (mem));
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), i * GST_MSECOND);
    GstMapInfo map;
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    gchar perms[5] = { 0 };
    fail_unless (mapping_of (map.data, ring, perms), "buffer %u is not in a mapping of %s", i,
        ring);
    fail_unless (perms[3] == 'p', "buffer %u is in a %s mapping, not the private view", i,
        perms);
    IpcRingWireBuffer hdr;
    memcpy (&hdr, map.data - sizeof hdr, sizeof hdr);
    fail_unless_equals_uint64 (hdr.pts, i * GST_MSECOND);
    fail_unless_equals_uint64 (hdr.duration, GST_MSECOND);
    const guint8 *ring_bytes = map.data;
    gst_buffer_unmap (buf, &map);

    /* a write map of a writable buffer gets its own copy */
    buf = gst_buffer_make_writable (buf);
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_WRITE));
    fail_unless (map.data != ring_bytes, "a write map got the ring's bytes");
    memset (map.data, 0xee, map.size);
    gst_buffer_unmap (buf, &map);
    fail_unless (pattern_mismatch (ring_bytes, 10000, i) < 0, "the ring record changed");
    fail_unless (!is_ring_memory (buf));
    gst_buffer_unref (buf);
  }
  producer_finish (p);
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* payload=copy: system memory, never the ring's, even for raw video. */
GST_START_TEST (test_copy_mode_copies)
{
  announce ("copy: buffers are system memory with the bytes sent, also for raw video");
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 1 << 20, VIDEO_CAPS);
  GstHarness *src = src_harness_new (ring, "copy");
  Producer *p = producer_start (sink, 1, 4, 10000, FALSE);
  for (guint i = 1; i <= 4; i++) {
    GstBuffer *buf = pull_bounded (src, i);
    check_buffer (buf, i, 10000);
    fail_unless (gst_buffer_n_memory (buf) >= 1);
    for (guint m = 0; m < gst_buffer_n_memory (buf); m++)
      fail_if (gst_memory_is_type (gst_buffer_peek_memory (buf, m), RING_MEMORY_TYPE),
          "buffer %u has ring memory in copy mode", i);
    GstMapInfo map;
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    gchar perms[5] = { 0 };
    fail_if (mapping_of (map.data, ring, perms), "buffer %u is in a mapping of the ring", i);
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
  }
  producer_finish (p);
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* payload=auto (default): the caps of each buffer decide, also when they
 * change mid-stream: raw video and raw audio are ring memory, H.264 and
 * application/octet-stream are copies. */
GST_START_TEST (test_auto_picks_by_caps)
{
  announce ("auto: ring memory for video/x-raw and audio/x-raw, copies for other caps");
  static const struct
  {
    const gchar *caps;
    gboolean zero_copy;
  } cases[] = {
    {VIDEO_CAPS, TRUE}, {H264_CAPS, FALSE}, {AUDIO_CAPS, TRUE}, {OCTET_CAPS, FALSE},
    {VIDEO_CAPS, TRUE},
  };
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 1 << 20, cases[0].caps);
  GstHarness *src = src_harness_new (ring, NULL);
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    if (c > 0)
      gst_harness_set_src_caps_str (sink, cases[c].caps);
    Producer *p = producer_start (sink, c * 10, 2, 5000, FALSE);
    for (guint i = 0; i < 2; i++) {
      GstBuffer *buf = pull_bounded (src, c * 10 + i);
      check_buffer (buf, c * 10 + i, 5000);
      fail_unless (is_ring_memory (buf) == cases[c].zero_copy, "%s: %s, expected %s",
          cases[c].caps, is_ring_memory (buf) ? "ring memory" : "a copy",
          cases[c].zero_copy ? "ring memory" : "a copy");
      gst_buffer_unref (buf);
    }
    producer_finish (p);
    GstCaps *now = gst_pad_get_current_caps (src->sinkpad);
    GstCaps *want = gst_caps_from_string (cases[c].caps);
    fail_unless (gst_caps_is_equal (now, want));
    gst_caps_unref (now);
    gst_caps_unref (want);
  }
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* Downstream holds n buffers of size bytes, every one of them (the first
 * `mapped` also mapped), while the producer writes them all into a ring of
 * capacity bytes that cannot hold them together. Every buffer arrives, and
 * every held one still has its bytes after the producer wrote the rest over
 * its ring room; the mapped ones through the pointer they were mapped at. */
static void
hold_past_capacity (guint64 capacity, gsize size, guint n, guint mapped)
{
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, capacity, VIDEO_CAPS);
  GstHarness *src = src_harness_new (ring, "zero-copy");
  fail_unless (n * size > 2 * capacity, "the test does not exceed the ring");
  GstBuffer **held = g_new0 (GstBuffer *, n);
  GstMapInfo *maps = g_new0 (GstMapInfo, n);
  Producer *p = producer_start (sink, 0, n, size, FALSE);
  guint n_ring = 0;
  for (guint i = 0; i < n; i++) {
    held[i] = pull_bounded (src, i);
    n_ring += is_ring_memory (held[i]);
    if (i < mapped) {
      fail_unless (gst_buffer_map (held[i], &maps[i], GST_MAP_READ));
      fail_unless (pattern_mismatch (maps[i].data, size, i) < 0, "buffer %u arrived wrong", i);
    }
  }
  producer_finish (p);
  /* the first was ring memory (mapped, if any are), so it was evicted; once
   * the ring's pages all hold evicted buffers that are still alive, new
   * records are copied instead */
  fail_unless (is_ring_memory (held[0]), "the first buffer is not ring memory");
  g_print ("    %u of %u buffers were ring memory\n", n_ring, n);
  for (guint i = 0; i < n; i++) {
    if (i < mapped) {
      fail_unless (pattern_mismatch (maps[i].data, size, i) < 0,
          "mapped buffer %u changed after the ring was overwritten", i);
      gst_buffer_unmap (held[i], &maps[i]);
    }
    check_buffer (held[i], i, size);
  }
  gst_harness_teardown (src);
  /* released after the source is gone */
  for (guint i = 0; i < n; i++) {
    check_buffer (held[i], i, size);
    gst_buffer_unref (held[i]);
  }
  g_free (maps);
  g_free (held);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

/* Many held records spanning more than half the ring: the oldest are
 * evicted as new ones come. 40 x 12000 bytes through 64 KiB, the first
 * half mapped the whole time. */
GST_START_TEST (test_hold_past_capacity)
{
  announce ("40 x 12000 B held (20 mapped) through a 64 KiB ring: no deadlock, bytes kept");
  hold_past_capacity (64 * 1024, 12000, 40, 20);
}

GST_END_TEST;

/* One held record larger than half the ring is never evicted for its span
 * alone (it is the newest); the producer then waits for room with nothing
 * left to read, and the source evicts it. 10 x 40000 bytes through 64 KiB,
 * all mapped. */
GST_START_TEST (test_hold_writer_waits)
{
  announce ("10 x 40000 B held and mapped through a 64 KiB ring: the waiting producer "
      "gets room");
  hold_past_capacity (64 * 1024, 40000, 10, 10);
}

GST_END_TEST;

/* Buffers held downstream at EOS: EOS arrives, the producer's EOS (which
 * waits until the reader has released everything) completes, and the
 * source goes to NULL and is freed while the buffers are still held; they
 * keep their bytes and are released afterwards. */
GST_START_TEST (test_eos_with_held_buffers)
{
  announce ("EOS with held buffers: arrives, the producer finishes, NULL and free are fine");
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 256 * 1024, VIDEO_CAPS);
  GstHarness *src = src_harness_new (ring, "zero-copy");
  const guint n = 8;
  Producer *p = producer_start (sink, 0, n, 20000, TRUE);
  GstBuffer *held[8];
  for (guint i = 0; i < n; i++) {
    held[i] = pull_bounded (src, i);
    fail_unless (is_ring_memory (held[i]), "buffer %u is not ring memory", i);
  }
  /* EOS reaches the source's harness while all of them are held */
  gint64 end = g_get_monotonic_time () + WAIT_MS * 1000;
  gboolean eos = FALSE;
  while (!eos) {
    GstEvent *ev = gst_harness_try_pull_event (src);
    if (ev) {
      eos = GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
      gst_event_unref (ev);
      continue;
    }
    fail_unless (g_get_monotonic_time () < end, "no EOS within %d ms with buffers held",
        WAIT_MS);
    g_usleep (1000);
  }
  /* the sink's EOS waits for the reader to release everything */
  producer_finish (p);
  gst_harness_teardown (src);
  for (guint i = 0; i < n; i++)
    check_buffer (held[i], i, 20000);
  gst_harness_teardown (sink);
  fail_if (g_file_test (ring, G_FILE_TEST_EXISTS), "the sink left its ring after EOS");
  for (guint i = 0; i < n; i++) {
    check_buffer (held[i], i, 20000);
    gst_buffer_unref (held[i]);
  }
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* The source stops (PLAYING -> NULL) with buffers held and starts again on
 * the same ring: the new reader attaches at once (the old one detached,
 * not waiting for the held buffers), the stream goes on, and the held
 * buffers keep their bytes while the producer writes over their room. */
GST_START_TEST (test_restart_with_held_buffers)
{
  announce ("stop and restart with held buffers: reads again at once, held bytes kept");
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 64 * 1024, VIDEO_CAPS);
  GstHarness *src = src_harness_new (ring, "zero-copy");
  GstBuffer *held[4];
  Producer *p = producer_start (sink, 0, 4, 10000, FALSE);
  for (guint i = 0; i < 4; i++)
    held[i] = pull_bounded (src, i);
  producer_finish (p);

  fail_unless_equals_int (gst_element_set_state (src->element, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gst_harness_play (src);
  wait_reader_attached (ring, 2);
  /* more than the ring holds, over the held buffers' room */
  p = producer_start (sink, 100, 20, 10000, FALSE);
  for (guint i = 0; i < 20; i++) {
    GstBuffer *buf = pull_bounded (src, 100 + i);
    check_buffer (buf, 100 + i, 10000);
    gst_buffer_unref (buf);
  }
  producer_finish (p);
  for (guint i = 0; i < 4; i++) {
    check_buffer (held[i], i, 10000);
    gst_buffer_unref (held[i]);
  }
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* Sub-buffers (shared memory) and copies of a ring buffer outlive it and
 * keep their bytes after eviction; spans of sub-buffers merge back. */
GST_START_TEST (test_share_and_copy)
{
  announce ("sub-buffers and copies of ring memory keep their bytes past the record");
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 64 * 1024, VIDEO_CAPS);
  GstHarness *src = src_harness_new (ring, "zero-copy");
  Producer *p = producer_start (sink, 0, 20, 10000, FALSE);
  GstBuffer *first = pull_bounded (src, 0);
  fail_unless (is_ring_memory (first));
  GstBuffer *a = gst_buffer_copy_region (first, GST_BUFFER_COPY_MEMORY, 0, 4000);
  GstBuffer *b = gst_buffer_copy_region (first, GST_BUFFER_COPY_MEMORY, 4000, 6000);
  GstBuffer *deep = gst_buffer_copy_deep (first);
  fail_unless (is_ring_memory (a) && is_ring_memory (b), "sub-buffers are not shared");
  fail_if (is_ring_memory (deep), "a deep copy is still ring memory");
  GstBuffer *joined = gst_buffer_append (gst_buffer_ref (a), gst_buffer_ref (b));
  gst_buffer_unref (first);
  for (guint i = 1; i < 20; i++)
    gst_buffer_unref (pull_bounded (src, i));
  producer_finish (p);
  check_buffer (deep, 0, 10000);
  check_buffer (joined, 0, 10000);
  GstMapInfo map;
  fail_unless (gst_buffer_map (b, &map, GST_MAP_READ));
  for (gsize i = 0; i < map.size; i++)
    fail_unless (map.data[i] == pattern_byte (0, 4000 + i), "sub-buffer byte %" G_GSIZE_FORMAT,
        i);
  gst_buffer_unmap (b, &map);
  gst_buffer_unref (a);
  gst_buffer_unref (b);
  gst_buffer_unref (joined);
  gst_buffer_unref (deep);
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

/* GstBaseSrc pushes a segment of its own before the first buffer, which the
 * source keeps from going downstream. Once buffers flow no sticky event may
 * stay pending on the source pad: a pending one is offered (and refused)
 * again before every buffer. */
GST_START_TEST (test_no_pending_sticky_events)
{
  announce ("no sticky event stays pending on the source pad while buffers flow");
  gchar *ring = ring_path_new ();
  GstHarness *sink = sink_harness_new (ring, 1 << 20, OCTET_CAPS);
  GstHarness *src = src_harness_new (ring, NULL);
  Producer *p = producer_start (sink, 0, 5, 256, FALSE);
  for (guint i = 0; i < 5; i++)
    gst_buffer_unref (pull_bounded (src, i));
  producer_finish (p);
  GstPad *pad = gst_element_get_static_pad (src->element, "src");
  GST_OBJECT_LOCK (pad);
  gboolean pending = GST_OBJECT_FLAG_IS_SET (pad, GST_PAD_FLAG_PENDING_EVENTS);
  GST_OBJECT_UNLOCK (pad);
  fail_if (pending, "a sticky event stays pending on the source pad");
  /* downstream got exactly one segment, the stream's */
  guint segments = 0;
  GstEvent *ev;
  while ((ev = gst_harness_try_pull_event (src))) {
    segments += GST_EVENT_TYPE (ev) == GST_EVENT_SEGMENT;
    gst_event_unref (ev);
  }
  fail_unless_equals_int (segments, 1);
  gst_object_unref (pad);
  gst_harness_teardown (src);
  gst_harness_teardown (sink);
  g_free (ring);
  test_dir_cleanup ();
}

GST_END_TEST;

static Suite *
ipcring_srczc_suite (void)
{
  Suite *s = suite_create ("ipcring-srczc");
  TCase *tc = tcase_create ("general");

  tcase_set_timeout (tc, 120);
  tcase_add_unchecked_fixture (tc, suite_dir_setup, suite_dir_teardown);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_payload_property);
  tcase_add_test (tc, test_zero_copy_is_ring_record);
  tcase_add_test (tc, test_copy_mode_copies);
  tcase_add_test (tc, test_auto_picks_by_caps);
  tcase_add_test (tc, test_hold_past_capacity);
  tcase_add_test (tc, test_hold_writer_waits);
  tcase_add_test (tc, test_eos_with_held_buffers);
  tcase_add_test (tc, test_restart_with_held_buffers);
  tcase_add_test (tc, test_share_and_copy);
  tcase_add_test (tc, test_no_pending_sticky_events);
  return s;
}

GST_CHECK_MAIN (ipcring_srczc);
