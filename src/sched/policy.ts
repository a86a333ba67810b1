// The scheduling policy of one node, from its local view: where to start a new job (lowest
// opportunity cost, near-equal candidates picked at random), and whether to move one of its
// processes (memory ushering first, then E-Mosix-style greedy reassignment gated by time saved vs.
// migration time). Pure code: no I/O, no timers; the daemon feeds it a view and applies the result.
// See docs/sched.md for the formulas and the reasons behind every tunable.
import createDebug from '../util/log.js'
import { CostModel, STD_SPEED, capacityOf, loadToJobs, type JobDemand, type NodeResources } from './cost.js'

const debug = createDebug('hpcfs:sched')

/** Every tunable of the policy, with its default. Override any subset through `PolicyOptions.tunables`. */
export const SCHED_DEFAULTS = {
  /** Candidates whose marginal cost is within this fraction of the smallest are equal; one is picked at random (anti-herding, gossimon's EQUAL_LOAD_DIFF idea). */
  tieEpsilon: 0.05,
  /**
   * Placement looks at the local node plus this many nodes drawn at random from the window (0 = the
   * whole window). With gossip-delayed loads, every node choosing the globally cheapest node herds
   * onto it; a few random choices are robust to stale information (Mitzenmacher, "How useful is old
   * information?", 2000). The same sample bounds the targets examined per process when rebalancing.
   */
  choices: 2,
  /**
   * Move only when expected seconds saved > hysteresis × migration seconds. The seconds saved rest
   * on a guess of the remaining run time (remainingPerAge), and a move also slows the target's
   * other processes, which the estimate leaves out. In the simulator (docs/sched.md) 6 gave the
   * same mean slowdown as 1.3 (Kerrighed's stab_factor, the earlier default) and 3, within noise,
   * with 45% fewer migrations than 1.3 and 30% fewer than 3. A 4 MiB process then moves for a
   * gain above ≈ 0.55 s.
   */
  hysteresis: 6,
  /**
   * A move must still lower the system cost if the target carried loadMargin × the process's load
   * more than the view shows. Gossiped loads are smoothed and an interval or two old, so two nearly
   * equal nodes can each look a little lighter than the other; with this margin they do not pass
   * processes back and forth. On nodes of equal speed it is Kerrighed's rule (docs/sched.md, Policy (b))
   * with a stab_factor of 150%: move only if remote + 1.5 × the process's load < local, so 3:1
   * becomes 2:2 and 2:1 stays. Unlike a gate on the cost drop itself, it does not depend on max_jobs
   * (which flattens the costs). 0.5 rather than Kerrighed's 0.3: in the simulator it did as well on
   * fresh views and better on staler ones (docs/sched.md).
   */
  loadMargin: 0.5,
  /**
   * Move only when the system cost drops by more than this fraction of what the process costs
   * here, on top of loadMargin. 0: the margin is the guard against stale loads. A gate of 10% (the
   * default before loadMargin) blocked the correction of a 3:1 split on two equal nodes once
   * max_jobs was 8 (the move gains 8% there).
   */
  minCostGain: 0,
  /** Expected remaining run time = remainingPerAge × age (the MOSIX heuristic: a process that has run long will run long). */
  remainingPerAge: 1,
  /** Processes younger than this (s) are not moved by load balancing: too little is known about them. */
  minAge: 1,
  /** Seconds a process must have spent on this node before balancing moves it again (limits reassignments per job). */
  minResidence: 2,
  /** Memory ushering starts when free memory < memLowFraction × total. */
  memLowFraction: 0.1,
  /** A target must keep memReserveFraction × its total memory free after receiving a process. Keep ≥ memLowFraction so ushering never bounces. */
  memReserveFraction: 0.15,
  /** Bandwidth (bytes/s) assumed to a node with no measurement. */
  defaultBandwidth: 100e6,
  /** Fixed cost of a migration (s): connection, freeze, restore. */
  migrationLatency: 0.05,
  /** CPU rate divisor on a node whose memory is over-committed (docs/sched.md, Cost: thrashing). */
  thrashFactor: 10
}

