/* Zero-copy buffers for ipcringsrc: see ipcring-memory.h. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "ipcring-memory.h"
#include "ipcring-layout.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

GST_DEBUG_CATEGORY_STATIC (ipcring_memory_debug);
#define GST_CAT_DEFAULT ipcring_memory_debug

typedef struct _IpcRingMemory IpcRingMemory;

/* A record taken from the ring, until it is released (in order). */
typedef struct
{
  guint64 start;                /* ring index of the record */
  guint64 end;                  /* ring index after it (ipcring_record_ref.end) */
  IpcRingMemory *mem;           /* the live memory holding it; NULL once done */
} Entry;

struct _IpcRingMemory
{
  GstMemory mem;
  IpcRingHolder *holder;        /* a reference, in the root memory only */
  guint8 *data;                 /* the root's first byte, in the view */
  /* root only, under the holder's lock */
  guint64 seq;                  /* its entry */
  gsize first_page, last_page;  /* view pages it covers */
  gboolean evicted;             /* its pages are private snapshots, its entry done */
};

struct _IpcRingHolder
{
  gint refcount;
  GMutex lock;
  ipcring_reader *reader;       /* NULL once detached */
  gchar *name;                  /* for the log */
  guint64 capacity;

  /* the view: the whole ring file, MAP_PRIVATE; NULL without zero copy */
  guint8 *view;
  gsize view_size;
  gsize page;
  const struct ipcring_shared *sh;      /* the header, only read */

  /* taken records in order: entry seq lives at fifo[seq & fifo_mask];
   * tail only moves on the streaming thread, head under the lock */
  Entry *fifo;
  guint64 fifo_mask;
  guint64 head;
  guint64 tail;

  /* per view page: a private snapshot (written), and how many evicted live
   * memories use it (it may not go back to the file while any do) */
  guint8 *priv;
  guint32 *ev_users;
  gsize n_private;

  guint64 n_evicted;
};

/* ---- Allocator ---------------------------------------------------------- */

typedef struct
{
  GstAllocator parent;
} IpcRingAllocator;

typedef struct
{
  GstAllocatorClass parent_class;
} IpcRingAllocatorClass;

static GType ipcring_allocator_get_type (void);
G_DEFINE_TYPE (IpcRingAllocator, ipcring_allocator, GST_TYPE_ALLOCATOR);

static void record_freed (IpcRingMemory * m);

static GstMemory *
ipcring_allocator_alloc (GstAllocator * allocator, gsize size, GstAllocationParams * params)
{
  /* memory only comes from the ring */
  return NULL;
}

static void
ipcring_allocator_free (GstAllocator * allocator, GstMemory * mem)
{
  IpcRingMemory *m = (IpcRingMemory *) mem;
  if (!mem->parent)
    record_freed (m);
  g_free (m);
}

static gpointer
mem_map (GstMemory * mem, gsize maxsize, GstMapFlags flags)
{
  /* GST_MEMORY_FLAG_READONLY keeps write maps from getting here */
  if (flags & GST_MAP_WRITE)
    return NULL;
  return ((IpcRingMemory *) mem)->data;
}

static void
mem_unmap (GstMemory * mem)
{
}

static GstMemory *
mem_share (GstMemory * mem, gssize offset, gssize size)
{
  IpcRingMemory *m = (IpcRingMemory *) mem;
  GstMemory *parent = mem->parent ? mem->parent : mem;
  if (size == -1)
    size = mem->size > (gsize) offset ? mem->size - offset : 0;
  IpcRingMemory *sub = g_new0 (IpcRingMemory, 1);
  gst_memory_init (GST_MEMORY_CAST (sub),
      GST_MINI_OBJECT_FLAGS (parent) | GST_MINI_OBJECT_FLAG_LOCK_READONLY,
      mem->allocator, parent, mem->maxsize, mem->align, mem->offset + offset, size);
  sub->data = m->data;
  return GST_MEMORY_CAST (sub);
}

static GstMemory *
mem_copy (GstMemory * mem, gssize offset, gssize size)
{
  IpcRingMemory *m = (IpcRingMemory *) mem;
  if (size == -1)
    size = mem->size > (gsize) offset ? mem->size - offset : 0;
  GstMemory *copy = gst_allocator_alloc (NULL, size, NULL);
  if (!copy)
    return NULL;
  GstMapInfo info;
  if (!gst_memory_map (copy, &info, GST_MAP_WRITE)) {
    gst_memory_unref (copy);
    return NULL;
  }
  memcpy (info.data, m->data + mem->offset + offset, size);
  gst_memory_unmap (copy, &info);
  return copy;
}

