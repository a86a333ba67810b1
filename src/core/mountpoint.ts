// Mount point housekeeping for the daemon: find a stale FUSE mount left by a crash and clear it,
// refuse to mount over a live one. Only async calls with timeouts: a hung mount must not hang us.
import { readFile, stat } from 'node:fs/promises'
import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import debug from '../util/log.js'

const log = debug('hpcfs:mountpoint')

/** Mount points listed in /proc/self/mountinfo (field 5, octal escapes decoded). */
export async function mountedPaths (): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8')
  return text.split('\n').filter(Boolean).map(l => l.split(' ')[4].replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
}

function withTimeout<T> (p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<'timeout'>(resolve => { t = setTimeout(() => resolve('timeout'), ms) })]).finally(() => clearTimeout(t))
}

export function fusermountU (path: string): Promise<void> {
  return new Promise(resolve => execFile('fusermount', ['-uz', path], err => {
    if (err) log('fusermount -uz %s: %s', path, err.message)
    resolve()
  }))
}

/** Clears a dead mount at path; throws if a live filesystem is mounted there. */
export async function prepareMountpoint (path: string): Promise<void> {
  const abs = resolve(path)
  if (!(await mountedPaths()).includes(abs)) return
  const r = await withTimeout(stat(abs).then(() => 'alive' as const, (e: NodeJS.ErrnoException) => e.code ?? 'error'), 2000)
  if (r === 'alive') throw new Error(`${abs} is already mounted and answering (another hpcd?); unmount it first`)
  log('clearing stale mount on %s (%s)', abs, r)
  await fusermountU(abs)
}
