// What the GUI shows, read from the same core as the tree: the views of every node (nodes/<id>/),
// this node's processes under cluster discipline (proc/<pid>/: where, lock, nmigs, error, costs)
// and its guests (remote/), and the scheduler's explanations (proc/<pid>/costs, admin/costs).
// These types are the JSON the page receives (src/gui/public/app.js reads them).
import { readFileSync } from 'node:fs'
import { STATUS } from '../gossip/info.js'
import type { HpcNode } from '../core/node.js'
import type { CandidateExplanation, ProcessExplanation } from '../sched/policy.js'
import { readUids } from '../util/procfs.js'
import { notRunning } from '../util/errno.js'

export interface NodeState {
  id: number
  self: boolean
  up: boolean
  /** nodes/<id>/status bits */
  status: number
  stay: boolean
  lstay: boolean
  block: boolean
  quiet: boolean
  /** ms since its information was fresh */
  age: number
  addr: string
  /** the rest as nodes/<id>/ shows them; null while the node is down */
  load: number | null
  speed: number | null
  cpus: number | null
  mem: number | null
  rmem: number | null
  tmem: number | null
  util: number | null
}

export interface Candidate {
  node: number
  /** null when not evaluated (down, blocked, no memory) */
  cost: number | null
  load: number
  saves: number | null
  migration: number | null
  verdict: CandidateExplanation['verdict']
}

export interface Explanation {
  pid: number
  costHere: number
  movable: boolean
  why: string
  candidates: Candidate[]
}

export interface ProcState {
  pid: number
  command: string
  uid: number | null
  /** 0 at home, a node id, or 'migrating' (proc/<pid>/where) */
  where: number | 'migrating'
  lock: boolean
  nmigs: number
  /** why the last move failed (proc/<pid>/error) */
  error: string
  /** the scheduler's view of it (proc/<pid>/costs); null while it runs elsewhere (that node decides) */
  costs: Explanation | null
}

export interface GuestState {
  pid: number
  home: number
  homePid: number
  command: string
  /** ms since the epoch it arrived */
  since: number
  costs: Explanation | null
}

export interface ClusterState {
  /** ms since the epoch */
  t: number
  self: number
  balance: boolean | null
  /** admin/costs' first line: this node's current decision */
  decision: string
  nodes: NodeState[]
  procs: ProcState[]
  guests: GuestState[]
}

export function explanationOf (e: ProcessExplanation): Explanation {
  const num = (v: number | undefined): number | null => v === undefined || Number.isNaN(v) ? null : v
  return {
    pid: e.pid,
    costHere: e.costHere,
    movable: e.movable,
    why: e.why,
    candidates: e.candidates.map(c => ({ node: c.node, cost: num(c.marginalCost), load: Math.round(c.futureLoad), saves: num(c.secondsSaved), migration: num(c.migrationSeconds), verdict: c.verdict }))
  }
}

/**
 * A process's command line; `[comm]` when it has none. A deputy (the original of a process that
 * runs elsewhere) is hollowed out and shows none: `seen` keeps what each pid showed at home.
 */
export function commandOf (pid: number, seen?: Map<number, string>): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
    if (args.length > 0) { seen?.set(pid, args.join(' ')); return args.join(' ') }
  } catch {}
  const known = seen?.get(pid)
  if (known !== undefined) return known
  try { return `[${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}]` } catch { return '' }
}

export function nodeStates (node: HpcNode): NodeState[] {
  const out: NodeState[] = []
  for (const id of node.nodeIds()) {
    const v = node.view(id)
    if (!v) continue
    const i = v.info
    const val = (x: number): number | null => v.up ? x : null
    out.push({
      id,
      self: v.self,
      up: v.up,
      status: v.status,
      stay: (v.status & STATUS.STAY) !== 0,
      lstay: (v.status & STATUS.LSTAY) !== 0,
      block: (v.status & STATUS.BLOCK) !== 0,
      quiet: (v.status & STATUS.QUIET) !== 0,
      age: Math.round(v.age),
      addr: `${i.addr}:${i.port}`,
      load: val(i.load),
      speed: val(i.speed),
      cpus: val(i.cpus),
      mem: val(i.mem),
      rmem: val(i.rmem),
      tmem: val(i.tmem),
      util: val(i.util)
    })
  }
  return out
}

/**
 * The whole state. `commands`: the command lines seen so far by pid (kept by the caller; pids no
 * longer under discipline are dropped from it here).
 */
export function clusterState (node: HpcNode, commands = new Map<number, string>()): ClusterState {
  const m = node.migrator
  const b = node.balancer
  const costs = new Map<number, Explanation>()
  let decision = b ? '' : notRunning('the scheduler').message
  if (b) {
    for (const e of b.explainAll()) costs.set(e.pid, explanationOf(e))
    decision = b.explainNode().split('\n')[0]
  }
  const procs: ProcState[] = m
    ? [...m.procs.values()].sort((a, b) => a.pid - b.pid).map(p => ({
        pid: p.pid,
        command: commandOf(p.pid, commands),
        uid: readUids(p.pid)?.real ?? null,
        where: p.where === 'home' ? 0 : p.where,
        lock: p.lock,
        nmigs: p.nmigs,
        error: p.lastError,
        costs: p.where === 'home' ? costs.get(p.pid) ?? null : null
      }))
    : []
  const guests: GuestState[] = m
    ? [...m.guests.values()].sort((a, b) => a.pid - b.pid).map(g => ({ pid: g.pid, home: g.home, homePid: g.homePid, command: commandOf(g.pid), since: g.since, costs: costs.get(g.pid) ?? null }))
    : []
  if (m) for (const pid of commands.keys()) if (!m.procs.has(pid)) commands.delete(pid)
  return { t: Date.now(), self: node.id, balance: b ? b.enabled : null, decision, nodes: nodeStates(node), procs, guests }
}
