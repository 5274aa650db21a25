/* A hostile third process scribbles on a live ring: while a producer process
 * (videotestsrc ! ipcringsink) and a consumer process (ipcringsrc ! fakesink)
 * stream through it, another process maps the ring file and writes random
 * bytes at random offsets for a while, into the header page, the data area or
 * both.
 *
 * What this pins down: neither side crashes (no death by a signal, no
 * "Segmentation", no GLib "CRITICAL", no sanitizer report in a sanitizer
 * build) and neither hangs (each ends within a bound after the scribbling
 * stops); each either keeps streaming to a normal EOS or posts exactly one
 * clear error of its element and stops. The consumer reads every byte of
 * every buffer it receives, so a buffer that claims more memory than it has
 * is caught too.
 *
 * Both sides run in forked children that call gst_init() after the fork and
 * write their bus errors to their stderr file the way gst-launch-1.0 does
 * ("ERROR: from element ..."), every one of them, not only the first.
 * GstBaseSrc follows an element's error with its own generic "Internal data
 * stream error"; that one is written as "FLOW-ERROR:" and not counted.
 * The consumer is paced (30 ms per buffer, in a probe, independent of
 * timestamps the scribbler may change) so that the ring stays full: every
 * scribble in the data area lands on a record not yet read, and the producer
 * keeps re-reading the read index while it waits for room. The producer
 * uses on-reader-lost=error, so that a consumer that gives up does not leave
 * it waiting for a new one.
 *
 * Usage: gst-test-scribble [SEEDS [FIRST_SEED]]: each seed runs four rounds
 * (header, records, data, all: see pick_offset). Defaults: 3 seeds from 1. A failure of a round is a
 * bug in the library or the elements: every round runs, all failures are
 * listed at the end, with the seed that reproduces each.
 */
#include "../ring/testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <sys/mman.h>

#include <gst/gst.h>

#include "ipcring-layout.h"
#include "ipcring.h"

#ifndef IPCRING_BUILD_DIR
#define IPCRING_BUILD_DIR "."
#endif

/* In a sanitizer build, plugins are scanned by the (instrumented) children
 * into a registry of our own, as in test_xproc.c. */
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

#define CAPACITY (1u << 20)        /* nine 320x240 frames */
#define NUM_BUFFERS 120            /* about 3.6 s at the consumer's pace */
#define PACE_MS 30                 /* the consumer's time per buffer */
#define SCRIBBLE_MS 2000           /* how long the scribbler writes */
#define START_BUFFERS 10           /* consumer buffers before scribbling starts */
#define END_BOUND_MS 10000         /* each side ends this soon after the scribbling */
#define CHILD_TIMEOUT_S 60         /* a child's own bound on its stream */

enum region { HEADER, RECORDS, DATA, ALL, N_REGIONS };
static const char *const region_name[] = { "header", "records", "data", "all" };

/* ---- Random numbers (xorshift64*, seeded per round) --------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_below(uint64_t n)
{
  return rnd() % n;
}

/* ---- Child: one pipeline ------------------------------------------------ */

static int notify_fd = -1;
static int pace_ms;
static volatile guint64 byte_sum;

static GstPadProbeReturn touch_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  (void)pad;
  (void)data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
  GstMapInfo map;
  if (gst_buffer_map(buf, &map, GST_MAP_READ)) {
    guint64 s = 0;
    for (gsize i = 0; i < map.size; i++)
      s += map.data[i];
    byte_sum += s;
    gst_buffer_unmap(buf, &map);
  }
  char c = 'B';
  ssize_t r = write(notify_fd, &c, 1);
  (void)r;
  if (pace_ms > 0)
    tu_sleep_ms(pace_ms);
  return GST_PAD_PROBE_OK;
}

/* Write an error message as gst-launch-1.0 does; returns 1 if it counts as
 * an element's error (not GstBaseSrc's generic follow-up). */
