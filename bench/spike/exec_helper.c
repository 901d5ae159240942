// SPIKE (issue 14's design step): NOT USED BY THE PRODUCT. Its exec half is now built, reviewed
// and tested as runtime/native/nsexec.c (capsule-nsexec); this file stays as the measured
// prototype of the run half (PID 1, mounts, pivot_root) that docs/DESIGN.md describes.
// A native exec helper that stands
// between capsule's spawn and the program's execve, in place of a second Deno process; see
// docs/DESIGN.md "A native helper on the start path (spike, not built)".
//
// Started by bench/spike/exec_native.ts (Deno) in the host's PID namespace (exec: it joins the
// container's for its children and forks last, see fork_late) or by run_native.ts as PID 1 of a
// new one (run: nothing else is in it yet), with an
// empty environment and argv = { "capsule-exec-helper", "<fd>" }. fd is one end of a socketpair
// (close-on-exec here) holding the whole plan: u32 LE length, then records of
//   tag (1 byte) | length (u32 LE) | data
// strings are data without a NUL (refused if they hold one), numbers u64 LE (8 bytes).
// On any failure it writes one line to that fd and exits 1; on success the fd closes at execve
// (CLOEXEC) and the parent reads EOF: the classic exec-error pipe.
//
// Order (runc's nsexec + finalizeNamespace + linux_init, capsule's init.ts prepareExec):
//   non-dumpable first; join cgroups (cgroup.procs "0"); open /proc/PID/ns/* and /proc/PID/root;
//   unshare(CLONE_FS); setns user (if any), ipc, uts, net, cgroup, mnt; fchdir+chroot the init's
//   root; setsid / log fd; HOME from the container's /etc/passwd; rlimits; argv[0] looked up in
//   PATH; chdir(cwd); [seccomp when no no_new_privs]; bounding set, keepcaps, groups, gid, uid,
//   capset, ambient, no_new_privs; umask; signals reset; close_range(3..) CLOEXEC but the
//   preserved fds; [seccomp with no_new_privs]; execve.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

#define MAX_LIST 4096
static int chan = -1;
static int fork_late = 0;
static volatile pid_t child_pid = 0;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static void die(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n >= (int)sizeof msg) n = sizeof msg - 1;
  if (chan >= 0 && write(chan, msg, n) < 0) { /* parent gone: nothing to tell */ }
  if (chan < 0 && write(2, msg, n) < 0) { /* no stderr */ }
  _exit(1);
}

struct plan {
  uint64_t pid;
  const char *ns[8];
  int nns;
  const char *cgroup[32];
  int ncgroup;
  uint64_t uid, gid, umask_, nnp, setsid_, has_caps, cap_b, cap_e, cap_p, cap_i, cap_a, sc_flags;
  int64_t log_fd;
  uint64_t gids[MAX_LIST];
  int ngids;
  uint64_t rl[64][3];
  int nrl;
  const char *cwd;
  char *argv[MAX_LIST + 1];
  int argc;
  char *env[MAX_LIST + 2];
  int nenv;
  uint64_t keep_fds[256];
  int nkeep;
  const unsigned char *sc;
  uint32_t sc_len;
  // run mode (run_native.ts): this process is PID 1 of a new PID namespace and sets up the rest.
  uint64_t run, unshare_flags, root_prop, root_ro, setup_dev;
  const char *rootfs, *hostname, *fifo;
  struct mount_op { uint64_t flags, rflags, bind, nprop, prop[4]; const char *dst, *src, *type, *data; } mounts[64];
  int nmounts;
  struct dev_op { uint64_t type, major, minor, mode, uid, gid; const char *path; } devs[64];
  int ndevs;
  const char *masked[64], *ro_paths[64];
  int nmasked, nro;
};

