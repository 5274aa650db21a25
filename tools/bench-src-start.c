/* bench-src-start: how soon an ipcringsrc started before its producer
 * delivers the first buffer once the producer has made the ring file.
 *
 *   bench-src-start [ROUNDS]        (default 10)
 *
 * Each round, in a fresh directory under /dev/shm (or $TMPDIR):
 *   consumer: ipcringsrc ring=DIR/ring ! fakesink, set to PLAYING first; it
 *             waits for the ring;
 *   after a random 25..65 ms (so that the moment falls anywhere in a
 *   periodic retry of the consumer's):
 *   producer: audiotestsrc num-buffers=20 ! ipcringsink capacity=1048576
 *             ring=DIR/ring (a small ring: mapping a large one costs both
 *             sides milliseconds that have nothing to do with the wait).
 * Measured: from the ring file appearing (seen by an inotify watch of this
 * program's own on DIR, in a thread blocked on it) to the consumer's first
 * buffer at its fakesink (a pad probe). Both moments are CLOCK_MONOTONIC in
 * this one process. Prints each round and the median, minimum and maximum
 * in microseconds. The plugin comes from GST_PLUGIN_PATH.
 *
 * Every wait has a bound (5 s); the directory and anything in it are
 * removed after each round. Exits 0 on success, 1 if a round failed, 77 if
 * the elements are missing. */
#define _GNU_SOURCE
#include <gst/gst.h>

#include <errno.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define BOUND_US (5 * G_USEC_PER_SEC)

typedef struct
{
  int inotify_fd;
  gint64 created;               /* when the ring file appeared, 0: not yet */
  gint64 first_buffer;          /* the consumer's first buffer, 0: not yet */
} Round;

/* Block on the directory's watch (bounded) until the name "ring" appears. */
static gpointer
watch_thread (gpointer data)
{
  Round *r = data;
  gint64 end = g_get_monotonic_time () + BOUND_US;
  guint8 buf[4096] __attribute__ ((aligned (__alignof__ (struct inotify_event))));
  while (g_get_monotonic_time () < end) {
    struct pollfd p = { r->inotify_fd, POLLIN, 0 };
    if (poll (&p, 1, 100) <= 0)
      continue;
    ssize_t n = read (r->inotify_fd, buf, sizeof buf);
    gint64 now = g_get_monotonic_time ();
    for (ssize_t off = 0; n > 0 && off < n;) {
      const struct inotify_event *ev = (const struct inotify_event *) (buf + off);
      if (ev->len && strcmp (ev->name, "ring") == 0) {
        __atomic_store_n (&r->created, now, __ATOMIC_RELEASE);
        return NULL;
      }
      off += sizeof *ev + ev->len;
    }
  }
  return NULL;
}

static GstPadProbeReturn
first_buffer_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  Round *r = data;
  gint64 now = g_get_monotonic_time ();
  gint64 zero = 0;
  __atomic_compare_exchange_n (&r->first_buffer, &zero, now, FALSE, __ATOMIC_RELEASE,
      __ATOMIC_RELAXED);
  return GST_PAD_PROBE_REMOVE;
}

static gboolean
wait_for (gint64 * when)
{
  gint64 end = g_get_monotonic_time () + BOUND_US;
  while (__atomic_load_n (when, __ATOMIC_ACQUIRE) == 0) {
    if (g_get_monotonic_time () >= end)
      return FALSE;
    g_usleep (200);
  }
  return TRUE;
}

static GstElement *
launch (const gchar * desc)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  if (!p) {
    fprintf (stderr, "bench-src-start: %s: %s\n", desc, err ? err->message : "?");
    g_clear_error (&err);
  }
  return p;
}

static gboolean
set_null (GstElement * p)
{
  GstStateChangeReturn ret = gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (p);
  return ret == GST_STATE_CHANGE_SUCCESS;
}

