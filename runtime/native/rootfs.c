// capsule-nsexec init: the container's root filesystem (a port of the former Deno init's
// runtime/rootfs.ts setupRootfs and runtime/init.ts mountConsole, `git show b7a7756:runtime/`;
// the "rootfs.ts NAME" notes below name the function each part ports), set up by the init inside
// its new mount namespace: the mounts of config.json, device nodes, pivot_root, sysctls, masked
// and read-only paths. tests/integration/rootfs_rules_test.ts checks the rules through the CLI.
//
// Nothing is created or mounted through a path that could be swapped for a symlink meanwhile
// (a directory shared with another container): every component is created and opened fd by
// fd from an fd on the root (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, O_PATH|O_NOFOLLOW),
// never following a symlink, and mount(2) is given a freshly opened fd on the target
// (/proc/self/fd/N), the fix runc made in 1.1.14. Only the host's own paths (bind sources, the
// rootfs itself, "/") are given to the kernel by name.
//
// Errors: die() with rootfs.ts's messages; a failed system call is "SYSCALL WHAT: " + why(errno),
// WHAT the container path where there is one. Single-threaded; every path fits PATH_MAX (longer
// ones are refused, ENAMETOOLONG); the only allocations are the mount table's (list()).
#define _GNU_SOURCE
#include <stddef.h> // capsule.h uses size_t without including it
#include "capsule.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif

#define MAX_SYMLINKS 255
// secureJoin's queue of components still to resolve: the path plus the targets of the links met.
#define QUEUE_MAX (4 * PATH_MAX)
// /proc/self/mountinfo read whole: a table larger than this is refused.
#define MOUNTINFO_MAX (64u << 20)

// One component, below the directory fd it is opened from, never a symlink followed.
#define STEP (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
// Flags that a remount of a bind applies (all but the bind's own), rootfs.ts REMOUNTABLE.
#define REMOUNTABLE (~(uint64_t)(MS_BIND | MS_REC | MS_REMOUNT) & 0xffffffffu)

enum kind { K_NONE, K_FILE, K_DIR, K_SYMLINK, K_OTHER };
enum make { MAKE_NONE, MAKE_DIR, MAKE_FILE };

static enum kind kind_of(mode_t m) {
  return S_ISDIR(m) ? K_DIR : S_ISREG(m) ? K_FILE : S_ISLNK(m) ? K_SYMLINK : K_OTHER;
}

// openat2(2). EAGAIN (a rename raced a ".." under RESOLVE_IN_ROOT/BENEATH: the kernel could not
// prove it stayed inside) is retried a few times, as openat2(2) suggests, then reported.
static long openat2_(int dir, const char *path, uint64_t flags, uint64_t resolve, uint64_t mode) {
  struct open_how how = {.flags = flags, .mode = mode, .resolve = resolve};
  long r;
  int tries = 0;
  do r = syscall(SYS_openat2, dir, path, &how, sizeof how);
  while (r < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < 16)));
  return r;
}

// snprintf that dies when the result does not fit (a path longer than PATH_MAX, say).
__attribute__((format(printf, 3, 4))) static void fmt(char *out, size_t size, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int n = vsnprintf(out, size, f, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= size) die("%.200s...: path too long (ENAMETOOLONG)", out);
}

// The path mount(2) is given for what `fd` holds (a real procfs at /proc checked first: after
// pivot_root it is the container's).
static void fd_path(char out[32], int fd) { proc_fd_path(out, fd, "cannot set up the rootfs"); }

// ---- system calls as rootfs.ts's RootfsOps (init.ts realRootfsOps) ----

// lstat (or stat with `follow`): the kind, K_NONE when it does not exist; dies otherwise.
static enum kind path_kind(const char *path, int follow) {
  struct stat st;
  if (fstatat(AT_FDCWD, path, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == 0) return kind_of(st.st_mode);
  if (errno == ENOENT) return K_NONE;
  die("statx %s: %s", path, why(errno));
}

// An O_PATH fd on a trusted absolute directory (the rootfs on the host, "/").
static int open_dir(const char *path) {
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) die("open %s: %s", path, why(errno));
  return fd;
}

// An O_PATH fd on the entry `name` (one component) of `dir` itself: a symlink is opened, not
// followed, nothing outside `dir` is reached. -1 when it does not exist.
static int open_at(int dir, const char *name) {
  long fd = openat2_(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, STEP, 0);
  if (fd >= 0) return (int)fd;
  if (errno == ENOENT) return -1;
  die("openat2 %s: %s", name, why(errno));
}

