// The init mode of capsule's native helper: `capsule-nsexec init FD`, a new container's first
// process (PID 1 of its PID namespace when it has one), in the place of runc's `runc init`.
// Started by capsule (runtime/create_init.ts) from a sealed read-only view of this binary, with
// an empty environment; capsule has unshared the PID namespace (or util-linux's unshare made the
// user namespace and forked this) and moves this process into the container's cgroup before it
// sends the plan, so nothing here touches the container's files outside its cgroup's rules.
//
// capsule -> init, on FD: the plan (plan.c); then, when asked: the bind sources (one SCM_RIGHTS
// message of 1 byte per bind mount, in plan order) and "r" to resume after the host's hooks.
// init -> capsule, frames of  type (1 byte) | u32 LE length | data:
//   'E' text   a failure before "ready" (then exit status 1);
//   'S'        send the bind sources (plan.sources_by_fd: a user namespace cannot reach them);
//   'H'        run prestart and createRuntime now (the mounts are done, pivot_root is not);
//   'R' u64    ready: this process's pid as it sees itself; then, with process.terminal,
//   'T'        the pty master as SCM_RIGHTS.
// After 'R' the socket is closed; the init waits on exec.fifo for `start`, runs startContainer
// and execve's the program. A failure after "ready" goes to the program's stderr (its terminal
// when it has one), exit status 127 (126 when execve found the program but cannot run it).
//
// Order (runtime spec "Lifecycle", runc's init): non-dumpable (main); the log as stdio; setsid;
// oom_score_adj; namespaces joined (by path) then made; the rootfs (rootfs.c: mounts, devices,
// the hooks before pivot_root, pivot_root, sysctls, hostname, console, masked and read-only
// paths); HOME; hard rlimits; cwd; argv[0] in PATH; [seccomp when no no_new_privs]; ids, groups
// and capabilities; umask; "ready"; exec.fifo; startContainer; the terminal; execve.
#include "capsule.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct init_ctx {
  struct plan *pl;
  int master, slave; // the pty (process.terminal), -1 without
};

static int ns_flag(const char *name) {
  static const struct { const char *n; int f; } t[] = {
    {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"network", CLONE_NEWNET}, {"net", CLONE_NEWNET},
    {"cgroup", CLONE_NEWCGROUP}, {"mount", CLONE_NEWNS}, {"mnt", CLONE_NEWNS},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) if (!strcmp(t[i].n, name)) return t[i].f;
  die("capsule-nsexec: unknown namespace \"%s\"", name);
}

