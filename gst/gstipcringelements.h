/* What the two ipcring elements share with plugin.c: their registration and
 * the enum types of their properties; and with each other, their clocks. */
#ifndef GST_IPC_RING_ELEMENTS_H
#define GST_IPC_RING_ELEMENTS_H

#include <gst/gst.h>
#include <time.h>

G_BEGIN_DECLS

/* CLOCK_MONOTONIC in ns: the clock both sides of a ring share. */
static inline guint64
ipcring_monotonic_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (guint64) ts.tv_sec * GST_SECOND + (guint64) ts.tv_nsec;
}

/* A clock that reads CLOCK_MONOTONIC (GStreamer's system clock of type
 * monotonic): its times and ipcring_monotonic_ns() are the same clock. */
static inline gboolean
ipcring_clock_is_monotonic (GstClock * clock)
{
  if (!GST_IS_SYSTEM_CLOCK (clock))
    return FALSE;
  GstClockType type = GST_CLOCK_TYPE_REALTIME;
  g_object_get (clock, "clock-type", &type, NULL);
  return type == GST_CLOCK_TYPE_MONOTONIC;
}

/* CLOCK_MONOTONIC to the last tick (a few ms): cheaper than
 * ipcring_monotonic_ns(), and enough for periodic work done beside buffers
 * (stats refreshes, a drifting clock's TIME record). */
static inline guint64
ipcring_coarse_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC_COARSE, &ts);
  return (guint64) ts.tv_sec * GST_SECOND + (guint64) ts.tv_nsec;
}

typedef enum
{
  GST_IPC_RING_ON_READER_LOST_WAIT,
  GST_IPC_RING_ON_READER_LOST_ERROR,
} GstIpcRingOnReaderLost;

typedef enum
{
  GST_IPC_RING_ON_WRITER_LOST_ERROR,
  GST_IPC_RING_ON_WRITER_LOST_EOS,
  GST_IPC_RING_ON_WRITER_LOST_WAIT,
} GstIpcRingOnWriterLost;

/* ipcringsink's leaky: the names follow GstQueue's (the side that loses). */
typedef enum
{
  GST_IPC_RING_LEAKY_NONE,
  GST_IPC_RING_LEAKY_UPSTREAM,
  GST_IPC_RING_LEAKY_DOWNSTREAM,
} GstIpcRingLeaky;

typedef enum
{
  GST_IPC_RING_TIMESTAMP_PASSTHROUGH,
  GST_IPC_RING_TIMESTAMP_RUNNING_TIME,
  GST_IPC_RING_TIMESTAMP_RESTART,
} GstIpcRingTimestampMode;

GType gst_ipc_ring_on_reader_lost_get_type (void);
GType gst_ipc_ring_leaky_get_type (void);
GType gst_ipc_ring_timestamp_mode_get_type (void);
#define GST_TYPE_IPC_RING_LEAKY (gst_ipc_ring_leaky_get_type ())
#define GST_TYPE_IPC_RING_TIMESTAMP_MODE (gst_ipc_ring_timestamp_mode_get_type ())
GType gst_ipc_ring_on_writer_lost_get_type (void);
#define GST_TYPE_IPC_RING_ON_READER_LOST (gst_ipc_ring_on_reader_lost_get_type ())
#define GST_TYPE_IPC_RING_ON_WRITER_LOST (gst_ipc_ring_on_writer_lost_get_type ())

GST_ELEMENT_REGISTER_DECLARE (ipcringsink);
GST_ELEMENT_REGISTER_DECLARE (ipcringsrc);

G_END_DECLS

#endif
