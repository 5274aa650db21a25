/* Sandbox support: a ring in an inherited, sealed memfd; what a reader checks
 * before it trusts a descriptor or a path; and a ring file truncated under a
 * running side, which must give a clear sticky error (-EFAULT) instead of
 * killing the process with SIGBUS.
 *
 * The truncation cases stream in a child process (the side under test)
 * against a peer in the parent that touches only the ring's header page
 * through a mapping of its own, so that cutting the data area off
 * (ftruncate() to the header size, done by the parent: another process than
 * the one under test) reaches exactly one side. A third case runs two real
 * sides and cuts the whole file. Each measures, on CLOCK_MONOTONIC (shared by
 * all processes), the time from the truncation to the error the side
 * returned, and asserts a generous bound (TRUNC_BOUND_MS; a streaming side
 * meets the cut pages within microseconds).
 *
 * Run as root, the foreign-owner case chowns a ring to "nobody"; otherwise it
 * is skipped (and said so). */
#include "testutil.h"

#include "ipcring-guard.h"
#include "ipcring-layout.h"
#include "ipcring-private.h"
#include "ipcring.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define MS 1000000LL
#define SEC 1000000000LL
#define OFF(field) offsetof(struct ipcring_shared, field)
#define CAP 65536u
/* Payload of the streamed records: 56 + 8 = 64 bytes, so records tile the
 * data area exactly and record n always sits at offset (n * 64) % CAP. */
#define REC_PAYLOAD 56u
#define REC_SIZE 64u
#define SLOTS (CAP / REC_SIZE)
#define TRUNC_BOUND_MS 2000 /* truncation to error; expected: well under 1 ms */
#define PIPE_TIMEOUT_MS 20000
#define XPROC_RECORDS 20000u
#define STREAM_BEFORE_CUT 5000u /* records streamed before the cut */

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* ---- helpers ------------------------------------------------------------ */

static void fill_payload(uint8_t *p, uint64_t seq)
{
  for (unsigned k = 0; k < REC_PAYLOAD; k++)
    p[k] = (uint8_t)(seq * 7 + k);
}

static int payload_ok(const uint8_t *p, size_t len, uint32_t tag, uint64_t seq)
{
  if (len != REC_PAYLOAD || tag != (uint32_t)(seq % SLOTS) + 1)
    return 0;
  for (unsigned k = 0; k < REC_PAYLOAD; k++)
    if (p[k] != (uint8_t)(seq % SLOTS * 7 + k))
      return 0;
  return 1;
}

/* Push streamed record seq (its tag and bytes depend on seq % SLOTS only, so
 * the raw writer below can produce the same records by slot). */
static int push_rec(ipcring_writer *w, uint64_t seq, int64_t timeout_ns)
{
  uint8_t buf[REC_PAYLOAD];
  fill_payload(buf, seq % SLOTS);
  return ipcring_writer_push(w, buf, sizeof buf, (uint32_t)(seq % SLOTS) + 1, timeout_ns);
}

static int get_seals(int fd)
{
  return fcntl(fd, F_GET_SEALS);
}

/* A memfd of `size` bytes holding `content`, with these seals added. */
static int memfd_with(const void *content, size_t len, uint64_t size, int seals)
{
  int fd = memfd_create("ipcring-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK(fd >= 0, "memfd_create: %s", strerror(errno));
  CHECK(ftruncate(fd, (off_t)size) == 0, "ftruncate: %s", strerror(errno));
  if (len)
    CHECK(pwrite(fd, content, len, 0) == (ssize_t)len, "pwrite: %s", strerror(errno));
  if (seals)
    CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0, "F_ADD_SEALS %#x: %s", seals, strerror(errno));
  return fd;
}

/* The bytes of a real ring of capacity cap, with a few records in it and no
 * writer attached. *size receives the file size. */
static uint8_t *ring_image(uint64_t cap, size_t *size)
{
  int fd = ipcring_memfd_create(cap, "image");
  CHECK(fd >= 0, "ipcring_memfd_create: %s", ipcring_strerror(fd));
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create_fd(fd, 0, 0, &w), 0);
  for (uint64_t i = 0; i < 3; i++)
    CHECK_RC(push_rec(w, i, 0), 0);
  ipcring_writer_close(w);
  *size = IPCRING_HEADER_SIZE + cap;
  uint8_t *img = malloc(*size);
  CHECK(img && pread(fd, img, *size, 0) == (ssize_t)*size, "pread image");
  close(fd);
  return img;
}

static void put_u32(uint8_t *img, size_t off, uint32_t v)
{
  memcpy(img + off, &v, 4);
}

static void put_u64(uint8_t *img, size_t off, uint64_t v)
{
  memcpy(img + off, &v, 8);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Lock one byte of the ring file with an open-file-description lock, as the
 * library does to show a side is alive. */
static void ofd_lock(int fd, int byte)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  CHECK(fcntl(fd, F_OFD_SETLK, &fl) == 0, "F_OFD_SETLK byte %d: %s", byte, strerror(errno));
}

/* ---- messages from children ---------------------------------------------- */

struct result {
  char code;        /* 'P' progress, 'R' result */
  int rc1, rc2, rc3; /* first error, the next call's, the info call's */
  int64_t t_err;    /* when the first error returned */
  uint64_t n;       /* records streamed */
  uint64_t bad;     /* records that did not verify */
  uint64_t bad_at;  /* index of the last one */
};

static void say(int fd, const struct result *m)
{
  CHECK(write(fd, m, sizeof *m) == (ssize_t)sizeof *m, "write: %s", strerror(errno));
}

static struct result hear(int fd, char code)
{
  struct pollfd pfd = { fd, POLLIN, 0 };
  int rc;
  do
    rc = poll(&pfd, 1, PIPE_TIMEOUT_MS);
  while (rc < 0 && errno == EINTR);
  CHECK(rc == 1, "no message '%c' from the child within %d ms", code, PIPE_TIMEOUT_MS);
  struct result m;
  CHECK(read(fd, &m, sizeof m) == (ssize_t)sizeof m, "short read from the child");
  CHECK(m.code == code, "child said '%c', expected '%c'", m.code, code);
  return m;
}

/* ---- exec'd children: the descriptor crosses exec() -------------------- */

