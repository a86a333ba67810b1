// The scheduler inside the daemon: per-process accounting of this node's processes, the policy
// (src/sched/policy.ts) applied to this node's gossip window, and the moves it decides, carried out
// by the migrator. Each node decides alone, from its own view; nothing is coordinated.
//
// - `place(pid)`: where a process should run (mosrun -b, `goto balance`), by lowest marginal cost.
// - `tick()`: when automatic balancing is on (admin/balance), at most one move per interval of a
//   process that runs here, when the policy finds the gain worth the move: one of this node's own
//   processes is moved at once; a guest is moved by its home, which this node asks (moves are
//   driven by the home node, src/migrate/migrator.ts), unless it is locked there.
// - `explain(pid)`: the costs of a process on every candidate node and why it stays or moves.
import debug from '../util/log.js'
import type { HpcNode } from '../core/node.js'
import type { DecayHints, Migrator } from '../migrate/migrator.js'
import { CostModel } from './cost.js'
import { explainProcess, formatExplanation, placeJob, rebalance, SCHED_DEFAULTS, type LocalView, type MoveDecision, type ProcessExplanation, type ProcInfo, type SchedTunables } from './policy.js'
import { einval } from '../util/errno.js'
import { CLK_TCK, cpuTicks, processAge, readStat, residentBytes, uptime } from '../util/procfs.js'
import { nodeViewOf, selfViewOf } from './view.js'

const log = debug('hpcfs:sched')

interface Usage { ticks: number, at: number, cpu: number, fresh: boolean }

/** Shorter windows than this give CPU shares too coarse to use (ticks of 10 ms): not sampled. */
const MIN_WINDOW_S = 0.2

/** What the scheduler has done since the daemon started (the metrics endpoint exports them). */
export interface SchedStats {
  /** Automatic rebalancing rounds that ran the policy. */
  decisions: number
  /** Placements asked for (mosrun -b, goto balance). */
  placements: number
  /** Moves of its own processes the balancer started. */
  moves: number
  /** Guests whose home it asked to move them on. */
  asks: number
  /** Moves it started that were refused or failed. */
  failures: number
}

export class Balancer {
  /** admin/balance: automatic rebalancing on or off. */
  enabled = false
  /** admin/sched: the policy's tunables (defaults and meanings in SCHED_DEFAULTS, policy.ts). */
  readonly tunables: SchedTunables = { ...SCHED_DEFAULTS }
  private readonly usage = new Map<number, Usage>()
  private readonly model: CostModel
  /** Processes a move of which failed: not tried again before this time (ms). */
  private readonly backoff = new Map<number, number>()
  readonly stats: SchedStats = { decisions: 0, placements: 0, moves: 0, asks: 0, failures: 0 }

  constructor (readonly node: HpcNode, readonly migrator: Migrator, clusterSize = 2) {
    this.model = new CostModel(Math.max(2, clusterSize))
  }

  /**
   * CPU share of a process, decayed as openMosix's: every `admin/decay-interval` seconds it keeps
   * `slow-decay` (or, with the fast hint, `fast-decay`) per mille of its history. The first
   * window's measurement starts the history (and starts it again after a `clear` hint). A cpujob
   * counts as CPU-bound, an iojob as using no CPU, whatever they used lately. `f`: its stat
   * fields when the caller has them already.
   */
  private cpuShare (pid: number, now: number, d: DecayHints, f = readStat(pid)): number {
    const kind = (cpu: number): number => d.kind === 'cpujob' ? 1 : d.kind === 'iojob' ? 0 : cpu
    if (!f) return kind(0)
    const ticks = cpuTicks(f)
    const u = this.usage.get(pid)
    if (!u || u.at < d.cleared) { this.usage.set(pid, { ticks, at: now, cpu: 0, fresh: true }); return kind(0) }
    const dt = (now - u.at) / 1000
    if (dt >= MIN_WINDOW_S) {
      const sample = Math.min(1, (ticks - u.ticks) / CLK_TCK / dt)
      if (u.fresh) {
        u.cpu = sample
        u.fresh = false
      } else {
        const perMille = d.perMille ?? (d.rate === 'fast' ? this.node.fastDecay : this.node.slowDecay)
        const keep = Math.pow(perMille / 1000, dt / (d.interval ?? this.node.decayInterval))
        u.cpu = keep * u.cpu + (1 - keep) * sample
      }
      u.ticks = ticks
      u.at = now
    }
    return kind(u.cpu)
  }

  /** This node's view: itself, the processes that run here (its own and guests), the nodes it hears. */
  view (now = Date.now()): LocalView {
    const self = this.node.view(this.node.id)
    const procs: ProcInfo[] = []
    const up = uptime()
    for (const g of this.migrator.guests.values()) {
      if (g.leaving) continue
      const mem = residentBytes(g.pid)
      const residence = (now - g.since) / 1000
      procs.push({
        pid: g.pid,
        cpu: this.cpuShare(g.pid, now, g.decay),
        mem,
        image: mem,
        age: g.age + residence,
        residence,
        guest: true,
        // asked home already (until it answers or 30 s pass), or a move of it failed lately
        cantmove: (g.moveAsked > 0 && now - g.moveAsked < 30_000) || (this.backoff.get(g.pid) ?? 0) > now
      })
    }
    for (const p of this.migrator.procs.values()) {
      if (p.where !== 'home') continue
      const f = readStat(p.pid)
      if (!f) continue
      const mem = residentBytes(p.pid)
      const until = this.backoff.get(p.pid) ?? 0
      procs.push({
        pid: p.pid,
        cpu: this.cpuShare(p.pid, now, p.decay, f),
        mem,
        image: mem,
        age: processAge(f, up),
        lock: p.lock,
        cantmove: until > now
      })
    }
    for (const pid of this.usage.keys()) if (!this.migrator.procs.has(pid) && !this.migrator.guests.has(pid)) this.usage.delete(pid)
    const others = []
    for (const id of this.node.nodeIds()) {
      if (id === this.node.id) continue
      const v = this.node.view(id)
      if (v) others.push(nodeViewOf(v.info, v.up))
    }
    // Itself at its local (mean) load, as MOSIX decides: it rises slowly and falls at once, so a
    // node that just sent work away or just took some does not act on a load it no longer has or
    // does not have yet; the others by what they advertise (the upper load, up at once, down slowly).
    const local = this.node.probe.snapshot().localLoad
    return {
      self: selfViewOf(this.node.id, { ...(self?.info ?? this.node.gossip.self()), load: local, status: self?.status ?? 0 }),
      procs,
      others,
      bandwidth: this.migrator.bandwidth,
      clusterSize: others.length + 1
    }
  }

