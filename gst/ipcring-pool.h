/* ipcringsink's zero-copy pool: buffers whose memory is ring space.
 *
 * The sink offers this pool in the allocation query. Each buffer acquired
 * from it claims room for one record in the ring (ipcring_writer_claim()):
 * the record header and the sink's buffer header first, then the payload the
 * upstream element fills. At render the sink writes the buffer header in
 * front of the payload and submits the claim: the reader sees the record
 * with no copy. When the ring has no room, the pool lends ordinary memory,
 * which the sink copies when it renders it (upstream never blocks in the
 * pool). See docs/elements.md for the cases (out-of-order rendering, buffers
 * released unrendered, buffers kept by upstream after rendering).
 */
#ifndef IPCRING_POOL_H
#define IPCRING_POOL_H

#include "ipcring.h"

#include <gst/gst.h>

G_BEGIN_DECLS

/* The writer and everything that uses its mapping, shared by the sink, its
 * pools and every memory lent from them: the ring is closed when the last
 * of them lets go, so upstream may keep pool buffers past the sink's stop. */
typedef struct _IpcRingWriterHold IpcRingWriterHold;

struct _IpcRingWriterHold
{
  gint refcount;
  GMutex lock;                  /* every call on w, and the fields below */
  ipcring_writer *w;
  guint64 capacity;
  gboolean closed;              /* the sink stopped: lend no more ring memory */
  gboolean upstream_keeps;      /* upstream kept a rendered buffer: lend no more */
  gint shared;                  /* a pool was made: other threads may call on w */
  GQueue open;                  /* IpcRingSinkMemory claimed, not finished, claim order */
  guint64 lent, fallbacks;      /* buffers lent in ring memory / ordinary memory */
};

/* Lock hold for a call on the writer from the streaming thread. Until the
 * sink has made a pool (which it does in its streaming thread) no other
 * thread can touch the writer, so the lock is skipped: it was a sixth of the
 * time the sink spent on a 256-byte buffer. Returns whether it locked. */
static inline gboolean
ipcring_writer_hold_lock (IpcRingWriterHold * hold)
{
  if (!g_atomic_int_get (&hold->shared))
    return FALSE;
  g_mutex_lock (&hold->lock);
  return TRUE;
}

static inline void
ipcring_writer_hold_unlock (IpcRingWriterHold * hold, gboolean locked)
{
  if (locked)
    g_mutex_unlock (&hold->lock);
}

IpcRingWriterHold *ipcring_writer_hold_new (ipcring_writer * w, guint64 capacity);
IpcRingWriterHold *ipcring_writer_hold_ref (IpcRingWriterHold * hold);
void ipcring_writer_hold_unref (IpcRingWriterHold * hold);

/* Claimed ring memory. Only the memory the pool made (not a share of it)
 * carries the claim. */
typedef enum
{
  IPCRING_CLAIM_OPEN,           /* upstream may still be filling it */
  IPCRING_CLAIM_SUBMITTED,      /* published as a record */
  IPCRING_CLAIM_SKIPPED,        /* finished unseen: rendered data is copied */
} IpcRingClaimState;

typedef struct
{
  GstMemory mem;
  IpcRingWriterHold *hold;      /* NULL in a share */
  guint8 *record;               /* the claim: room for the wire header, then data */
  guint8 *data;                 /* payload start: record + sizeof (IpcRingWireBuffer) */
  guint64 id;
  IpcRingClaimState state;
  GList link;                   /* in hold->open while OPEN */
} IpcRingSinkMemory;

/* The ring memory that backs buf as a whole, made by a pool of hold, or NULL. */
IpcRingSinkMemory *ipcring_sink_memory_of (GstBuffer * buf, IpcRingWriterHold * hold);

/* Under hold->lock: finish (skip) the open claims made before mem (all open
 * claims when mem is NULL), so that a record written now is not held up by
 * buffers upstream has not rendered yet. Their data is copied if they are
 * rendered later. */
void ipcring_writer_hold_skip_open (IpcRingWriterHold * hold, IpcRingSinkMemory * mem);

GstBufferPool *ipcring_sink_pool_new (IpcRingWriterHold * hold);

G_END_DECLS

#endif
