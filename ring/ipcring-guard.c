/* ipcring: the truncation guard (see ipcring-guard.h).
 *
 * Only async-signal-safe things happen in the handler: loads of the slot
 * array, mmap(), sigaction(), raise() and atomic stores. */
#define _GNU_SOURCE
#include "ipcring-guard.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

/* A slot's fields change only while its counter is odd, by the one thread
 * that made it odd; the handler uses a slot only if it read the same even
 * counter before and after the fields (a sequence lock). start 0 = free. */
struct guard_slot {
  _Atomic unsigned seq;
  _Atomic uintptr_t start;
  _Atomic size_t len;
  _Atomic(int *) failed;
};

static struct guard_slot slots[IPCRING_GUARD_SLOTS];
/* One past the highest slot ever used: scans stop there (a process with a
 * few rings looks at a few slots; one without any, at none). Only grows. */
static _Atomic unsigned slots_used;
static _Atomic unsigned long fault_count;
static struct sigaction previous;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;

/* Set by the first ipcring_guard_add(), before any range exists, so the
 * handler only reads it. */
static _Atomic size_t page_cached;

static size_t page_size(void)
{
  size_t p = atomic_load_explicit(&page_cached, memory_order_relaxed);
  if (!p) {
    long v = sysconf(_SC_PAGESIZE);
    p = v > 0 ? (size_t)v : 4096;
    atomic_store_explicit(&page_cached, p, memory_order_relaxed);
  }
  return p;
}

/* Hand a SIGBUS that is not ours to whoever had it before us. */
static void chain(int sig, siginfo_t *si, void *ctx)
{
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction)
      previous.sa_sigaction(sig, si, ctx);
    return;
  }
  if (previous.sa_handler == SIG_IGN && si->si_code <= 0)
    return; /* sent with kill() and ignored before we came */
  if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
    /* The default action: a fault repeats when we return and now kills the
     * process as it would have; a signal sent by a process is raised again
     * (blocked while we run, so it arrives as we return). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (si->si_code <= 0)
      raise(SIGBUS);
    return;
  }
  previous.sa_handler(sig);
}

/* Is addr in a guarded range? Fills start, len and failed from a consistent
 * reading of the slot. */
