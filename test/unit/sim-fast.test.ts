// The fast engine (src/sim/fastsim.ts) against the real Gossiper simulation and the model, its
// freshest-window bookkeeping against a brute-force sort, and the cold-start finding.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FastSimulation } from '../../src/sim/fastsim.js'
import { runAges, runColdStart } from '../../src/sim/experiments.js'

test('fast engine and real Gossipers give the same ages at n=64, w=8 (and both match the model)', () => {
  const seeds = [1, 2, 3]
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
  const real = seeds.map(seed => runAges({ n: 64, window: 8, seed, measureIntervals: 120 }).result)
  const fast = seeds.map(seed => runAges({ engine: 'fast', n: 64, window: 8, seed, measureIntervals: 120 }).result)
  const ra = mean(real.map(r => r.avgAge)); const fa = mean(fast.map(r => r.avgAge))
  const rm = mean(real.map(r => r.meanMaxAge)); const fm = mean(fast.map(r => r.meanMaxAge))
  assert.ok(Math.abs(fa / ra - 1) < 0.05, `average age fast ${fa} real ${ra}`)
  assert.ok(Math.abs(fm / rm - 1) < 0.08, `mean max age fast ${fm} real ${rm}`)
  const m = real[0].model
  assert.ok(Math.abs(fa / m.Av - 1) < 0.1 && Math.abs(fm / m.M - 1) < 0.1)
  assert.deepEqual(real.map(r => r.bytesPerNodePerInterval), fast.map(r => r.bytesPerNodePerInterval))
})

test('fast engine matches the model at n=512, w=16 and bytes per node stay fixed as n grows', () => {
  const a = runAges({ engine: 'fast', n: 512, window: 16, seed: 7 }).result
  assert.equal(a.unknownPairs, 0)
  assert.ok(Math.abs(a.avgAge / a.model.Av - 1) < 0.1, `${a.avgAge} vs ${a.model.Av}`)
  assert.ok(Math.abs(a.meanMaxAge / a.model.M - 1) < 0.1, `${a.meanMaxAge} vs ${a.model.M}`)
  const b = runAges({ engine: 'fast', n: 128, window: 16, seed: 7 }).result
  assert.equal(a.bytesPerNodePerInterval, b.bytesPerNodePerInterval)
  assert.equal(a.packetsPerNodePerInterval, 1)
})

test('each node\'s window holds its w−1 freshest entries (checked by sorting the whole row)', () => {
  const n = 200; const w = 12
  const sim = new FastSimulation({ n, window: w, seed: 5 })
  for (let step = 0; step < 6; step++) {
    sim.runIntervals(17)
    for (let id = 1; id <= n; id += 13) {
      const row: Array<[number, number]> = []
      for (let j = 1; j <= n; j++) {
        const f = j === id ? null : sim.freshAt(id, j)
        if (f !== null && sim.now - f <= sim.downAfter) row.push([j, f])
      }
      row.sort((x, y) => y[1] - x[1])
      const want = row.slice(0, w - 1).map(x => x[1])
      const got = sim.windowOf(id).map(j => sim.freshAt(id, j))
      assert.deepEqual(got, want, `node ${id} at ${sim.now}`) // same stamp times (ties may swap ids)
    }
  }
})

test('a changed value propagates to every node in the fast engine', () => {
  const sim = new FastSimulation({ n: 256, window: 16, seed: 2 })
  sim.runIntervals(300)
  const r = sim.propagate(9, 2000)
  assert.ok(r.half > 0 && r.half <= r.p99 && r.p99 <= r.all && Number.isFinite(r.all), JSON.stringify(r))
})

test('cold start: the old send-to-any rule (1/max(5, table size)) converges slower than gossimon\'s (1/max(5, heard)), which the gossiper now follows', () => {
  const seeds = [1, 2, 3]
  const known = runColdStart(256, 16, 'known', seeds)
  const heard = runColdStart(256, 16, 'heard', seeds)
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
  assert.ok(known.allKnown.every(Number.isFinite) && heard.allKnown.every(Number.isFinite))
  assert.ok(sum(known.allKnown) > 1.2 * sum(heard.allKnown), `known ${known.allKnown} heard ${heard.allKnown}`)
  assert.ok(sum(known.lockedAfterM) > sum(heard.lockedAfterM), `locked known ${known.lockedAfterM} heard ${heard.lockedAfterM}`)
})
