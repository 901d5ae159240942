/**
 * capsule as a library: everything the CLI does is callable from TypeScript.
 *
 * Containers from OCI bundles (runtime spec "Operations"), through a {@link Runtime}:
 *
 * ```ts
 * import { Capsule } from "./mod.ts";
 * const capsule = new Capsule({ root: "/var/run/capsule" });
 * const rt = await capsule.runtime();
 * const code = await rt.run("web", { bundle: "/srv/bundles/web" });
 * ```
 *
 * Images, volumes and bridge networks, as `capsule image|volume|network` do:
 *
 * ```ts
 * await capsule.importImage("busybox", "/tmp/busybox.tar");
 * await capsule.createNetwork("appnet", { subnet: "10.77.0.0/24" });
 * const { id, code } = await capsule.runImage({
 *   image: "busybox",
 *   command: ["sh", "-c", "ip addr show eth0"],
 *   network: { name: "appnet", ports: ["8080:80"] },
 * });
 * await capsule.destroyContainer(id);
 * ```
 *
 * Errors meant for the user are {@link CapsuleError}s (a {@link NotFoundError} for an unknown
 * container, a {@link StateTransitionError} for an illegal move of the lifecycle); anything
 * else is a bug. Most operations need root, as the CLI does.
 * @module
 */
export { Capsule, type ImageRunRequest, type NetworkAttachment } from "./lib/capsule.ts";
export {
  type CapsuleOptions,
  DEFAULT_STORE,
  defaultRoot,
  openRuntime,
  type RuntimeNeeds,
} from "./lib/open.ts";
export {
  type CreateContext,
  type CreateOptions,
  type ExecOptions,
  type Extension,
  type OciState,
  type PrepareContext,
  type Prepared,
  type ProcessInfo,
  Runtime,
  type RuntimeContext,
  type RuntimeOptions,
} from "./runtime/container.ts";
export type { RunOptions } from "./runtime/run.ts";
export type { InitInstance, StopOptions } from "./runtime/stop.ts";
export type { DeleteOptions } from "./runtime/delete.ts";
export { CapsuleError, NotFoundError, StateTransitionError, UsageError } from "./runtime/errors.ts";
export { ID_PATTERN, validateId } from "./runtime/ids.ts";
export { parseSignal, signalName } from "./runtime/signals.ts";
export {
  defaultSpec,
  type Device,
  type Hook,
  type Mount,
  type Namespace,
  OCI_VERSION,
  type Process,
  rootlessSpec,
  type Spec,
} from "./runtime/spec.ts";
export { parseConfig, validateConfig } from "./runtime/config.ts";
export {
  buildInitPlan,
  type Caps,
  type DeviceOp,
  type HookPlan,
  type InitPlacement,
  type InitPlan,
  type MountOp,
  parseMountOptions,
  type PlanOptions,
  type ProcessPlan,
} from "./runtime/plan.ts";
export type { SeccompFilter } from "./runtime/seccomp.ts";
export { LOG_DEFAULTS, type LogLimits } from "./runtime/log_writer.ts";
export {
  type ContainerRecord,
  DEFAULT_ROOT,
  type HookRecord,
  type PausedProbe,
  StateStore,
  type Status,
} from "./runtime/state.ts";
export {
  type CgroupDriver,
  type CgroupPaths,
  type CgroupStats,
  detectCgroups,
  type DetectOptions,
  type LinuxDeviceCgroup,
  type LinuxResources,
  type MemoryEntry,
  parseMemory,
  type ThrottleDevice,
  toRuncStats,
} from "./runtime/cgroups/mod.ts";
export type { ImageConfig, ImageRecord } from "./image/store.ts";
export type { VolumeInfo } from "./image/run.ts";
export type { NetworkInfo, NetworkRecord } from "./network/mod.ts";
export { VERSION } from "./runtime/version.ts";
