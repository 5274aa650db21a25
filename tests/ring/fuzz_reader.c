/* libFuzzer harness for the reader: the input is the bytes of a ring.
 *
 * The input is copied into a heap buffer of exactly the size a ring needs:
 * the 4096-byte header plus the capacity from the input's capacity field when
 * that is a power of two from 4096 to 64 KiB, otherwise the input's own length.
 * A shorter input is padded with zeros or, if bit 0 of the header's reserved
 * word is set, with the input repeated. A reader is attached to the buffer with
 * ipcring_reader_attach_mem() and reads with timeout 0, mixing peek/release and
 * pop, until a call fails; ipcring_reader_info() is called along the way.
 *
 * Whatever the bytes, the reader must not crash, leak, or touch memory outside
 * the buffer (AddressSanitizer checks that; the buffer is exactly as large as
 * the ring). The harness also checks what the API promises and aborts if not:
 *   - every record returned lies inside the data area and is at most
 *     ipcring_max_payload(capacity) long;
 *   - each record consumed moves the read index forward by its record size
 *     (plus a padding record before it), and in all no more than the capacity
 *     is consumed (the memory does not change, so the write index is at most
 *     capacity bytes ahead); the indices run freely, so this is modular;
 *   - a pop into a too small buffer returns -EMSGSIZE with the length and
 *     consumes nothing;
 *   - the only ways to stop are -EAGAIN (nothing more), -ENODATA (end of
 *     stream) and -EPROTO (inconsistent memory), and they are sticky for a
 *     memory that does not change.
 *
 * Seeds: tests/ring/fuzz-corpus/ holds small rings written by the real writer.
 * To regenerate them:
 *   IPCRING_FUZZ_WRITE_SEEDS=tests/ring/fuzz-corpus build-fuzz/tests/ring/fuzz_reader
 */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring-private.h"
#include "ipcring.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DATA_CAP_MAX ((uint64_t)64 << 10)

#define REQUIRE(cond)                                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "fuzz_reader: %s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint64_t input_u64(const uint8_t *data, size_t n, size_t off)
{
  uint64_t v = 0;
  if (n >= off + 8)
    memcpy(&v, data + off, 8);
  return v;
}

/* Size of the ring buffer for this input. */
static size_t ring_size(const uint8_t *data, size_t n)
{
  uint64_t cap = input_u64(data, n, offsetof(struct ipcring_shared, capacity));
  if (cap >= IPCRING_CAPACITY_MIN && cap <= DATA_CAP_MAX && (cap & (cap - 1)) == 0)
    return IPCRING_HEADER_SIZE + (size_t)cap;
  return n;
}

/* A pop buffer of exactly size bytes, as far as AddressSanitizer can tell:
 * the last size bytes of one allocation, so writing past them is caught. */
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

