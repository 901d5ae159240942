// Unit tests of ffi/libc.ts's errno handling (no root): every wrapper goes through invoke(),
// which must never report an errno that its own call did not set, and must retry EINTR.
import * as libc from "../../ffi/libc.ts";
import { assert, assertEquals, assertThrows } from "./helpers.ts";

const ENOENT = 2, EINTR = 4, EAGAIN = 11;

Deno.test("invoke: a call that succeeds is never failed by an errno left from before", () => {
  const cell = new Int32Array([ENOENT]); // stale, from an earlier failed call
  assertEquals(libc.invoke(() => 0, "read", undefined, "retry", cell), 0);
  assertEquals(libc.invoke(() => 5n, "read", undefined, "retry", cell), 5);
});

Deno.test("invoke: a failure reports the errno its own call set", () => {
  const cell = new Int32Array([ENOENT]);
  const e = assertThrows(() =>
    libc.invoke(
      () => {
        cell[0] = EAGAIN;
        return -1;
      },
      "read",
      undefined,
      "retry",
      cell,
    ), libc.SysError) as libc.SysError;
  assertEquals([e.code, e.errno], ["EAGAIN", EAGAIN]);
});

Deno.test("invoke: -1 without errno set is not taken for the stale ENOENT before it", () => {
  const cell = new Int32Array([ENOENT]);
  const e = assertThrows(
    () => libc.invoke(() => -1, "read", "exec.fifo", "retry", cell),
    libc.SysError,
  ) as libc.SysError;
  assertEquals(e.errno, 0);
  assertEquals(e.message, "read exec.fifo: errno not set (errno not set)");
});

Deno.test("invoke: EINTR is retried until the call completes; 'fail' reports it", () => {
  const cell = new Int32Array(1);
  let calls = 0;
  const interruptedTwice = () => {
    if (++calls <= 2) {
      cell[0] = EINTR;
      return -1;
    }
    return 7;
  };
  assertEquals(libc.invoke(interruptedTwice, "read", undefined, "retry", cell), 7);
  assertEquals(calls, 3);
  calls = 0;
  const e = assertThrows(
    () => libc.invoke(interruptedTwice, "connect", "/s", "fail", cell),
    libc.SysError,
  ) as libc.SysError;
  assertEquals([e.code, calls], ["EINTR", 1]);
});

