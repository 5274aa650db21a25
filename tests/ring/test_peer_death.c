/* Peer death: what each side sees when the other one dies (kill -9) or
 * leaves without ending the stream, and how a new peer takes over.
 *
 * Each case runs the sides in child processes and the parent orchestrates
 * them through pipes: a child says what it is about to do ("I am about to
 * block"), the parent waits ~70 ms so that the child is really asleep in the
 * library (70, not 50: the kill then does not coincide with the end of the
 * library's first 50 ms sleep slice), then kills the peer and measures, from
 * the kill to the return of the blocked call (CLOCK_MONOTONIC is shared by all
 * processes).
 *
 * The spec says a blocked side notices a dead peer within 100 ms (one 50 ms
 * sleep slice plus a check). On a noisy 2-core VM we assert a generous
 * 500 ms (5x the spec) and print the measured value.
 *
 * Records carry their sequence number (payload) and a tag derived from it,
 * so every read checks order, loss and duplication. */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <poll.h>

#define MS 1000000LL
#define SEC 1000000000LL
#define SPEC_PEER_DEATH_MS 100
#define ASSERT_PEER_DEATH_MS (5 * SPEC_PEER_DEATH_MS) /* slack for a noisy VM */
#define PIPE_TIMEOUT_MS 20000 /* bound on any wait for a child's message */
#define CALL_TIMEOUT_NS (10 * SEC) /* bound on ordinary blocking calls */
#define REC_PAYLOAD 16u

static const char *ring_path;

/* ---- messages between parent and children ---------------------------- */

struct msg {
  char code;
  int rc;
  int64_t t;
  uint64_t n;
};

struct chan {
  int rd, wr;
};

static struct chan chan_new(void)
{
  int fds[2];
  CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
  return (struct chan){ fds[0], fds[1] };
}

static void chan_close(struct chan *c)
{
  if (c->rd >= 0)
    close(c->rd);
  if (c->wr >= 0)
    close(c->wr);
  c->rd = c->wr = -1;
}

static void say(struct chan *c, char code, int rc, int64_t t, uint64_t n)
{
  struct msg m = { code, rc, t, n };
  CHECK(write(c->wr, &m, sizeof m) == (ssize_t)sizeof m, "write: %s", strerror(errno));
}

/* The next message, which must carry `code`, within PIPE_TIMEOUT_MS. */
static struct msg hear(struct chan *c, char code)
{
  struct pollfd pfd = { c->rd, POLLIN, 0 };
  int rc;
  do
    rc = poll(&pfd, 1, PIPE_TIMEOUT_MS);
  while (rc < 0 && errno == EINTR);
  CHECK(rc == 1, "no message '%c' within %d ms", code, PIPE_TIMEOUT_MS);
  struct msg m;
  ssize_t n = read(c->rd, &m, sizeof m);
  CHECK(n == (ssize_t)sizeof m, "peer ended before saying '%c' (read %zd)", code, n);
  CHECK(m.code == code, "got message '%c', expected '%c'", m.code, code);
  return m;
}

/* A child that has done its part waits here to be killed (bounded). */
_Noreturn static void linger(void)
{
  tu_sleep_ms(PIPE_TIMEOUT_MS + 10000);
  _exit(3);
}

static void check_killed(int st)
{
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %d: not killed by SIGKILL", st);
}

/* ---- records ---------------------------------------------------------- */

static uint32_t tag_of(uint64_t seq)
{
  return (uint32_t)(seq * 2654435761u) ^ 0xa5a5a5a5u;
}

static void push_seq(ipcring_writer *w, uint64_t seq, int64_t timeout_ns)
{
  uint64_t p[REC_PAYLOAD / 8] = { seq, ~seq };
  CHECK_RC(ipcring_writer_push(w, p, sizeof p, tag_of(seq), timeout_ns), 0);
}

