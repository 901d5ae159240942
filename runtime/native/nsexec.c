// capsule-nsexec: capsule's native helper (capsule.h). This file is its exec mode, the helper of
// `capsule exec` (runtime/exec.ts), in the place of runc's nsexec and `runc init` for an exec, and
// main(), which starts the init mode (init.c: `capsule-nsexec init FD`) for a new container. A
// small single-threaded static program that stands between capsule's spawn and the program's
// execve, so that no process holding the host's privileges ever appears inside the container
// (docs/DESIGN.md "The exec helper").
//
// Started by capsule, from a sealed read-only view of this binary (runtime/exe_seal.ts), in the
// HOST's PID namespace, with an empty environment and argv = { "capsule-nsexec", "<fd>" }; fd is
// one end of a socketpair. It stays outside the container's cgroup and moves the program in.
//
// capsule -> helper, on fd: the plan, a u32 LE length then records of
//   tag (1 byte) | length (u32 LE) | data
// strings are data without a NUL (refused if they hold one), numbers u64 LE (8 bytes). The
// tags are plan.c's (runtime/nsexec.ts writes them).
// helper -> capsule, on the same fd: frames of  type (1 byte) | length (u32 LE) | data
//   'E' text   a failure before the program could start (then exit status 1);
//   'T' (none) with the pty master as SCM_RIGHTS (process.terminal);
//   'P' u64    the program's host pid.
// The fd is close-on-exec here: capsule reads EOF once the program has been exec'd.
//
// Order (runc's nsexec + setns_init, capsule's init.ts for create):
//   non-dumpable first; oom_score_adj; the exec log as stdio; open /proc/PID/ns/* and the
//   init's root; unshare(CLONE_FS); setns user (first), pid (for children only), ipc, uts, net,
//   cgroup, mnt; fchdir+chroot into the init's root; HOME from the container's /etc/passwd; hard
//   rlimits raised; argv[0] looked up in PATH; chdir(cwd); the pty (made in the container's
//   devpts); [seccomp when no no_new_privs]; bounding set, keepcaps, groups, gid, uid, capset,
//   ambient, no_new_privs; umask; every fd from 3 close-on-exec but the preserved ones.
//   Then, only when the container has its own PID namespace, the fork into it: the child, with
//   the program's ids and caps already, goes on; the parent stays outside (invisible to the
//   container), reports the child's pid, and either exits (detached) or passes signals on and
//   exits with the program's status (nsenter --pid's model). The child (or this process):
//   setsid and the terminal, signals reset, rlimits, LISTEN_PID, [seccomp with no_new_privs],
//   execve.
#include "capsule.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static volatile pid_t child_pid = 0;
// The host's /proc, opened before the container's mount namespace is joined: files the container
// controls are opened O_PATH first (no device's open runs, no FIFO blocks), checked, and only then
// reopened for I/O through /proc/self/fd/N here. This process is outside the container's cgroup,
// so the container's device rules do not stand between it and a node the container made.
static int host_proc = -1;
static int cgfd_dir[64]; // the directories of the container's cgroup.procs files (O_PATH)

// An fd on `path` below `root` (every symlink resolved inside it), opened with `flags` only when
// fstat says `mode_ok`; -1 otherwise (errno EPERM for a refused kind). `st` receives the stat.
static int open_checked(int root, const char *path, int flags, int (*mode_ok)(const struct stat *),
                        struct stat *st) {
  struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int p = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
  if (p < 0) return -1;
  if (fstat(p, st) || !mode_ok(st)) {
    close(p);
    errno = EPERM;
    return -1;
  }
  char self[48];
  snprintf(self, sizeof self, "self/fd/%d", p);
  int fd = openat(host_proc, self, flags | O_CLOEXEC);
  int e = errno;
  close(p);
  errno = e;
  return fd;
}

