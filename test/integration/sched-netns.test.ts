// The scheduler end to end: namespaced nodes of different speeds; CPU-bound jobs started on the
// slow node spread to the fast ones by themselves, and come back when their node leaves.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { Lab } from '../../src/lab/lab.js'
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
  lab = await Lab.create({ nodes: 3, tag: 'sched', interval: 0.25, hpcdArgs: id => ['--speed', String(speed[id]), '--down-after', '2', ...(id === 1 ? ['--balance'] : [])] })
  await lab.waitAllUp()
})
after(async () => {
  for (const j of jobs) if (j.exitCode === null) j.kill('SIGKILL')
  await lab?.destroy()
  bins?.cleanup()
})

const where = async (pid: number): Promise<string> => (await lab.node(1).read(`proc/${pid}/where`)).trim()

function startJob (): number {
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, counter, '100000', '256', '0', '0'], { stdio: 'ignore' })
  jobs.push(child)
  return child.pid as number
}

test('CPU-bound jobs on a slow node move to faster nodes by themselves; costs explain it', async () => {
  assert.equal((await lab.node(1).read('admin/balance')).trim(), '1')
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
  assert.match(before, /^hysteresis 1\.3$/m)
  await n1.write('admin/sched', 'hysteresis 2\n')
  assert.match(await n1.read('admin/sched'), /^hysteresis 2$/m)
  await assert.rejects(n1.write('admin/sched', 'nosuchknob 1\n'), /Invalid argument/)
  await assert.rejects(n1.write('admin/sched', 'hysteresis -3\n'), /Invalid argument/)
  assert.match(await n1.read('admin/sched'), /^hysteresis 2$/m)
  await n1.write('admin/sched', 'hysteresis 1.3\n')
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
  const t0 = Date.now()
  await until('a few balancing rounds', () => Date.now() - t0 > 3000, 5000, 200)
  assert.equal(await where(locked), '0')
})

test('the balancer reacts to a speed change within a few intervals', async () => {
  const n1 = lab.node(1)
  await n1.write('admin/speed', '400000\n') // node 1 is now by far the fastest: a new job stays home
  const pid = startJob()
  await n1.write(`proc/${pid}/lock`, '0\n')
  const t0 = Date.now()
  await until('some balancing rounds', () => Date.now() - t0 > 3000, 5000, 200)
  assert.equal(await where(pid), '0', 'moved away from the fastest node')
  await n1.write('admin/speed', '1000\n')
  await until('moved away after the slow-down', async () => ['2', '3'].includes(await where(pid)), 20_000, 100)
})
