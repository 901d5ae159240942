// The monitor: one waiter per state root for its detached containers (`run -d`, `image run -d`,
// `image start`) and the log writer of every detached container and exec of that root. It plays
// the part conmon or containerd-shim plays beside runc, but one process serves the whole root
// instead of one per container (docs/DESIGN.md "The monitor").
//
//   capsule-nsexec monitor run ROOT STATE_DIR N CLEANUP(N words) COMMAND...
//     runs COMMAND (capsule's own `run -d ...` again) as the monitor's child, with this caller's
//     stdout, stderr, directory, environment, umask and resource limits, and exits with its status
//     (a signal N: 128+N). The signals INT, TERM, HUP and QUIT given to the caller are passed on to
//     it. The monitor is a child subreaper, so it adopts the container's init once COMMAND exits.
//     When that init exits it writes STATE_DIR/exit.json ({"exitCode", "signal", "finishedAt"},
//     docker's 128+N for a signal) if state.json still names that init, then runs CLEANUP (--rm's
//     destroyc, or a kept image container's `stop --exited`), its word @INIT@ replaced by
//     PID:START of that init.
//   capsule-nsexec monitor log ROOT LOG MAX_SIZE MAX_FILES PIPE_FD LOG_FD DONE
//     hands the read end of a process's stdout/stderr pipe and its log (opened O_APPEND) to the
//     monitor, which appends what it reads, rotating by size (runtime/log_writer.ts), until every
//     writer has closed the pipe; then it creates DONE (empty), which `capsule log -f` waits for.
//   capsule-nsexec monitor serve ROOT HASH
//     the monitor itself, started by the first client of a root that has none (never by hand).
//
// A client takes ROOT/.monitor-HASH.lock, connects to ROOT/.monitor-HASH.sock (starting the
// monitor if none answers; HASH: its context, see context_hash), sends its request with its fds
// and a pidfd of itself (SCM_RIGHTS; the kernel adds its pid, SCM_CREDENTIALS) and lets the lock
// go once the monitor accepted it. The monitor answers only a sender of its own uid whose context
// hashes to its own (peer_matches). It exits once it has no job and no log, holding the same
// lock, after removing its socket and the lock: a client never connects to a monitor on its way
// out, and the root is left as it was. Names starting with '.' are never container ids
// (runtime/ids.ts). The monitor keeps nothing of its first caller (environment, fds, directory)
// and leaves its session; what it runs gets the environment of the request that asked for it.
#include "capsule.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// ".monitor-HASH.sock" and ".monitor-HASH.lock", HASH the caller's context (context_hash).
static char sock_name[48], lock_name[48];
#define SOCK_NAME sock_name
#define LOCK_NAME lock_name
#define MAX_REQUEST (8u << 20) // bytes of one request (arguments and environment)
#define MAX_FDS 253 // SCM_MAX_FD: the stdout, stderr and directory, and the inherited fds

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  if (write(2, "capsule: ", 9) < 0 || write(2, buf, (size_t)n) < 0) return;
}

// The socket's address through the root's O_PATH fd: no path length limit, no symlink swapped in
// for the root between the open and the connect.
static socklen_t sock_addr(struct sockaddr_un *a, int dir) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path, sizeof a->sun_path, "/proc/self/fd/%d/%s", dir, SOCK_NAME);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *p, size_t n) {
  char *c = p;
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

// What a command run by the monitor inherits from it rather than from its caller: namespaces,
// root directory, cgroups, ids, capabilities, no_new_privs, seccomp, LSM label, audit loginuid,
// nice value, scheduling policy and priority, I/O priority, CPU and memory-node affinity,
// oom_score_adj (personality, which any process may set, comes with a request). A monitor is
// shared only by callers alike in all of these (the hash of them names its socket, and the
// monitor and every caller check it of each other through pidfds), so a command runs as its
// caller would have run it itself (`unshare -n` or a systemd unit gets a monitor of its own), and
// no caller gets more than it has. A caller under a seccomp filter gets a monitor of its own (two
// filters cannot be compared): its pid and start time are in its hash.
static void set_names(unsigned long long hash) {
  snprintf(sock_name, sizeof sock_name, ".monitor-%016llx.sock", hash);
  snprintf(lock_name, sizeof lock_name, ".monitor-%016llx.lock", hash);
}

static unsigned long long fnv(unsigned long long h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
  return h;
}

// A small file under the /proc/PID directory `proc` into buf (NUL-terminated, "" when absent:
// attr/current without an LSM); -1 when it exists and cannot be read.
static int read_at(int proc, const char *name, char *buf, size_t size) {
  buf[0] = 0;
  int fd = openat(proc, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == EINVAL ? 0 : -1;
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, size - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && got == 0) break; // attr/current of no LSM
    if (n < 0) {
      close(fd);
      return -1;
    }
    if (n == 0 || (got += (size_t)n) == size - 1) break;
  }
  buf[got] = 0;
  close(fd);
  return 0;
}