// An O_PATH fd on `path` resolved inside `root` as if it were "/": every symlink, the last one
// too, is followed without leaving the root (no magic links). -1 when it does not exist.
static int open_in_root(int root, const char *path) {
  long fd = openat2_(root, path, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, 0);
  if (fd >= 0) return (int)fd;
  if (errno == ENOENT) return -1;
  die("openat2 %s: %s", path, why(errno));
}

// A new empty file; 0, or the errno (EEXIST among them) for the caller to judge.
static int create_at(int dir, const char *name, mode_t mode) {
  long fd = openat2_(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, STEP, mode);
  if (fd < 0) return errno;
  close((int)fd);
  return 0;
}

static struct stat fd_stat(int fd, const char *shown) {
  struct stat st;
  if (fstat(fd, &st)) die("fstat %s: %s", shown, why(errno));
  return st;
}

static void unlink_at(int dir, const char *name, int is_dir) {
  if (unlinkat(dir, name, is_dir ? AT_REMOVEDIR : 0)) die("unlinkat %s: %s", name, why(errno));
}

static void symlink_at(const char *target, int dir, const char *name) {
  if (symlinkat(target, dir, name)) die("symlinkat %s: %s", name, why(errno));
}

// mount(2); 0 or the errno. `data` "" is none.
static int mnt(const char *src, const char *target, const char *type, uint64_t flags,
               const char *data) {
  return mount(src, target, type, (unsigned long)flags, data && *data ? data : NULL) ? errno : 0;
}

// mount(2) that dies with "mount SHOWN: ...".
static void mnt_or_die(const char *src, const char *target, const char *type, uint64_t flags,
                       const char *data, const char *shown) {
  int e = mnt(src, target, type, flags, data);
  if (e) die("mount %s: %s", shown, why(e));
}

// ---- paths ----

// The components of a path: pointers into `buf`.
struct parts {
  char buf[PATH_MAX];
  char *p[PATH_MAX / 2];
  int n;
};

// Splits `s` into `out` ("", "." and ".." are kept as they are: the caller judges them).
static void split(struct parts *out, const char *s) {
  fmt(out->buf, sizeof out->buf, "%s", s);
  out->n = 0;
  for (char *c = out->buf; *c;) {
    while (*c == '/') *c++ = 0;
    if (!*c) break;
    out->p[out->n++] = c;
    while (*c && *c != '/') c++;
  }
}

// `root` without trailing slashes, into `base`.
static void strip_slashes(char *base, size_t size, const char *root) {
  fmt(base, size, "%s", root);
  size_t n = strlen(base);
  while (n && base[n - 1] == '/') base[--n] = 0;
}

// Resolves `unsafe` (a path as the container sees it) under `root` on the host into `out`,
// following symlinks as if `root` were "/": an absolute link or a `..` never leaves `root`.
// The part that does not exist yet is appended lexically (the caller creates it, inside
// `root`). rootfs.ts secureJoin.
static void secure_join(const char *root, const char *unsafe, char out[PATH_MAX]) {
  static char queue[QUEUE_MAX], next[QUEUE_MAX]; // single-threaded, never re-entered
  char base[PATH_MAX], target[PATH_MAX];
  strip_slashes(base, sizeof base, root);
  size_t blen = strlen(base), len = blen; // out = base + "/part"...; len: its length
  fmt(out, PATH_MAX, "%s", base);
  fmt(queue, sizeof queue, "%s", unsafe);
  char *q = queue; // what is left to resolve
  int links = 0, missing = 0;
  for (;;) {
    while (*q == '/') q++;
    if (!*q) break;
    char *part = q;
    while (*q && *q != '/') q++;
    size_t plen = (size_t)(q - part);
    if (plen == 1 && part[0] == '.') continue;
    if (plen == 2 && part[0] == '.' && part[1] == '.') {
      while (len > blen && out[len - 1] != '/') len--;
      if (len > blen) len--; // the slash before the popped part
      out[len] = 0;
      continue;
    }
    if (len + 1 + plen >= PATH_MAX) die("%s: path too long (ENAMETOOLONG)", unsafe);
    size_t before = len;
    out[len++] = '/';
    memcpy(out + len, part, plen);
    len += plen;
    out[len] = 0;
    if (missing) continue;
    enum kind k = path_kind(out, 0);
    if (k == K_NONE) {
      missing = 1;
      continue;
    }
    if (k != K_SYMLINK) continue;
    if (++links > MAX_SYMLINKS) die("%s: too many levels of symbolic links", unsafe);
    ssize_t tl = readlink(out, target, sizeof target);
    if (tl < 0) die("readlink %s: %s", out, why(errno));
    if ((size_t)tl >= sizeof target) die("readlink %s: link too long (ENAMETOOLONG)", out);
    target[tl] = 0;
    out[len = before] = 0; // the link itself is not part of the result
    if (target[0] == '/') out[len = blen] = 0;
    // The link's target goes in front of what is left.
    size_t rest = strlen(q);
    if ((size_t)tl + 1 + rest >= sizeof next) die("%s: path too long (ENAMETOOLONG)", unsafe);
    memcpy(next, target, (size_t)tl);
    next[tl] = '/';
    memcpy(next + tl + 1, q, rest + 1);
    memcpy(queue, next, (size_t)tl + 1 + rest + 1);
    q = queue;
  }
  if (len == blen) out[blen] = 0;
}