static void check_rec(uint64_t seq, const void *ptr, size_t len, uint32_t tag)
{
  uint64_t p[REC_PAYLOAD / 8];
  CHECK(len == REC_PAYLOAD, "record %" PRIu64 ": length %zu", seq, len);
  memcpy(p, ptr, sizeof p);
  CHECK(p[0] == seq && p[1] == ~seq, "expected record %" PRIu64 ", got %" PRIu64, seq, p[0]);
  CHECK(tag == tag_of(seq), "record %" PRIu64 ": tag %08x", seq, tag);
}

/* Read record seq (peek/release for even, pop for odd sequence numbers). */
static void read_seq(ipcring_reader *r, uint64_t seq, int64_t timeout_ns)
{
  const void *p;
  size_t len;
  uint32_t tag;
  if (seq & 1) {
    uint8_t buf[REC_PAYLOAD];
    int rc = ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, timeout_ns);
    CHECK(rc == (int)REC_PAYLOAD, "pop of record %" PRIu64 ": %d (%s)", seq, rc,
          ipcring_strerror(rc));
    check_rec(seq, buf, len, tag);
  } else {
    CHECK_RC(ipcring_reader_peek(r, &p, &len, &tag, timeout_ns), 0);
    check_rec(seq, p, len, tag);
    CHECK_RC(ipcring_reader_release(r), 0);
  }
}

static int peek_rc(ipcring_reader *r, int64_t timeout_ns)
{
  const void *p;
  size_t len;
  uint32_t tag;
  return ipcring_reader_peek(r, &p, &len, &tag, timeout_ns);
}

static void check_latency(const char *what, int64_t from, int64_t to)
{
  double ms = (double)(to - from) / MS;
  printf("  %s: %.1f ms (spec %d ms, asserted < %d ms)\n", what, ms, SPEC_PEER_DEATH_MS,
         ASSERT_PEER_DEATH_MS);
  CHECK(to >= from, "returned before the peer went away");
  CHECK(to - from < ASSERT_PEER_DEATH_MS * MS, "%s took %.1f ms", what, ms);
}

static void fresh_path(const char *name)
{
  free((void *)ring_path);
  ring_path = tu_path(name);
}

/* ---- cases ------------------------------------------------------------ */

/* kill -9 of the writer while the reader is blocked in peek(-1): the reader
 * first gets every record the writer committed, then -EPIPE within the
 * spec's 100 ms. A further peek waits (-ETIMEDOUT) instead of repeating
 * -EPIPE, and a new writer created on the same path takes the ring over:
 * the same reader, still waiting, continues with the new writer's records. */