// Field `field` (1-based, as proc(5) numbers them) of a stat line; "" when short.
static void stat_field(const char *stat, int field, char *out, size_t size) {
  out[0] = 0;
  const char *p = strrchr(stat, ')');
  if (!p || field < 3) return;
  p += 2;
  for (int f = 3; f < field && p; f++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  if (!p) return;
  size_t n = strcspn(p, " \n");
  if (n >= size) n = size - 1;
  memcpy(out, p, n);
  out[n] = 0;
}

// The context of the process whose /proc directory is `proc` (pid `pid`), hashed; 0 when some
// of it cannot be read (then nothing is shared with it).
static unsigned long long context_hash(int proc, pid_t pid) {
  unsigned long long h = 0xcbf29ce484222325ULL;
  static const char *links[] = {"ns/cgroup", "ns/ipc",  "ns/mnt",  "ns/net",
                                "ns/pid",    "ns/pid_for_children", "ns/time",
                                "ns/time_for_children", "ns/user", "ns/uts", "root"};
  char buf[8192], f[64];
  for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
    ssize_t n = readlinkat(proc, links[i], buf, sizeof buf);
    if (n < 0 && errno != ENOENT) return 0;
    h = fnv(h, buf, n > 0 ? (size_t)n : 0);
    h = fnv(h, "\n", 1);
  }
  // Not personality: reading another process's needs ptrace's attach mode, which Yama refuses
  // to an unprivileged monitor; any process may set its own, so a request carries it instead.
  static const char *files[] = {"cgroup", "attr/current", "oom_score_adj", "loginuid"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    if (read_at(proc, files[i], buf, sizeof buf)) return 0;
    h = fnv(h, buf, strlen(buf) + 1);
  }
  if (read_at(proc, "stat", buf, sizeof buf) || !buf[0]) return 0;
  static const int fields[] = {19, 40, 41}; // nice, rt_priority, policy
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    stat_field(buf, fields[i], f, sizeof f);
    h = fnv(h, f, strlen(f) + 1);
  }
  char start[64];
  stat_field(buf, 22, start, sizeof start);
  long io = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, pid);
  snprintf(f, sizeof f, "io=%ld", io);
  h = fnv(h, f, strlen(f) + 1);
  if (read_at(proc, "status", buf, sizeof buf) || !buf[0]) return 0;
  static const char *keys[] = {"Uid:",       "Gid:",         "Groups:",      "CapInh:",
                               "CapPrm:",    "CapEff:",      "CapBnd:",      "CapAmb:",
                               "NoNewPrivs:", "Seccomp:",    "Cpus_allowed:", "Mems_allowed:"};
  for (char *line = buf; *line;) {
    char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
      if (strncmp(line, keys[k], strlen(keys[k]))) continue;
      h = fnv(h, line, len + (end ? 1 : 0));
      // Under a seccomp filter: a monitor of its own (its pid and start time).
      if (k == 9 && strtol(line + strlen(keys[k]), NULL, 10) != 0) {
        snprintf(f, sizeof f, "%d:%s", pid, start);
        h = fnv(h, f, strlen(f));
      }
    }
    line += len + (end ? 1 : 0);
  }
  return h ? h : 1;
}

// This process's context hash: the monitor's (its socket's name), or a client's own.
static unsigned long long my_hash;

// Whether `pidfd` is a pidfd of the live process `pid` (the other end's sender, as the kernel
// said in SCM_CREDENTIALS) whose context hashes to this process's (my_hash): read through
// /proc/PID while the pidfd says that process is alive, before and after (its pid cannot go to
// another process in between).
static int peer_matches(int pidfd, pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", pidfd);
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  if (n != 18 || memcmp(buf, "anon_inode:[pidfd]", 18)) return 0;
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  if (read_proc(path, buf, sizeof buf)) return 0;
  char *p = strstr(buf, "\nPid:\t");
  if (!p || strtol(p + 6, NULL, 10) != pid) return 0;
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0)) return 0;
  snprintf(path, sizeof path, "/proc/%d", pid);
  int proc = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (proc < 0) return 0;
  unsigned long long h = context_hash(proc, pid);
  close(proc);
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0)) return 0;
  return h == my_hash;
}

// ---- the client side ----

struct buf {
  char *d;
  size_t len, cap;
};

static void put(struct buf *b, const char *s) {
  size_t n = strlen(s) + 1;
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->d = realloc(b->d, b->cap);
    if (!b->d) {
      say("out of memory");
      _exit(1);
    }
  }
  memcpy(b->d + b->len, s, n);
  b->len += n;
}

static void put_num(struct buf *b, unsigned long long v) {
  char s[24];
  snprintf(s, sizeof s, "%llu", v);
  put(b, s);
}

// Starts the monitor of `root` (its O_PATH fd `dir`) and waits until it listens. The caller
// holds the lock. Returns 0, or -1 having said why.
static int start_monitor(int dir, const char *root) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC)) {
    say("cannot start the monitor of %s: pipe: %s", root, why(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    say("cannot start the monitor of %s: fork: %s", root, why(errno));
    close(ready[0]);
    close(ready[1]);
    return -1;
  }
  if (pid == 0) {
    // Out of the caller's session and process group, and no child of it (the caller reaps only
    // this intermediate): the monitor outlives every caller.
    setsid();
    if (fork() != 0) _exit(0);
    // Above 4 first: a dup2 onto the same number would leave it close-on-exec.
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC), d = fcntl(dir, F_DUPFD_CLOEXEC, 5),
        r = fcntl(ready[1], F_DUPFD_CLOEXEC, 5);
    if (devnull < 0 || d < 0 || r < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 ||
        dup2(devnull, 2) < 0 || dup2(d, 3) < 0 || dup2(r, 4) < 0)
      _exit(127);
    syscall(SYS_close_range, 5, ~0U, 0);
    if (chdir("/")) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char hash[24];
    snprintf(hash, sizeof hash, "%.16s", sock_name + 9);
    char *argv[] = {"capsule-nsexec", "monitor", "serve", (char *)root, hash, NULL};
    char *envp[] = {NULL};
    execve("/proc/self/exe", argv, envp);
    _exit(127);
  }
  close(ready[1]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  char msg[512];
  ssize_t n;
  do n = read(ready[0], msg, sizeof msg - 1);
  while (n < 0 && errno == EINTR);
  close(ready[0]);
  if (n > 0 && msg[0] == 'R') return 0;
  msg[n > 1 ? n : 1] = 0;
  say("cannot start the monitor of %s: %s", root, n > 1 ? msg + 1 : "it exited at once");
  return -1;
}

static int try_connect(int dir) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (s < 0) return -1;
  // The monitor's 'G' then comes with its pid, as the kernel says it (recv_go).
  if (setsockopt(s, SOL_SOCKET, SO_PASSCRED, &one, sizeof one)) {
    close(s);
    return -1;
  }
  struct sockaddr_un a;
  socklen_t len = sock_addr(&a, dir);
  if (connect(s, (struct sockaddr *)&a, len) == 0) return s;
  close(s);
  return -1;
}

