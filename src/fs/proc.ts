// proc/<pid>/ (openMosix /proc/<pid>/{where,goto,lock,nmigs,cantmove}) and remote/<pid>/ (guests).
// proc/ lists the processes under cluster discipline whose home is this node; any live local pid
// can be looked up, and the first write to one of its files puts it under cluster discipline.
import { readFileSync } from 'node:fs'
import { DECAY_HINTS, formatHints, parseHint, type Migrator } from '../migrate/migrator.js'
import type { Balancer } from '../sched/balancer.js'
import { einval, notRunning } from '../util/errno.js'
import { readStat, readUids, type PsInfo } from '../util/procfs.js'
import { dir, ro, rw, wo, parseInt10, type DirNode, type FileNode } from './tree.js'
import { NODE_ID } from '../config.js'

/** Parses a move target: a node id, `0`/`home`, or `balance`. */
export function parseTarget (text: string): number | 'home' | 'balance' {
  const s = text.trim().toLowerCase()
  if (s === 'home' || s === '0') return 'home'
  if (s === 'balance') return 'balance'
  return parseInt10(s, NODE_ID.min, NODE_ID.max, 'node')
}

function goto (m: Migrator, b: Balancer | null, pid: number, text: string): void {
  let t = parseTarget(text)
  if (t === 'balance') {
    if (!b) throw notRunning('the scheduler')
    m.adopt(pid)
    t = b.place(pid)
  }
  void m.requestMove(pid, t)
}

const isPid = (name: string): boolean => /^[1-9]\d*$/.test(name)
const exists = (pid: number): boolean => { try { readFileSync(`/proc/${pid}/stat`); return true } catch { return false } }

function procEntry (m: Migrator, b: Balancer | null, pid: number): DirNode {
  const p = (): ReturnType<Migrator['adopt']> | undefined => m.procs.get(pid)
  // its files belong to its real uid: who may kill a process may migrate it
  const owner = (): number => readUids(pid)?.real ?? 0
  const own = <T extends FileNode>(f: T): T => ({ ...f, owner })
  const cantmove: FileNode = {
    kind: 'file',
    mode: 0o444,
    show: async () => {
      const q = p()
      if (q && q.where !== 'home') return ''
      return (await m.cantMove(pid)).map(r => `${r}\n`).join('')
    }
  }
  return dir({
    // (a move out committed, home finishing it: where it runs already)
    where: own(ro(() => { const q = p(); const w = q?.committed ?? q?.where ?? 'home'; return w === 'home' ? 0 : w })),
    goto: own(wo(t => goto(m, b, pid, t))),
    migrate: own(wo(t => goto(m, b, pid, t))),
    lock: own(rw(() => p()?.lock ? 1 : 0, t => { const v = parseInt10(t, 0, 1, 'lock'); m.adopt(pid).lock = v === 1 })),
    nmigs: own(ro(() => p()?.nmigs ?? 0)),
    decay: own(rw(() => formatHints(p()?.decay ?? { rate: 'slow', kind: '', cleared: 0 }), t => {
      const h = parseHint(t)
      if (h === undefined) throw einval(`decay: expected one of ${DECAY_HINTS.join(', ')}, "decay 0..1000" or "interval 1..3600"`)
      m.hint(pid, h)
    })),
    cantmove: own(cantmove),
    error: own(ro(() => p()?.lastError ?? '')),
    // what ps shows wherever it runs (mps, mtop): the deputy at home is hollow
    cmdline: own({ kind: 'file', mode: 0o444, show: async () => formatCmdline((await m.psInfo(pid))?.cmdline ?? '') }),
    stats: own({ kind: 'file', mode: 0o444, show: async () => formatPsInfo(await m.psInfo(pid)) }),
    costs: own({ kind: 'file', mode: 0o444, show: () => b ? b.explain(pid) : '' })
  }, owner)
}

/** proc/<pid>/cmdline: the arguments joined by spaces as ps shows them (control characters as `?`), one text line. */
function formatCmdline (nulSeparated: string): string {
  return nulSeparated.replace(/\0+$/, '').replace(/\0/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?') + '\n'
}

/** proc/<pid>/stats: `utime U stime S state X rss B vsize B` (ticks everywhere it ran; the rest where it runs). */
function formatPsInfo (i: PsInfo | undefined): string {
  return i === undefined ? '\n' : `utime ${i.utime} stime ${i.stime} state ${i.state} rss ${i.rss} vsize ${i.vsize}\n`
}

export function procDir (m: Migrator, b: Balancer | null): DirNode {
  return {
    kind: 'dir',
    list: () => [...m.procs.keys()].sort((a, b) => a - b).map(String),
    lookup: name => isPid(name) && (m.procs.has(Number(name)) || exists(Number(name))) ? procEntry(m, b, Number(name)) : undefined
  }
}

function readProc (pid: number, file: string): string {
  try { return readFileSync(`/proc/${pid}/${file}`, 'utf8').trim() } catch { return '' }
}

export function remoteDir (m: Migrator, b: Balancer | null): DirNode {
  return {
    kind: 'dir',
    list: () => [...m.guests.keys()].sort((a, b) => a - b).map(String),
    lookup: name => {
      const g = isPid(name) ? m.guests.get(Number(name)) : undefined
      if (!g) return undefined
      return dir({
        from: ro(() => g.home),
        identity: ro(() => `home ${g.home} pid ${g.homePid} since ${new Date(g.since).toISOString()}`),
        statm: ro(() => readProc(g.pid, 'statm')),
        stats: ro(() => { const f = readStat(g.pid) ?? []; return `utime ${f[11] ?? 0} stime ${f[12] ?? 0}` }),
        costs: ro(() => b ? b.explain(g.pid) : '')
      })
    }
  }
}

/** admin/migrate: "PID NODE". */
export function adminMigrate (m: Migrator, b: Balancer | null): FileNode {
  return wo(text => {
    const f = text.trim().split(/\s+/)
    if (f.length !== 2) throw einval('expected "PID NODE"')
    const pid = parseInt10(f[0], 2, 2 ** 22, 'pid')
    goto(m, b, pid, f[1])
  })
}
