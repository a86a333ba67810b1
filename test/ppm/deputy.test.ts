// The deputy's primitives: hollow out the original (pid and parent kept, memory freed, parked),
// report signals sent to it, make it exit with a status or die by a signal as its parent's wait()
// sees it, restore an image back into it, and duplicate its fds 0-2.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { spawnSync } from 'node:child_process'
import { PassThrough } from 'node:stream'
import { deputy, dump, restore, startDeputy, startDump, useStandby, PpmError, type SigInfo } from '../../src/ppm/ppm.js'
import { Lab, lines, reference, waitFor, withGoWait, type Subject } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

function status (pid: number, key: string): string {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] ?? ''
}

test('hollow: pid and parent kept, memory freed, only the vDSO group left, signals reported, exit status chosen', async () => {
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '4000', '0', '20000'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
  const rssBefore = parseInt(status(s.pid, 'VmRSS'))
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('h.img')))
  assert.equal(d.pid, s.pid)
  const rss = parseInt(status(s.pid, 'VmRSS'))
  assert.ok(rss < 200 && rss < rssBefore / 10, `VmRSS ${rss} kB after hollowing (was ${rssBefore} kB)`)
  const maps = readFileSync(`/proc/${s.pid}/maps`, 'utf8').trim().split('\n').map(l => l.split(/\s+/)[5])
  assert.deepEqual(maps.filter(n => !['[vvar]', '[vvar_vclock]', '[vdso]', '[vsyscall]'].includes(n)), [])
  assert.equal(status(s.pid, 'PPid'), String(process.pid), 'parent kept')
  assert.ok(d.freezeMs > 0 && d.hollowMs >= 0)

  const seen: number[] = []
  const infos = new Map<number, SigInfo | undefined>()
  d.on('signal', (sig: number, info?: SigInfo) => { seen.push(sig); infos.set(sig, info) })
  for (const sig of ['SIGUSR1', 'SIGTERM', 'SIGINT'] as const) process.kill(s.pid, sig)
  await waitFor(() => seen.length >= 3, 5000, 'signal reports')
  assert.deepEqual([...seen].sort((a, b) => a - b), [2, 10, 15])
  assert.deepEqual(infos.get(10), { code: 0, pid: process.pid, uid: 0, value: '0' }, 'kill: SI_USER from this process')
  // a queued value is reported with the signal, to be passed on with it (SIGRTMIN+2, SI_QUEUE)
  const q = spawnSync(lab.compile('sigsend'), [String(s.pid), '36', '-4242'])
  assert.equal(q.status, 0, String(q.stderr))
  await waitFor(() => seen.length >= 4, 5000, 'the queued signal\'s report')
  assert.deepEqual(infos.get(36), { code: -1, pid: q.pid, uid: 0, value: '-4242' })
  assert.equal(status(s.pid, 'State').charAt(0) !== 'Z', true, 'signals did not end it')

  assert.deepEqual(await d.exit(42), { code: 42, signal: null })
  assert.deepEqual(await s.exited, { code: 42, signal: null }, "the parent's wait() sees the chosen status")
  await assert.rejects(d.takeFds(), PpmError)
})

test('die by a given signal, as the parent sees it; bad requests change nothing', async () => {
  const bin = lab.compile('sigs')
  const a = lab.start(bin, ['1000000', '20000', '0'])
  await waitFor(() => lines(a.out) >= 1, 5000, 'output')
  const d = lab.trackDeputy(await deputy(a.pid, lab.path('k.img')))
  await assert.rejects(d.kill(0), /bad signal/)
  await assert.rejects(d.exit(300), /bad exit status/)
  // SIGINT is ignored and SIGUSR1 has a handler in the subject: the deputy still makes it die by them
  assert.deepEqual(await d.kill(2), { code: null, signal: 2 })
  assert.deepEqual(await a.exited, { code: null, signal: 2 })

  const b = lab.start(bin, ['1000000', '20000', '0'])
  await waitFor(() => lines(b.out) >= 1, 5000, 'output')
  const d2 = lab.trackDeputy(await deputy(b.pid, lab.path('k2.img')))
  assert.deepEqual(await d2.kill(11), { code: null, signal: 11 })
  assert.deepEqual(await b.exited, { code: null, signal: 11 })

  const c = lab.start(bin, ['1000000', '20000', '0'])
  await waitFor(() => lines(c.out) >= 1, 5000, 'output')
  const d3 = lab.trackDeputy(await deputy(c.pid, lab.path('k3.img')))
  d3.abandon()
  assert.deepEqual(await c.exited, { code: null, signal: 9 }, 'an original whose deputy dies is killed (PTRACE_O_EXITKILL)')
})