// Namespaces given by path are opened first (a path may be relative to the host's), then
// joined, then the new ones made.
static void join_namespaces(struct init_plan *ip) {
  int fds[8], flags[8], mnt = 0;
  for (int i = 0; i < ip->njoin; i++) {
    flags[i] = ns_flag(ip->join_type[i]);
    // O_NONBLOCK: a FIFO at the path would wait for a writer (setns refuses it below).
    if ((fds[i] = open(ip->join_path[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
      die("cannot join namespace %s: open: %s", ip->join_path[i], why(errno));
    mnt |= flags[i] == CLONE_NEWNS;
  }
  if (mnt && unshare(CLONE_FS)) die("unshare(CLONE_FS): %s", why(errno));
  for (int i = 0; i < ip->njoin; i++) {
    if (setns(fds[i], flags[i]))
      die("cannot join namespace %s: setns: %s", ip->join_path[i], why(errno));
    close(fds[i]);
  }
  int unshare_flags = 0;
  for (int i = 0; i < ip->nnew; i++) unshare_flags |= ns_flag(ip->new_ns[i]);
  if (unshare_flags && unshare(unshare_flags)) die("unshare: %s", why(errno));
}

// A 1-byte message from capsule, with an fd when `fd` is given; 0 at EOF.
static int receive(char *byte, int *fd) {
  union { struct cmsghdr c; char b[CMSG_SPACE(sizeof(int))]; } u;
  memset(&u, 0, sizeof u);
  struct iovec iov = {byte, 1};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = fd ? u.b : NULL,
                     .msg_controllen = fd ? sizeof u.b : 0};
  ssize_t n;
  while ((n = recvmsg(chan, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
  if (n < 0) die("reading from capsule: %s", why(errno));
  if (fd) {
    *fd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
      memcpy(fd, CMSG_DATA(c), sizeof(int));
  }
  return n == 1;
}

// plan.sources_by_fd: each bind source as an fd from capsule (opened by host root in this
// mount namespace); mounted from /proc/self/fd/N (close-on-exec, gone at execve).
static void take_bind_sources(struct init_plan *ip) {
  int binds = 0;
  for (int i = 0; i < ip->nmounts; i++) binds += ip->mounts[i].bind;
  if (!binds) return;
  frame('S', NULL, 0);
  for (int i = 0; i < ip->nmounts; i++) {
    if (!ip->mounts[i].bind) continue;
    char byte;
    int fd;
    if (!receive(&byte, &fd) || fd < 0) die("create stopped while sending the bind mounts' sources");
    char *p = list(32, 1);
    proc_fd_path(p, fd, "cannot take the bind mounts' sources");
    ip->mounts[i].source = p;
  }
}

// runtime spec: prestart and createRuntime (capsule's, on the host) before createContainer, all
// after the mounts and before pivot_root; capsule answers "r" once they succeeded.
static void before_pivot(void *arg) {
  struct init_ctx *ctx = arg;
  struct init_plan *ip = &ctx->pl->init;
  if (ip->hooks_host) {
    frame('H', NULL, 0);
    char byte;
    if (!receive(&byte, NULL) || byte != 'r') die("create stopped during its hooks");
  }
  run_hooks("createContainer", ip->create_hooks, ip->ncreate, ip->state ? ip->state : "");
}

// With process.terminal: a pty from the container's own devpts (so `tty` names a device the
// container can see). /dev/ptmx (resolved inside the root) must be the ptmx device; the slave
// comes from the master (TIOCGPTPEER), is checked to be a pty's (majors 136-143) and given to
// the process's uid (runc's fixStdioPermissions; EINVAL and EPERM, an unmapped id in a user
// namespace, leave it as it is).
static void make_terminal(struct init_ctx *ctx) {
  struct plan *pl = ctx->pl;
  struct open_how how = {.flags = O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("cannot open the container's root: %s", why(errno));
  int master = (int)syscall(SYS_openat2, root, "dev/ptmx", &how, sizeof how);
  close(root);
  struct stat st;
  if (master < 0) die("cannot open the container's /dev/ptmx: %s", why(errno));
  if (fstat(master, &st) || !is_ptmx(&st))
    die("cannot set up the terminal: the container's /dev/ptmx is not the ptmx device (5:2)");
  if (fcntl(master, F_SETFL, 0)) die("cannot set up the terminal: fcntl: %s", why(errno));
  int slave = pty_slave(pl, master);
  ctx->master = master;
  ctx->slave = slave;
}

// After pivot_root and the sysctls: hostname, domainname, and the console (bound over
// /dev/console before the read-only paths and root, as runc's).
static void in_container(void *arg) {
  struct init_ctx *ctx = arg;
  struct init_plan *ip = &ctx->pl->init;
  if (ip->hostname && sethostname(ip->hostname, strlen(ip->hostname)))
    die("sethostname %s: %s", ip->hostname, why(errno));
  if (ip->domainname && setdomainname(ip->domainname, strlen(ip->domainname)))
    die("setdomainname %s: %s", ip->domainname, why(errno));
  if (ctx->pl->terminal) {
    make_terminal(ctx);
    mount_console(ctx->slave);
  }
}

// The container's /etc/passwd (resolved inside its root, a regular file only, at most 4 MiB),
// NUL-terminated; NULL when it has none. This process is in the container's cgroup by now.
static char *read_passwd(void) {
  struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return NULL;
  int fd = (int)syscall(SYS_openat2, root, "etc/passwd", &how, sizeof how);
  close(root);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return NULL;
  }
  return read_small(fd);
}

// Blocks until `capsule start` opens exec.fifo for reading (the fd is O_PATH, from capsule, and
// stays reachable after pivot_root), then says it is going.
static void wait_for_start(int fifo) {
  char self[32];
  proc_fd_path(self, fifo, "cannot open exec.fifo");
  int w;
  while ((w = open(self, O_WRONLY | O_CLOEXEC)) < 0 && errno == EINTR) {}
  if (w < 0) die("cannot open exec.fifo: %s", why(errno));
  // The very fifo capsule opened, nothing else that path could name.
  struct stat a, b;
  if (fstat(w, &a) || fstat(fifo, &b) || !S_ISFIFO(a.st_mode) || a.st_dev != b.st_dev ||
      a.st_ino != b.st_ino)
    die("cannot open exec.fifo: %s is not the fifo capsule made", self);
  if (write(w, "0", 1) != 1) die("cannot write exec.fifo: %s", why(errno));
  close(w);
  close(fifo);
}

// Moves this process's one thread into the v1 cgroup whose `tasks` file is `path` ("0": the
// writer itself; no cgroup_threadgroup_rwsem, so no RCU grace period). The words are runc's.
static void join_tasks(const char *path) {
  int f = open(path, O_WRONLY | O_CLOEXEC);
  if (f < 0 || write(f, "0", 1) != 1) die("adding the init to %s: %s", path, why(errno));
  close(f);
}

// The hooks' state JSON (plan 'J') was made before the init existed: its "pid" is the helper's
// that cloned it. In the init, still in capsule's mount namespace, /proc/self names its pid in
// capsule's /proc (the pid state.json holds, which the host's hooks get); that pid goes in its
// place. The key's first occurrence is the state's own (plan.ts: ociState's JSON.stringify, the
// id and version before it have no quote left unescaped).
static const char *state_with_own_pid(const char *state) {
  char self[24];
  ssize_t n = readlink("/proc/self", self, sizeof self - 1);
  if (n <= 0) die("reading /proc/self: %s", why(n < 0 ? errno : EINVAL));
  self[n] = 0;
  const char *key = strstr(state, "\"pid\":");
  if (!key) return state;
  const char *num = key + 6, *end = num;
  while (*end >= '0' && *end <= '9') end++;
  size_t head = (size_t)(num - state);
  char *s = malloc(head + (size_t)n + strlen(end) + 1);
  if (!s) die("the hooks' state: %s", why(ENOMEM));
  memcpy(s, state, head);
  memcpy(s + head, self, (size_t)n);
  strcpy(s + head + n, end);
  return s;
}

// plan.clone (runtime/plan.ts InitPlacement): this process is capsule's child in the host's PID
// namespace. It joins the v1 hierarchies itself, then clones the init with CLONE_PARENT (so the
// init is capsule's child, as a spawned one is), CLONE_INTO_CGROUP (born in the cgroup2
// directory: no migration, no grace period) and the PID namespace; it sends the init's pid
// ('P') and exits. Returns in the init, once capsule said "g" (it applies the limits first).
// A kernel without clone3 or CLONE_INTO_CGROUP (before 5.7): the cgroup2 directory is joined by
// cgroup.procs and the init forked with clone(2).
static void clone_init(struct plan *pl) {
  struct init_plan *ip = &pl->init;
  for (int i = 0; i < pl->ncgroup; i++) join_tasks(pl->cgroup[i]);
  int cg = -1;
  if (ip->cgroup2 && (cg = open(ip->cgroup2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
    die("adding the init to %s: %s", ip->cgroup2, why(errno));
  unsigned long long flags = CLONE_PARENT;
  if (ip->has_pid_ns && ip->pid_ns) {
    int ns = open(ip->pid_ns, O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO: no wait
    if (ns < 0 || setns(ns, CLONE_NEWPID))
      die("cannot join namespace pid %s: %s", ip->pid_ns, why(errno));
    close(ns);
  } else if (ip->has_pid_ns) {
    flags |= CLONE_NEWPID;
  }
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.flags = flags | (cg >= 0 ? CLONE_INTO_CGROUP : 0);
  a.cgroup = cg >= 0 ? (uint64_t)cg : 0;
  long pid = syscall(SYS_clone3, &a, sizeof a);
  if (pid < 0 && cg >= 0 && (errno == ENOSYS || errno == E2BIG || errno == EINVAL)) {
    char procs[4096];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", ip->cgroup2);
    int f = open(procs, O_WRONLY | O_CLOEXEC);
    if (f < 0 || write(f, "0", 1) != 1) die("adding the init to %s: %s", procs, why(errno));
    close(f);
    pid = syscall(SYS_clone, flags, 0, 0, 0, 0);
  }
  // A joined PID namespace whose PID 1 has exited takes no new process (the kernel's ENOMEM).
  if (pid < 0 && errno == ENOMEM && ip->pid_ns)
    die("cannot start the init in PID namespace %s: its init has exited, no process may join it "
        "(clone: %s)", ip->pid_ns, why(errno));
  // The helper is in the cgroup already: a pids.max of 1 there (a cgroup that existed) is full.
  if (pid < 0 && errno == EAGAIN)
    die("cannot start the init: clone: %s (the pids.max of its cgroup or the host's limit on "
        "processes leaves no room for it)", why(errno));
  // The cgroup2 directory refuses a process: controllers on for its children (EBUSY), a
  // cgroup.type that takes none (EOPNOTSUPP), or it is being removed (ENODEV).
  if (pid < 0 && cg >= 0 && (errno == EBUSY || errno == EOPNOTSUPP || errno == ENODEV))
    die("cannot start the init in cgroup %s: clone3: %s (it cannot take a process: choose "
        "another linux.cgroupsPath)", ip->cgroup2, why(errno));
  if (pid < 0) die("cannot start the init: clone: %s", why(errno));
  if (pid == 0) {
    if (cg >= 0) close(cg);
    char go;
    if (!receive(&go, NULL) || go != 'g') die("create stopped before the init could start");
    if (ip->state && *ip->state) ip->state = state_with_own_pid(ip->state);
    return;
  }
  uint64_t v = (uint64_t)pid;
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = v >> (8 * i) & 255;
  frame('P', le, 8);
  _exit(0);
}

void init_main(void) {
  struct plan pl;
  read_plan(&pl, 1);
  struct init_plan *ip = &pl.init;
  if (ip->clone) clone_init(&pl);
  struct init_ctx ctx = {&pl, -1, -1};
  int fifo = (int)ip->exec_fifo_fd;
  if (fcntl(fifo, F_SETFD, FD_CLOEXEC)) die("exec.fifo's fd %d: %s", fifo, why(errno));
  if (pl.log_fd >= 0) { // stdin from the host's /dev/null, stdout and stderr to the log
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2((int)pl.log_fd, 1) < 0 || dup2((int)pl.log_fd, 2) < 0)
      die("cannot send the container's output to its log: %s", why(errno));
    close(nul);
    if (pl.log_fd > 2) close((int)pl.log_fd);
  }
  if (pl.setsid_ && setsid() < 0) die("setsid: %s", why(errno));
  if (pl.has_oom) {
    int f = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (f < 0 || dprintf(f, "%lld", (long long)pl.oom) < 0)
      die("cannot set process.oomScoreAdj %lld: %s", (long long)pl.oom, why(errno));
    close(f);
  }
  for (int i = 0; i < pl.nns; i++) ip->new_ns[ip->nnew++] = pl.ns[i];
  join_namespaces(ip);
  {
    char v[16];
    setgroups_denied = read_proc("/proc/self/setgroups", v, sizeof v) == 0 && !strncmp(v, "deny", 4);
  }
  if (ip->sources_by_fd) take_bind_sources(ip);
  setup_rootfs(ip, pl.cwd, before_pivot, in_container, &ctx);
  // exec.fifo is reopened through /proc/self/fd after "ready": a /proc that is not the kernel's
  // fails create now, rather than the program at start.
  require_procfs("cannot wait for start on exec.fifo");
  add_home(&pl, read_passwd);
  raise_hard_limits(&pl);
  if (chdir(pl.cwd)) die("chdir %s: %s", pl.cwd, why(errno));
  const char *prog = look_path(&pl);
  // Before "ready", as runc: seccomp where it needs privileges, then the program's user, groups
  // and capabilities, and the umask. What fails here fails create, with the step named.
  if (pl.sc && !pl.nnp) load_seccomp(&pl);
  drop_privileges(&pl);
  umask((mode_t)pl.umask_);
  uint64_t self = (uint64_t)getpid();
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = self >> (8 * i) & 255;
  frame('R', le, 8);
  if (ctx.master >= 0) {
    frame_fd('T', ctx.master, "the terminal");
    close(ctx.master);
  }
  // Ready: from here a failure is the program's, said on its stderr (its terminal, with one).
  close(chan);
  chan = -1;
  die_status = 127;
  if (ctx.slave >= 0) err_fd = ctx.slave;
  wait_for_start(fifo);
  // As runc: startContainer hooks run under the seccomp filter; loaded before them when
  // no_new_privs put it last (the profile must then allow the few calls up to execve).
  int early = ip->nstart && pl.sc && pl.nnp;
  if (early) load_seccomp(&pl);
  run_hooks("startContainer", ip->start_hooks, ip->nstart, ip->state ? ip->state : "");
  if (ctx.slave >= 0) {
    if ((!pl.setsid_ && setsid() < 0) || ioctl(ctx.slave, TIOCSCTTY, 0) || dup2(ctx.slave, 0) < 0 ||
        dup2(ctx.slave, 1) < 0 || dup2(ctx.slave, 2) < 0)
      die("cannot attach the terminal: %s", why(errno));
    if (ctx.slave > 2) close(ctx.slave);
    err_fd = 2;
  }
  // Every fd from 3 close-on-exec but the caller's (--preserve-fds, LISTEN_FDS), which came
  // through capsule at their numbers.
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC)) die("close_range: %s", why(errno));
  for (int i = 0; i < pl.nkeep; i++)
    if (fcntl((int)pl.keep_fds[i], F_SETFD, 0))
      die("cannot pass fd %llu on: %s", (unsigned long long)pl.keep_fds[i], why(errno));
  exec_program(&pl, prog, early);
}