export type SchedTunables = typeof SCHED_DEFAULTS

/** A process of the local node as the policy sees it. */
export interface ProcInfo {
  pid: number
  /** Fraction of one CPU used recently (0..1). */
  cpu: number
  /**
   * Fraction of the time it was runnable recently (on a CPU or waiting for one: MOSIX's per-process
   * load), when measured. A CPU-bound process counts 1 however little CPU it got.
   */
  runnable?: number
  mem: number // bytes resident
  image: number // bytes a migration transfers
  age: number // seconds since the process started
  residence?: number // seconds since it arrived on this node (default: age)
  lock?: boolean // user lock: never moved automatically
  cantmove?: boolean // cannot migrate (openMosix cantmove / DSTAY reasons)
  guest?: boolean // its home is another node
}

/** A node as seen through gossip (or the local node's own probe). */
export interface NodeView {
  id: number
  load: number // openMosix units: 100 = one busy standard CPU
  speed: number // 10000 = Pentium III 1 GHz
  cpus: number
  freeMem: number // bytes
  totalMem: number // bytes
  up?: boolean // default true
  block?: boolean // accepts no guests
}

export interface SelfView extends NodeView {
  stay?: boolean // no automatic moves away
  lstay?: boolean // local processes stay; guests may leave
}

export interface LocalView {
  self: SelfView
  procs: readonly ProcInfo[]
  others: readonly NodeView[]
  /** Measured bandwidth to each node, bytes/s. */
  bandwidth?: ReadonlyMap<number, number>
  /** Number of nodes in the cluster (the cost base); default: others + 1. */
  clusterSize?: number
}

export interface PolicyOptions {
  tunables?: Partial<SchedTunables>
  /** Keeps max_jobs across decisions; a fresh one (observing this view) if absent. */
  model?: CostModel
  rng?: () => number
  /** Build per-candidate explanations (default true; the simulator turns it off for speed). */
  explain?: boolean
}

export type Verdict =
  | 'chosen' | 'tie' | 'higher-cost' | 'down' | 'blocked' | 'no-memory'
  | 'no-cost-gain' | 'gain-below-migration-cost' | 'best-if-movable'

export interface CandidateExplanation {
  node: number
  marginalCost: number // NaN when not evaluated (down, blocked, no memory)
  futureLoad: number // openMosix units with the job added
  secondsSaved?: number
  migrationSeconds?: number
  verdict: Verdict
}

export interface ProcessExplanation {
  pid: number
  /** Cost drop here if the process left (its opportunity cost on this node). */
  costHere: number
  movable: boolean
  why: string
  candidates: CandidateExplanation[]
}

export interface PlacementDecision {
  action: 'place'
  target: number
  marginalCost: number
  why: string
  candidates: CandidateExplanation[]
}

export interface MoveDecision {
  action: 'move' | 'stay'
  reason: 'usher' | 'balance' | 'none'
  pid?: number
  target?: number
  /** For a move: cost here − marginal cost there. */
  costGain?: number
  /** For a move: the process's CPU demand (runnable tasks it takes away from here, adds there). */
  demand?: number
  secondsSaved?: number
  migrationSeconds?: number
  why: string
  processes: ProcessExplanation[]
}

interface Ctx {
  t: SchedTunables
  model: CostModel
  rng: () => number
  explain: boolean
  selfRes: NodeResources
  selfJobs: number // running jobs on this node (load × capacity)
}

function resourcesOf (n: NodeView): NodeResources {
  return {
    load: loadToJobs(n.load),
    capacity: capacityOf(n.cpus, n.speed),
    memUsed: Math.max(0, n.totalMem - n.freeMem),
    memTotal: n.totalMem
  }
}

