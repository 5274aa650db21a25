/* Zero copy with several records in flight: the writer's claims
 * (claim/submit/discard/release) and the reader's takes (take/release_to),
 * in one process on a ring file in tu_tmpdir(). Each test names the
 * behaviour it pins down. */
#include "testutil.h"

#include "ipcring.h"

#include "ipcring-layout.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define MS (1000000LL)
#define SEC (1000000000LL)

#define RUN(t)                                                                        \
  do {                                                                                \
    printf("== %s\n", #t);                                                            \
    t();                                                                              \
  } while (0)

struct pair {
  ipcring_writer *w;
  ipcring_reader *r;
};

static struct pair pair_open(const char *name, uint64_t cap)
{
  struct pair p;
  char *path = tu_path(name);
  CHECK_RC(ipcring_writer_create(path, cap, 0600, 0, &p.w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &p.r), 0);
  free(path);
  return p;
}

static void pair_close(struct pair *p)
{
  ipcring_reader_close(p->r);
  ipcring_writer_close(p->w);
}

/* The next record, with a short timeout; checks its tag and payload byte. */
static void expect_record(ipcring_reader *r, uint32_t tag, size_t len, uint8_t fill)
{
  const void *ptr;
  size_t n;
  uint32_t t;
  CHECK_RC(ipcring_reader_peek(r, &ptr, &n, &t, 100 * MS), 0);
  CHECK(t == tag && n == len, "got tag %u len %zu, expected tag %u len %zu", t, n, tag, len);
  for (size_t i = 0; i < n; i++)
    CHECK(((const uint8_t *)ptr)[i] == fill, "byte %zu is %u, expected %u", i,
          ((const uint8_t *)ptr)[i], fill);
  CHECK_RC(ipcring_reader_release(r), 0);
}

static void expect_empty(ipcring_reader *r)
{
  const void *ptr;
  size_t n;
  uint32_t t;
  CHECK_RC(ipcring_reader_peek(r, &ptr, &n, &t, 0), -EAGAIN);
}

static uint64_t claim_fill(ipcring_writer *w, size_t len, uint8_t fill)
{
  void *p;
  uint64_t id;
  CHECK_RC(ipcring_writer_claim(w, len, 0, &p, &id), 0);
  memset(p, fill, len);
  return id;
}

/* Claims submitted out of order reach the reader in claim order, each as
 * soon as every claim before it is finished. */
static void test_claims_publish_in_claim_order(void)
{
  struct pair p = pair_open("order", 4096);
  uint64_t a = claim_fill(p.w, 100, 'a');
  uint64_t b = claim_fill(p.w, 200, 'b');
  uint64_t c = claim_fill(p.w, 300, 'c');
  CHECK(ipcring_writer_claims(p.w) == 3, "3 claims open");
  CHECK_RC(ipcring_writer_claim_submit(p.w, c, 300, 3), 0);
  CHECK_RC(ipcring_writer_claim_submit(p.w, b, 200, 2), 0);
  expect_empty(p.r);
  CHECK_RC(ipcring_writer_claim_submit(p.w, a, 100, 1), 0);
  expect_record(p.r, 1, 100, 'a');
  expect_record(p.r, 2, 200, 'b');
  expect_record(p.r, 3, 300, 'c');
  expect_empty(p.r);
  /* Submitted but not released: still counted. */
  CHECK(ipcring_writer_claims(p.w) == 3, "claims stay until released");
  CHECK_RC(ipcring_writer_claim_release(p.w, b), 0);
  CHECK_RC(ipcring_writer_claim_release(p.w, a), 0);
  CHECK_RC(ipcring_writer_claim_release(p.w, c), 0);
  CHECK(ipcring_writer_claims(p.w) == 0, "all released");
  /* Finishing twice or an unknown id is an error, not a corruption. */
  CHECK_RC(ipcring_writer_claim_submit(p.w, a, 100, 1), -EINVAL);
  CHECK_RC(ipcring_writer_claim_release(p.w, 12345), -EINVAL);
  pair_close(&p);
}

/* A discarded claim is never seen by the reader; a shorter submit leaves no
 * visible gap; the library's skip tag cannot be committed. */
static void test_discard_and_short_submit(void)
{
  struct pair p = pair_open("discard", 4096);
  uint64_t a = claim_fill(p.w, 500, 'a');
  uint64_t b = claim_fill(p.w, 500, 'b');
  uint64_t c = claim_fill(p.w, 500, 'c');
  CHECK_RC(ipcring_writer_claim_discard(p.w, b), 0);
  CHECK_RC(ipcring_writer_claim_submit(p.w, a, 10, 1), 0); /* 490 bytes unused */
  CHECK_RC(ipcring_writer_claim_submit(p.w, c, 500, 3), 0);
  CHECK_RC(ipcring_writer_claim_submit(p.w, b, 500, 2), -EINVAL);
  expect_record(p.r, 1, 10, 'a');
  expect_record(p.r, 3, 500, 'c');
  expect_empty(p.r);
  CHECK_RC(ipcring_writer_claim_release(p.w, a), 0);
  CHECK_RC(ipcring_writer_claim_release(p.w, c), 0);
  CHECK_RC(ipcring_writer_push(p.w, "x", 1, IPCRING_TAG_SKIP, 0), -EINVAL);
  /* A skipped claim does not hold up later ones and is never seen, but its
   * bytes stay the writer's until released. */
  uint64_t f = claim_fill(p.w, 1500, 'f');
  uint64_t g = claim_fill(p.w, 100, 'g');
  CHECK_RC(ipcring_writer_claim_skip(p.w, f), 0);
  CHECK_RC(ipcring_writer_claim_submit(p.w, g, 100, 7), 0);
  CHECK_RC(ipcring_writer_claim_release(p.w, g), 0);
  expect_record(p.r, 7, 100, 'g');
  expect_empty(p.r);
  void *ptr;
  uint64_t id;
  CHECK_RC(ipcring_writer_claim(p.w, 2500, 0, &ptr, &id), -ENOBUFS); /* f's bytes are kept */
  CHECK_RC(ipcring_writer_claim_release(p.w, f), 0);
  CHECK_RC(ipcring_writer_claim(p.w, 2500, 0, &ptr, &id), 0);
  CHECK_RC(ipcring_writer_claim_discard(p.w, id), 0);
  /* Discarding the newest, unpublished claim gives its room back: the next
   * claim starts at the same place. */
  uint64_t d = claim_fill(p.w, 1000, 'd');
  CHECK_RC(ipcring_writer_claim_discard(p.w, d), 0);
  uint64_t e = claim_fill(p.w, 1000, 'e');
  CHECK(e == d, "room of a discarded newest claim is reused (%llu vs %llu)",
        (unsigned long long)e, (unsigned long long)d);
  CHECK_RC(ipcring_writer_claim_submit(p.w, e, 1000, 5), 0);
  expect_record(p.r, 5, 1000, 'e');
  CHECK_RC(ipcring_writer_claim_release(p.w, e), 0);
  pair_close(&p);
}

/* A submitted claim the writer has not released keeps its bytes even after
 * the reader read them; where only the writer's own claims stand in the way,
 * claim fails at once with -ENOBUFS instead of waiting forever. */
static void test_unreleased_claim_keeps_its_bytes(void)
{
  struct pair p = pair_open("keep", 4096);
  uint64_t a = claim_fill(p.w, 2000, 'a');
  CHECK_RC(ipcring_writer_claim_submit(p.w, a, 2000, 1), 0);
  expect_record(p.r, 1, 2000, 'a');
  uint64_t b = claim_fill(p.w, 1000, 'b');
  CHECK_RC(ipcring_writer_claim_submit(p.w, b, 1000, 2), 0);
  expect_record(p.r, 2, 1000, 'b');
  /* The reader has read everything, but a's bytes are still the writer's. */
  void *ptr;
  uint64_t id;
  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_claim(p.w, 2000, -1, &ptr, &id), -ENOBUFS);
  CHECK(tu_now_ns() - t0 < SEC, "-ENOBUFS at once");
  /* The plain API queues behind claims and fails the same way. */
  CHECK_RC(ipcring_writer_reserve(p.w, 2000, -1, &ptr), -ENOBUFS);
  CHECK_RC(ipcring_writer_claim_release(p.w, a), 0);
  uint64_t c = claim_fill(p.w, 2000, 'c');
  CHECK_RC(ipcring_writer_claim_submit(p.w, c, 2000, 3), 0);
  expect_record(p.r, 3, 2000, 'c');
  CHECK_RC(ipcring_writer_claim_release(p.w, b), 0);
  CHECK_RC(ipcring_writer_claim_release(p.w, c), 0);
  /* Open claims filling the ring: -ENOBUFS too, and a full table of claims. */
  uint64_t ids[IPCRING_CLAIMS_MAX];
  for (unsigned i = 0; i < IPCRING_CLAIMS_MAX; i++)
    ids[i] = claim_fill(p.w, 8, (uint8_t)i);
  CHECK_RC(ipcring_writer_claim(p.w, 8, 0, &ptr, &id), -ENOBUFS);
  for (unsigned i = 0; i < IPCRING_CLAIMS_MAX; i++) {
    CHECK_RC(ipcring_writer_claim_submit(p.w, ids[i], 8, i), 0);
    CHECK_RC(ipcring_writer_claim_release(p.w, ids[i]), 0);
  }
  for (unsigned i = 0; i < IPCRING_CLAIMS_MAX; i++)
    expect_record(p.r, i, 8, (uint8_t)i);
  pair_close(&p);
}

