// The engine's part of process families (native/family.c, docs/family.md): a process restored
// with `family` waits in its fork (and posix_spawn, and wait) until it is dumped, and the call runs
// again wherever the image lands; a denied call fails with the errno given; a process with children
// can be hollowed as a deputy (check --family), its children keep it as their parent, and their
// end reaches it as SIGCHLD.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { constants } from 'node:os'
import { check, deputy, dump, restore, type FamilyCall, type Restored } from '../../src/ppm/ppm.js'
import { Lab, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

const sorted = (s: string): string => s.split('\n').filter(Boolean).sort().join('\n')
const ppid = (pid: number): number => Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])

/** Collects a restored process's stdout and its family calls. */
function watch (r: Restored): { out: () => string, calls: FamilyCall[] } {
  let out = ''
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const calls: FamilyCall[] = []
  r.family?.on('call', (c: FamilyCall) => calls.push(c))
  return { out: () => out, calls }
}

test('a family call waits; dumped in it, the process makes the call where it is restored next', async () => {
  const bin = lab.compile('forker')
  const args = ['2', '60', 'fork-later']
  const s = lab.start(bin, args, ['pipe', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'forker ready\n', 5000, 'ready')
  await dump(s.pid, lab.path('f1.img'))
  const r1 = lab.track(await restore(lab.path('f1.img'), { keepPid: false, stdio: ['pipe', 'pipe', 'pipe'], family: true }))
  const w1 = watch(r1)
  r1.stdin?.write('go\n')
  await waitFor(() => w1.calls.length === 1, 5000, 'the fork caught')
  assert.equal(w1.calls[0].call, 'clone', 'glibc forks with clone')
  assert.match(readFileSync(`/proc/${r1.pid}/status`, 'utf8'), /^Seccomp_filters:\s*1$/m)
  assert.equal(readFileSync(`/proc/${r1.pid}/task/${r1.pid}/children`, 'utf8').trim(), '', 'no child here')
  // dumped while it waits in the call: the image holds the call, ready to be made again
  await dump(r1.pid, lab.path('f2.img'))
  assert.deepEqual(await r1.exited, { code: null, signal: 9 })
  const r2 = lab.track(await restore(lab.path('f2.img'), { keepPid: false, stdio: ['pipe', 'pipe', 'pipe'] }))
  const w2 = watch(r2)
  assert.deepEqual(await r2.exited, { code: 0, signal: null })
  await waitFor(() => w2.out().endsWith('forker done\n'), 5000, 'all output')
  const ref = reference('sh', ['-c', `echo go | ${bin} ${args.join(' ')}`])
  assert.equal(sorted('forker ready\n' + w2.out()), sorted(ref.out))
  assert.equal(w2.calls.length, 0)
})

test('posix_spawn (clone3 fails ENOSYS, then clone with CLONE_VFORK) is caught too; a denied call fails with the errno given', async () => {
  const bin = lab.compile('forker')
  const s = lab.start(bin, ['2', '10', 'spawn'], ['pipe', 'pipe', 'pipe'])
  await waitFor(() => s.out === 'forker ready\n', 5000, 'ready')
  await dump(s.pid, lab.path('s1.img'))
  const r = lab.track(await restore(lab.path('s1.img'), { keepPid: false, stdio: ['pipe', 'pipe', 'pipe'], family: true }))
  const w = watch(r)
  r.stdin?.write('go\n')
  await waitFor(() => w.calls.length === 1, 5000, 'the spawn caught')
  assert.equal(w.calls[0].call, 'clone')
  assert.throws(() => r.family?.deny('x', 11), /bad family call/)
  r.family?.deny(w.calls[0].id, constants.errno.EAGAIN)
  assert.deepEqual(await r.exited, { code: 1, signal: null })
  await waitFor(() => w.out().includes('posix_spawn'), 5000, 'the failure printed')
  assert.equal(w.out(), 'posix_spawn: Resource temporarily unavailable\n')
})

test('a process with children becomes a deputy (check --family); they keep it as parent; their end reaches it; back home it reaps them', async () => {
  const bin = lab.compile('forker')
  const args = ['1', '20', 'wait-later']
  const s = lab.start(bin, args, ['pipe', 'pipe', 'pipe'])
  await waitFor(() => s.out.includes('forker ready') && s.out.includes('child 0'), 5000, 'ready, child working')
  const kid = Number(readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').trim())
  assert.ok(kid > 0)
  assert.deepEqual((await check(s.pid)).map(r => r.code), ['children'])
  assert.deepEqual(await check(s.pid, { family: true }), [])
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('d.img'), { family: true }))
  const sigs: number[] = []
  d.on('signal', (n: number) => sigs.push(n))
  assert.equal(ppid(kid), s.pid, 'the child keeps the hollow original as its parent')
  process.kill(kid, 'SIGUSR1')
  await waitFor(() => sigs.includes(constants.signals.SIGCHLD), 5000, 'SIGCHLD reported')
  // back into the original: it reaps its child, a zombie meanwhile
  await d.restoreInto(lab.path('d.img'))
  process.kill(s.pid, 'SIGCHLD') // what home forwards to it
  s.child.stdin?.write('go\n')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  const child = reference(bin, ['child', '0', args[1]])
  assert.equal(child.code, 10)
  assert.equal(sorted(s.out), sorted(`${child.out}forker ready\ngot SIGCHLD\nreaped 0 exit 10\nforker done\n`))
})
