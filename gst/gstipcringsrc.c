/**
 * SECTION:element-ipcringsrc
 * @title: ipcringsrc
 * @see_also: ipcringsink
 *
 * Reads a stream that an ipcringsink in another process writes into an
 * ipcring, a shared-memory ring file, and continues it: the same caps
 * (renegotiated when they change), the same segment and serialized events,
 * and buffers with the same data, PTS, DTS, duration, offsets and flags.
 * EOS from the producer becomes EOS here.
 *
 * The source waits for a ring that does not exist yet (the producer may start
 * later); flushing and state changes interrupt every wait. The ring file is
 * validated in full and its memory is treated as hostile: a corrupt ring is
 * an error, never a crash.
 *
 * When the producer dies, what it wrote is still delivered, then
 * on-writer-lost decides: post an error (default), end the stream with EOS,
 * or wait for a new producer and continue with its stream. A producer that
 * stops cleanly without EOS (for example interrupted) ends the stream with
 * EOS, so a file being written downstream is finalised.
 *
 * The payload property decides how buffers get their bytes. With copy each
 * payload is copied out of the ring. With zero-copy a buffer's memory is the
 * record in the ring itself (read only; a write map gets a copy), and the
 * record goes back to the producer when the last reference to the buffer
 * goes. auto, the default, uses zero copy for raw media (video/x-raw,
 * audio/x-raw) and copies everything else. The reason: the producer can
 * change bytes in the ring at any time. For raw samples that is no worse than
 * having sent other samples, but a parser (a demuxer, a decoder, a parser of
 * compressed data) must not see bytes change under it, so compressed and
 * unknown formats are copied. Use copy when the producer is not trusted and
 * downstream does more than treat samples as samples (for example looks
 * them up in tables); zero-copy forces zero copy for any caps. Headers, caps
 * and events are always copied before use.
 *
 * Buffers held downstream never stall the stream: when they span more than
 * half the ring, or when the producer waits for room while there is nothing
 * to read, the oldest held records get private copies of their pages (the
 * buffers keep their addresses and bytes, even while mapped) and go back to
 * the producer; the same happens at EOS and when the element stops, so it
 * can stop, and a new reader can attach, while buffers are still held.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=640,height=360 ! ipcringsink ring=/dev/shm/video
 * gst-launch-1.0 ipcringsrc ring=/dev/shm/video ! videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location=out.webm
 * ]| Capture in one process, encode in another.
 * |[
 * gst-launch-1.0 audiotestsrc is-live=true ! ipcringsink ring=/dev/shm/audio on-reader-lost=wait
 * gst-launch-1.0 ipcringsrc ring=/dev/shm/audio is-live=true on-writer-lost=wait ! autoaudiosink
 * ]| A player that survives restarts of the producer.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstipcringelements.h"
#include "ipcring-memory.h"
#include "ipcring-protocol.h"
#include "ipcring.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <gst/base/gstpushsrc.h>
#include <gst/video/video.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#define HAVE_RING_WATCH 1
#endif

GST_DEBUG_CATEGORY_STATIC (ipcring_src_debug);
#define GST_CAT_DEFAULT ipcring_src_debug

#define DEFAULT_RING NULL
#define DEFAULT_FD -1
#define DEFAULT_SPIN_TIME (20 * GST_USECOND)
#define DEFAULT_IS_LIVE FALSE
#define DEFAULT_ON_WRITER_LOST GST_IPC_RING_ON_WRITER_LOST_ERROR
#define DEFAULT_PAYLOAD GST_IPC_RING_PAYLOAD_AUTO
#define DEFAULT_TIMESTAMP_MODE GST_IPC_RING_TIMESTAMP_PASSTHROUGH

/* How often the streaming thread refreshes the ring counters the stats
 * property shows (one system call each time). */
#define INFO_REFRESH_NS (100 * GST_MSECOND)

/* How often to look for a ring file that does not exist yet (on Linux a
 * watch on its directory makes the source look at once when a name appears;
 * this is the fallback). */
#define OPEN_RETRY_US (20 * G_TIME_SPAN_MILLISECOND)

/* While downstream holds ring records, a wait for the next record looks
 * this often whether the writer waits for room that only they can give. */
#define HOLD_POLL_NS (10 * GST_MSECOND)

/* How many records the state change to PAUSED reads ahead, at most, for the
 * producer's TIME record when is-live follows the producer. */
#define PROBE_RECORDS 16u

typedef enum
{
  GST_IPC_RING_PAYLOAD_COPY,
  GST_IPC_RING_PAYLOAD_ZERO_COPY,
  GST_IPC_RING_PAYLOAD_AUTO,
} GstIpcRingPayload;

#define GST_TYPE_IPC_RING_PAYLOAD (gst_ipc_ring_payload_get_type ())
static GType gst_ipc_ring_payload_get_type (void);

enum
{
  PROP_0,
  PROP_RING,
  PROP_FD,
  PROP_IS_LIVE,
  PROP_ON_WRITER_LOST,
  PROP_PAYLOAD,
  PROP_SPIN_TIME,
  PROP_TIMESTAMP_MODE,
  PROP_STATS,
  N_PROPERTIES
};

static GParamSpec *properties[N_PROPERTIES];

#define GST_TYPE_IPC_RING_SRC (gst_ipc_ring_src_get_type ())
G_DECLARE_FINAL_TYPE (GstIpcRingSrc, gst_ipc_ring_src, GST, IPC_RING_SRC, GstPushSrc);

struct _GstIpcRingSrc
{
  GstPushSrc parent;

  /* properties, under the object lock */
  gchar *ring;
  gint fd;
  GstIpcRingOnWriterLost on_writer_lost;
  GstIpcRingPayload payload;
  guint64 spin_time;
  GstIpcRingTimestampMode timestamp_mode;
  gboolean is_live_set;         /* is-live was set: it no longer follows the writer */

  /* under the object lock: the writer's latency for the LATENCY query and
   * the counters of the stats property */
  gboolean have_writer_latency;
  GstClockTime writer_min;
  GstClockTime writer_max;
  gboolean writer_live;
  guint64 capacity;
  GstClockTime ring_time;       /* what the ring holds in time, if known */
  /* st_buffers and st_bytes are written by the streaming thread alone with
   * relaxed atomic stores (no locked instruction per buffer) and read with
   * relaxed atomic loads; the other counters are under the object lock */
  guint64 st_buffers;
  guint64 st_bytes;
  guint64 st_drops;
  guint64 st_drop_records;
  guint64 st_late;
  guint64 st_time_records;
  guint64 st_upstream_events;
  struct ipcring_info st_info;
  gboolean st_have_info;

  /* the ring (its reader, the second mapping, the records out) and the
   * flushing flag, under lock; create() waits on cond for the ring file to
   * appear */
  GMutex lock;
  GCond cond;
  IpcRingHolder *holder;
  gboolean flushing;
  gchar *path;                  /* the ring, or "fd N" for an inherited one */
  gint open_fd;                 /* the fd property at start, -1: path */
  guint64 open_spin;            /* spin-time at start */
  dev_t ring_dev;               /* the file the reader has open */
  ino_t ring_ino;
  /* for create()'s wait for the ring file to appear (Linux, see
   * wait_for_ring): an inotify descriptor, its watch on the ring's directory
   * while waiting, that directory, and an eventfd unlock() writes to; -1:
   * none */
  gint watch_fd;
  gint watch_wd;
  gint wake_fd;
  dev_t watch_dev;
  ino_t watch_ino;
  gboolean watch_tried;         /* this wait tried to watch (once, if it failed) */

  /* streaming thread only */
  gboolean synced;              /* a stream record was seen (or not needed) */
  GstIpcRingPayload payload_mode;       /* the property, at start */
  gboolean zero_copy;           /* hand out ring memory for the current caps */
  gboolean writer_gone;         /* on-writer-lost=wait is waiting for a new writer */
  GstEvent *own_stream_start;   /* the carried ones we pushed, to tell them */
  GstEvent *own_segment;        /* apart from GstBaseSrc's in the pad probe */
  gboolean segment_delivered;   /* own_segment went downstream */
  gboolean segment_deferred;    /* own_segment came before any caps: it waits for
                                 * them (or for data) */
  gint64 segment_delivered_offset;      /* with this running-time offset */
  gboolean restore_segment;     /* GstBaseSrc stored its segment over ours */
  gint resend_segment;          /* a flush-stop took the segment away (atomic: the
                                 * pad probe sets it in the flushing thread) */
  gboolean sent_stream_start;
  gboolean sent_segment;
  GstCaps *caps;
  GstCaps *pending_caps;        /* caps a flush kept from being set */
  GstSegment segment;
  gchar *stream_id;
  GHashTable *unknown_tags;
  GstIpcRingTimestampMode ts_mode;      /* the property, at start */
  IpcRingWireTime wtime;        /* the last TIME record */
  gboolean have_time;
  GstSegment wire_segment;      /* the writer's segment, in timestamp modes */
  GstClockTime restart_base;    /* restart: the first buffer's running time */
  gboolean discont_next;
  guint64 next_info;            /* when to copy the ring's counters again (ipcring_coarse_ns) */
  gboolean warned_no_clock;
  GArray *prefetch;             /* records taken by probe_writer, not handled yet */
  GThread *stream_thread;       /* the thread in create() */
  /* for upstream events (other threads), under the object lock: the
   * offset from this pipeline's running time to the producer's */
  gboolean have_rt_offset;
  gint64 rt_offset;
  GQueue upstream;              /* GBytes to send on the back channel, under lock */
  gint upstream_queued;         /* atomic: upstream is not empty (set under lock), so
                                 * that send_upstream() takes no lock per record */
};

G_DEFINE_TYPE (GstIpcRingSrc, gst_ipc_ring_src, GST_TYPE_PUSH_SRC);
GST_ELEMENT_REGISTER_DEFINE (ipcringsrc, "ipcringsrc", GST_RANK_NONE, GST_TYPE_IPC_RING_SRC);

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

GType
gst_ipc_ring_on_writer_lost_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_IPC_RING_ON_WRITER_LOST_ERROR, "Post an error", "error"},
    {GST_IPC_RING_ON_WRITER_LOST_EOS, "End the stream with EOS", "eos"},
    {GST_IPC_RING_ON_WRITER_LOST_WAIT,
        "Wait for a new writer and continue with its stream", "wait"},
    {0, NULL, NULL}
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstIpcRingOnWriterLost", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

GType
gst_ipc_ring_timestamp_mode_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_IPC_RING_TIMESTAMP_PASSTHROUGH,
        "The carried timestamps and segment as they are", "passthrough"},
    {GST_IPC_RING_TIMESTAMP_RUNNING_TIME,
          "Each buffer at this pipeline's running time of the moment the producer's "
          "pipeline had it (a shared monotonic clock), in a segment from 0", "running-time"},
    {GST_IPC_RING_TIMESTAMP_RESTART,
        "The first buffer at 0, the others as far from it as they were", "restart"},
    {0, NULL, NULL}
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstIpcRingTimestampMode", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

