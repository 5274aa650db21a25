/**
 * SECTION:element-ipcringsink
 * @title: ipcringsink
 * @see_also: ipcringsrc
 *
 * Writes a stream into an ipcring, a shared-memory ring file, so that an
 * ipcringsrc in another process continues the same stream: buffers with all
 * their timestamps, offsets and flags, caps, serialized events and EOS.
 *
 * The sink creates the ring file at start (0600 by default, atomically; its
 * memory is reserved 4 MiB at a time as the sink first reaches it, and a full
 * file system is an error then) and removes it when it stops, or at EOS once a reader
 * has read everything. A full ring blocks the streaming thread (back-pressure)
 * until the reader makes room; flushing and state changes interrupt the wait.
 * At EOS the sink waits until a reader has attached and drained the ring, so
 * a producer started before its consumer loses nothing.
 *
 * When a new reader attaches (for example a restarted consumer), the sink
 * writes a stream record and all current sticky events (stream-start, caps,
 * segment, tags) again before the next buffer.
 *
 * A buffer that comes before any caps is refused (not-negotiated, with one
 * warning): the consumer could not describe it. Put a capsfilter behind an
 * element that sends no caps, for example fakesrc ! application/octet-stream.
 *
 * The sink does not synchronise to the clock by default (sync=false): the
 * consumer's sink does.
 *
 * Instead of a path, the ring can live in an inherited file descriptor
 * (fd), for example a sealed memfd made by ipcring-run: then neither process
 * needs any file system access (see docs/sandboxing.md).
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=640,height=360 ! ipcringsink ring=/dev/shm/video
 * gst-launch-1.0 ipcringsrc ring=/dev/shm/video ! videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location=out.webm
 * ]| Capture in one process, encode in another.
 * |[
 * gst-launch-1.0 filesrc location=in.mkv ! matroskademux ! ipcringsink ring=/dev/shm/es capacity=16777216
 * gst-launch-1.0 ipcringsrc ring=/dev/shm/es ! decodebin ! autovideosink
 * ]| Keep a demuxer and a decoder in separate processes.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstipcringelements.h"
#include "ipcring-pool.h"
#include "ipcring-protocol.h"
#include "ipcring.h"

#include <errno.h>
#include <gst/base/gstbasesink.h>
#include <time.h>
#include <gst/video/video.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (ipcring_sink_debug);
#define GST_CAT_DEFAULT ipcring_sink_debug

#define DEFAULT_RING NULL
#define DEFAULT_FD -1
#define DEFAULT_CAPACITY ((guint64) 64 << 20)
#define DEFAULT_PERMS 0600
#define DEFAULT_ON_READER_LOST GST_IPC_RING_ON_READER_LOST_WAIT
#define DEFAULT_SPIN_TIME (20 * GST_USECOND)
#define DEFAULT_HANDOFF TRUE
#define DEFAULT_LEAKY GST_IPC_RING_LEAKY_NONE
#define DEFAULT_QUEUE_BUFFERS 4

/* A clock that is not the system monotonic clock may drift against
 * CLOCK_MONOTONIC: its TIME record is repeated this often. */
#define TIME_REFRESH_NS GST_SECOND
/* How often to ask upstream for its latency again while it cannot answer. */
#define LATENCY_RETRY_NS (100 * GST_MSECOND)
/* How often the streaming thread copies the ring's counters for the stats
 * property (one system call each time). */
#define INFO_REFRESH_NS (100 * GST_MSECOND)

/* How often render checks that an attached reader is still alive (one
 * system call), so that on-reader-lost=error fires without waiting for the
 * ring to fill. */
#define LIVENESS_INTERVAL_US (100 * G_TIME_SPAN_MILLISECOND)

enum
{
  PROP_0,
  PROP_RING,
  PROP_FD,
  PROP_CAPACITY,
  PROP_PERMS,
  PROP_ON_READER_LOST,
  PROP_SPIN_TIME,
  PROP_HANDOFF,
  PROP_LEAKY,
  PROP_QUEUE_BUFFERS,
  PROP_STATS,
  N_PROPERTIES
};

static GParamSpec *properties[N_PROPERTIES];

#define GST_TYPE_IPC_RING_SINK (gst_ipc_ring_sink_get_type ())
G_DECLARE_FINAL_TYPE (GstIpcRingSink, gst_ipc_ring_sink, GST, IPC_RING_SINK, GstBaseSink);

struct _GstIpcRingSink
{
  GstBaseSink parent;

  /* properties, under the object lock */
  gchar *ring;
  gint fd;
  guint64 capacity;
  guint perms;
  GstIpcRingOnReaderLost on_reader_lost;
  guint64 spin_time;
  gboolean handoff;
  GstIpcRingLeaky leaky;
  guint queue_buffers;

  /* counters for the stats property, under the object lock, except
   * st_buffers and st_bytes: written by the streaming thread alone with
   * relaxed atomic stores (no locked instruction per buffer), read with
   * relaxed atomic loads */
  guint64 st_buffers;
  guint64 st_bytes;
  guint64 st_drops;
  guint64 st_waits;
  guint64 st_time_records;
  guint64 st_upstream_events;
  guint st_queued;
  struct ipcring_info st_info;  /* copied by the streaming thread */
  gboolean st_have_info;

  /* set in start, cleared in stop; unlock reads it under the object lock.
   * Every call on the writer is made under hold->lock (the pool lends ring
   * memory from upstream threads); blocking waits happen outside it with
   * ipcring_writer_wait_read(). */
  IpcRingWriterHold *hold;
  ipcring_writer *writer;
  gchar *path;

  /* streaming thread only */
  guint64 stream_gen;           /* reader generation the last STRM was for */
  gboolean stream_sent;
  gboolean have_caps;           /* a caps event was taken since start */
  gboolean warned_no_caps;
  gint64 next_liveness_check;
  guint64 lost_reported_gen;
  gboolean error_posted;        /* one error per run: later calls just fail */
  GstIpcRingLeaky leaky_mode;   /* the property, at start */
  guint queue_max;
  GQueue queue;                 /* leaky=downstream: buffers waiting for room */
  guint64 drop_count;           /* dropped since the last DROP record */
  guint64 drop_start;
  guint64 drop_end;
  gboolean discont_pending;
  gboolean time_sent;           /* what the last TIME record said */
  gboolean time_had_clock;
  GstClock *time_clock;
  GstClockTime time_base;
  guint64 time_sent_mono;
  gboolean time_monotonic;
  gint latency_dirty;           /* atomic: set by LATENCY events */
  gint time_dirty;              /* atomic: a state change or a new clock (check_time) */
  guint time_checks;            /* buffers since check_time last looked at the clock */
  guint64 next_info;            /* when to copy the ring's counters again (ipcring_coarse_ns) */
  gboolean latency_known;       /* upstream answered the latency query */
  guint64 latency_retry;        /* if not, when to ask again (CLOCK_MONOTONIC) */
  gboolean up_live;             /* the last answer of upstream's latency query */
  GstClockTime up_min;
  GstClockTime up_max;
};

G_DEFINE_TYPE (GstIpcRingSink, gst_ipc_ring_sink, GST_TYPE_BASE_SINK);
GST_ELEMENT_REGISTER_DEFINE (ipcringsink, "ipcringsink", GST_RANK_NONE,
    GST_TYPE_IPC_RING_SINK);

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

GType
gst_ipc_ring_on_reader_lost_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_IPC_RING_ON_READER_LOST_WAIT,
        "Keep the stream and wait for a new reader when the ring is full", "wait"},
    {GST_IPC_RING_ON_READER_LOST_ERROR, "Post an error", "error"},
    {0, NULL, NULL}
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstIpcRingOnReaderLost", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