/* One round: the time in microseconds, or -1. */
static gint64
run_round (const gchar * base)
{
  gchar *dir = g_build_filename (base, "bench-src-start-XXXXXX", NULL);
  if (!g_mkdtemp (dir)) {
    fprintf (stderr, "bench-src-start: cannot make %s: %s\n", dir, g_strerror (errno));
    g_free (dir);
    return -1;
  }
  gchar *ring = g_build_filename (dir, "ring", NULL);
  gint64 result = -1;
  Round r = { -1, 0, 0 };
  GThread *watcher = NULL;
  GstElement *consumer = NULL, *producer = NULL;

  r.inotify_fd = inotify_init1 (IN_CLOEXEC);
  if (r.inotify_fd < 0 || inotify_add_watch (r.inotify_fd, dir, IN_CREATE | IN_MOVED_TO) < 0) {
    fprintf (stderr, "bench-src-start: no inotify watch on %s: %s\n", dir, g_strerror (errno));
    goto out;
  }
  gchar *desc = g_strdup_printf ("ipcringsrc ring=%s ! fakesink name=sink", ring);
  consumer = launch (desc);
  g_free (desc);
  if (!consumer)
    goto out;
  GstElement *sink = gst_bin_get_by_name (GST_BIN (consumer), "sink");
  GstPad *pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, first_buffer_probe, &r, NULL);
  gst_object_unref (pad);
  gst_object_unref (sink);
  watcher = g_thread_new ("watch", watch_thread, &r);
  if (gst_element_set_state (consumer, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    fprintf (stderr, "bench-src-start: the consumer did not start\n");
    goto out;
  }
  g_usleep (g_random_int_range (25, 66) * 1000);

  desc = g_strdup_printf ("audiotestsrc num-buffers=20 ! ipcringsink capacity=1048576 ring=%s", ring);
  producer = launch (desc);
  g_free (desc);
  if (!producer)
    goto out;
  if (gst_element_set_state (producer, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    fprintf (stderr, "bench-src-start: the producer did not start\n");
    goto out;
  }
  if (!wait_for (&r.created) || !wait_for (&r.first_buffer)) {
    fprintf (stderr, "bench-src-start: no %s within 5 s\n",
        r.created ? "first buffer" : "ring file");
    goto out;
  }
  result = r.first_buffer - r.created;

out:
  if (producer && !set_null (producer))
    result = -1;
  if (consumer && !set_null (consumer))
    result = -1;
  if (watcher)
    g_thread_join (watcher);
  if (r.inotify_fd >= 0)
    close (r.inotify_fd);
  g_unlink (ring);
  if (g_rmdir (dir) != 0) {
    fprintf (stderr, "bench-src-start: cannot remove %s: %s\n", dir, g_strerror (errno));
    result = -1;
  }
  g_free (ring);
  g_free (dir);
  return result;
}

static gint
cmp_i64 (gconstpointer a, gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  guint rounds = argc > 1 ? (guint) atoi (argv[1]) : 10;
  if (rounds == 0 || rounds > 10000) {
    fprintf (stderr, "usage: bench-src-start [ROUNDS]\n");
    return 2;
  }
  GstElementFactory *f1 = gst_element_factory_find ("ipcringsrc");
  GstElementFactory *f2 = gst_element_factory_find ("ipcringsink");
  if (!f1 || !f2) {
    fprintf (stderr, "bench-src-start: no ipcring elements (GST_PLUGIN_PATH?)\n");
    return 77;
  }
  GstPlugin *plugin = gst_plugin_feature_get_plugin (GST_PLUGIN_FEATURE (f1));
  printf ("plugin: %s\n", plugin ? gst_plugin_get_filename (plugin) : "?");
  if (plugin)
    gst_object_unref (plugin);
  gst_object_unref (f1);
  gst_object_unref (f2);

  const gchar *base = g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm"
      : g_get_tmp_dir ();
  GArray *t = g_array_new (FALSE, FALSE, sizeof (gint64));
  run_round (base);             /* warm-up: plugins loaded, first-use allocations */
  for (guint i = 0; i < rounds; i++) {
    gint64 us = run_round (base);
    if (us < 0) {
      g_array_unref (t);
      return 1;
    }
    printf ("round %u: ring created -> first buffer %" G_GINT64_FORMAT " us\n", i + 1, us);
    g_array_append_val (t, us);
  }
  g_array_sort (t, cmp_i64);
  gint64 median = t->len % 2 ? g_array_index (t, gint64, t->len / 2)
      : (g_array_index (t, gint64, t->len / 2 - 1) + g_array_index (t, gint64, t->len / 2)) / 2;
  printf ("ring created -> first buffer over %u rounds: median %" G_GINT64_FORMAT
      " us, min %" G_GINT64_FORMAT " us, max %" G_GINT64_FORMAT " us\n", t->len, median,
      g_array_index (t, gint64, 0), g_array_index (t, gint64, t->len - 1));
  g_array_unref (t);
  return 0;
}
