// Guests in a pid namespace of their own (restore --guest, native/restore.c guest_pidns): the
// restored process and its threads see their home ids (getpid, gettid) while the host knows them
// by other ids (NSpid shows both levels); an image dumped from such a guest keeps its home ids, so
// it comes home (or moves on) under them; the namespace's init, a reaper, leaves with the guest.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { poll } from '../../src/util/poll.js'
import { dump, info, restoreKept, type KeepInfo } from '../../src/ppm/ppm.js'
import { attachKept, type Kept } from '../../src/ppm/keeper.js'
import { Lab, lines, reference, waitFor, type Subject } from './harness.js'

const lab = new Lab()
const kept: Kept[] = []
after(() => {
  for (const k of kept) { try { process.kill(k.pid, 'SIGKILL') } catch {} k.release() }
  lab.cleanup()
})

function nspid (pid: number, tid = pid): number[] {
  const m = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))
  return (m?.[1] ?? '').trim().split(/\s+/).map(Number)
}
const said = (s: string): Array<{ pid: number, tids: number[] }> =>
  [...s.matchAll(/^pid (\d+) tids (-?\d+) (-?\d+)$/gm)].map(m => ({ pid: Number(m[1]), tids: [Number(m[2]), Number(m[3])] }))

/** Dumps subject s into image `name` (it ends) and restores it as a guest, kept and attached; out(): what it wrote since. */
async function asGuest (s: Subject, name: string): Promise<{ ki: KeepInfo, k: Kept, out: () => string }> {
  const img = lab.path(name)
  await dump(s.pid, img)
  await waitFor(() => s.child.exitCode !== null || s.child.signalCode !== null, 30000, 'the original gone after its dump')
  const ki = await restoreKept(img, { guest: true, leaseMs: 120000 })
  const k = attachKept(ki)
  kept.push(k)
  let out = ''
  k.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  return { ki, k, out: () => out }
}