function context (view: LocalView, opts: PolicyOptions): Ctx {
  const t = { ...SCHED_DEFAULTS, ...opts.tunables }
  const model = opts.model ?? new CostModel(view.clusterSize ?? view.others.length + 1)
  const selfRes = resourcesOf(view.self)
  model.observe(selfRes.load)
  for (const o of view.others) if (o.up !== false) model.observe(loadToJobs(o.load))
  return { t, model, rng: opts.rng ?? Math.random, explain: opts.explain !== false, selfRes, selfJobs: selfRes.load * selfRes.capacity }
}

/**
 * CPU demand of a process, in CPUs (1 = CPU-bound): its recent use over the share it could get
 * here, or the fraction of the time it was runnable if that is more (it is when the node's CPUs
 * are a quota, or its load has not caught up with the processes yet).
 */
export function cpuDemand (p: ProcInfo, self: NodeView): number {
  const jobs = loadToJobs(self.load) * capacityOf(self.cpus, self.speed)
  const fair = Math.min(1, Math.max(1, self.cpus) / Math.max(1, jobs))
  return Math.min(1, Math.max(0, p.cpu / fair, p.runnable ?? 0))
}


/** Standard-CPU seconds per second one process gets on a node with k running jobs (itself included). */
export function processRate (speed: number, cpus: number, k: number, thrashing: boolean, thrashFactor: number): number {
  const r = (Math.max(1, speed) / STD_SPEED) * Math.min(1, Math.max(1, cpus) / Math.max(1, k))
  return thrashing ? r / thrashFactor : r
}

function migrationSeconds (view: LocalView, node: number, image: number, t: SchedTunables): number {
  const bw = view.bandwidth?.get(node) ?? t.defaultBandwidth
  return t.migrationLatency + image / Math.max(1, bw)
}

function futureLoad (n: NodeView, cpu: number): number {
  return n.load + 100 * cpu / capacityOf(n.cpus, n.speed)
}

/**
 * `choices` nodes of the window drawn at random (the whole window if it is not larger), among
 * those up and not blocked: a node that cannot take a process would waste a draw (a map of 64
 * nodes with 8 up would leave most decisions with no candidate at all).
 */
function sample (others: readonly NodeView[], ctx: Ctx): readonly NodeView[] {
  const d = ctx.t.choices
  if (d <= 0 || others.length <= d) return others
  const live = others.filter(n => n.up !== false && n.block !== true)
  if (live.length <= d) return live
  const picked = new Set<number>()
  while (picked.size < d) picked.add(Math.floor(ctx.rng() * live.length))
  return [...picked].map(i => live[i])
}

/** Among evaluated costs, the smallest and a random pick among those within tieEpsilon of it. */
function pickNearMin (costs: number[], idx: number[], ctx: Ctx): { pick: number, min: number, ties: number[] } {
  let min = Infinity
  for (const i of idx) if (costs[i] < min) min = costs[i]
  const limit = min + Math.abs(min) * ctx.t.tieEpsilon
  const ties = idx.filter(i => costs[i] <= limit)
  const pick = ties.length > 0 ? ties[Math.floor(ctx.rng() * ties.length)] : -1
  return { pick, min, ties }
}

/**
 * (a) Placement of a new job: the node (self included) with the lowest marginal cost among those
 * up, not blocked (self is always allowed), and with enough free memory (if none has, all are
 * allowed). Candidates within tieEpsilon of the minimum are equal; one is chosen at random.
 */
