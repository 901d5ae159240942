// capsule's native front end: `exec ID COMMAND...`, `exec --process FILE [--detach]
// [--pid-file PATH] ID` (a file whose process an earlier exec kept, or one it reads whole:
// process_delta.c), `start ID` and
// `delete [-f] ID` without starting Deno (docs/DESIGN.md "The native front end"). The launcher
// (scripts/build.ts runDeno)
// runs
//   capsule-nsexec front N DENO-COMMAND(N words) -- CAPSULE-ARGUMENTS...
// for a command line whose command is exec, start, delete or rm. This mode takes only what it
// can do exactly as the CLI does, as root, for a container that create left an exec.plan for
// (runtime/exec.ts writeExecPlan: what exec.ts would hand the helper, without the command and the
// namespaces, and what start and delete need). Anything else (a flag, another user, a stopped,
// paused or unknown container, hooks, extensions, no overlayfs for the seal) execs the Deno
// command with the arguments unchanged, before this process did anything the caller could see:
// capsule's TypeScript CLI stays the one place that explains a refusal.
//
// exec, done here as exec.ts does it: the namespaces that differ from this process's
// (/proc/PID/ns/*, read before the init's start time is checked again), the command as `a`
// records, the helper started from a read-only overlayfs view of this binary (exe_seal.ts's
// "overlay", runc's sealed overlayfs) with an empty environment and the plan on a socketpair;
// its answer read, its failure said as exec.ts says it (exit status 255, runc's), signals
// passed on (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2: spawn.ts forwardSignals), and the
// program's status returned (128+N when killed by signal N). start and delete: see front_start
// and front_delete below.
#include "capsule.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 1
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define FSMOUNT_CLOEXEC 1
#define MOUNT_ATTR_RDONLY 1
#define MOUNT_ATTR_NOSUID 2
#define MOUNT_ATTR_NODEV 4
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

#define DEFAULT_ROOT "/var/run/capsule" // runtime/state.ts DEFAULT_ROOT (root's default)
#define EXEC_PLAN "exec.plan"          // runtime/exec.ts EXEC_PLAN
#define EXEC_FIFO "exec.fifo"          // runtime/state.ts EXEC_FIFO
#define EXEC_PROCESSES "exec.processes" // runtime/exec.ts EXEC_PROCESSES
#define MAX_TEMPLATE (16u << 20)

static char **deno_argv; // the Deno command, then capsule's arguments: what a fallback runs
static const char *log_file, *log_format = "text"; // --log, --log-format (cli/output.ts Logger)

// A failure after the point of no hand-over, said as the CLI says it: "capsule: MSG" on stderr,
// and a level=error line in --log (text: time="..." level=error msg="..."; json: {"level",
// "msg","time"}), where engines read runc's errors. Returns 1, the CLI's status for it.
__attribute__((format(printf, 1, 2))) static int failure(const char *fmt, ...) {
  char msg[2048], esc[4200], line[4400], when[40];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  dprintf(2, "capsule: %s\n", msg);
  if (!log_file) return 1;
  size_t o = 0; // the message as a JSON string's contents, as JSON.stringify writes them
  static const char SHORT[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
  for (const unsigned char *c = (const unsigned char *)msg; *c && o + 8 < sizeof esc; c++) {
    if (*c == '"' || *c == '\\') {
      esc[o++] = '\\';
      esc[o++] = (char)*c;
    } else if (*c < sizeof SHORT && SHORT[*c]) {
      esc[o++] = '\\';
      esc[o++] = SHORT[*c];
    } else if (*c < 0x20) {
      o += (size_t)snprintf(esc + o, sizeof esc - o, "\\u%04x", *c);
    } else {
      esc[o++] = (char)*c;
    }
  }
  esc[o] = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);
  int n = strcmp(log_format, "json")
              ? snprintf(line, sizeof line, "time=\"%s\" level=error msg=\"%s\"\n", when, esc)
              : snprintf(line, sizeof line, "{\"level\":\"error\",\"msg\":\"%s\",\"time\":\"%s\"}\n",
                         esc, when);
  int f = open(log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666); // as Deno creates it
  if (f >= 0) {
    if (write(f, line, (size_t)n) < 0) { /* the log is best effort: stderr has it */ }
    close(f);
  }
  return 1;
}

// Hands the command line to capsule's Deno CLI, unchanged (every fd opened here is close-on-exec).
__attribute__((noreturn)) static void fallback(void) {
  execv(deno_argv[0], deno_argv);
  dprintf(2, "capsule: cannot start %s: %s\n", deno_argv[0], why(errno));
  _exit(127); // the shell's status for a command it cannot run, as the launcher gave
}

// runtime/ids.ts ID_PATTERN: [A-Za-z0-9][A-Za-z0-9_.-]{0,127}.
static int valid_id(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return 0;
  }
  return 1;
}

// Whether `s` is valid UTF-8 (no overlong form, surrogate or code point above U+10FFFF). Deno
// hands the CLI its arguments decoded, with U+FFFD for what is not: such an argument is the
// CLI's, so that both run the same program with the same words.
static int utf8(const char *str) {
  for (const unsigned char *s = (const unsigned char *)str; *s;) {
    unsigned c = *s;
    int n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
          : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0) return 0;
    unsigned lo = 0x80, hi = 0xbf; // the second byte's range (RFC 3629's table)
    if (c == 0xe0) lo = 0xa0;
    else if (c == 0xed) hi = 0x9f;
    else if (c == 0xf0) lo = 0x90;
    else if (c == 0xf4) hi = 0x8f;
    s++;
    for (int i = 0; i < n; i++, s++) {
      if (*s < (i ? 0x80 : lo) || *s > (i ? 0xbf : hi)) return 0;
    }
  }
  return 1;
}

