/* Cross-process tests of ipcringsink and ipcringsrc: a producer process and a
 * consumer process, each running its own pipeline, connected by a ring file.
 *
 * The test program itself never initialises GStreamer: every pipeline runs in
 * a forked child that calls gst_init() after the fork (or in an exec'd
 * gst-launch-1.0). A child records what passes its "rec" element's sink pad
 * (events and buffers with a SHA-1 of their data) in a text file, writes one
 * byte per buffer ('B') and per bus message ('M') to a pipe the parent
 * watches, and exits 0 on EOS (or a planned stop), 2 on an error message and
 * 3 if nothing ended the stream in time. Every child is reaped with a bound,
 * every ring lives in a fresh temporary directory that is removed at exit.
 *
 * Latency bounds that the elements promise ("within 1 s") are asserted with
 * 2x slack, so that a loaded 2-core machine does not make the test flaky; the
 * measured values are printed.
 */
#include "../ring/testutil.h"

#include <fcntl.h>
#include <poll.h>

#include <gst/gst.h>

#ifndef IPCRING_BUILD_DIR
#define IPCRING_BUILD_DIR "."
#endif

/* In a sanitizer build the plugin needs the sanitizer runtime, which only
 * instrumented programs carry: gst-plugin-scanner and gst-launch-1.0 cannot
 * load it. Then plugins are scanned in the (instrumented) children themselves,
 * into a registry of our own, and the cases that exec gst-launch-1.0 are
 * skipped (they run in the ordinary build). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                  \
    __has_feature(memory_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANITIZED_BUILD 1
#endif
#endif
#ifndef SANITIZED_BUILD
#define SANITIZED_BUILD 0
#endif

/* The elements promise 1 s; assert 2 s (see above). */
#define SPEC_LATENCY_NS (1000LL * 1000000LL)
#define BOUND_LATENCY_NS (2 * SPEC_LATENCY_NS)

#define LIVE_320 "video/x-raw,format=I420,width=320,height=240,framerate=30/1"
#define LIVE_160 "video/x-raw,format=I420,width=160,height=120,framerate=30/1"
#define FRAME_320 ((size_t)320 * 240 * 3 / 2)
#define FRAME_160 ((size_t)160 * 120 * 3 / 2)

/* ---- Child side: run one pipeline ------------------------------------- */

static FILE *rec_out;
static int rec_notify = -1;

static void notify(char c)
{
  if (rec_notify >= 0) {
    ssize_t r = write(rec_notify, &c, 1);
    (void)r;
  }
}

static void record_event(GstEvent *ev)
{
  switch (GST_EVENT_TYPE(ev)) {
  case GST_EVENT_STREAM_START: {
    const gchar *id = NULL;
    guint group = 0;
    gboolean has_group = gst_event_parse_group_id(ev, &group);
    gst_event_parse_stream_start(ev, &id);
    fprintf(rec_out, "E stream-start id=%s group=%d:%u\n", id ? id : "(null)", has_group,
            group);
    break;
  }
  case GST_EVENT_CAPS: {
    GstCaps *caps;
    gst_event_parse_caps(ev, &caps);
    gchar *s = gst_caps_to_string(caps);
    fprintf(rec_out, "E caps %s\n", s);
    g_free(s);
    break;
  }
  case GST_EVENT_SEGMENT: {
    const GstSegment *s;
    gst_event_parse_segment(ev, &s);
    fprintf(rec_out,
            "E segment format=%d flags=0x%x rate=%g applied=%g base=%" G_GUINT64_FORMAT
            " offset=%" G_GUINT64_FORMAT " start=%" G_GUINT64_FORMAT " stop=%" G_GUINT64_FORMAT
            " time=%" G_GUINT64_FORMAT " position=%" G_GUINT64_FORMAT
            " duration=%" G_GUINT64_FORMAT "\n",
            (int)s->format, (unsigned)s->flags, s->rate, s->applied_rate, s->base, s->offset,
            s->start, s->stop, s->time, s->position, s->duration);
    break;
  }
  default:
    fprintf(rec_out, "E %s\n", GST_EVENT_TYPE_NAME(ev));
    break;
  }
}

static void record_buffer(GstPad *pad, GstBuffer *buf)
{
  GstMapInfo map;
  gchar *sha = NULL;
  if (gst_buffer_map(buf, &map, GST_MAP_READ)) {
    sha = g_compute_checksum_for_data(G_CHECKSUM_SHA1, map.data, map.size);
    gst_buffer_unmap(buf, &map);
  }
  GstCaps *caps = gst_pad_get_current_caps(pad);
  gchar *cs = caps ? gst_caps_to_string(caps) : g_strdup("none");
  /* Buffer flags only: the low bits are the mini-object's own. */
  guint flags = GST_BUFFER_FLAGS(buf) & ~(guint)(GST_MINI_OBJECT_FLAG_LAST - 1);
  fprintf(rec_out,
          "B pts=%" G_GUINT64_FORMAT " dts=%" G_GUINT64_FORMAT " dur=%" G_GUINT64_FORMAT
          " off=%" G_GUINT64_FORMAT " offend=%" G_GUINT64_FORMAT " flags=0x%x size=%"
          G_GSIZE_FORMAT " sha1=%s caps=%s\n",
          GST_BUFFER_PTS(buf), GST_BUFFER_DTS(buf), GST_BUFFER_DURATION(buf),
          GST_BUFFER_OFFSET(buf), GST_BUFFER_OFFSET_END(buf), flags, gst_buffer_get_size(buf),
          sha ? sha : "unmappable", cs);
  g_free(cs);
  g_free(sha);
  if (caps)
    gst_caps_unref(caps);
}

