// What a descriptor of a process is, read from its /proc link: the migration relays unnamed pipes,
// sockets and terminals, and lets files and named FIFOs travel in the image by path.
import { readlinkSync } from 'node:fs'

export type StdioKind = 'pipe' | 'socket' | 'tty' | 'path' | 'closed'

/** What descriptor fd of process pid is (its /proc link, e.g. "pipe:[123]"), or '' when closed. */
export function fdLink (pid: number, fd: number): string {
  try { return readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return '' }
}

/**
 * What a standard descriptor of a process is: unnamed pipes, sockets and terminals are relayed by
 * the deputy; regular files and named FIFOs travel in the image by path (the cluster shares a file
 * namespace), and so does anything else.
 */
export function stdioKind (pid: number, fd: number): StdioKind {
  const link = fdLink(pid, fd)
  if (link === '') return 'closed'
  if (link.startsWith('pipe:')) return 'pipe'
  if (link.startsWith('socket:')) return 'socket'
  if (/^\/dev\/(pts\/|tty|console)/.test(link)) return 'tty'
  return 'path'
}