static int child_writer_main(int fd)
{
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || (fl & FD_CLOEXEC))
    return 10; /* not inherited as it should be */
  ipcring_writer *w;
  int rc = ipcring_writer_create_fd(fd, 0, 0, &w);
  if (rc != 0) {
    fprintf(stderr, "child writer: create_fd: %s\n", ipcring_strerror(rc));
    return 11;
  }
  for (uint64_t i = 0; i < XPROC_RECORDS; i++)
    if ((rc = push_rec(w, i, 10 * SEC)) != 0) {
      fprintf(stderr, "child writer: push %" PRIu64 ": %s\n", i, ipcring_strerror(rc));
      return 12;
    }
  if (ipcring_writer_eos(w) != 0 || ipcring_writer_flush(w, 10 * SEC) != 0)
    return 13;
  ipcring_writer_close(w);
  return 0;
}

static int read_all(ipcring_reader *r, uint64_t expect, const char *who)
{
  uint8_t buf[256];
  size_t len;
  uint32_t tag;
  for (uint64_t i = 0;; i++) {
    int rc = ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, 10 * SEC);
    if (rc == -ENODATA)
      return i == expect ? 0 : (fprintf(stderr, "%s: %" PRIu64 " records, expected %" PRIu64 "\n",
                                        who, i, expect),
                                20);
    if (rc < 0) {
      fprintf(stderr, "%s: pop %" PRIu64 ": %s\n", who, i, ipcring_strerror(rc));
      return 21;
    }
    if (!payload_ok(buf, len, tag, i)) {
      fprintf(stderr, "%s: record %" PRIu64 " is wrong\n", who, i);
      return 22;
    }
  }
}

static int child_reader_main(int fd)
{
  ipcring_reader *r;
  int rc = ipcring_reader_open_fd(fd, 0, &r);
  if (rc != 0) {
    fprintf(stderr, "child reader: open_fd: %s\n", ipcring_strerror(rc));
    return 30;
  }
  rc = read_all(r, XPROC_RECORDS, "child reader");
  ipcring_reader_close(r);
  return rc;
}

/* Start this program again as a child side, handing it fd (FD_CLOEXEC off in
 * the child only). */
static pid_t spawn_side(const char *role, int fd)
{
  pid_t pid = tu_fork();
  if (pid == 0) {
    if (fcntl(fd, F_SETFD, 0) != 0)
      _exit(2);
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    execl("/proc/self/exe", "test_sandbox", role, num, (char *)NULL);
    _exit(3);
  }
  return pid;
}

/* ---- tests ----------------------------------------------------------------- */

/* ipcring_memfd_create() gives a descriptor of the right size, sealed so
 * that nobody can resize it or change its seals, close-on-exec, and rejects
 * capacities the ring does not allow. */
static void test_memfd_helper(void)
{
  int fd = ipcring_memfd_create(16384, "sandbox-test");
  CHECK(fd >= 0, "ipcring_memfd_create: %s", ipcring_strerror(fd));
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size == IPCRING_HEADER_SIZE + 16384,
        "size %lld, expected %u", (long long)st.st_size, IPCRING_HEADER_SIZE + 16384);
  CHECK(get_seals(fd) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), "seals %#x",
        get_seals(fd));
  CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC, "not close-on-exec");
  CHECK(ftruncate(fd, 0) != 0 && errno == EPERM, "a sealed memfd could be shrunk");
  CHECK(ftruncate(fd, 1 << 20) != 0 && errno == EPERM, "a sealed memfd could be grown");
  CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) != 0 && errno == EPERM,
        "seals could be added to a memfd sealed with F_SEAL_SEAL");
  /* No ring in it yet: a reader sees no magic. */
  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), -EINVAL);
  close(fd);

  fd = ipcring_memfd_create(0, NULL);
  CHECK(fd >= 0 && fstat(fd, &st) == 0 &&
            (uint64_t)st.st_size == IPCRING_HEADER_SIZE + IPCRING_CAPACITY_DEFAULT,
        "capacity 0 did not give the default");
  close(fd);
  CHECK_RC(ipcring_memfd_create(3000, NULL), -EINVAL);
  CHECK_RC(ipcring_memfd_create(IPCRING_CAPACITY_MIN / 2, NULL), -EINVAL);
  CHECK_RC(ipcring_memfd_create(IPCRING_CAPACITY_MAX * 2, NULL), -EINVAL);
  CHECK(strstr(ipcring_strerror(-EFAULT), "truncated") != NULL, "strerror(-EFAULT): %s",
        ipcring_strerror(-EFAULT));
  CHECK(strstr(ipcring_strerror(-EBADFD), "seals") != NULL, "strerror(-EBADFD): %s",
        ipcring_strerror(-EBADFD));
}

/* The writer on a sealed memfd: the size gives the capacity (0 or equal is
 * accepted, anything else refused), a fresh one gets a new ring, a stale one
 * is taken over at its write index, and a live writer keeps it. */