// Connects to the monitor of `root`, starting one if none answers; *lock is the lock's fd, held
// until the request is accepted. Returns the socket, or -1 having said why.
static int connect_monitor(const char *root, int *lock) {
  int dir = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    say("cannot open the state root %s: %s", root, why(errno));
    return -1;
  }
  // The monitor removes the lock as it exits: a lock taken on a file no longer linked there is
  // taken again on the new one.
  for (;;) {
    *lock = openat(dir, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*lock < 0) {
      say("cannot open %s/%s: %s", root, LOCK_NAME, why(errno));
      close(dir);
      return -1;
    }
    while (flock(*lock, LOCK_EX) && errno == EINTR) {
    }
    struct stat held, named;
    if (fstat(*lock, &held) == 0 && fstatat(dir, LOCK_NAME, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
        held.st_ino == named.st_ino && held.st_dev == named.st_dev)
      break;
    close(*lock);
  }
  int s = try_connect(dir);
  if (s < 0 && start_monitor(dir, root) == 0) {
    s = try_connect(dir);
    if (s < 0) say("cannot reach the monitor of %s: %s", root, why(errno));
  }
  close(dir);
  if (s < 0) close(*lock);
  return s;
}

// Sends `b` (u32 length, then the words) with `fds` attached.
// Once the monitor says 'G' (its socket now passes credentials), with a pidfd of this process
// after `fds`: how the monitor knows who asks (take_request).
// The monitor's 'G', with its pidfd and the kernel's word on its pid: it must be a monitor in
// this client's own context (a root process without capabilities, which may replace the socket
// in the root it owns, is not one), or nothing of the request is sent.
static int recv_go(int s) {
  char go = 0;
  char ctl[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
  struct iovec iov = {.iov_base = &go, .iov_len = 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                     .msg_controllen = sizeof ctl};
  ssize_t r;
  do r = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  int pidfd = -1, npidfd = 0;
  pid_t sender = 0;
  for (struct cmsghdr *h = r == 1 ? CMSG_FIRSTHDR(&m) : NULL; h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level != SOL_SOCKET) continue;
    if (h->cmsg_type == SCM_CREDENTIALS && h->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
      struct ucred u;
      memcpy(&u, CMSG_DATA(h), sizeof u);
      sender = u.uid == geteuid() ? u.pid : 0;
    } else if (h->cmsg_type == SCM_RIGHTS) {
      for (size_t k = 0; k < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
        int fd;
        memcpy(&fd, CMSG_DATA(h) + k * sizeof(int), sizeof fd);
        if (npidfd++) close(fd);
        else pidfd = fd;
      }
    }
  }
  int ok = r == 1 && go == 'G' && !(m.msg_flags & MSG_CTRUNC) && npidfd == 1 && sender > 0 &&
           peer_matches(pidfd, sender);
  if (pidfd >= 0) close(pidfd);
  return ok ? 0 : -1;
}

static int send_request(int s, struct buf *b, const int *given, int ngiven) {
  if (recv_go(s)) return -1;
  int fds[MAX_FDS], nfds = ngiven + 1;
  memcpy(fds, given, sizeof(int) * (size_t)ngiven);
  if ((fds[ngiven] = (int)syscall(SYS_pidfd_open, getpid(), 0)) < 0) return -1;
  uint32_t len = (uint32_t)b->len;
  char ctl[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  memset(ctl, 0, sizeof ctl);
  struct iovec iov = {.iov_base = &len, .iov_len = sizeof len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  {
    m.msg_control = ctl;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  }
  ssize_t w;
  do w = sendmsg(s, &m, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  close(fds[ngiven]);
  if (w != sizeof len) return -1;
  return write_all(s, b->d, b->len);
}

static int accepted(int s) {
  char c;
  return read_all(s, &c, 1) == 0 && c == 'A' ? 0 : -1;
}

static volatile sig_atomic_t conn_fd = -1;
static void pass_signal(int sig) {
  int e = errno;
  unsigned char m[2] = {'S', (unsigned char)sig};
  if (conn_fd >= 0 && send(conn_fd, m, 2, MSG_NOSIGNAL) < 0) {
  }
  errno = e;
}

// The fds from 3 up that this process inherited (open, not close-on-exec: every fd capsule opens
// is), ascending: the caller's, which capsule passes on as --preserve-fds asks. At most `max`
// into `fds`; -1 if there are more, or /proc/self/fd cannot be read.
static int inherited_fds(int *fds, int max) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end || e->d_name[0] == '.' || fd < 3 || fd == dirfd(d)) continue;
    int f = fcntl((int)fd, F_GETFD);
    if (f < 0 || (f & FD_CLOEXEC)) continue;
    if (n == max) {
      closedir(d);
      return -1;
    }
    int i = n++;
    for (; i > 0 && fds[i - 1] > fd; i--) fds[i] = fds[i - 1];
    fds[i] = (int)fd;
  }
  closedir(d);
  return n;
}

