/* kill -9 of one side while the other side survives in this very process.
 *
 * The survivor's pipeline runs in this process, so that its file descriptors
 * (/proc/self/fd) and mappings (/proc/self/maps) can be counted; the peer is
 * this program again, forked and exec'd with --peer, so that it starts a
 * fresh GStreamer (no fork of a process whose GStreamer threads run). Once
 * both sides have passed a buffer, the peer is killed with SIGKILL after a
 * random delay of up to 1 s, and the time from kill() to the survivor's bus
 * message is measured (taken in a bus sync handler, in the thread that posts
 * it). Two directions:
 *  - surviving consumer: ipcringsrc (default on-writer-lost=error) reading a
 *    live producer; it must post "The producer writing ring ... died.";
 *  - surviving producer: a free-running ipcringsink with on-reader-lost=error
 *    and a 64 KiB ring (two frames), so it is soon waiting for room; it must
 *    post "The reader of ring ... went away.".
 * After the survivor is set to NULL and freed, this process's counts of
 * file descriptors and of file mappings must be back at the baseline taken
 * after one warm-up trial of each direction (GStreamer's one-time
 * allocations), and the ring file must be gone (each element removes a ring
 * whose peer died).
 *
 * The latency bound asserted here (2 s by default) is a guard against hangs
 * only; tools/kill-trials runs many trials and prints the distribution.
 *
 * Usage: gst-test-kill [-n TRIALS] [-d consumer|producer|both] [-s SEED]
 *                      [-b BOUND_MS]
 * Defaults: 3 trials per direction, both directions, a seed from the clock.
 * One line per trial:
 *   trial N survivor=consumer delay_ms=D latency_ms=L fds=A/B maps=A/B all_maps=M
 *         ring_left=no ok | the survivor's message
 * (A: after the trial, B: the baseline; maps counts file mappings only, see
 * count_maps; all_maps is for information.)
 */
#include "../ring/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include <gst/gst.h>

#ifndef IPCRING_BUILD_DIR
#define IPCRING_BUILD_DIR "."
#endif

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

#define NOTIFY_FD 3           /* the peer's end of the pipe, across exec */
#define START_TIMEOUT_MS 20000 /* both sides streaming */
#define MESSAGE_TIMEOUT_MS 10000 /* the survivor's message after the kill */
#define TRIAL_ALARM_S 60      /* the whole trial, set_state(NULL) included */

#define PRODUCER_PEER                                                                     \
  "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,"             \
  "framerate=30/1 ! ipcringsink name=rec ring=%s capacity=4194304"
#define CONSUMER_PEER "ipcringsrc ring=%s ! fakesink name=rec sync=false"
#define CONSUMER_SURVIVOR "ipcringsrc ring=%s ! fakesink name=rec sync=false"
#define PRODUCER_SURVIVOR                                                                 \
  "videotestsrc pattern=black ! video/x-raw,format=I420,width=160,height=120,"            \
  "framerate=30/1 ! ipcringsink name=rec ring=%s capacity=65536 on-reader-lost=error"

/* ---- The peer (exec'd with --peer ROLE RING) ---------------------------- */

static int peer_notified;

static GstPadProbeReturn peer_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  (void)pad;
  (void)info;
  (void)data;
  if (!peer_notified) {
    peer_notified = 1;
    char c = 'B';
    ssize_t r = write(NOTIFY_FD, &c, 1);
    (void)r;
  }
  return GST_PAD_PROBE_OK;
}

/* Stream until killed (bounded: a peer nobody kills exits after 60 s). */
static int peer_main(const char *role, const char *ring)
{
  gst_init(NULL, NULL);
  gchar *launch = g_strdup_printf(strcmp(role, "producer") == 0 ? PRODUCER_PEER : CONSUMER_PEER,
                                  ring);
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch(launch, &err);
  if (!pipeline || err)
    return 1;
  GstElement *rec = gst_bin_get_by_name(GST_BIN(pipeline), "rec");
  GstPad *pad = gst_element_get_static_pad(rec, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, peer_probe, NULL, NULL);
  gst_object_unref(pad);
  gst_object_unref(rec);
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage *msg =
      gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  if (msg)
    gst_message_unref(msg);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  g_free(launch);
  return 2;
}

