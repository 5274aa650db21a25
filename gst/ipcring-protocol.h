/* The wire protocol of the ipcring elements: how a GStreamer stream travels
 * as ring records. docs/protocol.md describes it for humans.
 *
 * Every record's 32-bit ring tag says what it is; its payload starts with a
 * fixed-width header in the machine's byte order (the ring never leaves the
 * machine). The reader copies every header out of the ring before it looks
 * at it, and checks every length against the record's length.
 */
#ifndef IPCRING_PROTOCOL_H
#define IPCRING_PROTOCOL_H

#include <gst/gst.h>
#include <stdint.h>

G_BEGIN_DECLS

#define IPCRING_PROTOCOL_VERSION 1u

#define IPCRING_FOURCC(a, b, c, d)                                            \
  ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))

/* Record tags. A reader skips records with tags it does not know. */
#define IPCRING_REC_STREAM IPCRING_FOURCC ('S', 'T', 'R', 'M')
#define IPCRING_REC_CAPS IPCRING_FOURCC ('C', 'A', 'P', 'S')
#define IPCRING_REC_SEGMENT IPCRING_FOURCC ('S', 'E', 'G', 'M')
#define IPCRING_REC_EVENT IPCRING_FOURCC ('E', 'V', 'N', 'T')
#define IPCRING_REC_BUFFER IPCRING_FOURCC ('B', 'U', 'F', 'F')
#define IPCRING_REC_EOS IPCRING_FOURCC ('E', 'O', 'S', '_')

/* Live streams (readers that do not know them skip them). */
#define IPCRING_REC_TIME IPCRING_FOURCC ('T', 'I', 'M', 'E')
#define IPCRING_REC_DROP IPCRING_FOURCC ('D', 'R', 'O', 'P')

/* Limits on what a reader accepts; larger records are a protocol error. */
#define IPCRING_MAX_CAPS_STRING (256u * 1024u)
#define IPCRING_MAX_EVENT_STRING (4u * 1024u * 1024u)
/* Every structure, field, tag and caps feature name a reader parses becomes
 * a GQuark, which lives as long as the process. A process's readers intern
 * at most this many names that were not GQuarks already; a record that needs
 * more is refused. */
#define IPCRING_MAX_NEW_NAMES 4096u

/* STRM: the start of a consistent stream for a reader. Written when the
 * writer starts, and again (followed by all sticky events) whenever it sees
 * a new reader generation. */
typedef struct {
  uint32_t version;           /* IPCRING_PROTOCOL_VERSION */
  uint32_t flags;             /* none defined: 0 */
  uint64_t writer_generation; /* the ring's, when written */
  uint64_t reader_generation; /* the reader this record was written for */
} IpcRingWireStream;

/* BUFF: a buffer; the payload follows the header. GST_CLOCK_TIME_NONE and
 * GST_BUFFER_OFFSET_NONE travel as all-ones. */
typedef struct {
  uint64_t pts;
  uint64_t dts;
  uint64_t duration;
  uint64_t offset;
  uint64_t offset_end;
  uint32_t flags;             /* GstBufferFlags (the mini-object bits are 0) */
  uint32_t reserved;          /* 0 */
} IpcRingWireBuffer;

/* SEGM: a segment event, field by field. */
typedef struct {
  uint32_t format;            /* GstFormat */
  uint32_t flags;             /* GstSegmentFlags */
  double rate;
  double applied_rate;
  uint64_t base;
  uint64_t offset;
  uint64_t start;
  uint64_t stop;
  uint64_t time;
  uint64_t position;
  uint64_t duration;
  uint32_t seqnum;
  uint32_t reserved;          /* 0 */
} IpcRingWireSegment;

/* EVNT: any other serialized downstream event: its type, then its structure
 * as a string (gst_structure_to_string), without a terminating NUL. */
typedef struct {
  uint32_t type;              /* GstEventType */
  uint32_t seqnum;
} IpcRingWireEvent;

/* CAPS: the caps as a string (gst_caps_to_string), no header, no NUL. */
/* EOS_: an end-of-stream event, no payload. */

/* TIME: the producer's clock. Written after each STRM (with the sticky
 * events), when the producer's base time or clock changes (PLAYING again),
 * when its latency changes, and every second while its clock is not the
 * system monotonic clock (whose offset to CLOCK_MONOTONIC may drift).
 * clock_time and monotonic were sampled at the same moment, so a reader maps
 * a producer clock time t to CLOCK_MONOTONIC as t - clock_time + monotonic. */
