/* ipcring: a single-producer/single-consumer ring in a shared mapping.
 *
 * One writer process and one reader process share a file (a path, usually in
 * /dev/shm, or an inherited memfd). The writer appends records, the reader
 * consumes them in order. Streaming makes no system calls: each side caches
 * the other's index and only sleeps on a futex after spinning briefly and
 * announcing itself, so the other side issues a wake only when someone sleeps.
 *
 * Records are an 8-byte header (payload length + a 32-bit tag of the caller's
 * choosing) followed by the payload, 8-byte aligned and never split across
 * the end of the ring. Any payload up to ipcring_max_payload(capacity) is
 * accepted (it may have to wait for the reader); a larger one fails at once
 * with -EMSGSIZE.
 *
 * The reader treats the shared memory as hostile: every shared field is read
 * once into a local, checked against the capacity and the reader's private
 * index, and only the local is used. Any inconsistency makes the reader fail
 * with -EPROTO, and it stays failed.
 *
 * Every call returns 0 (or a length) on success and a negative errno value on
 * failure; the library never prints. Blocking calls take a timeout in
 * nanoseconds: 0 tries once, a negative value waits without a time limit
 * (but still returns on interrupt, end of stream or peer death). The codes a
 * blocking call can return besides the ordinary ones:
 *
 *   -EAGAIN     timeout 0 and the call would have had to wait
 *   -ETIMEDOUT  the timeout passed
 *   -ECANCELED  ipcring_*_interrupt() was called (until *_clear_interrupt())
 *   -ENODATA    reader: the writer closed the stream and all was read (EOS)
 *   -EPIPE      the peer died (or closed without EOS) and, for the reader,
 *               everything it committed was read. Reported once per peer;
 *               calling again waits for a new peer to attach.
 *   -EPROTO     the shared memory is inconsistent; sticky.
 *   -EFAULT     the ring file was truncated under the mapping (by the peer
 *               or anyone else who can write it); sticky. See below.
 *   -EMSGSIZE   writer: record larger than ipcring_max_payload();
 *               reader pop: the caller's buffer is too small (nothing consumed).
 *
 * Thread safety: each handle is used by one thread at a time, except the
 * *_interrupt() and *_clear_interrupt() calls, which may come from any thread.
 *
 * Truncation: a file that shrinks under a mapping raises SIGBUS on access.
 * The library installs one process-wide SIGBUS handler (at the first mapping;
 * faults outside its mappings go to the handler installed before it). A fault
 * inside a ring's mapping, on either side, replaces the faulting page with a
 * private zero page and fails the ring with the sticky -EFAULT: the access
 * that faulted reads zeros (at most the record being read or written at that
 * moment is garbage, as a hostile peer could make it anyway) and the next
 * call on the handle returns the error. A process that installs its own
 * SIGBUS handler after the library must chain to the previous one. A sealed
 * memfd (ipcring_memfd_create()) cannot be truncated at all.
 */
#ifndef IPCRING_H
#define IPCRING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IPCRING_VERSION_MAJOR 1
#define IPCRING_VERSION_MINOR 0

/* Capacity (bytes of the data area) must be a power of two in this range. */
#define IPCRING_CAPACITY_MIN ((uint64_t)4096)
#define IPCRING_CAPACITY_MAX ((uint64_t)1 << 30)
#define IPCRING_CAPACITY_DEFAULT ((uint64_t)64 << 20)

/* Size of the record header that precedes each payload. */
#define IPCRING_RECORD_HEADER 8u

/* Offset of the data area in the ring file (a page boundary): a reader may
 * map the data area a second time from here (see ipcring_reader_fd()). */
#define IPCRING_DATA_OFFSET 4096u

/* A tag the library keeps for itself: records that only fill room (the unused
 * end of a claim, a discarded claim). Readers never see them; writers may not
 * commit with it. */
#define IPCRING_TAG_SKIP UINT32_C(0xffffffff)

/* How many claims (ipcring_writer_claim()) a writer may have open at once. */
#define IPCRING_CLAIMS_MAX 64u

typedef struct ipcring_writer ipcring_writer;
typedef struct ipcring_reader ipcring_reader;

