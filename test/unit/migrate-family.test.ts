// Process families (src/migrate/family.ts) with the engine stubbed: inherited discipline (the scan
// of children, from a fake /proc too), a guest's family call on its node (asks home, again while it
// waits, fails when home says so) and at home (the process is brought home; when it cannot come,
// the node is told).
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { constants, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Descendants, deniedErrno, familyPending, liveChildren, returnWhenDone, superviseFamily } from '../../src/migrate/family.js'
import { GuestSide } from '../../src/migrate/guest.js'
import { Home } from '../../src/migrate/home.js'
import { MemLink } from '../../src/migrate/memlink.js'
import type { Link } from '../../src/migrate/link.js'
import type { Readable } from 'node:stream'
import type { GuestProcess, RawSource } from '../../src/migrate/engine.js'
import type { FamilyCalls } from '../../src/ppm/ppm.js'
import { Peer, StubEngine, StubRestored, cluster, until } from './migrate-fixture.js'
import { FAMILY_DENY_AFTER } from '../../src/config.js'

let keep: NodeJS.Timeout
before(() => { keep = setInterval(() => {}, 1000) })
after(() => clearInterval(keep))

/** A restored process whose family calls are the test's: `call` makes one, `denied` records the answers. */
class FamilyRestored extends StubRestored {
  readonly calls = new EventEmitter()
  readonly denied: Array<[string, number]> = []
  readonly family = Object.assign(this.calls, { deny: (id: string, errno: number) => { this.denied.push([id, errno]) } }) as unknown as FamilyCalls
  call (id: string, call: string): void { this.calls.emit('call', { id, call }) }
}

class FamilyEngine extends StubEngine {
  gone = new Set<number>()
  override alive (pid?: number): boolean { return !this.gone.has(pid ?? 0) }
  override async restore (src: Readable | RawSource, opts: { hold: boolean, family?: boolean, leaseMs: number }): Promise<GuestProcess> {
    const r = await super.restore(src as Readable, opts) as StubRestored
    const f = new FamilyRestored(r.pid, r.image)
    f.running = r.running
    this.restoredProcs[this.restoredProcs.length - 1] = f
    return f
  }
}

function homeOf (engine: StubEngine, peers: Array<Peer & { node: number }> = []): Home {
  return new Home({
    cluster: cluster(1),
    engine,
    bandwidth: new Map(),
    moved: () => {},
    dial: async (node): Promise<Link> => {
      const [mine, theirs] = MemLink.pair(`node ${node}`, 'node 1')
      peers.push(Object.assign(new Peer(theirs), { node }))
      return mine
    }
  })
}

test('children of a process under discipline come under it with its lock and decay hints, grandchildren too', () => {
  const engine = new FamilyEngine()
  const home = homeOf(engine)
  const tree: Record<number, number[]> = { 100: [101, 102], 101: [103], 102: [], 103: [], 200: [201] }
  const d = new Descendants(home, pid => tree[pid] ?? [])
  const top = home.adopt(100)
  top.lock = false
  top.decay.rate = 'fast'
  top.decay.kind = 'cpujob'
  top.decay.perMille = 500 // (mosrun -d 500 -t 7)
  top.decay.interval = 7
  assert.deepEqual(d.scan().sort(), [101, 102, 103])
  for (const pid of [101, 102, 103]) {
    const c = home.procs.get(pid)
    assert.ok(c, `${pid} is under discipline`)
    assert.equal(c.lock, false)
    assert.deepEqual([c.decay.rate, c.decay.kind, c.decay.perMille, c.decay.interval], ['fast', 'cpujob', 500, 7])
  }
  assert.equal(home.procs.has(201), false, 'children of a process not under discipline are left alone')
  // a new child later; one that is gone before it is adopted is skipped; a locked parent's is locked
  const locked = home.adopt(102)
  locked.lock = true
  tree[102] = [104, 105]
  engine.gone.add(105)
  assert.deepEqual(d.scan(), [104])
  assert.equal(home.procs.get(104)?.lock, true)
  assert.equal(d.adopted, 4)
  assert.equal(d.scan().length, 0, 'nothing new')
  assert.equal(d.lastScanned, 5)
})

