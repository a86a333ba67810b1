// What a child process inherits. Node opens every descriptor close-on-exec, but a native library
// need not: libfuse2 (under fuse-native) keeps /dev/fuse and its end of the socket to the
// auto_unmount watchdog (fusermount) without FD_CLOEXEC, and a descriptor inherited from whoever
// started the daemon may have none either. Node has no fcntl to set the flag, so a child is given
// its stdio and nothing else: every other inheritable descriptor becomes /dev/null in the child.
//
// Why it matters: a helper holding the daemon's /dev/fuse keeps a dead daemon's tree hanging
// instead of failing, and a helper holding the watchdog's socket keeps the watchdog waiting, so
// that when the helper ends it unmounts the tree of the daemon restarted in the meantime.
import { openSync, readdirSync, readFileSync } from 'node:fs'

const O_CLOEXEC = 0o2000000

/** This process's descriptors from `from` up that are not close-on-exec (a child would inherit them). */
export function inheritableFds (from = 3): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name)
    if (fd < from) continue
    let info: string
    try { info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8') } catch { continue } // e.g. the listing's own descriptor
    const m = /^flags:\s+([0-7]+)$/m.exec(info)
    if (m !== null && (parseInt(m[1], 8) & O_CLOEXEC) === 0) out.push(fd)
  }
  return out.sort((a, b) => a - b)
}

let devNull: number | undefined

/**
 * `stdio` for child_process.spawn, extended so that the child gets /dev/null in place of every
 * other descriptor it would inherit: it holds what it is given and nothing of ours.
 */
export function onlyStdio<T> (stdio: readonly T[]): Array<T | 'ignore' | number> {
  const extra = inheritableFds(stdio.length)
  if (extra.length === 0) return [...stdio]
  devNull ??= openSync('/dev/null', 'r') // close-on-exec itself, as everything Node opens
  const out: Array<T | 'ignore' | number> = [...stdio]
  // 'ignore' beyond fd 2 leaves a slot as it is: ours are close-on-exec there
  for (let fd = stdio.length; fd <= extra[extra.length - 1]; fd++) out.push(extra.includes(fd) ? devNull : 'ignore')
  return out
}
