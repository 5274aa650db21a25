/* ipcringsink's zero-copy pool (gst/ipcring-pool.c), with GstHarness on the
 * sink and the ring read directly with the ring API, so each test sees the
 * records themselves. What they pin down:
 *
 *  - the sink offers its pool for raw video; a buffer acquired from it is
 *    ring memory: its bytes are in the ring file before it is pushed, and the
 *    record the reader gets is that buffer;
 *  - several buffers acquired before the first is rendered: rendered in
 *    order, each is zero copy; rendered out of order, the stream keeps the
 *    render order and every byte;
 *  - buffers released without being rendered are never seen, and their room
 *    comes back (no growth over many rounds on a small ring);
 *  - a rendered buffer upstream keeps (a decoder's reference frame) keeps its
 *    bytes while the reader reads more than the ring's capacity, and the
 *    pool lends ordinary memory meanwhile instead of blocking;
 *  - renegotiation with the pool active; EOS and stop with pool buffers still
 *    held upstream (released later, after the sink is gone).
 *
 * Ring files live in a fresh temporary directory, removed at the end. */
#define _GNU_SOURCE
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipcring-protocol.h"
#include "ipcring.h"

static gchar *dir;
static gchar *ring_path;

static int
rm_entry (const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (p);
}

static void
setup (void)
{
  dir = g_strdup (g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm/ipcring-pool-XXXXXX"
      : "/tmp/ipcring-pool-XXXXXX");
  fail_unless (mkdtemp (dir) != NULL);
  ring_path = g_build_filename (dir, "ring", NULL);
}

static void
teardown (void)
{
  nftw (dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  g_free (ring_path);
  g_free (dir);
}

/* 64x32 GRAY8: 2048-byte frames. */
#define W 64
#define H 32
#define FRAME (W * H)

static GstHarness *
sink_harness (guint64 capacity, const gchar * format)
{
  gchar *desc = g_strdup_printf ("ipcringsink ring=%s capacity=%" G_GUINT64_FORMAT, ring_path,
      capacity);
  GstHarness *h = gst_harness_new_parse (desc);
  g_free (desc);
  gchar *caps = g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1",
      format, W, H);
  gst_harness_set_src_caps_str (h, caps);
  g_free (caps);
  return h;
}

/* The pool the sink proposed in the harness's allocation query. */
static GstBufferPool *
sink_pool (GstHarness * h)
{
  GstBufferPool *pool = NULL;
  GstCaps *caps = gst_pad_get_current_caps (h->srcpad);
  GstQuery *q = gst_query_new_allocation (caps, TRUE);
  fail_unless (gst_pad_peer_query (h->srcpad, q));
  fail_unless (gst_query_get_n_allocation_pools (q) == 1, "the sink offers a pool");
  guint size;
  gst_query_parse_nth_allocation_pool (q, 0, &pool, &size, NULL, NULL);
  fail_unless_equals_int (size, FRAME);
  gst_query_unref (q);
  GstStructure *config = gst_buffer_pool_get_config (pool);
  gst_buffer_pool_config_set_params (config, caps, FRAME, 0, 0);
  gst_caps_unref (caps);
  fail_unless (gst_buffer_pool_set_config (pool, config));
  fail_unless (gst_buffer_pool_set_active (pool, TRUE));
  return pool;
}

static GstBuffer *
acquire_filled (GstBufferPool * pool, guint8 fill)
{
  GstBuffer *buf = NULL;
  fail_unless_equals_int (gst_buffer_pool_acquire_buffer (pool, &buf, NULL), GST_FLOW_OK);
  GstMapInfo map;
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_WRITE));
  fail_unless_equals_int (map.size, FRAME);
  memset (map.data, fill, map.size);
  gst_buffer_unmap (buf, &map);
  GST_BUFFER_PTS (buf) = fill * GST_MSECOND;
  return buf;
}

/* Is buf's memory a mapping of the ring file? Its bytes must be at some
 * offset of the file, read with pread, and change there when written. */
static gboolean
is_ring_memory (GstBuffer * buf)
{
  GstMapInfo map;
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_READWRITE));
  int fd = open (ring_path, O_RDONLY);
  fail_unless (fd >= 0);
  struct stat st;
  fstat (fd, &st);
  guint8 *file = g_malloc (st.st_size);
  fail_unless (pread (fd, file, st.st_size, 0) == st.st_size);
  /* Mark the first bytes with something unique, then look for it. */
  guint8 saved[16], mark[16];
  memcpy (saved, map.data, 16);
  for (int i = 0; i < 16; i++)
    mark[i] = (guint8) (0xA5 ^ (i * 37));
  memcpy (map.data, mark, 16);
  fail_unless (pread (fd, file, st.st_size, 0) == st.st_size);
  gboolean found = memmem (file, st.st_size, mark, 16) != NULL;
  memcpy (map.data, saved, 16);
  gst_buffer_unmap (buf, &map);
  g_free (file);
  close (fd);
  return found;
}

