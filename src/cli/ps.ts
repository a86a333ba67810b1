// The process rows of mps and mtop: what /proc shows of each process, corrected by what the tree
// says of the processes under cluster discipline. For those, proc/<pid>/where gives the node it
// runs on, and proc/<pid>/stats and cmdline describe it where it runs: its deputy here is hollow
// (no command line, no CPU use of its own), so the state, memory and command line come from its
// node and the CPU time counts every node it ran on. A tree without these files (an older hpcd, a
// test directory) leaves the /proc values.
import { readFile, readdir } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { cpuTime, printable, readCommand, readProcStat, ttyName } from './proc-common.js'
import { readUids, CLK_TCK } from '../util/procfs.js'
import type { Tree } from './common.js'

/** One process as mps and mtop show it. */
export interface PsRow {
  pid: number
  ppid: number
  uid: number
  user: string
  tty: string
  /** 0 at home (or not under cluster discipline), N on node N; null while migrating or unreadable. */
  node: number | null
  migrating: boolean
  /** Listed in proc/ of the tree (under cluster discipline, home here). */
  disciplined: boolean
  state: string
  /** CPU time in clock ticks, on every node it ran on. */
  ticks: number
  /** Start, clock ticks after boot. */
  startTicks: number
  vsize: number
  rss: number
  command: string
  /** proc/<pid>/lock and nmigs; null when not under discipline or unreadable. */
  lock: number | null
  nmigs: number | null
}

async function text (path: string): Promise<string | undefined> {
  try { return await readFile(path, 'utf8') } catch { return undefined }
}

const intOf = (s: string | undefined): number | null => s !== undefined && /^-?\d+$/.test(s.trim()) ? Number(s.trim()) : null

let users: Map<number, string> | undefined

/** A user name from /etc/passwd, else the number (as ps). */
export function userName (uid: number): string {
  if (users === undefined) {
    users = new Map()
    try {
      for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
        const f = line.split(':')
        if (f.length > 2 && /^\d+$/.test(f[2]) && !users.has(Number(f[2]))) users.set(Number(f[2]), f[0])
      }
    } catch {}
  }
  return users.get(uid) ?? String(uid)
}

/** `key value` pairs of a one-line stats file (proc/<pid>/stats, remote/<pid>/stats). */
export function parseStats (s: string): Map<string, string> {
  const f = s.trim().split(/\s+/)
  const m = new Map<string, string>()
  for (let i = 0; i + 1 < f.length; i += 2) m.set(f[i], f[i + 1])
  return m
}

/** The row of one process, or undefined when it is gone. */
export async function readRow (tree: Tree, pid: number, disciplined: boolean): Promise<PsRow | undefined> {
  const st = readProcStat(pid)
  if (st === undefined) return undefined
  const uid = readUids(pid)?.real ?? -1
  const row: PsRow = {
    pid,
    ppid: st.ppid,
    uid,
    user: uid < 0 ? '?' : userName(uid),
    tty: ttyName(st.ttyNr),
    node: 0,
    migrating: false,
    disciplined,
    state: st.state,
    ticks: st.ticks,
    startTicks: st.startTicks,
    vsize: st.vsize,
    rss: st.rss,
    command: '',
    lock: null,
    nmigs: null
  }
  if (!disciplined) {
    row.command = readCommand(pid, st.comm)
    return row
  }
  const dir = tree.path(`proc/${pid}`)
  const [where, stats, cmdline, lock, nmigs] = await Promise.all(['where', 'stats', 'cmdline', 'lock', 'nmigs'].map(async f => await text(`${dir}/${f}`)))
  const w = where?.trim()
  row.migrating = w === 'migrating'
  row.node = w === undefined || row.migrating ? null : intOf(w)
  row.lock = intOf(lock)
  row.nmigs = intOf(nmigs)
  if (stats !== undefined && stats.trim() !== '') {
    const s = parseStats(stats)
    const n = (k: string): number | undefined => /^\d+$/.test(s.get(k) ?? '') ? Number(s.get(k)) : undefined
    const ut = n('utime')
    const stime = n('stime')
    if (ut !== undefined && stime !== undefined) row.ticks = ut + stime
    if (/^[A-Za-z]$/.test(s.get('state') ?? '')) row.state = s.get('state') as string
    row.rss = n('rss') ?? row.rss
    row.vsize = n('vsize') ?? row.vsize
  }
  const c = cmdline?.replace(/\n$/, '')
  row.command = c !== undefined && c !== '' ? printable(c) : readCommand(pid, st.comm)
  return row
}

/** The rows of `pids` (those still running), in order. */
export async function readRows (tree: Tree, pids: number[], disciplined: Set<number>): Promise<PsRow[]> {
  const rows = await Promise.all(pids.map(async pid => await readRow(tree, pid, disciplined.has(pid))))
  return rows.filter((r): r is PsRow => r !== undefined)
}

