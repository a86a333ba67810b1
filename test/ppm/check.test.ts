// Can't-move analysis and safety: every obstacle is reported as a reason before anything is
// touched, a refused or failed dump leaves the process exactly as it was, and seccomp filters are
// respected and reinstalled.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { Writable, PassThrough } from 'node:stream'
import { check, deputy, dump, restore, PpmError } from '../../src/ppm/ppm.js'
import { ErrnoError } from '../../src/util/errno.js'
import { Lab, chain, lines, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

function status (pid: number, key: string): string {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] ?? ''
}

async function refusedAndUntouched (pid: number, code: string): Promise<void> {
  const reasons = await check(pid)
  assert.ok(reasons.some(r => r.code === code), `reason ${code} in ${JSON.stringify(reasons)}`)
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8')
  await assert.rejects(dump(pid, lab.path(`refused-${pid}.img`)), (e: unknown) => {
    assert.ok(e instanceof PpmError)
    assert.equal(e.code, 'EPERM')
    assert.ok(e.reasons.some(r => r.code === code))
    return true
  })
  assert.equal(readFileSync(`/proc/${pid}/maps`, 'utf8'), maps, 'memory map unchanged')
  assert.equal(status(pid, 'TracerPid'), '0', 'not left traced')
  assert.match(status(pid, 'State'), /^[RS]/, 'still running')
}

test('a thread with a descriptor table or credentials of its own cannot move; the process is left exactly as it was', async () => {
  const bin = lab.compile('threads')
  for (const [mode, code] of [['files', 'thread-unshared'], ['creds', 'thread-creds']]) {
    const s = lab.start(bin, ['2', mode])
    await waitFor(() => s.err.includes('ready'), 5000, 'second thread')
    await refusedAndUntouched(s.pid, code)
    assert.deepEqual(await s.exited, { code: 0, signal: null })
    assert.equal(s.out, 'threads done\n')
  }
})

test('a TCP socket user cannot move (only socketpairs whose both ends it holds can)', async () => {
  const bin = lab.compile('sockuser')
  const s = lab.start(bin, ['2'])
  await waitFor(() => { try { return readdirSync(`/proc/${s.pid}/fd`).length >= 6 } catch { return false } }, 5000, 'sockets')
  const reasons = await check(s.pid)
  assert.deepEqual(reasons.filter(r => r.code === 'fd-socket').length, 1, 'the socketpair is no obstacle, the TCP socket is')
  assert.match(reasons.find(r => r.code === 'fd-socket')?.text ?? '', /AF_INET/)
  await refusedAndUntouched(s.pid, 'fd-socket')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, 'sockets done\n')
})

test('kernel objects that still cannot move give a precise reason and are left untouched', async () => {
  const bin = lab.compile('holdout')
  const want: Record<string, [string, RegExp]> = {
    epoll: ['fd-epoll', /registered as fd 4 that is no longer open/],
    inotify: ['fd-inotify', /bytes of unread events/],
    cputimer: ['posix-timers', /CPU clock of another process/]
  }
  for (const [mode, [code, text]] of Object.entries(want)) {
    const s = lab.start(bin, [mode, '3'])
    await waitFor(() => s.out.startsWith('ready'), 5000, `${mode} set up`)
    const r = await check(s.pid)
    assert.ok(r.some(x => x.code === code && text.test(x.text)), `${mode}: ${JSON.stringify(r)}`)
    await refusedAndUntouched(s.pid, code)
    assert.deepEqual(await s.exited, { code: 0, signal: null })
  }
  // an eventfd shared with another process: the child, which has no children of its own
  const s = lab.start(bin, ['shared', '3'])
  await waitFor(() => /^ready \d+/.test(s.out), 5000, 'child')
  const child = Number(s.out.split(' ')[1])
  assert.ok((await check(child)).some(x => x.code === 'fd-shared' && x.text.includes(`shared with process ${s.pid}`)))
  await refusedAndUntouched(child, 'fd-shared')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
})