static void test_create_fd_sealed(void)
{
  int fd = ipcring_memfd_create(16384, "create-fd");
  CHECK(fd >= 0, "ipcring_memfd_create: %s", ipcring_strerror(fd));
  ipcring_writer *w, *w2;
  CHECK_RC(ipcring_writer_create_fd(fd, 32768, 0, &w), -EINVAL);
  CHECK_RC(ipcring_writer_create_fd(fd, 0, IPCRING_CREATE_NO_TAKEOVER, &w), 0);
  struct ipcring_info info;
  CHECK_RC(ipcring_writer_info(w, &info), 0);
  CHECK(info.capacity == 16384, "capacity %" PRIu64 ", expected 16384", info.capacity);
  CHECK_RC(ipcring_writer_create_fd(fd, 0, 0, &w2), -EBUSY);
  for (uint64_t i = 0; i < 5; i++)
    CHECK_RC(push_rec(w, i, 0), 0);
  uint64_t widx = info.write_index + 5 * REC_SIZE;
  ipcring_writer_close(w);

  CHECK_RC(ipcring_writer_create_fd(fd, 0, IPCRING_CREATE_NO_TAKEOVER, &w), -EEXIST);
  CHECK_RC(ipcring_writer_create_fd(fd, 8192, 0, &w), -EINVAL);
  CHECK_RC(ipcring_writer_create_fd(fd, 16384, 0, &w), 0);
  CHECK_RC(ipcring_writer_info(w, &info), 0);
  CHECK(info.write_index == widx, "took over at %" PRIu64 ", expected %" PRIu64,
        info.write_index, widx);
  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), 0);
  for (uint64_t i = 5; i < 8; i++)
    CHECK_RC(push_rec(w, i, 0), 0);
  ipcring_writer_eos(w);
  CHECK_RC(read_all(r, 8, "reader"), 0);
  ipcring_reader_close(r);
  ipcring_writer_close(w);
  close(fd);

  /* Sealed against writing: no writable mapping is possible. */
  fd = memfd_with(NULL, 0, IPCRING_HEADER_SIZE + 8192,
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
  CHECK_RC(ipcring_writer_create_fd(fd, 0, 0, &w), -EBADFD);
  close(fd);
  /* A fixed size that is no ring's. */
  fd = memfd_with(NULL, 0, IPCRING_HEADER_SIZE + 5000, F_SEAL_SHRINK | F_SEAL_GROW);
  CHECK_RC(ipcring_writer_create_fd(fd, 0, 0, &w), -EINVAL);
  close(fd);
  /* Not sealed: the writer sizes it as before (and a reader then refuses it,
   * see test_fd_refusals). */
  fd = memfd_with(NULL, 0, 0, 0);
  CHECK_RC(ipcring_writer_create_fd(fd, 8192, 0, &w), 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size == IPCRING_HEADER_SIZE + 8192, "unsealed size %lld",
        (long long)st.st_size);
  ipcring_writer_close(w);
  close(fd);
}

/* The ring crosses fork() and exec() in an inherited sealed memfd, writer in
 * the child and reader in the parent, then the other way round: every record
 * arrives, in order, and end of stream follows. */
static void test_memfd_exec_roundtrip(void)
{
  /* Writer in the child: the parent waits until the child has put a ring in
   * the memfd (its magic appears), as a launcher does. */
  int fd = ipcring_memfd_create(CAP, "roundtrip");
  CHECK(fd >= 0, "ipcring_memfd_create: %s", ipcring_strerror(fd));
  pid_t pid = spawn_side("writer-child", fd);
  int64_t end = tu_now_ns() + 10 * SEC;
  uint64_t magic = 0;
  while (pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic && magic != IPCRING_MAGIC) {
    CHECK(tu_now_ns() < end, "the child made no ring within 10 s");
    CHECK(waitpid(pid, NULL, WNOHANG) == 0, "the child writer ended before making the ring");
    tu_sleep_ms(1);
  }
  ipcring_reader *r;
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), 0);
  CHECK_RC(read_all(r, XPROC_RECORDS, "parent reader"), 0);
  ipcring_reader_close(r);
  int st = tu_reap(pid, 20000);
  CHECK_CHILD_OK(st);
  close(fd);

  /* Reader in the child. */
  fd = ipcring_memfd_create(CAP, "roundtrip");
  CHECK(fd >= 0, "ipcring_memfd_create: %s", ipcring_strerror(fd));
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create_fd(fd, 0, 0, &w), 0);
  pid = spawn_side("reader-child", fd);
  for (uint64_t i = 0; i < XPROC_RECORDS; i++)
    CHECK_RC(push_rec(w, i, 10 * SEC), 0);
  CHECK_RC(ipcring_writer_eos(w), 0);
  CHECK_RC(ipcring_writer_flush(w, 10 * SEC), 0);
  st = tu_reap(pid, 20000);
  CHECK_CHILD_OK(st);
  ipcring_writer_close(w);
  close(fd);
  printf("  %u records each way through an exec'd child\n", XPROC_RECORDS);
}

/* What ipcring_reader_open_fd() refuses: a memfd whose size could change
 * (no seals, or only one of shrink and grow), one sealed against writing, an
 * unlinked file without seals, a sealed memfd of the wrong size or with a
 * bad header. The same image, sealed and sized right, opens (so the refusals
 * are about what was changed). */