GType
gst_ipc_ring_leaky_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_IPC_RING_LEAKY_NONE, "Not leaky: wait for room (back-pressure)", "none"},
    {GST_IPC_RING_LEAKY_UPSTREAM,
        "Drop the incoming buffer when the ring is full", "upstream"},
    {GST_IPC_RING_LEAKY_DOWNSTREAM,
          "Keep up to queue-buffers buffers of its own when the ring is full and drop the "
          "oldest of them", "downstream"},
    {0, NULL, NULL}
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstIpcRingLeaky", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* ---- Writing records ------------------------------------------------ */

typedef struct
{
  const void *data;
  gsize len;
} Part;

static GstFlowReturn ensure_stream (GstIpcRingSink * self);
static GstFlowReturn render_buffer (GstIpcRingSink * self, GstBuffer * buf);

/* A blocking ring call failed with rc: decide what to do. OK means retry. */
static GstFlowReturn
handle_ring_error (GstIpcRingSink * self, int rc, gsize len)
{
  GstBaseSink *sink = GST_BASE_SINK (self);

  /* After an error the ring stays failed (or gone), and the EOS that follows
   * an error upstream would run into it again: it was said once. */
  if (self->error_posted && rc != -ECANCELED)
    return GST_FLOW_ERROR;
  if (rc != -ECANCELED && !(rc == -EPIPE
          && self->on_reader_lost != GST_IPC_RING_ON_READER_LOST_ERROR))
    self->error_posted = TRUE;

  switch (rc) {
    case -ECANCELED:
      /* unlock(): flushing, or a state change that wants us to preroll */
      return gst_base_sink_wait_preroll (sink);
    case -EPIPE:
      if (self->on_reader_lost == GST_IPC_RING_ON_READER_LOST_ERROR) {
        GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
            ("The reader of ring %s went away.", self->path),
            ("The consumer process stopped or died. Set on-reader-lost=wait to "
                "keep the stream and wait for a new consumer."));
        return GST_FLOW_ERROR;
      }
      GST_INFO_OBJECT (self, "reader gone, waiting for a new one");
      return GST_FLOW_OK;
    case -EMSGSIZE:{
      /* Speak of buffers, whose size the user knows, not of records. */
      gsize hdr = sizeof (IpcRingWireBuffer);
      gsize max = ipcring_max_payload (self->capacity);
      GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
          ("A buffer of %" G_GSIZE_FORMAT " bytes does not fit in ring %s, whose capacity "
              "of %" G_GUINT64_FORMAT " bytes carries buffers of at most %" G_GSIZE_FORMAT
              " bytes.", len > hdr ? len - hdr : len, self->path, self->capacity, max - hdr),
          ("Raise the sink's capacity property (a power of two)."));
      return GST_FLOW_ERROR;
    }
    case -EPROTO:
      GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
          ("Ring %s is corrupt: its reader wrote inconsistent values.", self->path),
          (NULL));
      return GST_FLOW_ERROR;
    case -ENOSPC:
      /* the ring's pages are reserved as the writer first reaches them */
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT,
          ("No space left for ring %s: its file system (usually /dev/shm) is full. Free "
              "space there or use a smaller capacity.", self->path), (NULL));
      return GST_FLOW_ERROR;
    default:
      GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
          ("Could not write to ring %s: %s.", self->path, ipcring_strerror (rc)),
          (NULL));
      return GST_FLOW_ERROR;
  }
}

/* Upstream events from the consumer (the ring's back channel): decode and
 * push them upstream from the sink pad. Streaming thread only. The reader is
 * not trusted: a record that does not decode is logged and dropped. */
static void
poll_upstream (GstIpcRingSink * self)
{
  guint8 buf[IPCRING_BACK_MAX];
  for (guint n = 0; n < 16; n++) {
    size_t len = 0;
    uint32_t tag = 0;
    gboolean locked = ipcring_writer_hold_lock (self->hold);
    int rc = ipcring_writer_recv (self->writer, buf, sizeof buf, &len, &tag);
    ipcring_writer_hold_unlock (self->hold, locked);
    if (rc < 0) {
      if (rc != -EAGAIN)
        GST_DEBUG_OBJECT (self, "back channel: %s", ipcring_strerror (rc));
      return;
    }
    if (tag != IPCRING_BACK_EVENT) {
      GST_DEBUG_OBJECT (self, "back channel: skipping record %" GST_FOURCC_FORMAT,
          GST_FOURCC_ARGS (tag));
      continue;
    }
    const gchar *why = NULL;
    GstEvent *ev = ipcring_wire_decode_upstream_event (buf, (gsize) rc, &why);
    if (!ev) {
      GST_WARNING_OBJECT (self, "the consumer sent a malformed upstream event: %s", why);
      continue;
    }
    GST_DEBUG_OBJECT (self, "upstream event from the consumer: %" GST_PTR_FORMAT, ev);
    GST_OBJECT_LOCK (self);
    self->st_upstream_events++;
    GST_OBJECT_UNLOCK (self);
    gst_pad_push_event (GST_BASE_SINK_PAD (self), ev);
  }
}

/* How long a wait for room sleeps between looks at the back channel. */
#define BACK_POLL_NS (20 * GST_MSECOND)

/* The ring has no room now (rc from a call with timeout 0, under the lock,
 * which the caller has just dropped; seen is the read index that call saw):
 * wait for the reader outside the lock. OK means try again. */
static GstFlowReturn
wait_room (GstIpcRingSink * self, int rc, guint64 seen, gsize len)
{
  GST_OBJECT_LOCK (self);
  self->st_waits++;
  GST_OBJECT_UNLOCK (self);
  if (rc == -ENOBUFS) {
    /* Only buffers upstream still holds from our pool are in the way: look
     * again shortly (their release does not wake us). */
    rc = ipcring_writer_wait_read (self->writer, seen, 2 * GST_MSECOND);
    if (rc == -ETIMEDOUT)
      rc = 0;
  } else if (rc == -EAGAIN) {
    /* The consumer may ask for something (a keyframe) while we wait. */
    while ((rc = ipcring_writer_wait_read (self->writer, seen, BACK_POLL_NS)) == -ETIMEDOUT)
      poll_upstream (self);
  }
  return rc == 0 ? GST_FLOW_OK : handle_ring_error (self, rc, len);
}

/* Write one record gathered from parts. With resync, a new reader first gets
 * a stream record and the sticky events. With try_once, a full ring returns
 * GST_FLOW_CUSTOM_SUCCESS at once (the record is not written). */
static GstFlowReturn
write_record_full (GstIpcRingSink * self, guint32 tag, const Part * parts, guint n_parts,
    gboolean resync, gboolean try_once)
{
  IpcRingWriterHold *hold = self->hold;
  ipcring_writer *w = self->writer;
  gsize len = 0;
  for (guint i = 0; i < n_parts; i++)
    len += parts[i].len;

  for (;;) {
    GstFlowReturn ret;
    if (resync && (ret = ensure_stream (self)) != GST_FLOW_OK)
      return ret;
    void *p;
    gboolean locked = ipcring_writer_hold_lock (hold);
    /* Buffers upstream has taken from the pool but not rendered come after
     * this record: they must not hold it up. */
    if (locked)
      ipcring_writer_hold_skip_open (hold, NULL);
    int rc = ipcring_writer_reserve (w, len, 0, &p);
    if (rc == 0) {
      /* A reader may have attached while we waited for room: it must see
       * the stream record first. The reservation is simply not committed. */
      if (resync && ipcring_writer_reader_generation (w) != self->stream_gen) {
        ipcring_writer_hold_unlock (hold, locked);
        continue;
      }
      guint8 *d = p;
      for (guint i = 0; i < n_parts; i++) {
        memcpy (d, parts[i].data, parts[i].len);
        d += parts[i].len;
      }
      ipcring_writer_commit (w, len, tag);
      ipcring_writer_hold_unlock (hold, locked);
      return GST_FLOW_OK;
    }
    guint64 seen = ipcring_writer_read_index (w);
    ipcring_writer_hold_unlock (hold, locked);
    if (try_once && (rc == -EAGAIN || rc == -ENOBUFS))
      return GST_FLOW_CUSTOM_SUCCESS;
    if ((ret = wait_room (self, rc, seen, len)) != GST_FLOW_OK)
      return ret;
  }
}

