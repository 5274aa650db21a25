/* Tests of tools/ipcring-stat: the built program is run on rings made with the
 * public API in tu_tmpdir(), and its output and exit status are checked.
 *
 * The program's path comes from the build (IPCRING_STAT_PATH); the IPCRING_STAT
 * environment variable overrides it, to test an installed copy. Each test
 * function names the behaviour it pins down. */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>

#ifndef IPCRING_STAT_PATH
#error "IPCRING_STAT_PATH must name the built ipcring-stat"
#endif

#define CAP 65536u

static const char *tool;
static const char *volatile current_test = "setup";

/* alarm() backstop: every wait below has its own bound, this one catches a
 * hang anywhere else. It empties the (flat) temporary directory with system
 * calls only and exits; the children die with us (tu_fork). */
static void watchdog(int sig)
{
  (void)sig;
  static const char msg[] = "watchdog: test hung in ";
  const char *t = current_test;
  ssize_t n = write(2, msg, sizeof msg - 1);
  n = write(2, t, strlen(t));
  n = write(2, "\n", 1);
  (void)n;
  int dfd = tu_dir_[0] ? open(tu_dir_, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (dfd >= 0) {
    char buf[4096] __attribute__((aligned(8)));
    ssize_t len;
    while ((len = getdents64(dfd, buf, sizeof buf)) > 0) {
      for (ssize_t off = 0; off < len;) {
        struct dirent64 *d = (struct dirent64 *)(buf + off);
        if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
          unlinkat(dfd, d->d_name, 0);
        off += d->d_reclen;
      }
    }
    close(dfd);
    rmdir(tu_dir_);
  }
  _exit(1);
}

/* ---- Running the program --------------------------------------------------- */

struct run {
  pid_t pid;
  int out_fd, err_fd; /* -1 once at end of file */
  char out[65536];
  size_t out_len, out_used; /* out_used: bytes already returned as lines */
  char err[8192];
  size_t err_len;
  int status;
};

/* Start the program with these arguments (NULL-terminated, without argv[0]),
 * its stdout and stderr on pipes. */
static void run_start(struct run *r, const char *const *args)
{
  memset(r, 0, sizeof *r);
  const char *argv[16];
  size_t n = 0;
  argv[n++] = tool;
  for (; args[n - 1]; n++) {
    CHECK(n < 15, "too many arguments");
    argv[n] = args[n - 1];
  }
  argv[n] = NULL;
  int out[2], err[2];
  CHECK(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
  r->pid = tu_fork();
  if (r->pid == 0) {
    if (dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
      _exit(126);
    execv(tool, (char *const *)argv);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  r->out_fd = out[0];
  r->err_fd = err[0];
}

/* Read what is there within ms milliseconds; returns 0 once both pipes are at
 * end of file. */
static int run_pump(struct run *r, int ms)
{
  struct pollfd p[2] = { { r->out_fd, POLLIN, 0 }, { r->err_fd, POLLIN, 0 } };
  if (r->out_fd < 0 && r->err_fd < 0)
    return 0;
  int rc = poll(p, 2, ms);
  CHECK(rc >= 0 || errno == EINTR, "poll: %s", strerror(errno));
  for (int i = 0; i < 2 && rc > 0; i++) {
    if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
      continue;
    char *buf = i == 0 ? r->out : r->err;
    size_t *len = i == 0 ? &r->out_len : &r->err_len;
    size_t size = i == 0 ? sizeof r->out : sizeof r->err;
    CHECK(*len < size - 1, "the program wrote more than %zu bytes to %s", size - 1,
          i == 0 ? "stdout" : "stderr");
    ssize_t got = read(p[i].fd, buf + *len, size - 1 - *len);
    CHECK(got >= 0 || errno == EINTR, "read: %s", strerror(errno));
    if (got > 0) {
      *len += (size_t)got;
      buf[*len] = '\0';
    } else if (got == 0) {
      close(p[i].fd);
      if (i == 0)
        r->out_fd = -1;
      else
        r->err_fd = -1;
    }
  }
  return r->out_fd >= 0 || r->err_fd >= 0;
}

/* The next whole line of stdout (without its newline) within ms, or NULL. */
static const char *run_line(struct run *r, int ms)
{
  static char line[4096];
  int64_t end = tu_now_ns() + (int64_t)ms * 1000000;
  for (;;) {
    char *nl = memchr(r->out + r->out_used, '\n', r->out_len - r->out_used);
    if (nl) {
      size_t n = (size_t)(nl - (r->out + r->out_used));
      CHECK(n < sizeof line, "line of %zu bytes", n);
      memcpy(line, r->out + r->out_used, n);
      line[n] = '\0';
      r->out_used += n + 1;
      return line;
    }
    int64_t left = (end - tu_now_ns()) / 1000000;
    if (left <= 0 || !run_pump(r, (int)left))
      return NULL;
  }
}

/* Read to the end and reap, within ms; returns the exit status. */
static int run_finish(struct run *r, int ms)
{
  int64_t end = tu_now_ns() + (int64_t)ms * 1000000;
  for (;;) {
    int64_t left = (end - tu_now_ns()) / 1000000;
    if (left <= 0) {
      kill(r->pid, SIGKILL);
      break;
    }
    if (!run_pump(r, (int)left))
      break;
  }
  r->status = tu_reap(r->pid, 5000);
  CHECK(r->out_fd < 0 && r->err_fd < 0, "%s did not finish within %d ms", tool, ms);
  CHECK(WIFEXITED(r->status), "%s ended with signal %d; stderr: %s", tool,
        WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0, r->err);
  return WEXITSTATUS(r->status);
}

/* Run to completion; returns the exit status. */
static int run_tool(struct run *r, const char *const *args)
{
  run_start(r, args);
  return run_finish(r, 10000);
}

/* ---- Reading the JSON lines ------------------------------------------------- */

/* The text after "name": in a one-line object. */
static const char *jvalue(const char *line, const char *name)
{
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = strstr(line, key);
  CHECK(p != NULL, "no field \"%s\" in %s", name, line);
  CHECK(strstr(p + 1, key) == NULL, "field \"%s\" twice in %s", name, line);
  return p + strlen(key);
}

static uint64_t ju64(const char *line, const char *name)
{
  const char *v = jvalue(line, name);
  CHECK(*v >= '0' && *v <= '9', "field \"%s\" is not a whole number in %s", name, line);
  return strtoull(v, NULL, 10);
}

static int64_t ji64(const char *line, const char *name)
{
  const char *v = jvalue(line, name);
  CHECK((*v >= '0' && *v <= '9') || *v == '-', "field \"%s\" is not a number in %s", name,
        line);
  return strtoll(v, NULL, 10);
}

/* 1 if the field's value is exactly lit (true, false, null). */
static int jis(const char *line, const char *name, const char *lit)
{
  const char *v = jvalue(line, name);
  size_t n = strlen(lit);
  return strncmp(v, lit, n) == 0 && (v[n] == ',' || v[n] == '}');
}

#define CHECK_JU64(line, name, want)                                                    \
  do {                                                                                  \
    uint64_t got_ = ju64(line, name), want_ = (uint64_t)(want);                         \
    CHECK(got_ == want_, "%s is %llu, expected %llu in %s", name,                       \
          (unsigned long long)got_, (unsigned long long)want_, line);                   \
  } while (0)

#define CHECK_JIS(line, name, lit)                                                      \
  CHECK(jis(line, name, lit), "%s is not %s in %s", name, lit, line)

/* Run --once --json on path: exit 0, nothing on stderr, exactly one line that
 * is one object. Returns that line (a static buffer). */
static const char *once_json(const char *path)
{
  static struct run r;
  const char *args[] = { "--once", "--json", path, NULL };
  int rc = run_tool(&r, args);
  CHECK(rc == 0, "--once --json exited %d; stderr: %s", rc, r.err);
  CHECK(r.err_len == 0, "stderr not empty: %s", r.err);
  CHECK(r.out_len > 2 && r.out[0] == '{' && r.out[r.out_len - 2] == '}' &&
            memchr(r.out, '\n', r.out_len) == r.out + r.out_len - 1,
        "not exactly one JSON object on one line: %s", r.out);
  r.out[r.out_len - 1] = '\0';
  return r.out;
}

/* ---- Helpers on rings ---------------------------------------------------------- */

static void push_n(ipcring_writer *w, int n, size_t len)
{
  char buf[1024];
  CHECK(len <= sizeof buf, "len");
  memset(buf, 0x5a, len);
  for (int i = 0; i < n; i++)
    CHECK_RC(ipcring_writer_push(w, buf, len, (uint32_t)i, 0), 0);
}

static void pop_n(ipcring_reader *r, int n)
{
  char buf[1024];
  size_t len;
  for (int i = 0; i < n; i++)
    CHECK(ipcring_reader_pop(r, buf, sizeof buf, &len, NULL, 0) >= 0, "pop %d", i);
}

/* The whole file, and its times. */
struct file_image {
  char *bytes;
  size_t size;
  struct stat st;
};

static void image_take(struct file_image *im, const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  CHECK(fstat(fd, &im->st) == 0, "fstat: %s", strerror(errno));
  im->size = (size_t)im->st.st_size;
  im->bytes = malloc(im->size ? im->size : 1);
  CHECK(im->bytes != NULL, "malloc");
  CHECK(pread(fd, im->bytes, im->size, 0) == (ssize_t)im->size, "pread: %s", strerror(errno));
  close(fd);
}

static void write_file(const char *path, const void *data, size_t size)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
  CHECK(write(fd, data, size) == (ssize_t)size, "write %s: %s", path, strerror(errno));
  close(fd);
}

/* ---- Tests ----------------------------------------------------------------------- */

/* --once --json reports what the writer and the reader did: indices, fill,
 * pids, generations, both sides alive, eos; no rates from a single look. */
static void test_json_matches_ring(void)
{
  char *path = tu_path("live");
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  push_n(w, 5, 100); /* 5 records of 8 + 104 bytes */
  pop_n(r, 2);
  uint64_t widx = 5 * ipcring_record_size(100), ridx = 2 * ipcring_record_size(100);

  const char *j = once_json(path);
  CHECK(strstr(j, path) != NULL, "path not in %s", j);
  CHECK_JU64(j, "capacity", CAP);
  CHECK_JU64(j, "write_index", widx);
  CHECK_JU64(j, "read_index", ridx);
  CHECK_JU64(j, "fill_bytes", widx - ridx);
  CHECK(ju64(j, "time") > 1000000000u, "time is not Unix time in %s", j);
  CHECK_JIS(j, "eos", "false");
  CHECK(ji64(j, "writer_pid") == getpid(), "writer_pid in %s", j);
  CHECK(ji64(j, "reader_pid") == getpid(), "reader_pid in %s", j);
  CHECK_JU64(j, "writer_generation", 1);
  CHECK_JU64(j, "reader_generation", 1);
  CHECK_JIS(j, "writer_alive", "true");
  CHECK_JIS(j, "reader_alive", "true");
  CHECK_JIS(j, "write_bytes_per_sec", "null");
  CHECK_JIS(j, "read_bytes_per_sec", "null");
  CHECK_JIS(j, "problem", "null");
  double pct = strtod(jvalue(j, "fill_percent"), NULL);
  double want = 100.0 * (double)(widx - ridx) / CAP;
  CHECK(pct > want - 0.01 && pct < want + 0.01, "fill_percent %.3f, expected %.3f", pct, want);

  /* The same figures as the library's own view. */
  struct ipcring_info wi;
  CHECK_RC(ipcring_writer_info(w, &wi), 0);
  CHECK(wi.write_index == widx && wi.writer_generation == 1 && wi.reader_generation == 1,
        "the library's view differs");

  CHECK_RC(ipcring_writer_eos(w), 0);
  j = once_json(path);
  CHECK_JIS(j, "eos", "true");
  CHECK_JU64(j, "write_index", widx);

  ipcring_reader_close(r);
  ipcring_writer_close(w);
  CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
  free(path);
}

/* A side whose process died shows its last pid and generation as gone; a
 * side that never attached shows generation 0; a new reader and a writer
 * that takes the ring over show up with the next generations. */
static void test_dead_and_new_sides(void)
{
  char *path = tu_path("sides");
  pid_t child = tu_fork();
  if (child == 0) {
    ipcring_writer *w;
    if (ipcring_writer_create(path, CAP, 0, 0, &w) != 0)
      _exit(2);
    push_n(w, 3, 40);
    _exit(0); /* dies holding the ring: the kernel drops its lock */
  }
  int st = tu_reap(child, 10000);
  CHECK_CHILD_OK(st);
  uint64_t widx = 3 * ipcring_record_size(40);

  const char *j = once_json(path);
  CHECK(ji64(j, "writer_pid") == child, "writer_pid is not the dead child's %d in %s",
        (int)child, j);
  CHECK_JIS(j, "writer_alive", "false");
  CHECK_JU64(j, "writer_generation", 1);
  CHECK_JU64(j, "reader_generation", 0);
  CHECK_JU64(j, "reader_pid", 0);
  CHECK_JIS(j, "reader_alive", "false");
  CHECK_JU64(j, "write_index", widx);
  CHECK_JU64(j, "read_index", 0);
  CHECK_JIS(j, "eos", "false");

  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  pop_n(r, 1);
  j = once_json(path);
  CHECK(ji64(j, "reader_pid") == getpid(), "reader_pid in %s", j);
  CHECK_JU64(j, "reader_generation", 1);
  CHECK_JIS(j, "reader_alive", "true");
  CHECK_JIS(j, "writer_alive", "false");
  CHECK_JU64(j, "read_index", ipcring_record_size(40));

  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0); /* takes the ring over */
  j = once_json(path);
  CHECK(ji64(j, "writer_pid") == getpid(), "writer_pid in %s", j);
  CHECK_JU64(j, "writer_generation", 2);
  CHECK_JIS(j, "writer_alive", "true");
  CHECK_JU64(j, "write_index", widx);

  ipcring_reader_close(r);
  j = once_json(path);
  CHECK_JIS(j, "reader_alive", "false");
  CHECK_JU64(j, "reader_generation", 1);
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  j = once_json(path);
  CHECK_JIS(j, "reader_alive", "true");
  CHECK_JU64(j, "reader_generation", 2);

  ipcring_reader_close(r);
  ipcring_writer_close(w);
  CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
  free(path);
}

/* No mode of the program changes a byte of the file, nor its modification
 * or change time. */
static void test_file_unchanged(void)
{
  char *path = tu_path("unchanged");
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  push_n(w, 7, 300);
  pop_n(r, 3);
  struct file_image before, after;
  image_take(&before, path);

  const char *modes[][8] = {
    { "--once", path, NULL },
    { "--once", "--json", path, NULL },
    { "--json", "--count", "3", "--interval", "0.01", path, NULL },
    { "--count", "3", "--interval", "0.01", path, NULL },
  };
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    struct run run;
    int rc = run_tool(&run, modes[i]);
    CHECK(rc == 0, "mode %zu exited %d; stderr: %s", i, rc, run.err);
    CHECK(run.out_len > 0, "mode %zu printed nothing", i);
  }
  image_take(&after, path);
  CHECK(before.size == after.size, "size changed");
  for (size_t i = 0; i < before.size; i++)
    CHECK(before.bytes[i] == after.bytes[i], "byte %zu changed from 0x%02x to 0x%02x", i,
          (unsigned char)before.bytes[i], (unsigned char)after.bytes[i]);
  CHECK(before.st.st_mtim.tv_sec == after.st.st_mtim.tv_sec &&
            before.st.st_mtim.tv_nsec == after.st.st_mtim.tv_nsec,
        "modification time changed");
  CHECK(before.st.st_ctim.tv_sec == after.st.st_ctim.tv_sec &&
            before.st.st_ctim.tv_nsec == after.st.st_ctim.tv_nsec,
        "change time changed");
  free(before.bytes);
  free(after.bytes);

  ipcring_reader_close(r);
  ipcring_writer_close(w);
  CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
  free(path);
}

/* While the program watches a ring, it does not count as a reader: the
 * writer sees no reader, a reader can attach, and the program's next
 * refreshes show that reader alive. SIGINT (Ctrl-C) ends it with status 0. */
static void test_not_a_reader(void)
{
  char *path = tu_path("watched");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0);
  push_n(w, 2, 64);

  struct run run;
  const char *args[] = { "--json", "--interval", "0.02", path, NULL };
  run_start(&run, args);
  const char *line = run_line(&run, 10000);
  CHECK(line != NULL, "no first refresh within 10 s; stderr: %s", run.err);
  CHECK_JIS(line, "reader_alive", "false");

  /* It has the file open and mapped now. */
  CHECK_RC(ipcring_writer_reader_alive(w), 0);
  CHECK(ipcring_writer_reader_generation(w) == 0, "the program bumped the reader generation");
  CHECK_RC(ipcring_writer_wait_reader(w, 0), -EAGAIN);
  ipcring_reader *r = NULL;
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  pop_n(r, 1);

  int seen = 0, rated = 0;
  int64_t end = tu_now_ns() + 10000 * 1000000LL;
  while (!seen && tu_now_ns() < end && (line = run_line(&run, 1000)) != NULL) {
    rated |= !jis(line, "write_bytes_per_sec", "null");
    seen = jis(line, "reader_alive", "true") && ju64(line, "reader_generation") == 1 &&
           ju64(line, "read_index") == ipcring_record_size(64);
  }
  CHECK(seen, "no refresh showed the new reader within 10 s; stderr: %s", run.err);
  CHECK(rated, "refreshes after the first have no rates");

  CHECK(kill(run.pid, SIGINT) == 0, "kill: %s", strerror(errno));
  int rc = run_finish(&run, 10000);
  CHECK(rc == 0, "SIGINT: exit status %d, expected 0; stderr: %s", rc, run.err);

  ipcring_reader_close(r);
  ipcring_writer_close(w);
  CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
  free(path);
}

