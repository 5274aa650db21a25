/* libFuzzer harness for the decoding of ipcring records (gst/ipcring-protocol.c)
 * as the elements do it.
 *
 * The input is a sequence of records, each a 32-bit tag, a 32-bit length
 * (cut to what is left of the input) and that many payload bytes, in the
 * machine's byte order. A UEVT record (the back channel's upstream event)
 * goes through what the sink's poll_upstream() does with it; every other
 * record through what the source's handle_record() does with it: STRM is
 * copied out and its version checked; BUFF's header is decoded and a buffer
 * of the rest is made with the header's fields and flags; TIME and DROP are
 * decoded into the stream's latency and a gap event; CAPS, SEGM and EVNT are
 * decoded into caps and events, compared with the stream's current caps and
 * segment as the source does, and then looked at the way downstream elements
 * would (every field parsed with the getters of its event type, caps made
 * into a caps event). Whatever is made is unreffed.
 *
 * Whatever the bytes, decoding must not crash, leak, read outside the record
 * or make GLib complain: criticals and warnings abort, so an event built from
 * hostile fields that trips a GStreamer precondition is caught. The harness
 * also checks what the protocol promises and aborts if not:
 *   - a decoder fails exactly when it sets a reason, and succeeds otherwise;
 *   - decoded caps are fixed, and what the sink would write for them (their
 *     string) decodes again to equal caps: a stream read from one ring can be
 *     written into another;
 *   - a decoded event is of a carried type (or a segment), the sink would
 *     carry it, and what it would write for it decodes again to an event of
 *     the same type (and, for a segment, an equal segment);
 *   - a buffer record shorter than its header is refused;
 *   - a TIME or DROP record is taken exactly when it has the size of its
 *     header (and, for TIME, no unknown flags or reserved bits), and is then
 *     the record's bytes as they are (the sink writes the header as it is);
 *     what the source makes of it (the latency it answers with, the gap
 *     event over dropped buffers, which a relay's sink would carry on)
 *     holds together;
 *   - an upstream event from the back channel (UEVT, which the sink decodes
 *     before it pushes the event upstream) is of a carried type with the
 *     fields of its type, and what a relay's source would send for it
 *     decodes again to an equal event;
 *   - the readers intern no more names than IPCRING_MAX_NEW_NAMES, however
 *     many records they are given (see require_names_bounded()).
 *
 * Seeds: tests/gst/fuzz-corpus/ holds records made by the encoders the sink
 * uses, one record per file and three whole streams. To write them again
 * (the existing files differ only in event sequence numbers):
 *   IPCRING_FUZZ_WRITE_SEEDS=tests/gst/fuzz-corpus build-asan/tests/gst/fuzz_protocol
 */
#include "ipcring-protocol.h"
#include "../../ring/ipcring.h" /* IPCRING_BACK_MAX */

#include <gst/gst.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "fuzz_protocol: %s:%d: broken promise: %s\n", __FILE__,        \
              __LINE__, #cond);                                                       \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The stream's state, as the source keeps it for one input. */
struct stream {
  GstCaps *caps;
  GstSegment segment;
  gboolean have_segment;
  /* handle_time(): the writer's latency and liveness */
  gboolean have_writer_latency;
  GstClockTime writer_min, writer_max;
  gboolean writer_live;
};

static volatile guint64 sink;

/* IPCRING_FUZZ_TOLERATE: see log_handler(). */
static gchar **tolerated;

static int message_is(const gchar *message, const char *part)
{
  return *part && message && strstr(message, part);
}

static int is_tolerated(const gchar *message)
{
  for (gchar **t = tolerated; t && *t; t++)
    if (message_is(message, *t))
      return 1;
  return 0;
}

/* ---- The names budget ----------------------------------------------------
 *
 * Every name a reader interns is a GQuark for good, and GLib drops (leaks) its
 * array of quarks each time it grows it, every 2048 names. The decoders
 * promise that all readers in a process intern at most IPCRING_MAX_NEW_NAMES
 * names that were not quarks already, whatever they are given; the harness
 * counts the process's quarks after each input and aborts if there are more
 * than GLib and GStreamer had after gst_init(), the budget, and
 * QUARK_SLACK for the few names GStreamer interns the first time it makes
 * an event of a kind, and the harness's own. (The leak suppression below
 * would hide the dropped arrays; this check is what keeps it honest.) */
#define QUARK_SLACK 256u

static guint quarks_at_start, quarks_seen;
static gboolean names_unbounded_tolerated;

/* GLib's g_quark_to_string() gives the string of every quark made so far and
 * NULL past the last one: the number of quarks, found without making one. */
