// The OCI hooks the container's init runs itself (runtime spec "Lifecycle": createContainer in
// the container's mount namespace before pivot_root, startContainer in the container before the
// program), as runtime/init.ts runInitHooks + outputWithin did: one after the other, each to its
// end before the next, synchronously in the init's own namespaces, root and ids.
//
// Each hook: fork; the child gets stdin = a pipe holding the state JSON, stdout = /dev/null,
// stderr = a pipe to this process, no other fd, default signal dispositions and an empty mask,
// and execve's the hook's path with its args (argv = { path } when it has none) and exactly its
// env. This process meanwhile writes the rest of the state (what did not fit in the pipe before
// the fork), reads the hook's stderr (the first 1 MiB kept for the message, the rest drained) and
// waits for the exit through a pidfd, up to the hook's timeout; past it the hook is SIGKILLed.
// A failed execve is told back through a close-on-exec pipe (its errno).
//
// Only plain system calls (the init may run startContainer hooks under the container's seccomp
// filter): pipe2, fcntl, fork, dup2, close_range, rt_sigaction, rt_sigprocmask, execve, poll,
// read, write, wait4, kill, pidfd_open, close, openat. The caller must not reap children
// meanwhile (no SIGCHLD handler doing wait(-1), SIGCHLD not SIG_IGN): the hook is reaped here.
// capsule.h uses size_t without <stddef.h>: included first (after _GNU_SOURCE, as capsule.h wants).
#define _GNU_SOURCE
#include <stddef.h>

#include "capsule.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STDERR_KEPT (1u << 20)   // the hook's stderr kept for the message
#define DRAIN_AFTER (4u << 20)   // read at most this much more once the hook has exited
#define NO_PIDFD_SLICE_MS 20     // without pidfd_open: how often waitpid(WNOHANG) looks

static char err_buf[STDERR_KEPT];

// Milliseconds on CLOCK_MONOTONIC.
static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// The hook's stderr collected so far: len bytes in err_buf.
struct collect {
  int fd;     // read end of the hook's stderr pipe, -1 once at EOF
  size_t len; // kept
};

// One read from the stderr pipe (poll said it is ready): kept while there is room, else dropped.
// Returns the bytes read, 0 at EOF or on an error (the fd is then closed), -1 to try again.
static ssize_t collect_once(struct collect *c) {
  static char sink[65536];
  size_t room = STDERR_KEPT - c->len;
  char *to = room ? err_buf + c->len : sink;
  size_t want = room ? (room < sizeof sink ? room : sizeof sink) : sizeof sink;
  ssize_t n = read(c->fd, to, want);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return -1;
  if (n <= 0) {
    close_fd(&c->fd);
    return 0;
  }
  if (room) c->len += (size_t)n;
  return n;
}

// Whatever is in the stderr pipe once the hook has exited. A process the hook left behind may
// still hold the pipe: only what is there now is read (and no more than DRAIN_AFTER).
static void collect_rest(struct collect *c) {
  size_t drained = 0;
  while (c->fd >= 0 && drained < DRAIN_AFTER) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r = poll(&p, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = collect_once(c);
    if (n > 0) drained += (size_t)n;
  }
  close_fd(&c->fd);
}

// The child's fds: in, out and err become 0, 1 and 2, every other fd is closed but `*report`
// (close-on-exec, for execve's errno). 0 on success, else -1 with errno.
static int child_fds(int in, int out, int err, int *report) {
  // 0, 1 and 2 may be any of the four (the init's own stdio may be closed): all moved above 2
  // first, so that each dup2 below copies onto a different fd and clears close-on-exec.
  int *fds[4] = {&in, &out, &err, report};
  for (int i = 0; i < 4; i++) {
    if (*fds[i] > 2) continue;
    int moved = fcntl(*fds[i], F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return -1;
    *fds[i] = moved;
  }
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) return -1;
  // Every other fd closed: the init's socket to capsule, exec.fifo, the plan's fds, the other
  // ends of these pipes.
  int keep = *report;
  if (keep > 3 && syscall(SYS_close_range, 3, keep - 1, 0))
    for (int fd = 3; fd < keep; fd++) close(fd);
  if (syscall(SYS_close_range, keep + 1, ~0U, 0)) { // ENOSYS, or a filter's EPERM
    struct rlimit nofile;
    rlim_t top = getrlimit(RLIMIT_NOFILE, &nofile) ? 65536 : nofile.rlim_cur;
    if (top > (1u << 20)) top = 1u << 20;
    for (rlim_t fd = (rlim_t)keep + 1; fd < top; fd++) close((int)fd);
  }
  return 0;
}

