// Guests in a pid namespace of their own (restore --guest, native/restore.c guest_pidns): the
// restored process and its threads see their home ids (getpid, gettid) while the host knows them
// by other ids (NSpid shows both levels); an image dumped from such a guest keeps its home ids, so
// it comes home (or moves on) under them; the namespace's init, a reaper, leaves with the guest.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { dump, info, restoreKept } from '../../src/ppm/ppm.js'
import { attachKept, type Kept } from '../../src/ppm/keeper.js'
import { Lab, waitFor } from './harness.js'

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

test('a guest runs in its own pid namespace under its home pid and tids; its image keeps them', async () => {
  const bin = lab.compile('nsids')
  const s = lab.start(bin, [], ['pipe', 'pipe', 'pipe'])
  await waitFor(() => said(s.out).length === 1, 30000, 'the subject saying its ids')
  const home = said(s.out)[0]
  assert.equal(home.pid, s.pid)
  assert.deepEqual(nspid(s.pid), [s.pid], 'the original is in the host pid namespace')
  const img = lab.path('guest.img')
  await dump(s.pid, img)
  await waitFor(() => s.child.exitCode !== null || s.child.signalCode !== null, 30000, 'the original gone after its dump')

  const ki = await restoreKept(img, { guest: true, leaseMs: 120000 })
  const k = attachKept(ki)
  kept.push(k)
  let out = ''
  k.stdout?.on('data', (b: Buffer) => { out += b.toString() })
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
  await waitFor(() => said(out).length === 1, 30000, 'the restored guest saying its ids')
  assert.deepEqual(said(out)[0], home, 'getpid() and each thread\'s gettid() are its home ids')

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