static guint quark_count(guint known)
{
  guint lo = known, step = 64;
  while (g_quark_to_string(lo + step)) {
    lo += step;
    step *= 2;
  }
  guint hi = lo + step;
  while (hi - lo > 1) {
    guint mid = lo + (hi - lo) / 2;
    if (g_quark_to_string(mid))
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

static void require_names_bounded(void)
{
  quarks_seen = quark_count(quarks_seen);
  if (names_unbounded_tolerated ||
      quarks_seen <= quarks_at_start + IPCRING_MAX_NEW_NAMES + QUARK_SLACK)
    return;
  gchar *msg = g_strdup_printf("the readers interned more names than their budget: %u quarks "
                               "after %u at the start, the last \"%.200s\"",
                               quarks_seen, quarks_at_start, g_quark_to_string(quarks_seen));
  if (!is_tolerated(msg)) {
    fprintf(stderr, "fuzz_protocol: %s\n", msg);
    /* Which names: the most common start of the names made since. */
    GHashTable *starts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint q = quarks_at_start + 1; q <= quarks_seen; q++) {
      gchar *start = g_strndup(g_quark_to_string(q), 19);
      guint n = GPOINTER_TO_UINT(g_hash_table_lookup(starts, start));
      g_hash_table_insert(starts, start, GUINT_TO_POINTER(n + 1));
    }
    GHashTableIter it;
    gpointer k, v;
    const gchar *top = NULL;
    guint top_n = 0;
    g_hash_table_iter_init(&it, starts);
    while (g_hash_table_iter_next(&it, &k, &v))
      if (GPOINTER_TO_UINT(v) > top_n) {
        top = k;
        top_n = GPOINTER_TO_UINT(v);
      }
    fprintf(stderr, "fuzz_protocol: %u of them start with \"%s\"\n", top_n, top);
    g_hash_table_unref(starts);
    REQUIRE(!"the readers keep to their names budget");
  }
  names_unbounded_tolerated = TRUE;
  g_free(msg);
}

/* ---- What downstream does with an event -------------------------------- */

static void look_at_event(GstEvent *ev)
{
  switch (GST_EVENT_TYPE(ev)) {
  case GST_EVENT_STREAM_START: {
    const gchar *id = NULL;
    GstStreamFlags flags = 0;
    guint group = 0;
    gst_event_parse_stream_start(ev, &id);
    REQUIRE(id != NULL);
    sink += strlen(id);
    gst_event_parse_stream_flags(ev, &flags);
    if (gst_event_parse_group_id(ev, &group))
      sink += group;
    sink += flags;
    break;
  }
  case GST_EVENT_SEGMENT: {
    const GstSegment *seg = NULL;
    gst_event_parse_segment(ev, &seg);
    REQUIRE(seg != NULL);
    GstSegment *copy = gst_segment_copy(seg);
    REQUIRE(gst_segment_is_equal(copy, seg));
    gst_segment_free(copy);
    break;
  }
  case GST_EVENT_TAG: {
    GstTagList *tags = NULL;
    gst_event_parse_tag(ev, &tags);
    REQUIRE(tags != NULL);
    gchar *s = gst_tag_list_to_string(tags);
    if (s)
      sink += strlen(s);
    g_free(s);
    sink += (guint64)gst_tag_list_n_tags(tags) + gst_tag_list_get_scope(tags);
    gchar *title = NULL;
    if (gst_tag_list_get_string(tags, GST_TAG_TITLE, &title))
      sink += strlen(title);
    g_free(title);
    break;
  }
  case GST_EVENT_GAP: {
    GstClockTime ts, dur;
    GstGapFlags flags = 0;
    gst_event_parse_gap(ev, &ts, &dur);
    gst_event_parse_gap_flags(ev, &flags);
    REQUIRE(GST_CLOCK_TIME_IS_VALID(ts));
    sink += ts + dur + flags;
    break;
  }
  case GST_EVENT_STREAM_GROUP_DONE: {
    guint group = 0;
    gst_event_parse_stream_group_done(ev, &group);
    sink += group;
    break;
  }
  case GST_EVENT_SEGMENT_DONE: {
    GstFormat format;
    gint64 position;
    gst_event_parse_segment_done(ev, &format, &position);
    sink += (guint64)format + (guint64)position;
    break;
  }
  case GST_EVENT_BUFFERSIZE: {
    GstFormat format;
    gint64 minsize, maxsize;
    gboolean async;
    gst_event_parse_buffer_size(ev, &format, &minsize, &maxsize, &async);
    sink += (guint64)format + (guint64)minsize + (guint64)maxsize + (guint64)async;
    break;
  }
  case GST_EVENT_PROTECTION: {
    const gchar *system_id = NULL, *origin = NULL;
    GstBuffer *data = NULL;
    gst_event_parse_protection(ev, &system_id, &data, &origin);
    REQUIRE(system_id != NULL && data != NULL);
    sink += strlen(system_id) + gst_buffer_get_size(data) + (origin ? strlen(origin) : 0);
    break;
  }
  case GST_EVENT_CUSTOM_DOWNSTREAM:
  case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY: {
    const GstStructure *s = gst_event_get_structure(ev);
    REQUIRE(s != NULL);
    gchar *str = gst_structure_to_string(s);
    sink += strlen(str);
    g_free(str);
    break;
  }
  default:
    REQUIRE(!"an event of a type that is not carried was decoded");
  }
}

/* What the sink would write for a decoded event decodes again. */
static void require_reencodes(GstEvent *ev)
{
  const gchar *why = NULL;
  GstEvent *again;
  if (GST_EVENT_TYPE(ev) == GST_EVENT_SEGMENT) {
    const GstSegment *seg = NULL;
    gst_event_parse_segment(ev, &seg);
    IpcRingWireSegment w;
    ipcring_wire_encode_segment(seg, gst_event_get_seqnum(ev), &w);
    again = ipcring_wire_decode_segment((const guint8 *)&w, sizeof w, &why);
    REQUIRE(again != NULL && why == NULL);
    const GstSegment *seg2 = NULL;
    gst_event_parse_segment(again, &seg2);
    REQUIRE(gst_segment_is_equal(seg, seg2));
  } else {
    REQUIRE(ipcring_wire_event_is_carried(ev));
    GBytes *b = ipcring_wire_encode_event(ev, &why);
    if (!b) {
      fprintf(stderr, "fuzz_protocol: a decoded %s event does not encode: %s\n",
              GST_EVENT_TYPE_NAME(ev), why);
      REQUIRE(b != NULL);
    }
    gsize size = 0;
    const guint8 *d = g_bytes_get_data(b, &size);
    why = NULL;
    again = ipcring_wire_decode_event(d, size, &why);
    if (!again) {
      fprintf(stderr, "fuzz_protocol: a decoded %s event does not decode again: %s\n",
              GST_EVENT_TYPE_NAME(ev), why);
      fprintf(stderr, "  %.*s\n", (int)(size - sizeof(IpcRingWireEvent)),
              (const char *)d + sizeof(IpcRingWireEvent));
      REQUIRE(again != NULL);
    }
    g_bytes_unref(b);
  }
  REQUIRE(GST_EVENT_TYPE(again) == GST_EVENT_TYPE(ev));
  gst_event_unref(again);
}

/* ---- Upstream events: what the elements upstream of the sink do -------- */

static void look_at_upstream_event(GstEvent *ev)
{
  /* The sink logs it before it pushes it. */
  gchar *text = gst_info_strdup_printf("%" GST_PTR_FORMAT, ev);
  REQUIRE(text != NULL);
  sink += strlen(text);
  g_free(text);
  const GstStructure *s = gst_event_get_structure(ev);
  switch (GST_EVENT_TYPE(ev)) {
  case GST_EVENT_QOS: {
    GstQOSType type;
    gdouble proportion;
    GstClockTimeDiff diff;
    GstClockTime ts;
    gst_event_parse_qos(ev, &type, &proportion, &diff, &ts);
    /* What gst_event_new_qos() and the elements that act on QoS assume. */
    REQUIRE(type <= GST_QOS_TYPE_THROTTLE);
    REQUIRE(proportion >= 0.0 && proportion <= G_MAXDOUBLE);
    REQUIRE(GST_CLOCK_TIME_IS_VALID(ts));
    sink += (guint64)type + (guint64)diff + ts + (proportion > 1.0);
    break;
  }
  case GST_EVENT_RECONFIGURE:
    break;
  case GST_EVENT_NAVIGATION: {
    /* gst_navigation_event_get_type() and its parse functions read these
     * fields with the structure's getters. */
    REQUIRE(s != NULL && gst_structure_has_name(s, "application/x-gst-navigation"));
    const gchar *what = gst_structure_get_string(s, "event");
    const gchar *key = gst_structure_get_string(s, "key");
    gdouble x = 0, y = 0;
    gint button = 0;
    gst_structure_get_double(s, "pointer_x", &x);
    gst_structure_get_double(s, "pointer_y", &y);
    gst_structure_get_int(s, "button", &button);
    sink += (what ? strlen(what) : 0) + (key ? strlen(key) : 0) + (x < y) + (guint64)button;
    break;
  }
  case GST_EVENT_CUSTOM_UPSTREAM: {
    REQUIRE(s != NULL);
    gchar *str = gst_structure_to_string(s);
    sink += strlen(str);
    g_free(str);
    /* An encoder upstream reads a force-key-unit request with
     * gst_video_event_parse_upstream_force_key_unit(), which takes these
     * fields. */
    if (gst_structure_has_name(s, "GstForceKeyUnit")) {
      GstClockTime rt = GST_CLOCK_TIME_NONE;
      gboolean all = FALSE;
      guint count = 0;
      gst_structure_get_clock_time(s, "running-time", &rt);
      gst_structure_get_boolean(s, "all-headers", &all);
      gst_structure_get_uint(s, "count", &count);
      sink += rt + (guint64)all + count;
    }
    break;
  }
  default:
    REQUIRE(!"an upstream event of a type that is not carried was decoded");
  }
}

/* What a relay's source would send back for a decoded upstream event (it
 * pushes it upstream from the sink's pad, and an ipcringsrc there writes it
 * on its own back channel) decodes again to an equal event. The string may
 * come out longer than the record was (its values get their types), so it
 * may no longer fit in the back channel: that is the only refusal allowed. */
static void require_upstream_reencodes(GstEvent *ev)
{
  const gchar *why = NULL;
  REQUIRE(ipcring_wire_upstream_event_is_carried(ev));
  GBytes *b = ipcring_wire_encode_upstream_event(ev, IPCRING_BACK_MAX, &why);
  REQUIRE((b == NULL) == (why != NULL));
  if (!b) {
    why = NULL;
    b = ipcring_wire_encode_upstream_event(ev, G_MAXSIZE, &why);
    if (!b) {
      fprintf(stderr, "fuzz_protocol: a decoded upstream %s event does not encode: %s\n",
              GST_EVENT_TYPE_NAME(ev), why);
      REQUIRE(b != NULL);
    }
    REQUIRE(g_bytes_get_size(b) > IPCRING_BACK_MAX);
  }
  gsize size = 0;
  const guint8 *d = g_bytes_get_data(b, &size);
  why = NULL;
  GstEvent *again = ipcring_wire_decode_upstream_event(d, size, &why);
  if (!again) {
    fprintf(stderr, "fuzz_protocol: a decoded upstream %s event does not decode again: %s\n",
            GST_EVENT_TYPE_NAME(ev), why);
    fprintf(stderr, "  %.*s\n", (int)(size - sizeof(IpcRingWireEvent)),
            (const char *)d + sizeof(IpcRingWireEvent));
    REQUIRE(again != NULL);
  }
  REQUIRE(why == NULL);
  REQUIRE(GST_EVENT_TYPE(again) == GST_EVENT_TYPE(ev));
  REQUIRE(gst_event_get_seqnum(again) == gst_event_get_seqnum(ev));
  const GstStructure *s1 = gst_event_get_structure(ev), *s2 = gst_event_get_structure(again);
  REQUIRE((s1 == NULL) == (s2 == NULL));
  if (s1 && !gst_structure_is_equal(s1, s2)) {
    gchar *t1 = gst_structure_to_string(s1), *t2 = gst_structure_to_string(s2);
    fprintf(stderr, "fuzz_protocol: an upstream event changed on a second trip:\n  %s\n  %s\n",
            t1, t2);
    REQUIRE(!"an upstream event survives a second trip");
  }
  gst_event_unref(again);
  g_bytes_unref(b);
}

/* ---- One record, as the source's handle_record() takes it ------------- */

static void record(struct stream *st, guint32 tag, const guint8 *data, gsize len)
{
  const gchar *why = NULL;
  switch (tag) {
  case IPCRING_REC_STREAM: {
    IpcRingWireStream strm;
    if (len < sizeof strm)
      return;
    memcpy(&strm, data, sizeof strm);
    sink += strm.version == IPCRING_PROTOCOL_VERSION;
    return;
  }
  case IPCRING_REC_BUFFER: {
    IpcRingWireBuffer hdr;
    gboolean ok = ipcring_wire_decode_buffer_header(data, len, &hdr, &why);
    REQUIRE(ok == (len >= sizeof hdr));
    REQUIRE(ok == (why == NULL));
    if (!ok)
      return;
    gsize size = len - sizeof hdr;
    GstBuffer *buf = gst_buffer_new_allocate(NULL, size, NULL);
    REQUIRE(buf != NULL);
    REQUIRE(gst_buffer_fill(buf, 0, data + sizeof hdr, size) == size);
    GST_BUFFER_PTS(buf) = hdr.pts;
    GST_BUFFER_DTS(buf) = hdr.dts;
    GST_BUFFER_DURATION(buf) = hdr.duration;
    GST_BUFFER_OFFSET(buf) = hdr.offset;
    GST_BUFFER_OFFSET_END(buf) = hdr.offset_end;
    guint keep = GST_MINI_OBJECT_FLAGS(buf) & (GST_MINI_OBJECT_FLAG_LAST - 1);
    GST_MINI_OBJECT_FLAGS(buf) = keep | (hdr.flags & ~(guint)(GST_MINI_OBJECT_FLAG_LAST - 1));
    /* Downstream maps and copies buffers. */
    GstMapInfo map;
    REQUIRE(gst_buffer_map(buf, &map, GST_MAP_READ));
    REQUIRE(map.size == size);
    gst_buffer_unmap(buf, &map);
    GstBuffer *copy = gst_buffer_copy(buf);
    gst_buffer_unref(copy);
    gst_buffer_unref(buf);
    return;
  }
  case IPCRING_REC_CAPS: {
    GstCaps *caps = ipcring_wire_decode_caps(data, len, &why);
    REQUIRE((caps == NULL) == (why != NULL));
    if (!caps)
      return;
    REQUIRE(gst_caps_is_fixed(caps));
    /* handle_caps(): the same caps again are dropped; new ones become the
     * source's caps and go downstream in a caps event. */
    if (st->caps && gst_caps_is_equal(caps, st->caps)) {
      gst_caps_unref(caps);
      return;
    }
    gst_caps_replace(&st->caps, caps);
    GstEvent *ev = gst_event_new_caps(caps);
    REQUIRE(ev != NULL);
    gst_event_unref(ev);
    /* What the sink of a relay would write for them. */
    gchar *str = gst_caps_to_string(caps);
    const gchar *why2 = NULL;
    GstCaps *again = ipcring_wire_decode_caps((const guint8 *)str, strlen(str), &why2);
    if (!again || !gst_caps_is_equal(again, caps)) {
      gchar *msg = g_strdup_printf("decoded caps do not survive a second trip: %s (%s)", str,
                                   why2 ? why2 : "not equal");
      if (!is_tolerated(msg)) {
        fprintf(stderr, "fuzz_protocol: %s\n", msg);
        REQUIRE(!"caps survive a second trip");
      }
      g_free(msg);
    }
    if (again)
      gst_caps_unref(again);
    g_free(str);
    gst_caps_unref(caps);
    return;
  }
  case IPCRING_REC_SEGMENT:
  case IPCRING_REC_EVENT: {
    GstEvent *ev = tag == IPCRING_REC_SEGMENT ? ipcring_wire_decode_segment(data, len, &why)
                                              : ipcring_wire_decode_event(data, len, &why);
    REQUIRE((ev == NULL) == (why != NULL));
    if (!ev)
      return;
    REQUIRE((tag == IPCRING_REC_SEGMENT) == (GST_EVENT_TYPE(ev) == GST_EVENT_SEGMENT));
    look_at_event(ev);
    require_reencodes(ev);
    if (GST_EVENT_TYPE(ev) == GST_EVENT_SEGMENT) {
      /* handle_event(): an equal segment again is dropped. */
      const GstSegment *seg = NULL;
      gst_event_parse_segment(ev, &seg);
      if (!st->have_segment || !gst_segment_is_equal(seg, &st->segment)) {
        gst_segment_copy_into(seg, &st->segment);
        st->have_segment = TRUE;
      }
    }
    gst_event_unref(ev);
    return;
  }
  case IPCRING_REC_TIME: {
    IpcRingWireTime t, raw;
    memset(&t, 0xa5, sizeof t);
    gboolean ok = ipcring_wire_decode_time(data, len, &t, &why);
    REQUIRE(ok == (why == NULL));
    if (len == sizeof raw)
      memcpy(&raw, data, sizeof raw);
    REQUIRE(ok == (len == sizeof raw && !(raw.flags & ~IPCRING_TIME_ALL_FLAGS) && !raw.reserved));
    if (!ok)
      return;
    REQUIRE(memcmp(&t, &raw, sizeof t) == 0);
    /* handle_time(): the writer's latency, unless it did not say or said
     * nothing the LATENCY query can take. */
    GstClockTime min = t.latency_min, max = t.latency_max;
    gboolean live = (t.flags & IPCRING_TIME_LIVE) != 0;
    if (!(t.flags & IPCRING_TIME_LATENCY) || !GST_CLOCK_TIME_IS_VALID(min)) {
      min = 0;
      max = GST_CLOCK_TIME_NONE;
    }
    gboolean changed = !st->have_writer_latency || st->writer_min != min ||
                       st->writer_max != max || st->writer_live != live;
    sink += changed;
    st->have_writer_latency = TRUE;
    st->writer_min = min;
    st->writer_max = max;
    st->writer_live = live;
    /* The source's answer to LATENCY (the ring's own adds nothing to the
     * minimum). */
    GstQuery *q = gst_query_new_latency();
    gst_query_set_latency(q, live, min, max);
    gboolean qlive;
    GstClockTime qmin, qmax;
    gst_query_parse_latency(q, &qlive, &qmin, &qmax);
    REQUIRE(qlive == live && qmin == min && qmax == max);
    gst_query_unref(q);
    return;
  }
  case IPCRING_REC_DROP: {
    IpcRingWireDrop d;
    memset(&d, 0xa5, sizeof d);
    gboolean ok = ipcring_wire_decode_drop(data, len, &d, &why);
    REQUIRE(ok == (why == NULL));
    REQUIRE(ok == (len == sizeof d));
    if (!ok)
      return;
    REQUIRE(memcmp(&d, data, sizeof d) == 0);
    /* handle_drop() (passthrough): once the stream has caps, a gap over the
     * dropped buffers with their count, which goes downstream, where a
     * relay's sink carries it on. */
    sink += d.count + d.total;
    GstClockTime start = d.start, end = d.end;
    if (!GST_CLOCK_TIME_IS_VALID(start) || !st->caps)
      return;
    GstClockTime dur =
        GST_CLOCK_TIME_IS_VALID(end) && end > start ? end - start : GST_CLOCK_TIME_NONE;
    GstEvent *gap = gst_event_new_gap(start, dur);
    REQUIRE(gap != NULL);
    gst_structure_set(gst_event_writable_structure(gap), "dropped", G_TYPE_UINT64,
                      (guint64)d.count, NULL);
    look_at_event(gap);
    require_reencodes(gap);
    gst_event_unref(gap);
    return;
  }
  case IPCRING_BACK_EVENT: {
    /* poll_upstream(): the back channel holds at most IPCRING_BACK_MAX
     * bytes a record; the decoder is given any length here all the same. */
    GstEvent *ev = ipcring_wire_decode_upstream_event(data, len, &why);
    if (!ev && !why && !is_tolerated("an upstream event was refused without a reason")) {
      fprintf(stderr, "fuzz_protocol: an upstream event was refused without a reason\n");
      REQUIRE(!"a refused upstream event has a reason");
    }
    REQUIRE(!(ev && why));
    if (!ev)
      return;
    look_at_upstream_event(ev);
    require_upstream_reencodes(ev);
    gst_event_unref(ev);
    return;
  }
  default:
    return; /* EOS_ and unknown tags: nothing to decode */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
  struct stream st = { 0 };
  size_t off = 0;
  while (n - off >= 8) {
    guint32 tag, len;
    memcpy(&tag, data + off, 4);
    memcpy(&len, data + off + 4, 4);
    off += 8;
    size_t take = len < n - off ? len : n - off;
    /* A private copy of exactly the record, so that a read past its end is
     * caught (the ring holds the record in a larger mapping). */
    guint8 *rec = g_malloc(take ? take : 1);
    memcpy(rec, data + off, take);
    record(&st, tag, rec, take);
    g_free(rec);
    off += take;
  }
  if (st.caps)
    gst_caps_unref(st.caps);
  require_names_bounded();
  return 0;
}

/* ---- Seeds -------------------------------------------------------------- */

static void put_record(GByteArray *out, guint32 tag, const void *payload, gsize len)
{
  guint32 l = (guint32)len;
  g_byte_array_append(out, (const guint8 *)&tag, 4);
  g_byte_array_append(out, (const guint8 *)&l, 4);
  if (len)
    g_byte_array_append(out, payload, (guint)len);
}

static void put_event(GByteArray *out, GstEvent *ev)
{
  const gchar *why = NULL;
  if (GST_EVENT_TYPE(ev) == GST_EVENT_SEGMENT) {
    const GstSegment *seg = NULL;
    gst_event_parse_segment(ev, &seg);
    IpcRingWireSegment w;
    ipcring_wire_encode_segment(seg, gst_event_get_seqnum(ev), &w);
    put_record(out, IPCRING_REC_SEGMENT, &w, sizeof w);
  } else {
    GBytes *b = ipcring_wire_encode_event(ev, &why);
    REQUIRE(b != NULL);
    gsize size = 0;
    const void *d = g_bytes_get_data(b, &size);
    put_record(out, IPCRING_REC_EVENT, d, size);
    g_bytes_unref(b);
  }
  gst_event_unref(ev);
}

static void put_caps(GByteArray *out, const gchar *caps_string)
{
  GstCaps *caps = gst_caps_from_string(caps_string);
  REQUIRE(caps != NULL);
  gchar *s = gst_caps_to_string(caps);
  put_record(out, IPCRING_REC_CAPS, s, strlen(s));
  g_free(s);
  gst_caps_unref(caps);
}

static void put_stream(GByteArray *out, guint64 reader_generation)
{
  IpcRingWireStream strm = { IPCRING_PROTOCOL_VERSION, 0, 1, reader_generation };
  put_record(out, IPCRING_REC_STREAM, &strm, sizeof strm);
}

static void put_buffer(GByteArray *out, guint64 pts, gsize size, guint32 flags)
{
  IpcRingWireBuffer hdr = { pts, GST_CLOCK_TIME_NONE, 40 * GST_MSECOND,
                            GST_BUFFER_OFFSET_NONE, GST_BUFFER_OFFSET_NONE, flags, 0 };
  guint8 *b = g_malloc(sizeof hdr + size);
  memcpy(b, &hdr, sizeof hdr);
  for (gsize i = 0; i < size; i++)
    b[sizeof hdr + i] = (guint8)(i * 7);
  put_record(out, IPCRING_REC_BUFFER, b, sizeof hdr + size);
  g_free(b);
}

static void put_time(GByteArray *out, guint32 flags)
{
  IpcRingWireTime t = { 5 * GST_SECOND, 7 * GST_SECOND, 7 * GST_SECOND, 20 * GST_MSECOND,
                        GST_CLOCK_TIME_NONE, flags, 0 };
  put_record(out, IPCRING_REC_TIME, &t, sizeof t);
}

static void put_drop(GByteArray *out, guint64 count, guint64 start, guint64 end)
{
  IpcRingWireDrop d = { count, 3 * count, start, end };
  put_record(out, IPCRING_REC_DROP, &d, sizeof d);
}

static void put_upstream_event(GByteArray *out, GstEvent *ev)
{
  const gchar *why = NULL;
  GBytes *b = ipcring_wire_encode_upstream_event(ev, IPCRING_BACK_MAX, &why);
  REQUIRE(b != NULL);
  gsize size = 0;
  const void *d = g_bytes_get_data(b, &size);
  put_record(out, IPCRING_BACK_EVENT, d, size);
  g_bytes_unref(b);
  gst_event_unref(ev);
}

/* What gst_video_event_new_upstream_force_key_unit() makes. */
static GstEvent *ev_force_key_unit(void)
{
  GstStructure *s = gst_structure_new("GstForceKeyUnit", "running-time", GST_TYPE_CLOCK_TIME,
                                      (GstClockTime)3 * GST_SECOND, "all-headers",
                                      G_TYPE_BOOLEAN, TRUE, "count", G_TYPE_UINT, 2u, NULL);
  GstEvent *ev = gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM, s);
  gst_event_set_seqnum(ev, 9);
  return ev;
}

static GstEvent *ev_navigation(void)
{
  return gst_event_new_navigation(gst_structure_new(
      "application/x-gst-navigation", "event", G_TYPE_STRING, "mouse-button-press", "button",
      G_TYPE_INT, 1, "pointer_x", G_TYPE_DOUBLE, 12.5, "pointer_y", G_TYPE_DOUBLE, 40.0, NULL));
}

static GstEvent *ev_stream_start(void)
{
  GstEvent *ev = gst_event_new_stream_start("ipcring-fuzz/stream/0");
  gst_event_set_group_id(ev, 7);
  gst_event_set_stream_flags(ev, GST_STREAM_FLAG_SPARSE);
  return ev;
}

static GstEvent *ev_segment(void)
{
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  seg.start = GST_SECOND;
  seg.stop = 10 * GST_SECOND;
  seg.rate = -1.5;
  seg.base = 3;
  GstEvent *ev = gst_event_new_segment(&seg);
  gst_event_set_seqnum(ev, 42);
  return ev;
}

static GstEvent *ev_tag(void)
{
  GstTagList *tags = gst_tag_list_new(GST_TAG_TITLE, "a \"quoted\" title, with commas",
                                      GST_TAG_BITRATE, 128000, GST_TAG_DURATION,
                                      (guint64)5 * GST_SECOND, NULL);
  gst_tag_list_set_scope(tags, GST_TAG_SCOPE_GLOBAL);
  return gst_event_new_tag(tags);
}

/* Tags of every kind of value a reader keeps: strings, lists of them,
 * numbers, a date and a date-time. */
static GstEvent *ev_tag_dates(void)
{
  GstDateTime *dt = gst_date_time_new(1.0, 2020, 1, 2, 3, 4, 5.5);
  GDate *d = g_date_new_dmy(1, 2, 2000);
  GstTagList *tags = gst_tag_list_new(GST_TAG_ARTIST, "a1", GST_TAG_DATE_TIME, dt, GST_TAG_DATE,
                                      d, GST_TAG_TRACK_GAIN, -3.5, GST_TAG_TRACK_NUMBER, 4, NULL);
  gst_tag_list_add(tags, GST_TAG_MERGE_APPEND, GST_TAG_ARTIST, "a2", NULL);
  gst_date_time_unref(dt);
  g_date_free(d);
  return gst_event_new_tag(tags);
}

/* A custom event with nested values: a structure, caps with features and
 * ranges, ranges, a list and a buffer. */
static GstEvent *ev_custom_nested(void)
{
  GstStructure *inner = gst_structure_new("inner", "s", G_TYPE_STRING, "q \"x\"", "u64",
                                          G_TYPE_UINT64, G_GUINT64_CONSTANT(1) << 40, NULL);
  GstCaps *caps = gst_caps_from_string("video/x-raw(memory:GLMemory), width=(int)[ 1, 100 ], "
                                       "format=(string){ NV12, I420 }");
  GstBuffer *buf = gst_buffer_new_memdup("\x00\xff\x10", 3);
  GstStructure *s = gst_structure_new("application/x-nested", "inner", GST_TYPE_STRUCTURE, inner,
                                      "caps", GST_TYPE_CAPS, caps, "blob", GST_TYPE_BUFFER, buf,
                                      "r", GST_TYPE_INT_RANGE, 0, 10, "fr",
                                      GST_TYPE_FRACTION_RANGE, 1, 2, 3, 4, "dr",
                                      GST_TYPE_DOUBLE_RANGE, -1.0, 1.0, NULL);
  gst_structure_free(inner);
  gst_caps_unref(caps);
  gst_buffer_unref(buf);
  return gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, s);
}

