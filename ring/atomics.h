/* The few atomic operations the ring uses, named for what they do.
 * Everything shared goes through these helpers; each call site says which
 * operation on the other side it pairs with. */
#ifndef IPCRING_ATOMICS_H
#define IPCRING_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

#ifdef IPCRING_FUZZ_LOADS
/* Fuzzing builds only (never the library): every load helper below returns
 * what this function gives for a load of `size` bytes (4 or 8) at p instead
 * of reading the memory. The fuzzer provides it and answers with fresh bytes
 * of its input, so a field that is read twice and checked only once shows up
 * as the second read disagreeing with the check. */
uint64_t ipcring_fuzz_load(const volatile void *p, unsigned size);
#define IPCRING_FUZZ_LOAD(p, type) ((type)ipcring_fuzz_load((p), sizeof(type)))
#endif

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
#ifdef IPCRING_FUZZ_LOADS
  return IPCRING_FUZZ_LOAD(p, uint64_t);
#else
  return atomic_load_explicit(p, memory_order_acquire);
#endif
}

static inline uint32_t ipcring_load_acquire_u32(_Atomic uint32_t *p)
{
#ifdef IPCRING_FUZZ_LOADS
  return IPCRING_FUZZ_LOAD(p, uint32_t);
#else
  return atomic_load_explicit(p, memory_order_acquire);
#endif
}

static inline void ipcring_store_release_u32(_Atomic uint32_t *p, uint32_t v)
{
  atomic_store_explicit(p, v, memory_order_release);
}

/* Read a field whose ordering does not matter (informational, or ordered by a
 * fence that the caller names). */
static inline uint64_t ipcring_load_relaxed_u64(_Atomic uint64_t *p)
{
#ifdef IPCRING_FUZZ_LOADS
  return IPCRING_FUZZ_LOAD(p, uint64_t);
#else
  return atomic_load_explicit(p, memory_order_relaxed);
#endif
}

static inline uint32_t ipcring_load_relaxed_u32(_Atomic uint32_t *p)
{
#ifdef IPCRING_FUZZ_LOADS
  return IPCRING_FUZZ_LOAD(p, uint32_t);
#else
  return atomic_load_explicit(p, memory_order_relaxed);
#endif
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
#ifdef IPCRING_FUZZ_LOADS
  return IPCRING_FUZZ_LOAD(p, uint64_t);
#else
  return *(const volatile uint64_t *)p;
#endif
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