/* Touch every payload byte, so a record pointing outside the buffer is caught. */
static void consume(const void *p, size_t len)
{
  const uint8_t *b = p;
  uint64_t s = 0;
  for (size_t i = 0; i < len; i++)
    s = s * 31 + b[i];
  sink += s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
  size_t size = ring_size(data, n);
  uint8_t *mem = malloc(size ? size : 1);
  if (!mem)
    return 0;
  size_t copy = n < size ? n : size;
  memcpy(mem, data, copy);
  int repeat = n > offsetof(struct ipcring_shared, reserved0) &&
               (data[offsetof(struct ipcring_shared, reserved0)] & 1);
  if (repeat) {
    for (size_t i = copy; i < size; i++)
      mem[i] = data[(i - copy) % n];
  } else {
    memset(mem + copy, 0, size - copy);
  }

  ipcring_reader *r = NULL;
  int rc = ipcring_reader_attach_mem(mem, size, &r);
  if (rc != 0) {
    REQUIRE(r == NULL);
    REQUIRE(rc == -EINVAL || rc == -EPROTO || rc == -EPROTONOSUPPORT);
    free(mem);
    return 0;
  }
  REQUIRE(r != NULL);

  struct ipcring_info info;
  rc = ipcring_reader_info(r, &info);
  REQUIRE(rc == 0);
  uint64_t cap = info.capacity;
  REQUIRE(cap >= IPCRING_CAPACITY_MIN && (cap & (cap - 1)) == 0);
  REQUIRE(size == IPCRING_HEADER_SIZE + cap);
  const uint8_t *lo = mem + IPCRING_HEADER_SIZE, *hi = mem + size;
  uint64_t start = info.read_index;
  uint64_t ridx = start;

  /* The choice between peek and pop and the pop buffer sizes come from the
   * input's tail, so the fuzzer can steer them. */
  uint64_t choice = input_u64(data, n, n >= 8 ? n - 8 : 0) ^ n;
  for (unsigned step = 0;; step++) {
    unsigned how = (unsigned)((choice >> (step % 61)) & 3);
    const void *p = NULL;
    size_t len = 0;
    uint32_t tag = 0;
    if (how == 0 || how == 1) {
      rc = ipcring_reader_peek(r, &p, &len, &tag, 0);
      if (rc == 0) {
        REQUIRE(len <= ipcring_max_payload(cap));
        REQUIRE((const uint8_t *)p >= lo + IPCRING_RECORD_HEADER &&
                (const uint8_t *)p + len <= hi);
        if (how == 1) {
          /* A second peek returns the held record. */
          const void *p2 = NULL;
          size_t len2 = 0;
          uint32_t tag2 = 0;
          REQUIRE(ipcring_reader_peek(r, &p2, &len2, &tag2, 0) == 0);
          REQUIRE(p2 == p && len2 == len && tag2 == tag);
        }
        consume(p, len);
        REQUIRE(ipcring_reader_release(r) == 0);
        REQUIRE(ipcring_reader_release(r) == -EINVAL); /* nothing held any more */
      }
    } else {
      /* how 2: a buffer of 0..15 bytes first; how 3: large enough. */
      size_t bsize = how == 2 ? (size_t)((choice >> 8) & 15) : ipcring_max_payload(cap);
      rc = ipcring_reader_pop(r, pop_buf(bsize), bsize, &len, &tag, 0);
      if (rc == -EMSGSIZE) {
        REQUIRE(len > bsize && len <= ipcring_max_payload(cap));
        /* Nothing consumed: the same record, into an exact buffer. */
        size_t len2 = 0;
        uint32_t tag2 = 0;
        rc = ipcring_reader_pop(r, pop_buf(len), len, &len2, &tag2, 0);
        REQUIRE(rc == (int)len && len2 == len && tag2 == tag);
        bsize = len;
      }
      if (rc >= 0) {
        REQUIRE((size_t)rc == len && len <= bsize && len <= ipcring_max_payload(cap));
        consume(pop_buf(bsize), len);
        rc = 0;
      }
    }
    if (rc != 0) {
      REQUIRE(rc == -EAGAIN || rc == -ENODATA || rc == -EPROTO);
      /* The memory does not change: the same answer again. */
      REQUIRE(ipcring_reader_pop(r, NULL, 0, &len, &tag, 0) == rc);
      REQUIRE(ipcring_reader_info(r, &info) == (rc == -EPROTO ? -EPROTO : 0));
      break;
    }
    rc = ipcring_reader_info(r, &info);
    REQUIRE(rc == 0);
    /* At least the record's size, at most the record plus a padding record.
     * The indices run freely and may wrap: only their differences count. */
    REQUIRE(info.read_index - ridx >= ipcring_record_size(len));
    REQUIRE(info.read_index - ridx <= ipcring_record_size(len) + cap);
    REQUIRE(info.read_index - start <= cap);
    REQUIRE(info.records == (uint64_t)step + 1); /* one record per successful step */
    ridx = info.read_index;
  }
  ipcring_reader_close(r);
  free(mem);
  return 0;
}

