/* ipc_bench: throughput of an ipcring between two processes.
 *
 *   ipc_bench [driver|reader|writer|memcpy] --ring PATH [--messages N]
 *             [--msg-size S] [--cap BYTES]
 *
 * driver (the default) runs the writer and the reader as two processes and
 * prints one JSON line:
 *   {"messages":N,"msg_size":S,"elapsed_sec":T,"msgs_per_sec":R,"MiB_per_sec":M}
 * The clock starts when the reader gets the first message and stops at the
 * last; MiB/s counts payload bytes. The reader checks every message (sequence
 * number, tag, length and every payload byte) and exits non-zero on any loss,
 * reorder or corruption. The ring file is removed at the end.
 *
 * reader / writer run one side each (start them in two shells; the reader
 * prints the JSON). memcpy prints the same figures for a single-thread memcpy
 * of the same sizes through a buffer of the same capacity: the physical
 * reference for what a copy into the ring can cost.
 */
#define _GNU_SOURCE
#include "ipcring.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NSEC 1000000000LL
#define ATTACH_TIMEOUT_NS (10 * NSEC)

struct opts {
  const char *mode;
  const char *ring;
  uint64_t messages;
  uint64_t msg_size;
  uint64_t cap;
};

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

static void usage(FILE *f)
{
  fprintf(f,
          "usage: ipc_bench [driver|reader|writer|memcpy] --ring PATH [--messages N]\n"
          "                 [--msg-size S] [--cap BYTES]\n"
          "  --ring PATH     ring file to create (writer) or open (reader), e.g. /dev/shm/bench\n"
          "  --messages N    messages to send (default 5000000)\n"
          "  --msg-size S    payload bytes per message, at least 8 (default 256)\n"
          "  --cap BYTES     ring capacity, a power of two from %" PRIu64 " to %" PRIu64
          " (default 67108864)\n",
          IPCRING_CAPACITY_MIN, IPCRING_CAPACITY_MAX);
}

static int parse_u64(const char *name, const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s || *end || s[0] == '-') {
    fprintf(stderr, "ipc_bench: %s: '%s' is not a whole number\n", name, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
  o->mode = "driver";
  o->ring = NULL;
  o->messages = 5000000;
  o->msg_size = 256;
  o->cap = 64 << 20;
  int i = 1;
  if (i < argc && argv[i][0] != '-')
    o->mode = argv[i++];
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "ipc_bench: %s needs a value\n", a);
      return -1;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--ring"))
      o->ring = v;
    else if (!strcmp(a, "--messages")) {
      if (parse_u64(a, v, &o->messages))
        return -1;
    } else if (!strcmp(a, "--msg-size")) {
      if (parse_u64(a, v, &o->msg_size))
        return -1;
    } else if (!strcmp(a, "--cap")) {
      if (parse_u64(a, v, &o->cap))
        return -1;
    } else {
      fprintf(stderr, "ipc_bench: unknown option %s\n", a);
      return -1;
    }
  }
  if (strcmp(o->mode, "driver") && strcmp(o->mode, "reader") && strcmp(o->mode, "writer") &&
      strcmp(o->mode, "memcpy")) {
    fprintf(stderr, "ipc_bench: unknown mode '%s'\n", o->mode);
    return -1;
  }
  if (!o->ring && strcmp(o->mode, "memcpy")) {
    fprintf(stderr, "ipc_bench: --ring PATH is required (for example --ring /dev/shm/bench)\n");
    return -1;
  }
  if (o->messages == 0) {
    fprintf(stderr, "ipc_bench: --messages must be at least 1\n");
    return -1;
  }
  if (o->cap < IPCRING_CAPACITY_MIN || o->cap > IPCRING_CAPACITY_MAX || (o->cap & (o->cap - 1))) {
    fprintf(stderr,
            "ipc_bench: --cap %" PRIu64 " is not a power of two from %" PRIu64 " to %" PRIu64 "\n",
            o->cap, IPCRING_CAPACITY_MIN, IPCRING_CAPACITY_MAX);
    return -1;
  }
  if (o->msg_size < 8 || o->msg_size > ipcring_max_payload(o->cap)) {
    fprintf(stderr, "ipc_bench: --msg-size must be from 8 to %zu for a ring of %" PRIu64 " bytes\n",
            ipcring_max_payload(o->cap), o->cap);
    return -1;
  }
  return 0;
}