static GType
gst_ipc_ring_payload_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_IPC_RING_PAYLOAD_COPY, "Copy every payload out of the ring", "copy"},
    {GST_IPC_RING_PAYLOAD_ZERO_COPY, "Buffers are ring memory, whatever the caps",
        "zero-copy"},
    {GST_IPC_RING_PAYLOAD_AUTO,
        "Zero copy for raw video and audio, copy for everything else", "auto"},
    {0, NULL, NULL}
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstIpcRingPayload", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* ---- Pushing events -------------------------------------------------- */

/* GstBaseSrc sends a stream-start and a segment of its own; the stream's
 * come from the ring, so the probe lets only the events we pushed through
 * (own_event() tells them apart).
 *
 * Every sticky event is stored on the pad before the probe sees it. One the
 * probe drops stays pending and is offered again before every later push
 * (and dropped again): a cost per buffer. So the probe does not drop them, it
 * reports them handled (GST_PAD_PROBE_HANDLED), which marks them delivered.
 * GstBaseSrc's stream-start is stored before ours, which replaces it; its
 * segment comes after ours, just before the first buffer (and after each
 * flush), so the next create() stores ours back; ours, offered once more
 * from the store, is not delivered twice.
 *
 * A flush-stop removes the sticky segment from this pad and from the peer,
 * whichever it was: the probe sees it (it also asks for flush events) and
 * the next create() pushes ours again before anything else. GstBaseSrc's
 * segment after the flush (also a seek's) is dropped as always. A flush-stop
 * never runs while create() does (both hold the stream lock); a flush-start
 * can, and then what create() pushes is not delivered, but a flush-stop, and
 * so another resend, comes before data flows again.
 *
 * When the application changes the pad's offset (gst_pad_set_offset), the
 * pad offers its sticky events again with the new offset applied: ours goes
 * out again then, as it carries another running-time offset than the one
 * delivered. */

/* Whether event, a stream-start or a segment the probe sees, is own (the
 * one we pushed, or a copy of it). Without a pad offset the probe sees the
 * very event pushed. With one, GstPad hands the probe a copy with the offset
 * applied: a stream-start is copied (its seqnum kept), but a segment is made
 * anew with a new seqnum, so nothing in the event tells whose it is, and a
 * seqnum would not anyway (the producer's events carry the seqnums of
 * another process). What tells: a sticky event goes out only from the pad's
 * store (gst_pad_push_event stores it first; one still pending goes out from
 * the store with a later push), all in the streaming thread, so the event of
 * its type stored on the pad is the one being pushed. The probe runs without
 * the pad's lock. */
static gboolean
own_event (GstPad * pad, GstEvent * event, GstEvent * own)
{
  if (!own)
    return FALSE;
  if (event == own)
    return TRUE;
  GstEvent *stored = gst_pad_get_sticky_event (pad, GST_EVENT_TYPE (event), 0);
  gboolean ours = stored == own;
  if (stored)
    gst_event_unref (stored);
  return ours;
}

static GstPadProbeReturn
filter_events (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  GstIpcRingSrc *self = user_data;
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_STOP:
      g_atomic_int_set (&self->resend_segment, TRUE);
      return GST_PAD_PROBE_OK;
    case GST_EVENT_STREAM_START:
      if (own_event (pad, event, self->own_stream_start))
        return GST_PAD_PROBE_OK;
      break;
    case GST_EVENT_SEGMENT:{
      if (!own_event (pad, event, self->own_segment)) {
        GST_DEBUG_OBJECT (self, "dropping the base class's %" GST_PTR_FORMAT, event);
        self->restore_segment = TRUE;
        break;
      }
      gint64 offset = gst_event_get_running_time_offset (event);
      if (self->segment_delivered && offset == self->segment_delivered_offset)
        break;
      self->segment_delivered = TRUE;
      self->segment_delivered_offset = offset;
      return GST_PAD_PROBE_OK;
    }
    default:
      return GST_PAD_PROBE_OK;
  }
  GST_PAD_PROBE_INFO_DATA (info) = NULL;
  gst_event_unref (event);
  return GST_PAD_PROBE_HANDLED;
}

static gboolean
push_own (GstIpcRingSrc * self, GstEvent * event)
{
  if (GST_EVENT_TYPE (event) == GST_EVENT_STREAM_START)
    gst_event_replace (&self->own_stream_start, event);
  else if (GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT) {
    gst_event_replace (&self->own_segment, event);
    self->segment_delivered = FALSE;
    /* Stream-start, caps, segment is the order GStreamer wants (a segment
     * stored before caps draws a misordering warning, and a producer
     * restarted between its segment and its caps writes them so): before
     * any caps, the segment waits for them (push_deferred_segment()). */
    self->segment_deferred = !gst_pad_has_current_caps (GST_BASE_SRC_PAD (self));
    if (self->segment_deferred) {
      GST_DEBUG_OBJECT (self, "segment before caps: holding it until the caps come");
      gst_event_unref (event);
      return TRUE;
    }
  }
  return gst_pad_push_event (GST_BASE_SRC_PAD (self), event);
}

/* After a flush-stop took the segment away: push ours again (it is the
 * pad's and downstream's segment from now on). */
static void
resend_own_segment (GstIpcRingSrc * self)
{
  if (!g_atomic_int_compare_and_exchange (&self->resend_segment, TRUE, FALSE)
      || !self->own_segment || self->segment_deferred)
    return;
  GST_DEBUG_OBJECT (self, "flushed: sending the stream's segment again");
  self->restore_segment = FALSE;
  push_own (self, gst_event_ref (self->own_segment));
}

/* After GstBaseSrc stored its segment over ours: put ours back. */
static void
restore_own_segment (GstIpcRingSrc * self)
{
  if (!self->restore_segment || !self->own_segment || self->segment_deferred)
    return;
  self->restore_segment = FALSE;
  gst_pad_store_sticky_event (GST_BASE_SRC_PAD (self), self->own_segment);
}

/* Data needs a stream-start and a segment before it; a writer that sent
 * none gets defaults. */
static void
ensure_stream_start (GstIpcRingSrc * self)
{
  if (self->sent_stream_start)
    return;
  gchar *id = gst_pad_create_stream_id (GST_BASE_SRC_PAD (self), GST_ELEMENT (self), NULL);
  GST_DEBUG_OBJECT (self, "no stream-start from the writer, sending %s", id);
  push_own (self, gst_event_new_stream_start (id));
  self->sent_stream_start = TRUE;
  g_free (self->stream_id);
  self->stream_id = id;
}

/* A segment that came before any caps goes out now: the caps came, or an
 * event that needs it comes without them. */
static void
push_deferred_segment (GstIpcRingSrc * self)
{
  if (!self->segment_deferred)
    return;
  self->segment_deferred = FALSE;
  gst_pad_push_event (GST_BASE_SRC_PAD (self), gst_event_ref (self->own_segment));
}

static void
ensure_segment (GstIpcRingSrc * self)
{
  ensure_stream_start (self);
  if (self->sent_segment)
    return;
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  push_own (self, gst_event_new_segment (&self->segment));
  self->sent_segment = TRUE;
}

/* ---- Timestamps ------------------------------------------------------ */

static void refresh_info (GstIpcRingSrc * self, gboolean force);
static void drop_holder (GstIpcRingSrc * self);

/* A carried timestamp in this pipeline's terms (timestamp modes other than
 * passthrough). FALSE: the time cannot be shown here (outside the writer's
 * segment, or before this pipeline's start): the buffer is dropped. */
static gboolean
map_time (GstIpcRingSrc * self, GstClockTime t, GstClockTime * out)
{
  *out = GST_CLOCK_TIME_NONE;
  if (!GST_CLOCK_TIME_IS_VALID (t))
    return TRUE;
  GstClockTime rt = gst_segment_to_running_time (&self->wire_segment, GST_FORMAT_TIME, t);
  if (!GST_CLOCK_TIME_IS_VALID (rt))
    return FALSE;

  if (self->ts_mode == GST_IPC_RING_TIMESTAMP_RESTART) {
    if (!GST_CLOCK_TIME_IS_VALID (self->restart_base))
      self->restart_base = rt;
    if (rt < self->restart_base)
      return FALSE;
    *out = rt - self->restart_base;
    return TRUE;
  }

  /* running-time: producer running time + its base time = its clock time;
   * minus its clock at the TIME record plus CLOCK_MONOTONIC then = the
   * monotonic time; plus our clock's offset to CLOCK_MONOTONIC (0 for the
   * system monotonic clock) = our clock time; minus our base time = our
   * running time. */
  if (!self->have_time || !(self->wtime.flags & IPCRING_TIME_CLOCK)) {
    /* The producer rendered it before its pipeline was PLAYING (or before
     * its sink saw that it was): when it was captured is unknown. */
    GST_LOG_OBJECT (self, "running-time: no producer clock yet, dropping");
    return FALSE;
  }
  GstClock *clock = gst_element_get_clock (GST_ELEMENT (self));
  if (!clock) {
    /* Only with is-live=false set: a buffer prerolled in PAUSED. */
    if (!self->warned_no_clock)
      GST_INFO_OBJECT (self, "running-time: this pipeline has no clock yet, buffers pass "
          "with the producer's running time");
    self->warned_no_clock = TRUE;
    *out = rt;
    return TRUE;
  }
  /* The producer's times come from its TIME record: a sum that does not fit
   * drops the buffer like one mapped before our start. */
  gint64 mono;
  if (rt > G_MAXINT64 || self->wtime.base_time > G_MAXINT64
      || self->wtime.clock_time > G_MAXINT64 || self->wtime.monotonic > G_MAXINT64
      || __builtin_add_overflow ((gint64) rt, (gint64) self->wtime.base_time, &mono)
      || __builtin_sub_overflow (mono, (gint64) self->wtime.clock_time, &mono)
      || __builtin_add_overflow (mono, (gint64) self->wtime.monotonic, &mono)) {
    gst_object_unref (clock);
    GST_LOG_OBJECT (self, "running-time: the producer's times do not add up, dropping");
    return FALSE;
  }
  gint64 offset = 0;
  if (!ipcring_clock_is_monotonic (clock)) {
    guint64 m0 = ipcring_monotonic_ns ();
    GstClockTime now = gst_clock_get_time (clock);
    guint64 m1 = ipcring_monotonic_ns ();
    offset = (gint64) now - (gint64) (m0 + (m1 - m0) / 2);
  }
  gint64 ours;
  gboolean over = __builtin_add_overflow (mono, offset, &ours)
      || __builtin_sub_overflow (ours, (gint64) gst_element_get_base_time (GST_ELEMENT (self)),
      &ours);
  gst_object_unref (clock);
  if (over || ours < 0)
    return FALSE;
  *out = (GstClockTime) ours;
  return TRUE;
}

