/* ipcring-stat: show the state of an ipcring file without disturbing it.
 *
 * The file is opened read-only and only its 4096-byte header is mapped, with
 * PROT_READ. No lock is taken (the side locks are only tested, with
 * F_OFD_GETLK), nothing is written and nothing attaches, so a writer or a
 * reader can come and go while this runs. The file is treated as hostile the
 * way the library's reader treats it: the constant header fields and the file
 * size are checked before anything else is read, each shared field is loaded
 * once per refresh into a local, and only the locals are used.
 *
 * Usage: ipcring-stat [--once] [--json] [--interval SECONDS] [--count N] RING
 * See docs/ipcring-stat.md. Exit status: 0 done (or interrupted with Ctrl-C),
 * 1 the ring could not be read or went away, 2 bad usage.
 */
#define _GNU_SOURCE
#include "ipcring-layout.h"
#include "ipcring.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef O_NOATIME
#define O_NOATIME 0
#endif

/* The same lock queries as the library (ring/ipcring.c). */
#ifdef F_OFD_GETLK
#define LOCK_GET F_OFD_GETLK
#else
#define LOCK_GET F_GETLK
#endif

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* Tries to load read_index, write_index, read_index with the two read
 * indices equal, i.e. a pair that held at one instant. */
#define INDEX_TRIES 16

static const char *prog = "ipcring-stat";

/* ---- Options ------------------------------------------------------------ */

struct options {
  const char *path;
  int once;
  int json;
  double interval; /* seconds */
  uint64_t count;  /* refreshes, 0 = until stopped */
};

static void usage(FILE *f)
{
  fprintf(f,
          "Usage: %s [OPTION]... RING\n"
          "Show the state of the ipcring file RING without disturbing it: capacity,\n"
          "fill level, indices, end of stream, writer and reader (pid, generation,\n"
          "alive now) and the write and read rates.\n"
          "\n"
          "  -1, --once            print one multi-line report and exit\n"
          "  -j, --json            one JSON object per refresh, one per line\n"
          "  -i, --interval SECS   seconds between refreshes (default 1; fractions allowed)\n"
          "  -n, --count N         stop after N refreshes\n"
          "  -h, --help            show this help and exit\n"
          "\n"
          "Without --once the display is refreshed in place until Ctrl-C, or until the\n"
          "file is removed or replaced (exit status 1). Exit status: 0 done, 1 the ring\n"
          "could not be read, 2 bad usage.\n",
          prog);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
  exit(EXIT_USAGE);
}

static void parse_options(int argc, char **argv, struct options *o)
{
  static const struct option longopts[] = {
    { "once", no_argument, NULL, '1' },
    { "json", no_argument, NULL, 'j' },
    { "interval", required_argument, NULL, 'i' },
    { "count", required_argument, NULL, 'n' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int have_count = 0;
  memset(o, 0, sizeof *o);
  o->interval = 1.0;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":1ji:n:h", longopts, NULL)) != -1) {
    switch (c) {
    case '1':
      o->once = 1;
      break;
    case 'j':
      o->json = 1;
      break;
    case 'i': {
      char *end;
      errno = 0;
      double v = strtod(optarg, &end);
      if (end == optarg || *end != '\0' || errno != 0 || !isfinite(v) || v < 0.001 ||
          v > 86400.0)
        die_usage("--interval wants a number of seconds from 0.001 to 86400, like 0.5; "
                  "got '%s'", optarg);
      o->interval = v;
      break;
    }
    case 'n': {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (end == optarg || *end != '\0' || errno != 0 || v == 0 || optarg[0] == '-' ||
          optarg[0] == '+')
        die_usage("--count wants a positive whole number of refreshes; got '%s'", optarg);
      o->count = v;
      have_count = 1;
      break;
    }
    case 'h':
      usage(stdout);
      exit(0);
    case ':':
      die_usage("option '%s' needs a value", argv[optind - 1]);
    default:
      if (strncmp(argv[optind - 1], "--", 2) == 0)
        die_usage("unknown option, or a value given to an option that takes none: '%s'",
                  argv[optind - 1]);
      die_usage("unknown option '-%c'", optopt);
    }
  }
  if (optind >= argc)
    die_usage("no ring file given (for example: %s /dev/shm/ring)", prog);
  if (argc - optind > 1)
    die_usage("one ring file at a time; got '%s' and '%s'", argv[optind], argv[optind + 1]);
  o->path = argv[optind];
  if (!o->path[0])
    die_usage("the ring path is empty");
  if (o->once) {
    if (have_count && o->count != 1)
      die_usage("--once prints one report; it does not go with --count %" PRIu64, o->count);
    o->count = 1;
  }
}

