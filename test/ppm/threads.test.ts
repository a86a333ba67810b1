// Multi-threaded processes: every thread frozen, dumped and recreated (clone3 with the image's tids
// where free, else new tids with the kernel-written tid words patched), threads blocked in
// condition variables, mutexes, relative and absolute sleeps and read() resuming; moved through
// the deputy (whose hollow original has no threads left) and home again, while they work; each
// run ends with output identical to an undisturbed run.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, closeSync, copyFileSync, readFileSync, readdirSync, readlinkSync, writeFileSync, writeSync } from 'node:fs'
import { check, dump, info, restore, restoreKept, PpmError, type ExitStatus } from '../../src/ppm/ppm.js'
import { attachKept } from '../../src/ppm/keeper.js'
import { within } from '../helpers/daemon.js'
import { Lab, chain, fileLines, lines, makeInput, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

function status (pid: number, key: string): string {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] ?? ''
}
function threadsOf (pid: number): number {
  try { return Number(status(pid, 'Threads')) } catch { return 0 }
}
/** the tids of a process and their names */
function tasks (pid: number): { tids: number[], names: string[] } {
  const tids = readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b)
  const names = tids.map(t => readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim()).sort()
  return { tids, names }
}

function opened (pid: number, path: string): boolean {
  try { return readdirSync(`/proc/${pid}/fd`).some(fd => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`) === path } catch { return false } }) } catch { return false }
}

/** FIFO input of the mthreads subject: the chunks it reads in its reader thread. */
const chunks = [0, 1, 2, 3].map(k => Buffer.from(Array.from({ length: 3000 }, (_, i) => `chunk ${k} line ${i} ${(i * 2654435761 + k) % 4294967296}\n`).join('').slice(0, 12000)))

class Fifo {
  readonly path: string
  private fd: number | null
  constructor (name: string) {
    this.path = lab.path(name)
    assert.equal(spawnSync('mkfifo', [this.path]).status, 0)
    // read-write: a writer is there from the start, so the subject's open() does not block and a
    // read finds the data written while no copy of the subject was running
    this.fd = lab.open(this.path, 'r+')
  }

  write (b: Buffer): void { if (this.fd != null) writeSync(this.fd, b) }
  close (): void { if (this.fd != null) closeSync(this.fd); this.fd = null }
}

/** mthreads with its stdout in a file and its reader on a FIFO fed `chunks` */
let mbin: string | undefined
function startM (name: string, args: string[]): { s: ReturnType<Lab['start']>, out: string, fifo: Fifo } {
  const bin = mbin ??= lab.compile('mthreads')
  const out = lab.path(`${name}.out`)
  const fifo = new Fifo(`${name}.fifo`)
  const s = lab.start(bin, [...args, fifo.path], ['ignore', lab.open(out, 'w'), 'pipe'])
  return { s, out, fifo }
}

/** the same program undisturbed, all of its input given at once */
async function undisturbed (name: string, args: string[]): Promise<{ out: string, status: ExitStatus }> {
  const u = startM(`${name}-ref`, args)
  // its reader must have the FIFO open before the writer goes, or the FIFO has nobody at all
  await waitFor(() => opened(u.s.pid, u.fifo.path), 10000, 'the reader to open its FIFO')
  for (const c of chunks) u.fifo.write(c)
  u.fifo.close()
  const st = await u.s.exited
  return { out: readFileSync(u.out, 'utf8'), status: st }
}

test('threads: dumped and restored here, under the same tids and then under new ones, while they work', async () => {
  const args = ['6', '70', '40000', '5']
  const ref = undisturbed('local', args)
  const { s, out, fifo } = startM('local', args)
  fifo.write(chunks[0])
  await waitFor(() => fileLines(out) >= 10, 20000, 'rounds')
  const before = tasks(s.pid)
  assert.equal(before.tids.length, 11, 'main, 6 workers, sleeper, waiter, locker, reader')
  assert.ok(before.names.includes('w5'))
  await dump(s.pid, lab.path('l1.img'))
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
  const r1 = lab.track(await restore(lab.path('l1.img'), { stdio: ['ignore', 'ignore', 'ignore'] }))
  assert.equal(r1.pid, s.pid)
  assert.equal(r1.stats.threads, '11')
  assert.equal(r1.stats.tids_kept, '11', 'every tid kept (clone3 set_tid)')
  assert.deepEqual(tasks(r1.pid), before, 'same tids, same names')
  fifo.write(chunks[1])
  await waitFor(() => fileLines(out) >= 30, 20000, 'more rounds')
  await dump(r1.pid, lab.path('l2.img'))
  assert.deepEqual(await r1.exited, { code: null, signal: 9 })
  const r2 = lab.track(await restore(lab.path('l2.img'), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] }))
  assert.equal(r2.stats.tids_kept, '0', 'new tids: the words holding the old ones are patched')
  const moved = tasks(r2.pid)
  assert.deepEqual(moved.names, before.names)
  assert.ok(moved.tids.every(t => !before.tids.includes(t)))
  fifo.write(chunks[2])
  fifo.write(chunks[3])
  fifo.close()
  assert.deepEqual(await r2.exited, { code: 5, signal: null })
  const u = await ref
  assert.deepEqual(u.status, { code: 5, signal: null })
  assert.match(u.out, /^w0 .* onstack=1 .* rseq=ok$/m, 'the reference shows what is checked')
  assert.match(u.out, /^robust w3: owner died$/m)
  assert.equal(readFileSync(out, 'utf8'), u.out)
})

/** The state letter of each of its threads (/proc/PID/task/TID/stat). */
function states (pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map(t => { try { return readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').replace(/^.*\) /, '')[0] } catch { return '' } })
}

test('threads: a process restored held (until its move is committed) has every thread stopped, not only its main one; killed held, its end is reported', async () => {
  const args = ['4', '40', '40000', '6']
  const ref = undisturbed('held-ref', args)
  const { s, out, fifo } = startM('held', args)
  fifo.write(chunks[0])
  await waitFor(() => fileLines(out) >= 5, 20000, 'rounds')
  await dump(s.pid, lab.path('held.img'))
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
  copyFileSync(lab.path('held.img'), lab.path('held2.img'))
  const k = attachKept(await restoreKept(lab.path('held.img'), { hold: true, leaseMs: 120000 }))
  try {
    assert.equal(states(k.pid).length, 9, 'main, 4 workers, sleeper, waiter, locker, reader')
    const seen = fileLines(out)
    assert.deepEqual(states(k.pid).filter(c => c !== 't'), [], 'every thread stopped while held')
    await k.go()
    fifo.write(chunks[1])
    fifo.write(chunks[2])
    fifo.write(chunks[3])
    fifo.close()
    assert.deepEqual(await k.exited, { code: 6, signal: null })
    assert.ok(fileLines(out) > seen)
    assert.equal(readFileSync(out, 'utf8'), (await ref).out)
  } finally { k.release() }
  // restored held again, then killed before it runs (a move that home did not commit)
  const h = attachKept(await restoreKept(lab.path('held2.img'), { hold: true, leaseMs: 120000 }))
  try {
    assert.deepEqual(states(h.pid).filter(c => c !== 't'), [])
    process.kill(h.pid, 'SIGKILL')
    assert.deepEqual(await within(h.exited, 10_000, 'the keeper to report its end'), { code: null, signal: 9 })
  } finally { h.release() }
})

test('threads: a signal pending for the process and one pending for its main thread alone are each taken where they were pending after a move', async () => {
  const bin = lab.compile('sigshare')
  const trigger = lab.path('sigshare.go')
  const s = lab.start(bin, [trigger], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'ready\n', 10000, 'ready')
  process.kill(s.pid, 'SIGUSR1') // blocked in every thread: pending for the process
  await waitFor(() => (BigInt(`0x${status(s.pid, 'ShdPnd')}`) & (1n << 9n)) !== 0n, 5000, 'SIGUSR1 pending for the process')
  assert.equal(BigInt(`0x${status(s.pid, 'SigPnd')}`) & (1n << 11n), 1n << 11n, 'SIGUSR2 pending for its main thread alone')
  await dump(s.pid, lab.path('sigshare.img'))
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
  const r = lab.track(await restore(lab.path('sigshare.img'), { keepPid: false, stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = ''
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  writeFileSync(trigger, '')
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  await waitFor(() => out.endsWith('\n'), 5000, 'its report')
  assert.equal(out, 'usr1 worker 1 main 0, usr2 worker 0 main 1\n', 'SIGUSR1 taken by the worker that unblocked it, SIGUSR2 by main')
})

/** sigqueue started, its signals all pending (it says ready), and its trigger file */
async function startQ (name: string): Promise<{ s: ReturnType<Lab['start']>, trigger: string }> {
  const bin = lab.compile('sigqueue')
  const trigger = lab.path(`${name}.go`)
  const s = lab.start(bin, [trigger], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'ready\n', 10000, 'ready')
  return { s, trigger }
}
/** what sigqueue prints when nothing moves it: each signal once per instance, in the kernel's order
 * (the taking thread's own first, then the process's; lowest number first; a real-time signal's
 * instances in the order they were queued), codes SI_QUEUE -1, SI_USER 0, SI_TIMER -2 (SIGHUP,
 * queued when the pending-signal limit was used up, as SI_USER from no one), and
 * SI_TKILL -6 or SI_USER for tgkill (kernels differ) */
let refQ: string | undefined
async function referenceQ (): Promise<string> {
  if (refQ !== undefined) return refQ
  const { s, trigger } = await startQ('sigqueue-ref')
  writeFileSync(trigger, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  refQ = s.out
  assert.equal(refQ.replace('RTMIN+3 code -6', 'RTMIN+3 code 0'), [
    'ready',
    'main sig RTMIN+1 code -1 value 8 self 1', 'main sig RTMIN+3 code 0 value 0 self 1',
    'main sig 0+1 code 0 value 0 self 0',
    'main sig 0+10 code -1 value 7 self 1', 'main sig 0+12 code 0 value 0 self 1',
    'main sig RTMIN+0 code -1 value 1 self 1', 'main sig RTMIN+0 code -1 value 2 self 1', 'main sig RTMIN+0 code -1 value 3 self 1',
    'main sig RTMIN+2 code -2 value 99 self -1',
    'worker sig RTMIN+1 code -1 value 5 self 1', 'worker sig RTMIN+1 code -1 value 6 self 1',
    'trap handler kept', 'limits sigpending 0 nofile 123 4567', ''
  ].join('\n'), 'the subject itself, unmoved')
  return refQ
}

test('pending signals keep every queued instance and their siginfo (sender, code, value), for the process and for each thread', async () => {
  const ref = await referenceQ()
  const { s, trigger } = await startQ('sigqueue-dump')
  await dump(s.pid, lab.path('sigqueue.img'))
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
  // a new pid: the senders' pids in the siginfo stay those the process had
  const r = lab.track(await restore(lab.path('sigqueue.img'), { keepPid: false, stdio: ['ignore', 'pipe', 'pipe'] }))
  assert.notEqual(r.pid, s.pid)
  let out = 'ready\n'
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  writeFileSync(trigger, '')
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  await waitFor(() => out.split('\n').length === ref.split('\n').length, 5000, 'its report')
  assert.equal(out, ref)
})

test('pending signals with their siginfo go out through the deputy, between copies and home again; a dump that leaves it running keeps them too', async () => {
  const ref = await referenceQ()
  const { s, trigger } = await startQ('sigqueue-chain')
  // a checkpoint first: the original runs on with its signals as they were, and so does the copy
  const img = lab.path('sigqueue-leave.img')
  await dump(s.pid, img, { leaveRunning: true })
  await chain(lab, s, { progress: () => 1, marks: [1, 1, 1], relay: true })
  writeFileSync(trigger, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, ref)
  // (the trigger exists already: the copy reports at once)
  const r = lab.track(await restore(img, { keepPid: false, stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = 'ready\n'
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  await waitFor(() => out.split('\n').length === ref.split('\n').length, 5000, 'the copy\'s report')
  assert.equal(out, ref)
})

test('threads: moved out through the deputy and home again while they work; the hollow original has no threads', async () => {
  const args = ['6', '80', '40000', '6']
  const ref = undisturbed('chain', args)
  const { s, out, fifo } = startM('chain', args)
  fifo.write(chunks[0])
  let copies = 0
  await chain(lab, s, {
    progress: () => fileLines(out),
    marks: [8, 25, 45],
    onCopy: pid => {
      copies++
      assert.equal(threadsOf(pid), 11, 'the copy runs all threads')
      assert.equal(threadsOf(s.pid), 1, 'the hollow original has its main thread only')
      fifo.write(chunks[copies])
    }
  })
  assert.equal(copies, 2)
  assert.equal(threadsOf(s.pid), 11, 'the threads came home')
  fifo.write(chunks[3])
  fifo.close()
  assert.deepEqual(await s.exited, { code: 6, signal: null })
  const u = await ref
  assert.equal(readFileSync(out, 'utf8'), u.out)
})

test('thread-heavy: 20 threads (16 workers) moved out and home while they work', async () => {
  const bin = mbin ??= lab.compile('mthreads')
  const args = ['16', '60', '30000', '0']
  const refOut = lab.path('heavy-ref.out')
  const u = lab.start(bin, args, ['ignore', lab.open(refOut, 'w'), 'pipe'])
  const out = lab.path('heavy.out')
  const s = lab.start(bin, args, ['ignore', lab.open(out, 'w'), 'pipe'])
  const t = await chain(lab, s, { progress: () => fileLines(out), marks: [6, 20, 36], onCopy: pid => assert.equal(threadsOf(pid), 20) })
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.deepEqual(await u.exited, { code: 0, signal: null })
  assert.equal(readFileSync(out, 'utf8'), readFileSync(refOut, 'utf8'))
  assert.match(readFileSync(out, 'utf8'), /^w15 acc=/m)
  assert.equal(t.freezeMs.length, 3)
})

test('threads: dumps that leave the process running put every thread back, blocked calls resumed', async () => {
  const args = ['4', '50', '40000', '2']
  const ref = undisturbed('live', args)
  const { s, out, fifo } = startM('live', args)
  fifo.write(chunks[0])
  for (const [k, mark] of [[1, 10], [2, 25]]) {
    await waitFor(() => fileLines(out) >= mark, 20000, `round ${mark}`)
    const d = await dump(s.pid, lab.path(`live${k}.img`), { leaveRunning: true })
    assert.ok(d.freezeMs > 0)
    assert.equal(status(s.pid, 'TracerPid'), '0')
    assert.equal((await info(lab.path(`live${k}.img`))).fields.threads, '9')
    fifo.write(chunks[k])
  }
  fifo.write(chunks[3])
  fifo.close()
  assert.deepEqual(await s.exited, { code: 2, signal: null })
  assert.equal(readFileSync(out, 'utf8'), (await ref).out)
})

test('GNU sort --parallel=2 on a large file, moved while its threads sort: output identical', async () => {
  const input = lab.path('sort.in')
  await makeInput(input, 40 << 20)
  const refOut = lab.path('sort-ref.out')
  const r = spawnSync('sort', ['--parallel=2', '-S', '1G', '-o', refOut, input])
  assert.equal(r.status, 0)
  const out = lab.path('sort.out')
  const s = lab.start('sort', ['--parallel=2', '-S', '1G', '-o', out, input])
  // the first move as soon as its second thread runs, the others right after
  let most = 0
  await chain(lab, s, {
    progress: () => { const n = threadsOf(s.pid); most = Math.max(most, n); return n >= 2 ? 1 : 0 },
    marks: [1, 0, 0],
    timeoutMs: 60000
  })
  assert.equal(most, 2)
  assert.equal((await info(lab.path(`a-${s.pid}.img`))).fields.threads, '2', 'moved with its threads')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.ok(readFileSync(out).equals(readFileSync(refOut)), 'sorted output identical')
})

test('python3 with threading (workers on queues, an event, sleeps) moved three times', async () => {
  const script = lab.path('thr.py')
  writeFileSync(script, `import threading, queue, hashlib, time, sys
tasks, done = queue.Queue(), queue.Queue()
def worker(n):
    while True:
        t = tasks.get()
        if t is None: return
        h = hashlib.sha256(b'%d' % t[1])
        for j in range(4000): h.update(b'%d-%d' % (t[0], j))
        done.put((t[1], h.hexdigest()[:12]))
ev, ticks = threading.Event(), [0]
def sleeper():
    while not ev.wait(0.02): ticks[0] += 1
ws = [threading.Thread(target=worker, args=(n,), name='worker%d' % n) for n in range(4)]
sl = threading.Thread(target=sleeper)
for t in ws + [sl]: t.start()
for r in range(40):
    for k in range(4): tasks.put((r, k))
    got = sorted(done.get() for k in range(4))
    print(r, ' '.join(g[1] for g in got), flush=True)
    time.sleep(0.05)
for t in ws: tasks.put(None)
for t in ws: t.join()
ev.set(); sl.join()
print('threads', threading.active_count(), 'ticks', ticks[0] > 0, flush=True)
sys.exit(3)
`)
  const ref = spawnSync('/usr/bin/python3', [script], { encoding: 'utf8' })
  assert.equal(ref.status, 3)
  // a round's line does not depend on which worker took which task
  const s = lab.start('/usr/bin/python3', [script], ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [4, 14, 26], relay: true, onCopy: pid => assert.equal(threadsOf(pid), 6) })
  assert.deepEqual(await s.exited, { code: 3, signal: null })
  assert.equal(s.out, ref.stdout)
})

test('thread churn: threads being made (by new threads) and ending are frozen consistently, dump after dump', async () => {
  const bin = lab.compile('tchurn')
  const args = ['2500', '4', '4']
  const refOut = lab.path('churn-ref.out')
  const u = lab.start(bin, args, ['ignore', lab.open(refOut, 'w'), 'pipe'])
  const out = lab.path('churn.out')
  const s = lab.start(bin, args, ['ignore', lab.open(out, 'w'), 'pipe'])
  let caught = 0
  // six dumps at least, and more (up to 30, a few rounds apart) until one has caught threads at work
  for (let k = 0; k < 30 && (k < 6 || caught <= 1); k++) {
    await waitFor(() => fileLines(out) >= 100 + 50 * k, 30000, `round ${100 + 50 * k}`)
    await dump(s.pid, lab.path('churn.img'), { leaveRunning: true })
    caught = Math.max(caught, Number((await info(lab.path('churn.img'))).fields.threads))
  }
  const t = await chain(lab, s, { progress: () => fileLines(out), marks: [1700, 1800, 1900], timeoutMs: 60000 })
  assert.equal(t.restoreMs.length, 3)
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.deepEqual(await u.exited, { code: 4, signal: null })
  assert.ok(caught > 1, 'some dump caught threads at work')
  assert.equal(readFileSync(out, 'utf8'), readFileSync(refOut, 'utf8'))
})

test('a non-root multi-threaded process: every thread keeps its credentials in the copies and at home', async () => {
  const bin = mbin ??= lab.compile('mthreads')
  // a process coming home opens its files with its own credentials: let nobody reach them
  chmodSync(lab.dir, 0o755)
  const args = ['4', '60', '40000', '3']
  const ref = spawnSync(bin, args, { encoding: 'utf8' })
  assert.equal(ref.status, 3)
  const s = lab.start('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', bin, ...args], ['ignore', 'pipe', 'pipe'], '/')
  await waitFor(() => lines(s.out) >= 1, 5000, 'output')
  /** the distinct uid/gid/groups lines of all threads of pid */
  const ids = (pid: number): string[] => [...new Set(readdirSync(`/proc/${pid}/task`).map(t => {
    const st = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')
    return ['Uid', 'Gid', 'Groups'].map(k => new RegExp(`^${k}:(.*)$`, 'm').exec(st)?.[1].trim()).join('|')
  }))]
  const want = ids(s.pid)
  assert.deepEqual(want, ['65534\t65534\t65534\t65534|65534\t65534\t65534\t65534|'])
  const copies: string[][] = []
  let lastCopy: number[] = []
  await chain(lab, s, {
    progress: () => lines(s.out),
    marks: [5, 15, 30],
    relay: true,
    onCopy: pid => { copies.push(ids(pid)); lastCopy = tasks(pid).tids.filter(t => t !== pid) }
  })
  assert.deepEqual(copies, [want, want], 'every thread of the fresh copies runs with them')
  assert.deepEqual(ids(s.pid), want, 'home again, every thread with its own credentials')
  // without CAP_SYS_ADMIN the process cannot choose tids (clone3 set_tid): the helper sets
  // ns_last_pid for it; a tid taken by someone else meanwhile would be a new one
  const home = tasks(s.pid).tids.filter(t => t !== s.pid)
  assert.equal(home.length, 7)
  assert.ok(home.some(t => lastCopy.includes(t)), `tids of the last copy kept at home (${lastCopy.join(',')} -> ${home.join(',')})`)
  assert.deepEqual(await s.exited, { code: 3, signal: null })
  assert.equal(s.out, ref.stdout)
})

test('a process whose main thread has exited while another runs on cannot move: leader-exited, not zombie', async () => {
  const s = lab.start(lab.compile('threads'), ['2', 'leader'])
  await waitFor(() => s.err.includes('ready') && status(s.pid, 'State').startsWith('Z'), 5000, 'main thread gone')
  const reasons = await check(s.pid)
  assert.deepEqual(reasons.map(r => r.code), ['leader-exited'])
  await assert.rejects(dump(s.pid, lab.path('leader.img')), (e: unknown) => e instanceof PpmError && e.code === 'EPERM')
  assert.equal(status(s.pid, 'TracerPid'), '0')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, 'threads done\n')
})