/* Flags for ipcring_writer_create() and ipcring_writer_create_fd(). */
enum {
  /* Refuse to take over a stale ring left by a dead writer (-EEXIST). */
  IPCRING_CREATE_NO_TAKEOVER = 1u << 0,
};

/* Flags for ipcring_reader_open() and ipcring_reader_open_fd(). */
enum {
  /* Accept a ring file owned by another user (by default: -EPERM). */
  IPCRING_OPEN_ANY_OWNER = 1u << 0,
  /* Accept a ring file its group may read and write and others may read (a
   * writer created with mode 0660 or 0644, say). Without it any group or
   * other permission bit gives -EPERM; a file others may write is always
   * refused. A sealed memfd is accepted whatever its mode. */
  IPCRING_OPEN_GROUP_ACCESS = 1u << 1,
};

/* Largest payload a ring of this capacity accepts. */
static inline size_t ipcring_max_payload(uint64_t capacity)
{
  return (size_t)(capacity - IPCRING_RECORD_HEADER);
}

/* Bytes a record with this payload takes in the ring. */
static inline uint64_t ipcring_record_size(size_t len)
{
  return IPCRING_RECORD_HEADER + (((uint64_t)len + 7u) & ~(uint64_t)7u);
}

/* A short English description of an error code returned by this library. */
const char *ipcring_strerror(int err);

/* ---- Writer ---------------------------------------------------------- */

/* Create the ring file at path with the given capacity (0 picks
 * IPCRING_CAPACITY_DEFAULT) and file mode (0 picks 0600). The file appears
 * atomically, fully initialised, with the pages of its header and first
 * 4 MiB reserved; the rest are reserved as the writer first reaches them (a
 * full /dev/shm is -ENOSPC from that call, never SIGBUS). If the path exists and
 * is a ring whose writer has died, the new writer takes it over: with the same
 * capacity it continues at the old write index (an attached reader goes on
 * reading); otherwise, if no reader is attached, the file is replaced, and if
 * one is, -ERANGE. A ring with a live writer gives -EBUSY; a file that is not
 * a ring, -EEXIST. */
int ipcring_writer_create(const char *path, uint64_t capacity, mode_t mode,
                          unsigned flags, ipcring_writer **out);

/* Initialise the ring in an open, empty or stale file descriptor (a memfd, for
 * example). The descriptor is duplicated; the caller keeps its own.
 *
 * A file sealed against shrinking or growing (ipcring_memfd_create()) keeps
 * its size: it must be IPCRING_HEADER_SIZE + a valid capacity, which capacity
 * must equal or be 0 (-EINVAL otherwise); if it is all zeros where the magic
 * goes it gets a fresh ring, else it is taken over like a stale ring. Any
 * other file is resized: an empty one gets a fresh ring of capacity (0: the
 * default), a non-empty one is taken over as a stale ring (capacity 0: the
 * one its size gives). */
int ipcring_writer_create_fd(int fd, uint64_t capacity, unsigned flags,
                             ipcring_writer **out);

/* A memfd for a ring of this capacity (0: the default): sized to
 * IPCRING_HEADER_SIZE + capacity, its pages reserved, sealed against
 * shrinking and growing and against further seals (F_SEAL_SHRINK |
 * F_SEAL_GROW | F_SEAL_SEAL), so neither side can ever truncate it. Returns
 * the descriptor (close-on-exec: clear FD_CLOEXEC to hand it to a program) or
 * a negative errno value (-ENOSYS without memfds). The writer creates its
 * ring in it with ipcring_writer_create_fd(fd, 0, ...), the reader opens it
 * with ipcring_reader_open_fd(). name is for /proc only (NULL: "ipcring"). */
int ipcring_memfd_create(uint64_t capacity, const char *name);

/* Zero copy: reserve room for a payload of len bytes and return a pointer to
 * it. Fill it, then ipcring_writer_commit(). One reservation at a time; a new
 * one drops an uncommitted one. With claims open it queues behind them, and
 * where only releasing those claims could make room it fails at once with
 * -ENOBUFS instead of waiting. */
