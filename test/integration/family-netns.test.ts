// Process families between real daemons in network namespaces (docs/family.md): a family started
// at home with one mosrun spreads over the nodes (a bash & loop, make -j4, xargs -P4) and ends as
// an undisturbed run would; a parent that forks away from home gets its children at home; a parent
// moved while its children run elsewhere is told of their end and reaps them; SIGINT to the process
// group ends every member wherever it runs. After each: nothing left on any node.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until, within, ROOT } from '../helpers/daemon.js'
import { fifoSink as sharedSink } from '../helpers/fifo.js'
import { moveTo as moveJob } from '../helpers/jobs.js'

let lab: Lab
let bins: Bins
let member: string
let forker: string
let launcher: string
const ROUNDS = '150'

before(async () => {
  bins = new Bins()
  member = bins.compile('member')
  forker = bins.compile('forker')
  launcher = bins.compile('launch')
  // node 1 slow, 2 and 3 fast: CPU-bound work started at node 1 is worth moving; only node 1
  // balances (its own processes), so that the tests see its decisions alone
  const speed: Record<number, number> = { 1: 5000, 2: 40000, 3: 40000 }
  lab = await Lab.create({ nodes: 3, tag: 'fam', interval: 0.25, hpcdArgs: id => ['--speed', String(speed[id]), '--down-after', '2', ...(id === 1 ? [] : ['--no-balance'])], env: { DEBUG: 'hpcfs:family,hpcfs:home,hpcfs:guest' } })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

/** A test that, when it fails, leaves the last lines of every daemon's log in the report. */
function ftest (name: string, fn: () => Promise<void>): void {
  test(name, async t => {
    try { await fn() } catch (e) {
      for (const node of lab.nodes) t.diagnostic(`node ${node.id}:\n${node.logTail(40)}`)
      throw e
    }
  })
}

const fifoSink = (name: string): ReturnType<typeof sharedSink> => sharedSink(bins.dir, name)

interface Family {
  /** mosrun's pid: the leader of the family's process group */
  pid: number
  child: ChildProcess
  out: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** every pid seen under discipline in the family, for the checks at the end */
  seen: Set<number>
  close: () => void
}

/** `mosrun OPTS... CMD...` at node 1 in a process group of its own, stdout and stderr to a FIFO. */
function mosrun (args: string[], stdin: 'pipe' | 'ignore' = 'ignore'): Family {
  const sink = fifoSink(`out-${Math.random().toString(36).slice(2)}`)
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, process.execPath, join(ROOT, 'src/cli/mosrun.js'), ...args],
    { stdio: [stdin, sink.fd, sink.fd], env: { ...process.env, HPC_ROOT: lab.node(1).mount, PATH: `${bins.dir}:${process.env.PATH ?? ''}` }, detached: true })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    pid: child.pid as number,
    child,
    out: sink.out,
    exited,
    seen: new Set(),
    close: () => { if (child.exitCode === null && child.signalCode === null) { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} } sink.close() }
  }
}

const n1 = (): ReturnType<Lab['node']> => lab.node(1)
const where = async (pid: number): Promise<string> => (await n1().read(`proc/${pid}/where`)).trim()
const comm = (pid: number): string => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '' } }
const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
const sorted = (s: string): string[] => s.split('\n').filter(Boolean).sort()
const ppidOf = (pid: number): number => { try { return Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) } catch { return 0 } }

/** The pids under discipline at node 1 that are `parent`'s children named `name` (not a leftover of an earlier test's family). */
async function childrenOf (f: Family, parent: number, name: string): Promise<number[]> {
  return (await listed(f, name)).filter(p => p !== parent && ppidOf(p) === parent)
}

/** The pids under discipline at node 1 (its proc/ listing) whose command is `name`. */
async function listed (f: Family, name: string): Promise<number[]> {
  const r = await lab.exec(1, 'ls', [join(n1().mount, 'proc')])
  const pids = r.stdout.split('\n').filter(Boolean).map(Number)
  for (const p of pids) f.seen.add(p)
  return pids.filter(p => comm(p) === name)
}

/** Writes goto at node 1 and waits until the move is done (test/helpers/jobs.ts). */
const moveTo = async (pid: number, target: number | 'home'): Promise<void> => { await moveJob(lab, pid, target) }