static GstFlowReturn
write_record (GstIpcRingSink * self, guint32 tag, const Part * parts, guint n_parts,
    gboolean resync)
{
  return write_record_full (self, tag, parts, n_parts, resync, FALSE);
}

/* ---- TIME records ---------------------------------------------------- */

/* The element's base time is this run's: PLAYING, or on the way there (a
 * live pipeline renders its first buffer while the sink still commits its
 * state; the bin sets the base time before it starts that change). */
static gboolean
base_time_valid (GstIpcRingSink * self)
{
  GST_OBJECT_LOCK (self);
  gboolean ok = GST_STATE (self) == GST_STATE_PLAYING
      || (GST_STATE (self) == GST_STATE_PAUSED && GST_STATE_NEXT (self) == GST_STATE_PLAYING);
  GST_OBJECT_UNLOCK (self);
  return ok;
}

/* Write a TIME record with the pipeline's clock as it is now. */
static GstFlowReturn
write_time (GstIpcRingSink * self, gboolean resync)
{
  if (g_atomic_int_compare_and_exchange (&self->latency_dirty, 1, 0)) {
    GstQuery *q = gst_query_new_latency ();
    self->latency_known = gst_pad_peer_query (GST_BASE_SINK_PAD (self), q);
    if (self->latency_known) {
      gst_query_parse_latency (q, &self->up_live, &self->up_min, &self->up_max);
    } else {
      /* Upstream cannot answer yet (not negotiated): ask again later. */
      self->up_live = FALSE;
      self->up_min = 0;
      self->up_max = GST_CLOCK_TIME_NONE;
      self->latency_retry = ipcring_monotonic_ns () + LATENCY_RETRY_NS;
    }
    gst_query_unref (q);
    GST_DEBUG_OBJECT (self, "upstream live %d, latency %" GST_TIME_FORMAT " to %"
        GST_TIME_FORMAT, self->up_live, GST_TIME_ARGS (self->up_min),
        GST_TIME_ARGS (self->up_max));
  }

  IpcRingWireTime t = { 0 };
  GstClock *clock = gst_element_get_clock (GST_ELEMENT (self));
  gboolean playing = base_time_valid (self);
  t.flags = self->latency_known ? IPCRING_TIME_LATENCY : 0;
  t.flags |= self->up_live ? IPCRING_TIME_LIVE : 0;
  t.latency_min = self->up_min;
  t.latency_max = self->up_max;
  t.base_time = GST_CLOCK_TIME_NONE;
  t.clock_time = GST_CLOCK_TIME_NONE;
  t.monotonic = ipcring_monotonic_ns ();
  gboolean mono = FALSE;
  if (clock && playing) {
    mono = ipcring_clock_is_monotonic (clock);
    t.base_time = gst_element_get_base_time (GST_ELEMENT (self));
    if (mono) {
      t.clock_time = gst_clock_get_time (clock);
      t.monotonic = t.clock_time;
    } else {
      /* The clock's reading between two of CLOCK_MONOTONIC. */
      guint64 m0 = ipcring_monotonic_ns ();
      t.clock_time = gst_clock_get_time (clock);
      guint64 m1 = ipcring_monotonic_ns ();
      t.monotonic = m0 + (m1 - m0) / 2;
    }
    t.flags |= IPCRING_TIME_CLOCK | (mono ? IPCRING_TIME_MONOTONIC : 0);
  }
  Part part = { &t, sizeof t };
  GstFlowReturn ret = write_record (self, IPCRING_REC_TIME, &part, 1, resync);
  if (ret == GST_FLOW_OK) {
    GST_DEBUG_OBJECT (self, "TIME: base %" GST_TIME_FORMAT " clock %" GST_TIME_FORMAT
        " flags 0x%x", GST_TIME_ARGS (t.base_time), GST_TIME_ARGS (t.clock_time), t.flags);
    self->time_sent = TRUE;
    self->time_had_clock = (t.flags & IPCRING_TIME_CLOCK) != 0;
    self->time_base = t.base_time;
    self->time_monotonic = mono;
    self->time_sent_mono = ipcring_coarse_ns ();
    gst_object_replace ((GstObject **) & self->time_clock, (GstObject *) clock);
    GST_OBJECT_LOCK (self);
    self->st_time_records++;
    GST_OBJECT_UNLOCK (self);
  }
  if (clock)
    gst_object_unref (clock);
  return ret;
}

/* How many buffers check_time() lets pass between looks at the clock and
 * the base time when no state change or new clock flagged them. */
#define TIME_CHECK_EVERY 64

/* Before a buffer: a TIME record if the base time, the clock or the latency
 * changed, or a drifting clock's is a second old. Looking at the element's
 * clock and base time takes the object lock three times; they change with a
 * state change or a new clock (time_dirty), so the look is made then, and
 * every TIME_CHECK_EVERY buffers for a base time an application sets by
 * hand. */
static GstFlowReturn
check_time (GstIpcRingSink * self)
{
  if (!self->latency_known && ipcring_monotonic_ns () >= self->latency_retry)
    g_atomic_int_set (&self->latency_dirty, 1);
  gboolean send = !self->time_sent || g_atomic_int_get (&self->latency_dirty);
  if (!send && self->time_had_clock && !self->time_monotonic
      && ipcring_coarse_ns () - self->time_sent_mono >= TIME_REFRESH_NS)
    send = TRUE;
  if (!send && (++self->time_checks >= TIME_CHECK_EVERY
          || g_atomic_int_get (&self->time_dirty))) {
    /* cleared before the look: a change flagged during it is looked at
     * again with the next buffer */
    g_atomic_int_set (&self->time_dirty, 0);
    self->time_checks = 0;
    GstClock *clock = gst_element_get_clock (GST_ELEMENT (self));
    gboolean has_clock = clock && base_time_valid (self);
    if (has_clock != self->time_had_clock)
      send = TRUE;
    else if (has_clock && (clock != self->time_clock
            || gst_element_get_base_time (GST_ELEMENT (self)) != self->time_base))
      send = TRUE;
    if (clock)
      gst_object_unref (clock);
  }
  return send ? write_time (self, TRUE) : GST_FLOW_OK;
}

static GstFlowReturn
write_caps (GstIpcRingSink * self, GstCaps * caps, gboolean resync)
{
  gchar *str = gst_caps_to_string (caps);
  Part part = { str, strlen (str) };
  GstFlowReturn ret;
  if (part.len > IPCRING_MAX_CAPS_STRING) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Caps too large to carry (%" G_GSIZE_FORMAT
            " bytes).", part.len), ("%s", str));
    ret = GST_FLOW_ERROR;
  } else {
    ret = write_record (self, IPCRING_REC_CAPS, &part, 1, resync);
  }
  g_free (str);
  return ret;
}

static GstFlowReturn
write_event (GstIpcRingSink * self, GstEvent * event, gboolean resync)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      return write_caps (self, caps, resync);
    }
    case GST_EVENT_SEGMENT:{
      const GstSegment *seg;
      IpcRingWireSegment w;
      gst_event_parse_segment (event, &seg);
      ipcring_wire_encode_segment (seg, gst_event_get_seqnum (event), &w);
      Part part = { &w, sizeof w };
      return write_record (self, IPCRING_REC_SEGMENT, &part, 1, resync);
    }
    case GST_EVENT_EOS:
      return write_record (self, IPCRING_REC_EOS, NULL, 0, resync);
    default:{
      const gchar *why = NULL;
      GBytes *bytes = ipcring_wire_encode_event (event, &why);
      if (!bytes) {
        GST_DEBUG_OBJECT (self, "not carrying %" GST_PTR_FORMAT ": %s", event, why);
        return GST_FLOW_OK;
      }
      gsize size;
      Part part;
      part.data = g_bytes_get_data (bytes, &size);
      part.len = size;
      GstFlowReturn ret = write_record (self, IPCRING_REC_EVENT, &part, 1, resync);
      g_bytes_unref (bytes);
      return ret;
    }
  }
}