test('liveChildren reads every thread\'s children and leaves zombies out', () => {
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-family-'))
  try {
    const stat = (pid: number, state: string): void => { mkdirSync(join(root, String(pid)), { recursive: true }); writeFileSync(join(root, String(pid), 'stat'), `${pid} (a (b) c) ${state} 1 2 3\n`) }
    mkdirSync(join(root, '10', 'task', '10'), { recursive: true })
    mkdirSync(join(root, '10', 'task', '11'), { recursive: true })
    writeFileSync(join(root, '10', 'task', '10', 'children'), '20 21 ')
    writeFileSync(join(root, '10', 'task', '11', 'children'), '22 ')
    stat(20, 'R')
    stat(21, 'Z')
    stat(22, 'S')
    assert.deepEqual(liveChildren(10, root).sort(), [20, 22])
    assert.deepEqual(liveChildren(99, root), [], 'a process that is gone has none')
  } finally { rmSync(root, { recursive: true, force: true }) }
})

test('a family call that cannot be made fails as the call would: fork EAGAIN, wait ECHILD, setpgid EPERM, kill ESRCH', () => {
  const e = constants.errno
  assert.deepEqual(['fork', 'vfork', 'clone', 'wait4', 'waitid', 'setpgid', 'setsid', 'kill', 'tgkill', 'pidfd_open'].map(deniedErrno),
    [e.EAGAIN, e.EAGAIN, e.EAGAIN, e.ECHILD, e.ECHILD, e.EPERM, e.EPERM, e.ESRCH, e.ESRCH, e.ESRCH])
})

/** Node 2's guest side with one guest from home (the test) running; returns both ends. */
async function guestRunning (): Promise<{ side: GuestSide, engine: FamilyEngine, home: Peer, r: FamilyRestored }> {
  const engine = new FamilyEngine()
  const side = new GuestSide({ cluster: cluster(2), engine, hostInfo: async () => 'h', dial: async () => { throw new Error('no dialing here') } })
  const [homeEnd, nodeEnd] = MemLink.pair('node 2', 'node 1')
  const home = new Peer(homeEnd)
  side.accept(nodeEnd)
  await homeEnd.send({ t: 'migrate', home: 1, pid: 500, name: 'forker', bytes: 1 << 20, stdin: 'none' })
  await home.next('accept')
  await homeEnd.send({ t: 'image-end' })
  await home.next('running')
  await homeEnd.send({ t: 'run' })
  return { side, engine, home, r: engine.restoredProcs[0] as FamilyRestored }
}

test('guest side: a family call asks home to take the process back; home cannot, FAMILY_DENY_AFTER times: the call fails with its errno', async () => {
  const { side, home, r } = await guestRunning()
  const g = side.guests.get(r.pid)
  assert.ok(g)
  r.call('77', 'fork')
  assert.deepEqual(await home.next('family'), { t: 'family', call: 'fork' })
  assert.equal(familyPending(g), 'fork')
  // failed trips home short of the bound (a temporary cause, say): it waits on, asked again
  for (let i = 1; i < FAMILY_DENY_AFTER; i++) await home.link.send({ t: 'family-failed', reason: 'unread stdin' })
  await home.link.send({ t: 'stat?' })
  await home.next('stat') // (the failures before it are handled)
  assert.deepEqual(r.denied, [], 'not answered yet')
  assert.equal(familyPending(g), 'fork')
  await home.link.send({ t: 'family-failed', reason: 'node 1 could not restore it' })
  await until(() => r.denied.length === 1, 'the call denied')
  assert.deepEqual(r.denied, [['77', constants.errno.EAGAIN]])
  assert.equal(familyPending(g), undefined)
  // two threads wait in family calls: each is answered as it would fail
  r.call('78', 'wait4')
  r.call('79', 'fork')
  await home.next('family')
  await home.next('family')
  assert.equal(familyPending(g), 'fork')
  for (let i = 0; i < FAMILY_DENY_AFTER; i++) await home.link.send({ t: 'family-failed', reason: 'x' })
  await until(() => r.denied.length === 3, 'both calls denied')
  assert.deepEqual(r.denied.slice(1), [['78', constants.errno.ECHILD], ['79', constants.errno.EAGAIN]])
  assert.equal(familyPending(g), undefined)
  r.finish({ code: 0, signal: null })
  await home.next('exit')
})