static GstEvent *ev_gap(void)
{
  GstEvent *ev = gst_event_new_gap(2 * GST_SECOND, GST_SECOND);
  gst_event_set_gap_flags(ev, GST_GAP_FLAG_MISSING_DATA);
  return ev;
}

static GstEvent *ev_protection(void)
{
  GstBuffer *data = gst_buffer_new_memdup("\x01\x02\x03\x04pssh", 8);
  GstEvent *ev = gst_event_new_protection("9a04f079-9840-4286-ab92-e65be0885f95", data,
                                          "dash/mpd");
  gst_buffer_unref(data);
  return ev;
}

static GstEvent *ev_custom(GstEventType type)
{
  GstStructure *s = gst_structure_new("application/x-custom", "n", G_TYPE_INT, -5, "f",
                                      G_TYPE_DOUBLE, 0.25, "s", G_TYPE_STRING, "x y",
                                      "b", G_TYPE_BOOLEAN, TRUE, NULL);
  GValue arr = G_VALUE_INIT;
  gst_value_array_init(&arr, 2);
  GValue v = G_VALUE_INIT;
  g_value_init(&v, G_TYPE_INT);
  g_value_set_int(&v, 1);
  gst_value_array_append_value(&arr, &v);
  g_value_set_int(&v, 2);
  gst_value_array_append_value(&arr, &v);
  g_value_unset(&v);
  gst_structure_take_value(s, "a", &arr);
  return gst_event_new_custom(type, s);
}

