import { test } from 'node:test'
import assert from 'node:assert/strict'
import { calibrate, calibrateSpeed, parseCpuinfoSpeed, speedFromCpuinfo, MIN_SPEED, MAX_SPEED, STD_SPEED, REFERENCE_RATE } from '../../src/probe/calibrate.js'

test('calibration: integer speed in range, short, consistent with its rate', (t) => {
  const c = calibrate()
  t.diagnostic(`speed ${c.speed}, ${(c.rate / 1e6).toFixed(1)} M iterations/s, ${c.runs} runs, ${c.ms.toFixed(0)} ms; cpuinfo cross-check ${speedFromCpuinfo() ?? 'n/a'}`)
  assert.ok(Number.isInteger(c.speed) && c.speed >= MIN_SPEED && c.speed <= MAX_SPEED)
  assert.equal(c.speed, Math.round(STD_SPEED * c.rate / REFERENCE_RATE))
  assert.ok(c.runs >= 3)
  assert.ok(c.ms < 1000, `calibration took ${c.ms} ms`)
})

test('calibration is repeatable (best-of runs agree within a factor of 1.5)', () => {
  const a = calibrateSpeed({ budgetMs: 60 })
  const b = calibrateSpeed({ budgetMs: 60 })
  assert.ok(Math.max(a, b) / Math.min(a, b) < 1.5, `${a} vs ${b}`)
})

test('cpuinfo speed is MHz × 10 of the fastest CPU', () => {
  const text = 'processor\t: 0\ncpu MHz\t\t: 996.783\n\nprocessor\t: 1\ncpu MHz\t\t: 1000.000\n'
  assert.equal(parseCpuinfoSpeed(text), Math.round(1000 * 10))
  assert.equal(parseCpuinfoSpeed('processor\t: 0\nBogoMIPS\t: 50.00\n'), undefined)
  const s = speedFromCpuinfo()
  assert.ok(s === undefined || (Number.isInteger(s) && s > 0))
})