/* The live display ends with status 1 and says why when the file is removed,
 * or replaced by a new ring at the same path (renamed over it, so that the
 * path never goes missing in between). */
static void test_removed_or_replaced(void)
{
  char *path = tu_path("going");
  char *next = tu_path("going-next");
  for (int replace = 0; replace < 2; replace++) {
    ipcring_writer *w;
    CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0);
    struct run run;
    const char *args[] = { "--interval", "0.02", path, NULL };
    run_start(&run, args);
    CHECK(run_line(&run, 10000) != NULL, "no first refresh within 10 s; stderr: %s", run.err);
    ipcring_writer *w2 = NULL;
    if (replace) {
      CHECK_RC(ipcring_writer_create(next, CAP, 0, 0, &w2), 0);
      CHECK(rename(next, path) == 0, "rename: %s", strerror(errno));
    } else {
      CHECK_RC(ipcring_writer_unlink(w), 0);
    }
    ipcring_writer_close(w);
    int rc = run_finish(&run, 10000);
    CHECK(rc == 1, "exit status %d, expected 1", rc);
    const char *why = replace ? "replaced" : "removed";
    CHECK(strstr(run.err, path) && strstr(run.err, why), "stderr does not say %s: %s", why,
          run.err);
    if (w2) {
      ipcring_writer_close(w2);
      CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
    }
  }
  free(next);
  free(path);
}

