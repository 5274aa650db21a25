/* ipcringsink and ipcringsrc as live elements across processes: a producer
 * process and a consumer process, each running its own pipeline (a forked
 * child that calls gst_init() after the fork), joined by rings in a fresh
 * temporary directory. Each child writes what it saw into a text file the
 * parent compares. Every child is reaped with a bound. What is pinned down:
 *
 *  - running-time: a live producer (audiotestsrc is-live=true) and a consumer
 *    started later with timestamp-mode=running-time and is-live left to
 *    follow the producer: every buffer the consumer renders has, as clock
 *    time (running time + base time), the clock time the producer's sink had
 *    for it, within 1 ms; the consumer is live and its pipeline latency is
 *    at least the producer's (one 10 ms buffer);
 *  - force-key-unit: the consumer's sink asks for a keyframe from its
 *    streaming thread (as an encoder would); the request comes out of the
 *    producer's ipcringsink upstream with its fields;
 *  - leaky=upstream with a consumer slower than the producer: the producer's
 *    count of dropped buffers equals the sum of the "dropped" fields of the
 *    gap events the consumer received and the consumer's drops stat;
 *  - A/V: a producer with live audio and live video into two rings, one
 *    consumer playing both to fakesinks with sync=true in running-time mode;
 *    at each render, the render clock time minus the producer's capture clock
 *    time (the end-to-end delay) per stream; the test asserts that audio and
 *    video stay within 20 ms of each other over IPCRING_AV_SECONDS (default
 *    3) and prints the figures. `gst-test-live_xproc av SECONDS` runs only
 *    that case and prints per-window figures (a measurement, not a test).
 */
#include "../ring/testutil.h"

#include <gst/gst.h>
#include <gst/video/video.h>

#define MSEC ((int64_t)1000000)

/* ---- Child side -------------------------------------------------------- */

static FILE *out;

static GstClockTime
clock_time_of (GstPad * pad, GstElement * el, GstClockTime pts)
{
  GstEvent *ev = gst_pad_get_sticky_event (pad, GST_EVENT_SEGMENT, 0);
  if (!ev)
    return GST_CLOCK_TIME_NONE;
  const GstSegment *seg;
  gst_event_parse_segment (ev, &seg);
  GstClockTime rt = gst_segment_to_running_time (seg, GST_FORMAT_TIME, pts);
  gst_event_unref (ev);
  if (!GST_CLOCK_TIME_IS_VALID (rt))
    return GST_CLOCK_TIME_NONE;
  return rt + gst_element_get_base_time (el);
}

/* Producer: each buffer reaching an ipcringsink, "P <stream> <offset> <clock time>". */
static GstPadProbeReturn
producer_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstElement *el = GST_PAD_PARENT (pad);
  GstClockTime ct = clock_time_of (pad, el, GST_BUFFER_PTS (buf));
  fprintf (out, "P %s %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT "\n", (const gchar *) data,
      GST_BUFFER_OFFSET (buf), GST_CLOCK_TIME_IS_VALID (ct) ? (gint64) ct : (gint64) - 1);
  return GST_PAD_PROBE_OK;
}

/* Consumer: each buffer a fakesink renders (after its clock wait),
 * "C <stream> <offset> <buffer clock time> <clock now>". */
static void
consumer_handoff (GstElement * sink, GstBuffer * buf, GstPad * pad, gpointer data)
{
  GstClock *clock = gst_element_get_clock (sink);
  GstClockTime now = clock ? gst_clock_get_time (clock) : GST_CLOCK_TIME_NONE;
  if (clock)
    gst_object_unref (clock);
  GstClockTime ct = clock_time_of (pad, sink, GST_BUFFER_PTS (buf));
  fprintf (out, "C %s %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT "\n",
      (const gchar *) data, GST_BUFFER_OFFSET (buf),
      GST_CLOCK_TIME_IS_VALID (ct) ? (gint64) ct : (gint64) - 1, (gint64) now);
  /* at the 20th buffer, ask the producer for a keyframe, from this
   * (streaming) thread */
  static int rendered;
  if (++rendered == 20)
    gst_pad_push_event (pad, gst_video_event_new_upstream_force_key_unit (GST_CLOCK_TIME_NONE,
            TRUE, 3));
}

