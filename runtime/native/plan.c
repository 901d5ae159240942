// What both modes of capsule's native helper share (capsule.h): the channel to capsule and how a
// failure is said, the plan reader, and the steps that turn this process into the program (HOME,
// rlimits, PATH lookup, seccomp, ids and capabilities, execve). The plan's format is written by
// runtime/nsexec.ts: a u32 LE length, then records `tag (1 byte) | u32 LE length | data`,
// strings as data without a NUL (refused if they hold one), numbers as u64 LE. Some records
// ('M' a mount, 'V' a device, 'C'/'Q' a hook, 'Z' a sysctl) hold records of their own.
#include "capsule.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

#define MAX_LIST 65536
#define MAX_PLAN (64u << 20)

int chan = -1;
int err_fd = 2;
int die_status = 1;
int cap_last = 63;
int setgroups_denied;

int read_proc(const char *path, char *buf, size_t size) {
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  ssize_t n = read(f, buf, size - 1);
  close(f);
  if (n < 0) return -1;
  buf[n] = 0;
  return 0;
}

int process_is(unsigned long long pid, const char *start_time) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%llu/stat", pid);
  if (read_proc(path, buf, sizeof buf)) return 0;
  char *p = strrchr(buf, ')'); // after the command name, which may hold spaces and parentheses
  if (!p || p[1] != ' ') return 0;
  p += 2;
  char state = *p;
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  if (!p || state == 'Z' || state == 'X') return 0;
  size_t len = strcspn(p, " ");
  return len == strlen(start_time) && !strncmp(p, start_time, len);
}

void require_procfs(const char *what) {
  int p = open("/proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct statfs sf;
  int e = p < 0 ? errno : fstatfs(p, &sf) ? errno : 0;
  if (p >= 0) close(p);
  if (e) die("%s: /proc: %s; mount proc at /proc in config.json's mounts", what, why(e));
  if (sf.f_type != 0x9fa0) // PROC_SUPER_MAGIC
    die("%s: /proc is not a procfs (runc: \"/proc/self/fd is not on procfs\"): mount proc at "
        "/proc in config.json's mounts", what);
}

void proc_fd_path(char out[32], int fd, const char *what) {
  require_procfs(what);
  snprintf(out, 32, "/proc/self/fd/%d", fd);
}

// "text (ECODE)", as capsule's SysError words it (ffi/libc.ts).
const char *why(int e) {
  static char buf[160];
  const char *name = strerrorname_np(e);
  snprintf(buf, sizeof buf, "%s (%s)", strerror(e), name ? name : "E?");
  if (buf[0] >= 'A' && buf[0] <= 'Z') buf[0] += 'a' - 'A';
  return buf;
}

void frame(char type, const void *data, uint32_t len) {
  unsigned char h[5] = {(unsigned char)type, len & 255, len >> 8 & 255, len >> 16 & 255, len >> 24};
  struct iovec iov[2] = {{h, 5}, {(void *)data, len}};
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
  for (;;) { // one sendmsg: a short write on a unix stream socket happens only past its buffer
    ssize_t n = sendmsg(chan, &m, MSG_NOSIGNAL);
    if (n >= 0 || errno != EINTR) return;
  }
}

void die(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n >= (int)sizeof msg) n = sizeof msg - 1;
  if (chan >= 0) {
    frame('E', msg, (uint32_t)n);
  } else {
    dprintf(err_fd, "capsule: %s\n", msg);
  }
  _exit(die_status);
}

void frame_fd(char type, int fd, const char *what) {
  unsigned char h[5] = {(unsigned char)type, 0, 0, 0, 0};
  struct iovec iov = {h, 5};
  union { struct cmsghdr c; char b[CMSG_SPACE(sizeof(int))]; } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                     .msg_controllen = sizeof u.b};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (sendmsg(chan, &m, MSG_NOSIGNAL) != 5) die("cannot send %s: %s", what, why(errno));
}

