/* Hostile memory: a ring file written by a real writer is corrupted one field
 * at a time (pwrite into the file, which is coherent with the mappings), and
 * the reader (or, for the read index, the writer) must fail with a clear
 * error: -EINVAL / -EPROTONOSUPPORT / -EPROTO at open, or -EPROTO at the call
 * that meets the damage. The error is sticky (later calls, even after the
 * bytes are repaired, return it again; a failed open leaves nothing behind,
 * so the next open fails the same way and succeeds once the file is
 * repaired), records before the damage are delivered intact, and nothing
 * crashes, hangs, or touches memory out of bounds.
 *
 * A randomized part flips bytes in a copy of a small ring and reads it
 * through ipcring_reader_attach_mem(); it must never crash (CI runs this
 * under AddressSanitizer, which sees any read outside the malloc'd copy).
 * IPCRING_CORRUPT_SEED and IPCRING_CORRUPT_ITERATIONS override the defaults. */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring-private.h"
#include "ipcring.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>

#define MS 1000000LL
#define OFF(field) offsetof(struct ipcring_shared, field)
/* Any call here returns at once or after its short timeout; a call that
 * takes longer than this counts as a hang. */
#define HANG_BOUND_NS (2000 * MS)

/* ---- records ---------------------------------------------------------- */

static size_t rec_len(uint64_t seq)
{
  return 8 + (size_t)(seq * 37 % 200);
}

static uint32_t rec_tag(uint64_t seq)
{
  return (uint32_t)seq ^ 0xc0ffee00u;
}

/* Push record seq without waiting: 0, or -EAGAIN when the ring is full. */
static int try_push_rec(ipcring_writer *w, uint64_t seq)
{
  uint8_t buf[256];
  size_t len = rec_len(seq);
  memcpy(buf, &seq, 8);
  for (size_t i = 8; i < len; i++)
    buf[i] = (uint8_t)(seq + i);
  int rc = ipcring_writer_push(w, buf, len, rec_tag(seq), 0);
  CHECK(rc == 0 || rc == -EAGAIN, "push of record %" PRIu64 ": %d (%s)", seq, rc,
        ipcring_strerror(rc));
  return rc;
}

static void check_rec(uint64_t seq, const uint8_t *p, size_t len, uint32_t tag)
{
  CHECK(len == rec_len(seq), "record %" PRIu64 ": length %zu, expected %zu", seq, len,
        rec_len(seq));
  uint64_t s;
  memcpy(&s, p, 8);
  CHECK(s == seq, "expected record %" PRIu64 ", got %" PRIu64, seq, s);
  for (size_t i = 8; i < len; i++)
    CHECK(p[i] == (uint8_t)(seq + i), "record %" PRIu64 ": byte %zu differs", seq, i);
  CHECK(tag == rec_tag(seq), "record %" PRIu64 ": tag %08x", seq, tag);
}

/* Read records from..to-1, by peek/release and pop in turn, without waiting. */
static void read_range(ipcring_reader *r, uint64_t from, uint64_t to)
{
  for (uint64_t s = from; s < to; s++) {
    const void *p;
    size_t len;
    uint32_t tag;
    if (s & 1) {
      uint8_t buf[256];
      int rc = ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, 0);
      CHECK(rc == (int)rec_len(s), "pop of record %" PRIu64 ": %d (%s)", s, rc,
            ipcring_strerror(rc));
      check_rec(s, buf, len, tag);
    } else {
      CHECK_RC(ipcring_reader_peek(r, &p, &len, &tag, 0), 0);
      check_rec(s, p, len, tag);
      CHECK_RC(ipcring_reader_release(r), 0);
    }
  }
}

static int peek_rc(ipcring_reader *r, int64_t timeout_ns)
{
  const void *p;
  size_t len;
  uint32_t tag;
  int64_t t0 = tu_now_ns();
  int rc = ipcring_reader_peek(r, &p, &len, &tag, timeout_ns);
  CHECK(tu_now_ns() - t0 < HANG_BOUND_NS, "peek hung (%d)", rc);
  return rc;
}

/* The reader has failed: every way of reading says -EPROTO again. */
static void check_reader_sticky(ipcring_reader *r, int want)
{
  uint8_t buf[64];
  size_t len;
  uint32_t tag;
  CHECK_RC(peek_rc(r, 0), want);
  CHECK_RC(peek_rc(r, 20 * MS), want);
  CHECK_RC(ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, 0), want);
  CHECK_RC(peek_rc(r, 0), want);
}

/* ---- files -------------------------------------------------------------- */

struct image {
  uint8_t *bytes;
  size_t size;
};

