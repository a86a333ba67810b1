// Experiments on the simulator (shared spec algorithms.md §5 items 1-3): steady-state ages against
// the §2.2 model, bandwidth, propagation of a changed value, and failure/rejoin detection times.
import debug from 'debug'
import { MAX_WINDOW } from '../gossip/codec.js'
import { model, type ModelPoint } from './agemodel.js'
import { Simulation, type SimOptions } from './simulator.js'

const log = debug('hpcfs:sim:experiments')

export interface AgeRunOptions extends SimOptions {
  /** Warm-up length in units of the model's M (default 3; the spec asks for at least 3). */
  warmupFactor?: number
  /** Intervals measured after warm-up (default max(2·M, 100)). */
  measureIntervals?: number
  /** Age snapshots taken, evenly spread over the measured intervals (default 40). */
  samples?: number
}

export interface AgeRunResult {
  n: number
  w: number
  loss: number
  model: ModelPoint
  warmupIntervals: number
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
export function runAges (opts: AgeRunOptions): { sim: Simulation, result: AgeRunResult } {
  if (opts.window > MAX_WINDOW) throw new RangeError(`window ${opts.window} exceeds the codec's MAX_WINDOW ${MAX_WINDOW}`)
  const t0 = performance.now()
  const m = model(opts.n, opts.window)
  const sim = new Simulation(opts)
  const warmup = Math.ceil((opts.warmupFactor ?? 3) * m.M)
  const measured = opts.measureIntervals ?? Math.max(100, Math.ceil(2 * m.M))
  const samples = Math.max(1, opts.samples ?? 40)
  sim.runIntervals(warmup)
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
    n: opts.n,
    w: opts.window,
    loss: opts.loss ?? 0,
    model: m,
    warmupIntervals: warmup,
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
  log('n=%d w=%d avg %f (model %f) max %f (model %f) in %d ms', opts.n, opts.window, result.avgAge, m.Av, result.meanMaxAge, m.M, result.wallMs)
  return { sim, result }
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
