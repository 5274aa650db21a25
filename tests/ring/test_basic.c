/* Single-process tests of the ipcring API: a writer handle and a reader handle
 * in the same process on a ring file in tu_tmpdir(), with a thread wherever a
 * call has to block. Each test function names the behaviour it pins down.
 *
 * A few tests look at the ring's wait words (ipcring-layout.h) through a
 * read-only mapping of their own, only to know that a call has announced
 * itself and is asleep before they interrupt or wake it. */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/uio.h>

#define MS (1000000LL)
#define SEC (1000000000LL)

/* Latency bounds. The spec wants a blocked call back within 1 ms of an
 * interrupt; on a noisy 2-core VM we assert 5x that and print what we
 * measured. When other programs keep both CPUs busy, a woken thread may wait
 * tens of milliseconds for a CPU, which says nothing about the library, so the
 * asserted latency is the wall time from the interrupt (or push) to the
 * call's return minus the time the thread spent runnable on a run queue
 * (run_delay from /proc/thread-self/schedstat, when the kernel has it): what
 * is left is the time it slept or ran. A lost wake-up is repaired only by the
 * 50 ms liveness slice, so it shows as some 45-50 ms of sleep. */
#define SPEC_BOUND_NS (5 * MS)
#define LOST_WAKEUP_NS (30 * MS)

/* ---- Helpers --------------------------------------------------------- */

/* The run_delay of a thread (ns spent waiting on a run queue), or -1. */
static int64_t run_delay(const char *schedstat)
{
  char b[128];
  int fd = open(schedstat, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, b, sizeof b - 1);
  close(fd);
  unsigned long long cpu, delay;
  if (n <= 0)
    return -1;
  b[n] = '\0';
  if (sscanf(b, "%llu %llu", &cpu, &delay) != 2)
    return -1;
  return (int64_t)delay;
}

static const char *volatile current_test = "setup";

/* alarm() watchdog: a hang fails the test instead of blocking forever. It
 * removes the (flat) temporary directory with system calls only, since the
 * hung code may hold any lock, and exits. */
static void watchdog(int sig)
{
  (void)sig;
  static const char msg[] = "watchdog: test hung in ";
  const char *t = current_test;
  ssize_t n = write(2, msg, sizeof msg - 1);
  n = write(2, t, strlen(t));
  n = write(2, "\n", 1);
  (void)n;
  int dfd = tu_dir_[0] ? open(tu_dir_, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (dfd >= 0) {
    char buf[4096] __attribute__((aligned(8)));
    ssize_t len;
    while ((len = getdents64(dfd, buf, sizeof buf)) > 0) {
      for (ssize_t off = 0; off < len;) {
        struct dirent64 *d = (struct dirent64 *)(buf + off);
        if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
          unlinkat(dfd, d->d_name, 0);
        off += d->d_reclen;
      }
    }
    close(dfd);
    rmdir(tu_dir_);
  }
  _exit(1);
}

static uint8_t pat_byte(uint32_t seed, size_t i)
{
  return (uint8_t)(seed * 167u + (uint32_t)i * 13u + (uint32_t)(i >> 8) * 7u + 1u);
}

static void fill(void *p, size_t n, uint32_t seed)
{
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    b[i] = pat_byte(seed, i);
}

static void check_fill(const void *p, size_t n, uint32_t seed, const char *what)
{
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    CHECK(b[i] == pat_byte(seed, i), "%s: payload byte %zu of %zu is 0x%02x, expected 0x%02x",
          what, i, n, b[i], pat_byte(seed, i));
}

static uint32_t tag_for(uint64_t i)
{
  return 0x5a000000u ^ (uint32_t)i;
}

static void spin_ns(int64_t ns)
{
  int64_t end = tu_now_ns() + ns;
  while (tu_now_ns() < end)
    ;
}

static double us(int64_t ns)
{
  return (double)ns / 1000.0;
}

/* A writer and a reader on a fresh ring in the temporary directory. */
struct pair {
  char *path;
  uint64_t cap;
  ipcring_writer *w;
  ipcring_reader *r;
};

static void pair_open(struct pair *p, const char *name, uint64_t cap)
{
  p->path = tu_path(name);
  p->cap = cap;
  CHECK_RC(ipcring_writer_create(p->path, cap, 0, 0, &p->w), 0);
  CHECK(p->w != NULL, "writer handle");
  CHECK_RC(ipcring_reader_open(p->path, 0, &p->r), 0);
  CHECK(p->r != NULL, "reader handle");
}

static void pair_close(struct pair *p)
{
  ipcring_reader_close(p->r);
  ipcring_writer_close(p->w);
  CHECK(unlink(p->path) == 0 || errno == ENOENT, "unlink %s: %s", p->path, strerror(errno));
  free(p->path);
  memset(p, 0, sizeof *p);
}

/* A read-only view of a ring's header, to watch the wait words. */
static const struct ipcring_shared *shared_view(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  void *m = mmap(NULL, IPCRING_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
  return m;
}

static void shared_unview(const struct ipcring_shared *sh)
{
  munmap((void *)sh, IPCRING_HEADER_SIZE);
}

static uint64_t w_index(ipcring_writer *w)
{
  struct ipcring_info info;
  CHECK_RC(ipcring_writer_info(w, &info), 0);
  return info.write_index;
}

static uint64_t r_index(ipcring_reader *r)
{
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(r, &info), 0);
  return info.read_index;
}

/* Move an empty ring's both indices forward by `bytes` (a multiple of 8,
 * at least 8) with one record that is pushed and popped. */
static void advance_empty(struct pair *p, uint64_t bytes)
{
  CHECK(bytes >= 8 && bytes % 8 == 0 && bytes <= p->cap, "advance by %llu",
        (unsigned long long)bytes);
  size_t len = (size_t)(bytes - IPCRING_RECORD_HEADER);
  uint8_t *b = calloc(1, len + 1);
  CHECK(b != NULL, "calloc");
  size_t got = 0;
  CHECK_RC(ipcring_writer_push(p->w, b, len, 0, 0), 0);
  CHECK_RC(ipcring_reader_pop(p->r, b, len, &got, NULL, 0), (int)len);
  free(b);
}

/* ---- A blocking call run on its own thread ----------------------------- */

enum call_op { OP_PEEK, OP_POP, OP_PUSH, OP_WAIT_READER };

struct call {
  enum call_op op;
  ipcring_reader *r;
  ipcring_writer *w;
  int64_t timeout_ns;
  const void *data; /* OP_PUSH */
  size_t len;
  uint32_t tag;
  void *buf; /* OP_POP */
  size_t size;
  /* results */
  atomic_int entered;
  atomic_int finished;
  int rc;
  size_t out_len;
  uint32_t out_tag;
  uint8_t head[8]; /* OP_PEEK: the first payload bytes, copied before release */
  int64_t t_ret;   /* when the blocking call returned */
  int64_t delay_start; /* the thread's run_delay before the call, or -1 */
  int64_t delay_ret;   /* and just after it returned */
  pthread_t th;
};

/* The call's latency since t0, without the time its thread waited for a
 * CPU since it started the call (a wait before t0 is subtracted too, which
 * can only make the result smaller); *raw gets the wall time. */
static int64_t call_latency(struct call *c, int64_t t0, int64_t *raw)
{
  int64_t lat = c->t_ret - t0;
  *raw = lat;
  if (c->delay_start >= 0 && c->delay_ret >= c->delay_start)
    lat -= c->delay_ret - c->delay_start;
  return lat;
}

static void *call_main(void *arg)
{
  struct call *c = arg;
  const void *ptr = NULL;
  c->delay_start = run_delay("/proc/thread-self/schedstat");
  atomic_store(&c->entered, 1);
  switch (c->op) {
  case OP_PEEK:
    c->rc = ipcring_reader_peek(c->r, &ptr, &c->out_len, &c->out_tag, c->timeout_ns);
    c->t_ret = tu_now_ns();
    if (c->rc == 0) {
      memcpy(c->head, ptr, c->out_len < sizeof c->head ? c->out_len : sizeof c->head);
      CHECK_RC(ipcring_reader_release(c->r), 0);
    }
    break;
  case OP_POP:
    c->rc = ipcring_reader_pop(c->r, c->buf, c->size, &c->out_len, &c->out_tag, c->timeout_ns);
    c->t_ret = tu_now_ns();
    break;
  case OP_PUSH:
    c->rc = ipcring_writer_push(c->w, c->data, c->len, c->tag, c->timeout_ns);
    c->t_ret = tu_now_ns();
    break;
  case OP_WAIT_READER:
    c->rc = ipcring_writer_wait_reader(c->w, c->timeout_ns);
    c->t_ret = tu_now_ns();
    break;
  }
  c->delay_ret = run_delay("/proc/thread-self/schedstat");
  atomic_store(&c->finished, 1);
  return NULL;
}

/* For the tests that act on a call at a chosen moment of its wait: this
 * thread and the call's thread on two different CPUs, so that both really run
 * at once (a new thread otherwise tends to start on its creator's CPU and run
 * its whole spin phase before the creator gets the CPU back). */
static int pinned;
static cpu_set_t pin_saved, pin_main, pin_call;

static void pin_begin(void)
{
  CHECK(sched_getaffinity(0, sizeof pin_saved, &pin_saved) == 0, "sched_getaffinity: %s",
        strerror(errno));
  int cpus[2], n = 0;
  for (int i = 0; i < CPU_SETSIZE && n < 2; i++)
    if (CPU_ISSET(i, &pin_saved))
      cpus[n++] = i;
  pinned = n == 2;
  if (!pinned) {
    printf("  only one CPU: the call's thread and this one take turns\n");
    return;
  }
  CPU_ZERO(&pin_main);
  CPU_SET(cpus[0], &pin_main);
  CPU_ZERO(&pin_call);
  CPU_SET(cpus[1], &pin_call);
  CHECK(sched_setaffinity(0, sizeof pin_main, &pin_main) == 0, "sched_setaffinity: %s",
        strerror(errno));
}

static void pin_end(void)
{
  if (pinned)
    CHECK(sched_setaffinity(0, sizeof pin_saved, &pin_saved) == 0, "sched_setaffinity: %s",
          strerror(errno));
  pinned = 0;
}

static void call_start(struct call *c)
{
  atomic_store(&c->entered, 0);
  atomic_store(&c->finished, 0);
  c->rc = 1;
  c->out_len = 0;
  c->out_tag = 0;
  c->t_ret = 0;
  pthread_attr_t attr;
  CHECK(pthread_attr_init(&attr) == 0, "pthread_attr_init");
  if (pinned)
    CHECK(pthread_attr_setaffinity_np(&attr, sizeof pin_call, &pin_call) == 0,
          "pthread_attr_setaffinity_np");
  int rc = pthread_create(&c->th, &attr, call_main, c);
  pthread_attr_destroy(&attr);
  CHECK(rc == 0, "pthread_create: %s", strerror(rc));
}

/* Join, waiting at most ms; a thread still blocked by then fails the test. */
static void call_join(struct call *c, int ms)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = ts.tv_nsec + (int64_t)(ms % 1000) * MS;
  ts.tv_sec += ms / 1000 + ns / SEC;
  ts.tv_nsec = ns % SEC;
  int rc = pthread_timedjoin_np(c->th, NULL, &ts);
  CHECK(rc == 0, "blocking call still running after %d ms (%s)", ms, strerror(rc));
}

