// Experiments on the simulator (the benchmark of docs/gossip.md, items 1-3): steady-state
// ages against the age model (docs/gossip.md, section 2), bandwidth, propagation of a changed value, and failure/rejoin detection times.
import debug from '../util/log.js'
import { MAX_WINDOW } from '../gossip/codec.js'
import { model, type ModelPoint } from './agemodel.js'
import { Simulation, type AgeSample, type SimOptions } from './simulator.js'
import { FastSimulation } from './fastsim.js'

const log = debug('hpcfs:sim')

/** What runAges needs from a simulation: both the real-Gossiper Simulation and FastSimulation provide it. */
export interface AgeEngine {
  readonly n: number
  readonly interval: number
  readonly downAfter: number
  runIntervals: (k: number) => void
  runUntil: (t: number) => void
  sampleAges: () => AgeSample
  sent: () => { bytes: number, packets: number }
}

/** 'gossiper': n real Gossipers over a MemoryNetwork; 'fast': the typed-array mirror (fastsim.ts). */
export type EngineKind = 'gossiper' | 'fast'

export interface AgeRunOptions extends SimOptions {
  /** Which engine runs the protocol (default 'gossiper'). */
  engine?: EngineKind
  /** Warm-up length in units of the model's M (default 3; benchmark item 1 asks for at least 3). */
  warmupFactor?: number
  /** Intervals measured after warm-up (default max(M, 100)). */
  measureIntervals?: number
  /** Age snapshots taken, evenly spread over the measured intervals (default 30). */
  samples?: number
  /**
   * After the warm-up, keep running (in steps of M/4, up to max(warmupFactor·M, 2n) more
   * intervals) while some node has still never heard of another (default true). A simultaneous
   * cold start leaves pairs of nodes that only know, and only send to, each other (see
   * docs/gossip.md); they escape only through the rare send-to-any, after ~n/4 intervals each.
   */
  untilAllKnown?: boolean
}

export interface AgeRunResult {
  engine: EngineKind
  n: number
  w: number
  loss: number
  model: ModelPoint
  /** Warm-up actually run (≥ warmupFactor·M; longer if some pair was still unknown). */
  warmupIntervals: number
  /** Pairs never heard of at the end of warmupFactor·M, before any extension. */
  unknownAfterWarmup: number
  measuredIntervals: number
  samples: number
  /** Mean over snapshots of the average age over all (node, entry) pairs, in intervals. */
  avgAge: number
  /** Mean over snapshots of the mean (over nodes) of the oldest entry, in intervals. */
  meanMaxAge: number
  /** Oldest entry seen in any snapshot. */
  maxAge: number
  bytesPerNodePerInterval: number
  packetsPerNodePerInterval: number
  /** Pairs never heard from, summed over snapshots (0 after a proper warm-up). */
  unknownPairs: number
  /** Pairs where a live node read down, summed over snapshots. */
  falseDownPairs: number
  downAfterIntervals: number
  wallMs: number
}

/** Builds a cluster, warms it up for warmupFactor·M, then samples ages and traffic. */
export function runAges<E extends EngineKind = 'gossiper'> (opts: AgeRunOptions & { engine?: E }): { sim: E extends 'fast' ? FastSimulation : Simulation, result: AgeRunResult } {
  const engine: EngineKind = opts.engine ?? 'gossiper'
  if (engine === 'fast' && (opts.latencyMs ?? 0) > 0) throw new RangeError('the fast engine has no latency; use the gossiper engine')
  if (engine === 'gossiper' && opts.window > MAX_WINDOW) throw new RangeError(`window ${opts.window} exceeds the codec's MAX_WINDOW ${MAX_WINDOW}`)
  const t0 = performance.now()
  const m = model(opts.n, opts.window)
  const sim: AgeEngine = engine === 'fast' ? new FastSimulation(opts) : new Simulation(opts)
  const factor = opts.warmupFactor ?? 3
  let warmup = Math.ceil(factor * m.M)
  const measured = opts.measureIntervals ?? Math.max(100, Math.ceil(m.M))
  const samples = Math.max(1, opts.samples ?? 30)
  sim.runIntervals(warmup)
  const unknownAfterWarmup = sim.sampleAges().unknown
  if (opts.untilAllKnown ?? true) {
    const step = Math.max(1, Math.ceil(m.M / 4))
    const limit = Math.max(factor * m.M, 2 * opts.n)
    for (let extra = 0; extra < limit && sim.sampleAges().unknown > 0; extra += step) {
      sim.runIntervals(step)
      warmup += step
    }
  }
  const sent0 = sim.sent()
  const step = measured / samples
  let avg = 0; let mx = 0; let maxAge = 0; let unknown = 0; let falseDown = 0
  for (let s = 1; s <= samples; s++) {
    sim.runUntil((warmup + s * step) * sim.interval)
    const a = sim.sampleAges()
    avg += a.avgAge; mx += a.meanMaxAge; unknown += a.unknown; falseDown += a.falseDown
    if (a.maxAge > maxAge) maxAge = a.maxAge
  }
  const sent1 = sim.sent()
  const result: AgeRunResult = {
    engine,
    n: opts.n,
    w: opts.window,
    loss: opts.loss ?? 0,
    model: m,
    warmupIntervals: warmup,
    unknownAfterWarmup,
    measuredIntervals: measured,
    samples,
    avgAge: avg / samples,
    meanMaxAge: mx / samples,
    maxAge,
    bytesPerNodePerInterval: (sent1.bytes - sent0.bytes) / opts.n / measured,
    packetsPerNodePerInterval: (sent1.packets - sent0.packets) / opts.n / measured,
    unknownPairs: unknown,
    falseDownPairs: falseDown,
    downAfterIntervals: sim.downAfter / sim.interval,
    wallMs: performance.now() - t0
  }
  log('%s n=%d w=%d avg %f (model %f) max %f (model %f) in %d ms', engine, opts.n, opts.window, result.avgAge, m.Av, result.meanMaxAge, m.M, result.wallMs)
  return { sim: sim as E extends 'fast' ? FastSimulation : Simulation, result }
}

