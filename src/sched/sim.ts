// A cluster simulator for comparing job-assignment policies (docs/sched.md, Cost and Simulator): heterogeneous
// nodes, Poisson job arrivals with heavy-tailed CPU demand and random memory, equal CPU sharing per
// node (processor sharing, exact between events), CPU rate ÷10 on a node whose memory is
// over-committed, migration time = latency + image / bandwidth (the process makes no progress in
// flight), and per-interval decisions by every node from a stale, partial view of the others
// (each view entry is 1..maxStaleness intervals old, as gossip would deliver it).
//
// Policies: round robin and random placement (PVM-like), E-PVM (opportunity-cost placement, no
// migration), Mosix-like (start at home, Kerrighed's rule: second-heaviest process to the node with
// the lowest remote + 1.3 × single-process load if that is below the local load), and ours
// (opportunity-cost placement + src/sched/policy.ts rebalancing and memory ushering).
import { CostModel, STD_SPEED, capacityOf } from './cost.js'
import { SCHED_DEFAULTS, placeJob, rebalance, processRate, type LocalView, type NodeView, type ProcInfo, type SchedTunables } from './policy.js'
import { InFlight } from './inflight.js'
import { mulberry32, deriveSeed } from '../sim/random.js'

export type PolicyName = 'roundrobin' | 'random' | 'epvm' | 'mosix' | 'ours'
export const POLICIES: readonly PolicyName[] = ['roundrobin', 'random', 'epvm', 'mosix', 'ours']

const GB = 1 << 30
const MB = 1 << 20

export interface SimConfig {
  nodes: number
  seed: number
  policy: PolicyName
  /** Offered CPU load / total cluster capacity. */
  utilisation: number
  /** Jobs arrive during [0, arrivalSeconds); the run continues until all have finished. */
  arrivalSeconds: number
  /** Decision interval, s. */
  interval: number
  /** View entries are 1..maxStaleness intervals old. */
  maxStaleness: number
  /** Other nodes in each node's view (all of them if the cluster is smaller). */
  window: number
  speedRange: [number, number]
  cpusRange: [number, number]
  memSizes: number[] // bytes, picked uniformly per node
  /** Bounded Pareto CPU demand in standard-CPU seconds. */
  workAlpha: number
  workMin: number
  workMax: number
  /** Log-normal job memory. */
  memMedian: number
  memSigma: number
  memMax: number
  bandwidth: number // bytes/s between any two nodes
  tunables: Partial<SchedTunables>
  /** Kerrighed's stab_factor for the Mosix-like policy. */
  stabFactor: number
}

export const SIM_DEFAULTS: Omit<SimConfig, 'nodes' | 'seed' | 'policy'> = {
  utilisation: 0.75,
  arrivalSeconds: 300,
  interval: 1,
  maxStaleness: 3,
  window: 32,
  speedRange: [5000, 30000],
  cpusRange: [1, 4],
  memSizes: [1, 2, 4, 8].map(g => g * GB),
  workAlpha: 1.1,
  workMin: 0.5,
  workMax: 1000,
  memMedian: 64 * MB,
  memSigma: 1.2,
  memMax: 4 * GB,
  bandwidth: 100e6,
  tunables: {},
  stabFactor: 1.3
}

export interface SimResult {
  policy: PolicyName
  nodes: number
  seed: number
  jobs: number
  meanSlowdown: number
  medianSlowdown: number
  meanResponse: number // s
  migrations: number
  migrationsPerJob: number
  /** Fraction of node-seconds with jobs spent thrashing. */
  thrashShare: number
  endTime: number // s, when the last job finished
  wallMs: number
}

interface Job {
  id: number
  work: number // remaining standard-CPU seconds
  mem: number
  image: number
  arrival: number
  onNodeSince: number
  best: number // run time alone on the fastest node
  origin: number
}

interface Node {
  id: number
  speed: number
  cpus: number
  cap: number
  memTotal: number
  memUsed: number
  jobs: Job[]
  t: number // simulated up to
  model: CostModel
  /** Ours: the jobs it sent (started remotely or moved), counted on their targets until a snapshot shows them. */
  inflight: InFlight
  busyTime: number
  thrashTime: number
}

