/* What the two ipcring elements share with plugin.c: their registration and
 * the enum types of their properties. */
#ifndef GST_IPC_RING_ELEMENTS_H
#define GST_IPC_RING_ELEMENTS_H

#include <gst/gst.h>

G_BEGIN_DECLS

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