/** Nothing of the family is left: no guest on nodes 2 and 3, none of its pids listed or alive at node 1. */
async function nothingLeft (f: Family): Promise<void> {
  for (const id of [2, 3]) {
    await until(`remote/ empty on node ${id}`, async () => (await lab.exec(id, 'ls', [join(lab.node(id).mount, 'remote')])).stdout.trim() === '', 30_000)
  }
  const pids = [...f.seen, f.pid]
  await until('every member gone', () => pids.every(p => !alive(p)), 30_000)
  await until('proc/ lists none of them', async () => {
    const now = (await lab.exec(1, 'ls', [join(n1().mount, 'proc')])).stdout.split('\n').filter(Boolean).map(Number)
    return now.every(p => !pids.includes(p))
  }, 10_000)
}

/** The command mosrun started (its held shell execs it: same pid). */
async function command (f: Family): Promise<number> {
  return await until('the command', () => { try { const c = Number(readFileSync(`/proc/${f.pid}/task/${f.pid}/children`, 'utf8').trim()); return c > 0 ? c : undefined } catch { return undefined } }, 10_000)
}

/**
 * A family of four `member` processes started at node 1 by `cmd` under `mosrun -l`: they come under
 * discipline unlocked (inherited), at least two of them are moved to the fast nodes by the
 * balancer; told to stop, they end and the whole family ends as an undisturbed run would.
 */
async function spreads (cmd: string[]): Promise<void> {
  const f = mosrun(['-l', ...cmd])
  try {
    const members = await until('four members under discipline', async () => { const m = await listed(f, 'member'); return m.length === 4 ? m : undefined }, 20_000, 100)
    for (const p of members) assert.equal((await n1().read(`proc/${p}/lock`)).trim(), '0', `member ${p} inherits lock 0 (mosrun -l)`)
    const mps = spawnSync(process.execPath, [join(ROOT, 'src/cli/mps.js')], { env: { ...process.env, HPC_ROOT: n1().mount }, encoding: 'utf8' })
    for (const p of members) assert.match(mps.stdout, new RegExp(`^\\s*${p} .* member`, 'm'), 'mps lists the members')
    const away = new Set<number>()
    await until('at least two members moved to other nodes', async () => {
      for (const p of members) if (['2', '3'].includes(await where(p))) away.add(p)
      return away.size >= 2
    }, 40_000, 100)
    for (const p of members) process.kill(p, 'SIGUSR1') // at home: to the process or to its deputy
    assert.deepEqual(await within(f.exited, 90_000, 'the family to end (every member told to stop)'), { code: 0, signal: null })
    const ref = [1, 2, 3, 4].map(i => spawnSync(member, [String(i), ROUNDS], { encoding: 'utf8' }).stdout).join('')
    await until('all output', () => sorted(f.out()).length >= 4, 5000)
    assert.deepEqual(sorted(f.out()), sorted(ref))
    await nothingLeft(f)
  } finally { f.close() }
}

ftest('mosrun -l bash -c "for ...; do member & done; wait": the members spread and the loop ends as an undisturbed run', async () => {
  await spreads(['bash', '-c', `for i in 1 2 3 4; do member $i ${ROUNDS} spin & done; wait`])
})

/** A makefile of four CPU-bound recipes (a member each). */
function makefile (): string {
  const mk = join(bins.dir, 'Makefile')
  writeFileSync(mk, `all: t1 t2 t3 t4\nt1 t2 t3 t4:\n\t@member $(subst t,,$@) ${ROUNDS} spin\n.PHONY: all t1 t2 t3 t4\n`)
  return mk
}

ftest('mosrun -l make -j4 of four CPU-bound recipes spreads and finishes', async () => {
  await spreads(['make', '-s', '-f', makefile(), '-j4'])
})

ftest('mosrun -l xargs -P4 spreads and finishes', async () => {
  await spreads(['bash', '-c', `printf '1\\n2\\n3\\n4\\n' | xargs -P4 -I{} member {} ${ROUNDS} spin`])
})