/* Claims wrap around the end of the data area like plain records, with the
 * writer and the reader at every phase; many rounds with checked contents. */
static void test_claims_wrap(void)
{
  struct pair p = pair_open("wrap", 4096);
  unsigned seq = 0, got = 0, wraps = 0;
  for (int round = 0; round < 3000; round++) {
    size_t la = 8 + (size_t)(round * 37) % 1500, lb = 8 + (size_t)(round * 91) % 1200;
    uint64_t a = claim_fill(p.w, la, (uint8_t)seq);
    /* If a wrapped, its padding is published and only the reader passing it
     * makes room for b: then b's claim must wait (here: -EAGAIN). */
    void *ptr;
    uint64_t b;
    int rc = ipcring_writer_claim(p.w, lb, 0, &ptr, &b);
    if (rc == -EAGAIN) {
      wraps++;
      expect_empty(p.r);
      rc = ipcring_writer_claim(p.w, lb, 0, &ptr, &b);
    }
    CHECK_RC(rc, 0);
    memset(ptr, (uint8_t)(seq + 1), lb);
    CHECK_RC(ipcring_writer_claim_submit(p.w, b, lb / 2, seq + 1), 0);
    CHECK_RC(ipcring_writer_claim_submit(p.w, a, la, seq), 0);
    CHECK_RC(ipcring_writer_claim_release(p.w, a), 0);
    CHECK_RC(ipcring_writer_claim_release(p.w, b), 0);
    expect_record(p.r, seq, la, (uint8_t)seq);
    expect_record(p.r, seq + 1, lb / 2, (uint8_t)(seq + 1));
    expect_empty(p.r); /* and passes b's unused tail */
    seq += 2;
    got += 2;
  }
  expect_empty(p.r);
  CHECK(got == 6000, "all records");
  CHECK(wraps > 0, "the case of a wrapped first claim came up");
  pair_close(&p);
}