export function placeJob (view: LocalView, job: JobDemand = { cpu: 1, mem: 0 }, opts: PolicyOptions = {}): PlacementDecision {
  const ctx = context(view, opts)
  const nodes: NodeView[] = [view.self, ...sample(view.others, ctx)]
  const costs: number[] = new Array(nodes.length).fill(NaN)
  const verdicts: Verdict[] = new Array(nodes.length).fill('higher-cost')
  const fits: number[] = []
  const any: number[] = []
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]
    if (i > 0 && n.up === false) { verdicts[i] = 'down'; continue }
    if (i > 0 && n.block === true) { verdicts[i] = 'blocked'; continue }
    costs[i] = ctx.model.marginalCost(i === 0 ? ctx.selfRes : resourcesOf(n), job)
    any.push(i)
    if (n.freeMem >= job.mem) fits.push(i); else verdicts[i] = 'no-memory'
  }
  const pool = fits.length > 0 ? fits : any
  const { pick, ties } = pickNearMin(costs, pool, ctx)
  for (const i of ties) verdicts[i] = 'tie'
  verdicts[pick] = 'chosen'
  const candidates: CandidateExplanation[] = ctx.explain
    ? nodes.map((n, i) => ({ node: n.id, marginalCost: costs[i], futureLoad: futureLoad(n, job.cpu), verdict: verdicts[i] }))
    : []
  const why = `lowest marginal cost ${costs[pick].toFixed(4)}` + (ties.length > 1 ? `, picked at random among ${ties.length} within ${ctx.t.tieEpsilon * 100}%` : '') +
    (fits.length === 0 ? ' (no node has enough free memory)' : '')
  return { action: 'place', target: nodes[pick].id, marginalCost: costs[pick], why, candidates }
}

/** Why a process may not be moved automatically, or null if it may. */
function immovable (p: ProcInfo, self: SelfView): string | null {
  if (p.lock === true) return 'locked'
  if (p.cantmove === true) return 'cannot migrate'
  if (self.stay === true) return 'node stay: no automatic moves away'
  if (self.lstay === true && p.guest !== true) return 'node lstay: local processes stay'
  return null
}

interface Best { target: number, cost: number, gain: number, saved: number, mig: number, demand: number }

/**
 * Evaluates moving p to every other node. `usher`: targets need room to spare and the cost/time
 * gates do not apply (memory pressure overrides load balancing). Returns the chosen target or null.
 */
function evaluate (view: LocalView, p: ProcInfo, ctx: Ctx, usher: boolean, out: CandidateExplanation[] | null): Best | null {
  const { t, model } = ctx
  const d = cpuDemand(p, view.self)
  const job: JobDemand = { cpu: d, mem: p.mem }
  const costHere = model.removalGain(ctx.selfRes, job, true)
  const kHere = Math.max(d, ctx.selfJobs)
  const rateHere = processRate(view.self.speed, view.self.cpus, kHere, view.self.freeMem < 0, t.thrashFactor)
  const relieves = view.self.freeMem < 0 && view.self.freeMem + p.mem >= 0
  const remaining = t.remainingPerAge * p.age
  const others = view.others
  const costs: number[] = new Array(others.length).fill(NaN)
  const verdicts: Verdict[] = new Array(others.length)
  const saved: number[] = new Array(others.length).fill(NaN)
  const migs: number[] = new Array(others.length).fill(NaN)
  const ok: number[] = []
  for (let i = 0; i < others.length; i++) {
    const n = others[i]
    if (n.up === false) { verdicts[i] = 'down'; continue }
    if (n.block === true) { verdicts[i] = 'blocked'; continue }
    const room = n.freeMem - p.mem - (usher ? t.memReserveFraction * n.totalMem : 0)
    if (room < 0) { verdicts[i] = 'no-memory'; continue }
    const r = resourcesOf(n)
    costs[i] = model.marginalCost(r, job, true)
    // (rebalancing weighs the CPU term by capacity: cost.ts) the same with the target loadMargin ×
    // this process's load heavier than it looks (stale loads)
    const guarded = model.marginalCost({ ...r, load: r.load + t.loadMargin * model.addedLoad(r, job) }, job, true)
    const kThere = r.load * r.capacity + d
    const rateThere = processRate(n.speed, n.cpus, kThere, n.freeMem - p.mem < 0, t.thrashFactor)
    // only its CPU part runs faster there: a process that uses little CPU saves little time
    saved[i] = remaining * d * Math.max(0, 1 - rateHere / rateThere)
    // a move that ends this node's thrashing speeds up the others here too, thrashFactor times
    if (relieves) saved[i] += remaining * Math.max(0, kHere - d) * (1 - 1 / t.thrashFactor)
    migs[i] = migrationSeconds(view, n.id, p.image, t)
    if (usher) { verdicts[i] = 'higher-cost'; ok.push(i); continue }
    if (costHere - guarded <= t.minCostGain * costHere) { verdicts[i] = 'no-cost-gain'; continue }
    if (saved[i] <= t.hysteresis * migs[i]) { verdicts[i] = 'gain-below-migration-cost'; continue }
    verdicts[i] = 'higher-cost'
    ok.push(i)
  }
  let best: Best | null = null
  if (ok.length > 0) {
    const { pick, ties } = pickNearMin(costs, ok, ctx)
    for (const i of ties) verdicts[i] = 'tie'
    verdicts[pick] = 'chosen'
    best = { target: others[pick].id, cost: costs[pick], gain: costHere - costs[pick], saved: saved[pick], mig: migs[pick], demand: d }
  }
  if (out !== null) {
    for (let i = 0; i < others.length; i++) {
      out.push({
        node: others[i].id,
        marginalCost: costs[i],
        futureLoad: futureLoad(others[i], d),
        ...(Number.isNaN(saved[i]) ? {} : { secondsSaved: saved[i], migrationSeconds: migs[i] }),
        verdict: verdicts[i]
      })
    }
  }
  return best
}