/* ---- Seed generator ---------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const char *ring)
{
  int in = open(ring, O_RDONLY);
  CHECK(in >= 0, "open %s: %s", ring, strerror(errno));
  struct stat st;
  CHECK(fstat(in, &st) == 0, "fstat");
  CHECK(st.st_size <= 70 * 1024, "%s is too large for a seed", ring);
  uint8_t *b = malloc((size_t)st.st_size);
  CHECK(b != NULL, "malloc");
  CHECK(read(in, b, (size_t)st.st_size) == st.st_size, "read %s", ring);
  close(in);
  char out[4096];
  snprintf(out, sizeof out, "%s/%s", dir, name);
  FILE *f = fopen(out, "wb");
  CHECK(f != NULL, "fopen %s: %s", out, strerror(errno));
  CHECK(fwrite(b, 1, (size_t)st.st_size, f) == (size_t)st.st_size, "write %s", out);
  CHECK(fclose(f) == 0, "close %s", out);
  printf("wrote %s (%lld bytes)\n", out, (long long)st.st_size);
  free(b);
}

static void push_n(ipcring_writer *w, unsigned count, size_t len, uint32_t tag)
{
  uint8_t b[8192];
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
  uint8_t b[8192];
  for (unsigned i = 0; i < count; i++)
    CHECK(ipcring_reader_pop(r, b, sizeof b, NULL, NULL, 0) >= 0, "pop");
  ipcring_reader_close(r);
}

/* Small rings as the real writer leaves them. */
static void generate_seeds(const char *dir)
{
  ipcring_writer *w;

  /* 1: 4 KiB ring, a few records of assorted sizes, none read. */
  char *p1 = tu_path("records");
  CHECK_RC(ipcring_writer_create(p1, 4096, 0600, 0, &w), 0);
  push_n(w, 3, 0, 100);
  push_n(w, 4, 13, 200);
  push_n(w, 2, 200, 300);
  push_n(w, 1, 1000, 400);
  write_seed(dir, "records-4k", p1);
  ipcring_writer_close(w);

  /* 2: 4 KiB ring that wrapped: a padding record at the end, records after
   * it, part of them read. */
  char *p2 = tu_path("wrapped");
  CHECK_RC(ipcring_writer_create(p2, 4096, 0600, 0, &w), 0);
  push_n(w, 3, 1000, 10);
  pop_n(p2, 3);
  push_n(w, 1, 900, 20);   /* fills up to offset 3944 */
  push_n(w, 1, 300, 30);   /* does not fit: padding, then at offset 0 */
  push_n(w, 2, 40, 40);
  pop_n(p2, 1);
  write_seed(dir, "wrapped-4k", p2);
  ipcring_writer_close(w);

  /* 3: 4 KiB ring with records and end of stream. */
  char *p3 = tu_path("eos");
  CHECK_RC(ipcring_writer_create(p3, 4096, 0600, 0, &w), 0);
  push_n(w, 5, 24, 500);
  CHECK_RC(ipcring_writer_eos(w), 0);
  write_seed(dir, "eos-4k", p3);
  ipcring_writer_close(w);

  /* 4: 4 KiB ring holding one record of the maximum payload. */
  char *p4 = tu_path("full");
  CHECK_RC(ipcring_writer_create(p4, 4096, 0600, 0, &w), 0);
  push_n(w, 1, ipcring_max_payload(4096), 600);
  write_seed(dir, "full-4k", p4);
  ipcring_writer_close(w);

  /* 5: 64 KiB ring, many small records, some read. */
  char *p5 = tu_path("big");
  CHECK_RC(ipcring_writer_create(p5, 65536, 0600, 0, &w), 0);
  push_n(w, 50, 100, 700);
  pop_n(p5, 20);
  push_n(w, 10, 5000, 800);
  write_seed(dir, "records-64k", p5);
  ipcring_writer_close(w);

  free(p1);
  free(p2);
  free(p3);
  free(p4);
  free(p5);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  const char *dir = getenv("IPCRING_FUZZ_WRITE_SEEDS");
  if (dir && *dir) {
    generate_seeds(dir);
    exit(0);
  }
  return 0;
}
