/* Encoding and decoding of ipcring records (see ipcring-protocol.h).
 *
 * Decoding treats its input as hostile: lengths are checked, strings are
 * copied and bounded before parsing, and every event is rebuilt through the
 * public constructor of its type from fields read with typed getters, so a
 * malformed structure can never become an event that crashes a parser. */
#include "ipcring-protocol.h"

#include <string.h>

gboolean
ipcring_wire_event_is_carried (GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_STREAM_START:
    case GST_EVENT_TAG:
    case GST_EVENT_GAP:
    case GST_EVENT_STREAM_GROUP_DONE:
    case GST_EVENT_SEGMENT_DONE:
    case GST_EVENT_BUFFERSIZE:
    case GST_EVENT_PROTECTION:
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:
      return TRUE;
    default:
      return FALSE;
  }
}

/* The structure that represents each carried event on the wire. */
static GstStructure *
event_to_structure (GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_STREAM_START:{
      const gchar *id = NULL;
      GstStreamFlags flags = 0;
      guint group = 0;
      gst_event_parse_stream_start (event, &id);
      gst_event_parse_stream_flags (event, &flags);
      GstStructure *s = gst_structure_new ("stream-start",
          "flags", G_TYPE_UINT, (guint) flags, NULL);
      if (id)
        gst_structure_set (s, "stream-id", G_TYPE_STRING, id, NULL);
      if (gst_event_parse_group_id (event, &group))
        gst_structure_set (s, "group-id", G_TYPE_UINT, group, NULL);
      return s;
    }
    case GST_EVENT_TAG:{
      GstTagList *tags = NULL;
      gst_event_parse_tag (event, &tags);
      return gst_structure_new ("tag", "taglist", GST_TYPE_TAG_LIST, tags,
          "scope", G_TYPE_UINT, (guint) gst_tag_list_get_scope (tags), NULL);
    }
    case GST_EVENT_GAP:{
      GstClockTime ts, dur;
      GstGapFlags flags = 0;
      gst_event_parse_gap (event, &ts, &dur);
      gst_event_parse_gap_flags (event, &flags);
      return gst_structure_new ("gap", "timestamp", G_TYPE_UINT64, ts,
          "duration", G_TYPE_UINT64, dur, "flags", G_TYPE_UINT, (guint) flags, NULL);
    }
    case GST_EVENT_STREAM_GROUP_DONE:{
      guint group = 0;
      gst_event_parse_stream_group_done (event, &group);
      return gst_structure_new ("stream-group-done", "group-id", G_TYPE_UINT, group, NULL);
    }
    case GST_EVENT_SEGMENT_DONE:{
      GstFormat format;
      gint64 position;
      gst_event_parse_segment_done (event, &format, &position);
      return gst_structure_new ("segment-done", "format", G_TYPE_UINT, (guint) format,
          "position", G_TYPE_INT64, position, NULL);
    }
    case GST_EVENT_BUFFERSIZE:{
      GstFormat format;
      gint64 minsize, maxsize;
      gboolean async;
      gst_event_parse_buffer_size (event, &format, &minsize, &maxsize, &async);
      return gst_structure_new ("buffersize", "format", G_TYPE_UINT, (guint) format,
          "minsize", G_TYPE_INT64, minsize, "maxsize", G_TYPE_INT64, maxsize,
          "async", G_TYPE_BOOLEAN, async, NULL);
    }
    case GST_EVENT_PROTECTION:{
      const gchar *system_id = NULL, *origin = NULL;
      GstBuffer *data = NULL;
      gst_event_parse_protection (event, &system_id, &data, &origin);
      GstStructure *s = gst_structure_new ("protection",
          "system-id", G_TYPE_STRING, system_id, "data", GST_TYPE_BUFFER, data, NULL);
      if (origin)
        gst_structure_set (s, "origin", G_TYPE_STRING, origin, NULL);
      return s;
    }
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:{
      const GstStructure *s = gst_event_get_structure (event);
      return s ? gst_structure_copy (s) : NULL;
    }
    default:
      return NULL;
  }
}