static void test_writer_killed_then_restarted(void)
{
  printf("writer killed while the reader is blocked, then a new writer takes over\n");
  fresh_path("wkill.ring");
  const uint64_t K = 500, M = 300;
  const uint64_t cap = 64 * 1024;
  struct chan wch = chan_new(), rch = chan_new();

  pid_t wpid = tu_fork();
  if (wpid == 0) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(ring_path, cap, 0600, 0, &w), 0);
    say(&wch, 'C', 0, 0, 0);
    CHECK_RC(ipcring_writer_wait_reader(w, CALL_TIMEOUT_NS), 0);
    for (uint64_t s = 0; s < K; s++)
      push_seq(w, s, CALL_TIMEOUT_NS);
    say(&wch, 'R', 0, 0, K);
    linger();
  }
  hear(&wch, 'C');

  pid_t rpid = tu_fork();
  if (rpid == 0) {
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
    uint64_t s = 0;
    for (; s < K; s++)
      read_seq(r, s, CALL_TIMEOUT_NS);
    say(&rch, 'B', 0, tu_now_ns(), s);
    int rc = peek_rc(r, -1); /* the writer is killed while we sleep here */
    say(&rch, 'E', rc, tu_now_ns(), s);
    CHECK_RC(rc, -EPIPE);

    /* Reported once: the next call waits for a new writer. */
    int64_t t0 = tu_now_ns();
    rc = peek_rc(r, 100 * MS);
    say(&rch, 'T', rc, tu_now_ns() - t0, s);
    CHECK_RC(rc, -ETIMEDOUT);

    say(&rch, 'W', 0, tu_now_ns(), s);
    /* Waiting for the new writer (bounded), then its records, then EOS. */
    for (; s < K + M; s++)
      read_seq(r, s, CALL_TIMEOUT_NS);
    rc = peek_rc(r, CALL_TIMEOUT_NS);
    say(&rch, 'D', rc, 0, s);
    CHECK_RC(rc, -ENODATA);
    struct ipcring_info info;
    CHECK_RC(ipcring_reader_info(r, &info), 0);
    CHECK(info.writer_generation == 2, "writer generation %" PRIu64, info.writer_generation);
    ipcring_reader_close(r);
    _exit(0);
  }

  hear(&wch, 'R');
  hear(&rch, 'B');
  tu_sleep_ms(70); /* let the reader fall asleep in peek(-1) */
  int64_t t_kill = tu_now_ns();
  CHECK(kill(wpid, SIGKILL) == 0, "kill: %s", strerror(errno));
  check_killed(tu_reap(wpid, 10000));

  struct msg m = hear(&rch, 'E');
  CHECK(m.rc == -EPIPE, "blocked peek after the writer's death returned %d (%s)", m.rc,
        ipcring_strerror(m.rc));
  CHECK(m.n == K, "reader got %" PRIu64 " of %" PRIu64 " committed records", m.n, K);
  check_latency("writer death -> reader -EPIPE", t_kill, m.t);

  m = hear(&rch, 'T');
  CHECK(m.rc == -ETIMEDOUT, "second peek returned %d (%s), expected -ETIMEDOUT", m.rc,
        ipcring_strerror(m.rc));
  CHECK(m.t >= 100 * MS, "100 ms peek returned after %.1f ms", (double)m.t / MS);
  printf("  second peek after -EPIPE: -ETIMEDOUT after %.1f ms\n", (double)m.t / MS);

  hear(&rch, 'W');
  tu_sleep_ms(50); /* the reader is waiting for a new writer */
  pid_t w2 = tu_fork();
  if (w2 == 0) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(ring_path, cap, 0600, 0, &w), 0);
    struct ipcring_info info;
    CHECK_RC(ipcring_writer_info(w, &info), 0);
    CHECK(info.write_index == K * ipcring_record_size(REC_PAYLOAD),
          "takeover continues at %" PRIu64 ", expected %" PRIu64, info.write_index,
          K * ipcring_record_size(REC_PAYLOAD));
    CHECK(info.writer_generation == 2, "writer generation %" PRIu64, info.writer_generation);
    CHECK(info.peer_alive == 1, "the waiting reader is not seen as attached");
    for (uint64_t s = K; s < K + M; s++)
      push_seq(w, s, CALL_TIMEOUT_NS);
    CHECK_RC(ipcring_writer_eos(w), 0);
    ipcring_writer_close(w);
    _exit(0);
  }
  m = hear(&rch, 'D');
  CHECK(m.rc == -ENODATA && m.n == K + M, "after takeover: %" PRIu64 " records, then %d (%s)",
        m.n, m.rc, ipcring_strerror(m.rc));
  {
    int st_ = tu_reap(w2, 10000);
    CHECK_CHILD_OK(st_);
  }
  {
    int st_ = tu_reap(rpid, 10000);
    CHECK_CHILD_OK(st_);
  }
  printf("  reader continued with the new writer: %" PRIu64 " records in order, then EOS\n",
         K + M);
  chan_close(&wch);
  chan_close(&rch);
  unlink(ring_path);
}

/* A writer that commits a burst into the ring of a blocked reader and dies
 * (kill -9 of itself) right after its last commit: whatever the reader had
 * not yet read at that moment, it still gets every record before -EPIPE.
 * Repeated, since the moment of death falls differently each time. */