// The components of `path` (a secure_join result) below `root`. rootfs.ts partsBelow.
static void parts_below(struct parts *out, const char *root, const char *path) {
  char base[PATH_MAX];
  strip_slashes(base, sizeof base, root);
  size_t n = strlen(base);
  if (strncmp(path, base, n) || (path[n] && path[n] != '/')) die("%s is outside %s", path, base);
  split(out, path + n);
}

// Opens `parts` below `root_fd` one component at a time, each with openat2 relative to the fd
// of its parent and never following a symlink: a component that is (or was swapped for) a
// symlink or a file is refused, so nothing outside the rootfs is ever reached. Missing
// directories are made with mkdirat on the way; the last component is made as `make` says (a
// directory or an empty file, with `mode`). Returns an O_PATH fd (the caller closes it); with
// `soft` and MAKE_NONE, -1 when a component is missing. rootfs.ts walk.
static int walk(int root_fd, struct parts *parts, const char *shown, enum make make, mode_t mode,
                int soft) {
  int cur = open_at(root_fd, ".");
  if (cur < 0) die("%s: the root vanished", shown);
  for (int i = 0; i < parts->n; i++) {
    const char *name = parts->p[i];
    int last = i == parts->n - 1;
    enum make want = last ? make : MAKE_DIR;
    mode_t want_mode = last ? mode : 0755;
    int fd = open_at(cur, name);
    if (fd < 0) {
      if (want == MAKE_NONE) {
        close(cur);
        if (soft) return -1;
        die("%s: no such file or directory", shown);
      }
      int e = want == MAKE_DIR ? (mkdirat(cur, name, want_mode) ? errno : 0)
                               : create_at(cur, name, want_mode);
      // EEXIST: made meanwhile, opened (and checked) below.
      if (e && e != EEXIST) die("%s %s: %s", want == MAKE_DIR ? "mkdirat" : "openat2", name, why(e));
      fd = open_at(cur, name);
      if (fd < 0) die("%s: %s vanished while being made", shown, name);
    }
    enum kind k = kind_of(fd_stat(fd, shown).st_mode);
    int ok = k == K_DIR || (last && want != MAKE_DIR && k != K_SYMLINK);
    if (!ok) {
      die("%s: %s %s", shown, name,
          k == K_SYMLINK ? "is a symlink (it was swapped after it was resolved: refused)"
                         : "is not a directory");
    }
    close(cur);
    cur = fd;
  }
  return cur;
}

// mkdir -p of `path` (a secure_join result under `root`), fd by fd. rootfs.ts mkdirAll.
static void mkdir_all(const char *root, const char *path, mode_t mode) {
  struct parts parts;
  int root_fd = open_dir(root);
  parts_below(&parts, root, path);
  close(walk(root_fd, &parts, path, MAKE_DIR, mode, 0));
  close(root_fd);
}

// mount(2) on `parts` below `root_fd`, opened afresh for this call: after a mount on the
// target, a new open lands on the new mount (an old fd would still hold the directory below
// it), so each remount or propagation change reaches the right mount. 0 or mount's errno.
// rootfs.ts atTarget.
static int at_target(int root_fd, struct parts *parts, const char *shown, const char *src,
                     const char *type, uint64_t flags, const char *data, enum make make,
                     mode_t mode) {
  char t[32];
  int fd = walk(root_fd, parts, shown, make, mode, 0);
  fd_path(t, fd);
  int e = mnt(src, t, type, flags, data);
  close(fd);
  return e;
}

// The mode= a tmpfs takes from an existing directory (runc keeps a target's mode), as "0755"
// into `out`; "" when there is no directory. rootfs.ts modeOf.
static void mode_of(int root_fd, struct parts *parts, char out[16]) {
  char shown[PATH_MAX] = "";
  for (int i = 0; i < parts->n; i++) {
    fmt(shown + strlen(shown), sizeof shown - strlen(shown), "%s%s", i ? "/" : "", parts->p[i]);
  }
  out[0] = 0;
  int fd = walk(root_fd, parts, shown, MAKE_NONE, 0, 1);
  if (fd < 0) return;
  struct stat st = fd_stat(fd, shown);
  if (S_ISDIR(st.st_mode)) snprintf(out, 16, "%04o", (unsigned)(st.st_mode & 07777));
  close(fd);
}