typedef struct
{
  ipcring_reader *r;
} Reader;

/* The next BUFF record (other records are passed), its fill byte and PTS. */
static gboolean
next_buffer (Reader * rd, guint8 * fill, GstClockTime * pts, gsize * size)
{
  for (;;) {
    const void *p;
    size_t len;
    uint32_t tag;
    int rc = ipcring_reader_peek (rd->r, &p, &len, &tag, 0);
    if (rc == -EAGAIN)
      return FALSE;
    fail_unless_equals_int (rc, 0);
    if (tag == IPCRING_REC_BUFFER) {
      IpcRingWireBuffer hdr;
      fail_unless (len >= sizeof hdr);
      memcpy (&hdr, p, sizeof hdr);
      const guint8 *d = (const guint8 *) p + sizeof hdr;
      *size = len - sizeof hdr;
      *fill = *size ? d[0] : 0;
      for (gsize i = 0; i < *size; i++)
        fail_unless (d[i] == *fill, "byte %" G_GSIZE_FORMAT " of a buffer differs", i);
      *pts = hdr.pts;
      ipcring_reader_release (rd->r);
      return TRUE;
    }
    ipcring_reader_release (rd->r);
  }
}

static void
expect_buffers (Reader * rd, const guint8 * fills, guint n)
{
  for (guint i = 0; i < n; i++) {
    guint8 fill;
    GstClockTime pts;
    gsize size;
    fail_unless (next_buffer (rd, &fill, &pts, &size), "buffer %u missing", i);
    fail_unless_equals_int (size, FRAME);
    fail_unless_equals_int (fill, fills[i]);
    fail_unless_equals_uint64 (pts, fills[i] * GST_MSECOND);
  }
  guint8 fill;
  GstClockTime pts;
  gsize size;
  fail_if (next_buffer (rd, &fill, &pts, &size), "an extra buffer (fill %u)", fill);
}

static void
reader_open (Reader * rd)
{
  fail_unless_equals_int (ipcring_reader_open (ring_path, 0, &rd->r), 0);
}

GST_START_TEST (test_pool_buffers_are_ring_records)
{
  GstHarness *h = sink_harness (1 << 20, "GRAY8");
  GstBufferPool *pool = sink_pool (h);
  Reader rd;
  reader_open (&rd);
  /* The first buffer after the segment is copied (acquired before the
   * segment was written); from then on, every one is the record itself. */
  guint8 fills[8];
  for (guint i = 0; i < 8; i++) {
    GstBuffer *buf = acquire_filled (pool, (guint8) (i + 1));
    fail_unless (is_ring_memory (buf), "pool buffer %u is not ring memory", i);
    fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
    fills[i] = (guint8) (i + 1);
  }
  expect_buffers (&rd, fills, 8);
  gst_buffer_pool_set_active (pool, FALSE);
  gst_object_unref (pool);
  gst_harness_teardown (h);
  ipcring_reader_close (rd.r);
}

GST_END_TEST;

GST_START_TEST (test_several_acquired_before_rendering)
{
  GstHarness *h = sink_harness (1 << 20, "GRAY8");
  GstBufferPool *pool = sink_pool (h);
  Reader rd;
  reader_open (&rd);
  fail_unless_equals_int (gst_harness_push (h, acquire_filled (pool, 1)), GST_FLOW_OK);
  /* Three acquired, rendered in order. */
  GstBuffer *a = acquire_filled (pool, 2), *b = acquire_filled (pool, 3), *c =
      acquire_filled (pool, 4);
  fail_unless_equals_int (gst_harness_push (h, a), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, b), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, c), GST_FLOW_OK);
  /* Three acquired, rendered out of order (a decoder's B-frames). */
  a = acquire_filled (pool, 5);
  b = acquire_filled (pool, 6);
  c = acquire_filled (pool, 7);
  fail_unless_equals_int (gst_harness_push (h, c), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, a), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, b), GST_FLOW_OK);
  const guint8 fills[] = { 1, 2, 3, 4, 7, 5, 6 };
  expect_buffers (&rd, fills, G_N_ELEMENTS (fills));
  gst_buffer_pool_set_active (pool, FALSE);
  gst_object_unref (pool);
  gst_harness_teardown (h);
  ipcring_reader_close (rd.r);
}

