/* Threaded stress test of one ring: a writer thread, a reader thread and an
 * interrupter thread in one process.
 *
 * The rings are small (4 KiB and 64 KiB), so they run full and empty all the
 * time and both sides keep going to sleep and waking each other. Record sizes
 * are random, including 0, the maximum payload and sizes just below it, so the
 * padding record at the end of the data area comes up constantly. The writer
 * mixes push, pushv and reserve/commit (sometimes reserving more than it
 * commits); the reader mixes pop, pop into a too small buffer (-EMSGSIZE, then
 * pop again) and peek/release. Each attempt picks a timeout of 0, a short one
 * or a long bound. Meanwhile the third thread interrupts and clears either
 * side at random moments; the interrupted side retries after -ECANCELED.
 *
 * The reader checks every record in order: length, tag and every payload byte
 * are derived from the record's sequence number, so any loss, duplicate,
 * reorder or corruption fails at the first bad record. Both sides also keep a
 * running checksum of what they sent and received, compared at the end, and
 * the stream ends with end of stream (-ENODATA after the last record).
 *
 * Each capacity runs twice: with the reader opened by path (two mappings of
 * the file, as between processes), and with the reader attached to the
 * writer's own mapping through ipcring_reader_attach_mem(). The second way
 * lets ThreadSanitizer see both sides' accesses to the shared memory at the
 * same addresses, so it checks the release/acquire pairing of the indices
 * with the record bytes, not only the process-private state.
 *
 * Environment: IPCRING_STRESS_RECORDS (records per run), IPCRING_STRESS_SEED
 * (to replay a run; the seed is printed).
 */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring-private.h"
#include "ipcring.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#define NSEC 1000000000LL
/* A blocking call given this long has stalled: that fails the test (a lost
 * wake-up is still bounded by the library's 50 ms liveness slices, so a real
 * stall means the protocol is broken, not that the machine is slow). */
#define STALL_NS (60 * NSEC)
/* Bound for a whole run, checked when joining the threads. */
#define RUN_BOUND_S 150

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* Records per run (four runs). */
#define DEFAULT_RECORDS 1000000u

static uint64_t splitmix(uint64_t *s)
{
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t mix(uint64_t x)
{
  return splitmix(&x);
}

struct run {
  uint64_t cap;
  size_t max;
  uint64_t nrec;
  uint64_t seed;
  int same_mapping;
  ipcring_writer *w;
  ipcring_reader *r;
  atomic_int stop;

  /* writer's results */
  uint64_t w_sum, w_bytes, w_cancel, w_again, w_timeout;
  /* reader's results */
  uint64_t r_sum, r_bytes, r_count, r_cancel, r_again, r_timeout, r_msgsize, r_epipe;
  /* interrupter's */
  uint64_t interrupts;
};

/* The length of record seq: mostly small, and about once in cap/64 records
 * each of: 0, the maximum payload, just below the maximum, anything. */
static size_t rec_len(const struct run *ru, uint64_t seq)
{
  uint64_t h = mix(ru->seed ^ mix(seq));
  uint64_t classes = ru->cap / 64;
  uint64_t c = (h & 0xffff) % classes;
  uint64_t v = h >> 16;
  switch (c) {
  case 0: return 0;
  case 1: return ru->max;
  case 2: return ru->max - (size_t)(v % 24);
  case 3: return (size_t)(v % (ru->max + 1));
  case 4: case 5: case 6: case 7: return (size_t)(v % 17);
  default: return (size_t)(v % 300);
  }
}

static uint32_t rec_tag(const struct run *ru, uint64_t seq)
{
  return (uint32_t)mix(seq ^ ~ru->seed);
}

/* Payload bytes of record seq: a pseudo-random stream keyed by seq. */
static uint64_t rec_key(const struct run *ru, uint64_t seq)
{
  return ru->seed * 31 + seq;
}

static void fill(uint8_t *p, size_t len, uint64_t key)
{
  uint64_t s = key;
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = splitmix(&s);
    memcpy(p + i, &v, len - i < 8 ? len - i : 8);
  }
}