static int is_regular(const struct stat *st) { return S_ISREG(st->st_mode); }
static int ns_flag(const char *name) {
  static const struct { const char *n; int f; } t[] = {
    {"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"pid", CLONE_NEWPID},
    {"net", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP}, {"mnt", CLONE_NEWNS},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) if (!strcmp(t[i].n, name)) return t[i].f;
  die("capsule-nsexec: unknown namespace \"%s\"", name);
  return 0;
}

// The container's /etc/passwd (resolved inside its root, at most 4 MiB), NUL-terminated.
static char *read_passwd(void) {
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return NULL;
  struct stat st;
  int fd = open_checked(root, "etc/passwd", O_RDONLY, is_regular, &st); // a regular file only
  close(root);
  if (fd < 0) return NULL;
  return read_small(fd);
}

// Whether /proc/PID is still the container's init (process_is): checked after its namespaces
// and root were opened, so that they are the init's, not those of a process that took its pid
// meanwhile.
static int init_alive(struct plan *pl) { return process_is(pl->pid, pl->start_time); }

// The pty for process.terminal, from the container's own devpts (so `tty` names a device the
// container can see), as init.ts makeTerminal: the slave is checked to be a pty's (UNIX98
// majors 136-143, never a file the container put in its place) and given to the process's uid.
// The master goes to capsule ('T'); the slave is returned.
static int make_terminal(struct plan *pl, int in_userns) {
  // In a user namespace joined by host root, this process's uid is not mapped there: a pty it
  // made would belong to the overflow uid (65534), which the program could not reopen. Its
  // filesystem ids become the namespace's root first (devpts gives a new slave the opener's
  // fsuid), as nsenter's setuid(0) did; the real and effective ids stay.
  if (in_userns) {
    setfsgid(0);
    setfsuid(0);
  }
  // The container's /dev/ptmx (a symlink to pts/ptmx, resolved inside its root) must be the
  // ptmx device (5:2), and the slave comes from the master itself (TIOCGPTPEER), not by a name
  // under /dev/pts, which the container could have mounted over.
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("cannot open the container's root: %s", why(errno));
  struct stat st;
  int master = open_checked(root, "dev/ptmx", O_RDWR | O_NOCTTY, is_ptmx, &st);
  if (master < 0)
    die("cannot open the container's /dev/ptmx (it must be the ptmx device, 5:2): %s", why(errno));
  close(root);
  int slave = pty_slave(pl, master);
  frame_fd('T', master, "the terminal");
  close(master);
  return slave;
}

static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP,  SIGQUIT, SIGUSR1,
                                SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

// P once G is on its way: passes signals on and ends as the program ended (killed by a signal:
// by the same signal, else 128+N), as a shell reports it.
static void wait_for_child(pid_t g, const sigset_t *old) {
  child_pid = g;
  struct sigaction fw = {.sa_handler = forward};
  for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++)
    sigaction(FORWARDED[i], &fw, NULL);
  sigprocmask(SIG_SETMASK, old, NULL);
  int st;
  while (waitpid(g, &st, 0) < 0)
    if (errno != EINTR) _exit(1);
  if (WIFSIGNALED(st)) {
    int s = WTERMSIG(st);
    signal(s, SIG_DFL);
    struct rlimit none = {0, 0}; // no core file of this process for the program's signal
    setrlimit(RLIMIT_CORE, &none);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, s);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    kill(getpid(), s);
    _exit(128 + s);
  }
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