/* The time a ring full of this stream holds, for raw audio and video. */
static GstClockTime
ring_duration (GstCaps * caps, guint64 capacity)
{
  GstVideoInfo vi;
  if (!caps || !capacity || !gst_caps_is_fixed (caps))
    return GST_CLOCK_TIME_NONE;
  GstStructure *st = gst_caps_get_structure (caps, 0);
  if (gst_structure_has_name (st, "audio/x-raw")) {
    /* Bytes per frame from the format's name: S16LE, F32LE, S24LE (3
     * bytes), S24_32LE (4), U8 ... */
    const gchar *fmt = gst_structure_get_string (st, "format");
    gint rate = 0, channels = 0;
    if (!fmt || !gst_structure_get_int (st, "rate", &rate)
        || !gst_structure_get_int (st, "channels", &channels) || rate <= 0 || channels <= 0)
      return GST_CLOCK_TIME_NONE;
    const gchar *digits = strpbrk (fmt, "0123456789");
    guint64 bits = digits ? g_ascii_strtoull (digits, NULL, 10) : 0;
    if (strstr (fmt, "_32"))
      bits = 32;
    if (bits == 0 || bits % 8 || bits > 64)
      return GST_CLOCK_TIME_NONE;
    guint64 bpf = bits / 8 * (guint64) channels;
    return gst_util_uint64_scale (capacity / bpf, GST_SECOND, rate);
  }
  if (gst_structure_has_name (st, "video/x-raw") && gst_video_info_from_caps (&vi, caps)
      && vi.fps_n > 0 && vi.fps_d > 0 && vi.size > 0) {
    guint64 frames = capacity / ipcring_record_size (vi.size + sizeof (IpcRingWireBuffer));
    return gst_util_uint64_scale (frames, vi.fps_d * GST_SECOND, vi.fps_n);
  }
  return GST_CLOCK_TIME_NONE;
}

/* A TIME record: the producer's clock, latency and liveness. */
static void
handle_time (GstIpcRingSrc * self, const IpcRingWireTime * t)
{
  GstClockTime min = t->latency_min, max = t->latency_max;
  gboolean live = (t->flags & IPCRING_TIME_LIVE) != 0;
  if (!(t->flags & IPCRING_TIME_LATENCY) || !GST_CLOCK_TIME_IS_VALID (min)) {
    min = 0;
    max = GST_CLOCK_TIME_NONE;
  }
  if (self->ts_mode == GST_IPC_RING_TIMESTAMP_RUNNING_TIME && (t->flags & IPCRING_TIME_CLOCK)
      && (!self->have_time || t->base_time != self->wtime.base_time))
    GST_INFO_OBJECT (self, "producer base time %" GST_TIME_FORMAT ", its clock %s",
        GST_TIME_ARGS (t->base_time), (t->flags & IPCRING_TIME_MONOTONIC) ?
        "the system monotonic clock" : "another clock (mapped through a snapshot)");
  self->wtime = *t;
  self->have_time = TRUE;

  GST_OBJECT_LOCK (self);
  gboolean changed = !self->have_writer_latency || self->writer_min != min
      || self->writer_max != max || self->writer_live != live;
  self->have_writer_latency = TRUE;
  self->writer_min = min;
  self->writer_max = max;
  self->writer_live = live;
  self->st_time_records++;
  GST_OBJECT_UNLOCK (self);

  /* Liveness is decided before the state change (probe_writer): a source
   * that turned live after it started to preroll would never preroll. */
  if (changed)
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_latency (GST_OBJECT (self)));
}

/* A DROP record: the producer dropped buffers (leaky). Announced downstream
 * as a gap over them (its structure has the count in "dropped") and DISCONT
 * on the next buffer. */
static void
handle_drop (GstIpcRingSrc * self, const IpcRingWireDrop * d)
{
  GST_DEBUG_OBJECT (self, "the producer dropped %" G_GUINT64_FORMAT " buffers (%"
      G_GUINT64_FORMAT " in all)", (guint64) d->count, (guint64) d->total);
  GST_OBJECT_LOCK (self);
  self->st_drops += d->count;
  self->st_drop_records++;
  GST_OBJECT_UNLOCK (self);
  self->discont_next = TRUE;
  GstClockTime start = d->start, end = d->end;
  if (!GST_CLOCK_TIME_IS_VALID (start) || !self->caps)
    return;
  if (self->ts_mode != GST_IPC_RING_TIMESTAMP_PASSTHROUGH) {
    GstClockTime s2, e2 = GST_CLOCK_TIME_NONE;
    if (!map_time (self, start, &s2) || !GST_CLOCK_TIME_IS_VALID (s2))
      return;
    if (GST_CLOCK_TIME_IS_VALID (end) && end >= start)
      e2 = s2 + (end - start);
    start = s2;
    end = e2;
  }
  GstClockTime dur = GST_CLOCK_TIME_IS_VALID (end) && end > start ? end - start
      : GST_CLOCK_TIME_NONE;
  GstEvent *gap = gst_event_new_gap (start, dur);
  gst_structure_set (gst_event_writable_structure (gap), "dropped", G_TYPE_UINT64,
      (guint64) d->count, NULL);
  ensure_segment (self);
  push_own (self, gap);
}

/* A buffer's timestamps in the chosen mode. FALSE: drop it. */
static gboolean
retime_buffer (GstIpcRingSrc * self, GstBuffer * buf)
{
  if (self->ts_mode == GST_IPC_RING_TIMESTAMP_PASSTHROUGH)
    return TRUE;
  GstClockTime pts = GST_BUFFER_PTS (buf), dts = GST_BUFFER_DTS (buf), p2, d2;
  /* restart: the first buffer's earliest time is 0 */
  if (self->ts_mode == GST_IPC_RING_TIMESTAMP_RESTART
      && !GST_CLOCK_TIME_IS_VALID (self->restart_base)) {
    GstClockTime first = GST_CLOCK_TIME_IS_VALID (dts) && (!GST_CLOCK_TIME_IS_VALID (pts)
        || dts < pts) ? dts : pts;
    if (GST_CLOCK_TIME_IS_VALID (first))
      self->restart_base = gst_segment_to_running_time (&self->wire_segment,
          GST_FORMAT_TIME, first);
  }
  if (!map_time (self, pts, &p2))
    return FALSE;
  if (!map_time (self, dts, &d2))
    d2 = GST_CLOCK_TIME_NONE;
  if (GST_CLOCK_TIME_IS_VALID (pts) && GST_CLOCK_TIME_IS_VALID (p2)) {
    /* Upstream events speak of our running time; the producer's differs
     * by this much. */
    GstClockTime prt = gst_segment_to_running_time (&self->wire_segment, GST_FORMAT_TIME, pts);
    GST_OBJECT_LOCK (self);
    /* both are times below 2^63 here, but prt comes from the producer's
     * segment: no overflow */
    self->have_rt_offset = GST_CLOCK_TIME_IS_VALID (prt) && prt <= G_MAXINT64
        && p2 <= G_MAXINT64 && !__builtin_sub_overflow ((gint64) prt, (gint64) p2,
        &self->rt_offset);
    GST_OBJECT_UNLOCK (self);
  }
  GST_BUFFER_PTS (buf) = p2;
  GST_BUFFER_DTS (buf) = d2;
  return TRUE;
}

static GstFlowReturn
handle_event (GstIpcRingSrc * self, GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_STREAM_START:{
      const gchar *id;
      gst_event_parse_stream_start (event, &id);
      /* A writer's sticky events come again for a new reader or after a
       * writer restart: the same stream continues. */
      if (self->sent_stream_start) {
        GST_DEBUG_OBJECT (self, "stream continues, not repeating stream-start %s", id);
        gst_event_unref (event);
        return GST_FLOW_OK;
      }
      g_free (self->stream_id);
      self->stream_id = g_strdup (id);
      self->sent_stream_start = TRUE;
      push_own (self, event);
      return GST_FLOW_OK;
    }
    case GST_EVENT_SEGMENT:{
      const GstSegment *seg;
      gst_event_parse_segment (event, &seg);
      if (self->ts_mode != GST_IPC_RING_TIMESTAMP_PASSTHROUGH) {
        /* Buffers are mapped from this segment into our own from 0. */
        gst_segment_copy_into (seg, &self->wire_segment);
        gst_event_unref (event);
        ensure_segment (self);
        return GST_FLOW_OK;
      }
      if (self->sent_segment && gst_segment_is_equal (seg, &self->segment)) {
        gst_event_unref (event);
        return GST_FLOW_OK;
      }
      ensure_stream_start (self);
      gst_segment_copy_into (seg, &self->segment);
      self->sent_segment = TRUE;
      push_own (self, event);
      return GST_FLOW_OK;
    }
    case GST_EVENT_GAP:
      if (self->ts_mode != GST_IPC_RING_TIMESTAMP_PASSTHROUGH) {
        GstClockTime ts, dur, out;
        gst_event_parse_gap (event, &ts, &dur);
        guint32 seqnum = gst_event_get_seqnum (event);
        gst_event_unref (event);
        if (!map_time (self, ts, &out) || !GST_CLOCK_TIME_IS_VALID (out))
          return GST_FLOW_OK;
        event = gst_event_new_gap (out, dur);
        gst_event_set_seqnum (event, seqnum);
      }
      ensure_segment (self);
      push_deferred_segment (self);     /* a gap needs its segment, caps or not */
      push_own (self, event);
      return GST_FLOW_OK;
    default:
      ensure_stream_start (self);
      push_own (self, event);
      return GST_FLOW_OK;
  }
}

/* Raw samples in system memory: a consumer treats the bytes as samples. */
static gboolean
caps_are_raw (GstCaps * caps)
{
  if (gst_caps_get_size (caps) != 1)
    return FALSE;
  GstCapsFeatures *f = gst_caps_get_features (caps, 0);
  if (f && !gst_caps_features_is_equal (f, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY))
    return FALSE;
  GstStructure *s = gst_caps_get_structure (caps, 0);
  return gst_structure_has_name (s, "video/x-raw") || gst_structure_has_name (s, "audio/x-raw");
}

static void
choose_payload (GstIpcRingSrc * self)
{
  gboolean zc;
  switch (self->payload_mode) {
    case GST_IPC_RING_PAYLOAD_ZERO_COPY:
      zc = TRUE;
      break;
    case GST_IPC_RING_PAYLOAD_AUTO:
      zc = self->caps && caps_are_raw (self->caps);
      break;
    case GST_IPC_RING_PAYLOAD_COPY:
    default:
      zc = FALSE;
      break;
  }
  zc = zc && self->holder && ipcring_holder_can_zero_copy (self->holder);
  if (zc != self->zero_copy)
    GST_DEBUG_OBJECT (self, "%s buffers", zc ? "zero-copy" : "copying");
  self->zero_copy = zc;
}