char *read_small(int fd) {
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n <= 0) break;
    len += (size_t)n;
    if (len == cap) {
      if (cap >= (4u << 20)) break;
      char *more = realloc(buf, cap * 2 + 1);
      if (!more) break;
      buf = more;
      cap *= 2;
    }
  }
  close(fd);
  if (buf) buf[len] = 0;
  return buf;
}

int pty_slave(struct plan *pl, int master) {
  struct stat st;
  if (unlockpt(master)) die("cannot set up the terminal: unlockpt: %s", why(errno));
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) die("cannot open the terminal: ioctl(TIOCGPTPEER): %s", why(errno));
  if (fstat(slave, &st)) die("cannot set up the terminal: fstat: %s", why(errno));
  if (!S_ISCHR(st.st_mode) || major(st.st_rdev) < 136 || major(st.st_rdev) > 143)
    die("the terminal's slave is not a pseudo-terminal (major %u)", major(st.st_rdev));
  if (st.st_uid != pl->uid && fchown(slave, (uid_t)pl->uid, st.st_gid) && errno != EINVAL &&
      errno != EPERM)
    die("cannot give the terminal to uid %llu: fchown: %s", (unsigned long long)pl->uid, why(errno));
  if (pl->rows || pl->cols) {
    struct winsize ws = {.ws_row = (unsigned short)pl->rows, .ws_col = (unsigned short)pl->cols};
    if (ioctl(master, TIOCSWINSZ, &ws)) die("cannot size the terminal: ioctl: %s", why(errno));
  }
  return slave;
}

int is_ptmx(const struct stat *st) {
  return S_ISCHR(st->st_mode) && major(st->st_rdev) == 5 && minor(st->st_rdev) == 2;
}

void *list(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) die("capsule-nsexec: out of memory");
  return p;
}