static int print_error(GstMessage *msg)
{
  GError *e = NULL;
  gchar *dbg = NULL;
  gst_message_parse_error(msg, &e, &dbg);
  gchar *path = gst_object_get_path_string(GST_MESSAGE_SRC(msg));
  int generic = e->domain == GST_STREAM_ERROR && e->code == GST_STREAM_ERROR_FAILED &&
                dbg && strstr(dbg, "streaming stopped, reason");
  fprintf(stderr, "%s from element %s: %s\nAdditional debug info:\n%s\n",
          generic ? "FLOW-ERROR:" : "ERROR:", path, e->message, dbg ? dbg : "");
  g_free(path);
  g_error_free(e);
  g_free(dbg);
  return !generic;
}

/* Run `launch` until EOS or an error, then write every further error that
 * comes while it stops. Exit 0 on EOS, 2 after an error, 3 on a timeout. */
static void G_GNUC_NORETURN child_pipeline(const char *launch, const char *err_path, int fd,
                                           int pace)
{
  int efd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (efd < 0 || dup2(efd, 2) < 0)
    _exit(1);
  close(efd);
  setvbuf(stderr, NULL, _IONBF, 0);
  notify_fd = fd;
  pace_ms = pace;

  gst_init(NULL, NULL);
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch(launch, &err);
  if (!pipeline || err) {
    fprintf(stderr, "setup failed: %s\n", err ? err->message : "no pipeline");
    _exit(1);
  }
  GstElement *rec = gst_bin_get_by_name(GST_BIN(pipeline), "rec");
  if (rec) {
    GstPad *pad = gst_element_get_static_pad(rec, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, touch_probe, NULL, NULL);
    gst_object_unref(pad);
    gst_object_unref(rec);
  }
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, (GstClockTime)CHILD_TIMEOUT_S * GST_SECOND,
                                               GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  int code = 3;
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    code = 0;
  } else if (msg) {
    print_error(msg);
    code = 2;
  } else {
    fprintf(stderr, "TIMEOUT: neither EOS nor an error within %d s\n", CHILD_TIMEOUT_S);
  }
  if (msg)
    gst_message_unref(msg);
  /* Errors that follow the first while the pipeline still runs, then any
   * posted while it stops. */
  while ((msg = gst_bus_timed_pop_filtered(bus, 200 * GST_MSECOND, GST_MESSAGE_ERROR))) {
    print_error(msg);
    gst_message_unref(msg);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  while ((msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR))) {
    print_error(msg);
    gst_message_unref(msg);
  }
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  _exit(code);
}

/* ---- Child: the scribbler ----------------------------------------------- */

/* The data-area offset of a record the reader has not read yet: from the
 * read index, walk a few records (reading the ring as a hostile peer would:
 * every value checked before use). */
static uint64_t pick_unread_record(const unsigned char *m, uint64_t cap)
{
  uint64_t r, w;
  memcpy(&r, m + offsetof(struct ipcring_shared, read_index), sizeof r);
  memcpy(&w, m + offsetof(struct ipcring_shared, write_index), sizeof w);
  uint64_t off = r, pick = r & (cap - 1);
  for (uint64_t steps = rnd_below(16); steps > 0 && off < w && w - off <= cap; steps--) {
    uint64_t pos = off & (cap - 1) & ~(uint64_t)7; /* the index may be scribbled too */
    uint32_t len;
    memcpy(&len, m + 4096 + pos, sizeof len);
    pick = pos;
    if (len == IPCRING_PAD_LEN)
      off += cap - pos;
    else if (len <= cap)
      off += ipcring_record_size(len);
    else
      break;
  }
  return pick & ~(uint64_t)7;
}

/* An offset in the file to scribble at:
 *  - header: mostly its used first 320 bytes (fields, indices, wait words),
 *    one write in five anywhere in the header page;
 *  - records: the first 80 bytes of an unread record (its length and tag,
 *    and the wire header of the protocol);
 *  - data: anywhere in the data area (mostly pixels: the stream may well
 *    survive, with damaged frames);
 *  - all: any of the three. */