test('takeFds duplicates fds 0-2 of the hollow original (pidfd_getfd)', async () => {
  const bin = lab.compile('speaker')
  const out = lab.path('spk.out')
  const s = lab.start(bin, ['1000000', '20000', '0'], ['ignore', lab.open(out, 'w'), 'pipe'])
  await waitFor(() => statSync(out).size > 0, 5000, 'output')
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('t.img')))
  const fds = await d.takeFds()
  assert.equal(fds.length, 3)
  assert.ok(fds.every(p => p != null))
  assert.equal(statSync(fds[1] as string).ino, statSync(out).ino, 'fd 1 is the same file')
  assert.equal(statSync(fds[0] as string).rdev, statSync('/dev/null').rdev, 'fd 0 is /dev/null')
  assert.deepEqual(await d.exit(0), { code: 0, signal: null })
})

test('return home: away in a fresh process, back into the original under its own pid', async () => {
  const bin = lab.compile('speaker')
  const args = ['40', '25000', '6']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 5, 5000, 'output')
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('home-a.img')))
  const r = lab.track(await restore(lab.path('home-a.img'), { keepPid: false, stdioFrom: s.pid }))
  await waitFor(() => lines(s.out) >= 15, 5000, 'output from away')
  // a failed return (corrupt image) leaves the original hollow and usable
  await dump(r.pid, lab.path('home-b.img'))
  const bad = readFileSync(lab.path('home-b.img'))
  bad[bad.length - 100] ^= 0xff
  writeFileSync(lab.path('home-bad.img'), bad)
  await assert.rejects(d.restoreInto(lab.path('home-bad.img')), (e: unknown) => e instanceof PpmError && e.code === 'EBADMSG')
  assert.ok(parseInt(status(s.pid, 'VmRSS')) < 200, 'still hollow')
  // and the real image brings it home, through a stream
  const { createReadStream } = await import('node:fs')
  const res = await d.restoreInto(createReadStream(lab.path('home-b.img')))
  assert.ok(res.restoreMs > 0)
  assert.equal(readFileSync(`/proc/${s.pid}/comm`, 'utf8').trim(), 'speaker')
  assert.equal(status(s.pid, 'TracerPid'), '0')
  const [code] = await once(s.child, 'exit')
  assert.equal(code, 6)
  await s.exited
  assert.equal(s.out, ref.out)
})

test('return home: an alternate signal stack the process turned off while away is off at home too', async () => {
  const bin = lab.compile('altoff')
  const off = lab.path('altoff.off')
  const ask = lab.path('altoff.ask')
  const s = lab.start(bin, [off, ask], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'ready\n', 5000, 'ready')
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('alt-a.img')))
  const r = lab.track(await restore(lab.path('alt-a.img'), { keepPid: false, stdioFrom: s.pid }))
  writeFileSync(off, '')
  await waitFor(() => s.out === 'ready\noff\n', 5000, 'turned off away')
  await dump(r.pid, lab.path('alt-b.img'))
  await d.restoreInto(lab.path('alt-b.img'))
  writeFileSync(ask, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, 'ready\noff\naltstack disabled\n')
})

test('return home while it runs on its alternate signal stack (in a handler): the restore into the original sets the stack again', async () => {
  const bin = lab.compile('onalt')
  const go = lab.path('onalt.go')
  const s = lab.start(bin, [go], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'ready\n', 5000, 'ready')
  process.kill(s.pid, 'SIGUSR1')
  await waitFor(() => s.out === 'ready\nin handler\n', 5000, 'in its handler')
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('onalt-a.img')))
  const r = lab.track(await restore(lab.path('onalt-a.img'), { keepPid: false, stdioFrom: s.pid }))
  await dump(r.pid, lab.path('onalt-b.img'))
  await d.restoreInto(lab.path('onalt-b.img'))
  writeFileSync(go, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, 'ready\nin handler\nhandler done\nbye\n')
})

