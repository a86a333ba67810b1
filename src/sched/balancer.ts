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
//
// Loads that know about moves (docs/sched.md): a process that arrives here, comes home, starts,
// leaves or ends changes this node's own load at once (the probe's `adjust`), every tick even with
// balancing off; a move this node decides or sees (its processes' `moved` events) is counted on
// the nodes it changes (src/sched/inflight.ts) until their own news shows it.
import debug from '../util/log.js'
import { monotonicMs } from '../util/clock.js'
import type { HpcNode } from '../core/node.js'
import type { DecayHints, Migrator } from '../migrate/migrator.js'
import { CostModel } from './cost.js'
import { InFlight } from './inflight.js'
import { cpuDemand, explainProcess, formatExplanation, placeJob, rebalance, SCHED_DEFAULTS, type LocalView, type MoveDecision, type ProcessExplanation, type ProcInfo, type SchedTunables } from './policy.js'
import { einval } from '../util/errno.js'
import { CLK_TCK, cpuTicks, processAge, readSchedstat, readStat, residentBytes, uptime } from '../util/procfs.js'
import { nodeViewOf, selfViewOf } from './view.js'

const log = debug('hpcfs:sched')

/** A process's decayed CPU share and runnable fraction, and the counters of the last sample (`at`: monotonicMs). */
interface Usage { ticks: number, ns: number, at: number, cpu: number, runnable: number, fresh: boolean }

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

/** A process younger than this when it is first seen here started here: its load is added at once. */
const NEW_PROCESS_S = 2

/**
 * The part of a new process's load the local mean has not taken in yet, `s` seconds after it
 * came: the mean rises 3/8 of the way to the sample every 1-s probe period (src/probe/smoothing.ts).
 */
const notYetInMean = (s: number): number => Math.pow(5 / 8, Math.max(0, s))

/** How long a probe period lasts (src/probe/probe.ts default): news shows a move within it and one gossip send. */
const PROBE_PERIOD_MS = 1000

export class Balancer {
  /** admin/balance: automatic rebalancing on or off. */
  enabled = false
  /** admin/sched: the policy's tunables (defaults and meanings in SCHED_DEFAULTS, policy.ts). */
  readonly tunables: SchedTunables = { ...SCHED_DEFAULTS }
  private readonly usage = new Map<number, Usage>()
  private readonly model: CostModel
  /** Processes a move of which failed: not tried again before this time (monotonicMs). */
  private readonly backoff = new Map<number, number>()
  readonly stats: SchedStats = { decisions: 0, placements: 0, moves: 0, asks: 0, failures: 0 }
  /** Moves in flight, on the gossip clock (ms). */
  readonly inflight: InFlight
  /** Processes that ran here at the last look, with their CPU demand (runnable tasks). */
  private readonly present = new Map<number, number>()
  /** Last known CPU demand and memory of this node's own processes (also while away: a move of one is counted by them). */
  private readonly known = new Map<number, { demand: number, mem: number }>()
  /** Own processes away: the node each runs on. */
  private readonly away = new Map<number, number>()
  /** Own processes that came home: when (monotonicMs), for their residence. */
  private readonly homeSince = new Map<number, number>()
  /** Guests whose home this node asked to move them: the target and when it asked. */
  private readonly asked = new Map<number, { target: number, at: number }>()

  constructor (readonly node: HpcNode, readonly migrator: Migrator) {
    // the base is the number of nodes (docs/sched.md, Cost), which view() follows as nodes join
    this.model = new CostModel(node.nodeIds().length)
    this.inflight = new InFlight(PROBE_PERIOD_MS + node.cfg.interval * 1000, 30_000)
    migrator.on('moved', (pid: number, where: number) => { this.moved(pid, where) })
  }

  private get clock (): number { return this.node.gossip.opts.now() }

  /** The node's own load moves at once by `delta` runnable tasks (a process came or left). */
  private shift (delta: number, why: string): void {
    if (delta === 0) return
    log('load %s%s: %s', delta > 0 ? '+' : '', delta.toFixed(2), why)
    this.node.probe.adjust?.(delta)
  }

  /** A process of this node arrived somewhere (0: home), by any move (the balancer's, goto, a guest's node's request). */
  private moved (pid: number, where: number): void {
    const now = this.clock
    const { demand: d, mem } = this.known.get(pid) ?? { demand: 1, mem: 0 }
    const from = this.away.get(pid)
    if (from !== undefined && from !== where) this.inflight.left(pid, from, now, d, mem)
    if (where === 0) {
      this.away.delete(pid)
      this.homeSince.set(pid, monotonicMs())
      // its counters here stood still while it was away: its history starts again (first window)
      this.usage.delete(pid)
      if (!this.present.has(pid)) { this.present.set(pid, d); this.shift(d, `${pid} came home`) }
      return
    }
    this.away.set(pid, where)
    this.inflight.landed(pid, where, now, d, mem)
    const here = this.present.get(pid)
    if (here !== undefined) { this.present.delete(pid); this.shift(-here, `${pid} left for node ${where}`) }
  }

