// What a guest is waiting for on its stdin, or on another relayed input descriptor, read from /proc
// while it is blocked (pull mode, src/migrate/relay.ts). Home hands a remote process only the input
// it is about to consume, so that nothing waits unread in the remote's pipe when the process moves
// on (that would be lost). Below "fd 0" stands for the descriptor asked about.
//
// - read(0, buf, n), readv(0, ...), recvfrom(0, buf, n, ...), recvmsg(0, ...): it wants up to n
//   bytes, and a read takes all that is there.
// - poll/ppoll with fd 0 for input, select/pselect6 with fd 0 in the read set, epoll_wait on an
//   epoll set watching fd 0 for input (its /proc/<pid>/fdinfo lists the watched fds): it waits for
//   stdin to become readable. Blocked there, its stdin pipe is empty (a level-triggered wait would
//   have returned otherwise), so a full chunk may be handed over; whether it read all of it shows
//   when it blocks on stdin again. An edge-triggered epoll set only promises that the process
//   reads until EAGAIN, so it gets one byte at a time.
// - anything else (a poll on other descriptors, a sleep, a computation): no stdin is handed over.
import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs'
import { readProcText, statusField } from '../util/procfs.js'

export interface StdinWait {
  kind: 'read' | 'poll'
  /** bytes it may be handed now */
  n: number
}

/** Largest piece of stdin handed over at once. */
export const STDIN_CHUNK = 65536

const POLLIN = 0x1
const POLLRDNORM = 0x40
const EPOLLIN = 0x1
const EPOLLET = 0x80000000

/** /proc/PID/syscall: "nr arg0 ..." while blocked in a system call, "running" otherwise. */
export function syscallLine (pid: number): string {
  try { return readProcText(`/proc/${pid}/syscall`).trim() } catch { return '' }
}

/** syscallLine of each of the process's threads (none once it is gone). */
export function threadSyscallLines (pid: number): string[] {
  let tids: string[]
  try { tids = readdirSync(`/proc/${pid}/task`) } catch { return [] }
  return tids.map(t => { try { return readProcText(`/proc/${pid}/task/${t}/syscall`).trim() } catch { return '' } }).filter(l => l !== '')
}

/** Voluntary context switches of a process (-1 when it is gone). */
export function ctxtSwitches (pid: number): number {
  return Number(statusField(pid, 'voluntary_ctxt_switches') ?? -1)
}

/** Does an array of struct pollfd { int fd; short events; short revents; } ask fd (0) for input? */
export function pollfdsWatchStdin (buf: Buffer, fd = 0): boolean {
  for (let o = 0; o + 8 <= buf.length; o += 8) {
    if (buf.readInt32LE(o) === fd && (buf.readInt16LE(o + 4) & (POLLIN | POLLRDNORM)) !== 0) return true
  }
  return false
}

/** How an epoll set (its /proc/PID/fdinfo text) watches fd (0) for input: 'level', 'edge' or null. */
export function epollWatchesStdin (fdinfo: string, fd = 0): 'level' | 'edge' | null {
  for (const m of fdinfo.matchAll(/^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)/gm)) {
    if (m[1] !== String(fd)) continue
    const ev = parseInt(m[2], 16)
    if ((ev & EPOLLIN) === 0) continue
    return (ev & EPOLLET) !== 0 ? 'edge' : 'level'
  }
  return null
}

/** Reads len bytes of a process's memory at addr (root, or a process we may ptrace). */
function peek (pid: number, addr: number, len: number): Buffer | undefined {
  if (!(addr > 0) || len <= 0 || len > 1 << 16) return undefined
  let fd: number | undefined
  try {
    fd = openSync(`/proc/${pid}/mem`, 'r')
    const b = Buffer.alloc(len)
    return readSync(fd, b, 0, len, addr) === len ? b : undefined
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/** What the process blocked in the system call `line` (see syscallLine) waits for on stdin (or fd), or null. */
export function stdinWait (pid: number, line: string, fd = 0): StdinWait | null {
  const f = line.split(' ')
  if (f.length < 4 || !/^\d+$/.test(f[0])) return null
  const nr = Number(f[0])
  const a = f.slice(1).map(x => Number(x)) // hex ("0x...") or decimal
  switch (nr) {
    case 0: // read(fd, buf, count)
    case 45: // recvfrom(fd, buf, len, flags, ...)
      return a[0] === fd ? { kind: 'read', n: Math.max(1, Math.min(a[2], STDIN_CHUNK)) } : null
    case 19: // readv(fd, iov, iovcnt)
    case 47: // recvmsg(fd, msg, flags)
      return a[0] === fd ? { kind: 'read', n: 4096 } : null
    case 7: // poll(fds, nfds, timeout)
    case 271: { // ppoll(fds, nfds, tmo, sigmask, size)
      const buf = a[1] > 0 && a[1] <= 4096 ? peek(pid, a[0], a[1] * 8) : undefined
      return buf !== undefined && pollfdsWatchStdin(buf, fd) ? { kind: 'poll', n: STDIN_CHUNK } : null
    }
    case 23: // select(nfds, readfds, ...)
    case 270: { // pselect6(nfds, readfds, ...)
      const buf = a[0] > fd ? peek(pid, a[1] + (fd >> 3), 1) : undefined
      return buf !== undefined && (buf[0] & (1 << (fd & 7))) !== 0 ? { kind: 'poll', n: STDIN_CHUNK } : null
    }
    case 232: // epoll_wait(epfd, ...)
    case 281: // epoll_pwait
    case 441: { // epoll_pwait2
      let info: string
      try { info = readFileSync(`/proc/${pid}/fdinfo/${a[0]}`, 'utf8') } catch { return null }
      const how = epollWatchesStdin(info, fd)
      return how === null ? null : { kind: 'poll', n: how === 'level' ? STDIN_CHUNK : 1 }
    }
    default:
      return null
  }
}