static gboolean
collect_sticky (GstPad * pad, GstEvent ** event, gpointer user_data)
{
  GList **list = user_data;
  if (GST_EVENT_TYPE (*event) != GST_EVENT_EOS)
    *list = g_list_prepend (*list, gst_event_ref (*event));
  return TRUE;
}

/* Before a record: if a new reader attached, give it a stream record and the
 * sticky events so it can start from here. */
static GstFlowReturn
ensure_stream (GstIpcRingSink * self)
{
  ipcring_writer *w = self->writer;
  guint64 gen = ipcring_writer_reader_generation (w);
  if (self->stream_sent && gen == self->stream_gen)
    return GST_FLOW_OK;

  GST_DEBUG_OBJECT (self, "stream record for reader generation %" G_GUINT64_FORMAT, gen);
  self->stream_gen = gen;
  self->stream_sent = TRUE;

  struct ipcring_info info;
  g_mutex_lock (&self->hold->lock);
  ipcring_writer_info (w, &info);
  g_mutex_unlock (&self->hold->lock);
  IpcRingWireStream strm = { IPCRING_PROTOCOL_VERSION, 0, info.writer_generation, gen };
  Part part = { &strm, sizeof strm };
  GstFlowReturn ret = write_record (self, IPCRING_REC_STREAM, &part, 1, FALSE);
  if (ret == GST_FLOW_OK)
    ret = write_time (self, FALSE);
  if (ret != GST_FLOW_OK) {
    self->stream_sent = FALSE;
    return ret;
  }

  /* The pad's lock is held while iterating: collect first, write after. */
  GList *events = NULL;
  gst_pad_sticky_events_foreach (GST_BASE_SINK_PAD (self), collect_sticky, &events);
  events = g_list_reverse (events);
  for (GList * l = events; l && ret == GST_FLOW_OK; l = l->next)
    ret = write_event (self, l->data, FALSE);
  g_list_free_full (events, (GDestroyNotify) gst_event_unref);
  if (ret != GST_FLOW_OK)
    self->stream_sent = FALSE;  /* try again with the next record */
  return ret;
}

/* Tell on-reader-lost=error about a dead reader without waiting for the ring
 * to fill up. */
static GstFlowReturn
check_reader (GstIpcRingSink * self)
{
  if (self->on_reader_lost != GST_IPC_RING_ON_READER_LOST_ERROR)
    return GST_FLOW_OK;
  gint64 now = g_get_monotonic_time ();
  if (now < self->next_liveness_check)
    return GST_FLOW_OK;
  self->next_liveness_check = now + LIVENESS_INTERVAL_US;
  guint64 gen = ipcring_writer_reader_generation (self->writer);
  if (gen == 0 || gen == self->lost_reported_gen || ipcring_writer_reader_alive (self->writer))
    return GST_FLOW_OK;
  self->lost_reported_gen = gen;
  return handle_ring_error (self, -EPIPE, 0);
}

/* ---- GstBaseSink ---------------------------------------------------- */

/* A buffer from our pool, filled in place: write the buffer header in front
 * of the payload and publish the claim. No copy, no wait (the room was
 * claimed when upstream acquired the buffer). */
static GstFlowReturn
render_claimed (GstIpcRingSink * self, GstBuffer * buf, IpcRingSinkMemory * m,
    const IpcRingWireBuffer * hdr)
{
  IpcRingWriterHold *hold = self->hold;
  GstFlowReturn ret;
  for (;;) {
    if ((ret = ensure_stream (self)) != GST_FLOW_OK)
      return ret;
    g_mutex_lock (&hold->lock);
    if (ipcring_writer_reader_generation (self->writer) == self->stream_gen)
      break;
    g_mutex_unlock (&hold->lock);
  }
  /* Upstream keeps a reference (videorate's previous frame, a decoder's
   * reference frame): its bytes must stay as they are for as long as it
   * keeps them, so they cannot be the record the reader releases. Copy it,
   * keep its room until upstream lets go, and lend this upstream ordinary
   * memory from now on so that kept buffers never pin more of the ring. */
  if (m->state == IPCRING_CLAIM_OPEN && GST_MINI_OBJECT_REFCOUNT_VALUE (buf) > 1) {
    if (!hold->upstream_keeps)
      GST_INFO_OBJECT (self, "upstream keeps rendered buffers: pool lends ordinary memory");
    hold->upstream_keeps = TRUE;
    g_queue_unlink (&hold->open, &m->link);
    ipcring_writer_claim_skip (self->writer, m->id);
    m->state = IPCRING_CLAIM_SKIPPED;
  }
  if (m->state != IPCRING_CLAIM_OPEN) {
    /* Skipped (a record was written meanwhile, or upstream keeps it): copy. */
    g_mutex_unlock (&hold->lock);
    GstMapInfo map;
    if (!gst_buffer_map (buf, &map, GST_MAP_READ))
      return GST_FLOW_ERROR;
    Part parts[2] = { {hdr, sizeof *hdr}, {map.data, map.size} };
    ret = write_record (self, IPCRING_REC_BUFFER, parts, 2, TRUE);
    gst_buffer_unmap (buf, &map);
    return ret;
  }
  /* Buffers acquired before this one and not rendered yet would hold it up
   * (the ring publishes claims in claim order): they are skipped and copied
   * if they come later (a decoder's reordered frames). */
  ipcring_writer_hold_skip_open (hold, m);
  g_queue_unlink (&hold->open, &m->link);
  memcpy (m->record, hdr, sizeof *hdr);
  int rc = ipcring_writer_claim_submit (self->writer, m->id,
      sizeof *hdr + GST_MEMORY_CAST (m)->size, IPCRING_REC_BUFFER);
  m->state = rc == 0 ? IPCRING_CLAIM_SUBMITTED : IPCRING_CLAIM_SKIPPED;
  if (rc != 0)
    ipcring_writer_claim_skip (self->writer, m->id);
  g_mutex_unlock (&hold->lock);
  return rc == 0 ? GST_FLOW_OK : handle_ring_error (self, rc, 0);
}

/* Offer a pool of ring memory for raw video: upstream renders each frame
 * straight into a ring record. No video meta is offered: the frame travels
 * with the default layout the caps describe. */
static gboolean
gst_ipc_ring_sink_propose_allocation (GstBaseSink * sink, GstQuery * query)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);
  GstCaps *caps;
  gboolean need_pool;
  GstVideoInfo info;

  gst_query_parse_allocation (query, &caps, &need_pool);
  if (!caps || gst_caps_get_size (caps) != 1
      || !gst_structure_has_name (gst_caps_get_structure (caps, 0), "video/x-raw")
      || !gst_video_info_from_caps (&info, caps))
    return TRUE;
  /* A leaky sink drops buffers instead of waiting for room: pool buffers
   * would wait for room when upstream acquires them. */
  GST_OBJECT_LOCK (self);
  GstIpcRingLeaky leaky = self->leaky;
  GST_OBJECT_UNLOCK (self);
  if (leaky != GST_IPC_RING_LEAKY_NONE)
    return TRUE;
  GST_OBJECT_LOCK (self);
  IpcRingWriterHold *hold = self->hold ? ipcring_writer_hold_ref (self->hold) : NULL;
  GST_OBJECT_UNLOCK (self);
  if (!hold)
    return TRUE;
  guint64 max = ipcring_max_payload (hold->capacity) - sizeof (IpcRingWireBuffer);
  if (info.size > max || info.size > G_MAXUINT) {
    ipcring_writer_hold_unref (hold);
    return TRUE;                /* too large for the ring: the error comes at render */
  }
  /* From now on other threads (upstream's, whoever frees a buffer) call on
   * the writer: every call takes the lock. */
  g_atomic_int_set (&hold->shared, 1);
  GstBufferPool *pool = ipcring_sink_pool_new (hold);
  ipcring_writer_hold_unref (hold);
  GstStructure *config = gst_buffer_pool_get_config (pool);
  gst_buffer_pool_config_set_params (config, caps, (guint) info.size, 0, 0);
  if (!gst_buffer_pool_set_config (pool, config)) {
    gst_object_unref (pool);
    return TRUE;
  }
  gst_query_add_allocation_pool (query, pool, (guint) info.size, 0, 0);
  gst_object_unref (pool);
  return TRUE;
}