  /** Where pid should run now (this node's id when it should stay). */
  place (pid: number): number {
    const v = this.view()
    const d = placeJob(v, { cpu: 1, mem: residentBytes(pid) }, { model: this.model, tunables: this.tunables })
    this.stats.placements++
    log('place %d: node %d (%s)', pid, d.target, d.why)
    return d.target
  }

  /** One automatic decision (called every interval). */
  tick (): void {
    const now = Date.now()
    for (const p of this.migrator.procs.values()) if (p.where === 'home') this.cpuShare(p.pid, now, p.decay)
    for (const g of this.migrator.guests.values()) this.cpuShare(g.pid, now, g.decay)
    if (!this.enabled) return
    if ([...this.migrator.procs.values()].some(p => p.where === 'migrating')) return
    if ([...this.migrator.guests.values()].some(g => g.leaving)) return
    const d = rebalance(this.view(), { model: this.model, explain: false, tunables: this.tunables })
    this.stats.decisions++
    if (d.action !== 'move' || d.pid === undefined || d.target === undefined) return
    log('move %d to %d: %s', d.pid, d.target, d.why)
    const pid = d.pid
    const guest = this.migrator.guests.get(pid)
    if (guest) {
      this.migrator.askHomeToMove(guest, d.target, d.why)
      this.stats.asks++
      return
    }
    try {
      void this.migrator.requestMove(pid, d.target).then(() => {
        const p = this.migrator.procs.get(pid)
        if (p && p.lastError) { this.backoff.set(pid, Date.now() + 30_000); this.stats.failures++ }
      })
      this.stats.moves++
    } catch (e) {
      log('move %d refused: %s', pid, (e as Error).message)
      this.backoff.set(pid, Date.now() + 30_000)
      this.stats.failures++
    }
  }

  /** This node's current decision, with the costs of the processes it examined (explained). */
  decision (): MoveDecision {
    return rebalance(this.view(), { model: this.model, tunables: this.tunables })
  }

  /** admin/costs: this node's current decision and every local process's costs. */
  explainNode (): string {
    const d = this.decision()
    const head = `balance ${this.enabled ? 'on' : 'off'}: ${d.action === 'move' ? `would move ${String(d.pid)} to node ${String(d.target)} (${d.reason})` : 'no move'}: ${d.why}\n`
    const measured = [...this.migrator.bandwidth].sort((a, b) => a[0] - b[0]).map(([id, bw]) => `node ${id} ${Math.round(bw / 1e6)}`)
    const bw = `bandwidth MB/s: ${measured.length > 0 ? measured.join(', ') + ' (measured); ' : ''}${Math.round(this.tunables.defaultBandwidth / 1e6)} assumed for ${measured.length > 0 ? 'the others' : 'every node'}\n`
    return head + bw + d.processes.map(formatExplanation).join('')
  }

  /** admin/sched: one `name value` line per tunable. */
  showTunables (): string {
    return Object.entries(this.tunables).map(([k, v]) => `${k} ${v}\n`).join('')
  }

  /** Writing `name value` lines sets tunables; an unknown name or a bad value changes nothing. */
  setTunables (text: string): void {
    const next: Record<string, number> = {}
    for (const line of text.split('\n').map(l => l.trim()).filter(Boolean)) {
      const m = /^([A-Za-z]+)\s+(\S+)$/.exec(line)
      if (!m || !Object.hasOwn(SCHED_DEFAULTS, m[1])) throw einval(`unknown tunable line "${line.slice(0, 40)}" (names: ${Object.keys(SCHED_DEFAULTS).join(', ')})`)
      const v = Number(m[2])
      if (!Number.isFinite(v) || v < 0) throw einval(`${m[1]}: ${m[2]} is not a number >= 0`)
      next[m[1]] = v
    }
    Object.assign(this.tunables, next)
  }

  /** The costs of every process that runs here (its own and guests), from one view. */
  explainAll (): ProcessExplanation[] {
    const v = this.view()
    return v.procs.map(p => explainProcess(v, p.pid, { model: this.model, tunables: this.tunables })).filter((e): e is ProcessExplanation => e !== null)
  }

  /** proc/<pid>/costs and remote/<pid>/costs. */
  explain (pid: number): string {
    const e = explainProcess(this.view(), pid, { model: this.model, tunables: this.tunables })
    if (!e) {
      const p = this.migrator.procs.get(pid)
      return p && p.where !== 'home' ? `pid ${pid} runs on node ${String(p.where)}, which decides its costs (see remote/<pid>/costs there)\n` : `pid ${pid} is not under cluster discipline here\n`
    }
    return formatExplanation(e)
  }
}
