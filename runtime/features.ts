// `capsule features`: what this runtime implements, as the OCI features document (runtime-spec
// features.md, the shape `runc features` prints), so an engine can check before it asks.
import { CAPABILITIES, NAMESPACES } from "./consts.ts";
import { mountOptionNames } from "./plan.ts";
import { SECCOMP_FEATURES } from "./seccomp.ts";
import { OCI_VERSION } from "./version.ts";
import { VERSION } from "./version.ts";

/** The OCI features document (runtime-spec features.md, "features-linux.md"). */
export interface Features {
  ociVersionMin: string;
  ociVersionMax: string;
  hooks: string[];
  mountOptions: string[];
  linux: {
    namespaces: string[];
    capabilities: string[];
    cgroup: { v1: boolean; v2: boolean; systemd: boolean; systemdUser: boolean };
    seccomp: {
      enabled: boolean;
      actions: string[];
      operators: string[];
      archs: string[];
      knownFlags: string[];
      supportedFlags: string[];
    };
    apparmor: { enabled: boolean };
    selinux: { enabled: boolean };
  };
  annotations: Record<string, string>;
}

/** The hooks run by create/start/delete, in the order of the runtime spec's lifecycle. */
export const SUPPORTED_HOOKS = [
  "prestart",
  "createRuntime",
  "createContainer",
  "startContainer",
  "poststart",
  "poststop",
];

/** What this build of capsule supports; constant (no probing of the host). */
export function features(): Features {
  return {
    ociVersionMin: "1.0.0",
    ociVersionMax: OCI_VERSION,
    hooks: [...SUPPORTED_HOOKS],
    mountOptions: mountOptionNames(),
    linux: {
      namespaces: Object.keys(NAMESPACES).sort(),
      capabilities: [...CAPABILITIES],
      cgroup: { v1: true, v2: true, systemd: false, systemdUser: false },
      seccomp: {
        enabled: true,
        actions: [...SECCOMP_FEATURES.actions],
        operators: [...SECCOMP_FEATURES.operators],
        archs: [...SECCOMP_FEATURES.archs],
        knownFlags: [...SECCOMP_FEATURES.knownFlags],
        supportedFlags: [...SECCOMP_FEATURES.supportedFlags],
      },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: { "io.github.capsule.version": VERSION },
  };
}