static gboolean
mem_is_span (GstMemory * mem1, GstMemory * mem2, gsize * offset)
{
  IpcRingMemory *m1 = (IpcRingMemory *) mem1, *m2 = (IpcRingMemory *) mem2;
  if (!mem1->parent || mem1->parent != mem2->parent)
    return FALSE;
  if (m1->data + mem1->offset + mem1->size != m2->data + mem2->offset)
    return FALSE;
  if (offset)
    *offset = mem1->offset - mem1->parent->offset;
  return TRUE;
}

static void
ipcring_allocator_class_init (IpcRingAllocatorClass * klass)
{
  GstAllocatorClass *ac = GST_ALLOCATOR_CLASS (klass);
  ac->alloc = ipcring_allocator_alloc;
  ac->free = ipcring_allocator_free;
}

static void
ipcring_allocator_init (IpcRingAllocator * self)
{
  GstAllocator *a = GST_ALLOCATOR_CAST (self);
  a->mem_type = IPCRING_MEMORY_TYPE;
  a->mem_map = mem_map;
  a->mem_unmap = mem_unmap;
  a->mem_share = mem_share;
  a->mem_copy = mem_copy;
  a->mem_is_span = mem_is_span;
  GST_OBJECT_FLAG_SET (a, GST_ALLOCATOR_FLAG_CUSTOM_ALLOC);
}

static GstAllocator *
get_allocator (void)
{
  static GstAllocator *allocator;
  static gsize once;
  if (g_once_init_enter (&once)) {
    GST_DEBUG_CATEGORY_INIT (ipcring_memory_debug, "ipcringmemory", 0,
        "ipcringsrc zero-copy memory");
    allocator = g_object_new (ipcring_allocator_get_type (), NULL);
    gst_object_ref_sink (allocator);
    GST_OBJECT_FLAG_SET (allocator, GST_OBJECT_FLAG_MAY_BE_LEAKED);
    g_once_init_leave (&once, 1);
  }
  return allocator;
}

/* ---- Holder ------------------------------------------------------------- */

