/* libFuzzer harness for the reader against a writer that changes every shared
 * word between any two reads of it.
 *
 * Built with -DIPCRING_FUZZ_LOADS and the ring's sources compiled in: every
 * load of shared memory that the library makes through the helpers of
 * ring/atomics.h (indices, end of stream, generations, wait words, record
 * headers) calls ipcring_fuzz_load() below, which returns the next bytes of
 * the input instead of the memory. A reader that reads a field twice, checks
 * the first copy and uses the second would then use an unchecked value, and
 * the harness or AddressSanitizer sees it.
 *
 * Input: byte 0 picks one of a few small valid rings written by the real
 * writer (made once at start-up); bytes 1-7 steer the calls; the rest is the
 * stream of load values (little-endian, 4 or 8 bytes per load). Once the
 * stream is used up, loads read the memory again. The ring is copied into a
 * heap buffer of exactly its size, a reader is attached with
 * ipcring_reader_attach_mem() and peek/release/pop (timeout 0) and
 * ipcring_reader_info() are called for a bounded number of steps.
 *
 * The reader must not crash, hang, leak or touch memory outside the ring
 * (AddressSanitizer checks what it reads for real; loads answered by the
 * input never touch memory, so this harness checks their addresses itself).
 * Errors are fine; the harness aborts when a promise breaks:
 *   - every load is of an aligned word inside the ring's memory;
 *   - a record returned lies inside the data area, is at most
 *     ipcring_max_payload(capacity) long, and its length and tag are those of
 *     the one record-header load that was checked: the header word at the
 *     record's own offset, read once (its payload bytes are all touched);
 *   - a held record peeked again is the same; a pop into a too small buffer
 *     returns -EMSGSIZE and the same record then pops into an exact buffer;
 *   - the library's own filler records (IPCRING_TAG_SKIP) are never returned;
 *   - each record consumed moves the read index forward by at least its
 *     record size (padding and filler records before it are consumed too,
 *     and with a write index that changes at every look there is no upper
 *     bound); a call that fails consumes only such records; the read index
 *     stays 8-aligned;
 *   - the only failures are -EAGAIN, -ENODATA and -EPROTO; -EPROTO is sticky.
 *
 * Seeds: a run of the harness against the real memory of each ring, with its
 * loads recorded, replays as the input that gives exactly those loads. To
 * regenerate tests/ring/fuzz-corpus-doublefetch/:
 *   IPCRING_FUZZ_WRITE_SEEDS=tests/ring/fuzz-corpus-doublefetch \
 *     build-asan/tests/ring/fuzz_doublefetch
 */
#include "testutil.h"

#include "atomics.h"
#include "ipcring-layout.h"
#include "ipcring-private.h"
#include "ipcring.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef IPCRING_FUZZ_LOADS
#error "fuzz_doublefetch needs the ring built with -DIPCRING_FUZZ_LOADS"
#endif

#define MAX_STEPS 48
#define CONTROL_BYTES 8

#define REQUIRE(cond)                                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "fuzz_doublefetch: %s:%d: broken promise: %s\n", __FILE__,     \
              __LINE__, #cond);                                                       \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ---- The load hook ------------------------------------------------------ */

enum fz_mode {
  FZ_OFF,    /* loads read the memory (the writer making the rings) */
  FZ_INPUT,  /* loads take the input's bytes while there are any */
  FZ_RECORD, /* loads read the memory and are appended to a seed */
};

static struct {
  enum fz_mode mode;
  const uint8_t *in;          /* unread load bytes of the input */
  size_t left;
  const uint8_t *lo, *hi;     /* the ring's memory */
  const uint8_t *data_lo;     /* its data area */
  const volatile void *last_rec_addr; /* the last load inside the data area */
  uint64_t last_rec_val;
  uint8_t *rec;               /* FZ_RECORD: the loads so far */
  size_t rec_len, rec_cap;
} fz;

static uint64_t real_load(const volatile void *p, unsigned size)
{
  if (size == 8)
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
  return atomic_load_explicit((_Atomic uint32_t *)p, memory_order_acquire);
}