test('a synchronous fault during injection aborts at once instead of looping', async () => {
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '100', '0', '20000'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'output')
  // fault-injection hook: hollow without unregistering rseq, so the munmap of the rseq area makes
  // the next return to user mode fault (docs/ppm.md "Kernel facts")
  process.env.HPC_PPM_TEST_FAULT = 'keep-rseq'
  const p = deputy(s.pid, lab.path('fault.img'))
  delete process.env.HPC_PPM_TEST_FAULT
  const t0 = Date.now()
  await assert.rejects(p, (e: unknown) => e instanceof PpmError && e.code === 'EFAULT' && /synchronous signal 11/.test(e.message))
  assert.ok(Date.now() - t0 < 5000, 'aborted promptly')
  // its memory is half gone, so it cannot run on: it is removed, not left half-hollow
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
})

test('a signal sent to the original while its image is restored into it is delivered once it runs, once', async () => {
  const bin = lab.compile('usr1')
  const s = lab.start(bin, ['16'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => s.out.includes('ready\n'), 5000, 'ready')
  const img = lab.path('usr1.img')
  const d = lab.trackDeputy(await deputy(s.pid, img))
  const seen: number[] = []
  d.on('signal', (sig: number) => seen.push(sig))
  const bytes = readFileSync(img)
  const src = new PassThrough()
  const home = d.restoreInto(src)
  src.write(bytes.subarray(0, bytes.length >> 1))
  // half of its memory is back: the restore is under way (the rest of its calls are made after)
  await waitFor(() => parseInt(status(s.pid, 'VmRSS')) > 4096, 10_000, 'the restore filling its memory')
  process.kill(s.pid, 'SIGUSR1')
  src.end(bytes.subarray(bytes.length >> 1))
  await home
  await waitFor(() => s.out.includes('usr1 1\n'), 5000, 'the handler run for the signal')
  process.kill(s.pid, 'SIGUSR2')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.match(s.out, /^ready\nusr1 1\ndone 1 \d+\n$/, 'one SIGUSR1, handled once')
  assert.deepEqual(seen, [], 'not reported as a signal for the process away (it is home)')
})

test('a move that fails on the target: the original is restored from its own image and goes on', async () => {
  const bin = lab.compile('counter')
  const args = ['20', '400', '4', '40000']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 3, 5000, 'output')
  const img = lab.path('own.img')
  const d = lab.trackDeputy(await deputy(s.pid, img))
  // the target refuses the image (here: it arrives damaged)
  const bad = readFileSync(img)
  bad[bad.length >> 1] ^= 0x40
  writeFileSync(lab.path('own-bad.img'), bad)
  await assert.rejects(restore(lab.path('own-bad.img'), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] }), PpmError)
  await d.restoreInto(img)
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
})

test('a deputy started ahead checks the process and waits: cancelled, the process is let go unchanged and nothing is written; a process that cannot move gets its reasons; told to go, it dumps and keeps the original frozen until released (it runs on) or hollowed', async () => {
  const { s, ref } = await counter() // (40 ms a line: a frozen original misses some in 100 ms)
  // cancelled: the helper ends, the process runs on untraced, the image file stays empty
  const first = await startDeputy(s.pid, lab.path('ahead0.img'))
  const n = lines(s.out)
  await waitFor(() => lines(s.out) > n, 5000, 'output while the deputy waits')
  first.cancel()
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'untraced')
  assert.equal(statSync(lab.path('ahead0.img')).size, 0)
  // stopped (job control): it cannot move, and says why
  process.kill(s.pid, 'SIGSTOP')
  await waitFor(() => status(s.pid, 'State').startsWith('T'), 5000, 'stopped')
  // (with a copy: a dump that fails before its first byte would write an empty image; not one started ahead)
  const copyFd = openSync(lab.path('ahead1.copy'), 'w')
  try {
    await assert.rejects(startDeputy(s.pid, lab.path('ahead1.img'), { copy: copyFd }), (e: PpmError) => e.reasons.some(r => r.code === 'stopped'))
  } finally { closeSync(copyFd) }
  assert.equal(statSync(lab.path('ahead1.img')).size, 0, 'nothing written')
  process.kill(s.pid, 'SIGCONT')
  // told to go: dumped, the original frozen (the copy kept until the target runs it); released,
  // it runs on as it was
  const first2 = await startDeputy(s.pid, lab.path('ahead2.img'))
  const kept = await first2.go()
  assert.ok(statSync(lab.path('ahead2.img')).size > 0 && kept.bytes > 0)
  await assert.rejects(first2.go(), PpmError, 'told once only')
  const m = lines(s.out)
  assert.match(status(s.pid, 'State'), /^[tT]/, 'frozen (stopped) while the target has not said')
  await kept.release()
  await waitFor(() => lines(s.out) > m, 5000, 'output once released')
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'untraced')
  // hollowed: as deputy(), and the original comes back from its image
  const img = lab.path('ahead3.img')
  const ahead = await startDeputy(s.pid, img)
  const frozen = await ahead.go()
  process.kill(s.pid, 'SIGUSR1') // reaches the frozen original: reported by its deputy, not delivered
  const d = lab.trackDeputy(await frozen.hollow())
  const seen: number[] = []
  d.on('signal', (sig: number) => seen.push(sig))
  await waitFor(() => seen.includes(10), 5000, 'the signal sent while it was frozen')
  assert.equal(d.pid, s.pid)
  assert.ok(statSync(img).size > 0 && d.freezeMs > 0)
  await d.restoreInto(img)
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
})