/* Offset of the first wrong byte, or -1 if all len bytes are right. */
static long bad_offset(const uint8_t *p, size_t len, uint64_t key)
{
  uint64_t s = key;
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = splitmix(&s);
    size_t n = len - i < 8 ? len - i : 8;
    if (memcmp(p + i, &v, n) != 0) {
      for (size_t j = 0; j < n; j++)
        if (p[i + j] != ((const uint8_t *)&v)[j])
          return (long)(i + j);
    }
  }
  return -1;
}

/* Running checksum of a record: sequence number, length, tag, payload. */
static uint64_t sum_record(uint64_t sum, uint64_t seq, size_t len, uint32_t tag,
                           const uint8_t *p)
{
  const uint64_t prime = UINT64_C(0x100000001b3);
  sum = (sum ^ seq) * prime;
  sum = (sum ^ len) * prime;
  sum = (sum ^ tag) * prime;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    sum = (sum ^ v) * prime;
  }
  for (; i < len; i++)
    sum = (sum ^ p[i]) * prime;
  return sum;
}

static void nap_us(long us)
{
  struct timespec ts = { 0, us * 1000 };
  nanosleep(&ts, NULL);
}

/* Now and then one side stops for a moment, long enough for the other to
 * stop spinning and sleep on the full or empty ring. */
static void maybe_pause(uint64_t *rng)
{
  uint64_t v = splitmix(rng);
  if ((v & 255) == 0)
    nap_us((long)((v >> 8) % 200));
}

/* A timeout for one attempt: 0 (try once), a short one, or the stall bound. */
static int64_t pick_timeout(uint64_t *rng)
{
  uint64_t v = splitmix(rng) % 32;
  if (v == 0)
    return 0;
  if (v <= 3)
    return (int64_t)(1000 + splitmix(rng) % 300000);
  return STALL_NS;
}

/* What a failed attempt may return, and what the caller does next: retry
 * after an interrupt, an expected would-block or a short timeout; anything
 * else fails the test. */
static void retry_or_fail(const char *who, int rc, int64_t timeout, uint64_t seq,
                          uint64_t *cancel, uint64_t *again, uint64_t *timedout)
{
  if (rc == -ECANCELED) {
    (*cancel)++;
    nap_us(20); /* give the interrupter a moment to clear */
    return;
  }
  if (rc == -EAGAIN && timeout == 0) {
    (*again)++;
    sched_yield();
    return;
  }
  if (rc == -ETIMEDOUT && timeout != STALL_NS) {
    (*timedout)++;
    return;
  }
  CHECK(0, "%s: record %" PRIu64 ": unexpected %d (%s) with timeout %" PRId64 " ns", who, seq,
        rc, ipcring_strerror(rc), timeout);
}

static void *writer_main(void *arg)
{
  struct run *ru = arg;
  ipcring_writer *w = ru->w;
  uint64_t rng = ru->seed ^ UINT64_C(0x5752495445520000);
  uint8_t *src = malloc(ru->max + 1);
  CHECK(src != NULL, "malloc");
  uint64_t sum = 0, bytes = 0;

  for (uint64_t seq = 0; seq < ru->nrec; seq++) {
    size_t len = rec_len(ru, seq);
    uint32_t tag = rec_tag(ru, seq);
    uint64_t key = rec_key(ru, seq);
    unsigned method = (unsigned)(splitmix(&rng) % 4);
    if (method <= 1) {
      fill(src, len, key);
      sum = sum_record(sum, seq, len, tag, src);
    }
    for (;;) {
      int64_t tmo = pick_timeout(&rng);
      int rc;
      if (method == 0) {
        rc = ipcring_writer_push(w, src, len, tag, tmo);
      } else if (method == 1) {
        /* Up to three pieces, empty ones allowed. */
        size_t a = len ? (size_t)(splitmix(&rng) % (len + 1)) : 0;
        size_t b = len - a ? (size_t)(splitmix(&rng) % (len - a + 1)) : 0;
        struct iovec iov[3] = { { src, a }, { src + a, b }, { src + a + b, len - a - b } };
        rc = ipcring_writer_pushv(w, iov, 3, tag, tmo);
      } else {
        /* Reserve (method 3: more than needed), fill in place, commit len. */
        size_t want = len;
        if (method == 3 && len < ru->max)
          want = len + (size_t)(splitmix(&rng) % (ru->max - len + 1));
        void *p = NULL;
        rc = ipcring_writer_reserve(w, want, tmo, &p);
        if (rc == 0) {
          fill(p, len, key);
          sum = sum_record(sum, seq, len, tag, p);
          CHECK_RC(ipcring_writer_commit(w, len, tag), 0);
        }
      }
      if (rc == 0)
        break;
      retry_or_fail("writer", rc, tmo, seq, &ru->w_cancel, &ru->w_again, &ru->w_timeout);
    }
    bytes += len;
    maybe_pause(&rng);
  }
  CHECK_RC(ipcring_writer_eos(ru->w), 0);
  ru->w_sum = sum;
  ru->w_bytes = bytes;
  free(src);
  return NULL;
}