/* Message seq: 8 bytes of seq, then byte i = (seq + i) & 0xff. The pattern
 * buffer holds byte j = j & 0xff, so a message's bytes start at pat + seq%256. */
static uint8_t *make_pattern(uint64_t size)
{
  uint8_t *p = malloc(size + 256);
  if (!p) {
    perror("ipc_bench: malloc");
    exit(1);
  }
  for (uint64_t j = 0; j < size + 256; j++)
    p[j] = (uint8_t)j;
  return p;
}

static void print_json(uint64_t n, uint64_t size, double sec, const char *mode)
{
  double rate = sec > 0 ? n / sec : 0;
  printf("{");
  if (mode)
    printf("\"mode\":\"%s\",", mode);
  printf("\"messages\":%" PRIu64 ",\"msg_size\":%" PRIu64
         ",\"elapsed_sec\":%.6f,\"msgs_per_sec\":%.0f,\"MiB_per_sec\":%.2f}\n",
         n, size, sec, rate, rate * (double)size / (1024.0 * 1024.0));
  fflush(stdout);
}

static int run_writer(const struct opts *o)
{
  ipcring_writer *w;
  int rc = ipcring_writer_create(o->ring, o->cap, 0600, 0, &w);
  if (rc) {
    fprintf(stderr, "ipc_bench writer: cannot create ring %s: %s\n", o->ring, ipcring_strerror(rc));
    return 1;
  }
  rc = ipcring_writer_wait_reader(w, ATTACH_TIMEOUT_NS);
  if (rc) {
    fprintf(stderr, "ipc_bench writer: no reader attached to %s: %s\n", o->ring,
            ipcring_strerror(rc));
    ipcring_writer_unlink(w);
    ipcring_writer_close(w);
    return 1;
  }
  /* The reader has it mapped: the name is no longer needed. */
  ipcring_writer_unlink(w);
  uint8_t *pat = make_pattern(o->msg_size);
  size_t size = o->msg_size;
  for (uint64_t seq = 0; seq < o->messages; seq++) {
    void *p;
    rc = ipcring_writer_reserve(w, size, -1, &p);
    if (rc) {
      fprintf(stderr, "ipc_bench writer: message %" PRIu64 ": %s\n", seq, ipcring_strerror(rc));
      ipcring_writer_close(w);
      return 1;
    }
    /* One copy of the whole payload (as a producer would), then the sequence
     * number over its first 8 bytes. */
    memcpy(p, pat + (seq & 0xff), size);
    memcpy(p, &seq, 8);
    ipcring_writer_commit(w, size, (uint32_t)seq);
  }
  ipcring_writer_eos(w);
  ipcring_writer_close(w);
  free(pat);
  return 0;
}

/* Returns 0 and the elapsed time, or 1 after printing what went wrong. */
static int run_reader(const struct opts *o, double *elapsed)
{
  ipcring_reader *r = NULL;
  int rc;
  int64_t give_up = now_ns() + ATTACH_TIMEOUT_NS;
  while ((rc = ipcring_reader_open(o->ring, 0, &r)) == -ENOENT && now_ns() < give_up) {
    struct timespec nap = { 0, 1000000 };
    nanosleep(&nap, NULL);
  }
  if (rc) {
    fprintf(stderr, "ipc_bench reader: cannot open ring %s: %s\n", o->ring, ipcring_strerror(rc));
    return 1;
  }
  uint8_t *pat = make_pattern(o->msg_size);
  size_t size = o->msg_size;
  int64_t start = 0;
  uint64_t seq = 0;
  int bad = 0;
  for (;;) {
    const void *p;
    size_t len;
    uint32_t tag;
    rc = ipcring_reader_peek(r, &p, &len, &tag, -1);
    if (rc == -ENODATA)
      break;
    if (rc) {
      fprintf(stderr, "ipc_bench reader: after %" PRIu64 " messages: %s\n", seq,
              ipcring_strerror(rc));
      bad = 1;
      break;
    }
    if (seq == 0)
      start = now_ns();
    uint64_t got;
    memcpy(&got, p, 8);
    if (len != size || got != seq || tag != (uint32_t)seq ||
        memcmp((const uint8_t *)p + 8, pat + (seq & 0xff) + 8, size - 8) != 0) {
      fprintf(stderr,
              "ipc_bench reader: message %" PRIu64 " is wrong (got seq %" PRIu64
              ", tag %u, length %zu)\n",
              seq, got, tag, len);
      bad = 1;
      break;
    }
    ipcring_reader_release(r);
    seq++;
  }
  int64_t end = now_ns();
  ipcring_reader_close(r);
  free(pat);
  if (!bad && seq != o->messages) {
    fprintf(stderr, "ipc_bench reader: got %" PRIu64 " of %" PRIu64 " messages\n", seq,
            o->messages);
    bad = 1;
  }
  *elapsed = (double)(end - start) / NSEC;
  return bad;
}

