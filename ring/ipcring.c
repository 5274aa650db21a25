/* ipcring: implementation. See ipcring.h for the API and docs/ring-format.md
 * for the shared layout and the ordering rules. */
#define _GNU_SOURCE
#include "ipcring.h"

#include "atomics.h"
#include "ipcring-guard.h"
#include "ipcring-layout.h"
#include "ipcring-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* How long a blocking call spins before it announces itself and sleeps, by
 * default (ipcring_*_set_spin() changes it per handle). */
#define SPIN_NS 20000
/* Adaptive spinning: when waits that ended in a sleep keep being short (the
 * peer publishes every few hundred microseconds, like a producer of large
 * frames), the next waits spin about as long as those took, up to this
 * bound, so that steady streaming makes no futex calls; a wait longer than
 * the bound (an idle or slow stream) drops back to the configured spin. */
#define ADAPT_MAX_NS 500000
/* Hand-off: the writer yields after a wake only when the wake before it was
 * at least this long ago (writer_handoff()): gaps shorter than the adaptive
 * spin covers are a stream, not a pause in one. */
#define HANDOFF_GAP_NS ADAPT_MAX_NS
/* Hot window: in a ring of at least HOT_MIN_CAP bytes, a writer past the
 * first HOT_WINDOW bytes that finds the reader past the start of this lap
 * (room for the next record at offset 0) pads to the end and starts over
 * there. A reader that keeps up then only ever
 * touches the first few megabytes, which stay in the CPU caches; without it
 * every byte of a 64 MiB ring goes through memory once per lap (1080p frames
 * through a 64 MiB ring: about 3500 frames/s; through the window: about
 * 11000, on a 2-core EPYC with 32 MiB of L3). The reader's index is looked
 * at for this at most once per HOT_CHECK_EVERY bytes written. */
#define HOT_MIN_CAP ((uint64_t)16 << 20)
#define HOT_WINDOW ((uint64_t)4 << 20)
#define HOT_CHECK_EVERY ((uint64_t)1 << 20)
/* A new ring file's pages are reserved in steps of this (writer_reserve_to()). */
#define RESERVE_STEP HOT_WINDOW
/* Pause instructions before each poll while spinning (about 1 us). */
#define SPIN_PAUSES 32
/* Reader batching: while each wait's first look finds a record, the reader
 * doubles the pause before its next first look, up to this many pauses
 * (about 13 us on a 2-core EPYC); a first look that finds nothing, or a
 * sleep, starts again at SPIN_PAUSES, and the looks after a first look that
 * found nothing are SPIN_PAUSES apart. A reader that keeps up with a fast
 * stream would otherwise look at the write index for every record and
 * share the cache line of the record being written: each look pulls both
 * lines away from the writer, which then stalls to get them back. Looking
 * once per batch, the reader reads only lines the writer has finished. */
#define LOOK_PAUSES_MAX 512
/* Longest single sleep: peer liveness is checked after each, so a dead peer
 * is noticed within this bound (plus a system call). */
#define SLICE_NS 50000000
#define NSEC_PER_SEC 1000000000LL

_Static_assert(IPCRING_DATA_OFFSET == IPCRING_HEADER_SIZE, "public data offset");

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#ifndef O_NOCTTY
#define O_NOCTTY 0
#endif

/* Seals that fix a file's size (memfds; see ipcring_memfd_create()). */
#if defined(F_SEAL_SHRINK) && defined(F_SEAL_GROW)
#define SIZE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)
#else
#define SIZE_SEALS 0
#endif
#ifndef F_SEAL_WRITE
#define F_SEAL_WRITE 0
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0
#endif

/* Open-file-description locks belong to the open file, not the process, so
 * two handles in one process are told apart and a lock survives fork only in
 * the process that keeps the descriptor. Fallback: classic process locks. */
#ifdef F_OFD_SETLK
#define LOCK_SET F_OFD_SETLK
#define LOCK_GET F_OFD_GETLK
#else
#define LOCK_SET F_SETLK
#define LOCK_GET F_GETLK
#endif

/* ---- What both sides share ----------------------------------------- */

struct ipcring_side {
  struct ipcring_shared *sh;
  uint8_t *data;
  uint64_t cap;
  uint64_t mask;
  size_t map_size;
  int fd;       /* the mapping's file, -1 for attach_mem */
  int lock_fd;  /* descriptor holding our lock, may equal fd */
  int failed;   /* sticky -EPROTO */
  _Atomic int interrupted;
  int batch_looks;  /* reader: adapt look_pauses (LOOK_PAUSES_MAX) */
  unsigned look_pauses; /* pauses before a wait's first look; written only with
                         * batch_looks, by the reader's one waiting thread */
  int64_t spin_ns;  /* how long a wait spins before it sleeps, at least */
  int64_t spin_cur; /* adapted: up to ADAPT_MAX_NS (racy between two waiters: harmless) */
  uint64_t records, bytes;
  uint64_t looks; /* loads of the peer's index when our copy was used up */
  /* Counted with relaxed atomic adds: waits and wakes may come from two
   * threads (ipcring_writer_wait_read(), ipcring_reader_release_to()). */
  _Atomic uint64_t waits, wakes;
};

/* An open claim of the writer (see ipcring_writer_claim()). */
struct claim {
  uint64_t start; /* where its bytes begin, including a padding record before it */
  uint64_t pos;   /* its record header */
  uint64_t end;   /* one past its last byte */
  uint32_t len;   /* payload bytes claimed */
  uint8_t finished; /* submitted or discarded: may be published */
  uint8_t released; /* the writer no longer touches its bytes */
};

struct ipcring_writer {
  struct ipcring_side s;
  uint64_t widx;        /* private write index, published: the truth */
  uint64_t cidx;        /* end of the last claim or reservation (>= widx) */
  uint64_t cached_r;    /* last read index seen, checked */
  uint64_t hot_checked; /* cidx when the hot window last looked at the reader */
  uint64_t reserved_to; /* data bytes from offset 0 whose pages are reserved */
  uint64_t reserved;    /* bytes of the open reservation, 0 if none */
  size_t reserved_len;
  uint64_t reserved_claim; /* the reservation is claim at this position (+1), 0 if not */
  int handoff;          /* yield after waking a sleeping reader (writer_publish()) */
  int64_t last_wake_ns; /* when the writer last woke the reader */
  _Atomic uint64_t handoffs; /* how often it did (read by ipcring_writer_info()) */
  _Atomic uint64_t reader_lost_gen; /* reader generation whose loss was reported */
  struct claim claims[IPCRING_CLAIMS_MAX]; /* FIFO in ring order */
  uint64_t br;          /* back channel: private read index */
  unsigned chead, ccount;
  int eos;
  char *path;
  dev_t dev;
  ino_t ino;
};

struct ipcring_reader {
  struct ipcring_side s;
  uint64_t ridx;        /* private read cursor: next record to hand out */
  /* Taking records (ipcring_reader_take()) lets them be released later, in
   * order, from any thread; these fields connect the two. */
  _Atomic uint64_t released; /* published read index: everything below is free */
  _Atomic uint64_t take_end; /* end of the last taken record */
  _Atomic int takes_used;    /* a record was ever taken */
  _Atomic uint64_t free_to;  /* consumed up to here, beyond take_end (padding,
                              * skips, peeked records): freed with the last take */
  pthread_mutex_t release_lock; /* serialises releases once takes are used */
  uint64_t cached_w;    /* last write index seen, checked */
  uint64_t held;        /* bytes of the peeked record, 0 if none */
  size_t held_len;
  uint32_t held_tag;
  uint64_t writer_lost_gen; /* writer generation whose loss was reported */
  uint64_t bw;          /* back channel: private write index */
};

const char *ipcring_strerror(int err)
{
  switch (err) {
  case 0: return "success";
  case -EAGAIN: return "would block";
  case -ETIMEDOUT: return "timed out";
  case -ECANCELED: return "interrupted";
  case -ENODATA: return "end of stream";
  case -EPIPE: return "peer gone";
  case -EPROTO: return "ring memory is corrupt or inconsistent";
  case -EMSGSIZE: return "record too large";
  case -EBUSY: return "ring already has a live writer or reader";
  case -EEXIST: return "file exists and is not a ring that can be taken over";
  case -EINVAL: return "invalid argument or not a ring file";
  case -EPROTONOSUPPORT: return "ring format version not supported";
  case -EPERM: return "ring file owned by another user or open to group or others";
  case -EBADFD:
    return "ring descriptor cannot be trusted: an unlinked file without shrink and grow "
           "seals, or sealed against writing";
  case IPCRING_ERR_TRUNCATED: return "the ring file was truncated under its mapping";
  case -ENOSPC: return "no space to reserve the ring's pages";
  case -ERANGE: return "a reader is still attached to the existing ring, whose capacity differs";
  default: return err < 0 ? strerror(-err) : "unknown";
  }
}

/* ---- Time, futex ---------------------------------------------------- */

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* Sleep while *word == val, at most ns. Returns 0 (woken or value changed) or
 * -ETIMEDOUT. A signal counts as a wake-up: the caller re-checks anyway. */
static int word_wait(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
  struct timespec ts = { (time_t)(ns / NSEC_PER_SEC), (long)(ns % NSEC_PER_SEC) };
#ifdef __linux__
  long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, &ts, NULL, 0);
  if (rc < 0 && errno == ETIMEDOUT)
    return -ETIMEDOUT;
  return 0;
#else
  /* No cross-process futex: poll the word every 200 us. */
  int64_t end = now_ns() + ns;
  while (ipcring_load_acquire_u32(word) == val) {
    int64_t left = end - now_ns();
    if (left <= 0)
      return -ETIMEDOUT;
    struct timespec nap = { 0, left < 200000 ? (long)left : 200000 };
    nanosleep(&nap, NULL);
  }
  (void)ts;
  return 0;
#endif
}

static void word_wake(_Atomic uint32_t *word)
{
#ifdef __linux__
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
  (void)word;
#endif
}

