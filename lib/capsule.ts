// capsule as a library object: what the CLI's commands do, callable from TypeScript without
// it. Containers from bundles go through `runtime()` (a Runtime); images, volumes and
// networks are methods here. Image and network code loads only when a method needs it.
import type { Runtime } from "../runtime/container.ts";
import type { ImageRecord } from "../image/store.ts";
import type { VolumeInfo } from "../image/run.ts";
import type { NetworkInfo, NetworkRecord, Networks } from "../network/mod.ts";
import {
  type CapsuleOptions,
  DEFAULT_STORE,
  defaultRoot,
  openRuntime,
  type RuntimeNeeds,
} from "./open.ts";

/** How to reach a container's network (`--network`, `-p`, `--link`). */
export interface NetworkAttachment {
  /** Network name (`Capsule.createNetwork`); default: capsule_bridge0, made on first use. */
  name?: string;
  /** Published ports, `HOST:CTR[/tcp|/udp]` (e.g. "8080:80"). */
  ports?: string[];
  /** `ID:ALIAS`: ALIAS resolves to that container's address in /etc/hosts. */
  links?: string[];
}

/** A container to run from an image (`capsule image run`'s flags). */
export interface ImageRunRequest {
  /** Image name (`Capsule.importImage`). */
  image: string;
  /** Container id (`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`); default: 12 random hex digits. */
  id?: string;
  /** The command, replacing the image's Cmd (default: the image's Entrypoint + Cmd). */
  command?: string[];
  /** Replaces the image's Entrypoint. */
  entrypoint?: string;
  /** Working directory in the container (absolute). */
  cwd?: string;
  /** Host name (default: the id). */
  hostname?: string;
  /** `KEY=VALUE` (or `KEY`, taken from this process's environment), over the image's Env. */
  env?: string[];
  /** `UID[:GID]` or a user name of the image's /etc/passwd. */
  user?: string;
  /** cpu shares (1024 = one share). */
  cpuShares?: number;
  /** Memory limit in bytes. */
  memory?: number;
  /** `KEY=VALUE` annotations. */
  labels?: string[];
  /** `CTR` (anonymous), `NAME:CTR` (named volume), `/HOST:CTR` (host directory); `:ro` after. */
  volumes?: string[];
  /** Mount the container's root read-only. */
  readOnly?: boolean;
  /** Give the program a terminal (foreground only). */
  tty?: boolean;
  /** Return once started (output to the container's log) instead of waiting for the exit. */
  detach?: boolean;
  /** Remove the writable layer and anonymous volumes when the container is deleted. */
  rm?: boolean;
  /** Attach to a bridge network (default: none). */
  network?: NetworkAttachment;
}

/**
 * Everything the capsule CLI does, for a TypeScript program: containers (through `runtime()`),
 * images, volumes and networks under one state root and one store. Every method throws
 * CapsuleError (exported by mod.ts) with a message naming the value and what to do; most need
 * root, as the CLI does.
 *
 * ```ts
 * const capsule = new Capsule({ root: "/run/capsule", store: "/var/lib/capsule" });
 * await capsule.importImage("busybox", "/tmp/busybox.tar");
 * await capsule.createNetwork("appnet", { subnet: "10.77.0.0/24" });
 * const { code } = await capsule.runImage({ image: "busybox", command: ["true"], network: { name: "appnet" } });
 * ```
 */
export class Capsule {
  /** State of containers and networks (`capsule --root`). */
  readonly root: string;
  /** Images and volumes (`capsule --store`). */
  readonly store: string;
  readonly #opts: CapsuleOptions;
  #networks?: Networks;

  /** Reads nothing yet: every method reaches the root and the store when called. */
  constructor(opts: CapsuleOptions = {}) {
    this.root = opts.root ?? defaultRoot();
    this.store = opts.store ?? DEFAULT_STORE;
    this.#opts = { ...opts, root: this.root, store: this.store };
  }