typedef struct {
  uint64_t base_time;         /* the producer pipeline's base time */
  uint64_t clock_time;        /* its clock's time ... */
  uint64_t monotonic;         /* ... and CLOCK_MONOTONIC at the same moment (ns) */
  uint64_t latency_min;       /* the producer's upstream latency (ns) */
  uint64_t latency_max;       /* all-ones: no maximum */
  uint32_t flags;             /* IPCRING_TIME_* */
  uint32_t reserved;          /* 0 */
} IpcRingWireTime;

/* base_time and clock_time are valid (the producer had a clock, PLAYING). */
#define IPCRING_TIME_CLOCK (1u << 0)
/* The clock is GstSystemClock with clock-type monotonic: clock time is
 * CLOCK_MONOTONIC itself. */
#define IPCRING_TIME_MONOTONIC (1u << 1)
/* The producer's upstream is live. */
#define IPCRING_TIME_LIVE (1u << 2)
/* latency_min and latency_max are valid. */
#define IPCRING_TIME_LATENCY (1u << 3)
#define IPCRING_TIME_ALL_FLAGS 0xfu

/* DROP: the sink dropped buffers (leaky): written before the next buffer,
 * which also carries GST_BUFFER_FLAG_DISCONT. */
typedef struct {
  uint64_t count;             /* buffers dropped since the last DROP */
  uint64_t total;             /* buffers dropped since the sink started */
  uint64_t start;             /* PTS of the first dropped buffer (or all-ones) */
  uint64_t end;               /* PTS + duration of the last one (or all-ones) */
} IpcRingWireDrop;

/* The back channel (reader to writer, ipcring_reader_send()): UEVT records,
 * an upstream event as an IpcRingWireEvent header and a structure string,
 * at most IPCRING_BACK_MAX bytes in all. Carried: QoS, navigation,
 * reconfigure and custom upstream events (force-key-unit among them). */
#define IPCRING_BACK_EVENT IPCRING_FOURCC ('U', 'E', 'V', 'T')

G_STATIC_ASSERT (sizeof (IpcRingWireTime) == 48);
G_STATIC_ASSERT (sizeof (IpcRingWireDrop) == 32);
G_STATIC_ASSERT (sizeof (IpcRingWireStream) == 24);
G_STATIC_ASSERT (sizeof (IpcRingWireBuffer) == 48);
G_STATIC_ASSERT (G_STRUCT_OFFSET (IpcRingWireBuffer, flags) == 40);
G_STATIC_ASSERT (sizeof (IpcRingWireSegment) == 88);
G_STATIC_ASSERT (G_STRUCT_OFFSET (IpcRingWireSegment, base) == 24);
G_STATIC_ASSERT (sizeof (IpcRingWireEvent) == 8);

/* Which events the sink carries: serialized downstream events other than
 * flushes (local to each process), caps, segment and EOS (own records). */
gboolean ipcring_wire_event_is_carried (GstEvent * event);

/* Encode an event other than caps/segment/EOS into an EVNT payload. Returns
 * NULL (and says why in *why) if it cannot be carried. */
GBytes *ipcring_wire_encode_event (GstEvent * event, const gchar ** why);
void ipcring_wire_encode_segment (const GstSegment * segment, guint32 seqnum,
    IpcRingWireSegment * out);

/* Decoders take a private copy of the record payload. They return NULL and
 * set *why on anything malformed. */
GstCaps *ipcring_wire_decode_caps (const guint8 * data, gsize len, const gchar ** why);
GstEvent *ipcring_wire_decode_segment (const guint8 * data, gsize len, const gchar ** why);
GstEvent *ipcring_wire_decode_event (const guint8 * data, gsize len, const gchar ** why);
gboolean ipcring_wire_decode_buffer_header (const guint8 * data, gsize len,
    IpcRingWireBuffer * out, const gchar ** why);

/* TIME and DROP records: FALSE (and *why) if the length is wrong or, for
 * TIME, unknown flags or reserved bits are set. */
gboolean ipcring_wire_decode_time (const guint8 * data, gsize len,
    IpcRingWireTime * out, const gchar ** why);
gboolean ipcring_wire_decode_drop (const guint8 * data, gsize len,
    IpcRingWireDrop * out, const gchar ** why);

/* Upstream events on the back channel. The encoder returns NULL (and why)
 * for events that are not carried or do not fit in max bytes; the decoder
 * treats its input as hostile, like the other decoders. */
gboolean ipcring_wire_upstream_event_is_carried (GstEvent * event);
GBytes *ipcring_wire_encode_upstream_event (GstEvent * event, gsize max, const gchar ** why);
GstEvent *ipcring_wire_decode_upstream_event (const guint8 * data, gsize len,
    const gchar ** why);

G_END_DECLS

#endif /* IPCRING_PROTOCOL_H */