/* Pause in a polling loop that started at `start`: busy-wait for the first
 * millisecond, so that we see the change as it happens (a yield could hand
 * the CPU to another program for a whole scheduler tick), then sleep briefly
 * so that the thread we wait for gets a CPU on a busy machine. */
static void poll_pause(int64_t start)
{
  if (tu_now_ns() - start < 1 * MS) {
    atomic_signal_fence(memory_order_seq_cst);
  } else {
    struct timespec ts = { 0, 20000 };
    nanosleep(&ts, NULL);
  }
}

static void wait_entered(struct call *c)
{
  int64_t start = tu_now_ns();
  while (!atomic_load(&c->entered)) {
    CHECK(tu_now_ns() < start + 2 * SEC, "thread did not start within 2 s");
    poll_pause(start);
  }
}

/* Wait (at most 2 s) until the call has announced itself on its wait word,
 * i.e. it sleeps or is about to, or until it has returned (the caller's check
 * of its result then says what went wrong). */
static void wait_asleep(const _Atomic uint32_t *word, struct call *c)
{
  int64_t start = tu_now_ns();
  while (atomic_load(word) != IPCRING_WAIT_SLEEPING && !atomic_load(&c->finished)) {
    CHECK(tu_now_ns() < start + 2 * SEC, "blocking call did not go to sleep within 2 s");
    poll_pause(start);
  }
}

/* ---- Tests ------------------------------------------------------------ */

/* Empty ring: a peek that would have to wait returns -EAGAIN with timeout 0
 * and -ETIMEDOUT after at least its timeout otherwise. */
static void test_empty_ring(void)
{
  struct pair p;
  pair_open(&p, "empty", 4096);
  const void *ptr;
  size_t len;
  uint32_t tag;
  uint8_t buf[16];

  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -EAGAIN);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), -EAGAIN);

  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 20 * MS), -ETIMEDOUT);
  int64_t el = tu_now_ns() - t0;
  printf("  peek with 20 ms timeout on an empty ring: -ETIMEDOUT after %.0f us\n", us(el));
  CHECK(el >= 20 * MS, "returned after %.0f us, before its 20 ms timeout", us(el));
  /* Generous upper bound (noisy VM): the timeout must end the wait. */
  CHECK(el < 1 * SEC, "a 20 ms timeout took %.0f us", us(el));

  /* Empty again after a record came and went. */
  CHECK_RC(ipcring_writer_push(p.w, "x", 1, 1, 0), 0);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 1);
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -EAGAIN);
  t0 = tu_now_ns();
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 20 * MS), -ETIMEDOUT);
  CHECK(tu_now_ns() - t0 >= 20 * MS, "pop returned before its timeout");
  pair_close(&p);
}

/* Records that fit in a ring of capacity cap when the writer starts at offset
 * start of an empty ring: records are never split, so those up to the end,
 * then (after a padding record) those that fit below the reader at start. */
static uint64_t expected_fit(uint64_t cap, uint64_t start, size_t len)
{
  uint64_t rs = ipcring_record_size(len);
  return (cap - start) / rs + start / rs;
}

/* The same arithmetic step by step from any pair of indices, as the format
 * describes it: a record that does not fit before the end needs a padding
 * record up to the end first; both need room below read index + capacity. */
static uint64_t model_fit(uint64_t cap, uint64_t widx, uint64_t ridx, size_t len)
{
  uint64_t rs = ipcring_record_size(len), n = 0;
  for (;;) {
    uint64_t off = widx & (cap - 1);
    if (off + rs > cap) {
      if (widx + (cap - off) - ridx > cap)
        return n;
      widx += cap - off;
    }
    if (widx + rs - ridx > cap)
      return n;
    widx += rs;
    n++;
  }
}

static void full_case(uint64_t cap, uint64_t start, size_t len)
{
  struct pair p;
  pair_open(&p, "full", cap);
  if (start)
    advance_empty(&p, start);
  uint64_t expect = expected_fit(cap, start, len);
  CHECK(expect >= 1 && expect == model_fit(cap, start, start, len), "bad case");
  uint8_t *buf = malloc(len + 1);
  CHECK(buf != NULL, "malloc");

  uint64_t n = 0;
  for (;;) {
    fill(buf, len, (uint32_t)n);
    int rc = ipcring_writer_push(p.w, buf, len, tag_for(n), 0);
    if (rc == -EAGAIN)
      break;
    CHECK_RC(rc, 0);
    n++;
    CHECK(n <= expect, "more than %llu records of %zu bytes fit", (unsigned long long)expect, len);
  }
  CHECK(n == expect, "%llu records of %zu bytes fit from offset %llu, expected %llu",
        (unsigned long long)n, len, (unsigned long long)start, (unsigned long long)expect);
  void *ptr;
  CHECK_RC(ipcring_writer_reserve(p.w, len, 0, &ptr), -EAGAIN);

  /* The reader releases one: one more fits (exactly one when the ring was
   * filled from offset 0; from elsewhere the space the first lap could not
   * use may make room for more: the arithmetic says how many). */
  size_t got = 0;
  uint32_t tag = 0;
  CHECK_RC(ipcring_reader_pop(p.r, buf, len, &got, &tag, 0), (int)len);
  CHECK(tag == tag_for(0), "first record has tag %#x", tag);
  check_fill(buf, len, 0, "record 0");
  uint64_t more = model_fit(cap, w_index(p.w), r_index(p.r), len);
  CHECK(more >= 1 && (start != 0 || more == 1), "model says %llu more fit",
        (unsigned long long)more);
  for (uint64_t k = 0; k < more; k++, n++) {
    fill(buf, len, (uint32_t)n);
    CHECK_RC(ipcring_writer_push(p.w, buf, len, tag_for(n), 0), 0);
  }
  CHECK_RC(ipcring_writer_push(p.w, buf, len, tag_for(n), 0), -EAGAIN);
  printf("  cap %llu, start offset %llu, payload %zu (record %llu): %llu records fit, "
         "%llu more after one release\n",
         (unsigned long long)cap, (unsigned long long)start, len,
         (unsigned long long)ipcring_record_size(len), (unsigned long long)expect,
         (unsigned long long)more);

  /* Everything reads back in order. */
  for (uint64_t i = 1; i < n; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, len, &got, &tag, 0), (int)len);
    CHECK(tag == tag_for(i), "record %llu has tag %#x", (unsigned long long)i, tag);
    check_fill(buf, len, (uint32_t)i, "full ring record");
  }
  const void *cp;
  CHECK_RC(ipcring_reader_peek(p.r, &cp, &got, &tag, 0), -EAGAIN);
  free(buf);
  pair_close(&p);
}

/* Full ring: pushes with timeout 0 succeed until -EAGAIN; the number of records
 * that fit follows from ipcring_record_size() and the capacity; once the reader
 * releases one record, exactly one more fits. */
static void test_full_ring(void)
{
  const size_t lens[] = { 0, 1, 56, 100, 1000, 2040 };
  const uint64_t starts[] = { 0, 1000, 4040 };
  for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++)
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
      full_case(4096, starts[s], lens[l]);
  full_case(65536, 0, 100);
  full_case(65536, 8, 32760);
}

/* The wrap plan: for every 8-byte aligned offset o of a small ring, fillers
 * bring the writer to offset o, then a record that does not fit in the
 * cap - o bytes left before the end: it must be written whole at offset 0
 * after a padding record at o. For o = 0 a record of the whole capacity fits
 * exactly, without padding. */
struct wrap_plan {
  uint64_t cap;
  size_t n;
  size_t *len;
  uint8_t *straddles;
  size_t nstraddle;
};

static void wrap_add(struct wrap_plan *pl, size_t len, int straddles)
{
  pl->len[pl->n] = len;
  pl->straddles[pl->n] = (uint8_t)straddles;
  pl->nstraddle += straddles != 0;
  pl->n++;
}

static void wrap_build(struct wrap_plan *pl, uint64_t cap)
{
  size_t max = (size_t)(3 * (cap / 8) + 8);
  pl->cap = cap;
  pl->n = pl->nstraddle = 0;
  pl->len = calloc(max, sizeof *pl->len);
  pl->straddles = calloc(max, 1);
  CHECK(pl->len && pl->straddles, "calloc");
  uint64_t cur = 0; /* the writer's offset */
  for (uint64_t o = 0; o < cap; o += 8) {
    if (cur != 0) /* a filler exactly up to the end */
      wrap_add(pl, (size_t)(cap - cur - IPCRING_RECORD_HEADER), 0);
    if (o == 0) {
      wrap_add(pl, (size_t)ipcring_max_payload(cap), 0);
      cur = 0;
      continue;
    }
    wrap_add(pl, (size_t)(o - IPCRING_RECORD_HEADER), 0); /* filler to offset o */
    /* Record size s in (cap - o, cap]: just one 8-byte word too long for the
     * tail, or (every other offset) some pseudo-random size up to the whole
     * capacity; payloads of every length modulo 8. */
    uint64_t k = 1;
    if ((o / 8) % 2 && o / 8 > 1)
      k = 1 + ((o * 2654435761u) >> 7) % (o / 8);
    uint64_t s = cap - o + 8 * k;
    size_t len = (size_t)(s - IPCRING_RECORD_HEADER - (o / 8) % 8);
    CHECK(ipcring_record_size(len) == s && s > cap - o && s <= cap, "plan");
    wrap_add(pl, len, 1);
    cur = s & (cap - 1);
  }
  CHECK(pl->n <= max, "plan overflow");
}

struct wrap_ctx {
  struct wrap_plan *pl;
  ipcring_reader *r;
  uint64_t final_idx;
};