static struct image file_load(const char *path)
{
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  struct stat st;
  CHECK(fstat(fd, &st) == 0, "fstat");
  struct image im = { malloc((size_t)st.st_size), (size_t)st.st_size };
  CHECK(im.bytes, "malloc");
  CHECK(pread(fd, im.bytes, im.size, 0) == (ssize_t)im.size, "pread: %s", strerror(errno));
  close(fd);
  return im;
}

static void file_poke(const char *path, size_t off, const void *p, size_t n)
{
  int fd = open(path, O_WRONLY);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  CHECK(pwrite(fd, p, n, (off_t)off) == (ssize_t)n, "pwrite: %s", strerror(errno));
  close(fd);
}

static void file_poke32(const char *path, size_t off, uint32_t v)
{
  file_poke(path, off, &v, 4);
}

static void file_poke64(const char *path, size_t off, uint64_t v)
{
  file_poke(path, off, &v, 8);
}

/* Put the file back exactly as in the image (size included). */
static void file_restore(const char *path, const struct image *im)
{
  int fd = open(path, O_WRONLY);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  CHECK(ftruncate(fd, (off_t)im->size) == 0, "ftruncate: %s", strerror(errno));
  CHECK(pwrite(fd, im->bytes, im->size, 0) == (ssize_t)im->size, "pwrite: %s", strerror(errno));
  close(fd);
}

static void file_truncate(const char *path, off_t size)
{
  CHECK(truncate(path, size) == 0, "truncate: %s", strerror(errno));
}

static uint64_t u64_at(const struct image *im, size_t off)
{
  uint64_t v;
  memcpy(&v, im->bytes + off, 8);
  return v;
}

/* ---- open-time corruption ---------------------------------------------- */

/* A ring of 8 KiB written by a real writer (now closed, without EOS): it
 * wrapped, and records first..last-1 are unread. */
struct base {
  char *path;
  struct image im;
  uint64_t cap, first, last, r, w;
};

static struct base make_base(const char *name, uint64_t cap)
{
  struct base b = { tu_path(name), { NULL, 0 }, cap, 0, 0, 0, 0 };
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_create(b.path, cap, 0600, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(b.path, 0, &r), 0);
  uint64_t seq = 0;
  for (int round = 0; round < 3; round++) {
    /* Fill up, then read most of it back. */
    while (try_push_rec(w, seq) == 0)
      seq++;
    uint64_t upto = seq - 10;
    read_range(r, b.first, upto);
    b.first = upto;
  }
  b.last = seq;
  struct ipcring_info info;
  CHECK_RC(ipcring_reader_info(r, &info), 0);
  b.r = info.read_index;
  CHECK_RC(ipcring_writer_info(w, &info), 0);
  b.w = info.write_index;
  CHECK(b.w > cap && b.r > 0, "base ring did not wrap");
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  b.im = file_load(b.path);
  CHECK(u64_at(&b.im, OFF(read_index)) == b.r && u64_at(&b.im, OFF(write_index)) == b.w,
        "file indices differ from the handles'");
  return b;
}

/* The repaired file opens and delivers the unread records intact. */
static void check_base_reads(const struct base *b)
{
  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open(b->path, 0, &r), 0);
  read_range(r, b->first, b->last);
  CHECK_RC(peek_rc(r, 0), -EAGAIN);
  ipcring_reader_close(r);
}

struct field_case {
  const char *what;
  size_t off;
  unsigned size; /* 4 or 8 */
  uint64_t value;
  int want;
};

/* Each damaged header field (or file size) makes ipcring_reader_open() fail
 * with its documented code, again on a second try, and the repaired file
 * opens and reads fine (the failed opens left no lock behind). */