/* ---- The ring file -------------------------------------------------------- */

struct ring {
  const char *path;
  int fd;
  struct ipcring_shared *sh; /* header only, PROT_READ */
  struct ipcring_shared hdr; /* private copy of the constant fields, checked */
  dev_t dev;
  ino_t ino;
  uint64_t file_size;
};

/* One refresh: every shared value loaded once. */
struct sample {
  int64_t mono_ns;
  double wall; /* Unix time, seconds */
  uint64_t writer_generation, reader_generation;
  int32_t writer_pid, reader_pid;
  uint64_t write_index, read_index;
  uint32_t eos;
  int writer_alive, reader_alive; /* 1, 0, or -1 when the kernel could not tell */
  int fill_known;
  uint64_t fill;
  const char *problem; /* the first inconsistency seen, or NULL */
  char problem_buf[96];
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Set when the live one-line display has an unfinished line on the terminal. */
static int line_open;

static void die(const char *fmt, ...)
{
  va_list ap;
  if (line_open) {
    fputc('\n', stdout);
    fflush(stdout);
  }
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(EXIT_RUNTIME);
}

static int is_pow2(uint64_t v)
{
  return v && !(v & (v - 1));
}

static void ring_open(struct ring *rg, const char *path)
{
  memset(rg, 0, sizeof *rg);
  rg->path = path;
  /* O_NONBLOCK: a FIFO at the path must not hang the open. O_NOATIME when we
   * may (the owner): not even the access time changes. */
  int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  int fd = open(path, flags | O_NOATIME);
  if (fd < 0 && errno == EPERM && O_NOATIME != 0)
    fd = open(path, flags);
  if (fd < 0) {
    int e = errno;
    struct stat st;
    switch (e) {
    case ENOENT:
      die("%s: no such file. The writer creates the ring: check the path (rings "
          "usually live in /dev/shm) and that the writer has started", path);
    case EACCES:
      if (stat(path, &st) == 0)
        die("%s: permission denied: the ring is readable by its owner (uid %u) only; "
            "run as that user", path, (unsigned)st.st_uid);
      die("%s: permission denied (a directory on the path is not searchable)", path);
    case ELOOP:
      die("%s: is a symbolic link; pass the ring file itself (the library refuses "
          "symbolic links too)", path);
    default:
      die("%s: cannot open: %s", path, strerror(e));
    }
  }
  rg->fd = fd;

  struct stat st;
  if (fstat(fd, &st) != 0)
    die("%s: fstat: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    die("%s: is a directory; pass the ring file (for example %s/NAME)", path, path);
  if (!S_ISREG(st.st_mode))
    die("%s: not a regular file, so not an ipcring (a ring is a regular file, "
        "usually in /dev/shm)", path);
  rg->dev = st.st_dev;
  rg->ino = st.st_ino;
  rg->file_size = (uint64_t)st.st_size;

  /* Check a private copy of the header before mapping anything. */
  struct ipcring_shared *h = &rg->hdr;
  ssize_t n = rg->file_size >= sizeof *h ? pread(fd, h, sizeof *h, 0) : 0;
  if (n < 0)
    die("%s: cannot read: %s", path, strerror(errno));
  if ((size_t)n != sizeof *h || h->magic != IPCRING_MAGIC) {
    if ((size_t)n == sizeof *h && h->magic == __builtin_bswap64(IPCRING_MAGIC))
      die("%s: an ipcring made on a machine of the other byte order; rings do not "
          "cross machines", path);
    die("%s: not an ipcring file (no \"IPCRING1\" magic at offset 0; the file is %" PRIu64
        " bytes)", path, rg->file_size);
  }
  if (h->version != IPCRING_FORMAT_VERSION)
    die("%s: ring format version %" PRIu32 "; this %s reads version %u only: use the "
        "%s of the library that made the ring", path, h->version, prog,
        IPCRING_FORMAT_VERSION, prog);
  if (h->header_size != IPCRING_HEADER_SIZE)
    die("%s: damaged ring header: header size %" PRIu32 ", expected %u", path,
        h->header_size, IPCRING_HEADER_SIZE);
  if (h->flags != 0)
    die("%s: damaged ring header: flags 0x%" PRIx32 " (none are defined)", path, h->flags);
  if (!is_pow2(h->capacity) || h->capacity < IPCRING_CAPACITY_MIN ||
      h->capacity > IPCRING_CAPACITY_MAX)
    die("%s: damaged ring header: capacity %" PRIu64 " is not a power of two from %" PRIu64
        " to %" PRIu64, path, h->capacity, IPCRING_CAPACITY_MIN, IPCRING_CAPACITY_MAX);
  if (rg->file_size != IPCRING_HEADER_SIZE + h->capacity)
    die("%s: the file is %" PRIu64 " bytes but a ring of capacity %" PRIu64 " is %" PRIu64
        ": truncated or damaged", path, rg->file_size, h->capacity,
        IPCRING_HEADER_SIZE + h->capacity);

  void *p = mmap(NULL, IPCRING_HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    die("%s: cannot map the header: %s", path, strerror(errno));
  rg->sh = p;
}

/* 1 if another open file holds the lock on this byte (that side is attached
 * and alive), 0 if not, -1 if the kernel could not tell. Like
 * lock_held_by_other() in ring/ipcring.c; testing a lock takes none. */
static int lock_held(int fd, int byte)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (fcntl(fd, LOCK_GET, &fl) != 0)
    return -1;
  return fl.l_type != F_UNLCK;
}

/* A file truncated under the mapping raises SIGBUS on the next load: turn it
 * into an error instead of a crash. */
static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
  if (bus_armed)
    siglongjmp(bus_jmp, 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Load the shared values once each; 0, or -1 if the mapping raised SIGBUS. */
static int load_shared(struct ring *rg, struct sample *s, struct ipcring_shared *konst)
{
  struct ipcring_shared *sh = rg->sh;
  if (sigsetjmp(bus_jmp, 1)) {
    bus_armed = 0;
    return -1;
  }
  bus_armed = 1;
  const volatile struct ipcring_shared *v = sh;
  konst->magic = v->magic;
  konst->version = v->version;
  konst->header_size = v->header_size;
  konst->capacity = v->capacity;
  konst->flags = v->flags;
  s->writer_generation = atomic_load_explicit(&sh->writer_generation, memory_order_relaxed);
  s->reader_generation = atomic_load_explicit(&sh->reader_generation, memory_order_relaxed);
  s->writer_pid = atomic_load_explicit(&sh->writer_pid, memory_order_relaxed);
  s->reader_pid = atomic_load_explicit(&sh->reader_pid, memory_order_relaxed);
  s->eos = atomic_load_explicit(&sh->eos, memory_order_acquire);
  /* Both indices only grow. A read index loaded before and after the write
   * index and equal both times was the read index when the write index was
   * loaded, so the pair held at one instant. */
  uint64_t r1 = 0, w = 0, r2 = 1;
  for (int i = 0; i < INDEX_TRIES && r1 != r2; i++) {
    r1 = atomic_load_explicit(&sh->read_index, memory_order_acquire);
    w = atomic_load_explicit(&sh->write_index, memory_order_acquire);
    r2 = atomic_load_explicit(&sh->read_index, memory_order_acquire);
  }
  bus_armed = 0;
  /* The time of the indices, for the rates: taken right after them. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  s->mono_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  clock_gettime(CLOCK_REALTIME, &ts);
  s->wall = (double)ts.tv_sec + ts.tv_nsec / 1e9;
  s->read_index = r1;
  s->write_index = w;
  /* A busy ring whose read index moved every time: r1 is older than w, so
   * w - r1 may exceed the capacity by what the reader released meanwhile. */
  s->fill_known = 1;
  if ((r1 | w) & 7) {
    s->problem = "an index is not a multiple of 8";
    s->fill_known = 0;
  } else if (w < r1) {
    s->problem = "the write index is below the read index";
    s->fill_known = 0;
  } else if (w - r1 > konst->capacity) {
    if (r1 == r2) {
      s->problem = "more bytes filled than the capacity";
      s->fill_known = 0;
    } else {
      s->fill = konst->capacity;
    }
  } else {
    s->fill = w - r1;
  }
  if (!s->problem && s->eos > 1) {
    snprintf(s->problem_buf, sizeof s->problem_buf,
             "the eos field is %" PRIu32 ", neither 0 nor 1", s->eos);
    s->problem = s->problem_buf;
  }
  return 0;
}

static void take_sample(struct ring *rg, struct sample *s)
{
  memset(s, 0, sizeof *s);
  /* Still the same file at the path, still the same size? */
  struct stat st;
  if (lstat(rg->path, &st) != 0) {
    if (errno == ENOENT)
      die("%s: the ring file was removed (the writer closed it and removed it, or it "
          "was deleted)", rg->path);
    die("%s: %s", rg->path, strerror(errno));
  }
  if (st.st_dev != rg->dev || st.st_ino != rg->ino)
    die("%s: the ring file was replaced by another file (a new ring was made at this "
        "path); run %s again to follow the new one", rg->path, prog);
  if (fstat(rg->fd, &st) != 0)
    die("%s: fstat: %s", rg->path, strerror(errno));
  if ((uint64_t)st.st_size != rg->file_size)
    die("%s: the file changed size from %" PRIu64 " to %" PRIu64 " bytes: truncated or "
        "damaged", rg->path, rg->file_size, (uint64_t)st.st_size);

  struct ipcring_shared k;
  memset(&k, 0, sizeof k);
  if (load_shared(rg, s, &k) != 0)
    die("%s: the file was truncated while being read", rg->path);
  if (k.magic != rg->hdr.magic || k.version != rg->hdr.version ||
      k.header_size != rg->hdr.header_size || k.capacity != rg->hdr.capacity ||
      k.flags != rg->hdr.flags)
    die("%s: the ring's constant header fields changed (magic, version or capacity): "
        "the file was overwritten or damaged", rg->path);

  s->writer_alive = lock_held(rg->fd, IPCRING_LOCK_WRITER);
  s->reader_alive = lock_held(rg->fd, IPCRING_LOCK_READER);
}

/* ---- Output ----------------------------------------------------------------- */

struct rates {
  int known;
  double write, read; /* bytes per second */
};

static struct rates rates_between(const struct sample *prev, const struct sample *cur)
{
  struct rates r = { 0, 0, 0 };
  if (!prev)
    return r;
  double dt = (double)(cur->mono_ns - prev->mono_ns) / 1e9;
  if (dt <= 0 || cur->write_index < prev->write_index || cur->read_index < prev->read_index)
    return r;
  r.known = 1;
  r.write = (double)(cur->write_index - prev->write_index) / dt;
  r.read = (double)(cur->read_index - prev->read_index) / dt;
  return r;
}

/* Bytes in binary units: "512 B", "4.0 KiB", "1.5 GiB". */
static const char *human(char *buf, size_t size, double v)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%.0f %s", v, units[u]);
  else
    snprintf(buf, size, "%.1f %s", v, units[u]);
  return buf;
}

static double fill_percent(const struct ring *rg, const struct sample *s)
{
  return 100.0 * (double)s->fill / (double)rg->hdr.capacity;
}

static const char *alive_word(int a)
{
  return a > 0 ? "alive" : a == 0 ? "gone" : "unknown";
}

static void json_string(FILE *f, const char *str)
{
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static const char *json_bool(int v)
{
  return v > 0 ? "true" : v == 0 ? "false" : "null";
}

static void print_json(const struct ring *rg, const struct sample *s, const struct rates *r)
{
  FILE *f = stdout;
  fputs("{\"path\":", f);
  json_string(f, rg->path);
  fprintf(f, ",\"time\":%.3f", s->wall);
  fprintf(f, ",\"capacity\":%" PRIu64, rg->hdr.capacity);
  fprintf(f, ",\"write_index\":%" PRIu64 ",\"read_index\":%" PRIu64, s->write_index,
          s->read_index);
  if (s->fill_known)
    fprintf(f, ",\"fill_bytes\":%" PRIu64 ",\"fill_percent\":%.2f", s->fill,
            fill_percent(rg, s));
  else
    fputs(",\"fill_bytes\":null,\"fill_percent\":null", f);
  fprintf(f, ",\"eos\":%s", s->eos ? "true" : "false");
  fprintf(f, ",\"writer_pid\":%" PRId32 ",\"writer_generation\":%" PRIu64
             ",\"writer_alive\":%s",
          s->writer_pid, s->writer_generation, json_bool(s->writer_alive));
  fprintf(f, ",\"reader_pid\":%" PRId32 ",\"reader_generation\":%" PRIu64
             ",\"reader_alive\":%s",
          s->reader_pid, s->reader_generation, json_bool(s->reader_alive));
  if (r->known)
    fprintf(f, ",\"write_bytes_per_sec\":%.0f,\"read_bytes_per_sec\":%.0f", r->write, r->read);
  else
    fputs(",\"write_bytes_per_sec\":null,\"read_bytes_per_sec\":null", f);
  fputs(",\"problem\":", f);
  if (s->problem)
    json_string(f, s->problem);
  else
    fputs("null", f);
  fputs("}\n", f);
}

static void side_text(char *buf, size_t size, const char *name, int32_t pid, uint64_t gen,
                      int alive, int compact)
{
  if (gen == 0)
    snprintf(buf, size, compact ? "%s none yet" : "%s: never attached (generation 0)", name);
  else if (compact)
    snprintf(buf, size, "%s %" PRId32 " g%" PRIu64 " %s", name, pid, gen, alive_word(alive));
  else
    snprintf(buf, size, "pid %" PRId32 ", generation %" PRIu64 ", %s", pid, gen,
             alive > 0 ? "alive (holds its lock)"
             : alive == 0 ? "gone (its lock is free)" : "unknown (the lock query failed)");
}

static void print_report(const struct ring *rg, const struct sample *s)
{
  char a[32], b[32], ws[96], rs[96];
  printf("ring         %s\n", rg->path);
  printf("capacity     %" PRIu64 " bytes (%s)\n", rg->hdr.capacity,
         human(a, sizeof a, (double)rg->hdr.capacity));
  if (s->fill_known)
    printf("fill         %" PRIu64 " bytes (%s, %.2f%%)\n", s->fill,
           human(b, sizeof b, (double)s->fill), fill_percent(rg, s));
  else
    printf("fill         unknown\n");
  printf("write index  %" PRIu64 "\n", s->write_index);
  printf("read index   %" PRIu64 "\n", s->read_index);
  printf("eos          %s\n", s->eos ? "yes (the writer ended the stream)" : "no");
  side_text(ws, sizeof ws, "writer", s->writer_pid, s->writer_generation, s->writer_alive, 0);
  side_text(rs, sizeof rs, "reader", s->reader_pid, s->reader_generation, s->reader_alive, 0);
  printf("writer       %s\n", ws);
  printf("reader       %s\n", rs);
  printf("rates        need two refreshes (run without --once)\n");
  if (s->problem)
    printf("problem      %s\n", s->problem);
}

static size_t last_len;

static void print_line(const struct ring *rg, const struct sample *s, const struct rates *r,
                       int tty)
{
  char line[512], a[32], b[32], c[32], ws[96], rs[96], fill[80], rate[96];
  if (s->fill_known)
    snprintf(fill, sizeof fill, "fill %5.1f%% %s/%s", fill_percent(rg, s),
             human(a, sizeof a, (double)s->fill), human(b, sizeof b, (double)rg->hdr.capacity));
  else
    snprintf(fill, sizeof fill, "fill ? of %s", human(b, sizeof b, (double)rg->hdr.capacity));
  if (r->known)
    snprintf(rate, sizeof rate, "write %s/s  read %s/s", human(a, sizeof a, r->write),
             human(c, sizeof c, r->read));
  else
    snprintf(rate, sizeof rate, "write -  read -");
  side_text(ws, sizeof ws, "writer", s->writer_pid, s->writer_generation, s->writer_alive, 1);
  side_text(rs, sizeof rs, "reader", s->reader_pid, s->reader_generation, s->reader_alive, 1);
  int n = snprintf(line, sizeof line, "%s | %s | %s | %s%s%s%s", fill, rate, ws, rs,
                   s->eos ? " | eos" : "", s->problem ? " | problem: " : "",
                   s->problem ? s->problem : "");
  size_t len = n < 0 ? 0 : (size_t)n >= sizeof line ? sizeof line - 1 : (size_t)n;
  if (tty) {
    /* A line longer than the terminal wraps, and the carriage return then
     * only goes back to the start of its last row: cut it to fit. */
    struct winsize wsz;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &wsz) == 0 && wsz.ws_col > 1 && len >= wsz.ws_col) {
      len = (size_t)wsz.ws_col - 1;
      line[len] = '\0';
      if (last_len > len)
        last_len = len;
    }
    /* Overwrite the previous line, padding over what it left behind. */
    printf("\r%s%*s", line, last_len > len ? (int)(last_len - len) : 0, "");
    last_len = len;
    line_open = 1;
  } else {
    printf("%s\n", line);
  }
}

/* ---- Main loop ------------------------------------------------------------- */

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
  (void)sig;
  stop = 1;
}