/* Dropped buffers not announced yet: a DROP record now, and DISCONT on the
 * next buffer written. */
static GstFlowReturn
announce_drops (GstIpcRingSink * self, gboolean try_once)
{
  if (!self->drop_count)
    return GST_FLOW_OK;
  GST_OBJECT_LOCK (self);
  guint64 total = self->st_drops;
  GST_OBJECT_UNLOCK (self);
  IpcRingWireDrop d = { self->drop_count, total, self->drop_start, self->drop_end };
  Part part = { &d, sizeof d };
  GstFlowReturn ret = write_record_full (self, IPCRING_REC_DROP, &part, 1, TRUE, try_once);
  if (ret == GST_FLOW_OK) {
    GST_DEBUG_OBJECT (self, "announced %" G_GUINT64_FORMAT " dropped buffers", d.count);
    self->drop_count = 0;
    self->discont_pending = TRUE;
  }
  return ret;
}

/* Write one buffer. With try_once a full ring returns GST_FLOW_CUSTOM_SUCCESS
 * and nothing is written. Dropped buffers before it are announced first: a
 * DROP record, and the DISCONT flag on this buffer. */
static GstFlowReturn
write_buffer (GstIpcRingSink * self, GstBuffer * buf, gboolean try_once)
{
  GstFlowReturn ret;
  IpcRingWireBuffer hdr = {
    .pts = GST_BUFFER_PTS (buf),
    .dts = GST_BUFFER_DTS (buf),
    .duration = GST_BUFFER_DURATION (buf),
    .offset = GST_BUFFER_OFFSET (buf),
    .offset_end = GST_BUFFER_OFFSET_END (buf),
    .flags = GST_BUFFER_FLAGS (buf) & ~(guint) (GST_MINI_OBJECT_FLAG_LAST - 1),
    .reserved = 0,
  };

  if ((ret = announce_drops (self, try_once)) != GST_FLOW_OK)
    return ret;
  if (self->discont_pending)
    hdr.flags |= GST_BUFFER_FLAG_DISCONT;

  gsize bytes;
  /* Ring memory exists only once a pool was made (hold->shared). */
  IpcRingSinkMemory *zc = g_atomic_int_get (&self->hold->shared)
      ? ipcring_sink_memory_of (buf, self->hold) : NULL;
  if (zc && zc->state == IPCRING_CLAIM_OPEN) {
    bytes = gst_buffer_get_size (buf);
    ret = render_claimed (self, buf, zc, &hdr);
    goto count;
  }

  /* Gather the memories without merging them (a buffer has at most 16). */
  enum { MAX_MEMS = 16 };
  guint n_mem = gst_buffer_n_memory (buf);
  bytes = 0;
  GstMapInfo maps[MAX_MEMS];
  Part parts[1 + MAX_MEMS];
  guint n_parts = 1, n_maps = 0;
  parts[0].data = &hdr;
  parts[0].len = sizeof hdr;
  if (n_mem > MAX_MEMS)
    goto map_failed;
  for (guint i = 0; i < n_mem; i++) {
    GstMemory *mem = gst_buffer_peek_memory (buf, i);
    if (!gst_memory_map (mem, &maps[i], GST_MAP_READ))
      goto map_failed;
    n_maps++;
    parts[n_parts].data = maps[i].data;
    parts[n_parts].len = maps[i].size;
    bytes += maps[i].size;
    n_parts++;
  }

  ret = write_record_full (self, IPCRING_REC_BUFFER, parts, n_parts, TRUE, try_once);

done:
  for (guint i = 0; i < n_maps; i++)
    gst_memory_unmap (maps[i].memory, &maps[i]);
count:
  if (ret == GST_FLOW_OK) {
    self->discont_pending = FALSE;
    /* only this thread writes them: see the declaration */
    __atomic_store_n (&self->st_buffers, self->st_buffers + 1, __ATOMIC_RELAXED);
    __atomic_store_n (&self->st_bytes, self->st_bytes + bytes, __ATOMIC_RELAXED);
  }
  return ret;

map_failed:
  GST_ELEMENT_ERROR (self, RESOURCE, READ, ("Could not read a buffer to send it."), (NULL));
  ret = GST_FLOW_ERROR;
  goto done;
}

/* Count a buffer that is not sent; the next one sent announces it. */
static void
drop_buffer (GstIpcRingSink * self, GstBuffer * buf)
{
  GstClockTime pts = GST_BUFFER_PTS (buf), dur = GST_BUFFER_DURATION (buf);
  if (self->drop_count == 0) {
    self->drop_start = pts;
    self->drop_end = GST_CLOCK_TIME_NONE;
  }
  if (GST_CLOCK_TIME_IS_VALID (pts))
    self->drop_end = GST_CLOCK_TIME_IS_VALID (dur) ? pts + dur : pts;
  self->drop_count++;
  GST_OBJECT_LOCK (self);
  self->st_drops++;
  GST_OBJECT_UNLOCK (self);
  GST_LOG_OBJECT (self, "ring full, dropping %" GST_PTR_FORMAT, buf);
}

static void
update_queued (GstIpcRingSink * self)
{
  GST_OBJECT_LOCK (self);
  self->st_queued = self->queue.length;
  GST_OBJECT_UNLOCK (self);
}

/* leaky=downstream: write what the sink queued, oldest first; with
 * try_once stop at the first that does not fit. */
static GstFlowReturn
flush_queue (GstIpcRingSink * self, gboolean try_once)
{
  GstFlowReturn ret = GST_FLOW_OK;
  GstBuffer *b;
  while ((b = g_queue_peek_head (&self->queue))) {
    ret = write_buffer (self, b, try_once);
    if (ret != GST_FLOW_OK)
      break;
    gst_buffer_unref (g_queue_pop_head (&self->queue));
  }
  update_queued (self);
  return ret;
}

static void
clear_queue (GstIpcRingSink * self)
{
  g_queue_clear_full (&self->queue, (GDestroyNotify) gst_buffer_unref);
  update_queued (self);
}

/* The ring's counters for the stats property: only the streaming thread
 * calls on the writer unlocked (until there is a pool), so it copies them,
 * at most every INFO_REFRESH_NS unless forced. */
static void
refresh_info (GstIpcRingSink * self, gboolean force)
{
  guint64 now = ipcring_coarse_ns ();
  if (!self->hold || (!force && now < self->next_info))
    return;
  self->next_info = now + INFO_REFRESH_NS;
  struct ipcring_info info;
  gboolean locked = ipcring_writer_hold_lock (self->hold);
  ipcring_writer_info (self->writer, &info);
  ipcring_writer_hold_unlock (self->hold, locked);
  GST_OBJECT_LOCK (self);
  self->st_info = info;
  self->st_have_info = TRUE;
  GST_OBJECT_UNLOCK (self);
}