static GstPadProbeReturn record_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  (void)data;
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    record_buffer(pad, GST_PAD_PROBE_INFO_BUFFER(info));
    notify('B');
  } else if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
    record_event(GST_PAD_PROBE_INFO_EVENT(info));
  }
  return GST_PAD_PROBE_OK;
}

/* Run `launch` until EOS or an error (or, with stop_after_ms > 0, set it to
 * NULL after that long: a clean stop mid-stream). Never returns. */
static void G_GNUC_NORETURN child_pipeline(const char *launch, const char *result,
                                           int notify_fd, int timeout_s, int stop_after_ms)
{
  rec_notify = notify_fd;
  rec_out = fopen(result, "w");
  if (!rec_out)
    _exit(1);
  setvbuf(rec_out, NULL, _IOLBF, 0);

  gst_init(NULL, NULL);
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch(launch, &err);
  if (!pipeline || err) {
    fprintf(rec_out, "R setup msg=%s\n", err ? err->message : "no pipeline");
    fclose(rec_out);
    _exit(1);
  }
  GstElement *rec = gst_bin_get_by_name(GST_BIN(pipeline), "rec");
  if (rec) {
    GstPad *pad = gst_element_get_static_pad(rec, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
                      record_probe, NULL, NULL);
    gst_object_unref(pad);
    gst_object_unref(rec);
  }

  GstBus *bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstClockTime wait = (GstClockTime)(stop_after_ms > 0 ? stop_after_ms : timeout_s * 1000) *
                      GST_MSECOND;
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, wait, GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  int64_t t = tu_now_ns();
  notify('M');

  int code;
  GString *line = g_string_new("R ");
  if (!msg) {
    if (stop_after_ms > 0) {
      g_string_append_printf(line, "stopped t=%lld", (long long)t);
      code = 0;
    } else {
      g_string_append(line, "timeout");
      code = 3;
    }
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    g_string_append_printf(line, "eos t=%lld", (long long)t);
    code = 0;
  } else {
    GError *e = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error(msg, &e, &dbg);
    g_string_append_printf(line, "error t=%lld from=%s msg=%s | %s", (long long)t,
                           GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)), e->message,
                           dbg ? dbg : "");
    g_error_free(e);
    g_free(dbg);
    code = 2;
  }
  if (msg)
    gst_message_unref(msg);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  fprintf(rec_out, "%s\n", line->str);
  g_string_free(line, TRUE);
  fclose(rec_out);
  _exit(code);
}

/* ---- Parent side: children -------------------------------------------- */

typedef struct {
  const char *name;
  pid_t pid;
  int fd;          /* notify pipe (pipelines) or stdout (gst-launch) */
  long nbuf;       /* 'B' bytes seen */
  long nmsg;       /* 'M' bytes seen */
  GString *text;   /* everything read from fd */
  char *result;    /* record file (pipelines) */
  int reaped;
  int status;
} Child;

static void child_pipe(Child *c, int fds[2])
{
  CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
  c->text = g_string_new(NULL);
  c->nbuf = c->nmsg = 0;
  c->reaped = 0;
}

/* Fork a child running `launch` (see child_pipeline). */
static void spawn_pipeline(Child *c, const char *name, const char *launch, int timeout_s,
                           int stop_after_ms)
{
  int fds[2];
  c->name = name;
  child_pipe(c, fds);
  c->result = tu_path(name);
  c->pid = tu_fork();
  if (c->pid == 0) {
    close(fds[0]);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    child_pipeline(launch, c->result, fds[1], timeout_s, stop_after_ms);
  }
  close(fds[1]);
  c->fd = fds[0];
}

/* Fork and exec gst-launch-1.0 with argv (NULL-terminated, without argv[0]),
 * its stdout on our pipe; it inherits our environment (GST_PLUGIN_PATH). */
