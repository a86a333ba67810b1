// The scheduler end to end: namespaced nodes of different speeds; CPU-bound jobs started on the
// slow node spread to the fast ones by themselves, and come back when their node leaves; a node
// balances its guests too (its home moves them); a node that joins takes work. Last, two nodes
// each confined to one CPU (a cgroup each, as scripts/bench-cluster does): four CPU-bound jobs
// started unlocked at home end up 2:2 and stay there, no job passed back and forth.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab, HPCD_JS, REPO_ROOT, type LabNodeSpec } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'

let lab: Lab
let bins: Bins
let counter: string
let launcher: string
const jobs: ChildProcess[] = []

before(async () => {
  bins = new Bins()
  counter = bins.compile('counter')
  launcher = bins.compile('launch')
  const speed: Record<number, number> = { 1: 3000, 2: 40000, 3: 40000 }
  lab = await Lab.create({ nodes: 3, tag: 'sched', interval: 0.25, hpcdArgs: id => ['--speed', String(speed[id]), '--down-after', '2', ...(id === 1 ? [] : ['--no-balance'])] })
  await lab.waitAllUp()
})
after(async () => {
  for (const j of jobs) if (j.exitCode === null) j.kill('SIGKILL')
  await lab?.destroy()
  for (const j of confinedJobs) if (j.exitCode === null) j.kill('SIGKILL')
  await confined?.destroy()
  await removeGroups()
  bins?.cleanup()
})

const where = async (pid: number): Promise<string> => (await lab.node(1).read(`proc/${pid}/where`)).trim()

/** Waits until node 1's balancer has run its policy `n` more times (admin/costs' counters). */
async function balancingRounds (n: number): Promise<void> {
  const rounds = async (): Promise<number> => Number(/^counters: rounds (\d+) /m.exec(await lab.node(1).read('admin/costs'))?.[1] ?? NaN)
  const from = await rounds()
  assert.ok(Number.isFinite(from), 'admin/costs has the counters')
  await until(`${n} balancing rounds`, async () => (await rounds()) >= from + n, 20_000, 100)
}

/** Stops the jobs earlier tests started (wherever they run) and waits until home no longer lists them. */
async function stopJobs (): Promise<void> {
  const live = jobs.filter(j => j.exitCode === null && j.signalCode === null)
  for (const j of live) j.kill('SIGKILL')
  await until('earlier jobs gone', async () => {
    const listed = new Set((await lab.node(1).exec('ls', [`${lab.node(1).mount}/proc`])).stdout.split('\n'))
    return live.every(j => !listed.has(String(j.pid)))
  }, 20_000, 100)
  // their guests are gone too, and node 2 has heard so from node 3 (a stale load of node 3 would
  // make it look dearer to node 2)
  await until('no guests left, node 2 hears node 3 idle', async () => {
    for (const id of [2, 3]) if ((await lab.node(id).exec('ls', [`${lab.node(id).mount}/remote`])).stdout.trim() !== '') return false
    return Number(await lab.node(2).read('nodes/3/load')) < 10
  }, 30_000, 200)
}

/** A CPU-bound job at home (node 1) over an array of `kb` KiB. */
function startJob (kb = 256): number {
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, counter, '100000', String(kb), '0', '0'], { stdio: 'ignore' })
  jobs.push(child)
  return child.pid as number
}

test('CPU-bound jobs on a slow node move to faster nodes by themselves; costs explain it', async () => {
  assert.equal((await lab.node(1).read('admin/balance')).trim(), '1', 'on by default')
  assert.equal((await lab.node(2).read('admin/balance')).trim(), '0', 'hpcd --no-balance')
  const pids = [startJob(), startJob()]
  for (const pid of pids) await lab.node(1).write(`proc/${pid}/lock`, '0\n') // under cluster discipline, movable
  const costs = await lab.node(1).read(`proc/${pids[0]}/costs`)
  assert.match(costs, new RegExp(`^pid ${pids[0]} cost-here`))
  assert.match(costs, /^node [23] cost/m)
  await until('a job moved to a fast node', async () => {
    const w = await Promise.all(pids.map(where))
    return w.some(x => x === '2' || x === '3')
  }, 40_000, 200)
})

