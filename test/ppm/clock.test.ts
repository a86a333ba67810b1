// CLOCK_MONOTONIC across a move: with a time namespace offset the restored process sees its clock
// continue from where it stopped, as it must after a move to another host; without one it sees
// the real time that passed. An explicit offset shows the namespace is really in effect.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dump, restore } from '../../src/ppm/ppm.js'
import { Lab, lines, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

async function moveWithPause (clock: 'continue' | 'real' | number, pauseMs: number): Promise<{ out: string, err: string, code: number | null, monoOffsetNs: number }> {
  const bin = lab.compile('sleeper')
  const args = ['8', '100', '1000', '0']
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 3, 5000, 'sleeper output')
  const img = lab.path(`clock-${String(clock)}.img`)
  await dump(s.pid, img)
  await s.exited
  await new Promise(resolve => setTimeout(resolve, pauseMs)) // the time the move takes between hosts
  const r = lab.track(await restore(img, { clock, stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = s.out
  let err = ''
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  r.stderr?.on('data', (b: Buffer) => { err += b.toString() })
  const ends = Promise.all([r.stdout, r.stderr].map(x => new Promise(resolve => x?.on('end', resolve))))
  const st = await r.exited
  await ends
  return { out, err, code: st.code, monoOffsetNs: Number(r.stats.mono_offset_ns) }
}

test('clock "continue": a 1.5 s pause between dump and restore is invisible to the process', async () => {
  const bin = lab.compile('sleeper')
  const ref = reference(bin, ['8', '100', '1000', '0'])
  const m = await moveWithPause('continue', 1500)
  assert.equal(m.code, 0)
  assert.equal(m.out, ref.out)
  assert.match(m.out, /clock ok\n$/)
  assert.ok(m.monoOffsetNs < -1.4e9, `offset ${m.monoOffsetNs} ns`)
})

test('clock "real": the same pause shows as a jump (so the namespace is what hides it)', async () => {
  const m = await moveWithPause('real', 1500)
  assert.equal(m.code, 0)
  assert.match(m.out, /clock jump \d+ ms\n$/)
  const gap = Number(/maxgap_ms=(\d+)/.exec(m.err)?.[1])
  assert.ok(gap >= 1500, `gap ${gap} ms`)
})

test('an explicit offset of +1000 s is what the process sees', async () => {
  const m = await moveWithPause(1000e9, 0)
  assert.equal(m.code, 0)
  const gap = Number(/maxgap_ms=(\d+)/.exec(m.err)?.[1])
  assert.ok(gap >= 1000000 && gap < 1010000, `gap ${gap} ms`)
})

test('a process restored in a time namespace moves again with its view of the clock', async () => {
  const bin = lab.compile('sleeper')
  const args = ['10', '100', '1000', '0']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'sleeper output')
  await dump(s.pid, lab.path('ns1.img'))
  await new Promise(resolve => setTimeout(resolve, 800))
  const r1 = lab.track(await restore(lab.path('ns1.img'), { clock: 'continue', stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = s.out
  r1.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  await waitFor(() => lines(out) >= 5, 5000, 'output after the first move')
  assert.notEqual(readFileSync(`/proc/${r1.pid}/timens_offsets`, 'utf8'), readFileSync('/proc/self/timens_offsets', 'utf8'))
  await dump(r1.pid, lab.path('ns2.img'))
  await r1.exited
  // same host, same boot: "real" keeps the process' own offset, so its clock still does not jump
  const r2 = lab.track(await restore(lab.path('ns2.img'), { clock: 'real', stdio: ['ignore', 'pipe', 'pipe'] }))
  r2.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const end = new Promise(resolve => r2.stdout?.on('end', resolve))
  assert.deepEqual(await r2.exited, { code: 0, signal: null })
  await end
  assert.equal(out, ref.out)
})

test('dump-and-continue several times: the original keeps its schedule and its layout', async () => {
  const bin = lab.compile('sleeper')
  const args = ['12', '100', '250', '0']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  for (const mark of [2, 4, 6, 8]) {
    await waitFor(() => lines(s.out) >= mark, 5000, `round ${mark}`)
    const maps = readFileSync(`/proc/${s.pid}/maps`, 'utf8')
    const d = await dump(s.pid, lab.path(`live-${mark}.img`), { leaveRunning: true })
    assert.ok(d.bytes > 0)
    assert.equal(readFileSync(`/proc/${s.pid}/maps`, 'utf8'), maps, 'no scratch mapping or other debris left')
  }
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, ref.out)
  assert.match(s.out, /clock ok\n$/)
})