static void test_open_header_fields(void)
{
  printf("open: damaged header fields\n");
  struct base b = make_base("open.ring", 8192);
  const uint64_t cap = b.cap, r = b.r, w = b.w;
  const struct field_case cases[] = {
    { "magic zero", OFF(magic), 8, 0, -EINVAL },
    { "magic byte-swapped", OFF(magic), 8, __builtin_bswap64(IPCRING_MAGIC), -EINVAL },
    { "magic off by one bit", OFF(magic), 8, IPCRING_MAGIC ^ 1, -EINVAL },
    { "version 0", OFF(version), 4, 0, -EPROTONOSUPPORT },
    { "version 2", OFF(version), 4, 2, -EPROTONOSUPPORT },
    { "version 0xffffffff", OFF(version), 4, 0xffffffffu, -EPROTONOSUPPORT },
    { "header_size 0", OFF(header_size), 4, 0, -EPROTO },
    { "header_size 320", OFF(header_size), 4, 320, -EPROTO },
    { "header_size 8192", OFF(header_size), 4, 8192, -EPROTO },
    { "capacity 0", OFF(capacity), 8, 0, -EPROTO },
    { "capacity not a power of two", OFF(capacity), 8, cap + 4096, -EPROTO },
    { "capacity 7 (not a power of two, tiny)", OFF(capacity), 8, 7, -EPROTO },
    { "capacity huge (2^62)", OFF(capacity), 8, UINT64_C(1) << 62, -EPROTO },
    { "capacity all ones", OFF(capacity), 8, UINT64_MAX, -EPROTO },
    { "capacity 2^31 (above the maximum)", OFF(capacity), 8, UINT64_C(1) << 31, -EPROTO },
    { "capacity smaller than the file", OFF(capacity), 8, cap / 2, -EPROTO },
    { "capacity larger than the file", OFF(capacity), 8, cap * 2, -EPROTO },
    { "flags 1", OFF(flags), 4, 1, -EPROTO },
    { "flags 0x80000000", OFF(flags), 4, 0x80000000u, -EPROTO },
    { "write_index behind read_index", OFF(write_index), 8, r - 8, -EPROTO },
    { "write_index zero", OFF(write_index), 8, 0, -EPROTO },
    { "write_index beyond read_index + capacity", OFF(write_index), 8, r + cap + 8, -EPROTO },
    { "write_index far beyond", OFF(write_index), 8, UINT64_MAX - 7, -EPROTO },
    { "write_index unaligned", OFF(write_index), 8, w - 4, -EPROTO },
    { "write_index unaligned by 1", OFF(write_index), 8, w + 1, -EPROTO },
    { "read_index beyond write_index", OFF(read_index), 8, w + 8, -EPROTO },
    { "read_index more than capacity behind", OFF(read_index), 8, w - cap - 8, -EPROTO },
    { "read_index zero", OFF(read_index), 8, 0, -EPROTO },
    { "read_index unaligned", OFF(read_index), 8, r + 4, -EPROTO },
    { "read_index all ones", OFF(read_index), 8, UINT64_MAX, -EPROTO },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct field_case *c = &cases[i];
    if (c->size == 4)
      file_poke32(b.path, c->off, (uint32_t)c->value);
    else
      file_poke64(b.path, c->off, c->value);
    ipcring_reader *rd = (ipcring_reader *)&rd; /* must be reset to NULL */
    CHECK_RC(ipcring_reader_open(b.path, 0, &rd), c->want);
    CHECK(rd == NULL, "%s: failed open left a handle", c->what);
    CHECK_RC(ipcring_reader_open(b.path, 0, &rd), c->want);
    printf("  %-42s -> %s\n", c->what, ipcring_strerror(c->want));
    file_restore(b.path, &b.im);
    check_base_reads(&b);
    file_restore(b.path, &b.im);
  }

  /* The file's size disagrees with the header. */
  const struct {
    const char *what;
    off_t size;
    int want;
  } sizes[] = {
    { "file shorter than the header", 100, -EINVAL },
    { "file of the header only", IPCRING_HEADER_SIZE, -EPROTO },
    { "file half the data area short", (off_t)(IPCRING_HEADER_SIZE + cap / 2), -EPROTO },
    { "file one page too long", (off_t)(IPCRING_HEADER_SIZE + cap + 4096), -EPROTO },
    { "file twice the data area", (off_t)(IPCRING_HEADER_SIZE + 2 * cap), -EPROTO },
  };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    file_truncate(b.path, sizes[i].size);
    ipcring_reader *rd;
    CHECK_RC(ipcring_reader_open(b.path, 0, &rd), sizes[i].want);
    CHECK_RC(ipcring_reader_open(b.path, 0, &rd), sizes[i].want);
    printf("  %-42s -> %s\n", sizes[i].what, ipcring_strerror(sizes[i].want));
    file_restore(b.path, &b.im);
    check_base_reads(&b);
    file_restore(b.path, &b.im);
  }
  unlink(b.path);
  free(b.path);
  free(b.im.bytes);
}

/* ---- corruption under an open reader -------------------------------------- */

/* The write index turns bad while a reader is attached (it has read
 * everything and polls again): -EPROTO, sticky even after repair. */