test('a job whose node leaves comes back and keeps running', async () => {
  const all = jobs.map(j => j.pid as number)
  const ws = await Promise.all(all.map(where))
  const away = all[ws.findIndex(x => x === '2' || x === '3')]
  const node = Number(await where(away))
  await lab.node(node).write('admin/expel', '1\n')
  await until('the job left the expelling node', async () => (await where(away)) !== String(node), 20_000, 100)
  assert.equal(jobs.find(j => j.pid === away)?.exitCode, null, 'the job still runs')
  await lab.node(node).write('admin/block', '0\n')
})

test('admin/sched shows and sets the tunables (bad input changes nothing); admin/costs explains the node', async () => {
  const n1 = lab.node(1)
  const before = await n1.read('admin/sched')
  assert.match(before, /^hysteresis 6$/m)
  await n1.write('admin/sched', 'hysteresis 2\n')
  assert.match(await n1.read('admin/sched'), /^hysteresis 2$/m)
  await assert.rejects(n1.write('admin/sched', 'nosuchknob 1\n'), /Invalid argument/)
  await assert.rejects(n1.write('admin/sched', 'hysteresis -3\n'), /Invalid argument/)
  assert.match(await n1.read('admin/sched'), /^hysteresis 2$/m)
  await n1.write('admin/sched', 'hysteresis 6\n')
  assert.equal(await n1.read('admin/sched'), before)
  assert.match(await n1.read('admin/costs'), /^balance on: /)
})

test('goto balance places a job by cost; a locked job is never moved automatically', async () => {
  const pid = startJob()
  await lab.node(1).write(`proc/${pid}/lock`, '1\n')
  await lab.node(1).write(`proc/${pid}/goto`, 'balance\n')
  await until('placed on a fast node', async () => ['2', '3'].includes(await where(pid)), 20_000, 100)
  const locked = startJob()
  await lab.node(1).write(`proc/${locked}/lock`, '1\n')
  await balancingRounds(12)
  assert.equal(await where(locked), '0')
})

test('the balancer reacts to a speed change within a few intervals', async () => {
  const n1 = lab.node(1)
  await n1.write('admin/speed', '400000\n') // node 1 is now by far the fastest: a new job stays home
  const pid = startJob()
  await n1.write(`proc/${pid}/lock`, '0\n')
  await balancingRounds(12)
  assert.equal(await where(pid), '0', 'moved away from the fastest node')
  await n1.write('admin/speed', '1000\n')
  await until('moved away after the slow-down', async () => ['2', '3'].includes(await where(pid)), 20_000, 100)
})

test('decay hints: proc/<pid>/decay and decay/<hint> for the writer; an iojob is not moved for CPU, a cpujob is', async () => {
  const n1 = lab.node(1)
  await n1.write('admin/speed', '1000\n') // slow: CPU-bound work should leave
  const pid = startJob()
  const decay = async (): Promise<string> => (await n1.read(`proc/${pid}/decay`)).trim()
  assert.equal(await decay(), 'slow')
  await n1.write(`proc/${pid}/decay`, 'fast\n')
  await n1.write(`proc/${pid}/decay`, 'iojob\n')
  assert.equal(await decay(), 'fast iojob')
  await assert.rejects(n1.write(`proc/${pid}/decay`, 'sometimes\n'), /Invalid argument/)
  assert.equal(await decay(), 'fast iojob', 'a bad hint changes nothing')
  // decay/<hint> acts on the process that writes it
  const me = await n1.exec('sh', ['-c', `echo 1 > ${n1.mount}/decay/cpujob && echo 1 > ${n1.mount}/decay/slow && cat ${n1.mount}/proc/$$/decay`])
  assert.equal(me.stdout.trim(), 'slow cpujob', me.stderr)
  await n1.write(`proc/${pid}/lock`, '0\n')
  await balancingRounds(12)
  assert.equal(await where(pid), '0', 'an iojob uses no CPU as far as the balancer counts: nothing to gain')
  assert.match(await n1.read(`proc/${pid}/costs`), /^node [23] cost \S+ load \d+ saves 0\.0s /m, 'no time to save on a faster CPU')
  await n1.write(`proc/${pid}/decay`, 'cpujob\n')
  await until('the cpujob moved to a faster node', async () => ['2', '3'].includes(await where(pid)), 20_000, 100)
})

