import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import {
  parseProcsRunning, parseLoadavgRunning, parseMeminfo, parsePressureFullAvg10, utilFromPressure, ProcSources
} from '../../src/probe/sources.js'

const STAT = `cpu  2255 34 2290 22625563 6290 127 456 0 0 0
cpu0 1132 34 1441 11311718 3675 127 438 0 0 0
intr 114930548 113199788 3 0 5 263 0 4 [ ... ]
ctxt 1990473
btime 1062191376
processes 2915
procs_running 7
procs_blocked 0
softirq 183433 0 21755 12 39 1137 231 21459 2263
`
const LOADAVG = '0.04 0.08 0.03 5/95 4412\n'
const MEMINFO = `MemTotal:       24684084 kB
MemFree:        24261732 kB
MemAvailable:   24371764 kB
Buffers:            9028 kB
Cached:           291444 kB
HugePages_Total:       0
`
const MEMINFO_OLD = `MemTotal:        1000 kB
MemFree:          100 kB
Buffers:           20 kB
Cached:           300 kB
`
const PRESSURE = `some avg10=12.50 avg60=3.00 avg300=0.70 total=123456
full avg10=7.60 avg60=1.00 avg300=0.20 total=65432
`

test('procs_running and loadavg running count', () => {
  assert.equal(parseProcsRunning(STAT), 7)
  assert.equal(parseLoadavgRunning(LOADAVG), 5)
  assert.throws(() => parseProcsRunning('cpu 1 2 3\n'))
  assert.throws(() => parseLoadavgRunning('garbage'))
})

test('meminfo in bytes; MemAvailable fallback on old kernels', () => {
  assert.deepEqual(parseMeminfo(MEMINFO), { tmem: 24684084 * 1024, rmem: 24261732 * 1024, mem: 24371764 * 1024 })
  assert.deepEqual(parseMeminfo(MEMINFO_OLD), { tmem: 1000 * 1024, rmem: 100 * 1024, mem: (100 + 20 + 300) * 1024 })
  assert.throws(() => parseMeminfo('MemFree: 1 kB\n'))
})

test('util from memory pressure', () => {
  assert.equal(parsePressureFullAvg10(PRESSURE), 7.6)
  assert.equal(parsePressureFullAvg10('some avg10=1.00 avg60=0.00 avg300=0.00 total=0\n'), undefined)
  assert.equal(utilFromPressure(7.6), Math.round(100 - 7.6))
  assert.equal(utilFromPressure(undefined), 100)
  assert.equal(utilFromPressure(0), 100)
  assert.equal(utilFromPressure(100), 0)
})

test('ProcSources on a fixture proc root; PSI absent gives util 100', () => {
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-probe-'))
  try {
    writeFileSync(join(root, 'loadavg'), LOADAVG)
    writeFileSync(join(root, 'meminfo'), MEMINFO)
    const src = new ProcSources(root)
    assert.equal(src.runnable(), parseLoadavgRunning(LOADAVG) - 1)
    assert.deepEqual(src.memory(), parseMeminfo(MEMINFO))
    assert.equal(src.util(), 100)
    // files are re-read from offset 0 on every call (kept open)
    writeFileSync(join(root, 'loadavg'), '1.00 1.00 1.00 12/100 5000\n')
    assert.equal(src.runnable(), 11)
    src.close()
    mkdirSync(join(root, 'pressure'))
    writeFileSync(join(root, 'pressure', 'memory'), PRESSURE)
    const src2 = new ProcSources(root)
    assert.equal(src2.util(), utilFromPressure(7.6))
    src2.close()
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('real /proc: sane ranges and cheap samples', (t) => {
  const src = new ProcSources()
  try {
    const r = src.runnable()
    assert.ok(Number.isInteger(r) && r >= 0 && r < 100000)
    const m = src.memory()
    assert.ok(m.tmem > 0 && Math.abs(m.tmem - totalmem()) <= 0.05 * totalmem(), `tmem ${m.tmem} vs os.totalmem ${totalmem()}`)
    assert.ok(m.rmem >= 0 && m.rmem <= m.tmem)
    assert.ok(m.mem >= 0 && m.mem <= m.tmem)
    const u = src.util()
    assert.ok(Number.isInteger(u) && u >= 0 && u <= 100)
    assert.ok(src.cpus() >= 1)
    const n = 2000
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) src.runnable()
    const us = Number(process.hrtime.bigint() - t0) / n / 1000
    t.diagnostic(`runnable() sample: ${us.toFixed(1)} µs`)
    assert.ok(us < 1000, `runnable() takes ${us} µs`)
  } finally {
    src.close()
  }
})