/* Exit status 1 and a message naming the path and the reason for a missing
 * path, a file that is not a ring and rings with damaged headers; nothing on
 * stdout. */
static void test_runtime_errors(void)
{
  char *ring = tu_path("model");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(ring, 4096, 0, 0, &w), 0);
  ipcring_writer_close(w);
  struct file_image model;
  image_take(&model, ring);
  CHECK(model.size == IPCRING_HEADER_SIZE + 4096, "model ring is %zu bytes", model.size);

  struct {
    const char *name;
    size_t off;   /* header field to change in a copy of a good ring, or SIZE_MAX */
    uint64_t val; /* its new value */
    size_t size;  /* its width; with SIZE_MAX: 0 a text file, 1 an empty file,
                   * 2 the good ring cut to `val` bytes */
    const char *says;
  } cases[] = {
    { "text", SIZE_MAX, 0, 0, "not an ipcring" },
    { "empty", SIZE_MAX, 0, 1, "not an ipcring" },
    { "version", offsetof(struct ipcring_shared, version), 2, 4, "version" },
    { "header-size", offsetof(struct ipcring_shared, header_size), 512, 4, "header size" },
    { "capacity", offsetof(struct ipcring_shared, capacity), 5000, 8, "capacity" },
    { "capacity-huge", offsetof(struct ipcring_shared, capacity), (uint64_t)1 << 40, 8,
      "capacity" },
    { "flags", offsetof(struct ipcring_shared, flags), 1, 4, "flags" },
    { "short", SIZE_MAX, IPCRING_HEADER_SIZE + 2048, 2, "truncated" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *p = tu_path(cases[i].name);
    if (cases[i].off != SIZE_MAX) {
      char *b = malloc(model.size);
      CHECK(b != NULL, "malloc");
      memcpy(b, model.bytes, model.size);
      memcpy(b + cases[i].off, &cases[i].val, cases[i].size); /* little-endian */
      write_file(p, b, model.size);
      free(b);
    } else if (cases[i].size == 0) {
      static const char text[] = "this is not a ring, just some text\n";
      write_file(p, text, sizeof text - 1);
    } else if (cases[i].size == 1) {
      write_file(p, "", 0);
    } else {
      write_file(p, model.bytes, (size_t)cases[i].val);
    }
    const char *args[] = { "--once", p, NULL };
    struct run run;
    int rc = run_tool(&run, args);
    CHECK(rc == 1, "%s: exit status %d, expected 1; stderr: %s", cases[i].name, rc, run.err);
    CHECK(run.out_len == 0, "%s: wrote to stdout: %s", cases[i].name, run.out);
    CHECK(strstr(run.err, p) && strstr(run.err, cases[i].says),
          "%s: stderr does not name the file and say \"%s\": %s", cases[i].name, cases[i].says,
          run.err);
    CHECK(unlink(p) == 0, "unlink: %s", strerror(errno));
    free(p);
  }

  char *missing = tu_path("missing");
  const char *args_missing[] = { "--once", "--json", missing, NULL };
  struct run run;
  int rc = run_tool(&run, args_missing);
  CHECK(rc == 1, "missing path: exit status %d, expected 1", rc);
  CHECK(run.out_len == 0, "missing path: wrote to stdout: %s", run.out);
  CHECK(strstr(run.err, missing) && strstr(run.err, "no such file"),
        "missing path: stderr does not say so: %s", run.err);
  free(missing);

  const char *args_dir[] = { "--once", tu_tmpdir(), NULL };
  rc = run_tool(&run, args_dir);
  CHECK(rc == 1 && strstr(run.err, "directory"), "directory: exit %d, stderr: %s", rc, run.err);

  free(model.bytes);
  CHECK(unlink(ring) == 0, "unlink: %s", strerror(errno));
  free(ring);
}

