/* ipcringsink's zero-copy pool and its allocator; see ipcring-pool.h. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "ipcring-pool.h"
#include "ipcring-protocol.h"

#include <errno.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (ipcring_pool_debug);
#define GST_CAT_DEFAULT ipcring_pool_debug

#define WIRE_HDR sizeof (IpcRingWireBuffer)

/* ---- The shared writer ------------------------------------------------ */

IpcRingWriterHold *
ipcring_writer_hold_new (ipcring_writer * w, guint64 capacity)
{
  IpcRingWriterHold *hold = g_new0 (IpcRingWriterHold, 1);
  hold->refcount = 1;
  g_mutex_init (&hold->lock);
  hold->w = w;
  hold->capacity = capacity;
  g_queue_init (&hold->open);
  return hold;
}

IpcRingWriterHold *
ipcring_writer_hold_ref (IpcRingWriterHold * hold)
{
  g_atomic_int_inc (&hold->refcount);
  return hold;
}

void
ipcring_writer_hold_unref (IpcRingWriterHold * hold)
{
  if (!g_atomic_int_dec_and_test (&hold->refcount))
    return;
  /* Every memory is gone, so no claim is open. */
  ipcring_writer_close (hold->w);
  g_mutex_clear (&hold->lock);
  g_free (hold);
}

void
ipcring_writer_hold_skip_open (IpcRingWriterHold * hold, IpcRingSinkMemory * upto)
{
  GList *l;
  while ((l = g_queue_peek_head_link (&hold->open)) && l->data != upto) {
    IpcRingSinkMemory *m = l->data;
    g_queue_unlink (&hold->open, l);
    ipcring_writer_claim_skip (hold->w, m->id);
    m->state = IPCRING_CLAIM_SKIPPED;
    GST_LOG ("skipped claim %" G_GUINT64_FORMAT ": rendered later or never", m->id);
  }
}

/* ---- Allocator: memory in a claim -------------------------------------- */

#define GST_TYPE_IPC_RING_SINK_ALLOCATOR (gst_ipc_ring_sink_allocator_get_type ())
G_DECLARE_FINAL_TYPE (GstIpcRingSinkAllocator, gst_ipc_ring_sink_allocator, GST,
    IPC_RING_SINK_ALLOCATOR, GstAllocator);

struct _GstIpcRingSinkAllocator
{
  GstAllocator parent;
};

G_DEFINE_TYPE (GstIpcRingSinkAllocator, gst_ipc_ring_sink_allocator, GST_TYPE_ALLOCATOR);

static GstAllocator *
sink_allocator_get (void)
{
  static GstAllocator *allocator;
  if (g_once_init_enter (&allocator)) {
    GstAllocator *a = g_object_new (GST_TYPE_IPC_RING_SINK_ALLOCATOR, NULL);
    gst_object_ref_sink (a);
    GST_OBJECT_FLAG_SET (a, GST_OBJECT_FLAG_MAY_BE_LEAKED);
    g_once_init_leave (&allocator, a);
  }
  return allocator;
}

static gpointer
sink_mem_map (GstMemory * mem, gsize maxsize, GstMapFlags flags)
{
  /* A share points at the same bytes as its parent; offsets are GstMemory's. */
  return ((IpcRingSinkMemory *) mem)->data;
}

static void
sink_mem_unmap (GstMemory * mem)
{
}

static GstMemory *
sink_mem_share (GstMemory * mem, gssize offset, gssize size)
{
  IpcRingSinkMemory *m = (IpcRingSinkMemory *) mem;
  GstMemory *parent = mem->parent ? mem->parent : mem;
  if (size == -1)
    size = mem->size - offset;
  IpcRingSinkMemory *s = g_new0 (IpcRingSinkMemory, 1);
  gst_memory_init (GST_MEMORY_CAST (s),
      GST_MINI_OBJECT_FLAGS (parent) | GST_MINI_OBJECT_FLAG_LOCK_READONLY, mem->allocator,
      parent, mem->maxsize, mem->align, mem->offset + offset, size);
  s->data = m->data;
  return GST_MEMORY_CAST (s);
}