test('a guest runs in its own pid namespace under its home pid and tids; its image keeps them', async () => {
  const bin = lab.compile('nsids')
  const s = lab.start(bin, [], ['pipe', 'pipe', 'pipe'])
  await waitFor(() => said(s.out).length === 1, 30000, 'the subject saying its ids')
  const home = said(s.out)[0]
  assert.equal(home.pid, s.pid)
  assert.deepEqual(nspid(s.pid), [s.pid], 'the original is in the host pid namespace')
  const { ki, k, out } = await asGuest(s, 'guest.img')
  assert.notEqual(ki.pid, home.pid, 'the host knows it by another pid')
  assert.deepEqual(nspid(ki.pid), [ki.pid, home.pid], 'NSpid: its host pid, then its home pid in its own namespace')
  const st = readFileSync(`/proc/${ki.pid}/status`, 'utf8')
  assert.match(st, /^Uid:\s+1073741824\s+0\s+1073741824/m, 'a guest uid (GUEST_ID_BASE + its home uid) as real and saved uid')
  // its threads: host tids differ, their tids in its namespace are the home ones
  const hostTids = readdirSync(`/proc/${ki.pid}/task`).map(Number).filter(t => t !== ki.pid)
  assert.equal(hostTids.length, 2)
  const inner = hostTids.map(t => nspid(ki.pid, t))
  for (const [i, n] of inner.entries()) { assert.equal(n.length, 2); assert.equal(n[0], hostTids[i]) }
  assert.deepEqual(inner.map(n => n[1]).sort((a, b) => a - b), [...home.tids].sort((a, b) => a - b))

  // what the process itself sees, asked after the restore
  k.stdin?.write('ids?\n')
  await waitFor(() => said(out()).length === 1, 30000, 'the restored guest saying its ids')
  assert.deepEqual(said(out())[0], home, 'getpid() and each thread\'s gettid() are its home ids')

  // the namespace's init is a reaper, a child of the keeper, not the guest
  const children = (): number[] => readFileSync(`/proc/${ki.helper}/task/${ki.helper}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  const reaper = children().find(p => p !== ki.pid)
  assert.ok(reaper != null, 'the keeper has the reaper as a child')
  assert.deepEqual(nspid(reaper), [reaper, 1], 'the reaper is pid 1 of the guest\'s namespace')

  // dumped again (by its host pid), the image has its home ids: it comes home under them
  const img2 = lab.path('guest2.img')
  await dump(ki.pid, img2)
  const i2 = await info(img2)
  assert.equal(Number(i2.fields.pid), home.pid, 'the image of a guest holds its home pid')
  assert.equal(Number(i2.fields.threads), 3)
  await k.exited
  k.release()
  await waitFor(() => { try { return !children().includes(reaper) } catch { return true } }, 30000, 'the reaper gone with the guest')
})

test('a guest\'s POSIX timers that signal one thread (SIGEV_THREAD_ID: its main thread, a worker) are made again for their tids in its namespace', async () => {
  const bin = lab.compile('ptimer')
  const args = ['20', '6', '10']
  const ref = reference(bin, args)
  assert.equal(ref.code, 10, ref.out)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 3, 10000, 'rounds')
  const { ki, k, out } = await asGuest(s, 'ptimer-guest.img')
  assert.deepEqual(nspid(ki.pid), [ki.pid, s.pid], 'in a namespace of its own, under its home pid')
  assert.deepEqual(await k.exited, { code: 10, signal: null }, out())
  await waitFor(() => out().endsWith('timers ok\n'), 5000, 'all of its output')
  assert.equal(s.out + out(), ref.out)
  k.release()
})

/** The helpers this test process has spawned (restore helpers), and a process's children and name. */
const childrenOf = (pid: number): number[] => {
  try { return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) } catch { return [] }
}
const comm = (pid: number): string => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '' } }

test('a guest whose pid its offer said (pidHint): its namespace and stub are made before any of its image comes, and the stub becomes it', async () => {
  const bin = lab.compile('nsids')
  const s = lab.start(bin, [], ['pipe', 'pipe', 'pipe'])
  await waitFor(() => said(s.out).length === 1, 30000, 'the subject saying its ids')
  const home = said(s.out)[0]
  const img = lab.path('hint.img')
  await dump(s.pid, img)
  await waitFor(() => s.child.exitCode !== null || s.child.signalCode !== null, 30000, 'the original gone after its dump')

  const src = new PassThrough()
  const restoring = restoreKept(src, { guest: true, leaseMs: 120000, pidHint: home.pid })
  restoring.catch(() => {})
  // nothing of the image has been written yet: the restore's helper has made the stub all the same
  const stubs = (): number[] => childrenOf(process.pid).filter(h => comm(h) === 'hpc-ppm-helper').flatMap(childrenOf).filter(c => comm(c) === 'hpc-ppm-stub')
  const stub = await poll('the stub made before any of the image', () => stubs()[0], { timeoutMs: 30000, everyMs: 10 })
  assert.deepEqual(nspid(stub), [stub, home.pid], 'the stub has the pid the offer said, in a namespace of its own')
  src.end(readFileSync(img))
  const ki = await restoring
  assert.equal(ki.pid, stub, 'the stub made ahead is the guest')
  const k = attachKept(ki)
  kept.push(k)
  let out = ''
  k.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  k.stdin?.write('ids?\n')
  await waitFor(() => said(out).length === 1, 30000, 'the restored guest saying its ids')
  assert.deepEqual(said(out)[0], home, 'getpid() and each thread\'s gettid() are its home ids')
  process.kill(ki.pid, 'SIGKILL')
  await k.exited
})

// the hint is not the image's pid (a process in a pid namespace of its own at home), or no process
// can have it here (above this host's pid_max): the stub made after the metadata has the image's pid
for (const [what, hint, name] of [
  ['the image does not have', (pid: number) => pid + 1, 'hint-other.img'],
  ['no process can have here (above pid_max)', () => 0x3ffffff0, 'hint-high.img']
] as const) {
  test(`a pid hint ${what}: the stub is made after the metadata, in the same namespace, with the image's pid`, async () => {
    const bin = lab.compile('nsids')
    const s = lab.start(bin, [], ['pipe', 'pipe', 'pipe'])
    await waitFor(() => said(s.out).length === 1, 30000, 'the subject saying its ids')
    const home = said(s.out)[0]
    const img = lab.path(name)
    await dump(s.pid, img)
    await waitFor(() => s.child.exitCode !== null || s.child.signalCode !== null, 30000, 'the original gone after its dump')
    const ki = await restoreKept(img, { guest: true, leaseMs: 120000, pidHint: hint(home.pid) })
    const k = attachKept(ki)
    kept.push(k)
    assert.deepEqual(nspid(ki.pid), [ki.pid, home.pid], 'its home pid in its namespace, not the hint')
    let out = ''
    k.stdout?.on('data', (b: Buffer) => { out += b.toString() })
    k.stdin?.write('ids?\n')
    await waitFor(() => said(out).length === 1, 30000, 'the restored guest saying its ids')
    assert.deepEqual(said(out)[0], home)
    process.kill(ki.pid, 'SIGKILL')
    await k.exited
  })
}

test('a stub made ahead joins the time namespace its image needs: clock "continue" hides a 1.5 s pause', async () => {
  const bin = lab.compile('sleeper')
  const s = lab.start(bin, ['8', '100', '1000', '0'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 3, 5000, 'sleeper output')
  const img = lab.path('hint-clock.img')
  await dump(s.pid, img)
  await s.exited
  await new Promise(resolve => setTimeout(resolve, 1500)) // the time a move takes between hosts
  const ki = await restoreKept(img, { guest: true, leaseMs: 120000, pidHint: s.pid, clock: 'continue' })
  const k = attachKept(ki)
  kept.push(k)
  let out = ''
  k.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const st = await k.exited
  await waitFor(() => /clock (ok|jump)/.test(out), 10000, 'the sleeper\'s verdict on its clock')
  assert.match(out, /clock ok\n$/, 'the pause is invisible: the stub is in the time namespace')
  assert.equal(st.code, 0)
})
