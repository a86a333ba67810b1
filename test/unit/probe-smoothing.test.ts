import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LoadSmoother, stepMean, stepUpper } from '../../src/probe/smoothing.js'

// Closed forms of MOSIX's recurrences (docs/probe.md, Load) for a unit step: after k steps
//   mean rising 0→1: 1 - (5/8)^k;   upper falling 1→0: (7/8)^k
test('mean rises slowly on a 0→1 step: 0.375, 0.609, 0.756, 0.847, 0.905', () => {
  const s = new LoadSmoother()
  for (let k = 1; k <= 5; k++) {
    s.update(1)
    assert.ok(Math.abs(s.mean - (1 - (5 / 8) ** k)) < 1e-12)
    assert.equal(s.upper, 1, 'upper jumps up at once')
  }
  assert.equal(Math.round(s.mean * 1000) / 1000, 0.905) // the figure of docs/probe.md, Load
})

test('upper decays slowly on a 1→0 drop: 0.875, 0.766, 0.670, 0.586, 0.513; mean drops at once', () => {
  const s = new LoadSmoother(1)
  for (let k = 1; k <= 5; k++) {
    s.update(0)
    assert.ok(Math.abs(s.upper - (7 / 8) ** k) < 1e-12)
    assert.equal(s.mean, 0, 'mean falls at once')
  }
  assert.equal(Math.round(s.upper * 1000) / 1000, 0.513)
})

test('step functions follow the 5:3 and 7:1 weights', () => {
  assert.equal(stepMean(8, 16), (5 * 8 + 3 * 16) / 8)
  assert.equal(stepMean(8, 2), 2)
  assert.equal(stepUpper(8, 16), 16)
  assert.equal(stepUpper(8, 0), 7)
})

test('upper >= mean on an arbitrary sequence', () => {
  const s = new LoadSmoother()
  let r = 12345
  for (let i = 0; i < 2000; i++) {
    r = (Math.imul(r, 1103515245) + 12345) >>> 0
    s.update((r >>> 16) % 9)
    assert.ok(s.upper >= s.mean - 1e-12, `step ${i}: upper ${s.upper} < mean ${s.mean}`)
  }
})

test('rejects invalid samples', () => {
  const s = new LoadSmoother()
  assert.throws(() => s.update(-1), RangeError)
  assert.throws(() => s.update(NaN), RangeError)
})