/* Waker's half of the handshake: called after publishing an index. Either the
 * sleeper's re-check (after its seq_cst announce) sees the new index, or this
 * load sees SLEEPING; the fence pairs with ipcring_store_seq_cst_u32() in
 * side_wait(). Only when someone sleeps does it cost an atomic and a syscall. */
static inline int wake_peer(struct ipcring_side *s, _Atomic uint32_t *word)
{
  ipcring_fence_full();
  if (ipcring_load_relaxed_u32(word) != IPCRING_WAIT_IDLE &&
      ipcring_exchange_u32(word, IPCRING_WAIT_IDLE) != IPCRING_WAIT_IDLE) {
    word_wake(word);
    atomic_fetch_add_explicit(&s->wakes, 1, memory_order_relaxed);
    return 1;
  }
  return 0;
}

/* ---- Locks (peer liveness) ------------------------------------------ */

static int lock_take(int fd, int byte)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (fcntl(fd, LOCK_SET, &fl) == 0)
    return 0;
  if (errno == EAGAIN || errno == EACCES)
    return -EBUSY;
  return -errno;
}

/* 1 if some other open file holds the lock on this byte, i.e. the peer is
 * attached and alive; the kernel drops the lock when the peer dies. */
static int lock_held_by_other(int fd, int byte)
{
  if (fd < 0)
    return 0;
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (fcntl(fd, LOCK_GET, &fl) != 0)
    return 1; /* cannot tell: assume alive, the next slice asks again */
  return fl.l_type != F_UNLCK;
}

/* A descriptor of our own for the locks: an inherited fd may share its open
 * file description with the peer, and locks on one description do not
 * conflict with each other. Re-opening through /proc gives a new one. */
