// How layers above the runtime (network, image) attach to the lifecycle, as CNI attaches
// beside runc: create calls their `prepare` and `created`, delete their `deleted`.
import type { MountOp } from "./plan.ts";
import type { Spec } from "./spec.ts";
import type { ContainerRecord } from "./state.ts";

/** What create knows about a container, handed to extensions. */
export interface CreateContext {
  /** Container id. */
  id: string;
  /** Host pid of the container's init (its namespaces exist, its program has not run). */
  pid: number;
  /** Absolute bundle directory. */
  bundle: string;
  /** The validated config.json (with the changes of earlier extensions). */
  spec: Spec;
  /** The container's record, as kept in state.json. */
  record: ContainerRecord;
  /** The container's state directory (for files an extension keeps). */
  dir: string;
  /** Options an extension registered itself for (e.g. network: { name, ports }). */
  options: Record<string, unknown>;
}

/** What `prepare` gets: the create context, and a way to keep data before making anything. */
export interface PrepareContext extends Omit<CreateContext, "pid" | "record"> {
  /**
   * Stores `data` in the container's state now (as `ext[name]`), so that a crash before
   * `prepare` returns is still undone by `delete -f`: call it before mounting or allocating.
   */
  save(data: unknown): void;
}

/** What an extension's `prepare` gives back. */
export interface Prepared {
  /** Extra mounts for the container (e.g. /etc/hosts), as the init's plan takes them. */
  mounts?: MountOp[];
  /** Kept at once in the container's state (`ext[name]`): a crash after this is undone by delete. */
  data?: unknown;
  /** Overrides of the root filesystem (an image's overlay): absolute host path. */
  rootfs?: string;
}

/**
 * A layer above the runtime (network, image) that attaches to the lifecycle, as CNI attaches
 * beside runc. `prepare` runs before the init's plan is made (it may allocate an address, add
 * mounts such as /etc/hosts, mount an overlay root); `created` once the container's
 * namespaces exist (the init waits, nothing of the program ran), and may return new data;
 * `deleted` on delete, and on any create that failed after `prepare` began. `deleted` must be
 * idempotent and cope with data from a `prepare` that stopped halfway.
 */
export interface Extension {
  /** Its key in `CreateOptions.ext` and in the record's `ext`. */
  name: string;
  /** Before the init's plan is made: may allocate, add mounts, replace the root. */
  prepare?(ctx: PrepareContext): Promise<Prepared | void> | Prepared | void;
  /** Once the namespaces exist; what it returns replaces its data in the record. */
  created?(ctx: CreateContext): Promise<unknown> | unknown;
  /** On delete, and when create failed after `prepare` began; must be idempotent. */
  deleted?(record: ContainerRecord, data: unknown): Promise<void> | void;
  /**
   * A stopped container whose state is kept (an image container, docker stop semantics) gives
   * back what it need not hold while stopped (network: address, published ports); what it
   * returns replaces its data in the record, so that a later `deleted` finds nothing to
   * release twice. Called by stop.ts releaseStopped under the container's lock; must be
   * idempotent and leave what another container holds alone. Throws a CapsuleError naming
   * what it could not give back (its data is then kept, for `deleted` to finish).
   */
  stopped?(record: ContainerRecord, data: unknown): Promise<unknown> | unknown;
  /**
   * Before a create of `id` with these options (its `ext[name]`), refuses what `prepare` would
   * refuse for a resource another container holds (network: a host port it publishes), making
   * and changing nothing: `image start` asks before it deletes the stopped run's state, so a
   * refused start leaves the container as it was. Throws a CapsuleError as `prepare` would.
   */
  check?(id: string, options: unknown): Promise<void> | void;
  /**
   * `delete -f` of a container whose state.json is damaged (no record, no data): release
   * everything this layer holds for `id`, found from the id alone (names derived from it,
   * reservations keyed by it). Idempotent; throws a CapsuleError naming what it could not
   * remove. Without it, `deleted` is called with a record of the id only and no data.
   */
  releaseAllFor?(id: string): Promise<void> | void;
}