test('a job already away moves on by itself when its node slows down: each node balances its guests', async () => {
  const [n1, n2, n3] = [lab.node(1), lab.node(2), lab.node(3)]
  await n1.write('admin/balance', '0\n') // home does not move it: only node 2's balancer may
  // home as slow as node 2 will be: node 3 is the one place where the job gains (with home at 3000,
  // home and node 3 could come out within the policy's tie margin, and a tie is broken at random)
  await n1.write('admin/speed', '1000\n')
  await n2.write('admin/balance', '1\n')
  // node 2 prices a move by the bandwidth it measured; on a busy machine a slow earlier transfer
  // to node 3 can make the short hop home look better at the default hysteresis
  await n2.write('admin/sched', 'hysteresis 1\n')
  await stopJobs() // the jobs of earlier tests would compete with it for node 3
  try {
    const pid = startJob(8192) // images of 8 MiB and more measure the bandwidth
    await n1.write(`proc/${pid}/lock`, '0\n')
    await n1.write(`proc/${pid}/goto`, '2\n')
    await until('on node 2', async () => (await where(pid)) === '2', 20_000, 100)
    // (it stays at least minResidence = 2 s: time to read what node 2 thinks of it)
    const guests = (await n2.exec('ls', [`${n2.mount}/remote`])).stdout.trim().split('\n').filter(Boolean)
    const ids = await Promise.all(guests.map(async g => await n2.read(`remote/${g}/identity`)))
    const guest = guests[ids.findIndex(id => id.startsWith(`home 1 pid ${pid} `))]
    assert.ok(guest !== undefined, `node 2 lists it: ${ids.join('; ')}`)
    assert.match(await n2.read(`remote/${guest}/costs`), new RegExp(`^pid ${guest} cost-here \\S+ movable`))
    await n2.write('admin/speed', '1000\n')
    let last = ''
    let costs = ''
    await until('node 2 had its home move it to node 3', async () => {
      const c = await n2.read(`remote/${guest}/costs`).catch(() => '')
      if (c.includes('cost-here')) costs = c
      return (last = await where(pid)) === '3'
    }, 30_000, 100)
      .catch((e: Error) => { throw new Error(`${e.message}: where ${last}; node 2's last costs of it: ${costs}`) })
    assert.match(await n1.read('admin/costs'), /^bandwidth MB\/s: .*node 2 \d+.*node 3 \d+/m, 'the transfers measured the bandwidth')
  } finally {
    await n2.write('admin/speed', '40000\n')
    await n2.write('admin/balance', '0\n')
    await n2.write('admin/sched', 'hysteresis 6\n')
    await n1.write('admin/speed', '3000\n')
    await n1.write('admin/balance', '1\n')
  }
})

test('a node that joins takes work within a few intervals', async () => {
  const n1 = lab.node(1)
  await lab.node(2).stop()
  await lab.node(3).stop()
  await until('node 1 sees nodes 2 and 3 down', async () => (await lab.readStatuses(1, [2, 3])).every(s => s === undefined || (s & 2) === 0), 20_000, 200)
  const pid = startJob()
  await n1.write(`proc/${pid}/lock`, '0\n')
  await balancingRounds(8)
  assert.equal(await where(pid), '0', 'nowhere to go')
  await lab.node(3).start()
  const joined = Date.now()
  await until('the job went to the new node', async () => (await where(pid)) === '3', 30_000, 100)
  const s = (Date.now() - joined) / 1000
  assert.ok(s < 20, `took ${s.toFixed(1)} s`)
})

// ---- two nodes, each confined to one CPU ----------------------------------------------------

const CPU_CG = '/sys/fs/cgroup/cpu'
const cgroupsUsable = process.getuid?.() === 0 && existsSync(join(CPU_CG, 'cpu.cfs_quota_us'))
const groupDir = (id: number): string => join(CPU_CG, `hpcfs-sched-${process.pid}-node${id}`)
let confined: Lab | undefined
const confinedJobs: ChildProcess[] = []

async function removeGroups (): Promise<void> {
  for (const id of [1, 2]) {
    const g = groupDir(id)
    if (existsSync(g)) await until(`${g} empties`, () => { try { rmdirSync(g); return true } catch { return false } }, 10_000, 100)
  }
}