/** Pids under cluster discipline (proc/ of the tree), or [] when the tree has no proc/. */
export async function listDisciplined (tree: Tree): Promise<number[]> {
  try {
    return (await readdir(tree.path('proc'))).filter(n => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
  } catch {
    return []
  }
}

/** What the percentages and start times are relative to. */
export interface PsContext {
  /** Seconds since boot. */
  uptime: number
  /** Boot time, seconds since the epoch. */
  bootTime: number
  /** Total memory in bytes where each node runs (0 = this host). */
  memTotal: (node: number) => number
}

/** The context on this host, with each node's total memory from nodes/<id>/tmem. */
export function hostContext (tree: Tree): PsContext {
  const up = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0])
  const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? Math.floor(Date.now() / 1000 - up))
  const local = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024
  const cache = new Map<number, number>()
  return {
    uptime: up,
    bootTime: btime,
    memTotal: node => {
      if (node === 0) return local
      let v = cache.get(node)
      if (v === undefined) {
        try { v = tree.readInt(`nodes/${node}/tmem`) } catch { v = local }
        if (!(v > 0)) v = local
        cache.set(node, v)
      }
      return v
    }
  }
}

/** CPU use over its life, percent (ps's %CPU). */
export function cpuPercent (r: PsRow, ctx: PsContext): number {
  const age = ctx.uptime - r.startTicks / CLK_TCK
  return age > 0 ? Math.min(999.9, (r.ticks / CLK_TCK) / age * 100) : 0
}

/** Resident memory as a percentage of the total memory where it runs (ps's %MEM). */
export function memPercent (r: PsRow, ctx: PsContext): number {
  const total = ctx.memTotal(r.node ?? 0)
  return total > 0 ? r.rss / total * 100 : 0
}

/** Start time as ps shows it: HH:MM within 24 h, else MmmDD, else the year. */
export function startText (r: PsRow, ctx: PsContext, now = Date.now()): string {
  const t = new Date((ctx.bootTime + r.startTicks / CLK_TCK) * 1000)
  const ageS = now / 1000 - t.getTime() / 1000
  const two = (n: number): string => String(n).padStart(2, '0')
  if (ageS < 24 * 3600) return `${two(t.getHours())}:${two(t.getMinutes())}`
  if (ageS < 365 * 24 * 3600) return `${t.toLocaleString('en', { month: 'short' })}${two(t.getDate())}`
  return String(t.getFullYear())
}

/** The NODE column: 0 at home, N away, `mig` in transit, -1 unreadable. */
export function nodeText (r: PsRow): string {
  return r.migrating ? 'mig' : r.node === null ? '-1' : String(r.node)
}

export const HEADER_DEFAULT = '  PID TTY      NODE STAT     TIME COMMAND'
export const HEADER_USER = 'USER         PID %CPU %MEM    VSZ   RSS TTY      NODE STAT START   TIME COMMAND'

/** A line of the default format (mps). */
export function lineDefault (r: PsRow): string {
  return `${String(r.pid).padStart(5)} ${r.tty.padEnd(8)} ${nodeText(r).padStart(4)} ${r.state.padEnd(4)} ${cpuTime(r.ticks).padStart(8)} ${r.command}`
}

/** A line of the user-oriented format (mps u, mps aux): VSZ and RSS in KiB, as ps. */
export function lineUser (r: PsRow, ctx: PsContext, now = Date.now()): string {
  const user = r.user.length > 8 ? r.user.slice(0, 7) + '+' : r.user
  return `${user.padEnd(8)} ${String(r.pid).padStart(7)} ${cpuPercent(r, ctx).toFixed(1).padStart(4)} ${memPercent(r, ctx).toFixed(1).padStart(4)} ` +
    `${String(Math.round(r.vsize / 1024)).padStart(6)} ${String(Math.round(r.rss / 1024)).padStart(5)} ${r.tty.padEnd(8)} ${nodeText(r).padStart(4)} ` +
    `${r.state.padEnd(4)} ${startText(r, ctx, now).padStart(5)} ${cpuTime(r.ticks).padStart(6)} ${r.command}`
}

/**
 * The --json form of a row (field names are documented in docs/tools-proc.md and stable):
 * sizes in bytes, times in seconds, `node` null while migrating or unknown.
 */
export function rowJson (r: PsRow, ctx: PsContext): Record<string, unknown> {
  const round = (x: number, d: number): number => Math.round(x * 10 ** d) / 10 ** d
  return {
    pid: r.pid,
    ppid: r.ppid,
    user: r.user,
    uid: r.uid,
    tty: r.tty,
    node: r.node,
    migrating: r.migrating,
    disciplined: r.disciplined,
    state: r.state,
    cpuSeconds: round(r.ticks / CLK_TCK, 2),
    cpuPercent: round(cpuPercent(r, ctx), 1),
    memPercent: round(memPercent(r, ctx), 1),
    vsizeBytes: r.vsize,
    rssBytes: r.rss,
    start: new Date((ctx.bootTime + r.startTicks / CLK_TCK) * 1000).toISOString(),
    lock: r.lock,
    nmigs: r.nmigs,
    command: r.command
  }
}