  /**
   * The container lifecycle (create, start, run, kill, delete, exec, state, list, ps, update,
   * pause, resume, stats; runtime spec "Operations") for bundles, with the extensions `needs`
   * asks for: `{ network: true }` to pass `ext: { network: NetworkAttachment }` to create/run,
   * `{ id }` to act on a container made with them.
   */
  runtime(needs: RuntimeNeeds = {}): Promise<Runtime> {
    return openRuntime(this.#opts, needs);
  }

  // ---- images ---------------------------------------------------------------------------------

  /**
   * Imports an image from a file: a rootfs tarball (docker export), a docker-archive (docker
   * save) or an OCI image layout (directory or tar; image-spec "Image Layout"), optionally gzip
   * or zstd compressed. Returns its record (`size` in bytes). Throws CapsuleError for a bad
   * name, an existing image, an unreadable or unsafe archive; nothing stays behind then.
   * `progress`: draw a progress bar on stdout (default: when stdout is a terminal).
   */
  async importImage(
    name: string,
    file: string,
    opts: { progress?: boolean } = {},
  ): Promise<ImageRecord> {
    const { importImage } = await import("../image/import.ts");
    return await importImage({ store: this.store, name, file, progress: opts.progress });
  }

  /** The images of the store, by name. */
  async listImages(): Promise<ImageRecord[]> {
    const { listImages } = await import("../image/store.ts");
    return listImages(this.store);
  }

  /** An image's record; throws CapsuleError if there is no such image. */
  async getImage(name: string): Promise<ImageRecord> {
    const { readImage } = await import("../image/store.ts");
    return readImage(this.store, name);
  }

  /**
   * Removes an image. Throws CapsuleError while a container uses it, or while a deleted
   * container's kept writable layer sits on it (`force` removes those layers with it; it also
   * makes a missing image no error).
   */
  async deleteImage(name: string, opts: { force?: boolean } = {}): Promise<void> {
    const { deleteImage } = await import("../image/run.ts");
    deleteImage(this.store, this.root, name, opts.force === true);
  }

  /**
   * Runs a container from an image: its bundle under `<store>/containers/<id>` (the OCI spec
   * from the image config with the request over it), root on an overlay of the image, then
   * create + start (runtime spec "Lifecycle"). In the foreground, waits and returns the
   * program's exit status (128+N when killed by signal N) and deletes the container (its
   * writable layer stays until `destroyContainer`, unless `rm`); detached, returns code 0 once
   * started, and prints the id on stdout as `capsule image run -d` does. Throws CapsuleError
   * for an unknown image, a bad request, an id in use, or a create that failed (nothing is
   * left then).
   */
  async runImage(req: ImageRunRequest): Promise<{ id: string; code: number }> {
    const { runImage, randomId } = await import("../image/run.ts");
    const id = req.id ?? randomId();
    const network = req.network
      ? { name: req.network.name, ports: req.network.ports ?? [], links: req.network.links ?? [] }
      : undefined;
    const code = await runImage({
      ...req,
      id,
      store: this.store,
      root: this.root,
      command: req.command ?? [],
      env: req.env ?? [],
      labels: req.labels ?? [],
      volumes: req.volumes ?? [],
      network,
    }, (needs) => this.runtime(needs));
    return { id, code };
  }

  /**
   * Deletes a container made by `runImage` with its writable layer and anonymous volumes
   * (named volumes and host directories stay). Throws CapsuleError if it is not stopped (unless
   * `force`, which kills it first) or does not exist.
   */
  async destroyContainer(id: string, opts: { force?: boolean } = {}): Promise<void> {
    const { destroyContainer } = await import("../image/run.ts");
    await destroyContainer(
      this.store,
      this.root,
      id,
      opts.force === true,
      (needs) => this.runtime(needs),
    );
  }

  // ---- volumes --------------------------------------------------------------------------------

  /** Creates an empty named volume; returns its host path. Throws CapsuleError if it exists. */
  async createVolume(name: string): Promise<string> {
    const { createVolume } = await import("../image/run.ts");
    return createVolume(this.store, name);
  }

  /** The named volumes, with the containers that use them. */
  async listVolumes(): Promise<VolumeInfo[]> {
    const { listVolumes } = await import("../image/run.ts");
    return listVolumes(this.store);
  }

  /**
   * Removes a named volume and its data. Throws CapsuleError if it does not exist or a
   * container uses it.
   */
  async removeVolume(name: string): Promise<void> {
    const { removeVolume } = await import("../image/run.ts");
    removeVolume(this.store, name);
  }

  // ---- networks -------------------------------------------------------------------------------

  async #nets(): Promise<Networks> {
    const { Networks } = await import("../network/mod.ts");
    return this.#networks ??= new Networks(this.root, undefined, this.store);
  }

  /**
   * Creates a bridge network: `subnet` an IPv4 CIDR from /16 to /30 ("10.89.0.0/24"), the
   * gateway its first address unless given, outbound traffic NATed. Throws CapsuleError for a
   * bad name or subnet, an existing network, or a subnet overlapping another network or a host
   * route.
   */
  async createNetwork(
    name: string,
    opts: { subnet: string; gateway?: string; driver?: "bridge" },
  ): Promise<NetworkRecord> {
    return await (await this.#nets()).create(name, opts);
  }

  /** Deletes a network; throws CapsuleError while containers are attached, or if unknown. */
  async deleteNetwork(name: string): Promise<void> {
    await (await this.#nets()).delete(name);
  }

  /** The networks, with how many containers each has attached. */
  async listNetworks(): Promise<(NetworkRecord & { containers: number })[]> {
    return (await this.#nets()).list();
  }

  /** A network and its containers (id, address); throws CapsuleError if unknown. */
  async showNetwork(name: string): Promise<NetworkInfo> {
    return (await this.#nets()).show(name);
  }

  /** Deletes every network without containers; returns their names. */
  async pruneNetworks(): Promise<string[]> {
    return await (await this.#nets()).prune();
  }
}