// Moves `pid` (0: this process) into the container's cgroup, through the files opened at the
// start; a failure kills it and is reported.
static void join_cgroups(struct plan *pl, const int *cgfd, pid_t pid) {
  char v[32];
  int n = snprintf(v, sizeof v, "%d", (int)pid);
  // A move into a cgroup is not held to its pids.max (only a fork is): the exec is refused when
  // the container is at its limit, as a fork inside it would be (runc's exec fails there too).
  for (int i = 0; i < pl->ncgroup; i++) {
    int dir = openat(cgfd_dir[i], "pids.max", O_RDONLY | O_CLOEXEC);
    if (dir < 0) continue;
    char mx[32] = "", cur[32] = "";
    ssize_t a = read(dir, mx, sizeof mx - 1);
    close(dir);
    int c = openat(cgfd_dir[i], "pids.current", O_RDONLY | O_CLOEXEC);
    ssize_t b = c < 0 ? -1 : read(c, cur, sizeof cur - 1);
    if (c >= 0) close(c);
    if (a <= 0 || b <= 0 || !strncmp(mx, "max", 3)) continue;
    if (strtoll(cur, NULL, 10) >= strtoll(mx, NULL, 10)) {
      if (pid > 0) kill(pid, SIGKILL);
      mx[strcspn(mx, "\n")] = 0;
      die("adding pid %d to %s: the container is at its pids limit (pids.max %s)", (int)pid,
          pl->cgroup[i], mx);
    }
  }
  for (int i = 0; i < pl->ncgroup; i++) {
    if (write(cgfd[i], v, (size_t)n) != n) {
      int e = errno;
      if (pid > 0) kill(pid, SIGKILL);
      die("adding pid %d to %s: %s", (int)pid, pl->cgroup[i], why(e));
    }
    close(cgfd[i]);
  }
}

// 'P': the program's host pid, to capsule.
static void send_pid(pid_t pid) {
  uint64_t p = (uint64_t)pid;
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = p >> (8 * i) & 255;
  frame('P', le, 8);
}

// seccomp where it needs privileges (no no_new_privs), then the program's ids, groups and
// capabilities, its umask, and every fd from 3 close-on-exec but the preserved ones.
static void become_program(struct plan *pl) {
  // fds and umask first: a profile loaded here must allow only what dropping privileges needs.
  umask((mode_t)pl->umask_);
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC)) die("close_range: %s", why(errno));
  for (int i = 0; i < pl->nkeep; i++)
    if (fcntl((int)pl->keep_fds[i], F_SETFD, 0))
      die("cannot pass fd %llu on: %s", (unsigned long long)pl->keep_fds[i], why(errno));
  if (pl->sc && !pl->nnp) load_seccomp(pl); // needs CAP_SYS_ADMIN: before the privileges go
  drop_privileges(pl);
}

