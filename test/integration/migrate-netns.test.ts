// Process migration between real daemons in network namespaces: a process started at home moves
// home -> 2 -> 3 -> home -> 2 while it works and finishes exactly as an uninterrupted run would;
// signals from home reach it; block, expel and bring; a killed remote node and a killed home node.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync, readlinkSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { Lab, labNames } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until, ROOT } from '../helpers/daemon.js'
import { fifoSink as sharedSink } from '../helpers/fifo.js'
import { LOST_STATUS } from '../../src/migrate/migrator.js'
import { Conn } from '../../src/migrate/wire.js'
import { Keyring } from '../../src/gossip/keyring.js'
import { moveTo as moveJob } from '../helpers/jobs.js'

let lab: Lab
let bins: Bins
let speaker: string
let counter: string
let launcher: string
let pollcat: string
let sigrecv: string
let sigsend: string

before(async () => {
  bins = new Bins()
  speaker = bins.compile('speaker')
  counter = bins.compile('counter')
  launcher = bins.compile('launch')
  pollcat = bins.compile('pollcat')
  sigrecv = bins.compile('sigrecv')
  sigsend = bins.compile('sigsend')
  lab = await Lab.create({ nodes: 4, tag: 'migr', interval: 0.25, hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '2', '--no-balance', '--guest-lease', '2', ...(id === 4 ? ['--test-fault', 'restore'] : [])], env: { DEBUG: 'hpcfs:migrate,hpcfs:wire,hpcfs:ppm' } })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

/**
 * A FIFO the test reads everything from: `fd` (opened read-write, so writers never block and it
 * never reads EOF) is what a job gets as stdout/stderr; `out()` is what was written so far. Read
 * through a libuv pipe, not an fs stream: a blocking FIFO read would hold a thread-pool thread.
 */
const fifoSink = (name: string): ReturnType<typeof sharedSink> => sharedSink(bins.dir, name)

interface Job { child: ChildProcess, pid: number, out: () => string, exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>, close: () => void }

/** Starts a program on node `home` (inside its namespace); stdout goes to a FIFO the test reads. */
function startJob (cmd: string, args: string[], opts: { home?: number, stdoutFile?: string } = {}): Job {
  const ns = lab.node(opts.home ?? 1).ns as string
  const sink = opts.stdoutFile ? null : fifoSink(`out-${Math.random().toString(36).slice(2)}`)
  const fd = sink ? sink.fd : openSync(opts.stdoutFile as string, 'w')
  const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', launcher, cmd, ...args], { stdio: ['ignore', fd, fd] })
  if (!sink) closeSync(fd)
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, pid: child.pid as number, out: () => sink?.out() ?? '', exited, close: () => { sink?.close(); if (child.exitCode === null) child.kill('SIGKILL') } }
}

const where = async (pid: number, home = 1): Promise<string> => (await lab.node(home).read(`proc/${pid}/where`)).trim()

/** Writes goto at `home` and waits until the move is done (test/helpers/jobs.ts). */
const moveTo = async (pid: number, target: number | 'home', home = 1): Promise<void> => { await moveJob(lab, pid, target, home) }

function reference (cmd: string, args: string[]): string {
  return spawnSync(cmd, args, { encoding: 'utf8' }).stdout
}

test('a job moved home -> 2 -> 3 -> home -> 2 while printing finishes as an uninterrupted run', async () => {
  const args = ['120', '25000', '5']
  const job = startJob(speaker, args)
  try {
    await until('first output', () => job.out().length > 0)
    for (const target of [2, 3, 'home', 2] as const) {
      await moveTo(job.pid, target)
      const seen = job.out().length
      await until('output flows after the move', () => job.out().length > seen, 10_000)
    }
    assert.equal((await lab.node(1).read(`proc/${job.pid}/nmigs`)).trim(), '4')
    const st = await job.exited
    assert.deepEqual(st, { code: 5, signal: null })
    await until('all output', () => job.out() === reference(speaker, args), 5000)
  } finally { job.close() }
})