/** The counter subject, 60 lines 40 ms apart, once it has written two, and its undisturbed run. */
async function counter (): Promise<{ s: Subject, ref: { out: string, code: number | null } }> {
  const bin = lab.compile('counter')
  const args = ['60', '400', '4', '40000']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  return { s, ref }
}

test('a signal that reaches the original while a deputy started ahead waits for GO goes with its image, and is not passed on as well', async () => {
  const s = lab.start(lab.compile('usr1'), ['1'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'ready\n', 5000, 'ready')
  const a = await withGoWait('60000', async () => await startDeputy(s.pid, lab.path('wait-usr1.img')))
  await waitFor(() => status(s.pid, 'State').startsWith('t'), 5000, 'stopped while the deputy waits')
  // SIGUSR1 (a handler, not blocked) queued in the stopped original: its image has it; the calls
  // injected into the original after its image was read must not take it out to be passed on
  process.kill(s.pid, 'SIGUSR1')
  await waitFor(() => (BigInt(`0x${status(s.pid, 'ShdPnd')}`) & (1n << 9n)) !== 0n, 5000, 'SIGUSR1 pending')
  const k = await a.go()
  assert.equal(k.stats.signals, '1')
  const d = lab.trackDeputy(await k.hollow())
  const passedOn: number[] = []
  d.on('signal', (sig: number) => passedOn.push(sig))
  // the copy takes it once
  const r = lab.track(await restore(lab.path('wait-usr1.img'), { keepPid: false, stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = ''
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  await waitFor(() => out.includes('usr1 1\n'), 5000, 'the copy took SIGUSR1')
  process.kill(r.pid, 'SIGUSR2')
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  assert.match(out, /^usr1 1\ndone 1 \d+\n$/)
  // what the deputy reported came before HOLLOW, and was handed on after it (setImmediate)
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(passedOn, [], 'SIGUSR1 passed on as well')
  await d.exit(0)
})

test('a deputy started ahead stops and reads the process while it waits for GO: cancelled, it is let go unchanged; GO in time, the image is what it read; an answer later than HPC_PPM_GO_WAIT_MS: it runs on meanwhile and is read again at GO', async () => {
  const { s, ref } = await counter()
  // a long wait: stopped (traced) while it waits; cancelled, it runs on untraced, nothing written
  const c = await withGoWait('60000', async () => await startDeputy(s.pid, lab.path('ra0.img')))
  await waitFor(() => status(s.pid, 'State').startsWith('t'), 5000, 'stopped while the deputy waits')
  c.cancel()
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'untraced')
  const n0 = lines(s.out)
  await waitFor(() => lines(s.out) > n0, 5000, 'output once let go')
  assert.equal(statSync(lab.path('ra0.img')).size, 0)
  // GO in time: the dump goes on from what was read while it waited
  const a = await withGoWait('60000', async () => await startDeputy(s.pid, lab.path('ra1.img')))
  await waitFor(() => status(s.pid, 'State').startsWith('t'), 5000, 'stopped while the deputy waits')
  const k1 = await a.go()
  assert.equal(k1.stats.go_read_ahead, '1')
  assert.ok(statSync(lab.path('ra1.img')).size > 0)
  const n1 = lines(s.out)
  await k1.release()
  await waitFor(() => lines(s.out) > n1, 5000, 'output once released')
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'untraced')
  // no wait at all: let go at once, it runs on while the deputy waits; GO: stopped and read again,
  // and the original comes back from that image
  const b = await withGoWait('0', async () => await startDeputy(s.pid, lab.path('ra2.img')))
  await waitFor(() => b.stats.go_late === '1', 5000, 'let go while the deputy waits')
  const n2 = lines(s.out)
  await waitFor(() => lines(s.out) > n2, 5000, 'output while the deputy waits')
  const k2 = await b.go()
  assert.equal(k2.stats.go_read_ahead, undefined)
  const d = lab.trackDeputy(await k2.hollow())
  await d.restoreInto(lab.path('ra2.img'))
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
})

test('a dump started ahead (startDump: dump --wait): a process that cannot move gets its reasons; stopped and read while it waits; cancelled, it runs on; told to go, its image is written, the process removed, and it goes on from the image', async () => {
  const { s, ref } = await counter()
  process.kill(s.pid, 'SIGSTOP')
  await waitFor(() => status(s.pid, 'State').startsWith('T'), 5000, 'stopped')
  await assert.rejects(startDump(s.pid, lab.path('da0.img')), (e: PpmError) => e.reasons.some(r => r.code === 'stopped'))
  process.kill(s.pid, 'SIGCONT')
  const c = await withGoWait('60000', async () => await startDump(s.pid, lab.path('da1.img')))
  await waitFor(() => status(s.pid, 'State').startsWith('t'), 5000, 'stopped while the dump waits')
  await c.cancel()
  assert.equal(status(s.pid, 'TracerPid'), '0', 'let go once cancel resolves')
  const n = lines(s.out)
  await waitFor(() => lines(s.out) > n, 5000, 'output once let go')
  assert.equal(statSync(lab.path('da1.img')).size, 0)
  const img = lab.path('da2.img')
  const a = await withGoWait('60000', async () => await startDump(s.pid, img))
  await waitFor(() => status(s.pid, 'State').startsWith('t'), 5000, 'stopped while the dump waits')
  const r = await a.go()
  assert.equal(r.stats.go_read_ahead, '1')
  assert.ok(r.bytes > 0 && statSync(img).size === r.bytes)
  assert.deepEqual(await s.exited, { code: null, signal: 9 }, 'removed once its image is out')
  const back = lab.track(await restore(img, { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] }))
  let out = s.out
  back.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const end = new Promise(resolve => back.stdout?.on('end', resolve))
  assert.deepEqual(await back.exited, { code: 4, signal: null })
  await end
  assert.equal(out, ref.out)
})

/** Whether SIGTRAP is blocked (in the main thread) and ignored, or caught, in process pid, from its status. */
function trapHeld (pid: number, how: 'ignored' | 'caught'): boolean {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8')
  const bit = (k: string): boolean => (BigInt('0x' + (new RegExp(`^${k}:\\s*([0-9a-f]+)`, 'm').exec(st)?.[1] ?? '0')) >> 4n & 1n) === 1n
  return bit(how === 'ignored' ? 'SigIgn' : 'SigCgt') && bit('SigBlk')
}

for (const how of ['ignored', 'caught'] as const) {
  test(`SIGTRAP ${how} and blocked stays so through the injected calls, whose traps the kernel forces: a dump that leaves it running, a deputy started ahead and cancelled once it has read it, a dump and restore (both threads)`, async () => {
    const bin = lab.compile('trapmask')
    const s = lab.start(bin, ['150', '20000', ...(how === 'caught' ? ['handler'] : [])], ['ignore', 'pipe', 'pipe'])
    await waitFor(() => lines(s.out) >= 2, 5000, 'output')
    assert.ok(trapHeld(s.pid, how), `${how} and blocked to begin with`)
    await dump(s.pid, lab.path(`tm0-${how}.img`), { leaveRunning: true })
    await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'untraced')
    assert.ok(trapHeld(s.pid, how), 'after a dump that leaves it running')
    const c = await withGoWait('60000', async () => await startDeputy(s.pid, lab.path(`tm1-${how}.img`)))
    await waitFor(() => status(s.pid, 'State').startsWith('t'), 5000, 'stopped while the deputy waits')
    await c.cancel()
    assert.ok(trapHeld(s.pid, how), 'after a deputy read it and was cancelled')
    const img = lab.path(`tm2-${how}.img`)
    await dump(s.pid, img)
    await s.exited
    const back = lab.track(await restore(img, { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] }))
    let out = ''
    back.stdout?.on('data', (b: Buffer) => { out += b.toString() })
    const end = new Promise(resolve => back.stdout?.on('end', resolve))
    await waitFor(() => lines(out) >= 1, 5000, 'output of the restored process')
    assert.ok(trapHeld(back.pid, how), 'after a restore')
    assert.deepEqual(await back.exited, { code: 0, signal: null })
    await end
    const all = s.out + out
    assert.equal(lines(all), 151)
    assert.ok(all.split('\n').slice(0, 150).every(l => l.endsWith(`trap ${how} blocked`)), all)
    assert.match(all, /other thread blocked\n$/)
  })
}