static void install_handlers(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop; /* no SA_RESTART: the sleep returns at once */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = on_sigbus;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGBUS, &sa, NULL);
}

/* Sleep until the absolute monotonic time t_ns, or until stopped. */
static void sleep_until(int64_t t_ns)
{
  struct timespec ts = { (time_t)(t_ns / 1000000000LL), (long)(t_ns % 1000000000LL) };
  while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
}

static void flush_or_die(void)
{
  if (fflush(stdout) != 0 || ferror(stdout))
    die("cannot write the output: %s", strerror(errno));
}

int main(int argc, char **argv)
{
  struct options o;
  parse_options(argc, argv, &o);
  install_handlers();

  struct ring rg;
  ring_open(&rg, o.path);

  int tty = isatty(STDOUT_FILENO);
  int64_t interval_ns = (int64_t)llround(o.interval * 1e9);
  struct sample prev, cur;
  memset(&prev, 0, sizeof prev);
  int have_prev = 0;
  int64_t next = 0;
  for (uint64_t i = 0; !stop && (o.count == 0 || i < o.count); i++) {
    if (i > 0) {
      sleep_until(next);
      if (stop)
        break;
    }
    take_sample(&rg, &cur);
    /* Refresh on a fixed beat; after a stall, start a new beat rather than
     * catching up with a burst. */
    next += interval_ns;
    if (i == 0 || next < cur.mono_ns)
      next = cur.mono_ns + interval_ns;
    struct rates r = rates_between(have_prev ? &prev : NULL, &cur);
    if (o.json)
      print_json(&rg, &cur, &r);
    else if (o.once)
      print_report(&rg, &cur);
    else
      print_line(&rg, &cur, &r, tty);
    flush_or_die();
    prev = cur;
    have_prev = 1;
  }
  if (line_open) {
    fputc('\n', stdout);
    line_open = 0;
    flush_or_die();
  }
  munmap(rg.sh, IPCRING_HEADER_SIZE);
  close(rg.fd);
  return 0;
}
