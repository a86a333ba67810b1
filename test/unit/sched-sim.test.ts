// The policy simulator (src/sched/sim.ts): determinism, accounting, and the coarse ordering.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { simulate, boundedParetoMean, POLICIES } from '../../src/sched/sim.js'
import { processRate } from '../../src/sched/policy.js'

test('processor sharing as in docs/sched.md (Cost): 8 jobs on one standard CPU, 3 units of work take 24 s, 240 s thrashing', () => {
  assert.equal(3 / processRate(10000, 1, 8, false, 10), 24)
  assert.equal(3 / processRate(10000, 1, 8, true, 10), 240)
  assert.equal(processRate(20000, 4, 2, false, 10), 2) // fewer jobs than CPUs: each gets a whole (2×) CPU
})

test('bounded Pareto mean matches a numeric integral', () => {
  const a = 1.1; const L = 0.5; const H = 1000
  // E[X] = ∫ x f(x) dx with f(x) = a L^a x^(−a−1) / (1 − (L/H)^a), by the midpoint rule on a log grid.
  let s = 0; const steps = 200000
  for (let i = 0; i < steps; i++) {
    const x0 = L * Math.pow(H / L, i / steps); const x1 = L * Math.pow(H / L, (i + 1) / steps); const x = (x0 + x1) / 2
    s += x * a * Math.pow(L, a) * Math.pow(x, -a - 1) / (1 - Math.pow(L / H, a)) * (x1 - x0)
  }
  assert.ok(Math.abs(s / boundedParetoMean(a, L, H) - 1) < 1e-4)
})

test('same seed, same run; every policy sees the same jobs; placement-only policies never migrate', () => {
  const cfg = { nodes: 8, arrivalSeconds: 60 }
  const a = simulate({ ...cfg, seed: 3, policy: 'ours' })
  const b = simulate({ ...cfg, seed: 3, policy: 'ours' })
  assert.deepEqual({ ...a, wallMs: 0 }, { ...b, wallMs: 0 })
  const rs = POLICIES.map(policy => simulate({ ...cfg, seed: 3, policy }))
  assert.equal(new Set(rs.map(r => r.jobs)).size, 1)
  assert.ok(rs[0].jobs > 100)
  for (const r of rs) {
    assert.ok(r.medianSlowdown >= 1, `${r.policy}: nobody beats running alone on the fastest node`)
    if (r.policy !== 'mosix' && r.policy !== 'ours') assert.equal(r.migrations, 0)
  }
  assert.ok(rs.find(r => r.policy === 'mosix')!.migrations > 0)
})

test('with little memory pressure and homogeneous nodes, all policies are stable and ours beats round robin', () => {
  const cfg = { nodes: 16, arrivalSeconds: 100, speedRange: [10000, 10000] as [number, number], cpusRange: [2, 2] as [number, number], memSizes: [8 * 2 ** 30], utilisation: 0.6 }
  const m = (policy: 'roundrobin' | 'ours'): number => [1, 2, 3].map(seed => simulate({ ...cfg, seed, policy }).meanSlowdown).reduce((x, y) => x + y) / 3
  const rr = m('roundrobin'); const ours = m('ours')
  assert.ok(rr < 20 && ours < 20, `rr ${rr} ours ${ours}`)
  assert.ok(ours < rr, `ours ${ours} < round robin ${rr}`)
})

test('on the default heterogeneous workload ours beats round robin, random and Mosix-like', () => {
  const m = (policy: typeof POLICIES[number]): number => [1, 2].map(seed => simulate({ nodes: 32, arrivalSeconds: 100, seed, policy }).meanSlowdown).reduce((x, y) => x + y) / 2
  const ours = m('ours')
  for (const p of ['roundrobin', 'random', 'mosix'] as const) assert.ok(ours < m(p), p)
})