test('locked memory, shared memory with another process, children: each a reason', async () => {
  const bin = lab.compile('mlocker')
  const l = lab.start(bin, ['lock', '2'])
  await waitFor(() => status(l.pid, 'VmLck') !== '0 kB', 5000, 'mlock')
  await refusedAndUntouched(l.pid, 'locked-memory')
  const s = lab.start(bin, ['share', '2'])
  let child = 0
  await waitFor(() => {
    try { child = Number(readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').trim()); return child > 0 } catch { return false }
  }, 5000, 'child')
  await refusedAndUntouched(s.pid, 'children')
  assert.ok((await check(s.pid)).some(r => r.code === 'shared-memory'))
  await refusedAndUntouched(child, 'shared-memory')
  assert.deepEqual(await l.exited, { code: 0, signal: null })
  assert.deepEqual(await s.exited, { code: 0, signal: null })
})

test('real-time scheduling, job-control stop, unnamed pipe and already traced: reasons', async () => {
  const rt = lab.start('chrt', ['-f', '1', 'sleep', 'infinity'])
  await waitFor(() => { try { return readFileSync(`/proc/${rt.pid}/comm`, 'utf8').trim() === 'sleep' } catch { return false } }, 5000, 'chrt exec')
  await refusedAndUntouched(rt.pid, 'realtime')

  const bin = lab.compile('counter')
  const st = lab.start(bin, ['10', '100', '0', '20000'])
  await waitFor(() => lines(st.out) >= 1, 5000, 'counter output')
  process.kill(st.pid, 'SIGSTOP')
  await waitFor(() => status(st.pid, 'State').startsWith('T'), 5000, 'stopped')
  assert.ok((await check(st.pid)).some(r => r.code === 'stopped'))
  await assert.rejects(dump(st.pid, lab.path('stopped.img')), PpmError)
  assert.ok(status(st.pid, 'State').startsWith('T'), 'still stopped')
  process.kill(st.pid, 'SIGCONT')
  assert.deepEqual(await st.exited, { code: 0, signal: null })
  assert.equal(st.out, reference(bin, ['10', '100', '0', '0']).out)

  const p = lab.start('bash', ['-c', 'exec sleep infinity 3< <(exec tail --pid=$$ -f /dev/null)'])
  await waitFor(() => { try { return readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim() === 'sleep' } catch { return false } }, 5000, 'sleep exec')
  assert.ok((await check(p.pid)).some(r => r.code === 'fd-pipe'))

  const c = lab.start(bin, ['1000000', '100', '0', '50000'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(c.out) >= 1, 5000, 'counter output')
  const d = lab.trackDeputy(await deputy(c.pid, lab.path('traced.img')))
  assert.ok((await check(c.pid)).some(r => r.code === 'traced'))
  await d.kill(9)
  assert.deepEqual(await c.exited, { code: null, signal: 9 })
})

test('bad input: no such process, bad pids; nothing is touched', async () => {
  assert.deepEqual((await check(4000000)).map(r => r.code), ['no-process'])
  assert.deepEqual((await check(1)).map(r => r.code), ['self'])
  assert.deepEqual((await check(process.pid)).map(r => r.code).includes('self'), true)
  for (const bad of [0, -5, 1.5, NaN]) {
    await assert.rejects(check(bad), (e: unknown) => e instanceof ErrnoError && e.code === 'EINVAL')
    await assert.rejects(dump(bad, lab.path('x.img')), (e: unknown) => e instanceof ErrnoError && e.code === 'EINVAL')
  }
  await assert.rejects(dump(4000000, lab.path('x.img')), PpmError)
})

test('a dump that fails midway (the image stream breaks) leaves the original running as before', async () => {
  const bin = lab.compile('counter')
  const args = ['16', '8000', '2', '40000']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 10000, 'counter output')
  let seen = 0
  const breaking = new Writable({
    write (chunk: Buffer, _enc, cb) { seen += chunk.length; if (seen > (1 << 20)) cb(new Error('link down')); else cb() }
  })
  await assert.rejects(dump(s.pid, breaking))
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'released')
  assert.deepEqual(await s.exited, { code: 2, signal: null })
  assert.equal(s.out, ref.out)
})

test('--leave-running: the original goes on, and the image also runs to the same end elsewhere', async () => {
  const bin = lab.compile('speaker')
  const args = ['30', '30000', '4']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 5, 10000, 'speaker output')
  const pt = new PassThrough()
  const rp = restore(pt, { stdio: ['ignore', 'pipe', 'ignore'] })
  const d = await dump(s.pid, pt, { leaveRunning: true })
  assert.ok(d.freezeMs > 0)
  const r = lab.track(await rp)
  assert.notEqual(r.pid, s.pid)
  assert.equal(r.pidKept, false)
  let copy = ''
  r.stdout?.on('data', (b: Buffer) => { copy += b.toString() })
  const end = new Promise(resolve => r.stdout?.on('end', resolve))
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
  assert.deepEqual(await r.exited, { code: 4, signal: null })
  await end
  const before = s.out.split('\n').slice(0, lines(s.out) - lines(copy)).join('\n') + '\n'
  assert.equal(before + copy, ref.out, 'the copy continued from the checkpoint')
})