GST_END_TEST;

GST_START_TEST (test_unrendered_buffers_give_room_back)
{
  /* 64 KiB: 31 frames. 2000 acquired and dropped, interleaved with
   * rendered ones read at once: nothing unrendered is ever seen, and the
   * ring never fills. */
  GstHarness *h = sink_harness (65536, "GRAY8");
  GstBufferPool *pool = sink_pool (h);
  Reader rd;
  reader_open (&rd);
  for (guint i = 0; i < 2000; i++) {
    GstBuffer *drop1 = acquire_filled (pool, 0xEE);
    GstBuffer *drop2 = acquire_filled (pool, 0xEE);
    fail_unless (is_ring_memory (drop1) || i == 0);
    gst_buffer_unref (drop2);
    gst_buffer_unref (drop1);
    GstBuffer *keep = acquire_filled (pool, (guint8) (i % 200 + 1));
    fail_unless (is_ring_memory (keep), "round %u: the pool lent ordinary memory", i);
    fail_unless_equals_int (gst_harness_push (h, keep), GST_FLOW_OK);
    guint8 fill;
    GstClockTime pts;
    gsize size;
    fail_unless (next_buffer (&rd, &fill, &pts, &size));
    fail_unless_equals_int (fill, i % 200 + 1);
  }
  gst_buffer_pool_set_active (pool, FALSE);
  gst_object_unref (pool);
  gst_harness_teardown (h);
  ipcring_reader_close (rd.r);
}

GST_END_TEST;

GST_START_TEST (test_rendered_buffer_kept_upstream)
{
  /* A rendered buffer that upstream keeps (videorate's previous frame) is
   * copied, keeps its bytes while the reader reads on, and from then on the
   * pool lends ordinary memory, so kept buffers never pin the ring; once it
   * is released the ring goes round many times. */
  GstHarness *h = sink_harness (65536, "GRAY8");
  GstBufferPool *pool = sink_pool (h);
  Reader rd;
  reader_open (&rd);
  fail_unless_equals_int (gst_harness_push (h, acquire_filled (pool, 1)), GST_FLOW_OK);
  GstBuffer *kept = acquire_filled (pool, 0x77);
  fail_unless (is_ring_memory (kept));
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_ref (kept)), GST_FLOW_OK);
  guint8 fill;
  GstClockTime pts;
  gsize size;
  fail_unless (next_buffer (&rd, &fill, &pts, &size) && fill == 1);
  fail_unless (next_buffer (&rd, &fill, &pts, &size) && fill == 0x77, "kept buffer copied");
  for (guint i = 0; i < 20; i++) {
    GstBuffer *buf = acquire_filled (pool, (guint8) (i + 2));
    fail_if (is_ring_memory (buf), "ring memory lent after upstream kept a buffer");
    fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
    fail_unless (next_buffer (&rd, &fill, &pts, &size) && fill == i + 2);
  }
  GstMapInfo map;
  fail_unless (gst_buffer_map (kept, &map, GST_MAP_READ));
  for (gsize i = 0; i < map.size; i++)
    fail_unless (map.data[i] == 0x77, "kept buffer changed at byte %" G_GSIZE_FORMAT, i);
  gst_buffer_unmap (kept, &map);
  gst_buffer_unref (kept);
  for (guint i = 0; i < 320; i++) {
    fail_unless_equals_int (gst_harness_push (h, acquire_filled (pool, (guint8) (i % 100 + 2))),
        GST_FLOW_OK);
    fail_unless (next_buffer (&rd, &fill, &pts, &size) && fill == i % 100 + 2);
  }
  gst_buffer_pool_set_active (pool, FALSE);
  gst_object_unref (pool);
  gst_harness_teardown (h);
  ipcring_reader_close (rd.r);
}

GST_END_TEST;

