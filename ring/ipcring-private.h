/* Entry points for the library's own tests and fuzzers; not installed. */
#ifndef IPCRING_PRIVATE_H
#define IPCRING_PRIVATE_H

#include "ipcring.h"

/* Attach a reader to a ring laid out in caller-owned memory (size bytes:
 * header and data area), with the same validation as ipcring_reader_open()
 * but no file, no lock and no liveness: the writer counts as gone. The memory
 * is not unmapped by ipcring_reader_close(). */
int ipcring_reader_attach_mem(void *mem, size_t size, ipcring_reader **out);

#endif