int ipcring_writer_reserve(ipcring_writer *w, size_t len, int64_t timeout_ns,
                           void **ptr);

/* Publish the reserved record with its first len bytes (len <= reserved). */
int ipcring_writer_commit(ipcring_writer *w, size_t len, uint32_t tag);

/* Copy helpers on top of reserve/commit. */
int ipcring_writer_push(ipcring_writer *w, const void *data, size_t len,
                        uint32_t tag, int64_t timeout_ns);
int ipcring_writer_pushv(ipcring_writer *w, const struct iovec *iov, int iovcnt,
                         uint32_t tag, int64_t timeout_ns);

/* ---- Claims: several zero-copy records in flight ----------------------
 *
 * A claim is a reservation that can stay open while more are made, for a
 * producer that fills several records at once and finishes them in any order
 * (a buffer pool lending ring memory). The reader sees claimed records in the
 * order they were claimed: a submitted claim is published as soon as every
 * claim before it is submitted or discarded. A submitted claim's bytes stay
 * untouched by later claims until the writer also releases it, so the
 * producer may keep reading them after publishing (the reader must not write
 * them either). Claims are identified by the id the claim call returns.
 *
 * ipcring_writer_claim() waits for room like ipcring_writer_reserve(), but
 * where only the caller's own open or unreleased claims stand in the way it
 * fails at once with -ENOBUFS (waiting could never end), and after
 * IPCRING_CLAIMS_MAX open claims, too. Claims do not make the writer thread
 * safe: the caller serialises every call on w (ipcring_writer_wait_read()
 * excepted). End of stream drops claims that were never submitted. */
int ipcring_writer_claim(ipcring_writer *w, size_t len, int64_t timeout_ns, void **ptr,
                         uint64_t *id);
/* Publish the claim (in claim order) as a record of len <= claimed bytes. */
int ipcring_writer_claim_submit(ipcring_writer *w, uint64_t id, size_t len, uint32_t tag);
/* Give up a claim that was not submitted: the reader never sees it. */
int ipcring_writer_claim_discard(ipcring_writer *w, uint64_t id);
/* Finish a claim without publishing it (the reader never sees it) but keep
 * its bytes the writer's until released: for a record that must not hold up
 * later ones while its producer still uses the memory. */
int ipcring_writer_claim_skip(ipcring_writer *w, uint64_t id);
/* The writer is done with a submitted or skipped claim's bytes: the room can be reused
 * once the reader has read it. */
int ipcring_writer_claim_release(ipcring_writer *w, uint64_t id);
/* Number of claims open or not yet released. */
unsigned ipcring_writer_claims(ipcring_writer *w);

/* The reader's index as the writer last loaded it (no shared access). */
uint64_t ipcring_writer_read_index(ipcring_writer *w);

/* Wait until the reader's index differs from `seen` (from
 * ipcring_writer_read_index() after a call that could not find room), like
 * the other blocking calls. Unlike them it only looks at shared memory, so one
 * thread may wait here while another makes calls on w under the caller's
 * lock: the way to block without holding that lock. */
int ipcring_writer_wait_read(ipcring_writer *w, uint64_t seen, int64_t timeout_ns);

/* Mark the end of the stream: the reader drains what is left and then gets
 * -ENODATA. Further writes fail with -EPIPE. */
int ipcring_writer_eos(ipcring_writer *w);

/* Make a blocked (or the next) call on w return -ECANCELED promptly, until
 * ipcring_writer_clear_interrupt(). Safe from any thread. */
void ipcring_writer_interrupt(ipcring_writer *w);
void ipcring_writer_clear_interrupt(ipcring_writer *w);

/* Wait until a reader is attached (returns 0), like the other blocking calls. */
int ipcring_writer_wait_reader(ipcring_writer *w, int64_t timeout_ns);

/* Wait until the reader has released every committed record (0), like the
 * other blocking calls: -EPIPE if the reader died meanwhile. */
int ipcring_writer_flush(ipcring_writer *w, int64_t timeout_ns);

/* The reader generation recorded in the ring: 0 before the first reader
 * attaches, then one more at each attach. One shared load, no system call:
 * cheap enough to check before every record. */