static void test_writer_killed_after_burst(void)
{
  const int rounds = 10;
  const uint64_t J = 2000; /* 2000 x 24 bytes: fits, the writer never waits */
  printf("writer killed right after a burst of %" PRIu64 " records, %d times\n", J, rounds);
  fresh_path("burst.ring");
  uint64_t unread_at_death = 0;
  for (int round = 0; round < rounds; round++) {
    struct chan wch = chan_new(), wdown = chan_new(), rch = chan_new();
    pid_t wpid = tu_fork();
    if (wpid == 0) {
      ipcring_writer *w;
      CHECK_RC(ipcring_writer_create(ring_path, 64 * 1024, 0600, 0, &w), 0);
      say(&wch, 'C', 0, 0, 0);
      CHECK_RC(ipcring_writer_wait_reader(w, CALL_TIMEOUT_NS), 0);
      hear(&wdown, 'g');
      for (uint64_t s = 0; s < J; s++)
        push_seq(w, s, 0);
      raise(SIGKILL);
      _exit(4);
    }
    hear(&wch, 'C');
    pid_t rpid = tu_fork();
    if (rpid == 0) {
      ipcring_reader *r;
      CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
      say(&rch, 'B', 0, 0, 0);
      uint64_t s = 0;
      int rc;
      for (;; s++) {
        const void *p;
        size_t len;
        uint32_t tag;
        if ((rc = ipcring_reader_peek(r, &p, &len, &tag, -1)) != 0)
          break;
        check_rec(s, p, len, tag);
        CHECK_RC(ipcring_reader_release(r), 0);
        if (s % 200 == 199)
          tu_sleep_ms(1); /* read slower than the writer writes */
      }
      say(&rch, 'E', rc, 0, s);
      ipcring_reader_close(r);
      _exit(0);
    }
    hear(&rch, 'B');
    tu_sleep_ms(70); /* the reader is asleep in peek(-1) */
    say(&wdown, 'g', 0, 0, 0);
    check_killed(tu_reap(wpid, 10000));
    /* How far the reader had got once the writer was certainly dead
     * (informative: shows whether records were still unread at death). */
    {
      int fd = open(ring_path, O_RDONLY);
      CHECK(fd >= 0, "open: %s", strerror(errno));
      uint64_t ri = 0, wi = 0;
      CHECK(pread(fd, &ri, 8, offsetof(struct ipcring_shared, read_index)) == 8 &&
                pread(fd, &wi, 8, offsetof(struct ipcring_shared, write_index)) == 8,
            "pread: %s", strerror(errno));
      close(fd);
      if (wi != ri)
        unread_at_death++;
    }
    struct msg m = hear(&rch, 'E');
    CHECK(m.rc == -EPIPE && m.n == J,
          "round %d: reader got %" PRIu64 " of %" PRIu64 " records, then %d (%s)", round, m.n, J,
          m.rc, ipcring_strerror(m.rc));
    {
      int st_ = tu_reap(rpid, 10000);
      CHECK_CHILD_OK(st_);
    }
    chan_close(&wch);
    chan_close(&wdown);
    chan_close(&rch);
    unlink(ring_path);
  }
  printf("  every round: all %" PRIu64 " records, then -EPIPE (%" PRIu64
         " rounds had records unread when the writer was reaped)\n",
         J, unread_at_death);
}

/* kill -9 of the reader while the writer is blocked on a full ring: the
 * writer gets -EPIPE within the spec's 100 ms, once; the next push waits. */