uint64_t ipcring_fuzz_load(const volatile void *p, unsigned size)
{
  if (fz.mode == FZ_OFF)
    return real_load(p, size);
  REQUIRE(size == 4 || size == 8);
  const uint8_t *b = (const uint8_t *)p;
  /* Only aligned words of the ring: the input answers a load without
   * touching memory, so AddressSanitizer would not see a stray address. */
  REQUIRE(b >= fz.lo && b + size <= fz.hi);
  REQUIRE(((uintptr_t)b & (size - 1)) == 0);
  uint64_t v = 0;
  if (fz.mode == FZ_INPUT && fz.left >= size) {
    memcpy(&v, fz.in, size); /* little-endian machine, like the ring */
    fz.in += size;
    fz.left -= size;
  } else {
    v = real_load(p, size);
    if (fz.mode == FZ_RECORD) {
      if (fz.rec_len + size > fz.rec_cap) {
        fz.rec_cap = fz.rec_cap ? 2 * fz.rec_cap : 1024;
        fz.rec = realloc(fz.rec, fz.rec_cap);
        REQUIRE(fz.rec != NULL);
      }
      memcpy(fz.rec + fz.rec_len, &v, size);
      fz.rec_len += size;
    }
  }
  if (b >= fz.data_lo) {
    fz.last_rec_addr = p;
    fz.last_rec_val = v;
  }
  return v;
}

/* The input ran out (or there never was one): loads read the memory. */
static int fz_exhausted(void)
{
  return fz.mode != FZ_INPUT || fz.left < 4;
}

/* ---- Rings ---------------------------------------------------------------- */

struct ring_image {
  uint8_t *bytes;
  size_t size;
};

#define N_RINGS 4
static struct ring_image rings[N_RINGS];

static void push_n(ipcring_writer *w, unsigned count, size_t len, uint32_t tag)
{
  static uint8_t b[8192];
  for (unsigned i = 0; i < count; i++) {
    for (size_t j = 0; j < len; j++)
      b[j] = (uint8_t)(tag + i + j);
    CHECK_RC(ipcring_writer_push(w, b, len, tag + i, 0), 0);
  }
}

static void pop_n(const char *path, unsigned count)
{
  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  static uint8_t b[8192];
  for (unsigned i = 0; i < count; i++)
    CHECK(ipcring_reader_pop(r, b, sizeof b, NULL, NULL, 0) >= 0, "pop");
  ipcring_reader_close(r);
}

static void keep_image(int i, const char *path)
{
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "open %s: %s", path, strerror(errno));
  CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
  long size = ftell(f);
  CHECK(size > 0, "size of %s", path);
  rewind(f);
  rings[i].size = (size_t)size;
  rings[i].bytes = malloc((size_t)size);
  CHECK(rings[i].bytes != NULL, "malloc");
  CHECK(fread(rings[i].bytes, 1, (size_t)size, f) == (size_t)size, "read %s", path);
  fclose(f);
  CHECK(unlink(path) == 0, "unlink %s: %s", path, strerror(errno));
}

/* Small rings as the real writer leaves them, made in a fresh directory that
 * is removed before fuzzing starts. */