  /**
   * What runs here now against what ran at the last look: the load of a process that arrived (a
   * guest, or one of ours started less than NEW_PROCESS_S ago) is added at once (the part the mean
   * has not taken in yet), that of one that is gone (left, ended) taken away. A process newly under
   * discipline but older is in the load already. Guests this node asked to move on: gone means
   * landed; still here and refused, failed.
   */
  private lookAround (): void {
    const now = monotonicMs()
    const wall = Date.now()
    const seen = new Map<number, { demand: number, since: number }>() // since: seconds here (Infinity: long before)
    for (const g of this.migrator.guests.values()) {
      seen.set(g.pid, { demand: this.present.get(g.pid) ?? (g.decay.kind === 'iojob' ? 0 : 1), since: Math.max(0, (wall - g.since) / 1000) })
      const a = this.asked.get(g.pid)
      if (a !== undefined && !g.leaving && g.moveAsked !== a.at) { this.inflight.failed(g.pid); this.asked.delete(g.pid) }
    }
    for (const p of this.migrator.procs.values()) {
      if (p.where !== 'home' && p.where !== 'migrating') continue
      const f = readStat(p.pid)
      if (f === undefined) continue
      const age = processAge(f)
      seen.set(p.pid, { demand: this.present.get(p.pid) ?? (p.decay.kind === 'iojob' ? 0 : 1), since: age < NEW_PROCESS_S ? age : Infinity })
    }
    for (const [pid, d] of this.present) {
      if (seen.has(pid)) continue
      this.present.delete(pid)
      this.shift(-d, `${pid} is gone`)
      const a = this.asked.get(pid)
      if (a !== undefined) { this.inflight.landed(pid, a.target, this.clock); this.asked.delete(pid) }
    }
    for (const [pid, s] of seen) {
      if (this.present.has(pid)) continue
      this.present.set(pid, s.demand)
      if (s.since < Infinity) this.shift(s.demand * notYetInMean(s.since), this.migrator.guests.has(pid) ? `guest ${pid} arrived` : `${pid} started`)
    }
    for (const m of [this.known, this.away, this.homeSince]) for (const pid of m.keys()) if (!this.migrator.procs.has(pid)) m.delete(pid)
    for (const [pid, a] of this.asked) if (now - a.at > 30_000) this.asked.delete(pid)
  }

  /**
   * CPU share and runnable fraction of a process (its main thread's time on a CPU or waiting for
   * one, from /proc/<pid>/schedstat: MOSIX's per-process load), decayed as openMosix's: every
   * `admin/decay-interval` seconds they keep `slow-decay` (or, with the fast hint, `fast-decay`)
   * per mille of their history. The first window's measurement starts the history (and starts it
   * again after a `clear` hint). A cpujob counts as CPU-bound, an iojob as using no CPU, whatever
   * they used lately. `f`: its stat fields when the caller has them already.
   */
  private measure (pid: number, now: number, d: DecayHints, f = readStat(pid)): { cpu: number, runnable?: number } {
    const kind = (cpu: number, runnable?: number): { cpu: number, runnable?: number } =>
      d.kind === 'cpujob' ? { cpu: 1, runnable: 1 } : d.kind === 'iojob' ? { cpu: 0, runnable: 0 } : { cpu, runnable }
    if (!f) return kind(0)
    const ticks = cpuTicks(f)
    const st = readSchedstat(pid)
    const ns = st === undefined ? NaN : st.run + st.wait
    const u = this.usage.get(pid)
    if (!u || u.at < d.cleared) { this.usage.set(pid, { ticks, ns, at: now, cpu: 0, runnable: 0, fresh: true }); return kind(0) }
    const dt = (now - u.at) / 1000
    if (dt >= MIN_WINDOW_S) {
      const sample = Math.min(1, (ticks - u.ticks) / CLK_TCK / dt)
      const runnable = Math.min(1, (ns - u.ns) / 1e9 / dt)
      if (u.fresh) {
        u.cpu = sample
        u.runnable = runnable
        u.fresh = false
      } else {
        const perMille = d.perMille ?? (d.rate === 'fast' ? this.node.fastDecay : this.node.slowDecay)
        const keep = Math.pow(perMille / 1000, dt / (d.interval ?? this.node.decayInterval))
        u.cpu = keep * u.cpu + (1 - keep) * sample
        u.runnable = keep * u.runnable + (1 - keep) * runnable
      }
      u.ticks = ticks
      u.ns = ns
      u.at = now
    }
    return kind(u.cpu, u.fresh || !Number.isFinite(u.runnable) ? undefined : u.runnable)
  }

