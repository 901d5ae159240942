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