/** pids of this process's children running `hpc-ppm-helper standby` */
function standbys (): number[] {
  return readdirSync('/proc').filter(d => /^\d+$/.test(d)).filter(d => {
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1])
      return ppid === process.pid && readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes('standby')
    } catch { return false }
  }).map(Number)
}

test('a helper started ahead (standby) runs the next deputy started ahead, and one more is started, then a dump; none is left', async () => {
  const bin = lab.compile('counter')
  const args = ['30', '400', '4', '40000']
  const ref = reference(bin, args)
  useStandby(true)
  try {
    await waitFor(() => standbys().length === 2, 5000, 'a standby of each kind')
    const [first] = standbys()
    const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
    await waitFor(() => lines(s.out) >= 2, 5000, 'output')
    const before = new Set(standbys())
    const img = lab.path('standby.img')
    const frozen = await (await startDeputy(s.pid, img)).go()
    const tracer = Number(status(s.pid, 'TracerPid'))
    assert.ok(before.has(tracer), `the deputy is a standby helper (tracer ${tracer}, standbys ${[...before].join(' ')})`)
    const d = lab.trackDeputy(await frozen.hollow())
    await waitFor(() => standbys().length === 2 && !standbys().includes(tracer), 5000, 'another standby') // (the used one runs as a deputy now)
    await d.restoreInto(img)
    assert.deepEqual(await s.exited, { code: 4, signal: null })
    assert.equal(s.out, ref.out)
    assert.ok(first > 0)
    // a dump into a descriptor runs on one too
    const ready = new Set(standbys())
    const s2 = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
    await waitFor(() => lines(s2.out) >= 2, 5000, 'output')
    const r = await dump(s2.pid, lab.path('standby2.img'), { leaveRunning: true })
    assert.ok(r.bytes > 0 && statSync(lab.path('standby2.img')).size === r.bytes)
    assert.ok([...ready].some(p => !standbys().includes(p)), 'a standby was used')
    assert.deepEqual(await s2.exited, { code: 4, signal: null }, 'left running')
  } finally { useStandby(false) }
  await waitFor(() => standbys().length === 0, 5000, 'no standby left')
})

