// The daemon's descriptors stay in the daemon: the PPM helpers it starts (a deputy at home, the
// restore helper that runs a guest) hold neither its /dev/fuse nor the socket to libfuse's
// auto_unmount watchdog. Else a killed daemon's tree hangs instead of failing, and when such a
// helper ends, the old watchdog unmounts the tree of the daemon restarted in its place.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { mountedPaths } from '../../src/core/mountpoint.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'

let lab: Lab
let bins: Bins
let launcher: string
let subject: ChildProcess | undefined
let guest: number | undefined

before(async () => {
  bins = new Bins()
  launcher = bins.compile('launch')
  lab = await Lab.create({ nodes: 2, tag: 'fds', interval: 0.25, hpcdArgs: () => ['--no-balance', '--down-after', '2'] })
  await lab.waitAllUp()
})
after(async () => {
  subject?.kill('SIGKILL')
  if (guest !== undefined) try { process.kill(guest, 'SIGKILL') } catch {}
  await lab?.destroy()
  bins?.cleanup()
})

const children = (pid: number): number[] => readdirSync('/proc').filter(n => /^\d+$/.test(n)).map(Number).filter(p => {
  try { return Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]) === pid } catch { return false }
})
const comm = (pid: number): string => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '' } }
const status = (pid: number, key: string): string => { try { return new RegExp(`^${key}:\\s*(\\S*)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '' } catch { return '' } }
const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

/** What each descriptor of a process points to ("/dev/fuse", "socket:[123]", ...). */
function fds (pid: number): Map<number, string> {
  const out = new Map<number, string>()
  for (const n of readdirSync(`/proc/${pid}/fd`)) { try { out.set(Number(n), readlinkSync(`/proc/${pid}/fd/${n}`)) } catch {} }
  return out
}

/**
 * Descriptors of `helper` that are shared with `daemon` (the same device, socket or pipe), but for
 * `own`: pipes the helper made and the daemon opened through /proc/<helper>/fd/ (a keeper's).
 */
function leaked (helper: number, daemon: number, own: Set<string> = new Set()): string[] {
  const theirs = new Set([...fds(daemon).values()].filter(t => t !== '/dev/null' && !own.has(t)))
  return [...fds(helper)].filter(([, t]) => t === '/dev/fuse' || theirs.has(t)).map(([fd, t]) => `fd ${fd} -> ${t}`)
}

/** The pipes of a guest's keeper that its daemon attaches to (its record, docs/ppm.md "Keeper"). */
function keeperPipes (node: number, guestPid: number, keeper: number): Set<string> {
  const rec = JSON.parse(readFileSync(join(lab.tmp, 'state', String(node), 'guests', `${guestPid}.json`), 'utf8')) as { keeper: { helper: number, fds: Record<string, number> } }
  assert.equal(rec.keeper.helper, keeper, 'the record names the restore helper as the keeper')
  return new Set(Object.values(rec.keeper.fds).map(fd => readlinkSync(`/proc/${keeper}/fd/${fd}`)))
}

test('the helpers of a moved process hold no descriptor of their daemon', async () => {
  // a subject that lives until it is killed, at home on node 1, moved to node 2
  subject = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, 'sleep', '1000000'], { stdio: 'ignore' })
  const pid = subject.pid as number
  await until('the subject runs', () => comm(pid) === 'sleep')
  await lab.node(1).write(`proc/${pid}/goto`, '2\n')
  await until('the subject on node 2', async () => (await lab.node(1).read(`proc/${pid}/where`)).trim() === '2', 30_000)
  const [d1, d2] = [lab.node(1).pid as number, lab.node(2).pid as number]
  assert.ok([...fds(d1).values()].includes('/dev/fuse'), 'the daemon itself holds its /dev/fuse')
  // (the daemons also keep idle helpers started ahead, ppm.ts useStandby: the deputy is the one
  // tracing the original, the restore helper the one whose child the guest is)
  const deputy = children(d1).find(p => comm(p) === 'hpc-ppm-helper' && status(pid, 'TracerPid') === String(p))
  const restorer = children(d2).find(p => comm(p) === 'hpc-ppm-helper' && children(p).some(c => comm(c) === 'sleep'))
  assert.ok(deputy !== undefined && restorer !== undefined, 'a deputy helper on node 1, a restore helper on node 2')
  guest = children(restorer).find(p => comm(p) === 'sleep')
  assert.ok(guest !== undefined, 'the guest runs under the restore helper')
  assert.deepEqual(leaked(deputy, d1), [], 'deputy helper')
  // the restore helper keeps the guest (its keeper): the daemon holds the other ends of the
  // keeper's own pipes, and nothing else of the daemon's is in the helper
  assert.deepEqual(leaked(restorer, d2, keeperPipes(2, guest, restorer)), [], 'restore helper')
})

test('a killed daemon\'s mount goes at once; the tree of the daemon restarted in its place outlives the old helpers', async () => {
  const n2 = lab.node(2)
  const d2 = n2.pid as number
  const restorer = children(d2).find(p => comm(p) === 'hpc-ppm-helper' && children(p).some(c => comm(c) === 'sleep')) as number
  const watchdog = children(d2).find(p => comm(p) === 'fusermount')
  assert.ok(restorer !== undefined && watchdog !== undefined, 'a restore helper and the auto_unmount watchdog')
  n2.kill('SIGKILL')
  await n2.waitExit()
  // the watchdog sees the daemon's end of its socket close and unmounts: the tree fails at once
  // rather than hanging while a helper keeps /dev/fuse open
  await until('the old watchdog is done', () => !alive(watchdog), 10_000)
  await until('the old mount is gone', async () => !(await mountedPaths()).includes(n2.mount), 10_000)
  await n2.start()
  assert.equal((await n2.read('admin/mospe')).trim(), '2')
  // the old restore helper ends with its guest: nothing may unmount the new tree
  if (guest !== undefined && alive(guest)) process.kill(guest, 'SIGKILL')
  await until('the old restore helper has ended', () => !alive(restorer) || comm(restorer) !== 'hpc-ppm-helper', 10_000)
  assert.ok((await mountedPaths()).includes(n2.mount), 'the new tree is mounted')
  assert.equal((await n2.read('admin/mospe')).trim(), '2')
})