static uint64_t pick_offset(const unsigned char *m, enum region reg, uint64_t size)
{
  uint64_t cap = size - 4096;
  if (reg == ALL)
    reg = (enum region)rnd_below(3);
  switch (reg) {
  case HEADER:
    return rnd_below(5) ? rnd_below(320) : rnd_below(4096);
  case RECORDS:
    return 4096 + ((pick_unread_record(m, cap) + rnd_below(80)) & (cap - 1));
  default:
    return 4096 + rnd_below(cap);
  }
}

/* For ms milliseconds, write 1 to 16 random bytes at a random offset, or
 * (one write in four) nudge an aligned 64-bit word by a small multiple of 8,
 * so that indices sometimes get plausible wrong values. About one write per
 * 0.5 ms. Exits 0, or 1 if the ring cannot be mapped. */
static void G_GNUC_NORETURN child_scribbler(const char *ring, enum region reg, uint64_t seed,
                                            int ms)
{
  rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
  int fd = open(ring, O_RDWR | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 4096)
    _exit(1);
  uint64_t size = (uint64_t)st.st_size;
  unsigned char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED)
    _exit(1);
  close(fd);
  int64_t end = tu_now_ns() + (int64_t)ms * 1000000;
  long writes = 0;
  while (tu_now_ns() < end) {
    uint64_t off = pick_offset(m, reg, size);
    if (rnd_below(4) == 0) {
      off &= ~(uint64_t)7;
      volatile uint64_t *w = (volatile uint64_t *)(m + off);
      int64_t delta = ((int64_t)rnd_below(65) - 32) * 8;
      *w = *w + (uint64_t)delta;
    } else {
      uint64_t len = 1 + rnd_below(16);
      if (off + len > size)
        len = size - off;
      for (uint64_t i = 0; i < len; i++)
        ((volatile unsigned char *)m)[off + i] = (unsigned char)rnd();
    }
    writes++;
    struct timespec ts = { 0, (long)rnd_below(1000) * 1000 };
    nanosleep(&ts, NULL);
  }
  munmap(m, size);
  printf("    scribbler: %ld writes\n", writes);
  fflush(stdout);
  _exit(0);
}

/* ---- Parent ------------------------------------------------------------- */

typedef struct {
  const char *name;
  pid_t pid;
  int fd; /* notify pipe, read end */
  long nbuf;
  char *err_path;
  int reaped;
  int status;
} Side;

static void spawn_side(Side *s, const char *name, const char *launch, int pace)
{
  int fds[2];
  CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
  s->name = name;
  s->nbuf = 0;
  s->reaped = 0;
  s->status = 0;
  s->err_path = tu_path(name);
  s->pid = tu_fork();
  if (s->pid == 0) {
    close(fds[0]);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    child_pipeline(launch, s->err_path, fds[1], pace);
  }
  close(fds[1]);
  s->fd = fds[0];
}

/* Count the child's buffers; 0 once it closed its end. */
static int pump(Side *s, int timeout_ms)
{
  if (s->fd < 0)
    return 0;
  struct pollfd p = { s->fd, POLLIN, 0 };
  if (poll(&p, 1, timeout_ms) <= 0)
    return 1;
  char buf[256];
  ssize_t r = read(s->fd, buf, sizeof buf);
  if (r <= 0) {
    close(s->fd);
    s->fd = -1;
    return 0;
  }
  s->nbuf += r;
  return 1;
}

/* Wait until the side has passed n buffers; 0 if it ended or took too long. */
static int wait_buffers(Side *s, long n, int timeout_ms)
{
  int64_t end = tu_now_ns() + (int64_t)timeout_ms * 1000000;
  while (s->nbuf < n) {
    int left = (int)((end - tu_now_ns()) / 1000000);
    if (left <= 0 || !pump(s, left))
      return 0;
  }
  return 1;
}

/* Reap the side by `deadline` (monotonic ns), counting its buffers
 * meanwhile; a side still running then is killed. Returns 1 if it ended in
 * time by itself. */
static int reap_by(Side *s, int64_t deadline)
{
  while (!s->reaped) {
    pid_t r = waitpid(s->pid, &s->status, WNOHANG);
    CHECK(r >= 0, "waitpid: %s", strerror(errno));
    if (r == s->pid) {
      s->reaped = 1;
      break;
    }
    if (tu_now_ns() > deadline) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &s->status, 0);
      s->reaped = 1;
      while (pump(s, 0))
        ;
      return 0;
    }
    pump(s, 5);
  }
  while (pump(s, 0))
    ;
  return 1;
}

