/**
 * capsule as a library: everything the CLI does is callable from TypeScript.
 *
 * ```ts
 * import { Runtime, detectCgroups } from "./mod.ts";
 * const rt = new Runtime({ root: "/var/run/capsule", cgroups: () => detectCgroups() });
 * const code = await rt.run("web", { bundle: "/srv/bundles/web" });
 * ```
 * @module
 */
export {
  type CreateContext,
  type CreateOptions,
  type Extension,
  type OciState,
  Runtime,
  type RuntimeOptions,
} from "./runtime/container.ts";
export { CapsuleError, NotFoundError, StateTransitionError, UsageError } from "./runtime/errors.ts";
export { ID_PATTERN, validateId } from "./runtime/ids.ts";
export { parseSignal, signalName } from "./runtime/signals.ts";
export { defaultSpec, OCI_VERSION, type Spec } from "./runtime/spec.ts";
export { parseConfig, validateConfig } from "./runtime/config.ts";
export { buildInitPlan, type InitPlan, type MountOp, parseMountOptions } from "./runtime/plan.ts";
export { type ContainerRecord, DEFAULT_ROOT, StateStore, type Status } from "./runtime/state.ts";
export {
  type CgroupDriver,
  type CgroupPaths,
  type CgroupStats,
  detectCgroups,
  type LinuxResources,
  parseMemory,
  toRuncStats,
} from "./runtime/cgroups/mod.ts";
export { VERSION } from "./runtime/version.ts";
