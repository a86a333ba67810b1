import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { Probe, normaliseLoad, type ProbeSnapshot } from '../../src/probe/probe.js'
import { stepUpper } from '../../src/probe/smoothing.js'

// Resolves with the first 'update' snapshot that satisfies pred. The deadline timer is ref'd: the
// probe's own timers are unref'd and would not keep the test process alive.
async function waitFor (probe: Probe, pred: (s: ProbeSnapshot) => boolean, timeoutMs: number): Promise<ProbeSnapshot> {
  return await new Promise((resolve, reject) => {
    let last: ProbeSnapshot | undefined
    const onUpdate = (s: ProbeSnapshot): void => {
      last = s
      if (!pred(s)) return
      clearTimeout(timer)
      probe.off('update', onUpdate)
      resolve(s)
    }
    const timer = setTimeout(() => {
      probe.off('update', onUpdate)
      reject(new Error(`timeout after ${timeoutMs} ms; last snapshot ${JSON.stringify(last)}`))
    }, timeoutMs)
    probe.on('update', onUpdate)
  })
}

test('setSpeed validates 1..1000000 and renormalises at once', () => {
  const p = new Probe({ speed: 10000 })
  assert.equal(p.snapshot().speed, 10000)
  for (const bad of [0, -5, 1000001, 1.5, NaN]) assert.throws(() => p.setSpeed(bad), RangeError)
  p.setSpeed(1)
  p.setSpeed(1000000)
  assert.equal(p.snapshot().speed, 1000000)
  assert.throws(() => new Probe({ speed: 0 }), RangeError)
  p.close()
})

test('normalised load: 100 × runnable × 10000 / (speed × cpus)', () => {
  assert.equal(normaliseLoad(2, 10000, 2), 100)
  assert.equal(normaliseLoad(1, 20000, 4), Math.round(100 * 10000 / (20000 * 4)))
  assert.equal(normaliseLoad(0, 10000, 1), 0)
})

test('probe on a fixture proc root: step up, then slow decay of the advertised load', async () => {
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-probe-'))
  writeFileSync(join(root, 'meminfo'), 'MemTotal: 2048 kB\nMemFree: 1024 kB\nMemAvailable: 1536 kB\n')
  writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 5/100 1\n') // 4 runnable besides the reader
  const p = new Probe({ speed: 10000, sampleMs: 5, periodMs: 40, procRoot: root })
  try {
    p.start()
    const cpus = p.snapshot().cpus
    const up = await waitFor(p, s => s.load > 0, 5000)
    assert.equal(up.load, normaliseLoad(4, 10000, cpus), 'upper jumps to the sample')
    assert.ok(up.localLoad < up.load, 'mean rises slowly')
    assert.deepEqual([up.tmem, up.rmem, up.mem, up.util], [2048 * 1024, 1024 * 1024, 1536 * 1024, 100])
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 1\n') // only the reader
    const down = await waitFor(p, s => s.localLoad === 0, 5000)
    // the first all-idle period: upper has decayed by 7/8 once, or twice if the previous period
    // mixed busy and idle samples (its average then pulled the mean down but not to 0)
    const hi = normaliseLoad(stepUpper(4, 0), 10000, cpus)
    const lo = normaliseLoad(stepUpper(stepUpper(4, 0), 0), 10000, cpus)
    assert.ok(down.load >= lo && down.load <= hi, `advertised ${down.load} not in ${lo}..${hi}`)
  } finally {
    p.close()
    rmSync(root, { recursive: true, force: true })
  }
})

// nr_running is system-wide: other processes on this machine (concurrent test runs) add noise.
// One attempt returns a failure reason instead of throwing, so that a few attempts can be made;
// the test skips when the machine is already too busy for two processes to stand out.
async function busyChildrenAttempt (p: Probe, children: ChildProcess[], log: (s: string) => void): Promise<string | undefined | 'busy'> {
  // idle baseline: the mean local load over a few periods
  let base = 0
  let n = 0
  await waitFor(p, s => { base += s.localLoad; return ++n === 3 }, 5000)
  base /= n
  const { cpus, speed } = p.snapshot()
  const rise = normaliseLoad(2, speed, cpus) // what 2 busy processes add
  if (base > rise) {
    log(`machine busy: idle load ${base.toFixed(0)} exceeds the expected rise ${rise}`)
    return 'busy'
  }
  for (let i = 0; i < 2; i++) children.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }))
  const high = await waitFor(p, s => s.load >= base + 0.7 * rise, 10000)
  log(`idle ${base.toFixed(0)}, busy ${high.load} (expected rise ${rise})`)
  for (const c of children) c.kill('SIGKILL')
  await Promise.all(children.map(async c => c.exitCode !== null || c.signalCode !== null ? undefined : await once(c, 'exit')))
  children.length = 0
  // the local mean falls at once while the advertised load is still high ...
  const first = await waitFor(p, s => s.localLoad < s.load - 0.3 * rise, 5000)
  log(`after kill: local ${first.localLoad}, advertised ${first.load}`)
  // ... then the advertised load decays: by most of the children's share from its peak, or
  // toward the idle level / the local mean
  try {
    const low = await waitFor(p, s => s.load <= high.load - 0.6 * rise || s.load < Math.max(base, s.localLoad) + 0.3 * rise, 10000)
    log(`decayed: local ${low.localLoad}, advertised ${low.load}`)
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

test('real processes: 2 busy children raise the advertised load, which decays after they die', async (t) => {
  const p = new Probe({ speed: 10000, sampleMs: 20, periodMs: 200 })
  const children: ChildProcess[] = []
  try {
    p.start()
    const failures: string[] = []
    for (let attempt = 1; attempt <= 3; attempt++) {
      const r = await busyChildrenAttempt(p, children, s => t.diagnostic(`attempt ${attempt}: ${s}`))
      if (r === undefined) return
      if (r === 'busy') {
        t.skip('machine too busy for this test')
        return
      }
      failures.push(r)
    }
    assert.fail(`no decay in 3 attempts: ${failures.join('; ')}`)
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    p.close()
  }
})