test('a standby helper takes a descriptor only if it is still the one named (its inode): a number reused meanwhile fails the command', async () => {
  const { spawn } = await import('node:child_process')
  const { fstatSync } = await import('node:fs')
  const { helperPath } = await import('../../src/ppm/ppm.js')
  const file = lab.path('named.txt')
  writeFileSync(file, 'x')
  const fd = openSync(file, 'r')
  try {
    const run = async (spec: string): Promise<{ code: number | null, ctl: string }> => {
      const c = spawn(helperPath(), ['standby'], { stdio: ['ignore', 'ignore', 'ignore', 'ignore', 'pipe', 'pipe'] })
      let ctl = ''
      ;(c.stdio[4] as NodeJS.ReadableStream).on('data', (b: Buffer) => { ctl += b.toString() })
      ;((c.stdio as unknown as NodeJS.WritableStream[])[5]).end(`RUN ${process.pid} ${spec} - hostinfo\n`)
      const [code] = await once(c, 'close') as [number | null]
      return { code, ctl }
    }
    const wrong = await run(`${fd}:${fstatSync(fd).ino + 1}`)
    assert.notEqual(wrong.code, 0)
    assert.match(wrong.ctl, /^ERR EBADF descriptor \d+ of \d+ is no longer the one named/m)
    const right = await run(`${fd}:${fstatSync(fd).ino}`)
    assert.equal(right.code, 0, right.ctl)
    assert.match(right.ctl, /^HOSTINFO /m)
  } finally { closeSync(fd) }
})