static void side_free(Side *s)
{
  if (s->fd >= 0)
    close(s->fd);
  unlink(s->err_path);
  free(s->err_path);
}

static GString *failures;
static int rounds_failed;
static int ended_eos, ended_error; /* sides, over all rounds */

#define FAIL(...)                                                                           \
  do {                                                                                      \
    g_string_append_printf(failures, "  %s seed %llu: ", region_name[reg],                 \
                           (unsigned long long)seed);                                       \
    g_string_append_printf(failures, __VA_ARGS__);                                          \
    g_string_append_c(failures, '\n');                                                      \
    ok = 0;                                                                                 \
  } while (0)

/* Judge one side: how it ended and what it wrote to stderr. Returns 1 if
 * acceptable; appends the reasons otherwise. */
static int judge(Side *s, int in_time, enum region reg, uint64_t seed)
{
  int ok = 1;
  gchar *text = NULL;
  g_file_get_contents(s->err_path, &text, NULL, NULL);
  if (!text)
    text = g_strdup("");
  int errors = 0;
  for (const char *p = text; (p = strstr(p, "ERROR: from element")); p++)
    if (p == text || p[-1] == '\n')
      errors++;
  int st = s->status;
  const char *how = !in_time            ? "HANG (killed after the bound)"
                    : WIFSIGNALED(st)   ? "CRASH"
                    : !WIFEXITED(st)    ? "?"
                    : WEXITSTATUS(st) == 0 ? "EOS"
                    : WEXITSTATUS(st) == 2 ? "error"
                    : WEXITSTATUS(st) == 3 ? "HANG (no EOS or error)"
                                           : "bad exit";
  printf("    %s: %s after %ld buffers, %d element error(s)\n", s->name, how, s->nbuf,
         errors);
  const char *first = strstr(text, "ERROR: from element");
  if (first) {
    const char *eol = strchr(first, '\n');
    printf("      %.*s\n", eol ? (int)(eol - first) : (int)strlen(first), first);
  }
  ended_eos += in_time && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  ended_error += in_time && WIFEXITED(st) && WEXITSTATUS(st) == 2;
  if (!in_time)
    FAIL("%s still running %d ms after the scribbling stopped", s->name, END_BOUND_MS);
  else if (WIFSIGNALED(st))
    FAIL("%s died of signal %d (%s)", s->name, WTERMSIG(st), strsignal(WTERMSIG(st)));
  else if (!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 2))
    FAIL("%s exited with %d (3: neither EOS nor an error in %d s)", s->name,
         WIFEXITED(st) ? WEXITSTATUS(st) : -1, CHILD_TIMEOUT_S);
  if (in_time && WIFEXITED(st) && WEXITSTATUS(st) == 2 && errors != 1)
    FAIL("%s stopped on an error but wrote %d element errors", s->name, errors);
  if (in_time && WIFEXITED(st) && WEXITSTATUS(st) == 0 && errors != 0)
    FAIL("%s ended with EOS after %d element errors", s->name, errors);
  if (strstr(text, "CRITICAL"))
    FAIL("%s wrote a CRITICAL", s->name);
  if (strstr(text, "Segmentation"))
    FAIL("%s wrote \"Segmentation\"", s->name);
  if (strstr(text, "Sanitizer") || strstr(text, "runtime error:"))
    FAIL("%s: a sanitizer report", s->name);
  if (!ok)
    fprintf(stderr, "--- %s stderr (%s seed %llu) ---\n%s--- end ---\n", s->name,
            region_name[reg], (unsigned long long)seed, text);
  g_free(text);
  return ok;
}