static GstFlowReturn
handle_caps (GstIpcRingSrc * self, GstCaps * caps)
{
  if (self->caps && gst_caps_is_equal (caps, self->caps)) {
    gst_caps_unref (caps);
    return GST_FLOW_OK;
  }
  ensure_stream_start (self);
  GST_DEBUG_OBJECT (self, "caps %" GST_PTR_FORMAT, caps);
  gboolean ok = gst_base_src_set_caps (GST_BASE_SRC (self), caps);
  if (!ok && GST_PAD_IS_FLUSHING (GST_BASE_SRC_PAD (self))) {
    /* Not refused: the pad is flushing (a flush or a state change). Try
     * again before the next buffer. A flush is not an error. */
    GST_DEBUG_OBJECT (self, "flushing while setting caps, keeping them for later");
    gst_caps_replace (&self->pending_caps, caps);
    gst_caps_unref (caps);
    return GST_FLOW_FLUSHING;
  }
  gst_caps_replace (&self->caps, caps);
  gst_caps_replace (&self->pending_caps, NULL);
  choose_payload (self);
  gst_caps_unref (caps);
  if (!ok) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Downstream does not accept the stream's caps."),
        ("caps %" GST_PTR_FORMAT, self->caps));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  push_deferred_segment (self);
  return GST_FLOW_OK;
}

/* ---- Records --------------------------------------------------------- */

static GstFlowReturn
bad_record (GstIpcRingSrc * self, guint32 tag, const gchar * why)
{
  GST_ELEMENT_ERROR (self, STREAM, DECODE,
      ("The producer wrote a malformed record into ring %s.", self->path),
      ("record %" GST_FOURCC_FORMAT ": %s", GST_FOURCC_ARGS (tag), why));
  return GST_FLOW_ERROR;
}

/* One record, still in the ring. Returns OK to go on reading, a buffer in
 * *out, or a flow to return. The record is released by the caller, unless
 * it was taken (ref not NULL) and its payload became the buffer's memory
 * (*wrapped set): then the memory releases it when it goes. */
static GstFlowReturn
handle_record (GstIpcRingSrc * self, const struct ipcring_record_ref *ref, guint32 tag,
    const guint8 * data, gsize len, GstBuffer ** out, gboolean * wrapped)
{
  const gchar *why = NULL;

  if (tag == IPCRING_REC_STREAM) {
    IpcRingWireStream strm;
    if (len < sizeof strm)
      return bad_record (self, tag, "stream record too short");
    memcpy (&strm, data, sizeof strm);
    if (strm.version != IPCRING_PROTOCOL_VERSION) {
      GST_ELEMENT_ERROR (self, STREAM, WRONG_TYPE,
          ("Ring %s was written by an incompatible ipcringsink (protocol %u, "
              "this one speaks %u).", self->path, strm.version,
              IPCRING_PROTOCOL_VERSION), ("Use the same ipcring version on both sides."));
      return GST_FLOW_ERROR;
    }
    GST_DEBUG_OBJECT (self, "stream record for reader generation %" G_GUINT64_FORMAT,
        (guint64) strm.reader_generation);
    self->synced = TRUE;
    return GST_FLOW_OK;
  }
  if (!self->synced) {
    GST_LOG_OBJECT (self, "skipping %" GST_FOURCC_FORMAT " left by an earlier reader",
        GST_FOURCC_ARGS (tag));
    return GST_FLOW_OK;
  }

  switch (tag) {
    case IPCRING_REC_BUFFER:{
      IpcRingWireBuffer hdr;
      if (!ipcring_wire_decode_buffer_header (data, len, &hdr, &why))
        return bad_record (self, tag, why);
      if (!self->caps) {
        GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("The producer sent data before caps."),
            ("ring %s", self->path));
        return GST_FLOW_NOT_NEGOTIATED;
      }
      ensure_segment (self);
      gsize size = len - sizeof hdr;
      GstBuffer *buf = NULL;
      if (ref && size && self->zero_copy) {
        /* The header was copied out above; the payload stays in the ring. */
        GstMemory *mem = ipcring_holder_wrap (self->holder, ref, sizeof hdr);
        if (mem) {
          buf = gst_buffer_new ();
          gst_buffer_append_memory (buf, mem);
          *wrapped = TRUE;
        }
      }
      if (!buf) {
        buf = gst_buffer_new_allocate (NULL, size, NULL);
        if (!buf) {
          GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Out of memory for a %" G_GSIZE_FORMAT
                  " byte buffer.", size), (NULL));
          return GST_FLOW_ERROR;
        }
        gst_buffer_fill (buf, 0, data + sizeof hdr, size);
      }
      GST_BUFFER_PTS (buf) = hdr.pts;
      GST_BUFFER_DTS (buf) = hdr.dts;
      GST_BUFFER_DURATION (buf) = hdr.duration;
      GST_BUFFER_OFFSET (buf) = hdr.offset;
      GST_BUFFER_OFFSET_END (buf) = hdr.offset_end;
      guint keep = GST_MINI_OBJECT_FLAGS (buf) & (GST_MINI_OBJECT_FLAG_LAST - 1);
      GST_MINI_OBJECT_FLAGS (buf) = keep | (hdr.flags & ~(guint) (GST_MINI_OBJECT_FLAG_LAST - 1));
      if (!retime_buffer (self, buf)) {
        GST_LOG_OBJECT (self, "dropping %" GST_PTR_FORMAT ": before this pipeline's start",
            buf);
        GST_OBJECT_LOCK (self);
        self->st_late++;
        GST_OBJECT_UNLOCK (self);
        self->discont_next = TRUE;
        gst_buffer_unref (buf); /* a wrapped record goes back with its memory */
        return GST_FLOW_OK;
      }
      if (self->discont_next)
        GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
      self->discont_next = FALSE;
      /* only this thread writes them: see the declaration */
      __atomic_store_n (&self->st_buffers, self->st_buffers + 1, __ATOMIC_RELAXED);
      __atomic_store_n (&self->st_bytes, self->st_bytes + size, __ATOMIC_RELAXED);
      *out = buf;
      return GST_FLOW_OK;
    }
    case IPCRING_REC_CAPS:{
      GstCaps *caps = ipcring_wire_decode_caps (data, len, &why);
      if (!caps)
        return bad_record (self, tag, why);
      return handle_caps (self, caps);
    }
    case IPCRING_REC_SEGMENT:{
      GstEvent *ev = ipcring_wire_decode_segment (data, len, &why);
      if (!ev)
        return bad_record (self, tag, why);
      return handle_event (self, ev);
    }
    case IPCRING_REC_EVENT:{
      GstEvent *ev = ipcring_wire_decode_event (data, len, &why);
      if (!ev)
        return bad_record (self, tag, why);
      return handle_event (self, ev);
    }
    case IPCRING_REC_EOS:
      GST_INFO_OBJECT (self, "end of stream from the producer");
      return GST_FLOW_EOS;
    case IPCRING_REC_TIME:{
      IpcRingWireTime t;
      if (!ipcring_wire_decode_time (data, len, &t, &why))
        return bad_record (self, tag, why);
      handle_time (self, &t);
      return GST_FLOW_OK;
    }
    case IPCRING_REC_DROP:{
      IpcRingWireDrop d;
      if (!ipcring_wire_decode_drop (data, len, &d, &why))
        return bad_record (self, tag, why);
      handle_drop (self, &d);
      return GST_FLOW_OK;
    }
    default:
      /* Newer writers may add record types; this reader skips them. */
      if (!g_hash_table_contains (self->unknown_tags, GUINT_TO_POINTER (tag))) {
        g_hash_table_add (self->unknown_tags, GUINT_TO_POINTER (tag));
        GST_WARNING_OBJECT (self, "skipping unknown record type %" GST_FOURCC_FORMAT,
            GST_FOURCC_ARGS (tag));
      }
      return GST_FLOW_OK;
  }
}

/* ---- Opening --------------------------------------------------------- */

static GstFlowReturn
open_error (GstIpcRingSrc * self, const gchar * path, int rc)
{
  switch (rc) {
    case -EINVAL:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("%s is not a ring file.", path),
          ("Give the ring path of a running ipcringsink."));
      break;
    case -EPROTONOSUPPORT:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Ring %s was made by an incompatible version of ipcring.", path),
          ("Use the same ipcring version on both sides."));
      break;
    case -EPROTO:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Ring %s is corrupt.", path),
          ("Its header or indices are inconsistent; restart the producer."));
      break;
    case -EPERM:
    case -EACCES:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Ring %s is not safe or not allowed to open.", path),
          ("It must belong to this user and not be writable by others."));
      break;
    case -EBUSY:
      GST_ELEMENT_ERROR (self, RESOURCE, BUSY,
          ("Another ipcringsrc is already reading ring %s.", path),
          ("A ring has one reader at a time; stop the other consumer."));
      break;
    case -ELOOP:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("%s is a symbolic link; rings are never opened through links.", path),
          ("Give the real path."));
      break;
    case -ENOTDIR:
    case -ENOENT:
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
          ("Cannot wait for ring %s: its directory does not exist.", path),
          ("Create the directory or fix the ring path."));
      break;
    default:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Cannot open ring %s: %s.", path, ipcring_strerror (rc)), (NULL));
      break;
  }
  return GST_FLOW_ERROR;
}

/* A reader was opened: hold it (under self->lock). */
static void
attach_reader (GstIpcRingSrc * self, ipcring_reader * r)
{
  ipcring_reader_set_spin (r, (int64_t) self->open_spin);
  struct ipcring_info info;
  ipcring_reader_info (r, &info);
  /* The first reader starts at the beginning, where the stream record
   * is; a later one skips what the previous reader left unread until
   * the writer gives it a stream record of its own. */
  self->synced = info.reader_generation <= 1;
  self->holder = ipcring_holder_new (r, GST_OBJECT (self));
  choose_payload (self);
  GStatBuf st;
  if (self->open_fd < 0 && g_stat (self->path, &st) == 0) {
    self->ring_dev = st.st_dev;
    self->ring_ino = st.st_ino;
  }
  GST_INFO_OBJECT (self, "attached to ring %s (reader generation %" G_GUINT64_FORMAT
      ", writer pid %d)", self->path, (guint64) info.reader_generation, info.writer_pid);
}

/* Before READY->PAUSED, while is-live was not set: if the ring is there,
 * attach now and read ahead what is already written (keeping the records,
 * which create() handles first) up to the writer's TIME record, and take its
 * liveness. GstBaseSrc decides whether to preroll before start(), and a
 * state change must not wait: a writer whose TIME record is not in the ring
 * yet (no ring, a writer that has not started streaming, or one that has
 * not seen this new reader yet) leaves is-live at its default. */
