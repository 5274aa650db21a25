/* The few atomic operations the ring uses, named for what they do.
 * Everything shared goes through these helpers; each call site says which
 * operation on the other side it pairs with. */
#ifndef IPCRING_ATOMICS_H
#define IPCRING_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

/* Publish an index: everything written before it (record bytes) is visible to
 * a peer that reads the index with ipcring_load_acquire_u64(). */
static inline void ipcring_store_release_u64(_Atomic uint64_t *p, uint64_t v)
{
  atomic_store_explicit(p, v, memory_order_release);
}

/* Read a peer's published index: everything the peer wrote before publishing
 * it is visible after this load. */
static inline uint64_t ipcring_load_acquire_u64(_Atomic uint64_t *p)
{
  return atomic_load_explicit(p, memory_order_acquire);
}

static inline uint32_t ipcring_load_acquire_u32(_Atomic uint32_t *p)
{
  return atomic_load_explicit(p, memory_order_acquire);
}

static inline void ipcring_store_release_u32(_Atomic uint32_t *p, uint32_t v)
{
  atomic_store_explicit(p, v, memory_order_release);
}

/* Read a field whose ordering does not matter (informational, or ordered by a
 * fence that the caller names). */
static inline uint64_t ipcring_load_relaxed_u64(_Atomic uint64_t *p)
{
  return atomic_load_explicit(p, memory_order_relaxed);
}

static inline uint32_t ipcring_load_relaxed_u32(_Atomic uint32_t *p)
{
  return atomic_load_explicit(p, memory_order_relaxed);
}

static inline void ipcring_store_relaxed_u64(_Atomic uint64_t *p, uint64_t v)
{
  atomic_store_explicit(p, v, memory_order_relaxed);
}

/* Announce a sleeper: a sequentially consistent store, so that the sleeper's
 * next load of the peer's index cannot be ordered before it (the StoreLoad
 * half of the sleeper/waker handshake; the waker's half is
 * ipcring_fence_full()). */
static inline void ipcring_store_seq_cst_u32(_Atomic uint32_t *p, uint32_t v)
{
  atomic_store_explicit(p, v, memory_order_seq_cst);
}

static inline uint32_t ipcring_exchange_u32(_Atomic uint32_t *p, uint32_t v)
{
  return atomic_exchange_explicit(p, v, memory_order_seq_cst);
}

/* Full barrier: orders the waker's index store before its load of the
 * sleeper's wait word. Pairs with ipcring_store_seq_cst_u32(). */
static inline void ipcring_fence_full(void)
{
  atomic_thread_fence(memory_order_seq_cst);
}

/* Read 8 bytes of the data area exactly once (a record header): the compiler
 * may not re-read shared memory in place of the local copy. */
static inline uint64_t ipcring_load_once_u64(const void *p)
{
  return *(const volatile uint64_t *)p;
}

static inline void ipcring_store_once_u64(void *p, uint64_t v)
{
  *(volatile uint64_t *)p = v;
}

static inline void ipcring_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* IPCRING_ATOMICS_H */