static void spawn_launch(Child *c, const char *name, const char *const *args)
{
  int fds[2];
  c->name = name;
  child_pipe(c, fds);
  c->result = NULL;
  c->pid = tu_fork();
  if (c->pid == 0) {
    dup2(fds[1], 1);
    const char *argv[32] = { "gst-launch-1.0" };
    int n = 1;
    for (; args[n - 1] && n < 31; n++)
      argv[n] = args[n - 1];
    argv[n] = NULL;
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec gst-launch-1.0: %s\n", strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  c->fd = fds[0];
}

/* Read what the child has written, waiting at most timeout_ms for something.
 * Returns 0 at end of file (the child closed its end), 1 otherwise. */
static int pump(Child *c, int timeout_ms)
{
  if (c->fd < 0)
    return 0;
  struct pollfd p = { c->fd, POLLIN, 0 };
  int n = poll(&p, 1, timeout_ms);
  if (n <= 0)
    return 1;
  char buf[4096];
  ssize_t r = read(c->fd, buf, sizeof buf);
  if (r <= 0) {
    close(c->fd);
    c->fd = -1;
    return 0;
  }
  for (ssize_t i = 0; i < r; i++) {
    c->nbuf += buf[i] == 'B';
    c->nmsg += buf[i] == 'M';
  }
  g_string_append_len(c->text, buf, r);
  return 1;
}

/* Read everything available now. */
static void drain(Child *c)
{
  while (c->fd >= 0) {
    struct pollfd p = { c->fd, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0)
      break;
    pump(c, 0);
  }
}

/* Wait (at most timeout_ms) until the child has passed n buffers. */
static void wait_buffers(Child *c, long n, int timeout_ms)
{
  int64_t end = tu_now_ns() + (int64_t)timeout_ms * 1000000;
  while (c->nbuf < n) {
    int64_t left = (end - tu_now_ns()) / 1000000;
    CHECK(left > 0, "%s: %ld buffers after %d ms, wanted %ld", c->name, c->nbuf, timeout_ms, n);
    CHECK(pump(c, (int)left), "%s ended after %ld buffers, wanted %ld", c->name, c->nbuf, n);
  }
}

/* Wait (at most timeout_ms) until the child's output contains `text`. */
static void wait_text(Child *c, const char *text, int timeout_ms)
{
  int64_t end = tu_now_ns() + (int64_t)timeout_ms * 1000000;
  while (!strstr(c->text->str, text)) {
    int64_t left = (end - tu_now_ns()) / 1000000;
    CHECK(left > 0, "%s: no \"%s\" after %d ms; output:\n%s", c->name, text, timeout_ms,
          c->text->str);
    CHECK(pump(c, (int)left), "%s ended without printing \"%s\"; output:\n%s", c->name, text,
          c->text->str);
  }
}

static int alive(Child *c)
{
  if (c->reaped)
    return 0;
  int st;
  pid_t r = waitpid(c->pid, &st, WNOHANG);
  CHECK(r >= 0, "waitpid: %s", strerror(errno));
  if (r == 0)
    return 1;
  c->reaped = 1;
  c->status = st;
  return 0;
}

/* Reap the child within timeout_ms; otherwise say which one hangs and let
 * tu_reap kill it, reap it and fail. */
static int reap(Child *c, int timeout_ms)
{
  int64_t end = tu_now_ns() + (int64_t)timeout_ms * 1000000;
  while (alive(c) && tu_now_ns() < end)
    tu_sleep_ms(1);
  if (!c->reaped) {
    fprintf(stderr, "%s (pid %d) still running after %d ms\n", c->name, (int)c->pid,
            timeout_ms);
    c->status = tu_reap(c->pid, 0);
    c->reaped = 1;
  }
  drain(c);
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  return c->status;
}

static void child_free(Child *c)
{
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  if (c->text)
    g_string_free(c->text, TRUE);
  c->text = NULL;
  if (c->result)
    unlink(c->result);
  free(c->result);
  c->result = NULL;
}

static void kill9(Child *c)
{
  CHECK(kill(c->pid, SIGKILL) == 0, "kill: %s", strerror(errno));
  int st = reap(c, 5000);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: status %d after SIGKILL", c->name, st);
}

/* Expect a given exit code (0 EOS/stop, 2 error, see child_pipeline). */
static void expect_exit(Child *c, int status, int code)
{
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == code,
        "%s: status %d (exit %d, signal %d), expected exit %d", c->name, status,
        WIFEXITED(status) ? WEXITSTATUS(status) : -1,
        WIFSIGNALED(status) ? WTERMSIG(status) : 0, code);
}

/* ---- Parent side: records --------------------------------------------- */

typedef struct {
  gchar **lines;
  GPtrArray *bufs;    /* "B ..." lines, borrowed from lines */
  GPtrArray *events;  /* "E ..." lines */
  GPtrArray *all;     /* B and E lines in order */
  const char *result; /* the "R ..." line */
} Rec;

static void rec_load(Rec *r, const Child *c)
{
  gchar *text = NULL;
  CHECK(g_file_get_contents(c->result, &text, NULL, NULL), "%s: no record file", c->name);
  r->lines = g_strsplit(text, "\n", -1);
  g_free(text);
  r->bufs = g_ptr_array_new();
  r->events = g_ptr_array_new();
  r->all = g_ptr_array_new();
  r->result = NULL;
  for (gchar **l = r->lines; *l; l++) {
    if (g_str_has_prefix(*l, "B ")) {
      g_ptr_array_add(r->bufs, *l);
      g_ptr_array_add(r->all, *l);
    } else if (g_str_has_prefix(*l, "E ")) {
      g_ptr_array_add(r->events, *l);
      g_ptr_array_add(r->all, *l);
    } else if (g_str_has_prefix(*l, "R ")) {
      r->result = *l;
    }
  }
}

static void rec_free(Rec *r)
{
  g_ptr_array_free(r->bufs, TRUE);
  g_ptr_array_free(r->events, TRUE);
  g_ptr_array_free(r->all, TRUE);
  g_strfreev(r->lines);
}

/* The number after "key=" in a line. */
static guint64 field_u64(const char *line, const char *key)
{
  const char *p = strstr(line, key);
  CHECK(p != NULL, "no %s in \"%s\"", key, line);
  return g_ascii_strtoull(p + strlen(key), NULL, 0);
}

/* The time stamp of the "R ..." line. */
static int64_t result_time(const Rec *r, const char *what)
{
  CHECK(r->result && g_str_has_prefix(r->result, what), "result \"%s\", expected \"%s...\"",
        r->result ? r->result : "(none)", what);
  return (int64_t)field_u64(r->result, "t=");
}