static void test_live_write_index(void)
{
  printf("reader: write_index damaged while attached\n");
  struct base b = make_base("live-w.ring", 8192);
  const uint64_t cap = b.cap, w = b.w;
  const struct {
    const char *what;
    uint64_t value;
  } cases[] = {
    { "behind the read index", w - 8 },
    { "far behind (zero)", 0 },
    { "beyond read index + capacity", w + cap + 8 },
    { "all ones", UINT64_MAX },
    { "unaligned", w + 4 },
    { "unaligned by 1", w + 1 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(b.path, 0, &r), 0);
    read_range(r, b.first, b.last);
    CHECK_RC(peek_rc(r, 0), -EAGAIN);
    file_poke64(b.path, OFF(write_index), cases[i].value);
    CHECK_RC(peek_rc(r, 0), -EPROTO);
    check_reader_sticky(r, -EPROTO);
    file_restore(b.path, &b.im); /* repaired: still failed */
    check_reader_sticky(r, -EPROTO);
    struct ipcring_info info;
    CHECK_RC(ipcring_reader_info(r, &info), -EPROTO);
    ipcring_reader_close(r);
    printf("  write_index %-32s -> -EPROTO, sticky\n", cases[i].what);
    file_restore(b.path, &b.im);
    check_base_reads(&b);
    file_restore(b.path, &b.im);
  }
  unlink(b.path);
  free(b.path);
  free(b.im.bytes);
}

/* A 4 KiB ring holding four unread 1016-byte records (1024 bytes each).
 * Wrapped layout: sequence numbers 3..6 at offsets 3072, 0, 1024 and 2048
 * (read index 3072, write index 7168), the first ending exactly at the end of
 * the data area. Full layout: 0..3 at offsets 0..3072 (read index 0, write
 * index 4096). */
struct rbase {
  char *path;
  struct image im;
  uint64_t first;
};

static void push_big(ipcring_writer *w, uint64_t seq)
{
  uint8_t buf[1016];
  memcpy(buf, &seq, 8);
  for (size_t i = 8; i < sizeof buf; i++)
    buf[i] = (uint8_t)(seq ^ i);
  CHECK_RC(ipcring_writer_push(w, buf, sizeof buf, rec_tag(seq), 0), 0);
}

static void read_big(ipcring_reader *r, uint64_t seq)
{
  const void *p;
  size_t len;
  uint32_t tag;
  CHECK_RC(peek_rc(r, 0), 0);
  CHECK_RC(ipcring_reader_peek(r, &p, &len, &tag, 0), 0);
  const uint8_t *b = p;
  uint64_t s;
  memcpy(&s, b, 8);
  CHECK(len == 1016 && s == seq && tag == rec_tag(seq), "expected record %" PRIu64, seq);
  for (size_t i = 8; i < len; i++)
    CHECK(b[i] == (uint8_t)(seq ^ i), "record %" PRIu64 ": byte %zu differs", seq, i);
  CHECK_RC(ipcring_reader_release(r), 0);
}

static struct rbase make_rbase(int full)
{
  struct rbase b = { tu_path(full ? "records-full.ring" : "records.ring"), { NULL, 0 },
                     full ? 0 : 3 };
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_create(b.path, 4096, 0600, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(b.path, 0, &r), 0);
  for (uint64_t s = 0; s < 4; s++)
    push_big(w, s);
  if (!full) {
    for (uint64_t s = 0; s < 3; s++)
      read_big(r, s);
    for (uint64_t s = 4; s < 7; s++)
      push_big(w, s);
  }
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  b.im = file_load(b.path);
  CHECK(u64_at(&b.im, OFF(read_index)) == (full ? 0 : 3072) &&
            u64_at(&b.im, OFF(write_index)) == (full ? 4096 : 7168),
        "unexpected layout of the record test ring");
  return b;
}

/* Damaged record headers: records before the damage are delivered intact,
 * the damaged one gives -EPROTO (sticky, even after repair). Where the
 * layout allows, the damage is chosen so that only one of the reader's
 * checks can catch it (a length above the maximum payload always fails the
 * range checks too). */