// Whether `s` asks for help: the CLI prints it for "-h" or "--help" among the words before a
// command's own (cli/main.ts), whatever flag they would otherwise be the value of.
static int help(const char *s) { return !strcmp(s, "-h") || !strcmp(s, "--help"); }

// Whether `path` has a "." or ".." component: the CLI resolves those on the text, before any
// symlink (state.ts absolutePath, as runc does), the kernel after: such a --root is the CLI's.
static int dotted(const char *path) {
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, "/");
    if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 1;
    p += n;
    while (*p == '/') p++;
  }
  return 0;
}

// A directory or file capsule made as root and no one else may write: owned by uid 0, no write
// bit for group or others (state directories are 0700, exec.plan 0600).
static int ours(int fd, mode_t kind) {
  struct stat st;
  return !fstat(fd, &st) && (st.st_mode & S_IFMT) == kind && st.st_uid == 0 &&
         !(st.st_mode & (S_IWGRP | S_IWOTH));
}

// The whole of `fd` (at most MAX_TEMPLATE bytes) into a new buffer; NULL otherwise.
static unsigned char *read_file(int fd, size_t *len) {
  struct stat st;
  if (fstat(fd, &st) || st.st_size < 8 || (uint64_t)st.st_size > MAX_TEMPLATE) return NULL;
  size_t want = (size_t)st.st_size, got = 0;
  unsigned char *buf = malloc(want);
  while (buf && got < want) {
    ssize_t n = read(fd, buf + got, want - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (!buf || got != want) {
    free(buf);
    return NULL;
  }
  *len = want;
  return buf;
}

// The first record `tag` among the records buf[0..len): its data and length; 0 when absent or
// when the records are malformed.
static int find(const unsigned char *buf, size_t len, char tag, const unsigned char **data,
                uint32_t *dlen) {
  struct records r = RECORDS(buf, len);
  int n;
  while ((n = records_next(&r)) > 0) {
    if (r.tag == (unsigned char)tag) {
      *data = r.d;
      *dlen = r.len;
      return 1;
    }
  }
  return 0;
}

// A record's data as a NUL-terminated string (NULL when it holds a NUL, or when out of memory).
static char *dup_str(const unsigned char *d, uint32_t n) {
  if (memchr(d, 0, n)) return NULL;
  char *s = malloc((size_t)n + 1);
  if (s) {
    memcpy(s, d, n);
    s[n] = 0;
  }
  return s;
}

// Whether the freezer file holds its thawed value (trailing whitespace ignored).
static int thawed(const char *path, const char *value) {
  char buf[64];
  if (read_proc(path, buf, sizeof buf)) return 0;
  size_t n = strlen(buf);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
  return !strcmp(buf, value);
}

// Appends one record to out at *off.
static void put_rec(unsigned char *out, size_t *off, char tag, const void *d, uint32_t n) {
  out[*off] = (unsigned char)tag;
  for (int i = 0; i < 4; i++) out[*off + 1 + i] = n >> (8 * i) & 255;
  memcpy(out + *off + 5, d, n);
  *off += 5 + n;
}

// A string record.
static void put(unsigned char *out, size_t *off, char tag, const char *s) {
  put_rec(out, off, tag, s, (uint32_t)strlen(s));
}

// A number record (u64 LE, nsexec.ts Records.num).
static void put_num(unsigned char *out, size_t *off, char tag, uint64_t v) {
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = v >> (8 * i) & 255;
  put_rec(out, off, tag, le, sizeof le);
}

// overlayfs's escaping of ':' and '\' in a lowerdir path (exe_seal.ts escapeLowerDir).
static void escape_lower(char *out, size_t size, const char *path) {
  size_t o = 0;
  for (const char *p = path; *p && o + 2 < size; p++) {
    if (*p == ':' || *p == '\\') out[o++] = '\\';
    out[o++] = *p;
  }
  out[o] = 0;
}

// An O_PATH fd on this binary through a detached read-only overlayfs mount of its directory
// (exe_seal.ts viaOverlay: no path reaches it, and no write through /proc/PID/exe can reach the
// file on disk); -1 when it cannot be made.
static int sealed_self(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0 || n >= (ssize_t)sizeof exe - 1) return -1;
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash || strstr(exe, " (deleted)")) return -1;
  *slash = 0;
  const char *dir = *exe ? exe : "/", *name = slash + 1;
  char empty[] = "/tmp/capsule-exe-XXXXXX";
  if (!mkdtemp(empty)) return -1;
  char lower[2 * PATH_MAX + 64], a[2 * PATH_MAX], b[64];
  escape_lower(a, sizeof a, dir);
  escape_lower(b, sizeof b, empty);
  snprintf(lower, sizeof lower, "%s:%s", a, b);
  int fd = -1, mnt = -1;
  int ctx = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
  if (ctx >= 0 && !syscall(SYS_fsconfig, ctx, FSCONFIG_SET_STRING, "lowerdir", lower, 0) &&
      !syscall(SYS_fsconfig, ctx, FSCONFIG_SET_STRING, "xino", "off", 0) &&
      !syscall(SYS_fsconfig, ctx, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
    mnt = (int)syscall(SYS_fsmount, ctx, FSMOUNT_CLOEXEC,
                       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  if (mnt >= 0) fd = openat(mnt, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (mnt >= 0) close(mnt);
  if (ctx >= 0) close(ctx);
  rmdir(empty);
  return fd;
}

static volatile pid_t helper = 0;
static void forward(int sig) {
  if (helper > 0) kill(helper, sig);
}

// Reads exactly n bytes; 0 at EOF or on an error.
static int read_n(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    got += (size_t)r;
  }
  return 1;
}

static const char *signal_name(int s) {
  static char buf[16];
  const char *n = sigabbrev_np(s);
  if (!n) return "a signal";
  snprintf(buf, sizeof buf, "SIG%s", n);
  return buf;
}

// Whether d[0..n) is this binary's build stamp, exec.ts helperStamp's DEV:INO:SIZE:MTIME_MS of
// /proc/self/exe: a file written for another build of the helper is not taken.
static int is_stamp(const unsigned char *d, uint32_t n) {
  struct stat self;
  char stamp[96];
  if (stat("/proc/self/exe", &self)) return 0;
  snprintf(stamp, sizeof stamp, "%llu:%llu:%llu:%lld", (unsigned long long)self.st_dev,
           (unsigned long long)self.st_ino, (unsigned long long)self.st_size,
           (long long)self.st_mtim.tv_sec * 1000 + self.st_mtim.tv_nsec / 1000000);
  return n == strlen(stamp) && !memcmp(d, stamp, n);
}

// What create left for the front end (exec.ts writeExecPlan), checked: the state root and the
// container's directory root's and writable by no one else, the file too, whole, written for this
// very build of the helper and for this id, its init alive with the recorded start time and its
// cgroup not frozen. Anything else: fallback().
struct tmpl {
  unsigned char *buf;
  const unsigned char *front, *plan;
  uint32_t flen, plen;
  unsigned long long pid;
  char *start;
  int dir; // O_PATH fd on the container's state directory
};

static void load(const char *root, const char *id, struct tmpl *tm, int alive) {
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0 || !ours(rootfd, S_IFDIR)) fallback();
  int dirfd = openat(rootfd, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0 || !ours(dirfd, S_IFDIR)) fallback();
  close(rootfd);
  int tf = openat(dirfd, EXEC_PLAN, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (tf < 0 || !ours(tf, S_IFREG)) fallback();
  size_t tlen;
  unsigned char *t = read_file(tf, &tlen);
  close(tf);
  if (!t) fallback();
  uint32_t flen = le32(t);
  if ((size_t)flen > tlen - 8) fallback();
  const unsigned char *front = t + 4, *plan = t + 8 + flen;
  uint32_t plen = le32(t + 4 + flen);
  if ((size_t)plen != tlen - 8 - flen) fallback();

  const unsigned char *d;
  uint32_t dn;
  // Written for this very build of the helper (exec.ts helperStamp), or not taken.
  if (!find(front, flen, 'h', &d, &dn) || !is_stamp(d, dn)) fallback();
  // Written for this container (a plan copied under another id is not its).
  if (!find(front, flen, 'i', &d, &dn) || dn != strlen(id) || memcmp(d, id, dn)) fallback();
  if (!find(plan, plen, 'p', &d, &dn) || dn != 8) fallback();
  unsigned long long pid = 0;
  for (int b = 7; b >= 0; b--) pid = pid << 8 | d[b];
  char *start = find(plan, plen, 'X', &d, &dn) ? dup_str(d, dn) : NULL;
  if (!pid || pid > INT_MAX || !start || (alive && !process_is(pid, start))) fallback();
  if (find(front, flen, 'z', &d, &dn)) {
    char *file = dup_str(d, dn);
    const unsigned char *v;
    uint32_t vn;
    char *value = find(front, flen, 'Z', &v, &vn) ? dup_str(v, vn) : NULL;
    if (!file || !value || !thawed(file, value)) fallback(); // paused: exec.ts says why
    free(file);
    free(value);
  }

  tm->buf = t;
  tm->front = front;
  tm->plan = plan;
  tm->flen = flen;
  tm->plen = plen;
  tm->pid = pid;
  tm->start = start;
  tm->dir = dirfd;
}

// JSON, as much as the record needs: the value of member `key` of the object at obj (its first
// byte '{'), found among that object's own members only (strings skipped with their escapes,
// nested objects and arrays by depth), as [*vs, *ve); 0 when absent or malformed.
static const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
  return p;
}

static int member(const unsigned char *obj, const unsigned char *end, const char *key,
                  const unsigned char **vs, const unsigned char **ve) {
  if (obj >= end || *obj != '{') return 0;
  size_t klen = strlen(key);
  int depth = 0;
  const unsigned char *start = NULL; // the value of `key`, once its name was read
  for (const unsigned char *p = obj; p < end; p++) {
    unsigned char c = *p;
    if (c == '"') {
      const unsigned char *q = p + 1;
      while (q < end && *q != '"') q += *q == '\\' ? 2 : 1;
      if (q >= end) return 0;
      if (depth == 1 && !start) {
        const unsigned char *a = skip_ws(q + 1, end);
        if (a < end && *a == ':' && (size_t)(q - p - 1) == klen && !memcmp(p + 1, key, klen)) {
          start = skip_ws(a + 1, end);
          p = start - 1; // the value next
          continue;
        }
      }
      p = q;
      continue;
    }
    if (c == '{' || c == '[') {
      depth++;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) {
        if (!start) return 0;
        *vs = start; // the object's last member: its value ends at the closing brace
        *ve = p;
        return 1;
      }
    } else if (c == ',' && depth == 1 && start) {
      *vs = start;
      *ve = p;
      return 1;
    }
  }
  return 0;
}

// Whether the object's member `key` is absent, or an empty object or array.
static int absent_or_empty(const unsigned char *obj, size_t len, const char *key) {
  const unsigned char *vs, *ve;
  if (!member(obj, obj + len, key, &vs, &ve)) return 1;
  while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\n' || ve[-1] == '\t' || ve[-1] == '\r')) ve--;
  if (ve - vs < 2 || (vs[0] != '{' && vs[0] != '[')) return 0;
  return skip_ws(vs + 1, ve) == ve - 1;
}

// Whether the record (state.json) holds hooks of `kind` (poststart, poststop).
static int has_hooks(const unsigned char *rec, size_t len, const char *kind) {
  const unsigned char *vs, *ve;
  if (!member(rec, rec + len, "hooks", &vs, &ve)) return 0;
  return !absent_or_empty(vs, (size_t)(ve - vs), kind);
}

// state.json of the container (dir: its O_PATH fd), root's and whole; fallback() otherwise.
static unsigned char *read_record(int dir, size_t *len) {
  int sf = openat(dir, "state.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (sf < 0 || !ours(sf, S_IFREG)) fallback();
  unsigned char *rec = read_file(sf, len);
  close(sf);
  if (!rec) fallback();
  return rec;
}

// `start ID` (runtime/start.ts) for a created container without poststart hooks: opening
// exec.fifo for reading releases the init, which writes one byte and execs the program; the fifo
// is removed. A wait that ends otherwise (the init gone, 10 s) leaves the rest to the CLI, which
// looks at the container again and says why.
static int front_start(const char *root, const char *id) {
  struct tmpl tm;
  load(root, id, &tm, 1);
  const unsigned char *d;
  uint32_t dn;
  if (find(tm.front, tm.flen, 'H', &d, &dn)) fallback(); // poststart hooks: the CLI runs them
  size_t rlen;
  unsigned char *rec = read_record(tm.dir, &rlen); // and as the record says now
  if (has_hooks(rec, rlen, "poststart")) fallback();
  free(rec);
  // Created: exec.fifo is still there (a FIFO of root's); running or gone: the CLI says so.
  int fd = openat(tm.dir, EXEC_FIFO, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) fallback();
  struct stat st;
  if (fstat(fd, &st) || !S_ISFIFO(st.st_mode) || st.st_uid != 0) fallback();
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  time_t deadline = now.tv_sec + 10;
  int after_poll = 0, hung_up = 0;
  for (;;) {
    char b;
    if (read(fd, &b, 1) == 1) break;
    if (after_poll) hung_up = 1;
    after_poll = 0;
    // Another start read the byte and removed the fifo: this one has nothing to wait for. Looked
    // at on every turn: a start that opened the fifo after the init's write was read and its
    // writer gone, before the winner removed it, sees no hang-up (Linux reports POLLHUP only for
    // a writer gone since the reader opened) and waited out the 10 s deadline (exec_front_test's
    // two starts at once: 10.9 s, in 3 of about 10 runs).
    if (!fstat(fd, &st) && st.st_nlink == 0) {
      close(fd);
      fallback();
    }
    if (!process_is(tm.pid, tm.start)) {
      // It may have written between the read and this look, then run its program to the end.
      if (read(fd, &b, 1) == 1) break;
      close(fd);
      fallback();
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > deadline) {
      close(fd);
      fallback();
    }
    // Before any writer opened it, read(2) of a FIFO says EOF but poll(2) waits; after a
    // writer came and went without writing, poll returns at once: then sleep instead.
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (!hung_up && poll(&p, 1, 10) > 0) {
      after_poll = 1;
      continue;
    }
    usleep(1000);
  }
  close(fd);
  if (unlinkat(tm.dir, EXEC_FIFO, 0) && errno != ENOENT) {
    return failure("cannot remove %s/%s/%s: %s", root, id, EXEC_FIFO, why(errno));
  }
  return 0;
}

// Each record `tag` in buf[0..len), as a NUL-terminated string, to fn; 0 when one is malformed
// or fn says 0.
static int each(const unsigned char *buf, size_t len, char tag, int (*fn)(const char *, void *),
                void *arg) {
  struct records r = RECORDS(buf, len);
  int n;
  while ((n = records_next(&r)) > 0) {
    if (r.tag != (unsigned char)tag) continue;
    char *v = dup_str(r.d, r.len);
    int ok = v && fn(v, arg);
    free(v);
    if (!ok) return 0;
  }
  return n == 0;
}

// A cgroup directory the container no longer uses: gone already, or with no process left.
static int cgroup_empty(const char *dir, void *unused) {
  (void)unused;
  char path[PATH_MAX], buf[64];
  if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path) return 0;
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return errno == ENOENT;
  ssize_t n = read(f, buf, sizeof buf); // a threaded cgroup2 directory cannot be read: the CLI's
  close(f);
  return n == 0;
}

// Removes a cgroup directory, which must be on a cgroup file system (as the drivers' destroy
// refuses any other: a record is never trusted to name a host directory).
static int cgroup_remove(const char *dir, void *unused) {
  (void)unused;
  struct statfs sf;
  if (statfs(dir, &sf)) return errno == ENOENT;
  if (sf.f_type != CGROUP_SUPER_MAGIC && sf.f_type != CGROUP2_SUPER_MAGIC) return 0;
  return !rmdir(dir) || errno == ENOENT; // a sub-cgroup left (EBUSY): the CLI removes it
}

// A nested "capsule" parent (record.cgroupParents) goes with its last container (cgroups/util.ts
// removeEmptyParents): removed when it is the parent of one of this container's directories and
// nothing else is left in it.
struct parent_arg {
  const struct tmpl *tm;
  const char *parent;
};
static int is_child_of(const char *dir, void *arg) {
  const char *parent = ((struct parent_arg *)arg)->parent;
  size_t n = strlen(parent);
  return !(strncmp(dir, parent, n) == 0 && dir[n] == '/' && !strchr(dir + n + 1, '/'));
}
static int parent_remove(const char *parent, void *arg) {
  struct parent_arg *pa = arg;
  pa->parent = parent;
  // each() stops at the first child found: is_child_of returns 0 there.
  if (!each(pa->tm->front, pa->tm->flen, 'g', is_child_of, pa)) cgroup_remove(parent, NULL);
  return 1;
}

// Removes the files of the directory `dir` (an O_PATH fd), state.json last; 0 when one cannot
// be removed or is a directory.
static int remove_files(int dir) {
  int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *dp = fd < 0 ? NULL : fdopendir(fd);
  if (!dp) return 0;
  struct dirent *e;
  int ok = 1;
  while (ok && (e = readdir(dp))) {
    const char *n = e->d_name;
    if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "state.json")) continue;
    ok = e->d_type != DT_DIR && (!unlinkat(dir, n, 0) || errno == ENOENT);
  }
  closedir(dp);
  return ok && (!unlinkat(dir, "state.json", 0) || errno == ENOENT);
}