static int ring_exists(const char *path)
{
  return access(path, F_OK) == 0;
}

/* Wait (at most timeout_ms) for a file to appear. */
static void wait_file(const char *path, int timeout_ms)
{
  int64_t end = tu_now_ns() + (int64_t)timeout_ms * 1000000;
  while (!ring_exists(path)) {
    CHECK(tu_now_ns() < end, "%s did not appear within %d ms", path, timeout_ms);
    tu_sleep_ms(5);
  }
}

/* The buffers bufs[from..from+n-1] have contiguous offsets first..first+n-1, the
 * given frame size and caps of that width. */
static void check_run(const Rec *r, guint from, guint n, guint64 first, size_t size, int width,
                      const char *who)
{
  char wkey[32];
  snprintf(wkey, sizeof wkey, "width=(int)%d,", width);
  CHECK(from + n <= r->bufs->len, "%s: %u buffers, wanted %u from %u", who, r->bufs->len, n,
        from);
  for (guint i = 0; i < n; i++) {
    const char *l = g_ptr_array_index(r->bufs, from + i);
    CHECK(field_u64(l, " off=") == first + i, "%s: buffer %u has offset %" G_GUINT64_FORMAT
          ", expected %" G_GUINT64_FORMAT ": %s", who, from + i, field_u64(l, " off="),
          first + i, l);
    CHECK(field_u64(l, " size=") == size, "%s: buffer %u size: %s", who, from + i, l);
    const char *caps = strstr(l, " caps=");
    CHECK(caps && strstr(caps, wkey), "%s: buffer %u without caps of width %d: %s", who,
          from + i, width, l);
  }
}

/* A caps event came before the first buffer. */
static void check_caps_before_buffers(const Rec *r, const char *who)
{
  int saw_caps = 0;
  for (guint i = 0; i < r->all->len; i++) {
    const char *l = g_ptr_array_index(r->all, i);
    if (g_str_has_prefix(l, "E caps "))
      saw_caps = 1;
    if (g_str_has_prefix(l, "B ")) {
      CHECK(saw_caps, "%s: a buffer before any caps event: %s", who, l);
      return;
    }
  }
  CHECK(0, "%s: no buffers at all", who);
}

/* The consumer got the killed producer's buffers (the first n of c's) exactly
 * as the producer's sink saw them, and all it committed: the producer records
 * a buffer before rendering it, so at most its last recorded one may have
 * died unwritten. */
static void check_killed_producer(const Child *prod, const Rec *c, guint n)
{
  Rec p;
  rec_load(&p, prod);
  CHECK(n <= p.bufs->len && n + 1 >= p.bufs->len,
        "the killed producer recorded %u buffers, the consumer got %u of them", p.bufs->len, n);
  for (guint i = 0; i < n; i++)
    CHECK(strcmp(g_ptr_array_index(p.bufs, i), g_ptr_array_index(c->bufs, i)) == 0,
          "buffer %u differs:\n  producer: %s\n  consumer: %s", i,
          (char *)g_ptr_array_index(p.bufs, i), (char *)g_ptr_array_index(c->bufs, i));
  rec_free(&p);
}

/* ---- Tests ------------------------------------------------------------- */

/* Every 1080p frame arrives intact and in order with all its metadata: the
 * consumer sees exactly the buffers (data SHA-1, PTS, DTS, duration, offset,
 * offset_end, flags, caps) and the events (stream-start, caps, segment, EOS)
 * that the producer's sink got, in the same order; both processes end
 * normally (the consumer with EOS) and the ring file is gone afterwards. The
 * ring (16 MiB) holds only five frames, so it wraps and the producer waits
 * for room (the first frame takes the room of two: videotestsrc fills it in
 * the sink's pool before it sends the segment, so that claim is skipped and
 * the frame copied). With the producer first, it fills the ring and finishes writing
 * before the consumer exists (EOS waits for the drain); with the consumer
 * first, the source waits for the ring file to appear. */