/* Check record seq as received. */
static void verify(struct run *ru, uint64_t seq, const uint8_t *p, size_t len, uint32_t tag)
{
  CHECK(seq < ru->nrec, "record %" PRIu64 " after the last one (len %zu, tag %08x)", seq, len,
        (unsigned)tag);
  size_t want_len = rec_len(ru, seq);
  CHECK(len == want_len, "record %" PRIu64 ": length %zu, expected %zu", seq, len, want_len);
  CHECK(tag == rec_tag(ru, seq), "record %" PRIu64 ": tag %08x, expected %08x", seq,
        (unsigned)tag, (unsigned)rec_tag(ru, seq));
  long bad = bad_offset(p, len, rec_key(ru, seq));
  CHECK(bad < 0, "record %" PRIu64 " (len %zu): payload corrupt at byte %ld", seq, len, bad);
  ru->r_sum = sum_record(ru->r_sum, seq, len, tag, p);
  ru->r_bytes += len;
}

static void *reader_main(void *arg)
{
  struct run *ru = arg;
  ipcring_reader *r = ru->r;
  uint64_t rng = ru->seed ^ UINT64_C(0x5245414445520000);
  uint8_t *buf = malloc(ru->max + 1);
  CHECK(buf != NULL, "malloc");
  uint64_t seq = 0;

  for (;;) {
    unsigned method = (unsigned)(splitmix(&rng) % 4);
    int64_t tmo = pick_timeout(&rng);
    size_t len = 0;
    uint32_t tag = 0;
    int rc;
    if (method <= 1) {
      /* method 1: a buffer that is often too small first. */
      size_t size = method == 1 ? (size_t)(splitmix(&rng) % 64) : ru->max;
      rc = ipcring_reader_pop(r, buf, size, &len, &tag, tmo);
      if (rc == -EMSGSIZE) {
        CHECK(len > size, "pop: -EMSGSIZE with len %zu for a buffer of %zu", len, size);
        CHECK(seq < ru->nrec && len == rec_len(ru, seq),
              "record %" PRIu64 ": -EMSGSIZE reported length %zu", seq, len);
        ru->r_msgsize++;
        continue; /* nothing consumed: the next attempt gets the same record */
      }
      if (rc >= 0) {
        CHECK((size_t)rc == len, "pop returned %d but length %zu", rc, len);
        verify(ru, seq, buf, len, tag);
        seq++;
        maybe_pause(&rng);
        continue;
      }
    } else {
      const void *p = NULL;
      rc = ipcring_reader_peek(r, &p, &len, &tag, tmo);
      if (rc == 0) {
        if (method == 3) {
          /* Peeking again before release returns the same record. */
          const void *p2 = NULL;
          size_t len2 = 0;
          uint32_t tag2 = 0;
          CHECK_RC(ipcring_reader_peek(r, &p2, &len2, &tag2, 0), 0);
          CHECK(p2 == p && len2 == len && tag2 == tag, "second peek differs");
        }
        verify(ru, seq, p, len, tag);
        CHECK_RC(ipcring_reader_release(r), 0);
        seq++;
        maybe_pause(&rng);
        continue;
      }
    }
    if (rc == -ENODATA) {
      CHECK(seq == ru->nrec, "end of stream after %" PRIu64 " of %" PRIu64 " records", seq,
            ru->nrec);
      /* End of stream stays. */
      CHECK_RC(ipcring_reader_pop(r, buf, ru->max, &len, &tag, 0), -ENODATA);
      break;
    }
    if (rc == -EPIPE && ru->same_mapping && ru->r_epipe == 0) {
      /* attach_mem has no liveness: the writer counts as gone, which an empty
       * ring reports once. */
      ru->r_epipe++;
      continue;
    }
    retry_or_fail("reader", rc, tmo, seq, &ru->r_cancel, &ru->r_again, &ru->r_timeout);
  }
  ru->r_count = seq;
  free(buf);
  return NULL;
}

