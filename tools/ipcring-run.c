/* ipcring-run: run a producer and a consumer pipeline joined by a ring in a
 * sealed memfd, optionally one of them in a bubblewrap sandbox.
 *
 *   ipcring-run [--capacity 32M] [--sandbox producer|consumer|none] \
 *     -- 'PRODUCER PIPELINE ! ipcringsink fd=%d' \
 *     -- 'ipcringsrc fd=%d ! CONSUMER PIPELINE'
 *
 * The ring's memfd (ipcring_memfd_create(): sized, sealed against shrinking,
 * growing and further seals) is inherited by both sides, its number put in
 * place of %d. Each pipeline is split into words as a shell would (spaces,
 * '...', "..." and backslashes; nothing is expanded) and run as
 * `gst-launch-1.0 WORD...`. The producer starts first; once it has put a ring in the
 * memfd, the consumer starts. The sandboxed side runs under bwrap with no
 * network, a read-only view of the file system, private /tmp, /dev (read-only,
 * so no /dev/shm to write to) and /proc, its own PID, IPC and UTS namespaces
 * and session, and dies with the launcher. SIGINT, SIGTERM and SIGHUP are
 * forwarded to both sides (inside the sandbox, to the pipeline's process);
 * when one side fails the other is stopped. Both are reaped.
 *
 * Exit status: 0 if both sides exited with 0 (also after a forwarded Ctrl-C);
 * otherwise the first failure's exit status (128 + signal number for a side
 * killed by a signal; 1 if the producer made no ring); 2 for bad usage.
 *
 * See docs/sandboxing.md.
 */
#define _GNU_SOURCE
#include "ipcring-layout.h"
#include "ipcring.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 256
#define MAX_BINDS 32
/* After a signal is forwarded (or one side failed), how long the sides get
 * before the next, harder signal: SIGINT, then SIGTERM, then SIGKILL. */
#define GRACE_MS 10000

enum side_id { PRODUCER, CONSUMER };
static const char *const side_name[] = { "producer", "consumer" };

struct side {
  char *pipeline;  /* with the descriptor's number in place of %d */
  char **words;    /* the pipeline split into words */
  int sandboxed;
  pid_t pid;       /* the process we started: the program, or bwrap */
  pid_t inner;     /* in the sandbox: bwrap's first process (our view of its pid) */
  int info_fd;     /* bwrap --info-fd, read end (non-blocking) */
  char info[1024]; /* what bwrap wrote there so far */
  size_t info_len;
  int running;
  int status;
};

static struct {
  uint64_t capacity;
  const char *sandbox;
  const char *launch;
  const char *bwrap;
  const char *launch_args[MAX_ARGS];
  int n_launch_args;
  const char *ro_binds[MAX_BINDS];
  int n_ro_binds;
  const char *binds[MAX_BINDS];
  int n_binds;
  int share_net;
  double wait_ring_s;
  int quiet;
} opt = { IPCRING_CAPACITY_DEFAULT, "none", "gst-launch-1.0", "bwrap", { 0 }, 0, { 0 }, 0,
          { 0 }, 0, 0, 30.0, 0 };

static void say(const char *fmt, ...)
{
  if (opt.quiet)
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("ipcring-run: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("ipcring-run: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void usage(FILE *f)
{
  fprintf(f,
          "usage: ipcring-run [OPTION]... -- PRODUCER -- CONSUMER\n"
          "Run two pipelines joined by a ring in a sealed memfd; %%d in each is the\n"
          "descriptor's number (ipcringsink fd=%%d, ipcringsrc fd=%%d).\n"
          "\n"
          "  --capacity SIZE       data area of the ring, a power of two from 4K to 1G;\n"
          "                        suffixes K, M, G (default 64M)\n"
          "  --sandbox SIDE        producer, consumer or none (default): run that side\n"
          "                        under bwrap (no network, read-only file system)\n"
          "  --ro-bind PATH        show PATH read-only in the sandbox (for paths under\n"
          "                        /tmp, which the sandbox replaces); repeatable\n"
          "  --bind PATH           show PATH writable in the sandbox; repeatable\n"
          "  --share-net           keep the network in the sandbox\n"
          "  --launch PROGRAM      what runs each pipeline (default gst-launch-1.0); it\n"
          "                        gets the pipeline's words as its last arguments\n"
          "  --launch-arg ARG      an argument for PROGRAM before the pipeline; repeatable\n"
          "                        (for example --launch-arg=-e: end of stream on Ctrl-C)\n"
          "  --bwrap PROGRAM       bubblewrap (default bwrap)\n"
          "  --wait-ring SECONDS   how long the producer may take to make the ring\n"
          "                        (default 30)\n"
          "  --quiet               do not say what is done\n"
          "  --help\n");
}

static uint64_t parse_size(const char *s)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    die("bad size: %s", s);
  int shift = 0;
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  }
  if (*end == 'i' || *end == 'B')
    end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
  if (*end || v > (UINT64_MAX >> shift))
    die("bad size: %s", s);
  return (uint64_t)v << shift;
}