static GstFlowReturn
gst_ipc_ring_sink_render (GstBaseSink * sink, GstBuffer * buf)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);
  GstFlowReturn ret = render_buffer (self, buf);
  refresh_info (self, FALSE);
  return ret;
}

static GstFlowReturn
render_buffer (GstIpcRingSink * self, GstBuffer * buf)
{
  /* A buffer the consumer could not describe: refuse it rather than write
   * it, as the source would fail on it. GstPad lets one through when a
   * sticky caps event is lost, as when the pad is deactivated and
   * reactivated while an upstream thread is between its caps and its push;
   * upstream then sends the caps again or fails with not-negotiated. */
  if (G_UNLIKELY (!self->have_caps)) {
    if (!self->warned_no_caps)
      GST_ELEMENT_WARNING (self, CORE, NEGOTIATION, ("Refused a buffer that came before any "
              "caps."), ("The consumer needs the caps of a stream before its data; "
              "upstream must send a caps event first."));
    else
      GST_DEBUG_OBJECT (self, "refused %" GST_PTR_FORMAT ": no caps yet", buf);
    self->warned_no_caps = TRUE;
    return GST_FLOW_NOT_NEGOTIATED;
  }
  poll_upstream (self);
  GstFlowReturn ret = check_reader (self);
  if (ret == GST_FLOW_OK)
    ret = check_time (self);
  if (ret != GST_FLOW_OK)
    return ret;

  switch (self->leaky_mode) {
    case GST_IPC_RING_LEAKY_UPSTREAM:
      ret = write_buffer (self, buf, TRUE);
      if (ret == GST_FLOW_CUSTOM_SUCCESS) {
        drop_buffer (self, buf);
        ret = GST_FLOW_OK;
      }
      return ret;
    case GST_IPC_RING_LEAKY_DOWNSTREAM:
      ret = flush_queue (self, TRUE);
      if (ret == GST_FLOW_OK)
        ret = write_buffer (self, buf, TRUE);
      if (ret != GST_FLOW_CUSTOM_SUCCESS)
        return ret;
      g_queue_push_tail (&self->queue, gst_buffer_ref (buf));
      while (self->queue.length > self->queue_max) {
        GstBuffer *old = g_queue_pop_head (&self->queue);
        drop_buffer (self, old);
        gst_buffer_unref (old);
      }
      update_queued (self);
      return GST_FLOW_OK;
    case GST_IPC_RING_LEAKY_NONE:
    default:
      return write_buffer (self, buf, FALSE);
  }
}

/* EOS: write it, then wait until a reader has read everything, so that a
 * producer that finishes before its consumer starts loses nothing. */
static GstFlowReturn
finish_stream (GstIpcRingSink * self, GstEvent * event)
{
  GstFlowReturn ret = write_event (self, event, TRUE);
  while (ret == GST_FLOW_OK) {
    g_mutex_lock (&self->hold->lock);
    int rc = ipcring_writer_flush (self->writer, 0);
    guint64 seen = ipcring_writer_read_index (self->writer);
    g_mutex_unlock (&self->hold->lock);
    if (rc == 0)
      break;
    if (rc == -EAGAIN && (rc = ipcring_writer_wait_read (self->writer, seen, -1)) == 0)
      continue;
    ret = handle_ring_error (self, rc, 0);
    if (ret == GST_FLOW_OK && rc == -EPIPE) {
      /* on-reader-lost=wait: a new reader starts at the next stream record,
       * so give it one, the sticky events and the EOS again. */
      while ((rc = ipcring_writer_wait_reader (self->writer, -1)) != 0)
        if ((ret = handle_ring_error (self, rc, 0)) != GST_FLOW_OK)
          return ret;
      ret = write_event (self, event, TRUE);
    }
  }
  if (ret == GST_FLOW_OK) {
    GST_DEBUG_OBJECT (self, "reader drained the ring, removing %s", self->path);
    g_mutex_lock (&self->hold->lock);
    ipcring_writer_unlink (self->writer);
    g_mutex_unlock (&self->hold->lock);
  }
  return ret;
}

static gboolean
gst_ipc_ring_sink_event (GstBaseSink * sink, GstEvent * event)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);
  GstFlowReturn ret = GST_FLOW_OK;

  if (GST_EVENT_TYPE (event) == GST_EVENT_FLUSH_STOP) {
    clear_queue (self);
  } else if (GST_EVENT_IS_SERIALIZED (event)) {
    /* The queued buffers came before the event, and so did the drops. */
    if (self->queue.length)
      ret = flush_queue (self, FALSE);
    if (ret == GST_FLOW_OK)
      ret = announce_drops (self, FALSE);
    if (ret == GST_FLOW_OK)
      ret = GST_EVENT_TYPE (event) == GST_EVENT_EOS ? finish_stream (self, event)
          : write_event (self, event, TRUE);
    refresh_info (self, TRUE);
  }

  if (ret != GST_FLOW_OK) {
    GST_DEBUG_OBJECT (self, "event %" GST_PTR_FORMAT " not written: %s", event,
        gst_flow_get_name (ret));
    gst_event_unref (event);
    return FALSE;
  }
  gboolean caps = GST_EVENT_TYPE (event) == GST_EVENT_CAPS;
  gboolean ok = GST_BASE_SINK_CLASS (gst_ipc_ring_sink_parent_class)->event (sink, event);
  /* The pad stores the caps, which a new reader gets (ensure_stream), only
   * when this returns TRUE. */
  if (ok && caps)
    self->have_caps = TRUE;
  return ok;
}