static void write_file(const char *dir, const char *name, GByteArray *b)
{
  gchar *path = g_build_filename(dir, name, NULL);
  GError *err = NULL;
  if (!g_file_set_contents(path, (const gchar *)b->data, (gssize)b->len, &err)) {
    fprintf(stderr, "fuzz_protocol: %s: %s\n", path, err->message);
    exit(1);
  }
  printf("wrote %s (%u bytes)\n", path, b->len);
  g_free(path);
  g_byte_array_set_size(b, 0);
}

static void generate_seeds(const char *dir)
{
  GByteArray *b = g_byte_array_new();

  /* One record per file. */
  put_stream(b, 1);
  write_file(dir, "strm", b);
  put_caps(b, "video/x-raw, format=(string)I420, width=(int)320, height=(int)240, "
              "framerate=(fraction)30/1, colorimetry=(string)bt601");
  write_file(dir, "caps-video", b);
  put_caps(b, "audio/x-raw(memory:SystemMemory), format=S16LE, rate=48000, channels=2, "
              "layout=interleaved, channel-mask=(bitmask)0x3");
  write_file(dir, "caps-audio-features", b);
  put_caps(b, "video/x-h264, stream-format=(string)avc, alignment=(string)au, "
              "codec_data=(buffer)01640028ffe1001b, width=(int)1920, height=(int)1080, "
              "flags=(GstFlagSet)00000001:ffffffff, "
              "streamheader=(buffer)< 0102, 0304 >");
  write_file(dir, "caps-codec-data", b);
  put_caps(b, "video/x-raw(memory:GLMemory, meta:GstVideoOverlayComposition), "
              "format=(string)RGBA, width=(int)16, height=(int)16, framerate=(fraction)0/1");
  write_file(dir, "caps-features", b);
  put_event(b, ev_segment());
  write_file(dir, "segm", b);
  put_event(b, ev_stream_start());
  write_file(dir, "evnt-stream-start", b);
  put_event(b, ev_tag());
  write_file(dir, "evnt-tag", b);
  put_event(b, ev_tag_dates());
  write_file(dir, "evnt-tag-dates", b);
  put_event(b, ev_gap());
  write_file(dir, "evnt-gap", b);
  put_event(b, gst_event_new_stream_group_done(7));
  write_file(dir, "evnt-group-done", b);
  put_event(b, gst_event_new_segment_done(GST_FORMAT_TIME, 123456789));
  write_file(dir, "evnt-segment-done", b);
  put_event(b, gst_event_new_buffer_size(GST_FORMAT_BYTES, 1024, 65536, TRUE));
  write_file(dir, "evnt-buffersize", b);
  put_event(b, ev_protection());
  write_file(dir, "evnt-protection", b);
  put_event(b, ev_custom(GST_EVENT_CUSTOM_DOWNSTREAM));
  write_file(dir, "evnt-custom", b);
  put_event(b, ev_custom(GST_EVENT_CUSTOM_DOWNSTREAM_STICKY));
  write_file(dir, "evnt-custom-sticky", b);
  put_event(b, ev_custom_nested());
  write_file(dir, "evnt-custom-nested", b);
  put_buffer(b, 0, 64, GST_BUFFER_FLAG_DISCONT | GST_BUFFER_FLAG_DELTA_UNIT);
  write_file(dir, "buff", b);
  put_record(b, IPCRING_REC_EOS, NULL, 0);
  write_file(dir, "eos", b);
  put_time(b, IPCRING_TIME_ALL_FLAGS);
  write_file(dir, "time", b);
  put_time(b, IPCRING_TIME_LIVE);
  write_file(dir, "time-no-clock", b);
  put_drop(b, 4, 2 * GST_SECOND, 3 * GST_SECOND);
  write_file(dir, "drop", b);
  put_upstream_event(b, gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 1.25, -4 * GST_MSECOND,
                                          2 * GST_SECOND));
  write_file(dir, "uevt-qos", b);
  put_upstream_event(b, ev_navigation());
  write_file(dir, "uevt-navigation", b);
  put_upstream_event(b, gst_event_new_reconfigure());
  write_file(dir, "uevt-reconfigure", b);
  put_upstream_event(b, ev_force_key_unit());
  write_file(dir, "uevt-force-key-unit", b);

  /* Streams as the sink writes them. */
  put_stream(b, 1);
  put_event(b, ev_stream_start());
  put_caps(b, "video/x-raw, format=(string)NV12, width=(int)64, height=(int)48, "
              "framerate=(fraction)25/1");
  put_event(b, ev_segment());
  put_event(b, ev_tag());
  put_buffer(b, 0, 32, 0);
  put_buffer(b, 40 * GST_MSECOND, 32, GST_BUFFER_FLAG_DELTA_UNIT);
  put_event(b, ev_gap());
  put_caps(b, "video/x-raw, format=(string)NV12, width=(int)32, height=(int)24, "
              "framerate=(fraction)25/1");
  put_buffer(b, 80 * GST_MSECOND, 16, 0);
  put_record(b, IPCRING_REC_EOS, NULL, 0);
  write_file(dir, "stream-video", b);

  put_stream(b, 2);
  put_event(b, ev_stream_start());
  put_caps(b, "audio/x-raw, format=(string)F32LE, rate=(int)44100, channels=(int)1, "
              "layout=(string)interleaved");
  put_event(b, ev_segment());
  put_event(b, ev_segment());
  put_event(b, ev_custom(GST_EVENT_CUSTOM_DOWNSTREAM_STICKY));
  put_event(b, ev_protection());
  put_event(b, gst_event_new_buffer_size(GST_FORMAT_TIME, 0, 1, FALSE));
  put_buffer(b, GST_CLOCK_TIME_NONE, 8, GST_BUFFER_FLAG_GAP);
  put_event(b, gst_event_new_segment_done(GST_FORMAT_TIME, 5));
  put_event(b, gst_event_new_stream_group_done(7));
  put_record(b, IPCRING_FOURCC('N', 'E', 'W', '?'), "future", 6);
  put_record(b, IPCRING_REC_EOS, NULL, 0);
  write_file(dir, "stream-audio", b);

  /* A live stream from a leaky sink. */
  put_stream(b, 1);
  put_time(b, IPCRING_TIME_ALL_FLAGS);
  put_caps(b, "audio/x-raw, format=(string)S16LE, rate=(int)48000, channels=(int)2, "
              "layout=(string)interleaved");
  put_event(b, ev_segment());
  put_buffer(b, GST_SECOND, 16, 0);
  put_drop(b, 2, 2 * GST_SECOND, 3 * GST_SECOND);
  put_buffer(b, 3 * GST_SECOND, 16, GST_BUFFER_FLAG_DISCONT);
  put_time(b, IPCRING_TIME_CLOCK | IPCRING_TIME_LATENCY);
  put_drop(b, 1, GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE);
  put_record(b, IPCRING_REC_EOS, NULL, 0);
  write_file(dir, "stream-live", b);

  g_byte_array_unref(b);
}