// The child, between fork and execve: never returns. A failure before execve (or execve's own)
// goes to `report` as an errno, then _exit(127). Signals are all blocked on entry.
__attribute__((noreturn)) static void start_hook(const struct hook *h, int in, int out, int err,
                                                 int report) {
  if (child_fds(in, out, err, &report) == 0) {
    // Signals: every disposition back to default (the raw call, as glibc's sigaction refuses
    // 32 and 33), then the mask emptied: the hook starts as from a clean spawn.
    struct {
      void *h;
      unsigned long flags;
      void *restorer;
      uint64_t mask;
    } dfl = {SIG_DFL, 0, 0, 0};
    for (int s = 1; s <= 64; s++)
      if (s != SIGKILL && s != SIGSTOP) syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);
    uint64_t empty = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, 8);
    static char *no_env[] = {NULL};
    char *only_path[] = {(char *)h->path, NULL};
    execve(h->path, h->argc > 0 ? h->argv : only_path, h->env ? h->env : no_env);
  }
  int e = errno;
  while (write(report, &e, sizeof e) < 0 && errno == EINTR) {
  }
  _exit(127);
}

// JavaScript's String.prototype.trim, for ASCII: what counts as space at the ends.
static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// How the hook ended, as the message says it: "exit status N" or "killed by SIGX".
static const char *how_failed(int st) {
  static char buf[64];
  if (WIFEXITED(st)) {
    snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(st));
  } else {
    int s = WTERMSIG(st);
    const char *abbrev = sigabbrev_np(s);
    if (s == SIGSYS) // seccomp's kill: said in words, as runc's "bad system call"
      snprintf(buf, sizeof buf, "killed by SIGSYS (bad system call)");
    else if (abbrev)
      snprintf(buf, sizeof buf, "killed by SIG%s", abbrev);
    else
      snprintf(buf, sizeof buf, "killed by signal %d", s);
  }
  return buf;
}

// Waits for `pid` (EINTR retried); dies when it cannot.
static int reap(const char *kind, const char *path, pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) die("%s hook %s: waitpid: %s", kind, path, why(errno));
  return st;
}