static int client_run(int argc, char **argv) {
  // run ROOT STATE_DIR N CLEANUP... COMMAND...
  if (argc < 6) return 2;
  int fds[MAX_FDS] = {1, 2, -1};
  int kept = inherited_fds(fds + 3, MAX_FDS - 4); // and the pidfd
  if (kept < 0) {
    say("cannot pass the open fds on to the program: more than %d (or /proc/self/fd cannot be "
        "read)",
        MAX_FDS - 4);
    return 1;
  }
  const char *root = argv[3], *state = argv[4];
  char *end;
  long n = strtol(argv[5], &end, 10);
  if (*end || n < 0 || n > argc - 7) return 2;
  int cmd = 6 + (int)n;
  if (state[0] != '/') {
    say("the state directory %s is not an absolute path", state);
    return 1;
  }
  struct buf b = {0};
  put(&b, "R");
  put(&b, state);
  mode_t mask = umask(0);
  umask(mask);
  put_num(&b, mask);
  put_num(&b, (unsigned long long)(unsigned)personality(0xffffffff));
  for (int r = 0; r < RLIM_NLIMITS; r++) {
    struct rlimit l;
    if (getrlimit(r, &l)) l.rlim_cur = l.rlim_max = RLIM_INFINITY;
    put_num(&b, l.rlim_cur);
    put_num(&b, l.rlim_max);
  }
  put_num(&b, (unsigned long long)kept);
  for (int i = 0; i < kept; i++) put_num(&b, (unsigned long long)fds[3 + i]);
  put_num(&b, (unsigned long long)n);
  for (int i = 0; i < n; i++) put(&b, argv[6 + i]);
  put_num(&b, (unsigned long long)(argc - cmd));
  for (int i = cmd; i < argc; i++) put(&b, argv[i]);
  extern char **environ;
  size_t nenv = 0;
  for (char **e = environ; *e; e++) nenv++;
  put_num(&b, nenv);
  for (char **e = environ; *e; e++) put(&b, *e);
  int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cwd < 0) {
    say("cannot open the current directory: %s", why(errno));
    return 1;
  }
  fds[2] = cwd;
  int lock;
  int s = connect_monitor(root, &lock);
  if (s < 0) return 1;
  if (send_request(s, &b, fds, 3 + kept) || accepted(s)) {
    say("the monitor of %s refused the request", root);
    return 1;
  }
  close(lock);
  close(cwd);
  conn_fd = s;
  struct sigaction sa = {.sa_handler = pass_signal};
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
  unsigned char m[5];
  if (read_all(s, m, 5) || m[0] != 'X') {
    say("the monitor of %s went away before the command ended", root);
    return 1;
  }
  int status = (int)le32(m + 1);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static int client_log(int argc, char **argv) {
  // log ROOT LOG MAX_SIZE MAX_FILES PIPE_FD LOG_FD DONE
  if (argc != 10) return 2;
  const char *root = argv[3];
  int fds[2];
  for (int i = 0; i < 2; i++) {
    char *end;
    long fd = strtol(argv[7 + i], &end, 10);
    if (*end || fd < 3 || fd > 1 << 20 || fcntl((int)fd, F_GETFD) < 0) return 2;
    fds[i] = (int)fd;
  }
  if (argv[4][0] != '/' || argv[9][0] != '/') {
    say("the log %s is not an absolute path", argv[4]);
    return 1;
  }
  struct buf b = {0};
  put(&b, "L");
  for (int i = 4; i <= 6; i++) put(&b, argv[i]);
  put(&b, argv[9]);
  int lock;
  int s = connect_monitor(root, &lock);
  if (s < 0) return 1;
  if (send_request(s, &b, fds, 2) || accepted(s)) {
    say("the monitor of %s refused the log %s", root, argv[4]);
    return 1;
  }
  return 0;
}

// ---- the monitor ----

enum { JOB_CLI, JOB_INIT };

struct job {
  int state;
  pid_t cli;  // JOB_CLI: the command run for the client
  int conn;   // its client, -1 once gone
  char *dir;  // the container's state directory
  pid_t reap; // JOB_INIT: the pid whose exit is the container's (the init, or its wrapper)
  pid_t init;
  char start[24];
  char **clean; // NULL-terminated, or NULL
  char **env;
  char *mem; // the request's words, which clean and env point into
};

struct wlog {
  int pipe, out;
  char *path, *done;
  unsigned long long max, size;
  unsigned files;
};

// Processes reaped while a command was still running: its init may be among them.
struct reaped {
  pid_t pid;
  char start[24];
  int status;
};

static struct job *jobs;
static size_t njobs;
static struct wlog *logs;
static size_t nlogs;
static struct reaped early[256];
static size_t nearly;
static char rbuf[65536];

static void *grow(void *p, size_t n, size_t size) {
  void *q = realloc(p, n * size);
  if (!q) _exit(1); // the monitor cannot go on; its containers go on without it
  return q;
}

// Field 22 of /proc/PID/stat (the start time), "" when it cannot be read.
static void start_time(pid_t pid, char out[24]) {
  char path[64], stat[1024];
  out[0] = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (!read_proc(path, stat, sizeof stat)) stat_field(stat, 22, out, 24);
}

// The number after `key` at the top level of state.json's text (StateStore indents by two
// spaces: "\n  \"pid\": N"), or "" (quoted values unquoted).
static void state_field(const char *text, const char *key, char out[24]) {
  char pat[64];
  snprintf(pat, sizeof pat, "\n  \"%s\":", key);
  out[0] = 0;
  const char *p = strstr(text, pat);
  if (!p) return;
  p += strlen(pat);
  while (*p == ' ') p++;
  if (*p == '"') p++;
  size_t n = strspn(p, "0123456789");
  if (!n || n >= 24) return;
  memcpy(out, p, n);
  out[n] = 0;
}

static char *read_state(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/state.json", dir);
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  return fd < 0 ? NULL : read_small(fd);
}