uint64_t ipcring_writer_reader_generation(ipcring_writer *w);

/* 1 if a reader is attached and alive now (one system call). */
int ipcring_writer_reader_alive(ipcring_writer *w);

/* Remove the ring's path if it still names this ring (0 or -errno). The
 * mapping stays valid for both sides. */
int ipcring_writer_unlink(ipcring_writer *w);

/* Unmap and close. Without a prior ipcring_writer_eos() the reader sees the
 * writer as gone (-EPIPE) once it has read everything. NULL is allowed. */
void ipcring_writer_close(ipcring_writer *w);

/* ---- Reader ---------------------------------------------------------- */

/* Open an existing ring and attach as its only reader (-EBUSY if another
 * reader is attached). The file is validated in full: regular file (never
 * through a symbolic link: -ELOOP), owner, no group or other permission bits
 * (see IPCRING_OPEN_GROUP_ACCESS), magic, format version, header size,
 * capacity a power of two, file size, and indices. Reading continues from the ring's read index, so a new reader
 * picks up where a dead one stopped. */
int ipcring_reader_open(const char *path, unsigned flags, ipcring_reader **out);

/* The same on an inherited descriptor (duplicated; the caller keeps its own).
 * A memfd sealed against shrinking and growing is accepted whatever its mode;
 * any other linked file must pass the checks of ipcring_reader_open(); an
 * unlinked file without those seals (an unsealed memfd) gives -EBADFD, as
 * does a file sealed against writing. */
int ipcring_reader_open_fd(int fd, unsigned flags, ipcring_reader **out);

/* Zero copy: return the next record without consuming it. The pointer is
 * valid until ipcring_reader_release(). The writer can not touch the record
 * before it is released, but a hostile writer could: copy what must not
 * change under you. */
int ipcring_reader_peek(ipcring_reader *r, const void **ptr, size_t *len,
                        uint32_t *tag, int64_t timeout_ns);
int ipcring_reader_release(ipcring_reader *r);

/* Zero copy with several records out: take the next record, hand it on, and
 * release it later, possibly from another thread, with
 * ipcring_reader_release_to(ref.end). Releases free ring room in order: a
 * release frees everything taken before that record too, so the caller
 * releases in the order it took (keeping its own list of what is still out).
 * The payload is valid until released; a hostile writer could change it at
 * any time (copy what must not change). take and peek may be mixed, but not
 * while a peeked record is open (-EBUSY). */
struct ipcring_record_ref {
  const void *data; /* payload, inside this reader's mapping */
  size_t len;       /* payload bytes */
  uint32_t tag;
  uint64_t offset;  /* file offset of the payload */
  uint64_t end;     /* pass to ipcring_reader_release_to() */
};
int ipcring_reader_take(ipcring_reader *r, struct ipcring_record_ref *ref, int64_t timeout_ns);

/* Release everything taken up to `end`. Safe from any thread, also while the
 * reader's thread is blocked in a take or peek; calls are serialised inside. */
int ipcring_reader_release_to(ipcring_reader *r, uint64_t end);

/* The ring's file descriptor (valid until close; -1 for a ring in memory),
 * for a second mapping of the data area at IPCRING_DATA_OFFSET. */
int ipcring_reader_fd(ipcring_reader *r);

/* Put a second mapping of the ring file (addr page-aligned, len bytes) under
 * the SIGBUS guard: a truncation seen through it fails the reader with -EFAULT
 * and the view reads zeros from then on, instead of killing the process.
 * Unregister before unmapping it; ipcring_reader_close() unregisters views
 * left registered, so keep the reader open while the view is used. 0,
 * -EINVAL, -EEXIST (already registered) or -EMFILE (the process guards too
 * many mappings). */
int ipcring_reader_register_view(ipcring_reader *r, void *addr, size_t len);
/* 0, or -ENOENT if addr is not a view registered on r. */
int ipcring_reader_unregister_view(ipcring_reader *r, void *addr);

/* Copy the next record into buf. Returns its length; if it is larger than
 * size, returns -EMSGSIZE, sets *len to the length and consumes nothing. */
int ipcring_reader_pop(ipcring_reader *r, void *buf, size_t size, size_t *len,
                       uint32_t *tag, int64_t timeout_ns);