static GstMemory *
sink_mem_copy (GstMemory * mem, gssize offset, gssize size)
{
  if (size == -1)
    size = mem->size > (gsize) offset ? mem->size - offset : 0;
  GstMemory *copy = gst_allocator_alloc (NULL, size, NULL);
  GstMapInfo map;
  if (gst_memory_map (copy, &map, GST_MAP_WRITE)) {
    memcpy (map.data, ((IpcRingSinkMemory *) mem)->data + mem->offset + offset, size);
    gst_memory_unmap (copy, &map);
  }
  return copy;
}

static gboolean
sink_mem_is_span (GstMemory * mem1, GstMemory * mem2, gsize * offset)
{
  return FALSE;
}

static GstMemory *
sink_alloc (GstAllocator * allocator, gsize size, GstAllocationParams * params)
{
  /* Ring memory comes only from the pool, claim by claim. */
  return NULL;
}

static void
sink_free (GstAllocator * allocator, GstMemory * mem)
{
  IpcRingSinkMemory *m = (IpcRingSinkMemory *) mem;
  IpcRingWriterHold *hold = m->hold;
  if (hold) {
    g_mutex_lock (&hold->lock);
    if (m->state == IPCRING_CLAIM_OPEN) {
      /* Released without being rendered. */
      g_queue_unlink (&hold->open, &m->link);
      ipcring_writer_claim_discard (hold->w, m->id);
    } else {
      ipcring_writer_claim_release (hold->w, m->id);
    }
    g_mutex_unlock (&hold->lock);
    ipcring_writer_hold_unref (hold);
  }
  g_free (m);
}

static void
gst_ipc_ring_sink_allocator_class_init (GstIpcRingSinkAllocatorClass * klass)
{
  GstAllocatorClass *alloc_class = GST_ALLOCATOR_CLASS (klass);
  alloc_class->alloc = sink_alloc;
  alloc_class->free = sink_free;
}

static void
gst_ipc_ring_sink_allocator_init (GstIpcRingSinkAllocator * self)
{
  GstAllocator *a = GST_ALLOCATOR_CAST (self);
  a->mem_type = "IpcRingSinkMemory";
  a->mem_map = sink_mem_map;
  a->mem_unmap = sink_mem_unmap;
  a->mem_share = sink_mem_share;
  a->mem_copy = sink_mem_copy;
  a->mem_is_span = sink_mem_is_span;
  GST_OBJECT_FLAG_SET (self, GST_ALLOCATOR_FLAG_CUSTOM_ALLOC);
}

IpcRingSinkMemory *
ipcring_sink_memory_of (GstBuffer * buf, IpcRingWriterHold * hold)
{
  if (gst_buffer_n_memory (buf) != 1)
    return NULL;
  GstMemory *mem = gst_buffer_peek_memory (buf, 0);
  if (mem->allocator != sink_allocator_get () || mem->parent || mem->offset != 0)
    return NULL;
  IpcRingSinkMemory *m = (IpcRingSinkMemory *) mem;
  return m->hold == hold ? m : NULL;
}

/* ---- Pool ------------------------------------------------------------- */

#define GST_TYPE_IPC_RING_SINK_POOL (gst_ipc_ring_sink_pool_get_type ())
G_DECLARE_FINAL_TYPE (GstIpcRingSinkPool, gst_ipc_ring_sink_pool, GST, IPC_RING_SINK_POOL,
    GstBufferPool);

struct _GstIpcRingSinkPool
{
  GstBufferPool parent;
  IpcRingWriterHold *hold;
  gsize size;                   /* from the configuration */
};

G_DEFINE_TYPE (GstIpcRingSinkPool, gst_ipc_ring_sink_pool, GST_TYPE_BUFFER_POOL);

static gboolean
pool_set_config (GstBufferPool * pool, GstStructure * config)
{
  GstIpcRingSinkPool *self = GST_IPC_RING_SINK_POOL (pool);
  GstCaps *caps;
  guint size, min, max;
  if (!gst_buffer_pool_config_get_params (config, &caps, &size, &min, &max))
    return FALSE;
  self->size = size;
  return GST_BUFFER_POOL_CLASS (gst_ipc_ring_sink_pool_parent_class)->set_config (pool, config);
}

