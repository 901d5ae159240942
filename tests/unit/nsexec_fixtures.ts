// A full exec plan for the native helper's tests (nsexec_test.ts, nsexec_fuzz_test.ts): every
// field set, nothing that would reach a real process.
import type { NsexecPlan } from "../../runtime/nsexec.ts";

/** An exec plan with every record: a terminal, rlimits, caps, seccomp, fds, a log. */
export const basePlan = (): NsexecPlan => ({
  pid: 4242,
  pidStartTime: "123456",
  namespaces: ["user", "pid", "mnt"],
  cgroupProcs: ["/sys/fs/cgroup/pids/capsule/x/cgroup.procs"],
  process: {
    terminal: true,
    consoleSize: { height: 24, width: 80 },
    args: ["sh", "-c", "echo ü"],
    env: ["PATH=/bin", "A=b"],
    cwd: "/work",
    uid: 1000,
    gid: 100,
    additionalGids: [10, 11],
    umask: 0o027,
    rlimits: [{ resource: 7, soft: "1024", hard: "18446744073709551615" }],
    noNewPrivileges: true,
    oomScoreAdj: -500,
    caps: { bounding: [0, 33], effective: [0], permitted: [0], inheritable: [], ambient: [] },
    seccomp: { program: btoa("\x06\x00\x00\x00\x00\x00\xff\x7f"), flags: 0 },
    preserveFds: [3, 4],
    listenFds: 2,
  },
  logFd: 9,
  setsid: true,
  detach: false,
});