/* Interrupt the writer, the reader or both at random moments and clear the
 * interrupt again shortly after, until told to stop. */
static void *interrupter_main(void *arg)
{
  struct run *ru = arg;
  uint64_t rng = ru->seed ^ UINT64_C(0x494e545200000000);
  while (!atomic_load(&ru->stop)) {
    nap_us((long)(splitmix(&rng) % 1500));
    unsigned which = (unsigned)(splitmix(&rng) % 3);
    if (which != 1)
      ipcring_writer_interrupt(ru->w);
    if (which != 0)
      ipcring_reader_interrupt(ru->r);
    ru->interrupts++;
    uint64_t hold = splitmix(&rng) % 8;
    if (hold)
      nap_us((long)(hold * 40));
    if (which != 1)
      ipcring_writer_clear_interrupt(ru->w);
    if (which != 0)
      ipcring_reader_clear_interrupt(ru->r);
  }
  return NULL;
}

/* The writer's own mapping of path, found in /proc/self/maps by device and
 * inode (the name shown there may be the unnamed file it was created as). */
static void *find_mapping(const char *path, size_t size)
{
  struct stat st;
  if (stat(path, &st) != 0)
    return NULL;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return NULL;
  char line[PATH_MAX + 128];
  void *found = NULL;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off, ino;
    unsigned maj, min;
    if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &off, &maj, &min, &ino) != 6)
      continue;
    if (off == 0 && hi - lo == size && ino == (unsigned long)st.st_ino &&
        maj == major(st.st_dev) && min == minor(st.st_dev)) {
      found = (void *)lo;
      break;
    }
  }
  fclose(f);
  return found;
}

static void join_bounded(pthread_t t, const char *what)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += RUN_BOUND_S;
  int rc = pthread_timedjoin_np(t, NULL, &ts);
  CHECK(rc == 0, "%s thread did not finish within %d s (%s)", what, RUN_BOUND_S, strerror(rc));
}

/* One run: nrec records through a ring of capacity cap, with the reader
 * opened by path or attached to the writer's mapping. */