/* The pipeline with %d replaced by fd (and %% by %); it must name the fd. */
static char *expand(const char *tmpl, int fd, const char *who)
{
  size_t cap = strlen(tmpl) + 64, n = 0;
  char *out = malloc(cap);
  int uses = 0;
  if (!out)
    die("out of memory");
  for (const char *p = tmpl; *p; p++) {
    if (n + 24 >= cap && !(out = realloc(out, cap *= 2)))
      die("out of memory");
    if (p[0] == '%' && p[1] == 'd') {
      n += (size_t)sprintf(out + n, "%d", fd);
      uses++;
      p++;
    } else if (p[0] == '%' && p[1] == '%') {
      out[n++] = '%';
      p++;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = '\0';
  if (!uses)
    die("the %s pipeline has no %%d for the ring's descriptor (ipcring%s fd=%%d)", who,
        strcmp(who, "producer") == 0 ? "sink" : "src");
  return out;
}

/* Split s into words like a shell, without expansions: whitespace separates,
 * '...' is literal, "..." keeps \" \\ \$ \` escapes, \ quotes the next
 * character. NULL-terminated; NULL on an unterminated quote. */
static char **split_words(const char *s)
{
  size_t n = strlen(s);
  char **words = calloc(n / 2 + 2, sizeof *words);
  char *buf = malloc(n + 1);
  if (!words || !buf)
    die("out of memory");
  size_t nw = 0;
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\n')
      p++;
    if (!*p)
      break;
    size_t k = 0;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
      if (*p == '\'') {
        const char *e = strchr(p + 1, '\'');
        if (!e)
          return NULL;
        memcpy(buf + k, p + 1, (size_t)(e - p - 1));
        k += (size_t)(e - p - 1);
        p = e + 1;
      } else if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
          if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
            p++;
          buf[k++] = *p;
        }
        if (*p != '"')
          return NULL;
        p++;
      } else if (*p == '\\' && p[1]) {
        buf[k++] = p[1];
        p += 2;
      } else {
        buf[k++] = *p++;
      }
    }
    buf[k] = '\0';
    if (!(words[nw++] = strdup(buf)))
      die("out of memory");
  }
  free(buf);
  words[nw] = NULL;
  return words;
}