test('a move that fails half-way (the target breaks while restoring) leaves exactly one copy: the original', async () => {
  const args = ['150', '20000', '6']
  const job = startJob(speaker, args)
  try {
    await until('output', () => job.out().length > 0)
    // node 4 breaks its restores early in the image, then once all of it has come, in turn
    for (const when of ['early', 'at the end']) {
      await lab.node(1).write(`proc/${job.pid}/goto`, '4\n')
      const err = await until('the failure is reported', async () => {
        const e = (await lab.node(1).read(`proc/${job.pid}/error`)).trim()
        return e && (await where(job.pid)) !== 'migrating' ? e : undefined
      }, 20_000, 50)
      assert.match(err, /could not run it.*runs at home again/, when)
      assert.equal(await where(job.pid), '0', when)
      assert.equal((await lab.node(4).exec('ls', [join(lab.node(4).mount, 'remote')])).stdout.trim(), '', `no copy on node 4 (${when})`)
      const seen = job.out().length
      await until('output flows at home', () => job.out().length > seen, 10_000)
    }
    await moveTo(job.pid, 2) // and it can still move
    assert.deepEqual(await job.exited, { code: 6, signal: null })
    await until('all output, once', () => job.out() === reference(speaker, args), 5000)
  } finally { job.close() }
})

test('N -> M: the image goes straight from N to M; a refusing or failing M leaves the job running on N', async () => {
  const file = join(bins.dir, 'hop.out')
  const args = ['250', String(48 * 1024), '8', '20000'] // 48 MiB of data
  const job = startJob(counter, args, { stdoutFile: file })
  // bytes the bridge sends into home's namespace (its veth's host end transmits them)
  const intoHome = (): number => Number(readFileSync(`/sys/class/net/${labNames('migr').veth(1)}/statistics/tx_bytes`, 'utf8'))
  const failure = async (): Promise<string> => await until('the failure is reported', async () => {
    const e = (await lab.node(1).read(`proc/${job.pid}/error`)).trim()
    return e && (await where(job.pid)) !== 'migrating' ? e : undefined
  }, 20_000, 50)
  const runsOn = async (): Promise<void> => {
    const seen = readFileSync(file, 'utf8').length
    await until('output flows', () => readFileSync(file, 'utf8').length > seen, 10_000)
  }
  try {
    await until('started', () => readFileSync(file, 'utf8').length > 0)
    await moveTo(job.pid, 2)
    await lab.node(3).write('admin/block', '1\n')
    await lab.node(1).write(`proc/${job.pid}/goto`, '3\n')
    assert.match(await failure(), /refused.*blocked/)
    assert.equal(await where(job.pid), '2', 'a refusal leaves it where it was')
    await runsOn()
    await lab.node(3).write('admin/block', '0\n')
    // node 4 breaks its restores early (node 2's dump fails, the process was never stopped for
    // good), then at the end (node 2 has sent all and runs it again from its copy), in turn
    for (const when of ['early', 'at the end']) {
      await lab.node(1).write(`proc/${job.pid}/goto`, '4\n')
      assert.match(await failure(), /node 4 could not run it.*runs on node 2 again/, when)
      assert.equal(await where(job.pid), '2', when)
      assert.equal((await lab.node(4).exec('ls', [join(lab.node(4).mount, 'remote')])).stdout.trim(), '', `no copy on node 4 (${when})`)
      assert.equal((await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.trim().split('\n').length, 1, `one copy on node 2 (${when})`)
      await runsOn()
    }
    const before = intoHome()
    await moveTo(job.pid, 3)
    const through = intoHome() - before
    assert.ok(through < 8 << 20, `home received ${through} bytes while 48 MiB moved from node 2 to node 3`)
    assert.equal((await lab.node(1).read(`proc/${job.pid}/nmigs`)).trim(), '2', 'failed moves do not count')
    assert.deepEqual(await job.exited, { code: 8, signal: null })
    assert.equal(readFileSync(file, 'utf8'), reference(counter, args))
  } finally { job.close() }
})

test('output to sockets (a node parent with stdio pipes) is relayed too', async () => {
  const args = ['80', '20000', '4']
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, speaker, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', d => { out += d.toString() })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  try {
    await until('output', () => out.length > 0)
    await moveTo(child.pid as number, 2)
    await moveTo(child.pid as number, 'home')
    await moveTo(child.pid as number, 3)
    assert.equal(await exited, 4)
    await until('all output', () => out === reference(speaker, args), 5000)
  } finally { if (child.exitCode === null) child.kill('SIGKILL') }
})