static void test_fd_refusals(void)
{
  size_t size;
  uint8_t *img = ring_image(8192, &size);
  const int all = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  ipcring_reader *r;
  int fd;

  fd = memfd_with(img, size, size, all);
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), 0);
  ipcring_reader_close(r);
  close(fd);

  const struct {
    const char *what;
    int seals;
    int want;
  } seal_cases[] = {
    { "no seals", 0, -EBADFD },
    { "grow only", F_SEAL_GROW, -EBADFD },
    { "shrink only", F_SEAL_SHRINK, -EBADFD },
    { "shrink and grow without F_SEAL_SEAL", F_SEAL_SHRINK | F_SEAL_GROW, 0 },
    { "sealed against future writes", F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE, -EBADFD },
  };
  for (size_t i = 0; i < sizeof seal_cases / sizeof seal_cases[0]; i++) {
    fd = memfd_with(img, size, size, seal_cases[i].seals);
    int rc = ipcring_reader_open_fd(fd, 0, &r);
    CHECK(rc == seal_cases[i].want, "%s: open_fd gave %d (%s), expected %d", seal_cases[i].what,
          rc, ipcring_strerror(rc), seal_cases[i].want);
    if (rc == 0)
      ipcring_reader_close(r);
    close(fd);
  }

  /* Wrong sizes, sealed. */
  const uint64_t sizes[] = { IPCRING_HEADER_SIZE + 4096, IPCRING_HEADER_SIZE + 16384,
                             IPCRING_HEADER_SIZE + 8192 + 4096, IPCRING_HEADER_SIZE + 8000 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    fd = memfd_with(img, sizes[i] < size ? sizes[i] : size, sizes[i], all);
    int rc = ipcring_reader_open_fd(fd, 0, &r);
    CHECK(rc == -EPROTO, "size %" PRIu64 ": open_fd gave %d (%s), expected -EPROTO", sizes[i],
          rc, ipcring_strerror(rc));
    close(fd);
  }

  /* Bad headers, sealed and sized for the capacity the image has. */
  struct {
    const char *what;
    size_t off;
    int width;
    uint64_t val;
    int want;
  } bad[] = {
    { "magic", OFF(magic), 8, 0x4b4e554a4b4e554aull, -EINVAL },
    { "zero magic", OFF(magic), 8, 0, -EINVAL },
    { "version", OFF(version), 4, 99, -EPROTONOSUPPORT },
    { "header size", OFF(header_size), 4, 8192, -EPROTO },
    { "flags", OFF(flags), 4, 1, -EPROTO },
    { "capacity not a power of two", OFF(capacity), 8, 8000, -EPROTO },
    { "capacity of another size", OFF(capacity), 8, 4096, -EPROTO },
    { "read index past write index", OFF(read_index), 8, 4 * REC_SIZE, -EPROTO },
    { "unaligned write index", OFF(write_index), 8, 3 * REC_SIZE + 4, -EPROTO },
    { "write index beyond a full ring", OFF(write_index), 8, 8192 + REC_SIZE, -EPROTO },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t *copy = malloc(size);
    CHECK(copy, "malloc");
    memcpy(copy, img, size);
    if (bad[i].width == 4)
      put_u32(copy, bad[i].off, (uint32_t)bad[i].val);
    else
      put_u64(copy, bad[i].off, bad[i].val);
    fd = memfd_with(copy, size, size, all);
    int rc = ipcring_reader_open_fd(fd, 0, &r);
    CHECK(rc == bad[i].want, "%s: open_fd gave %d (%s), expected %d", bad[i].what, rc,
          ipcring_strerror(rc), bad[i].want);
    close(fd);
    free(copy);
  }

  /* An unlinked plain file holding the ring: refused; once linked (ours,
   * 0600) it passes as a path ring does; other-writable, it does not. */
  const char *dir = tu_tmpdir();
  fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  CHECK(fd >= 0, "O_TMPFILE: %s", strerror(errno));
  CHECK(pwrite(fd, img, size, 0) == (ssize_t)size, "pwrite");
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), -EBADFD);
  char *linked = tu_path("linked");
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  CHECK(linkat(AT_FDCWD, proc, AT_FDCWD, linked, AT_SYMLINK_FOLLOW) == 0, "linkat: %s",
        strerror(errno));
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), 0);
  ipcring_reader_close(r);
  CHECK(fchmod(fd, 0602) == 0, "fchmod");
  CHECK_RC(ipcring_reader_open_fd(fd, IPCRING_OPEN_ANY_OWNER, &r), -EPERM);
  close(fd);
  unlink(linked);
  free(linked);

  /* Not regular files. */
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  CHECK_RC(ipcring_reader_open_fd(p[0], 0, &r), -EINVAL);
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create_fd(p[1], 0, 0, &w), -EINVAL);
  close(p[0]);
  close(p[1]);
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), -EINVAL);
  close(fd);
  free(img);
}

static struct stat must_lstat(const char *p)
{
  struct stat st;
  CHECK(lstat(p, &st) == 0, "lstat %s: %s", p, strerror(errno));
  return st;
}

/* Paths: a symbolic link is never followed (nor replaced) by the writer or
 * the reader, a file that is not a ring is left exactly as it was, a foreign
 * owner is refused, and a new ring file is 0600 whatever the umask. */