uint32_t le32(const unsigned char *p) {

  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t u64(const unsigned char *p, uint32_t len) {
  if (len != 8) die("capsule-nsexec: a number field of %u bytes", len);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static char *str(const unsigned char *p, uint32_t len) {
  if (memchr(p, 0, len)) die("capsule-nsexec: a string field holds a NUL byte");
  char *s = malloc(len + 1);
  if (!s) die("capsule-nsexec: out of memory");
  memcpy(s, p, len);
  s[len] = 0;
  return s;
}

static void read_all(void *buf, size_t len, const char *what) {
  for (size_t got = 0; got < len;) {
    ssize_t n = read(chan, (char *)buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("capsule-nsexec: %s was cut short (%s)", what, n ? why(errno) : "EOF");
    got += (size_t)n;
  }
}

// Records of buf[0..total), read one at a time by next(): the current one's tag and data.
int records_next(struct records *r) {
  if (r->off >= r->total) return 0;
  if (r->total - r->off < 5) return -1;
  r->tag = r->buf[r->off];
  r->len = le32(r->buf + r->off + 1);
  r->off += 5;
  if (r->len > r->total - r->off) return -1;
  r->d = r->buf + r->off;
  r->off += r->len;
  return 1;
}

// The next record into r: 0 at the end; dies on a malformed one.
static int next(struct records *r) {
  int n = records_next(r);
  if (n < 0) die("capsule-nsexec: a record is cut short or overruns the plan");
  return n;
}

// How many records of `tag` buf[0..total) holds (lists are allocated once, at their size; each
// record is at least 5 bytes, so a count is bounded by the plan's size).
static int count(const unsigned char *buf, size_t total, unsigned char want) {
  struct records r = RECORDS(buf, total);
  int n = 0;
  while (next(&r)) n += r.tag == want;
  return n;
}

static void read_mount(struct mount_op *m, const unsigned char *buf, uint32_t total) {
  struct records r = RECORDS(buf, total);
  m->data = "";
  while (next(&r)) {
    switch (r.tag) {
    case 'd': m->destination = str(r.d, r.len); break;
    case 's': m->source = str(r.d, r.len); break;
    case 't': m->type = str(r.d, r.len); break;
    case 'D': m->data = str(r.d, r.len); break;
    case 'f': m->flags = u64(r.d, r.len); break;
    case 'r': m->recursive_flags = u64(r.d, r.len); break;
    case 'b': m->bind = u64(r.d, r.len) != 0; break;
    case 'p':
      if (m->npropagation == 8) die("capsule-nsexec: too many propagation flags on a mount");
      m->propagation[m->npropagation++] = u64(r.d, r.len);
      break;
    default: die("capsule-nsexec: unknown mount record '%c'", r.tag);
    }
  }
  if (!m->destination || m->destination[0] != '/' || !m->source || !m->type)
    die("capsule-nsexec: a mount lacks its destination, source or type");
}

static void read_device(struct device_op *v, const unsigned char *buf, uint32_t total) {
  struct records r = RECORDS(buf, total);
  while (next(&r)) {
    switch (r.tag) {
    case 'p': v->path = str(r.d, r.len); break;
    case 't':
      if (r.len != 1 || !strchr("cbup", r.d[0])) die("capsule-nsexec: a bad device type");
      v->type = (char)r.d[0];
      break;
    case 'M': v->major = u64(r.d, r.len); break;
    case 'm': v->minor = u64(r.d, r.len); break;
    case 'o': v->mode = u64(r.d, r.len); break;
    case 'u': v->uid = u64(r.d, r.len); break;
    case 'g': v->gid = u64(r.d, r.len); break;
    default: die("capsule-nsexec: unknown device record '%c'", r.tag);
    }
  }
  if (!v->path || v->path[0] != '/' || !v->type) die("capsule-nsexec: a device lacks its path or type");
}

static void read_hook(struct hook *h, const unsigned char *buf, uint32_t total) {
  h->argv = list(count(buf, total, 'a') + 1, sizeof(char *));
  h->env = list(count(buf, total, 'e') + 1, sizeof(char *));
  struct records r = RECORDS(buf, total);
  while (next(&r)) {
    switch (r.tag) {
    case 'p': h->path = str(r.d, r.len); break;
    case 'a': h->argv[h->argc++] = str(r.d, r.len); break;
    case 'e': h->env[h->nenv++] = str(r.d, r.len); break;
    case 'T': h->timeout = u64(r.d, r.len); break;
    default: die("capsule-nsexec: unknown hook record '%c'", r.tag);
    }
  }
  if (!h->path) die("capsule-nsexec: a hook lacks its path");
}

static void read_sysctl(struct sysctl_op *s, const unsigned char *buf, uint32_t total) {
  struct records r = RECORDS(buf, total);
  while (next(&r)) {
    if (r.tag == 'k') s->key = str(r.d, r.len);
    else if (r.tag == 'v') s->value = str(r.d, r.len);
    else die("capsule-nsexec: unknown sysctl record '%c'", r.tag);
  }
  if (!s->key || !s->value) die("capsule-nsexec: a sysctl lacks its key or value");
}

// Records only the init's plan has.
static int init_record(struct plan *pl, unsigned char tag, const unsigned char *d, uint32_t len) {
  struct init_plan *ip = &pl->init;
  switch (tag) {
  case 'R': ip->rootfs = str(d, len); break;
  case 'r': ip->readonly = u64(d, len); break;
  case 'y': ip->root_propagation = u64(d, len); break;
  case 'Y': ip->has_final = 1; ip->final_propagation = u64(d, len); break;
  case 'v': ip->no_pivot = u64(d, len); break;
  case 'h': ip->host_mount_ns = u64(d, len); break;
  case 'b': ip->sources_by_fd = u64(d, len); break;
  case 'z': ip->setup_dev = u64(d, len); break;
  case 'U': ip->hooks_host = u64(d, len); break;
  case 'q': ip->exec_fifo_fd = (int64_t)u64(d, len); break;
  case 'M': read_mount(&ip->mounts[ip->nmounts++], d, len); break;
  case 'V': read_device(&ip->devices[ip->ndevices++], d, len); break;
  case 'K': ip->masked[ip->nmasked++] = str(d, len); break;
  case 'k': ip->readonly_paths[ip->nreadonly++] = str(d, len); break;
  case 'Z': read_sysctl(&ip->sysctls[ip->nsysctl++], d, len); break;
  case 'H': ip->hostname = str(d, len); break;
  case 'W': ip->domainname = str(d, len); break;
  case 'J': ip->state = str(d, len); break;
  case 'C': read_hook(&ip->create_hooks[ip->ncreate++], d, len); break;
  case 'Q': read_hook(&ip->start_hooks[ip->nstart++], d, len); break;
  case '+': ip->clone = u64(d, len); break;
  case 'i': ip->cgroup2 = str(d, len); break;
  case '!': {
    const char *path = str(d, len);
    if (*path && *path != '/') die("capsule-nsexec: a PID namespace path is not absolute");
    ip->has_pid_ns = 1;
    ip->pid_ns = *path ? path : NULL;
    break;
  }
  case 'j': {
    if (ip->njoin == 8) die("capsule-nsexec: too many namespaces to join");
    char *s = str(d, len), *eq = strchr(s, '=');
    if (!eq || eq[1] != '/') die("capsule-nsexec: a namespace to join is not TYPE=/PATH");
    *eq = 0;
    ip->join_type[ip->njoin] = s;
    ip->join_path[ip->njoin++] = eq + 1;
    break;
  }
  default: return 0;
  }
  return 1;
}

void read_plan(struct plan *pl, int init) {
  unsigned char hdr[4];
  read_all(hdr, 4, "the plan's length");
  uint32_t total = le32(hdr);
  if (total > MAX_PLAN) die("capsule-nsexec: a plan of %u bytes", total);
  unsigned char *buf = list(total ? total : 1, 1);
  read_all(buf, total, "the plan");
  memset(pl, 0, sizeof *pl);
  pl->log_fd = -1;
  pl->umask_ = 022;
  pl->init.exec_fifo_fd = -1;
  // Arguments and variables are bounded by the plan's size (and then by the kernel's ARG_MAX).
  pl->argv = list(count(buf, total, 'a') + 1, sizeof(char *));
  pl->env = list(count(buf, total, 'e') + 4, sizeof(char *)); // + HOME, LISTEN_FDS, LISTEN_PID, NULL
  int ngids = count(buf, total, 'G'), nkeep = count(buf, total, 'f');
  if (ngids > MAX_LIST || nkeep > MAX_LIST) die("capsule-nsexec: too many groups or fds");
  pl->gids = list(ngids + 1, sizeof(uint64_t));
  pl->keep_fds = list(nkeep + 1, sizeof(uint64_t));
  if (init) {
    struct init_plan *ip = &pl->init;
    ip->mounts = list(count(buf, total, 'M'), sizeof(struct mount_op));
    ip->devices = list(count(buf, total, 'V'), sizeof(struct device_op));
    ip->masked = list(count(buf, total, 'K'), sizeof(char *));
    ip->readonly_paths = list(count(buf, total, 'k'), sizeof(char *));
    ip->sysctls = list(count(buf, total, 'Z'), sizeof(struct sysctl_op));
    ip->create_hooks = list(count(buf, total, 'C'), sizeof(struct hook));
    ip->start_hooks = list(count(buf, total, 'Q'), sizeof(struct hook));
  }
  struct records r = RECORDS(buf, total);
  while (next(&r)) {
    switch (r.tag) {
    case 'p': pl->pid = u64(r.d, r.len); break;
    case 'n':
      if (pl->nns == 8) die("capsule-nsexec: too many namespaces");
      pl->ns[pl->nns++] = str(r.d, r.len);
      break;
    case 'c':
      if (pl->ncgroup == 64) die("capsule-nsexec: too many cgroups");
      pl->cgroup[pl->ncgroup++] = str(r.d, r.len);
      break;
    case 'u': pl->uid = u64(r.d, r.len); break;
    case 'g': pl->gid = u64(r.d, r.len); break;
    case 'G': pl->gids[pl->ngids++] = u64(r.d, r.len); break;
    case 'm': pl->umask_ = u64(r.d, r.len); break;
    case 'N': pl->nnp = u64(r.d, r.len); break;
    case 's': pl->setsid_ = u64(r.d, r.len); break;
    case 'x': pl->detach = u64(r.d, r.len); break;
    case 'O': pl->log_fd = (int64_t)u64(r.d, r.len); break;
    case 'o': pl->has_oom = 1; pl->oom = (int64_t)u64(r.d, r.len); break;
    case 't': pl->terminal = u64(r.d, r.len); break;
    case 'w':
      if (r.len != 16) die("capsule-nsexec: a bad console size record");
      pl->rows = u64(r.d, 8);
      pl->cols = u64(r.d + 8, 8);
      break;
    case 'l':
      if (r.len != 24 || pl->nrl == 64) die("capsule-nsexec: a bad rlimit record");
      for (int i = 0; i < 3; i++) pl->rl[pl->nrl][i] = u64(r.d + 8 * i, 8);
      pl->nrl++;
      break;
    case 'B': pl->has_caps = 1; pl->cap_b = u64(r.d, r.len); break;
    case 'E': pl->cap_e = u64(r.d, r.len); break;
    case 'P': pl->cap_p = u64(r.d, r.len); break;
    case 'I': pl->cap_i = u64(r.d, r.len); break;
    case 'A': pl->cap_a = u64(r.d, r.len); break;
    case 'S':
      if (r.len == 0 || r.len % sizeof(struct sock_filter) ||
          r.len / sizeof(struct sock_filter) > 0xffff)
        die("capsule-nsexec: a seccomp program of %u bytes", r.len);
      pl->sc = r.d;
      pl->sc_len = r.len;
      break;
    case 'F': pl->sc_flags = u64(r.d, r.len); break;
    case 'd': pl->cwd = str(r.d, r.len); break;
    case 'X': pl->start_time = str(r.d, r.len); break;
    case 'a': pl->argv[pl->argc++] = str(r.d, r.len); break;
    case 'e': pl->env[pl->nenv++] = str(r.d, r.len); break;
    case 'f': pl->keep_fds[pl->nkeep++] = u64(r.d, r.len); break;
    case 'L': pl->listen_fds = u64(r.d, r.len); break;
    default:
      if (!init || !init_record(pl, r.tag, r.d, r.len))
        die("capsule-nsexec: unknown record '%c'", r.tag);
    }
  }
  if (!pl->argc || !pl->cwd || pl->cwd[0] != '/')
    die("capsule-nsexec: the plan lacks argv or an absolute cwd");
  // (uid_t)-1 would leave an id unchanged in setresuid: the program would keep ours (root).
  for (int i = -2; i < pl->ngids; i++) {
    uint64_t v = i == -2 ? pl->uid : i == -1 ? pl->gid : pl->gids[i];
    if (v > 2147483647) die("uids and gids must be in range 0-2147483647 (got %llu)", (unsigned long long)v);
  }
  if (init ? !pl->init.rootfs || pl->init.rootfs[0] != '/' || pl->init.exec_fifo_fd < 0
           : !pl->pid || !pl->start_time)
    die("capsule-nsexec: the plan lacks %s", init ? "the rootfs or exec.fifo" : "the pid or its start time");
}

// HOME from the container's /etc/passwd when env has none (or an empty one): runc's rule,
// as init.ts withHome ("/" when the uid has no entry).
void add_home(struct plan *pl, char *(*read_passwd)(void)) {
  for (int i = 0; i < pl->nenv; i++)
    if (!strncmp(pl->env[i], "HOME=", 5) && pl->env[i][5]) return;
  const char *home = "/";
  char *passwd = read_passwd();
  for (char *s = passwd, *line; s && (line = strsep(&s, "\n"));) {
    char *fld[7] = {0};
    int k = 0;
    for (char *t = line, *tok; k < 7 && (tok = strsep(&t, ":"));) fld[k++] = tok;
    if (k < 6 || !fld[2][0] || !fld[5][0]) continue;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(fld[2], &end, 10);
    if (!*end && !errno && v == pl->uid) {
      home = fld[5];
      break;
    }
  }
  char *h = malloc(strlen(home) + 6);
  if (!h) die("capsule-nsexec: out of memory");
  sprintf(h, "HOME=%s", home);
  int j = 0;
  for (int i = 0; i < pl->nenv; i++) if (strncmp(pl->env[i], "HOME=", 5)) pl->env[j++] = pl->env[i];
  pl->nenv = j;
  pl->env[pl->nenv++] = h;
}

static int executable(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

// execvp's lookup in the plan's PATH, with runc's messages (init.ts lookPath, errors.ts EXEC_*).
const char *look_path(struct plan *pl) {
  const char *name = pl->argv[0];
  if (strchr(name, '/')) {
    if (executable(name)) return name;
    struct stat st;
    die("exec: \"%s\": %s", name, stat(name, &st) ? "no such file or directory" : "permission denied");
  }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (int i = pl->nenv - 1; i >= 0; i--)
    if (!strncmp(pl->env[i], "PATH=", 5)) { path = pl->env[i] + 5; break; }
  size_t max = strlen(path) + strlen(name) + 3;
  char *cand = malloc(max);
  if (!cand) die("capsule-nsexec: out of memory");
  for (const char *p = path;;) {
    const char *c = strchr(p, ':');
    size_t dl = c ? (size_t)(c - p) : strlen(p);
    snprintf(cand, max, "%.*s/%s", (int)(dl ? dl : 1), dl ? p : ".", name);
    if (executable(cand)) return cand;
    if (!c) break;
    p = c + 1;
  }
  die("exec: \"%s\": executable file not found in $PATH", name);
  return NULL;
}

const char *rlimit_name(uint64_t r) {
  static const char *names[] = {"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK",
    "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
    "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME"};
  return r < sizeof names / sizeof names[0] ? names[r] : "an rlimit";
}

void load_seccomp(struct plan *pl) {
  struct sock_fprog prog = {
    .len = (unsigned short)(pl->sc_len / sizeof(struct sock_filter)),
    .filter = (struct sock_filter *)pl->sc,
  };
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)pl->sc_flags, &prog))
    die("cannot load the seccomp profile: seccomp: %s", why(errno));
}

// Bounding set, keepcaps, groups, gid, uid, capabilities, ambient, no_new_privs: init.ts
// finalizeProcess's order, which keeps the capabilities asked for. Raw system calls (glibc's
// set*id wrappers signal every thread; there is one).
void drop_privileges(struct plan *pl) {
  const char *what = "cannot set the process's user, groups and capabilities (process.user, "
                     "process.capabilities)";
  if (pl->has_caps) {
    for (int c = 0; c <= cap_last && c < 64; c++)
      if (!(pl->cap_b >> c & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0))
        die("%s: prctl: %s", what, why(errno));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)) die("%s: prctl: %s", what, why(errno));
  }
  gid_t *gids = list(pl->ngids + 1, sizeof(gid_t));
  for (int i = 0; i < pl->ngids; i++) gids[i] = (gid_t)pl->gids[i];
  // Denied where a user namespace was made by an unprivileged user (init.ts setgroupsDenied).
  if (!setgroups_denied && syscall(SYS_setgroups, pl->ngids, gids))
    die("%s: setgroups: %s", what, why(errno));
  if (syscall(SYS_setresgid, pl->gid, pl->gid, pl->gid)) die("%s: setresgid: %s", what, why(errno));
  if (syscall(SYS_setresuid, pl->uid, pl->uid, pl->uid)) die("%s: setresuid: %s", what, why(errno));
  if (pl->has_caps) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
      {(uint32_t)pl->cap_e, (uint32_t)pl->cap_p, (uint32_t)pl->cap_i},
      {(uint32_t)(pl->cap_e >> 32), (uint32_t)(pl->cap_p >> 32), (uint32_t)(pl->cap_i >> 32)},
    };
    if (syscall(SYS_capset, &h, d)) die("%s: capset: %s", what, why(errno));
    for (int c = 0; c < 64; c++) // a capability not permitted+inheritable is refused, as runc
      if (pl->cap_a >> c & 1) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
  }
  if (pl->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("%s: prctl: %s", what, why(errno));
}