  /**
   * This node's view: itself, the processes that run here (its own and guests), the nodes it hears.
   * `now`: monotonicMs (a guest's arrival, `since`, is a wall-clock time: it is kept on disk).
   */
  view (now = monotonicMs()): LocalView {
    const self = this.node.view(this.node.id)
    // Itself at its local (mean) load, as MOSIX decides (it rises slowly and falls at once), moved
    // at once by the processes that came or left (lookAround, moved); the others by what they
    // advertise (the upper load: up at once, down slowly), plus the moves in flight to or from them.
    const local = this.node.probe.snapshot().localLoad
    const selfView = selfViewOf(this.node.id, { ...(self?.info ?? this.node.gossip.self()), load: local, status: self?.status ?? 0 })
    const procs: ProcInfo[] = []
    const up = uptime()
    const wall = Date.now()
    for (const g of this.migrator.guests.values()) {
      if (g.leaving) continue
      const mem = residentBytes(g.pid)
      const residence = Math.max(0, (wall - g.since) / 1000)
      procs.push({
        pid: g.pid,
        ...this.measure(g.pid, now, g.decay),
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
      const age = processAge(f, up)
      const back = this.homeSince.get(p.pid)
      procs.push({
        pid: p.pid,
        ...this.measure(p.pid, now, p.decay, f),
        mem,
        image: mem,
        age,
        // since it came home, if it has been away: it is not sent off again at once
        residence: back === undefined ? age : Math.min(age, (now - back) / 1000),
        lock: p.lock,
        cantmove: until > now
      })
    }
    for (const pid of this.usage.keys()) if (!this.migrator.procs.has(pid) && !this.migrator.guests.has(pid)) this.usage.delete(pid)
    for (const p of procs) {
      if (this.usage.get(p.pid)?.fresh !== false) continue // not measured yet: its demand stays as assumed
      const d = cpuDemand(p, selfView)
      if (this.present.has(p.pid)) this.present.set(p.pid, d)
      if (p.guest !== true) this.known.set(p.pid, { demand: d, mem: p.mem })
    }
    const others = []
    const clock = this.clock
    for (const id of this.node.nodeIds()) {
      if (id === this.node.id) continue
      const v = this.node.view(id)
      if (v) others.push(this.inflight.apply(nodeViewOf(v.info, v.up), clock - v.age, clock))
    }
    this.model.resize(others.length + 1)
    return {
      self: selfView,
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

  /** Every interval: the processes that came and went, then at most one automatic move. */
  tick (): void {
    const now = monotonicMs()
    this.lookAround()
    const view = this.view(now) // measures every process, with balancing off too (their decayed history)
    if (!this.enabled) return
    if ([...this.migrator.procs.values()].some(p => p.where === 'migrating')) return
    if ([...this.migrator.guests.values()].some(g => g.leaving)) return
    const d = rebalance(view, { model: this.model, explain: false, tunables: this.tunables })
    this.stats.decisions++
    if (d.action !== 'move' || d.pid === undefined || d.target === undefined) return
    log('move %d to %d: %s', d.pid, d.target, d.why)
    const pid = d.pid
    const target = d.target
    this.inflight.sent(pid, target, d.demand ?? 1, residentBytes(pid), this.clock)
    const guest = this.migrator.guests.get(pid)
    if (guest) {
      this.migrator.askHomeToMove(guest, target, d.why)
      this.asked.set(pid, { target, at: guest.moveAsked })
      this.stats.asks++
      return
    }
    try {
      void this.migrator.requestMove(pid, target).then(() => {
        const p = this.migrator.procs.get(pid)
        if (p && p.lastError) { this.backoff.set(pid, monotonicMs() + 30_000); this.inflight.failed(pid); this.stats.failures++ }
      })
      this.stats.moves++
    } catch (e) {
      log('move %d refused: %s', pid, (e as Error).message)
      this.backoff.set(pid, monotonicMs() + 30_000)
      this.inflight.failed(pid)
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
    const clock = this.clock
    const flying = this.inflight.list().map(e => `node ${e.node} ${e.demand >= 0 ? '+' : ''}${e.demand.toFixed(2)} (pid ${e.pid} ${e.demand >= 0 ? 'to' : 'from'} it, ${e.landedAt === undefined ? 'under way' : `${((clock - e.landedAt) / 1000).toFixed(1)} s ago`})`)
    const inflight = `in flight: ${flying.length > 0 ? flying.join(', ') : 'none'}\n`
    const model = `cost: base ${this.model.base} (nodes), max_jobs ${this.model.maxJobs}\n`
    const s = this.stats
    const counters = `counters: rounds ${s.decisions} placements ${s.placements} moves ${s.moves} asks ${s.asks} failures ${s.failures}\n`
    return head + bw + inflight + model + counters + d.processes.map(formatExplanation).join('')
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
