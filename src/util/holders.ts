// Which processes hold a file open: for the decay/ hints, which act on the process that writes
// them (openMosix semantics) while a FUSE request does not say who sent it (fuse-native does not
// pass the caller's pid on).
import { readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'

/** Pids (other than `except`) with a descriptor open on `path` (an absolute path, as /proc/<pid>/fd shows it). */
export function processesHolding (path: string, except = process.pid, procRoot = '/proc'): number[] {
  const out: number[] = []
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name) || Number(name) === except) continue
    let fds: string[]
    try { fds = readdirSync(join(procRoot, name, 'fd')) } catch { continue }
    for (const fd of fds) {
      try {
        if (readlinkSync(join(procRoot, name, 'fd', fd)) === path) { out.push(Number(name)); break }
      } catch {
        // closed meanwhile
      }
    }
  }
  return out
}
