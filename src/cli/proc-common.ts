// Shared pieces of the per-process tools (migrate, mosrun, mps): Linux /proc reading (stat, uids,
// tty names), pid arguments, node state from the tree, and the MOSIX permission rule.
import { readFileSync, readdirSync } from 'node:fs'
import { CliError, UsageError, type Tree } from './common.js'
import { PAGE_SIZE, readUids, statFields } from '../util/procfs.js'

/** Highest pid Linux can hand out (PID_MAX_LIMIT on 64-bit). */
export const PID_MAX = 4194304

/** A pid argument: decimal 1..PID_MAX, else a UsageError. */
export function parsePid (s: string): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`bad process id "${s}" (expected a number)`)
  const n = Number(s)
  if (n < 1 || n > PID_MAX) throw new UsageError(`process id ${s} out of range 1..${PID_MAX}`)
  return n
}

/** The fields of /proc/PID/stat the tools use. */
export interface ProcStat {
  pid: number
  comm: string
  state: string
  ppid: number
  pgrp: number
  ttyNr: number
  tpgid: number
  /** utime + stime, in clock ticks. */
  ticks: number
  /** Start time, clock ticks after boot. */
  startTicks: number
  /** Virtual memory size in bytes. */
  vsize: number
  /** Resident set size in bytes. */
  rss: number
}

/** /proc/PID/stat parsed (comm may hold spaces and parentheses), or undefined when gone. */
export function readProcStat (pid: number | 'self', procfs = '/proc'): ProcStat | undefined {
  let text: string
  try {
    text = readFileSync(`${procfs}/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  if (open < 0 || close < open) return undefined
  const rest = statFields(text.trimEnd())
  // rest[0] is field 3 (state); field n is rest[n - 3].
  const f = (n: number): number => Number(rest[n - 3])
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: f(4),
    pgrp: f(5),
    ttyNr: f(7),
    tpgid: f(8),
    ticks: f(14) + f(15),
    startTicks: f(22),
    vsize: f(23),
    rss: f(24) * PAGE_SIZE
  }
}

/** Control characters shown as `?`, as ps does: one process, one line. */
export function printable (s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?')
}

/** The command line with spaces for the NULs, or `[comm]` when empty (kernel threads, zombies). */
export function readCommand (pid: number, comm: string, procfs = '/proc'): string {
  try {
    const raw = readFileSync(`${procfs}/${pid}/cmdline`, 'utf8').replace(/\0+$/, '')
    if (raw !== '') return printable(raw.replace(/\0/g, ' '))
  } catch {
    // gone, or not allowed: fall back to comm
  }
  return `[${printable(comm)}]`
}

/** All pids in /proc, ascending. */
export function allPids (procfs = '/proc'): number[] {
  return readdirSync(procfs).filter(n => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
}

/** A tty name from stat's tty_nr for the simple cases (pts, tty, ttyS, console), else `?`. */
export function ttyName (ttyNr: number): string {
  if (!Number.isFinite(ttyNr) || ttyNr === 0) return '?'
  const major = (ttyNr >> 8) & 0xfff
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00)
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`
  if (major === 4 && minor < 64) return `tty${minor}`
  if (major === 4) return `ttyS${minor - 64}`
  if (major === 5 && minor === 1) return 'console'
  return '?'
}

/** Clock ticks as `M:SS` (USER_HZ is 100 on every Linux architecture node runs on). */
export function cpuTime (ticks: number, hz = 100): string {
  const s = Math.floor((Number.isFinite(ticks) ? ticks : 0) / hz)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

/**
 * MOSIX: "if you can kill it, you may migrate it". Root may migrate anything; others only
 * processes whose real or effective uid is their real or effective uid. Throws a CliError
 * `no such process PID` or `PID: not allowed (...)`.
 */
export function checkMayMigrate (pid: number, procfs = '/proc'): void {
  try {
    process.kill(pid, 0)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ESRCH') throw new CliError(`no such process ${pid}`)
    if (code !== 'EPERM') throw err
    // EPERM: it exists; the uid check below gives the reason.
  }
  const target = readUids(pid, procfs)
  if (target === undefined) throw new CliError(`no such process ${pid}`)
  const mine = { real: process.getuid?.() ?? 0, effective: process.geteuid?.() ?? 0 }
  if (mine.effective === 0) return
  const ok = [mine.real, mine.effective].some(u => u === target.real || u === target.effective)
  if (!ok) {
    throw new CliError(`${pid}: not allowed (it belongs to uid ${target.real}${target.effective !== target.real ? `/${target.effective}` : ''}, ` +
      `you are uid ${mine.real}${mine.effective !== mine.real ? `/${mine.effective}` : ''}; only its owner or root may migrate it)`)
  }
}

/** True when nodes/<id>/status has the `up` bit (2). */
export function nodeUp (tree: Tree, id: number): boolean {
  try {
    return (tree.readInt(`nodes/${id}/status`) & 2) !== 0
  } catch {
    return false
  }
}

/** A node argument that must exist in the tree (CliError, exit 1, when it does not). */
export function requireNode (tree: Tree, id: number): void {
  if (!tree.isDir(`nodes/${id}`)) throw new CliError(`no node ${id} in the cluster (no ${tree.path(`nodes/${id}`)})`)
}

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