/** Mean of a bounded Pareto(α, L, H). */
export function boundedParetoMean (a: number, L: number, H: number): number {
  if (a === 1) return (H * L / (H - L)) * Math.log(H / L)
  return (Math.pow(L, a) / (1 - Math.pow(L / H, a))) * (a / (a - 1)) * (Math.pow(L, 1 - a) - Math.pow(H, 1 - a))
}

export function simulate (partial: Partial<SimConfig> & Pick<SimConfig, 'nodes' | 'seed' | 'policy'>): SimResult {
  const cfg: SimConfig = { ...SIM_DEFAULTS, ...partial }
  const wall = Date.now()
  const N = cfg.nodes
  const t: SchedTunables = { ...SCHED_DEFAULTS, ...cfg.tunables }
  // The cluster is the same for every policy with the same seed; so is the job stream.
  const rc = mulberry32(deriveSeed(cfg.seed, 1))
  const rj = mulberry32(deriveSeed(cfg.seed, 2))
  const rp = mulberry32(deriveSeed(cfg.seed, 3)) // policy randomness
  const rv = mulberry32(deriveSeed(cfg.seed, 4)) // views
  const nodes: Node[] = []
  for (let i = 0; i < N; i++) {
    const speed = Math.round(cfg.speedRange[0] + rc() * (cfg.speedRange[1] - cfg.speedRange[0]))
    const cpus = cfg.cpusRange[0] + Math.floor(rc() * (cfg.cpusRange[1] - cfg.cpusRange[0] + 1))
    const memTotal = cfg.memSizes[Math.floor(rc() * cfg.memSizes.length)]
    nodes.push({ id: i + 1, speed, cpus, cap: capacityOf(cpus, speed), memTotal, memUsed: 0, jobs: [], t: 0, model: new CostModel(N), inflight: new InFlight(0, 30), busyTime: 0, thrashTime: 0 })
  }
  const bestSpeed = Math.max(...nodes.map(n => n.speed)) / STD_SPEED
  const totalCap = nodes.reduce((s, n) => s + n.cap, 0)
  const lambda = cfg.utilisation * totalCap / boundedParetoMean(cfg.workAlpha, cfg.workMin, cfg.workMax)

  // Job stream (drawn lazily but from its own generator, so identical across policies).
  let nextArrival = -Math.log(1 - rj()) / lambda
  let jobId = 0
  const drawJob = (at: number): Job => {
    const u = rj()
    const a = cfg.workAlpha; const L = cfg.workMin; const H = cfg.workMax
    const work = L / Math.pow(1 - u * (1 - Math.pow(L / H, a)), 1 / a)
    const z = Math.sqrt(-2 * Math.log(1 - rj())) * Math.cos(2 * Math.PI * rj())
    const mem = Math.min(cfg.memMax, cfg.memMedian * Math.exp(cfg.memSigma * z))
    const origin = Math.floor(rj() * N)
    return { id: ++jobId, work, mem, image: mem + 8 * MB, arrival: at, onNodeSince: at, best: work / bestSpeed, origin }
  }

  const slowdowns: number[] = []
  let responseSum = 0
  let migrations = 0
  let lastFinish = 0
  let active = 0

  const thrashing = (n: Node): boolean => n.memUsed > n.memTotal
  /** Processor sharing on node n up to time T, finishing jobs exactly. */
  const advance = (n: Node, T: number): void => {
    while (n.t < T) {
      const k = n.jobs.length
      if (k === 0) { n.t = T; return }
      const th = thrashing(n)
      const rate = processRate(n.speed, n.cpus, k, th, t.thrashFactor)
      let minW = Infinity
      for (const j of n.jobs) if (j.work < minW) minW = j.work
      const tFin = minW / rate
      const dt = Math.min(tFin, T - n.t)
      for (const j of n.jobs) j.work -= rate * dt
      n.t = tFin <= T - n.t ? n.t + dt : T
      n.busyTime += dt
      if (th) n.thrashTime += dt
      if (tFin > dt) continue
      for (let i = n.jobs.length - 1; i >= 0; i--) {
        const j = n.jobs[i]
        if (j.work > 1e-9) continue
        n.jobs.splice(i, 1)
        n.memUsed -= j.mem
        const resp = n.t - j.arrival
        slowdowns.push(resp / j.best)
        responseSum += resp
        lastFinish = Math.max(lastFinish, n.t)
        active--
      }
    }
  }
  const addJob = (n: Node, j: Job, at: number): void => {
    advance(n, at)
    j.onNodeSince = at
    n.jobs.push(j)
    n.memUsed += j.mem
  }

  // Gossip history: per interval a snapshot of every node's load and free memory.
  const D = Math.max(1, cfg.maxStaleness)
  const histLoad: Float64Array[] = Array.from({ length: D + 1 }, () => new Float64Array(N))
  const histFree: Float64Array[] = Array.from({ length: D + 1 }, () => new Float64Array(N))
  for (let s = 0; s <= D; s++) for (let i = 0; i < N; i++) histFree[s][i] = nodes[i].memTotal
  let snap = 0 // snapshots taken
  const takeSnapshot = (): void => {
    const slot = snap % (D + 1)
    for (let i = 0; i < N; i++) {
      const n = nodes[i]
      histLoad[slot][i] = n.jobs.length * 100 / n.cap
      histFree[slot][i] = n.memTotal - n.memUsed
    }
    snap++
  }
  const mark = new Uint32Array(N)
  let stamp = 0
  /**
   * Node i's view of the others. `flight`: ours counts what it sent on each target until the
   * entry's snapshot (taken at now − (age − 1) intervals, after the landings before it) shows it.
   */
  const viewOf = (i: number, flight?: { now: number }): NodeView[] => {
    const out: NodeView[] = []
    const add = (k: number): void => {
      const age = 1 + Math.floor(rv() * D)
      const slot = ((snap - Math.min(age, snap)) % (D + 1) + (D + 1)) % (D + 1)
      const n = nodes[k]
      const v: NodeView = { id: n.id, load: snap === 0 ? 0 : histLoad[slot][k], speed: n.speed, cpus: n.cpus, freeMem: histFree[slot][k], totalMem: n.memTotal }
      out.push(flight === undefined ? v : nodes[i].inflight.apply(v, snap === 0 ? -Infinity : flight.now - (Math.min(age, snap) - 1) * cfg.interval, flight.now))
    }
    if (N - 1 <= cfg.window) {
      for (let k = 0; k < N; k++) if (k !== i) add(k)
      return out
    }
    stamp++
    mark[i] = stamp
    while (out.length < cfg.window) {
      const k = Math.floor(rv() * N)
      if (mark[k] === stamp) continue
      mark[k] = stamp
      add(k)
    }
    return out
  }
  const selfView = (n: Node): NodeView => ({ id: n.id, load: n.jobs.length * 100 / n.cap, speed: n.speed, cpus: n.cpus, freeMem: n.memTotal - n.memUsed, totalMem: n.memTotal })

  let rr = 0
  const place = (j: Job, at: number): void => {
    const o = nodes[j.origin]
    let target: Node
    switch (cfg.policy) {
      case 'roundrobin': target = nodes[rr++ % N]; break
      case 'random': target = nodes[Math.floor(rp() * N)]; break
      case 'mosix': target = o; break
      default: {
        advance(o, at)
        const ours = cfg.policy === 'ours'
        const d = placeJob({ self: selfView(o), procs: [], others: viewOf(j.origin, ours ? { now: at } : undefined), clusterSize: N }, { cpu: 1, mem: j.mem }, { model: o.model, rng: rp, explain: false, tunables: cfg.tunables })
        target = nodes[d.target - 1]
        if (ours && target !== o) o.inflight.landed(j.id, target.id, at + t.migrationLatency, 1, j.mem)
      }
    }
    if (target === o) addJob(o, j, at)
    else landings.push({ at: at + t.migrationLatency, node: target, job: j })
  }

  // Jobs in flight (remote starts and migrations), a heap by landing time.
  const landings = new LandingHeap<{ at: number, node: Node, job: Job }>()
  const move = (from: Node, j: Job, to: Node, at: number): number => {
    const k = from.jobs.indexOf(j)
    from.jobs.splice(k, 1)
    from.memUsed -= j.mem
    migrations++
    const landing = at + t.migrationLatency + j.image / cfg.bandwidth
    landings.push({ at: landing, node: to, job: j })
    return landing
  }

  const mosixDecide = (n: Node, now: number): void => {
    if (n.jobs.length === 0) return
    const local = n.jobs.length * 100 / n.cap
    const movable = n.jobs.filter(j => now - j.onNodeSince >= t.minResidence)
    if (movable.length === 0) return
    // All processes are CPU-bound here: "second heaviest" = the second one in age order.
    const p = movable.length > 1 ? movable[1] : movable[0]
    let best: NodeView | null = null
    let bestV = Infinity
    for (const v of viewOf(n.id - 1)) {
      if (v.freeMem < p.mem) continue
      const value = v.load + cfg.stabFactor * 100 / capacityOf(v.cpus, v.speed)
      if (value < bestV) { bestV = value; best = v }
    }
    if (best !== null && bestV < local) move(n, p, nodes[best.id - 1], now)
  }

  const oursDecide = (n: Node, now: number): void => {
    if (n.jobs.length === 0) return
    const share = Math.min(1, n.cpus / n.jobs.length)
    const procs: ProcInfo[] = n.jobs.map(j => ({ pid: j.id, cpu: share, mem: j.mem, image: j.image, age: now - j.arrival, residence: now - j.onNodeSince, guest: j.origin !== n.id - 1 }))
    const view: LocalView = { self: selfView(n), procs, others: viewOf(n.id - 1, { now }), clusterSize: N }
    const d = rebalance(view, { model: n.model, rng: rp, explain: false, tunables: cfg.tunables })
    if (d.action === 'move') {
      const j = n.jobs.find(x => x.id === d.pid)
      if (j !== undefined) n.inflight.landed(j.id, d.target!, move(n, j, nodes[d.target! - 1], now), d.demand ?? 1, j.mem)
    }
  }

  // Main loop, one decision interval at a time.
  let now = 0
  const order = Array.from({ length: N }, (_, i) => i)
  for (;;) {
    const end = now + cfg.interval
    // Events of this interval in time order: arrivals and landings.
    for (;;) {
      const top = landings.peek()
      const la = top !== undefined && top.at < end ? top.at : Infinity
      const ar = nextArrival < end && nextArrival < cfg.arrivalSeconds ? nextArrival : Infinity
      if (la === Infinity && ar === Infinity) break
      if (la <= ar) {
        const l = landings.pop()!
        addJob(l.node, l.job, l.at)
      } else {
        const j = drawJob(ar)
        active++
        place(j, ar)
        nextArrival = ar - Math.log(1 - rj()) / lambda
      }
    }
    for (const n of nodes) advance(n, end)
    now = end
    takeSnapshot()
    if (cfg.policy === 'mosix' || cfg.policy === 'ours') {
      // Nodes decide in a random order each interval (they are not synchronised).
      for (let i = N - 1; i > 0; i--) { const k = Math.floor(rp() * (i + 1)); const x = order[i]; order[i] = order[k]; order[k] = x }
      for (const i of order) {
        if (cfg.policy === 'mosix') mosixDecide(nodes[i], now); else oursDecide(nodes[i], now)
      }
    }
    if (now >= cfg.arrivalSeconds && active === 0) break
  }

  slowdowns.sort((a, b) => a - b)
  const jobs = slowdowns.length
  const busy = nodes.reduce((s, n) => s + n.busyTime, 0)
  return {
    policy: cfg.policy,
    nodes: N,
    seed: cfg.seed,
    jobs,
    meanSlowdown: slowdowns.reduce((a, b) => a + b, 0) / Math.max(1, jobs),
    medianSlowdown: jobs > 0 ? slowdowns[Math.floor(jobs / 2)] : 0,
    meanResponse: responseSum / Math.max(1, jobs),
    migrations,
    migrationsPerJob: migrations / Math.max(1, jobs),
    thrashShare: busy > 0 ? nodes.reduce((s, n) => s + n.thrashTime, 0) / busy : 0,
    endTime: lastFinish,
    wallMs: Date.now() - wall
  }
}

/** A binary min-heap on `at`. */
class LandingHeap<T extends { at: number }> {
  private readonly h: T[] = []
  push (x: T): void {
    const h = this.h
    let i = h.length
    h.push(x)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (h[p].at <= x.at) break
      h[i] = h[p]; i = p
    }
    h[i] = x
  }

  peek (): T | undefined { return this.h[0] }

  pop (): T | undefined {
    const h = this.h
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= h.length) break
        const c = l + 1 < h.length && h[l + 1].at < h[l].at ? l + 1 : l
        if (h[c].at >= last.at) break
        h[i] = h[c]; i = c
      }
      h[i] = last
    }
    return top
  }
}