static void *wrap_reader_main(void *arg)
{
  struct wrap_ctx *c = arg;
  struct wrap_plan *pl = c->pl;
  uint64_t cap = pl->cap, mask = cap - 1;
  uint64_t idx = 0, prev = 0;
  const uint8_t *base = NULL;
  for (size_t i = 0; i < pl->n; i++) {
    const void *ptr;
    size_t len;
    uint32_t tag;
    CHECK_RC(ipcring_reader_peek(c->r, &ptr, &len, &tag, 5 * SEC), 0);
    uint64_t size = ipcring_record_size(pl->len[i]);
    uint64_t off = idx & mask;
    int pad = off + size > cap;
    CHECK(pad == pl->straddles[i], "plan record %zu: straddles %d, computed %d", i,
          pl->straddles[i], pad);
    if (pad)
      idx += cap - off; /* the padding record */
    uint64_t ri = r_index(c->r);
    CHECK(ri == idx, "record %zu at read index %llu, expected %llu", i, (unsigned long long)ri,
          (unsigned long long)idx);
    CHECK(i == 0 || ri > prev, "read index went from %llu to %llu", (unsigned long long)prev,
          (unsigned long long)ri);
    prev = ri;
    if (!base)
      base = (const uint8_t *)ptr - IPCRING_RECORD_HEADER; /* record 0 is at offset 0 */
    CHECK((const uint8_t *)ptr == base + (idx & mask) + IPCRING_RECORD_HEADER,
          "record %zu is at data offset %td, expected %llu", i,
          (const uint8_t *)ptr - base - IPCRING_RECORD_HEADER, (unsigned long long)(idx & mask));
    CHECK(len == pl->len[i], "record %zu: length %zu, expected %zu", i, len, pl->len[i]);
    CHECK(tag == tag_for(i), "record %zu: tag %#x, expected %#x", i, tag, tag_for(i));
    check_fill(ptr, len, (uint32_t)i, "wrapped record");
    CHECK_RC(ipcring_reader_release(c->r), 0);
    idx += size;
  }
  c->final_idx = idx;
  return NULL;
}

/* Wrap at every offset: for a 4096-byte ring and every 8-byte aligned offset,
 * a record that does not fit before the end is written whole at offset 0
 * after a padding record and reads back intact (length, tag, payload, place);
 * the indices keep increasing past the capacity (free-running). */
static void test_wrap_every_offset(void)
{
  const uint64_t cap = 4096;
  struct pair p;
  pair_open(&p, "wrap", cap);
  struct wrap_plan pl;
  wrap_build(&pl, cap);

  struct wrap_ctx ctx = { &pl, p.r, 0 };
  pthread_t th;
  CHECK(pthread_create(&th, NULL, wrap_reader_main, &ctx) == 0, "pthread_create");
  uint8_t *buf = malloc(cap);
  CHECK(buf != NULL, "malloc");
  for (size_t i = 0; i < pl.n; i++) {
    fill(buf, pl.len[i], (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, pl.len[i], tag_for(i), 5 * SEC), 0);
  }
  CHECK(pthread_join(th, NULL) == 0, "join"); /* the reader's peeks are bounded */
  uint64_t wi = w_index(p.w);
  printf("  %zu records, %zu after a padding record, final index %llu (%llu laps)\n", pl.n,
         pl.nstraddle, (unsigned long long)wi, (unsigned long long)(wi / cap));
  CHECK(pl.nstraddle == cap / 8 - 1, "plan covers %zu offsets", pl.nstraddle);
  CHECK(wi == ctx.final_idx, "write index %llu, reader ended at %llu", (unsigned long long)wi,
        (unsigned long long)ctx.final_idx);
  CHECK(r_index(p.r) == wi, "read index %llu != write index %llu",
        (unsigned long long)r_index(p.r), (unsigned long long)wi);
  CHECK(wi > 500 * cap, "indices are not free-running: %llu", (unsigned long long)wi);
  free(buf);
  free(pl.len);
  free(pl.straddles);
  pair_close(&p);
}

static void largest_case(uint64_t cap)
{
  struct pair p;
  pair_open(&p, "largest", cap);
  size_t max = ipcring_max_payload(cap);
  CHECK(max == cap - IPCRING_RECORD_HEADER && ipcring_record_size(max) == cap, "max payload");
  uint8_t *src = malloc(max + 8), *dst = malloc(max + 8);
  CHECK(src && dst, "malloc");
  size_t got;
  uint32_t tag;

  /* At offset 0 of an empty ring it fits at once and fills the ring. */
  fill(src, max, 1);
  CHECK_RC(ipcring_writer_push(p.w, src, max, 1, 0), 0);
  CHECK(w_index(p.w) == cap, "write index %llu", (unsigned long long)w_index(p.w));

  /* One byte more fails at once with -EMSGSIZE, even with no time limit on a
   * full ring (if it waited, it would wait forever). */
  void *ptr;
  struct iovec iov[2] = { { src, max / 2 }, { src, max - max / 2 + 1 } };
  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_push(p.w, src, max + 1, 2, -1), -EMSGSIZE);
  CHECK_RC(ipcring_writer_reserve(p.w, max + 1, -1, &ptr), -EMSGSIZE);
  CHECK_RC(ipcring_writer_pushv(p.w, iov, 2, 2, -1), -EMSGSIZE);
  CHECK_RC(ipcring_writer_push(p.w, src, (size_t)cap * 4, 2, -1), -EMSGSIZE);
  int64_t el = tu_now_ns() - t0;
  printf("  cap %llu: 4 oversized writes returned -EMSGSIZE in %.1f us\n",
         (unsigned long long)cap, us(el));
  CHECK(el < 1 * SEC, "oversized writes took %.0f us", us(el)); /* generous: must not wait */
  CHECK(w_index(p.w) == cap, "an oversized write changed the write index");

  CHECK_RC(ipcring_reader_pop(p.r, dst, max, &got, &tag, 0), (int)max);
  CHECK(got == max && tag == 1, "len %zu tag %u", got, tag);
  check_fill(dst, max, 1, "largest record at offset 0");

  /* At a non-zero offset the record needs a padding record first and then
   * the whole ring: it has to wait for the reader to pass the padding. */
  advance_empty(&p, 16);
  fill(src, max, 3);
  CHECK_RC(ipcring_writer_push(p.w, src, max, 3, 0), -EAGAIN);
  struct call c = { .op = OP_POP, .r = p.r, .timeout_ns = 5 * SEC, .buf = dst, .size = max };
  call_start(&c);
  CHECK_RC(ipcring_writer_push(p.w, src, max, 3, 5 * SEC), 0);
  call_join(&c, 10000);
  CHECK_RC(c.rc, (int)max);
  CHECK(c.out_len == max && c.out_tag == 3, "len %zu tag %u", c.out_len, c.out_tag);
  check_fill(dst, max, 3, "largest record after padding");
  CHECK(r_index(p.r) == 3 * cap && w_index(p.w) == 3 * cap, "indices %llu %llu",
        (unsigned long long)r_index(p.r), (unsigned long long)w_index(p.w));

  /* Same with the reader already blocked when the writer starts. */
  advance_empty(&p, 24);
  call_start(&c);
  wait_entered(&c);
  fill(src, max, 4);
  CHECK_RC(ipcring_writer_push(p.w, src, max, 4, -1), 0);
  call_join(&c, 10000);
  CHECK_RC(c.rc, (int)max);
  CHECK(c.out_len == max && c.out_tag == 4, "len %zu tag %u", c.out_len, c.out_tag);
  check_fill(dst, max, 4, "largest record, reader waiting first");
  CHECK(r_index(p.r) == 5 * cap, "read index %llu", (unsigned long long)r_index(p.r));
  free(src);
  free(dst);
  pair_close(&p);
}

/* Largest record: ipcring_max_payload(cap) bytes are accepted and read back
 * intact, also from a non-zero offset where the writer pads and waits for the
 * reader; max + 1 fails with -EMSGSIZE at once even with an infinite timeout. */
static void test_largest_record(void)
{
  largest_case(4096);
  largest_case(65536);
}

/* Zero copy and copy helpers: a reservation committed with a shorter length
 * publishes only that length; commit without a reservation (or longer than
 * it) is -EINVAL; pushv gathers its iovecs; pop into a too-small buffer is
 * -EMSGSIZE with *len set and nothing consumed; release without peek is
 * -EINVAL. */
static void test_zero_copy_and_helpers(void)
{
  struct pair p;
  pair_open(&p, "zerocopy", 4096);
  void *wp;
  const void *rp;
  size_t len;
  uint32_t tag;
  uint8_t buf[256];

  CHECK_RC(ipcring_writer_commit(p.w, 0, 1), -EINVAL);
  CHECK_RC(ipcring_writer_reserve(p.w, 100, 0, &wp), 0);
  CHECK(wp != NULL && (uintptr_t)wp % 8 == 0, "reserved pointer %p", wp);
  fill(wp, 100, 9);
  CHECK_RC(ipcring_writer_commit(p.w, 101, 9), -EINVAL);
  CHECK_RC(ipcring_writer_commit(p.w, 40, 9), 0);
  CHECK_RC(ipcring_writer_commit(p.w, 40, 9), -EINVAL); /* used up */
  CHECK(w_index(p.w) == ipcring_record_size(40), "write index %llu after a 40-byte commit",
        (unsigned long long)w_index(p.w));
  CHECK_RC(ipcring_reader_peek(p.r, &rp, &len, &tag, 0), 0);
  CHECK(len == 40 && tag == 9, "len %zu tag %u", len, tag);
  check_fill(rp, 40, 9, "short commit");
  CHECK_RC(ipcring_reader_release(p.r), 0);

  /* An empty reservation. */
  CHECK_RC(ipcring_writer_reserve(p.w, 0, 0, &wp), 0);
  CHECK_RC(ipcring_writer_commit(p.w, 0, 10), 0);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 0);
  CHECK(len == 0 && tag == 10, "len %zu tag %u", len, tag);

  /* pushv gathers. */
  uint8_t a[3], b[1], d[61];
  fill(buf, sizeof a + sizeof b + sizeof d, 11);
  memcpy(a, buf, sizeof a);
  memcpy(b, buf + sizeof a, sizeof b);
  memcpy(d, buf + sizeof a + sizeof b, sizeof d);
  struct iovec iov[4] = { { a, sizeof a }, { b, 0 }, { b, sizeof b }, { d, sizeof d } };
  CHECK_RC(ipcring_writer_pushv(p.w, iov, 4, 11, 0), 0);
  memset(buf, 0, sizeof buf);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 65);
  CHECK(len == 65 && tag == 11, "len %zu tag %u", len, tag);
  check_fill(buf, 65, 11, "pushv");
  CHECK_RC(ipcring_writer_pushv(p.w, iov, 0, 12, 0), 0);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 0);
  CHECK(len == 0 && tag == 12, "len %zu tag %u", len, tag);

  /* pop into a buffer that is too small. */
  uint8_t rec[50];
  fill(rec, sizeof rec, 13);
  CHECK_RC(ipcring_writer_push(p.w, rec, sizeof rec, 13, 0), 0);
  uint64_t before = r_index(p.r);
  len = 0;
  CHECK_RC(ipcring_reader_pop(p.r, buf, 49, &len, &tag, 0), -EMSGSIZE);
  CHECK(len == 50, "*len %zu, expected 50", len);
  len = 0;
  CHECK_RC(ipcring_reader_pop(p.r, buf, 0, &len, &tag, 0), -EMSGSIZE);
  CHECK(len == 50, "*len %zu, expected 50", len);
  CHECK(r_index(p.r) == before, "a failed pop consumed the record");
  struct ipcring_info wi;
  CHECK_RC(ipcring_writer_info(p.w, &wi), 0);
  CHECK(wi.read_index == before, "the writer sees read index %llu, expected %llu",
        (unsigned long long)wi.read_index, (unsigned long long)before);
  CHECK_RC(ipcring_reader_pop(p.r, buf, 50, &len, &tag, 0), 50);
  CHECK(len == 50 && tag == 13, "len %zu tag %u", len, tag);
  check_fill(buf, 50, 13, "pop after -EMSGSIZE");
  CHECK_RC(ipcring_reader_peek(p.r, &rp, &len, &tag, 0), -EAGAIN);

  /* release without peek. */
  CHECK_RC(ipcring_reader_release(p.r), -EINVAL);
  CHECK_RC(ipcring_writer_push(p.w, "z", 1, 14, 0), 0);
  CHECK_RC(ipcring_reader_release(p.r), -EINVAL);
  CHECK_RC(ipcring_reader_peek(p.r, &rp, &len, &tag, 0), 0);
  CHECK(len == 1 && tag == 14 && *(const char *)rp == 'z', "len %zu tag %u", len, tag);
  CHECK_RC(ipcring_reader_release(p.r), 0);
  CHECK_RC(ipcring_reader_release(p.r), -EINVAL);
  CHECK_RC(ipcring_reader_peek(p.r, &rp, &len, &tag, 0), -EAGAIN);
  pair_close(&p);
}