/* Producer: upstream force-key-unit events leaving an ipcringsink, "K <count>". */
static GstPadProbeReturn
fku_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstEvent *ev = GST_PAD_PROBE_INFO_EVENT (info);
  GstClockTime rt;
  gboolean all;
  guint count;
  if (gst_video_event_is_force_key_unit (ev)
      && gst_video_event_parse_upstream_force_key_unit (ev, &rt, &all, &count))
    fprintf (out, "K %u %d\n", count, all);
  return GST_PAD_PROBE_OK;
}

static void
free_tag (gpointer data, GClosure * closure)
{
  (void) closure;
  g_free (data);
}

/* Consumer: gap events with a count of dropped buffers, "G <dropped>". */
static GstPadProbeReturn
gap_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstEvent *ev = GST_PAD_PROBE_INFO_EVENT (info);
  guint64 n;
  if (GST_EVENT_TYPE (ev) == GST_EVENT_GAP
      && gst_structure_get_uint64 (gst_event_get_structure (ev), "dropped", &n))
    fprintf (out, "G %" G_GUINT64_FORMAT "\n", n);
  return GST_PAD_PROBE_OK;
}

static void
print_stats (GstElement * pipe, const gchar * name)
{
  GstElement *el = gst_bin_get_by_name (GST_BIN (pipe), name);
  if (!el)
    return;
  GstStructure *s = NULL;
  g_object_get (el, "stats", &s, NULL);
  guint64 drops = 0;
  if (s && gst_structure_get_uint64 (s, "drops", &drops))
    fprintf (out, "S %s drops %" G_GUINT64_FORMAT "\n", name, drops);
  if (s)
    gst_structure_free (s);
  gst_object_unref (el);
}

/* Run a pipeline until EOS (exit 0), an error (2) or max_ms (3). Elements
 * named psink* get the producer probe, csink* the handoff, csrc* the gap
 * probe; after EOS the stats of "snk", "src", "csrc-a" and "csrc-v" are
 * printed, and for a consumer its is-live and pipeline latency. */
static void
run_child (const char *desc, const char *out_path, int max_ms, gboolean consumer)
{
  gst_init (NULL, NULL);
  out = fopen (out_path, "w");
  if (!out)
    _exit (4);
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch (desc, &err);
  if (!pipe) {
    fprintf (stderr, "parse: %s\n", err->message);
    _exit (4);
  }
  GstIterator *it = gst_bin_iterate_recurse (GST_BIN (pipe));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
    GstElement *el = g_value_get_object (&v);
    const gchar *name = GST_OBJECT_NAME (el);
    gchar *tag = g_strdup (strchr (name, '-') ? strchr (name, '-') + 1 : "x");
    if (g_str_has_prefix (name, "psink")) {
      GstPad *pad = gst_element_get_static_pad (el, "sink");
      gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, producer_probe, tag, g_free);
      gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM, fku_probe, NULL, NULL);
      gst_object_unref (pad);
    } else if (g_str_has_prefix (name, "csink")) {
      g_object_set (el, "signal-handoffs", TRUE, NULL);
      g_signal_connect_data (el, "handoff", G_CALLBACK (consumer_handoff), tag,
          free_tag, 0);
    } else if (g_str_has_prefix (name, "csrc")) {
      GstPad *pad = gst_element_get_static_pad (el, "src");
      gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, gap_probe, tag, g_free);
      gst_object_unref (pad);
    } else {
      g_free (tag);
    }
    g_value_reset (&v);
  }
  g_value_unset (&v);
  gst_iterator_free (it);

  gst_element_set_state (pipe, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus (pipe);
  int code = 3;
  gint64 end = g_get_monotonic_time () + (gint64) max_ms * 1000;
  gboolean latency_done = FALSE;
  while (g_get_monotonic_time () < end) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 50 * GST_MSECOND,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    if (consumer && !latency_done && GST_STATE (pipe) == GST_STATE_PLAYING) {
      GstQuery *q = gst_query_new_latency ();
      if (gst_element_query (pipe, q)) {
        gboolean live;
        GstClockTime min, max;
        gst_query_parse_latency (q, &live, &min, &max);
        GstElement *src = gst_bin_get_by_name (GST_BIN (pipe), "csrc-a");
        gboolean is_live = FALSE;
        if (src) {
          g_object_get (src, "is-live", &is_live, NULL);
          gst_object_unref (src);
        }
        fprintf (out, "L %d %d %" G_GINT64_FORMAT "\n", live, is_live, (gint64) min);
        latency_done = TRUE;
      }
      gst_query_unref (q);
    }
    if (!m)
      continue;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      GError *e = NULL;
      gst_message_parse_error (m, &e, NULL);
      fprintf (stderr, "%s: error: %s\n", out_path, e->message);
      g_error_free (e);
      code = 2;
    } else {
      code = 0;
    }
    gst_message_unref (m);
    break;
  }
  gst_object_unref (bus);
  print_stats (pipe, "snk");
  print_stats (pipe, "csrc-a");
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (pipe);
  fclose (out);
  _exit (code);
}