/* Taken records free ring room only when released, in order; a release from
 * another thread frees room for a writer; what the reader skipped after the
 * last take (a claim's unused tail) is freed with it, so the writer is never
 * left waiting for room the reader has already passed. */
static void test_take_and_release_to(void)
{
  struct pair p = pair_open("take", 4096);
  CHECK_RC(ipcring_writer_push(p.w, "aaaa", 4, 1, 0), 0);
  CHECK_RC(ipcring_writer_push(p.w, "bbbb", 4, 2, 0), 0);
  CHECK_RC(ipcring_writer_push(p.w, "cccc", 4, 3, 0), 0);
  struct ipcring_record_ref r1, r2, r3, r4;
  CHECK_RC(ipcring_reader_take(p.r, &r1, 0), 0);
  CHECK_RC(ipcring_reader_take(p.r, &r2, 0), 0);
  CHECK_RC(ipcring_reader_take(p.r, &r3, 0), 0);
  CHECK(r1.tag == 1 && r2.tag == 2 && r3.tag == 3 && memcmp(r2.data, "bbbb", 4) == 0, "taken");
  CHECK(r2.offset == IPCRING_DATA_OFFSET + 16 + IPCRING_RECORD_HEADER, "file offset %llu",
        (unsigned long long)r2.offset);
  CHECK_RC(ipcring_reader_take(p.r, &r4, 0), -EAGAIN);
  struct ipcring_info info;
  ipcring_writer_info(p.w, &info);
  CHECK(info.read_index == 0, "nothing released yet");
  CHECK_RC(ipcring_reader_release_to(p.r, r2.end), 0);
  ipcring_writer_info(p.w, &info);
  CHECK(info.read_index == r2.end, "released through the second record");
  CHECK_RC(ipcring_reader_release_to(p.r, r3.end + 8), -EINVAL);
  CHECK_RC(ipcring_reader_release_to(p.r, r3.end), 0);
  ipcring_writer_info(p.w, &info);
  CHECK(info.read_index == r3.end, "all released");

  /* A claim of 4000 submitted with 100 bytes: 3900 skipped bytes follow. */
  void *ptr;
  uint64_t id;
  CHECK_RC(ipcring_writer_claim(p.w, 4000, 0, &ptr, &id), 0);
  memset(ptr, 'x', 100);
  CHECK_RC(ipcring_writer_claim_submit(p.w, id, 100, 9), 0);
  CHECK_RC(ipcring_writer_claim_release(p.w, id), 0);
  CHECK_RC(ipcring_reader_take(p.r, &r4, 0), 0);
  CHECK(r4.tag == 9 && r4.len == 100, "short claim read");
  CHECK_RC(ipcring_reader_take(p.r, &r1, 0), -EAGAIN); /* passes the skip */
  CHECK_RC(ipcring_reader_release_to(p.r, r4.end), 0);
  /* Room for 3000 exists only if the skipped tail was freed too. */
  CHECK_RC(ipcring_writer_reserve(p.w, 3000, 0, &ptr), 0);
  CHECK_RC(ipcring_writer_commit(p.w, 3000, 10), 0);
  CHECK_RC(ipcring_reader_take(p.r, &r1, 0), 0);
  CHECK(r1.tag == 10, "record after the skip");
  /* peek/release between takes: freed together with the takes. */
  CHECK_RC(ipcring_writer_push(p.w, "dd", 2, 11, 0), 0);
  expect_record(p.r, 11, 2, 'd');
  ipcring_writer_info(p.w, &info);
  CHECK(info.read_index < r1.end, "a take still out holds everything after it");
  CHECK_RC(ipcring_reader_release_to(p.r, r1.end), 0);
  ipcring_writer_info(p.w, &info);
  uint64_t w_idx = info.write_index;
  CHECK(info.read_index == w_idx, "peeked record freed with the last take (%llu vs %llu)",
        (unsigned long long)info.read_index, (unsigned long long)w_idx);
  pair_close(&p);
}