GST_START_TEST (test_renegotiation_with_pool_active)
{
  GstHarness *h = sink_harness (1 << 20, "GRAY8");
  GstBufferPool *pool = sink_pool (h);
  Reader rd;
  reader_open (&rd);
  GstBuffer *old = acquire_filled (pool, 1);
  fail_unless_equals_int (gst_harness_push (h, acquire_filled (pool, 2)), GST_FLOW_OK);
  /* New caps (another format, same size) while a buffer of the old pool is
   * out; a new pool for the new caps. */
  gst_harness_set_src_caps_str (h, "video/x-raw,format=GRAY8,width=32,height=64,framerate=30/1");
  GstBufferPool *pool2 = sink_pool (h);
  fail_unless_equals_int (gst_harness_push (h, acquire_filled (pool2, 3)), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, old), GST_FLOW_OK);      /* rendered late: copied */
  fail_unless_equals_int (gst_harness_push (h, acquire_filled (pool2, 4)), GST_FLOW_OK);
  /* The caps record comes between buffers 2 and 3. */
  const guint8 fills[] = { 2, 3, 1, 4 };
  guint caps_seen = 0, bufs = 0;
  for (;;) {
    const void *p;
    size_t len;
    uint32_t tag;
    if (ipcring_reader_peek (rd.r, &p, &len, &tag, 0) != 0)
      break;
    if (tag == IPCRING_REC_CAPS) {
      /* The first caps may come twice (again for the reader that attached
       * after the sink started); the new caps exactly once, after buffer 2. */
      if (g_strstr_len (p, len, "width=(int)32")) {
        caps_seen++;
        fail_unless_equals_int (bufs, 1);
      }
    } else if (tag == IPCRING_REC_BUFFER) {
      fail_unless (bufs < G_N_ELEMENTS (fills));
      fail_unless_equals_int (((const guint8 *) p)[sizeof (IpcRingWireBuffer)], fills[bufs]);
      bufs++;
    }
    ipcring_reader_release (rd.r);
  }
  fail_unless_equals_int (caps_seen, 1);
  fail_unless_equals_int (bufs, 4);
  gst_buffer_pool_set_active (pool, FALSE);
  gst_buffer_pool_set_active (pool2, FALSE);
  gst_object_unref (pool);
  gst_object_unref (pool2);
  gst_harness_teardown (h);
  ipcring_reader_close (rd.r);
}

GST_END_TEST;

/* Read records until the EOS record (at most 10 s); 1 if the buffer with
 * fill 5 came before it. */
static gpointer
drain_to_eos (gpointer data)
{
  Reader *rd = data;
  int saw5 = 0;
  for (int i = 0; i < 100; i++) {
    const void *p;
    size_t len;
    uint32_t tag;
    int rc = ipcring_reader_peek (rd->r, &p, &len, &tag, 100 * 1000000LL);
    if (rc == -ETIMEDOUT)
      continue;
    if (rc != 0)
      break;
    if (tag == IPCRING_REC_BUFFER && ((const guint8 *) p)[sizeof (IpcRingWireBuffer)] == 5)
      saw5 = 1;
    ipcring_reader_release (rd->r);
    if (tag == IPCRING_REC_EOS)
      return GINT_TO_POINTER (saw5);
  }
  return GINT_TO_POINTER (-1);
}

GST_START_TEST (test_eos_and_stop_with_buffers_held)
{
  GstHarness *h = sink_harness (1 << 20, "GRAY8");
  GstBufferPool *pool = sink_pool (h);
  Reader rd;
  reader_open (&rd);
  GstBuffer *held_rendered = acquire_filled (pool, 5);
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_ref (held_rendered)), GST_FLOW_OK);
  GstBuffer *held_open = acquire_filled (pool, 6);
  /* EOS waits until the reader has read everything: read in a thread. */
  GThread *th = g_thread_new ("drain", drain_to_eos, &rd);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  fail_unless_equals_int (GPOINTER_TO_INT (g_thread_join (th)), 1);
  gst_harness_teardown (h);     /* stop with both buffers still held */
  /* The ring stays mapped for them: bytes intact, writable, then freed. */
  GstMapInfo map;
  fail_unless (gst_buffer_map (held_rendered, &map, GST_MAP_READ));
  fail_unless (map.data[0] == 5 && map.data[FRAME - 1] == 5);
  gst_buffer_unmap (held_rendered, &map);
  fail_unless (gst_buffer_map (held_open, &map, GST_MAP_WRITE));
  memset (map.data, 0x11, map.size);
  gst_buffer_unmap (held_open, &map);
  gst_buffer_unref (held_open);
  gst_buffer_unref (held_rendered);
  gst_buffer_pool_set_active (pool, FALSE);
  gst_object_unref (pool);
  ipcring_reader_close (rd.r);
}

GST_END_TEST;

static Suite *
sinkpool_suite (void)
{
  Suite *s = suite_create ("ipcring_sinkpool");
  TCase *tc = tcase_create ("pool");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_pool_buffers_are_ring_records);
  tcase_add_test (tc, test_several_acquired_before_rendering);
  tcase_add_test (tc, test_unrendered_buffers_give_room_back);
  tcase_add_test (tc, test_rendered_buffer_kept_upstream);
  tcase_add_test (tc, test_renegotiation_with_pool_active);
  tcase_add_test (tc, test_eos_and_stop_with_buffers_held);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (sinkpool);