static pid_t
start_child (const char *desc, const char *out_path, int max_ms, gboolean consumer)
{
  pid_t pid = tu_fork ();
  if (pid == 0)
    run_child (desc, out_path, max_ms, consumer);
  return pid;
}

/* ---- Parent side ------------------------------------------------------- */

typedef struct
{
  GHashTable *prod[2];          /* offset -> producer clock time, per stream a/v */
  GArray *cons[2];              /* Cons, per stream */
  guint64 gap_dropped;
  gint64 sink_drops, src_drops;
  int live, is_live;
  gint64 latency_min;
  int fku, fku_count, fku_all;
} Results;

typedef struct
{
  guint64 offset;
  gint64 ct, now;
} Cons;

static int
stream_index (const char *s)
{
  return s[0] == 'v';
}

static void
results_read (Results * r, const char *path)
{
  FILE *f = fopen (path, "r");
  CHECK (f != NULL, "no results in %s", path);
  char line[256], s[32];
  while (fgets (line, sizeof line, f)) {
    guint64 off, n;
    gint64 ct, now;
    int a, b;
    if (sscanf (line, "P %31s %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT, s, &off, &ct) == 3) {
      int i = stream_index (s);
      if (!r->prod[i])
        r->prod[i] = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
      gint64 *k = g_new (gint64, 1), *v = g_new (gint64, 1);
      *k = (gint64) off;
      *v = ct;
      g_hash_table_replace (r->prod[i], k, v);
    } else if (sscanf (line, "C %31s %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT " %"
            G_GINT64_FORMAT, s, &off, &ct, &now) == 4) {
      int i = stream_index (s);
      if (!r->cons[i])
        r->cons[i] = g_array_new (FALSE, FALSE, sizeof (Cons));
      Cons c = { off, ct, now };
      g_array_append_val (r->cons[i], c);
    } else if (sscanf (line, "K %d %d", &a, &b) == 2) {
      r->fku++;
      r->fku_count = a;
      r->fku_all = b;
    } else if (sscanf (line, "G %" G_GUINT64_FORMAT, &n) == 1) {
      r->gap_dropped += n;
    } else if (sscanf (line, "S snk drops %" G_GUINT64_FORMAT, &n) == 1) {
      r->sink_drops = (gint64) n;
    } else if (sscanf (line, "S csrc-a drops %" G_GUINT64_FORMAT, &n) == 1) {
      r->src_drops = (gint64) n;
    } else if (sscanf (line, "L %d %d %" G_GINT64_FORMAT, &a, &b, &ct) == 3) {
      r->live = a;
      r->is_live = b;
      r->latency_min = ct;
    }
  }
  fclose (f);
}

static void
results_clear (Results * r)
{
  for (int i = 0; i < 2; i++) {
    if (r->prod[i])
      g_hash_table_unref (r->prod[i]);
    if (r->cons[i])
      g_array_unref (r->cons[i]);
  }
  memset (r, 0, sizeof *r);
}

static void
run_pair (const char *pdesc, const char *cdesc, int start_gap_ms, int max_ms, Results * r)
{
  char *pout = tu_path ("producer.txt"), *cout = tu_path ("consumer.txt");
  pid_t p = start_child (pdesc, pout, max_ms, FALSE);
  tu_sleep_ms (start_gap_ms);
  pid_t c = start_child (cdesc, cout, max_ms, TRUE);
  int cst = tu_reap (c, max_ms + 10000);
  int pst = tu_reap (p, max_ms + 10000);
  CHECK_CHILD_OK (pst);
  CHECK_CHILD_OK (cst);
  memset (r, 0, sizeof *r);
  results_read (r, pout);
  results_read (r, cout);
  free (pout);
  free (cout);
}

/* Every consumed buffer's clock time against the producer's, per stream:
 * returns the largest difference and how many were compared. */
static gint64
max_mapping_error (Results * r, int i, guint * compared)
{
  gint64 worst = 0;
  *compared = 0;
  for (guint k = 0; r->cons[i] && k < r->cons[i]->len; k++) {
    Cons *c = &g_array_index (r->cons[i], Cons, k);
    gint64 key = (gint64) c->offset;
    gint64 *pct = r->prod[i] ? g_hash_table_lookup (r->prod[i], &key) : NULL;
    CHECK (pct != NULL, "stream %d: consumer rendered offset %" G_GUINT64_FORMAT
        " the producer never had", i, c->offset);
    gint64 d = c->ct - *pct;
    if (ABS (d) > MSEC)
      printf ("  stream %d: buffer %u (offset %" G_GUINT64_FORMAT ") off by %" G_GINT64_FORMAT
          " ns\n", i, k, c->offset, d);
    if (ABS (d) > ABS (worst))
      worst = d;
    (*compared)++;
  }
  return worst;
}

static void
test_running_time (void)
{
  printf ("- running-time across processes: buffers at the producer's clock time within 1 ms\n");
  char *ring = tu_path ("audio");
  gchar *pdesc = g_strdup_printf ("audiotestsrc is-live=true samplesperbuffer=480 "
      "num-buffers=150 ! audio/x-raw,rate=48000,channels=2 ! ipcringsink name=psink-a "
      "ring=%s", ring);
  gchar *cdesc = g_strdup_printf ("ipcringsrc name=csrc-a ring=%s timestamp-mode=running-time "
      "! fakesink name=csink-a sync=true", ring);
  Results r;
  run_pair (pdesc, cdesc, 300, 20000, &r);
  guint n;
  gint64 worst = max_mapping_error (&r, 0, &n);
  printf ("  %u buffers rendered, largest error %" G_GINT64_FORMAT " ns; consumer live %d "
      "(is-live %d), latency %" G_GINT64_FORMAT " ns\n", n, worst, r.live, r.is_live,
      r.latency_min);
  CHECK (n >= 50, "only %u buffers rendered", n);
  CHECK (ABS (worst) <= MSEC, "a buffer off by %" G_GINT64_FORMAT " ns", worst);
  CHECK (r.is_live && r.live, "the consumer did not follow the live producer");
  CHECK (r.latency_min >= 10 * MSEC, "latency %" G_GINT64_FORMAT " below the producer's 10 ms",
      r.latency_min);
  printf ("  force-key-unit requests reaching the producer: %d (count %d, all-headers %d)\n",
      r.fku, r.fku_count, r.fku_all);
  CHECK (r.fku == 1 && r.fku_count == 3 && r.fku_all, "the keyframe request did not cross");
  results_clear (&r);
  g_free (pdesc);
  g_free (cdesc);
  free (ring);
}

static void
test_leaky (void)
{
  printf ("- leaky=upstream across processes: drops counted and announced\n");
  char *ring = tu_path ("leaky");
  gchar *pdesc = g_strdup_printf ("audiotestsrc is-live=true samplesperbuffer=480 "
      "num-buffers=200 ! audio/x-raw,rate=48000,channels=2 ! ipcringsink name=snk "
      "ring=%s capacity=8192 leaky=upstream", ring);
  gchar *cdesc = g_strdup_printf ("ipcringsrc name=csrc-a ring=%s is-live=true ! "
      "identity sleep-time=20000 ! fakesink sync=false", ring);
  Results r;
  run_pair (pdesc, cdesc, 100, 30000, &r);
  printf ("  producer dropped %" G_GINT64_FORMAT ", gaps announced %" G_GUINT64_FORMAT
      ", consumer stats %" G_GINT64_FORMAT "\n", r.sink_drops, r.gap_dropped, r.src_drops);
  CHECK (r.sink_drops > 0, "nothing dropped: the test did not overflow the ring");
  CHECK ((guint64) r.sink_drops == r.gap_dropped, "announced %" G_GUINT64_FORMAT
      " of %" G_GINT64_FORMAT, r.gap_dropped, r.sink_drops);
  CHECK (r.src_drops == r.sink_drops, "consumer counted %" G_GINT64_FORMAT, r.src_drops);
  results_clear (&r);
  g_free (pdesc);
  g_free (cdesc);
  free (ring);
}

/* End-to-end delay (render clock time - producer clock time) of each
 * rendered buffer, per stream; A/V offset = audio - video per window. */
static void
av_figures (Results * r, int seconds, gboolean verbose, gint64 * worst_offset)
{
  gint64 t0 = G_MAXINT64;
  for (int i = 0; i < 2; i++)
    for (guint k = 0; r->cons[i] && k < r->cons[i]->len; k++)
      t0 = MIN (t0, g_array_index (r->cons[i], Cons, k).now);
  int windows = MAX (1, seconds / (seconds >= 10 ? 5 : 1));
  gint64 wlen = (gint64) seconds * 1000 * MSEC / windows;
  *worst_offset = 0;
  gint64 first = 0, last = 0;
  for (int w = 0; w < windows; w++) {
    double sum[2] = { 0, 0 };
    gint64 mx[2] = { 0, 0 };
    guint cnt[2] = { 0, 0 };
    for (int i = 0; i < 2; i++)
      for (guint k = 0; r->cons[i] && k < r->cons[i]->len; k++) {
        Cons *c = &g_array_index (r->cons[i], Cons, k);
        if (c->now < t0 + w * wlen || c->now >= t0 + (w + 1) * wlen)
          continue;
        gint64 key = (gint64) c->offset;
        gint64 *pct = r->prod[i] ? g_hash_table_lookup (r->prod[i], &key) : NULL;
        if (!pct)
          continue;
        gint64 d = c->now - *pct;
        sum[i] += d;
        mx[i] = MAX (mx[i], d);
        cnt[i]++;
      }
    if (!cnt[0] || !cnt[1])
      continue;
    gint64 ma = (gint64) (sum[0] / cnt[0]), mv = (gint64) (sum[1] / cnt[1]);
    gint64 off = ma - mv;
    if (w == 0)
      first = off;
    last = off;
    if (ABS (off) > ABS (*worst_offset))
      *worst_offset = off;
    if (verbose)
      printf ("  %3d-%3d s: audio delay mean %.3f ms max %.3f ms (%u), video mean %.3f ms "
          "max %.3f ms (%u), A-V %+.3f ms\n", (int) (w * wlen / (1000 * MSEC)),
          (int) ((w + 1) * wlen / (1000 * MSEC)), ma / 1e6, mx[0] / 1e6, cnt[0], mv / 1e6,
          mx[1] / 1e6, cnt[1], off / 1e6);
  }
  printf ("  A-V offset: first window %+.3f ms, last %+.3f ms, drift %+.3f ms, worst %+.3f ms\n",
      first / 1e6, last / 1e6, (last - first) / 1e6, *worst_offset / 1e6);
}

static void
test_av (int seconds, gboolean verbose)
{
  printf ("- A/V: live audio and video through two rings, played in sync for %d s\n", seconds);
  char *ra = tu_path ("av-audio"), *rv = tu_path ("av-video");
  int nv = seconds * 30, na = seconds * 100;
  gchar *pdesc = g_strdup_printf ("audiotestsrc is-live=true samplesperbuffer=480 "
      "num-buffers=%d ! audio/x-raw,rate=48000,channels=2 ! ipcringsink name=psink-a ring=%s "
      "videotestsrc is-live=true num-buffers=%d ! video/x-raw,width=320,height=240,"
      "framerate=30/1 ! ipcringsink name=psink-v ring=%s", na, ra, nv, rv);
  gchar *cdesc = g_strdup_printf ("ipcringsrc name=csrc-a ring=%s timestamp-mode=running-time "
      "! fakesink name=csink-a sync=true ipcringsrc name=csrc-v ring=%s "
      "timestamp-mode=running-time ! fakesink name=csink-v sync=true", ra, rv);
  printf ("  producer: gst-launch-1.0 %s\n  consumer: gst-launch-1.0 %s\n", pdesc, cdesc);
  Results r;
  run_pair (pdesc, cdesc, 200, seconds * 1000 + 20000, &r);
  guint n[2];
  gint64 e0 = max_mapping_error (&r, 0, &n[0]), e1 = max_mapping_error (&r, 1, &n[1]);
  printf ("  rendered %u audio, %u video buffers; largest mapping error %" G_GINT64_FORMAT
      " / %" G_GINT64_FORMAT " ns\n", n[0], n[1], e0, e1);
  CHECK (n[0] > 0 && n[1] > 0, "a stream rendered nothing");
  CHECK (ABS (e0) <= MSEC && ABS (e1) <= MSEC, "mapping off by more than 1 ms");
  gint64 worst;
  av_figures (&r, seconds, verbose, &worst);
  CHECK (ABS (worst) <= 20 * MSEC, "audio and video %+.3f ms apart", worst / 1e6);
  results_clear (&r);
  g_free (pdesc);
  g_free (cdesc);
  free (ra);
  free (rv);
}

static void
check_plugins (void)
{
  pid_t pid = tu_fork ();
  if (pid == 0) {
    gst_init (NULL, NULL);
    const char *need[] = { "ipcringsink", "ipcringsrc", "audiotestsrc", "videotestsrc",
      "fakesink", "identity", NULL
    };
    for (const char **n = need; *n; n++) {
      GstElementFactory *f = gst_element_factory_find (*n);
      if (!f)
        _exit (strncmp (*n, "ipcring", 7) == 0 ? 1 : TU_SKIP);
      gst_object_unref (f);
    }
    _exit (0);
  }
  int st = tu_reap (pid, 60000);
  if (WIFEXITED (st) && WEXITSTATUS (st) == TU_SKIP) {
    printf ("gst-plugins-base test sources are not installed: skipping\n");
    exit (TU_SKIP);
  }
  CHECK_CHILD_OK (st);
}

int
main (int argc, char **argv)
{
  check_plugins ();
  if (argc >= 2 && strcmp (argv[1], "av") == 0) {
    test_av (argc >= 3 ? atoi (argv[2]) : 30, TRUE);
    return 0;
  }
  const char *env = getenv ("IPCRING_AV_SECONDS");
  test_running_time ();
  test_leaky ();
  test_av (env ? atoi (env) : 3, FALSE);
  printf ("all passed\n");
  return 0;
}
