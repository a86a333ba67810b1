// Disk space before a move writes where it must: the image copy home keeps while a process leaves
// (its TMPDIR), the copy a guest keeps while it leaves its node and the guests' records (the node's
// state dir, state.ts). A move that would fill the disk is refused at once with the reason, instead
// of failing halfway through its image.
import { statfsSync } from 'node:fs'

/** Free bytes for this user on the filesystem of dir (null: dir cannot be looked at, e.g. not made yet). */
export function freeBytes (dir: string): number | null {
  try { const s = statfsSync(dir); return s.bavail * s.bsize } catch { return null }
}

/** Why `need` bytes cannot be written in dir now (null: they can, or dir is not known). */
export function spaceRefusal (dir: string | null, need: number): string | null {
  if (dir === null) return null
  const free = freeBytes(dir)
  if (free === null || free >= need) return null
  const mib = (n: number): string => (n / 2 ** 20).toFixed(1)
  return `no space left on the disk of ${dir} (${mib(free)} MiB free, ${mib(need)} MiB needed)`
}