GBytes *
ipcring_wire_encode_event (GstEvent * event, const gchar ** why)
{
  if (!ipcring_wire_event_is_carried (event)) {
    *why = "event type is not carried";
    return NULL;
  }
  GstStructure *s = event_to_structure (event);
  if (!s) {
    *why = "custom event without a structure";
    return NULL;
  }
  gchar *str = gst_structure_to_string (s);
  gst_structure_free (s);
  gsize len = strlen (str);
  if (len > IPCRING_MAX_EVENT_STRING) {
    g_free (str);
    *why = "event too large to carry";
    return NULL;
  }
  IpcRingWireEvent hdr = { (uint32_t) GST_EVENT_TYPE (event), gst_event_get_seqnum (event) };
  guint8 *buf = g_malloc (sizeof hdr + len);
  memcpy (buf, &hdr, sizeof hdr);
  memcpy (buf + sizeof hdr, str, len);
  g_free (str);
  return g_bytes_new_take (buf, sizeof hdr + len);
}

void
ipcring_wire_encode_segment (const GstSegment * seg, guint32 seqnum, IpcRingWireSegment * out)
{
  memset (out, 0, sizeof *out);
  out->format = seg->format;
  out->flags = seg->flags;
  out->rate = seg->rate;
  out->applied_rate = seg->applied_rate;
  out->base = seg->base;
  out->offset = seg->offset;
  out->start = seg->start;
  out->stop = seg->stop;
  out->time = seg->time;
  out->position = seg->position;
  out->duration = seg->duration;
  out->seqnum = seqnum;
}

/* A NUL-terminated private copy of a bounded string with no NUL inside. */
static gchar *
copy_string (const guint8 * data, gsize len, gsize max, const gchar ** why)
{
  if (len > max) {
    *why = "string too long";
    return NULL;
  }
  gchar *s = g_malloc (len + 1);
  memcpy (s, data, len);
  s[len] = '\0';
  if (strlen (s) != len) {
    g_free (s);
    *why = "string contains a NUL byte";
    return NULL;
  }
  return s;
}

GstCaps *
ipcring_wire_decode_caps (const guint8 * data, gsize len, const gchar ** why)
{
  gchar *s = copy_string (data, len, IPCRING_MAX_CAPS_STRING, why);
  if (!s)
    return NULL;
  GstCaps *caps = gst_caps_from_string (s);
  g_free (s);
  if (!caps) {
    *why = "caps do not parse";
    return NULL;
  }
  if (!gst_caps_is_fixed (caps)) {
    gst_caps_unref (caps);
    *why = "caps are not fixed";
    return NULL;
  }
  return caps;
}

static gboolean
format_ok (guint32 f)
{
  return f == GST_FORMAT_UNDEFINED || f == GST_FORMAT_DEFAULT || f == GST_FORMAT_BYTES
      || f == GST_FORMAT_TIME || f == GST_FORMAT_BUFFERS || f == GST_FORMAT_PERCENT;
}

GstEvent *
ipcring_wire_decode_segment (const guint8 * data, gsize len, const gchar ** why)
{
  IpcRingWireSegment w;
  if (len != sizeof w) {
    *why = "segment record has the wrong size";
    return NULL;
  }
  memcpy (&w, data, sizeof w);
  /* gst_event_new_segment() asserts these; check them instead. */
  if (!format_ok (w.format) || w.format == GST_FORMAT_UNDEFINED) {
    *why = "segment format unknown";
    return NULL;
  }
  if (!(w.rate != 0.0) || !(w.applied_rate != 0.0) || w.rate != w.rate
      || w.applied_rate != w.applied_rate) {
    *why = "segment rate is zero or not a number";
    return NULL;
  }
  if (w.stop != (uint64_t) - 1 && w.start > w.stop) {
    *why = "segment start is after its stop";
    return NULL;
  }
  GstSegment seg;
  gst_segment_init (&seg, (GstFormat) w.format);
  seg.flags = (GstSegmentFlags) (w.flags & 0xffff);
  seg.rate = w.rate;
  seg.applied_rate = w.applied_rate;
  seg.base = w.base;
  seg.offset = w.offset;
  seg.start = w.start;
  seg.stop = w.stop;
  seg.time = w.time;
  seg.position = w.position;
  seg.duration = w.duration;
  GstEvent *ev = gst_event_new_segment (&seg);
  if (w.seqnum)
    gst_event_set_seqnum (ev, w.seqnum);
  return ev;
}

