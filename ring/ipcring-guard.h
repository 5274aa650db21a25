/* Truncation guard: a process-wide SIGBUS handler for the ring mappings.
 * Internal to the library.
 *
 * A file mapping whose file was shrunk raises SIGBUS on access to the pages
 * past the new end. Every mapping of a ring file is registered here; a fault
 * inside a registered range replaces the faulting page with a private zero
 * page (so the access that faulted goes on harmlessly; each page past the end
 * faults once) and stores IPCRING_ERR_TRUNCATED into the range's failure
 * word, which the ring calls return as their sticky error. A fault anywhere
 * else goes to the handler that was installed before ours.
 *
 * The registry is a fixed array of slots, each guarded by a sequence counter,
 * so the handler reads it without locks or allocation. */
#ifndef IPCRING_GUARD_H
#define IPCRING_GUARD_H

#include <errno.h>
#include <stddef.h>

/* Not exported from the shared library. */
#if defined(__GNUC__)
#define IPCRING_HIDDEN __attribute__((visibility("hidden")))
#else
#define IPCRING_HIDDEN
#endif

/* The sticky error of a ring whose file was truncated under its mapping. */
#define IPCRING_ERR_TRUNCATED (-EFAULT)

/* How many ranges the process can guard at once (two per ring side, plus
 * views). */
#define IPCRING_GUARD_SLOTS 1024

/* Guard [addr, addr + len) (addr page-aligned; len is rounded up to pages).
 * On a fault there, *failed is set to IPCRING_ERR_TRUNCATED unless it already
 * holds an error. Installs the handler on first use. 0, -EINVAL, -EEXIST
 * (the range is guarded already), -EMFILE (no free slot) or the error of
 * sigaction(). */
IPCRING_HIDDEN int ipcring_guard_add(void *addr, size_t len, int *failed);

/* Stop guarding the range that starts at addr and was registered with this
 * failure word (NULL: any). 0 or -ENOENT. */
IPCRING_HIDDEN int ipcring_guard_remove(void *addr, int *failed);

/* Stop guarding every range registered with this failure word; returns how
 * many were removed. */
IPCRING_HIDDEN int ipcring_guard_remove_all(int *failed);

/* Number of faults the handler has absorbed in this process (for tests). */
IPCRING_HIDDEN unsigned long ipcring_guard_faults(void);

#endif
