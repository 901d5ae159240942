// capsule's native helper (dist/capsule-nsexec): what its parts share. One static binary with two
// modes: `capsule-nsexec FD` joins a running container for `capsule exec` (nsexec.c), and
// `capsule-nsexec init FD` is a new container's init, PID 1 of its PID namespace (init.c), which
// sets up the root filesystem (rootfs.c), runs the hooks that belong inside (hooks.c), waits on
// exec.fifo for `start` and execve's the program. Both read one plan from capsule (plan.c; the
// format is runtime/nsexec.ts's) and answer on the same socket.
#ifndef CAPSULE_NATIVE_H
#define CAPSULE_NATIVE_H
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

// The socket to capsule (-1 once it is closed: a failure is then said on `err_fd`).
extern int chan;
// Where a failure goes once `chan` is closed ("capsule: MESSAGE\n"), and the exit status then.
extern int err_fd;
extern int die_status;
// /proc/sys/kernel/cap_last_cap, read at the start.
extern int cap_last;
// /proc/self/setgroups says "deny" (a user namespace made by an unprivileged user).
extern int setgroups_denied;

// A walk over a plan's records (runtime/nsexec.ts Records): tag (1 byte) | u32 LE length | data.
struct records {
  const unsigned char *buf;
  size_t total, off;
  unsigned char tag;   // the current record's
  const unsigned char *d;
  uint32_t len;
};
#define RECORDS(b, t) {.buf = (b), .total = (t)}
// The next record into r: 1; 0 at the end; -1 for a malformed one (cut short, overrunning).
int records_next(struct records *r);
// The u32 little-endian at p.
uint32_t le32(const unsigned char *p);
// exec's native front end (front.c): `capsule-nsexec front N DENO-COMMAND... -- ARGS...`;
// returns the exit status, or execs the Deno command with ARGS.
int front_main(int argc, char **argv);
// The process records of a --process file `src` that differs from the kept file `kept` only in the
// values of its top-level args, env and cwd (process_delta.c): the kept `records` with those
// three replaced, in a new buffer of *out_len bytes; NULL when it differs otherwise, or when a
// value breaks the rules config.json's process has for it.
unsigned char *process_delta(const unsigned char *kept, size_t klen, const unsigned char *records,
                             uint32_t rlen, const unsigned char *src, size_t slen,
                             uint32_t *out_len);
// The process records exec.ts would make of a --process file `src` (processFromFile,
// fileProcess, buildProcessPlan) that no exec kept, with `base`, exec.plan's process records,
// giving what the file leaves to the container (rlimits, capabilities, oomScoreAdj) and its
// seccomp filter
// (process_delta.c); in a new buffer of *out_len bytes. NULL for a file it is not sure of
// (malformed, a terminal, a number written other than as a plain integer, a value the CLI would
// refuse): the CLI reads that one.
unsigned char *process_records(const unsigned char *src, size_t slen, const unsigned char *base,
                               uint32_t blen, uint32_t *out_len);