static GstEvent *
structure_to_event (GstEventType type, GstStructure * s, const gchar ** why)
{
  guint u = 0, u2 = 0;
  guint64 t1 = 0, t2 = 0;
  gint64 i1 = 0, i2 = 0;
  gboolean b = FALSE;
  GstEvent *ev = NULL;

  switch (type) {
    case GST_EVENT_STREAM_START:{
      const gchar *id = gst_structure_get_string (s, "stream-id");
      if (!id || !gst_structure_get_uint (s, "flags", &u))
        break;
      ev = gst_event_new_stream_start (id);
      gst_event_set_stream_flags (ev, (GstStreamFlags) u);
      if (gst_structure_get_uint (s, "group-id", &u2) && u2 != 0)
        gst_event_set_group_id (ev, u2);
      break;
    }
    case GST_EVENT_TAG:{
      GstTagList *tags = NULL;
      if (!gst_structure_get (s, "taglist", GST_TYPE_TAG_LIST, &tags, NULL))
        break;
      tags = gst_tag_list_make_writable (tags);
      if (gst_structure_get_uint (s, "scope", &u) && u == GST_TAG_SCOPE_GLOBAL)
        gst_tag_list_set_scope (tags, GST_TAG_SCOPE_GLOBAL);
      else
        gst_tag_list_set_scope (tags, GST_TAG_SCOPE_STREAM);
      ev = gst_event_new_tag (tags);
      break;
    }
    case GST_EVENT_GAP:
      if (!gst_structure_get_uint64 (s, "timestamp", &t1)
          || !gst_structure_get_uint64 (s, "duration", &t2) || t1 == GST_CLOCK_TIME_NONE)
        break;
      ev = gst_event_new_gap (t1, t2);
      if (gst_structure_get_uint (s, "flags", &u))
        gst_event_set_gap_flags (ev, (GstGapFlags) u);
      break;
    case GST_EVENT_STREAM_GROUP_DONE:
      if (!gst_structure_get_uint (s, "group-id", &u) || u == 0)
        break;
      ev = gst_event_new_stream_group_done (u);
      break;
    case GST_EVENT_SEGMENT_DONE:
      if (!gst_structure_get_uint (s, "format", &u) || !format_ok (u)
          || !gst_structure_get_int64 (s, "position", &i1))
        break;
      ev = gst_event_new_segment_done ((GstFormat) u, i1);
      break;
    case GST_EVENT_BUFFERSIZE:
      if (!gst_structure_get_uint (s, "format", &u) || !format_ok (u)
          || !gst_structure_get_int64 (s, "minsize", &i1)
          || !gst_structure_get_int64 (s, "maxsize", &i2)
          || !gst_structure_get_boolean (s, "async", &b))
        break;
      ev = gst_event_new_buffer_size ((GstFormat) u, i1, i2, b);
      break;
    case GST_EVENT_PROTECTION:{
      const gchar *system_id = gst_structure_get_string (s, "system-id");
      const gchar *origin = gst_structure_get_string (s, "origin");
      GstBuffer *data = NULL;
      if (!system_id || !gst_structure_get (s, "data", GST_TYPE_BUFFER, &data, NULL))
        break;
      ev = gst_event_new_protection (system_id, data, origin);
      gst_buffer_unref (data);
      break;
    }
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:
      return gst_event_new_custom (type, gst_structure_copy (s));
    default:
      *why = "event type is not one that is carried";
      return NULL;
  }
  if (!ev)
    *why = "event fields missing or of the wrong type";
  return ev;
}

GstEvent *
ipcring_wire_decode_event (const guint8 * data, gsize len, const gchar ** why)
{
  IpcRingWireEvent hdr;
  if (len < sizeof hdr) {
    *why = "event record too short";
    return NULL;
  }
  memcpy (&hdr, data, sizeof hdr);
  gchar *str = copy_string (data + sizeof hdr, len - sizeof hdr, IPCRING_MAX_EVENT_STRING, why);
  if (!str)
    return NULL;
  GstStructure *s = gst_structure_from_string (str, NULL);
  g_free (str);
  if (!s) {
    *why = "event structure does not parse";
    return NULL;
  }
  GstEvent *ev = structure_to_event ((GstEventType) hdr.type, s, why);
  gst_structure_free (s);
  if (ev && hdr.seqnum)
    gst_event_set_seqnum (ev, hdr.seqnum);
  return ev;
}

gboolean
ipcring_wire_decode_buffer_header (const guint8 * data, gsize len, IpcRingWireBuffer * out,
    const gchar ** why)
{
  if (len < sizeof *out) {
    *why = "buffer record too short";
    return FALSE;
  }
  memcpy (out, data, sizeof *out);
  return TRUE;
}