/** `sh` that joins node id's group, then execs the command (through `launch`: no inherited fds). */
const inGroup = (id: number, cmd: string, args: string[]): { cmd: string, args: string[] } =>
  ({ cmd: 'sh', args: ['-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', join(groupDir(id), 'cgroup.procs'), launcher, cmd, ...args] })

test('two nodes confined to one CPU each: four CPU-bound jobs started unlocked at home end up 2:2 and stay there', { skip: !cgroupsUsable && 'needs root and the cgroup v1 cpu controller' }, async t => {
  // the three-node lab and its jobs are done: the two confined nodes need both CPUs of the machine
  for (const j of jobs) if (j.exitCode === null) j.kill('SIGKILL')
  await lab.destroy()
  for (const id of [1, 2]) {
    mkdirSync(groupDir(id))
    writeFileSync(join(groupDir(id), 'cpu.cfs_period_us'), '100000')
    writeFileSync(join(groupDir(id), 'cpu.cfs_quota_us'), '100000') // one CPU
  }
  confined = await Lab.create({
    nodes: 2,
    tag: 'schedcg',
    command: (n: LabNodeSpec) => inGroup(n.id, process.execPath, [HPCD_JS, '--id', String(n.id), '--addr', n.addr, '--port', String(n.port),
      '--map', n.mapFile, '--mount', n.mount, '--key', n.keyFile, '--interval', '0.5', '--load-scope', 'cgroup'])
  })
  await confined.waitAllUp()
  const n1 = confined.node(1)
  for (const n of [n1, confined.node(2)]) assert.equal((await n.read('admin/balance')).trim(), '1', 'balancing is on by default')
  // each job: `mosrun -l counter` (unlocked) in node 1's namespace and group; it runs until killed
  const mosrun = join(REPO_ROOT, 'dist/src/cli/mosrun.js')
  const pids: number[] = []
  for (let k = 0; k < 4; k++) {
    const w = inGroup(1, process.execPath, [mosrun, '-l', counter, '1000000', '4096', '0', '0'])
    const child = confined.spawn(1, w.cmd, w.args, { stdio: 'ignore', env: { HPC_ROOT: n1.mount } })
    confinedJobs.push(child)
    pids.push(await until('mosrun started its command', () => {
      try { return Number(readFileSync(`/proc/${child.pid as number}/task/${child.pid as number}/children`, 'utf8').trim().split(/\s+/)[0]) || undefined } catch { return undefined }
    }, 10_000, 20))
  }
  const split = async (): Promise<{ home: number, away: number, nmigs: number[] }> => {
    const ws = await Promise.all(pids.map(async pid => (await n1.read(`proc/${pid}/where`)).trim()))
    const nmigs = await Promise.all(pids.map(async pid => Number((await n1.read(`proc/${pid}/nmigs`)).trim())))
    return { home: ws.filter(w => w === '0').length, away: ws.filter(w => w === '2').length, nmigs }
  }
  const seen: string[] = []
  const t0 = Date.now()
  await until('the jobs split 2:2', async () => {
    const s = await split()
    seen.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${s.home}:${s.away}`)
    return s.home === 2 && s.away === 2
  }, 30_000, 250).catch(e => { throw new Error(`${(e as Error).message}; splits seen (home:node 2): ${seen.join(', ')}`) })
  // and it stays 2:2: nothing passed back and forth meanwhile
  const t1 = Date.now()
  while (Date.now() - t1 < 10_000) {
    const s = await split()
    assert.deepEqual([s.home, s.away], [2, 2], `the split changed after ${((Date.now() - t1) / 1000).toFixed(1)} s at 2:2`)
    assert.ok(s.nmigs.every(m => m <= 2), `moves per job: ${s.nmigs.join(' ')}`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  const { nmigs } = await split()
  assert.ok(nmigs.reduce((a, b) => a + b, 0) <= 4, `moves: ${nmigs.join(' ')}`)
  t.diagnostic(`splits (home:node 2) ${seen.filter((x, k) => k === 0 || x.split(' ')[1] !== seen[k - 1].split(' ')[1]).join(', ')}; moves per job ${nmigs.join(' ')}`)
})
