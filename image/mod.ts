// The image extension: a container made by `capsule image run` gets its root from an overlay
// mounted on the host (lowerdir = the image's rootfs or its layers, top first, never written; upperdir/workdir = the
// container's own layer), so starting from a large image copies nothing. This module is on
// the container start path: it loads no tar code, no npm and no node: built-ins.
import type { Extension } from "../runtime/container.ts";
import { MS } from "../runtime/consts.ts";
import { CapsuleError } from "../runtime/errors.ts";
import type { ContainerRecord } from "../runtime/state.ts";
import * as libc from "../ffi/libc.ts";
import {
  destroyContainerFiles,
  exists,
  fsTypeOf,
  imageLowers,
  isMounted,
  paths,
  readImage,
  unmountAll,
} from "./store.ts";

/** What `image run` passes as `ext.image` in CreateOptions. */
export interface ImageRunOptions {
  image: string;
  /** Remove the writable layer and anonymous volumes when the container is deleted. */
  rm?: boolean;
}

/** What the container's state keeps as `ext.image` (kept before anything is mounted). */
export interface ImageData {
  image: string;
  imageId: string;
  store: string;
  dir: string;
  merged: string;
  rm: boolean;
  /** Shown by `capsule state`. */
  summary: { image: string };
}

/** overlayfs parses "," and ":" in its options; the store path must not hold them. */
function overlayPath(p: string): string {
  if (/[,:\\]/.test(p)) {
    throw new CapsuleError(
      `Cannot use store path "${p}" for an overlay: it holds ",", ":" or "\\"; ` +
        `choose a --store without them`,
    );
  }
  return p;
}

/**
 * Mounts the container's overlay root at `<dir>/merged`; returns its path. `lower` is one
 * directory or a list, top first (an image's layers).
 */
export function mountOverlay(lower: string | string[], dir: string): string {
  const lowers = typeof lower === "string" ? [lower] : lower;
  const upper = `${dir}/upper`, work = `${dir}/work`, merged = `${dir}/merged`;
  for (const d of [upper, work, merged]) Deno.mkdirSync(d, { recursive: true, mode: 0o755 });
  // The writable layer's root takes the image root's mode (overlay shows upper's root).
  const st = Deno.statSync(lowers[0]);
  Deno.chmodSync(upper, (st.mode ?? 0o755) & 0o7777);
  if (Deno.uid() === 0) Deno.chownSync(upper, st.uid ?? 0, st.gid ?? 0);
  if (isMounted(merged)) return merged;
  const data = `lowerdir=${lowers.map(overlayPath).join(":")},upperdir=${
    overlayPath(upper)
  },workdir=${overlayPath(work)}`;
  if (data.length > 4000) {
    throw new CapsuleError(
      `Cannot mount the container's overlay root: its ${lowers.length} layers make the mount ` +
        `options longer than a page (${data.length} bytes); choose a shorter --store path`,
    );
  }
  try {
    libc.mount("overlay", merged, "overlay", MS.NODEV, data);
  } catch (e) {
    const fs = fsTypeOf(dir);
    if (fs === "overlay") {
      // overlayfs refuses an upper layer on overlayfs (EINVAL): capsule inside a container.
      throw new CapsuleError(
        `Cannot mount the container's overlay root at ${merged}: ${(e as Error).message}; ` +
          `the store holding ${dir} is on ${fs}, which overlayfs does not take as a writable ` +
          `layer (is capsule running inside a container?): choose a --store on ext4, xfs or ` +
          `tmpfs (a volume or bind mount of the host, or e.g. --store /dev/shm/capsule)`,
      );
    }
    throw new CapsuleError(
      `Cannot mount the container's overlay root at ${merged}: ${
        (e as Error).message
      } (does the kernel have overlayfs, and is ${dir} on ext4, xfs or tmpfs? If not, ` +
        `choose a --store there)`,
    );
  }
  return merged;
}

export function imageExtension(opts: { root: string; store: string }): Extension {
  return {
    name: "image",
    prepare(ctx) {
      const o = ctx.options.image as ImageRunOptions | undefined;
      if (!o) return;
      const image = readImage(opts.store, o.image);
      const dir = paths.container(opts.store, ctx.id);
      const data: ImageData = {
        image: image.name,
        imageId: image.id,
        store: opts.store,
        dir,
        merged: `${dir}/merged`,
        rm: o.rm === true,
        summary: { image: image.name },
      };
      if (!exists(dir)) {
        throw new CapsuleError(`Cannot create container "${ctx.id}": ${dir} does not exist`);
      }
      ctx.save(data); // before the mount: a crash after it is undone by delete -f
      const merged = mountOverlay(imageLowers(opts.store, image), dir);
      return { rootfs: merged, data };
    },
    deleted(record: ContainerRecord, raw: unknown) {
      const data = raw as ImageData | undefined;
      // A create that failed inside prepare has no data yet: the paths follow from the id.
      const dir = data?.dir ?? paths.container(opts.store, record.id);
      if (data?.rm) destroyContainerFiles(data.store, record.id);
      else unmountAll(data?.merged ?? `${dir}/merged`);
    },
  };
}
