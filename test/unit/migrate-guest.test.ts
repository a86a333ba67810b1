// The guest side's state machine (src/migrate/guest.ts) against a home played by the test over an
// in-memory connection, with the engine stubbed (no process is touched).
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { GuestSide } from '../../src/migrate/guest.js'
import { MemLink } from '../../src/migrate/memlink.js'
import type { Link } from '../../src/migrate/link.js'
import type { Cluster } from '../../src/migrate/cluster.js'
import { Peer, StubEngine, cluster, until } from './migrate-fixture.js'

let keep: NodeJS.Timeout
before(() => { keep = setInterval(() => {}, 1000) })
after(() => clearInterval(keep))

const OFFER = { t: 'migrate', home: 1, pid: 500, name: 'subject', bytes: 1 << 20, stdin: 'none', age: 4, decay: 'fast', kind: 'iojob' } as const

/** Node 2's guest side; `dialed` are the connections it opened (to M), played by the test too. */
function setup (over: Partial<Cluster> = {}): { side: GuestSide, engine: StubEngine, dialed: Array<Peer & { node: number }> } {
  const engine = new StubEngine()
  const dialed: Array<Peer & { node: number }> = []
  const side = new GuestSide({
    cluster: cluster(2, over),
    engine,
    hostInfo: async () => 'node-2-host',
    dial: async (node): Promise<Link> => {
      const [mine, theirs] = MemLink.pair(`node ${node}`, 'node 2')
      dialed.push(Object.assign(new Peer(theirs), { node }))
      return mine
    }
  })
  return { side, engine, dialed }
}

/** Home (the test) offers a process to the guest side and sends its image. */
async function arrive (s: ReturnType<typeof setup>, image = Buffer.from('an image '.repeat(1000))): Promise<Peer> {
  const [homeEnd, nodeEnd] = MemLink.pair('node 2', 'node 1')
  const home = new Peer(homeEnd)
  s.side.accept(nodeEnd)
  await homeEnd.send(OFFER)
  assert.deepEqual(await home.next('accept'), { t: 'accept', hostinfo: 'node-2-host' })
  await homeEnd.frame('I', image.subarray(0, 100))
  await homeEnd.frame('I', image.subarray(100))
  await homeEnd.send({ t: 'image-end' })
  const running = await home.next('running')
  assert.equal(running.pid, 4242)
  assert.equal(running.bytes, image.length)
  assert.deepEqual(s.engine.restoredProcs[0].image, image, 'the engine restored the image home sent')
  assert.equal(s.engine.restoredProcs[0].running, false, 'held until home commits the move')
  await homeEnd.send({ t: 'run' })
  await until(() => s.engine.restoredProcs[0].running, 'the process let run')
  return home
}

test('an accepted guest: restored, runs, its output and end go home; signals from home reach it', async () => {
  const s = setup()
  const home = await arrive(s)
  const g = s.side.guests.get(4242)
  assert.ok(g)
  assert.equal(g.home, 1)
  assert.equal(g.homePid, 500)
  assert.equal(g.age, 4)
  assert.deepEqual(g.decay, { rate: 'fast', kind: 'iojob', cleared: 0 })
  await home.link.send({ t: 'signal', sig: 15 })
  await home.link.send({ t: 'hint', hint: 'cpujob' })
  await until(() => s.engine.signals.length === 1 && g.decay.kind === 'cpujob', 'the signal and the hint')
  assert.deepEqual(s.engine.signals, [[4242, 15]])
  const r = s.engine.restoredProcs[0]
  r.stdout.write('hello\n')
  r.stderr.write('oops\n')
  await home.until(() => home.frames.length === 2, 'the output')
  assert.deepEqual(home.frames.map(([t, d]) => `${t}:${d.toString()}`), ['O:hello\n', 'E:oops\n'])
  r.finish({ code: 3, signal: null })
  assert.deepEqual(await home.next('exit'), { t: 'exit', code: 3, signal: null })
  await home.until(() => home.closed, 'the connection closed')
  assert.equal(s.side.guests.size, 0)
})

test('refusals: a blocked node, an unknown home, not enough memory; nothing is restored', async () => {
  const cases: Array<[Partial<Cluster>, number, RegExp]> = [
    [{ blocked: true }, 8 * 2 ** 30, /blocked/],
    [{ addressOf: () => undefined }, 8 * 2 ** 30, /unknown home node 1/],
    [{}, 32 * 2 ** 20, /not enough memory \(1 MiB wanted, 32 MiB available\)/]
  ]
  for (const [over, free, re] of cases) {
    const s = setup(over)
    s.engine.free = free
    const [homeEnd, nodeEnd] = MemLink.pair()
    const home = new Peer(homeEnd)
    s.side.accept(nodeEnd)
    await homeEnd.send(OFFER)
    const m = await home.next('refuse')
    assert.match(m.reason, re)
    await home.until(() => home.closed, 'the connection closed')
    assert.equal(s.engine.restoredProcs.length, 0)
  }
})

test('a first message that is no offer gets an error; a malformed one is dropped', async () => {
  const s = setup()
  const [homeEnd, nodeEnd] = MemLink.pair()
  const home = new Peer(homeEnd)
  s.side.accept(nodeEnd)
  homeEnd.raw(Buffer.from('{"t":"migrate","home":"1"}'))
  await homeEnd.send({ t: 'image', ticket: 'nobody-waits-for-this' })
  assert.deepEqual(await home.next('error'), { t: 'error', reason: 'unexpected image' })
  assert.equal(nodeEnd.dropped, 1)
  await home.until(() => home.closed, 'the connection closed')
})