static int guard_lookup(uintptr_t addr, uintptr_t *start, size_t *len, int **failed)
{
  unsigned used = atomic_load_explicit(&slots_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++) {
    struct guard_slot *g = &slots[i];
    unsigned s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
    if (s1 & 1)
      continue;
    uintptr_t st = atomic_load_explicit(&g->start, memory_order_relaxed);
    size_t ln = atomic_load_explicit(&g->len, memory_order_relaxed);
    int *f = atomic_load_explicit(&g->failed, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&g->seq, memory_order_relaxed) != s1)
      continue;
    if (st && addr - st < ln) {
      *start = st;
      *len = ln;
      *failed = f;
      return 1;
    }
  }
  return 0;
}

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
  int saved_errno = errno;
  uintptr_t start;
  size_t len;
  int *failed;
  /* Only the kernel's faults carry an address (si_code > 0); kill() fills
   * the same bytes with a pid and a uid. */
  if (si && si->si_code > 0 && guard_lookup((uintptr_t)si->si_addr, &start, &len, &failed)) {
    /* The file behind the range shrank. A private zero page takes the
     * faulting page's place, so this access goes on (it reads zeros, its
     * writes reach nobody) and the ring calls return the sticky error. Only
     * that page: the rest of the range keeps what it maps, among which pages
     * a private mapping already copied (a view's buffers that still hold
     * data). Each page past the end faults once. Should the page not be
     * replaceable on its own, the whole range is. */
    size_t page = atomic_load_explicit(&page_cached, memory_order_relaxed);
    uintptr_t at = (uintptr_t)si->si_addr / page * page;
    void *p = mmap((void *)at, page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      p = mmap((void *)start, len, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      if (failed) {
        int expected = 0;
        __atomic_compare_exchange_n(failed, &expected, IPCRING_ERR_TRUNCATED, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
      }
      atomic_fetch_add_explicit(&fault_count, 1, memory_order_relaxed);
      errno = saved_errno;
      return;
    }
  }
  errno = saved_errno;
  chain(sig, si, ctx);
}

static void install(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  /* Look first, then install: the handler may run as soon as it is in place
   * and must find the previous action already saved. */
  if (sigaction(SIGBUS, NULL, &previous) != 0 || sigaction(SIGBUS, &sa, NULL) != 0)
    install_error = -errno;
}

int ipcring_guard_add(void *addr, size_t len, int *failed)
{
  size_t page = page_size();
  uintptr_t a = (uintptr_t)addr;
  if (!a || !len || a % page || len > SIZE_MAX - page)
    return -EINVAL;
  len = (len + page - 1) / page * page;
  pthread_once(&install_once, install);
  if (install_error)
    return install_error;
  unsigned used = atomic_load_explicit(&slots_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++) {
    struct guard_slot *g = &slots[i];
    if (atomic_load_explicit(&g->start, memory_order_relaxed) == a)
      return -EEXIST;
  }
  for (unsigned i = 0; i < IPCRING_GUARD_SLOTS; i++) {
    struct guard_slot *g = &slots[i];
    unsigned s = atomic_load_explicit(&g->seq, memory_order_acquire);
    if ((s & 1) || atomic_load_explicit(&g->start, memory_order_relaxed) != 0)
      continue;
    if (!atomic_compare_exchange_strong_explicit(&g->seq, &s, s + 1, memory_order_acq_rel,
                                                 memory_order_relaxed))
      continue;
    if (atomic_load_explicit(&g->start, memory_order_relaxed) != 0) {
      atomic_store_explicit(&g->seq, s + 2, memory_order_release);
      continue; /* taken between our look and our claim */
    }
    atomic_store_explicit(&g->len, len, memory_order_relaxed);
    atomic_store_explicit(&g->failed, failed, memory_order_relaxed);
    atomic_store_explicit(&g->start, a, memory_order_relaxed);
    atomic_store_explicit(&g->seq, s + 2, memory_order_release);
    /* Raise the scans' bound past this slot, after the slot is complete. */
    unsigned cur = atomic_load_explicit(&slots_used, memory_order_relaxed);
    while (cur < i + 1 &&
           !atomic_compare_exchange_weak_explicit(&slots_used, &cur, i + 1, memory_order_release,
                                                  memory_order_relaxed))
      ;
    return 0;
  }
  return -EMFILE;
}

/* Free the slot if it guards addr (any address if addr is 0) for failed (any
 * if NULL). 1 if it did. */
static int slot_free_if(struct guard_slot *g, uintptr_t addr, int *failed)
{
  for (;;) {
    unsigned s = atomic_load_explicit(&g->seq, memory_order_acquire);
    if (s & 1)
      return 0; /* being filled by an add: not a range of ours */
    uintptr_t st = atomic_load_explicit(&g->start, memory_order_relaxed);
    if (!st || (addr && st != addr) ||
        (failed && atomic_load_explicit(&g->failed, memory_order_relaxed) != failed))
      return 0;
    if (!atomic_compare_exchange_strong_explicit(&g->seq, &s, s + 1, memory_order_acq_rel,
                                                 memory_order_relaxed))
      continue;
    atomic_store_explicit(&g->start, 0, memory_order_relaxed);
    atomic_store_explicit(&g->len, 0, memory_order_relaxed);
    atomic_store_explicit(&g->failed, NULL, memory_order_relaxed);
    atomic_store_explicit(&g->seq, s + 2, memory_order_release);
    return 1;
  }
}

int ipcring_guard_remove(void *addr, int *failed)
{
  if (!addr)
    return -ENOENT;
  unsigned used = atomic_load_explicit(&slots_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++)
    if (slot_free_if(&slots[i], (uintptr_t)addr, failed))
      return 0;
  return -ENOENT;
}

int ipcring_guard_remove_all(int *failed)
{
  int n = 0;
  if (!failed)
    return 0;
  unsigned used = atomic_load_explicit(&slots_used, memory_order_acquire);
  for (unsigned i = 0; i < used; i++)
    n += slot_free_if(&slots[i], 0, failed);
  return n;
}

unsigned long ipcring_guard_faults(void)
{
  return atomic_load_explicit(&fault_count, memory_order_relaxed);
}