static int run_memcpy(const struct opts *o)
{
  uint8_t *pat = make_pattern(o->msg_size);
  uint8_t *dst = malloc(o->cap);
  if (!dst) {
    perror("ipc_bench: malloc");
    return 1;
  }
  memset(dst, 0, o->cap); /* fault it in, as the ring's create does */
  uint64_t rec = (o->msg_size + 8 + 7) & ~(uint64_t)7;
  uint64_t off = 0;
  int64_t start = now_ns();
  for (uint64_t seq = 0; seq < o->messages; seq++) {
    if (off + rec > o->cap)
      off = 0;
    memcpy(dst + off + 8, pat + (seq & 0xff), o->msg_size);
    off += rec;
  }
  int64_t end = now_ns();
  /* Keep the copies observable. */
  volatile uint8_t sink = dst[o->cap / 2];
  (void)sink;
  print_json(o->messages, o->msg_size, (double)(end - start) / NSEC, "memcpy");
  free(dst);
  free(pat);
  return 0;
}

static int run_driver(const struct opts *o)
{
  int fds[2];
  if (pipe(fds) != 0) {
    perror("ipc_bench: pipe");
    return 1;
  }
  pid_t reader = fork();
  if (reader < 0) {
    perror("ipc_bench: fork");
    return 1;
  }
  if (reader == 0) {
    close(fds[0]);
    double sec = 0;
    int bad = run_reader(o, &sec);
    if (!bad && write(fds[1], &sec, sizeof sec) != (ssize_t)sizeof sec)
      bad = 1;
    _exit(bad);
  }
  close(fds[1]);
  pid_t writer = fork();
  if (writer < 0) {
    perror("ipc_bench: fork");
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    return 1;
  }
  if (writer == 0) {
    close(fds[0]);
    _exit(run_writer(o));
  }
  double sec = 0;
  ssize_t n = read(fds[0], &sec, sizeof sec);
  close(fds[0]);
  int st_r = 0, st_w = 0;
  waitpid(reader, &st_r, 0);
  if (n != (ssize_t)sizeof sec && WIFEXITED(st_r) && WEXITSTATUS(st_r) == 0)
    st_r = 1;
  if (!WIFEXITED(st_r) || WEXITSTATUS(st_r) != 0)
    kill(writer, SIGKILL); /* a writer blocked on a ring nobody drains */
  waitpid(writer, &st_w, 0);
  unlink(o->ring); /* normally gone already; not if a side failed early */
  if (!WIFEXITED(st_w) || WEXITSTATUS(st_w) != 0 || !WIFEXITED(st_r) || WEXITSTATUS(st_r) != 0 ||
      n != (ssize_t)sizeof sec) {
    fprintf(stderr, "ipc_bench: failed (reader status %d, writer status %d)\n", st_r, st_w);
    return 1;
  }
  print_json(o->messages, o->msg_size, sec, NULL);
  return 0;
}

int main(int argc, char **argv)
{
  struct opts o;
  if (parse(argc, argv, &o) != 0) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(o.mode, "memcpy"))
    return run_memcpy(&o);
  if (!strcmp(o.mode, "writer"))
    return run_writer(&o);
  if (!strcmp(o.mode, "reader")) {
    double sec;
    if (run_reader(&o, &sec))
      return 1;
    print_json(o.messages, o.msg_size, sec, NULL);
    return 0;
  }
  return run_driver(&o);
}