/* GLib criticals and errors are findings: a precondition of GLib or
 * GStreamer was broken, by the decoder or by GStreamer's own parsing of the
 * hostile string. The harness aborts (a plain abort, which libFuzzer reports
 * with the input, unlike GLib's trap). Warnings are findings when they blame
 * the caller; the others are GStreamer's parser commenting on the strings it
 * is given (caps features or 0.10 names it does not like), which are fatal
 * only with IPCRING_FUZZ_FATAL_WARNINGS=1. IPCRING_FUZZ_TOLERATE may list,
 * separated by '|', parts of messages that are then ignored, to fuzz on past
 * a finding that is known and not fixed yet; the harness's own messages for
 * caps that do not survive a second trip, for an upstream event refused
 * without a reason (what a decoder does when a constructor it calls refuses
 * its arguments with a critical) and for names interned past the budget
 * are ones it can name. */
/* Matched at the start of the message: the hostile string is quoted in
 * the rest. */
static const char *const caller_warnings[] = {
  "gst_structure_from_string did not consume whole string, but caller did not provide",
};
static int fatal_warnings;

static void log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
                        gpointer user_data)
{
  (void)user_data;
  if (!(level & (G_LOG_FLAG_FATAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL |
                 G_LOG_LEVEL_WARNING)))
    return;
  if (is_tolerated(message))
    return;
  if (!(level & (G_LOG_FLAG_FATAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) &&
      !fatal_warnings) {
    size_t i = 0;
    while (i < G_N_ELEMENTS(caller_warnings) &&
           !(message && g_str_has_prefix(message, caller_warnings[i])))
      i++;
    if (i == G_N_ELEMENTS(caller_warnings))
      return;
  }
  g_log_default_handler(domain, level, message, NULL);
  abort();
}

/* GLib allocates once while it is loaded (_dl_init), and drops its array of
 * GQuarks each time it grows one (every 2048 new names; readers may still
 * hold the old one), which the decoders bound with IPCRING_MAX_NEW_NAMES
 * (require_names_bounded() checks that they do).
 * Every other leak is a finding (GStreamer 1.22's parser leaks a list or
 * array that a string ends inside, or whose element does not parse; the
 * decoders must never let it see one). Full stacks are needed to tell, as
 * GLib has no frame pointers; they make fuzzing slower, so a long run that
 * looks for crashes only may pass ASAN_OPTIONS=fast_unwind_on_malloc=1 and
 * -detect_leaks=0. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
  return "leak:_dl_init\nleak:g_quark_from_string\nleak:g_quark_from_static_string\n";
}

const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
  return "fast_unwind_on_malloc=0";
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* Decoding needs GStreamer's types, not its plugins: no registry. */
  g_setenv("GST_REGISTRY_DISABLE", "yes", TRUE);
  gst_init(NULL, NULL);
  quarks_at_start = quarks_seen = quark_count(0);
  const char *tolerate = getenv("IPCRING_FUZZ_TOLERATE");
  if (tolerate && *tolerate)
    tolerated = g_strsplit(tolerate, "|", -1);
  const char *fw = getenv("IPCRING_FUZZ_FATAL_WARNINGS");
  fatal_warnings = fw && *fw == '1';
  g_log_set_default_handler(log_handler, NULL);
  const char *dir = getenv("IPCRING_FUZZ_WRITE_SEEDS");
  if (dir && *dir) {
    generate_seeds(dir);
    exit(0);
  }
  return 0;
}