// `delete [-f] ID` (runtime/delete.ts) of a container with no extension (network, image), no
// poststop hook and its own mount namespace, under its lock (state.ts lock: the state directory
// flock'd): a created container, or with -f a running one, has its init killed (SIGKILL through a
// pidfd opened while the start time still matched) and waited for; then its cgroups must hold no
// process (else the CLI kills the rest), are removed with the nested parents they leave empty,
// and the state directory goes, state.json last. Anything else, or anything that does not go as
// planned, is the CLI's, which finds the container as this left it and finishes.
static int front_delete(const char *root, const char *id, int force) {
  struct tmpl tm;
  load(root, id, &tm, 0);
  int lock = openat(tm.dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock < 0 || flock(lock, LOCK_EX)) fallback();
  // What the record holds now (its top-level members): extensions (network, image), poststop
  // hooks or "creating" make it the CLI's; so does a rootfs bound on the host.
  size_t slen;
  unsigned char *rec = read_record(tm.dir, &slen);
  const unsigned char *vs, *ve;
  if (!absent_or_empty(rec, slen, "ext") || has_hooks(rec, slen, "poststop") ||
      member(rec, rec + slen, "creating", &vs, &ve) ||
      !faccessat(tm.dir, "host-mount.json", F_OK, AT_SYMLINK_NOFOLLOW))
    fallback();
  free(rec);
  if (process_is(tm.pid, tm.start)) {
    // Running: only with -f. Created (exec.fifo there): killed, as runc does.
    if (!force && faccessat(tm.dir, EXEC_FIFO, F_OK, AT_SYMLINK_NOFOLLOW)) fallback();
    int pfd = (int)syscall(SYS_pidfd_open, (pid_t)tm.pid, 0);
    if (pfd < 0 || !process_is(tm.pid, tm.start)) fallback(); // the pid is not the init's now
    if (syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0)) fallback();
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) fallback(); // readable once it has exited
    close(pfd);
  }
  if (!each(tm.front, tm.flen, 'g', cgroup_empty, NULL)) fallback();
  if (!each(tm.front, tm.flen, 'g', cgroup_remove, NULL)) fallback();
  struct parent_arg pa = {.tm = &tm};
  each(tm.front, tm.flen, 'q', parent_remove, &pa);
  // The state directory: its files (a directory in it is the CLI's), state.json last. run -d's
  // waiter may write exit.json meanwhile: the directory is listed again until it goes.
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) fallback();
  for (int round = 0;; round++) {
    if (!remove_files(tm.dir)) fallback();
    if (!unlinkat(rootfd, id, AT_REMOVEDIR) || errno == ENOENT) return 0;
    if (errno != ENOTEMPTY || round == 5) {
      return failure("cannot remove %s/%s: %s", root, id, why(errno));
    }
  }
}

