/* Small helpers shared by the ring tests: checks that print where they failed,
 * a fresh temporary directory that is removed at exit, bounded child
 * processes that are always reaped. Plain C, no test framework. */
#ifndef IPCRING_TESTUTIL_H
#define IPCRING_TESTUTIL_H

#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TU_SKIP 77

#define CHECK(cond, ...)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);        \
      fprintf(stderr, __VA_ARGS__);                                                   \
      fprintf(stderr, "\n");                                                          \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* Check that an expression returns exactly `want` (0 or a -errno). */
#define CHECK_RC(expr, want)                                                          \
  do {                                                                                \
    long tu_rc_ = (long)(expr);                                                       \
    long tu_want_ = (long)(want);                                                     \
    if (tu_rc_ != tu_want_) {                                                         \
      fprintf(stderr, "%s:%d: %s returned %ld (%s), expected %ld (%s)\n", __FILE__,   \
              __LINE__, #expr, tu_rc_, tu_rc_ < 0 ? strerror((int)-tu_rc_) : "-",       \
              tu_want_, tu_want_ < 0 ? strerror((int)-tu_want_) : "-");               \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

static inline int64_t tu_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void tu_sleep_ms(int ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static char tu_dir_[256];
static pid_t tu_owner_;

static int tu_rm_(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void tu_cleanup_(void)
{
  if (tu_dir_[0] && getpid() == tu_owner_)
    nftw(tu_dir_, tu_rm_, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh private directory (in /dev/shm when it exists), removed at exit by
 * the process that made it. */
static inline const char *tu_tmpdir(void)
{
  if (tu_dir_[0])
    return tu_dir_;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(tu_dir_, sizeof tu_dir_, "%s/ipcring-test-XXXXXX", base);
  CHECK(mkdtemp(tu_dir_) != NULL, "mkdtemp: %s", strerror(errno));
  tu_owner_ = getpid();
  atexit(tu_cleanup_);
  return tu_dir_;
}

/* A path inside the temporary directory; each call returns a new buffer. */
static inline char *tu_path(const char *name)
{
  const char *d = tu_tmpdir();
  size_t n = strlen(d) + strlen(name) + 2;
  char *p = malloc(n);
  CHECK(p != NULL, "malloc");
  snprintf(p, n, "%s/%s", d, name);
  return p;
}

/* fork() for tests: the child dies with the parent, so a failed test never
 * leaves processes behind. The child must end with _exit(). */
static inline pid_t tu_fork(void)
{
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
  }
  return pid;
}

/* Reap pid, waiting at most timeout_ms; on timeout kill it, reap it and fail.
 * Returns the wait status. */
static inline int tu_reap(pid_t pid, int timeout_ms)
{
  int64_t end = tu_now_ns() + (int64_t)timeout_ms * 1000000;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return st;
    CHECK(r == 0, "waitpid: %s", strerror(errno));
    if (tu_now_ns() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      CHECK(0, "child %d did not finish within %d ms", (int)pid, timeout_ms);
    }
    tu_sleep_ms(1);
  }
}

/* A child's exit must have been a clean exit(0). */
#define CHECK_CHILD_OK(st)                                                            \
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d (exit %d, signal %d)", \
        st, WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0)

#endif
