/* Cross-process streaming: a writer child and the parent as reader stream
 * 10^7 records of mixed sizes through a 1 MiB ring in a file, and the reader
 * checks every one of them (order, length, payload checksum, tag) and the
 * count at end of stream: nothing lost, duplicated, reordered or damaged.
 *
 * The writer uses every way of writing (push, pushv, reserve/commit with an
 * exact and an oversized reservation), the reader every way of reading
 * (peek/release, pop into a large and into an exact buffer, and pop into a
 * buffer one byte short, which must fail with -EMSGSIZE and consume nothing).
 *
 * Sizes come from a PRNG keyed by the sequence number, so both sides know
 * the length of record n without talking: mostly 0..2048 bytes, and one in
 * 4096 up to a quarter of the capacity, so the ring wraps (and pads) often.
 *
 * The message rate is printed for information only; nothing asserts on it.
 * IPCRING_XPROC_MESSAGES overrides the count for quick local runs. */
#include "testutil.h"

#include "ipcring.h"

#include <inttypes.h>
#include <poll.h>

#define CAPACITY ((uint64_t)1 << 20)
#define SMALL_MAX 2048u
#define LARGE_MAX ((size_t)(CAPACITY / 4))
#define POOL_SIZE ((size_t)1 << 19) /* > LARGE_MAX: bodies are slices of it */
#define HDR 16u                       /* seq (8) + checksum (8) */
/* Bound for any single blocking call: a stalled peer fails the test. */
#define CALL_TIMEOUT_NS (60LL * 1000000000LL)

static uint64_t mix64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* Length of record seq. */
static size_t msg_len(uint64_t seq)
{
  uint64_t r = mix64(seq ^ 0x51e5eedULL);
  if ((r & 4095) == 0)
    return (size_t)((r >> 12) % (LARGE_MAX + 1));
  return (size_t)((r >> 12) % (SMALL_MAX + 1));
}

static uint32_t msg_tag(uint64_t seq, size_t len)
{
  return (uint32_t)(mix64(seq ^ 0x7a6ULL) >> 32) ^ (uint32_t)len;
}

static uint64_t rotl64(uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

/* Word-wise checksum of a body, seeded with the sequence number. */
static uint64_t checksum(uint64_t seq, const uint8_t *p, size_t n)
{
  uint64_t h = mix64(seq) ^ (n * 0x100000001b3ULL);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = rotl64(h ^ w, 27) * 0x9e3779b97f4a7c15ULL;
  }
  uint64_t t = 0;
  memcpy(&t, p + i, n - i);
  h = rotl64(h ^ t ^ ((uint64_t)(n - i) << 56), 27) * 0x9e3779b97f4a7c15ULL;
  return mix64(h);
}

/* The first bytes of record seq: seq and its mix, cut to len (< HDR) bytes
 * for the short ones. */
static void short_bytes(uint64_t seq, uint8_t out[HDR])
{
  uint64_t v[2] = { seq, mix64(seq ^ 0x54047ULL) };
  memcpy(out, v, HDR);
}

static const uint8_t *pool_slice(const uint8_t *pool, uint64_t seq, size_t body)
{
  return pool + mix64(seq ^ 0xb0d1ULL) % (POOL_SIZE - body + 1);
}

static void fill_pool(uint8_t *pool)
{
  uint64_t s = 12345;
  for (size_t i = 0; i < POOL_SIZE; i += 8) {
    s = mix64(s);
    memcpy(pool + i, &s, 8);
  }
}

/* Write record seq into dst (len bytes). */
static void build(const uint8_t *pool, uint64_t seq, size_t len, uint8_t *dst)
{
  if (len < HDR) {
    uint8_t sb[HDR];
    short_bytes(seq, sb);
    memcpy(dst, sb, len);
    return;
  }
  size_t body = len - HDR;
  const uint8_t *src = pool_slice(pool, seq, body);
  uint64_t cs = checksum(seq, src, body);
  memcpy(dst, &seq, 8);
  memcpy(dst + 8, &cs, 8);
  memcpy(dst + HDR, src, body);
}

/* ---- writer child ---------------------------------------------------- */