test('guest side: asked again while it waits, not any more once it leaves or ends', async () => {
  const engine = new FamilyEngine()
  const r = new FamilyRestored(9, Buffer.alloc(0))
  const [a, b] = MemLink.pair()
  const home = new Peer(b)
  const g = { pid: 9, homePid: 500, leaving: false, conn: a } as unknown as Parameters<typeof superviseFamily>[0]
  let current = true
  superviseFamily(g, r, () => current, 20)
  r.call('1', 'kill')
  await home.next('family')
  await home.next('family') // again after 20 ms
  ;(g as { leaving: boolean }).leaving = true
  const n = home.msgs.length
  await new Promise(resolve => setTimeout(resolve, 80))
  assert.equal(home.msgs.length, n, 'not while it leaves')
  ;(g as { leaving: boolean }).leaving = false
  await home.next('family')
  current = false
  await new Promise(resolve => setTimeout(resolve, 80))
  home.msgs.length = 0
  await new Promise(resolve => setTimeout(resolve, 80))
  assert.equal(home.msgs.length, 0, 'not once it is no longer a guest here')
  assert.equal(engine.calls.length, 0)
})

/** The test's node takes the move offered on `peer`: accepts, reads the image, runs it. */
async function acceptMove (peer: Peer): Promise<void> {
  await peer.next('migrate')
  await peer.link.send({ t: 'accept', hostinfo: '' })
  await peer.next('image-end')
  peer.image()
  await peer.link.send({ t: 'running', pid: 555, bytes: 1, ms: 1 })
  await peer.next('run')
}

/** PID moved to node 2 (the test's), running there. */
async function awayOnNode2 (): Promise<{ home: Home, engine: FamilyEngine, peer: Peer }> {
  const engine = new FamilyEngine()
  const peers: Array<Peer & { node: number }> = []
  const home = homeOf(engine, peers)
  const done = home.requestMove(31337, 2)
  await until(() => peers.length === 1, 'an offer')
  const peer = peers[0]
  await acceptMove(peer)
  await done
  return { home, engine, peer }
}

test('home side: a family call brings the process home, where the call is made again', async () => {
  const { home, engine, peer } = await awayOnNode2()
  const p = home.procs.get(31337)
  assert.ok(p)
  assert.equal(p.where, 2)
  await peer.link.send({ t: 'family', call: 'fork' })
  await peer.next('gohome')
  assert.equal(p.where, 'migrating')
  // asked again meanwhile: nothing more happens
  await peer.link.send({ t: 'family', call: 'fork' })
  await peer.link.send({ t: 'image-start' })
  await peer.link.frame('I', Buffer.from('IMAGE-AT-THE-FORK'))
  await peer.link.send({ t: 'image-end' })
  await peer.next('home-ok')
  await until(() => p.where === 'home', 'home')
  assert.deepEqual(engine.deputies[0].restored, [Buffer.from('IMAGE-AT-THE-FORK')], 'restored into its original')
  assert.equal(p.nmigs, 2)
  assert.ok(p.decay.cleared > 0, 'its CPU statistics start afresh at home')
  assert.equal(peer.msgs.filter(m => m.t === 'gohome' || m.t === 'family-failed').length, 0)
})

test('home side: a process that cannot come home (its node cannot stop it) has its call fail', async () => {
  const { home, peer } = await awayOnNode2()
  const p = home.procs.get(31337)
  assert.ok(p)
  await peer.link.send({ t: 'family', call: 'wait4' })
  await peer.next('gohome')
  await peer.link.send({ t: 'stay', reason: 'the dump failed' })
  const m = await peer.next('family-failed')
  assert.match(m.reason, /the dump failed/)
  assert.equal(p.where, 2)
})