test('a guest keeps its home credentials and pid (in its own pid namespace), runs in its own session, and other local users cannot touch it', async () => {
  spawnSync('chmod', ['755', bins.dir])
  const nobody = 65534
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', 'setpriv', `--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', launcher, speaker, '100000', '20000', '0'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' })
  let out = ''
  child.stdout?.on('data', d => { out += d.toString() })
  try {
    await until('output', () => out.length > 0)
    await moveTo(child.pid as number, 2)
    const guest = Number((await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.trim())
    const status = readFileSync(`/proc/${guest}/status`, 'utf8')
    assert.match(status, new RegExp(`^Uid:\\s+${0x40000000 + nobody}\\s+${nobody}\\s+${0x40000000 + nobody}`, 'm'), 'its uid, as effective uid (a guest id as real and saved uid: native/ppm.h GUEST_ID_BASE)')
    // a pid namespace of its own, where it has its home pid (native/restore.c guest_pidns)
    assert.match(status, new RegExp(`^NSpid:\\s+${guest}\\s+${child.pid as number}$`, 'm'), 'NSpid: its pid here, then its home pid in its own namespace')
    const stat = (pid: number): string[] => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    const hpcd2 = lab.node(2).pid as number
    assert.notEqual(stat(guest)[3], stat(hpcd2)[3], 'the guest has a session of its own')
    const other = spawnSync('setpriv', ['--reuid=65533', '--regid=65533', '--clear-groups', 'kill', '-TERM', String(guest)], { encoding: 'utf8' })
    assert.notEqual(other.status, 0)
    assert.match(other.stderr, /not permitted/)
    // not even a local process of the job's own uid
    const same = spawnSync('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', 'kill', '-TERM', String(guest)], { encoding: 'utf8' })
    assert.notEqual(same.status, 0)
    assert.match(same.stderr, /not permitted/)
    const seen = out.length
    await until('still running', () => out.length > seen)
    process.kill(child.pid as number, 'SIGTERM')
  } finally { if (child.exitCode === null) child.kill('SIGKILL') }
})

test('a CPU-and-memory job writing to a file gives the same file and status after moving', async () => {
  const file = join(bins.dir, 'counter.out')
  const args = ['40', '2048', '3', '50000']
  const job = startJob(counter, args, { stdoutFile: file })
  try {
    await until('started', () => readFileSync(file, 'utf8').length > 0)
    await moveTo(job.pid, 3)
    const guests = (await lab.node(3).exec('ls', [join(lab.node(3).mount, 'remote')])).stdout.trim().split('\n').filter(Boolean)
    assert.equal(guests.length, 1)
    assert.equal((await lab.node(3).read(`remote/${guests[0]}/from`)).trim(), '1')
    await moveTo(job.pid, 'home')
    await moveTo(job.pid, 2)
    assert.deepEqual(await job.exited, { code: 3, signal: null })
    assert.equal(readFileSync(file, 'utf8'), reference(counter, args))
  } finally { job.close() }
})

test('a signal queued at home with a value (sigqueue) reaches the remote with its value and code', async () => {
  const job = startJob(sigrecv, ['2'])
  try {
    await until('ready', () => job.out() === 'ready\n')
    await moveTo(job.pid, 2)
    const q = spawnSync(sigsend, [String(job.pid), '36', '-4242'])
    assert.equal(q.status, 0, String(q.stderr))
    await until('the queued signal taken on node 2', () => job.out().split('\n').length === 3)
    // its sender's pid: the kernel says 0 to a guest in its own pid namespace for any sender outside it (N's keeper)
    assert.match(job.out(), new RegExp(`^ready\nsig 36 code -1 value -4242 pid (0|${q.pid as number})\n$`))
    process.kill(job.pid, 'SIGUSR1') // kill's siginfo cannot be queued by another process: a plain signal there
    assert.deepEqual(await job.exited, { code: 0, signal: null })
    assert.match(job.out().split('\n')[2], /^sig 10 code 0 value 0 pid \d+$/)
  } finally { job.close() }
})