// One hook, to its end; dies when it fails.
static void run_one(const char *kind, const struct hook *h, const char *state, size_t state_len) {
  // stdin: a pipe (a hook may open /dev/stdin, which a socket would refuse), the parent's end
  // non-blocking; as much of the state as fits goes in now, the rest once the hook reads.
  int in[2], err[2], report[2];
  if (pipe2(in, O_CLOEXEC)) die("%s hook %s could not start: pipe: %s", kind, h->path, why(errno));
  if (fcntl(in[1], F_SETFL, O_NONBLOCK))
    die("%s hook %s could not start: fcntl: %s", kind, h->path, why(errno));
  size_t sent = 0;
  while (sent < state_len) {
    ssize_t n = write(in[1], state + sent, state_len - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break; // the pipe is full: the rest after the fork
    if (n < 0) die("%s hook %s could not start: write: %s", kind, h->path, why(errno));
    sent += (size_t)n;
  }
  if (pipe2(err, O_CLOEXEC) || pipe2(report, O_CLOEXEC))
    die("%s hook %s could not start: pipe: %s", kind, h->path, why(errno));
  // O_NONBLOCK: a FIFO that the container's image put at /dev/null (startContainer runs after
  // pivot_root) fails with ENXIO rather than blocking the init; the null device ignores the flag.
  int null = open("/dev/null", O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (null < 0) die("%s hook %s could not start: /dev/null: %s", kind, h->path, why(errno));

  // All signals blocked across the fork: no handler of the init's runs in the child before
  // start_hook has reset them.
  uint64_t all = ~0ULL, old;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, 8);
  pid_t pid = fork();
  if (pid == 0) start_hook(h, in[0], null, err[1], report[1]);
  int fork_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, 8);
  close_fd(&in[0]);
  close_fd(&null);
  close_fd(&err[1]);
  close_fd(&report[1]);
  if (pid < 0) die("%s hook %s could not start: fork: %s", kind, h->path, why(fork_errno));
  if (sent == state_len) close_fd(&in[1]); // EOF for the hook

  // Nothing here blocks but poll: the hook's exit (pidfd), its stderr and its stdin's room are
  // awaited together, so neither a hook that does not read stdin nor one that writes much to
  // stderr can stall this process; the deadline bounds it all.
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  struct collect c = {.fd = err[0], .len = 0};
  uint64_t timeout = h->timeout > 100ULL * 365 * 86400 ? 0 : h->timeout; // a century: none
  int64_t deadline = timeout ? now_ms() + (int64_t)timeout * 1000 : 0;
  int st = 0, exited = 0;
  while (!exited) {
    int wait_ms = -1;
    if (deadline) {
      int64_t left = deadline - now_ms();
      if (left <= 0) {
        kill(pid, SIGKILL); // not reaped yet: the pid is still the hook's
        reap(kind, h->path, pid);
        die("%s hook %s timed out after %llu s (killed)", kind, h->path,
            (unsigned long long)h->timeout);
      }
      wait_ms = left > INT_MAX ? INT_MAX : (int)left;
    }
    if (pidfd < 0 && (wait_ms < 0 || wait_ms > NO_PIDFD_SLICE_MS)) wait_ms = NO_PIDFD_SLICE_MS;
    struct pollfd p[3];
    int np = 0, at_pid = -1, at_err = -1, at_in = -1;
    if (pidfd >= 0) p[at_pid = np++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
    if (c.fd >= 0) p[at_err = np++] = (struct pollfd){.fd = c.fd, .events = POLLIN};
    if (in[1] >= 0) p[at_in = np++] = (struct pollfd){.fd = in[1], .events = POLLOUT};
    int r = np ? poll(p, (nfds_t)np, wait_ms) : poll(NULL, 0, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      kill(pid, SIGKILL);
      reap(kind, h->path, pid);
      die("%s hook %s: poll: %s", kind, h->path, why(errno));
    }
    if (at_err >= 0 && p[at_err].revents) collect_once(&c);
    if (at_in >= 0 && p[at_in].revents) {
      if (p[at_in].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        close_fd(&in[1]); // the hook closed its stdin: the rest of the state is not wanted
      } else {
        size_t chunk = state_len - sent < 65536 ? state_len - sent : 65536;
        ssize_t n = write(in[1], state + sent, chunk);
        if (n > 0) sent += (size_t)n;
        // EPIPE (SIGPIPE is ignored meanwhile): the hook closed its stdin, as above.
        if ((n < 0 && errno != EINTR && errno != EAGAIN) || sent == state_len) close_fd(&in[1]);
      }
    }
    if (pidfd >= 0) {
      if (p[at_pid].revents) {
        st = reap(kind, h->path, pid);
        exited = 1;
      }
    } else {
      pid_t w = waitpid(pid, &st, WNOHANG);
      if (w == pid) exited = 1;
      else if (w < 0 && errno != EINTR) die("%s hook %s: waitpid: %s", kind, h->path, why(errno));
    }
  }
  close_fd(&pidfd);
  close_fd(&in[1]);

  // The child is gone, and with it the only write end of `report` (close-on-exec: a hook that
  // ran closed it at its execve): 0 bytes, or the errno of what failed.
  int e = 0;
  ssize_t n;
  while ((n = read(report[0], &e, sizeof e)) < 0 && errno == EINTR) {
  }
  close_fd(&report[0]);
  if (n == (ssize_t)sizeof e) {
    close_fd(&c.fd);
    die("%s hook %s could not start: %s", kind, h->path, why(e));
  }
  collect_rest(&c);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
  size_t from = 0, to = c.len; // the stderr trimmed
  while (from < to && is_space(err_buf[from])) from++;
  while (to > from && is_space(err_buf[to - 1])) to--;
  for (size_t i = from; i < to; i++) // a NUL would end the message (%.*s): said as a space
    if (!err_buf[i]) err_buf[i] = ' ';
  if (to > from)
    die("%s hook %s failed (%s): %.*s", kind, h->path, how_failed(st), (int)(to - from),
        err_buf + from);
  die("%s hook %s failed (%s)", kind, h->path, how_failed(st));
}

void run_hooks(const char *kind, const struct hook *hooks, int n, const char *state) {
  if (n <= 0) return;
  // A hook that exits without reading all of its stdin must not kill the init with SIGPIPE:
  // ignored (and unblocked, so that it is discarded, never left pending) while the hooks run.
  struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
  sigset_t pipe_only, old_mask;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigaction(SIGPIPE, &ign, &old_pipe);
  sigprocmask(SIG_UNBLOCK, &pipe_only, &old_mask);
  size_t len = state ? strlen(state) : 0;
  for (int i = 0; i < n; i++) run_one(kind, &hooks[i], state ? state : "", len);
  sigaction(SIGPIPE, &old_pipe, NULL);
  sigprocmask(SIG_SETMASK, &old_mask, NULL);
}