static void test_record_headers(void)
{
  printf("reader: damaged record headers\n");
  struct rbase bases[2] = { make_rbase(0), make_rbase(1) };
  const size_t data = IPCRING_HEADER_SIZE;
  const struct {
    const char *what;
    int full;      /* layout */
    size_t off;    /* of the record header in the data area */
    uint32_t len;  /* value written into its length */
    uint64_t good; /* records read intact before it */
  } cases[] = {
    /* len > capacity - 8 */
    { "length max payload + 1", 0, 3072, 4096 - 8 + 1, 0 },
    { "length max payload + 1 at offset 0", 1, 0, 4096 - 8 + 1, 0 },
    { "length 0x7fffffff", 0, 3072, 0x7fffffffu, 0 },
    { "length 0xfffffffe", 0, 0, 0xfffffffeu, 1 },
    /* at offset 3072 with 4096 committed bytes: fits the committed range but
     * crosses the end of the data area */
    { "length crossing the end of the data area", 0, 3072, 2040, 0 },
    { "length crossing the end by 8", 0, 3072, 1024, 0 },
    /* the last record (offset 2048, 1024 bytes committed from there): fits
     * the data area but not the committed range */
    { "length beyond the write index", 0, 2048, 2000, 3 },
    { "length beyond the write index by 8", 0, 2048, 1024, 3 },
    { "length beyond the write index (full ring)", 1, 3072, 1024, 3 },
    /* a padding record must not be at offset 0; in the full ring it would
     * cover exactly the committed 4096 bytes, so only that rule catches it */
    { "padding record at offset 0 (full ring)", 1, 0, IPCRING_PAD_LEN, 0 },
    { "padding record at offset 0 (wrapped)", 0, 0, IPCRING_PAD_LEN, 1 },
    /* a padding record at 1024 would cover 3072 bytes; 2048 are committed */
    { "padding record beyond the write index", 0, 1024, IPCRING_PAD_LEN, 2 },
    { "padding record as the last record", 0, 2048, IPCRING_PAD_LEN, 3 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct rbase *b = &bases[cases[i].full];
    file_poke32(b->path, data + cases[i].off, cases[i].len);
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(b->path, 0, &r), 0);
    for (uint64_t s = b->first; s < b->first + cases[i].good; s++)
      read_big(r, s);
    CHECK_RC(peek_rc(r, 0), -EPROTO);
    check_reader_sticky(r, -EPROTO);
    file_restore(b->path, &b->im);
    check_reader_sticky(r, -EPROTO);
    ipcring_reader_close(r);
    printf("  %-42s -> -EPROTO after %" PRIu64 " good records, sticky\n", cases[i].what,
           cases[i].good);
    /* Repaired: everything reads. */
    CHECK_RC(ipcring_reader_open(b->path, 0, &r), 0);
    for (uint64_t s = b->first; s < b->first + 4; s++)
      read_big(r, s);
    CHECK_RC(peek_rc(r, 0), -EAGAIN);
    ipcring_reader_close(r);
    file_restore(b->path, &b->im);
  }
  for (int k = 0; k < 2; k++) {
    unlink(bases[k].path);
    free(bases[k].path);
    free(bases[k].im.bytes);
  }
}

/* eos holding a value other than 0 or 1. The format defines only 0 and 1,
 * and the reader's documented checks do not list eos, so the reader may
 * treat any non-zero value as end of stream or as damage; what it must do
 * is deliver every committed record intact first (or refuse the ring at
 * open) and then fail the same way on every later call. */
static void test_eos_garbage(void)
{
  printf("reader: garbage in eos\n");
  struct base b = make_base("eos.ring", 8192);
  const uint32_t values[] = { 2, 0xdeadbeefu, 0xffffffffu, 0x100u };
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    file_poke32(b.path, OFF(eos), values[i]);
    ipcring_reader *r;
    int rc = ipcring_reader_open(b.path, 0, &r);
    if (rc == 0) {
      read_range(r, b.first, b.last);
      rc = peek_rc(r, 0);
      CHECK(rc == -ENODATA || rc == -EPROTO, "eos %#x: after the records, %d (%s)", values[i],
            rc, ipcring_strerror(rc));
      check_reader_sticky(r, rc);
      ipcring_reader_close(r);
      printf("  eos %#-10x -> all %" PRIu64 " records, then %s, sticky\n", values[i],
             b.last - b.first, ipcring_strerror(rc));
    } else {
      CHECK_RC(rc, -EPROTO);
      printf("  eos %#-10x -> open: %s\n", values[i], ipcring_strerror(rc));
    }
    file_restore(b.path, &b.im);
  }
  unlink(b.path);
  free(b.path);
  free(b.im.bytes);
}

/* Garbage in the futex words is not an error (each side resets its own word
 * and the peer only ever exchanges it to idle): the stream goes on, blocking
 * calls still time out, and nothing hangs. */