/**
 * (b)+(c) One rebalancing decision: at most one move. Memory ushering first (free memory below
 * memLowFraction: move the process that relieves it to a node with room, whatever the loads), then
 * load balancing: the move (process, target) that lowers the system cost the most among those whose
 * expected seconds saved exceed hysteresis × migration seconds.
 */
export function rebalance (fullView: LocalView, opts: PolicyOptions = {}): MoveDecision {
  const ctx = context(fullView, opts)
  const view: LocalView = { ...fullView, others: sample(fullView.others, ctx) }
  const { t } = ctx
  const self = view.self
  const processes: ProcessExplanation[] = []
  const movable: ProcInfo[] = []
  for (const p of view.procs) {
    const why = immovable(p, self)
    if (why === null) movable.push(p)
    else if (ctx.explain) processes.push(explainOne(view, p, ctx, false, why))
  }

  // (c) Memory ushering.
  const low = t.memLowFraction * self.totalMem
  if (self.freeMem < low && movable.length > 0) {
    const deficit = low - self.freeMem
    // The smallest process that relieves the whole deficit, else the biggest ones first.
    const relieving = movable.filter(p => p.mem >= deficit).sort((a, b) => a.mem - b.mem)
    const rest = movable.filter(p => p.mem < deficit).sort((a, b) => b.mem - a.mem)
    for (const p of [...relieving, ...rest]) {
      const out = ctx.explain ? [] as CandidateExplanation[] : null
      const best = evaluate(view, p, ctx, true, out)
      if (best !== null) {
        if (out !== null) processes.push({ pid: p.pid, costHere: ctx.model.removalGain(ctx.selfRes, { cpu: cpuDemand(p, self), mem: p.mem }, true), movable: true, why: 'memory ushering', candidates: out })
        const why = `memory ushering: free ${fmtBytes(self.freeMem)} < ${fmtBytes(low)}, pid ${p.pid} (${fmtBytes(p.mem)}) to node ${best.target}`
        debug('usher %s', why)
        return { action: 'move', reason: 'usher', pid: p.pid, target: best.target, costGain: best.gain, demand: best.demand, secondsSaved: best.saved, migrationSeconds: best.mig, why, processes }
      }
    }
  }

  // (b) Load balancing.
  let choice: { p: ProcInfo, best: Best } | null = null
  for (const p of movable) {
    if (p.age < t.minAge) {
      if (ctx.explain) processes.push(explainOne(view, p, ctx, true, `younger than ${t.minAge} s`))
      continue
    }
    if ((p.residence ?? p.age) < t.minResidence) {
      if (ctx.explain) processes.push(explainOne(view, p, ctx, true, `arrived less than ${t.minResidence} s ago`))
      continue
    }
    const out = ctx.explain ? [] as CandidateExplanation[] : null
    const best = evaluate(view, p, ctx, false, out)
    if (out !== null) {
      processes.push({
        pid: p.pid,
        costHere: ctx.model.removalGain(ctx.selfRes, { cpu: cpuDemand(p, self), mem: p.mem }, true),
        movable: true,
        why: best === null ? 'no node lowers the cost enough to pay for the migration' : `could move to node ${best.target}`,
        candidates: out
      })
    }
    if (best !== null && (choice === null || best.gain > choice.best.gain ||
      (best.gain === choice.best.gain && best.saved - best.mig > choice.best.saved - choice.best.mig))) {
      choice = { p, best }
    }
  }
  if (choice === null) {
    return { action: 'stay', reason: 'none', why: movable.length === 0 ? 'no movable process' : 'no move pays for itself', processes }
  }
  const { p, best } = choice
  const why = `balance: pid ${p.pid} to node ${best.target}, cost gain ${best.gain.toFixed(4)}, ` +
    `saves ~${best.saved.toFixed(1)} s > ${t.hysteresis} × ${best.mig.toFixed(2)} s migration`
  debug('%s', why)
  return { action: 'move', reason: 'balance', pid: p.pid, target: best.target, costGain: best.gain, demand: best.demand, secondsSaved: best.saved, migrationSeconds: best.mig, why, processes }
}