/* Writer timeouts on a full ring: -EAGAIN with timeout 0, -ETIMEDOUT after at
 * least the timeout otherwise, for push, pushv and reserve; nothing written. */
static void test_writer_timeouts(void)
{
  struct pair p;
  pair_open(&p, "wtimeout", 4096);
  uint8_t buf[56] = { 0 };
  for (int i = 0; i < 64; i++)
    CHECK_RC(ipcring_writer_push(p.w, buf, sizeof buf, 0, 0), 0);
  CHECK(w_index(p.w) == 4096, "ring not full");
  void *ptr;
  struct iovec iov = { buf, 1 };
  CHECK_RC(ipcring_writer_push(p.w, buf, 0, 0, 0), -EAGAIN);
  CHECK_RC(ipcring_writer_reserve(p.w, 1, 0, &ptr), -EAGAIN);
  CHECK_RC(ipcring_writer_pushv(p.w, &iov, 1, 0, 0), -EAGAIN);
  for (int k = 0; k < 3; k++) {
    int64_t t0 = tu_now_ns();
    int rc = k == 0   ? ipcring_writer_push(p.w, buf, 8, 0, 20 * MS)
             : k == 1 ? ipcring_writer_reserve(p.w, 8, 20 * MS, &ptr)
                      : ipcring_writer_pushv(p.w, &iov, 1, 0, 20 * MS);
    int64_t el = tu_now_ns() - t0;
    CHECK_RC(rc, -ETIMEDOUT);
    printf("  %s with 20 ms timeout on a full ring: -ETIMEDOUT after %.0f us\n",
           k == 0 ? "push" : k == 1 ? "reserve" : "pushv", us(el));
    CHECK(el >= 20 * MS, "returned before its timeout");
    CHECK(el < 1 * SEC, "a 20 ms timeout took %.0f us", us(el)); /* generous */
  }
  CHECK(w_index(p.w) == 4096, "a timed-out write changed the write index");
  /* Still usable: one released record makes room for one more. */
  size_t len;
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, NULL, 0), 56);
  CHECK_RC(ipcring_writer_push(p.w, buf, 56, 0, 0), 0);
  pair_close(&p);
}

static void call_interrupt(struct call *c)
{
  if (c->op == OP_PEEK || c->op == OP_POP)
    ipcring_reader_interrupt(c->r);
  else
    ipcring_writer_interrupt(c->w);
}

static void call_clear_interrupt(struct call *c)
{
  if (c->op == OP_PEEK || c->op == OP_POP)
    ipcring_reader_clear_interrupt(c->r);
  else
    ipcring_writer_clear_interrupt(c->w);
}

/* Let the call that has just entered its thread get to some moment of its
 * wait before we act on it. mode 0: at once; 1: after 0-40 us; 2: within a
 * few us of when the call announced itself on its wait word in the last
 * mode-3 round (the end of its spin phase, where it announces and re-checks:
 * the window for a lost wake-up); 3: once it has announced itself. */
static void reach_moment(struct call *c, const _Atomic uint32_t *word, int mode)
{
  wait_entered(c);
  int64_t t0 = tu_now_ns();
  static uint32_t rng = 2463534242u;
  static int64_t announce_ns = 22000; /* measured by mode 3 */
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  if (mode == 1) {
    spin_ns(t0 + rng % 40000 - tu_now_ns());
  } else if (mode == 2) {
    spin_ns(t0 + (announce_ns > 4000 ? announce_ns - 4000 : 0) + rng % 6000 - tu_now_ns());
  } else if (mode == 3) {
    wait_asleep(word, c);
    int64_t t = tu_now_ns() - t0;
    if (t < 1 * MS && !atomic_load(&c->finished))
      announce_ns = (3 * announce_ns + t) / 4;
  }
}

/* Run c on a thread, interrupt it from here at the moment given by mode (see
 * reach_moment) and return the time from the interrupt call to the call's
 * return, less CPU waits (*raw: wall time). */
static int64_t interrupt_once(struct call *c, const _Atomic uint32_t *word, int mode,
                              int64_t *raw)
{
  call_start(c);
  reach_moment(c, word, mode);
  int64_t t0 = tu_now_ns();
  call_interrupt(c);
  call_join(c, 2000);
  CHECK_RC(c->rc, -ECANCELED);
  return call_latency(c, t0, raw);
}

/* Interrupt c, blocked without a time limit, `rounds` times at different
 * moments of its wait; each must return -ECANCELED within SPEC_BOUND_NS
 * (not counting CPU waits). */
static void interrupt_rounds(struct call *c, const _Atomic uint32_t *word, int rounds,
                             const char *what)
{
  int64_t max = 0, sum = 0, max_raw = 0;
  int over_1ms = 0;
  for (int i = 0; i < rounds; i++) {
    int mode = i % 4;
    int64_t raw;
    int64_t lat = interrupt_once(c, word, mode, &raw);
    CHECK(lat <= SPEC_BOUND_NS,
          "%s: round %d (mode %d) returned %.0f us after the interrupt (%.0f us of wall time)",
          what, i, mode, us(lat), us(raw));
    over_1ms += lat > 1 * MS;
    if (lat > max)
      max = lat;
    if (raw > max_raw)
      max_raw = raw;
    sum += lat;
    call_clear_interrupt(c);
  }
  printf("  %s: %d interrupts, latency mean %.1f us, max %.1f us (wall time max %.1f us), "
         "%d over 1 ms\n",
         what, rounds, us(sum / rounds), us(max), us(max_raw), over_1ms);
}

/* Interrupt: a call blocked without a time limit (reader peek on an empty ring,
 * writer push on a full ring, writer wait_reader without a reader) returns
 * -ECANCELED promptly after *_interrupt() from another thread (spec: within
 * 1 ms; see SPEC_BOUND_NS); the handle stays interrupted (the next call returns
 * -ECANCELED at once) until *_clear_interrupt(). */
static void test_interrupt(void)
{
  struct pair p;
  pair_open(&p, "interrupt", 4096);
  const struct ipcring_shared *sh = shared_view(p.path);
  const void *ptr;
  size_t len;
  uint32_t tag;
  uint8_t buf[56] = { 0 };
  void *wp;

  printf("  latencies below are net of run-queue waits: %s\n",
         run_delay("/proc/thread-self/schedstat") >= 0 ? "yes" : "no (no schedstat: wall time)");
  pin_begin();

  /* Reader blocked in peek. */
  struct call c = { .op = OP_PEEK, .r = p.r, .timeout_ns = -1 };
  int64_t raw;
  int64_t lat = interrupt_once(&c, &sh->reader_wait, 3, &raw);
  printf("  reader peek asleep: -ECANCELED %.1f us after the interrupt (wall time %.1f us)\n",
         us(lat), us(raw));
  CHECK(lat <= SPEC_BOUND_NS, "took %.0f us", us(lat));
  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, -1), -ECANCELED);
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -ECANCELED);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 200 * MS), -ECANCELED);
  int64_t el = tu_now_ns() - t0;
  CHECK(el < 200 * MS, "interrupted calls took %.0f us: one waited for its timeout", us(el));
  ipcring_reader_clear_interrupt(p.r);
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -EAGAIN);
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 10 * MS), -ETIMEDOUT);
  CHECK_RC(ipcring_writer_push(p.w, "a", 1, 1, 0), 0);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 1);
  /* An interrupt before the call: the call returns -ECANCELED at once. */
  ipcring_reader_interrupt(p.r);
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, -1), -ECANCELED);
  ipcring_reader_clear_interrupt(p.r);
  /* 200 times, at different moments, to catch lost wake-ups. */
  interrupt_rounds(&c, &sh->reader_wait, 200, "reader peek");
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -EAGAIN);

  /* Writer blocked on a full ring: filled with empty records (8 bytes each,
   * never padded), so that not a single byte is free. */
  int rc;
  while ((rc = ipcring_writer_push(p.w, buf, 0, 0, 0)) == 0)
    ;
  CHECK_RC(rc, -EAGAIN);
  uint64_t full = w_index(p.w);
  CHECK(full - r_index(p.r) == 4096, "ring not full: %llu bytes used",
        (unsigned long long)(full - r_index(p.r)));
  struct call cw = { .op = OP_PUSH, .w = p.w, .timeout_ns = -1, .data = buf, .len = 8 };
  lat = interrupt_once(&cw, &sh->writer_wait, 3, &raw);
  printf("  writer push asleep: -ECANCELED %.1f us after the interrupt (wall time %.1f us)\n",
         us(lat), us(raw));
  CHECK(lat <= SPEC_BOUND_NS, "took %.0f us", us(lat));
  t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_push(p.w, buf, 8, 0, -1), -ECANCELED);
  CHECK_RC(ipcring_writer_reserve(p.w, 8, -1, &wp), -ECANCELED);
  CHECK_RC(ipcring_writer_push(p.w, buf, 8, 0, 200 * MS), -ECANCELED);
  el = tu_now_ns() - t0;
  CHECK(el < 200 * MS, "interrupted calls took %.0f us: one waited for its timeout", us(el));
  ipcring_writer_clear_interrupt(p.w);
  CHECK_RC(ipcring_writer_push(p.w, buf, 8, 0, 0), -EAGAIN);
  CHECK_RC(ipcring_writer_push(p.w, buf, 8, 0, 10 * MS), -ETIMEDOUT);
  interrupt_rounds(&cw, &sh->writer_wait, 200, "writer push");
  CHECK(w_index(p.w) == full, "an interrupted push wrote something");
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 0);
  CHECK_RC(ipcring_writer_push(p.w, buf, 0, 0, 0), 0);

  /* Writer waiting for a reader that is not there. */
  ipcring_reader_close(p.r);
  p.r = NULL;
  CHECK_RC(ipcring_writer_wait_reader(p.w, 0), -EAGAIN);
  struct call cr = { .op = OP_WAIT_READER, .w = p.w, .timeout_ns = -1 };
  lat = interrupt_once(&cr, &sh->writer_wait, 3, &raw);
  printf("  writer wait_reader asleep: -ECANCELED %.1f us after the interrupt (wall time %.1f us)\n",
         us(lat), us(raw));
  CHECK(lat <= SPEC_BOUND_NS, "took %.0f us", us(lat));
  t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_wait_reader(p.w, -1), -ECANCELED);
  CHECK_RC(ipcring_writer_wait_reader(p.w, 200 * MS), -ECANCELED);
  el = tu_now_ns() - t0;
  CHECK(el < 200 * MS, "interrupted calls took %.0f us: one waited for its timeout", us(el));
  ipcring_writer_clear_interrupt(p.w);
  CHECK_RC(ipcring_writer_wait_reader(p.w, 0), -EAGAIN);
  CHECK_RC(ipcring_writer_wait_reader(p.w, 10 * MS), -ETIMEDOUT);
  interrupt_rounds(&cr, &sh->writer_wait, 200, "writer wait_reader");

  pin_end();
  shared_unview(sh);
  pair_close(&p);
}