struct releaser {
  ipcring_reader *r;
  uint64_t end;
  int delay_ms;
  int then_take; /* then take the next record (tag 3), as a reader thread would */
};

static void *release_later(void *arg)
{
  struct releaser *rl = arg;
  tu_sleep_ms(rl->delay_ms);
  CHECK_RC(ipcring_reader_release_to(rl->r, rl->end), 0);
  if (rl->then_take) {
    struct ipcring_record_ref ref;
    CHECK_RC(ipcring_reader_take(rl->r, &ref, 5 * SEC), 0);
    CHECK(ref.tag == 3 && ref.len == 3500, "record after the wrap");
  }
  return NULL;
}

/* A writer blocked on a full ring wakes when another thread releases a taken
 * record; ipcring_writer_wait_read() waits for exactly that and is bounded by
 * its timeout. */
static void test_release_from_other_thread_wakes_writer(void)
{
  struct pair p = pair_open("thread", 4096);
  void *ptr;
  CHECK_RC(ipcring_writer_reserve(p.w, 4000, 0, &ptr), 0);
  CHECK_RC(ipcring_writer_commit(p.w, 4000, 1), 0);
  struct ipcring_record_ref ref;
  CHECK_RC(ipcring_reader_take(p.r, &ref, 0), 0);
  CHECK_RC(ipcring_writer_reserve(p.w, 1000, 0, &ptr), -EAGAIN);
  uint64_t seen = ipcring_writer_read_index(p.w);
  int64_t t0 = tu_now_ns();
  CHECK_RC(ipcring_writer_wait_read(p.w, seen, 30 * MS), -ETIMEDOUT);
  CHECK(tu_now_ns() - t0 >= 25 * MS, "waited for the timeout");
  struct releaser rl = { p.r, ref.end, 30, 0 };
  pthread_t th;
  CHECK(pthread_create(&th, NULL, release_later, &rl) == 0, "thread");
  CHECK_RC(ipcring_writer_wait_read(p.w, seen, 5 * SEC), 0);
  CHECK_RC(ipcring_writer_reserve(p.w, 1000, 0, &ptr), 0);
  CHECK_RC(ipcring_writer_commit(p.w, 1000, 2), 0);
  pthread_join(th, NULL);
  /* And a plain blocking reserve, too: it needs padding to the end of the
   * data area, which the reader thread passes after the release. */
  CHECK_RC(ipcring_reader_take(p.r, &ref, 0), 0);
  CHECK_RC(ipcring_writer_reserve(p.w, 3500, 0, &ptr), -EAGAIN);
  rl.end = ref.end;
  rl.then_take = 1;
  CHECK(pthread_create(&th, NULL, release_later, &rl) == 0, "thread");
  CHECK_RC(ipcring_writer_reserve(p.w, 3500, 5 * SEC, &ptr), 0);
  CHECK_RC(ipcring_writer_commit(p.w, 3500, 3), 0);
  pthread_join(th, NULL);
  ipcring_writer_interrupt(p.w);
  CHECK_RC(ipcring_writer_wait_read(p.w, ipcring_writer_read_index(p.w), 5 * SEC), -ECANCELED);
  pair_close(&p);
}

