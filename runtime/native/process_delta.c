// A --process file that differs from one an exec already ran only in the values of its top-level
// "args", "env" and "cwd" (front.c, engines' `exec --process`): the process records exec.ts made
// of the kept file, with those three replaced. Everything else of the file is byte for byte the
// kept file's, which exec.ts validated and turned into records (runtime/exec.ts
// writeExecProcess); the three values are read as JSON.parse reads them and checked by the rules
// runtime/config_check.ts gives them (args: an array of at least one string; env: an array of
// strings each "KEY=..." with a KEY that holds no '='; cwd: a string starting with '/'), and none
// may hold a NUL byte (runtime/nsexec.ts refuses one). Anything else (a key written with escapes,
// one of the three twice, a lone surrogate, bytes that are not UTF-8, other whitespace) is not
// taken here: the Deno CLI reads that file. What JSON.parse ignores around the object (a BOM,
// whitespace, a final newline) may differ. tests/integration/exec_front_test.ts runs the same
// files through both.
#include "capsule.h"

#include <stdlib.h>
#include <string.h>

enum { K_ARGS, K_ENV, K_CWD, K_OTHER };

struct span {
  int key;
  size_t s, e; // [s, e): the value's bytes
};

static size_t ws(const unsigned char *p, size_t i, size_t n) {
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
  return i;
}

// The end of the string at p[i] == '"' (just past its closing quote); 0 when cut short. Escapes
// are stepped over, not checked: for a file JSON.parse has taken.
static size_t string_end(const unsigned char *p, size_t i, size_t n) {
  for (i++; i < n; i++) {
    if (p[i] == '\\') i++;
    else if (p[i] == '"') return i + 1;
  }
  return 0;
}

// The end of the value at p[i], in a file JSON.parse has taken; 0 when cut short.
static size_t value_end(const unsigned char *p, size_t i, size_t n) {
  if (i >= n) return 0;
  if (p[i] == '"') return string_end(p, i, n);
  if (p[i] == '{' || p[i] == '[') {
    int depth = 0;
    for (; i < n; i++) {
      if (p[i] == '"') {
        size_t e = string_end(p, i, n);
        if (!e) return 0;
        i = e - 1;
      } else if (p[i] == '{' || p[i] == '[') {
        depth++;
      } else if ((p[i] == '}' || p[i] == ']') && --depth == 0) {
        return i + 1;
      }
    }
    return 0;
  }
  while (i < n && p[i] && !strchr(",}] \t\n\r", p[i])) i++; // a number, true, false, null
  return i;
}

// The top-level members "args", "env" and "cwd" of the kept file (which JSON.parse took), in
// order; -1 when one is there twice or a key is written with an escape (JSON.parse would read
// it as another name than its bytes say).
static int kept_spans(const unsigned char *p, size_t n, struct span out[3]) {
  int count = 0, seen[3] = {0, 0, 0};
  size_t i = 0;
  if (i >= n || p[i] != '{') return -1;
  i = ws(p, i + 1, n);
  if (i < n && p[i] == '}') return 0;
  for (;;) {
    if (i >= n || p[i] != '"') return -1;
    size_t ke = string_end(p, i, n);
    if (!ke) return -1;
    const unsigned char *k = p + i + 1;
    size_t klen = ke - i - 2;
    if (memchr(k, '\\', klen)) return -1;
    int key = klen == 4 && !memcmp(k, "args", 4)  ? K_ARGS
              : klen == 3 && !memcmp(k, "env", 3) ? K_ENV
              : klen == 3 && !memcmp(k, "cwd", 3) ? K_CWD
                                                  : K_OTHER;
    i = ws(p, ke, n);
    if (i >= n || p[i] != ':') return -1;
    i = ws(p, i + 1, n);
    size_t ve = value_end(p, i, n);
    if (!ve) return -1;
    if (key != K_OTHER) {
      if (seen[key]++) return -1;
      out[count++] = (struct span){key, i, ve};
    }
    i = ws(p, ve, n);
    if (i < n && p[i] == ',') {
      i = ws(p, i + 1, n);
      continue;
    }
    return i + 1 == n && p[i] == '}' ? count : -1; // trimmed: the object is the whole text
  }
}