static void reset_child(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
}

static void run_cleanup(struct job *j) {
  if (!j->clean || !j->clean[0]) return;
  char run[64];
  snprintf(run, sizeof run, "%d:%s", j->init, j->start);
  for (char **w = j->clean; *w; w++)
    if (!strcmp(*w, "@INIT@")) *w = run;
  pid_t p = fork();
  if (p != 0) return; // its exit is reaped in the loop, as any other child's
  reset_child();
  setsid();
  int devnull = open("/dev/null", O_RDWR);
  if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
    _exit(127);
  syscall(SYS_close_range, 3, ~0U, 0);
  execve(j->clean[0], j->clean, j->env);
  _exit(127);
}

static void drop_job(size_t i) {
  struct job *j = &jobs[i];
  if (j->conn >= 0) close(j->conn);
  free(j->clean);
  free(j->env);
  free(j->mem);
  jobs[i] = jobs[--njobs];
}

// The container's process `reap` exited with `status` (have_status 0: it was not this monitor's
// to reap; capsule's run reaped an init that exited before it did, and kept its status): exit.json,
// then the cleanup, both only while state.json still names that init (the cleanup also once the
// state is gone): never for another container that took the id since.
static void finish(size_t i, int status, int have_status) {
  struct job *j = &jobs[i];
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  int code = sig ? 128 + sig : WEXITSTATUS(status);
  // util-linux 2.38's unshare exits 1 when its child was killed by SIGKILL (it cannot re-raise
  // that one): from a wrapper, 1 is no status at all.
  int known = have_status && !(j->reap != j->init && !sig && code == 1);
  char *text = read_state(j->dir), now[24] = "";
  if (text) state_field(text, "pid", now);
  char init[24];
  snprintf(init, sizeof init, "%d", j->init);
  int ours = !strcmp(now, init);
  if (!text && (errno == ENOENT || errno == ENOTDIR)) ours = -1; // deleted: the cleanup only
  free(text);
  if (known && ours == 1) {
    char tmp[4200], path[4200], at[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    snprintf(tmp, sizeof tmp, "%s/exit.json.tmp", j->dir);
    snprintf(path, sizeof path, "%s/exit.json", j->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd >= 0) {
      int ok = dprintf(fd, "{\"exitCode\": %d, \"signal\": %d, \"finishedAt\": \"%s\"}\n", code,
                       sig, at) > 0;
      if (close(fd) == 0 && ok) rename(tmp, path);
    }
  }
  if (ours) run_cleanup(j);
  drop_job(i);
}

// The command run for a client ended with `status`: the client hears it; if it made the
// container, the monitor now waits for that container's init.
static void cli_ended(size_t i, int status) {
  struct job *j = &jobs[i];
  if (j->conn >= 0) {
    unsigned char m[5] = {'X', (unsigned char)status, (unsigned char)(status >> 8),
                          (unsigned char)(status >> 16), (unsigned char)(status >> 24)};
    if (write_all(j->conn, m, 5)) {
    }
    close(j->conn);
    j->conn = -1;
  }
  char *text = NULL, pid[24] = "", wait[24] = "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) text = read_state(j->dir);
  if (text) {
    state_field(text, "pid", pid);
    state_field(text, "pidStartTime", j->start);
    state_field(text, "waitPid", wait);
    free(text);
  }
  j->init = atoi(pid);
  j->reap = wait[0] ? atoi(wait) : j->init;
  if (j->init <= 0 || j->reap <= 0) {
    drop_job(i);
    return;
  }
  j->state = JOB_INIT;
  int running = 0;
  for (size_t k = 0; k < njobs; k++) running |= jobs[k].state == JOB_CLI;
  for (size_t k = 0; k < nearly; k++) {
    if (early[k].pid != j->reap) continue;
    if (j->reap == j->init && strcmp(early[k].start, j->start)) continue;
    int st = early[k].status;
    early[k] = early[--nearly];
    finish(i, st, 1);
    if (!running) nearly = 0;
    return;
  }
  if (!running) nearly = 0; // no command left whose init could be among them
  // Not this monitor's child: capsule's run reaped it (an init that exited before run -d did).
  siginfo_t si;
  if (waitid(P_PID, (id_t)j->reap, &si, WEXITED | WNOHANG | WNOWAIT) && errno == ECHILD)
    finish(i, 0, 0);
}

static void reap_children(void) {
  for (;;) {
    siginfo_t si;
    si.si_pid = 0;
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) || si.si_pid == 0) return;
    pid_t pid = si.si_pid;
    char start[24];
    start_time(pid, start); // a zombie's /proc entry is still there
    int status;
    if (waitpid(pid, &status, WNOHANG) != pid) return;
    size_t i;
    for (i = 0; i < njobs; i++) {
      if (jobs[i].state == JOB_CLI && jobs[i].cli == pid) {
        cli_ended(i, status);
        break;
      }
      // The init's own start time too (a pid taken over by another process is not it).
      if (jobs[i].state == JOB_INIT && jobs[i].reap == pid &&
          (jobs[i].reap != jobs[i].init || !start[0] || !strcmp(start, jobs[i].start))) {
        finish(i, status, 1);
        break;
      }
    }
    if (i < njobs) continue;
    int running = 0;
    for (size_t k = 0; k < njobs; k++) running |= jobs[k].state == JOB_CLI;
    if (!running) continue;
    if (nearly == sizeof early / sizeof *early) memmove(early, early + 1, --nearly * sizeof *early);
    early[nearly].pid = pid;
    memcpy(early[nearly].start, start, sizeof start);
    early[nearly++].status = status;
  }
}

