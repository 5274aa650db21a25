/* The temporary directories of the element tests: one per suite, made and
 * removed by the parent process (an unchecked fixture: suite_dir_setup,
 * suite_dir_teardown), so that it goes away even when a test, run in a
 * forked child, fails and exits without cleaning up; each test makes its own
 * subdirectory in it and removes that at its end (test_dir_cleanup). In
 * /dev/shm when there is one. Define IPCRING_TEST_DIR_NAME (for example
 * "ipcring-live") before including this file; one file of a test program
 * includes it. */
#ifndef IPCRING_GST_TESTDIR_H
#define IPCRING_GST_TESTDIR_H

#include <gst/check/gstcheck.h>
#include <glib.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#ifndef IPCRING_TEST_DIR_NAME
#error "define IPCRING_TEST_DIR_NAME before including gsttestdir.h"
#endif

static gchar *suite_dir;
static gchar *test_dir;

static int
rm_entry (const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st;
  (void) flag;
  (void) ftw;
  return remove (p);
}

static void
remove_tree (const gchar * path)
{
  nftw (path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void
suite_dir_setup (void)
{
  gchar *d = NULL;
  if (g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR)) {
    d = g_strdup ("/dev/shm/" IPCRING_TEST_DIR_NAME "-XXXXXX");
    if (!mkdtemp (d))
      g_clear_pointer (&d, g_free);
  }
  if (!d) {
    GError *err = NULL;
    d = g_dir_make_tmp (IPCRING_TEST_DIR_NAME "-XXXXXX", &err);
    if (!d)
      g_error ("cannot make a temporary directory: %s", err->message);
  }
  suite_dir = d;
}

static void
suite_dir_teardown (void)
{
  if (suite_dir) {
    remove_tree (suite_dir);
    g_clear_pointer (&suite_dir, g_free);
  }
}

static void
test_dir_cleanup (void)
{
  if (test_dir) {
    remove_tree (test_dir);
    g_clear_pointer (&test_dir, g_free);
  }
}

/* A fresh private directory in the suite's for this test's ring files (the
 * one a failed test left behind, when tests do not fork, goes first). */
static inline const gchar *
test_dir_new (void)
{
  fail_unless (suite_dir != NULL, "no suite directory");
  test_dir_cleanup ();
  gchar *d = g_build_filename (suite_dir, "test-XXXXXX", NULL);
  fail_unless (mkdtemp (d) != NULL, "cannot make %s: %s", d, g_strerror (errno));
  test_dir = d;
  return d;
}

/* A ring path in a fresh test directory; the caller frees it. */
static inline gchar *
ring_path_new (void)
{
  return g_build_filename (test_dir_new (), "ring", NULL);
}

#endif /* IPCRING_GST_TESTDIR_H */