static void
probe_writer (GstIpcRingSrc * self)
{
  GST_OBJECT_LOCK (self);
  gchar *path = g_strdup (self->ring);
  gint fd = self->fd;
  self->open_spin = self->spin_time;
  self->payload_mode = self->payload;
  GST_OBJECT_UNLOCK (self);
  if ((fd >= 0) == (path && *path)) {
    g_free (path);
    return;                     /* start() says what is wrong */
  }
  if (fd >= 0) {
    g_free (path);
    path = g_strdup_printf ("fd %d", fd);
  }
  ipcring_reader *r = NULL;
  int rc = fd >= 0 ? ipcring_reader_open_fd (fd, 0, &r) : ipcring_reader_open (path, 0, &r);
  g_mutex_lock (&self->lock);
  g_free (self->path);
  self->path = path;
  self->open_fd = fd;
  if (rc == 0 && !self->holder)
    attach_reader (self, r);
  else if (rc == 0)
    ipcring_reader_close (r);
  g_mutex_unlock (&self->lock);
  if (rc != 0 || !self->holder) {
    GST_DEBUG_OBJECT (self, "no ring to probe yet (%s): not live", ipcring_strerror (rc));
    return;
  }
  ipcring_reader *rd = ipcring_holder_reader (self->holder);
  while (self->prefetch->len < PROBE_RECORDS) {
    struct ipcring_record_ref ref;
    if (ipcring_reader_take (rd, &ref, 0) != 0)
      break;
    g_array_append_val (self->prefetch, ref);
    IpcRingWireTime t;
    const gchar *why;
    if (ref.tag == IPCRING_REC_TIME && ipcring_wire_decode_time (ref.data, ref.len, &t, &why)
        && (t.flags & IPCRING_TIME_LATENCY)) {
      gboolean live = (t.flags & IPCRING_TIME_LIVE) != 0;
      GST_INFO_OBJECT (self, "the producer is %slive: so is this source", live ? "" : "not ");
      gst_base_src_set_live (GST_BASE_SRC (self), live);
      return;
    }
    if (ref.tag == IPCRING_REC_BUFFER)
      break;
  }
  GST_DEBUG_OBJECT (self, "no time record from the producer: not live");
}

static GstStateChangeReturn
gst_ipc_ring_src_change_state (GstElement * element, GstStateChange transition)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (element);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    GST_OBJECT_LOCK (self);
    gboolean follow = !self->is_live_set;
    gboolean running_time = self->timestamp_mode == GST_IPC_RING_TIMESTAMP_RUNNING_TIME;
    GST_OBJECT_UNLOCK (self);
    /* running-time maps buffers with this pipeline's base time, which only
     * exists in PLAYING: a source that prerolled a buffer in PAUSED could
     * not map it. So running-time is live unless is-live says otherwise. */
    if (follow && running_time)
      gst_base_src_set_live (GST_BASE_SRC (self), TRUE);
    else if (follow)
      probe_writer (self);
  }
  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS (gst_ipc_ring_src_parent_class)->change_state (element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE && transition == GST_STATE_CHANGE_READY_TO_PAUSED)
    drop_holder (self);
  return ret;
}

/* ---- Waiting for the ring file ------------------------------------- */

/* A source started before its producer waits for the ring file. On Linux it
 * does not poll for it: the streaming thread sleeps in poll() on an inotify
 * watch on the ring's directory (IN_CREATE: rings are made with O_TMPFILE and
 * linkat; IN_MOVED_TO and IN_ATTRIB for files renamed or linked into place)
 * and on an eventfd that unlock() writes to, and tries the open again as soon
 * as anything happens in the directory (which name it was does not matter:
 * an open that finds nothing costs less than telling names apart). No thread
 * of its own.
 *
 * unlock() sets flushing under the lock and then writes to the eventfd, and
 * the waiter looks at flushing under the lock before each poll(): an
 * unlock() that comes before the poll() is seen there, one that comes during
 * it wakes it at once. flushing is the truth, the eventfd only wakes: the
 * waiter empties it after each wake, and unlock_stop() too.
 *
 * The retry timer stays as the bound of every sleep and as the fallback: the
 * poll() lasts OPEN_RETRY_US at most, and without a watch (no inotify, out of
 * inotify instances or watches) the wait is the timed wait on cond it always
 * was. A directory that is replaced while the source waits is watched again
 * at the next look (its device and inode are compared each time).
 *
 * Nothing is watched while streaming: the watch is removed when the wait
 * ends (attached, flushing or an error), which is cheap. The descriptors
 * stay for the next wait of the run and stop() closes them: closing an
 * inotify descriptor waits until the kernel has freed its watches (a grace
 * period, 8 to 16 ms measured here, unless that was done long before), which
 * the first buffer must not wait for. */

#ifdef HAVE_RING_WATCH
/* Read a non-blocking descriptor empty. */
static void
drain_fd (int fd)
{
  guint8 buf[4096] __attribute__ ((aligned (__alignof__ (struct inotify_event))));
  while (read (fd, buf, sizeof buf) > 0) {
  }
}

/* Under self->lock. */
static void
unwatch_ring_dir (GstIpcRingSrc * self)
{
  if (self->watch_wd >= 0)
    inotify_rm_watch (self->watch_fd, self->watch_wd);
  self->watch_wd = -1;
}

/* Under self->lock: watch dir (st, already looked at) for new names. FALSE:
 * no watch, the timer alone. */
static gboolean
watch_ring_dir (GstIpcRingSrc * self, const gchar * dir, const GStatBuf * st)
{
  unwatch_ring_dir (self);
  if (self->watch_fd < 0) {
    int in = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
    if (in < 0) {
      GST_INFO_OBJECT (self, "no inotify (%s): looking for ring %s every %d ms",
          g_strerror (errno), self->path, (int) (OPEN_RETRY_US / 1000));
      return FALSE;
    }
    int ev = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ev < 0) {
      GST_INFO_OBJECT (self, "no eventfd (%s): looking for ring %s every %d ms",
          g_strerror (errno), self->path, (int) (OPEN_RETRY_US / 1000));
      close (in);
      return FALSE;
    }
    self->watch_fd = in;
    self->wake_fd = ev;
  }
  int wd = inotify_add_watch (self->watch_fd, dir,
      IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR);
  if (wd < 0) {
    GST_INFO_OBJECT (self, "cannot watch %s (%s): looking for ring %s every %d ms", dir,
        g_strerror (errno), self->path, (int) (OPEN_RETRY_US / 1000));
    return FALSE;
  }
  self->watch_wd = wd;
  self->watch_dev = st->st_dev;
  self->watch_ino = st->st_ino;
  GST_DEBUG_OBJECT (self, "watching %s for ring %s", dir, self->path);
  return TRUE;
}
#endif

/* Under self->lock, which it leaves and takes again: wait until something
 * may have changed for the ring file in dir (st), unlock() or OPEN_RETRY_US,
 * whichever comes first. The caller looks at flushing and opens again. */
static void
wait_for_ring (GstIpcRingSrc * self, const gchar * dir, const GStatBuf * st)
{
#ifdef HAVE_RING_WATCH
  if (!self->watch_tried || (self->watch_wd >= 0 && (st->st_dev != self->watch_dev
              || st->st_ino != self->watch_ino))) {
    /* The first look, or a directory that was replaced: once a watch is in
     * place, look again at once, for a ring made before it was. */
    self->watch_tried = TRUE;
    if (watch_ring_dir (self, dir, st))
      return;
  }
  if (self->watch_wd >= 0) {
    struct pollfd fds[2] = {
      {self->watch_fd, POLLIN, 0},
      {self->wake_fd, POLLIN, 0},
    };
    g_mutex_unlock (&self->lock);
    /* Only this thread closes the descriptors (or stop(), after it). */
    int n = poll (fds, 2, (int) (OPEN_RETRY_US / 1000));
    if (n > 0 && fds[0].revents)
      drain_fd (fds[0].fd);
    if (n > 0 && fds[1].revents)
      drain_fd (fds[1].fd);
    g_mutex_lock (&self->lock);
    return;
  }
#endif
  g_cond_wait_until (&self->cond, &self->lock, g_get_monotonic_time () + OPEN_RETRY_US);
}

/* Under self->lock: the wait is over (for now). */
static void
end_wait_for_ring (GstIpcRingSrc * self)
{
#ifdef HAVE_RING_WATCH
  unwatch_ring_dir (self);
  self->watch_tried = FALSE;
#endif
}

/* Under self->lock: at stop. */
static void
close_wait_for_ring (GstIpcRingSrc * self)
{
  end_wait_for_ring (self);
#ifdef HAVE_RING_WATCH
  if (self->watch_fd >= 0)
    close (self->watch_fd);
  if (self->wake_fd >= 0)
    close (self->wake_fd);
  self->watch_fd = self->wake_fd = -1;
#endif
}

/* Open the ring, waiting for it to appear. Called in create(). */
static GstFlowReturn
ensure_reader (GstIpcRingSrc * self)
{
  GstFlowReturn ret = GST_FLOW_OK;

  /* Only this (streaming) thread sets the holder while streaming; stop()
   * clears it after streaming has stopped: no lock needed to see it is set. */
  if (self->holder)
    return GST_FLOW_OK;

  g_mutex_lock (&self->lock);
  while (!self->holder) {
    if (self->flushing) {
      ret = GST_FLOW_FLUSHING;
      break;
    }
    ipcring_reader *r = NULL;
    int rc = self->open_fd >= 0 ? ipcring_reader_open_fd (self->open_fd, 0, &r)
        : ipcring_reader_open (self->path, 0, &r);
    if (rc == 0) {
      attach_reader (self, r);
      break;
    }
    if (rc == -ENOENT && self->open_fd < 0) {
      gchar *dir = g_path_get_dirname (self->path);
      GStatBuf st;
      gboolean dir_ok = g_stat (dir, &st) == 0 && S_ISDIR (st.st_mode);
      if (dir_ok) {
        GST_LOG_OBJECT (self, "waiting for ring %s to appear", self->path);
        wait_for_ring (self, dir, &st);
        g_free (dir);
        continue;
      }
      g_free (dir);
    }
    end_wait_for_ring (self);
    g_mutex_unlock (&self->lock);
    return open_error (self, self->path, rc);
  }
  end_wait_for_ring (self);
  g_mutex_unlock (&self->lock);
  return ret;
}

/* A new writer that could not take the old ring over (the old one removed
 * it on a clean stop) made a new file at the path. */
static gboolean
ring_replaced (GstIpcRingSrc * self)
{
  GStatBuf st;
  if (self->open_fd >= 0)
    return FALSE;               /* an inherited ring is taken over in place */
  return g_stat (self->path, &st) == 0 && (st.st_dev != self->ring_dev
      || st.st_ino != self->ring_ino);
}

/* Let go of the ring: what downstream still holds is evicted (it keeps
 * its bytes) and the reader detaches at once, so that a new one can attach;
 * the mapping goes with the last buffer. */
static void
drop_holder (GstIpcRingSrc * self)
{
  g_mutex_lock (&self->lock);
  IpcRingHolder *h = self->holder;
  self->holder = NULL;
  g_array_set_size (self->prefetch, 0);
  g_queue_clear_full (&self->upstream, (GDestroyNotify) g_bytes_unref);
  g_atomic_int_set (&self->upstream_queued, 0);
  g_mutex_unlock (&self->lock);
  if (h) {
    ipcring_holder_detach (h);
    ipcring_holder_unref (h);
  }
}