/* Wake-up: a reader blocked in peek is woken by a push from another thread,
 * 1000 times at different moments of its wait, and gets the record. Nothing
 * in the spec bounds the wake latency, but a lost wake-up is only repaired by
 * the 50 ms liveness slice, so each round must return within LOST_WAKEUP_NS
 * (not counting CPU waits). */
static void test_wakeup(void)
{
  struct pair p;
  pair_open(&p, "wakeup", 4096);
  const struct ipcring_shared *sh = shared_view(p.path);
  pin_begin();
  int64_t max = 0, sum = 0;
  int64_t max_raw = 0;
  int rounds = 1000, over_1ms = 0;
  for (int i = 0; i < rounds; i++) {
    struct call c = { .op = OP_PEEK, .r = p.r, .timeout_ns = -1 };
    int mode = i % 4;
    call_start(&c);
    reach_moment(&c, &sh->reader_wait, mode);
    uint32_t v = (uint32_t)i;
    int64_t t0 = tu_now_ns();
    CHECK_RC(ipcring_writer_push(p.w, &v, sizeof v, tag_for(i), 0), 0);
    call_join(&c, 2000);
    CHECK_RC(c.rc, 0);
    uint32_t got;
    memcpy(&got, c.head, sizeof got);
    CHECK(c.out_len == sizeof v && c.out_tag == tag_for(i) && got == v,
          "round %d: len %zu tag %#x value %u", i, c.out_len, c.out_tag, got);
    int64_t raw;
    int64_t lat = call_latency(&c, t0, &raw);
    CHECK(lat <= LOST_WAKEUP_NS,
          "round %d (mode %d): reader woke %.0f us after the push (%.0f us of wall time): "
          "lost wake-up?", i, mode, us(lat), us(raw));
    if (raw > max_raw)
      max_raw = raw;
    over_1ms += lat > 1 * MS;
    if (lat > max)
      max = lat;
    sum += lat;
  }
  struct ipcring_info ri, wi;
  CHECK_RC(ipcring_reader_info(p.r, &ri), 0);
  CHECK_RC(ipcring_writer_info(p.w, &wi), 0);
  printf("  %d wake-ups: latency mean %.1f us, max %.1f us (wall time max %.1f us), %d over "
         "1 ms; reader slept %llu times, writer woke it %llu times\n",
         rounds, us(sum / rounds), us(max), us(max_raw), over_1ms, (unsigned long long)ri.waits,
         (unsigned long long)wi.wakes);
  CHECK(ri.records == (uint64_t)rounds && wi.records == (uint64_t)rounds, "records %llu %llu",
        (unsigned long long)ri.records, (unsigned long long)wi.records);
  CHECK(ri.waits >= (uint64_t)rounds / 4, "the reader slept only %llu times",
        (unsigned long long)ri.waits);
  pin_end();
  shared_unview(sh);
  pair_close(&p);
}

/* End of stream: records pushed before ipcring_writer_eos() are all read, then
 * every read returns -ENODATA (at once, whatever the timeout); writes after
 * eos return -EPIPE; a reader blocked on the empty ring is woken by eos. */
static void test_eos(void)
{
  struct pair p;
  pair_open(&p, "eos", 4096);
  uint8_t buf[64];
  size_t len;
  uint32_t tag;
  const void *ptr;
  void *wp;
  for (int i = 0; i < 5; i++) {
    fill(buf, 10 + (size_t)i, (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, 10 + (size_t)i, tag_for(i), 0), 0);
  }
  CHECK_RC(ipcring_writer_eos(p.w), 0);
  CHECK_RC(ipcring_writer_push(p.w, buf, 1, 0, 0), -EPIPE);
  CHECK_RC(ipcring_writer_push(p.w, buf, 1, 0, -1), -EPIPE);
  CHECK_RC(ipcring_writer_reserve(p.w, 1, 0, &wp), -EPIPE);
  struct iovec iov = { buf, 1 };
  CHECK_RC(ipcring_writer_pushv(p.w, &iov, 1, 0, 0), -EPIPE);
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  CHECK(info.eos == 1, "reader info: eos %d", info.eos);
  for (int i = 0; i < 5; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 10 + i);
    CHECK(tag == tag_for(i), "record %d tag %#x", i, tag);
    check_fill(buf, len, (uint32_t)i, "record before eos");
  }
  int64_t t0 = tu_now_ns();
  for (int k = 0; k < 3; k++) {
    CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -ENODATA);
    CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, -1), -ENODATA);
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 500 * MS), -ENODATA);
  }
  int64_t el = tu_now_ns() - t0;
  CHECK(el < 500 * MS, "reads at end of stream took %.0f us: one waited for its timeout", us(el));
  pair_close(&p);

  /* A reader asleep on the empty ring wakes up for eos. */
  pair_open(&p, "eos-blocked", 4096);
  const struct ipcring_shared *sh = shared_view(p.path);
  struct call c = { .op = OP_PEEK, .r = p.r, .timeout_ns = -1 };
  call_start(&c);
  wait_asleep(&sh->reader_wait, &c);
  t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_eos(p.w), 0);
  call_join(&c, 2000);
  CHECK_RC(c.rc, -ENODATA);
  int64_t raw, lat = call_latency(&c, t0, &raw);
  printf("  blocked reader saw end of stream %.1f us after eos (wall time %.1f us)\n", us(lat),
         us(raw));
  CHECK(lat <= LOST_WAKEUP_NS, "the reader slept through eos (lost wake-up?)");
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -ENODATA);
  shared_unview(sh);
  pair_close(&p);
}

/* Reattach: a reader that closes and a new reader that opens continue at the
 * next unreleased record (a peeked but unreleased one included); a second
 * reader while one is attached, or a second writer on a live ring, gets -EBUSY
 * and leaves the ring working. */
static void test_reattach(void)
{
  struct pair p;
  pair_open(&p, "reattach", 4096);
  uint8_t buf[64];
  size_t len;
  uint32_t tag;
  const void *ptr;
  for (int i = 0; i < 10; i++) {
    fill(buf, 20, (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, 20, tag_for(i), 0), 0);
  }
  for (int i = 0; i < 4; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 20);
    CHECK(tag == tag_for(i), "record %d tag %#x", i, tag);
  }
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), 0);
  CHECK(tag == tag_for(4), "peeked tag %#x", tag);
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  uint64_t gen = info.reader_generation;
  CHECK(gen == 1, "first reader generation %llu", (unsigned long long)gen);

  ipcring_reader *r2 = NULL;
  ipcring_writer *w2 = NULL;
  CHECK_RC(ipcring_reader_open(p.path, 0, &r2), -EBUSY);
  CHECK_RC(ipcring_writer_create(p.path, 4096, 0, 0, &w2), -EBUSY);
  CHECK_RC(ipcring_writer_create(p.path, 4096, 0, IPCRING_CREATE_NO_TAKEOVER, &w2), -EBUSY);
  CHECK_RC(ipcring_writer_create(p.path, 8192, 0, 0, &w2), -EBUSY);
  /* The refused attempts changed nothing. */
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), 0);
  CHECK(tag == tag_for(4), "peeked tag %#x", tag);
  fill(buf, 20, 10);
  CHECK_RC(ipcring_writer_push(p.w, buf, 20, tag_for(10), 0), 0);

  ipcring_reader_close(p.r);
  CHECK_RC(ipcring_reader_open(p.path, 0, &p.r), 0);
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  CHECK(info.reader_generation == gen + 1, "reader generation %llu after reattach",
        (unsigned long long)info.reader_generation);
  CHECK(info.read_index == 4 * ipcring_record_size(20), "new reader at %llu",
        (unsigned long long)info.read_index);
  for (int i = 4; i <= 10; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 20);
    CHECK(tag == tag_for(i), "after reattach: record %d tag %#x", i, tag);
    check_fill(buf, 20, (uint32_t)i, "record after reattach");
  }
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, 0), -EAGAIN);
  CHECK_RC(ipcring_reader_open(p.path, 0, &r2), -EBUSY);
  CHECK_RC(ipcring_writer_push(p.w, buf, 20, tag_for(11), 0), 0);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 20);
  CHECK(tag == tag_for(11), "tag %#x", tag);
  pair_close(&p);
}