static void test_reader_killed_writer_blocked(void)
{
  printf("reader killed while the writer is blocked on a full ring\n");
  fresh_path("rkill.ring");
  struct chan wch = chan_new(), rch = chan_new();

  pid_t wpid = tu_fork();
  if (wpid == 0) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(ring_path, 4096, 0600, 0, &w), 0);
    say(&wch, 'C', 0, 0, 0);
    CHECK_RC(ipcring_writer_wait_reader(w, CALL_TIMEOUT_NS), 0);
    uint64_t s = 0;
    uint64_t p[REC_PAYLOAD / 8] = { 0, 0 };
    int rc;
    while ((rc = ipcring_writer_push(w, p, sizeof p, tag_of(s), 0)) == 0)
      s++;
    CHECK_RC(rc, -EAGAIN);
    CHECK(s == 4096 / ipcring_record_size(REC_PAYLOAD), "ring took %" PRIu64 " records", s);
    say(&wch, 'B', 0, 0, s);
    rc = ipcring_writer_push(w, p, sizeof p, 0, -1); /* the reader dies meanwhile */
    say(&wch, 'E', rc, tu_now_ns(), s);
    CHECK_RC(rc, -EPIPE);
    int64_t t0 = tu_now_ns();
    rc = ipcring_writer_push(w, p, sizeof p, 0, 100 * MS);
    say(&wch, 'T', rc, tu_now_ns() - t0, s);
    CHECK_RC(rc, -ETIMEDOUT);
    ipcring_writer_close(w);
    _exit(0);
  }
  hear(&wch, 'C');
  pid_t rpid = tu_fork();
  if (rpid == 0) {
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
    say(&rch, 'A', 0, 0, 0);
    linger();
  }
  hear(&rch, 'A');
  struct msg m = hear(&wch, 'B');
  printf("  ring full after %" PRIu64 " records\n", m.n);
  tu_sleep_ms(70); /* let the writer fall asleep in push(-1) */
  int64_t t_kill = tu_now_ns();
  CHECK(kill(rpid, SIGKILL) == 0, "kill: %s", strerror(errno));
  check_killed(tu_reap(rpid, 10000));

  m = hear(&wch, 'E');
  CHECK(m.rc == -EPIPE, "blocked push after the reader's death returned %d (%s)", m.rc,
        ipcring_strerror(m.rc));
  check_latency("reader death -> writer -EPIPE", t_kill, m.t);
  m = hear(&wch, 'T');
  CHECK(m.rc == -ETIMEDOUT, "second push returned %d (%s), expected -ETIMEDOUT", m.rc,
        ipcring_strerror(m.rc));
  CHECK(m.t >= 100 * MS, "100 ms push returned after %.1f ms", (double)m.t / MS);
  printf("  second push after -EPIPE: -ETIMEDOUT after %.1f ms\n", (double)m.t / MS);
  {
    int st_ = tu_reap(wpid, 10000);
    CHECK_CHILD_OK(st_);
  }
  chan_close(&wch);
  chan_close(&rch);
  unlink(ring_path);
}

/* A new reader attaches after the old one was killed and continues at the
 * shared read index: the record the dead reader peeked but did not release
 * comes again, nothing it released comes again, nothing is lost. The writer
 * streams more than the capacity, so it blocks on the full ring: it sees
 * -EPIPE exactly once for the dead reader, and its retry waits for the new
 * reader and carries on with it. */
