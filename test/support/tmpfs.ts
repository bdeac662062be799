/**
 * A small tmpfs for disk-full tests: a real filesystem of a fixed size, so a write past its end
 * fails with ENOSPC in the kernel, as on a full data disk. Needs root (mount(8)); where that is
 * not possible the caller skips with the reason returned.
 *
 *   const fs = await mountTmpfs(32 * 1024 * 1024);   // or a string: why not
 *   const filler = fillDisk(fs.path);                 // leaves no byte free
 *   filler.free();                                    // gives the space back
 *   await fs.unmount();
 */
import { execFile } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Tmpfs {
  readonly path: string;
  unmount(): Promise<void>;
}

function run(cmd: string, args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: 30_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) || 1 : 0, stderr }),
    );
  });
}

/** Mounts a tmpfs of `bytes`; returns a string saying why when it cannot (not root, no mount). */
export async function mountTmpfs(bytes: number): Promise<Tmpfs | string> {
  if (process.getuid?.() !== 0) return "needs root to mount a tmpfs";
  const path = mkdtempSync(join(tmpdir(), "petrel-tmpfs-"));
  const mounted = await run("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", path]);
  if (mounted.code !== 0) {
    rmSync(path, { recursive: true, force: true });
    return `mount -t tmpfs failed: ${mounted.stderr.trim()}`;
  }
  return {
    path,
    async unmount() {
      // Lazy, so a file some process still holds open cannot leave the mount behind.
      await run("umount", ["-l", path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** Writes a file in `dir` until the filesystem is full (ENOSPC); free() deletes it. */
export function fillDisk(dir: string): { readonly bytes: number; free(): void } {
  const file = join(dir, "filler");
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024, 0x2e);
  let bytes = 0;
  try {
    for (;;) {
      try {
        bytes += writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
        // The last chunk did not fit: fill the rest byte-wise in smaller pieces.
        let piece = chunk.length >> 1;
        while (piece > 0) {
          try {
            bytes += writeSync(fd, chunk, 0, piece);
          } catch {
            piece >>= 1;
          }
        }
        break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return {
    bytes,
    free: () => unlinkSync(file),
  };
}