static void make_rings(void)
{
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  char dir[256], path[300];
  snprintf(dir, sizeof dir, "%s/ipcring-fuzz-XXXXXX", base);
  CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
  snprintf(path, sizeof path, "%s/ring", dir);
  ipcring_writer *w;

  /* 0: records of assorted sizes, none read. */
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  push_n(w, 2, 0, 100);
  push_n(w, 3, 13, 200);
  push_n(w, 2, 200, 300);
  push_n(w, 1, 1000, 400);
  ipcring_writer_close(w);
  keep_image(0, path);

  /* 1: wrapped: a padding record at the end, records after it. */
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  push_n(w, 3, 1000, 10);
  pop_n(path, 3);
  push_n(w, 1, 900, 20);
  push_n(w, 1, 300, 30); /* does not fit: padding, then at offset 0 */
  push_n(w, 2, 40, 40);
  ipcring_writer_close(w);
  keep_image(1, path);

  /* 2: records, then end of stream. */
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  push_n(w, 4, 24, 500);
  CHECK_RC(ipcring_writer_eos(w), 0);
  ipcring_writer_close(w);
  keep_image(2, path);

  /* 3: one record of the largest payload. */
  CHECK_RC(ipcring_writer_create(path, 4096, 0600, 0, &w), 0);
  push_n(w, 1, ipcring_max_payload(4096), 600);
  ipcring_writer_close(w);
  keep_image(3, path);

  CHECK(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
}

/* ---- The reader --------------------------------------------------------- */

/* A pop buffer of exactly size bytes, as far as AddressSanitizer can tell. */
static uint8_t *pop_area;
static size_t pop_area_size;

static uint8_t *pop_buf(size_t size)
{
  if (!pop_area || size > pop_area_size) {
    free(pop_area);
    pop_area_size = size ? size : 1;
    pop_area = malloc(pop_area_size);
    REQUIRE(pop_area != NULL);
  }
  return pop_area + (pop_area_size - size);
}

static volatile uint64_t sink;

static void consume(const void *p, size_t len)
{
  const uint8_t *b = p;
  uint64_t s = 0;
  for (size_t i = 0; i < len; i++)
    s = s * 31 + b[i];
  sink += s;
}

/* The record header that the library loaded last is the one it returned. */
static void require_checked_header(const void *payload, size_t len, uint32_t tag)
{
  struct ipcring_record rec;
  memcpy(&rec, &fz.last_rec_val, sizeof rec);
  if (payload)
    REQUIRE(fz.last_rec_addr == (const uint8_t *)payload - IPCRING_RECORD_HEADER);
  REQUIRE(rec.len == len && rec.tag == tag);
#ifdef IPCRING_TAG_SKIP
  REQUIRE(tag != IPCRING_TAG_SKIP);
#endif
}

static void run(const struct ring_image *img, uint64_t choice)
{
  uint8_t *mem = malloc(img->size);
  REQUIRE(mem != NULL);
  memcpy(mem, img->bytes, img->size);
  fz.lo = mem;
  fz.hi = mem + img->size;
  fz.data_lo = mem + IPCRING_HEADER_SIZE;
  fz.last_rec_addr = NULL;

  ipcring_reader *r = NULL;
  int rc = ipcring_reader_attach_mem(mem, img->size, &r);
  if (rc != 0) {
    /* The header is valid: only the indices can be wrong. */
    REQUIRE(rc == -EPROTO && r == NULL);
    free(mem);
    return;
  }
  struct ipcring_info info;
  rc = ipcring_reader_info(r, &info);
  REQUIRE(rc == 0);
  uint64_t cap = info.capacity;
  REQUIRE(IPCRING_HEADER_SIZE + cap == img->size);
  const uint8_t *lo = fz.data_lo, *hi = fz.hi;
  uint64_t ridx = info.read_index;
  REQUIRE((ridx & 7) == 0);

  for (unsigned step = 0; step < MAX_STEPS; step++) {
    unsigned how = (unsigned)((choice >> ((2 * step) % 56)) & 3);
    const void *p = NULL;
    size_t len = 0;
    uint32_t tag = 0;
    if (how == 0 || how == 1) {
      rc = ipcring_reader_peek(r, &p, &len, &tag, 0);
      if (rc == 0) {
        REQUIRE(len <= ipcring_max_payload(cap));
        REQUIRE((const uint8_t *)p >= lo + IPCRING_RECORD_HEADER &&
                (const uint8_t *)p + len <= hi);
        require_checked_header(p, len, tag);
        if (how == 1) {
          const void *p2 = NULL;
          size_t len2 = 0;
          uint32_t tag2 = 0;
          REQUIRE(ipcring_reader_peek(r, &p2, &len2, &tag2, 0) == 0);
          REQUIRE(p2 == p && len2 == len && tag2 == tag);
        }
        consume(p, len);
        REQUIRE(ipcring_reader_release(r) == 0);
        REQUIRE(ipcring_reader_release(r) == -EINVAL);
      }
    } else {
      size_t bsize = how == 2 ? (size_t)((choice >> ((2 * step + 7) % 53)) & 15)
                               : ipcring_max_payload(cap);
      rc = ipcring_reader_pop(r, pop_buf(bsize), bsize, &len, &tag, 0);
      if (rc == -EMSGSIZE) {
        REQUIRE(len > bsize && len <= ipcring_max_payload(cap));
        require_checked_header(NULL, len, tag);
        size_t len2 = 0;
        uint32_t tag2 = 0;
        rc = ipcring_reader_pop(r, pop_buf(len), len, &len2, &tag2, 0);
        REQUIRE(rc == (int)len && len2 == len && tag2 == tag);
        bsize = len;
      }
      if (rc >= 0) {
        REQUIRE((size_t)rc == len && len <= bsize && len <= ipcring_max_payload(cap));
        require_checked_header(NULL, len, tag);
        consume(pop_buf(bsize), len);
        rc = 0;
      }
    }
    int irc = ipcring_reader_info(r, &info);
    if (rc != 0) {
      REQUIRE(rc == -EAGAIN || rc == -ENODATA || rc == -EPROTO);
      /* Nothing consumed but, perhaps, padding and filler records. */
      REQUIRE((info.read_index & 7) == 0);
      ridx = info.read_index;
      if (rc == -EPROTO) {
        REQUIRE(irc == -EPROTO);
        REQUIRE(ipcring_reader_peek(r, &p, &len, &tag, 0) == -EPROTO);
        REQUIRE(ipcring_reader_pop(r, NULL, 0, &len, &tag, 0) == -EPROTO);
        break;
      }
      REQUIRE(irc == 0);
      if (fz_exhausted())
        break; /* the memory answers now, and it does not change */
      continue;
    }
    REQUIRE(irc == 0);
    REQUIRE((info.read_index & 7) == 0);
    REQUIRE(info.read_index - ridx >= ipcring_record_size(len));
    ridx = info.read_index;
  }
  ipcring_reader_close(r);
  free(mem);
}

static uint64_t control_word(const uint8_t *data, size_t n)
{
  uint8_t c[CONTROL_BYTES] = { 0 };
  memcpy(c, data, n < CONTROL_BYTES ? n : CONTROL_BYTES);
  uint64_t v = 0;
  for (int i = CONTROL_BYTES - 1; i >= 1; i--)
    v = (v << 8) | c[i];
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
  const struct ring_image *img = &rings[n ? data[0] % N_RINGS : 0];
  fz.mode = FZ_INPUT;
  fz.in = n > CONTROL_BYTES ? data + CONTROL_BYTES : NULL;
  fz.left = n > CONTROL_BYTES ? n - CONTROL_BYTES : 0;
  run(img, control_word(data, n));
  fz.mode = FZ_OFF;
  return 0;
}

/* ---- Seeds -------------------------------------------------------------- */

static void write_seed(const char *dir, int ring, uint64_t choice)
{
  fz.mode = FZ_RECORD;
  fz.rec_len = 0;
  run(&rings[ring], choice);
  fz.mode = FZ_OFF;
  char path[4096];
  snprintf(path, sizeof path, "%s/ring%d-%016llx", dir, ring, (unsigned long long)choice);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "fopen %s: %s", path, strerror(errno));
  uint8_t c[CONTROL_BYTES];
  c[0] = (uint8_t)ring;
  for (int i = 1; i < CONTROL_BYTES; i++)
    c[i] = (uint8_t)(choice >> (8 * (i - 1)));
  CHECK(fwrite(c, 1, sizeof c, f) == sizeof c, "write %s", path);
  CHECK(fwrite(fz.rec, 1, fz.rec_len, f) == fz.rec_len, "write %s", path);
  CHECK(fclose(f) == 0, "close %s", path);
  printf("wrote %s (%zu bytes of loads)\n", path, fz.rec_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  make_rings();
  const char *dir = getenv("IPCRING_FUZZ_WRITE_SEEDS");
  if (dir && *dir) {
    /* Peeks only; pops into large buffers; a mix with small pop buffers. */
    static const uint64_t choices[] = { 0, UINT64_C(0x00ffffffffffffff),
                                        UINT64_C(0x05e4b1c9d2a6f378) };
    for (int i = 0; i < N_RINGS; i++)
      for (size_t c = 0; c < sizeof choices / sizeof choices[0]; c++)
        write_seed(dir, i, choices[c]);
    exit(0);
  }
  return 0;
}
