// Real programs moved home -> 2 -> 3 -> home while they work, between three daemons in network
// namespaces (moves through the tree: `proc/<pid>/goto` written at home, `proc/<pid>/where`
// polled), each finishing with the output and exit status of an undisturbed run: GNU sort with its
// default threads on a large file, xz -T2 and -T1, python worker threads, numpy on two OpenBLAS
// threads, a Go program with goroutines on several threads (built here), and a Node.js script with
// timers, file I/O and a worker thread. Each is seen running its threads at home before it moves.
// Needs Debian's xz-utils, python3-numpy with libopenblas0-pthread, and golang-go (`npm test`
// installs them: scripts/setup --test); without them those tests skip, except under CI.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, createWriteStream, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins, makeInput, subjectsDir } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'

let lab: Lab
let bins: Bins
let launcher: string

/** Why a test cannot run here (a missing OS package), or false. Under CI nothing is skipped. */
function missing (what: string, ok: boolean): string | false {
  return !ok && !process.env.CI && `${what} is missing (scripts/setup --test installs it)`
}
const PY = '/usr/bin/python3'
const ARCH = process.arch === 'arm64' ? 'aarch64' : 'x86_64'
// with Debian's reference BLAS (no libopenblas0-pthread) numpy runs no threads of its own
const noNumpy = missing("Debian's python3-numpy with libopenblas0-pthread", spawnSync(PY, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0 &&
  existsSync(`/usr/lib/${ARCH}-linux-gnu/openblas-pthread`))
const GO = '/usr/bin/go'
const noGo = missing("Debian's golang-go", existsSync(GO))

/** the size of sort's input (the test moves sort's whole memory, about 1.3 times as much, three times) */
const SORT_MB = Number(process.env.HPCFS_TEST_SORT_MB ?? 200)

before(async () => {
  bins = new Bins()
  launcher = bins.compile('launch')
  lab = await Lab.create({ nodes: 3, tag: 'progs', interval: 0.25, hpcdArgs: id => ['--speed', String(10000 * id), '--no-balance'], env: { DEBUG: 'hpcfs:migrate,hpcfs:ppm' }, logDir: process.env.HPCFS_TEST_LOGDIR })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

interface Job { pid: number, out: string, err: string, exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }> }

/**
 * Starts a program on node 1 (inside its namespace, in the lab's temp dir), stdout and stderr to
 * files; with `home: false` it runs as the undisturbed reference, outside the lab, in a directory
 * of its own (relative paths in `args` name files of its own).
 */
function start (name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, home = true): Job {
  const out = bins.path(`${name}.out`)
  const err = bins.path(`${name}.err`)
  const o = openSync(out, 'w')
  const e = openSync(err, 'w')
  const argv = home ? ['nsenter', `--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, cmd, ...args] : [launcher, cmd, ...args]
  const cwd = home ? bins.dir : bins.path('ref')
  mkdirSync(cwd, { recursive: true })
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', o, e], cwd, env: { ...process.env, ...env } })
  closeSync(o)
  closeSync(e)
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { pid: child.pid as number, out, err, exited }
}

const size = (p: string): number => { try { return statSync(p).size } catch { return 0 } }
const threads = (pid: number): number => { try { return readdirSync(`/proc/${pid}/task`).length } catch { return 0 } }
const where = async (pid: number): Promise<string> => (await lab.node(1).read(`proc/${pid}/where`)).trim()

async function moveTo (job: Job, target: number | 'home'): Promise<void> {
  await lab.node(1).write(`proc/${job.pid}/goto`, `${target}\n`)
  const want = target === 'home' ? '0' : String(target)
  const err = await until(`process ${job.pid} at ${want}`, async () => {
    const w = await where(job.pid)
    if (w === want) return 'ok'
    const e = (await lab.node(1).read(`proc/${job.pid}/error`)).trim()
    return e && w !== 'migrating' ? e : undefined
  }, 60_000, 50)
  // on failure: what the job said and what each daemon logged last
  if (err !== 'ok') assert.fail(`move of ${job.pid} to ${target} failed: ${err}\n${readFileSync(job.err, 'utf8')}${[1, 2, 3].map(k => `--- node ${k}:\n${lab.node(k).logTail(12)}`).join('\n')}`)
}

/** the pid of the one guest on node k (its copy of a job) */
async function guestOn (k: number): Promise<number> {
  const ls = (await lab.node(k).exec('ls', [join(lab.node(k).mount, 'remote')])).stdout.trim().split('\n').filter(Boolean)
  assert.equal(ls.length, 1, `one guest on node ${k}: ${ls.join(' ')}`)
  return Number(ls[0])
}

/**
 * Waits until the job runs `n` threads at home (and passes `ready`), then moves it home -> 2 ->
 * 3 -> home; on 2 and 3 its copy runs `copyThreads` threads (default n); with `progress`, after
 * each move waits until it progresses where it landed.
 */
async function tour (job: Job, n: number, progress?: () => number, ready: () => boolean = () => true, copyThreads = n): Promise<void> {
  const seen = await until(`${n} threads at work`, () => threads(job.pid) >= n && ready() ? threads(job.pid) : undefined, 60_000, 10)
  assert.ok(seen >= n)
  const cantmove = (await lab.node(1).read(`proc/${job.pid}/cantmove`)).trim()
  assert.equal(cantmove, '', `it can move, yet: ${cantmove}`)
  for (const target of [2, 3, 'home'] as const) {
    await moveTo(job, target)
    if (target !== 'home') {
      const copy = await guestOn(target)
      assert.ok(threads(copy) >= copyThreads, `the copy on node ${target} runs ${threads(copy)} threads, not ${copyThreads}`)
    }
    if (progress) {
      const p = progress()
      await until(`progress on ${target}`, () => progress() > p, 60_000, 20)
    }
  }
  assert.equal((await lab.node(1).read(`proc/${job.pid}/nmigs`)).trim(), '3')
}

/** Runs the program undisturbed and moved at once; both finish with `code` and the same output. */
async function compare (name: string, cmd: string, args: string[], code: number, moveIt: (job: Job) => Promise<void>, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const ref = start(`${name}-ref`, cmd, args, env, false)
  const job = start(name, cmd, args, env)
  await moveIt(job)
  assert.deepEqual(await job.exited, { code, signal: null }, readFileSync(job.err, 'utf8'))
  assert.deepEqual(await ref.exited, { code, signal: null }, readFileSync(ref.err, 'utf8'))
  assert.ok(size(ref.out) > 0)
  assert.ok(readFileSync(job.out).equals(readFileSync(ref.out)), `${name}: output identical to the undisturbed run`)
  assert.equal(readFileSync(job.err, 'utf8'), readFileSync(ref.err, 'utf8'))
}

/** deterministic lines of about 70 bytes, in no order: a floating-point key, then text */
async function sortInput (path: string, bytes: number): Promise<void> {
  const w = createWriteStream(path)
  const pad = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore'
  let x = 2463534242
  for (let n = 0; n < bytes;) {
    let chunk = ''
    for (let i = 0; i < 4000; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0
      chunk += `${(x / 3e5).toExponential(5)} ${pad.slice(x % 40, 60 + (x % 37))} ${x % 9973}\n`
    }
    n += chunk.length
    if (!w.write(chunk)) await once(w, 'drain')
  }
  w.end()
  await once(w, 'finish')
}

// General-numeric order (-g, strtold on every comparison) keeps sort's threads at work for a few
// seconds, longer than three moves of its memory take; a plain sort of the same file is done in two.
test('GNU sort -g with its default threads on a large file, moved while its threads sort', async () => {
  const input = bins.path('sort.in')
  await sortInput(input, SORT_MB << 20)
  await compare('sort', 'sort', ['-g', input], 0, async job => await tour(job, 2, undefined, undefined, 1))
  // the engine's dump at home (its figures in node 1's log: hpcfs:ppm) carried both threads
  const dumps = [...lab.node(1).log().matchAll(/STAT bytes=(\d+) .*\bthreads=(\d+)/g)].map(m => ({ bytes: Number(m[1]), threads: Number(m[2]) }))
  assert.equal(dumps.length, 1, 'one dump at home')
  assert.ok(dumps[0].bytes > SORT_MB << 20, `the image holds sort's data (${dumps[0].bytes} bytes)`)
  assert.equal(dumps[0].threads, 2, 'moved with its threads')
})

/** deterministic text for xz (compressible, not trivially) of `mb` MiB */
async function xzInput (mb: number): Promise<string> {
  const input = bins.path(`xz${mb}.in`)
  await makeInput(input, mb << 20)
  return input
}

test('xz -T2 (two compressing threads, blocks of 512 KiB) moved while it compresses', async () => {
  const input = await xzInput(32)
  const out = bins.path('xz2.out')
  await compare('xz2', 'xz', ['-T2', '-2', '--block-size=512KiB', '-c', input], 0, async job => await tour(job, 3, () => size(out)))
})

test('xz -T1 moved while it compresses', async () => {
  const input = await xzInput(12)
  const out = bins.path('xz1.out')
  await compare('xz1', 'xz', ['-T1', '-2', '-c', input], 0, async job => await tour(job, 1, () => size(out), () => size(out) > 0))
})

test('python worker threads on queues, moved while they work', async () => {
  const out = bins.path('py.out')
  await compare('py', PY, [join(subjectsDir, 'pyworkers.py'), '150'], 3, async job => await tour(job, 6, () => size(out)))
})

test('numpy matrix products on two OpenBLAS threads, moved while they multiply', { skip: noNumpy }, async () => {
  const out = bins.path('np.out')
  await compare('np', PY, [join(subjectsDir, 'npmatrix.py'), '120', '700'], 5, async job => await tour(job, 2, () => size(out), () => size(out) > 0), { OPENBLAS_NUM_THREADS: '2' })
})

test('a Go program (built here) with goroutines on several threads, moved while they work', { skip: noGo }, async () => {
  const dir = bins.path('go')
  mkdirSync(dir)
  const bin = join(dir, 'goroutines')
  const b = spawnSync(GO, ['build', '-o', bin, join(subjectsDir, 'goroutines.go')], {
    cwd: dir, encoding: 'utf8', env: { ...process.env, GOCACHE: join(dir, 'cache'), GOPATH: join(dir, 'path'), GO111MODULE: 'off', GOFLAGS: '' }
  })
  assert.equal(b.status, 0, `go build: ${b.stderr}`)
  const out = bins.path('go.out')
  await compare('go', bin, ['150'], 4, async job => await tour(job, 4, () => size(out), () => size(out) > 0))
})

test('a Node.js script with timers, file I/O and a worker thread, moved while it works', async () => {
  const out = bins.path('node.out')
  await compare('node', process.execPath, [join(subjectsDir, 'nodework.mjs'), '250', 'node.scratch'], 6, async job => await tour(job, 8, () => size(out), () => size(out) > 0))
})

// libuv's io_uring (opt-in in Node 20: UV_USE_IO_URING=1) is a kernel object the engine does not
// recreate: such a process stays home with the reason, and a move asked for leaves it working there.
test('Node.js with io_uring on cannot move: the reason is shown, a move is refused, it finishes at home', async () => {
  const out = bins.path('uring.out')
  const job = start('uring', process.execPath, [join(subjectsDir, 'nodework.mjs'), '200', 'uring.scratch'], { UV_USE_IO_URING: '1' })
  await until('first round', () => size(out) > 0, 30_000, 20)
  const rings = readdirSync(`/proc/${job.pid}/fd`).filter(fd => { try { return readlinkSync(`/proc/${job.pid}/fd/${fd}`) === 'anon_inode:[io_uring]' } catch { return false } })
  if (rings.length === 0) {
    // a kernel with io_uring off (kernel.io_uring_disabled): libuv falls back to its thread pool
    assert.deepEqual(await job.exited, { code: 6, signal: null })
    return
  }
  const cantmove = await until('the reason', async () => (await lab.node(1).read(`proc/${job.pid}/cantmove`)).trim() || undefined, 10_000)
  assert.match(cantmove, new RegExp(`fd ${rings[0]} is an unsupported descriptor \\(anon_inode:\\[io_uring\\]\\)`))
  // the kernel's io_uring workers in its thread group are named as such, not as odd threads
  assert.match(cantmove, /thread \d+ \(iou-(sqp|wrk)-\d+\) is a kernel io_uring worker/)
  assert.doesNotMatch(cantmove, /semaphore/)
  await lab.node(1).write(`proc/${job.pid}/goto`, '2\n')
  const err = await until('the refusal', async () => {
    const e = (await lab.node(1).read(`proc/${job.pid}/error`)).trim()
    return e && (await where(job.pid)) !== 'migrating' ? e : undefined
  }, 20_000, 50)
  assert.match(err, /cannot move: .*io_uring/)
  assert.equal(await where(job.pid), '0')
  const seen = size(out)
  await until('it works on at home', () => size(out) > seen, 10_000, 20)
  assert.deepEqual(await job.exited, { code: 6, signal: null })
  assert.match(readFileSync(out, 'utf8'), /^round 199 .*\ndone ticked true\n$/m)
})