/* A ring whose shared values are inconsistent is still reported (status 0),
 * with the inconsistency named in "problem" and no fill level made up from
 * it; a consistent one has "problem": null. */
static void test_inconsistent_values(void)
{
  char *model = tu_path("consistent");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(model, 4096, 0, 0, &w), 0);
  push_n(w, 1, 8);
  ipcring_writer_close(w);
  struct file_image im;
  image_take(&im, model);
  CHECK_JIS(once_json(model), "problem", "null");

  struct {
    const char *name;
    uint64_t widx, ridx;
    uint32_t eos;
    const char *says;
    int fill_null;
  } cases[] = {
    { "w-below-r", 64, 128, 0, "below", 1 },
    { "over-capacity", 8192, 0, 0, "capacity", 1 },
    { "misaligned", 13, 0, 0, "multiple of 8", 1 },
    { "eos-7", 64, 32, 7, "eos", 0 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *p = tu_path(cases[i].name);
    memcpy(im.bytes + offsetof(struct ipcring_shared, write_index), &cases[i].widx, 8);
    memcpy(im.bytes + offsetof(struct ipcring_shared, read_index), &cases[i].ridx, 8);
    memcpy(im.bytes + offsetof(struct ipcring_shared, eos), &cases[i].eos, 4);
    write_file(p, im.bytes, im.size);
    const char *j = once_json(p);
    CHECK(!jis(j, "problem", "null") && strstr(jvalue(j, "problem"), cases[i].says),
          "%s: problem does not say \"%s\" in %s", cases[i].name, cases[i].says, j);
    CHECK_JU64(j, "write_index", cases[i].widx);
    CHECK_JU64(j, "read_index", cases[i].ridx);
    if (cases[i].fill_null)
      CHECK_JIS(j, "fill_bytes", "null");
    else
      CHECK_JU64(j, "fill_bytes", cases[i].widx - cases[i].ridx);
    CHECK(unlink(p) == 0, "unlink: %s", strerror(errno));
    free(p);
  }
  free(im.bytes);
  CHECK(unlink(model) == 0, "unlink: %s", strerror(errno));
  free(model);
}