static gboolean
gst_ipc_ring_sink_start (GstBaseSink * sink)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);

  GST_OBJECT_LOCK (self);
  gchar *path = g_strdup (self->ring);
  gint fd = self->fd;
  guint64 capacity = self->capacity;
  guint perms = self->perms;
  guint64 spin_time = self->spin_time;
  gboolean handoff = self->handoff;
  GST_OBJECT_UNLOCK (self);

  if (fd >= 0 && path && *path) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("Both ring=%s and fd=%d are set.", path, fd),
        ("Set one of them: ring for a file path, fd for an inherited descriptor."));
    g_free (path);
    return FALSE;
  }
  if (fd < 0 && (!path || !*path)) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No ring file given."),
        ("Set the ring property to a file path, for example ring=/dev/shm/video, "
            "or fd to an inherited descriptor."));
    g_free (path);
    return FALSE;
  }
  if (capacity < IPCRING_CAPACITY_MIN || capacity > IPCRING_CAPACITY_MAX
      || (capacity & (capacity - 1))) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("capacity=%" G_GUINT64_FORMAT " is not a power of two from %" G_GUINT64_FORMAT
            " to %" G_GUINT64_FORMAT " bytes.", capacity, (guint64) IPCRING_CAPACITY_MIN,
            (guint64) IPCRING_CAPACITY_MAX), ("For example capacity=67108864 (64 MiB)."));
    g_free (path);
    return FALSE;
  }

  ipcring_writer *w = NULL;
  int rc;
  if (fd >= 0) {
    g_free (path);
    path = g_strdup_printf ("fd %d", fd);
    /* A sealed memfd keeps its size: the ring takes the capacity from it
     * unless one was set explicitly. */
    rc = ipcring_writer_create_fd (fd, capacity == DEFAULT_CAPACITY ? 0 : capacity, 0, &w);
    if (rc != 0) {
      if (rc == -EBADF)
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("fd=%d is not an open file descriptor.", fd),
            ("Pass a descriptor the process inherited, for example from ipcring-run."));
      else
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("Cannot create a ring in fd %d: %s.", fd, ipcring_strerror (rc)),
            ("Pass an empty memfd, or a sealed one sized for the ring (ipcring-run makes one)."));
      g_free (path);
      return FALSE;
    }
  } else {
    rc = ipcring_writer_create (path, capacity, perms, 0, &w);
  }
  if (rc != 0) {
    gchar *dir = g_path_get_dirname (path);
    switch (rc) {
      case -ENOENT:
      case -ENOTDIR:
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("Cannot create ring %s: the directory %s does not exist.", path, dir),
            ("Create the directory or choose another ring path."));
        break;
      case -EACCES:
      case -EPERM:
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("Cannot create ring %s: permission denied.", path),
            ("The file belongs to another user, or %s is not writable.", dir));
        break;
      case -EBUSY:
        GST_ELEMENT_ERROR (self, RESOURCE, BUSY,
            ("Ring %s is in use by another running ipcringsink.", path),
            ("Stop the other producer or choose another ring path."));
        break;
      case -ERANGE:
        GST_ELEMENT_ERROR (self, RESOURCE, BUSY,
            ("Ring %s is still read by a consumer and has another capacity.", path),
            ("Use the capacity the ring was made with, or stop the consumer first."));
        break;
      case -EEXIST:
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("%s exists and is not a ring that can be reused.", path),
            ("Remove the file or choose another ring path."));
        break;
      case -ELOOP:
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("%s is a symbolic link; rings are never opened through links.", path),
            ("Give the real path."));
        break;
      case -ENOSPC:
        GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT,
            ("No space for a ring of %" G_GUINT64_FORMAT " bytes in %s.", capacity, dir),
            ("Free some space there, or use a smaller capacity."));
        break;
      default:
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
            ("Cannot create ring %s: %s.", path, ipcring_strerror (rc)), (NULL));
        break;
    }
    g_free (dir);
    g_free (path);
    return FALSE;
  }

  GST_INFO_OBJECT (self, "created ring %s, capacity %" G_GUINT64_FORMAT, path, capacity);
  ipcring_writer_set_spin (w, (int64_t) spin_time);
  ipcring_writer_set_handoff (w, handoff);
  self->stream_sent = FALSE;
  self->stream_gen = 0;
  self->have_caps = FALSE;
  self->warned_no_caps = FALSE;
  self->lost_reported_gen = 0;
  self->next_liveness_check = 0;
  self->error_posted = FALSE;
  self->drop_count = 0;
  self->discont_pending = FALSE;
  self->time_sent = FALSE;
  self->time_had_clock = FALSE;
  gst_object_replace ((GstObject **) & self->time_clock, NULL);
  g_atomic_int_set (&self->latency_dirty, 1);
  g_atomic_int_set (&self->time_dirty, 1);
  self->time_checks = 0;
  self->latency_known = FALSE;
  self->latency_retry = 0;
  GST_OBJECT_LOCK (self);
  self->leaky_mode = self->leaky;
  self->queue_max = self->queue_buffers;
  __atomic_store_n (&self->st_buffers, 0, __ATOMIC_RELAXED);
  __atomic_store_n (&self->st_bytes, 0, __ATOMIC_RELAXED);
  self->st_drops = self->st_waits = 0;
  self->st_time_records = self->st_upstream_events = 0;
  memset (&self->st_info, 0, sizeof self->st_info);
  self->st_have_info = FALSE;
  self->next_info = 0;
  self->hold = ipcring_writer_hold_new (w, capacity);
  self->writer = w;
  self->path = path;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_ipc_ring_sink_stop (GstBaseSink * sink)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);

  GST_OBJECT_LOCK (self);
  IpcRingWriterHold *hold = self->hold;
  gchar *path = self->path;
  self->hold = NULL;
  self->writer = NULL;
  self->path = NULL;
  GST_OBJECT_UNLOCK (self);

  if (hold) {
    /* A clean stop: the reader drains what is left and then sees the end,
     * not a dead writer. An attached reader keeps its mapping, and so does
     * upstream for pool buffers it still holds: the ring is closed when the
     * last of them is gone. */
    g_mutex_lock (&hold->lock);
    struct ipcring_info info;
    ipcring_writer_info (hold->w, &info);       /* the last counters, for stats */
    GST_OBJECT_LOCK (self);
    self->st_info = info;
    self->st_have_info = TRUE;
    GST_OBJECT_UNLOCK (self);
    hold->closed = TRUE;
    ipcring_writer_eos (hold->w);
    ipcring_writer_unlink (hold->w);
    GST_DEBUG_OBJECT (self, "lent %" G_GUINT64_FORMAT " buffers in ring memory, %"
        G_GUINT64_FORMAT " in ordinary memory", hold->lent, hold->fallbacks);
    g_mutex_unlock (&hold->lock);
    ipcring_writer_hold_unref (hold);
  }
  g_free (path);
  clear_queue (self);
  gst_object_replace ((GstObject **) & self->time_clock, NULL);
  return TRUE;
}

static gboolean
gst_ipc_ring_sink_unlock (GstBaseSink * sink)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);
  GST_OBJECT_LOCK (self);
  if (self->writer)
    ipcring_writer_interrupt (self->writer);
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_ipc_ring_sink_unlock_stop (GstBaseSink * sink)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (sink);
  GST_OBJECT_LOCK (self);
  if (self->writer)
    ipcring_writer_clear_interrupt (self->writer);
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

/* A LATENCY event means the pipeline's latency changed, and with it maybe
 * upstream's: the next TIME record asks again. */
static gboolean
gst_ipc_ring_sink_send_event (GstElement * element, GstEvent * event)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (element);
  if (GST_EVENT_TYPE (event) == GST_EVENT_LATENCY)
    g_atomic_int_set (&self->latency_dirty, 1);
  return GST_ELEMENT_CLASS (gst_ipc_ring_sink_parent_class)->send_event (element, event);
}

/* The base time and the clock check_time() looks at change with these. */
static GstStateChangeReturn
gst_ipc_ring_sink_change_state (GstElement * element, GstStateChange transition)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (element);
  g_atomic_int_set (&self->time_dirty, 1);
  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS (gst_ipc_ring_sink_parent_class)->change_state (element, transition);
  g_atomic_int_set (&self->time_dirty, 1);
  return ret;
}

static gboolean
gst_ipc_ring_sink_set_clock (GstElement * element, GstClock * clock)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (element);
  gboolean ret = GST_ELEMENT_CLASS (gst_ipc_ring_sink_parent_class)->set_clock (element, clock);
  g_atomic_int_set (&self->time_dirty, 1);
  return ret;
}

/* ---- GObject --------------------------------------------------------- */

static GstStructure *
make_stats (GstIpcRingSink * self)
{
  GST_OBJECT_LOCK (self);
  GstStructure *s = gst_structure_new ("GstIpcRingSinkStats",
      "buffers", G_TYPE_UINT64, __atomic_load_n (&self->st_buffers, __ATOMIC_RELAXED),
      "bytes", G_TYPE_UINT64, __atomic_load_n (&self->st_bytes, __ATOMIC_RELAXED),
      "drops", G_TYPE_UINT64, self->st_drops,
      "waits", G_TYPE_UINT64, self->st_waits,
      "queued", G_TYPE_UINT64, (guint64) self->st_queued,
      "time-records", G_TYPE_UINT64, self->st_time_records,
      "upstream-events", G_TYPE_UINT64, self->st_upstream_events, NULL);
  struct ipcring_info info = self->st_info;
  gboolean have_info = self->st_have_info;
  GST_OBJECT_UNLOCK (self);
  guint64 fill = have_info ? info.write_index - info.read_index : 0;
  if (have_info && fill > info.capacity)
    fill = info.capacity;       /* the reader's index is the reader's word */
  gst_structure_set (s,
      "fill-level", G_TYPE_UINT64, fill,
      "capacity", G_TYPE_UINT64, info.capacity,
      "peer-pid", G_TYPE_INT, (gint) info.reader_pid,
      "peer-alive", G_TYPE_BOOLEAN, info.peer_alive != 0,
      "reader-generation", G_TYPE_UINT64, info.reader_generation,
      "writer-generation", G_TYPE_UINT64, info.writer_generation,
      "ring-records", G_TYPE_UINT64, info.records,
      "ring-bytes", G_TYPE_UINT64, info.bytes,
      "ring-waits", G_TYPE_UINT64, info.waits,
      "ring-wakes", G_TYPE_UINT64, info.wakes,
      "ring-handoffs", G_TYPE_UINT64, info.handoffs, NULL);
  return s;
}