ftest('a locked parent that forks after it moved: the fork is made at home, its children are members there, born where it ran', async () => {
  const f = mosrun(['-L', forker, '2', ROUNDS, 'fork-later', 'spin'], 'pipe')
  try {
    await until('ready', () => f.out() === 'forker ready\n', 20_000)
    const parent = await command(f)
    await moveTo(parent, 2)
    f.child.stdin?.write('go\n') // read on node 2; then it forks
    const kids = await until('two children of the parent at home under discipline', async () => { const k = await childrenOf(f, parent, 'forker'); return k.length === 2 ? k : undefined }, 20_000, 100)
    assert.equal(await where(parent), '0', 'the parent came home to fork')
    assert.equal((await n1().read(`proc/${parent}/nmigs`)).trim(), '2')
    for (const k of kids) {
      assert.equal((await n1().read(`proc/${k}/lock`)).trim(), '1', 'inherits lock 1 (mosrun -L)')
    }
    await until('the locked children run where their parent ran', async () => (await Promise.all(kids.map(where))).every(w => w === '2'), 20_000, 100)
    assert.equal(await where(parent), '0', 'the parent waits for them at home')
    await moveTo(kids[0], 3) // movable
    for (const k of kids) process.kill(k, 'SIGUSR1')
    assert.deepEqual(await within(f.exited, 90_000, 'the family to end (every member told to stop)'), { code: 0, signal: null })
    await until('all output', () => f.out().endsWith('forker done\n'), 5000)
    const ref = spawnSync('sh', ['-c', `echo go | ${forker} 2 ${ROUNDS} fork-later`], { encoding: 'utf8' })
    assert.deepEqual(sorted(f.out()), sorted(ref.stdout))
    await nothingLeft(f)
  } finally { f.close() }
})

ftest('a parent moved while its children run elsewhere hears of their end (SIGCHLD) and reaps them', async () => {
  const f = mosrun(['-L', forker, '2', ROUNDS, 'wait-later'], 'pipe')
  try {
    await until('ready, the children done with their work', () => f.out().includes('forker ready') && f.out().includes('child 0') && f.out().includes('child 1'), 20_000)
    const parent = await command(f)
    const kids = await until('parent and children under discipline', async () => {
      const p = await listed(f, 'forker')
      const k = await childrenOf(f, parent, 'forker')
      return p.includes(parent) && k.length === 2 ? k : undefined
    }, 20_000, 100)
    assert.equal((await n1().read(`proc/${parent}/cantmove`)).trim(), '', 'its children are no obstacle')
    await moveTo(kids[0], 2)
    await moveTo(kids[1], 3)
    await moveTo(parent, 3)
    for (const k of kids) process.kill(k, 'SIGUSR1')
    await until('the children\'s end reached the parent on node 3', () => f.out().includes('got SIGCHLD'), 20_000)
    assert.equal(await where(parent), '3')
    f.child.stdin?.write('go\n') // it waits for them now: at home
    assert.deepEqual(await within(f.exited, 90_000, 'the family to end (every member told to stop)'), { code: 0, signal: null })
    await until('all output', () => f.out().endsWith('forker done\n'), 5000)
    const child = (k: number): string => spawnSync(forker, ['child', String(k), ROUNDS], { encoding: 'utf8' }).stdout
    assert.deepEqual(sorted(f.out()), sorted(`${child(0)}${child(1)}forker ready\ngot SIGCHLD\nreaped 0 exit 10\nreaped 1 exit 11\nforker done\n`))
    await nothingLeft(f)
  } finally { f.close() }
})

ftest('SIGINT to the process group of a spread make -j4 (Ctrl-C) ends every member wherever it runs', async () => {
  // (not a bash & loop: a shell without job control starts background commands with SIGINT ignored)
  const f = mosrun(['-l', 'make', '-s', '-f', makefile(), '-j4'])
  try {
    const members = await until('four members', async () => { const m = await listed(f, 'member'); return m.length === 4 ? m : undefined }, 20_000, 100)
    await until('two of them away', async () => (await Promise.all(members.map(where))).filter(w => w === '2' || w === '3').length >= 2, 40_000, 100)
    process.kill(-f.pid, 'SIGINT')
    const st = await f.exited
    // make dies by SIGINT itself; or, when it reaps a member killed by the SIGINT before its own
    // handler has run (seen on a busy machine), it says "Interrupt" for that member and exits 2
    const interrupted = st.signal === 'SIGINT' || st.code === 130 || (st.code === 2 && /\bInterrupt\b/.test(f.out()))
    assert.ok(interrupted, `mosrun ended by SIGINT (${JSON.stringify(st)}): ${f.out().slice(-400)}`)
    await nothingLeft(f)
  } finally { f.close() }
})