static void test_hd_stream(int producer_first)
{
  const int frames = 60;
  printf("1080p I420, %d frames, %s first\n", frames, producer_first ? "producer" : "consumer");
  char *ring = tu_path(producer_first ? "hd-pfirst" : "hd-cfirst");
  gchar *plaunch = g_strdup_printf(
      "videotestsrc num-buffers=%d pattern=smpte horizontal-speed=8 ! "
      "video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 ! "
      "ipcringsink name=rec ring=%s capacity=16777216", frames, ring);
  gchar *claunch = g_strdup_printf("ipcringsrc ring=%s ! fakesink name=rec sync=false", ring);
  Child prod, cons;

  if (producer_first) {
    spawn_pipeline(&prod, "hd-producer", plaunch, 60, 0);
    wait_file(ring, 20000);
    /* Let it fill the ring before anyone reads. */
    wait_buffers(&prod, 5, 20000);
    spawn_pipeline(&cons, "hd-consumer", claunch, 60, 0);
  } else {
    spawn_pipeline(&cons, "hd-consumer", claunch, 60, 0);
    tu_sleep_ms(300);
    CHECK(alive(&cons) && cons.nbuf == 0, "consumer should wait for the ring");
    spawn_pipeline(&prod, "hd-producer", plaunch, 60, 0);
  }
  int cst = reap(&cons, 90000);
  int pst = reap(&prod, 30000);
  expect_exit(&cons, cst, 0);
  expect_exit(&prod, pst, 0);

  Rec p, c;
  rec_load(&p, &prod);
  rec_load(&c, &cons);
  result_time(&c, "R eos");
  result_time(&p, "R eos");
  CHECK(p.bufs->len == (guint)frames, "producer sent %u buffers", p.bufs->len);
  CHECK(c.bufs->len == p.bufs->len, "consumer got %u buffers, producer sent %u", c.bufs->len,
        p.bufs->len);
  for (guint i = 0; i < p.bufs->len; i++)
    CHECK(strcmp(g_ptr_array_index(p.bufs, i), g_ptr_array_index(c.bufs, i)) == 0,
          "buffer %u differs:\n  producer: %s\n  consumer: %s", i,
          (char *)g_ptr_array_index(p.bufs, i), (char *)g_ptr_array_index(c.bufs, i));
  /* The frames really differ from each other (the pattern moves). */
  CHECK(strcmp(strstr(g_ptr_array_index(p.bufs, 0), "sha1="),
               strstr(g_ptr_array_index(p.bufs, 1), "sha1=")) != 0, "frames 0 and 1 are equal");
  CHECK(p.all->len == c.all->len, "producer saw %u items, consumer %u", p.all->len, c.all->len);
  for (guint i = 0; i < p.all->len; i++)
    CHECK(strcmp(g_ptr_array_index(p.all, i), g_ptr_array_index(c.all, i)) == 0,
          "item %u differs:\n  producer: %s\n  consumer: %s", i,
          (char *)g_ptr_array_index(p.all, i), (char *)g_ptr_array_index(c.all, i));
  check_caps_before_buffers(&c, "consumer");
  CHECK(!ring_exists(ring), "ring file %s left behind", ring);
  printf("  ok: %u buffers and %u events identical on both sides, ring removed\n", c.bufs->len,
         c.events->len);

  rec_free(&p);
  rec_free(&c);
  child_free(&prod);
  child_free(&cons);
  g_free(plaunch);
  g_free(claunch);
  free(ring);
}

/* A live producer killed with SIGKILL while the consumer streams, for each
 * on-writer-lost mode:
 *  - error (the default): the consumer posts an error saying the producer
 *    died, within 1 s of the kill (asserted: 2 s);
 *  - eos: the consumer ends with EOS, also promptly;
 *  - wait: the consumer keeps waiting without posting anything, and a new
 *    producer started on the same ring path continues the stream: the
 *    consumer receives that producer's buffers (with its caps, here a
 *    different frame size, renegotiated before the first of them) and its
 *    EOS, having lost none of the buffers the first producer committed. */
static void test_writer_killed(const char *mode)
{
  printf("producer killed, on-writer-lost=%s\n", mode);
  char name[64];
  snprintf(name, sizeof name, "wk-%s", mode);
  char *ring = tu_path(name);
  gchar *claunch = g_strdup_printf(
      "ipcringsrc ring=%s%s%s ! fakesink name=rec sync=false", ring,
      strcmp(mode, "error") ? " on-writer-lost=" : "", strcmp(mode, "error") ? mode : "");
  gchar *plaunch = g_strdup_printf(
      "videotestsrc is-live=true ! " LIVE_320 " ! ipcringsink name=rec ring=%s "
      "capacity=4194304", ring);
  Child cons, prod;
  spawn_pipeline(&cons, "wk-consumer", claunch, 60, 0);
  spawn_pipeline(&prod, "wk-producer", plaunch, 60, 0);
  wait_buffers(&cons, 10, 20000);
  int64_t t_kill = tu_now_ns();
  kill9(&prod);

  if (strcmp(mode, "wait") != 0) {
    int st = reap(&cons, 10000);
    Rec c;
    rec_load(&c, &cons);
    if (strcmp(mode, "error") == 0) {
      expect_exit(&cons, st, 2);
      int64_t lat = result_time(&c, "R error") - t_kill;
      printf("  error %.1f ms after the kill: %s\n", lat / 1e6, c.result);
      CHECK(strstr(c.result, "producer") && strstr(c.result, "died"),
            "error does not say the producer died: %s", c.result);
      CHECK(lat < BOUND_LATENCY_NS, "error took %.1f ms (spec 1 s)", lat / 1e6);
    } else {
      expect_exit(&cons, st, 0);
      int64_t lat = result_time(&c, "R eos") - t_kill;
      printf("  EOS %.1f ms after the kill\n", lat / 1e6);
      CHECK(lat < BOUND_LATENCY_NS, "EOS took %.1f ms (spec 1 s)", lat / 1e6);
    }
    /* Everything up to the kill was delivered, intact and without a gap. */
    CHECK(c.bufs->len >= 10, "consumer recorded %u buffers", c.bufs->len);
    check_run(&c, 0, c.bufs->len, 0, FRAME_320, 320, "consumer");
    check_killed_producer(&prod, &c, c.bufs->len);
    rec_free(&c);
  } else {
    /* Whatever was committed before the kill arrives at once (sync=false);
     * after that, nothing: no buffer, no message, still running. */
    tu_sleep_ms(300);
    drain(&cons);
    long n1 = cons.nbuf;
    tu_sleep_ms(700);
    drain(&cons);
    CHECK(alive(&cons), "consumer in wait mode exited after the producer died");
    CHECK(cons.nmsg == 0, "consumer in wait mode posted EOS or an error");
    CHECK(cons.nbuf == n1, "buffers without a producer: %ld then %ld", n1, cons.nbuf);
    CHECK(ring_exists(ring), "the dead producer's ring %s vanished", ring);

    const int more = 20;
    gchar *p2launch = g_strdup_printf(
        "videotestsrc is-live=true num-buffers=%d ! " LIVE_160 " ! ipcringsink name=rec "
        "ring=%s capacity=4194304", more, ring);
    Child prod2;
    spawn_pipeline(&prod2, "wk-producer2", p2launch, 60, 0);
    int st = reap(&cons, 20000);
    int st2 = reap(&prod2, 10000);
    expect_exit(&cons, st, 0);
    expect_exit(&prod2, st2, 0);
    Rec c;
    rec_load(&c, &cons);
    result_time(&c, "R eos");
    printf("  %ld buffers before the kill, %u in all\n", n1, c.bufs->len);
    CHECK(c.bufs->len == (guint)n1 + more, "consumer got %u buffers, expected %ld + %d",
          c.bufs->len, n1, more);
    check_run(&c, 0, (guint)n1, 0, FRAME_320, 320, "first producer");
    check_killed_producer(&prod, &c, (guint)n1);
    check_run(&c, (guint)n1, more, 0, FRAME_160, 160, "second producer");
    /* The new caps came as an event before the new producer's buffers. */
    int seen_320 = 0, caps_160 = 0;
    for (guint i = 0; i < c.all->len; i++) {
      const char *l = g_ptr_array_index(c.all, i);
      if (g_str_has_prefix(l, "B ") && strstr(l, "width=(int)160,")) {
        CHECK(caps_160, "a 160x120 buffer before its caps event: %s", l);
        break;
      }
      if (g_str_has_prefix(l, "B "))
        seen_320 = 1;
      if (g_str_has_prefix(l, "E caps ") && strstr(l, "width=(int)160,"))
        caps_160 = seen_320;
    }
    CHECK(!ring_exists(ring), "ring file %s left behind by the second producer", ring);
    printf("  ok: waited, then continued with the new producer's caps, buffers and EOS\n");
    rec_free(&c);
    child_free(&prod2);
    g_free(p2launch);
  }
  unlink(ring); /* the killed producer's file, if nobody took it over */
  child_free(&cons);
  child_free(&prod);
  g_free(claunch);
  g_free(plaunch);
  free(ring);
}