/* Leave the old ring for the new file at the same path. */
static GstFlowReturn
reopen_reader (GstIpcRingSrc * self)
{
  GST_INFO_OBJECT (self, "a new producer made a new ring at %s, switching to it", self->path);
  drop_holder (self);
  self->writer_gone = FALSE;
  return ensure_reader (self);
}

/* A producer that died could not remove its ring file; the reader that gives
 * up on the ring does, unless a new producer has taken it over meanwhile. */
static void
remove_dead_ring (GstIpcRingSrc * self)
{
  if (self->open_fd >= 0 || ring_replaced (self)
      || ipcring_reader_writer_alive (ipcring_holder_reader (self->holder)))
    return;
  if (g_unlink (self->path) == 0)
    GST_INFO_OBJECT (self, "removed %s, left by the dead producer", self->path);
}

/* The writer is gone: apply on-writer-lost. OK means keep reading. */
static GstFlowReturn
writer_lost (GstIpcRingSrc * self, gboolean clean)
{
  if (!clean && self->on_writer_lost != GST_IPC_RING_ON_WRITER_LOST_WAIT)
    remove_dead_ring (self);
  switch (self->on_writer_lost) {
    case GST_IPC_RING_ON_WRITER_LOST_WAIT:
      GST_INFO_OBJECT (self, "producer gone, waiting for a new one");
      return GST_FLOW_OK;
    case GST_IPC_RING_ON_WRITER_LOST_EOS:
      return GST_FLOW_EOS;
    case GST_IPC_RING_ON_WRITER_LOST_ERROR:
    default:
      if (clean)
        return GST_FLOW_EOS;
      GST_ELEMENT_ERROR (self, RESOURCE, READ,
          ("The producer writing ring %s died.", self->path),
          ("Everything it wrote was delivered. Set on-writer-lost=eos to end the stream "
              "instead, or on-writer-lost=wait to wait for a new producer."));
      return GST_FLOW_ERROR;
  }
}

/* ---- Upstream events: the back channel --------------------------------- */

/* How soon to try again when the back channel is full. */
#define BACK_RETRY_NS (10 * GST_MSECOND)
/* Upstream events waiting for room, at most; older ones are dropped. */
#define BACK_QUEUE_MAX 64u

/* Send what is queued, in order, as far as the back channel has room. Only
 * the streaming thread (or a thread that knows the streaming thread is not
 * in a reader call) calls this. Returns TRUE if something is left. */
static gboolean
send_upstream (GstIpcRingSrc * self)
{
  /* A queued event sets the flag before it interrupts the reader, and the
   * streaming thread comes here after every record and interruption. */
  if (!g_atomic_int_get (&self->upstream_queued))
    return FALSE;
  g_mutex_lock (&self->lock);
  ipcring_reader *r = self->holder ? ipcring_holder_reader (self->holder) : NULL;
  GBytes *b;
  while (r && (b = g_queue_peek_head (&self->upstream))) {
    gsize size;
    const void *data = g_bytes_get_data (b, &size);
    int rc = ipcring_reader_send (r, data, size, IPCRING_BACK_EVENT);
    GST_LOG_OBJECT (self, "back channel send of %" G_GSIZE_FORMAT " bytes: %d", size, rc);
    if (rc == -EAGAIN)
      break;
    g_queue_pop_head (&self->upstream);
    g_bytes_unref (b);
    if (rc == 0) {
      GST_OBJECT_LOCK (self);
      self->st_upstream_events++;
      GST_OBJECT_UNLOCK (self);
    } else {
      GST_WARNING_OBJECT (self, "could not send an upstream event: %s",
          ipcring_strerror (rc));
    }
  }
  gboolean left = self->upstream.length > 0;
  g_atomic_int_set (&self->upstream_queued, left);
  g_mutex_unlock (&self->lock);
  return left;
}

/* In the timestamp modes, this pipeline's running time is not the
 * producer's: QoS timestamps and force-key-unit running times are moved
 * into the producer's (by the offset of the last buffer mapped). Returns
 * event itself, or a new event for the wire that the caller unrefs (the
 * event goes on to the base class as it is). */
static GstEvent *
to_producer_time (GstIpcRingSrc * self, GstEvent * event)
{
  GST_OBJECT_LOCK (self);
  gboolean have = self->have_rt_offset && self->ts_mode != GST_IPC_RING_TIMESTAMP_PASSTHROUGH;
  gint64 off = self->rt_offset;
  GST_OBJECT_UNLOCK (self);
  if (!have)
    return event;
  if (GST_EVENT_TYPE (event) == GST_EVENT_QOS) {
    GstQOSType type;
    gdouble prop;
    GstClockTimeDiff diff;
    GstClockTime ts;
    gst_event_parse_qos (event, &type, &prop, &diff, &ts);
    /* gst_event_new_qos() asserts diff >= 0 || -diff <= timestamp: a QoS
     * event that would break it after the move is sent as it is. */
    gint64 moved;
    if (GST_CLOCK_TIME_IS_VALID (ts) && ts <= G_MAXINT64
        && !__builtin_add_overflow ((gint64) ts, off, &moved) && moved >= 0
        && (diff >= 0 || (diff != G_MININT64 && -diff <= moved))) {
      GstEvent *copy = gst_event_new_qos (type, prop, diff, (GstClockTime) moved);
      gst_event_set_seqnum (copy, gst_event_get_seqnum (event));
      return copy;
    }
  } else if (gst_video_event_is_force_key_unit (event)
      && GST_EVENT_TYPE (event) == GST_EVENT_CUSTOM_UPSTREAM) {
    GstClockTime rt;
    gboolean all;
    guint count;
    gint64 moved;
    if (gst_video_event_parse_upstream_force_key_unit (event, &rt, &all, &count)
        && GST_CLOCK_TIME_IS_VALID (rt) && rt <= G_MAXINT64
        && !__builtin_add_overflow ((gint64) rt, off, &moved) && moved >= 0) {
      GstEvent *copy = gst_video_event_new_upstream_force_key_unit ((GstClockTime) moved,
          all, count);
      gst_event_set_seqnum (copy, gst_event_get_seqnum (event));
      return copy;
    }
  }
  return event;
}

/* Upstream events go to the producer's sink, which pushes them upstream
 * there: an encoder here can ask the capture process for a keyframe. */
static gboolean
gst_ipc_ring_src_event (GstBaseSrc * bsrc, GstEvent * event)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);
  gboolean sent = FALSE;
  if (ipcring_wire_upstream_event_is_carried (event)) {
    const gchar *why = NULL;
    GstEvent *wire = to_producer_time (self, event);
    GBytes *b = ipcring_wire_encode_upstream_event (wire, IPCRING_BACK_MAX, &why);
    if (wire != event)
      gst_event_unref (wire);
    if (!b) {
      GST_DEBUG_OBJECT (self, "not sending %" GST_PTR_FORMAT ": %s", event, why);
    } else {
      g_mutex_lock (&self->lock);
      if (self->holder && !self->flushing) {
        g_queue_push_tail (&self->upstream, b);
        while (self->upstream.length > BACK_QUEUE_MAX)
          g_bytes_unref (g_queue_pop_head (&self->upstream));
        g_atomic_int_set (&self->upstream_queued, 1);
        sent = TRUE;
        /* From the streaming thread (a downstream element reacting to a
         * buffer) send at once; from any other, wake the streaming thread,
         * which alone may call on the reader. */
        if (g_atomic_pointer_get (&self->stream_thread) != g_thread_self ())
          ipcring_reader_interrupt (ipcring_holder_reader (self->holder));
      } else {
        g_bytes_unref (b);
      }
      g_mutex_unlock (&self->lock);
      if (sent && g_atomic_pointer_get (&self->stream_thread) == g_thread_self ())
        send_upstream (self);
      GST_DEBUG_OBJECT (self, "%s %" GST_PTR_FORMAT " to the producer",
          sent ? "sending" : "no producer for", event);
    }
  }
  gboolean ret = GST_BASE_SRC_CLASS (gst_ipc_ring_src_parent_class)->event (bsrc, event);
  return sent || ret;
}

/* ---- GstPushSrc ------------------------------------------------------ */

static GstFlowReturn
read_records (GstIpcRingSrc * self, GstBuffer ** outbuf)
{
  GstFlowReturn ret = ensure_reader (self);
  if (ret != GST_FLOW_OK)
    return ret;

  for (;;) {
    IpcRingHolder *h = self->holder;
    ipcring_reader *r = ipcring_holder_reader (h);
    /* Waiting for a new writer: look at the path now and then, in case it
     * made a new file instead of taking the old one over. While downstream
     * holds records: look now and then whether the writer waits for them. */
    gboolean holding = ipcring_holder_holding (h);
    int64_t timeout = holding ? HOLD_POLL_NS : -1;
    /* Upstream events the back channel had no room for: try again soon. */
    if (send_upstream (self) && (timeout < 0 || timeout > (int64_t) BACK_RETRY_NS))
      timeout = BACK_RETRY_NS;
    if (self->writer_gone && (timeout < 0 || timeout > OPEN_RETRY_US * 1000))
      timeout = OPEN_RETRY_US * 1000;
    /* Records are taken (released later, in order) while buffers may be
     * ring memory or records are still out; else peeked and released. */
    gboolean take = self->zero_copy || !ipcring_holder_idle (h);
    struct ipcring_record_ref ref;
    int rc;
    if (self->prefetch->len) {
      take = TRUE;
      ref = g_array_index (self->prefetch, struct ipcring_record_ref, 0);
      g_array_remove_index (self->prefetch, 0);
      rc = 0;
    } else if (take) {
      rc = ipcring_reader_take (r, &ref, timeout);
    } else {
      const void *p;
      rc = ipcring_reader_peek (r, &p, &ref.len, &ref.tag, timeout);
      ref.data = p;
    }
    switch (rc) {
      case -ETIMEDOUT:
        if (holding && ipcring_holder_writer_waiting (h)) {
          /* Nothing to read, and the writer waits for room: give it the
           * room downstream holds. */
          GST_DEBUG_OBJECT (self, "the producer waits for room, evicting held buffers");
          ipcring_holder_evict_all (h);
        }
        if (self->writer_gone && ring_replaced (self)
            && (ret = reopen_reader (self)) != GST_FLOW_OK)
          return ret;
        continue;
      case 0:{
        self->writer_gone = FALSE;
        GstBuffer *buf = NULL;
        gboolean wrapped = FALSE;
        ret = handle_record (self, take ? &ref : NULL, ref.tag, ref.data, ref.len, &buf,
            &wrapped);
        if (!take)
          ipcring_reader_release (r);
        else if (!wrapped)
          ipcring_holder_done (h, &ref);
        refresh_info (self, ref.tag == IPCRING_REC_CAPS || ref.tag == IPCRING_REC_STREAM);
        if (ret != GST_FLOW_OK) {
          if (buf)
            gst_buffer_unref (buf);
          return ret;
        }
        if (buf) {
          *outbuf = buf;
          return GST_FLOW_OK;
        }
        continue;
      }
      case -ECANCELED:{
        /* Either flushing, or another thread queued an upstream event and
         * woke us to send it (only this thread calls on the reader). */
        g_mutex_lock (&self->lock);
        gboolean flushing = self->flushing;
        if (!flushing)
          ipcring_reader_clear_interrupt (r);
        g_mutex_unlock (&self->lock);
        if (flushing)
          return GST_FLOW_FLUSHING;
        continue;
      }
      case -ENODATA:
        /* The writer stopped cleanly without an EOS of its own. */
        if (self->on_writer_lost != GST_IPC_RING_ON_WRITER_LOST_WAIT) {
          GST_INFO_OBJECT (self, "producer stopped, ending the stream");
          return GST_FLOW_EOS;
        }
        /* Until a new writer takes over (or makes a new ring at the path),
         * the ring stays at its end: wait for that without spinning. What
         * downstream holds goes back to the ring for the new writer. */
        ipcring_holder_evict_all (h);
        self->writer_gone = TRUE;
        g_mutex_lock (&self->lock);
        if (!self->flushing)
          g_cond_wait_until (&self->cond, &self->lock,
              g_get_monotonic_time () + OPEN_RETRY_US);
        ret = self->flushing ? GST_FLOW_FLUSHING : GST_FLOW_OK;
        g_mutex_unlock (&self->lock);
        if (ret != GST_FLOW_OK)
          return ret;
        if (ring_replaced (self) && (ret = reopen_reader (self)) != GST_FLOW_OK)
          return ret;
        continue;
      case -EPIPE:
        if ((ret = writer_lost (self, FALSE)) != GST_FLOW_OK)
          return ret;
        self->writer_gone = TRUE;
        continue;
      case -EPROTO:
        GST_ELEMENT_ERROR (self, STREAM, DECODE,
            ("Ring %s is corrupt: the producer wrote inconsistent values.", self->path),
            ("The stream cannot continue from this ring."));
        return GST_FLOW_ERROR;
      default:
        GST_ELEMENT_ERROR (self, RESOURCE, READ,
            ("Could not read ring %s: %s.", self->path, ipcring_strerror (rc)), (NULL));
        return GST_FLOW_ERROR;
    }
  }
}

