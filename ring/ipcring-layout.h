/* The shared layout of an ipcring file. Internal to the library and its tests;
 * docs/ring-format.md draws it byte by byte.
 *
 * The file is a 4096-byte header followed by the data area of `capacity`
 * bytes. Every field is fixed-width and little-endian (the ring is shared
 * between processes of one machine, so it is the machine's byte order; the
 * magic tells a foreign one apart). Each index and each wait word sits on its
 * own 64-byte cache line so that the writer's and the reader's stores never
 * share a line.
 */
#ifndef IPCRING_LAYOUT_H
#define IPCRING_LAYOUT_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#define IPCRING_MAGIC UINT64_C(0x31474e4952435049) /* "IPCRING1" */
#define IPCRING_FORMAT_VERSION 1u
#define IPCRING_HEADER_SIZE 4096u
#define IPCRING_CACHELINE 64

/* A length field with this value marks a padding record: the rest of the data
 * area up to its end is unused, the next record starts at offset 0. */
#define IPCRING_PAD_LEN UINT32_C(0xffffffff)

/* Values of the wait words. */
#define IPCRING_WAIT_IDLE 0u
#define IPCRING_WAIT_SLEEPING 1u

/* Bytes of the file that each side keeps locked while attached (advisory
 * open-file-description locks; the kernel drops them when the process dies). */
#define IPCRING_LOCK_WRITER 0
#define IPCRING_LOCK_READER 1

struct ipcring_shared {
  /* line 0: set at create, then only the generations and pids change */
  uint64_t magic;             /*  0 writer, once */
  uint32_t version;           /*  8 writer, once */
  uint32_t header_size;       /* 12 writer, once */
  uint64_t capacity;          /* 16 writer, once */
  uint32_t flags;             /* 24 writer, once (none defined: must be 0) */
  uint32_t reserved0;         /* 28 */
  _Atomic uint64_t writer_generation; /* 32 writer, at attach */
  _Atomic uint64_t reader_generation; /* 40 reader, at attach */
  _Atomic int32_t writer_pid;         /* 48 writer, at attach (informative only) */
  _Atomic int32_t reader_pid;         /* 52 reader, at attach (informative only) */
  uint8_t pad0[8];            /* 56 */

  /* line 1: written by the writer only */
  _Atomic uint64_t write_index;       /* 64 free-running byte count, release-stored */
  _Atomic uint32_t eos;               /* 72 1 once the writer ended the stream */
  uint8_t pad1[IPCRING_CACHELINE - 12];

  /* line 2: written by the reader only */
  _Atomic uint64_t read_index;        /* 128 free-running byte count, release-stored */
  uint8_t pad2[IPCRING_CACHELINE - 8];

  /* line 3: the reader's futex word; the reader sets SLEEPING, the writer
   * (or an interrupt) resets it to IDLE and wakes */
  _Atomic uint32_t reader_wait;       /* 192 */
  uint8_t pad3[IPCRING_CACHELINE - 4];

  /* line 4: the writer's futex word, mirror image of line 3 */
  _Atomic uint32_t writer_wait;       /* 256 */
  uint8_t pad4[IPCRING_CACHELINE - 4];

  /* line 5: the back channel's write index, written by the reader only */
  _Atomic uint64_t back_write;        /* 320 free-running byte count, release-stored */
  uint8_t pad5[IPCRING_CACHELINE - 8];

  /* line 6: the back channel's read index, written by the writer only */
  _Atomic uint64_t back_read;         /* 384 free-running byte count, release-stored */
  uint8_t pad6[IPCRING_CACHELINE - 8];
};

/* The back channel: a small ring in the header page, from the reader to the
 * writer (upstream events), with the same record format as the data area. */
#define IPCRING_BACK_OFFSET 2048u
#define IPCRING_BACK_SIZE 2048u

_Static_assert(offsetof(struct ipcring_shared, magic) == 0, "layout");
_Static_assert(offsetof(struct ipcring_shared, version) == 8, "layout");
_Static_assert(offsetof(struct ipcring_shared, header_size) == 12, "layout");
_Static_assert(offsetof(struct ipcring_shared, capacity) == 16, "layout");
_Static_assert(offsetof(struct ipcring_shared, flags) == 24, "layout");
_Static_assert(offsetof(struct ipcring_shared, writer_generation) == 32, "layout");
_Static_assert(offsetof(struct ipcring_shared, reader_generation) == 40, "layout");
_Static_assert(offsetof(struct ipcring_shared, writer_pid) == 48, "layout");
_Static_assert(offsetof(struct ipcring_shared, reader_pid) == 52, "layout");
_Static_assert(offsetof(struct ipcring_shared, write_index) == 64, "layout");
_Static_assert(offsetof(struct ipcring_shared, eos) == 72, "layout");
_Static_assert(offsetof(struct ipcring_shared, read_index) == 128, "layout");
_Static_assert(offsetof(struct ipcring_shared, reader_wait) == 192, "layout");
_Static_assert(offsetof(struct ipcring_shared, writer_wait) == 256, "layout");
_Static_assert(offsetof(struct ipcring_shared, back_write) == 320, "layout");
_Static_assert(offsetof(struct ipcring_shared, back_read) == 384, "layout");
_Static_assert(sizeof(struct ipcring_shared) == 448, "layout");
_Static_assert(sizeof(struct ipcring_shared) <= IPCRING_BACK_OFFSET, "layout");
_Static_assert(IPCRING_BACK_OFFSET + IPCRING_BACK_SIZE <= IPCRING_HEADER_SIZE, "layout");
_Static_assert(sizeof(struct ipcring_shared) <= IPCRING_HEADER_SIZE, "layout");

/* Shared atomics must be lock-free to work between processes. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "64-bit and 32-bit atomics must be lock-free");

/* Record header, at an 8-byte aligned offset of the data area. */
struct ipcring_record {
  uint32_t len; /* payload bytes, or IPCRING_PAD_LEN */
  uint32_t tag; /* the caller's */
};
_Static_assert(sizeof(struct ipcring_record) == 8, "layout");

#endif /* IPCRING_LAYOUT_H */