/* ---- Counting what this process holds ----------------------------------- */

static int count_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* Mappings of files (a ring is one, and so is each library); *all gets the
 * count of every mapping, anonymous ones included. Anonymous mappings are
 * not compared with the baseline: GLib's shared thread pool keeps a varying
 * number of idle threads, each with its stack and often a malloc arena, and
 * how many depends on timing, not on what the elements hold. */
static int count_maps(int *all)
{
  FILE *f = fopen("/proc/self/maps", "r");
  CHECK(f != NULL, "open /proc/self/maps: %s", strerror(errno));
  int files = 0, n = 0;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    unsigned long inode = 0;
    n++;
    if (sscanf(line, "%*s %*s %*s %*s %lu", &inode) == 1 && inode != 0)
      files++;
  }
  fclose(f);
  if (all)
    *all = n;
  return files;
}

/* ---- The survivor -------------------------------------------------------- */

static gint survivor_buffers;
static _Atomic int64_t t_message; /* monotonic ns of the first ERROR or EOS, 0 = none */

static GstPadProbeReturn survivor_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  (void)pad;
  (void)info;
  (void)data;
  g_atomic_int_inc(&survivor_buffers);
  return GST_PAD_PROBE_OK;
}

static GstBusSyncReply stamp_message(GstBus *bus, GstMessage *msg, gpointer data)
{
  (void)bus;
  (void)data;
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR || GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    int64_t none = 0;
    atomic_compare_exchange_strong(&t_message, &none, tu_now_ns());
  }
  return GST_BUS_PASS;
}

static void on_alarm(int sig)
{
  (void)sig;
  static const char m[] = "trial did not finish within its alarm: a hang\n";
  ssize_t r = write(2, m, sizeof m - 1);
  (void)r;
  _exit(1);
}

static char *self_exe;

