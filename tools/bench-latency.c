/* bench-latency: latency of one buffer crossing an idle pipeline.
 *
 *   bench-latency [--count N] [--warmup N] [--interval-us U] [--size B] PIPELINE
 *
 * PIPELINE is a gst-launch-1.0 description. If it has a fakesrc named "src",
 * this process is the producer: it sends warmup + count buffers of size bytes,
 * one every U microseconds (so that the pipeline is idle when each starts),
 * each carrying its sequence number and the CLOCK_MONOTONIC time at which it
 * left the source. If it has a fakesink named "sink", this process is the
 * consumer: at each buffer it reads the clock again and records the
 * difference; at EOS it prints one line
 *
 *   latency_us n=N p50=X p90=X p99=X max=X
 *
 * over the buffers after the warm-up, and, for an element named "ipc" with a
 * "stats" property, a line "stats <its structure>". Both in one description measure one
 * process; split across two processes, CLOCK_MONOTONIC is the same clock on
 * both sides. Exit status 0 on EOS, 1 on an error (printed).
 */
#include <gst/gst.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct
{
  guint64 count, warmup, interval_ns;
  struct timespec next;         /* producer: when the next buffer leaves */
  gboolean started;
  guint64 seq;
  gint64 *lat;                  /* consumer: latencies in ns */
  guint64 n_lat;
  guint64 short_buffers;
} Bench;

static guint64
mono_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (guint64) ts.tv_sec * 1000000000u + (guint64) ts.tv_nsec;
}

/* fakesrc "handoff": wait for this buffer's slot, then stamp it. */
static void
on_src_handoff (GstElement * src, GstBuffer * buf, GstPad * pad, gpointer user_data)
{
  Bench *b = user_data;
  if (!b->started) {
    clock_gettime (CLOCK_MONOTONIC, &b->next);
    b->started = TRUE;
  }
  b->next.tv_nsec += (long) b->interval_ns;
  while (b->next.tv_nsec >= 1000000000L) {
    b->next.tv_nsec -= 1000000000L;
    b->next.tv_sec++;
  }
  while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &b->next, NULL) == EINTR)
    ;
  guint64 stamp[2] = { b->seq++, mono_ns () };
  gst_buffer_fill (buf, 0, stamp, sizeof stamp);
}

/* fakesink "handoff": the buffer has crossed. */
static void
on_sink_handoff (GstElement * sink, GstBuffer * buf, GstPad * pad, gpointer user_data)
{
  Bench *b = user_data;
  guint64 now = mono_ns ();
  guint64 stamp[2];
  if (gst_buffer_extract (buf, 0, stamp, sizeof stamp) != sizeof stamp) {
    b->short_buffers++;
    return;
  }
  if (stamp[0] < b->warmup || b->n_lat >= b->count)
    return;
  b->lat[b->n_lat++] = (gint64) (now - stamp[1]);
}

static int
cmp_i64 (const void *a, const void *b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
  return x < y ? -1 : x > y;
}

static double
percentile_us (const gint64 * v, guint64 n, double p)
{
  guint64 i = (guint64) (p * (double) (n - 1) + 0.5);
  return (double) v[i] / 1000.0;
}

static void
usage (void)
{
  fprintf (stderr, "usage: bench-latency [--count N] [--warmup N] [--interval-us U] "
      "[--size B] PIPELINE\n"
      "  PIPELINE has a fakesrc named src (producer) and/or a fakesink named sink (consumer)\n");
}

int
main (int argc, char **argv)
{
  Bench b = { .count = 10000, .warmup = 200, .interval_ns = 1000000 };
  guint64 size = 256;
  int i;

  gst_init (&argc, &argv);
  for (i = 1; i < argc - 1 && strncmp (argv[i], "--", 2) == 0; i += 2) {
    guint64 v = g_ascii_strtoull (argv[i + 1], NULL, 10);
    if (!strcmp (argv[i], "--count"))
      b.count = v;
    else if (!strcmp (argv[i], "--warmup"))
      b.warmup = v;
    else if (!strcmp (argv[i], "--interval-us"))
      b.interval_ns = v * 1000;
    else if (!strcmp (argv[i], "--size"))
      size = v;
    else {
      usage ();
      return 2;
    }
  }
  if (i != argc - 1 || b.count == 0 || size < 16) {
    usage ();
    return 2;
  }

  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch (argv[i], &err);
  if (!pipeline) {
    fprintf (stderr, "bench-latency: %s\n", err ? err->message : "cannot parse the pipeline");
    return 1;
  }
  GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  if (!src && !sink) {
    usage ();
    return 2;
  }
  if (src) {
    g_object_set (src, "num-buffers", (gint) (b.count + b.warmup), "sizetype", 2 /* fixed */,
        "sizemax", (gint) size, "filltype", 2 /* zero */, "signal-handoffs", TRUE, NULL);
    g_signal_connect (src, "handoff", G_CALLBACK (on_src_handoff), &b);
  }
  if (sink) {
    b.lat = g_new (gint64, b.count);
    g_object_set (sink, "sync", FALSE, "enable-last-sample", FALSE, "signal-handoffs", TRUE,
        NULL);
    g_signal_connect (sink, "handoff", G_CALLBACK (on_sink_handoff), &b);
  }

  int status = 0;
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
    status = 1;
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  if (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *e = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error (msg, &e, &dbg);
    fprintf (stderr, "bench-latency: error from %s: %s (%s)\n", GST_OBJECT_NAME (msg->src),
        e->message, dbg ? dbg : "");
    g_clear_error (&e);
    g_free (dbg);
    status = 1;
  }
  if (msg)
    gst_message_unref (msg);
  gst_object_unref (bus);
  /* An element named "ipc" (ipcringsink or ipcringsrc): its counters. */
  GstElement *ipc = gst_bin_get_by_name (GST_BIN (pipeline), "ipc");
  if (ipc && g_object_class_find_property (G_OBJECT_GET_CLASS (ipc), "stats")) {
    GstStructure *st = NULL;
    g_object_get (ipc, "stats", &st, NULL);
    if (st) {
      gchar *str = gst_structure_to_string (st);
      printf ("stats %s\n", str);
      g_free (str);
      gst_structure_free (st);
    }
  }
  if (ipc)
    gst_object_unref (ipc);
  gst_element_set_state (pipeline, GST_STATE_NULL);

  if (sink && status == 0) {
    if (b.n_lat == 0) {
      fprintf (stderr, "bench-latency: no buffer after the warm-up reached the sink\n");
      status = 1;
    } else {
      qsort (b.lat, b.n_lat, sizeof b.lat[0], cmp_i64);
      printf ("latency_us n=%" G_GUINT64_FORMAT " p50=%.1f p90=%.1f p99=%.1f max=%.1f\n",
          b.n_lat, percentile_us (b.lat, b.n_lat, 0.50), percentile_us (b.lat, b.n_lat, 0.90),
          percentile_us (b.lat, b.n_lat, 0.99), (double) b.lat[b.n_lat - 1] / 1000.0);
      if (b.short_buffers)
        printf ("short buffers ignored: %" G_GUINT64_FORMAT "\n", b.short_buffers);
    }
  }
  g_free (b.lat);
  if (src)
    gst_object_unref (src);
  if (sink)
    gst_object_unref (sink);
  gst_object_unref (pipeline);
  return status;
}