static void test_path_refusals(void)
{
  ipcring_writer *w;
  ipcring_reader *r;
  char *target = tu_path("target");
  char *link = tu_path("link");
  CHECK(symlink(target, link) == 0, "symlink: %s", strerror(errno));
  /* Dangling link: following it would create the target. */
  CHECK_RC(ipcring_writer_create(link, 4096, 0, 0, &w), -ELOOP);
  CHECK(access(target, F_OK) != 0 && errno == ENOENT, "the writer created the link's target");
  /* Link to a live ring. */
  CHECK_RC(ipcring_writer_create(target, 4096, 0, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(link, 0, &r), -ELOOP);
  ipcring_writer_close(w);
  /* Link to a stale ring: no takeover through it, the link stays. */
  CHECK_RC(ipcring_writer_create(link, 4096, 0, 0, &w), -ELOOP);
  CHECK_RC(ipcring_writer_create(link, 8192, 0, 0, &w), -ELOOP);
  struct stat ls = must_lstat(link);
  char buf[256];
  ssize_t n = readlink(link, buf, sizeof buf - 1);
  CHECK(S_ISLNK(ls.st_mode) && n == (ssize_t)strlen(target) && memcmp(buf, target, (size_t)n) == 0,
        "the link was changed");
  unlink(link);
  unlink(target);

  /* Files that are not rings (short text; 8 KB, big enough to hold a ring
   * header, of zeros and of text): same inode, bytes, size, mode and time. */
  static uint8_t big_zeros[8192], big_text[8192];
  memset(big_text, 'x', sizeof big_text);
  const struct {
    const void *bytes;
    size_t len;
  } files[] = { { "not a ring: somebody's data\n", 28 },
                { big_zeros, sizeof big_zeros },
                { big_text, sizeof big_text } };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char *file = tu_path("precious");
    int fd = open(file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(fd >= 0 && write(fd, files[i].bytes, files[i].len) == (ssize_t)files[i].len,
          "write %s", file);
    struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
    CHECK(futimens(fd, old) == 0, "futimens");
    close(fd);
    struct stat before = must_lstat(file);
    CHECK_RC(ipcring_writer_create(file, 4096, 0, 0, &w), -EEXIST);
    CHECK_RC(ipcring_writer_create(file, 4096, 0, IPCRING_CREATE_NO_TAKEOVER, &w), -EEXIST);
    CHECK_RC(ipcring_reader_open(file, 0, &r), -EINVAL);
    struct stat after = must_lstat(file);
    uint8_t *back = malloc(files[i].len + 1);
    CHECK(back, "malloc");
    fd = open(file, O_RDONLY | O_CLOEXEC);
    n = read(fd, back, files[i].len + 1);
    close(fd);
    CHECK(after.st_ino == before.st_ino && after.st_size == before.st_size &&
              after.st_mode == before.st_mode && after.st_mtime == before.st_mtime &&
              n == (ssize_t)files[i].len && memcmp(back, files[i].bytes, (size_t)n) == 0,
          "the writer changed a file that is not a ring (case %zu)", i);
    free(back);
    unlink(file);
    free(file);
  }

  /* A FIFO and a directory at the path. */
  char *fifo = tu_path("fifo");
  CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
  CHECK_RC(ipcring_writer_create(fifo, 4096, 0, 0, &w), -EEXIST);
  CHECK_RC(ipcring_reader_open(fifo, 0, &r), -EINVAL);
  CHECK(S_ISFIFO(must_lstat(fifo).st_mode), "the fifo was replaced");
  unlink(fifo);
  free(fifo);

  /* Group and other permission bits: refused unless the reader accepts
   * them with IPCRING_OPEN_GROUP_ACCESS; other-writable never. A sealed
   * memfd (mode 0777 by nature) is not judged by its mode. */
  {
    char *gp = tu_path("group");
    const struct {
      mode_t mode;
      int plain, group_ok;
    } perms[] = { { 0600, 0, 0 },      { 0640, -EPERM, 0 },    { 0660, -EPERM, 0 },
                  { 0604, -EPERM, 0 }, { 0644, -EPERM, 0 },    { 0602, -EPERM, -EPERM },
                  { 0666, -EPERM, -EPERM }, { 0601, -EPERM, -EPERM } };
    CHECK_RC(ipcring_writer_create(gp, 4096, 0, 0, &w), 0);
    for (size_t i = 0; i < sizeof perms / sizeof perms[0]; i++) {
      CHECK(chmod(gp, perms[i].mode) == 0, "chmod");
      int rc = ipcring_reader_open(gp, 0, &r);
      CHECK(rc == perms[i].plain, "mode %04o: open gave %d, expected %d",
            (unsigned)perms[i].mode, rc, perms[i].plain);
      if (rc == 0)
        ipcring_reader_close(r);
      rc = ipcring_reader_open(gp, IPCRING_OPEN_GROUP_ACCESS, &r);
      CHECK(rc == perms[i].group_ok, "mode %04o with IPCRING_OPEN_GROUP_ACCESS: open gave %d, "
            "expected %d", (unsigned)perms[i].mode, rc, perms[i].group_ok);
      if (rc == 0)
        ipcring_reader_close(r);
    }
    ipcring_writer_close(w);
    unlink(gp);
    free(gp);
  }

  /* Mode 0 gives 0600 even under umask 0. */
  char *p = tu_path("mode");
  mode_t um = umask(0);
  CHECK_RC(ipcring_writer_create(p, 4096, 0, 0, &w), 0);
  umask(um);
  CHECK((must_lstat(p).st_mode & 07777) == 0600, "mode %04o under umask 0",
        (unsigned)(must_lstat(p).st_mode & 07777));

  /* Another user's ring (root only: chown to nobody). */
  if (geteuid() != 0) {
    printf("  foreign owner: skipped (not root)\n");
  } else {
    CHECK(chown(p, 65534, 65534) == 0, "chown: %s", strerror(errno));
    CHECK_RC(ipcring_reader_open(p, 0, &r), -EPERM);
    int fd = open(p, O_RDWR | O_CLOEXEC);
    CHECK_RC(ipcring_reader_open_fd(fd, 0, &r), -EPERM);
    close(fd);
    ipcring_writer *w2;
    CHECK_RC(ipcring_writer_create(p, 4096, 0, 0, &w2), -EPERM);
    CHECK_RC(ipcring_reader_open(p, IPCRING_OPEN_ANY_OWNER, &r), 0);
    ipcring_reader_close(r);
    printf("  foreign owner: refused (owner nobody)\n");
  }
  ipcring_writer_close(w);
  unlink(p);
  free(p);
  free(target);
  free(link);
}

/* ---- truncation ----------------------------------------------------------- */

/* A peer in the parent that drives the ring through a mapping of the header
 * page only, so a cut of the data area never reaches it. As a writer it
 * keeps the data area full of valid records (written once) and moves the
 * write index a whole ring ahead of the reader; as a reader it moves the read
 * index up to the write index. It holds the side's lock, as a live side does,
 * and wakes a sleeping peer. */
struct raw_peer {
  int writer; /* 1: play the writer, 0: the reader */
  int fd;
  struct ipcring_shared *sh;
  _Atomic int stop;
  pthread_t th;
};

static void *raw_peer_main(void *arg)
{
  struct raw_peer *p = arg;
  int64_t end = tu_now_ns() + 60 * SEC; /* bound, in case the test stalls */
  while (!atomic_load(&p->stop) && tu_now_ns() < end) {
    if (p->writer) {
      uint64_t r = atomic_load_explicit(&p->sh->read_index, memory_order_acquire);
      uint64_t w = atomic_load_explicit(&p->sh->write_index, memory_order_relaxed);
      if (w != r + CAP && r % REC_SIZE == 0) {
        atomic_store_explicit(&p->sh->write_index, r + CAP, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_exchange(&p->sh->reader_wait, IPCRING_WAIT_IDLE) != IPCRING_WAIT_IDLE)
          futex_wake_all(&p->sh->reader_wait);
      }
    } else {
      uint64_t w = atomic_load_explicit(&p->sh->write_index, memory_order_acquire);
      atomic_store_explicit(&p->sh->read_index, w, memory_order_release);
      atomic_thread_fence(memory_order_seq_cst);
      if (atomic_exchange(&p->sh->writer_wait, IPCRING_WAIT_IDLE) != IPCRING_WAIT_IDLE)
        futex_wake_all(&p->sh->writer_wait);
    }
    struct timespec ts = { 0, 20000 };
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void raw_peer_start(struct raw_peer *p, const char *path, int writer)
{
  memset(p, 0, sizeof *p);
  p->writer = writer;
  p->fd = open(path, O_RDWR | O_CLOEXEC);
  CHECK(p->fd >= 0, "open %s: %s", path, strerror(errno));
  ofd_lock(p->fd, writer ? IPCRING_LOCK_WRITER : IPCRING_LOCK_READER);
  p->sh = mmap(NULL, IPCRING_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
  CHECK(p->sh != MAP_FAILED, "mmap: %s", strerror(errno));
  if (writer) {
    /* Every slot of the data area holds the record the reader expects there. */
    uint8_t *data = malloc(CAP);
    CHECK(data, "malloc");
    for (uint64_t s = 0; s < SLOTS; s++) {
      struct ipcring_record rec = { REC_PAYLOAD, (uint32_t)s + 1 };
      memcpy(data + s * REC_SIZE, &rec, sizeof rec);
      fill_payload(data + s * REC_SIZE + sizeof rec, s);
    }
    CHECK(pwrite(p->fd, data, CAP, IPCRING_HEADER_SIZE) == (ssize_t)CAP, "pwrite data");
    free(data);
  } else {
    atomic_fetch_add(&p->sh->reader_generation, 1);
  }
  CHECK(pthread_create(&p->th, NULL, raw_peer_main, p) == 0, "pthread_create");
}

static void raw_peer_stop(struct raw_peer *p)
{
  atomic_store(&p->stop, 1);
  pthread_join(p->th, NULL);
  munmap(p->sh, IPCRING_HEADER_SIZE);
  close(p->fd);
}

/* The side under test, in a child: stream until an error, then report it,
 * the next call's result and the info call's (all three must be the sticky
 * error). */
static void reader_child(const char *path, int out)
{
  ipcring_reader *r;
  int rc = ipcring_reader_open(path, 0, &r);
  if (rc != 0) {
    fprintf(stderr, "reader child: open: %s\n", ipcring_strerror(rc));
    _exit(40);
  }
  struct result m = { 'R', 0, 0, 0, 0, 0, 0, 0 };
  uint8_t buf[256];
  size_t len;
  uint32_t tag;
  for (;;) {
    rc = ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, 5 * SEC);
    if (rc < 0)
      break;
    if (!payload_ok(buf, len, tag, m.n)) {
      m.bad++;
      m.bad_at = m.n;
    }
    if (++m.n == STREAM_BEFORE_CUT) {
      struct result prog = { 'P', 0, 0, 0, 0, m.n, m.bad, 0 };
      say(out, &prog);
    }
  }
  m.t_err = tu_now_ns();
  m.rc1 = rc;
  m.rc2 = ipcring_reader_pop(r, buf, sizeof buf, &len, &tag, 0);
  struct ipcring_info info;
  m.rc3 = ipcring_reader_info(r, &info);
  say(out, &m);
  ipcring_reader_close(r);
  _exit(0);
}

static void writer_child(const char *path, int out)
{
  ipcring_writer *w;
  int rc = ipcring_writer_create(path, CAP, 0, 0, &w);
  if (rc != 0) {
    fprintf(stderr, "writer child: create: %s\n", ipcring_strerror(rc));
    _exit(50);
  }
  struct result m = { 'C', 0, 0, 0, 0, 0, 0, 0 };
  say(out, &m); /* the ring is there */
  m.code = 'R';
  for (;;) {
    rc = push_rec(w, m.n, 5 * SEC);
    if (rc < 0)
      break;
    if (++m.n == STREAM_BEFORE_CUT) {
      struct result prog = { 'P', 0, 0, 0, 0, m.n, 0, 0 };
      say(out, &prog);
    }
  }
  m.t_err = tu_now_ns();
  m.rc1 = rc;
  m.rc2 = push_rec(w, m.n, 0);
  struct ipcring_info info;
  m.rc3 = ipcring_writer_info(w, &info);
  say(out, &m);
  ipcring_writer_close(w);
  _exit(0);
}

/* Truncate the ring file from this process; returns the time just before. */
static int64_t cut(const char *path, off_t size)
{
  int fd = open(path, O_RDWR | O_CLOEXEC);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  int64_t t = tu_now_ns();
  CHECK(ftruncate(fd, size) == 0, "ftruncate: %s", strerror(errno));
  close(fd);
  return t;
}

static void check_sticky(const char *who, const struct result *m, int64_t t_cut)
{
  double ms = (double)(m->t_err - t_cut) / MS;
  printf("  %s: %s after %.3f ms (%" PRIu64 " records streamed), then %s, info %s\n", who,
         ipcring_strerror(m->rc1), ms, m->n, ipcring_strerror(m->rc2), ipcring_strerror(m->rc3));
  CHECK(m->rc1 == -EFAULT && m->rc2 == -EFAULT && m->rc3 == -EFAULT,
        "%s: errors %d, %d, %d; expected -EFAULT three times", who, m->rc1, m->rc2, m->rc3);
  CHECK(m->t_err - t_cut < TRUNC_BOUND_MS * MS, "%s: the error came %.1f ms after the cut", who,
        ms);
}

/* The reader streams from a (raw) writer; the data area is cut off under it:
 * it does not die, returns -EFAULT and keeps returning it. At most the one
 * record it was reading when the pages went is garbage (zeros). */
static void test_truncate_under_reader(void)
{
  char *path = tu_path("cut-reader");
  ipcring_writer *w;
  CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0);
  ipcring_writer_close(w); /* the raw writer takes its place */
  struct raw_peer peer;
  raw_peer_start(&peer, path, 1);
  int ch[2];
  CHECK(pipe(ch) == 0, "pipe");
  pid_t pid = tu_fork();
  if (pid == 0) {
    close(ch[0]);
    reader_child(path, ch[1]);
  }
  close(ch[1]);
  struct result prog = hear(ch[0], 'P');
  CHECK(prog.bad == 0, "%" PRIu64 " bad records before the cut", prog.bad);
  int64_t t = cut(path, IPCRING_HEADER_SIZE);
  struct result m = hear(ch[0], 'R');
  int st = tu_reap(pid, 10000);
  raw_peer_stop(&peer);
  CHECK_CHILD_OK(st);
  check_sticky("reader", &m, t);
  CHECK(m.bad == 0 || (m.bad == 1 && m.bad_at == m.n - 1),
        "%" PRIu64 " bad records (last at %" PRIu64 " of %" PRIu64 "): more than the one in flight",
        m.bad, m.bad_at, m.n);
  close(ch[0]);
  unlink(path);
  free(path);
}

/* The writer streams to a (raw) reader; the data area is cut off under it
 * (a hostile reader could do this): -EFAULT, sticky, no signal. */
static void test_truncate_under_writer(void)
{
  char *path = tu_path("cut-writer");
  int ch[2];
  CHECK(pipe(ch) == 0, "pipe");
  pid_t pid = tu_fork();
  if (pid == 0) {
    close(ch[0]);
    writer_child(path, ch[1]);
  }
  close(ch[1]);
  hear(ch[0], 'C');
  struct raw_peer peer;
  raw_peer_start(&peer, path, 0);
  hear(ch[0], 'P');
  int64_t t = cut(path, IPCRING_HEADER_SIZE);
  struct result m = hear(ch[0], 'R');
  int st = tu_reap(pid, 10000);
  raw_peer_stop(&peer);
  CHECK_CHILD_OK(st);
  check_sticky("writer", &m, t);
  close(ch[0]);
  unlink(path);
  free(path);
}

/* Two real sides stream; the whole file is cut to nothing. Neither dies;
 * each ends with -EFAULT, or -EPIPE if it saw the other leave first. */
static void test_truncate_both(void)
{
  char *path = tu_path("cut-both");
  int wc[2], rc_[2];
  CHECK(pipe(wc) == 0 && pipe(rc_) == 0, "pipe");
  pid_t wp = tu_fork();
  if (wp == 0) {
    close(wc[0]);
    close(rc_[0]);
    close(rc_[1]);
    writer_child(path, wc[1]);
  }
  close(wc[1]);
  hear(wc[0], 'C');
  pid_t rp = tu_fork();
  if (rp == 0) {
    close(rc_[0]);
    close(wc[0]);
    reader_child(path, rc_[1]);
  }
  close(rc_[1]);
  hear(rc_[0], 'P');
  hear(wc[0], 'P'); /* the writer is at least as far as the reader */
  int64_t t = cut(path, 0);
  struct result rm = hear(rc_[0], 'R');
  struct result wm = hear(wc[0], 'R');
  int rst = tu_reap(rp, 10000);
  CHECK_CHILD_OK(rst);
  int wst = tu_reap(wp, 10000);
  CHECK_CHILD_OK(wst);
  const struct result *side[2] = { &rm, &wm };
  const char *name[2] = { "reader", "writer" };
  int faulted = 0;
  for (int i = 0; i < 2; i++) {
    const struct result *m = side[i];
    printf("  %s: %s after %.3f ms, then %s, info %s\n", name[i], ipcring_strerror(m->rc1),
           (double)(m->t_err - t) / MS, ipcring_strerror(m->rc2), ipcring_strerror(m->rc3));
    CHECK(m->rc1 == -EFAULT || m->rc1 == -EPIPE, "%s: first error %d (%s)", name[i], m->rc1,
          ipcring_strerror(m->rc1));
    if (m->rc1 == -EFAULT) {
      faulted++;
      CHECK(m->rc2 == -EFAULT && m->rc3 == -EFAULT, "%s: -EFAULT not sticky: %d, %d", name[i],
            m->rc2, m->rc3);
    }
    CHECK(m->t_err - t < TRUNC_BOUND_MS * MS, "%s: the error came %.1f ms after the cut",
          name[i], (double)(m->t_err - t) / MS);
  }
  CHECK(faulted > 0, "neither side reported the truncation");
  CHECK(rm.bad == 0 || (rm.bad == 1 && rm.bad_at == rm.n - 1),
        "%" PRIu64 " bad records: more than the one in flight", rm.bad);
  close(wc[0]);
  close(rc_[0]);
  unlink(path);
  free(path);
}

/* A second mapping of the data area (a zero-copy view) registered with the
 * reader: the second half of the data area is cut off; a read past the cut
 * through the view fails the reader with -EFAULT and reads zeros, while the
 * first half (still in the file) keeps its bytes: only the faulting page is
 * replaced. The writer in the same process meets the cut when its records
 * reach it and fails too. Registration errors are reported; close removes
 * views left registered. */
static void test_view(void)
{
  char *path = tu_path("view");
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_create(path, CAP, 0, 0, &w), 0);
  CHECK_RC(ipcring_reader_open(path, 0, &r), 0);
  for (uint64_t i = 0; i < 10; i++)
    CHECK_RC(push_rec(w, i, 0), 0);
  int fd = ipcring_reader_fd(r);
  uint8_t *view = mmap(NULL, CAP, PROT_READ, MAP_SHARED, fd, IPCRING_DATA_OFFSET);
  CHECK(view != MAP_FAILED, "mmap view: %s", strerror(errno));
  CHECK_RC(ipcring_reader_register_view(r, view + 1, CAP - 1), -EINVAL);
  CHECK_RC(ipcring_reader_register_view(r, view, CAP), 0);
  CHECK_RC(ipcring_reader_register_view(r, view, CAP), -EEXIST);
  CHECK_RC(ipcring_reader_unregister_view(r, view + 4096), -ENOENT);
  struct ipcring_record_ref ref;
  CHECK_RC(ipcring_reader_take(r, &ref, 0), 0);
  const uint8_t *through_view = view + (ref.offset - IPCRING_DATA_OFFSET);
  CHECK(payload_ok(through_view, ref.len, ref.tag, 0), "the view shows another record");

  unsigned long faults = ipcring_guard_faults();
  pid_t pid = tu_fork();
  if (pid == 0) {
    int cfd = open(path, O_RDWR | O_CLOEXEC);
    _exit(cfd >= 0 && ftruncate(cfd, IPCRING_HEADER_SIZE + CAP / 2) == 0 ? 0 : 1);
  }
  int st = tu_reap(pid, 10000);
  CHECK_CHILD_OK(st);
  volatile const uint8_t *past_cut = view + CAP / 2 + 100;
  uint8_t sum = 0;
  for (size_t i = 0; i < REC_PAYLOAD; i++)
    sum |= past_cut[i];
  CHECK(sum == 0, "the view did not read zeros past the cut");
  CHECK(ipcring_guard_faults() == faults + 1, "faults %lu, expected %lu", ipcring_guard_faults(),
        faults + 1);
  CHECK(payload_ok(through_view, ref.len, ref.tag, 0), "the view lost a page before the cut");
  CHECK_RC(ipcring_reader_take(r, &ref, 0), -EFAULT);
  CHECK_RC(ipcring_reader_release_to(r, ref.end), 0);
  /* The writer has room for the whole ring (the reader released one record)
   * and reaches the cut at record CAP / 2 / REC_SIZE. */
  uint64_t seq = 10;
  int rc;
  while ((rc = push_rec(w, seq, 0)) == 0 && seq < 2 * SLOTS)
    seq++;
  CHECK(rc == -EFAULT && seq >= CAP / 2 / REC_SIZE, "push %" PRIu64 " after the cut: %d", seq,
        rc);
  CHECK_RC(ipcring_reader_unregister_view(r, view), 0);
  CHECK_RC(ipcring_reader_unregister_view(r, view), -ENOENT);
  munmap(view, CAP);

  /* A view left registered is removed by close. */
  view = mmap(NULL, CAP, PROT_READ, MAP_SHARED, fd, IPCRING_DATA_OFFSET);
  CHECK(view != MAP_FAILED, "mmap view: %s", strerror(errno));
  CHECK_RC(ipcring_reader_register_view(r, view, CAP), 0);
  ipcring_reader_close(r);
  CHECK_RC(ipcring_guard_remove(view, NULL), -ENOENT);
  munmap(view, CAP);
  ipcring_writer_close(w);
  unlink(path);
  free(path);
}

/* ---- the handler leaves other SIGBUSes alone ------------------------------- */

static void user_handler(int sig, siginfo_t *si, void *ctx)
{
  (void)sig;
  (void)ctx;
  _exit(si->si_code > 0 ? 42 : 43);
}

/* In a child: make a ring (the library's handler goes in), then take SIGBUS
 * outside it: a fault on another truncated file, or a kill(). */
static int chain_child(int with_user_handler, int by_kill)
{
  struct rlimit no_core = { 0, 0 };
  setrlimit(RLIMIT_CORE, &no_core);
  if (with_user_handler) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = user_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
  }
  char *path = tu_path(with_user_handler ? "chain-ring-h" : "chain-ring");
  ipcring_writer *w;
  if (ipcring_writer_create(path, 4096, 0, 0, &w) != 0)
    return 60;
  if (by_kill) {
    kill(getpid(), SIGBUS);
    return 61;
  }
  char *other = tu_path(with_user_handler ? "chain-other-h" : "chain-other");
  int fd = open(other, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, 8192) != 0)
    return 62;
  volatile uint8_t *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if ((void *)m == MAP_FAILED || ftruncate(fd, 0) != 0)
    return 63;
  m[4096] = 1;
  return 64;
}