test('signals sent at home reach the remote; the parent sees the death', async () => {
  const job = startJob(speaker, ['100000', '20000', '0'])
  try {
    await until('output', () => job.out().length > 0)
    await moveTo(job.pid, 2)
    process.kill(job.pid, 'SIGTERM')
    assert.deepEqual(await job.exited, { code: null, signal: 'SIGTERM' })
    await until('guest gone from node 2', async () => (await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.trim() === '')
  } finally { job.close() }
  const job2 = startJob(speaker, ['100000', '20000', '0'])
  try {
    await until('output', () => job2.out().length > 0)
    await moveTo(job2.pid, 3)
    const guest = Number((await lab.node(3).exec('ls', [join(lab.node(3).mount, 'remote')])).stdout.trim())
    assert.ok(guest > 0)
    process.kill(job2.pid, 'SIGKILL')
    assert.equal((await job2.exited).signal, 'SIGKILL')
    await until('remote killed too', () => { try { process.kill(guest, 0); return false } catch { return true } })
  } finally { job2.close() }
})

test('block refuses guests; expel sends them home; bring brings them home', async () => {
  const job = startJob(speaker, ['100000', '20000', '0'])
  try {
    await until('output', () => job.out().length > 0)
    await lab.node(3).write('admin/block', '1\n')
    await lab.node(1).write(`proc/${job.pid}/goto`, '3\n')
    await until('refusal', async () => /refused.*blocked/.test(await lab.node(1).read(`proc/${job.pid}/error`)))
    assert.equal(await where(job.pid), '0')
    await lab.node(3).write('admin/block', '0\n')
    await moveTo(job.pid, 2)
    await lab.node(2).write('admin/expel', '1\n')
    await until('expelled home', async () => (await where(job.pid)) === '0')
    assert.equal((await lab.node(2).read('admin/block')).trim(), '1')
    await lab.node(2).write('admin/block', '0\n')
    await moveTo(job.pid, 3)
    await lab.node(1).write('admin/bring', '1\n')
    await until('brought home', async () => (await where(job.pid)) === '0')
    await lab.node(1).write('admin/lstay', '0\n')
    const seen = job.out().length
    await until('still running at home', () => job.out().length > seen)
    process.kill(job.pid, 'SIGINT')
    assert.equal((await job.exited).signal, 'SIGINT')
  } finally { job.close() }
})

test('a remote node that dies: the deputy reports the loss and exits with the documented status', async () => {
  const job = startJob(speaker, ['100000', '20000', '0'])
  let guest = 0
  try {
    await until('output', () => job.out().length > 0)
    await moveTo(job.pid, 2)
    guest = Number((await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.trim())
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
    try { process.kill(guest, 'SIGKILL') } catch {} // the node is "dead": so is everything on it
    assert.deepEqual(await job.exited, { code: LOST_STATUS, signal: null })
  } finally {
    job.close()
    // back, and heard by every node again before the next test moves anything to it (node 3 does)
    if (!lab.node(2).running) { await lab.node(2).start(); await lab.waitAllUp() }
  }
})

test('a home node that dies: its guests are stopped and cleaned up', async () => {
  const job = startJob(speaker, ['100000', '20000', '0'], { home: 3 })
  try {
    await until('output', () => job.out().length > 0)
    await moveTo(job.pid, 2, 3)
    const guest = Number((await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.trim())
    assert.ok(guest > 0)
    lab.node(3).kill('SIGKILL')
    await until('guest killed on node 2', () => { try { process.kill(guest, 0); return false } catch { return true } })
    await until('remote/ empty on node 2', async () => (await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.trim() === '')
  } finally {
    job.close()
    // back, and heard by every node again before the next test moves anything to it (the tools' test does)
    if (!lab.node(3).running) { await lab.node(3).start(); await lab.waitAllUp() }
  }
})


test('the tools: mosrun -N starts a job remotely, mps shows where, migrate moves it, mosctl expel waits', async () => {
  const sink = fifoSink('tools-out')
  const keep = sink.fd
  const out = sink.out
  const tool = (name: string): string => join(ROOT, 'src/cli', `${name}.js`)
  const env = (n: number): NodeJS.ProcessEnv => ({ ...process.env, HPC_ROOT: lab.node(n).mount })
  const args = ['300', '20000', '9']
  const mosrun = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, process.execPath, tool('mosrun'), '-N', '2', speaker, ...args],
    { stdio: ['ignore', keep, keep], env: env(1) })
  const ended = new Promise<number | null>(resolve => mosrun.on('exit', code => resolve(code)))
  const run = (name: string, a: string[], n = 1): { code: number | null, stdout: string, stderr: string } => {
    const r = spawnSync(process.execPath, [tool(name), ...a], { env: env(n), encoding: 'utf8', timeout: 30_000 })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr }
  }
  try {
    const pid = await until('mps shows the job on node 2', () => {
      const line = run('mps', []).stdout.split('\n').find(l => l.includes('speaker'))
      const f = line?.trim().split(/\s+/)
      return f && f[2] === '2' ? Number(f[0]) : undefined
    }, 20_000)
    const home = run('migrate', [String(pid), 'home', '--wait', '20'])
    assert.equal(home.code, 0, home.stderr)
    assert.equal(await where(pid), '0')
    const to3 = run('migrate', [String(pid), '3', '--wait', '20'])
    assert.equal(to3.code, 0, to3.stderr)
    const ex = run('mosctl', ['expel'], 3)
    assert.equal(ex.code, 0, ex.stderr)
    assert.equal((await lab.node(3).exec('ls', [join(lab.node(3).mount, 'remote')])).stdout.trim(), '', 'expel returned before the guests left')
    assert.equal(await where(pid), '0')
    await lab.node(3).write('admin/block', '0\n')
    assert.equal(await ended, 9)
    await until('all output', () => out() === reference(speaker, args), 5000)
  } finally {
    if (mosrun.exitCode === null) mosrun.kill('SIGKILL')
    sink.close()
  }
})

for (const kind of ['an unnamed pipe (relayed by the deputy)', 'a named FIFO (reopened by path on each node)', 'an unnamed pipe, read by an event loop (poll)']) {
  test(`stdin from ${kind} keeps flowing to the job wherever it runs, in order`, async () => {
    const named = kind.startsWith('a named') // ('unnamed' includes 'named')
    const loop = kind.includes('poll')
    const fin = join(bins.dir, 'stdin-in')
    spawnSync('mkfifo', [fin])
    const sink = fifoSink('stdin-out')
    const keep = sink.fd
    const out = sink.out
    // named: sh opens the FIFO and becomes cat; unnamed: cat reads the test's pipe (a socket pair)
    // loop: pollcat waits with poll(2) and takes what is there with one read per wakeup
    const cmd = named ? ['/bin/sh', '-c', 'exec cat < "$0"', fin] : loop ? [pollcat, 'poll'] : ['/bin/cat']
    const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, ...cmd], { stdio: [named ? 'ignore' : 'pipe', keep, keep] })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    const w = named ? openSync(fin, 'w') : -1
    const sent: string[] = []
    const feed = async (tag: string): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        const l = `${tag}${i}\n`
        sent.push(l)
        if (named) writeSync(w, l); else child.stdin?.write(l)
      }
      await until(`echo of ${tag}`, () => out() === sent.join(''), 10_000, 20)
    }
    try {
      await feed('home')
      await moveTo(child.pid as number, 2)
      await feed('two')
      await moveTo(child.pid as number, 3)
      await feed('three')
      await moveTo(child.pid as number, 'home')
      await feed('back')
      await moveTo(child.pid as number, 2)
      await feed('again')
      // 256 KiB at once, on node 2: it flows in chunks as large as the reader takes (a byte per
      // round trip would take minutes)
      const bulk = Array.from({ length: 4096 }, (_, i) => `${String(i).padStart(63, '.')}\n`).join('')
      sent.push(bulk)
      // (into the FIFO from another process: a blocking write here would stop this test's own
      // reading of the echo, and both would wait for each other)
      if (named) spawn('sh', ['-c', 'cat >> "$0"', fin], { stdio: ['pipe', 'ignore', 'ignore'] }).stdin?.end(bulk); else child.stdin?.write(bulk)
      await until('echo of the bulk', () => out().length === sent.join('').length, 20_000, 50)
      if (named) closeSync(w); else child.stdin?.end()
      assert.equal(await exited, 0)
      assert.equal(out(), sent.join(''))
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
      if (named) { try { closeSync(w) } catch {} }
      sink.close(); rmSync(fin, { force: true })
    }
  })
}