/* Build the argument vector of a side. */
static int side_argv(struct side *s, const char **argv, int info_w)
{
  int n = 0;
  static char info_buf[16];
  if (s->sandboxed) {
    argv[n++] = opt.bwrap;
    const char *fixed[] = {
      "--ro-bind", "/", "/",   /* the host, read-only */
      "--dev", "/dev",         /* a minimal /dev of our own ... */
      "--proc", "/proc",
      "--tmpfs", "/tmp",
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
      "--die-with-parent", "--new-session",
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
      argv[n++] = fixed[i];
    if (!opt.share_net)
      argv[n++] = "--unshare-net";
    if (geteuid() == 0) {
      argv[n++] = "--cap-drop";
      argv[n++] = "ALL";
    }
    for (int i = 0; i < opt.n_ro_binds; i++) {
      argv[n++] = "--ro-bind";
      argv[n++] = opt.ro_binds[i];
      argv[n++] = opt.ro_binds[i];
    }
    for (int i = 0; i < opt.n_binds; i++) {
      argv[n++] = "--bind";
      argv[n++] = opt.binds[i];
      argv[n++] = opt.binds[i];
    }
    argv[n++] = "--remount-ro"; /* ... read-only: no /dev/shm to make files in */
    argv[n++] = "/dev";
    snprintf(info_buf, sizeof info_buf, "%d", info_w);
    argv[n++] = "--info-fd";
    argv[n++] = info_buf;
    argv[n++] = "--";
  }
  argv[n++] = opt.launch;
  for (int i = 0; i < opt.n_launch_args; i++)
    argv[n++] = opt.launch_args[i];
  for (int i = 0; s->words[i]; i++)
    argv[n++] = s->words[i];
  argv[n] = NULL;
  return n;
}

/* A shell-like rendering of argv, for the log. */
static void show_argv(const char *who, pid_t pid, const char *const *argv)
{
  if (opt.quiet)
    return;
  fprintf(stderr, "ipcring-run: %s (pid %d):", who, (int)pid);
  for (int i = 0; argv[i]; i++) {
    const char *a = argv[i];
    int plain = *a != '\0';
    for (const char *p = a; *p; p++)
      if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%", *p))
        plain = 0;
    if (plain) {
      fprintf(stderr, " %s", a);
    } else {
      fputs(" '", stderr);
      for (const char *p = a; *p; p++)
        if (*p == '\'')
          fputs("'\\''", stderr);
        else
          fputc(*p, stderr);
      fputc('\'', stderr);
    }
  }
  fputc('\n', stderr);
}

static void start_side(struct side *s, enum side_id id, int ring_fd, const sigset_t *orig_mask)
{
  int info[2] = { -1, -1 };
  if (s->sandboxed && pipe2(info, O_CLOEXEC | O_NONBLOCK) != 0)
    die("pipe: %s", strerror(errno));
  size_t words = 0;
  while (s->words[words])
    words++;
  const char **argv = calloc(64 + 3 * (size_t)(opt.n_ro_binds + opt.n_binds) +
                                 (size_t)opt.n_launch_args + words + 1,
                             sizeof *argv);
  if (!argv)
    die("out of memory");
  side_argv(s, argv, info[1]);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    /* Our own process group: a Ctrl-C reaches the launcher only, which
     * forwards it once. Gone with the launcher. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(127);
    sigprocmask(SIG_SETMASK, orig_mask, NULL);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0)
      dup2(devnull, 0);
    /* The ring's descriptor, and bwrap's info pipe, cross exec. */
    fcntl(ring_fd, F_SETFD, 0);
    if (info[1] >= 0)
      fcntl(info[1], F_SETFD, 0);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "ipcring-run: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  s->pid = pid;
  s->running = 1;
  if (info[1] >= 0)
    close(info[1]);
  s->info_fd = info[0];
  show_argv(side_name[id], pid, argv);
  free(argv);
}

/* bwrap's --info-fd says {"child-pid": N, ...}, in several writes: take in
 * what is there (until bwrap closes it, or it would die of SIGPIPE) and pick
 * the pid out once it has come. */
static void read_inner_pid(struct side *s)
{
  while (s->info_fd >= 0) {
    char buf[256];
    ssize_t n = read(s->info_fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      break;
    if (n <= 0) {
      close(s->info_fd);
      s->info_fd = -1;
      break;
    }
    size_t room = sizeof s->info - 1 - s->info_len;
    size_t k = (size_t)n < room ? (size_t)n : room;
    memcpy(s->info + s->info_len, buf, k);
    s->info_len += k;
    s->info[s->info_len] = '\0';
  }
  const char *p;
  if (s->inner <= 0 && (p = strstr(s->info, "\"child-pid\"")) && (p = strchr(p, ':')) &&
      strpbrk(p, ",}\n"))
    s->inner = (pid_t)strtol(p + 1, NULL, 10);
}

/* Send sig to the side's pipeline. In the sandbox that is every child of
 * bwrap's first process (bwrap itself would die of it and take the sandbox
 * down with SIGKILL). */
static void signal_side(struct side *s, int sig)
{
  if (!s->running)
    return;
  if (!s->sandboxed || sig == SIGKILL) {
    kill(s->pid, sig);
    return;
  }
  /* bwrap says the pid as soon as the sandbox is up: give it a second. */
  for (int i = 0; i < 10 && s->inner <= 0 && s->info_fd >= 0; i++) {
    struct pollfd pfd = { s->info_fd, POLLIN, 0 };
    poll(&pfd, 1, 100);
    read_inner_pid(s);
  }
  if (s->inner <= 0) {
    kill(s->pid, SIGKILL); /* no sandbox yet: nothing to stop gently */
    return;
  }
  DIR *d = opendir("/proc");
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0)
      continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
      continue;
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* after the command name */
    long ppid = 0;
    if (rp && sscanf(rp + 1, " %*c %ld", &ppid) == 1 && ppid == s->inner)
      kill((pid_t)pid, sig);
  }
  closedir(d);
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exit_code(int status)
{
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 1;
}

static void describe_status(const char *who, int status)
{
  if (WIFEXITED(status))
    say("%s exited with status %d", who, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    say("%s was killed by signal %d (%s)", who, WTERMSIG(status), strsignal(WTERMSIG(status)));
}

int main(int argc, char **argv)
{
  enum { O_CAPACITY = 1, O_SANDBOX, O_RO_BIND, O_BIND, O_SHARE_NET, O_LAUNCH, O_LAUNCH_ARG,
         O_BWRAP, O_WAIT_RING, O_QUIET, O_HELP };
  static const struct option longopts[] = {
    { "capacity", required_argument, NULL, O_CAPACITY },
    { "sandbox", required_argument, NULL, O_SANDBOX },
    { "ro-bind", required_argument, NULL, O_RO_BIND },
    { "bind", required_argument, NULL, O_BIND },
    { "share-net", no_argument, NULL, O_SHARE_NET },
    { "launch", required_argument, NULL, O_LAUNCH },
    { "launch-arg", required_argument, NULL, O_LAUNCH_ARG },
    { "bwrap", required_argument, NULL, O_BWRAP },
    { "wait-ring", required_argument, NULL, O_WAIT_RING },
    { "quiet", no_argument, NULL, O_QUIET },
    { "help", no_argument, NULL, O_HELP },
    { NULL, 0, NULL, 0 },
  };
  int c;
  while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (c) {
    case O_CAPACITY: opt.capacity = parse_size(optarg); break;
    case O_SANDBOX: opt.sandbox = optarg; break;
    case O_RO_BIND:
    case O_BIND:
      if ((c == O_RO_BIND ? opt.n_ro_binds : opt.n_binds) == MAX_BINDS)
        die("too many binds");
      if (optarg[0] != '/')
        die("--%s needs an absolute path: %s", c == O_RO_BIND ? "ro-bind" : "bind", optarg);
      if (c == O_RO_BIND)
        opt.ro_binds[opt.n_ro_binds++] = optarg;
      else
        opt.binds[opt.n_binds++] = optarg;
      break;
    case O_SHARE_NET: opt.share_net = 1; break;
    case O_LAUNCH: opt.launch = optarg; break;
    case O_LAUNCH_ARG:
      if (opt.n_launch_args == MAX_ARGS - 8)
        die("too many --launch-arg");
      opt.launch_args[opt.n_launch_args++] = optarg;
      break;
    case O_BWRAP: opt.bwrap = optarg; break;
    case O_WAIT_RING: opt.wait_ring_s = atof(optarg); break;
    case O_QUIET: opt.quiet = 1; break;
    case 'h':
    case O_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  /* What is left: [--] PRODUCER -- CONSUMER (getopt stopped at the first
   * "--" and skipped it). */
  int rest = argc - optind;
  char **args = argv + optind;
  if (rest != 3 || strcmp(args[1], "--") != 0) {
    usage(stderr);
    return 2;
  }
  if (opt.capacity < IPCRING_CAPACITY_MIN ||
      opt.capacity > IPCRING_CAPACITY_MAX || (opt.capacity & (opt.capacity - 1)))
    die("the capacity must be a power of two from 4K to 1G, not %" PRIu64, opt.capacity);
  struct side sides[2];
  memset(sides, 0, sizeof sides);
  sides[PRODUCER].info_fd = sides[CONSUMER].info_fd = -1;
  if (strcmp(opt.sandbox, "producer") == 0)
    sides[PRODUCER].sandboxed = 1;
  else if (strcmp(opt.sandbox, "consumer") == 0)
    sides[CONSUMER].sandboxed = 1;
  else if (strcmp(opt.sandbox, "none") != 0)
    die("--sandbox takes producer, consumer or none, not %s", opt.sandbox);

  /* Paths of GStreamer plugins the user pointed at stay visible in the
   * sandbox even where it hides the host (/tmp). */
  if (sides[PRODUCER].sandboxed || sides[CONSUMER].sandboxed) {
    const char *vars[] = { "GST_PLUGIN_PATH_1_0", "GST_PLUGIN_PATH" };
    for (size_t v = 0; v < 2; v++) {
      const char *val = getenv(vars[v]);
      if (!val)
        continue;
      char *copy = strdup(val), *save = NULL;
      for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (tok[0] == '/' && stat(tok, &st) == 0 && opt.n_ro_binds < MAX_BINDS) {
          opt.ro_binds[opt.n_ro_binds++] = tok;
          say("%s: %s stays visible (read-only) in the sandbox", vars[v], tok);
        }
      }
    }
  }

  int fd = ipcring_memfd_create(opt.capacity, "ipcring-run");
  if (fd < 0)
    die("cannot make the ring's memfd: %s", ipcring_strerror(fd));
  say("ring: sealed memfd, descriptor %d, %" PRIu64 " bytes of data (+%u of header), "
      "sealed against shrinking, growing and new seals",
      fd, opt.capacity, IPCRING_HEADER_SIZE);
  sides[PRODUCER].pipeline = expand(args[0], fd, "producer");
  sides[CONSUMER].pipeline = expand(args[2], fd, "consumer");
  for (int i = 0; i < 2; i++)
    if (!(sides[i].words = split_words(sides[i].pipeline)) || !sides[i].words[0])
      die("the %s pipeline has an unterminated quote or is empty", side_name[i]);
  if (sides[PRODUCER].sandboxed || sides[CONSUMER].sandboxed)
    say("sandbox (%s): bwrap, read-only /, private /tmp, /dev (read-only) and /proc, "
        "own PID/IPC/UTS namespaces and session, %s, dies with ipcring-run",
        opt.sandbox, opt.share_net ? "network shared" : "no network");

  /* Signals arrive through sigtimedwait() in the loop below. */
  sigset_t set, orig;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &orig);

  start_side(&sides[PRODUCER], PRODUCER, fd, &orig);
  int64_t t_start = now_ms();
  int ring_ready = 0;
  int stopping = 0;     /* 0, or the last signal sent to stop the sides */
  int64_t stop_at = 0;  /* when that signal went */
  int result = -1;      /* exit status: first failure */

  for (;;) {
    if (!ring_ready && !stopping) {
      uint64_t magic = 0;
      if (pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic && magic == IPCRING_MAGIC) {
        ring_ready = 1;
        say("the producer made the ring after %lld ms; starting the consumer",
            (long long)(now_ms() - t_start));
        start_side(&sides[CONSUMER], CONSUMER, fd, &orig);
        close(fd); /* the sides hold it now */
        fd = -1;
      } else if (now_ms() - t_start > (int64_t)(opt.wait_ring_s * 1000)) {
        say("the producer made no ring within %.0f s: stopping it", opt.wait_ring_s);
        result = result < 0 ? 1 : result;
        stopping = SIGINT;
        stop_at = now_ms();
        signal_side(&sides[PRODUCER], SIGINT);
      }
    }
    for (int i = 0; i < 2; i++)
      read_inner_pid(&sides[i]);
    if (!sides[PRODUCER].running && !sides[CONSUMER].running)
      break;

    struct timespec tick = { 0, ring_ready || stopping ? 200000000 : 10000000 };
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &tick);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      say("got %s: forwarding it to both sides", strsignal(sig));
      for (int i = 0; i < 2; i++)
        signal_side(&sides[i], sig);
      stopping = sig == SIGHUP ? SIGTERM : sig;
      stop_at = now_ms();
    }
    /* Reap whoever ended. */
    for (;;) {
      int status;
      pid_t p = waitpid(-1, &status, WNOHANG);
      if (p <= 0)
        break;
      for (int i = 0; i < 2; i++) {
        if (p != sides[i].pid)
          continue;
        sides[i].running = 0;
        sides[i].status = status;
        describe_status(side_name[i], status);
        if (exit_code(status) != 0) {
          if (result < 0)
            result = exit_code(status);
          if (!stopping && sides[!i].running) {
            say("stopping the %s", side_name[!i]);
            stopping = SIGINT;
            stop_at = now_ms();
            signal_side(&sides[!i], SIGINT);
          }
        } else if (i == PRODUCER && !ring_ready && !stopping) {
          say("the producer ended before it made the ring");
          result = 1;
        }
      }
    }
    /* Sides that outstay the grace period get a harder signal. */
    if (stopping && now_ms() - stop_at > GRACE_MS &&
        (sides[PRODUCER].running || sides[CONSUMER].running)) {
      stopping = stopping == SIGKILL ? SIGKILL : stopping == SIGTERM ? SIGKILL : SIGTERM;
      say("sides still running after %d s: sending %s", GRACE_MS / 1000, strsignal(stopping));
      for (int i = 0; i < 2; i++)
        signal_side(&sides[i], stopping);
      stop_at = now_ms();
    }
  }
  if (fd >= 0)
    close(fd);
  if (result < 0)
    result = 0;
  say("done: exit status %d", result);
  return result;
}