static void writer_main(const char *path, uint64_t n, int up)
{
  uint8_t *pool = malloc(POOL_SIZE);
  uint8_t *buf = malloc(LARGE_MAX);
  CHECK(pool && buf, "malloc");
  fill_pool(pool);

  ipcring_writer *w = NULL;
  CHECK_RC(ipcring_writer_create(path, CAPACITY, 0600, 0, &w), 0);
  CHECK(write(up, "C", 1) == 1, "write: %s", strerror(errno));

  for (uint64_t seq = 0; seq < n; seq++) {
    size_t len = msg_len(seq);
    uint32_t tag = msg_tag(seq, len);
    switch (seq % 4) {
    case 0: /* push from a private buffer */
      build(pool, seq, len, buf);
      CHECK_RC(ipcring_writer_push(w, buf, len, tag, CALL_TIMEOUT_NS), 0);
      break;
    case 1: { /* pushv: seq, checksum and body from three places */
      struct iovec iov[3];
      uint64_t cs = 0;
      uint8_t sb[HDR];
      int cnt;
      if (len < HDR) {
        short_bytes(seq, sb);
        size_t a = len / 2;
        iov[0] = (struct iovec){ sb, a };
        iov[1] = (struct iovec){ sb + a, len - a };
        cnt = 2;
      } else {
        size_t body = len - HDR;
        const uint8_t *src = pool_slice(pool, seq, body);
        cs = checksum(seq, src, body);
        iov[0] = (struct iovec){ &seq, 8 };
        iov[1] = (struct iovec){ &cs, 8 };
        iov[2] = (struct iovec){ (void *)src, body };
        cnt = 3;
      }
      CHECK_RC(ipcring_writer_pushv(w, iov, cnt, tag, CALL_TIMEOUT_NS), 0);
      break;
    }
    case 2: { /* reserve exactly, build in place, commit */
      void *p;
      CHECK_RC(ipcring_writer_reserve(w, len, CALL_TIMEOUT_NS, &p), 0);
      build(pool, seq, len, p);
      CHECK_RC(ipcring_writer_commit(w, len, tag), 0);
      break;
    }
    default: { /* reserve more than needed, commit less */
      size_t extra = (size_t)(mix64(seq) % 4096);
      size_t rlen = len + extra;
      if (rlen > LARGE_MAX)
        rlen = LARGE_MAX > len ? LARGE_MAX : len;
      void *p;
      CHECK_RC(ipcring_writer_reserve(w, rlen, CALL_TIMEOUT_NS, &p), 0);
      build(pool, seq, len, p);
      CHECK_RC(ipcring_writer_commit(w, len, tag), 0);
      break;
    }
    }
  }
  CHECK_RC(ipcring_writer_eos(w), 0);
  struct ipcring_info info;
  CHECK_RC(ipcring_writer_info(w, &info), 0);
  CHECK(info.records == n, "writer committed %" PRIu64 " records, expected %" PRIu64,
        info.records, n);
  ipcring_writer_close(w);
  free(pool);
  free(buf);
}

/* ---- reader (parent) ------------------------------------------------- */

static void verify(uint64_t seq, const uint8_t *p, size_t len, uint32_t tag)
{
  size_t want = msg_len(seq);
  CHECK(len == want, "record %" PRIu64 ": length %zu, expected %zu", seq, len, want);
  CHECK(tag == msg_tag(seq, len), "record %" PRIu64 ": tag %08x, expected %08x", seq, tag,
        msg_tag(seq, len));
  if (len < HDR) {
    uint8_t sb[HDR];
    short_bytes(seq, sb);
    CHECK(memcmp(p, sb, len) == 0, "record %" PRIu64 ": short payload differs", seq);
    return;
  }
  uint64_t got_seq, got_cs;
  memcpy(&got_seq, p, 8);
  memcpy(&got_cs, p + 8, 8);
  CHECK(got_seq == seq, "record %" PRIu64 ": payload carries sequence %" PRIu64, seq, got_seq);
  uint64_t cs = checksum(seq, p + HDR, len - HDR);
  CHECK(got_cs == cs, "record %" PRIu64 ": checksum %016" PRIx64 ", payload hashes to %016" PRIx64,
        seq, got_cs, cs);
}

static void wait_byte(int fd, char want, int timeout_ms)
{
  struct pollfd pfd = { fd, POLLIN, 0 };
  int rc;
  do
    rc = poll(&pfd, 1, timeout_ms);
  while (rc < 0 && errno == EINTR);
  CHECK(rc == 1, "no word from the child within %d ms", timeout_ms);
  char c = 0;
  CHECK(read(fd, &c, 1) == 1 && c == want, "child said '%c', expected '%c'", c, want);
}