static void test_reader_reattach(void)
{
  printf("a new reader continues where a killed reader stopped\n");
  fresh_path("reattach.ring");
  const uint64_t N = 5000, K = 400;
  const uint64_t cap = 64 * 1024; /* N records are ~2x the capacity */
  struct chan wch = chan_new(), rch = chan_new();

  pid_t wpid = tu_fork();
  if (wpid == 0) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(ring_path, cap, 0600, 0, &w), 0);
    say(&wch, 'C', 0, 0, 0);
    CHECK_RC(ipcring_writer_wait_reader(w, CALL_TIMEOUT_NS), 0);
    uint64_t pipes = 0;
    for (uint64_t s = 0; s < N; s++) {
      uint64_t p[REC_PAYLOAD / 8] = { s, ~s };
      int rc = ipcring_writer_push(w, p, sizeof p, tag_of(s), CALL_TIMEOUT_NS);
      if (rc == -EPIPE) {
        pipes++;
        say(&wch, 'P', rc, 0, s);
        rc = ipcring_writer_push(w, p, sizeof p, tag_of(s), CALL_TIMEOUT_NS);
      }
      CHECK(rc == 0, "push of record %" PRIu64 ": %d (%s)", s, rc, ipcring_strerror(rc));
    }
    CHECK_RC(ipcring_writer_eos(w), 0);
    say(&wch, 'D', 0, 0, pipes);
    ipcring_writer_close(w);
    _exit(0);
  }
  hear(&wch, 'C');

  pid_t rpid = tu_fork();
  if (rpid == 0) {
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
    for (uint64_t s = 0; s < K; s++)
      read_seq(r, s, CALL_TIMEOUT_NS);
    const void *p;
    size_t len;
    uint32_t tag;
    CHECK_RC(ipcring_reader_peek(r, &p, &len, &tag, CALL_TIMEOUT_NS), 0);
    check_rec(K, p, len, tag);
    say(&rch, 'H', 0, 0, K); /* released 0..K-1, holding K */
    linger();
  }
  struct msg m = hear(&rch, 'H');
  CHECK(m.n == K, "reader released %" PRIu64, m.n);
  CHECK(kill(rpid, SIGKILL) == 0, "kill: %s", strerror(errno));
  check_killed(tu_reap(rpid, 10000));
  /* The writer fills the ring (N records do not fit while record K is held)
   * and blocks; it must see the death once before a new reader exists. */
  m = hear(&wch, 'P');
  printf("  writer got -EPIPE while pushing record %" PRIu64 "\n", m.n);

  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(r, &info), 0);
  CHECK(info.reader_generation == 2, "reader generation %" PRIu64, info.reader_generation);
  CHECK(info.read_index == K * ipcring_record_size(REC_PAYLOAD),
        "new reader starts at %" PRIu64 ", expected %" PRIu64, info.read_index,
        K * ipcring_record_size(REC_PAYLOAD));
  for (uint64_t s = K; s < N; s++)
    read_seq(r, s, CALL_TIMEOUT_NS);
  CHECK_RC(peek_rc(r, CALL_TIMEOUT_NS), -ENODATA);
  m = hear(&wch, 'D');
  CHECK(m.n == 1, "writer saw -EPIPE %" PRIu64 " times for one dead reader", m.n);
  {
    int st_ = tu_reap(wpid, 10000);
    CHECK_CHILD_OK(st_);
  }
  ipcring_reader_close(r);
  printf("  new reader read records %" PRIu64 "..%" PRIu64 ", then EOS; writer saw -EPIPE %" PRIu64
         " time(s)\n",
         K, N - 1, m.n);
  chan_close(&wch);
  chan_close(&rch);
  unlink(ring_path);
}

/* A writer that died before any reader attached: a reader opening the ring
 * later drains what was committed, then gets -EPIPE (promptly), and the next
 * peek waits for a new writer (-ETIMEDOUT). */
