/* The back channel: small records from the reader to the writer in the
 * header page (ipcring_reader_send / ipcring_writer_recv). Each test names
 * the behaviour it pins down. */
#include "testutil.h"

#include "ipcring-layout.h"
#include "ipcring.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define RUN(t)                                                                        \
  do {                                                                                \
    printf("== %s\n", #t);                                                            \
    t();                                                                              \
  } while (0)

struct pair {
  char *path;
  ipcring_writer *w;
  ipcring_reader *r;
};

static struct pair pair_open(const char *name)
{
  struct pair p;
  p.path = tu_path(name);
  CHECK_RC(ipcring_writer_create(p.path, 4096, 0600, 0, &p.w), 0);
  CHECK_RC(ipcring_reader_open(p.path, 0, &p.r), 0);
  return p;
}

static void pair_close(struct pair *p)
{
  ipcring_reader_close(p->r);
  ipcring_writer_close(p->w);
  free(p->path);
}

/* Records arrive in order with their tags and bytes, across the end of the
 * area many times; nothing is there when nothing was sent. */
static void test_round_trip_and_wrap(void)
{
  struct pair p = pair_open("rt");
  char buf[IPCRING_BACK_MAX];
  size_t len;
  uint32_t tag;
  CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EAGAIN);
  for (unsigned i = 0; i < 5000; i++) {
    size_t n = (i * 97) % 600;
    char msg[600];
    memset(msg, 'a' + i % 26, n);
    CHECK_RC(ipcring_reader_send(p.r, msg, n, i), 0);
    if (i % 3 == 0)
      continue; /* let a few pile up */
    while (ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag) >= 0)
      ;
  }
  CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EAGAIN);
  /* In order, exactly. */
  for (unsigned i = 0; i < 3; i++)
    CHECK_RC(ipcring_reader_send(p.r, "xyz", 3, 100 + i), 0);
  for (unsigned i = 0; i < 3; i++) {
    CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), 3);
    CHECK(tag == 100 + i && memcmp(buf, "xyz", 3) == 0, "record %u", i);
  }
  pair_close(&p);
}

/* A full channel refuses at once (-EAGAIN), a record too large for it fails
 * with -EMSGSIZE, a buffer too small for a record consumes nothing. */
static void test_full_and_sizes(void)
{
  struct pair p = pair_open("full");
  char big[IPCRING_BACK_MAX + 1];
  memset(big, 'b', sizeof big);
  CHECK_RC(ipcring_reader_send(p.r, big, sizeof big, 1), -EMSGSIZE);
  CHECK_RC(ipcring_reader_send(p.r, big, 8, IPCRING_TAG_SKIP), -EINVAL);
  int sent = 0;
  while (ipcring_reader_send(p.r, big, 100, 2) == 0)
    sent++;
  CHECK(sent == IPCRING_BACK_SIZE / 112, "%d records of 100 bytes fit", sent);
  CHECK_RC(ipcring_reader_send(p.r, big, 100, 2), -EAGAIN);
  char small[10];
  size_t len = 0;
  uint32_t tag;
  CHECK_RC(ipcring_writer_recv(p.w, small, sizeof small, &len, &tag), -EMSGSIZE);
  CHECK(len == 100, "length reported");
  char buf[200];
  CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), 100);
  CHECK_RC(ipcring_reader_send(p.r, big, 100, 2), 0);
  CHECK_RC(ipcring_reader_send(p.r, big, IPCRING_BACK_MAX, 3), -EAGAIN);
  pair_close(&p);
}

/* A hostile peer scribbling the other side's index or a record header makes
 * that side fail with -EPROTO, sticky, never read outside the area. */
static void test_corrupt_indices_and_headers(void)
{
  for (int what = 0; what < 4; what++) {
    char name[32];
    snprintf(name, sizeof name, "corrupt%d", what);
    struct pair p = pair_open(name); /* a fresh ring: the record is at offset 0 */
    int fd = open(p.path, O_RDWR);
    CHECK(fd >= 0, "open");
    struct ipcring_shared *sh =
        mmap(NULL, IPCRING_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(sh != MAP_FAILED, "map");
    CHECK_RC(ipcring_reader_send(p.r, "hello", 5, 7), 0);
    char buf[64];
    size_t len;
    uint32_t tag;
    switch (what) {
    case 0: /* write index far beyond the area */
      atomic_store(&sh->back_write, 1u << 20);
      CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EPROTO);
      CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EPROTO);
      break;
    case 1: /* a record length beyond the area */
      *(uint32_t *)((uint8_t *)sh + IPCRING_BACK_OFFSET) = 5000;
      CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EPROTO);
      break;
    case 2: /* padding at offset 0 */
      *(uint32_t *)((uint8_t *)sh + IPCRING_BACK_OFFSET) = IPCRING_PAD_LEN;
      CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EPROTO);
      break;
    case 3: /* the writer's read index ahead of what was sent */
      atomic_store(&sh->back_read, 1u << 20);
      CHECK_RC(ipcring_reader_send(p.r, "x", 1, 1), -EPROTO);
      CHECK_RC(ipcring_reader_send(p.r, "x", 1, 1), -EPROTO);
      break;
    }
    munmap(sh, IPCRING_HEADER_SIZE);
    close(fd);
    pair_close(&p);
  }
}

/* A new reader starts with an empty channel: what an earlier reader sent and
 * the writer never read is dropped; records cross between processes. */
static void test_new_reader_and_fork(void)
{
  struct pair p = pair_open("fork");
  CHECK_RC(ipcring_reader_send(p.r, "old", 3, 1), 0);
  ipcring_reader_close(p.r);
  CHECK_RC(ipcring_reader_open(p.path, 0, &p.r), 0);
  char buf[64];
  size_t len;
  uint32_t tag;
  CHECK_RC(ipcring_writer_recv(p.w, buf, sizeof buf, &len, &tag), -EAGAIN);
  ipcring_reader_close(p.r);
  pid_t pid = tu_fork();
  if (pid == 0) {
    ipcring_reader *r;
    CHECK_RC(ipcring_reader_open(p.path, 0, &r), 0);
    for (unsigned i = 0; i < 1000; i++) {
      int rc;
      int64_t end = tu_now_ns() + 5000000000LL;
      while ((rc = ipcring_reader_send(r, &i, sizeof i, 9)) == -EAGAIN && tu_now_ns() < end)
        ;
      CHECK_RC(rc, 0);
    }
    ipcring_reader_close(r);
    _exit(0);
  }
  unsigned got = 0;
  int64_t end = tu_now_ns() + 10000000000LL;
  while (got < 1000 && tu_now_ns() < end) {
    unsigned v;
    int rc = ipcring_writer_recv(p.w, &v, sizeof v, &len, &tag);
    if (rc == -EAGAIN)
      continue;
    CHECK_RC(rc, (int)sizeof v);
    CHECK(v == got && tag == 9, "record %u is %u", got, v);
    got++;
  }
  CHECK(got == 1000, "got %u of 1000", got);
  int st = tu_reap(pid, 10000);
  CHECK_CHILD_OK(st);
  p.r = NULL;
  ipcring_writer_close(p.w);
  free(p.path);
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  alarm(60);
  tu_tmpdir();
  RUN(test_round_trip_and_wrap);
  RUN(test_full_and_sizes);
  RUN(test_corrupt_indices_and_headers);
  RUN(test_new_reader_and_fork);
  printf("all back channel tests passed\n");
  return 0;
}