static void test_wait_words_garbage(void)
{
  printf("garbage in the wait words\n");
  /* At open: the writer is gone, the records read, then -EPIPE once. */
  struct base b = make_base("wait.ring", 8192);
  file_poke32(b.path, OFF(reader_wait), 0xdeadbeefu);
  file_poke32(b.path, OFF(writer_wait), 0xfeedfaceu);
  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open(b.path, 0, &r), 0);
  read_range(r, b.first, b.last);
  CHECK_RC(peek_rc(r, 0), -EAGAIN);
  CHECK_RC(peek_rc(r, 20 * MS), -EPIPE);
  CHECK_RC(peek_rc(r, 20 * MS), -ETIMEDOUT);
  ipcring_reader_close(r);
  unlink(b.path);
  free(b.path);
  free(b.im.bytes);
  printf("  at open: records intact, then -EPIPE, then -ETIMEDOUT\n");

  /* Under a live writer and reader, again and again. */
  char *path = tu_path("wait-live.ring");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  const uint32_t junk[] = { 1, 2, 0xffffffffu, 0x80000000u, 0xdeadbeefu };
  uint64_t seq = 0, rseq = 0;
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
    file_poke32(path, OFF(reader_wait), junk[i]);
    file_poke32(path, OFF(writer_wait), ~junk[i]);
    /* empty ring: the reader times out */
    int64_t t0 = tu_now_ns();
    CHECK_RC(peek_rc(r, 20 * MS), -ETIMEDOUT);
    CHECK(tu_now_ns() - t0 >= 20 * MS, "peek returned early");
    /* fill it; the writer times out on the full ring */
    int rc;
    while ((rc = ipcring_writer_push(w, &seq, 8, rec_tag(seq), 0)) == 0)
      seq++;
    CHECK_RC(rc, -EAGAIN);
    file_poke32(path, OFF(reader_wait), junk[i]);
    file_poke32(path, OFF(writer_wait), ~junk[i]);
    t0 = tu_now_ns();
    CHECK_RC(ipcring_writer_push(w, &seq, 8, rec_tag(seq), 20 * MS), -ETIMEDOUT);
    CHECK(tu_now_ns() - t0 >= 20 * MS && tu_now_ns() - t0 < HANG_BOUND_NS,
          "push with a 20 ms timeout took %.1f ms", (double)(tu_now_ns() - t0) / MS);
    file_poke32(path, OFF(reader_wait), ~junk[i]);
    /* drain, checking every record */
    for (; rseq < seq; rseq++) {
      uint64_t v;
      size_t len;
      uint32_t tag;
      CHECK_RC(ipcring_reader_pop(r, &v, sizeof v, &len, &tag, 0), 8);
      CHECK(v == rseq && tag == rec_tag(rseq), "record %" PRIu64 ": got %" PRIu64, rseq, v);
    }
  }
  struct ipcring_info info;
  CHECK_RC(ipcring_writer_info(w, &info), 0);
  CHECK_RC(ipcring_reader_info(r, &info), 0);
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  unlink(path);
  free(path);
  printf("  live: %" PRIu64 " records intact through %zu rounds of garbage\n", seq,
         sizeof junk / sizeof junk[0]);
}

/* ---- the writer facing a bad read index ----------------------------------- */

/* The read index turns bad under a live writer that has to look at it (the
 * ring is full): every writing call fails with -EPROTO, sticky even after
 * repair, and the writer writes nothing at all into the file. */