static void run_one(uint64_t cap, int same_mapping, uint64_t nrec, uint64_t seed)
{
  struct run ru;
  memset(&ru, 0, sizeof ru);
  ru.cap = cap;
  ru.max = ipcring_max_payload(cap);
  ru.nrec = nrec;
  ru.seed = seed ^ mix(cap * 2 + (uint64_t)same_mapping);
  ru.same_mapping = same_mapping;
  atomic_init(&ru.stop, 0);

  char name[64];
  snprintf(name, sizeof name, "stress-%" PRIu64 "-%d", cap, same_mapping);
  char *path = tu_path(name);
  CHECK_RC(ipcring_writer_create(path, cap, 0600, 0, &ru.w), 0);
  if (same_mapping) {
    void *mem = find_mapping(path, IPCRING_HEADER_SIZE + cap);
    if (!mem) {
      printf("SKIP  cap %6" PRIu64 ", reader on the writer's mapping: mapping not found in "
             "/proc/self/maps\n", cap);
      ipcring_writer_close(ru.w);
      unlink(path);
      free(path);
      return;
    }
    CHECK_RC(ipcring_reader_attach_mem(mem, IPCRING_HEADER_SIZE + cap, &ru.r), 0);
  } else {
    CHECK_RC(ipcring_reader_open(path, 0, &ru.r), 0);
  }

  int64_t t0 = tu_now_ns();
  pthread_t tw, tr, ti;
  CHECK(pthread_create(&tr, NULL, reader_main, &ru) == 0, "pthread_create");
  CHECK(pthread_create(&tw, NULL, writer_main, &ru) == 0, "pthread_create");
  CHECK(pthread_create(&ti, NULL, interrupter_main, &ru) == 0, "pthread_create");
  join_bounded(tw, "writer");
  join_bounded(tr, "reader");
  atomic_store(&ru.stop, 1);
  join_bounded(ti, "interrupter");
  int64_t t1 = tu_now_ns();

  /* Everything sent arrived once, in order, intact. */
  CHECK(ru.r_count == nrec, "reader got %" PRIu64 " of %" PRIu64 " records", ru.r_count, nrec);
  CHECK(ru.r_bytes == ru.w_bytes, "bytes: read %" PRIu64 ", written %" PRIu64, ru.r_bytes,
        ru.w_bytes);
  CHECK(ru.r_sum == ru.w_sum, "checksum: read %016" PRIx64 ", written %016" PRIx64, ru.r_sum,
        ru.w_sum);

  /* Both sides' counters agree with what went through. */
  struct ipcring_info wi, ri;
  CHECK_RC(ipcring_writer_info(ru.w, &wi), 0);
  CHECK_RC(ipcring_reader_info(ru.r, &ri), 0);
  CHECK(wi.records == nrec && wi.bytes == ru.w_bytes,
        "writer info: %" PRIu64 " records, %" PRIu64 " bytes", wi.records, wi.bytes);
  CHECK(ri.records == nrec && ri.bytes == ru.w_bytes,
        "reader info: %" PRIu64 " records, %" PRIu64 " bytes", ri.records, ri.bytes);
  CHECK(ri.read_index == ri.write_index && wi.read_index == wi.write_index,
        "ring not drained: reader sees %" PRIu64 "/%" PRIu64 ", writer %" PRIu64 "/%" PRIu64,
        ri.read_index, ri.write_index, wi.read_index, wi.write_index);
  CHECK(ri.eos && wi.eos, "eos flag: reader %d, writer %d", ri.eos, wi.eos);

  printf("PASS  cap %6" PRIu64 ", reader %-16s %" PRIu64 " records, %" PRIu64
         " bytes in %.1f s; sleeps w %" PRIu64 " r %" PRIu64 ", wakes w %" PRIu64 " r %" PRIu64
         "; %" PRIu64 " interrupts -> -ECANCELED w %" PRIu64 " r %" PRIu64 "; -EAGAIN w %" PRIu64
         " r %" PRIu64 "; short timeouts w %" PRIu64 " r %" PRIu64 "; -EMSGSIZE %" PRIu64 "\n",
         cap, same_mapping ? "on writer's map:" : "by path:", nrec, ru.w_bytes,
         (double)(t1 - t0) / 1e9, wi.waits, ri.waits, wi.wakes, ri.wakes, ru.interrupts,
         ru.w_cancel, ru.r_cancel, ru.w_again, ru.r_again, ru.w_timeout, ru.r_timeout,
         ru.r_msgsize);
  fflush(stdout);

  ipcring_reader_close(ru.r);
  CHECK_RC(ipcring_writer_unlink(ru.w), 0);
  ipcring_writer_close(ru.w);
  free(path);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
  const char *s = getenv(name);
  if (!s || !*s)
    return dflt;
  char *end;
  unsigned long long v = strtoull(s, &end, 0);
  CHECK(*end == '\0', "%s=%s is not a number", name, s);
  return (uint64_t)v;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  uint64_t nrec = env_u64("IPCRING_STRESS_RECORDS", DEFAULT_RECORDS);
  uint64_t seed = env_u64("IPCRING_STRESS_SEED", (uint64_t)tu_now_ns() ^ (uint64_t)getpid());
  printf("stress: %" PRIu64 " records per run, IPCRING_STRESS_SEED=%" PRIu64 "%s\n", nrec, seed,
         UNDER_TSAN ? " (ThreadSanitizer build)" : "");

  static const uint64_t caps[] = { 4096, 65536 };
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    run_one(caps[i], 0, nrec, seed);
    run_one(caps[i], 1, nrec, seed);
  }
  return 0;
}
