// mtop's screen as a pure function: state -> lines (top with a NODE column, openMosix mtop), plus
// the key handling. Sampling and the terminal are in mtop.ts and screen.ts.
//
//   mtop - 12:34:56  node #1: load 0.42; cluster: 3 of 4 nodes up, load 1.10
//   Tasks: 123 total, 2 running; 5 under cluster discipline, 3 away
//
//     PID USER      NODE    VIRT    RES S  %CPU %MEM     TIME COMMAND
//    4242 alice        3  102400  20480 R 100.0  0.5    12:07 python3 render.py
import type { PsRow } from './ps.js'
import { cpuTime } from './proc-common.js'

/** A process row with its CPU share over the last interval (percent of one CPU) and memory share. */
export interface TopRow extends PsRow {
  cpu: number
  mem: number
}

export interface TopState {
  /** Wall-clock time of the sample, `HH:MM:SS`. */
  clock: string
  myId: number
  nodesUp: number
  nodesTotal: number
  /** This node's load and the sum over the up nodes (100 = one standard CPU busy); null unknown. */
  myLoad: number | null
  clusterLoad: number | null
  rows: TopRow[]
  /** i: hide processes that used no CPU in the interval (and are not running). */
  hideIdle: boolean
  /** c: full command lines instead of program names. */
  fullCommand: boolean
  /** m: only the processes under cluster discipline. */
  onlyCluster: boolean
  /** s: secure mode, only q works. */
  secure: boolean
  /** Shown under the header when the tree could not be read. */
  error?: string
}

export const HEADER = '  PID USER      NODE    VIRT    RES S  %CPU %MEM     TIME COMMAND'
export const FOOTER = 'q)uit i)dle c)ommand m)igratable only'

/** The program name of a command line (`[comm]` kept as is). */
export function programName (command: string): string {
  if (command.startsWith('[')) return command
  const first = command.split(' ')[0]
  return first.slice(first.lastIndexOf('/') + 1) || command
}

/** The rows shown, in order: most CPU first, then by pid. */
export function visibleRows (s: TopState): TopRow[] {
  return s.rows
    .filter(r => !s.onlyCluster || r.disciplined)
    .filter(r => !s.hideIdle || r.cpu > 0 || r.state === 'R')
    .sort((a, b) => b.cpu - a.cpu || a.pid - b.pid)
}

const node = (r: PsRow): string => r.migrating ? 'mig' : r.node === null ? '-1' : String(r.node)
const load = (v: number | null): string => v === null ? '?' : (v / 100).toFixed(2)

export function rowLine (r: TopRow, fullCommand: boolean): string {
  const user = r.user.length > 8 ? r.user.slice(0, 7) + '+' : r.user
  return `${String(r.pid).padStart(5)} ${user.padEnd(8)} ${node(r).padStart(5)} ${String(Math.round(r.vsize / 1024)).padStart(7)} ` +
    `${String(Math.round(r.rss / 1024)).padStart(6)} ${r.state} ${r.cpu.toFixed(1).padStart(5)} ${r.mem.toFixed(1).padStart(4)} ` +
    `${cpuTime(r.ticks).padStart(8)} ${fullCommand ? r.command : programName(r.command)}`
}

/**
 * The screen for `s`: with `height`, at most that many lines of at most `width` characters and the
 * key help at the bottom; without (batch mode), every row and no key help.
 */
export function renderTop (s: TopState, width: number, height?: number): string[] {
  const fit = (l: string): string => width > 0 && l.length > width ? l.slice(0, width) : l
  const away = s.rows.filter(r => r.disciplined && (r.migrating || (r.node !== null && r.node !== 0))).length
  const head = [
    `mtop - ${s.clock}  node #${s.myId}: load ${load(s.myLoad)}; cluster: ${s.nodesUp} of ${s.nodesTotal} node${s.nodesTotal === 1 ? '' : 's'} up, load ${load(s.clusterLoad)}`,
    `Tasks: ${s.rows.length} total, ${s.rows.filter(r => r.state === 'R').length} running; ` +
      `${s.rows.filter(r => r.disciplined).length} under cluster discipline, ${away} away`,
    s.error !== undefined ? `(${s.error})` : '',
    HEADER
  ]
  const body = visibleRows(s).map(r => rowLine(r, s.fullCommand))
  if (height === undefined) return [...head, ...body].map(fit)
  const room = Math.max(0, height - head.length - 1)
  const shown = body.length <= room ? body : [...body.slice(0, Math.max(0, room - 1)), `... ${body.length - Math.max(0, room - 1)} more`]
  return [...head, ...shown, s.secure ? 'q)uit' : FOOTER].slice(0, Math.max(1, height)).map(fit)
}

/** The state after a key, or 'quit' (q, Q, Ctrl-C). Secure mode: only quitting. Unknown keys change nothing. */
export function applyTopKey (s: TopState, key: string): TopState | 'quit' {
  if (key === 'q' || key === 'Q' || key === '\x03') return 'quit'
  if (s.secure) return s
  if (key === 'i') return { ...s, hideIdle: !s.hideIdle }
  if (key === 'c') return { ...s, fullCommand: !s.fullCommand }
  if (key === 'm') return { ...s, onlyCluster: !s.onlyCluster }
  return s
}