/* Takeover: a writer closed without eos while the reader stays attached; a
 * new writer created on the same path with the same capacity takes the ring
 * over, and the reader gets the old records, then the new ones, without
 * -EPROTO or -EPIPE; writer_generation goes up. With IPCRING_CREATE_NO_TAKEOVER
 * the new writer gets -EEXIST and the ring is left as it was. */
static void test_takeover(void)
{
  struct pair p;
  pair_open(&p, "takeover", 4096);
  uint8_t buf[64];
  size_t len;
  uint32_t tag;
  struct ipcring_info info;
  for (int i = 0; i < 3; i++) {
    fill(buf, 30, (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, 30, tag_for(i), 0), 0);
  }
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 30);
  CHECK(tag == tag_for(0), "tag %#x", tag);
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  CHECK(info.writer_generation == 1, "writer generation %llu",
        (unsigned long long)info.writer_generation);
  uint64_t old_w = w_index(p.w);

  ipcring_writer_close(p.w);
  p.w = NULL;
  CHECK_RC(ipcring_writer_create(p.path, 4096, 0, 0, &p.w), 0);
  CHECK(w_index(p.w) == old_w, "new writer at %llu, old one stopped at %llu",
        (unsigned long long)w_index(p.w), (unsigned long long)old_w);
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  CHECK(info.writer_generation == 2, "writer generation %llu after takeover",
        (unsigned long long)info.writer_generation);
  CHECK(info.eos == 0 && info.peer_alive == 1, "eos %d peer_alive %d", info.eos,
        info.peer_alive);
  for (int i = 3; i < 6; i++) {
    fill(buf, 30, (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, 30, tag_for(i), 0), 0);
  }
  for (int i = 1; i < 6; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 30);
    CHECK(tag == tag_for(i), "after takeover: record %d tag %#x", i, tag);
    check_fill(buf, 30, (uint32_t)i, "record across takeover");
  }
  /* The new writer is alive: an empty ring times out, no -EPIPE. */
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), -EAGAIN);
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 30 * MS), -ETIMEDOUT);

  /* Refused takeover. */
  CHECK_RC(ipcring_writer_push(p.w, buf, 30, tag_for(6), 0), 0);
  ipcring_writer_close(p.w);
  p.w = NULL;
  ipcring_writer *w2 = NULL;
  CHECK_RC(ipcring_writer_create(p.path, 4096, 0, IPCRING_CREATE_NO_TAKEOVER, &w2), -EEXIST);
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  CHECK(info.writer_generation == 2, "a refused takeover changed the generation to %llu",
        (unsigned long long)info.writer_generation);
  CHECK_RC(ipcring_writer_create(p.path, 4096, 0, 0, &p.w), 0);
  CHECK_RC(ipcring_writer_push(p.w, buf, 30, tag_for(7), 0), 0);
  for (int i = 6; i < 8; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 30);
    CHECK(tag == tag_for(i), "record %d tag %#x", i, tag);
  }
  CHECK_RC(ipcring_reader_info(p.r, &info), 0);
  CHECK(info.writer_generation == 3, "writer generation %llu", (unsigned long long)info.writer_generation);
  pair_close(&p);
}

static mode_t file_mode(const char *path)
{
  struct stat st;
  CHECK(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
  return st.st_mode & 07777;
}

static void write_file(const char *path, const void *data, size_t len, off_t size)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
  if (len)
    CHECK(write(fd, data, len) == (ssize_t)len, "write: %s", strerror(errno));
  if (size)
    CHECK(ftruncate(fd, size) == 0, "ftruncate: %s", strerror(errno));
  close(fd);
}

/* The file still has exactly this content and inode. */
static void check_file(const char *path, const void *data, size_t len, ino_t ino)
{
  struct stat st;
  CHECK(lstat(path, &st) == 0, "%s is gone: %s", path, strerror(errno));
  CHECK(S_ISREG(st.st_mode) && st.st_ino == ino && (size_t)st.st_size == len,
        "%s was replaced or resized (size %lld)", path, (long long)st.st_size);
  uint8_t *b = malloc(len + 1);
  CHECK(b != NULL, "malloc");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0, "open: %s", strerror(errno));
  CHECK(read(fd, b, len + 1) == (ssize_t)len, "read %s", path);
  close(fd);
  CHECK(memcmp(b, data, len) == 0, "%s was modified", path);
  free(b);
}

static void not_a_ring_case(const char *name, const void *data, size_t len)
{
  char *path = tu_path(name);
  write_file(path, data, len, (off_t)len);
  struct stat st;
  CHECK(stat(path, &st) == 0, "stat");
  ipcring_reader *r = NULL;
  ipcring_writer *w = NULL;
  CHECK_RC(ipcring_reader_open(path, 0, &r), -EINVAL);
  CHECK_RC(ipcring_writer_create(path, 4096, 0, 0, &w), -EEXIST);
  CHECK_RC(ipcring_writer_create(path, 8192, 0, 0, &w), -EEXIST);
  CHECK_RC(ipcring_writer_create(path, 4096, 0, IPCRING_CREATE_NO_TAKEOVER, &w), -EEXIST);
  check_file(path, data, len, st.st_ino);
  CHECK(unlink(path) == 0, "unlink");
  free(path);
}

/* Create and open validation: bad capacities are -EINVAL and create nothing;
 * missing paths and directories are -ENOENT; a symlink (to a ring, or
 * dangling) is refused with -ELOOP by both sides; a regular file that is not a
 * ring is -EINVAL for the reader and -EEXIST for the writer, and is left
 * intact; a ring writable by others is refused by the reader with -EPERM; the
 * mode given at create is the file's mode (0600 by default), whatever the
 * umask. */
static void test_create_open_validation(void)
{
  ipcring_writer *w = NULL, *w2 = NULL;
  ipcring_reader *r = NULL;

  char *bad = tu_path("bad-capacity");
  const uint64_t caps[] = { 1, 8, 2048, 4097, 3 * 4096, 4096 + 8, (IPCRING_CAPACITY_MAX / 2) * 3,
                            IPCRING_CAPACITY_MAX * 2, (uint64_t)1 << 63, UINT64_MAX };
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    CHECK_RC(ipcring_writer_create(bad, caps[i], 0, 0, &w), -EINVAL);
    CHECK(access(bad, F_OK) != 0 && errno == ENOENT, "capacity %llu left a file behind",
          (unsigned long long)caps[i]);
  }
  free(bad);

  char *missing = tu_path("no-such-ring");
  char *nodir = tu_path("no-such-dir/ring");
  CHECK_RC(ipcring_reader_open(missing, 0, &r), -ENOENT);
  CHECK_RC(ipcring_reader_open(nodir, 0, &r), -ENOENT);
  CHECK_RC(ipcring_writer_create(nodir, 4096, 0, 0, &w), -ENOENT);
  free(missing);
  free(nodir);

  /* Symlinks. */
  char *target = tu_path("sym-target");
  char *lnk = tu_path("sym-link");
  char *dangling = tu_path("sym-dangling");
  char *nowhere = tu_path("sym-nowhere");
  CHECK_RC(ipcring_writer_create(target, 4096, 0, 0, &w), 0);
  CHECK(symlink(target, lnk) == 0, "symlink: %s", strerror(errno));
  CHECK(symlink(nowhere, dangling) == 0, "symlink: %s", strerror(errno));
  CHECK_RC(ipcring_reader_open(lnk, 0, &r), -ELOOP);
  CHECK_RC(ipcring_writer_create(lnk, 4096, 0, 0, &w2), -ELOOP);
  CHECK_RC(ipcring_writer_create(lnk, 4096, 0, IPCRING_CREATE_NO_TAKEOVER, &w2), -ELOOP);
  CHECK_RC(ipcring_writer_create(dangling, 4096, 0, 0, &w2), -ELOOP);
  CHECK_RC(ipcring_reader_open(dangling, 0, &r), -ELOOP);
  struct stat st;
  CHECK(access(nowhere, F_OK) != 0 && errno == ENOENT, "writer created a symlink's target");
  CHECK(lstat(lnk, &st) == 0 && S_ISLNK(st.st_mode), "symlink replaced");
  CHECK(lstat(dangling, &st) == 0 && S_ISLNK(st.st_mode), "symlink replaced");
  /* The ring behind the link is unharmed. */
  CHECK_RC(ipcring_reader_open(target, 0, &r), 0);
  CHECK_RC(ipcring_writer_push(w, "s", 1, 5, 0), 0);
  uint8_t b[8];
  size_t len;
  uint32_t tag;
  CHECK_RC(ipcring_reader_pop(r, b, sizeof b, &len, &tag, 0), 1);
  CHECK(tag == 5 && b[0] == 's', "tag %u", tag);
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  unlink(lnk);
  unlink(dangling);
  unlink(target);
  free(target);
  free(lnk);
  free(dangling);
  free(nowhere);

  /* Regular files that are not rings. */
  static uint8_t zeros[8192];
  not_a_ring_case("zeros-8k", zeros, sizeof zeros);
  static const char text[] = "this is not a ring\n";
  not_a_ring_case("text", text, sizeof text - 1);
  not_a_ring_case("empty-file", "", 0);

  /* Writable by others. */
  char *ow = tu_path("other-writable");
  CHECK_RC(ipcring_writer_create(ow, 4096, 0, 0, &w), 0);
  CHECK(chmod(ow, 0602) == 0, "chmod: %s", strerror(errno));
  CHECK_RC(ipcring_reader_open(ow, 0, &r), -EPERM);
  CHECK_RC(ipcring_reader_open(ow, IPCRING_OPEN_ANY_OWNER, &r), -EPERM);
  CHECK_RC(ipcring_reader_open(ow, IPCRING_OPEN_GROUP_ACCESS, &r), -EPERM);
  CHECK(chmod(ow, 0600) == 0, "chmod: %s", strerror(errno));
  CHECK_RC(ipcring_reader_open(ow, 0, &r), 0);
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  unlink(ow);
  free(ow);

  /* Modes. */
  const struct {
    mode_t mode, umask, expect;
  } modes[] = { { 0, 022, 0600 }, { 0, 077, 0600 }, { 0640, 077, 0640 }, { 0660, 022, 0660 },
                { 0400, 0, 0400 } };
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    char *mp = tu_path("mode");
    mode_t old = umask(modes[i].umask);
    int rc = ipcring_writer_create(mp, 4096, modes[i].mode, 0, &w);
    umask(old);
    CHECK_RC(rc, 0);
    mode_t m = file_mode(mp);
    CHECK(m == modes[i].expect, "create with mode %04o under umask %03o made %04o, expected %04o",
          (unsigned)modes[i].mode, (unsigned)modes[i].umask, (unsigned)m,
          (unsigned)modes[i].expect);
    if (modes[i].expect & S_IRUSR && modes[i].expect & S_IWUSR) {
      /* Group or other bits need the reader's consent. */
      unsigned flags = 0;
      if (modes[i].expect & 077) {
        CHECK_RC(ipcring_reader_open(mp, 0, &r), -EPERM);
        flags = IPCRING_OPEN_GROUP_ACCESS;
      }
      CHECK_RC(ipcring_reader_open(mp, flags, &r), 0);
      ipcring_reader_close(r);
    }
    ipcring_writer_close(w);
    unlink(mp);
    free(mp);
  }
  ipcring_writer_close(NULL);
  ipcring_reader_close(NULL);
}