/* Fork and exec the peer; returns its pid, *fd the read end of its pipe. */
static pid_t spawn_peer(const char *role, const char *ring, int *fd)
{
  int fds[2];
  CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
  pid_t pid = tu_fork();
  if (pid == 0) {
    if (fds[1] == NOTIFY_FD)
      fcntl(NOTIFY_FD, F_SETFD, 0);
    else
      dup2(fds[1], NOTIFY_FD);
    execl(self_exe, self_exe, "--peer", role, ring, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  *fd = fds[0];
  return pid;
}

typedef struct {
  int consumer_survives;
  int64_t delay_ms;
  double latency_ms;
  int fds, maps, all_maps;
  int ring_left;
  int ok;
} Trial;

static int trial_no;
static int base_fds = -1, base_maps = -1;
static int64_t bound_ms = 2000;

static void trial_run(Trial *t, int consumer_survives, unsigned *seed, const char *label)
{
  memset(t, 0, sizeof *t);
  t->consumer_survives = consumer_survives;
  t->ok = 1;
  alarm(TRIAL_ALARM_S);
  char name[32];
  snprintf(name, sizeof name, "ring-%d", ++trial_no);
  char *ring = tu_path(name);

  int pfd;
  pid_t peer = spawn_peer(consumer_survives ? "producer" : "consumer", ring, &pfd);
  gchar *launch =
      g_strdup_printf(consumer_survives ? CONSUMER_SURVIVOR : PRODUCER_SURVIVOR, ring);
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch(launch, &err);
  CHECK(pipeline && !err, "%s: %s", launch, err ? err->message : "no pipeline");
  GstElement *rec = gst_bin_get_by_name(GST_BIN(pipeline), "rec");
  GstPad *pad = gst_element_get_static_pad(rec, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, survivor_probe, NULL, NULL);
  gst_object_unref(pad);
  gst_object_unref(rec);
  GstBus *bus = gst_element_get_bus(pipeline);
  g_atomic_int_set(&survivor_buffers, 0);
  atomic_store(&t_message, 0);
  gst_bus_set_sync_handler(bus, stamp_message, NULL, NULL);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);

  /* Both sides streaming: the peer said so, and the survivor passed a buffer. */
  int64_t end = tu_now_ns() + (int64_t)START_TIMEOUT_MS * 1000000;
  int peer_streams = 0;
  while (!peer_streams || g_atomic_int_get(&survivor_buffers) == 0) {
    CHECK(tu_now_ns() < end, "not streaming after %d ms (peer %d, survivor %d buffers)",
          START_TIMEOUT_MS, peer_streams, g_atomic_int_get(&survivor_buffers));
    CHECK(atomic_load(&t_message) == 0, "the survivor ended before the kill");
    struct pollfd p = { pfd, POLLIN, 0 };
    if (!peer_streams && poll(&p, 1, 5) == 1) {
      char c;
      CHECK(read(pfd, &c, 1) == 1, "the peer ended before streaming");
      peer_streams = 1;
    } else if (peer_streams) {
      tu_sleep_ms(1);
    }
  }
  t->delay_ms = (int64_t)(rand_r(seed) % 1001);
  tu_sleep_ms((int)t->delay_ms);
  CHECK(atomic_load(&t_message) == 0, "the survivor posted ERROR or EOS before the kill");

  int64_t t_kill = tu_now_ns();
  CHECK(kill(peer, SIGKILL) == 0, "kill: %s", strerror(errno));
  int st;
  CHECK(waitpid(peer, &st, 0) == peer, "waitpid: %s", strerror(errno));
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "peer status %d", st);
  close(pfd);

  GstMessage *msg = gst_bus_timed_pop_filtered(
      bus, (GstClockTime)MESSAGE_TIMEOUT_MS * GST_MSECOND, GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  const char *want = consumer_survives ? "died" : "went away";
  const char *want_from = consumer_survives ? "GstIpcRingSrc" : "GstIpcRingSink";
  gchar *text = NULL;
  if (!msg) {
    text = g_strdup_printf("no ERROR or EOS within %d ms", MESSAGE_TIMEOUT_MS);
    t->ok = 0;
  } else {
    t->latency_ms = (double)(atomic_load(&t_message) - t_kill) / 1e6;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
      text = g_strdup("EOS");
      t->ok = 0;
    } else {
      GError *e = NULL;
      gst_message_parse_error(msg, &e, NULL);
      const char *from = G_OBJECT_TYPE_NAME(GST_MESSAGE_SRC(msg));
      text = g_strdup_printf("%s: %s", from, e->message);
      if (!strstr(e->message, want) || strcmp(from, want_from) != 0)
        t->ok = 0;
      g_error_free(e);
    }
    gst_message_unref(msg);
    if (t->latency_ms < 0 || t->latency_ms > (double)bound_ms)
      t->ok = 0;
  }
  gst_bus_set_sync_handler(bus, NULL, NULL, NULL);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  g_free(launch);

  t->ring_left = access(ring, F_OK) == 0;
  unlink(ring);
  free(ring);
  t->fds = count_fds();
  t->maps = count_maps(&t->all_maps);
  alarm(0);
  if (base_fds >= 0 && (t->fds != base_fds || t->maps != base_maps))
    t->ok = 0;
  if (t->ring_left)
    t->ok = 0;
  printf("%s %d survivor=%s delay_ms=%lld latency_ms=%.3f fds=%d/%d maps=%d/%d all_maps=%d "
         "ring_left=%s %s | %s\n",
         label, trial_no, consumer_survives ? "consumer" : "producer", (long long)t->delay_ms,
         t->latency_ms, t->fds, base_fds, t->maps, base_maps, t->all_maps,
         t->ring_left ? "yes" : "no",
         t->ok ? "ok" : "FAIL", text);
  g_free(text);
}

static void usage(const char *argv0)
{
  fprintf(stderr, "usage: %s [-n TRIALS] [-d consumer|producer|both] [-s SEED] [-b BOUND_MS]\n",
          argv0);
  exit(2);
}