// The waiter and log writer of a state root (monitor.c): `capsule-nsexec monitor run|log|serve
// ...`; returns the exit status.
int monitor_main(int argc, char **argv);
// strerror in lower case with the errno name: "no such file or directory (ENOENT)".
const char *why(int e);
// One frame to capsule: type (1 byte) | u32 LE length | data.
void frame(char type, const void *data, uint32_t len);
// A failure: one 'E' frame to capsule (or the line on err_fd once the socket is gone), then
// _exit(die_status). printf-style.
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
// An empty frame of `type` to capsule with `fd` as SCM_RIGHTS; dies naming `what` on failure.
void frame_fd(char type, int fd, const char *what);
// The rest of `fd` (at most 4 MiB), NUL-terminated, then closes it; NULL when out of memory.
char *read_small(int fd);
// The slave of the pty `master` (a ptmx fd), from the master itself (TIOCGPTPEER, not by a
// name under /dev/pts, which a container could have mounted over), checked to be a pty's (UNIX98
// majors 136-143), given to the process's uid (runc's fixStdioPermissions; EINVAL and EPERM, an
// unmapped id in a user namespace, leave it as it is) and sized; dies on failure.
struct plan;
int pty_slave(struct plan *pl, int master);
// The pty multiplexer device, 5:2 (/dev/ptmx, or a devpts instance's ptmx).
int is_ptmx(const struct stat *st);
// calloc that dies when out of memory.
void *list(size_t n, size_t size);
// A small /proc file into buf (NUL-terminated); 0 on success.
int read_proc(const char *path, char *buf, size_t size);
// Whether /proc/PID is the process that started at `start_time` (field 22 of /proc/PID/stat, as
// runtime/state.ts initAlive) and is not a zombie: a pid taken over by another process is not.
int process_is(unsigned long long pid, const char *start_time);
// Dies unless /proc in this process's root is a procfs (not a directory or link of an image's):
// whatever is reached through /proc (fds by /proc/self/fd/N, sysctls) must be the kernel's.
void require_procfs(const char *what);
// "/proc/self/fd/FD" into out, once require_procfs holds: the path mount(2) and open(2) are
// given for what an fd holds.
void proc_fd_path(char out[32], int fd, const char *what);

// One entry of config.json's mounts, as runtime/plan.ts MountOp.
struct mount_op {
  const char *destination, *source, *type, *data; // data: "" when none
  uint64_t flags;                                  // MS_* flags
  uint64_t recursive_flags;                        // rro, rnosuid...: 0 when none
  uint64_t propagation[8];                         // MS_PRIVATE|MS_REC... applied in order
  int npropagation;
  int bind; // a bind mount (flags hold MS_BIND, maybe MS_REC)
};

// One device node to make, as runtime/plan.ts DeviceOp.
struct device_op {
  const char *path; // container path, e.g. "/dev/null"
  char type;        // 'c', 'b', 'u' or 'p'
  uint64_t major, minor, mode, uid, gid; // mode: permission bits only
};

// One OCI hook run by the init itself (createContainer, startContainer), as plan.ts HookPlan.
struct hook {
  const char *path;
  char **argv; // NULL-terminated; argc 0: { path }
  int argc;
  char **env; // NULL-terminated: exactly the hook's environment
  int nenv;
  uint64_t timeout; // seconds, 0: none
};

// One sysctl: key is a path below /proc/sys ("net/ipv4/ip_forward").
struct sysctl_op {
  const char *key, *value;
};

// What only the init's plan has (runtime/plan.ts InitPlan).
struct init_plan {
  const char *rootfs;          // absolute host path of the root filesystem
  uint64_t readonly;           // root.readonly
  uint64_t root_propagation;   // MS_* for "/" before the rootfs bind (rslave by default)
  uint64_t has_final;          // linux.rootfsPropagation given:
  uint64_t final_propagation;  // applied to "/" at the end
  uint64_t no_pivot;           // --no-pivot: MS_MOVE + chroot instead of pivot_root
  uint64_t host_mount_ns;      // no mount namespace of the container's own: chroot only
  uint64_t sources_by_fd;      // bind sources come from capsule as fds ('S' asks for them)
  uint64_t setup_dev;          // /dev is a tmpfs of ours: links, /dev/pts, /dev/shm made
  uint64_t hooks_host;         // prestart/createRuntime hooks: stop before pivot_root ('H')
  int64_t exec_fifo_fd;        // O_PATH fd on exec.fifo (inherited)
  struct mount_op *mounts;
  int nmounts;
  struct device_op *devices;
  int ndevices;
  const char **masked;
  int nmasked;
  const char **readonly_paths;
  int nreadonly;
  struct sysctl_op *sysctls;
  int nsysctl;
  const char *hostname, *domainname; // NULL: not set
  const char *state;                 // the OCI state JSON for the hooks ("" when none)
  struct hook *create_hooks, *start_hooks;
  int ncreate, nstart;
  const char *new_ns[8]; // namespaces to unshare ("ipc", "uts", "net", "mnt", "cgroup")
  int nnew;
  const char *join_type[8], *join_path[8]; // namespaces to join (setns), by path
  int njoin;
  // plan.clone (runtime/plan.ts InitPlacement): this process, capsule's child in the host's PID
  // namespace, clones the init into its place (init.c clone_init); the v1 `tasks` files are
  // the plan's cgroup list ('c').
  uint64_t clone;
  const char *cgroup2; // the cgroup2 directory the init is born in (CLONE_INTO_CGROUP), or NULL
  int has_pid_ns;      // a PID namespace: new (pid_ns NULL) or joined by path
  const char *pid_ns;
};