/* Did SIGBUS have its default action when the test started (before any
 * ring)? Not under a sanitizer, which installs a handler of its own. */
static int bus_was_default = -1;

/* A SIGBUS that is not a ring's goes where it went before the library came:
 * the default action kills, a handler installed earlier runs, and a SIGBUS
 * sent with kill() is not taken for a fault. Under a sanitizer the "default"
 * cases meet the sanitizer's handler instead, which ends the process too. */
static void test_chaining(void)
{
  const struct {
    const char *what;
    int user, by_kill;
    int sig, exit;
  } cases[] = {
    { "foreign fault, default action", 0, 0, SIGBUS, -1 },
    { "foreign fault, earlier handler", 1, 0, 0, 42 },
    { "kill(), default action", 0, 1, SIGBUS, -1 },
    { "kill(), earlier handler", 1, 1, 0, 43 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pid_t pid = tu_fork();
    if (pid == 0)
      _exit(chain_child(cases[i].user, cases[i].by_kill));
    int st = tu_reap(pid, 10000);
    if (cases[i].sig && bus_was_default)
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == cases[i].sig, "%s: status %#x, expected signal %d",
            cases[i].what, st, cases[i].sig);
    else if (cases[i].sig)
      CHECK(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0 &&
                                WEXITSTATUS(st) != 61 && WEXITSTATUS(st) != 64),
            "%s: status %#x: the process went on after the signal", cases[i].what, st);
    else
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == cases[i].exit, "%s: status %#x, expected exit %d",
            cases[i].what, st, cases[i].exit);
  }
}