/* ipcring_writer_unlink() removes the path while both sides keep working,
 * reports an error when the path is already gone, and does not remove a file
 * that has since taken the path. */
static void test_unlink(void)
{
  struct pair p;
  pair_open(&p, "unlink", 4096);
  CHECK_RC(ipcring_writer_unlink(p.w), 0);
  struct stat st;
  CHECK(lstat(p.path, &st) != 0 && errno == ENOENT, "path still there after unlink");
  uint8_t buf[32];
  size_t len;
  uint32_t tag;
  for (int i = 0; i < 100; i++) {
    fill(buf, 32, (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, 32, tag_for(i), 0), 0);
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), 32);
    CHECK(tag == tag_for(i), "tag %#x", tag);
    check_fill(buf, 32, (uint32_t)i, "after unlink");
  }
  CHECK_RC(ipcring_writer_wait_reader(p.w, 0), 0);
  CHECK_RC(ipcring_writer_unlink(p.w), -ENOENT);
  write_file(p.path, "other", 5, 5);
  CHECK(stat(p.path, &st) == 0, "stat");
  int rc = ipcring_writer_unlink(p.w);
  CHECK(rc < 0, "unlink removed a file that is not its ring (rc %d)", rc);
  check_file(p.path, "other", 5, st.st_ino);
  pair_close(&p);
}

/* A new ring file has the pages of its header and first 4 MiB reserved, and
 * the rest are reserved as the writer first reaches them (reserving all of a
 * 64 MiB ring at create took 16-20 ms): the file is sparse after create, its
 * allocation follows the writer, and every record written across the new
 * pages reads back intact. Needs a file system that keeps files sparse (tmpfs
 * in /dev/shm, where the tests run when it is there). */
static void test_pages_reserved_as_reached(void)
{
  const uint64_t cap = (uint64_t)16 << 20, step = (uint64_t)4 << 20, hdr = IPCRING_DATA_OFFSET;
  struct stat st;
  /* does this file system keep a truncated file sparse at all? */
  char *scratch = tu_path("sparse");
  int fd = open(scratch, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  CHECK(fd >= 0 && ftruncate(fd, (off_t)cap) == 0 && fstat(fd, &st) == 0, "scratch file: %s",
        strerror(errno));
  close(fd);
  unlink(scratch);
  free(scratch);
  if ((uint64_t)st.st_blocks * 512 >= cap) {
    printf("  (the file system of %s does not keep files sparse: not checked)\n", tu_tmpdir());
    return;
  }
  struct pair p;
  pair_open(&p, "lazy", cap);
  CHECK(stat(p.path, &st) == 0, "stat: %s", strerror(errno));
  CHECK((uint64_t)st.st_size == hdr + cap, "size %lld", (long long)st.st_size);
  uint64_t alloc0 = (uint64_t)st.st_blocks * 512;
  CHECK(alloc0 >= hdr + step && alloc0 <= hdr + step + 65536,
        "after create %llu bytes allocated, want the header and the first %llu",
        (unsigned long long)alloc0, (unsigned long long)step);
  /* 12 MiB of 1 KiB records: the reader reads none of them yet */
  enum { LEN = 1024 - 8 };
  uint8_t buf[LEN];
  const int n = (int)(((uint64_t)12 << 20) / ipcring_record_size(LEN));
  for (int i = 0; i < n; i++) {
    fill(buf, LEN, (uint32_t)i);
    CHECK_RC(ipcring_writer_push(p.w, buf, LEN, tag_for(i), 0), 0);
  }
  CHECK(stat(p.path, &st) == 0, "stat: %s", strerror(errno));
  uint64_t alloc1 = (uint64_t)st.st_blocks * 512;
  uint64_t written = (uint64_t)n * ipcring_record_size(LEN);
  CHECK(alloc1 >= hdr + written && alloc1 <= hdr + written + step + 65536,
        "after writing %llu bytes, %llu allocated: want at least that much and at most a step more",
        (unsigned long long)written, (unsigned long long)alloc1);
  size_t len;
  uint32_t tag;
  for (int i = 0; i < n; i++) {
    CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &len, &tag, 0), LEN);
    CHECK(tag == tag_for(i), "record %d: tag %#x", i, tag);
    check_fill(buf, LEN, (uint32_t)i, "record across the newly reserved pages");
  }
  pair_close(&p);
}

/* ipcring_strerror() has a non-empty text for every code the API returns. */
static void test_strerror(void)
{
  const int codes[] = { 0,          -EAGAIN, -ETIMEDOUT, -ECANCELED, -ENODATA, -EPIPE,
                        -EPROTO,    -EMSGSIZE, -EBUSY,   -EEXIST,    -EINVAL,  -EPERM,
                        -ENOSPC,    -ENOENT,  -ELOOP,    -ENOMEM,    -ESTALE,
                        -EPROTONOSUPPORT };
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *s = ipcring_strerror(codes[i]);
    CHECK(s != NULL && s[0] != '\0', "no text for %d", codes[i]);
    printf("  %4d: %s\n", codes[i], s);
  }
  const char *s = ipcring_strerror(-123456);
  CHECK(s != NULL && s[0] != '\0', "no text for an unknown code");
}

struct late_open {
  const char *path;
  ipcring_reader *r;
  int rc;
};

static void *late_open_main(void *arg)
{
  struct late_open *lo = arg;
  tu_sleep_ms(20);
  lo->rc = ipcring_reader_open(lo->path, 0, &lo->r);
  return NULL;
}

/* ipcring_writer_wait_reader(): -EAGAIN / -ETIMEDOUT while no reader is
 * attached, 0 once a reader opens from another thread (and at once while one
 * is attached). */
static void test_wait_reader(void)
{
  char *path = tu_path("wait-reader");
  ipcring_writer *w = NULL;
  CHECK_RC(ipcring_writer_create(path, 4096, 0, 0, &w), 0);
  CHECK_RC(ipcring_writer_wait_reader(w, 0), -EAGAIN);
  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_wait_reader(w, 20 * MS), -ETIMEDOUT);
  int64_t el = tu_now_ns() - t0;
  printf("  wait_reader with 20 ms timeout: -ETIMEDOUT after %.0f us\n", us(el));
  CHECK(el >= 20 * MS && el < 1 * SEC, "took %.0f us", us(el));

  for (int round = 0; round < 3; round++) {
    struct late_open lo = { path, NULL, 1 };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, late_open_main, &lo) == 0, "pthread_create");
    t0 = tu_now_ns();
    int rc = ipcring_writer_wait_reader(w, 5 * SEC);
    el = tu_now_ns() - t0;
    CHECK(pthread_join(th, NULL) == 0, "join");
    CHECK_RC(lo.rc, 0);
    CHECK_RC(rc, 0);
    printf("  wait_reader returned %.1f ms after the call (reader opened after ~20 ms)\n",
           us(el) / 1000.0);
    CHECK_RC(ipcring_writer_wait_reader(w, 0), 0);
    CHECK_RC(ipcring_writer_wait_reader(w, -1), 0);
    ipcring_reader_close(lo.r);
    CHECK_RC(ipcring_writer_wait_reader(w, 0), -EAGAIN);
  }
  ipcring_writer_close(w);
  unlink(path);
  free(path);
}

#define RUN(fn)                                                                        \
  do {                                                                                 \
    current_test = #fn;                                                                \
    printf("== %s\n", #fn);                                                            \
    int64_t t0_ = tu_now_ns();                                                         \
    fn();                                                                              \
    printf("   ok (%.0f ms)\n", us(tu_now_ns() - t0_) / 1000.0);                       \
  } while (0)

struct delayed_push {
  ipcring_writer *w;
  int delay_ms;
};

static void *delayed_push_thread(void *arg)
{
  struct delayed_push *d = arg;
  tu_sleep_ms(d->delay_ms);
  CHECK_RC(ipcring_writer_push(d->w, "late", 4, 7, 0), 0);
  return NULL;
}

/* Regression: a timeout near INT64_MAX overflowed the deadline (now +
 * timeout), so such a wait returned -ETIMEDOUT at once instead of waiting.
 * Also regression: empty payloads with NULL pointers (push of NULL/0, an
 * iovec of NULL/0, pop into NULL/0) passed NULL to memcpy, which UBSan
 * reports; they must just work. */
static void test_huge_timeout_and_null_empty_payloads(void)
{
  struct pair p;
  pair_open(&p, "huge-timeout", 4096);
  const void *ptr;
  size_t len;
  uint32_t tag;

  struct delayed_push d = { p.w, 30 };
  pthread_t th;
  CHECK(pthread_create(&th, NULL, delayed_push_thread, &d) == 0, "pthread_create");
  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_reader_peek(p.r, &ptr, &len, &tag, INT64_MAX), 0);
  int64_t el = tu_now_ns() - t0;
  pthread_join(th, NULL);
  printf("  peek with timeout INT64_MAX waited %.0f us for a record pushed after 30 ms\n", us(el));
  CHECK(len == 4 && tag == 7 && memcmp(ptr, "late", 4) == 0, "the late record");
  CHECK(el >= 25 * MS, "returned after %.0f us, before the record came", us(el));
  CHECK_RC(ipcring_reader_release(p.r), 0);

  CHECK_RC(ipcring_writer_push(p.w, NULL, 0, 1, 0), 0);
  struct iovec iov[2] = { { NULL, 0 }, { (void *)"ab", 2 } };
  CHECK_RC(ipcring_writer_pushv(p.w, iov, 2, 2, 0), 0);
  size_t n = 99;
  CHECK_RC(ipcring_reader_pop(p.r, NULL, 0, &n, &tag, 0), 0);
  CHECK(n == 0 && tag == 1, "empty record: length %zu tag %u", n, tag);
  uint8_t buf[4];
  CHECK_RC(ipcring_reader_pop(p.r, buf, sizeof buf, &n, &tag, 0), 2);
  CHECK(n == 2 && tag == 2 && memcmp(buf, "ab", 2) == 0, "gathered record");
  pair_close(&p);
}

struct late_push {
  ipcring_writer *w;
  int delay_ms;
};