IpcRingHolder *
ipcring_holder_new (ipcring_reader * r, GstObject * log_obj)
{
  get_allocator ();
  IpcRingHolder *h = g_new0 (IpcRingHolder, 1);
  h->refcount = 1;
  g_mutex_init (&h->lock);
  h->reader = r;
  h->name = log_obj ? gst_object_get_name (log_obj) : g_strdup ("ipcringsrc");
  struct ipcring_info info;
  ipcring_reader_info (r, &info);
  h->capacity = info.capacity;
  h->fifo_mask = 63;
  h->fifo = g_new0 (Entry, h->fifo_mask + 1);

  long page = sysconf (_SC_PAGESIZE);
  h->page = page > 0 ? (gsize) page : 4096;
  int fd = ipcring_reader_fd (r);
  if (fd < 0) {
    GST_INFO ("%s: ring without a file descriptor, copying every buffer", h->name);
    return h;
  }
  /* The view comes from an open file description of its own: a mapping
   * keeps its description open, and the reader's attach lock lives on the
   * reader's description until that is closed, so mapping the reader's
   * descriptor would keep the reader attached (no new reader could attach)
   * while downstream holds buffers. */
  gchar *proc = g_strdup_printf ("/proc/self/fd/%d", fd);
  int vfd = open (proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  g_free (proc);
  struct stat st_r, st_v;
  if (vfd >= 0 && (fstat (fd, &st_r) != 0 || fstat (vfd, &st_v) != 0
          || st_r.st_dev != st_v.st_dev || st_r.st_ino != st_v.st_ino)) {
    close (vfd);
    vfd = -1;
    errno = ESTALE;
  }
  if (vfd < 0) {
    GST_WARNING ("%s: cannot open the ring a second time (%s), copying every buffer",
        h->name, g_strerror (errno));
    return h;
  }
  gsize size = IPCRING_DATA_OFFSET + info.capacity;
  size = (size + h->page - 1) / h->page * h->page;
  /* Read-only first, then made writable: a write makes a page a private
   * copy. Until then a page reads the file's current bytes, whether it was
   * mapped in before or faults in at first touch, so nothing is populated
   * here: mapping in all of a 64 MiB ring took 17,000 page faults and about
   * 50 ms at start-up, also in copy mode where the view is never read. */
  void *p = mmap (NULL, size, PROT_READ, MAP_PRIVATE, vfd, 0);
  int map_errno = errno;
  close (vfd);
  errno = map_errno;
  if (p != MAP_FAILED && mprotect (p, size, PROT_READ | PROT_WRITE) != 0) {
    GST_WARNING ("%s: mprotect of the view: %s", h->name, g_strerror (errno));
    munmap (p, size);
    p = MAP_FAILED;
  }
  if (p == MAP_FAILED) {
    GST_WARNING ("%s: cannot map the ring a second time (%s), copying every buffer",
        h->name, g_strerror (errno));
    return h;
  }
  /* A truncated ring file reads zeros here instead of raising SIGBUS in
   * whatever element reads a buffer. Once the reader is closed (detached),
   * the view is no longer guarded, but then every page a live memory uses
   * is a private copy, which truncation does not touch. */
  int rc = ipcring_reader_register_view (r, p, size);
  if (rc != 0) {
    GST_WARNING ("%s: cannot guard the second mapping (%s), copying every buffer",
        h->name, ipcring_strerror (rc));
    munmap (p, size);
    return h;
  }
  h->view = p;
  h->view_size = size;
  h->sh = p;
  gsize npages = size / h->page;
  h->priv = g_new0 (guint8, npages);
  h->ev_users = g_new0 (guint32, npages);
  return h;
}

IpcRingHolder *
ipcring_holder_ref (IpcRingHolder * h)
{
  g_atomic_int_inc (&h->refcount);
  return h;
}

void
ipcring_holder_unref (IpcRingHolder * h)
{
  if (!g_atomic_int_dec_and_test (&h->refcount))
    return;
  /* nothing can be held any more: every memory had a reference; closing
   * the reader unregisters the view */
  if (h->reader)
    ipcring_reader_close (h->reader);
  if (h->view)
    munmap (h->view, h->view_size);
  g_free (h->priv);
  g_free (h->ev_users);
  g_free (h->fifo);
  g_free (h->name);
  g_mutex_clear (&h->lock);
  g_free (h);
}

ipcring_reader *
ipcring_holder_reader (IpcRingHolder * h)
{
  return h->reader;
}

gboolean
ipcring_holder_can_zero_copy (IpcRingHolder * h)
{
  return h->view != NULL;
}

gboolean
ipcring_holder_idle (IpcRingHolder * h)
{
  /* head only grows and never passes tail; tail is the caller's own */
  return __atomic_load_n (&h->head, __ATOMIC_RELAXED) == h->tail;
}

gboolean
ipcring_holder_holding (IpcRingHolder * h)
{
  /* between calls the head entry, if any, is held (see advance ()) */
  return !ipcring_holder_idle (h);
}

static inline Entry *
entry (IpcRingHolder * h, guint64 seq)
{
  return &h->fifo[seq & h->fifo_mask];
}

/* Release the longest prefix of done entries. Under the lock. */
static void
advance (IpcRingHolder * h)
{
  guint64 head = h->head, end = 0;
  while (head < h->tail && entry (h, head)->mem == NULL)
    end = entry (h, head++)->end;
  if (head == h->head)
    return;
  __atomic_store_n (&h->head, head, __ATOMIC_RELAXED);
  if (h->reader) {
    int rc = ipcring_reader_release_to (h->reader, end);
    if (rc != 0)
      GST_WARNING ("%s: release_to %" G_GUINT64_FORMAT ": %s", h->name, end,
          ipcring_strerror (rc));
  }
}

/* A new entry at the tail. Under the lock (so a release never sees the array
 * being moved). */
static Entry *
push_entry (IpcRingHolder * h, const struct ipcring_record_ref *ref)
{
  if (h->tail - h->head > h->fifo_mask) {
    guint64 n = (h->fifo_mask + 1) * 2;
    Entry *f = g_new0 (Entry, n);
    for (guint64 s = h->head; s < h->tail; s++)
      f[s & (n - 1)] = *entry (h, s);
    g_free (h->fifo);
    h->fifo = f;
    h->fifo_mask = n - 1;
  }
  Entry *e = entry (h, h->tail);
  e->start = ref->end - ipcring_record_size (ref->len);
  e->end = ref->end;
  e->mem = NULL;
  h->tail++;
  return e;
}

/* Make the record's pages private snapshots: write one byte of the record
 * per page with the value it has. The memory's pointer stays; what backs it
 * no longer changes with the file. Under the lock. */
static void
evict (IpcRingHolder * h, Entry * e)
{
  IpcRingMemory *m = e->mem;
  gsize start = m->data - h->view, last = start + m->mem.maxsize - 1;
  for (gsize p = m->first_page; p <= m->last_page; p++) {
    if (!h->priv[p]) {
      /* a byte of this record (never a neighbour's, which the writer may
       * be writing) */
      volatile guint8 *b = h->view + MAX (p * h->page, start);
      g_assert ((gsize) (b - h->view) <= last);
      guint8 v = *b;
      *b = v;
      h->priv[p] = 1;
      h->n_private++;
    }
    h->ev_users[p]++;
  }
  m->evicted = TRUE;
  e->mem = NULL;
  h->n_evicted++;
}

/* Evict the oldest held records while the records from the oldest unreleased
 * one to the newest span more than half the ring. Under the lock. */
static void
check_span (IpcRingHolder * h)
{
  while (h->tail - h->head >= 2) {
    Entry *head = entry (h, h->head);
    if (entry (h, h->tail - 1)->end - head->start <= h->capacity / 2)
      break;
    GST_DEBUG ("%s: downstream holds %" G_GUINT64_FORMAT " ring bytes, evicting the oldest",
        h->name, entry (h, h->tail - 1)->end - head->start);
    if (head->mem)
      evict (h, head);
    advance (h);
  }
}

/* Give private pages in [first, last] back to the file where no evicted
 * memory uses them. FALSE if some page stays private. Under the lock. */
static gboolean
restore_pages (IpcRingHolder * h, gsize first, gsize last)
{
  gboolean all = TRUE;
  gsize run = 0, run_len = 0;
  for (gsize p = first; p <= last + 1; p++) {
    gboolean restore = p <= last && h->priv[p] && !h->ev_users[p];
    if (p <= last && h->priv[p] && h->ev_users[p])
      all = FALSE;
    if (restore) {
      if (!run_len)
        run = p;
      run_len++;
      continue;
    }
    if (run_len) {
      /* on a private file mapping this drops the private copies: the
       * pages show the file again */
      if (madvise (h->view + run * h->page, run_len * h->page, MADV_DONTNEED) == 0) {
        for (gsize q = run; q < run + run_len; q++)
          h->priv[q] = 0;
        h->n_private -= run_len;
      } else {
        GST_WARNING ("%s: madvise: %s", h->name, g_strerror (errno));
        all = FALSE;
      }
      run_len = 0;
    }
  }
  return all;
}

GstMemory *
ipcring_holder_wrap (IpcRingHolder * h, const struct ipcring_record_ref *ref, gsize skip)
{
  g_return_val_if_fail (h->view && ref->len > skip, NULL);
  gsize off = ref->offset + skip, len = ref->len - skip;
  gsize first = off / h->page, last = (off + len - 1) / h->page;
  if (off + len > h->view_size)
    return NULL;

  g_mutex_lock (&h->lock);
  if (h->n_private && !restore_pages (h, first, last)) {
    /* a page of this record is a snapshot an evicted buffer still shows */
    g_mutex_unlock (&h->lock);
    GST_LOG ("%s: record at %" G_GSIZE_FORMAT " shares a page with an evicted buffer, "
        "copying it", h->name, off);
    return NULL;
  }
  IpcRingMemory *m = g_new0 (IpcRingMemory, 1);
  gst_memory_init (GST_MEMORY_CAST (m), GST_MEMORY_FLAG_READONLY, get_allocator (), NULL,
      len, 0, 0, len);
  m->holder = ipcring_holder_ref (h);
  m->data = h->view + off;
  m->first_page = first;
  m->last_page = last;
  m->seq = h->tail;
  push_entry (h, ref)->mem = m;
  check_span (h);
  g_mutex_unlock (&h->lock);
  return GST_MEMORY_CAST (m);
}

void
ipcring_holder_done (IpcRingHolder * h, const struct ipcring_record_ref *ref)
{
  g_mutex_lock (&h->lock);
  if (h->head == h->tail) {
    if (h->reader)
      ipcring_reader_release_to (h->reader, ref->end);
  } else {
    push_entry (h, ref);
    check_span (h);
  }
  g_mutex_unlock (&h->lock);
}

/* The last reference to a root memory went: its record is done. */
static void
record_freed (IpcRingMemory * m)
{
  IpcRingHolder *h = m->holder;
  g_mutex_lock (&h->lock);
  if (m->evicted) {
    for (gsize p = m->first_page; p <= m->last_page; p++)
      h->ev_users[p]--;
  } else {
    entry (h, m->seq)->mem = NULL;
    if (m->seq == h->head)
      advance (h);
  }
  g_mutex_unlock (&h->lock);
  ipcring_holder_unref (h);
}

gboolean
ipcring_holder_writer_waiting (IpcRingHolder * h)
{
  return h->sh && atomic_load_explicit (&((struct ipcring_shared *) h->sh)->writer_wait,
      memory_order_relaxed) == IPCRING_WAIT_SLEEPING;
}

static void
evict_all_locked (IpcRingHolder * h)
{
  guint n = 0;
  for (guint64 s = h->head; s < h->tail; s++) {
    Entry *e = entry (h, s);
    if (e->mem) {
      evict (h, e);
      n++;
    }
  }
  advance (h);
  if (n)
    GST_DEBUG ("%s: evicted %u held records", h->name, n);
}

void
ipcring_holder_evict_all (IpcRingHolder * h)
{
  g_mutex_lock (&h->lock);
  evict_all_locked (h);
  g_mutex_unlock (&h->lock);
}

void
ipcring_holder_detach (IpcRingHolder * h)
{
  g_mutex_lock (&h->lock);
  evict_all_locked (h);
  ipcring_reader *r = h->reader;
  h->reader = NULL;
  g_mutex_unlock (&h->lock);
  ipcring_reader_close (r);
}