/* The consumer killed with SIGKILL while the producer streams into a small
 * ring (1 MiB, nine frames), for each on-reader-lost mode, in two set-ups:
 * a live producer and a free-running consumer (the ring fills only after the
 * kill), and a free-running producer and a consumer paced by its clock (the
 * ring is always full: the producer is blocked waiting for room when the
 * consumer dies).
 *  - error: the producer posts an error saying the reader went away, within
 *    1 s of the kill (asserted: 2 s), and removes its ring file as it stops;
 *  - wait: the producer keeps the stream and blocks once the ring is full; a
 *    consumer attaching later receives a consistent stream (stream-start and
 *    caps before any buffer) that starts with the very buffer the producer
 *    was blocked on (nothing the dead reader left unread, nothing lost after
 *    it), continues without a gap and ends with the producer's EOS. */
static void test_reader_killed(const char *mode, int live)
{
  int wait = strcmp(mode, "wait") == 0;
  const int total = 90;
  printf("consumer killed, on-reader-lost=%s, %s\n", mode,
         live ? "live producer" : "ring full, consumer paced by its clock");
  char name[64];
  snprintf(name, sizeof name, "rk-%s-%d", mode, live);
  char *ring = tu_path(name);
  gchar *plaunch = g_strdup_printf(
      "videotestsrc is-live=%s num-buffers=%d ! " LIVE_320 " ! ipcringsink name=rec "
      "ring=%s capacity=1048576 on-reader-lost=%s", live ? "true" : "false",
      wait ? total : -1, ring, mode);
  gchar *claunch = g_strdup_printf("ipcringsrc ring=%s ! fakesink name=rec sync=%s", ring,
                                   live ? "false" : "true");
  gchar *c2launch = g_strdup_printf("ipcringsrc ring=%s ! fakesink name=rec sync=false", ring);
  Child prod, cons;
  spawn_pipeline(&prod, "rk-producer", plaunch, 60, 0);
  spawn_pipeline(&cons, "rk-consumer", claunch, 60, 0);
  wait_buffers(&cons, 10, 20000);
  int64_t t_kill = tu_now_ns();
  kill9(&cons);

  if (!wait) {
    int st = reap(&prod, 10000);
    expect_exit(&prod, st, 2);
    Rec p;
    rec_load(&p, &prod);
    int64_t lat = result_time(&p, "R error") - t_kill;
    printf("  error %.1f ms after the kill: %s\n", lat / 1e6, p.result);
    CHECK(strstr(p.result, "reader") && strstr(p.result, "went away"),
          "error does not say the reader went away: %s", p.result);
    CHECK(lat < BOUND_LATENCY_NS, "error took %.1f ms (spec 1 s)", lat / 1e6);
    CHECK(!ring_exists(ring), "ring file %s left behind by the stopped producer", ring);
    rec_free(&p);
  } else {
    /* The ring fills in about 0.3 s; then the producer's streaming thread
     * blocks: no buffer reaches the sink for a second (at 30 frames/s). */
    int64_t end = tu_now_ns() + 10000LL * 1000000;
    long last = -1;
    int64_t since = 0;
    for (;;) {
      drain(&prod);
      if (prod.nbuf != last) {
        last = prod.nbuf;
        since = tu_now_ns();
      } else if (tu_now_ns() - since > 1000LL * 1000000) {
        break;
      }
      CHECK(tu_now_ns() < end, "producer did not block (%ld buffers)", prod.nbuf);
      CHECK(prod.nbuf < total, "producer ran to the end without a reader");
      tu_sleep_ms(50);
    }
    CHECK(alive(&prod) && prod.nmsg == 0, "producer in wait mode stopped or posted");
    long blocked = prod.nbuf; /* buffer number `blocked` (offset blocked-1) waits */
    printf("  producer blocked at buffer %ld\n", blocked);

    Child cons2;
    spawn_pipeline(&cons2, "rk-consumer2", c2launch, 60, 0);
    int st2 = reap(&cons2, 20000);
    int st = reap(&prod, 10000);
    expect_exit(&cons2, st2, 0);
    expect_exit(&prod, st, 0);
    Rec c;
    rec_load(&c, &cons2);
    result_time(&c, "R eos");
    CHECK(c.events->len >= 2 && g_str_has_prefix(g_ptr_array_index(c.events, 0),
                                                  "E stream-start "),
          "new consumer did not start with stream-start: %s",
          c.events->len ? (char *)g_ptr_array_index(c.events, 0) : "(no events)");
    check_caps_before_buffers(&c, "new consumer");
    guint n = total - (guint)blocked + 1;
    CHECK(c.bufs->len == n, "new consumer got %u buffers, expected %u (offsets %ld..%d)",
          c.bufs->len, n, blocked - 1, total - 1);
    check_run(&c, 0, n, (guint64)blocked - 1, FRAME_320, 320, "new consumer");
    CHECK(!ring_exists(ring), "ring file %s left behind", ring);
    printf("  ok: new consumer got offsets %ld..%d and EOS\n", blocked - 1, total - 1);
    rec_free(&c);
    child_free(&cons2);
  }
  unlink(ring);
  child_free(&prod);
  child_free(&cons);
  g_free(plaunch);
  g_free(claunch);
  g_free(c2launch);
  free(ring);
}

