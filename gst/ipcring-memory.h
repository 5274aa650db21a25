/* Zero-copy buffers for ipcringsrc: GstMemory that is a record in the ring.
 *
 * A holder owns the ring reader, a private second mapping of the ring file
 * (the "view") and the list of records taken from the ring, in order. Each
 * record handed out as memory stays in the ring until the last reference to
 * that memory goes; releases free ring room in order, so the holder releases
 * the longest prefix of records that are done.
 *
 * The view is a MAP_PRIVATE mapping: its pages show the file's current bytes
 * until one of them is written, then that page becomes a private snapshot
 * (copy-on-write). Evicting a record snapshots its pages this way, so the
 * record can be released to the writer while downstream still holds (or has
 * mapped) its memory: the memory's pointer does not change, only what backs
 * it. The holder evicts when downstream holds more than half the ring, when
 * the writer waits for room that only held records can give, at end of
 * stream and when the element stops.
 *
 * The element and every live memory hold a reference to the holder; the view
 * is unmapped when the last one goes. The reader is closed when the element
 * detaches (after evicting everything it still holds), so a new reader can
 * attach at once.
 */
#ifndef IPCRING_MEMORY_H
#define IPCRING_MEMORY_H

#include <gst/gst.h>

#include "ipcring.h"

G_BEGIN_DECLS

/* The mem_type of the memories (gst_memory_is_type ()). */
#define IPCRING_MEMORY_TYPE "IpcRingMemory"

typedef struct _IpcRingHolder IpcRingHolder;

/* Take ownership of reader r and map its data area a second time. Zero copy
 * is unavailable (ipcring_holder_can_zero_copy () FALSE) for a ring without
 * a file descriptor or if the mapping fails; the holder still tracks takes. */
IpcRingHolder *ipcring_holder_new (ipcring_reader * r, GstObject * log_obj);
IpcRingHolder *ipcring_holder_ref (IpcRingHolder * h);
void ipcring_holder_unref (IpcRingHolder * h);

/* The reader; only the element's streaming thread uses it, and only until
 * ipcring_holder_detach (). */
ipcring_reader *ipcring_holder_reader (IpcRingHolder * h);
gboolean ipcring_holder_can_zero_copy (IpcRingHolder * h);

/* TRUE if no taken record is waiting for its release. Only meaningful on
 * the streaming thread (the only one that adds records). */
gboolean ipcring_holder_idle (IpcRingHolder * h);

/* TRUE if some taken record is still held by live memory (not evicted). */
gboolean ipcring_holder_holding (IpcRingHolder * h);

/* A record taken from the ring, handed out as memory: the payload bytes
 * [skip, ref->len) of the record. Returns NULL if this record must be copied
 * instead (its view pages are private snapshots that live memory still
 * uses); the caller then copies and calls ipcring_holder_done (). */
GstMemory *ipcring_holder_wrap (IpcRingHolder * h, const struct ipcring_record_ref *ref,
    gsize skip);

/* A record taken from the ring that needs no memory (metadata, copied). */
void ipcring_holder_done (IpcRingHolder * h, const struct ipcring_record_ref *ref);

/* The writer sleeps waiting for room (a hint read from the ring header). */
gboolean ipcring_holder_writer_waiting (IpcRingHolder * h);

/* Evict every held record and release everything taken. */
void ipcring_holder_evict_all (IpcRingHolder * h);

/* Evict everything, release it and close the reader; live memories keep
 * their (now private) bytes. */
void ipcring_holder_detach (IpcRingHolder * h);

G_END_DECLS

#endif /* IPCRING_MEMORY_H */