/* Bad usage gets exit status 2, a message saying what is wrong and a pointer
 * to --help on stderr, and nothing on stdout; --help itself succeeds. */
static void test_usage_errors(void)
{
  char *ring = tu_path("usage");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(ring, 4096, 0, 0, &w), 0);
  struct {
    const char *args[6];
    const char *says;
  } cases[] = {
    { { NULL }, "no ring file" },
    { { "--bogus", ring, NULL }, "--bogus" },
    { { "--interval", "0", ring, NULL }, "--interval" },
    { { "--interval", "abc", ring, NULL }, "--interval" },
    { { "--interval", "-1", ring, NULL }, "--interval" },
    { { "--count", "0", ring, NULL }, "--count" },
    { { "--count", "2x", ring, NULL }, "--count" },
    { { "--once", "--count", "3", ring, NULL }, "--count" },
    { { ring, ring, NULL }, "one ring file" },
    { { ring, "--interval", NULL }, "needs a value" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run run;
    int rc = run_tool(&run, cases[i].args);
    CHECK(rc == 2, "case %zu: exit status %d, expected 2; stderr: %s", i, rc, run.err);
    CHECK(run.out_len == 0, "case %zu: wrote to stdout: %s", i, run.out);
    CHECK(strstr(run.err, cases[i].says) && strstr(run.err, "--help"),
          "case %zu: stderr does not say \"%s\" and point to --help: %s", i, cases[i].says,
          run.err);
  }
  const char *help[] = { "--help", NULL };
  struct run run;
  int rc = run_tool(&run, help);
  CHECK(rc == 0 && strstr(run.out, "Usage:") && run.err_len == 0, "--help: exit %d, out %s",
        rc, run.out);
  ipcring_writer_close(w);
  CHECK(unlink(ring) == 0, "unlink: %s", strerror(errno));
  free(ring);
}

#define RUN(fn)                                                                         \
  do {                                                                                  \
    current_test = #fn;                                                                 \
    fn();                                                                               \
    printf("ok %s\n", #fn);                                                             \
  } while (0)

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGALRM, watchdog);
  signal(SIGPIPE, SIG_IGN);
  alarm(100);
  tool = getenv("IPCRING_STAT");
  if (!tool || !*tool)
    tool = IPCRING_STAT_PATH;
  CHECK(access(tool, X_OK) == 0, "%s: %s (build it, or set IPCRING_STAT)", tool,
        strerror(errno));
  tu_tmpdir();
  RUN(test_json_matches_ring);
  RUN(test_dead_and_new_sides);
  RUN(test_file_unchanged);
  RUN(test_not_a_reader);
  RUN(test_removed_or_replaced);
  RUN(test_runtime_errors);
  RUN(test_inconsistent_values);
  RUN(test_usage_errors);
  printf("all ipcring-stat tests passed\n");
  return 0;
}