function explainOne (view: LocalView, p: ProcInfo, ctx: Ctx, movable: boolean, why: string): ProcessExplanation {
  const out: CandidateExplanation[] = []
  evaluate(view, p, ctx, false, out)
  // A process that is not moved now (pinned, too young, just arrived) has no chosen target:
  // show where it would go if it could.
  for (const c of out) if (c.verdict === 'chosen') c.verdict = 'best-if-movable'
  return { pid: p.pid, costHere: ctx.model.removalGain(ctx.selfRes, { cpu: cpuDemand(p, view.self), mem: p.mem }, true), movable, why, candidates: out }
}

/** The explanation for one process (what a `proc/<pid>/costs` file shows), or null if pid is not local. */
export function explainProcess (view: LocalView, pid: number, opts: PolicyOptions = {}): ProcessExplanation | null {
  const p = view.procs.find(x => x.pid === pid)
  if (p === undefined) return null
  const ctx = context(view, { ...opts, explain: true })
  const why = immovable(p, view.self)
  if (why !== null) return explainOne(view, p, ctx, false, why)
  const out: CandidateExplanation[] = []
  const best = evaluate(view, p, ctx, false, out)
  return {
    pid,
    costHere: ctx.model.removalGain(ctx.selfRes, { cpu: cpuDemand(p, view.self), mem: p.mem }, true),
    movable: true,
    why: best === null ? 'stays: no node lowers the cost enough to pay for the migration' : `would move to node ${best.target}`,
    candidates: out
  }
}

/** Text form of a process explanation: one header line, then one line per candidate node. */
export function formatExplanation (e: ProcessExplanation): string {
  const lines = [`pid ${e.pid} cost-here ${e.costHere.toFixed(4)} ${e.movable ? 'movable' : 'pinned'}: ${e.why}`]
  for (const c of e.candidates) {
    const mc = Number.isNaN(c.marginalCost) ? '-' : c.marginalCost.toFixed(4)
    const s = c.secondsSaved === undefined ? '' : ` saves ${c.secondsSaved.toFixed(1)}s migration ${(c.migrationSeconds ?? 0).toFixed(2)}s`
    lines.push(`node ${c.node} cost ${mc} load ${Math.round(c.futureLoad)}${s} ${c.verdict}`)
  }
  return lines.join('\n') + '\n'
}

function fmtBytes (b: number): string {
  return b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)}G` : `${Math.round(b / (1 << 20))}M`
}