static void
gst_ipc_ring_sink_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_RING:
      g_free (self->ring);
      self->ring = g_value_dup_string (value);
      break;
    case PROP_FD:
      self->fd = g_value_get_int (value);
      break;
    case PROP_CAPACITY:
      self->capacity = g_value_get_uint64 (value);
      break;
    case PROP_PERMS:
      self->perms = g_value_get_uint (value);
      break;
    case PROP_ON_READER_LOST:
      self->on_reader_lost = g_value_get_enum (value);
      break;
    case PROP_SPIN_TIME:
      self->spin_time = g_value_get_uint64 (value);
      break;
    case PROP_HANDOFF:
      self->handoff = g_value_get_boolean (value);
      break;
    case PROP_LEAKY:
      self->leaky = g_value_get_enum (value);
      break;
    case PROP_QUEUE_BUFFERS:
      self->queue_buffers = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_ipc_ring_sink_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_RING:
      g_value_set_string (value, self->ring);
      break;
    case PROP_FD:
      g_value_set_int (value, self->fd);
      break;
    case PROP_CAPACITY:
      g_value_set_uint64 (value, self->capacity);
      break;
    case PROP_PERMS:
      g_value_set_uint (value, self->perms);
      break;
    case PROP_ON_READER_LOST:
      g_value_set_enum (value, self->on_reader_lost);
      break;
    case PROP_SPIN_TIME:
      g_value_set_uint64 (value, self->spin_time);
      break;
    case PROP_HANDOFF:
      g_value_set_boolean (value, self->handoff);
      break;
    case PROP_LEAKY:
      g_value_set_enum (value, self->leaky);
      break;
    case PROP_QUEUE_BUFFERS:
      g_value_set_uint (value, self->queue_buffers);
      break;
    case PROP_STATS:
      GST_OBJECT_UNLOCK (self);
      g_value_take_boxed (value, make_stats (self));
      GST_OBJECT_LOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_ipc_ring_sink_finalize (GObject * object)
{
  GstIpcRingSink *self = GST_IPC_RING_SINK (object);
  g_free (self->ring);
  G_OBJECT_CLASS (gst_ipc_ring_sink_parent_class)->finalize (object);
}

static void
gst_ipc_ring_sink_init (GstIpcRingSink * self)
{
  self->ring = g_strdup (DEFAULT_RING);
  self->fd = DEFAULT_FD;
  self->capacity = DEFAULT_CAPACITY;
  self->perms = DEFAULT_PERMS;
  self->on_reader_lost = DEFAULT_ON_READER_LOST;
  self->spin_time = DEFAULT_SPIN_TIME;
  self->handoff = DEFAULT_HANDOFF;
  self->leaky = DEFAULT_LEAKY;
  self->queue_buffers = DEFAULT_QUEUE_BUFFERS;
  g_queue_init (&self->queue);
  gst_base_sink_set_sync (GST_BASE_SINK (self), FALSE);
  gst_base_sink_set_last_sample_enabled (GST_BASE_SINK (self), FALSE);
}

static void
gst_ipc_ring_sink_class_init (GstIpcRingSinkClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSinkClass *basesink_class = GST_BASE_SINK_CLASS (klass);

  gobject_class->set_property = gst_ipc_ring_sink_set_property;
  gobject_class->get_property = gst_ipc_ring_sink_get_property;
  gobject_class->finalize = gst_ipc_ring_sink_finalize;

  properties[PROP_RING] = g_param_spec_string ("ring", "Ring",
      "Path of the ring file to create, for example /dev/shm/video (required)",
      DEFAULT_RING, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_FD] = g_param_spec_int ("fd", "File descriptor",
      "An inherited file descriptor to create the ring in instead of a path: an empty "
      "memfd, or a sealed one sized for the ring (ipcring-run makes one); -1: use ring",
      -1, G_MAXINT, DEFAULT_FD,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_CAPACITY] = g_param_spec_uint64 ("capacity", "Capacity",
      "Bytes of the ring's data area: a power of two from 4096 to 1073741824; "
      "the largest buffer it carries is capacity - 56 bytes",
      IPCRING_CAPACITY_MIN, IPCRING_CAPACITY_MAX, DEFAULT_CAPACITY,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_PERMS] = g_param_spec_uint ("perms", "Permissions",
      "File mode of the ring file (0600: only this user)", 0, 0777, DEFAULT_PERMS,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_ON_READER_LOST] = g_param_spec_enum ("on-reader-lost", "On reader lost",
      "What to do when the reader goes away", GST_TYPE_IPC_RING_ON_READER_LOST,
      DEFAULT_ON_READER_LOST,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_SPIN_TIME] = g_param_spec_uint64 ("spin-time", "Spin time",
      "Nanoseconds a wait for room spins before it sleeps (more: the sink reacts faster "
      "to a reader freeing room, and keeps a CPU busy while it waits)",
      0, GST_SECOND, DEFAULT_SPIN_TIME,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_HANDOFF] = g_param_spec_boolean ("handoff", "Hand-off",
      "After a buffer that wakes a sleeping source, yield the CPU once so that a source "
      "woken on this CPU runs at once (halves the latency on an idle stream; wakes less "
      "than 500 us apart never yield; off for a thread that must keep its CPU)",
      DEFAULT_HANDOFF,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_LEAKY] = g_param_spec_enum ("leaky", "Leaky",
      "When the ring is full: wait for room (none), drop the incoming buffer (upstream), "
      "or keep up to queue-buffers buffers in the sink and drop the oldest of them "
      "(downstream). Dropped buffers are counted (stats) and announced to the reader: "
      "a gap event and DISCONT on the next buffer", GST_TYPE_IPC_RING_LEAKY, DEFAULT_LEAKY,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_QUEUE_BUFFERS] = g_param_spec_uint ("queue-buffers", "Queue buffers",
      "With leaky=downstream: how many buffers the sink keeps while the ring is full",
      1, 1024, DEFAULT_QUEUE_BUFFERS,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_STATS] = g_param_spec_boxed ("stats", "Statistics",
      "buffers, bytes, drops, waits, queued, time-records, upstream-events, fill-level, "
      "capacity, peer-pid, peer-alive, reader-generation, writer-generation and the ring's "
      "own counters (ring-records, ring-bytes, ring-waits, ring-wakes, ring-handoffs)",
      GST_TYPE_STRUCTURE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (gobject_class, N_PROPERTIES, properties);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_set_static_metadata (element_class, "Shared-memory ring sink",
      "Sink/Network", "Writes a stream into an ipcring for an ipcringsrc in another process",
      "ipcring developers");

  element_class->send_event = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_send_event);
  element_class->change_state = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_change_state);
  element_class->set_clock = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_set_clock);
  basesink_class->start = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_start);
  basesink_class->stop = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_stop);
  basesink_class->render = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_render);
  basesink_class->event = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_event);
  basesink_class->propose_allocation =
      GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_propose_allocation);
  basesink_class->unlock = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_unlock);
  basesink_class->unlock_stop = GST_DEBUG_FUNCPTR (gst_ipc_ring_sink_unlock_stop);

  gst_type_mark_as_plugin_api (GST_TYPE_IPC_RING_ON_READER_LOST, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_IPC_RING_LEAKY, 0);
  GST_DEBUG_CATEGORY_INIT (ipcring_sink_debug, "ipcringsink", 0, "ipcring sink");
}