// The plan (both modes). The process part is runtime/plan.ts ProcessPlan.
struct plan {
  uint64_t pid, uid, gid, umask_, nnp, setsid_, has_caps, cap_b, cap_e, cap_p, cap_i, cap_a;
  uint64_t sc_flags, terminal, rows, cols, detach, listen_fds, has_oom;
  int64_t log_fd, oom;
  const char *ns[8];
  int nns;
  const char *cgroup[64];
  int ncgroup;
  uint64_t *gids;
  int ngids;
  uint64_t rl[64][3];
  int nrl;
  const char *cwd, *start_time;
  char **argv;
  int argc;
  char **env;
  int nenv;
  uint64_t *keep_fds;
  int nkeep;
  const unsigned char *sc;
  uint32_t sc_len;
  struct init_plan init; // init mode only
};

// Reads the plan from `chan` (dies on a malformed one). `init`: the init's records are allowed.
void read_plan(struct plan *pl, int init);

// The process steps both modes share (plan.c): HOME from the container's /etc/passwd, hard
// rlimits, argv[0] in PATH, seccomp, dropping to the program's ids and capabilities, and the
// last steps before execve.
void add_home(struct plan *pl, char *(*read_passwd)(void));
void raise_hard_limits(struct plan *pl);
const char *look_path(struct plan *pl);
void load_seccomp(struct plan *pl);
void drop_privileges(struct plan *pl);
const char *rlimit_name(uint64_t r);
// Signals reset, LISTEN_FDS/LISTEN_PID, soft rlimits, seccomp when no_new_privs (unless
// `filter_loaded`), execve of `prog`; a failure exits 127 (126: found but cannot run).
__attribute__((noreturn)) void exec_program(struct plan *pl, const char *prog, int filter_loaded);

// init.c: the init mode (capsule-nsexec init FD), once `chan` is set; never returns.
__attribute__((noreturn)) void init_main(void);

// rootfs.c: the whole rootfs sequence of runtime/rootfs.ts setupRootfs, in runc's order. Runs
// in the container's new mount namespace (or the caller's with host_mount_ns); when it returns,
// "/" is the container's root and the cwd is "/". `before_pivot` runs in the rootfs as cwd right
// before pivot_root (the hooks), `in_container` after pivot_root and the sysctls (hostname,
// console); either may be NULL. Dies with the reason on any failure.
void setup_rootfs(const struct init_plan *ip, const char *cwd, void (*before_pivot)(void *),
                  void (*in_container)(void *), void *arg);
// rootfs.c: binds the pty slave (its fd) over the container's /dev/console (made as an empty
// file if missing; a symlink or directory there is refused), as runtime/init.ts mountConsole.
void mount_console(int slave);

// hooks.c: runs `hooks` one after the other (runtime/init.ts runInitHooks): the state JSON on
// stdin, exactly each hook's env, its stdout to /dev/null, its stderr collected (1 MiB at most)
// for the message; `timeout` kills it. Dies with "KIND hook PATH failed (exit status N): STDERR",
// "... failed (killed by SIGX)", "... timed out after N s (killed)" or "... could not start: ...".
void run_hooks(const char *kind, const struct hook *hooks, int n, const char *state);

#endif