int main(int argc, char **argv) {
  // First: nothing may read this process through /proc (mem, environ, fds, exe) or ptrace it
  // (PR_SET_DUMPABLE 0 holds until execve).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (argc > 1 && !strcmp(argv[1], "front")) return front_main(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "monitor")) return monitor_main(argc, argv);
  // init: `init CHAN [EXE]`, EXE the sealed binary's fd that util-linux's unshare passed on
  // (user namespaces: runtime/userns.ts), closed at once.
  int init = (argc == 3 || argc == 4) && !strcmp(argv[1], "init");
  if (argc == 4 && init) {
    char *e;
    long exe = strtol(argv[3], &e, 10);
    if (*e || exe < 3 || exe > 1 << 20 || close((int)exe)) {
      dprintf(2, "capsule-nsexec: started by capsule only (bad fd)\n");
      return 2;
    }
  }
  if (argc != 2 && !init) {
    dprintf(2, "capsule-nsexec: started by capsule only\n");
    return 2;
  }
  char *end;
  long fd = strtol(argv[init ? 2 : 1], &end, 10);
  if (*end || fd < 3 || fd > 1 << 20 || fcntl((int)fd, F_SETFD, FD_CLOEXEC)) {
    dprintf(2, "capsule-nsexec: started by capsule only (bad fd)\n");
    return 2;
  }
  chan = (int)fd;
  char last[16];
  if (read_proc("/proc/sys/kernel/cap_last_cap", last, sizeof last) == 0) cap_last = atoi(last);
  if (init) init_main();
  // Dies with capsule (as runc's exec leaves only the program when it is killed); the program,
  // once forked, is not affected (the death signal is not inherited).
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(1);
  host_proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (host_proc < 0) {
    dprintf(2, "capsule-nsexec: cannot open /proc: %s\n", why(errno));
    _exit(1);
  }
  struct plan pl;
  read_plan(&pl, 0);

  // The container's cgroup.procs files, opened now (the host's mount namespace, host root): the
  // program's process is moved in by pid once it exists (this process stays outside: it must not
  // count against pids.max, show in `ps`, or be killed by `kill --all`).
  int cgfd[64];
  for (int i = 0; i < pl.ncgroup; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", pl.cgroup[i]);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    cgfd_dir[i] = open(slash && *dir ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if ((cgfd[i] = open(pl.cgroup[i], O_WRONLY | O_CLOEXEC)) < 0 || cgfd_dir[i] < 0)
      die("adding pid to %s: %s", pl.cgroup[i], why(errno)); // runc's words (exec.bats)
  }
  if (pl.has_oom) {
    int f = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (f < 0 || dprintf(f, "%lld", (long long)pl.oom) < 0)
      die("cannot set process.oomScoreAdj %lld: %s", (long long)pl.oom, why(errno));
    close(f);
  }
  if (pl.log_fd >= 0) { // the host's /dev/null: before any namespace is joined
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2((int)pl.log_fd, 1) < 0 || dup2((int)pl.log_fd, 2) < 0)
      die("cannot send the exec's output to its log: %s", why(errno));
    close(nul);
    if (pl.log_fd > 2) close((int)pl.log_fd);
  }
  // Every namespace and the init's root opened first: after setns(mnt), /proc is the container's.
  char path[64];
  int nsfd[8];
  for (int i = 0; i < pl.nns; i++) {
    snprintf(path, sizeof path, "/proc/%llu/ns/%s", (unsigned long long)pl.pid, pl.ns[i]);
    if ((nsfd[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
      die("cannot open %s: open: %s; is the container still running?", path, why(errno));
  }
  snprintf(path, sizeof path, "/proc/%llu/root", (unsigned long long)pl.pid);
  int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("cannot open %s: open: %s", path, why(errno));
  if (!init_alive(&pl)) die("its init process has exited");
  if (unshare(CLONE_FS)) die("unshare(CLONE_FS): %s", why(errno));
  // The user namespace first (allowed to a single-threaded process only: why this is not Deno),
  // then the others with its capabilities, as runc's nsexec. The PID namespace is joined for
  // the children only: this process stays outside it.
  int pidns = -1, in_userns = 0;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) { // in the user namespace now, still in the host's mount namespace
      char v[16];
      setgroups_denied = read_proc("/proc/self/setgroups", v, sizeof v) == 0 && !strncmp(v, "deny", 4);
    }
    for (int i = 0; i < pl.nns; i++) {
      int f = ns_flag(pl.ns[i]);
      if ((f == CLONE_NEWUSER) != (pass == 0)) continue;
      if (f == CLONE_NEWPID) { // joined by the child (see below)
        pidns = nsfd[i];
        continue;
      }
      if (setns(nsfd[i], f))
        die("cannot join namespace /proc/%llu/ns/%s: setns: %s", (unsigned long long)pl.pid,
            pl.ns[i], why(errno));
      close(nsfd[i]);
      if (f == CLONE_NEWUSER) in_userns = 1;
    }
  }
  // The container's root as its init sees it (setns(mnt) alone lands at the namespace's root,
  // not the container's when it was entered by chroot), as `nsenter --root`.
  if (fchdir(root) || chroot(".")) die("cannot enter the container's root: %s", why(errno));
  close(root);
  add_home(&pl, read_passwd);
  raise_hard_limits(&pl);
  const char *prog = look_path(&pl);
  if (chdir(pl.cwd))
    die("cannot change to the working directory %s: chdir %s: %s", pl.cwd, pl.cwd, why(errno));
  int slave = pl.terminal ? make_terminal(&pl, in_userns) : -1;
  if (pidns < 0) {
    // The container shares capsule's PID namespace: no fork, this process becomes the program,
    // which must not die with capsule (a death signal is kept across execve: an `exec -d` was
    // killed as capsule exited). Cleared before seccomp, which may refuse prctl.
    join_cgroups(&pl, cgfd, 0);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    for (int i = 0; i < pl.ncgroup; i++) close(cgfd_dir[i]);
    close(host_proc);
    become_program(&pl);
    send_pid(getpid());
  } else {
    // The container has its own PID namespace. This process (P) stays outside it, with its
    // privileges and no seccomp filter, invisible to the container: it forks C, which joins the
    // PID namespace for its children, loads the seccomp profile where it needs privileges,
    // drops to the program's ids and capabilities, forks G (the first process of ours that the
    // container can see, with nothing above the program's privileges), hands G's pid over and
    // exits; G is reparented to P (a subreaper), which moves it into the container's cgroup,
    // reports its pid, lets it go on to execve, and waits for it.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) die("PR_SET_CHILD_SUBREAPER: %s", why(errno));
    sigset_t fwd, old;
    sigemptyset(&fwd);
    for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++) sigaddset(&fwd, FORWARDED[i]);
    sigprocmask(SIG_BLOCK, &fwd, &old); // until P forwards them to G
    int gpid_pipe[2], go_pipe[2];
    if (pipe2(gpid_pipe, O_CLOEXEC) || pipe2(go_pipe, O_CLOEXEC)) die("pipe2: %s", why(errno));
    pid_t c = fork();
    if (c < 0) die("fork: %s", why(errno));
    if (c == 0) { // C
      close(gpid_pipe[0]);
      close(go_pipe[1]);
      // Nothing of the host's may reach G, the container's to see: the host's /proc and the
      // cgroup directories are P's alone.
      for (int i = 0; i < pl.ncgroup; i++) {
        close(cgfd[i]);
        close(cgfd_dir[i]);
      }
      close(host_proc);
      if (setns(pidns, CLONE_NEWPID))
        die("cannot join namespace /proc/%llu/ns/pid: setns: %s", (unsigned long long)pl.pid,
            why(errno));
      close(pidns);
      become_program(&pl);
      pid_t g = fork();
      if (g < 0) die("fork: %s", why(errno));
      if (g > 0) {
        if (write(gpid_pipe[1], &g, sizeof g) != sizeof g) _exit(1);
        _exit(0);
      }
      // G: waits until P has moved it into the container's cgroup.
      close(gpid_pipe[1]);
      char go;
      if (read(go_pipe[0], &go, 1) != 1) _exit(1); // P gave up: it reported why
      close(go_pipe[0]);
    } else { // P
      close(gpid_pipe[1]);
      close(go_pipe[0]);
      close(pidns);
      if (slave >= 0) close(slave); // the terminal hangs up when the program is gone
      int st;
      while (waitpid(c, &st, 0) < 0)
        if (errno != EINTR) die("waitpid: %s", why(errno));
      pid_t g = 0;
      if (!WIFEXITED(st) || WEXITSTATUS(st) || read(gpid_pipe[0], &g, sizeof g) != sizeof g ||
          g <= 0)
        _exit(1); // C said why ('E'), or died
      close(gpid_pipe[0]);
      join_cgroups(&pl, cgfd, g);
      send_pid(g);
      close(chan);
      chan = -1;
      if (write(go_pipe[1], "g", 1) != 1) _exit(1);
      close(go_pipe[1]);
      if (pl.detach) _exit(0);
      wait_for_child(g, &old);
    }
  }
  // The program's process. From here a failure is the program's (see exec_program).
  if ((pl.setsid_ || slave >= 0) && setsid() < 0) die("setsid: %s", why(errno));
  if (slave >= 0) {
    if (ioctl(slave, TIOCSCTTY, 0) || dup2(slave, 0) < 0 || dup2(slave, 1) < 0 ||
        dup2(slave, 2) < 0)
      die("cannot attach the terminal: %s", why(errno));
    if (slave > 2) close(slave);
  }
  exec_program(&pl, prog, 0);
}
