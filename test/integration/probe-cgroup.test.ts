// hpcd --load-scope cgroup: a daemon confined to a CPU cgroup with a CFS quota is a node of its
// own. Its load counts only its group's runnable tasks, its CPUs are the quota rounded up, and its
// calibrated speed is scaled by the quota (one machine emulating nodes of different speeds).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { LoopbackCluster, cat, until } from '../helpers/daemon.js'

const CPU = '/sys/fs/cgroup/cpu'
const usable = process.getuid?.() === 0 && existsSync(join(CPU, 'cpu.cfs_quota_us'))
const group = join(CPU, `hpcfs-test-${process.pid}`)
const c = new LoopbackCluster([1], 17600)
const loops: ChildProcess[] = []

/** A CPU-bound shell loop, in `cg` if given. */
function busy (cg?: string): void {
  const script = cg === undefined ? 'exec sh -c "while :; do :; done"' : 'echo $$ > "$0/tasks" && exec sh -c "while :; do :; done"'
  loops.push(spawn('sh', ['-c', script, ...(cg === undefined ? [] : [cg])], { stdio: 'ignore' }))
}

after(async () => {
  for (const l of loops) l.kill('SIGKILL')
  await c.destroy()
  if (existsSync(group)) {
    await until('the group empties', () => { try { rmdirSync(group); return true } catch { return false } }, 5000)
  }
})

test('a daemon in a CPU cgroup with a quota: its own load, the quota as CPUs and speed', { skip: !usable && 'needs root and the cgroup v1 cpu controller' }, async () => {
  mkdirSync(group)
  writeFileSync(join(group, 'cpu.cfs_period_us'), '100000')
  writeFileSync(join(group, 'cpu.cfs_quota_us'), '50000') // half a CPU
  const d = await c.start(1, ['--speed', '0', '--load-scope', 'cgroup', '--interval', '0.5'], { cgroup: group })
  const file = (f: string): string => join(d.mount, 'nodes', '1', f)
  assert.equal(await cat(file('cpus')), `${Math.min(availableParallelism(), 1)}\n`)
  const m = /calibrated (\d+), CPU share 0\.5 of 1 CPUs: speed (\d+)/.exec(d.log())
  assert.ok(m !== null, `the calibration is logged: ${d.log().slice(0, 2000)}`)
  assert.equal(Number(m[2]), Math.max(1, Math.round(Number(m[1]) / 2)), 'half the calibrated speed')
  const speed = Number(await cat(file('speed')))
  assert.equal(speed, Number(m[2]))
  const one = 100 * 10000 / speed // the load of one runnable task on this node
  const load = async (): Promise<number> => Number(await cat(file('load')))

  busy() // outside the group: not this node's load
  const t0 = Date.now()
  await until('a few load periods', () => Date.now() - t0 > 3000, 5000, 200)
  assert.ok(await load() < one / 4, `load ${await load()} with a busy loop outside the group (one task: ${one.toFixed(0)})`)

  busy(group) // inside: its load
  await until('the load counts the busy loop in the group', async () => (await load()) > one / 2 ? true : undefined, 10_000, 200)
})