static GstFlowReturn
gst_ipc_ring_src_create (GstPushSrc * psrc, GstBuffer ** outbuf)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (psrc);
  g_atomic_pointer_set (&self->stream_thread, g_thread_self ());
  GstFlowReturn ret = GST_FLOW_OK;
  /* Caps a flush kept from being set go first: the segment must follow them. */
  if (G_UNLIKELY (self->pending_caps))
    ret = handle_caps (self, gst_caps_ref (self->pending_caps));
  if (ret == GST_FLOW_OK) {
    resend_own_segment (self);
    restore_own_segment (self);
    ret = read_records (self, outbuf);
  }
  if (ret != GST_FLOW_OK)
    refresh_info (self, TRUE);
  /* At the end of the stream no more reading makes room: what downstream
   * still holds is evicted, so a writer waiting for everything to be read
   * (ipcringsink at EOS) is not kept waiting by a held buffer. */
  if (ret == GST_FLOW_EOS && self->holder)
    ipcring_holder_evict_all (self->holder);
  return ret;
}

static gboolean
gst_ipc_ring_src_start (GstBaseSrc * bsrc)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);

  GST_OBJECT_LOCK (self);
  gchar *path = g_strdup (self->ring);
  gint fd = self->fd;
  self->open_spin = self->spin_time;
  GST_OBJECT_UNLOCK (self);
  if (fd >= 0 && path && *path) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("Both ring=%s and fd=%d are set.", path, fd),
        ("Set one of them: ring for a file path, fd for an inherited descriptor."));
    g_free (path);
    return FALSE;
  }
  if (fd < 0 && (!path || !*path)) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No ring file given."),
        ("Set the ring property to the path the ipcringsink writes, for example "
            "ring=/dev/shm/video, or fd to an inherited descriptor of a ring."));
    g_free (path);
    return FALSE;
  }
  if (fd >= 0) {
    g_free (path);
    path = g_strdup_printf ("fd %d", fd);
  }
  self->open_fd = fd;
  g_mutex_lock (&self->lock);
  g_free (self->path);
  self->path = path;
  g_mutex_unlock (&self->lock);

  GST_OBJECT_LOCK (self);
  self->payload_mode = self->payload;
  GST_OBJECT_UNLOCK (self);
  self->zero_copy = FALSE;
  if (self->holder)
    choose_payload (self);      /* probe_writer attached and set synced */
  else
    self->synced = FALSE;
  self->writer_gone = FALSE;
  self->sent_stream_start = FALSE;
  self->sent_segment = FALSE;
  gst_caps_replace (&self->caps, NULL);
  gst_caps_replace (&self->pending_caps, NULL);
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  g_clear_pointer (&self->stream_id, g_free);
  gst_event_replace (&self->own_stream_start, NULL);
  gst_event_replace (&self->own_segment, NULL);
  self->segment_deferred = FALSE;
  self->segment_delivered = FALSE;
  self->restore_segment = FALSE;
  g_atomic_int_set (&self->resend_segment, FALSE);
  g_hash_table_remove_all (self->unknown_tags);
  GST_OBJECT_LOCK (self);
  self->ts_mode = self->timestamp_mode;
  self->have_writer_latency = FALSE;
  self->writer_live = FALSE;
  self->ring_time = GST_CLOCK_TIME_NONE;
  __atomic_store_n (&self->st_buffers, 0, __ATOMIC_RELAXED);
  __atomic_store_n (&self->st_bytes, 0, __ATOMIC_RELAXED);
  self->st_drops = self->st_drop_records = 0;
  self->st_late = self->st_time_records = self->st_upstream_events = 0;
  memset (&self->st_info, 0, sizeof self->st_info);
  self->st_have_info = FALSE;
  GST_OBJECT_UNLOCK (self);
  self->have_time = FALSE;
  gst_segment_init (&self->wire_segment, GST_FORMAT_TIME);
  self->restart_base = GST_CLOCK_TIME_NONE;
  self->discont_next = FALSE;
  GST_OBJECT_LOCK (self);
  self->have_rt_offset = FALSE;
  GST_OBJECT_UNLOCK (self);
  self->next_info = 0;
  self->warned_no_clock = FALSE;
  return TRUE;
}

static gboolean
gst_ipc_ring_src_stop (GstBaseSrc * bsrc)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);
  drop_holder (self);
  g_mutex_lock (&self->lock);
  close_wait_for_ring (self);
  g_mutex_unlock (&self->lock);
  g_atomic_pointer_set (&self->stream_thread, NULL);
  self->zero_copy = FALSE;
  gst_caps_replace (&self->caps, NULL);
  gst_caps_replace (&self->pending_caps, NULL);
  return TRUE;
}

static gboolean
gst_ipc_ring_src_unlock (GstBaseSrc * bsrc)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);
  g_mutex_lock (&self->lock);
  self->flushing = TRUE;
  if (self->holder)
    ipcring_reader_interrupt (ipcring_holder_reader (self->holder));
#ifdef HAVE_RING_WATCH
  if (self->wake_fd >= 0) {
    guint64 one = 1;
    if (write (self->wake_fd, &one, sizeof one) < 0)
      GST_DEBUG_OBJECT (self, "waking the wait for the ring: %s", g_strerror (errno));
  }
#endif
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
  return TRUE;
}

static gboolean
gst_ipc_ring_src_unlock_stop (GstBaseSrc * bsrc)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);
  g_mutex_lock (&self->lock);
  self->flushing = FALSE;
  if (self->holder)
    ipcring_reader_clear_interrupt (ipcring_holder_reader (self->holder));
#ifdef HAVE_RING_WATCH
  if (self->wake_fd >= 0)
    drain_fd (self->wake_fd);
#endif
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/* Caps come from the ring, not from negotiation. */
static gboolean
gst_ipc_ring_src_negotiate (GstBaseSrc * bsrc)
{
  return TRUE;
}

static GstCaps *
gst_ipc_ring_src_get_caps (GstBaseSrc * bsrc, GstCaps * filter)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);
  GstCaps *caps = gst_pad_get_current_caps (GST_BASE_SRC_PAD (self));
  if (!caps)
    caps = gst_caps_new_any ();
  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, caps, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (caps);
    caps = tmp;
  }
  (void) self;
  return caps;
}

/* LATENCY: the writer's upstream latency (from its TIME records) plus the
 * ring's own: nothing to the minimum (a record is readable as soon as it is
 * written), and to the maximum what a full ring holds in time when the caps
 * say it (raw audio and video), else nothing. */
static gboolean
gst_ipc_ring_src_query (GstBaseSrc * bsrc, GstQuery * query)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (bsrc);
  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return GST_BASE_SRC_CLASS (gst_ipc_ring_src_parent_class)->query (bsrc, query);
  GST_OBJECT_LOCK (self);
  gboolean have = self->have_writer_latency;
  GstClockTime min = self->writer_min, max = self->writer_max, ring = self->ring_time;
  GST_OBJECT_UNLOCK (self);
  if (!have)
    return GST_BASE_SRC_CLASS (gst_ipc_ring_src_parent_class)->query (bsrc, query);
  if (GST_CLOCK_TIME_IS_VALID (max) && GST_CLOCK_TIME_IS_VALID (ring))
    max += ring;
  gboolean live = gst_base_src_is_live (bsrc);
  GST_DEBUG_OBJECT (self, "latency: live %d, min %" GST_TIME_FORMAT ", max %" GST_TIME_FORMAT,
      live, GST_TIME_ARGS (min), GST_TIME_ARGS (max));
  gst_query_set_latency (query, live, min, max);
  return TRUE;
}

