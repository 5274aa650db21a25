/* libFuzzer harness for the writer against a hostile reader: the input is a
 * program of writer calls and scribbles on the shared header.
 *
 * A ring of 4 or 8 KiB lives in a heap buffer of exactly its size (header and
 * data area); a writer is attached with ipcring_writer_attach_mem(), at a
 * start index taken from the input (so padding and wrapping come early).
 * Then each input byte picks a step: a writer call (reserve, commit, push,
 * pushv, claim, submit, discard, release, flush, eos, wait_read, interrupt,
 * the getters), every one with timeout 0, or a scribble by the "reader": the
 * read index (an honest advance, a small step back, any value), the wait
 * words, eos, the generations and pids, even the writer's own write index.
 *
 * Whatever the reader does, the writer must not write outside the data area
 * (AddressSanitizer sees writes past the buffer; the header is compared
 * around every call), must not hang (every call has timeout 0; libFuzzer's
 * -timeout catches a loop), and aborts here if it breaks what it promises:
 *   - a call changes no header byte but its own: the write index, eos, its
 *     wait word, and the reader's wait word only back to IDLE;
 *   - every pointer it hands out lies, with its length, inside the data area;
 *   - it never writes over records it published that the reader has not
 *     released: the bytes from the read index (the later of the one in
 *     memory and the latest it ever accepted) to its published write index
 *     are the same after each call;
 *   - it never writes over the payload of an open reservation or claim, nor
 *     over a submitted claim's payload before that claim is released;
 *   - its errors are the documented ones.
 *
 * It found the claims comparing free-running indices with < (a claim's
 * start against the read index, across 2^64), fixed since; inputs that start
 * near UINT64_MAX keep that covered.
 *
 * Seeds: none are needed (any input is a program).
 */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring-private.h"
#include "ipcring.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "fuzz_writer: %s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

#define OFF(field) offsetof(struct ipcring_shared, field)
#define STEPS_MAX 128
/* The header bytes the struct defines; the rest of the page stays zero. */
#define SHARED_BYTES sizeof(struct ipcring_shared)
#define CAP_MAX 8192u

