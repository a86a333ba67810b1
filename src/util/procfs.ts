// Small readers of /proc/<pid> shared by the daemon's parts (probe, migrator, balancer). The stat
// line is split after the command, which may hold spaces and parentheses: `fields[0]` is field 3
// of proc(5) (state), so field n is `fields[n - 3]`.
import { closeSync, openSync, readSync } from 'node:fs'

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ, 100 on Linux). */
export const CLK_TCK = 100

/** The fields of a /proc/<pid>/stat text after the command ([] if it is not one). */
export function statFields (statText: string): string[] {
  const i = statText.lastIndexOf(') ')
  return i < 0 ? [] : statText.slice(i + 2).split(' ')
}

/** The state letter of a stat text ('' if it is not one). */
export function statState (statText: string): string {
  const i = statText.lastIndexOf(') ')
  return i < 0 ? '' : statText.charAt(i + 2)
}

const small = Buffer.allocUnsafe(4096)

/**
 * The text of a file of /proc that one read gives whole (stat, status, syscall, schedstat: the
 * kernel makes them at once), read into one reused buffer: an open, one read and a close, where
 * readFileSync also stats the file, reads again for the end and allocates. A probe that reads the
 * stat of every thread of a node ten times a second spends a third of the time. A text that fills
 * the buffer is read on to its end. Throws as readFileSync does (ENOENT: gone). Every reader of
 * this module goes through it.
 */
export function readProcText (path: string, encoding: BufferEncoding = 'latin1'): string {
  const fd = openSync(path, 'r')
  try {
    const n = readSync(fd, small, 0, small.length, null)
    if (n < small.length) return small.toString(encoding, 0, n)
    const parts = [Buffer.from(small)]
    for (;;) {
      const b = Buffer.allocUnsafe(65536)
      const k = readSync(fd, b, 0, b.length, null)
      if (k === 0) break
      parts.push(b.subarray(0, k))
    }
    return Buffer.concat(parts).toString(encoding)
  } finally { closeSync(fd) }
}

/** num_threads (field 20) of a stat text (0 if it is not one). */
export function statThreads (statText: string): number {
  return Number(statFields(statText)[17] ?? 0)
}

/** The stat fields of a process (see statFields), or undefined when it is gone. */
export function readStat (pid: number, procRoot = '/proc'): string[] | undefined {
  try { return statFields(readProcText(`${procRoot}/${pid}/stat`)) } catch { return undefined }
}

/** utime + stime of stat fields, in clock ticks. */
export function cpuTicks (fields: string[]): number {
  return Number(fields[11]) + Number(fields[12])
}

/** Seconds since boot. */
export function uptime (): number {
  return Number(readProcText('/proc/uptime').split(' ')[0])
}

/** Seconds a process has run, from its stat fields (starttime, field 22), or its pid (0 when gone). */
export function processAge (p: number | string[], now = uptime()): number {
  const f = typeof p === 'number' ? readStat(p) : p
  return f === undefined || f.length < 20 ? 0 : Math.max(0, now - Number(f[19]) / CLK_TCK)
}

/** The value of a line of /proc/<pid>/status (`Key:<tab>value`), or undefined when gone or absent. */
export function statusField (pid: number | 'self', key: string, procRoot = '/proc'): string | undefined {
  let text: string
  try { text = readProcText(`${procRoot}/${pid}/status`, 'utf8') } catch { return undefined }
  const head = `${key}:`
  for (const line of text.split('\n')) if (line.startsWith(head)) return line.slice(head.length).trim()
  return undefined
}

/** Resident memory of a process in bytes (VmRSS), 0 when gone. */
export function residentBytes (pid: number): number {
  return (parseInt(statusField(pid, 'VmRSS') ?? '0', 10) || 0) * 1024
}

/** Real and effective uid of a process, or undefined when gone. */
export function readUids (pid: number | 'self', procRoot = '/proc'): { real: number, effective: number } | undefined {
  const f = statusField(pid, 'Uid', procRoot)?.split(/\s+/)
  return f === undefined || f.length < 2 ? undefined : { real: Number(f[0]), effective: Number(f[1]) }
}

/** Bytes per page of stat's rss (x86-64, the only architecture the migration engine supports). */
export const PAGE_SIZE = 4096

/** What ps shows of a process: CPU ticks, state letter, memory in bytes, command line (NUL-separated, as /proc/<pid>/cmdline). */
export interface PsInfo { utime: number, stime: number, state: string, rss: number, vsize: number, cmdline: string }

/** PsInfo of a local process, or undefined when it is gone. */
export function psInfo (pid: number, procRoot = '/proc'): PsInfo | undefined {
  const f = readStat(pid, procRoot)
  if (f === undefined || f.length < 22) return undefined
  let cmdline = ''
  try { cmdline = readProcText(`${procRoot}/${pid}/cmdline`, 'utf8') } catch {}
  return { utime: Number(f[11]), stime: Number(f[12]), state: f[0], vsize: Number(f[20]), rss: Number(f[21]) * PAGE_SIZE, cmdline }
}

/**
 * Nanoseconds the main thread of a process has run and has waited, runnable, for a CPU
 * (/proc/<pid>/schedstat: on the CPU, on a run queue; a CFS-throttled task counts as waiting), or
 * undefined when gone or not available (kernels without schedstats).
 */
export function readSchedstat (pid: number, procRoot = '/proc'): { run: number, wait: number } | undefined {
  let f: string[]
  try { f = readProcText(`${procRoot}/${pid}/schedstat`).trim().split(' ') } catch { return undefined }
  const run = Number(f[0])
  const wait = Number(f[1])
  return Number.isFinite(run) && Number.isFinite(wait) ? { run, wait } : undefined
}