static void test_writer_died_before_reader(void)
{
  printf("writer killed before any reader attached\n");
  fresh_path("orphan.ring");
  const uint64_t N = 700;
  struct chan wch = chan_new();
  pid_t wpid = tu_fork();
  if (wpid == 0) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(ring_path, 64 * 1024, 0600, 0, &w), 0);
    for (uint64_t s = 0; s < N; s++)
      push_seq(w, s, 0);
    say(&wch, 'D', 0, 0, N);
    linger();
  }
  hear(&wch, 'D');
  CHECK(kill(wpid, SIGKILL) == 0, "kill: %s", strerror(errno));
  check_killed(tu_reap(wpid, 10000));

  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(r, &info), 0);
  CHECK(info.peer_alive == 0, "dead writer reported alive");
  for (uint64_t s = 0; s < N; s++)
    read_seq(r, s, 0); /* all committed: no waiting needed */
  int64_t t0 = tu_now_ns();
  int rc = peek_rc(r, CALL_TIMEOUT_NS);
  int64_t t1 = tu_now_ns();
  CHECK_RC(rc, -EPIPE);
  check_latency("drained ring of a dead writer -> -EPIPE", t0, t1);
  CHECK_RC(peek_rc(r, 50 * MS), -ETIMEDOUT);
  CHECK_RC(peek_rc(r, 0), -EAGAIN);
  ipcring_reader_close(r);
  printf("  drained %" PRIu64 " records, then -EPIPE once, then waits\n", N);
  chan_close(&wch);
  unlink(ring_path);
}

/* ipcring_writer_close() without ipcring_writer_eos() while the writer
 * process lives on: the blocked reader gets -EPIPE promptly (not -ENODATA),
 * after the records committed before the close. */
static void test_writer_close_without_eos(void)
{
  printf("writer closes without EOS while the reader is blocked\n");
  fresh_path("close.ring");
  const uint64_t K = 100;
  struct chan wch = chan_new(), wdown = chan_new(), rch = chan_new();

  pid_t wpid = tu_fork();
  if (wpid == 0) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(ring_path, 64 * 1024, 0600, 0, &w), 0);
    say(&wch, 'C', 0, 0, 0);
    CHECK_RC(ipcring_writer_wait_reader(w, CALL_TIMEOUT_NS), 0);
    for (uint64_t s = 0; s < K; s++)
      push_seq(w, s, CALL_TIMEOUT_NS);
    say(&wch, 'R', 0, 0, K);
    hear(&wdown, 'x');
    int64_t t = tu_now_ns();
    ipcring_writer_close(w);
    say(&wch, 'X', 0, t, 0);
    hear(&wdown, 'q'); /* stay alive: the close alone must be noticed */
    _exit(0);
  }
  hear(&wch, 'C');
  pid_t rpid = tu_fork();
  if (rpid == 0) {
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(ring_path, 0, &r), 0);
    uint64_t s = 0;
    for (; s < K; s++)
      read_seq(r, s, CALL_TIMEOUT_NS);
    say(&rch, 'B', 0, 0, s);
    int rc = peek_rc(r, -1);
    say(&rch, 'E', rc, tu_now_ns(), s);
    CHECK_RC(rc, -EPIPE);
    ipcring_reader_close(r);
    _exit(0);
  }
  hear(&wch, 'R');
  hear(&rch, 'B');
  tu_sleep_ms(70); /* let the reader fall asleep in peek(-1) */
  say(&wdown, 'x', 0, 0, 0);
  struct msg x = hear(&wch, 'X');
  struct msg m = hear(&rch, 'E');
  CHECK(m.rc == -EPIPE, "blocked peek after the writer's close returned %d (%s)", m.rc,
        ipcring_strerror(m.rc));
  CHECK(m.n == K, "reader got %" PRIu64 " of %" PRIu64 " records", m.n, K);
  check_latency("writer close -> reader -EPIPE", x.t, m.t);
  say(&wdown, 'q', 0, 0, 0);
  {
    int st_ = tu_reap(rpid, 10000);
    CHECK_CHILD_OK(st_);
  }
  {
    int st_ = tu_reap(wpid, 10000);
    CHECK_CHILD_OK(st_);
  }
  chan_close(&wch);
  chan_close(&wdown);
  chan_close(&rch);
  unlink(ring_path);
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  test_writer_killed_then_restarted();
  test_writer_killed_after_burst();
  test_reader_killed_writer_blocked();
  test_reader_reattach();
  test_writer_died_before_reader();
  test_writer_close_without_eos();
  free((void *)ring_path);
  printf("peer-death: ok\n");
  return 0;
}