/* Regression test for claims compared by plain < on free-running indices
 * (found by tests/ring/fuzz_writer.c): a ring taken over with indices just
 * below 2^64 wraps them past zero, and claims, skips, takes and releases
 * must behave there exactly as anywhere else. */
static void test_indices_wrap_past_2_64(void)
{
  char *path = tu_path("wrap64");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  ipcring_writer_close(w); /* a stale ring: the next writer takes it over */
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0, "open");
  struct ipcring_shared *sh =
      mmap(NULL, IPCRING_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHECK(sh != MAP_FAILED, "map");
  uint64_t start = UINT64_MAX - 20000 + 1 - 8; /* 8-aligned, 20008 below 2^64 */
  atomic_store(&sh->write_index, start);
  atomic_store(&sh->read_index, start);
  munmap(sh, IPCRING_HEADER_SIZE);
  close(fd);
  struct pair p;
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &p.w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &p.r), 0);
  unsigned seq = 0;
  for (int round = 0; round < 200; round++) {
    size_t la = 8 + (size_t)(round * 53) % 900, lb = 8 + (size_t)(round * 29) % 700;
    uint64_t a = claim_fill(p.w, la, (uint8_t)seq);
    void *ptr;
    uint64_t b;
    int rc = ipcring_writer_claim(p.w, lb, 0, &ptr, &b);
    if (rc == -EAGAIN) {
      expect_empty(p.r);
      rc = ipcring_writer_claim(p.w, lb, 0, &ptr, &b);
    }
    CHECK_RC(rc, 0);
    memset(ptr, (uint8_t)(seq + 1), lb);
    CHECK_RC(ipcring_writer_claim_submit(p.w, b, lb, seq + 1), 0);
    CHECK_RC(ipcring_writer_claim_skip(p.w, a), 0); /* a never seen, kept until released */
    struct ipcring_record_ref ref;
    CHECK_RC(ipcring_reader_take(p.r, &ref, 0), 0);
    CHECK(ref.tag == seq + 1 && ref.len == lb, "round %d: got tag %u", round, ref.tag);
    CHECK_RC(ipcring_reader_release_to(p.r, ref.end), 0);
    CHECK_RC(ipcring_writer_claim_release(p.w, a), 0);
    CHECK_RC(ipcring_writer_claim_release(p.w, b), 0);
    CHECK(ipcring_writer_claims(p.w) == 0, "round %d: claims left", round);
    seq += 2;
  }
  struct ipcring_info info;
  ipcring_writer_info(p.w, &info);
  CHECK(info.write_index < start, "the write index wrapped past 2^64 (%llu)",
        (unsigned long long)info.write_index);
  pair_close(&p);
  free(path);
}