static void test_writer_read_index(void)
{
  printf("writer: read_index damaged under a live writer\n");
  const uint64_t cap = 4096;
  const struct {
    const char *what;
    int kind;
  } cases[] = {
    { "beyond the write index", 0 },   { "more than capacity behind", 1 },
    { "unaligned", 2 },                { "unaligned by 1", 3 },
    { "zero", 4 },                     { "all ones", 5 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *path = tu_path("writer.ring");
    ipcring_writer *w;
    ipcring_reader *r;
    CHECK_RC(ipcring_writer_create(path, cap, 0600, 0, &w), 0);
    CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
    /* Fill, read all but 5, fill again: the ring has wrapped and is full. */
    uint64_t seq = 0;
    while (try_push_rec(w, seq) == 0)
      seq++;
    read_range(r, 0, seq - 5);
    ipcring_reader_close(r);
    while (try_push_rec(w, seq) == 0)
      seq++;
    struct ipcring_info info;
    CHECK_RC(ipcring_writer_info(w, &info), 0);
    const uint64_t widx = info.write_index, ridx = info.read_index;
    CHECK(widx > cap && ridx > 0, "writer ring did not wrap");
    uint64_t bad = 0;
    switch (cases[i].kind) {
    case 0: bad = widx + 8; break;
    case 1: bad = widx - cap - 8; break;
    case 2: bad = ridx + 4; break;
    case 3: bad = ridx + 1; break;
    case 4: bad = 0; break;
    default: bad = UINT64_MAX; break;
    }
    struct image before = file_load(path);
    file_poke64(path, OFF(read_index), bad);

    /* Record seq did not fit: pushing it again makes the writer load the
     * read index. Every later call fails at once (sticky). */
    uint8_t buf[64] = { 0 };
    void *p;
    struct iovec iov = { buf, sizeof buf };
    uint8_t rec[256];
    memcpy(rec, &seq, 8);
    CHECK_RC(ipcring_writer_push(w, rec, rec_len(seq), rec_tag(seq), 0), -EPROTO);
    CHECK_RC(ipcring_writer_push(w, buf, 16, 0, 0), -EPROTO);
    CHECK_RC(ipcring_writer_push(w, buf, 16, 0, 20 * MS), -EPROTO);
    CHECK_RC(ipcring_writer_reserve(w, 16, 0, &p), -EPROTO);
    CHECK_RC(ipcring_writer_reserve(w, cap - 8, 0, &p), -EPROTO);
    CHECK_RC(ipcring_writer_pushv(w, &iov, 1, 0, 0), -EPROTO);
    CHECK_RC(ipcring_writer_info(w, &info), -EPROTO);
    /* repaired: still failed */
    file_poke64(path, OFF(read_index), ridx);
    CHECK_RC(ipcring_writer_push(w, buf, 16, 0, 0), -EPROTO);
    CHECK_RC(ipcring_writer_reserve(w, 0, 0, &p), -EPROTO);
    CHECK_RC(ipcring_writer_eos(w), -EPROTO);

    /* Not one byte of the file changed (the read index is repaired). */
    struct image after = file_load(path);
    CHECK(after.size == before.size, "file size changed");
    for (size_t k = 0; k < after.size; k++)
      CHECK(after.bytes[k] == before.bytes[k], "%s: byte %zu of the file changed", cases[i].what,
            k);
    free(before.bytes);
    free(after.bytes);
    ipcring_writer_close(w);
    unlink(path);
    free(path);
    printf("  read_index %-28s -> -EPROTO, sticky, file untouched\n", cases[i].what);
  }
}

/* ---- randomized --------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
  uint64_t x = (rng_state += 0x9e3779b97f4a7c15ULL);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* A 4 KiB ring that wrapped several times, with unread records (including a
 * padding record) left in it. */
static struct image make_fuzz_base(int eos)
{
  char *path = tu_path(eos ? "fuzz-eos.ring" : "fuzz.ring");
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  uint64_t seq = 0, rseq = 0;
  for (int round = 0; round < 40; round++) {
    while (try_push_rec(w, seq) == 0)
      seq++;
    uint64_t upto = seq - 1 - (uint64_t)(round % 7) * 3;
    read_range(r, rseq, upto);
    rseq = upto;
  }
  if (eos)
    CHECK_RC(ipcring_writer_eos(w), 0);
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  struct image im = file_load(path);
  unlink(path);
  free(path);
  return im;
}

struct fuzz_stats {
  uint64_t open_fail, eproto, clean, records;
};

static void fuzz_one(const struct image *base, uint8_t *mem, struct fuzz_stats *st)
{
  const size_t size = base->size;
  const size_t data = IPCRING_HEADER_SIZE;
  const uint64_t cap = size - data;
  memcpy(mem, base->bytes, size);
  int n = 1 + (int)(rng() % 6);
  for (int k = 0; k < n; k++) {
    uint64_t x = rng();
    unsigned what = (unsigned)(x % 10);
    x >>= 8;
    if (what < 2) { /* flip a bit among the defined header fields */
      size_t off = (size_t)(x % sizeof(struct ipcring_shared));
      mem[off] ^= (uint8_t)(1u << ((x >> 16) % 8));
    } else if (what < 3) { /* a random byte in the header fields */
      mem[x % sizeof(struct ipcring_shared)] = (uint8_t)(x >> 16);
    } else if (what < 5) { /* nudge an index by a small multiple of 8 (or not) */
      size_t off = (x & 1) ? OFF(write_index) : OFF(read_index);
      uint64_t v;
      memcpy(&v, mem + off, 8);
      int64_t d = (int64_t)((x >> 1) % 129) - 64;
      v += (uint64_t)(d * ((x >> 9) % 5 == 0 ? 1 : 8));
      memcpy(mem + off, &v, 8);
    } else if (what < 7) { /* a record length at an aligned offset */
      size_t off = data + (size_t)((x % cap) & ~(uint64_t)7);
      uint32_t len;
      switch ((x >> 20) % 6) {
      case 0: len = IPCRING_PAD_LEN; break;
      case 1: len = (uint32_t)(cap - 8 + (x >> 24) % 3); break;
      case 2: len = (uint32_t)(x >> 24); break;
      default: len = (uint32_t)((x >> 24) % 600); break;
      }
      memcpy(mem + off, &len, 4);
    } else { /* any byte of the data area */
      size_t off = data + (size_t)(x % cap);
      mem[off] ^= (uint8_t)(1u + (x >> 20) % 255);
    }
  }

  ipcring_reader *r = (ipcring_reader *)&r;
  int rc = ipcring_reader_attach_mem(mem, size, &r);
  if (rc != 0) {
    CHECK(rc == -EINVAL || rc == -EPROTO || rc == -EPROTONOSUPPORT,
          "attach_mem returned %d (%s)", rc, ipcring_strerror(rc));
    CHECK(r == NULL, "failed attach left a handle");
    st->open_fail++;
    return;
  }
  const uint8_t *lo = mem + data, *hi = mem + size;
  uint8_t buf[512];
  unsigned calls = 0;
  for (;; calls++) {
    CHECK(calls <= cap / 8 + 1, "reader returned more records than the ring can hold");
    const void *p;
    size_t len = 0;
    uint32_t tag;
    uint64_t mode = rng() % 3;
    if (mode == 0) {
      rc = ipcring_reader_peek(r, &p, &len, &tag, 0);
      if (rc != 0)
        break;
      const uint8_t *b = p;
      CHECK(b >= lo && b <= hi && len <= (size_t)(hi - b), "peek returned memory outside the ring");
      volatile uint8_t sum = 0;
      for (size_t i = 0; i < len; i++) /* touch every byte (ASan checks) */
        sum ^= b[i];
      (void)sum;
      CHECK_RC(ipcring_reader_release(r), 0);
    } else {
      size_t want = mode == 1 ? sizeof buf : 16;
      rc = ipcring_reader_pop(r, buf, want, &len, &tag, 0);
      if (rc == -EMSGSIZE) {
        CHECK(len > want, "-EMSGSIZE for a %zu-byte record into %zu bytes", len, want);
        /* nothing consumed: it is still there */
        rc = ipcring_reader_peek(r, &p, &len, &tag, 0);
        CHECK(rc == 0, "record gone after -EMSGSIZE: %d", rc);
        CHECK_RC(ipcring_reader_release(r), 0);
      } else if (rc < 0) {
        break;
      } else {
        CHECK((size_t)rc == len && len <= want, "pop returned %d for %zu bytes", rc, len);
      }
    }
    st->records++;
  }
  CHECK(rc == -EAGAIN || rc == -ENODATA || rc == -EPROTO, "reading ended with %d (%s)", rc,
        ipcring_strerror(rc));
  CHECK_RC(peek_rc(r, 0), rc);
  CHECK_RC(ipcring_reader_pop(r, buf, sizeof buf, NULL, NULL, 0), rc);
  if (rc == -EPROTO)
    st->eproto++;
  else
    st->clean++;
  ipcring_reader_close(r);
}

/* Random damage never crashes the reader, never hands out memory outside
 * the data area, and ends every read loop with a clear code. */
static void test_random(void)
{
  uint64_t seed = 0x1badc0ffee;
  unsigned iters = 20000;
  const char *e = getenv("IPCRING_CORRUPT_SEED");
  if (e && *e)
    seed = strtoull(e, NULL, 0);
  e = getenv("IPCRING_CORRUPT_ITERATIONS");
  if (e && *e)
    iters = (unsigned)strtoul(e, NULL, 0);
  printf("random damage: %u iterations, seed %#" PRIx64 "\n", iters, seed);
  rng_state = seed;
  struct image base[2] = { make_fuzz_base(0), make_fuzz_base(1) };
  CHECK(base[0].size == IPCRING_HEADER_SIZE + 4096, "fuzz base size %zu", base[0].size);
  uint8_t *mem = malloc(base[0].size); /* exact size: ASan sees any overrun */
  CHECK(mem, "malloc");
  /* The undamaged images (read from a copy) deliver records and end cleanly. */
  for (int k = 0; k < 2; k++) {
    memcpy(mem, base[k].bytes, base[k].size);
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_attach_mem(mem, base[k].size, &r), 0);
    uint8_t buf[256];
    size_t len;
    uint32_t tag;
    int rc, cnt = 0;
    while ((rc = ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, 0)) >= 0) {
      uint64_t s;
      memcpy(&s, buf, 8);
      check_rec(s, buf, len, tag);
      cnt++;
    }
    CHECK_RC(rc, k ? -ENODATA : -EAGAIN);
    CHECK(cnt > 0, "fuzz base holds no records");
    ipcring_reader_close(r);
  }

  struct fuzz_stats st = { 0, 0, 0, 0 };
  for (unsigned i = 0; i < iters; i++)
    fuzz_one(&base[i & 1], mem, &st);
  free(mem);
  free(base[0].bytes);
  free(base[1].bytes);
  printf("  %" PRIu64 " refused at attach, %" PRIu64 " -EPROTO while reading, %" PRIu64
         " read to the end (%" PRIu64 " records delivered)\n",
         st.open_fail, st.eproto, st.clean, st.records);
  /* The damage must have reached every outcome, or the loop tested little. */
  CHECK(st.open_fail > 0 && st.eproto > 0 && st.clean > 0 && st.records > 0,
        "random damage did not exercise every outcome");
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  test_open_header_fields();
  test_live_write_index();
  test_record_headers();
  test_eos_garbage();
  test_wait_words_garbage();
  test_writer_read_index();
  test_random();
  printf("corrupt: ok\n");
  return 0;
}