/* A consumer waiting for a ring that never appears is interruptible: SIGINT
 * to gst-launch-1.0 makes it stop the pipeline and exit normally within 1 s
 * (asserted: 2 s), and nothing is created at the ring path. */
static void test_sigint_waiting_consumer(void)
{
  printf("SIGINT to gst-launch-1.0 waiting for a ring that never appears\n");
  char *ring = tu_path("never");
  gchar *ring_arg = g_strdup_printf("ring=%s", ring);
  const char *args[] = { "ipcringsrc", ring_arg, "!", "fakesink", NULL };
  Child c;
  spawn_launch(&c, "gst-launch-consumer", args);
  wait_text(&c, "PREROLLING", 20000);
  tu_sleep_ms(200); /* well inside the wait for the file now */
  CHECK(alive(&c), "gst-launch-1.0 exited while waiting: %s", c.text->str);
  int64_t t0 = tu_now_ns();
  CHECK(kill(c.pid, SIGINT) == 0, "kill: %s", strerror(errno));
  int st = reap(&c, 10000);
  int64_t lat = tu_now_ns() - t0;
  printf("  exited %.1f ms after SIGINT, status %d\n", lat / 1e6,
         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  CHECK(WIFEXITED(st), "gst-launch-1.0 did not exit normally (signal %d)",
        WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  CHECK(lat < BOUND_LATENCY_NS, "exit took %.1f ms (spec 1 s)", lat / 1e6);
  CHECK(!ring_exists(ring), "the consumer created %s", ring);
  child_free(&c);
  g_free(ring_arg);
  free(ring);
}

/* A producer stopped cleanly mid-stream (its sink goes to NULL without EOS)
 * ends the consumer's stream with EOS, not an error (with the default
 * on-writer-lost=error); the consumer exits normally and the ring file is
 * removed. Two ways to stop: SIGINT to gst-launch-1.0 (without -e), and
 * set_state(NULL) in the producer's own program. */
static void test_clean_producer_stop(int via_gst_launch)
{
  printf("producer stopped cleanly (%s)\n",
         via_gst_launch ? "SIGINT to gst-launch-1.0" : "set_state NULL");
  char *ring = tu_path(via_gst_launch ? "stop-launch" : "stop-null");
  gchar *claunch = g_strdup_printf("ipcringsrc ring=%s ! fakesink name=rec sync=false", ring);
  gchar *ring_arg = g_strdup_printf("ring=%s", ring);
  gchar *plaunch = g_strdup_printf(
      "videotestsrc is-live=true ! " LIVE_320 " ! ipcringsink ring=%s", ring);
  Child cons, prod;
  spawn_pipeline(&cons, "stop-consumer", claunch, 60, 0);
  int64_t t_stop;
  if (via_gst_launch) {
    const char *args[] = { "videotestsrc", "is-live=true", "!", LIVE_320, "!", "ipcringsink",
                           ring_arg, NULL };
    spawn_launch(&prod, "gst-launch-producer", args);
    wait_buffers(&cons, 15, 20000);
    t_stop = tu_now_ns();
    CHECK(kill(prod.pid, SIGINT) == 0, "kill: %s", strerror(errno));
    int pst = reap(&prod, 10000);
    CHECK(WIFEXITED(pst), "gst-launch-1.0 producer did not exit normally (status %d)", pst);
  } else {
    /* The producer sets itself to NULL 1.5 s after it started. */
    spawn_pipeline(&prod, "stop-producer", plaunch, 60, 1500);
    wait_buffers(&cons, 15, 20000);
    int pst = reap(&prod, 10000);
    expect_exit(&prod, pst, 0);
    Rec p;
    rec_load(&p, &prod);
    t_stop = result_time(&p, "R stopped");
    rec_free(&p);
  }
  int cst = reap(&cons, 10000);
  Rec c;
  rec_load(&c, &cons);
  CHECK(c.result != NULL, "consumer wrote no result");
  expect_exit(&cons, cst, 0);
  int64_t lat = result_time(&c, "R eos") - t_stop;
  printf("  consumer EOS %.1f ms after the stop began, %u buffers\n", lat / 1e6, c.bufs->len);
  check_run(&c, 0, c.bufs->len, 0, FRAME_320, 320, "consumer");
  CHECK(!ring_exists(ring), "ring file %s left behind", ring);
  rec_free(&c);
  child_free(&cons);
  child_free(&prod);
  g_free(claunch);
  g_free(plaunch);
  g_free(ring_arg);
  free(ring);
}

/* Regression test: raw video from a decoder carries multiview-flags, a value
 * of the video library's flag set type, in its caps. A consumer that has not
 * loaded that library did not know the type and refused the caps record as
 * malformed (found running docs/sandboxing.md's example). Decoded VP8 must
 * reach a consumer that is only ipcringsrc ! fakesink. */
static void test_decoded_video_caps(void)
{
  printf("decoded video (caps with multiview-flags) reaches a bare consumer\n");
  char *ring = tu_path("decoded");
  gchar *plaunch = g_strdup_printf(
      "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! vp8enc ! vp8dec ! "
      "ipcringsink ring=%s", ring);
  gchar *claunch = g_strdup_printf("ipcringsrc ring=%s ! fakesink name=rec sync=false", ring);
  Child cons, prod;
  spawn_pipeline(&prod, "decoded-producer", plaunch, 60, 0);
  spawn_pipeline(&cons, "decoded-consumer", claunch, 60, 0);
  int cst = reap(&cons, 30000);
  int pst = reap(&prod, 30000);
  expect_exit(&cons, cst, 0);
  expect_exit(&prod, pst, 0);
  Rec c;
  rec_load(&c, &cons);
  CHECK(c.bufs->len == 10, "consumer got %u buffers, wanted 10", c.bufs->len);
  printf("  ok: 10 decoded frames, consumer ended with EOS\n");
  rec_free(&c);
  child_free(&cons);
  child_free(&prod);
  g_free(plaunch);
  g_free(claunch);
  free(ring);
}

/* The elements can be found at all (a child, so that this process never
 * initialises GStreamer before forking); this also builds the registry once
 * before anything is timed. */
static int have_vp8;

static void check_plugin(void)
{
  pid_t pid = tu_fork();
  if (pid == 0) {
    gst_init(NULL, NULL);
    GstElementFactory *a = gst_element_factory_find("ipcringsink");
    GstElementFactory *b = gst_element_factory_find("ipcringsrc");
    GstElementFactory *v = gst_element_factory_find("videotestsrc");
    if (!a || !b)
      _exit(1);
    if (v && (!gst_element_factory_find("vp8enc") || !gst_element_factory_find("vp8dec")))
      _exit(3);
    _exit(v ? 0 : TU_SKIP);
  }
  int st = tu_reap(pid, 60000);
  if (WIFEXITED(st) && WEXITSTATUS(st) == TU_SKIP) {
    printf("videotestsrc (gst-plugins-base) is not installed: skipping\n");
    exit(TU_SKIP);
  }
  have_vp8 = !(WIFEXITED(st) && WEXITSTATUS(st) == 3);
  if (!have_vp8)
    st = 0;
  CHECK_CHILD_OK(st);
}

int main(void)
{
  /* Run by hand, find the plugin in the build tree. */
  setenv("GST_PLUGIN_PATH", IPCRING_BUILD_DIR "/gst", 0);
  setvbuf(stdout, NULL, _IOLBF, 0);
  tu_tmpdir();
  if (SANITIZED_BUILD) {
    char *reg = tu_path("registry.bin");
    setenv("GST_REGISTRY", reg, 1);
    setenv("GST_REGISTRY_FORK", "no", 1);
    free(reg);
  }
  check_plugin();

  test_hd_stream(1);
  test_hd_stream(0);
  test_writer_killed("error");
  test_writer_killed("eos");
  test_writer_killed("wait");
  test_reader_killed("error", 1);
  test_reader_killed("error", 0);
  test_reader_killed("wait", 1);
  test_reader_killed("wait", 0);
  if (SANITIZED_BUILD) {
    printf("sanitizer build: gst-launch-1.0 cannot load the instrumented plugin, skipping "
           "the two gst-launch-1.0 cases\n");
  } else {
    test_sigint_waiting_consumer();
    test_clean_producer_stop(1);
  }
  test_clean_producer_stop(0);
  if (have_vp8)
    test_decoded_video_caps();
  else
    printf("vp8enc/vp8dec (gst-plugins-good) are not installed: decoded-video case skipped\n");
  printf("all cross-process tests passed\n");
  return 0;
}