// The process records exec.ts made of a --process file holding exactly `src` (exec.processes,
// exec.ts writeExecProcess: written by this build for this container, `instance`, after an exec
// of those bytes succeeded), in the container's state directory `dir`; or, for a file that
// differs from a kept one only in its args, env and cwd, that one's records with those replaced
// (process_delta.c). NULL when there are none (the CLI's, which keeps them).
static const unsigned char *kept_process(int dir, const char *instance, const unsigned char *src,
                                         size_t slen, uint32_t *rlen) {
  int f = openat(dir, EXEC_PROCESSES, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (f < 0) return NULL;
  size_t len;
  unsigned char *buf = ours(f, S_IFREG) ? read_file(f, &len) : NULL;
  close(f);
  if (!buf || le32(buf) != len - 4) return NULL;
  struct records r = RECORDS(buf + 4, len - 4);
  if (records_next(&r) <= 0 || r.tag != 'h' || !is_stamp(r.d, r.len)) return NULL;
  // Written for this very container (exec.ts execInstance: ID:PID:START of its init).
  if (records_next(&r) <= 0 || r.tag != 'c' || r.len != strlen(instance) ||
      memcmp(r.d, instance, r.len))
    return NULL;
  const unsigned char *entry[64];
  uint32_t elen[64];
  int count = 0;
  while (records_next(&r) > 0) {
    const unsigned char *j = NULL, *rec = NULL;
    uint32_t jn = 0, rn = 0;
    if (r.tag != 'E' || !find(r.d, r.len, 'j', &j, &jn) || !find(r.d, r.len, 'r', &rec, &rn))
      continue;
    if (jn == slen && !memcmp(j, src, slen)) {
      *rlen = rn;
      return rec; // in buf, kept until this process ends
    }
    if (count < 64) {
      entry[count] = r.d;
      elen[count++] = r.len;
    }
  }
  // None the same: one that differs only in args, env and cwd (process_delta.c), the newest
  // first (as exec.ts writes them).
  for (int k = 0; k < count; k++) {
    const unsigned char *j = NULL, *rec = NULL;
    uint32_t jn = 0, rn = 0;
    if (!find(entry[k], elen[k], 'j', &j, &jn) || !find(entry[k], elen[k], 'r', &rec, &rn))
      continue;
    const unsigned char *made = process_delta(j, jn, rec, rn, src, slen, rlen);
    if (made) return made; // kept until this process ends
  }
  return NULL;
}

// Writes the program's pid to `path` as exec.ts does (state.ts writePidFile: PATH.XXXXXXXX.tmp,
// mode 0644, renamed over PATH); on a failure, says so as it does (Deno's words for the error:
// "Is a directory (os error 21): rename 'A' -> 'B'") and returns 0.
static int write_pid_file(const char *path, long long pid) {
  char tmp[PATH_MAX], text[24];
  unsigned char rnd[4];
  if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd ||
      snprintf(tmp, sizeof tmp, "%s.%02x%02x%02x%02x.tmp", path, rnd[0], rnd[1], rnd[2], rnd[3]) >=
          (int)sizeof tmp) {
    failure("Cannot write the pid file \"%s\": %s", path, why(errno ? errno : ENAMETOOLONG));
    return 0;
  }
  int n = snprintf(text, sizeof text, "%lld", pid);
  int f = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (f < 0) {
    failure("Cannot write the pid file \"%s\": %s (os error %d): open '%s'", path, strerror(errno),
            errno, tmp);
    return 0;
  }
  int ok = !fchmod(f, 0644) && write(f, text, (size_t)n) == n;
  int e = errno;
  if (close(f) && ok) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    unlink(tmp);
    failure("Cannot write the pid file \"%s\": %s (os error %d): write '%s'", path, strerror(e), e,
            tmp);
    return 0;
  }
  if (rename(tmp, path)) {
    e = errno;
    unlink(tmp);
    failure("Cannot write the pid file \"%s\": %s (os error %d): rename '%s' -> '%s'", path,
            strerror(e), e, tmp, path);
    return 0;
  }
  return 1;
}