export interface ChangeResult {
  /** Intervals from the change until half, 99% and all live nodes hold the new value. */
  half: number
  p99: number
  all: number
}

/** Changes one node's advertised speed and measures how long the new value takes to reach every node. */
export function runChange (sim: Simulation, id: number, limitIntervals: number): ChangeResult {
  const speed = sim.node(id).info.speed + 1
  sim.setSpeed(id, speed)
  const w = sim.watch(id, k => k.info.speed === speed)
  const stop = sim.now + limitIntervals * sim.interval
  while (Number.isNaN(w.doneAt) && sim.now < stop) sim.runIntervals(1)
  return { half: w.quantileAfter(0.5), p99: w.quantileAfter(0.99), all: w.allAfter }
}

export interface KillReviveResult {
  downAfterIntervals: number
  /** Intervals after the kill until the first / the last live node reports the node down. */
  downFirst: number
  downAll: number
  /** Live nodes still reporting it up at the end (must be 0). */
  stillUp: number
  /** Intervals after the restart until half / all live nodes report it up again. */
  upHalf: number
  upAll: number
}

/** Kills a node, waits until every node reports it down, restarts it and times its return. */
export function runKillRevive (sim: Simulation, id: number, limitIntervals: number): KillReviveResult {
  const killedAt = sim.now
  sim.kill(id)
  // news of the node spreads for at most downAfter after the kill; then every view is final
  sim.runUntil(killedAt + sim.downAfter + 2 * sim.interval)
  const down = sim.downTimes(id, killedAt)
  const inc = sim.node(id).gossiper.opts.incarnation
  sim.revive(id)
  const w = sim.watch(id, (k, g) => k.info.incarnation > inc && g.isUp(k))
  const stop = sim.now + limitIntervals * sim.interval
  while (Number.isNaN(w.doneAt) && sim.now < stop) sim.runIntervals(1)
  return {
    downAfterIntervals: sim.downAfter / sim.interval,
    downFirst: down.first,
    downAll: down.all,
    stillUp: down.stillUp,
    upHalf: w.quantileAfter(0.5),
    upAll: w.allAfter
  }
}

export interface ColdStartResult {
  n: number
  w: number
  rule: 'known' | 'heard'
  /** Per seed: intervals from a simultaneous start until every node has heard of every other. */
  allKnown: number[]
  /** Per seed: nodes that after one M still know at most 3 others (locked in small groups). */
  lockedAfterM: number[]
}

/**
 * Cold start of a whole cluster at once (fast engine): how long until every node has heard of
 * every other, with the gossiper's send-to-any rule ('known': 1/max(5, table size)) and with a
 * gossimon-like one ('heard': 1/max(5, nodes heard of)).
 */
export function runColdStart (n: number, w: number, rule: 'known' | 'heard', seeds: number[], limitIntervals = 20 * n): ColdStartResult {
  const allKnown: number[] = []
  const lockedAfterM: number[] = []
  const M = model(n, w).M
  for (const seed of seeds) {
    const sim = new FastSimulation({ n, window: w, seed, anyRule: rule })
    sim.runIntervals(Math.ceil(M))
    lockedAfterM.push(sim.nodesHearingAtMost(3))
    while (Number.isNaN(sim.allKnownAt) && sim.intervals < limitIntervals) sim.runIntervals(5)
    allKnown.push(sim.allKnownAt / sim.interval)
  }
  return { n, w, rule, allKnown, lockedAfterM }
}