// ---- the mount table ----

// Mount points of /proc/self/mountinfo, in its order, unescaped (\040 and the like).
struct table {
  char *text; // the file, cut into the mount points
  char **mp;
  int n;
};

// "\040" and the other octal escapes of mountinfo back to characters, in place.
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
        r[3] <= '7') {
      *w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = 0;
}

// This process's mount table (its mount namespace, seen from its root); malformed lines
// (fewer than 10 fields, no "-" from the 7th on) are skipped. runtime/mountinfo.ts.
static struct table read_table(void) {
  const char *path = "/proc/self/mountinfo";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open %s: %s", path, why(errno));
  size_t cap = 65536, len = 0;
  char *text = list(cap, 1);
  for (;;) {
    if (len + 1 >= cap) {
      if (cap >= MOUNTINFO_MAX) die("%s is larger than %u bytes", path, MOUNTINFO_MAX);
      char *bigger = list(cap * 2, 1);
      memcpy(bigger, text, len);
      free(text);
      text = bigger;
      cap *= 2;
    }
    ssize_t n = read(fd, text + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read %s: %s", path, why(errno));
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  text[len] = 0;
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  struct table t = {.text = text, .mp = list(lines, sizeof(char *)), .n = 0};
  for (char *line = text; line && *line;) {
    char *end = strchr(line, '\n');
    if (end) *end++ = 0;
    char *mp = NULL;
    int nf = 0, sep = -1;
    for (char *f = line; f;) {
      char *sp = strchr(f, ' ');
      if (sp) *sp++ = 0;
      if (nf == 4) mp = f;
      if (sep < 0 && nf >= 6 && strcmp(f, "-") == 0) sep = nf;
      nf++;
      f = sp;
    }
    if (nf >= 10 && sep >= 0 && mp) {
      unescape(mp);
      t.mp[t.n++] = mp;
    }
    line = end;
  }
  return t;
}

static void free_table(struct table *t) {
  free(t->mp);
  free(t->text);
}

// Is `path` the directory `dir` or below it? Both absolute, without trailing slashes.
static int is_under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  return strcmp(dir, "/") == 0 || (strncmp(path, dir, n) == 0 && (!path[n] || path[n] == '/'));
}

struct picked {
  const char *mp;
  int depth, index;
};

// Deepest first, a later line (a stacked mount, on top) before an earlier one.
static int deeper_first(const void *a, const void *b) {
  const struct picked *x = a, *y = b;
  if (x->depth != y->depth) return y->depth - x->depth;
  return y->index - x->index;
}

// ---- the steps of setupRootfs ----

// Where a proc or sysfs goes, into `out`: the destination taken literally under `root`, every
// existing component of it a real directory. A symlink there (/proc -> /tmp/x, say) is refused
// rather than followed, as runc does. rootfs.ts ordinaryDir.
static void ordinary_dir(const char *root, const struct mount_op *m, char out[PATH_MAX]) {
  struct parts raw;
  split(&raw, m->destination);
  const char *parts[PATH_MAX / 2];
  int n = 0;
  for (int i = 0; i < raw.n; i++) {
    if (strcmp(raw.p[i], ".") == 0) continue;
    if (strcmp(raw.p[i], "..") == 0) {
      if (n) n--;
    } else {
      parts[n++] = raw.p[i];
    }
  }
  size_t rlen = strlen(root);
  fmt(out, PATH_MAX, "%s", root);
  int i = 0;
  for (; i < n; i++) {
    fmt(out + strlen(out), PATH_MAX - strlen(out), "/%s", parts[i]);
    enum kind k = path_kind(out, 0);
    if (k == K_NONE) break; // the rest is made, fd by fd, by the mount itself
    if (k != K_DIR) {
      die("cannot mount %s at %s: %s in the rootfs is %s (filesystem \"%s\" must be mounted on "
          "ordinary directory)",
          m->type, m->destination, out + rlen, k == K_SYMLINK ? "a symlink" : "not a directory",
          m->type);
    }
  }
  for (i++; i < n; i++) fmt(out + strlen(out), PATH_MAX - strlen(out), "/%s", parts[i]);
}

// Has `data` a mode= option?
static int has_mode(const char *data) {
  for (const char *p = data; (p = strstr(p, "mode=")); p++) {
    if (p == data || p[-1] == ',') return 1;
  }
  return 0;
}

// rro, rnosuid...: every submount that a recursive bind on `target` (a host path below `root`)
// brought along gets the flags too. Each is reopened fd by fd below the root (never through a
// symlink) for its remount.
static void remount_submounts(int root_fd, const char *root, const char *target, uint64_t flags) {
  struct table t = read_table();
  size_t n = strlen(target);
  for (int i = 0; i < t.n; i++) {
    const char *sub = t.mp[i];
    if (strncmp(sub, target, n) || sub[n] != '/') continue;
    struct parts parts;
    parts_below(&parts, root, sub);
    int e = at_target(root_fd, &parts, sub, NULL, NULL, flags | MS_BIND | MS_REMOUNT, NULL,
                      MAKE_NONE, 0);
    if (e) die("mount %s: %s", sub + strlen(root), why(e));
  }
  free_table(&t);
}

// Mounts one entry of config.json under `root` (no trailing slash). The target is resolved
// inside the rootfs (secure_join), created fd by fd if missing, and every mount(2) is given its
// fd's path, so a path swapped for a symlink after the check is never followed (runc
// CVE-2021-30465, 1.1.14). A tmpfs over an existing directory keeps that directory's mode
// unless `mode=` is given. `flags`: the mount's (MS_RDONLY taken off for remountedLater).
// rootfs.ts mountOne.
static void mount_one(const char *root, const struct mount_op *m, uint64_t flags) {
  char target[PATH_MAX];
  if (m->bind || (strcmp(m->type, "proc") && strcmp(m->type, "sysfs")))
    secure_join(root, m->destination, target);
  else
    ordinary_dir(root, m, target);
  struct parts parts;
  parts_below(&parts, root, target);
  const char *dest = m->destination;
  int root_fd = open_dir(root), e;
  if (m->bind) {
    enum kind src = path_kind(m->source, 1);
    if (src == K_NONE) die("bind mount source %s does not exist", m->source);
    e = at_target(root_fd, &parts, target, m->source, "bind", flags & (MS_BIND | MS_REC), NULL,
                  src == K_DIR ? MAKE_DIR : MAKE_FILE, src == K_DIR ? 0755 : 0644);
    if (e) die("mount %s: %s", dest, why(e));
    // Flags such as ro/nosuid only take effect on a bind through a remount.
    if (flags & REMOUNTABLE) {
      e = at_target(root_fd, &parts, target, NULL, NULL,
                    (flags & REMOUNTABLE) | MS_BIND | MS_REMOUNT, NULL, MAKE_NONE, 0);
      if (e) die("mount %s: %s", dest, why(e));
    }
    if (m->recursive_flags && (flags & MS_REC))
      remount_submounts(root_fd, root, target, m->recursive_flags);
  } else {
    char data[PATH_MAX], mode[16];
    fmt(data, sizeof data, "%s", m->data);
    if (strcmp(m->type, "tmpfs") == 0 && !has_mode(m->data)) {
      mode_of(root_fd, &parts, mode);
      if (*mode) {
        if (*m->data) fmt(data, sizeof data, "mode=%s,%s", mode, m->data);
        else fmt(data, sizeof data, "mode=%s", mode);
      }
    }
    e = at_target(root_fd, &parts, target, m->source, m->type, flags, data, MAKE_DIR, 0755);
    if (e) {
      // sysfs cannot be mounted from a network namespace we do not own: bind the host's.
      if (strcmp(m->type, "sysfs") || e != EPERM) die("mount %s: %s", dest, why(e));
      e = at_target(root_fd, &parts, target, "/sys", "bind", MS_BIND | MS_REC, NULL, MAKE_NONE, 0);
      if (e) die("mount %s: %s", dest, why(e));
      e = at_target(root_fd, &parts, target, NULL, NULL,
                    (flags & REMOUNTABLE) | MS_BIND | MS_REMOUNT, NULL, MAKE_NONE, 0);
      if (e) die("mount %s: %s", dest, why(e));
    }
  }
  for (int i = 0; i < m->npropagation; i++) {
    e = at_target(root_fd, &parts, target, NULL, NULL, m->propagation[i], NULL, MAKE_NONE, 0);
    if (e) die("mount %s: %s", dest, why(e));
  }
  close(root_fd);
}

// The directory of `path` (a host path) into `out`; rootfs.ts parentDir.
static void parent_dir(const char *path, char out[PATH_MAX]) {
  const char *s = strrchr(path, '/');
  if (!s || s == path) {
    fmt(out, PATH_MAX, "/");
    return;
  }
  fmt(out, PATH_MAX, "%.*s", (int)(s - path), path);
}

// Opens the directory `path` (container path) under `root`, made if missing; the caller closes.
static int open_dir_in(const char *root, int root_fd, const char *path) {
  char dir[PATH_MAX];
  struct parts parts;
  secure_join(root, path, dir);
  parts_below(&parts, root, dir);
  return walk(root_fd, &parts, dir, MAKE_DIR, 0755, 0);
}

// Device nodes, falling back to a bind of the host's where mknod is refused (EPERM: a user
// namespace). rootfs.ts createDevices.
static void create_devices(const char *root, const struct device_op *devices, int n) {
  int root_fd = open_dir(root);
  mode_t old = umask(0);
  for (int i = 0; i < n; i++) {
    const struct device_op *d = &devices[i];
    char target[PATH_MAX], dir[PATH_MAX];
    secure_join(root, d->path, target);
    parent_dir(target, dir);
    struct parts parts;
    parts_below(&parts, root, dir);
    int dir_fd = walk(root_fd, &parts, dir, MAKE_DIR, 0755, 0);
    const char *name = strrchr(target, '/') + 1;
    int existing = open_at(dir_fd, name);
    if (existing >= 0) {
      enum kind k = kind_of(fd_stat(existing, target).st_mode);
      close(existing);
      unlink_at(dir_fd, name, k == K_DIR);
    }
    mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
    int e = 0;
    const char *call = "mknodat";
    if (mknodat(dir_fd, name, type | (mode_t)(d->mode & 07777),
                makedev((unsigned)d->major, (unsigned)d->minor)))
      e = errno;
    else if (fchownat(dir_fd, name, (uid_t)d->uid, (gid_t)d->gid, AT_SYMLINK_NOFOLLOW))
      e = errno, call = "fchownat";
    if (e) {
      if (e != EPERM || d->type == 'p') die("%s %s: %s", call, d->path, why(e));
      e = create_at(dir_fd, name, 0644);
      if (e) die("openat2 %s: %s", d->path, why(e));
      struct parts one = {.n = 1};
      fmt(one.buf, sizeof one.buf, "%s", name);
      one.p[0] = one.buf;
      int fd = walk(dir_fd, &one, target, MAKE_NONE, 0, 0);
      char t[32];
      fd_path(t, fd);
      mnt_or_die(d->path, t, "bind", MS_BIND, NULL, d->path);
      close(fd);
    }
    close(dir_fd);
  }
  umask(old);
  close(root_fd);
}

// /dev/fd, stdin, stdout, stderr and ptmx links, and /dev/pts and /dev/shm, made in /dev's fd.
// rootfs.ts setupDevLinks.
static void setup_dev_links(const char *root) {
  static const char *const links[][2] = {
      {"/proc/self/fd", "fd"},
      {"/proc/self/fd/0", "stdin"},
      {"/proc/self/fd/1", "stdout"},
      {"/proc/self/fd/2", "stderr"},
  };
  int root_fd = open_dir(root);
  int dev = open_dir_in(root, root_fd, "/dev");
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    int fd = open_at(dev, links[i][1]);
    if (fd < 0) symlink_at(links[i][0], dev, links[i][1]);
    else close(fd);
  }
  // /dev/ptmx points at the container's own devpts instance.
  int ptmx = open_at(dev, "ptmx");
  if (ptmx >= 0) {
    enum kind k = kind_of(fd_stat(ptmx, "/dev/ptmx").st_mode);
    close(ptmx);
    unlink_at(dev, "ptmx", k == K_DIR);
  }
  symlink_at("pts/ptmx", dev, "ptmx");
  close(dev);
  close(open_dir_in(root, root_fd, "/dev/pts"));
  close(open_dir_in(root, root_fd, "/dev/shm"));
  close(root_fd);
}