static void *push_late(void *arg)
{
  struct late_push *lp = arg;
  tu_sleep_ms(lp->delay_ms);
  CHECK_RC(ipcring_writer_push(lp->w, "x", 1, 1, 0), 0);
  return NULL;
}

/* Read n records that pusher, in a thread of its own, writes. */
static void read_records(struct pair *p, int n, void *(*pusher)(void *), void *arg)
{
  pthread_t th;
  CHECK(pthread_create(&th, NULL, pusher, arg) == 0, "thread");
  for (int i = 0; i < n; i++) {
    const void *ptr;
    size_t len;
    uint32_t tag;
    CHECK_RC(ipcring_reader_peek(p->r, &ptr, &len, &tag, 5 * SEC), 0);
    CHECK_RC(ipcring_reader_release(p->r), 0);
  }
  pthread_join(th, NULL);
}

/* Read one record that the writer pushes delay_ms into the reader's wait. */
static void read_one_late(struct pair *p, int delay_ms)
{
  struct late_push lp = { p->w, delay_ms };
  read_records(p, 1, push_late, &lp);
}

/* A longer spin keeps a waiting reader awake: a record that comes 20 ms
 * into a peek is found without sleeping (the waits counter stays put),
 * while the default 20 us spin sleeps on the futex. */
static void test_spin_setting(void)
{
  struct pair p;
  pair_open(&p, "spin", 4096);
  for (int longspin = 0; longspin < 2; longspin++) {
    ipcring_reader_set_spin(p.r, longspin ? 900 * MS : -1);
    struct ipcring_info before, after;
    ipcring_reader_info(p.r, &before);
    read_one_late(&p, 20);
    ipcring_reader_info(p.r, &after);
    printf("  spin %s: %llu sleeps\n", longspin ? "900 ms" : "default",
           (unsigned long long)(after.waits - before.waits));
    if (longspin)
      CHECK(after.waits == before.waits, "the reader slept although it spins 900 ms");
    else
      CHECK(after.waits == before.waits + 1, "the reader did not sleep with the default spin");
  }
  pair_close(&p);
}

/* Two records for a sleeping reader: the first 20 ms late, the second 300 us
 * after it (time for the reader to read the first and sleep again). */
static void *push_two_close(void *arg)
{
  ipcring_writer *w = arg;
  tu_sleep_ms(20);
  CHECK_RC(ipcring_writer_push(w, "p", 1, 1, 0), 0);
  int64_t until = tu_now_ns() + 300 * 1000;
  while (tu_now_ns() < until)
    ;
  CHECK_RC(ipcring_writer_push(w, "q", 1, 1, 0), 0);
  return NULL;
}

/* Hand-off: a commit that wakes a sleeping reader yields the writer's CPU
 * once (by default), so a reader woken there runs at once; a commit that
 * wakes no one never yields, and ipcring_writer_set_handoff(w, 0) turns the
 * yield off. A wake less than 500 us after the previous one does not yield
 * either: wakes that close are a stream the reader nearly keeps up with, not
 * a pause in one. (Regression: with every wake yielding, a 256 B stream
 * beside one busy process on two CPUs now and then took 4 to 17 times as
 * long, and a reader of records 1 us apart looked at the write index 10
 * times per record.) The writer's handoffs counter shows what it did. */
static void test_handoff(void)
{
  struct pair p;
  pair_open(&p, "handoff", 4096);
  for (int on = 1; on >= 0; on--) {
    ipcring_writer_set_handoff(p.w, on);
    struct ipcring_info before, after;
    ipcring_writer_info(p.w, &before);
    read_one_late(&p, 20);
    ipcring_writer_info(p.w, &after);
    printf("  hand-off %s: %llu wake(s), %llu hand-off(s)\n", on ? "on" : "off",
           (unsigned long long)(after.wakes - before.wakes),
           (unsigned long long)(after.handoffs - before.handoffs));
    CHECK(after.wakes == before.wakes + 1, "the writer did not wake the sleeping reader");
    CHECK(after.handoffs == before.handoffs + (uint64_t)on, "%llu hand-off(s) with hand-off %s",
          (unsigned long long)(after.handoffs - before.handoffs), on ? "on" : "off");
  }
  /* Two wakes 300 us apart: only the first yields. The reader must have
   * slept again before the second record, which a busy machine may not
   * allow in a round. */
  ipcring_writer_set_handoff(p.w, 1);
  int two_wakes = 0;
  for (int round = 1; round <= 5 && !two_wakes; round++) {
    struct ipcring_info before, after;
    ipcring_writer_info(p.w, &before);
    read_records(&p, 2, push_two_close, p.w);
    ipcring_writer_info(p.w, &after);
    uint64_t wakes = after.wakes - before.wakes, handoffs = after.handoffs - before.handoffs;
    printf("  round %d: records 20 ms and 300 us apart: %llu wake(s), %llu hand-off(s)\n", round,
           (unsigned long long)wakes, (unsigned long long)handoffs);
    CHECK(handoffs == 1, "%llu hand-off(s) for %llu wake(s), the second 300 us after the first",
          (unsigned long long)handoffs, (unsigned long long)wakes);
    two_wakes = wakes == 2;
  }
  CHECK(two_wakes, "the reader never slept between two records 300 us apart in 5 rounds");
  /* Streaming: no reader waits, no wake, no yield. */
  ipcring_writer_set_handoff(p.w, 1);
  struct ipcring_info before, after;
  ipcring_writer_info(p.w, &before);
  for (int i = 0; i < 50; i++)
    CHECK_RC(ipcring_writer_push(p.w, "z", 1, 3, 0), 0);
  ipcring_writer_info(p.w, &after);
  CHECK(after.wakes == before.wakes && after.handoffs == before.handoffs,
        "commits with no reader waiting woke %llu and yielded %llu times",
        (unsigned long long)(after.wakes - before.wakes),
        (unsigned long long)(after.handoffs - before.handoffs));
  pair_close(&p);
}

struct paced_push {
  ipcring_writer *w;
  int n;
  int64_t gap_ns;
};

static void *push_paced(void *arg)
{
  struct paced_push *pp = arg;
  int64_t next = tu_now_ns();
  for (int i = 0; i < pp->n; i++) {
    next += pp->gap_ns;
    while (tu_now_ns() < next)
      ;
    CHECK_RC(ipcring_writer_push(pp->w, "y", 1, 2, SEC), 0);
  }
  return NULL;
}

/* Adaptive spinning: records 200 us apart (longer than the default 20 us
 * spin) make the reader sleep at first, then spin long enough to catch each
 * one, so a steady stream makes (almost) no futex calls: about 10 sleeps
 * for 300 records on a quiet machine, and about 300 without adapting, in
 * every round. A spin is bounded in time, so a reader taken off its CPU
 * while it spins sleeps anyway: beside a third busy process on two CPUs it
 * slept 133 to 145 times here (and 279 to 300 times while every wake
 * yielded, see test_handoff). The best of up to five rounds counts. */
static void test_adaptive_spin(void)
{
  uint64_t best = UINT64_MAX;
  for (int round = 1; round <= 5 && best >= 200; round++) {
    struct pair p;
    pair_open(&p, "adapt", 4096);
    struct ipcring_info before, after;
    ipcring_reader_info(p.r, &before);
    struct paced_push pp = { p.w, 300, 200 * 1000 };
    read_records(&p, pp.n, push_paced, &pp);
    ipcring_reader_info(p.r, &after);
    uint64_t sleeps = after.waits - before.waits;
    printf("  round %d: 300 records 200 us apart, the reader slept %llu times\n", round,
           (unsigned long long)sleeps);
    if (sleeps < best)
      best = sleeps;
    pair_close(&p);
  }
  CHECK(best < 200, "the reader slept at best %llu times for 300 records in 5 rounds",
        (unsigned long long)best);
}

/* Writer: n records, each after a busy wait of gap_ns, so that the reader
 * keeps up and has to wait for each one unless it batches. */
static void *push_busy_paced(void *arg)
{
  struct paced_push *pp = arg;
  for (int i = 0; i < pp->n; i++) {
    int64_t until = tu_now_ns() + pp->gap_ns;
    while (tu_now_ns() < until)
      ;
    CHECK_RC(ipcring_writer_push(pp->w, "b", 1, 5, SEC), 0);
  }
  return NULL;
}

/* Reader batching: a reader that keeps up with a fast stream (a record
 * every 1 us) looks at the write index once per batch of records, not once
 * per record: each look pulls the index's cache line and the line of the
 * record being written away from the writer. Without batching it looks
 * about once per record (0.8 records per look here), in every round.
 * What is pinned down is that the reader batches when both threads have a
 * CPU: a busy machine that takes the writer off its CPU makes the reader
 * look into an idle ring many times per record (0.3 records per look in a
 * run beside a full test suite and a valgrind run, which failed this test
 * when it measured one round), so the best of up to five rounds counts. */
static void test_reader_batches(void)
{
  double best = 0;
  for (int round = 1; round <= 5 && best < 3.0; round++) {
    struct pair p;
    pair_open(&p, "batch", 1 << 20);
    struct ipcring_info before, after;
    ipcring_reader_info(p.r, &before);
    struct paced_push pp = { p.w, 20000, 1000 };
    read_records(&p, pp.n, push_busy_paced, &pp);
    ipcring_reader_info(p.r, &after);
    uint64_t looks = after.looks - before.looks;
    double per_look = (double)pp.n / (double)(looks ? looks : 1);
    printf("  round %d: %d records 1 us apart, the reader looked %llu times, %.1f records per "
           "look\n", round, pp.n, (unsigned long long)looks, per_look);
    if (per_look > best)
      best = per_look;
    pair_close(&p);
  }
  /* About 10 on a 2-core EPYC (looks 13 us apart). */
  CHECK(best >= 3.0, "at best %.1f records per look at the write index in 5 rounds", best);
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGALRM, watchdog);
  alarm(50);
  tu_tmpdir();
  RUN(test_empty_ring);
  RUN(test_full_ring);
  RUN(test_wrap_every_offset);
  RUN(test_largest_record);
  RUN(test_zero_copy_and_helpers);
  RUN(test_writer_timeouts);
  RUN(test_interrupt);
  RUN(test_wakeup);
  RUN(test_eos);
  RUN(test_reattach);
  RUN(test_takeover);
  RUN(test_create_open_validation);
  RUN(test_unlink);
  RUN(test_pages_reserved_as_reached);
  RUN(test_strerror);
  RUN(test_wait_reader);
  RUN(test_huge_timeout_and_null_empty_payloads);
  RUN(test_spin_setting);
  RUN(test_adaptive_spin);
  RUN(test_handoff);
  RUN(test_reader_batches);
  printf("all basic ring tests passed\n");
  return 0;
}