static uint32_t u32(const unsigned char *p) {
  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t u64(const unsigned char *p, uint32_t len) {
  if (len != 8) die("capsule exec helper: a number field of %u bytes", len);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
// A NUL-terminated copy (the buffer is ours: the byte after each field is overwritten by
// shifting into a fresh allocation instead, to keep the reader simple and bounds-checked).
static char *str(const unsigned char *p, uint32_t len) {
  if (memchr(p, 0, len)) die("capsule exec helper: a string field holds a NUL byte");
  char *s = malloc(len + 1);
  if (!s) die("capsule exec helper: out of memory");
  memcpy(s, p, len);
  s[len] = 0;
  return s;
}

static void read_plan(struct plan *pl) {
  unsigned char hdr[4];
  size_t got = 0;
  while (got < 4) {
    ssize_t n = read(chan, hdr + got, 4 - got);
    if (n <= 0) die("capsule exec helper: no plan (%s)", n ? strerror(errno) : "EOF");
    got += n;
  }
  uint32_t total = u32(hdr);
  if (total > (16u << 20)) die("capsule exec helper: a plan of %u bytes", total);
  unsigned char *buf = malloc(total ? total : 1);
  if (!buf) die("capsule exec helper: out of memory");
  for (got = 0; got < total;) {
    ssize_t n = read(chan, buf + got, total - got);
    if (n <= 0) die("capsule exec helper: the plan was cut short");
    got += n;
  }
  memset(pl, 0, sizeof *pl);
  pl->log_fd = -1;
  pl->umask_ = 022;
  for (size_t off = 0; off < total;) {
    if (total - off < 5) die("capsule exec helper: a record header is cut short");
    unsigned char tag = buf[off];
    uint32_t len = u32(buf + off + 1);
    off += 5;
    if (len > total - off) die("capsule exec helper: record '%c' overruns the plan", tag);
    const unsigned char *d = buf + off;
    off += len;
    switch (tag) {
    case 'p': pl->pid = u64(d, len); break;
    case 'n':
      if (pl->nns == 8) die("capsule exec helper: too many namespaces");
      pl->ns[pl->nns++] = str(d, len);
      break;
    case 'c':
      if (pl->ncgroup == 32) die("capsule exec helper: too many cgroups");
      pl->cgroup[pl->ncgroup++] = str(d, len);
      break;
    case 'u': pl->uid = u64(d, len); break;
    case 'g': pl->gid = u64(d, len); break;
    case 'G':
      if (pl->ngids == MAX_LIST) die("capsule exec helper: too many groups");
      pl->gids[pl->ngids++] = u64(d, len);
      break;
    case 'm': pl->umask_ = u64(d, len); break;
    case 'N': pl->nnp = u64(d, len); break;
    case 's': pl->setsid_ = u64(d, len); break;
    case 'O': pl->log_fd = (int64_t)u64(d, len); break;
    case 'l':
      if (len != 24 || pl->nrl == 64) die("capsule exec helper: a bad rlimit record");
      for (int i = 0; i < 3; i++) pl->rl[pl->nrl][i] = u64(d + 8 * i, 8);
      pl->nrl++;
      break;
    case 'B': pl->has_caps = 1; pl->cap_b = u64(d, len); break;
    case 'E': pl->cap_e = u64(d, len); break;
    case 'P': pl->cap_p = u64(d, len); break;
    case 'I': pl->cap_i = u64(d, len); break;
    case 'A': pl->cap_a = u64(d, len); break;
    case 'S':
      if (len == 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > 0xffff)
        die("capsule exec helper: a seccomp program of %u bytes", len);
      pl->sc = d;
      pl->sc_len = len;
      break;
    case 'F': pl->sc_flags = u64(d, len); break;
    case 'd': pl->cwd = str(d, len); break;
    case 'a':
      if (pl->argc == MAX_LIST) die("capsule exec helper: too many arguments");
      pl->argv[pl->argc++] = str(d, len);
      break;
    case 'e':
      if (pl->nenv == MAX_LIST) die("capsule exec helper: too many environment variables");
      pl->env[pl->nenv++] = str(d, len);
      break;
    case 'f':
      if (pl->nkeep == 256) die("capsule exec helper: too many preserved fds");
      pl->keep_fds[pl->nkeep++] = u64(d, len);
      break;
    case 'M': pl->run = u64(d, len); break;
    case 'U': pl->unshare_flags = u64(d, len); break;
    case 'Q': pl->root_prop = u64(d, len); break;
    case 'q': pl->root_ro = u64(d, len); break;
    case 'V': pl->setup_dev = u64(d, len); break;
    case 'R': pl->rootfs = str(d, len); break;
    case 'h': pl->hostname = str(d, len); break;
    case 'X': pl->fifo = str(d, len); break;
    case 'k':
      if (pl->nmasked == 64) die("capsule exec helper: too many masked paths");
      pl->masked[pl->nmasked++] = str(d, len);
      break;
    case 'r':
      if (pl->nro == 64) die("capsule exec helper: too many read-only paths");
      pl->ro_paths[pl->nro++] = str(d, len);
      break;
    case 'o': { // flags, recursive flags, bind, nprop, prop[4] (u64 each), then dst\0src\0type\0data\0
      if (pl->nmounts == 64 || len < 64) die("capsule exec helper: a bad mount record");
      struct mount_op *m = &pl->mounts[pl->nmounts++];
      m->flags = u64(d, 8); m->rflags = u64(d + 8, 8); m->bind = u64(d + 16, 8); m->nprop = u64(d + 24, 8);
      if (m->nprop > 4) die("capsule exec helper: a bad mount record");
      for (int i = 0; i < 4; i++) m->prop[i] = u64(d + 32 + 8 * i, 8);
      const char **f[4] = {&m->dst, &m->src, &m->type, &m->data};
      uint32_t at = 64;
      for (int i = 0; i < 4; i++) {
        const unsigned char *z = memchr(d + at, 0, len - at);
        if (!z) die("capsule exec helper: a bad mount record");
        *f[i] = str(d + at, (uint32_t)(z - (d + at)));
        at = (uint32_t)(z - d) + 1;
      }
      break;
    }
    case 'D': { // type, major, minor, mode, uid, gid (u64 each), then the path
      if (pl->ndevs == 64 || len < 48) die("capsule exec helper: a bad device record");
      struct dev_op *v = &pl->devs[pl->ndevs++];
      uint64_t *f[6] = {&v->type, &v->major, &v->minor, &v->mode, &v->uid, &v->gid};
      for (int i = 0; i < 6; i++) *f[i] = u64(d + 8 * i, 8);
      v->path = str(d + 48, len - 48);
      break;
    }
    default: die("capsule exec helper: unknown record '%c'", tag);
    }
  }
  if ((!pl->pid && !pl->run) || (pl->run && !pl->rootfs) || !pl->argc || !pl->cwd || pl->cwd[0] != '/')
    die("capsule exec helper: the plan lacks the pid, argv or an absolute cwd");
}

static int ns_flag(const char *name) {
  static const struct { const char *n; int f; } t[] = {
    {"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"pid", CLONE_NEWPID},
    {"net", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP}, {"mnt", CLONE_NEWNS},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) if (!strcmp(t[i].n, name)) return t[i].f;
  die("capsule exec helper: unknown namespace \"%s\"", name);
  return 0;
}

// HOME from the container's /etc/passwd (after chroot) when env has none, as runc and init.ts.
static void add_home(struct plan *pl) {
  for (int i = 0; i < pl->nenv; i++)
    if (!strncmp(pl->env[i], "HOME=", 5) && pl->env[i][5]) return;
  const char *home = "/";
  static char line[4096], buf[4200];
  FILE *f = fopen("/etc/passwd", "re");
  if (f) {
    while (fgets(line, sizeof line, f)) {
      char *fld[7] = {0};
      int k = 0;
      for (char *s = line, *tok; k < 7 && (tok = strsep(&s, ":\n")); ) fld[k++] = tok;
      if (k >= 6 && fld[2][0] && fld[5][0]) {
        char *end;
        unsigned long v = strtoul(fld[2], &end, 10);
        if (!*end && v == pl->uid) { home = fld[5]; break; }
      }
    }
  }
  snprintf(buf, sizeof buf, "HOME=%s", home);
  if (f) fclose(f);
  int j = 0;
  for (int i = 0; i < pl->nenv; i++) if (strncmp(pl->env[i], "HOME=", 5)) pl->env[j++] = pl->env[i];
  pl->nenv = j;
  pl->env[pl->nenv++] = buf;
}

static int executable(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

// execvp's lookup in the plan's PATH (the messages are runc's, as init.ts lookPath).
static const char *look_path(struct plan *pl) {
  const char *name = pl->argv[0];
  if (strchr(name, '/')) {
    if (executable(name)) return name;
    struct stat st;
    die("exec: \"%s\": %s", name, stat(name, &st) ? "no such file or directory" : "permission denied");
  }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (int i = pl->nenv - 1; i >= 0; i--)
    if (!strncmp(pl->env[i], "PATH=", 5)) { path = pl->env[i] + 5; break; }
  static char cand[8192];
  for (const char *p = path;;) {
    const char *c = strchr(p, ':');
    size_t dl = c ? (size_t)(c - p) : strlen(p);
    int n = snprintf(cand, sizeof cand, "%.*s/%s", (int)dl, dl ? p : ".", name);
    if (n > 0 && n < (int)sizeof cand && executable(cand)) return cand;
    if (!c) break;
    p = c + 1;
  }
  die("exec: \"%s\": executable file not found in $PATH", name);
  return NULL;
}

static void load_seccomp(struct plan *pl) {
  struct sock_fprog prog = {
    .len = (unsigned short)(pl->sc_len / sizeof(struct sock_filter)),
    .filter = (struct sock_filter *)pl->sc,
  };
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)pl->sc_flags, &prog))
    die("cannot load the seccomp profile: %s", strerror(errno));
}

// ---- run mode: the container's mounts (a rough port of runtime/rootfs.ts setupRootfs) ----
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>

// An O_PATH fd on `path` under `root`, every symlink resolved inside it (the kernel's
// RESOLVE_IN_ROOT); missing directories made on the way when `mk` (a file last when mk == 2).
static int open_in(int root, const char *path, int mk) {
  struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int fd = syscall(SYS_openat2, root, path, &how, sizeof how);
  if (fd >= 0 || errno != ENOENT || !mk) return fd;
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  int dir = dup(root);
  for (char *s = buf, *part; (part = strsep(&s, "/"));) {
    if (!*part) continue;
    int last = s == NULL;
    struct open_how h = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int next = syscall(SYS_openat2, dir, part, &h, sizeof h);
    if (next < 0 && errno == ENOENT) {
      if (last && mk == 2) {
        int f = openat(dir, part, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f >= 0) close(f);
      } else if (mkdirat(dir, part, 0755) && errno != EEXIST) {
        close(dir);
        return -1;
      }
      next = syscall(SYS_openat2, dir, part, &h, sizeof h);
    }
    close(dir);
    if (next < 0) return -1;
    dir = next;
  }
  return dir;
}

static void mount_at(int root, const char *dst, int mk, const char *src, const char *type,
                     unsigned long flags, const char *data) {
  int fd = open_in(root, dst, mk);
  if (fd < 0) die("cannot open the mount target %s in the rootfs: %s", dst, strerror(errno));
  char t[64];
  snprintf(t, sizeof t, "/proc/self/fd/%d", fd);
  if (mount(src, t, type, flags, data && *data ? data : NULL))
    die("cannot mount %s on %s (%s): %s", src ? src : "(remount)", dst, type ? type : "", strerror(errno));
  close(fd);
}

static void setup_rootfs(struct plan *pl) {
  if (unshare((int)pl->unshare_flags)) die("unshare: %s", strerror(errno));
  if (mount(NULL, "/", NULL, pl->root_prop, NULL)) die("making / %llx: %s", (unsigned long long)pl->root_prop, strerror(errno));
  if (mount(pl->rootfs, pl->rootfs, "bind", MS_BIND | MS_REC, NULL)) die("binding the rootfs: %s", strerror(errno));
  int root = open(pl->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("cannot open the rootfs %s: %s", pl->rootfs, strerror(errno));
  const unsigned long REMOUNTABLE = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  for (int i = 0; i < pl->nmounts; i++) {
    struct mount_op *m = &pl->mounts[i];
    if (m->bind) {
      struct stat st;
      if (stat(m->src, &st)) die("bind mount source %s does not exist", m->src);
      mount_at(root, m->dst, S_ISDIR(st.st_mode) ? 1 : 2, m->src, "bind", m->flags & (MS_BIND | MS_REC), NULL);
      if (m->flags & REMOUNTABLE)
        mount_at(root, m->dst, 0, NULL, NULL, (m->flags & REMOUNTABLE) | MS_BIND | MS_REMOUNT, NULL);
    } else {
      mount_at(root, m->dst, 1, m->src, m->type, m->flags, m->data);
    }
    for (uint64_t k = 0; k < m->nprop; k++) mount_at(root, m->dst, 0, NULL, NULL, m->prop[k], NULL);
  }
  for (int i = 0; i < pl->ndevs; i++) {
    struct dev_op *v = &pl->devs[i];
    const char *slash = strrchr(v->path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - v->path), v->path);
    int dfd = open_in(root, *dir ? dir : "/", 1);
    if (dfd < 0) die("cannot open %s in the rootfs: %s", dir, strerror(errno));
    // O_PATH fds cannot take mknodat: a real directory fd of the same directory.
    char t[64];
    snprintf(t, sizeof t, "/proc/self/fd/%d", dfd);
    int real = open(t, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dfd);
    if (real < 0) die("cannot open %s: %s", dir, strerror(errno));
    mode_t kind = v->type == 'b' ? S_IFBLK : v->type == 'p' ? S_IFIFO : S_IFCHR;
    unlinkat(real, slash + 1, 0);
    if (mknodat(real, slash + 1, kind | (v->mode & 07777), makedev(v->major, v->minor)) ||
        fchownat(real, slash + 1, v->uid, v->gid, AT_SYMLINK_NOFOLLOW) ||
        fchmodat(real, slash + 1, v->mode & 07777, 0))
      die("cannot create the device %s: %s", v->path, strerror(errno));
    close(real);
  }
  if (pl->setup_dev) {
    int dfd = open_in(root, "/dev", 1);
    char t[64];
    snprintf(t, sizeof t, "/proc/self/fd/%d", dfd);
    int dev = open(t, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dfd);
    if (dev < 0) die("cannot open /dev in the rootfs: %s", strerror(errno));
    static const char *links[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
      {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}};
    for (int i = 0; i < 4; i++) symlinkat(links[i][0], dev, links[i][1]);
    unlinkat(dev, "ptmx", 0);
    symlinkat("pts/ptmx", dev, "ptmx");
    close(dev);
  }
  int cwd = open_in(root, pl->cwd, 1);
  if (cwd >= 0) close(cwd);
  if (fchdir(root)) die("chdir to the rootfs: %s", strerror(errno));
  if (syscall(SYS_pivot_root, ".", ".")) die("pivot_root: %s", strerror(errno));
  if (umount2(".", MNT_DETACH)) die("detaching the old root: %s", strerror(errno));
  if (chdir("/")) die("chdir /: %s", strerror(errno));
  close(root);
  int nroot = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; i < pl->nmasked; i++) {
    int fd = open_in(nroot, pl->masked[i], 0);
    if (fd < 0) continue; // absent: nothing to mask
    struct stat st;
    char t[64];
    snprintf(t, sizeof t, "/proc/self/fd/%d", fd);
    if (fstat(fd, &st)) die("stat %s: %s", pl->masked[i], strerror(errno));
    int r = S_ISDIR(st.st_mode) ? mount("tmpfs", t, "tmpfs", MS_RDONLY, NULL)
                                : mount("/dev/null", t, NULL, MS_BIND, NULL);
    if (r) die("cannot mask %s: %s", pl->masked[i], strerror(errno));
    close(fd);
  }
  for (int i = 0; i < pl->nro; i++) {
    int fd = open_in(nroot, pl->ro_paths[i], 0);
    if (fd < 0) continue;
    char t[64];
    snprintf(t, sizeof t, "/proc/self/fd/%d", fd);
    if (mount(t, t, NULL, MS_BIND | MS_REC, NULL)) die("cannot bind %s: %s", pl->ro_paths[i], strerror(errno));
    close(fd);
    mount_at(nroot, pl->ro_paths[i], 0, NULL, NULL,
             MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  }
  if (pl->hostname && sethostname(pl->hostname, strlen(pl->hostname))) die("sethostname: %s", strerror(errno));
  if (pl->root_ro && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL))
    die("making / read-only: %s", strerror(errno));
  close(nroot);
}

