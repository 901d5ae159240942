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