test('who may kill a process may migrate it: the tree enforces it by owner and mode', async () => {
  for (const d of [bins.dir, lab.tmp, join(lab.tmp, 'mnt')]) spawnSync('chmod', ['755', d])
  const mnt = lab.node(1).mount
  const as = (uid: number, cmd: string): { code: number | null, stderr: string, stdout: string } => {
    const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', cmd], { encoding: 'utf8' })
    return { code: r.status, stderr: r.stderr, stdout: r.stdout }
  }
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', launcher, speaker, '100000', '20000', '0'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' })
  let out = ''
  child.stdout?.on('data', d => { out += d.toString() })
  const pid = child.pid as number
  try {
    await until('output', () => out.length > 0)
    assert.match(as(65534, `cat ${mnt}/nodes/1/load`).stdout, /^\d+\n$/, 'every user may read the tree')
    assert.match(as(65534, `echo 1 > ${mnt}/admin/block`).stderr, /Permission denied/, 'only root changes the node')
    assert.match(as(65533, `echo 2 > ${mnt}/proc/${pid}/goto`).stderr, /Permission denied/, 'another user may not move it')
    assert.equal(await where(pid), '0')
    const own = as(65534, `echo 2 > ${mnt}/proc/${pid}/goto`)
    assert.equal(own.code, 0, own.stderr)
    await until('moved by its owner', async () => (await where(pid)) === '2')
    assert.equal(as(65534, `echo home > ${mnt}/proc/${pid}/goto`).code, 0)
    await until('home again', async () => (await where(pid)) === '0')
  } finally { if (child.exitCode === null) child.kill('SIGKILL') }
})