// An O_PATH fd on `path` resolved inside `root` (its fd path in `t`, its stat in `st`); -1 when
// it does not exist. rootfs.ts withPathIn, the caller running `fn` and closing the fd.
static int path_in(const char *root, const char *path, char t[32], struct stat *st) {
  int root_fd = open_dir(root);
  int fd = open_in_root(root_fd, path);
  close(root_fd);
  if (fd < 0) return -1;
  fd_path(t, fd);
  *st = fd_stat(fd, path);
  return fd;
}

// Hides a path from the container: an empty read-only tmpfs over a directory, the container's
// /dev/null (checked to be the null device, 1:3, not a planted file) over anything else.
// rootfs.ts maskPath, after pivot_root ("/" is the container's).
static void mask_path(const char *path) {
  char t[32], nul[32];
  struct stat st, n;
  int fd = path_in("/", path, t, &st);
  if (fd < 0) return;
  if (S_ISDIR(st.st_mode)) {
    mnt_or_die("tmpfs", t, "tmpfs", MS_RDONLY, NULL, path);
  } else {
    int nfd = path_in("/", "/dev/null", nul, &n);
    if (nfd < 0) die("cannot mask %s: there is no /dev/null", path);
    if (!S_ISCHR(n.st_mode) || major(n.st_rdev) != 1 || minor(n.st_rdev) != 3)
      die("cannot mask %s: /dev/null is not the null device (1:3)", path);
    mnt_or_die(nul, t, "bind", MS_BIND, NULL, path);
    close(nfd);
  }
  close(fd);
}