// The words of a request: *n of them from p (NUL-terminated each, within end); NULL if short.
static char **words(char **p, const char *end, unsigned long long n) {
  if (n > MAX_REQUEST) return NULL;
  char **w = calloc(n + 1, sizeof *w);
  if (!w) return NULL;
  for (unsigned long long i = 0; i < n; i++) {
    if (*p >= end) {
      free(w);
      return NULL;
    }
    w[i] = *p;
    *p += strlen(*p) + 1;
  }
  return w;
}

static int number(char **p, const char *end, unsigned long long *v) {
  if (*p >= end) return -1;
  char *e;
  errno = 0;
  *v = strtoull(*p, &e, 10);
  if (errno || *e || e == *p) return -1;
  *p = e + 1;
  return 0;
}

static int take_run(int conn, char *mem, size_t len, int *fds, int nfds) {
  char *p = mem + 2, *end = mem + len;
  struct job j = {.state = JOB_CLI, .conn = conn, .mem = mem};
  unsigned long long mask, n, kept, target[MAX_FDS];
  struct rlimit lim[RLIM_NLIMITS];
  j.dir = p;
  p += strlen(p) + 1;
  unsigned long long persona;
  if (j.dir[0] != '/' || number(&p, end, &mask) || number(&p, end, &persona) ||
      persona > 0xffffffffULL)
    return -1;
  for (int r = 0; r < RLIM_NLIMITS; r++) {
    unsigned long long cur, max;
    if (number(&p, end, &cur) || number(&p, end, &max)) return -1;
    lim[r].rlim_cur = cur;
    lim[r].rlim_max = max;
  }
  // The caller's inherited fds: their numbers, in the order sent after the first three.
  if (number(&p, end, &kept) || kept > MAX_FDS - 3 || nfds != 3 + (int)kept) return -1;
  unsigned long long top = 2;
  for (unsigned long long i = 0; i < kept; i++) {
    if (number(&p, end, &target[i]) || target[i] < 3 || target[i] > 1 << 20) return -1;
    if (target[i] > top) top = target[i];
  }
  char **cmd = NULL;
  if (number(&p, end, &n) || !(j.clean = words(&p, end, n)) || number(&p, end, &n) || !n ||
      !(cmd = words(&p, end, n)) || number(&p, end, &n) || !(j.env = words(&p, end, n))) {
    free(j.clean);
    free(cmd);
    return -1;
  }
  if (!j.clean[0]) {
    free(j.clean);
    j.clean = NULL;
  }
  pid_t pid = fork();
  if (pid < 0) {
    free(j.clean);
    free(cmd);
    free(j.env);
    return -1;
  }
  if (pid == 0) {
    reset_child();
    setsid();
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(fds[0], 1) < 0 || dup2(fds[1], 2) < 0 ||
        fchdir(fds[2]))
      _exit(127);
    umask((mode_t)mask);
    personality((unsigned long)persona);
    for (int r = 0; r < RLIM_NLIMITS; r++) setrlimit(r, &lim[r]); // what can be had
    // The caller's fds at their own numbers: moved above them all first, so that none is
    // overwritten before it is placed.
    for (unsigned long long i = 0; i < kept; i++)
      if ((fds[3 + i] = fcntl(fds[3 + i], F_DUPFD_CLOEXEC, (int)top + 1)) < 0) _exit(127);
    for (unsigned long long i = 0; i < kept; i++)
      if (dup2(fds[3 + i], (int)target[i]) < 0) _exit(127);
    syscall(SYS_close_range, (unsigned)top + 1, ~0U, 0);
    for (unsigned fd = 3; fd <= top; fd++) {
      int keep = 0;
      for (unsigned long long i = 0; i < kept; i++) keep |= target[i] == fd;
      if (!keep) close((int)fd);
    }
    execve(cmd[0], cmd, j.env);
    dprintf(2, "capsule: cannot run %s: %s\n", cmd[0], why(errno));
    _exit(127);
  }
  free(cmd);
  j.cli = pid;
  jobs = grow(jobs, njobs + 1, sizeof *jobs);
  jobs[njobs++] = j;
  return 0;
}

static int take_log(char *mem, size_t len, int *fds, int nfds) {
  if (nfds != 2) return -1;
  char *p = mem + 2, *end = mem + len;
  struct wlog l = {.pipe = fds[0], .out = fds[1]};
  unsigned long long files;
  l.path = p;
  p += strlen(p) + 1;
  if (p >= end || l.path[0] != '/' || number(&p, end, &l.max) || number(&p, end, &files) ||
      files < 1 || files > 1000000 || p >= end)
    return -1;
  l.files = (unsigned)files;
  l.done = p;
  if (l.done[0] != '/' || p + strlen(p) + 1 != end) return -1;
  // Their own copies: the request's memory is freed.
  l.path = strdup(l.path);
  l.done = strdup(l.done);
  if (!l.path || !l.done) _exit(1);
  struct stat st;
  l.size = fstat(l.out, &st) == 0 ? (unsigned long long)st.st_size : 0;
  fcntl(l.pipe, F_SETFL, fcntl(l.pipe, F_GETFL) | O_NONBLOCK);
  logs = grow(logs, nlogs + 1, sizeof *logs);
  logs[nlogs++] = l;
  free(mem);
  return 0;
}

// A pidfd of the monitor itself, sent with each 'G'.
static int self_pidfd = -1;