Deno.test("libc: read on an empty non-blocking fifo is EAGAIN even right after an ENOENT", () => {
  const dir = Deno.makeTempDirSync({ prefix: "capsule-unit-" });
  try {
    libc.mkfifo(`${dir}/f`, 0o600);
    const r = libc.open(`${dir}/f`, libc.O.RDONLY | libc.O.NONBLOCK | libc.O.CLOEXEC);
    const w = libc.open(`${dir}/f`, libc.O.WRONLY | libc.O.CLOEXEC);
    try {
      assertThrows(() => libc.open(`${dir}/none`, libc.O.RDONLY), libc.SysError, "ENOENT");
      const e = assertThrows(() => libc.read(r, new Uint8Array(1)), libc.SysError) as libc.SysError;
      assertEquals(e.code, "EAGAIN");
      // A successful call leaves nothing for the next failure to inherit.
      libc.writeAll(w, new Uint8Array([1]));
      assertEquals(libc.read(r, new Uint8Array(1)), 1);
    } finally {
      libc.close(r);
      libc.close(w);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("libc(): each symbol is bound on its first use only; system calls share one", () => {
  const lib = libc.libc();
  const bound = (name: string) => !Object.getOwnPropertyDescriptor(lib, name)?.get;
  // A path that only reads (the CLI's) never pays for binding the nonblocking read (dlopen
  // costs per symbol).
  assertEquals(bound("readNonblocking"), false);
  assertEquals(libc.getpid(), Deno.pid); // a system call: through `syscall`
  assertEquals(bound("syscall"), true);
  assertEquals(bound("readNonblocking"), false);
});

Deno.test("raw system calls: dup2 onto itself, fcntl, pipes, sockets and fd passing work", () => {
  const [r, w] = libc.pipe2();
  const [a, b] = libc.socketpair(true);
  try {
    libc.dup2(r, r); // dup3 refuses this; dup2's answer is "done" for an open fd
    assertThrows(() => libc.dup2(987654, 987654), libc.SysError, "EBADF");
    assert(libc.isCloexec(r));
    libc.setCloexec(r, false);
    assert(!libc.isCloexec(r));
    libc.writeAll(w, new TextEncoder().encode("hi"));
    const buf = new Uint8Array(8);
    assertEquals(libc.read(r, buf), 2);
    libc.sendFd(a, w, new TextEncoder().encode("x"));
    const msg = new Uint8Array(1);
    const { n, fd } = libc.recvWithFd(b, msg);
    assertEquals([n, msg[0]], [1, 0x78]);
    const got = fd!;
    libc.writeAll(got, new TextEncoder().encode("!"));
    assertEquals(libc.read(r, buf), 1);
    assertEquals(buf[0], 0x21);
    libc.close(got);
    const old = libc.umask(0o077);
    assertEquals(libc.umask(old), 0o077);
  } finally {
    for (const fd of [r, w, a, b]) libc.close(fd);
  }
});

Deno.test("pollIn: false after the timeout on an empty fifo, true once there is something to read", () => {
  const dir = Deno.makeTempDirSync();
  try {
    libc.mkfifo(`${dir}/f`, 0o600);
    const r = libc.open(`${dir}/f`, libc.O.RDONLY | libc.O.NONBLOCK | libc.O.CLOEXEC);
    const w = libc.open(`${dir}/f`, libc.O.WRONLY | libc.O.CLOEXEC);
    try {
      const t0 = performance.now();
      assertEquals(libc.pollIn(r, 30), false);
      const waited = performance.now() - t0;
      assertEquals(waited >= 25, true, `returned after ${waited} ms`);
      libc.writeAll(w, new Uint8Array([0x30]));
      assertEquals(libc.pollIn(r, 5000), true);
    } finally {
      libc.close(r);
      libc.close(w);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("SysError: every errno it names has a text, never the name twice", () => {
  for (const [name, text] of libc.errnoTexts()) assert(text, `${name} has no text`);
  const e = new libc.SysError("connect", 111, "/run/x.sock");
  assertEquals(e.message, "connect /run/x.sock: connection refused (ECONNREFUSED)");
});

Deno.test("timespecs: a fraction that rounds to a whole second moves to the next second", () => {
  const ts = (t: number) => [...new BigInt64Array(libc.timespecs(t).buffer)].map(Number);
  assertEquals(ts(1.9999999999), [2, 0, 2, 0]);
  assertEquals(ts(1600000000.5), [1600000000, 500000000, 1600000000, 500000000]);
  assertEquals(ts(-0.5), [-1, 500000000, -1, 500000000]);
  assertEquals(ts(0), [0, 0, 0, 0]);
  // Exact nanoseconds when given (a pax mtime): a double holds ~0.2 us of a recent time.
  const exact = (ns: bigint) => [...new BigInt64Array(libc.timespecs(0, ns).buffer)];
  assertEquals(exact(1600000000123456789n), [1600000000n, 123456789n, 1600000000n, 123456789n]);
  assertEquals(exact(-1500000000n), [-2n, 500000000n, -2n, 500000000n]);
});

Deno.test("fd calls: a file made with O_CREATE_NEW gets its mode and times through the fd", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/f`;
    const fd = libc.open(path, libc.O_CREATE_NEW, 0o600);
    try {
      assertEquals(libc.write(fd, new TextEncoder().encode("abc"), path), 3);
      libc.seekCurrent(fd, 5, path);
      libc.ftruncate(fd, 8, path);
      // The owner first: chown clears a setuid bit (FdFile.finish's order).
      assertEquals(libc.fchown(fd, Deno.uid()!, Deno.gid()!), 0);
      libc.fchmod(fd, 0o4751, path);
      // utimensat refuses a tv_nsec of 10^9: this one must land on 2 s, not fail.
      assertEquals(libc.futimes(fd, 1.9999999999), 0);
    } finally {
      libc.close(fd);
    }
    const st = Deno.lstatSync(path);
    assertEquals(st.mode! & 0o7777, 0o4751);
    assertEquals(st.mtime?.getTime(), 2000);
    assertEquals(st.size, 8);
    // Exclusive, and never through a symlink: both are EEXIST.
    Deno.symlinkSync(`${dir}/nowhere`, `${dir}/l`);
    for (const p of [path, `${dir}/l`]) {
      const e = assertThrows(() => libc.open(p, libc.O_CREATE_NEW, 0o600), libc.SysError);
      assertEquals(e.code, "EEXIST");
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("ptr: a buffer stays pinned through an EINTR retry, and not after the call", () => {
  // sysCheck/sysErrno callers take addresses before invoke() begins; the call inside may run
  // other system calls (sys() used to empty the list after each one).
  const cell = new Int32Array(1);
  const seen: number[] = [];
  let attempts = 0;
  libc.ptr(new Uint8Array(8));
  libc.invoke(
    () => {
      libc.getpid(); // a system call of its own, through sys()
      seen.push(libc.pinnedCount());
      if (attempts++ > 0) return 0;
      cell[0] = 4; // EINTR: invoke tries again
      return -1;
    },
    "test",
    undefined,
    "retry",
    cell,
  );
  assertEquals(seen, [1, 1]);
  assertEquals(libc.pinnedCount(), 0);
  // A bare sys() call (getpid) empties it when it returns.
  libc.ptr(new Uint8Array(8));
  libc.getpid();
  assertEquals(libc.pinnedCount(), 0);
});