// Binds `path` onto itself, then remounts that bind read-only (each through a fresh fd).
// rootfs.ts readonlyPath.
static void readonly_path(const char *path) {
  char t[32];
  struct stat st;
  int fd = path_in("/", path, t, &st);
  if (fd < 0) return;
  mnt_or_die(t, t, "bind", MS_BIND | MS_REC, NULL, path);
  close(fd);
  fd = path_in("/", path, t, &st);
  if (fd < 0) return;
  mnt_or_die(NULL, t, NULL,
             MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
             path);
  close(fd);
}

// Mounts that capsule fills after mounting them (a tmpfs: cgroup binds, /dev's nodes and links,
// /dev/pts, the console) are mounted writable and made read-only only once everything is in
// (runc's finalizeRootfs): a `ro` tmpfs or /dev is remounted at the end. rootfs.ts remountedLater.
static int remounted_later(const struct mount_op *m) {
  if (m->bind || !(m->flags & MS_RDONLY)) return 0;
  if (strcmp(m->type, "tmpfs") == 0) return 1;
  char dest[PATH_MAX];
  strip_slashes(dest, sizeof dest, m->destination);
  return strcmp(dest, "/dev") == 0;
}

// --no-pivot: before the rootfs is moved onto "/", every mount of the namespace outside it (the
// host's /proc, /sys, ...) is detached, deepest first, a stacked one before the one below it;
// the mounts on the way to the rootfs hold it up and stay, covered by it. A mount that cannot
// be detached (locked in a user namespace) is covered with an empty tmpfs, as runc does.
// rootfs.ts detachOutside with mountinfo.ts mountsToDetach.
static void detach_outside(const char *root) {
  struct table t = read_table();
  struct picked *p = list((size_t)t.n + 1, sizeof *p);
  int n = 0;
  for (int i = 0; i < t.n; i++) {
    const char *mp = t.mp[i];
    if (is_under(mp, root) || is_under(root, mp)) continue;
    int depth = 1;
    for (const char *c = mp; *c; c++) depth += *c == '/';
    p[n++] = (struct picked){mp, depth, i};
  }
  qsort(p, (size_t)n, sizeof *p, deeper_first);
  for (int i = 0; i < n; i++) {
    if (umount2(p[i].mp, MNT_DETACH) == 0) continue;
    int e = errno;
    if (e == ENOENT) continue; // a parent went first
    if (e != EINVAL && e != EPERM) die("umount2 %s: %s", p[i].mp, why(e));
    e = mnt("tmpfs", p[i].mp, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
    if (e && e != ENOENT) die("mount %s: %s", p[i].mp, why(e));
  }
  free(p);
  free_table(&t);
}

// One sysctl: `key` below /proc/sys ("net/ipv4/ip_forward"), never through a link.
static void set_sysctl(const char *key, const char *value) {
  char path[PATH_MAX], name[PATH_MAX];
  fmt(path, sizeof path, "/proc/sys/%s", key);
  fmt(name, sizeof name, "%s", key);
  for (char *c = name; *c; c++) *c = *c == '/' ? '.' : *c == '.' ? '/' : *c;
  char what[PATH_MAX + 64];
  snprintf(what, sizeof what, "cannot set sysctl %s", name);
  require_procfs(what);
  long fd = openat2_(AT_FDCWD, path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, 0);
  if (fd < 0) die("cannot set sysctl %s=%s: openat2 %s: %s", name, value, path, why(errno));
  for (size_t off = 0, len = strlen(value); off < len;) {
    ssize_t w = write((int)fd, value + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) die("cannot set sysctl %s=%s: write %s: %s", name, value, path, why(errno));
    off += (size_t)w;
  }
  close((int)fd);
}

void setup_rootfs(const struct init_plan *ip, const char *cwd, void (*before_pivot)(void *),
                  void (*in_container)(void *), void *arg) {
  char root[PATH_MAX], path[PATH_MAX];
  // The rootfs as the mount table shows it: a symlink in its path (root.path "rootfs" a link
  // to another filesystem, say) would hide its submounts from the recursive flags (rro) and
  // make --no-pivot detach the very mount that holds it. (rootfs.ts takes the path as given.)
  if (!realpath(ip->rootfs, root)) die("realpath %s: %s", ip->rootfs, why(errno));
  if (ip->host_mount_ns) {
    if (ip->nmasked || ip->nreadonly || ip->has_final)
      die("masked or read-only paths need a mount namespace of the container's own");
  } else {
    mnt_or_die(NULL, "/", NULL, ip->root_propagation, NULL, "/");
    // The rootfs must be a mount point for pivot_root.
    mnt_or_die(root, root, "bind", MS_BIND | MS_REC, NULL, root);
  }
  for (int i = 0; i < ip->nmounts; i++) {
    const struct mount_op *m = &ip->mounts[i];
    mount_one(root, m, remounted_later(m) ? m->flags & ~(uint64_t)MS_RDONLY : m->flags);
    // In the caller's mount namespace a bind of a shared host mount joins its peer group: what
    // is mounted below it later would appear on the host too. Private, unless asked otherwise.
    if (ip->host_mount_ns && m->bind && m->npropagation == 0) {
      char t[32];
      struct stat st;
      int fd = path_in(root, m->destination, t, &st);
      if (fd >= 0) {
        mnt_or_die(NULL, t, NULL, MS_REC | MS_PRIVATE, NULL, m->destination);
        close(fd);
      }
    }
  }
  if (ip->setup_dev) {
    create_devices(root, ip->devices, ip->ndevices);
    setup_dev_links(root);
  } else if (ip->ndevices) {
    create_devices(root, ip->devices, ip->ndevices);
  }
  // The working directory is created now: later the root may be read-only.
  secure_join(root, cwd, path);
  mkdir_all(root, path, 0755);
  // The hooks before pivot_root (createContainer: in the container's mount namespace), in the
  // rootfs as cwd, as runc runs them.
  if (chdir(root)) die("chdir %s: %s", root, why(errno));
  if (before_pivot) before_pivot(arg);
  if (ip->host_mount_ns) {
    if (chroot(".")) die("chroot %s: %s", root, why(errno));
  } else if (ip->no_pivot) {
    detach_outside(root);
    mnt_or_die(root, "/", NULL, MS_MOVE, NULL, "/");
    if (chroot(".")) die("chroot %s: %s", root, why(errno));
  } else {
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours.
    if (syscall(SYS_pivot_root, ".", ".")) die("pivot_root %s: %s", root, why(errno));
    if (umount2(".", MNT_DETACH)) die("umount2 .: %s", why(errno));
  }
  if (chdir("/")) die("chdir /: %s", why(errno));
  for (int i = 0; i < ip->nsysctl; i++) set_sysctl(ip->sysctls[i].key, ip->sysctls[i].value);
  if (in_container) in_container(arg);
  for (int i = 0; i < ip->nmasked; i++) mask_path(ip->masked[i]);
  for (int i = 0; i < ip->nreadonly; i++) readonly_path(ip->readonly_paths[i]);
  for (int i = 0; i < ip->nmounts; i++) {
    const struct mount_op *m = &ip->mounts[i];
    if (!remounted_later(m)) continue;
    char t[32];
    struct stat st;
    int fd = path_in("/", m->destination, t, &st);
    if (fd < 0) continue;
    mnt_or_die(NULL, t, NULL, (m->flags & REMOUNTABLE) | MS_BIND | MS_REMOUNT | MS_RDONLY, NULL,
               m->destination);
    close(fd);
  }
  if (ip->readonly) mnt_or_die(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL, "/");
  if (ip->has_final) mnt_or_die(NULL, "/", NULL, ip->final_propagation, NULL, "/");
}

void mount_console(int slave) {
  char src[32], t[32];
  int root = open_dir("/");
  int dev = open_in_root(root, "/dev");
  close(root);
  if (dev < 0) die("cannot make /dev/console: the container has no /dev");
  if (!S_ISDIR(fd_stat(dev, "/dev").st_mode)) die("/dev is not a directory");
  int e = create_at(dev, "console", 0600);
  if (e && e != EEXIST) die("openat2 /dev/console: %s", why(e));
  int fd = open_at(dev, "console");
  close(dev);
  if (fd < 0) die("/dev/console is a symlink or a directory: refused");
  mode_t m = fd_stat(fd, "/dev/console").st_mode;
  if (S_ISLNK(m) || S_ISDIR(m)) die("/dev/console is a symlink or a directory: refused");
  fd_path(src, slave);
  fd_path(t, fd);
  mnt_or_die(src, t, "bind", MS_BIND, NULL, "/dev/console");
  close(fd);
}
