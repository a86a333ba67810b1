// E-PVM opportunity cost (src/sched/cost.ts) against the hand-computed values of the worked
// example of docs/sched.md (Cost).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CostModel, argminCost, capacityOf, type NodeResources } from '../../src/sched/cost.js'

const GB = 1 << 30
const node = (jobs: number, memFraction: number): NodeResources => ({ load: jobs, capacity: 1, memUsed: memFraction * GB, memTotal: GB })

test('the worked example of docs/sched.md: marginal costs 1.1258, 1.3678, 0.8973 with n = 4, max_jobs = 4; argmin is C', () => {
  const m = new CostModel(4, 4)
  const job = { cpu: 1, mem: 0.1 * GB }
  const mc = [node(2, 0.5), node(3, 0.2), node(0, 0.85)].map(r => m.marginalCost(r, job))
  assert.ok(Math.abs(mc[0] - 1.1258) < 5e-5, `A ${mc[0]}`)
  assert.ok(Math.abs(mc[1] - 1.3678) < 5e-5, `B ${mc[1]}`)
  assert.ok(Math.abs(mc[2] - 0.8973) < 5e-5, `C ${mc[2]}`)
  assert.equal(argminCost(mc), 2)
})

test('argmin keeps the running minimum (the book pseudocode bug would pick the last cheaper-than-first)', () => {
  assert.equal(argminCost([3, 1, 2]), 1)
  assert.equal(argminCost([]), -1)
})

test('max_jobs doubles when the fifth job lands on one machine, not before', () => {
  const m = new CostModel(4, 4)
  const r = node(0, 0)
  for (let i = 1; i <= 4; i++) { m.commit(r, { cpu: 1, mem: 0 }); assert.equal(m.maxJobs, 4, `after job ${i}`) }
  m.commit(r, { cpu: 1, mem: 0 })
  assert.equal(r.load, 5)
  assert.equal(m.maxJobs, 8)
  // From max_jobs = 1 it is the smallest power of two ≥ the largest load seen.
  const f = new CostModel(10)
  f.observe(5); assert.equal(f.maxJobs, 8)
  f.observe(3); assert.equal(f.maxJobs, 8)
})

test('a fast or many-CPU node counts as several standard CPUs: a job adds less load and costs less there', () => {
  assert.equal(capacityOf(1, 10000), 1)
  assert.equal(capacityOf(4, 20000), 8)
  const m = new CostModel(8, 4)
  const slow: NodeResources = { load: 1, capacity: capacityOf(1, 10000), memUsed: 0, memTotal: GB }
  const fast: NodeResources = { load: 1, capacity: capacityOf(2, 20000), memUsed: 0, memTotal: GB }
  const job = { cpu: 1, mem: 0 }
  assert.equal(m.addedLoad(fast, job), 0.25)
  assert.ok(m.marginalCost(fast, job) < m.marginalCost(slow, job))
  // Removing a job gains exactly what adding it to the node without it would cost.
  const two: NodeResources = { load: 2, capacity: 1, memUsed: 0.3 * GB, memTotal: GB }
  const one: NodeResources = { load: 1, capacity: 1, memUsed: 0.2 * GB, memTotal: GB }
  assert.ok(Math.abs(m.removalGain(two, { cpu: 1, mem: 0.1 * GB }) - m.marginalCost(one, { cpu: 1, mem: 0.1 * GB })) < 1e-12)
})

test('each 10% of a resource at n = 1024 roughly doubles its cost (the DSS rule of thumb, docs/sched.md Cost)', () => {
  const m = new CostModel(1024)
  const ratio = m.memCost(0.6, 1) / m.memCost(0.5, 1)
  assert.ok(Math.abs(ratio - 2) < 1e-9)
})
