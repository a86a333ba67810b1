// Subject programs written for the suite, each checkpointed mid-run several times and moved
// between fresh processes and its hollowed original; each must finish with output, files and
// exit status identical to an uninterrupted run.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { deputy, dump, restore } from '../../src/ppm/ppm.js'
import { Lab, chain, fileLines, fileSize, lines, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

for (const kind of ['dynamic', 'static']) {
  test(`${kind} CPU-and-memory counter moves back and forth and finishes as if never moved`, async () => {
    const bin = lab.compile('counter', `counter-${kind}`, kind === 'static' ? ['-static'] : [])
    const args = ['24', '400', '7', '60000']
    const ref = reference(bin, args)
    const out = lab.path(`counter-${kind}.out`)
    const s = lab.start(bin, args, ['ignore', lab.open(out, 'w'), 'pipe'])
    const t = await chain(lab, s, { progress: () => fileLines(out), marks: [3, 9, 15] })
    assert.deepEqual(await s.exited, { code: 7, signal: null })
    assert.equal(readFileSync(out, 'utf8'), ref.out)
    assert.match(ref.out, /rseq ok\n$/, 'rseq registered all along (checked by the subject)')
    assert.ok(t.freezeMs.every(ms => ms < 1000), `freeze times ${t.freezeMs.join(', ')}`)
  })
}

test('dump-and-kill then restore keeps the pid, several times, with the status reported', async () => {
  const bin = lab.compile('counter')
  const args = ['20', '400', '5', '50000']
  const ref = reference(bin, args)
  const out = lab.path('counter-pid.out')
  const s = lab.start(bin, args, ['ignore', lab.open(out, 'w'), 'ignore'])
  const pid = s.pid
  await waitFor(() => fileLines(out) >= 3, 10000, 'first rounds')
  await dump(pid, lab.path('k1.img'))
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
  const r1 = lab.track(await restore(lab.path('k1.img'), { stdio: ['ignore', 'ignore', 'ignore'] }))
  assert.equal(r1.pid, pid)
  assert.equal(r1.pidKept, true)
  await waitFor(() => fileLines(out) >= 8, 10000, 'more rounds')
  await dump(pid, lab.path('k2.img'))
  assert.deepEqual(await r1.exited, { code: null, signal: 9 })
  const r2 = lab.track(await restore(lab.path('k2.img'), { requirePid: true, stdio: ['ignore', 'ignore', 'ignore'] }))
  assert.equal(r2.pid, pid)
  assert.deepEqual(await r2.exited, { code: 5, signal: null })
  assert.equal(readFileSync(out, 'utf8'), ref.out)
})

test('sleeper reading clocks resumes interrupted absolute and relative sleeps', async () => {
  const bin = lab.compile('sleeper')
  const args = ['16', '120', '3000', '4']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [2, 6, 10], relay: true })
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
  assert.match(s.out, /clock ok\n$/)
})

test('file writer with stdio buffering and O_APPEND keeps offsets and buffered data', async () => {
  const bin = lab.compile('filewriter')
  const input = lab.path('fw.in')
  let text = ''
  for (let i = 0; text.length < 300000; i++) text += `line ${i} ${(i * 2654435761 % 4294967296).toString(16)} lorem ipsum dolor sit amet\n`
  writeFileSync(input, text)
  const [r1, r2, o1, o2] = ['fw-ref1', 'fw-ref2', 'fw-o1', 'fw-o2'].map(n => lab.path(n))
  writeFileSync(r2, 'header\n')
  writeFileSync(o2, 'header\n')
  const ref = reference(bin, [input, r1, r2, '8000', '6'])
  assert.equal(ref.code, 6)
  const s = lab.start(bin, [input, o1, o2, '8000', '6'], ['ignore', 'pipe', 'pipe'])
  const t = await chain(lab, s, { progress: () => fileSize(o1), marks: [40000, 120000, 200000] })
  assert.deepEqual(await s.exited, { code: 6, signal: null })
  assert.ok(readFileSync(o1).equals(readFileSync(r1)), 'write(2) output identical')
  assert.ok(readFileSync(o2).equals(readFileSync(r2)), 'stdio O_APPEND output identical')
  assert.equal(t.freezeMs.length, 3)
})

test('program with signal handlers keeps handlers, flags, masks, blocked set, pending signal, alternate stack and itimer', async () => {
  const bin = lab.compile('sigs')
  const args = ['20', '60000', '9']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'handlers installed')
  process.kill(s.pid, 'SIGUSR2') // blocked: it must stay pending through every move
  await chain(lab, s, { progress: () => lines(s.out), marks: [3, 8, 13], relay: true })
  assert.deepEqual(await s.exited, { code: 9, signal: null })
  assert.match(ref.out, /sigstate ok hup 0 usr2 pending no\n$/)
  assert.equal(s.out, ref.out.replace('usr2 pending no', 'usr2 pending yes'))
})

test('mapping mix: shared-anonymous, MAP_SHARED file, private file COW and PROT_NONE data', async () => {
  const bin = lab.compile('mapmix')
  const mk = (n: string): string => { const p = lab.path(n); writeFileSync(p, Buffer.alloc(65536, 0x11)); return p }
  const [rs, rp, ss, sp] = [mk('mm-rs'), mk('mm-rp'), mk('mm-ss'), mk('mm-sp')]
  const ref = reference(bin, [rs, rp, '18', '50000', '3'])
  const s = lab.start(bin, [ss, sp, '18', '50000', '3'], ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [2, 7, 12], relay: true })
  assert.deepEqual(await s.exited, { code: 3, signal: null })
  assert.equal(s.out, ref.out)
  assert.ok(readFileSync(ss).equals(readFileSync(rs)), 'shared file identical')
  assert.ok(readFileSync(sp).equals(readFileSync(rp)), 'private file untouched')
})

test('reader blocked on a FIFO (cat) re-enters read() wherever it lives', async () => {
  const fifo = lab.path('fifo')
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
  const w = openSync(fifo, 'r+') // never blocks; closing it is the EOF
  try {
    const s = lab.start('cat', [fifo], ['ignore', 'pipe', 'pipe'])
    let n = 0
    const say = (k: number): void => { for (let i = 0; i < k; i++) writeSync(w, `fifo line ${n++}\n`) }
    const progress = (): number => lines(s.out)
    say(3)
    await waitFor(() => progress() >= 3, 10000, 'cat output')
    const d = lab.trackDeputy(await deputy(s.pid, lab.path('fifo-a.img')))
    const stdio = { stdioFrom: s.pid }
    const r1 = lab.track(await restore(lab.path('fifo-a.img'), { keepPid: false, ...stdio }))
    say(3)
    await waitFor(() => progress() >= 6, 10000, 'cat output from the first copy')
    await dump(r1.pid, lab.path('fifo-b.img'))
    const r2 = lab.track(await restore(lab.path('fifo-b.img'), { keepPid: false, ...stdio }))
    say(3)
    await waitFor(() => progress() >= 9, 10000, 'cat output from the second copy')
    await dump(r2.pid, lab.path('fifo-c.img'))
    await d.restoreInto(lab.path('fifo-c.img'))
    say(3)
    await waitFor(() => progress() >= 12, 10000, 'cat output at home')
    closeSync(w)
    assert.deepEqual(await s.exited, { code: 0, signal: null })
    assert.equal(s.out, Array.from({ length: 12 }, (_, i) => `fifo line ${i}\n`).join(''))
  } finally {
    try { closeSync(w) } catch {}
  }
})