/* ipcring_writer_attach_mem(): the fuzzers' entry; validates like a reader
 * and leaves the memory to the caller. */
static void test_writer_attach_mem(void)
{
  size_t size;
  uint8_t *img = ring_image(8192, &size);
  ipcring_writer *w;
  ipcring_reader *r;
  CHECK_RC(ipcring_writer_attach_mem(img, size, &w), 0);
  CHECK_RC(push_rec(w, 3, 0), 0);
  CHECK_RC(ipcring_writer_eos(w), 0);
  ipcring_writer_close(w);
  CHECK_RC(ipcring_reader_attach_mem(img, size, &r), 0);
  CHECK_RC(read_all(r, 4, "attach_mem reader"), 0);
  ipcring_reader_close(r);
  CHECK_RC(ipcring_writer_attach_mem(img, size - 4096, &w), -EPROTO);
  put_u64(img, OFF(read_index), 1 << 20);
  CHECK_RC(ipcring_writer_attach_mem(img, size, &w), -EPROTO);
  put_u64(img, OFF(magic), 0);
  CHECK_RC(ipcring_writer_attach_mem(img, size, &w), -EINVAL);
  free(img);
}

/* ---- main --------------------------------------------------------------- */

#define RUN(t)                                                                          \
  do {                                                                                  \
    printf("== %s\n", #t);                                                              \
    fflush(stdout);                                                                     \
    int64_t t0_ = tu_now_ns();                                                          \
    t();                                                                                \
    printf("   ok (%lld ms)\n", (long long)((tu_now_ns() - t0_) / MS));                \
  } while (0)

int main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "writer-child") == 0)
    return child_writer_main(atoi(argv[2]));
  if (argc == 3 && strcmp(argv[1], "reader-child") == 0)
    return child_reader_main(atoi(argv[2]));
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction bus;
  CHECK(sigaction(SIGBUS, NULL, &bus) == 0, "sigaction");
  bus_was_default = !(bus.sa_flags & SA_SIGINFO) && bus.sa_handler == SIG_DFL;
  int probe = ipcring_memfd_create(0, NULL);
  if (probe == -ENOSYS) {
    printf("no memfd on this system: skipped\n");
    return TU_SKIP;
  }
  CHECK(probe >= 0, "ipcring_memfd_create: %s", ipcring_strerror(probe));
  close(probe);
  tu_tmpdir();
  RUN(test_memfd_helper);
  RUN(test_create_fd_sealed);
  RUN(test_memfd_exec_roundtrip);
  RUN(test_fd_refusals);
  RUN(test_path_refusals);
  RUN(test_writer_attach_mem);
  RUN(test_view);
  RUN(test_chaining);
  RUN(test_truncate_under_reader);
  RUN(test_truncate_under_writer);
  RUN(test_truncate_both);
  return 0;
}