// Whether `path`'s directory exists (cli/output.ts pidFileOption: the CLI refuses otherwise).
static int pid_file_dir(const char *path) {
  size_t n = strlen(path);
  if (!n || path[n - 1] == '/' || n >= PATH_MAX) return 0;
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  struct stat st;
  return !stat(dir, &st) && S_ISDIR(st.st_mode);
}

// What an exec runs: a command (`cmd`, every word after the id: cli/process.ts stopAfter), or
// the process of a --process file (`process`), as engines send it, with --detach and --pid-file.
struct exec_req {
  char **cmd;
  int ncmd;
  const char *process, *pid_file;
  int detach;
};

// `exec ID COMMAND...`, or `exec --process FILE [--detach] [--pid-file PATH] ID` for a file
// whose bytes an earlier exec kept with its process records (kept_process), or that
// process_records reads whole.
static int front_exec(const char *root, const char *id, const struct exec_req *rq) {
  unsigned char *src = NULL;
  size_t slen = 0;
  if (rq->process) {
    // Read as the CLI reads it (following symlinks, as the caller): a regular file, whole.
    int pf = open(rq->process, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (pf < 0 || fstat(pf, &st) || !S_ISREG(st.st_mode)) fallback();
    src = read_file(pf, &slen);
    close(pf);
    if (!src) fallback();
  }
  if (rq->pid_file && !pid_file_dir(rq->pid_file)) fallback(); // the CLI says why
  struct tmpl tm;
  load(root, id, &tm, 1);
  unsigned long long pid = tm.pid;
  const char *start = tm.start;
  const unsigned char *plan = tm.plan, *proc = NULL;
  uint32_t plen = tm.plen, hlen = 0, prlen = 0;
  if (src) {
    // exec.plan's header (the records before its process's), then the kept process records.
    const unsigned char *d;
    uint32_t dn;
    char num[16];
    if (!find(tm.front, tm.flen, 'o', &d, &dn) || dn == 0 || dn >= sizeof num) fallback();
    memcpy(num, d, dn);
    num[dn] = 0;
    char *e;
    unsigned long v = strtoul(num, &e, 10);
    if (*e || v > plen) fallback();
    hlen = (uint32_t)v;
    char instance[256];
    snprintf(instance, sizeof instance, "%s:%llu:%s", id, pid, start);
    proc = kept_process(tm.dir, instance, src, slen, &prlen);
    // Like none kept: read whole (process_delta.c process_records), with exec.plan's process
    // for what the file leaves to the container (rlimits, capabilities, seccomp).
    if (!proc) proc = process_records(src, slen, plan + hlen, plen - hlen, &prlen);
    if (!proc) fallback();
  }
  close(tm.dir);

  // The namespaces that differ from this process's, in exec.ts NAMESPACE_ORDER.
  static const char *const ORDER[] = {"user", "pid", "ipc", "uts", "net", "cgroup", "mnt"};
  const char *join[7];
  int njoin = 0;
  for (int j = 0; j < 7; j++) {
    char p[64], theirs[128], mine[128];
    snprintf(p, sizeof p, "/proc/%llu/ns/%s", pid, ORDER[j]);
    ssize_t a = readlink(p, theirs, sizeof theirs - 1);
    snprintf(p, sizeof p, "/proc/self/ns/%s", ORDER[j]);
    ssize_t b = readlink(p, mine, sizeof mine - 1);
    if (a <= 0 || b <= 0) fallback();
    if (a != b || memcmp(theirs, mine, (size_t)a)) join[njoin++] = ORDER[j];
  }
  // The links were the init's, not those of a process that took its pid meanwhile.
  if (!process_is(pid, start)) fallback();

  size_t total = proc ? (size_t)hlen + 13 + prlen : plen;
  for (int j = 0; j < njoin; j++) total += 5 + strlen(join[j]);
  for (int j = 0; j < rq->ncmd; j++) total += 5 + strlen(rq->cmd[j]);
  if (total > MAX_TEMPLATE) fallback();
  unsigned char *out = malloc(4 + total);
  if (!out) fallback();
  for (int b = 0; b < 4; b++) out[b] = (uint32_t)total >> (8 * b) & 255;
  size_t off = 4;
  if (proc) {
    // The helper reads records in any order and the last of a number wins: detach over the
    // header's (setsid stays 0: engines keep the program's stdio).
    memcpy(out + off, plan, hlen);
    off += hlen;
    put_num(out, &off, 'x', rq->detach ? 1 : 0);
    memcpy(out + off, proc, prlen);
    off += prlen;
  } else {
    memcpy(out + off, plan, plen);
    off += plen;
  }
  for (int j = 0; j < njoin; j++) put(out, &off, 'n', join[j]);
  for (int j = 0; j < rq->ncmd; j++) put(out, &off, 'a', rq->cmd[j]);

  // stdio closed by the caller (the socket would take its place): the CLI puts /dev/null there.
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0) fallback();
  int exe = sealed_self();
  if (exe < 0) fallback(); // no overlayfs here: exe_seal.ts's other ways
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) fallback();
  // Nothing of the caller's but stdio reaches the helper (the CLI's fds are close-on-exec too),
  // and neither a blocked signal nor an ignored SIGCHLD (which would leave no status to wait
  // for) is inherited from it (dash, the launcher's sh, resets SIGCHLD already; not every sh
  // does).
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC)) fallback();
  // The CLI's Deno raises its soft open-files limit to the hard one, and its helper (and a
  // program whose config sets no RLIMIT_NOFILE) inherits that: the same here.
  struct rlimit nofile;
  if (!getrlimit(RLIMIT_NOFILE, &nofile) && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGCHLD, SIG_DFL);

  // From here on this is the exec: its failures are said as exec.ts says them, with runc's 255.
  pid_t h = fork();
  if (h < 0) {
    failure("Cannot exec in container \"%s\": cannot start capsule-nsexec: %s", id, why(errno));
    return 255;
  }
  if (h == 0) {
    // The helper, in the host's PID namespace, with nothing of the caller's environment.
    char fd[16];
    snprintf(fd, sizeof fd, "%d", sv[1]);
    if (fcntl(sv[1], F_SETFD, 0)) _exit(127);
    char *hargv[] = {"capsule-nsexec", fd, NULL}, *henv[] = {NULL};
    syscall(SYS_execveat, exe, "", hargv, henv, AT_EMPTY_PATH);
    _exit(127);
  }
  close(sv[1]);
  close(exe);
  for (size_t w = 0; w < off;) { // a helper gone before it read it: its answer says why
    ssize_t r = send(sv[0], out + w, off - w, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    w += (size_t)r;
  }
  char *error = NULL;
  long long program = -1;
  for (;;) { // until the helper closes its end: the program runs, or it failed
    unsigned char hdr[5];
    if (!read_n(sv[0], hdr, 5)) break;
    uint32_t len = le32(hdr + 1);
    if (len > (1u << 20)) break;
    unsigned char *data = malloc((size_t)len + 1);
    if (!data || !read_n(sv[0], data, len)) break;
    data[len] = 0;
    if (hdr[0] == 'E' && !error) error = (char *)data;
    else {
      if (hdr[0] == 'P' && len == 8) {
        program = 0;
        for (int b = 7; b >= 0; b--) program = program << 8 | data[b];
      }
      free(data);
    }
  }
  close(sv[0]);
  if (error || program < 0) {
    kill(h, SIGKILL);
    int st;
    while (waitpid(h, &st, 0) < 0 && errno == EINTR) {
    }
    char gone[96];
    if (!error) {
      if (WIFSIGNALED(st)) snprintf(gone, sizeof gone, "capsule-nsexec was killed by %s", signal_name(WTERMSIG(st)));
      else
        snprintf(gone, sizeof gone, "capsule-nsexec exited with status %d before the program started",
                 WEXITSTATUS(st));
    }
    failure("Cannot exec in container \"%s\": %s", id, error ? error : gone);
    return 255;
  }
  if (rq->pid_file && !write_pid_file(rq->pid_file, program)) return 255;
  if (rq->detach) return 0; // the helper has exited (exec.ts: the program is the caller's now)
  helper = h;
  static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  struct sigaction fw = {.sa_handler = forward};
  for (size_t s = 0; s < sizeof FORWARDED / sizeof FORWARDED[0]; s++) sigaction(FORWARDED[s], &fw, NULL);
  int st;
  while (waitpid(h, &st, 0) < 0)
    if (errno != EINTR) return 255;
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

// exec's flags as the front end takes them: --process FILE (-p), --detach (-d) with --pid-file
// (the engines' form: without it the CLI logs the output and prints an exec id), --pid-file PATH;
// the id; a command only without --process. 0 for anything else (the CLI's).
static int exec_request(char **args, int n, const char **id, struct exec_req *rq) {
  int i = 0;
  *rq = (struct exec_req){0};
  for (; i < n && args[i][0] == '-'; i++) {
    const char *a = args[i];
    if (help(a) || (i + 1 < n && help(args[i + 1]))) return 0;
    if ((!strcmp(a, "--process") || !strcmp(a, "-p")) && i + 1 < n) rq->process = args[++i];
    else if (!strncmp(a, "--process=", 10)) rq->process = a + 10;
    else if (!strcmp(a, "--pid-file") && i + 1 < n) rq->pid_file = args[++i];
    else if (!strncmp(a, "--pid-file=", 11)) rq->pid_file = a + 11;
    else if (!strcmp(a, "--detach") || !strcmp(a, "-d")) rq->detach = 1;
    else return 0;
  }
  if (i >= n || !valid_id(args[i])) return 0;
  *id = args[i];
  rq->cmd = args + i + 1;
  rq->ncmd = n - i - 1;
  if (rq->process ? rq->ncmd != 0 || !*rq->process : rq->ncmd == 0 || rq->pid_file || rq->detach)
    return 0;
  return !rq->detach || rq->pid_file;
}

int front_main(int argc, char **argv) {
  // argv: capsule-nsexec front N DENO-COMMAND... -- CAPSULE-ARGUMENTS...
  char *end;
  long n = argc > 3 ? strtol(argv[2], &end, 10) : -1;
  if (n < 1 || *end || 3 + n >= argc || strcmp(argv[3 + n], "--")) {
    dprintf(2, "capsule-nsexec: started by capsule's launcher only\n");
    return 2;
  }
  // The Deno command and capsule's arguments, in place of the "--" between them.
  deno_argv = list((size_t)argc, sizeof(char *));
  int k = 0;
  for (int i = 3; i < 3 + n; i++) deno_argv[k++] = argv[i];
  char **args = argv + 4 + n;
  int nargs = argc - 4 - (int)n;
  for (int i = 0; i < nargs; i++) deno_argv[k++] = args[i];

  for (int j = 0; j < nargs; j++)
    if (!utf8(args[j])) fallback();
  // Global flags (cli/main.ts GLOBAL_FLAGS): --root; --log, --log-format and --systemd-cgroup
  // as engines pass them (a success logs nothing; a failure here is logged as the CLI logs it).
  // Any other: the CLI's.
  const char *root = DEFAULT_ROOT;
  int i = 0;
  while (i < nargs && args[i][0] == '-') {
    const char *a = args[i], *format = NULL;
    if (help(a) || (i + 1 < nargs && help(args[i + 1]))) fallback();
    if (!strcmp(a, "--root") && i + 1 < nargs) root = args[++i];
    else if (!strncmp(a, "--root=", 7)) root = a + 7;
    else if (!strcmp(a, "--log") && i + 1 < nargs) log_file = args[++i];
    else if (!strncmp(a, "--log=", 6)) log_file = a + 6;
    else if (!strcmp(a, "--log-format") && i + 1 < nargs) format = args[++i];
    else if (!strncmp(a, "--log-format=", 13)) format = a + 13;
    else if (strcmp(a, "--systemd-cgroup")) fallback();
    if (format && strcmp(format, "text") && strcmp(format, "json")) fallback();
    if (format) log_format = format;
    i++;
  }
  if (i + 1 >= nargs || !*root || root[0] == '-' || dotted(root) || getuid() != 0 ||
      geteuid() != 0)
    fallback();
  const char *id;
  struct exec_req rq;
  if (!strcmp(args[i], "exec") && exec_request(args + i + 1, nargs - i - 1, &id, &rq))
    return front_exec(root, id, &rq);
  if (!strcmp(args[i], "start") && nargs - i == 2 && valid_id(args[i + 1])) return front_start(root, args[i + 1]);
  if ((!strcmp(args[i], "delete") || !strcmp(args[i], "rm")) && nargs - i == 2 &&
      valid_id(args[i + 1]))
    return front_delete(root, args[i + 1], 0);
  if ((!strcmp(args[i], "delete") || !strcmp(args[i], "rm")) && nargs - i == 3 &&
      (!strcmp(args[i + 1], "-f") || !strcmp(args[i + 1], "--force")) && valid_id(args[i + 2]))
    return front_delete(root, args[i + 2], 1);
  fallback();
}
