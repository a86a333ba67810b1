// Which processes hold a file open: for the decay/ hints, which act on the process that writes
// them (openMosix semantics) while a FUSE request does not say who sent it (fuse-native does not
// pass the caller's pid on).
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'

/** True when the descriptor was opened for writing (fdinfo's octal flags, O_ACCMODE not O_RDONLY). */
function writable (procRoot: string, pid: string, fd: string): boolean {
  try {
    const m = /^flags:\s*([0-7]+)$/m.exec(readFileSync(join(procRoot, pid, 'fdinfo', fd), 'utf8'))
    return m !== null && (parseInt(m[1], 8) & 3) !== 0
  } catch {
    return false
  }
}

/**
 * Pids (other than `except`) with a descriptor open on `path` (an absolute path, as /proc/<pid>/fd
 * shows it); with `writers`, only descriptors open for writing (a reader such as `grep -r` is not a writer).
 */
export function processesHolding (path: string, except = process.pid, procRoot = '/proc', writers = false): number[] {
  const out: number[] = []
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name) || Number(name) === except) continue
    let fds: string[]
    try { fds = readdirSync(join(procRoot, name, 'fd')) } catch { continue }
    for (const fd of fds) {
      try {
        if (readlinkSync(join(procRoot, name, 'fd', fd)) === path && (!writers || writable(procRoot, name, fd))) { out.push(Number(name)); break }
      } catch {
        // closed meanwhile
      }
    }
  }
  return out
}