// Hard limits above the current ones, raised while this process has CAP_SYS_RESOURCE; the soft
// ones are set right before execve (exec_program).
void raise_hard_limits(struct plan *pl) {
  for (int i = 0; i < pl->nrl; i++) {
    struct rlimit64 cur;
    if (prlimit64(0, (int)pl->rl[i][0], NULL, &cur)) die("getrlimit: %s", why(errno));
    if (pl->rl[i][2] <= cur.rlim_max) continue;
    struct rlimit64 r = {cur.rlim_cur, pl->rl[i][2]};
    if (prlimit64(0, (int)pl->rl[i][0], &r, NULL))
      die("cannot raise the hard limit of %s to %llu: setrlimit: %s", rlimit_name(pl->rl[i][0]),
          (unsigned long long)pl->rl[i][2], why(errno));
  }
}

void exec_program(struct plan *pl, const char *prog, int filter_loaded) {
  // Signals: Deno starts its children with some ignored (32/33 too, which glibc's sigaction
  // refuses to touch): the raw system call resets them all; the mask is emptied.
  struct { void *h; unsigned long flags; void *restorer; uint64_t mask; } dfl = {SIG_DFL, 0, 0, 0};
  for (int s = 1; s <= 64; s++)
    if (s != SIGKILL && s != SIGSTOP) syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);
  uint64_t empty = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, 8);
  if (pl->listen_fds) { // socket activation (sd_listen_fds(3)): this process, once exec'd
    int j = 0;
    for (int i = 0; i < pl->nenv; i++)
      if (strncmp(pl->env[i], "LISTEN_FDS=", 11) && strncmp(pl->env[i], "LISTEN_PID=", 11))
        pl->env[j++] = pl->env[i];
    pl->nenv = j;
    static char fds[40], lpid[40];
    snprintf(fds, sizeof fds, "LISTEN_FDS=%llu", (unsigned long long)pl->listen_fds);
    snprintf(lpid, sizeof lpid, "LISTEN_PID=%d", (int)getpid());
    pl->env[pl->nenv++] = fds;
    pl->env[pl->nenv++] = lpid;
  }
  pl->env[pl->nenv] = NULL;
  pl->argv[pl->argc] = NULL;
  chan = -1; // capsule has the pid: what fails now is said on the program's stderr
  for (int i = 0; i < pl->nrl; i++) {
    struct rlimit64 r = {pl->rl[i][1], pl->rl[i][2]};
    if (prlimit64(0, (int)pl->rl[i][0], &r, NULL)) {
      dprintf(2, "capsule: cannot set %s to %llu/%llu: setrlimit: %s\n", rlimit_name(pl->rl[i][0]),
              (unsigned long long)pl->rl[i][1], (unsigned long long)pl->rl[i][2], why(errno));
      _exit(127);
    }
  }
  if (pl->sc && pl->nnp && !filter_loaded) { // the last step: the profile must allow execve
    struct sock_fprog fp = {
      .len = (unsigned short)(pl->sc_len / sizeof(struct sock_filter)),
      .filter = (struct sock_filter *)pl->sc,
    };
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)pl->sc_flags, &fp)) {
      dprintf(2, "capsule: cannot load the seccomp profile: seccomp: %s\n", why(errno));
      _exit(127);
    }
  }
  execve(prog, pl->argv, pl->env);
  // A failure now is the program's (exit 127, or 126 when execve found it but cannot run it),
  // said on its stderr (the terminal, with one), as a shell does.
  int e = errno;
  dprintf(2, "capsule: exec %s: %s\n", prog, why(e));
  _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
}