/* ramp[i] = i mod 256: the pattern of fill f is ramp + f. */
static uint8_t ramp[CAP_MAX + 256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

/* The input, read a byte or a few at a time; zeros once it runs out. */
struct input {
  const uint8_t *p;
  size_t n, pos;
};

static uint8_t in_u8(struct input *in)
{
  return in->pos < in->n ? in->p[in->pos++] : 0;
}

static uint64_t in_bytes(struct input *in, unsigned k)
{
  uint64_t v = 0;
  for (unsigned i = 0; i < k; i++)
    v |= (uint64_t)in_u8(in) << (8 * i);
  return v;
}

/* What the harness knows of the writer's open records. */
struct held {
  uint8_t *ptr;   /* payload */
  size_t len;     /* claimed bytes */
  size_t kept;    /* bytes that must stay: len while open, the submitted length after */
  uint8_t fill;
  uint64_t id;
  int submitted;
};

struct state {
  uint8_t *mem;
  size_t size;
  uint64_t cap;
  struct ipcring_shared *sh;
  uint8_t *ring;
  ipcring_writer *w;
  uint64_t pub;          /* the write index as the writer last published it */
  uint64_t released;     /* the latest read index the writer ever accepted: it
                          * may have reused what is below, even if the reader
                          * moves its index back later */
  struct held res;       /* the open reservation (ptr NULL: none) */
  struct held claims[IPCRING_CLAIMS_MAX + 1];
  unsigned nclaims;
  uint8_t header_before[SHARED_BYTES];
  uint8_t *shadow;       /* the data area as published: valid over the protected span */
  uint64_t prot_from, prot_len; /* protected span of this call */
};

static void check_ptr(struct state *s, const void *p, size_t len)
{
  const uint8_t *b = p;
  REQUIRE(b >= s->ring + IPCRING_RECORD_HEADER && b <= s->ring + s->cap);
  REQUIRE(len <= (size_t)(s->ring + s->cap - b));
  /* 8-byte aligned, after its record header. */
  REQUIRE(((uintptr_t)(b - s->ring) & 7) == 0);
}

static void check_held(const struct held *h)
{
  REQUIRE(memcmp(h->ptr, ramp + h->fill, h->kept) == 0);
}

static void fill_held(struct held *h)
{
  memcpy(h->ptr, ramp + h->fill, h->len);
  h->kept = h->len;
}

/* Copy n bytes of the ring from index `from` (wrapping) into the shadow. */
static void shadow_update(struct state *s, uint64_t from, uint64_t n)
{
  uint64_t off = from & (s->cap - 1);
  uint64_t first = n < s->cap - off ? n : s->cap - off;
  memcpy(s->shadow + off, s->ring + off, first);
  memcpy(s->shadow, s->ring, n - first);
}

static int shadow_same(struct state *s, uint64_t from, uint64_t n)
{
  uint64_t off = from & (s->cap - 1);
  uint64_t first = n < s->cap - off ? n : s->cap - off;
  return memcmp(s->shadow + off, s->ring + off, first) == 0 &&
         memcmp(s->shadow, s->ring, n - first) == 0;
}

/* Before a writer call: remember the header and the span it must not touch
 * (the shadow already holds its bytes: they were copied when published). */
static void before_call(struct state *s)
{
  memcpy(s->header_before, s->mem, SHARED_BYTES);
  uint64_t r = atomic_load_explicit(&s->sh->read_index, memory_order_relaxed);
  uint64_t from = r - s->released <= s->cap ? r : s->released; /* the later of the two */
  s->prot_len = 0;
  if (((from | s->pub) & 7) == 0 && s->pub - from <= s->cap) {
    s->prot_from = from;
    s->prot_len = s->pub - from;
  }
}

/* After it: only its own header fields changed, the protected span and the
 * open payloads are intact. */
static void after_call(struct state *s)
{
  const uint8_t *now = s->mem;
  for (size_t i = memcmp(now, s->header_before, SHARED_BYTES) ? 0 : SHARED_BYTES;
       i < SHARED_BYTES; i++) {
    if (now[i] == s->header_before[i])
      continue;
    int own = (i >= OFF(write_index) && i < OFF(write_index) + 8) ||
              (i >= OFF(eos) && i < OFF(eos) + 4) ||
              (i >= OFF(writer_wait) && i < OFF(writer_wait) + 4) ||
              (i >= OFF(reader_wait) && i < OFF(reader_wait) + 4);
    if (!own) {
      fprintf(stderr, "fuzz_writer: header byte %zu changed\n", i);
      abort();
    }
  }
  uint32_t rw;
  memcpy(&rw, now + OFF(reader_wait), 4);
  uint32_t rw0;
  memcpy(&rw0, s->header_before + OFF(reader_wait), 4);
  REQUIRE(rw == rw0 || rw == IPCRING_WAIT_IDLE);
  if (!shadow_same(s, s->prot_from, s->prot_len)) {
    fprintf(stderr, "fuzz_writer: unreleased bytes from index %llu (%llu) overwritten\n",
            (unsigned long long)s->prot_from, (unsigned long long)s->prot_len);
    abort();
  }
  if (s->res.ptr)
    check_held(&s->res);
  for (unsigned i = 0; i < s->nclaims; i++)
    check_held(&s->claims[i]);
  /* The reader may have scribbled on the write index: only a store by the
   * writer (a change during the call) says where it published. */
  uint64_t wi_before, wi_now;
  memcpy(&wi_before, s->header_before + OFF(write_index), 8);
  memcpy(&wi_now, now + OFF(write_index), 8);
  uint64_t seen = s->w ? ipcring_writer_read_index(s->w) : s->released;
  if (seen - s->released <= s->cap)
    s->released = seen;
  if (wi_now != wi_before) {
    /* Newly published bytes join the shadow (at most a ring's worth). */
    uint64_t n = wi_now - s->pub;
    shadow_update(s, s->pub, n < s->cap ? n : s->cap);
    s->pub = wi_now;
  }
}

static void require_rc(int rc, int extra)
{
  REQUIRE(rc == 0 || rc == -EAGAIN || rc == -EPROTO || rc == -EPIPE || rc == -EMSGSIZE ||
          rc == -ENOBUFS || rc == -ECANCELED || rc == -EINVAL || rc == -EBUSY || rc == extra);
}

static size_t pick_len(struct state *s, struct input *in)
{
  uint64_t v = in_bytes(in, 2);
  /* Mostly small records, sometimes up to a little more than fits. */
  if ((v & 3) != 0)
    return (size_t)((v >> 2) % 200);
  return (size_t)((v >> 2) % (s->cap + 16));
}

static void drop_claim(struct state *s, unsigned i)
{
  s->claims[i] = s->claims[--s->nclaims];
}

/* FUZZ_WRITER_TRACE=1 in the environment: print each step (to replay a
 * finding). */
static int trace = -1;

static void step(struct state *s, struct input *in)
{
  uint8_t op = in_u8(in);
  if (trace < 0)
    trace = getenv("FUZZ_WRITER_TRACE") != NULL;
  if (trace)
    fprintf(stderr, "step %u: read_index %llu, accepted %llu, published %llu, %u claims%s\n",
            op % 24, (unsigned long long)atomic_load(&s->sh->read_index),
            (unsigned long long)ipcring_writer_read_index(s->w), (unsigned long long)s->pub,
            s->nclaims, s->res.ptr ? ", a reservation" : "");
  int rc;
  switch (op % 24) {
  case 0:
  case 1: { /* reserve: a new one drops an open one */
    size_t len = pick_len(s, in);
    s->res.ptr = NULL;
    void *p = NULL;
    before_call(s);
    rc = ipcring_writer_reserve(s->w, len, 0, &p);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0) {
      check_ptr(s, p, len);
      s->res = (struct held){ p, len, 0, in_u8(in), 0, 0 };
      fill_held(&s->res);
    }
    break;
  }
  case 2:
  case 3: { /* commit */
    size_t len = s->res.ptr ? s->res.len : 0;
    uint8_t b = in_u8(in);
    if (b & 0x80)
      len = b & 0x7f; /* maybe longer than reserved: -EINVAL */
    uint32_t tag = (b & 0x40) ? IPCRING_TAG_SKIP : b;
    /* As for a claim's submit: past len the bytes may become a skip record. */
    size_t kept = s->res.kept;
    s->res.kept = len < kept ? len : kept;
    before_call(s);
    rc = ipcring_writer_commit(s->w, len, tag);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0) {
      s->res.ptr = NULL;
    } else if (s->res.ptr) {
      s->res.kept = kept;
      check_held(&s->res);
    }
    break;
  }
  case 4: { /* push */
    size_t len = pick_len(s, in);
    uint8_t buf[256];
    memset(buf, 0xa5, sizeof buf);
    if (len > sizeof buf)
      len = sizeof buf;
    s->res.ptr = NULL;
    before_call(s);
    rc = ipcring_writer_push(s->w, buf, len, in_u8(in), 0);
    after_call(s);
    require_rc(rc, 0);
    break;
  }
  case 5: { /* pushv */
    uint8_t a[40], b[100];
    memset(a, 1, sizeof a);
    memset(b, 2, sizeof b);
    struct iovec iov[2] = { { a, in_u8(in) % sizeof a }, { b, in_u8(in) % sizeof b } };
    s->res.ptr = NULL;
    before_call(s);
    rc = ipcring_writer_pushv(s->w, iov, 2, 7, 0);
    after_call(s);
    require_rc(rc, 0);
    break;
  }
  case 6:
  case 7: { /* claim */
    size_t len = pick_len(s, in);
    void *p = NULL;
    uint64_t id = 0;
    before_call(s);
    rc = ipcring_writer_claim(s->w, len, 0, &p, &id);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0) {
      REQUIRE(s->nclaims < IPCRING_CLAIMS_MAX);
      check_ptr(s, p, len);
      struct held *h = &s->claims[s->nclaims++];
      *h = (struct held){ p, len, 0, in_u8(in), id, 0 };
      fill_held(h);
    }
    break;
  }
  case 8:
  case 9: { /* submit */
    if (!s->nclaims)
      break;
    unsigned i = in_u8(in) % s->nclaims;
    struct held *h = &s->claims[i];
    size_t len = h->len;
    uint8_t b = in_u8(in);
    if (b & 0x80)
      len = (b & 0x7f) < len ? (b & 0x7f) : len + 8 * (b & 1); /* shorter, or too long */
    /* A shorter submit turns the rest into a skip record: only the
     * submitted bytes must stay (all of them again if the call fails). */
    size_t kept = h->kept;
    h->kept = len < h->kept ? len : h->kept;
    before_call(s);
    rc = ipcring_writer_claim_submit(s->w, h->id, len, b & 0x7f);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0) {
      REQUIRE(!h->submitted && len <= h->len);
      h->submitted = 1;
    } else {
      h->kept = kept;
      check_held(h);
    }
    break;
  }
  case 10: { /* discard */
    if (!s->nclaims)
      break;
    unsigned i = in_u8(in) % s->nclaims;
    before_call(s);
    rc = ipcring_writer_claim_discard(s->w, s->claims[i].id);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0) {
      REQUIRE(!s->claims[i].submitted);
      drop_claim(s, i);
    }
    break;
  }
  case 11:
  case 12: { /* release */
    if (!s->nclaims)
      break;
    unsigned i = in_u8(in) % s->nclaims;
    before_call(s);
    rc = ipcring_writer_claim_release(s->w, s->claims[i].id);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0) {
      REQUIRE(s->claims[i].submitted);
      drop_claim(s, i);
    }
    break;
  }
  case 13: { /* a claim id that does not exist */
    before_call(s);
    rc = ipcring_writer_claim_release(s->w, in_bytes(in, 8) | 1);
    after_call(s);
    REQUIRE(rc == -EINVAL);
    break;
  }
  case 14: /* flush */
    before_call(s);
    rc = ipcring_writer_flush(s->w, 0);
    after_call(s);
    require_rc(rc, 0);
    break;
  case 15: /* end of stream, rarely */
    if (in_u8(in) != 0xee)
      break;
    before_call(s);
    rc = ipcring_writer_eos(s->w);
    after_call(s);
    require_rc(rc, 0);
    if (rc == 0)
      s->res.ptr = NULL; /* dropped by eos */
    break;
  case 16: { /* wait_read, getters, interrupt */
    struct ipcring_info info;
    before_call(s);
    rc = ipcring_writer_wait_read(s->w, ipcring_writer_read_index(s->w), 0);
    (void)ipcring_writer_info(s->w, &info);
    (void)ipcring_writer_reader_generation(s->w);
    (void)ipcring_writer_claims(s->w);
    (void)ipcring_writer_wait_reader(s->w, 0);
    if (in_u8(in) & 1)
      ipcring_writer_interrupt(s->w);
    else
      ipcring_writer_clear_interrupt(s->w);
    after_call(s);
    require_rc(rc, 0);
    break;
  }
  /* ---- the reader scribbles ---- */
  case 17: { /* an honest reader releases some of what was published */
    uint64_t r = atomic_load_explicit(&s->sh->read_index, memory_order_relaxed);
    uint64_t step8 = (uint64_t)in_u8(in) * 8;
    if (s->pub - r <= s->cap && ((r | s->pub) & 7) == 0)
      r = s->pub - r < step8 ? s->pub : r + step8;
    atomic_store_explicit(&s->sh->read_index, r, memory_order_relaxed);
    break;
  }
  case 18: { /* read index: a small step back or forth, or anything */
    uint64_t r = atomic_load_explicit(&s->sh->read_index, memory_order_relaxed);
    uint8_t b = in_u8(in);
    if (b < 0x80)
      r += (uint64_t)(int8_t)(b << 1) * 4;
    else
      r = in_bytes(in, 8);
    atomic_store_explicit(&s->sh->read_index, r, memory_order_relaxed);
    break;
  }
  case 19:
    atomic_store_explicit(&s->sh->reader_wait, (uint32_t)in_bytes(in, 4), memory_order_relaxed);
    break;
  case 20:
    atomic_store_explicit(&s->sh->writer_wait, (uint32_t)in_bytes(in, 4), memory_order_relaxed);
    break;
  case 21:
    atomic_store_explicit(&s->sh->eos, (uint32_t)in_bytes(in, 4), memory_order_relaxed);
    break;
  case 22: {
    uint8_t b = in_u8(in);
    if (b & 1)
      atomic_store_explicit(&s->sh->reader_generation, in_bytes(in, 8), memory_order_relaxed);
    if (b & 2)
      atomic_store_explicit(&s->sh->writer_generation, in_bytes(in, 8), memory_order_relaxed);
    if (b & 4)
      atomic_store_explicit(&s->sh->reader_pid, (int32_t)in_bytes(in, 4), memory_order_relaxed);
    if (b & 8)
      atomic_store_explicit(&s->sh->writer_pid, (int32_t)in_bytes(in, 4), memory_order_relaxed);
    break;
  }
  case 23: /* the writer's own index: it must not trust it */
    atomic_store_explicit(&s->sh->write_index, in_bytes(in, 8), memory_order_relaxed);
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
  if (!ramp[1])
    for (size_t i = 0; i < sizeof ramp; i++)
      ramp[i] = (uint8_t)i;
  struct input in = { data, n, 0 };
  struct state s;
  memset(&s, 0, sizeof s);
  uint8_t first = in_u8(&in);
  s.cap = (first & 1) ? 8192 : 4096;
  s.size = IPCRING_HEADER_SIZE + s.cap;
  s.mem = malloc(s.size);
  s.shadow = calloc(1, s.cap);
  REQUIRE(s.mem && s.shadow);
  memset(s.mem, 0, s.size);
  s.sh = (struct ipcring_shared *)s.mem;
  s.ring = s.mem + IPCRING_HEADER_SIZE;
  /* A fresh ring, its (equal) indices anywhere: near the end of the data
   * area, near the top of the 64-bit range. */
  uint64_t start = in_bytes(&in, 2) * 8;
  if (first & 2)
    start = UINT64_MAX - (s.cap * 4) + 1 + (start & (s.cap - 1));
  s.sh->magic = IPCRING_MAGIC;
  s.sh->version = IPCRING_FORMAT_VERSION;
  s.sh->header_size = IPCRING_HEADER_SIZE;
  s.sh->capacity = s.cap;
  atomic_store(&s.sh->write_index, start);
  atomic_store(&s.sh->read_index, start);
  atomic_store(&s.sh->writer_generation, 1);
  int rc = ipcring_writer_attach_mem(s.mem, s.size, &s.w);
  REQUIRE(rc == 0);
  s.pub = s.released = start;
  for (int i = 0; i < STEPS_MAX && in.pos < in.n; i++)
    step(&s, &in);
  before_call(&s);
  ipcring_writer_close(s.w);
  s.w = NULL;
  after_call(&s);
  /* Nothing in the header page beyond the fields. */
  for (size_t i = SHARED_BYTES; i < IPCRING_HEADER_SIZE; i++)
    REQUIRE(s.mem[i] == 0);
  free(s.shadow);
  free(s.mem);
  return 0;
}