// One request from a new connection (its client sends it at once: a short timeout).
static void take_request(int listen_fd) {
  int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  struct timeval tv = {.tv_sec = 5};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  // 'G' with the monitor's own pidfd (the kernel adds its pid): the client checks it (recv_go).
  char gctl[CMSG_SPACE(sizeof(int))];
  memset(gctl, 0, sizeof gctl);
  struct iovec giov = {.iov_base = "G", .iov_len = 1};
  struct msghdr g = {.msg_iov = &giov, .msg_iovlen = 1, .msg_control = gctl,
                     .msg_controllen = sizeof gctl};
  struct cmsghdr *gc = CMSG_FIRSTHDR(&g);
  gc->cmsg_level = SOL_SOCKET;
  gc->cmsg_type = SCM_RIGHTS;
  gc->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(gc), &self_pidfd, sizeof(int));
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) || cred.uid != geteuid() ||
      setsockopt(c, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) ||
      sendmsg(c, &g, MSG_NOSIGNAL) != 1) {
    close(c);
    return;
  }
  uint32_t len;
  char ctl[CMSG_SPACE(sizeof(int) * MAX_FDS) + CMSG_SPACE(sizeof(struct ucred))];
  struct iovec iov = {.iov_base = &len, .iov_len = sizeof len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                     .msg_controllen = sizeof ctl};
  ssize_t r;
  do r = recvmsg(c, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  while (r < 0 && errno == EINTR);
  int fds[MAX_FDS], nfds = 0, sender = 0;
  for (struct cmsghdr *h = r > 0 ? CMSG_FIRSTHDR(&m) : NULL; h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS &&
        h->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
      struct ucred u;
      memcpy(&u, CMSG_DATA(h), sizeof u);
      sender = u.uid == geteuid() ? u.pid : 0;
    }
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      if (nfds < MAX_FDS) fds[nfds++] = fd;
      else close(fd);
    }
  }
  // The last fd: the sender's pidfd, by which its context is read and checked.
  int who = nfds > 0 && sender > 0 && peer_matches(fds[nfds - 1], sender);
  if (nfds > 0) close(fds[--nfds]);
  char *mem = NULL, kind = 0;
  int ok = who && r == sizeof len && !(m.msg_flags & MSG_CTRUNC) && len >= 2 &&
           len <= MAX_REQUEST && (mem = malloc(len + 1)) && read_all(c, mem, len) == 0;
  if (ok) {
    mem[len] = 0;
    kind = mem[0];
    ok = mem[len - 1] == 0 && mem[1] == 0 &&
         (kind == 'R' ? take_run(c, mem, len, fds, nfds) == 0
          : kind == 'L' ? take_log(mem, len, fds, nfds) == 0
                        : 0);
  }
  if (!ok) free(mem); // else the job holds it (a run), or it was freed (a log)
  if (ok && write_all(c, "A", 1)) {
  }
  // A log's two fds are kept (take_log); a run's were dup'd by its command.
  if (!ok || kind != 'L')
    for (int i = 0; i < nfds; i++) close(fds[i]);
  if (!ok || kind != 'R') close(c); // a run's client hears its command's end on it
}

static int reopen(struct wlog *l) {
  l->out = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0640);
  struct stat st;
  l->size = l->out >= 0 && fstat(l->out, &st) == 0 ? (unsigned long long)st.st_size : 0;
  return l->out >= 0;
}

static void rotate(struct wlog *l) {
  if (l->out >= 0) close(l->out);
  l->out = -1;
  size_t n = strlen(l->path) + 16;
  char *a = malloc(n), *b = malloc(n);
  if (!a || !b) _exit(1);
  if (l->files > 1) {
    for (unsigned i = l->files - 1; i > 1; i--) {
      snprintf(a, n, "%s.%u", l->path, i - 1);
      snprintf(b, n, "%s.%u", l->path, i);
      rename(a, b);
    }
    snprintf(b, n, "%s.1", l->path);
    rename(l->path, b);
  } else {
    unlink(l->path);
  }
  free(a);
  free(b);
  reopen(l);
}