/* The hot window: in a ring of 16 MiB or more, a writer that finds the
 * reader caught up past the first 4 MiB starts over at offset 0 (a padding
 * record to the end), so a reader that keeps up only touches the start of
 * the ring; while the reader lags, records go on past the window. */
static void test_hot_window(void)
{
  struct pair p = pair_open("hot", (uint64_t)16 << 20);
  static char chunk[256 << 10];
  uint64_t max_off = 0;
  struct ipcring_record_ref ref;
  for (int i = 0; i < 200; i++) { /* 50 MiB, three laps' worth */
    CHECK_RC(ipcring_writer_push(p.w, chunk, sizeof chunk, 1, 0), 0);
    CHECK_RC(ipcring_reader_take(p.r, &ref, 0), 0);
    CHECK_RC(ipcring_reader_release_to(p.r, ref.end), 0);
    uint64_t off = ref.offset - IPCRING_DATA_OFFSET;
    if (off > max_off)
      max_off = off;
  }
  printf("  reader keeping up: highest payload offset %llu KiB\n",
         (unsigned long long)(max_off >> 10));
  CHECK(max_off < (6u << 20), "records went to offset %llu past the 4 MiB window",
        (unsigned long long)max_off);
  pair_close(&p);
  /* A reader that lags (12 MiB behind on a fresh ring): the writer goes on
   * past the window. */
  p = pair_open("hot2", (uint64_t)16 << 20);
  for (int i = 0; i < 48; i++)
    CHECK_RC(ipcring_writer_push(p.w, chunk, sizeof chunk, 2, 0), 0);
  max_off = 0;
  for (int i = 0; i < 48; i++) {
    CHECK_RC(ipcring_reader_take(p.r, &ref, 0), 0);
    CHECK(ref.tag == 2, "record %d", i);
    CHECK_RC(ipcring_reader_release_to(p.r, ref.end), 0);
    uint64_t off = ref.offset - IPCRING_DATA_OFFSET;
    if (off > max_off)
      max_off = off;
  }
  CHECK(max_off >= (8u << 20), "a lagging reader's records stay in the window (%llu)",
        (unsigned long long)max_off);
  pair_close(&p);
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  alarm(60);
  tu_tmpdir();
  RUN(test_claims_publish_in_claim_order);
  RUN(test_discard_and_short_submit);
  RUN(test_unreleased_claim_keeps_its_bytes);
  RUN(test_claims_wrap);
  RUN(test_take_and_release_to);
  RUN(test_release_from_other_thread_wakes_writer);
  RUN(test_indices_wrap_past_2_64);
  RUN(test_hot_window);
  printf("all zero-copy ring tests passed\n");
  return 0;
}