/* One round: stream, scribble for SCRIBBLE_MS, judge both sides. */
static void round_run(enum region reg, uint64_t seed)
{
  int ok = 1;
  printf("round: scribble on %s, seed %llu\n", region_name[reg], (unsigned long long)seed);
  char name[64];
  snprintf(name, sizeof name, "ring-%d-%llu", (int)reg, (unsigned long long)seed);
  char *ring = tu_path(name);
  gchar *claunch = g_strdup_printf("ipcringsrc ring=%s ! fakesink name=rec sync=false", ring);
  gchar *plaunch = g_strdup_printf(
      "videotestsrc num-buffers=%d ! video/x-raw,format=I420,width=320,height=240,"
      "framerate=30/1 ! ipcringsink name=rec ring=%s capacity=%u on-reader-lost=error",
      NUM_BUFFERS, ring, CAPACITY);
  Side cons, prod;
  spawn_side(&cons, "consumer", claunch, PACE_MS);
  spawn_side(&prod, "producer", plaunch, 0);

  if (!wait_buffers(&cons, START_BUFFERS, 20000)) {
    FAIL("the consumer passed %ld buffers before scribbling, wanted %d", cons.nbuf,
         START_BUFFERS);
  } else {
    long before = cons.nbuf;
    pid_t spid = tu_fork();
    if (spid == 0)
      child_scribbler(ring, reg, seed, SCRIBBLE_MS);
    /* Keep counting the consumer's buffers while the scribbler runs. */
    int64_t sc_end = tu_now_ns() + (int64_t)(SCRIBBLE_MS + 5000) * 1000000;
    int sst = 0;
    while (waitpid(spid, &sst, WNOHANG) == 0) {
      CHECK(tu_now_ns() < sc_end, "scribbler still running");
      pump(&cons, 5);
    }
    CHECK(WIFEXITED(sst) && WEXITSTATUS(sst) == 0, "scribbler status %d", sst);
    printf("    consumer: %ld buffers before, %ld at the end of the scribbling\n", before,
           cons.nbuf);
  }
  int64_t deadline = tu_now_ns() + (int64_t)END_BOUND_MS * 1000000;
  int cin = reap_by(&cons, deadline);
  int pin = reap_by(&prod, deadline);
  if (!judge(&cons, cin, reg, seed))
    ok = 0;
  if (!judge(&prod, pin, reg, seed))
    ok = 0;
  rounds_failed += !ok;
  unlink(ring);
  side_free(&cons);
  side_free(&prod);
  g_free(claunch);
  g_free(plaunch);
  free(ring);
}

/* The elements can be found (a child, so that this process never
 * initialises GStreamer before forking); this also builds the registry. */
static void check_plugin(void)
{
  pid_t pid = tu_fork();
  if (pid == 0) {
    gst_init(NULL, NULL);
    if (!gst_element_factory_find("ipcringsink") || !gst_element_factory_find("ipcringsrc"))
      _exit(1);
    _exit(gst_element_factory_find("videotestsrc") ? 0 : TU_SKIP);
  }
  int st = tu_reap(pid, 60000);
  if (WIFEXITED(st) && WEXITSTATUS(st) == TU_SKIP) {
    printf("videotestsrc (gst-plugins-base) is not installed: skipping\n");
    exit(TU_SKIP);
  }
  CHECK_CHILD_OK(st);
}

int main(int argc, char **argv)
{
  int seeds = argc > 1 ? atoi(argv[1]) : 3;
  uint64_t first = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
  CHECK(seeds > 0, "usage: %s [SEEDS [FIRST_SEED]]", argv[0]);
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
  failures = g_string_new(NULL);
  for (int i = 0; i < seeds; i++)
    for (int reg = HEADER; reg < N_REGIONS; reg++)
      round_run((enum region)reg, first + (uint64_t)i);
  if (rounds_failed) {
    fprintf(stderr, "%d of %d rounds failed (sides that ended with EOS: %d, with an error: "
            "%d; rerun a seed with: %s 1 SEED):\n%s", rounds_failed, N_REGIONS * seeds,
            ended_eos, ended_error, argv[0], failures->str);
    return 1;
  }
  printf("all %d scribble rounds passed: no crash, no hang, at most one error per side "
         "(sides that ended with EOS: %d, with an error: %d)\n",
         N_REGIONS * seeds, ended_eos, ended_error);
  return 0;
}
