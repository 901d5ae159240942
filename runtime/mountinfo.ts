// /proc/self/mountinfo, parsed (proc(5)): how create and delete find the rootfs bind they made
// in the host's mount namespace (the init's --no-pivot detaching is rootfs.c's own).
// Pure functions and one read; no imports.

/** One line of mountinfo. */
export interface MountEntry {
  /** Mount id (field 1): unique while the mount exists. */
  id: number;
  parent: number;
  /** The directory of the filesystem that is mounted (field 4), "/" for a whole filesystem. */
  root: string;
  /** Where it is mounted, as the reading process sees it (its root), unescaped. */
  mountPoint: string;
  fsType: string;
}

/** "\040" and the other octal escapes of mountinfo back to characters. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses the text of /proc/<pid>/mountinfo; malformed lines are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    if (f.length < 10 || sep < 0) continue;
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      root: unescape(f[3]),
      mountPoint: unescape(f[4]),
      fsType: f[sep + 1],
    });
  }
  return out;
}

/** This process's mount table (its mount namespace, seen from its root). */
export function readMountinfo(): MountEntry[] {
  return parseMountinfo(Deno.readTextFileSync("/proc/self/mountinfo"));
}