int main(int argc, char **argv) {
  // Before anything: nothing in the container's PID namespace may ptrace this process or open
  // its /proc files (exe, mem, fds, environ) once it has dropped to the program's ids and caps.
#ifndef SPIKE_KEEP_DUMPABLE // seal_check.sh only: shows what the prctl protects
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
  if (argc != 2) { fprintf(stderr, "capsule exec helper: started by capsule only\n"); return 2; }
  char *end;
  long fd = strtol(argv[1], &end, 10);
  if (*end || fd < 3 || fd > 1 << 20) { fprintf(stderr, "capsule exec helper: bad fd\n"); return 2; }
  chan = (int)fd;
  if (fcntl(chan, F_SETFD, FD_CLOEXEC)) return 2;
  struct plan pl;
  read_plan(&pl);

  // cgroups: "0" moves the writer (v1 and v2), before any namespace change.
  for (int i = 0; i < pl.ncgroup; i++) {
    int c = open(pl.cgroup[i], O_WRONLY | O_CLOEXEC);
    if (c < 0 || write(c, "0", 1) != 1) die("adding the exec to %s: %s", pl.cgroup[i], strerror(errno));
    close(c);
  }
#if SPIKE_PAUSE_AT == 1 // seal_check.sh only: still host root with every capability
  sleep(2);
#endif
  int fifo = -1;
  if (pl.run) {
    // create: exec.fifo, by its host path before pivot_root; reopened for writing at the end.
    if (pl.fifo && (fifo = open(pl.fifo, O_PATH | O_CLOEXEC)) < 0)
      die("cannot open %s: %s", pl.fifo, strerror(errno));
    setup_rootfs(&pl);
    goto finish;
  }
  // Open every namespace and the init's root first: after setns(mnt), /proc is the container's.
  char path[64];
  int nsfd[8];
  for (int i = 0; i < pl.nns; i++) {
    snprintf(path, sizeof path, "/proc/%llu/ns/%s", (unsigned long long)pl.pid, pl.ns[i]);
    if ((nsfd[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) die("cannot open %s: %s", path, strerror(errno));
  }
  snprintf(path, sizeof path, "/proc/%llu/root", (unsigned long long)pl.pid);
  int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("cannot open %s: %s", path, strerror(errno));
  if (unshare(CLONE_FS)) die("unshare(CLONE_FS): %s", strerror(errno));
  // The user namespace first (single-threaded: allowed here, unlike in Deno), as runc's nsexec.
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < pl.nns; i++) {
      int f = ns_flag(pl.ns[i]);
      if ((f == CLONE_NEWUSER) != (pass == 0)) continue;
      if (f == CLONE_NEWPID) fork_late = 1; // for the children only: see the fork below
      if (setns(nsfd[i], f)) die("cannot join namespace /proc/%llu/ns/%s: %s",
                                 (unsigned long long)pl.pid, pl.ns[i], strerror(errno));
      close(nsfd[i]);
    }
  if (fchdir(root) || chroot(".")) die("cannot enter the container's root: %s", strerror(errno));
  close(root);
  if (pl.log_fd >= 0) {
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2((int)pl.log_fd, 1) < 0 || dup2((int)pl.log_fd, 2) < 0)
      die("cannot redirect the exec's output: %s", strerror(errno));
  }
  if (pl.setsid_ && setsid() < 0) die("setsid: %s", strerror(errno));
finish:
  add_home(&pl);
  // rlimits before the privileges go (raising a hard limit needs CAP_SYS_RESOURCE); a small
  // RLIMIT_NOFILE/AS meets only this small process and the program (no Deno here).
  for (int i = 0; i < pl.nrl; i++) {
    struct rlimit64 r = {pl.rl[i][1], pl.rl[i][2]};
    if (prlimit64(0, (int)pl.rl[i][0], &r, NULL))
      die("cannot set rlimit %llu: %s", (unsigned long long)pl.rl[i][0], strerror(errno));
  }
  const char *prog = look_path(&pl);
  if (chdir(pl.cwd)) die("cannot change to the working directory %s: %s", pl.cwd, strerror(errno));
  if (pl.sc && !pl.nnp) load_seccomp(&pl); // needs CAP_SYS_ADMIN: before the privileges go
  if (pl.has_caps) {
    int last = 63;
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
    if (f) { if (fscanf(f, "%d", &last) != 1) last = 63; fclose(f); }
    for (int c = 0; c <= last && c < 64; c++)
      if (!(pl.cap_b >> c & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0))
        die("cannot drop capability %d from the bounding set: %s", c, strerror(errno));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)) die("PR_SET_KEEPCAPS: %s", strerror(errno));
  }
  gid_t gids[MAX_LIST];
  for (int i = 0; i < pl.ngids; i++) gids[i] = (gid_t)pl.gids[i];
  // Raw system calls: glibc's wrappers broadcast to all threads (none here) through signals.
  if (syscall(SYS_setgroups, pl.ngids, gids)) {
    // Denied where a user namespace was made by an unprivileged user (init.ts setgroupsDenied).
    char v[8] = "";
    FILE *f = errno == EPERM ? fopen("/proc/self/setgroups", "re") : NULL;
    if (f) { if (!fgets(v, sizeof v, f)) v[0] = 0; fclose(f); }
    if (strncmp(v, "deny", 4)) die("cannot set the groups: %s", strerror(EPERM));
  }
  if (syscall(SYS_setresgid, pl.gid, pl.gid, pl.gid)) die("cannot set gid %llu: %s", (unsigned long long)pl.gid, strerror(errno));
  if (syscall(SYS_setresuid, pl.uid, pl.uid, pl.uid)) die("cannot set uid %llu: %s", (unsigned long long)pl.uid, strerror(errno));
  if (pl.has_caps) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
      {(uint32_t)pl.cap_e, (uint32_t)pl.cap_p, (uint32_t)pl.cap_i},
      {(uint32_t)(pl.cap_e >> 32), (uint32_t)(pl.cap_p >> 32), (uint32_t)(pl.cap_i >> 32)},
    };
    if (syscall(SYS_capset, &h, d)) die("cannot set the capabilities: %s", strerror(errno));
    for (int c = 0; c < 64; c++)
      if (pl.cap_a >> c & 1) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0); // refused: as runc
  }
  if (pl.nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
  umask((mode_t)pl.umask_);
  if (fifo >= 0) {
    // The create/start barrier, as runc's init: "ready" to create (which then exits), then the
    // open for writing blocks until `start` opens the fifo for reading.
    if (write(chan, "R", 1) != 1) die("cannot report ready: %s", strerror(errno));
    char t[64];
    snprintf(t, sizeof t, "/proc/self/fd/%d", fifo);
    int w = open(t, O_WRONLY | O_CLOEXEC);
    if (w < 0 || write(w, "0", 1) != 1) { fprintf(stderr, "capsule: exec.fifo: %s\n", strerror(errno)); _exit(1); }
    chan = -1; // create is gone: later errors go to stderr (the program's)
    close(w);
    close(fifo);
  }
#if SPIKE_PAUSE_AT == 2 // seal_check.sh only: now the program's ids and capabilities
  sleep(2);
#endif
  // Signals: Deno's children start with some ignored (32/33 too, which glibc's sigaction
  // refuses to touch): the raw system call resets all; the mask is emptied.
  struct { void *h; unsigned long flags; void *restorer; uint64_t mask; } dfl = {SIG_DFL, 0, 0, 0};
  for (int s = 1; s <= 64; s++)
    if (s != SIGKILL && s != SIGSTOP) syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);
  uint64_t empty = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, 8);
  // Every fd from 3 up closes at execve (the caller's too), but the preserved ones.
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC)) die("close_range: %s", strerror(errno));
  for (int i = 0; i < pl.nkeep; i++) fcntl((int)pl.keep_fds[i], F_SETFD, 0);
  pl.env[pl.nenv] = NULL;
  pl.argv[pl.argc] = NULL;
  if (fork_late) {
    // exec: the container's PID namespace was joined for children only. Only now, with the
    // program's ids and caps, non-dumpable, does a process of ours appear in it: nothing there
    // can ptrace or open /proc/<pid>/mem of a process holding host privileges (a container
    // granted CAP_SYS_PTRACE could). This one stays outside, invisible to the container, passes
    // signals on and exits with the program's status (nsenter --pid's model).
    pid_t c = fork();
    if (c < 0) die("fork: %s", strerror(errno));
    if (c > 0) {
      child_pid = c;
      close(chan); // the CLI reads EOF once the child has exec'd (or its error)
      struct sigaction fw = {.sa_handler = forward};
      int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
      for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &fw, NULL);
      int st;
      while (waitpid(c, &st, 0) < 0)
        if (errno != EINTR) _exit(1);
      if (WIFSIGNALED(st)) {
        signal(WTERMSIG(st), SIG_DFL);
        kill(getpid(), WTERMSIG(st));
      }
      _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
    }
  }
#if SPIKE_PAUSE_AT == 3 // seal_check.sh only: the forked child, about to execve
  sleep(2);
#endif
  if (pl.sc && pl.nnp) load_seccomp(&pl); // the last step: the profile must allow execve
  execve(prog, pl.argv, pl.env);
  die("exec: \"%s\": %s", pl.argv[0], strerror(errno));
}