test('seccomp filters are respected during injection and reinstalled after restore', async () => {
  const bin = lab.compile('seccomp')
  const args = ['14', '50000']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [2, 6, 10], relay: true })
  assert.deepEqual(await s.exited, { code: null, signal: 31 }, 'killed by SIGSYS from the reinstalled filter')
  assert.equal(s.out, ref.out)
  assert.match(s.out, /round 13 getppid -1 errno 1 nnp 1\n$/)
})

test('a deleted executable or working directory is a reason', async () => {
  const { copyFileSync, mkdirSync, rmSync, unlinkSync } = await import('node:fs')
  const bin = lab.compile('counter')
  const copy = lab.path('counter-gone')
  copyFileSync(bin, copy)
  const a = lab.start(copy, ['1000000', '100', '0', '30000'])
  await waitFor(() => lines(a.out) >= 1, 5000, 'output')
  unlinkSync(copy)
  assert.ok((await check(a.pid)).some(r => r.code === 'exe-deleted'))
  const dir = lab.path('cwd-gone')
  mkdirSync(dir)
  const b = lab.start(bin, ['1000000', '100', '0', '30000'], ['ignore', 'pipe', 'pipe'], dir)
  await waitFor(() => lines(b.out) >= 1, 5000, 'output')
  rmSync(dir, { recursive: true })
  assert.ok((await check(b.pid)).some(r => r.code === 'cwd-deleted'))
  a.child.kill('SIGKILL')
  b.child.kill('SIGKILL')
  await a.exited
  await b.exited
})

test('signals arriving while the process is being dumped are not lost and do not disturb it', async () => {
  const bin = lab.compile('sigs')
  const args = ['30', '30000', '0']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'handlers installed')
  let sent = 0
  const barrage = setInterval(() => { try { process.kill(s.pid, 'SIGHUP'); sent++ } catch {} }, 1)
  try {
    for (let i = 0; i < 5; i++) {
      await dump(s.pid, lab.path(`hup-${i}.img`), { leaveRunning: true })
      await new Promise(resolve => setTimeout(resolve, 40))
    }
  } finally { clearInterval(barrage) }
  const last = lines(s.out)
  process.kill(s.pid, 'SIGHUP') // at least one after the barrage, while it still runs
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.ok(sent > 10 && last < 30)
  const body = (o: string): string => o.split('\n').slice(0, -2).join('\n')
  assert.equal(body(s.out), body(ref.out), 'same rounds, handlers and signal state')
  const hup = Number(/hup (\d+)/.exec(s.out)?.[1])
  assert.ok(hup >= 1, `SIGHUP handled ${hup} times`)
  assert.match(s.out, /sigstate ok hup \d+ usr2 pending no\n$/)
})
