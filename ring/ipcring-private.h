/* Entry points for the library's own tests and fuzzers; not installed. */
#ifndef IPCRING_PRIVATE_H
#define IPCRING_PRIVATE_H

#include "ipcring.h"

/* Attach a reader to a ring laid out in caller-owned memory (size bytes:
 * header and data area), with the same validation as ipcring_reader_open()
 * but no file, no lock and no liveness: the writer counts as gone. The memory
 * is not unmapped by ipcring_reader_close(). */
int ipcring_reader_attach_mem(void *mem, size_t size, ipcring_reader **out);

/* The writer's counterpart: attach to a ring already laid out in caller-owned
 * memory, validated like a reader's attach, continuing at its write index.
 * No file, no lock, no liveness (the reader counts as gone) and no SIGBUS
 * guard; ipcring_writer_close() does not unmap the memory. For fuzzing the
 * writer against a hostile reader. */
int ipcring_writer_attach_mem(void *mem, size_t size, ipcring_writer **out);

#endif