test('a restore that fails: failed goes home with the reason, no guest', async () => {
  const s = setup()
  s.engine.failRestore = 'bad image'
  const [homeEnd, nodeEnd] = MemLink.pair()
  const home = new Peer(homeEnd)
  s.side.accept(nodeEnd)
  await homeEnd.send(OFFER)
  await home.next('accept')
  await homeEnd.send({ t: 'image-end' })
  assert.deepEqual(await home.next('failed'), { t: 'failed', reason: 'bad image' })
  assert.equal(s.side.guests.size, 0)
})

test('the connection to home closes: the guest is killed and forgotten', async () => {
  const s = setup()
  const home = await arrive(s)
  home.link.close()
  await until(() => s.side.guests.size === 0, 'the guest forgotten')
  assert.deepEqual(s.engine.signals, [[4242, 'SIGKILL']])
})

test('gohome: the guest is dumped and its image streamed home; home-ok ends it here', async () => {
  const s = setup()
  const home = await arrive(s)
  const r = s.engine.restoredProcs[0]
  s.engine.onDump = () => { r.stdout.end(); r.stderr.end() } // the dumped process is gone: its output ends
  await home.link.send({ t: 'gohome' })
  await home.next('image-start')
  await home.next('image-end')
  assert.deepEqual(home.image(), s.engine.image)
  await home.link.send({ t: 'home-ok' })
  await home.until(() => home.closed, 'the connection closed')
  assert.equal(s.side.guests.size, 0)
  assert.deepEqual(s.engine.signals, [], 'nothing killed')
})

test('expel whose dump fails: home hears leaving, then stay; the guest runs on here', async () => {
  const s = setup()
  const home = await arrive(s)
  s.engine.failDump = 'process has child processes'
  const g = s.side.guests.get(4242)
  assert.ok(g)
  const expel = s.side.expelAll()
  await home.next('leaving')
  await home.link.send({ t: 'leaving-ok' })
  assert.deepEqual(await home.next('stay'), { t: 'stay', reason: 'process has child processes' })
  await expel
  assert.equal(g.leaving, false)
  assert.equal(s.side.guests.get(4242), g)
})

test('sendto: the image goes to M with the ticket; home-ok ends it here', async () => {
  const s = setup()
  const home = await arrive(s)
  const r = s.engine.restoredProcs[0]
  s.engine.onDump = () => { r.stdout.end(); r.stderr.end() }
  await home.link.send({ t: 'sendto', node: 3, ticket: 't-123', hostinfo: 'node-3-host' })
  await until(() => s.dialed.length === 1, 'a connection to M')
  const m = s.dialed[0]
  assert.equal(m.node, 3)
  assert.deepEqual(await m.next('image'), { t: 'image', ticket: 't-123' })
  await m.next('image-end')
  assert.deepEqual(m.image(), s.engine.image)
  assert.deepEqual(await home.next('sent'), { t: 'sent', bytes: s.engine.image.length, utime: 7, stime: 2 })
  assert.ok(s.engine.calls.includes('dump 4242 node-3-host'))
  await home.link.send({ t: 'home-ok' })
  await home.until(() => home.closed, 'the connection closed')
  assert.equal(s.side.guests.size, 0)
})

test('gohome that home cannot restore (home-failed): it runs here again on the same connection, still a guest', async () => {
  const s = setup()
  const home = await arrive(s)
  const r = s.engine.restoredProcs[0]
  s.engine.onDump = () => { r.stdout.end(); r.stderr.end() }
  await home.link.send({ t: 'gohome' })
  await home.next('image-start')
  await home.next('image-end')
  await home.link.send({ t: 'home-failed', reason: 'reopening fd 1: Permission denied' })
  assert.deepEqual(await home.next('resumed'), { t: 'resumed', pid: 4243 })
  assert.deepEqual([...s.side.guests.keys()], [4243], 'listed under its new pid')
  assert.deepEqual(s.engine.restoredProcs[1].image, s.engine.image, 'from the image it sent')
  // still relayed: signals reach the new process, its end goes home
  await home.link.send({ t: 'signal', sig: 15 })
  await until(() => s.engine.signals.length === 1, 'the signal')
  assert.deepEqual(s.engine.signals, [[4243, 15]])
  s.engine.restoredProcs[1].finish({ code: null, signal: 15 })
  assert.deepEqual(await home.next('exit'), { t: 'exit', code: null, signal: 15 })
  assert.equal(s.side.guests.size, 0)
})

test('a restored process is held until home commits the move; if the connection breaks first it is removed, never run', async () => {
  const s = setup()
  const [homeEnd, nodeEnd] = MemLink.pair('node 2', 'node 1')
  const home = new Peer(homeEnd)
  s.side.accept(nodeEnd)
  await homeEnd.send(OFFER)
  await home.next('accept')
  await homeEnd.frame('I', Buffer.from('image'))
  await homeEnd.send({ t: 'image-end' })
  await home.next('running')
  const r = s.engine.restoredProcs[0]
  assert.equal(r.running, false)
  homeEnd.close() // `run` never comes
  await until(() => s.side.guests.size === 0, 'the guest forgotten')
  assert.deepEqual(s.engine.signals, [[4242, 'SIGKILL']])
  assert.equal(r.running, false, 'it never ran')
})