test('the transfer port: a wrong key is refused; a node refuses what does not fit its memory; stay keeps processes home', async () => {
  const node2 = lab.node(2)
  const port = 4660
  const key = new Keyring(readFileSync(lab.node(1).keyFile))
  const wrong = new Keyring(Buffer.from('definitely not the cluster key!!'))
  await assert.rejects(Conn.client(node2.addr, port, wrong), /cluster key|closed|handshake/)
  const c = await Conn.client(node2.addr, port, key)
  try {
    await c.send({ t: 'migrate', home: 1, pid: 1, name: 'huge', bytes: 2 ** 50 })
    const m = await c.expect('accept', 'refuse')
    assert.equal(m.t, 'refuse')
    assert.match(String(m.reason), /not enough memory/)
  } finally { c.close() }
  const job = startJob(speaker, ['100000', '20000', '0'])
  try {
    await until('output', () => job.out().length > 0)
    await lab.node(1).write('admin/stay', '1\n')
    await assert.rejects(lab.node(1).write(`proc/${job.pid}/goto`, '2\n'), /not permitted/)
    assert.equal(await where(job.pid), '0')
    await lab.node(1).write('admin/stay', '0\n')
    await moveTo(job.pid, 2)
    process.kill(job.pid, 'SIGTERM')
    assert.equal((await job.exited).signal, 'SIGTERM')
  } finally {
    job.close()
    await lab.node(1).write('admin/stay', '0\n')
  }
})

test('stdin queued while the job is not reading is not lost when it moves (pulled on demand)', async () => {
  const fin = join(bins.dir, 'late-in')
  const pidFile = join(bins.dir, 'late-pid')
  spawnSync('mkfifo', [fin])
  const sink = fifoSink('late-out')
  const keep = sink.fd
  const out = sink.out
  // python's stdin is an unnamed pipe fed by cat from the FIFO; it sleeps before it reads anything
  const py = 'import sys,time; time.sleep(4); d=sys.stdin.read(); print(len(d)); print(d, end="")'
  const sh = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, '/bin/sh', '-c',
    `cat "$0" | python3 -c '${py}' & echo $! > "$1"; wait`, fin, pidFile], { stdio: ['ignore', keep, keep] })
  const w = openSync(fin, 'w')
  try {
    const pid = await until('python started', () => { try { return Number(readFileSync(pidFile, 'utf8')) || undefined } catch { return undefined } })
    // (a version manager's python3 may be a shell shim that execs the real one)
    await until('python running', () => /python/.test(readlinkSync(`/proc/${pid}/exe`)))
    await moveTo(pid, 2)
    writeSync(w, 'while asleep on node 2\n')
    await moveTo(pid, 3)
    writeSync(w, 'while asleep on node 3\n')
    await moveTo(pid, 'home')
    writeSync(w, 'at home\n')
    closeSync(w)
    const text = 'while asleep on node 2\nwhile asleep on node 3\nat home\n'
    await until('python printed everything', () => out() === `${text.length}\n${text}`, 20_000)
  } finally {
    try { closeSync(w) } catch {}
    if (sh.exitCode === null) sh.kill('SIGKILL')
    sink.close(); rmSync(fin, { force: true })
  }
})