static int private_lock_fd(int fd)
{
#ifdef __linux__
  char p[64];
  snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  int nfd = open(p, O_RDWR | O_CLOEXEC);
  if (nfd >= 0)
    return nfd;
#endif
  return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

/* ---- Waiting ---------------------------------------------------------- */

/* Poll: 1 = ready, 0 = not yet, <0 = error to return. */
typedef int (*poll_fn)(void *self);
/* Called when a sleep ended without progress: 0 = keep waiting, <0 = return. */
typedef int (*idle_fn)(void *self);

/* Record the failure, unless there is one already: the first cause (a
 * truncation noticed by the SIGBUS guard, say, whose zero pages then make the
 * indices look inconsistent) is the one every later call reports. */
static int side_fail(struct ipcring_side *s)
{
  int expected = 0;
  __atomic_compare_exchange_n(&s->failed, &expected, -EPROTO, 0, __ATOMIC_RELAXED,
                              __ATOMIC_RELAXED);
  return __atomic_load_n(&s->failed, __ATOMIC_RELAXED);
}

/* Spin briefly, then announce on `word` and sleep on it in slices, until
 * poll() says ready, the deadline passes or we are interrupted. */
static int side_wait(struct ipcring_side *s, _Atomic uint32_t *word, poll_fn poll,
                     idle_fn idle, void *self, int64_t timeout_ns, int spin)
{
  int rc;
  if (timeout_ns == 0 || !spin) {
    rc = poll(self);
    if (rc != 0)
      return rc < 0 ? rc : 0;
  }
  if (atomic_load_explicit(&s->interrupted, memory_order_acquire))
    return -ECANCELED;
  if (timeout_ns == 0)
    return -EAGAIN;

  int64_t start = now_ns();
  int64_t deadline = timeout_ns < 0 || timeout_ns > INT64_MAX - start ? INT64_MAX
                                                                      : start + timeout_ns;
  int64_t spin_for = s->spin_cur > s->spin_ns ? s->spin_cur : s->spin_ns;
  int64_t spin_end = start + spin_for;
  for (unsigned i = 1; spin; i++) {
    /* Pause before each look at the peer's index. Our caller found its
     * cached copy used up; looking again at once, and again after every
     * record, pulls the index's cache line away from the peer once per
     * record (the peer then stalls to get it back). Pausing lets the peer
     * publish a batch per line transfer: on a 2-core EPYC this took 256-byte
     * streaming from 15-50M to 62-74M records/s. */
    unsigned pauses = i == 1 && s->look_pauses > SPIN_PAUSES ? s->look_pauses : SPIN_PAUSES;
    for (unsigned k = 0; k < pauses; k++)
      ipcring_cpu_relax();
    rc = poll(self);
    if (rc != 0) {
      if (rc > 0 && s->batch_looks)
        s->look_pauses = i > 1 ? SPIN_PAUSES
                         : s->look_pauses < LOOK_PAUSES_MAX / 2 ? 2 * s->look_pauses
                                                                : LOOK_PAUSES_MAX;
      return rc < 0 ? rc : 0;
    }
    if ((i & 7) == 0) {
      int64_t t = now_ns();
      if (t >= spin_end || t >= deadline)
        break;
      if (atomic_load_explicit(&s->interrupted, memory_order_acquire))
        return -ECANCELED;
    }
  }

  if (s->batch_looks)
    s->look_pauses = SPIN_PAUSES;
  atomic_fetch_add_explicit(&s->waits, 1, memory_order_relaxed);
  for (;;) {
    /* Announce, then re-check: pairs with the fence in wake_peer() and with
     * the exchange in side_interrupt(). */
    ipcring_store_seq_cst_u32(word, IPCRING_WAIT_SLEEPING);
    rc = poll(self);
    if (rc == 0 && atomic_load_explicit(&s->interrupted, memory_order_seq_cst))
      rc = -ECANCELED;
    int64_t t = now_ns();
    if (rc == 0 && t >= deadline)
      rc = -ETIMEDOUT;
    if (rc != 0) {
      ipcring_store_release_u32(word, IPCRING_WAIT_IDLE);
      return rc < 0 ? rc : 0;
    }
    int64_t slice = deadline - t < SLICE_NS ? deadline - t : SLICE_NS;
    word_wait(word, IPCRING_WAIT_SLEEPING, slice);
    rc = poll(self);
    if (rc > 0) {
      /* Woken by data: spin that long next time, if it was short. */
      int64_t took = now_ns() - start;
      s->spin_cur = took < ADAPT_MAX_NS ? took + took / 2 : s->spin_ns;
      if (s->spin_cur > ADAPT_MAX_NS)
        s->spin_cur = ADAPT_MAX_NS;
    }
    if (rc == 0)
      rc = idle(self);
    if (rc != 0) {
      ipcring_store_release_u32(word, IPCRING_WAIT_IDLE);
      return rc < 0 ? rc : 0;
    }
  }
}

/* Make this side's blocked call return -ECANCELED. The flag first, then the
 * exchange: pairs with the announce-then-check in side_wait(), so either the
 * sleeper sees the flag or this exchange sees SLEEPING and the wake reaches
 * it. */
static void side_interrupt(struct ipcring_side *s, _Atomic uint32_t *own_word)
{
  atomic_store_explicit(&s->interrupted, 1, memory_order_seq_cst);
  if (ipcring_exchange_u32(own_word, IPCRING_WAIT_IDLE) != IPCRING_WAIT_IDLE)
    word_wake(own_word);
}

/* ---- Mapping and validation ----------------------------------------- */

static int is_pow2(uint64_t v)
{
  return v && !(v & (v - 1));
}

static int capacity_ok(uint64_t cap)
{
  return is_pow2(cap) && cap >= IPCRING_CAPACITY_MIN && cap <= IPCRING_CAPACITY_MAX;
}

/* Check a private copy of the header's constant fields. */
static int header_check(const struct ipcring_shared *h, uint64_t file_size)
{
  if (file_size < IPCRING_HEADER_SIZE || h->magic != IPCRING_MAGIC)
    return -EINVAL;
  if (h->version != IPCRING_FORMAT_VERSION)
    return -EPROTONOSUPPORT;
  if (h->header_size != IPCRING_HEADER_SIZE || h->flags != 0 || !capacity_ok(h->capacity))
    return -EPROTO;
  if (file_size != IPCRING_HEADER_SIZE + h->capacity)
    return -EPROTO;
  return 0;
}

/* Indices as a pair: r <= w <= r + cap, both 8-byte aligned. */
static int indices_ok(uint64_t r, uint64_t w, uint64_t cap)
{
  return ((r | w) & 7) == 0 && w - r <= cap;
}

/* Map the ring and put the mapping under the SIGBUS guard: if the file is
 * truncated under us, accesses read zeros and s->failed becomes
 * IPCRING_ERR_TRUNCATED instead of the process dying.
 *
 * Only the header and the hot window get their page-table entries now: a
 * stream that the reader keeps up with stays in the hot window, and mapping
 * all of a 64 MiB ring up front took 35 ms per side at start-up. Pages past
 * it are mapped on first touch (a minor fault: the pages themselves were
 * reserved when the ring was made). */
static int side_map(struct ipcring_side *s, int fd, uint64_t cap)
{
  size_t size = IPCRING_HEADER_SIZE + cap;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return -errno;
#ifdef __linux__
  /* A hint: older kernels refuse it (EINVAL), and the pages fault in then. */
  (void)madvise(p, IPCRING_HEADER_SIZE + (cap < HOT_WINDOW ? cap : HOT_WINDOW),
                MADV_POPULATE_WRITE);
#endif
  int rc = ipcring_guard_add(p, size, &s->failed);
  if (rc != 0) {
    munmap(p, size);
    return rc;
  }
  s->sh = p;
  s->data = (uint8_t *)p + IPCRING_HEADER_SIZE;
  s->cap = cap;
  s->mask = cap - 1;
  s->map_size = size;
  return 0;
}

/* Close the descriptors, which drops our lock: the peer sees us gone. The
 * mapping stays until side_unmap(). */
static void side_close_fds(struct ipcring_side *s)
{
  if (s->lock_fd >= 0 && s->lock_fd != s->fd)
    close(s->lock_fd);
  if (s->fd >= 0)
    close(s->fd);
  s->lock_fd = -1;
  s->fd = -1;
}

/* Unmap what side_map() mapped (map_size 0: memory that is not ours). */
static void side_unmap_mem(struct ipcring_side *s)
{
  if (s->sh && s->map_size) {
    ipcring_guard_remove(s->sh, &s->failed);
    munmap(s->sh, s->map_size);
  }
  s->sh = NULL;
  s->map_size = 0;
}

static void side_unmap(struct ipcring_side *s)
{
  side_unmap_mem(s);
  /* Views the caller registered on this side and did not remove. */
  ipcring_guard_remove_all(&s->failed);
  side_close_fds(s);
}

/* Detach: drop the lock first, then wake the peer's sleeper, so that its
 * liveness check right after waking already sees us gone. */
static void side_detach(struct ipcring_side *s, _Atomic uint32_t *peer_word)
{
  side_close_fds(s);
  if (s->sh && ipcring_exchange_u32(peer_word, IPCRING_WAIT_IDLE) != IPCRING_WAIT_IDLE)
    word_wake(peer_word);
  side_unmap(s);
}

/* Reserve the file's pages now, so a full /dev/shm fails here and not with
 * SIGBUS while streaming. */
static int reserve_pages(int fd, uint64_t size)
{
#ifdef __linux__
  int rc = posix_fallocate(fd, 0, (off_t)size);
  if (rc == 0 || rc == EOPNOTSUPP || rc == EINVAL)
    return rc == 0 ? 0 : (ftruncate(fd, (off_t)size) == 0 ? 0 : -errno);
  return -rc;
#else
  return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
#endif
}

/* The pages of [off, off + len) of a file already at its full size. The
 * size never changes (FALLOC_FL_KEEP_SIZE): a file a peer truncated stays
 * truncated, and faults go on reaching the SIGBUS guard. A file system that
 * cannot reserve (EOPNOTSUPP) is left as it is, as above. */
static int reserve_range(int fd, uint64_t off, uint64_t len)
{
#ifdef __linux__
  if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  return errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS ? 0 : -errno;
#else
  (void)fd, (void)off, (void)len;
  return 0;
#endif
}

/* ---- Writer ------------------------------------------------------------ */

static int writer_poll_space(void *self);
static int writer_idle(void *self);

static struct ipcring_writer *writer_new(void)
{
  struct ipcring_writer *w = calloc(1, sizeof *w);
  if (w) {
    w->s.fd = w->s.lock_fd = -1;
    w->s.spin_ns = w->s.spin_cur = SPIN_NS;
    w->s.look_pauses = SPIN_PAUSES;
    w->handoff = 1;
  }
  return w;
}

/* Fill a fresh file (locked by us) with an empty ring. resize: truncate it
 * first (its old size and contents go); otherwise its size is already
 * IPCRING_HEADER_SIZE + cap and cannot change (a sealed memfd). */
static int writer_init_fresh(struct ipcring_writer *w, uint64_t cap, int resize)
{
  int rc;
  if (resize) {
    /* Sized now, its pages reserved as the writer first reaches them
     * (writer_reserve_to()): the first RESERVE_STEP here. Reserving all of
     * a 64 MiB ring up front took 16-20 ms. */
    if (ftruncate(w->s.fd, 0) != 0 || ftruncate(w->s.fd, (off_t)(IPCRING_HEADER_SIZE + cap)) != 0)
      return -errno;
    w->reserved_to = cap < RESERVE_STEP ? cap : RESERVE_STEP;
    if ((rc = reserve_range(w->s.fd, 0, IPCRING_HEADER_SIZE + w->reserved_to)) != 0)
      return rc;
  } else {
    if ((rc = reserve_pages(w->s.fd, IPCRING_HEADER_SIZE + cap)) != 0)
      return rc;
    w->reserved_to = cap;
  }
  if ((rc = side_map(&w->s, w->s.fd, cap)) != 0)
    return rc;
  struct ipcring_shared *sh = w->s.sh;
  memset(sh, 0, IPCRING_HEADER_SIZE);
  sh->version = IPCRING_FORMAT_VERSION;
  sh->header_size = IPCRING_HEADER_SIZE;
  sh->capacity = cap;
  sh->flags = 0;
  atomic_store(&sh->writer_generation, 1);
  atomic_store(&sh->writer_pid, (int32_t)getpid());
  /* The magic last: a reader of a half-written header sees "not a ring". */
  atomic_thread_fence(memory_order_release);
  sh->magic = IPCRING_MAGIC;
  w->widx = w->cidx = w->cached_r = 0;
  w->reader_lost_gen = 0; /* generation 0: no reader ever attached */
  return 0;
}

/* Take over a ring whose writer is gone (we hold the writer lock). Returns 1
 * if the file must be replaced instead. */
static int writer_adopt(struct ipcring_writer *w, uint64_t cap)
{
  struct stat st;
  struct ipcring_shared h;
  if (fstat(w->s.fd, &st) != 0)
    return -errno;
  if (st.st_size < (off_t)sizeof h)
    return -EEXIST;
  if (pread(w->s.fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
    return -EEXIST;
  if (h.magic != IPCRING_MAGIC)
    return -EEXIST; /* somebody else's file: never replace it */
  int reader_alive = lock_held_by_other(w->s.lock_fd, IPCRING_LOCK_READER);
  if (header_check(&h, (uint64_t)st.st_size) != 0 || h.capacity != cap)
    return reader_alive ? -ERANGE : 1;
  int rc = reserve_pages(w->s.fd, IPCRING_HEADER_SIZE + cap);
  if (rc != 0)
    return rc;
  w->reserved_to = cap;
  if ((rc = side_map(&w->s, w->s.fd, cap)) != 0)
    return rc;
  struct ipcring_shared *sh = w->s.sh;
  uint64_t widx = ipcring_load_acquire_u64(&sh->write_index);
  uint64_t ridx = ipcring_load_acquire_u64(&sh->read_index);
  if (!indices_ok(ridx, widx, cap) || w->s.failed) {
    int truncated = w->s.failed;
    side_unmap_mem(&w->s);
    w->s.failed = 0;
    if (truncated)
      return truncated;
    return reader_alive ? -EPROTO : 1;
  }
  w->widx = w->cidx = widx;
  w->cached_r = ridx;
  /* A reader that died before we came is not ours to report; a live one is
   * (0 stands for "none reported yet"). */
  w->reader_lost_gen = reader_alive ? 0 : ipcring_load_relaxed_u64(&sh->reader_generation);
  ipcring_store_release_u32(&sh->eos, 0);
  /* What a reader sent the dead writer is not ours. */
  w->br = ipcring_load_acquire_u64(&sh->back_write);
  ipcring_store_release_u64(&sh->back_read, w->br);
  ipcring_store_release_u32(&sh->writer_wait, IPCRING_WAIT_IDLE);
  atomic_store(&sh->writer_pid, (int32_t)getpid());
  atomic_fetch_add(&sh->writer_generation, 1);
  /* Let a reader waiting for a new writer see us. */
  wake_peer(&w->s, &sh->reader_wait);
  return 0;
}

static void writer_free(struct ipcring_writer *w);

/* The last step of every create: a truncation noticed while setting up (by
 * the SIGBUS guard) fails the create itself. */
static int writer_finish_open(struct ipcring_writer *w, ipcring_writer **out)
{
  int rc = w->s.failed;
  if (rc != 0) {
    writer_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

static void writer_free(struct ipcring_writer *w)
{
  if (!w)
    return;
  side_unmap(&w->s);
  free(w->path);
  free(w);
}

/* Create an unnamed, locked, initialised file in the directory of path and
 * link it in; -EEXIST if the path appeared meanwhile. */
static int writer_create_new(struct ipcring_writer *w, const char *path, uint64_t cap,
                             mode_t mode)
{
  char *dir = strdup(path);
  if (!dir)
    return -ENOMEM;
  char *slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';

  int rc = 0;
  int fd = -1;
  char *tmpname = NULL;
#if defined(__linux__) && defined(O_TMPFILE)
  fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
#endif
  if (fd < 0) {
    size_t n = strlen(path) + 32;
    tmpname = malloc(n);
    if (!tmpname) {
      free(dir);
      return -ENOMEM;
    }
    snprintf(tmpname, n, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmpname);
    if (fd < 0) {
      rc = -errno;
      free(tmpname);
      free(dir);
      return rc;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  free(dir);
  w->s.fd = w->s.lock_fd = fd;
  if (fchmod(fd, mode) != 0) {
    rc = -errno;
    goto fail;
  }
  if ((rc = lock_take(fd, IPCRING_LOCK_WRITER)) != 0)
    goto fail;
  if ((rc = writer_init_fresh(w, cap, 1)) != 0)
    goto fail;
  if (tmpname) {
    if (link(tmpname, path) != 0)
      rc = -errno;
    unlink(tmpname);
    free(tmpname);
    tmpname = NULL;
  } else {
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, p, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0)
      rc = -errno;
  }
  if (rc != 0)
    goto fail;
  return 0;

fail:
  if (tmpname) {
    unlink(tmpname);
    free(tmpname);
  }
  side_unmap(&w->s);
  return rc;
}

int ipcring_writer_create(const char *path, uint64_t capacity, mode_t mode, unsigned flags,
                          ipcring_writer **out)
{
  if (!path || !*path || !out)
    return -EINVAL;
  *out = NULL;
  if (capacity == 0)
    capacity = IPCRING_CAPACITY_DEFAULT;
  if (!capacity_ok(capacity))
    return -EINVAL;
  if (mode == 0)
    mode = 0600;
  if (mode & ~(mode_t)0777)
    return -EINVAL;

  struct ipcring_writer *w = writer_new();
  if (!w || !(w->path = strdup(path))) {
    writer_free(w);
    return -ENOMEM;
  }

  int rc = -EEXIST;
  for (int attempt = 0; attempt < 8; attempt++) {
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
      struct stat st;
      if (fstat(fd, &st) != 0) {
        rc = -errno;
        close(fd);
        break;
      }
      if (!S_ISREG(st.st_mode)) {
        rc = -EEXIST;
        close(fd);
        break;
      }
      if (st.st_uid != geteuid()) {
        close(fd);
        rc = -EPERM;
        break;
      }
      w->s.fd = w->s.lock_fd = fd;
      if ((rc = lock_take(fd, IPCRING_LOCK_WRITER)) != 0) {
        side_unmap(&w->s);
        break;
      }
      if (flags & IPCRING_CREATE_NO_TAKEOVER) {
        side_unmap(&w->s);
        rc = -EEXIST;
        break;
      }
      rc = writer_adopt(w, capacity);
      if (rc == 1) {
        /* Stale and incompatible, nobody attached: replace it, but only if
         * the path still names the file we checked. */
        struct stat now;
        if (stat(path, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino)
          unlink(path);
        side_unmap(&w->s);
        rc = -EEXIST;
        continue;
      }
      if (rc != 0) {
        side_unmap(&w->s);
        break;
      }
      w->dev = st.st_dev;
      w->ino = st.st_ino;
      return writer_finish_open(w, out);
    }
    if (errno != ENOENT) {
      rc = -errno;
      break;
    }
    rc = writer_create_new(w, path, capacity, mode);
    if (rc == -EEXIST)
      continue; /* raced with another creator: look again */
    if (rc != 0)
      break;
    struct stat st;
    if (fstat(w->s.fd, &st) == 0) {
      w->dev = st.st_dev;
      w->ino = st.st_ino;
    }
    return writer_finish_open(w, out);
  }
  writer_free(w);
  return rc;
}

/* The file's seals (0 where its file system has none). */
static int fd_seals(int fd)
{
#ifdef F_GET_SEALS
  int seals = fcntl(fd, F_GET_SEALS);
  return seals < 0 ? 0 : seals;
#else
  (void)fd;
  return 0;
#endif
}

/* 1 if the first 8 bytes of the file (the magic) are zero, 0 if not, -1 if
 * they cannot be read. */
static int fd_magic_is_zero(int fd)
{
  uint64_t magic;
  if (pread(fd, &magic, sizeof magic, 0) != (ssize_t)sizeof magic)
    return -1;
  return magic == 0;
}

int ipcring_writer_create_fd(int fd, uint64_t capacity, unsigned flags, ipcring_writer **out)
{
  if (fd < 0 || !out)
    return -EINVAL;
  *out = NULL;
  /* Seals first: once seen they stay, so the size read after them holds. */
  int seals = fd_seals(fd);
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  if (!S_ISREG(st.st_mode))
    return -EINVAL;
  uint64_t size = (uint64_t)st.st_size;
  uint64_t size_cap = size > IPCRING_HEADER_SIZE ? size - IPCRING_HEADER_SIZE : 0;
  /* A size that cannot change decides the capacity. */
  int fixed = SIZE_SEALS && (seals & SIZE_SEALS);
  if (fixed) {
    if (!capacity_ok(size_cap) || (capacity != 0 && capacity != size_cap))
      return -EINVAL;
    if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
      return -EBADFD;
    capacity = size_cap;
  } else if (capacity == 0) {
    capacity = size && capacity_ok(size_cap) ? size_cap : IPCRING_CAPACITY_DEFAULT;
  }
  if (!capacity_ok(capacity))
    return -EINVAL;
  struct ipcring_writer *w = writer_new();
  if (!w)
    return -ENOMEM;
  w->s.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (w->s.fd < 0) {
    int rc = -errno;
    writer_free(w);
    return rc;
  }
  w->s.lock_fd = private_lock_fd(w->s.fd);
  int rc = w->s.lock_fd < 0 ? -errno : lock_take(w->s.lock_fd, IPCRING_LOCK_WRITER);
  /* An empty file, or a fixed-size one still all zeros where the magic goes
   * (a new memfd): a fresh ring. Otherwise a stale ring to take over. */
  int fresh = size == 0 || (fixed && fd_magic_is_zero(w->s.fd) == 1);
  if (rc == 0) {
    rc = fresh ? 0 : (flags & IPCRING_CREATE_NO_TAKEOVER) ? -EEXIST : writer_adopt(w, capacity);
    if (rc == 1 || fresh)
      rc = lock_held_by_other(w->s.lock_fd, IPCRING_LOCK_READER)
               ? -ERANGE
               : writer_init_fresh(w, capacity, !fixed);
  }
  if (rc != 0) {
    writer_free(w);
    return rc;
  }
  return writer_finish_open(w, out);
}

int ipcring_memfd_create(uint64_t capacity, const char *name)
{
  if (capacity == 0)
    capacity = IPCRING_CAPACITY_DEFAULT;
  if (!capacity_ok(capacity))
    return -EINVAL;
#if defined(__linux__) && defined(MFD_ALLOW_SEALING) && defined(F_ADD_SEALS)
  int fd = memfd_create(name && *name ? name : "ipcring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -errno;
  /* The pages now, so a lack of memory is an error here, not SIGBUS later;
   * then the seals, which make the size final. */
  int rc = reserve_pages(fd, IPCRING_HEADER_SIZE + capacity);
  if (rc == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    rc = -errno;
  if (rc != 0) {
    close(fd);
    return rc;
  }
  return fd;
#else
  (void)name;
  return -ENOSYS;
#endif
}

int ipcring_writer_attach_mem(void *mem, size_t size, ipcring_writer **out)
{
  if (!mem || !out)
    return -EINVAL;
  *out = NULL;
  struct ipcring_shared h;
  if (size < sizeof h)
    return -EINVAL;
  /* One snapshot of the constant fields, as the reader takes it. */
  memcpy(&h, mem, sizeof h);
  atomic_signal_fence(memory_order_seq_cst);
  int rc = header_check(&h, size);
  if (rc != 0)
    return rc;
  struct ipcring_writer *w = writer_new();
  if (!w)
    return -ENOMEM;
  w->s.sh = mem;
  w->s.data = (uint8_t *)mem + IPCRING_HEADER_SIZE;
  w->s.cap = h.capacity;
  w->s.mask = h.capacity - 1;
  w->s.map_size = 0; /* the caller's memory: never unmapped */
  w->reserved_to = h.capacity; /* and all there: no pages to reserve */
  uint64_t widx = ipcring_load_acquire_u64(&w->s.sh->write_index);
  uint64_t ridx = ipcring_load_acquire_u64(&w->s.sh->read_index);
  if (!indices_ok(ridx, widx, w->s.cap)) {
    w->s.sh = NULL;
    writer_free(w);
    return -EPROTO;
  }
  w->widx = w->cidx = widx;
  w->cached_r = ridx;
  w->reader_lost_gen = ipcring_load_relaxed_u64(&w->s.sh->reader_generation);
  *out = w;
  return 0;
}

/* The lowest index whose bytes may still be in use: the reader's, or the
 * first claim the writer has not released (whichever is older). */
/* Indices run free and may wrap past 2^64 (a ring taken over with a large
 * index): compare them by their difference. */
static inline int idx_before(uint64_t a, uint64_t b)
{
  return (int64_t)(a - b) < 0;
}

static inline uint64_t writer_floor(const struct ipcring_writer *w, uint64_t r)
{
  if (w->ccount) {
    uint64_t c = w->claims[w->chead].start;
    if (idx_before(c, r))
      return c;
  }
  return r;
}

/* Is there room for `need` more bytes after the last claim? Refreshes the
 * cached read index. */
static int writer_poll_space_for(struct ipcring_writer *w, uint64_t need)
{
  /* Pairs with the reader's release store in reader_publish(): the reader is
   * done with everything below r. */
  uint64_t r = ipcring_load_acquire_u64(&w->s.sh->read_index);
  w->s.looks++;
  if (!indices_ok(r, w->widx, w->s.cap))
    return side_fail(&w->s);
  w->cached_r = r;
  return w->cidx + need - writer_floor(w, r) <= w->s.cap;
}

struct space_wait {
  struct ipcring_writer *w;
  uint64_t need;
};

static int writer_poll_space(void *self)
{
  struct space_wait *sw = self;
  return writer_poll_space_for(sw->w, sw->need);
}

/* A sleep ended with no room: is the reader still there? Safe from two
 * threads at once (ipcring_writer_wait_read()): the loss of a generation is
 * reported to one caller only. */
static int writer_idle(void *self)
{
  struct ipcring_writer *w = ((struct space_wait *)self)->w;
  if (lock_held_by_other(w->s.lock_fd, IPCRING_LOCK_READER))
    return 0;
  uint64_t gen = ipcring_load_relaxed_u64(&w->s.sh->reader_generation);
  uint64_t lost = atomic_load_explicit(&w->reader_lost_gen, memory_order_relaxed);
  if (gen == lost)
    return 0; /* already reported (or never attached): wait for a new one */
  if (!atomic_compare_exchange_strong_explicit(&w->reader_lost_gen, &lost, gen,
                                               memory_order_relaxed, memory_order_relaxed))
    return 0;
  return -EPIPE;
}

static int writer_wait_space(struct ipcring_writer *w, uint64_t need, int64_t timeout_ns)
{
  struct space_wait sw = { w, need };
  return side_wait(&w->s, &w->s.sh->writer_wait, writer_poll_space, writer_idle, &sw,
                   timeout_ns, 1);
}

/* The yield of a hand-off, for a reader that slept through a pause in the
 * stream: the wake before this one was HANDOFF_GAP_NS or more ago. Wakes
 * closer together mean a stream the reader nearly keeps up with, as on a
 * machine whose other CPUs are busy; there the yield only kept the reader
 * on this CPU, spinning beside the writer, or gave the CPU to another
 * process for a time slice (a 256 B stream beside one busy process took up
 * to 17 times as long). */
static void writer_handoff(struct ipcring_writer *w)
{
  int64_t now = now_ns();
  int64_t since = now - w->last_wake_ns;
  w->last_wake_ns = now;
  if (since < HANDOFF_GAP_NS)
    return;
  sched_yield();
  atomic_fetch_add_explicit(&w->handoffs, 1, memory_order_relaxed);
}

static inline void writer_publish(struct ipcring_writer *w)
{
  /* Pairs with the reader's acquire load in reader_poll(): the record bytes
   * written before this store are visible once the reader sees the index. */
  ipcring_store_release_u64(&w->s.sh->write_index, w->widx);
  /* Hand-off: the scheduler often puts a woken reader on the waker's CPU
   * (its own is idle, and waking an idle CPU, a virtual one above all, takes
   * tens of microseconds). There it waits until this thread blocks, which in
   * a pipeline is after the rest of this buffer's work and the next one's.
   * Yielding once lets it run now; with nothing else runnable here the yield
   * returns at once. Only a wake, never the streaming path, pays for it. */
  if (wake_peer(&w->s, &w->s.sh->reader_wait) && w->handoff)
    writer_handoff(w);
}

static inline void write_header(struct ipcring_writer *w, uint64_t idx, uint32_t len, uint32_t tag)
{
  struct ipcring_record rec = { len, tag };
  uint64_t v;
  memcpy(&v, &rec, sizeof v);
  ipcring_store_once_u64(w->s.data + (idx & w->s.mask), v);
}

/* Reserve the data area's pages up to offset end (and a step beyond) if the
 * writer has not been there yet: one system call per RESERVE_STEP on the
 * first lap, none after. A full /dev/shm is -ENOSPC from the call that
 * needed the room (nothing written, the ring unharmed), never SIGBUS. */
static int writer_reserve_to(struct ipcring_writer *w, uint64_t end)
{
  if (end <= w->reserved_to)
    return 0;
  uint64_t to = end - w->reserved_to < RESERVE_STEP ? w->reserved_to + RESERVE_STEP : end;
  to = (to + 4095) & ~(uint64_t)4095;
  if (to > w->s.cap)
    to = w->s.cap;
  int rc = reserve_range(w->s.fd, IPCRING_HEADER_SIZE + w->reserved_to, to - w->reserved_to);
  if (rc != 0)
    return rc;
  w->reserved_to = to;
  return 0;
}

/* Find room for a record of len payload bytes after the last claim, waiting
 * for the reader if it must. On success *start is where the room begins and
 * *pos the record header; if they differ, a padding record at *start fills
 * the end of the data area (written, not yet published). */
static int writer_make_room(struct ipcring_writer *w, size_t len, int64_t timeout_ns,
                            uint64_t *start, uint64_t *pos)
{
  if (w->s.failed)
    return w->s.failed;
  if (w->eos)
    return -EPIPE;
  if (len > ipcring_max_payload(w->s.cap))
    return -EMSGSIZE;
  uint64_t need = ipcring_record_size(len);
  uint64_t off = w->cidx & w->s.mask;
  int rc;
  if (off >= HOT_WINDOW && w->s.cap >= HOT_MIN_CAP && !w->ccount) {
    /* Room for padding to the end and the record at offset 0 means the
     * reader has passed the start of this lap: go back there. */
    uint64_t wrap = w->s.cap - off + need;
    int room = w->cidx + wrap - w->cached_r <= w->s.cap;
    if (!room && w->cidx - w->hot_checked >= HOT_CHECK_EVERY) {
      w->hot_checked = w->cidx;
      /* Pairs with the reader's release store in reader_publish(). */
      uint64_t r = ipcring_load_acquire_u64(&w->s.sh->read_index);
      w->s.looks++;
      if (!indices_ok(r, w->widx, w->s.cap))
        return side_fail(&w->s);
      w->cached_r = r;
      room = w->cidx + wrap - r <= w->s.cap;
    }
    if (room && (rc = writer_reserve_to(w, off + IPCRING_RECORD_HEADER)) != 0)
      return rc;
    if (room) {
      write_header(w, w->cidx, IPCRING_PAD_LEN, 0);
      w->widx = w->cidx = w->cidx + (w->s.cap - off);
      writer_publish(w);
      off = 0;
    }
  }
  uint64_t pad = off + need > w->s.cap ? w->s.cap - off : 0;
  if (pad && !w->ccount) {
    /* Nothing else in flight: publish the padding on its own as soon as it
     * fits, so that a record of up to a whole ring can follow it. */
    if (w->cidx + pad - w->cached_r > w->s.cap && (rc = writer_wait_space(w, pad, timeout_ns)) != 0)
      return rc;
    if ((rc = writer_reserve_to(w, off + IPCRING_RECORD_HEADER)) != 0)
      return rc;
    write_header(w, w->cidx, IPCRING_PAD_LEN, 0);
    w->widx = w->cidx = w->cidx + pad;
    writer_publish(w);
    pad = 0;
  }
  if (w->cidx + pad + need - writer_floor(w, w->cached_r) > w->s.cap) {
    /* Only the reader can make room. If even an empty ring (the reader at
     * widx) would not have it, our own claims are in the way: waiting could
     * never end. */
    if (w->ccount && w->cidx + pad + need - writer_floor(w, w->widx) > w->s.cap)
      return -ENOBUFS;
    if ((rc = writer_wait_space(w, pad + need, timeout_ns)) != 0)
      return rc;
  }
  if (pad && (rc = writer_reserve_to(w, off + IPCRING_RECORD_HEADER)) != 0)
    return rc;
  if ((rc = writer_reserve_to(w, ((w->cidx + pad) & w->s.mask) + need)) != 0)
    return rc;
  if (pad)
    write_header(w, w->cidx, IPCRING_PAD_LEN, 0);
  *start = w->cidx;
  *pos = w->cidx + pad;
  return 0;
}

int ipcring_writer_reserve(ipcring_writer *w, size_t len, int64_t timeout_ns, void **ptr)
{
  if (w->reserved_claim) {
    /* A reservation that was never committed gives its claim back. */
    ipcring_writer_claim_discard(w, w->reserved_claim - 1);
    w->reserved_claim = 0;
  }
  w->reserved = 0;
  if (w->ccount) {
    /* Claims are open: this reservation queues behind them. */
    uint64_t id;
    int rc = ipcring_writer_claim(w, len, timeout_ns, ptr, &id);
    if (rc != 0)
      return rc;
    w->reserved = ipcring_record_size(len);
    w->reserved_len = len;
    w->reserved_claim = id + 1;
    return 0;
  }
  uint64_t start, pos;
  int rc = writer_make_room(w, len, timeout_ns, &start, &pos);
  if (rc != 0)
    return rc;
  w->reserved = ipcring_record_size(len);
  w->reserved_len = len;
  *ptr = w->s.data + (pos & w->s.mask) + IPCRING_RECORD_HEADER;
  return 0;
}

int ipcring_writer_commit(ipcring_writer *w, size_t len, uint32_t tag)
{
  if (!w->reserved || len > w->reserved_len || tag == IPCRING_TAG_SKIP)
    return -EINVAL;
  if (w->reserved_claim) {
    uint64_t id = w->reserved_claim - 1;
    w->reserved_claim = 0;
    w->reserved = 0;
    int rc = ipcring_writer_claim_submit(w, id, len, tag);
    ipcring_writer_claim_release(w, id);
    return rc;
  }
  write_header(w, w->widx, (uint32_t)len, tag);
  w->widx += ipcring_record_size(len);
  w->cidx = w->widx;
  w->reserved = 0;
  w->s.records++;
  w->s.bytes += len;
  writer_publish(w);
  return 0;
}

int ipcring_writer_push(ipcring_writer *w, const void *data, size_t len, uint32_t tag,
                        int64_t timeout_ns)
{
  if (tag == IPCRING_TAG_SKIP)
    return -EINVAL;
  void *p;
  int rc = ipcring_writer_reserve(w, len, timeout_ns, &p);
  if (rc != 0)
    return rc;
  if (len)
    memcpy(p, data, len);
  return ipcring_writer_commit(w, len, tag);
}

int ipcring_writer_pushv(ipcring_writer *w, const struct iovec *iov, int iovcnt, uint32_t tag,
                         int64_t timeout_ns)
{
  if (iovcnt < 0 || (iovcnt > 0 && !iov) || tag == IPCRING_TAG_SKIP)
    return -EINVAL;
  size_t len = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len > SIZE_MAX - len)
      return -EMSGSIZE;
    len += iov[i].iov_len;
  }
  void *p;
  int rc = ipcring_writer_reserve(w, len, timeout_ns, &p);
  if (rc != 0)
    return rc;
  uint8_t *d = p;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len)
      memcpy(d, iov[i].iov_base, iov[i].iov_len);
    d += iov[i].iov_len;
  }
  return ipcring_writer_commit(w, len, tag);
}

/* ---- Claims: several reservations open at once ------------------------ */

static struct claim *claim_find(struct ipcring_writer *w, uint64_t id)
{
  for (unsigned i = 0; i < w->ccount; i++) {
    struct claim *c = &w->claims[(w->chead + i) % IPCRING_CLAIMS_MAX];
    if (c->pos == id)
      return c;
  }
  return NULL;
}

/* Publish the finished claims at the front of the queue (in ring order), and
 * forget those that are published and released. */
static void claims_settle(struct ipcring_writer *w)
{
  uint64_t widx = w->widx;
  for (unsigned i = 0; i < w->ccount; i++) {
    struct claim *c = &w->claims[(w->chead + i) % IPCRING_CLAIMS_MAX];
    if (!idx_before(widx, c->end))
      continue;
    if (!c->finished)
      break;
    widx = c->end;
  }
  while (w->ccount) {
    struct claim *c = &w->claims[w->chead];
    if (idx_before(widx, c->end) || !c->released)
      break;
    w->chead = (w->chead + 1) % IPCRING_CLAIMS_MAX;
    w->ccount--;
  }
  if (!w->ccount && !w->reserved)
    w->cidx = idx_before(w->cidx, widx) ? widx : w->cidx;
  if (widx != w->widx) {
    w->widx = widx;
    writer_publish(w);
  }
}

int ipcring_writer_claim(ipcring_writer *w, size_t len, int64_t timeout_ns, void **ptr,
                         uint64_t *id)
{
  if (w->reserved && !w->reserved_claim)
    return -EBUSY; /* an ipcring_writer_reserve() is open: commit it first */
  if (w->ccount == IPCRING_CLAIMS_MAX)
    return -ENOBUFS;
  uint64_t start, pos;
  int rc = writer_make_room(w, len, timeout_ns, &start, &pos);
  if (rc != 0)
    return rc;
  struct claim *c = &w->claims[(w->chead + w->ccount) % IPCRING_CLAIMS_MAX];
  c->start = start;
  c->pos = pos;
  c->end = pos + ipcring_record_size(len);
  c->len = (uint32_t)len;
  c->finished = c->released = 0;
  w->ccount++;
  w->cidx = c->end;
  *ptr = w->s.data + (pos & w->s.mask) + IPCRING_RECORD_HEADER;
  *id = pos;
  return 0;
}

int ipcring_writer_claim_submit(ipcring_writer *w, uint64_t id, size_t len, uint32_t tag)
{
  struct claim *c = claim_find(w, id);
  if (!c || c->finished || len > c->len || tag == IPCRING_TAG_SKIP)
    return -EINVAL;
  if (w->s.failed)
    return w->s.failed;
  uint64_t used = ipcring_record_size(len);
  write_header(w, c->pos, (uint32_t)len, tag);
  if (c->pos + used < c->end) /* the unused tail becomes a skip record */
    write_header(w, c->pos + used, (uint32_t)(c->end - c->pos - used - IPCRING_RECORD_HEADER),
                 IPCRING_TAG_SKIP);
  c->finished = 1;
  w->s.records++;
  w->s.bytes += len;
  claims_settle(w);
  return 0;
}

int ipcring_writer_claim_discard(ipcring_writer *w, uint64_t id)
{
  struct claim *c = claim_find(w, id);
  if (!c || c->finished)
    return -EINVAL;
  unsigned last = (w->chead + w->ccount - 1) % IPCRING_CLAIMS_MAX;
  if (c == &w->claims[last] && !idx_before(c->start, w->widx)) {
    /* The newest claim, not published: give its room back. */
    w->cidx = c->start;
    w->ccount--;
    claims_settle(w);
    return 0;
  }
  write_header(w, c->pos, (uint32_t)(c->end - c->pos - IPCRING_RECORD_HEADER), IPCRING_TAG_SKIP);
  c->finished = c->released = 1;
  claims_settle(w);
  return 0;
}

int ipcring_writer_claim_skip(ipcring_writer *w, uint64_t id)
{
  struct claim *c = claim_find(w, id);
  if (!c || c->finished)
    return -EINVAL;
  write_header(w, c->pos, (uint32_t)(c->end - c->pos - IPCRING_RECORD_HEADER), IPCRING_TAG_SKIP);
  c->finished = 1;
  claims_settle(w);
  return 0;
}

int ipcring_writer_claim_release(ipcring_writer *w, uint64_t id)
{
  struct claim *c = claim_find(w, id);
  if (!c || !c->finished)
    return -EINVAL;
  c->released = 1;
  claims_settle(w);
  return 0;
}

unsigned ipcring_writer_claims(ipcring_writer *w)
{
  return w->ccount;
}

int ipcring_writer_eos(ipcring_writer *w)
{
  if (w->s.failed)
    return w->s.failed;
  w->reserved = 0;
  w->reserved_claim = 0;
  w->eos = 1;
  /* Pairs with the reader's acquire load of eos in reader_poll(), which it
   * does before loading write_index: a reader that sees eos sees every
   * record committed before it. */
  ipcring_store_release_u32(&w->s.sh->eos, 1);
  wake_peer(&w->s, &w->s.sh->reader_wait);
  return 0;
}

void ipcring_writer_interrupt(ipcring_writer *w)
{
  side_interrupt(&w->s, &w->s.sh->writer_wait);
}

void ipcring_writer_clear_interrupt(ipcring_writer *w)
{
  atomic_store_explicit(&w->s.interrupted, 0, memory_order_seq_cst);
}

static int writer_poll_reader(void *self)
{
  struct ipcring_writer *w = self;
  if (w->s.failed)
    return w->s.failed;
  return lock_held_by_other(w->s.lock_fd, IPCRING_LOCK_READER);
}

static int idle_keep_waiting(void *self)
{
  (void)self;
  return 0;
}

int ipcring_writer_wait_reader(ipcring_writer *w, int64_t timeout_ns)
{
  /* Each check is a system call, so no spinning: a reader's attach wakes us,
   * and every sleep slice checks again. */
  return side_wait(&w->s, &w->s.sh->writer_wait, writer_poll_reader, idle_keep_waiting, w,
                   timeout_ns, 0);
}

static int writer_poll_drained(void *self)
{
  struct ipcring_writer *w = ((struct space_wait *)self)->w;
  /* Pairs with the reader's release store in reader_publish(). */
  uint64_t r = ipcring_load_acquire_u64(&w->s.sh->read_index);
  if (!indices_ok(r, w->widx, w->s.cap))
    return side_fail(&w->s);
  w->cached_r = r;
  return r == w->widx;
}

int ipcring_writer_flush(ipcring_writer *w, int64_t timeout_ns)
{
  if (w->s.failed)
    return w->s.failed;
  struct space_wait sw = { w, 0 };
  return side_wait(&w->s, &w->s.sh->writer_wait, writer_poll_drained, writer_idle, &sw,
                   timeout_ns, 1);
}

static int64_t spin_clamp(int64_t ns)
{
  return ns < 0 ? SPIN_NS : ns > NSEC_PER_SEC ? NSEC_PER_SEC : ns;
}

void ipcring_writer_set_spin(ipcring_writer *w, int64_t ns)
{
  w->s.spin_ns = w->s.spin_cur = spin_clamp(ns);
}

void ipcring_reader_set_spin(ipcring_reader *r, int64_t ns)
{
  r->s.spin_ns = r->s.spin_cur = spin_clamp(ns);
}

void ipcring_writer_set_handoff(ipcring_writer *w, int on)
{
  w->handoff = on != 0;
}

uint64_t ipcring_writer_read_index(ipcring_writer *w)
{
  return w->cached_r;
}

struct read_wait {
  struct ipcring_writer *w; /* first, as in struct space_wait: writer_idle() */
  uint64_t seen;
};

/* Only shared fields and atomics: safe beside other calls on the writer. */
static int writer_poll_read_moved(void *self)
{
  struct read_wait *rw = self;
  /* Pairs with the reader's release store in reader_publish(). */
  return ipcring_load_acquire_u64(&rw->w->s.sh->read_index) != rw->seen;
}

int ipcring_writer_wait_read(ipcring_writer *w, uint64_t seen, int64_t timeout_ns)
{
  struct read_wait rw = { w, seen };
  return side_wait(&w->s, &w->s.sh->writer_wait, writer_poll_read_moved, writer_idle, &rw,
                   timeout_ns, 1);
}

uint64_t ipcring_writer_reader_generation(ipcring_writer *w)
{
  return ipcring_load_relaxed_u64(&w->s.sh->reader_generation);
}

int ipcring_writer_reader_alive(ipcring_writer *w)
{
  return lock_held_by_other(w->s.lock_fd, IPCRING_LOCK_READER);
}

int ipcring_writer_unlink(ipcring_writer *w)
{
  if (!w->path)
    return -EINVAL;
  struct stat st;
  if (stat(w->path, &st) != 0)
    return -errno;
  if (st.st_dev != w->dev || st.st_ino != w->ino)
    return -ESTALE;
  return unlink(w->path) == 0 ? 0 : -errno;
}

void ipcring_writer_close(ipcring_writer *w)
{
  if (!w)
    return;
  if (w->s.sh)
    side_detach(&w->s, &w->s.sh->reader_wait);
  writer_free(w);
}

/* ---- Reader ------------------------------------------------------------ */

static struct ipcring_reader *reader_new(void)
{
  struct ipcring_reader *r = calloc(1, sizeof *r);
  if (r) {
    r->s.fd = r->s.lock_fd = -1;
    r->s.spin_ns = r->s.spin_cur = SPIN_NS;
    r->s.batch_looks = 1;
    r->s.look_pauses = SPIN_PAUSES;
    r->writer_lost_gen = UINT64_MAX;
    pthread_mutex_init(&r->release_lock, NULL);
  }
  return r;
}

static void reader_free(struct ipcring_reader *r)
{
  if (!r)
    return;
  side_unmap(&r->s);
  pthread_mutex_destroy(&r->release_lock);
  free(r);
}

/* Validate the ring in mem (size bytes) and set up the reader's private state.
 * Shared by the file and memory attach paths. */
static int reader_setup(struct ipcring_reader *r, void *mem, uint64_t size)
{
  struct ipcring_shared h;
  if (size < sizeof h)
    return -EINVAL;
  /* One snapshot of the constant fields; only the copy is used. */
  memcpy(&h, mem, sizeof h);
  atomic_signal_fence(memory_order_seq_cst);
  int rc = header_check(&h, size);
  if (rc != 0)
    return rc;
  r->s.sh = mem;
  r->s.data = (uint8_t *)mem + IPCRING_HEADER_SIZE;
  r->s.cap = h.capacity;
  r->s.mask = h.capacity - 1;
  uint64_t ridx = ipcring_load_acquire_u64(&r->s.sh->read_index);
  uint64_t widx = ipcring_load_acquire_u64(&r->s.sh->write_index);
  if (!indices_ok(ridx, widx, r->s.cap))
    return -EPROTO;
  r->ridx = ridx;
  atomic_store(&r->released, ridx);
  atomic_store(&r->free_to, ridx);
  atomic_store(&r->take_end, 0);
  atomic_store(&r->takes_used, 0);
  r->cached_w = widx;
  return 0;
}

/* Validate the open file and attach to it. inherited: the descriptor came
 * from ipcring_reader_open_fd() rather than from opening a path.
 *
 * Who may change the file's size decides what the reader trusts. A memfd
 * sealed against shrinking and growing (seals cannot be removed) has a size
 * nobody can change: it is accepted whatever its mode (a memfd is 0777 and
 * has no path to open it by). Any other file must pass the checks of a path
 * ring: ours (unless IPCRING_OPEN_ANY_OWNER), no group or other permission
 * bits (IPCRING_OPEN_GROUP_ACCESS allows group bits and other-read), never
 * writable by others. An
 * inherited descriptor of an unlinked file without those seals (an unsealed
 * memfd, an O_TMPFILE) is refused: nothing about it but the descriptor says
 * whose it is, and whoever passed it can resize it. A truncation of an
 * accepted unsealed file is caught by the SIGBUS guard. */
static int reader_attach_fd(struct ipcring_reader *r, unsigned flags, int inherited)
{
  /* Seals first: once seen they stay, so the size read after them holds. */
  int seals = fd_seals(r->s.fd);
  struct stat st;
  if (fstat(r->s.fd, &st) != 0)
    return -errno;
  if (!S_ISREG(st.st_mode))
    return -EINVAL;
  int sealed = SIZE_SEALS && (seals & SIZE_SEALS) == SIZE_SEALS;
  if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
    return -EBADFD; /* we could not map it writable */
  if (inherited && !sealed && st.st_nlink == 0)
    return -EBADFD;
  if (!(flags & IPCRING_OPEN_ANY_OWNER) && st.st_uid != geteuid())
    return -EPERM;
  if (!sealed) {
    mode_t allowed = (flags & IPCRING_OPEN_GROUP_ACCESS) ? (S_IRWXG | S_IROTH) : 0;
    if ((st.st_mode & S_IWOTH) || (st.st_mode & (S_IRWXG | S_IRWXO) & ~allowed))
      return -EPERM;
  }
  struct ipcring_shared h;
  if ((uint64_t)st.st_size < sizeof h || pread(r->s.fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
      h.magic != IPCRING_MAGIC)
    return -EINVAL; /* not a ring at all */
  if ((uint64_t)st.st_size < IPCRING_HEADER_SIZE + IPCRING_CAPACITY_MIN ||
      (uint64_t)st.st_size > IPCRING_HEADER_SIZE + IPCRING_CAPACITY_MAX)
    return -EPROTO; /* a ring, but its file has the wrong size */
  int rc = header_check(&h, (uint64_t)st.st_size);
  if (rc != 0)
    return rc;
  if ((rc = lock_take(r->s.lock_fd, IPCRING_LOCK_READER)) != 0)
    return rc;
  if ((rc = side_map(&r->s, r->s.fd, h.capacity)) != 0)
    return rc;
  struct ipcring_shared *sh = r->s.sh;
  rc = reader_setup(r, sh, r->s.map_size);
  if (r->s.failed)
    return r->s.failed; /* truncated while we looked: the zeros explain rc */
  if (rc != 0)
    return rc;
  atomic_store(&sh->reader_pid, (int32_t)getpid());
  /* The back channel starts empty for us: whatever an earlier reader sent
   * and the writer has not read is dropped. */
  r->bw = ipcring_load_acquire_u64(&sh->back_read);
  ipcring_store_release_u64(&sh->back_write, r->bw);
  atomic_fetch_add(&sh->reader_generation, 1);
  ipcring_store_release_u32(&sh->reader_wait, IPCRING_WAIT_IDLE);
  /* A writer blocked on a full ring or in wait_reader() sees us now. */
  wake_peer(&r->s, &sh->writer_wait);
  return 0;
}

int ipcring_reader_open(const char *path, unsigned flags, ipcring_reader **out)
{
  if (!path || !*path || !out)
    return -EINVAL;
  *out = NULL;
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return -errno;
  struct ipcring_reader *r = reader_new();
  if (!r) {
    close(fd);
    return -ENOMEM;
  }
  r->s.fd = r->s.lock_fd = fd;
  int rc = reader_attach_fd(r, flags, 0);
  if (rc != 0) {
    reader_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int ipcring_reader_open_fd(int fd, unsigned flags, ipcring_reader **out)
{
  if (fd < 0 || !out)
    return -EINVAL;
  *out = NULL;
  struct ipcring_reader *r = reader_new();
  if (!r)
    return -ENOMEM;
  int rc = 0;
  r->s.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (r->s.fd < 0 || (r->s.lock_fd = private_lock_fd(r->s.fd)) < 0)
    rc = -errno;
  if (rc == 0)
    rc = reader_attach_fd(r, flags, 1);
  if (rc != 0) {
    reader_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int ipcring_reader_attach_mem(void *mem, size_t size, ipcring_reader **out)
{
  *out = NULL;
  struct ipcring_reader *r = reader_new();
  if (!r)
    return -ENOMEM;
  int rc = reader_setup(r, mem, size);
  if (rc != 0) {
    r->s.sh = NULL;
    reader_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* Is there a record? Refreshes the cached write index. 1 = data, 0 = none,
 * -ENODATA at end of stream, -EPROTO on a bad index. */
static int reader_poll(void *self)
{
  struct ipcring_reader *r = self;
  if (r->s.failed)
    return r->s.failed;
  /* eos first, then the index: pairs with the writer's release store of eos
   * in ipcring_writer_eos(), so seeing eos means seeing its last index. */
  uint32_t eos = ipcring_load_acquire_u32(&r->s.sh->eos);
  /* Pairs with the writer's release store in writer_publish(). */
  uint64_t w = ipcring_load_acquire_u64(&r->s.sh->write_index);
  r->s.looks++;
  if (!indices_ok(atomic_load_explicit(&r->released, memory_order_relaxed), w, r->s.cap) ||
      idx_before(w, r->ridx))
    return side_fail(&r->s);
  r->cached_w = w;
  if (eos > 1)
    return side_fail(&r->s); /* only 0 and 1 are defined */
  if (w != r->ridx)
    return 1;
  return eos ? -ENODATA : 0;
}

/* A sleep ended with no data: is the writer still there? */
static int reader_idle(void *self)
{
  struct ipcring_reader *r = self;
  if (lock_held_by_other(r->s.lock_fd, IPCRING_LOCK_WRITER))
    return 0;
  /* It may have committed just before dying. */
  int rc = reader_poll(r);
  if (rc != 0)
    return rc > 0 ? 1 : rc;
  uint64_t gen = ipcring_load_relaxed_u64(&r->s.sh->writer_generation);
  if (gen == r->writer_lost_gen)
    return 0;
  r->writer_lost_gen = gen;
  return -EPIPE;
}

/* Publish a new read index (idx > released). The caller is the only one
 * releasing: the reader's thread before any take, else under release_lock. */
static void reader_publish(struct ipcring_reader *r, uint64_t idx)
{
  atomic_store_explicit(&r->released, idx, memory_order_relaxed);
  /* Pairs with the writer's acquire loads of read_index (writer_poll_space_for()
   * and friends): we no longer touch anything below idx. */
  ipcring_store_release_u64(&r->s.sh->read_index, idx);
  wake_peer(&r->s, &r->s.sh->writer_wait);
}

/* Everything below ridx has been consumed on the reader's thread (skipped, or
 * peeked and released): free it, unless taken records before it are still
 * out; then the release of the last of them frees it. */
static void reader_consumed(struct ipcring_reader *r)
{
  if (!r->takes_used) {
    reader_publish(r, r->ridx);
    return;
  }
  /* Pairs with the acquire load in ipcring_reader_release_to(). */
  atomic_store_explicit(&r->free_to, r->ridx, memory_order_release);
  pthread_mutex_lock(&r->release_lock);
  uint64_t rel = atomic_load_explicit(&r->released, memory_order_relaxed);
  if (!idx_before(rel, atomic_load_explicit(&r->take_end, memory_order_relaxed)) &&
      idx_before(rel, r->ridx))
    reader_publish(r, r->ridx);
  pthread_mutex_unlock(&r->release_lock);
}

/* Find the next record at ridx, skipping padding and skip records; checks
 * every field of the header copy against the capacity and what the writer
 * published. */
static int reader_next(struct ipcring_reader *r, int64_t timeout_ns, uint64_t *off_out,
                       struct ipcring_record *out, uint64_t *size_out)
{
  for (;;) {
    if (r->ridx == r->cached_w) {
      int rc = side_wait(&r->s, &r->s.sh->reader_wait, reader_poll, reader_idle, r, timeout_ns, 1);
      if (rc != 0)
        return rc;
    }
    uint64_t off = r->ridx & r->s.mask;
    uint64_t avail = r->cached_w - r->ridx;
    struct ipcring_record rec;
    uint64_t v = ipcring_load_once_u64(r->s.data + off);
    memcpy(&rec, &v, sizeof rec);
    if (rec.len == IPCRING_PAD_LEN) {
      uint64_t skip = r->s.cap - off;
      if (off == 0 || skip > avail)
        return side_fail(&r->s);
      r->ridx += skip;
      reader_consumed(r);
      continue;
    }
    uint64_t size = ipcring_record_size(rec.len);
    if (rec.len > ipcring_max_payload(r->s.cap) || off + size > r->s.cap || size > avail)
      return side_fail(&r->s);
    if (rec.tag == IPCRING_TAG_SKIP) {
      r->ridx += size;
      reader_consumed(r);
      continue;
    }
    *off_out = off;
    *out = rec;
    *size_out = size;
    return 0;
  }
}

int ipcring_reader_peek(ipcring_reader *r, const void **ptr, size_t *len, uint32_t *tag,
                        int64_t timeout_ns)
{
  if (r->s.failed)
    return r->s.failed;
  if (r->held) {
    *ptr = r->s.data + (r->ridx & r->s.mask) + IPCRING_RECORD_HEADER;
    *len = r->held_len;
    *tag = r->held_tag;
    return 0;
  }
  uint64_t off, size;
  struct ipcring_record rec;
  int rc = reader_next(r, timeout_ns, &off, &rec, &size);
  if (rc != 0)
    return rc;
  r->held = size;
  r->held_len = rec.len;
  r->held_tag = rec.tag;
  *ptr = r->s.data + off + IPCRING_RECORD_HEADER;
  *len = rec.len;
  *tag = rec.tag;
  return 0;
}

int ipcring_reader_release(ipcring_reader *r)
{
  if (!r->held)
    return -EINVAL;
  r->ridx += r->held;
  r->s.records++;
  r->s.bytes += r->held_len;
  r->held = 0;
  reader_consumed(r);
  return 0;
}

int ipcring_reader_take(ipcring_reader *r, struct ipcring_record_ref *ref, int64_t timeout_ns)
{
  if (r->s.failed)
    return r->s.failed;
  if (r->held)
    return -EBUSY; /* a peeked record comes first: release it */
  uint64_t off, size;
  struct ipcring_record rec;
  int rc = reader_next(r, timeout_ns, &off, &rec, &size);
  if (rc != 0)
    return rc;
  r->ridx += size;
  r->s.records++;
  r->s.bytes += rec.len;
  ref->data = r->s.data + off + IPCRING_RECORD_HEADER;
  ref->len = rec.len;
  ref->tag = rec.tag;
  ref->offset = IPCRING_DATA_OFFSET + off + IPCRING_RECORD_HEADER;
  ref->end = r->ridx;
  /* take_end before free_to: ipcring_reader_release_to() loads them in the
   * opposite order, so a free_to it sees is never past a take it does not. */
  atomic_store_explicit(&r->takes_used, 1, memory_order_relaxed);
  atomic_store_explicit(&r->take_end, r->ridx, memory_order_release);
  atomic_store_explicit(&r->free_to, r->ridx, memory_order_release);
  return 0;
}

int ipcring_reader_release_to(ipcring_reader *r, uint64_t end)
{
  pthread_mutex_lock(&r->release_lock);
  int rc = 0;
  /* Pairs with the release stores in ipcring_reader_take() and
   * reader_consumed(). */
  uint64_t f = atomic_load_explicit(&r->free_to, memory_order_acquire);
  uint64_t te = atomic_load_explicit(&r->take_end, memory_order_acquire);
  uint64_t rel = atomic_load_explicit(&r->released, memory_order_relaxed);
  if (!r->takes_used || idx_before(te, end)) {
    rc = -EINVAL;
  } else if (idx_before(rel, end)) {
    /* The last take released: what was consumed after it goes too. */
    if (end == te && idx_before(end, f))
      end = f;
    reader_publish(r, end);
  }
  pthread_mutex_unlock(&r->release_lock);
  return rc;
}

/* ---- Back channel ------------------------------------------------------ */

static inline uint8_t *back_area(struct ipcring_side *s)
{
  return (uint8_t *)s->sh + IPCRING_BACK_OFFSET;
}

int ipcring_reader_send(ipcring_reader *r, const void *data, size_t len, uint32_t tag)
{
  if (r->s.failed)
    return r->s.failed;
  if (tag == IPCRING_TAG_SKIP || (len && !data))
    return -EINVAL;
  if (len > IPCRING_BACK_MAX)
    return -EMSGSIZE;
  /* Pairs with the writer's release store of back_read in
   * ipcring_writer_recv(): it is done with everything below rd. */
  uint64_t rd = ipcring_load_acquire_u64(&r->s.sh->back_read);
  if (!indices_ok(rd, r->bw, IPCRING_BACK_SIZE))
    return side_fail(&r->s);
  uint64_t need = ipcring_record_size(len);
  uint64_t off = r->bw & (IPCRING_BACK_SIZE - 1);
  uint64_t pad = off + need > IPCRING_BACK_SIZE ? IPCRING_BACK_SIZE - off : 0;
  if (r->bw + pad + need - rd > IPCRING_BACK_SIZE)
    return -EAGAIN;
  uint8_t *area = back_area(&r->s);
  struct ipcring_record rec = { IPCRING_PAD_LEN, 0 };
  uint64_t v;
  if (pad) {
    memcpy(&v, &rec, sizeof v);
    ipcring_store_once_u64(area + off, v);
    r->bw += pad;
    off = 0;
  }
  if (len)
    memcpy(area + off + IPCRING_RECORD_HEADER, data, len);
  rec.len = (uint32_t)len;
  rec.tag = tag;
  memcpy(&v, &rec, sizeof v);
  ipcring_store_once_u64(area + off, v);
  r->bw += need;
  /* Pairs with the writer's acquire load of back_write in
   * ipcring_writer_recv(): the record bytes are visible with the index. */
  ipcring_store_release_u64(&r->s.sh->back_write, r->bw);
  return 0;
}

int ipcring_writer_recv(ipcring_writer *w, void *buf, size_t size, size_t *len, uint32_t *tag)
{
  if (w->s.failed)
    return w->s.failed;
  uint8_t *area = back_area(&w->s);
  for (;;) {
    /* Pairs with the reader's release store in ipcring_reader_send(). */
    uint64_t wr = ipcring_load_acquire_u64(&w->s.sh->back_write);
    if (wr == w->br)
      return -EAGAIN;
    if (!indices_ok(w->br, wr, IPCRING_BACK_SIZE))
      return side_fail(&w->s);
    uint64_t off = w->br & (IPCRING_BACK_SIZE - 1);
    uint64_t avail = wr - w->br;
    struct ipcring_record rec;
    uint64_t v = ipcring_load_once_u64(area + off);
    memcpy(&rec, &v, sizeof rec);
    if (rec.len == IPCRING_PAD_LEN) {
      uint64_t skip = IPCRING_BACK_SIZE - off;
      if (off == 0 || skip > avail)
        return side_fail(&w->s);
      w->br += skip;
      ipcring_store_release_u64(&w->s.sh->back_read, w->br);
      continue;
    }
    uint64_t rsize = ipcring_record_size(rec.len);
    if (rec.len > IPCRING_BACK_MAX || off + rsize > IPCRING_BACK_SIZE || rsize > avail ||
        rec.tag == IPCRING_TAG_SKIP)
      return side_fail(&w->s);
    if (len)
      *len = rec.len;
    if (tag)
      *tag = rec.tag;
    if (rec.len > size)
      return -EMSGSIZE;
    if (rec.len)
      memcpy(buf, area + off + IPCRING_RECORD_HEADER, rec.len);
    w->br += rsize;
    /* Pairs with the reader's acquire load in ipcring_reader_send(): the
     * room below br may be written again. */
    ipcring_store_release_u64(&w->s.sh->back_read, w->br);
    return (int)rec.len;
  }
}

int ipcring_reader_fd(ipcring_reader *r)
{
  return r->s.fd;
}

int ipcring_reader_register_view(ipcring_reader *r, void *addr, size_t len)
{
  if (!r || r->s.fd < 0)
    return -EINVAL;
  return ipcring_guard_add(addr, len, &r->s.failed);
}

int ipcring_reader_unregister_view(ipcring_reader *r, void *addr)
{
  if (!r)
    return -EINVAL;
  if (addr == (void *)r->s.sh)
    return -ENOENT; /* the reader's own mapping is not a view */
  return ipcring_guard_remove(addr, &r->s.failed);
}

int ipcring_reader_pop(ipcring_reader *r, void *buf, size_t size, size_t *len, uint32_t *tag,
                       int64_t timeout_ns)
{
  const void *p;
  size_t n;
  uint32_t t;
  int rc = ipcring_reader_peek(r, &p, &n, &t, timeout_ns);
  if (rc != 0)
    return rc;
  if (len)
    *len = n;
  if (tag)
    *tag = t;
  if (n > size)
    return -EMSGSIZE;
  if (n)
    memcpy(buf, p, n);
  ipcring_reader_release(r);
  return (int)n;
}

int ipcring_reader_writer_alive(ipcring_reader *r)
{
  return lock_held_by_other(r->s.lock_fd, IPCRING_LOCK_WRITER);
}

void ipcring_reader_interrupt(ipcring_reader *r)
{
  side_interrupt(&r->s, &r->s.sh->reader_wait);
}

void ipcring_reader_clear_interrupt(ipcring_reader *r)
{
  atomic_store_explicit(&r->s.interrupted, 0, memory_order_seq_cst);
}

void ipcring_reader_close(ipcring_reader *r)
{
  if (!r)
    return;
  if (r->s.sh && r->s.fd >= 0)
    side_detach(&r->s, &r->s.sh->writer_wait); /* a blocked writer notices at once */
  if (r->s.fd < 0)
    r->s.sh = NULL; /* attach_mem: not ours to unmap */
  reader_free(r);
}

/* ---- Information ------------------------------------------------------ */

static void side_info(struct ipcring_side *s, struct ipcring_info *info, int peer_byte)
{
  struct ipcring_shared *sh = s->sh;
  info->capacity = s->cap;
  info->writer_generation = ipcring_load_relaxed_u64(&sh->writer_generation);
  info->reader_generation = ipcring_load_relaxed_u64(&sh->reader_generation);
  info->writer_pid = atomic_load_explicit(&sh->writer_pid, memory_order_relaxed);
  info->reader_pid = atomic_load_explicit(&sh->reader_pid, memory_order_relaxed);
  info->eos = ipcring_load_relaxed_u32(&sh->eos) != 0;
  info->peer_alive = lock_held_by_other(s->lock_fd, peer_byte);
  info->records = s->records;
  info->bytes = s->bytes;
  info->waits = s->waits;
  info->wakes = s->wakes;
  info->looks = s->looks;
}

int ipcring_writer_info(ipcring_writer *w, struct ipcring_info *info)
{
  memset(info, 0, sizeof *info);
  side_info(&w->s, info, IPCRING_LOCK_READER);
  info->write_index = w->widx;
  info->read_index = ipcring_load_acquire_u64(&w->s.sh->read_index);
  info->handoffs = atomic_load_explicit(&w->handoffs, memory_order_relaxed);
  return w->s.failed;
}

int ipcring_reader_info(ipcring_reader *r, struct ipcring_info *info)
{
  memset(info, 0, sizeof *info);
  side_info(&r->s, info, IPCRING_LOCK_WRITER);
  info->read_index = atomic_load_explicit(&r->released, memory_order_relaxed);
  info->write_index = ipcring_load_acquire_u64(&r->s.sh->write_index);
  return r->s.failed;
}