/* 1 if the writer is attached and alive now (one system call). */
int ipcring_reader_writer_alive(ipcring_reader *r);

void ipcring_reader_interrupt(ipcring_reader *r);
void ipcring_reader_clear_interrupt(ipcring_reader *r);
void ipcring_reader_close(ipcring_reader *r);

/* ---- Back channel: small records from the reader to the writer ---------
 *
 * A second, small ring (2 KiB, in the file's header page) carries records
 * the other way, for messages a consumer sends its producer (GStreamer's
 * upstream events). Both calls never block: the reader's send fails with
 * -EAGAIN when the writer has not made room, the writer polls with recv
 * (one shared load when there is nothing). Each side checks what the other
 * wrote, as on the data area: inconsistency fails the handle with -EPROTO.
 * A new reader or a new writer starts with the channel empty. */
#define IPCRING_BACK_MAX 1016u

/* Send one record of up to IPCRING_BACK_MAX bytes (-EMSGSIZE beyond). */
int ipcring_reader_send(ipcring_reader *r, const void *data, size_t len, uint32_t tag);

/* Receive the next record into buf: its length, -EAGAIN if there is none,
 * or -EMSGSIZE (with *len set, nothing consumed) if size is too small. */
int ipcring_writer_recv(ipcring_writer *w, void *buf, size_t size, size_t *len, uint32_t *tag);

/* ---- Tuning ---------------------------------------------------------- */

/* How long a blocking call on this handle spins (polling the peer's index)
 * before it announces itself and sleeps on a futex, at least: default 20 us,
 * negative restores it, at most 1 s. On its own the library spins longer
 * (up to 500 us) while the waits that end in a sleep keep being short, so a
 * stream of records a few hundred microseconds apart makes no futex calls.
 * Spinning longer than the gaps between records keeps a waiting side awake,
 * which cuts the latency of a record arriving on an idle ring to that of a
 * cache-line transfer, at the cost of a CPU that is busy while it waits. */
void ipcring_writer_set_spin(ipcring_writer *w, int64_t ns);
void ipcring_reader_set_spin(ipcring_reader *r, int64_t ns);

/* Hand-off (on by default): after a commit that wakes a sleeping reader, the
 * writer yields its CPU once (sched_yield()). Linux often wakes the reader on
 * the writer's CPU, where it would wait until the writer blocks; the yield
 * lets it run at once, which is most of the latency of a record crossing an
 * idle ring. A commit that wakes no one (the streaming case) never yields,
 * nor does a wake less than 500 us after the previous one (a stream the
 * reader nearly keeps up with, where yielding on a busy machine only kept
 * the reader beside the writer or gave the CPU away). Turn it off for a
 * writer thread that must not give up its CPU. */
void ipcring_writer_set_handoff(ipcring_writer *w, int on);

/* ---- Information ------------------------------------------------------ */

struct ipcring_info {
  uint64_t capacity;
  uint64_t write_index;     /* as this side last saw it */
  uint64_t read_index;      /* as this side last saw it */
  uint64_t writer_generation;
  uint64_t reader_generation;
  int32_t writer_pid;       /* as recorded in the ring: the writer's namespace */
  int32_t reader_pid;
  int peer_alive;           /* 1 if the other side holds its lock now */
  int eos;                  /* writer marked end of stream */
  /* this side's counters */
  uint64_t records;         /* committed (writer) or released (reader) */
  uint64_t bytes;           /* payload bytes of those records */
  uint64_t waits;           /* blocking calls that had to sleep */
  uint64_t wakes;           /* futex wakes issued for the peer */
  uint64_t handoffs;        /* writer: wakes of the reader followed by a yield */
  uint64_t looks;           /* loads of the peer's index once this side's copy was used up
                             * (reader: for data; writer: for room) */
};

/* Fill info (peer_alive costs one system call). */
int ipcring_writer_info(ipcring_writer *w, struct ipcring_info *info);
int ipcring_reader_info(ipcring_reader *r, struct ipcring_info *info);

#ifdef __cplusplus
}
#endif

#endif /* IPCRING_H */
