// The native helper's plan reader (runtime/native/plan.c) against malformed plans: mutations of a
// real init plan and a real exec plan (cut short, bytes flipped, lengths made huge, NULs put in
// strings, records nested wrong). Each must end the helper with exit status 1 (its refusal) or 2
// (not started by capsule), never a signal (a crash) or a hang. As root the helper runs as nobody
// (setpriv): a mutation that still reads as a valid plan can then do nothing to this host.
import * as libc from "../../ffi/libc.ts";
import { encodeInitPlan, encodeNsexecPlan, nsexecPath } from "../../runtime/nsexec.ts";
import type { InitPlan } from "../../runtime/plan.ts";
import { assert } from "./helpers.ts";
import { basePlan } from "./nsexec_fixtures.ts";

const PROCESS: InitPlan["process"] = {
  ...basePlan().process,
  oomScoreAdj: undefined,
  preserveFds: undefined,
  listenFds: undefined,
};

/** An init plan with every kind of record: mounts, devices, paths, sysctls, hooks. */
const INIT_PLAN: InitPlan = {
  id: "fuzz",
  rootfs: "/nonexistent/capsule-fuzz-rootfs",
  readonly: true,
  rootPropagation: 16384 | (1 << 19),
  finalPropagation: 1 << 18,
  noPivot: false,
  namespaces: [{ type: "mount" }, { type: "network" }, { type: "ipc", path: "/proc/1/ns/ipc" }],
  mounts: [
    {
      destination: "/proc",
      source: "proc",
      type: "proc",
      flags: 14,
      propagation: [],
      data: "",
      bind: false,
    },
    {
      destination: "/data",
      source: "/nonexistent/src",
      type: "bind",
      flags: 4096 | 16384 | 1,
      propagation: [1 << 18],
      data: "",
      bind: true,
      recursiveFlags: 1,
    },
  ],
  setupDev: true,
  devices: [{ path: "/dev/null", type: "c", major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 }],
  maskedPaths: ["/proc/kcore"],
  readonlyPaths: ["/proc/sys"],
  hostname: "fuzz",
  sysctl: { "net/ipv4/ip_forward": "1" },
  hooks: {
    createContainer: [{ path: "/bin/true", args: ["true"], env: ["A=1"], timeout: 1 }],
    startContainer: [{ path: "/bin/true" }],
    state: '{"id":"fuzz"}',
  },
  process: PROCESS,
  execFifoFd: 99, // not open: a plan that reads as valid stops there
  setsid: true,
};

// No such process (its namespaces cannot be opened), no cgroup, no log: nothing is touched.
const EXEC_PLAN = encodeNsexecPlan({
  ...basePlan(),
  pid: 2 ** 22 + 9,
  cgroupProcs: [],
  process: PROCESS,
  logFd: undefined,
});

/** A small deterministic generator (the same mutations on every run). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** One mutation of `plan` (its u32 length header first). */
function mutate(plan: Uint8Array, r: () => number): Uint8Array<ArrayBuffer> {
  const p = new Uint8Array(plan);
  const v = new DataView(p.buffer);
  const at = 4 + Math.floor(r() * (p.length - 4));
  switch (Math.floor(r() * 6)) {
    case 0: // cut short (the header still says the whole length)
      return p.slice(0, at);
    case 1: // cut short, header agreeing
      v.setUint32(0, at - 4, true);
      return p.slice(0, at);
    case 2: // a byte flipped (a tag, a length, a string, a number)
      p[at] ^= 1 + Math.floor(r() * 255);
      return p;
    case 3: // a length field made huge or off by a few
      if (at + 4 <= p.length) {
        v.setUint32(
          at,
          r() < 0.5 ? 0xffffffff - Math.floor(r() * 8) : v.getUint32(at, true) + 3,
          true,
        );
      }
      return p;
    case 4: // a NUL inside
      p[at] = 0;
      return p;
    default: { // a record's bytes duplicated into the middle
      const len = Math.min(64, p.length - at);
      const out = new Uint8Array(p.length + len);
      out.set(p.subarray(0, at), 0);
      out.set(p.subarray(at, at + len), at);
      out.set(p.subarray(at), at + len);
      new DataView(out.buffer).setUint32(0, out.length - 4, true);
      return out;
    }
  }
}

/** Runs the helper on `plan` (as nobody when root); its exit code and signal. */
async function run(
  init: boolean,
  plan: Uint8Array<ArrayBuffer>,
): Promise<{ code: number; signal: Deno.Signal | null; stderr: string }> {
  const [mine, theirs] = libc.socketpair();
  libc.setCloexec(mine, true);
  const helper = [nsexecPath(), ...(init ? ["init"] : []), String(theirs)];
  const argv = Deno.uid() === 0
    ? ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", ...helper]
    : helper;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  try {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: ac.signal,
    }).spawn();
    libc.close(theirs);
    try {
      libc.writeAll(mine, plan);
    } catch { /* it stopped reading: its status says why */ }
    libc.close(mine); // EOF: a plan cut short must not wait for more
    const out = await child.output();
    return { code: out.code, signal: out.signal, stderr: new TextDecoder().decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "capsule-nsexec: 400 malformed plans end in exit 1 or 2, never a crash or a hang",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const init = encodeInitPlan(INIT_PLAN);
    const r = rng(20261130);
    for (let i = 0; i < 400; i++) {
      const isInit = i % 2 === 0;
      const plan = mutate(isInit ? init : EXEC_PLAN, r);
      const res = await run(isInit, plan);
      assert(
        res.signal === null && (res.code === 1 || res.code === 2),
        `mutation ${i} (${isInit ? "init" : "exec"}): exit ${res.code}, signal ${res.signal}: ` +
          res.stderr.slice(0, 300),
      );
    }
  },
});