test('a locked process brought home for a fork goes back once done with family calls; its locked children go there too', async () => {
  const { home, engine, peer } = await awayOnNode2()
  const p = home.procs.get(31337)
  assert.ok(p)
  const tree: Record<number, number[]> = {}
  const scanner = new Descendants(home, pid => tree[pid] ?? [], 60_000) // scans when told
  await peer.link.send({ t: 'family', call: 'clone' })
  await peer.next('gohome')
  await peer.link.send({ t: 'image-start' })
  await peer.link.send({ t: 'image-end' })
  await peer.next('home-ok')
  await until(() => p.where === 'home', 'home')
  // home for its fork (made again there), it then waits for the child (wait4: a family call), then works
  p.lock = true
  tree[31337] = [4000]
  // its main thread works, another waits for the child (wait4: a family call)
  let lines = ['running', '61 0xffffffff 0x7ffc 0x0 0x0']
  returnWhenDone(home, p, 2, 10, () => lines)
  const child = home.procs.get(4000)
  assert.ok(child, 'its child is adopted at once')
  assert.equal(child.lock, true)
  assert.equal(child.where, 'migrating', 'and sent where its parent was')
  await new Promise(resolve => setTimeout(resolve, 60))
  assert.equal(p.where, 'home', 'a thread waiting for its child: it stays home')
  lines = ['running', 'running']
  await until(() => p.where === 'migrating', 'sent back to node 2')
  assert.equal(scanner.adopted, 1)
  void engine
})

test('a locked child whose move to its parent\'s node fails is sent again; so is a parent whose move back fails, and a child it forks meanwhile goes there too', async () => {
  const engine = new FamilyEngine()
  const peers: Array<Peer & { node: number }> = []
  const home = homeOf(engine, peers)
  const tree: Record<number, number[]> = {}
  const scanner = new Descendants(home, pid => tree[pid] ?? [], 60_000) // scans when told
  const p = home.adopt(31337)
  p.lock = true
  tree[31337] = [4002]
  returnWhenDone(home, p, 2, 10, () => ['running'])
  const child = home.procs.get(4002)
  assert.ok(child, 'its child is adopted')
  // the child's offer (the first dial) and the parent's are refused: both stay home for now
  await until(() => peers.length === 2, 'two offers')
  for (const peer of peers) {
    await peer.next('migrate')
    await peer.link.send({ t: 'refuse', reason: 'busy' })
  }
  await until(() => p.where === 'home' && child.where === 'home', 'both home after the refusals')
  // a child forked while the parent waits to try again: its parent's node is still known
  tree[31337] = [4002, 4003]
  scanner.scan()
  const late = home.procs.get(4003)
  assert.ok(late, 'the late child is adopted')
  assert.equal(late.where, 'migrating', 'and sent to node 2 too')
  // tried again (FAMILY_RETRY_MS later): accepted this time
  await until(() => peers.length === 5, 'the late child\'s offer and two new ones', 5000)
  for (const peer of peers.slice(2)) await acceptMove(peer)
  await until(() => p.where === 2 && child.where === 2 && late.where === 2, 'all three on node 2')
  assert.equal(scanner.adopted, 2)
})

test('a locked process called home for a fork: a child it forks as soon as it runs there, before the move is seen over, is sent to its node', async () => {
  const { home, peer } = await awayOnNode2()
  const p = home.procs.get(31337)
  assert.ok(p)
  p.lock = true
  const tree: Record<number, number[]> = {}
  const scanner = new Descendants(home, pid => tree[pid] ?? [], 60_000) // scans when told
  await peer.link.send({ t: 'family', call: 'fork' })
  await peer.next('gohome')
  assert.equal(p.where, 'migrating')
  tree[31337] = [4001] // (landed and forked; the scan runs before the move's end is handled)
  scanner.scan()
  const child = home.procs.get(4001)
  assert.ok(child, 'its child is adopted')
  assert.equal(child.lock, true)
  assert.equal(child.where, 'migrating', 'and sent to node 2, where its parent ran')
})