test('a standby runs its command in this same process, its command line the command\'s (what ps shows); HPC_PPM_STANDBY=exec executes the program again, with the same command line', async () => {
  const { spawn } = await import('node:child_process')
  const { fstatSync, realpathSync } = await import('node:fs')
  const { helperPath } = await import('../../src/ppm/ppm.js')
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '4000', '0', '20000'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'output')
  for (const how of ['in-place', 'exec']) {
    const img = openSync(lab.path(`standby-${how}.img`), 'w')
    try {
      const env = { ...process.env, HPC_PPM_STANDBY: how === 'exec' ? 'exec' : '' }
      const c = spawn(helperPath(), ['standby'], { stdio: ['ignore', 'ignore', 'ignore', 'ignore', 'pipe', 'pipe'], env })
      let ctl = ''
      ;(c.stdio[4] as NodeJS.ReadableStream).on('data', (b: Buffer) => { ctl += b.toString() })
      const cmd = (c.stdio as unknown as NodeJS.WritableStream[])[5]
      cmd.write(`RUN ${process.pid} ${img}:${fstatSync(img).ino} - deputy ${s.pid} --relay --wait\n`)
      await waitFor(() => /^CHECKED$/m.test(ctl), 5000, `CHECKED (${how}): ${ctl}`)
      assert.match(ctl, new RegExp(`^STAT standby=${how}$`, 'm'))
      assert.deepEqual(readFileSync(`/proc/${c.pid as number}/cmdline`, 'utf8').split('\0').filter(Boolean), [realpathSync(helperPath()), 'deputy', String(s.pid), '--relay', '--wait'])
      assert.equal(readFileSync(`/proc/${c.pid as number}/comm`, 'utf8').trim(), 'hpc-ppm-helper')
      cmd.end() // no GO: the move does not go ahead
      await once(c, 'close')
      assert.match(ctl, /^ERR ECANCELED/m)
      assert.equal(statSync(lab.path(`standby-${how}.img`)).size, 0, 'nothing written')
    } finally { closeSync(img) }
  }
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'untraced')
  const n = lines(s.out)
  await waitFor(() => lines(s.out) > n, 5000, 'it runs on')
})

test('takeFds with relay: input and output of any kind (here sockets) flow through pipes', async () => {
  const { closeSync, createReadStream, openSync, writeSync } = await import('node:fs')
  const bin = lab.compile('speaker')
  const s = lab.start(bin, ['1000000', '20000', '0'], ['pipe', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('relay.img')))
  const plain = await d.takeFds()
  assert.throws(() => openSync(plain[1] as string, 'w'), /ENXIO/, 'a socket cannot be opened by path')
  const fds = await d.takeFds({ relay: true })
  const before = s.out.length
  const out = openSync(fds[1] as string, 'w')
  writeSync(out, 'relayed line\n')
  closeSync(out)
  await waitFor(() => s.out.slice(before) === 'relayed line\n', 5000, 'relayed output at the original stdout')
  // async reads: a blocking read here would stall the very write that feeds it
  const inp = createReadStream(fds[0] as string)
  let got = ''
  const ended = new Promise<void>(resolve => inp.on('end', () => resolve()))
  inp.on('data', (b: string | Buffer) => { got += b.toString() })
  s.child.stdin?.write('typed at home\n')
  await waitFor(() => got === 'typed at home\n', 5000, 'relayed input')
  s.child.stdin?.end()
  await ended
  assert.equal(got, 'typed at home\n', 'end of input passed on')
  assert.deepEqual(await d.exit(0), { code: 0, signal: null })
})