static GstStructure *
make_stats (GstIpcRingSrc * self)
{
  GST_OBJECT_LOCK (self);
  const struct ipcring_info *i = &self->st_info;
  guint64 fill = i->write_index - i->read_index;
  if (!self->st_have_info || fill > i->capacity)
    fill = 0;                   /* the writer's index is the writer's word */
  GstStructure *s = gst_structure_new ("GstIpcRingSrcStats",
      "buffers", G_TYPE_UINT64, __atomic_load_n (&self->st_buffers, __ATOMIC_RELAXED),
      "bytes", G_TYPE_UINT64, __atomic_load_n (&self->st_bytes, __ATOMIC_RELAXED),
      "drops", G_TYPE_UINT64, self->st_drops,
      "drop-records", G_TYPE_UINT64, self->st_drop_records,
      "late", G_TYPE_UINT64, self->st_late,
      "time-records", G_TYPE_UINT64, self->st_time_records,
      "upstream-events", G_TYPE_UINT64, self->st_upstream_events,
      "writer-live", G_TYPE_BOOLEAN, self->writer_live,
      "writer-latency-min", G_TYPE_UINT64, self->have_writer_latency ? self->writer_min
      : GST_CLOCK_TIME_NONE,
      "writer-latency-max", G_TYPE_UINT64, self->have_writer_latency ? self->writer_max
      : GST_CLOCK_TIME_NONE,
      "fill-level", G_TYPE_UINT64, fill,
      "capacity", G_TYPE_UINT64, i->capacity,
      "peer-pid", G_TYPE_INT, (gint) i->writer_pid,
      "peer-alive", G_TYPE_BOOLEAN, i->peer_alive != 0,
      "reader-generation", G_TYPE_UINT64, i->reader_generation,
      "writer-generation", G_TYPE_UINT64, i->writer_generation,
      "ring-records", G_TYPE_UINT64, i->records,
      "ring-bytes", G_TYPE_UINT64, i->bytes,
      "ring-waits", G_TYPE_UINT64, i->waits,
      "ring-wakes", G_TYPE_UINT64, i->wakes, NULL);
  GST_OBJECT_UNLOCK (self);
  return s;
}

/* The ring's counters for the stats property: only the streaming thread
 * may call the reader, so it copies them now and then. */
static void
refresh_info (GstIpcRingSrc * self, gboolean force)
{
  guint64 now = ipcring_coarse_ns ();
  if (!self->holder || (!force && now < self->next_info))
    return;
  self->next_info = now + INFO_REFRESH_NS;
  struct ipcring_info info;
  ipcring_reader_info (ipcring_holder_reader (self->holder), &info);
  GstClockTime ring = ring_duration (self->caps, info.capacity);
  GST_OBJECT_LOCK (self);
  self->st_info = info;
  self->st_have_info = TRUE;
  self->capacity = info.capacity;
  self->ring_time = ring;
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_ipc_ring_src_is_seekable (GstBaseSrc * bsrc)
{
  return FALSE;
}

/* ---- GObject --------------------------------------------------------- */

static void
gst_ipc_ring_src_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (object);

  switch (prop_id) {
    case PROP_RING:
      GST_OBJECT_LOCK (self);
      g_free (self->ring);
      self->ring = g_value_dup_string (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_FD:
      GST_OBJECT_LOCK (self);
      self->fd = g_value_get_int (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_SPIN_TIME:
      GST_OBJECT_LOCK (self);
      self->spin_time = g_value_get_uint64 (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_IS_LIVE:
      GST_OBJECT_LOCK (self);
      self->is_live_set = TRUE;
      GST_OBJECT_UNLOCK (self);
      gst_base_src_set_live (GST_BASE_SRC (self), g_value_get_boolean (value));
      break;
    case PROP_TIMESTAMP_MODE:
      GST_OBJECT_LOCK (self);
      self->timestamp_mode = g_value_get_enum (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_ON_WRITER_LOST:
      GST_OBJECT_LOCK (self);
      self->on_writer_lost = g_value_get_enum (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_PAYLOAD:
      GST_OBJECT_LOCK (self);
      self->payload = g_value_get_enum (value);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_ipc_ring_src_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (object);

  switch (prop_id) {
    case PROP_RING:
      GST_OBJECT_LOCK (self);
      g_value_set_string (value, self->ring);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_FD:
      GST_OBJECT_LOCK (self);
      g_value_set_int (value, self->fd);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_SPIN_TIME:
      GST_OBJECT_LOCK (self);
      g_value_set_uint64 (value, self->spin_time);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_IS_LIVE:
      g_value_set_boolean (value, gst_base_src_is_live (GST_BASE_SRC (self)));
      break;
    case PROP_TIMESTAMP_MODE:
      GST_OBJECT_LOCK (self);
      g_value_set_enum (value, self->timestamp_mode);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_STATS:
      g_value_take_boxed (value, make_stats (self));
      break;
    case PROP_ON_WRITER_LOST:
      GST_OBJECT_LOCK (self);
      g_value_set_enum (value, self->on_writer_lost);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_PAYLOAD:
      GST_OBJECT_LOCK (self);
      g_value_set_enum (value, self->payload);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_ipc_ring_src_finalize (GObject * object)
{
  GstIpcRingSrc *self = GST_IPC_RING_SRC (object);
  drop_holder (self);           /* stop() did, unless it never ran */
  close_wait_for_ring (self);
  g_free (self->ring);
  g_free (self->path);
  g_free (self->stream_id);
  gst_caps_replace (&self->caps, NULL);
  gst_caps_replace (&self->pending_caps, NULL);
  gst_event_replace (&self->own_stream_start, NULL);
  gst_event_replace (&self->own_segment, NULL);
  g_hash_table_unref (self->unknown_tags);
  g_array_unref (self->prefetch);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  G_OBJECT_CLASS (gst_ipc_ring_src_parent_class)->finalize (object);
}

static void
gst_ipc_ring_src_init (GstIpcRingSrc * self)
{
  self->ring = g_strdup (DEFAULT_RING);
  self->fd = DEFAULT_FD;
  self->open_fd = -1;
  self->watch_fd = self->watch_wd = self->wake_fd = -1;
  self->spin_time = DEFAULT_SPIN_TIME;
  self->on_writer_lost = DEFAULT_ON_WRITER_LOST;
  self->payload = DEFAULT_PAYLOAD;
  self->timestamp_mode = DEFAULT_TIMESTAMP_MODE;
  self->ring_time = GST_CLOCK_TIME_NONE;
  self->restart_base = GST_CLOCK_TIME_NONE;
  gst_segment_init (&self->wire_segment, GST_FORMAT_TIME);
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  self->unknown_tags = g_hash_table_new (NULL, NULL);
  self->prefetch = g_array_new (FALSE, FALSE, sizeof (struct ipcring_record_ref));
  g_queue_init (&self->upstream);
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  /* TIME keeps GstBaseSrc from inventing offsets or a first DTS. */
  gst_base_src_set_format (GST_BASE_SRC (self), GST_FORMAT_TIME);
  gst_base_src_set_live (GST_BASE_SRC (self), DEFAULT_IS_LIVE);
  gst_pad_add_probe (GST_BASE_SRC_PAD (self), GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM |
      GST_PAD_PROBE_TYPE_EVENT_FLUSH, filter_events, self, NULL);
}

static void
gst_ipc_ring_src_class_init (GstIpcRingSrcClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS (klass);
  GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS (klass);

  gobject_class->set_property = gst_ipc_ring_src_set_property;
  gobject_class->get_property = gst_ipc_ring_src_get_property;
  gobject_class->finalize = gst_ipc_ring_src_finalize;

  properties[PROP_RING] = g_param_spec_string ("ring", "Ring",
      "Path of the ring file an ipcringsink writes, for example /dev/shm/video (required)",
      DEFAULT_RING, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_FD] = g_param_spec_int ("fd", "File descriptor",
      "An inherited file descriptor of a ring instead of a path, for example a sealed "
      "memfd from ipcring-run (checked like a file; an unsealed memfd is refused); -1: use ring",
      -1, G_MAXINT, DEFAULT_FD,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_SPIN_TIME] = g_param_spec_uint64 ("spin-time", "Spin time",
      "Nanoseconds a wait for data spins before it sleeps, at least (it adapts up to 500 us "
      "on its own for a steady stream). More than the gap between buffers keeps the source "
      "awake: the lowest latency, a CPU busy while it waits",
      0, GST_SECOND, DEFAULT_SPIN_TIME,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_IS_LIVE] = g_param_spec_boolean ("is-live", "Is live",
      "Act as a live source. Unless set, it follows the producer: live when the "
      "producer's upstream is live (known from its first time record, if it is in the ring "
      "when the source starts); with timestamp-mode=running-time, live", DEFAULT_IS_LIVE,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_ON_WRITER_LOST] = g_param_spec_enum ("on-writer-lost", "On writer lost",
      "What to do when the producer dies, after delivering all it wrote",
      GST_TYPE_IPC_RING_ON_WRITER_LOST, DEFAULT_ON_WRITER_LOST,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_PAYLOAD] = g_param_spec_enum ("payload", "Payload",
      "How buffers get their data: copied out of the ring, or the ring's memory itself "
      "(zero copy; released when downstream drops the buffer). A producer can change ring "
      "bytes at any time: for raw samples no worse than having sent other samples, but a "
      "parser (demuxer, decoder, parser of compressed data) must not see bytes change under "
      "it. auto: zero copy for video/x-raw and audio/x-raw, copy for everything else. Use "
      "copy with an untrusted producer when downstream does more than treat samples as "
      "samples (for example indexes tables with them); zero-copy forces it for any caps",
      GST_TYPE_IPC_RING_PAYLOAD, DEFAULT_PAYLOAD,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_TIMESTAMP_MODE] = g_param_spec_enum ("timestamp-mode", "Timestamp mode",
      "passthrough: the carried timestamps and segment (files, non-live streams); "
      "running-time: each buffer at this pipeline's running time of the moment the "
      "producer's pipeline had it, in a segment from 0 (live streams on one machine: "
      "a live sink renders in sync with the producer); restart: the first buffer at 0",
      GST_TYPE_IPC_RING_TIMESTAMP_MODE, DEFAULT_TIMESTAMP_MODE,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  properties[PROP_STATS] = g_param_spec_boxed ("stats", "Statistics",
      "buffers, bytes, drops (the producer's, from its announcements), drop-records, late "
      "(dropped: before this pipeline's start), time-records, upstream-events, writer-live, "
      "writer-latency-min/max, fill-level, capacity, peer-pid, peer-alive, "
      "reader-generation, writer-generation and the ring's own counters (ring-records, "
      "ring-bytes, ring-waits, ring-wakes; refreshed every 100 ms while streaming)",
      GST_TYPE_STRUCTURE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (gobject_class, N_PROPERTIES, properties);

  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "Shared-memory ring source",
      "Source/Network",
      "Reads a stream from an ipcring written by an ipcringsink in another process",
      "ipcring developers");

  element_class->change_state = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_change_state);
  basesrc_class->start = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_unlock_stop);
  basesrc_class->negotiate = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_negotiate);
  basesrc_class->get_caps = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_get_caps);
  basesrc_class->is_seekable = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_is_seekable);
  basesrc_class->query = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_query);
  basesrc_class->event = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_event);
  pushsrc_class->create = GST_DEBUG_FUNCPTR (gst_ipc_ring_src_create);

  gst_type_mark_as_plugin_api (GST_TYPE_IPC_RING_ON_WRITER_LOST, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_IPC_RING_PAYLOAD, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_IPC_RING_TIMESTAMP_MODE, 0);
  GST_DEBUG_CATEGORY_INIT (ipcring_src_debug, "ipcringsrc", 0, "ipcring source");
}