static gboolean
pool_start (GstBufferPool * pool)
{
  /* Nothing to preallocate: every buffer is claimed when acquired. */
  return TRUE;
}

static gboolean
pool_stop (GstBufferPool * pool)
{
  return TRUE;
}

static GstFlowReturn
pool_acquire (GstBufferPool * pool, GstBuffer ** buffer, GstBufferPoolAcquireParams * params)
{
  GstIpcRingSinkPool *self = GST_IPC_RING_SINK_POOL (pool);
  IpcRingWriterHold *hold = self->hold;
  gsize size = self->size;
  void *ptr = NULL;
  guint64 id = 0;
  int rc = -EPIPE;

  g_mutex_lock (&hold->lock);
  if (!hold->closed && !hold->upstream_keeps)
    rc = ipcring_writer_claim (hold->w, WIRE_HDR + size, 0, &ptr, &id);
  if (rc == 0) {
    IpcRingSinkMemory *m = g_new0 (IpcRingSinkMemory, 1);
    gst_memory_init (GST_MEMORY_CAST (m), 0, sink_allocator_get (), NULL, size, 7, 0, size);
    m->hold = ipcring_writer_hold_ref (hold);
    m->record = ptr;
    m->data = (guint8 *) ptr + WIRE_HDR;
    m->id = id;
    m->state = IPCRING_CLAIM_OPEN;
    m->link.data = m;
    g_queue_push_tail_link (&hold->open, &m->link);
    hold->lent++;
    g_mutex_unlock (&hold->lock);
    *buffer = gst_buffer_new ();
    gst_buffer_append_memory (*buffer, GST_MEMORY_CAST (m));
    return GST_FLOW_OK;
  }
  hold->fallbacks++;
  g_mutex_unlock (&hold->lock);
  /* No room now (the reader is behind, upstream keeps many buffers, or the
   * buffer is larger than the ring): ordinary memory, copied at render. */
  GST_LOG_OBJECT (pool, "no ring room for %" G_GSIZE_FORMAT " bytes (%s): ordinary memory",
      size, ipcring_strerror (rc));
  *buffer = gst_buffer_new_allocate (NULL, size, NULL);
  return *buffer ? GST_FLOW_OK : GST_FLOW_ERROR;
}

static void
pool_release (GstBufferPool * pool, GstBuffer * buffer)
{
  /* Never reused: the next buffer claims fresh room further on in the ring.
   * Freeing the memory gives its claim back (sink_free). */
  gst_buffer_unref (buffer);
}

static void
pool_finalize (GObject * object)
{
  GstIpcRingSinkPool *self = GST_IPC_RING_SINK_POOL (object);
  ipcring_writer_hold_unref (self->hold);
  G_OBJECT_CLASS (gst_ipc_ring_sink_pool_parent_class)->finalize (object);
}

static void
gst_ipc_ring_sink_pool_class_init (GstIpcRingSinkPoolClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstBufferPoolClass *pool_class = GST_BUFFER_POOL_CLASS (klass);
  gobject_class->finalize = pool_finalize;
  pool_class->set_config = pool_set_config;
  pool_class->start = pool_start;
  pool_class->stop = pool_stop;
  pool_class->acquire_buffer = pool_acquire;
  pool_class->release_buffer = pool_release;
  GST_DEBUG_CATEGORY_INIT (ipcring_pool_debug, "ipcringpool", 0, "ipcringsink's pool");
}

static void
gst_ipc_ring_sink_pool_init (GstIpcRingSinkPool * self)
{
}

GstBufferPool *
ipcring_sink_pool_new (IpcRingWriterHold * hold)
{
  GstIpcRingSinkPool *self = g_object_new (GST_TYPE_IPC_RING_SINK_POOL, NULL);
  gst_object_ref_sink (self);
  self->hold = ipcring_writer_hold_ref (hold);
  return GST_BUFFER_POOL_CAST (self);
}