static int hex(unsigned char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

static int hex4(const unsigned char *p, size_t i, size_t n) {
  if (i + 4 > n) return -1;
  int v = 0;
  for (int k = 0; k < 4; k++) {
    int h = hex(p[i + k]);
    if (h < 0) return -1;
    v = v << 4 | h;
  }
  return v;
}

// The length of the UTF-8 sequence at p[i] (1-4), 0 when it is not well formed (overlong, a
// surrogate, past U+10FFFF, cut short): TextDecoder would read U+FFFD there.
static size_t utf8_seq(const unsigned char *p, size_t i, size_t n) {
  unsigned char c = p[i];
  if (c < 0x80) return 1;
  size_t len = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
  if (!len || i + len > n) return 0;
  for (size_t k = 1; k < len; k++)
    if ((p[i + k] & 0xc0) != 0x80) return 0;
  if (c == 0xe0 && p[i + 1] < 0xa0) return 0; // overlong
  if (c == 0xed && p[i + 1] >= 0xa0) return 0; // a surrogate
  if (c == 0xf0 && p[i + 1] < 0x90) return 0;  // overlong
  if (c == 0xf4 && p[i + 1] >= 0x90) return 0; // past U+10FFFF
  return len;
}

// The JSON string at p[*i] == '"', decoded to UTF-8 into out (room for the string's own bytes:
// a decoded string is never longer); its length, with *i just past it; -1 when it is not one
// JSON.parse reads to the same bytes capsule would send, or holds a NUL.
static long json_string(const unsigned char *p, size_t *i, size_t n, unsigned char *out) {
  size_t j = *i;
  long o = 0;
  if (j >= n || p[j] != '"') return -1;
  for (j++; j < n;) {
    unsigned char c = p[j];
    if (c == '"') {
      *i = j + 1;
      return o;
    }
    if (c < 0x20) return -1;
    if (c != '\\') {
      size_t len = utf8_seq(p, j, n);
      if (!len) return -1;
      memcpy(out + o, p + j, len);
      o += (long)len;
      j += len;
      continue;
    }
    if (j + 1 >= n) return -1;
    unsigned char e = p[j + 1];
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      out[o++] = (unsigned char)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      j += 2;
      continue;
    }
    if (e != 'u') return -1;
    int u = hex4(p, j + 2, n);
    j += 6;
    if (u < 0 || u == 0 || (u >= 0xdc00 && u <= 0xdfff)) return -1; // NUL, a lone low surrogate
    unsigned cp = (unsigned)u;
    if (u >= 0xd800 && u <= 0xdbff) {
      int lo = j + 1 < n && p[j] == '\\' && p[j + 1] == 'u' ? hex4(p, j + 2, n) : -1;
      if (lo < 0xdc00 || lo > 0xdfff) return -1; // a lone high surrogate
      cp = 0x10000 + (((unsigned)u - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
      j += 6;
    }
    // \uXXXX is 6 bytes, its UTF-8 at most 3; a pair is 12, its UTF-8 4: out never overruns.
    if (cp < 0x80) {
      out[o++] = (unsigned char)cp;
    } else if (cp < 0x800) {
      out[o++] = (unsigned char)(0xc0 | cp >> 6);
      out[o++] = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out[o++] = (unsigned char)(0xe0 | cp >> 12);
      out[o++] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
      out[o++] = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
      out[o++] = (unsigned char)(0xf0 | cp >> 18);
      out[o++] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
      out[o++] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
      out[o++] = (unsigned char)(0x80 | (cp & 0x3f));
    }
  }
  return -1;
}

// Appends record `tag` with `len` bytes at `d` to out at *off.
static void rec(unsigned char *out, size_t *off, char tag, const unsigned char *d, size_t len) {
  out[*off] = (unsigned char)tag;
  for (int b = 0; b < 4; b++) out[*off + 1 + b] = (unsigned char)(len >> (8 * b) & 255);
  memcpy(out + *off + 5, d, len);
  *off += 5 + len;
}

// The value at p[*i] (key: K_ARGS, K_ENV or K_CWD) as records ('a', 'e' or 'd') appended to out
// at *off, with *i just past it; 0 when it breaks the rules above.
static int value_records(int key, const unsigned char *p, size_t *i, size_t n, unsigned char *out,
                         size_t *off, unsigned char *tmp) {
  if (key == K_CWD) {
    long len = json_string(p, i, n, tmp);
    if (len < 1 || tmp[0] != '/') return 0;
    rec(out, off, 'd', tmp, (size_t)len);
    return 1;
  }
  size_t j = *i;
  if (j >= n || p[j] != '[') return 0;
  j = ws(p, j + 1, n);
  int count = 0;
  if (j < n && p[j] == ']') {
    j++;
  } else {
    for (;;) {
      long len = json_string(p, &j, n, tmp);
      if (len < 0) return 0;
      if (key == K_ENV) {
        void *eq = memchr(tmp, '=', (size_t)len);
        if (!eq || eq == (void *)tmp) return 0; // /^[^=]+=/
      }
      rec(out, off, key == K_ARGS ? 'a' : 'e', tmp, (size_t)len);
      count++;
      j = ws(p, j, n);
      if (j < n && p[j] == ',') {
        j = ws(p, j + 1, n);
        continue;
      }
      if (j < n && p[j] == ']') {
        j++;
        break;
      }
      return 0;
    }
  }
  if (key == K_ARGS && count < 1) return 0;
  *i = j;
  return 1;
}

// The file's JSON text without what JSON.parse (after TextDecoder) ignores around it: a BOM and
// whitespace before, whitespace after (a file ending in a newline, or not).
static void trim(const unsigned char **p, size_t *n) {
  size_t i = 0, e = *n;
  if (e >= 3 && (*p)[0] == 0xef && (*p)[1] == 0xbb && (*p)[2] == 0xbf) i = 3;
  i = ws(*p, i, e);
  while (e > i && ((*p)[e - 1] == ' ' || (*p)[e - 1] == '\t' || (*p)[e - 1] == '\n' ||
                    (*p)[e - 1] == '\r'))
    e--;
  *p += i;
  *n = e - i;
}

unsigned char *process_delta(const unsigned char *kept, size_t klen, const unsigned char *records,
                             uint32_t rlen, const unsigned char *src, size_t slen,
                             uint32_t *out_len) {
  trim(&kept, &klen);
  trim(&src, &slen);
  struct span sp[3];
  int count = kept_spans(kept, klen, sp);
  if (count <= 0) return NULL;
  // The kept records but their cwd, args and env; the new ones after them (the helper reads
  // records in any order; 'a' and 'e' in the order given).
  size_t room = rlen + 5 * slen + 16;
  unsigned char *out = malloc(room), *tmp = malloc(slen + 1);
  if (!out || !tmp) goto fail;
  size_t off = 0;
  struct records r = RECORDS(records, rlen);
  int more;
  while ((more = records_next(&r)) > 0) {
    if (r.tag == 'd' || r.tag == 'a' || r.tag == 'e') continue;
    rec(out, &off, (char)r.tag, r.d, r.len);
  }
  if (more < 0) goto fail;
  // The new file: the kept file's bytes between the three values, and values that pass.
  size_t ki = 0, si = 0;
  for (int k = 0; k < count; k++) {
    size_t gap = sp[k].s - ki;
    if (si + gap > slen || memcmp(src + si, kept + ki, gap)) goto fail;
    si += gap;
    if (!value_records(sp[k].key, src, &si, slen, out, &off, tmp)) goto fail;
    ki = sp[k].e;
  }
  if (slen - si != klen - ki || memcmp(src + si, kept + ki, klen - ki)) goto fail;
  if (off > UINT32_MAX) goto fail;
  free(tmp);
  *out_len = (uint32_t)off;
  return out;
fail:
  free(out);
  free(tmp);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// A --process file like no kept one (process_records): its process read whole, as exec.ts reads
// it (cli/process.ts readProcessFile: TextDecoder, parseJson; exec.ts processFromFile, the fast
// check config_check.ts schemaAccepts, fileProcess; plan.ts buildProcessPlan; nsexec.ts
// processRecords). Everything here may only be STRICTER than that path: what it is unsure of
// (a number not written as a plain integer, a capability name that is not ASCII, a key of the
// process given twice, "terminal": true, anything malformed) makes it answer NULL, and the Deno
// CLI reads the file, with its own verdict and message. tests/unit/process_records_test.ts holds
// the two together (every field, mutated).

// A growing output buffer; `oom` once an allocation failed.
struct out {
  unsigned char *p;
  size_t len, cap;
  int oom;
};

static void out_rec(struct out *o, char tag, const unsigned char *d, size_t len) {
  if (o->oom) return;
  if (o->len + 5 + len > o->cap) {
    size_t cap = (o->cap ? o->cap * 2 : 256) + 5 + len;
    unsigned char *p = realloc(o->p, cap);
    if (!p) {
      o->oom = 1;
      return;
    }
    o->p = p;
    o->cap = cap;
  }
  rec(o->p, &o->len, tag, d, len);
}

// A number record of `count` u64 LE values (nsexec.ts Records.num: BigInt.asUintN(64, n)).
static void out_nums(struct out *o, char tag, const int64_t *v, int count) {
  unsigned char b[24];
  for (int k = 0; k < count; k++)
    for (int i = 0; i < 8; i++) b[8 * k + i] = (unsigned char)((uint64_t)v[k] >> (8 * i) & 255);
  out_rec(o, tag, b, 8 * (size_t)count);
}

static void out_num(struct out *o, char tag, int64_t v) {
  out_nums(o, tag, &v, 1);
}

// The end of the JSON number at p[i] (RFC 8259's grammar); 0 when it is not one.
static size_t number_end(const unsigned char *p, size_t i, size_t n) {
  if (i < n && p[i] == '-') i++;
  if (i >= n) return 0;
  if (p[i] == '0') {
    i++;
  } else if (p[i] >= '1' && p[i] <= '9') {
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
  } else {
    return 0;
  }
  if (i < n && p[i] == '.') {
    size_t d = ++i;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    if (i == d) return 0;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    if (i < n && (p[i] == '+' || p[i] == '-')) i++;
    size_t d = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    if (i == d) return 0;
  }
  return i;
}

// The end of the JSON value at p[i], checked against JSON's grammar (a string as json_string
// takes it); 0 when it is not one, or nests deeper than 64.
static size_t skip_value(const unsigned char *p, size_t i, size_t n, unsigned char *tmp,
                         int depth) {
  if (i >= n || depth > 64) return 0;
  unsigned char c = p[i];
  if (c == '"') return json_string(p, &i, n, tmp) < 0 ? 0 : i;
  if (c == '{' || c == '[') {
    unsigned char close = c == '{' ? '}' : ']';
    i = ws(p, i + 1, n);
    if (i < n && p[i] == close) return i + 1;
    for (;;) {
      if (c == '{') {
        if (i >= n || p[i] != '"' || json_string(p, &i, n, tmp) < 0) return 0;
        i = ws(p, i, n);
        if (i >= n || p[i] != ':') return 0;
        i = ws(p, i + 1, n);
      }
      i = skip_value(p, i, n, tmp, depth + 1);
      if (!i) return 0;
      i = ws(p, i, n);
      if (i < n && p[i] == ',') {
        i = ws(p, i + 1, n);
        continue;
      }
      return i < n && p[i] == close ? i + 1 : 0;
    }
  }
  static const char *const LITERALS[] = {"true", "false", "null"};
  for (int k = 0; k < 3; k++) {
    size_t len = strlen(LITERALS[k]);
    if (n - i >= len && !memcmp(p + i, LITERALS[k], len)) return i + len;
  }
  return number_end(p, i, n);
}

// The members of the object at p[i] whose keys (decoded, as JSON.parse reads them) are among
// `names`: their values' starts into at[] (0: absent; a value never starts at 0). Other members
// are checked as JSON and passed over (the schema tolerates them). The end of the object, or 0
// when it is not one, or when a key of `names` is there twice (JSON.parse would keep the last:
// the CLI decides that).
static size_t members(const unsigned char *p, size_t i, size_t n, unsigned char *tmp,
                      const char *const *names, int count, size_t *at) {
  for (int k = 0; k < count; k++) at[k] = 0;
  if (i >= n || p[i] != '{') return 0;
  i = ws(p, i + 1, n);
  if (i < n && p[i] == '}') return i + 1;
  for (;;) {
    if (i >= n || p[i] != '"') return 0;
    long klen = json_string(p, &i, n, tmp);
    if (klen < 0) return 0;
    int key = -1;
    for (int k = 0; k < count; k++)
      if ((size_t)klen == strlen(names[k]) && !memcmp(tmp, names[k], (size_t)klen)) key = k;
    i = ws(p, i, n);
    if (i >= n || p[i] != ':') return 0;
    i = ws(p, i + 1, n);
    if (key >= 0) {
      if (at[key]) return 0;
      at[key] = i;
    }
    i = skip_value(p, i, n, tmp, 1);
    if (!i) return 0;
    i = ws(p, i, n);
    if (i < n && p[i] == ',') {
      i = ws(p, i + 1, n);
      continue;
    }
    return i < n && p[i] == '}' ? i + 1 : 0;
  }
}

// The integer at p[i] written plainly (-?(0|[1-9][0-9]{0,14}): a safe integer, read exactly as
// JSON.parse reads it) within [min, max]; 0 when it is written otherwise ("1.0", "1e3", "-0",
// 16 digits or more: the CLI judges those, reading one past 2^53-1 exactly, runtime/json.ts
// parseJson) or out of range.
static int integer(const unsigned char *p, size_t i, size_t n, int64_t min, int64_t max,
                   int64_t *v) {
  size_t e = number_end(p, i, n);
  if (!e) return 0;
  int neg = p[i] == '-';
  size_t d = i + neg;
  if (e - d > 15) return 0;
  int64_t x = 0;
  for (size_t k = d; k < e; k++) {
    if (p[k] < '0' || p[k] > '9') return 0; // a fraction or an exponent
    x = x * 10 + (p[k] - '0');
  }
  if (neg && x == 0) return 0;
  x = neg ? -x : x;
  if (x < min || x > max) return 0;
  *v = x;
  return 1;
}

// The array at p[i], its elements' starts into at[] (at most max of them); their count, -1 when
// it is not an array or holds more.
static int elements(const unsigned char *p, size_t i, size_t n, unsigned char *tmp, size_t *at,
                    int max) {
  if (i >= n || p[i] != '[') return -1;
  i = ws(p, i + 1, n);
  if (i < n && p[i] == ']') return 0;
  for (int count = 0;;) {
    if (count == max) return -1;
    at[count++] = i;
    i = skip_value(p, i, n, tmp, 1);
    if (!i) return -1;
    i = ws(p, i, n);
    if (i < n && p[i] == ',') {
      i = ws(p, i + 1, n);
      continue;
    }
    return i < n && p[i] == ']' ? count : -1;
  }
}

// consts.ts CAPABILITIES and RLIMITS, by number (process_records_test.ts checks them against
// those tables).
static const char *const CAP_NAMES[] = {
    "CAP_CHOWN",           "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",          "CAP_KILL",         "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",         "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",       "CAP_NET_RAW",      "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",      "CAP_SYS_RAWIO",    "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",       "CAP_SYS_ADMIN",    "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",    "CAP_SYS_TIME",     "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",           "CAP_AUDIT_WRITE",  "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",    "CAP_MAC_ADMIN",    "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",   "CAP_AUDIT_READ",   "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};
static const char *const RLIMIT_NAMES[] = {
    "RLIMIT_CPU",     "RLIMIT_FSIZE",  "RLIMIT_DATA",  "RLIMIT_STACK",      "RLIMIT_CORE",
    "RLIMIT_RSS",     "RLIMIT_NPROC",  "RLIMIT_NOFILE", "RLIMIT_MEMLOCK",   "RLIMIT_AS",
    "RLIMIT_LOCKS",   "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// The mask of the capability names in the array at p[i] (plan.ts capNumbers: toUpperCase, then
// CAPABILITIES); 0 when a name is not ASCII or not known, or the value is not an array of
// strings.
static int cap_mask(const unsigned char *p, size_t i, size_t n, unsigned char *tmp,
                    int64_t *mask) {
  size_t at[64];
  int count = elements(p, i, n, tmp, at, 64);
  if (count < 0) return 0;
  uint64_t m = 0;
  for (int k = 0; k < count; k++) {
    size_t j = at[k];
    if (p[j] != '"') return 0;
    long len = json_string(p, &j, n, tmp);
    if (len < 0) return 0;
    for (long c = 0; c < len; c++) {
      if (tmp[c] >= 0x80) return 0; // toUpperCase of some letters is ASCII: the CLI's
      if (tmp[c] >= 'a' && tmp[c] <= 'z') tmp[c] = (unsigned char)(tmp[c] - 'a' + 'A');
    }
    int found = -1;
    for (int c = 0; c < COUNT(CAP_NAMES); c++)
      if ((size_t)len == strlen(CAP_NAMES[c]) && !memcmp(tmp, CAP_NAMES[c], (size_t)len)) found = c;
    if (found < 0) return 0;
    m |= 1ULL << found;
  }
  *mask = (int64_t)m;
  return 1;
}

// plan.ts MAX_ID: the largest uid or gid.
#define MAX_ID 2147483647
#define U32 4294967295LL

unsigned char *process_records(const unsigned char *src, size_t slen, const unsigned char *base,
                               uint32_t blen, uint32_t *out_len) {
  trim(&src, &slen);
  enum { TERMINAL, CONSOLE, USER, ARGS, ENV, CWD, CAPS, RLIMITS, NNP, OOM, APPARMOR, SELINUX,
         NKEYS };
  static const char *const KEYS[] = {"terminal", "consoleSize", "user", "args", "env",
                                     "cwd", "capabilities", "rlimits", "noNewPrivileges",
                                     "oomScoreAdj", "apparmorProfile", "selinuxLabel"};
  size_t at[NKEYS];
  struct out o = {0};
  unsigned char *tmp = malloc(slen + 1);
  if (!tmp) return NULL;
  // The whole text is one object (JSON.parse: nothing after it; an empty text is none).
  size_t end = members(src, 0, slen, tmp, KEYS, NKEYS, at);
  if (!end || end != slen) goto fail;
  if (!at[ARGS] || !at[CWD]) goto fail;
  if (at[TERMINAL] && !(slen - at[TERMINAL] >= 5 && !memcmp(src + at[TERMINAL], "false", 5)))
    goto fail; // a terminal (or not a boolean): the CLI's
  // An AppArmor profile or an SELinux label: refused by the CLI (config_check.ts
  // refuseUnappliedProcess); "" is none.
  for (int k = APPARMOR; k <= SELINUX; k++)
    if (at[k] && !(slen - at[k] >= 2 && !memcmp(src + at[k], "\"\"", 2))) goto fail;
  // user (processFromFile: none is uid 0, gid 0), then its checks (schema: u32; buildProcessPlan:
  // uid, gid and additionalGids at most MAX_ID).
  int64_t uid = 0, gid = 0, umask_v = 022, gids[256];
  int ngids = 0;
  if (at[USER]) {
    static const char *const U[] = {"uid", "gid", "umask", "additionalGids"};
    size_t u[4], g[256];
    if (!members(src, at[USER], slen, tmp, U, 4, u) || !u[0] || !u[1]) goto fail;
    if (!integer(src, u[0], slen, 0, MAX_ID, &uid) || !integer(src, u[1], slen, 0, MAX_ID, &gid))
      goto fail;
    if (u[2] && !integer(src, u[2], slen, 0, U32, &umask_v)) goto fail;
    if (u[3]) {
      ngids = elements(src, u[3], slen, tmp, g, 256);
      if (ngids < 0) goto fail;
      for (int k = 0; k < ngids; k++)
        if (!integer(src, g[k], slen, 0, MAX_ID, &gids[k])) goto fail;
    }
  }
  out_num(&o, 'u', uid);
  out_num(&o, 'g', gid);
  for (int k = 0; k < ngids; k++) out_num(&o, 'G', gids[k]);
  out_num(&o, 'm', umask_v);
  int64_t v;
  if (at[NNP]) {
    size_t i = at[NNP];
    int t = slen - i >= 4 && !memcmp(src + i, "true", 4);
    if (!t && !(slen - i >= 5 && !memcmp(src + i, "false", 5))) goto fail;
    out_num(&o, 'N', t);
  } else {
    out_num(&o, 'N', 0);
  }
  if (at[OOM]) {
    if (!integer(src, at[OOM], slen, -1000, 1000, &v)) goto fail;
    out_num(&o, 'o', v);
  } else {
    // None in the file: the container's (fileProcess), never the caller's.
    struct records b = RECORDS(base, blen);
    while (records_next(&b) > 0)
      if (b.tag == 'o') out_rec(&o, 'o', b.d, b.len);
  }
  if (at[CONSOLE]) {
    static const char *const C[] = {"height", "width"};
    size_t c[2];
    int64_t hw[2];
    if (!members(src, at[CONSOLE], slen, tmp, C, 2, c) || !c[0] || !c[1]) goto fail;
    if (!integer(src, c[0], slen, 0, U32, &hw[0]) || !integer(src, c[1], slen, 0, U32, &hw[1]))
      goto fail;
    out_nums(&o, 'w', hw, 2);
  }
  // rlimits (fileProcess: none or an empty list is the container's, from exec.plan's process).
  size_t lim[64];
  int nlim = at[RLIMITS] ? elements(src, at[RLIMITS], slen, tmp, lim, 64) : 0;
  if (nlim < 0) goto fail;
  for (int k = 0; k < nlim; k++) {
    static const char *const L[] = {"type", "hard", "soft"};
    size_t l[3];
    int64_t r[3];
    if (!members(src, lim[k], slen, tmp, L, 3, l) || !l[0] || !l[1] || !l[2]) goto fail;
    size_t j = l[0];
    if (src[j] != '"') goto fail;
    long len = json_string(src, &j, slen, tmp);
    r[0] = -1;
    for (int c = 0; c < COUNT(RLIMIT_NAMES); c++)
      if (len == (long)strlen(RLIMIT_NAMES[c]) && !memcmp(tmp, RLIMIT_NAMES[c], (size_t)len))
        r[0] = c;
    if (r[0] < 0) goto fail;
    if (!integer(src, l[2], slen, 0, INT64_MAX, &r[1]) ||
        !integer(src, l[1], slen, 0, INT64_MAX, &r[2]) || r[1] > r[2])
      goto fail; // soft above hard: the CLI says so
    out_nums(&o, 'l', r, 3);
  }
  // capabilities (fileProcess: none is the container's).
  int64_t masks[5];
  if (at[CAPS]) {
    static const char *const S[] = {"bounding", "effective", "permitted", "inheritable",
                                    "ambient"};
    size_t c[5];
    if (!members(src, at[CAPS], slen, tmp, S, 5, c)) goto fail;
    for (int k = 0; k < 5; k++) {
      masks[k] = 0;
      if (c[k] && !cap_mask(src, c[k], slen, tmp, &masks[k])) goto fail;
    }
  }
  // From exec.plan's process (the container's, as create recorded it): its rlimits and
  // capabilities where the file has none (its oomScoreAdj above), and its seccomp filter always.
  struct records r = RECORDS(base, blen);
  int more;
  while ((more = records_next(&r)) > 0) {
    if (r.tag == 'l' && nlim == 0) out_rec(&o, 'l', r.d, r.len);
  }
  if (more < 0) goto fail;
  static const char CAP_TAGS[] = "BEPIA";
  for (int k = 0; k < 5; k++) {
    if (at[CAPS]) {
      out_num(&o, CAP_TAGS[k], masks[k]);
      continue;
    }
    r = (struct records)RECORDS(base, blen);
    while (records_next(&r) > 0)
      if (r.tag == CAP_TAGS[k]) out_rec(&o, CAP_TAGS[k], r.d, r.len);
  }
  r = (struct records)RECORDS(base, blen);
  while (records_next(&r) > 0)
    if (r.tag == 'S' || r.tag == 'F') out_rec(&o, (char)r.tag, r.d, r.len);
  // cwd, args, env: the rules process_delta's values have (value_records).
  size_t i = at[CWD];
  size_t room = 5 * slen + 16;
  unsigned char *vals = malloc(room);
  if (!vals) goto fail;
  size_t voff = 0;
  int ok = value_records(K_CWD, src, &i, slen, vals, &voff, tmp);
  i = at[ARGS];
  ok = ok && value_records(K_ARGS, src, &i, slen, vals, &voff, tmp);
  if (ok && at[ENV]) {
    i = at[ENV];
    ok = value_records(K_ENV, src, &i, slen, vals, &voff, tmp);
  }
  if (ok) {
    struct records vr = RECORDS(vals, voff);
    while (records_next(&vr) > 0) out_rec(&o, (char)vr.tag, vr.d, vr.len);
  }
  free(vals);
  if (!ok || o.oom || o.len > UINT32_MAX) goto fail;
  free(tmp);
  *out_len = (uint32_t)o.len;
  return o.p;
fail:
  free(tmp);
  free(o.p);
  return NULL;
}
