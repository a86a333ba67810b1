// The discrete-event simulator running real Gossipers (src/sim/simulator.ts, experiments.ts):
// its building blocks, agreement with the age model (docs/gossip.md, section 2), failure and rejoin detection, bandwidth.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventQueue } from '../../src/sim/eventqueue.js'
import { deriveSeed, mulberry32 } from '../../src/sim/random.js'
import { Simulation } from '../../src/sim/simulator.js'
import { runAges, runChange, runKillRevive } from '../../src/sim/experiments.js'
import { ENTRY_LEN, HEADER_LEN } from '../../src/gossip/codec.js'

test('mulberry32: deterministic per seed, in [0, 1), roughly uniform; derived seeds differ', () => {
  const a = mulberry32(42); const b = mulberry32(42); const c = mulberry32(43)
  const xs = Array.from({ length: 20000 }, () => a())
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()))
  assert.notEqual(xs[0], c())
  assert.ok(xs.every(x => x >= 0 && x < 1))
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`)
  const buckets = new Array(10).fill(0)
  for (const x of xs) buckets[Math.floor(x * 10)]++
  assert.ok(buckets.every(k => Math.abs(k - 2000) < 200), buckets.join(' '))
  assert.equal(new Set([0, 1, 2, 3].map(s => deriveSeed(7, s))).size, 4)
})

test('event queue: runs events in time order, ties in scheduling order, and advances now', () => {
  const q = new EventQueue()
  const rng = mulberry32(3)
  const ran: Array<[number, number]> = []
  const want: Array<[number, number]> = []
  for (let i = 0; i < 500; i++) {
    const t = Math.floor(rng() * 50)
    want.push([t, i])
    q.at(t, () => ran.push([q.now, i]))
  }
  q.runUntil(1000)
  want.sort((x, y) => x[0] - y[0] || x[1] - y[1])
  assert.deepEqual(ran, want)
  assert.equal(q.now, 1000)
  // an event scheduled from inside an event runs in the same runUntil if due
  let second = -1
  q.schedule(5, () => q.schedule(5, () => { second = q.now }))
  q.runUntil(1010)
  assert.equal(second, 1010)
  assert.equal(q.size, 0)
})

test('n=64, w=8: measured average and mean maximum age agree with the model (within 10%)', () => {
  const { result } = runAges({ n: 64, window: 8, seed: 11 })
  assert.equal(result.unknownPairs, 0)
  assert.equal(result.falseDownPairs, 0)
  assert.ok(result.warmupIntervals >= 3 * result.model.M)
  const ra = result.avgAge / result.model.Av
  const rm = result.meanMaxAge / result.model.M
  assert.ok(ra > 0.9 && ra < 1.1, `average age ${result.avgAge} vs model ${result.model.Av}`)
  assert.ok(rm > 0.9 && rm < 1.1, `mean max age ${result.meanMaxAge} vs model ${result.model.M}`)
  assert.ok(result.maxAge > result.meanMaxAge)
})

test('runs are reproducible from the seed, and differ between seeds', () => {
  const a = runAges({ n: 32, window: 4, seed: 5, measureIntervals: 40 }).result
  const b = runAges({ n: 32, window: 4, seed: 5, measureIntervals: 40 }).result
  const c = runAges({ n: 32, window: 4, seed: 6, measureIntervals: 40 }).result
  assert.equal(a.avgAge, b.avgAge)
  assert.equal(a.meanMaxAge, b.meanMaxAge)
  assert.notEqual(a.avgAge, c.avgAge)
})

test('a killed node reads down at every node within downAfter, and up again everywhere after a restart', () => {
  const { sim } = runAges({ n: 48, window: 8, seed: 3, measureIntervals: 20, samples: 2 })
  const r = runKillRevive(sim, 7, 2000)
  assert.equal(r.stillUp, 0)
  for (const x of sim.nodes) {
    if (x.id === 7) continue
    const k = x.gossiper.table.get(7)
    assert.ok(k !== undefined && x.gossiper.isUp(k), `node ${x.id} does not see node 7 up after the restart`)
    assert.ok(k.info.incarnation > 1)
  }
  assert.ok(r.downFirst >= 0 && r.downFirst <= r.downAll && r.downAll <= r.downAfterIntervals, JSON.stringify(r))
  assert.ok(r.upAll > 0 && r.upAll < r.downAfterIntervals, JSON.stringify(r))
  // while it was down, nobody could reach it: its fresh table only has entries heard after the restart
  assert.ok(sim.node(7).gossiper.opts.incarnation === 2)
})

test('a changed value reaches every node, half of them well before the last', () => {
  const { sim } = runAges({ n: 48, window: 8, seed: 4, measureIntervals: 20, samples: 2 })
  const r = runChange(sim, 5, 1000)
  assert.ok(Number.isFinite(r.all), JSON.stringify(r))
  assert.ok(r.half > 0 && r.half < r.all)
  for (const x of sim.nodes) if (x.id !== 5) assert.equal(x.gossiper.table.get(5)?.info.speed, sim.node(5).info.speed)
})

test('bytes per node per interval do not grow with n at a fixed window', () => {
  // after the warm-up (every node has heard of every other) every datagram carries a full window
  const small = runAges({ n: 64, window: 8, seed: 2, warmupFactor: 1, measureIntervals: 30, samples: 1 }).result
  const large = runAges({ n: 256, window: 8, seed: 2, warmupFactor: 1, measureIntervals: 30, samples: 1 }).result
  assert.equal(small.packetsPerNodePerInterval, 1)
  assert.equal(large.packetsPerNodePerInterval, 1)
  assert.ok(Math.abs(small.bytesPerNodePerInterval - large.bytesPerNodePerInterval) < 1, `${small.bytesPerNodePerInterval} vs ${large.bytesPerNodePerInterval}`)
  assert.ok(small.bytesPerNodePerInterval <= HEADER_LEN + 8 * ENTRY_LEN)
})

test('loss makes information older; latency delays delivery in virtual time', () => {
  const clean = runAges({ n: 48, window: 6, seed: 9, measureIntervals: 60 }).result
  const lossy = runAges({ n: 48, window: 6, seed: 9, loss: 0.3, measureIntervals: 60 }).result
  assert.ok(lossy.avgAge > clean.avgAge * 1.1, `${lossy.avgAge} vs ${clean.avgAge}`)
  const sim = new Simulation({ n: 8, window: 4, seed: 1, latencyMs: 400, sync: true })
  sim.runUntil(399)
  assert.ok(sim.nodes.every(x => x.gossiper.stats.received === 0), 'nothing arrives before the latency')
  sim.runUntil(400)
  assert.ok(sim.nodes.some(x => x.gossiper.stats.received > 0))
})

test('ages as nodes believe them: exact without latency, short by one latency per hop with it', () => {
  const exact = new Simulation({ n: 40, window: 6, seed: 8 })
  exact.runIntervals(150)
  const a = exact.trueAges()
  assert.ok(a.pairs > 40 * 30)
  assert.ok(Math.abs(a.believed - a.truth) < 1e-9, `${a.believed} vs ${a.truth}`)
  const slow = new Simulation({ n: 40, window: 6, seed: 8, latencyMs: 200 })
  slow.runIntervals(150)
  const b = slow.trueAges()
  // every entry crossed at least one hop of 0.2 intervals that the receiver could not see
  assert.ok(b.truth - b.believed >= 0.2 - 1e-9 && b.truth - b.believed < 2, `${b.believed} vs ${b.truth}`)
})