int main(int argc, char **argv)
{
  if (argc == 4 && strcmp(argv[1], "--peer") == 0)
    return peer_main(argv[2], argv[3]);

  int trials = 3, dirs = 3; /* bit 1: consumer survives, bit 2: producer survives */
  unsigned seed = (unsigned)tu_now_ns();
  int opt;
  while ((opt = getopt(argc, argv, "n:d:s:b:")) != -1) {
    switch (opt) {
    case 'n': trials = atoi(optarg); break;
    case 's': seed = (unsigned)strtoul(optarg, NULL, 0); break;
    case 'b': bound_ms = atoll(optarg); break;
    case 'd':
      dirs = !strcmp(optarg, "consumer") ? 1 : !strcmp(optarg, "producer") ? 2
             : !strcmp(optarg, "both") ? 3 : 0;
      break;
    default: usage(argv[0]);
    }
  }
  if (trials < 0 || dirs == 0 || bound_ms <= 0 || optind != argc)
    usage(argv[0]);

  setenv("GST_PLUGIN_PATH", IPCRING_BUILD_DIR "/gst", 0);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGALRM, on_alarm);
  self_exe = realpath("/proc/self/exe", NULL);
  CHECK(self_exe != NULL, "realpath /proc/self/exe: %s", strerror(errno));
  tu_tmpdir();
  if (SANITIZED_BUILD) {
    char *reg = tu_path("registry.bin");
    setenv("GST_REGISTRY", reg, 1);
    setenv("GST_REGISTRY_FORK", "no", 1);
    free(reg);
  }
  gst_init(NULL, NULL);
  GstElementFactory *need[] = { gst_element_factory_find("ipcringsrc"),
                                gst_element_factory_find("ipcringsink"),
                                gst_element_factory_find("videotestsrc") };
  CHECK(need[0] && need[1], "the ipcring plugin is not found (GST_PLUGIN_PATH=%s)",
        getenv("GST_PLUGIN_PATH"));
  if (!need[2]) {
    printf("videotestsrc (gst-plugins-base) is not installed: skipping\n");
    return TU_SKIP;
  }
  for (int i = 0; i < 3; i++)
    gst_object_unref(need[i]);
  printf("seed %u, %d trial(s) per direction, latency bound %lld ms (a hang guard)\n", seed,
         trials, (long long)bound_ms);

  /* The counts see one more descriptor and one more mapping. */
  int fds0 = count_fds(), maps0 = count_maps(NULL);
  int probe_fd = open(self_exe, O_RDONLY | O_CLOEXEC); /* a file mapping never merges */
  void *probe_map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, probe_fd, 0);
  CHECK(probe_fd >= 0 && probe_map != MAP_FAILED, "open or mmap: %s", strerror(errno));
  CHECK(count_fds() == fds0 + 1 && count_maps(NULL) == maps0 + 1,
        "counting does not see a new fd (%d -> %d) or mapping (%d -> %d)", fds0, count_fds(),
        maps0, count_maps(NULL));
  close(probe_fd);
  munmap(probe_map, 4096);

  /* One warm-up trial per direction: GStreamer's one-time allocations (types,
   * thread pools, the clock) happen there; then the baseline. */
  Trial t;
  int failed = 0;
  for (int d = 1; d <= 2; d++)
    if (dirs & d) {
      trial_run(&t, d == 1, &seed, "warm-up");
      failed += !t.ok;
    }
  base_fds = count_fds();
  int all;
  base_maps = count_maps(&all);
  printf("baseline: %d fds, %d file mappings (%d mappings in all)\n", base_fds, base_maps, all);

  for (int i = 0; i < trials; i++)
    for (int d = 1; d <= 2; d++)
      if (dirs & d) {
        trial_run(&t, d == 1, &seed, "trial");
        failed += !t.ok;
      }
  if (failed) {
    fprintf(stderr, "%d trial(s) failed\n", failed);
    return 1;
  }
  printf("all trials passed\n");
  return 0;
}