static void emit(struct wlog *l, size_t off, size_t len) {
  if (l->out < 0 && !reopen(l)) return;
  while (len > 0) {
    ssize_t w = write(l->out, rbuf + off, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += (size_t)w;
    len -= (size_t)w;
    l->size += (unsigned long long)w;
  }
}

// The last '\n' in rbuf at or before `pos`, at or after `from`; -1 if none.
static long last_newline(size_t from, size_t pos) {
  for (size_t i = pos + 1; i > from; i--)
    if (rbuf[i - 1] == '\n') return (long)(i - 1);
  return -1;
}

// What was read (n bytes of rbuf) into the log, rotating first where it would pass max-size
// (docker's rule): a cut at the last newline that fits, or at max-size in a line longer.
static void append(struct wlog *l, size_t n) {
  size_t off = 0;
  while (off < n) {
    size_t len = n - off;
    if (l->max > 0 && l->size + len > l->max) {
      if (l->size > 0) {
        long nl = l->max > l->size ? last_newline(off, off + (size_t)(l->max - l->size) - 1) : -1;
        if (nl >= 0) {
          emit(l, off, (size_t)nl + 1 - off);
          off = (size_t)nl + 1;
        }
        rotate(l);
        continue;
      }
      long nl = last_newline(off, off + (size_t)l->max - 1);
      len = nl >= 0 ? (size_t)nl + 1 - off : (size_t)l->max;
    }
    emit(l, off, len);
    off += len;
  }
}

// 1 while the log's pipe stays open.
static int log_read(struct wlog *l) {
  for (int rounds = 0; rounds < 16; rounds++) { // then the others get their turn
    ssize_t n = read(l->pipe, rbuf, sizeof rbuf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 1;
    if (n <= 0) return 0;
    append(l, (size_t)n);
  }
  return 1;
}

static void log_end(size_t i) {
  struct wlog *l = &logs[i];
  close(l->pipe);
  if (l->out >= 0) close(l->out);
  int d = open(l->done, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (d >= 0) close(d);
  free(l->path);
  free(l->done);
  logs[i] = logs[--nlogs];
}

static int no_child(void) {
  siginfo_t si;
  si.si_pid = 0;
  return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) && errno == ECHILD;
}

static int serve(const char *root) {
  int dir = 3, ready = 4;
  fcntl(dir, F_SETFD, FD_CLOEXEC);
  fcntl(ready, F_SETFD, FD_CLOEXEC);
  char fail[600];
  prctl(PR_SET_NAME, "capsule-monitor", 0, 0, 0);
  // Its clients check it through /proc/PID, as it checks them: an unprivileged user's client
  // must be able to read it (a root monitor stays out of reach of a root process without its
  // capabilities: ptrace's capability check).
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
    snprintf(fail, sizeof fail, "Fcannot become a child subreaper: %s", why(errno));
    if (write(ready, fail, strlen(fail))) {
    }
    return 1;
  }
  self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (self_pidfd < 0) {
    snprintf(fail, sizeof fail, "Fpidfd_open: %s", why(errno));
    if (write(ready, fail, strlen(fail))) {
    }
    return 1;
  }
  fcntl(self_pidfd, F_SETFD, FD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sig = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  int lock = openat(dir, LOCK_NAME, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_un a;
  socklen_t alen = sock_addr(&a, dir);
  unlinkat(dir, SOCK_NAME, 0); // one a monitor killed left behind (the caller holds the lock)
  umask(077);
  if (sig < 0 || lock < 0 || ls < 0 || bind(ls, (struct sockaddr *)&a, alen) || listen(ls, 128)) {
    snprintf(fail, sizeof fail, "F%s: %s", root, why(errno));
    if (write(ready, fail, strlen(fail))) {
    }
    return 1;
  }
  umask(027);
  if (write(ready, "R", 1)) {
  }
  close(ready);
  struct pollfd *pf = NULL;
  for (;;) {
    size_t n = 2 + njobs + nlogs;
    pf = grow(pf, n, sizeof *pf);
    pf[0] = (struct pollfd){.fd = sig, .events = POLLIN};
    pf[1] = (struct pollfd){.fd = ls, .events = POLLIN};
    for (size_t i = 0; i < njobs; i++)
      pf[2 + i] = (struct pollfd){.fd = jobs[i].conn, .events = POLLIN};
    for (size_t i = 0; i < nlogs; i++)
      pf[2 + njobs + i] = (struct pollfd){.fd = logs[i].pipe, .events = POLLIN};
    int idle = 0;
    // With no child left, no container of a job can end here any more (its init was reaped by
    // another, or never came to this monitor): the job goes, as the perl waiter did.
    if (njobs && no_child())
      while (njobs) finish(njobs - 1, 0, 0);
    if (!njobs && !nlogs) {
      // Nothing left to wait for or to write (a process a hook left behind and this monitor
      // adopted goes on without it): exit unless a client holds the lock.
      if (flock(lock, LOCK_EX | LOCK_NB) == 0) {
        struct pollfd p = {.fd = ls, .events = POLLIN};
        if (poll(&p, 1, 0) == 0) {
          unlinkat(dir, SOCK_NAME, 0);
          unlinkat(dir, LOCK_NAME, 0); // still held: a client waiting on it takes a new one
          return 0;
        }
        flock(lock, LOCK_UN);
      }
      idle = 1;
    }
    if (poll(pf, n, idle ? 50 : -1) < 0 && errno != EINTR) return 1;
    size_t nj = njobs, nl = nlogs;
    if (pf[0].revents) {
      struct signalfd_siginfo s;
      while (read(sig, &s, sizeof s) == sizeof s) {
      }
    }
    reap_children();
    // A client's signal for its command; a client gone leaves its command running.
    for (size_t i = 0; i < nj && i < njobs; i++) {
      if (!pf[2 + i].revents || jobs[i].conn != pf[2 + i].fd) continue;
      unsigned char m[2];
      ssize_t r = recv(jobs[i].conn, m, 2, MSG_DONTWAIT);
      if (r == 2 && m[0] == 'S' && jobs[i].state == JOB_CLI) {
        int s = m[1];
        if (s == SIGINT || s == SIGTERM || s == SIGHUP || s == SIGQUIT) kill(jobs[i].cli, s);
      } else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        close(jobs[i].conn);
        jobs[i].conn = -1;
      }
    }
    for (size_t i = nl; i-- > 0;) {
      if (i >= nlogs || !pf[2 + nj + i].revents || logs[i].pipe != pf[2 + nj + i].fd) continue;
      if (!log_read(&logs[i])) log_end(i);
    }
    if (pf[1].revents) take_request(ls);
  }
}

int monitor_main(int argc, char **argv) {
  if (argc >= 3 && (!strcmp(argv[2], "run") || !strcmp(argv[2], "log"))) {
    // A client holds nothing of its own to hide, and its /proc entries must be its user's (not
    // root's, as the helper's undumpable start leaves them): it reads them, and the monitor, of
    // an unprivileged user too, reads them of it.
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    int self = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
    unsigned long long hash = self < 0 ? 0 : context_hash(self, getpid());
    if (!hash) {
      say("cannot read this process's context under /proc/self: %s", why(errno));
      return 1;
    }
    close(self);
    set_names(my_hash = hash);
  }
  if (argc >= 3 && !strcmp(argv[2], "run")) return client_run(argc, argv);
  if (argc >= 3 && !strcmp(argv[2], "log")) return client_log(argc, argv);
  if (argc == 5 && !strcmp(argv[2], "serve")) {
    char *end;
    unsigned long long hash = strtoull(argv[4], &end, 16);
    if (*end || strlen(argv[4]) != 16) return 2;
    set_names(my_hash = hash);
    return serve(argv[3]);
  }
  dprintf(2, "capsule-nsexec: started by capsule only\n");
  return 2;
}