/* Zero loss across processes: every record arrives once, in order, intact. */
static void test_stream(uint64_t n)
{
  char *path = tu_path("xproc.ring");
  int up[2];
  CHECK(pipe(up) == 0, "pipe: %s", strerror(errno));
  pid_t pid = tu_fork();
  if (pid == 0) {
    close(up[0]);
    writer_main(path, n, up[1]);
    _exit(0);
  }
  close(up[1]);
  wait_byte(up[0], 'C', 30000);

  ipcring_reader *r = NULL;
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  uint8_t *buf = malloc(LARGE_MAX + 1);
  CHECK(buf, "malloc");

  int64_t t0 = tu_now_ns();
  uint64_t seq = 0, bytes = 0, short_pops = 0;
  int rc;
  for (;;) {
    size_t want = msg_len(seq);
    const void *p;
    size_t len = 0;
    uint32_t tag = 0;
    if (seq % 1021 == 5 && want > 0) {
      /* A buffer one byte short: -EMSGSIZE, the length, nothing consumed. */
      rc = ipcring_reader_pop(r, buf, want - 1, &len, &tag, CALL_TIMEOUT_NS);
      if (seq < n) {
        CHECK_RC(rc, -EMSGSIZE);
        CHECK(len == want, "record %" PRIu64 ": -EMSGSIZE reported length %zu, expected %zu",
              seq, len, want);
        short_pops++;
      }
    }
    switch (seq % 3) {
    case 0:
      rc = ipcring_reader_peek(r, &p, &len, &tag, CALL_TIMEOUT_NS);
      if (rc != 0)
        break;
      /* A second peek without release returns the same record. */
      if (seq % 7 == 0) {
        const void *p2;
        size_t len2;
        uint32_t tag2;
        CHECK_RC(ipcring_reader_peek(r, &p2, &len2, &tag2, 0), 0);
        CHECK(p2 == p && len2 == len && tag2 == tag, "record %" PRIu64 ": peek not stable", seq);
      }
      verify(seq, p, len, tag);
      CHECK_RC(ipcring_reader_release(r), 0);
      break;
    case 1:
      rc = ipcring_reader_pop(r, buf, LARGE_MAX + 1, &len, &tag, CALL_TIMEOUT_NS);
      if (rc < 0)
        break;
      CHECK(rc == (int)len, "pop returned %d, length %zu", rc, len);
      verify(seq, buf, len, tag);
      rc = 0;
      break;
    default:
      /* Exactly the expected size (a longer record would give -EMSGSIZE). */
      rc = ipcring_reader_pop(r, buf, want, &len, &tag, CALL_TIMEOUT_NS);
      if (rc < 0)
        break;
      verify(seq, buf, len, tag);
      rc = 0;
      break;
    }
    if (rc != 0)
      break;
    bytes += len;
    seq++;
  }
  int64_t t1 = tu_now_ns();
  CHECK(rc == -ENODATA, "reader stopped after %" PRIu64 " records with %d (%s)", seq, rc,
        ipcring_strerror(rc));
  CHECK(seq == n, "reader got %" PRIu64 " records before end of stream, writer sent %" PRIu64,
        seq, n);
  CHECK_RC(ipcring_reader_peek(r, &(const void *){ NULL }, &(size_t){ 0 }, &(uint32_t){ 0 }, 0),
           -ENODATA);
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(r, &info), 0);
  CHECK(info.records == n && info.bytes == bytes,
        "reader counters: %" PRIu64 " records / %" PRIu64 " bytes, expected %" PRIu64 " / %" PRIu64,
        info.records, info.bytes, n, bytes);
  CHECK(info.read_index == info.write_index, "ring not drained: read %" PRIu64 " write %" PRIu64,
        info.read_index, info.write_index);

  int st = tu_reap(pid, 60000);
  CHECK_CHILD_OK(st);
  ipcring_reader_close(r);
  close(up[0]);
  unlink(path);
  free(path);
  free(buf);

  double sec = (double)(t1 - t0) / 1e9;
  printf("stream: %" PRIu64 " records, %.1f MiB, %" PRIu64 " short-buffer pops, %.2f s: "
         "%.0f messages/s, %.0f MiB/s (information only), reader waits %" PRIu64 "\n",
         n, (double)bytes / (1 << 20), short_pops, sec, (double)n / sec,
         (double)bytes / (1 << 20) / sec, info.waits);
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  uint64_t n = 10000000;
  const char *env = getenv("IPCRING_XPROC_MESSAGES");
  if (env && *env)
    n = strtoull(env, NULL, 0);
  printf("xproc: %" PRIu64 " records through a %" PRIu64 " KiB ring between two processes\n", n,
         CAPACITY >> 10);
  test_stream(n);
  printf("xproc: ok\n");
  return 0;
}
