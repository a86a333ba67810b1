// The guest side's state machine (src/migrate/guest.ts) against a home played by the test over an
// in-memory connection, with the engine stubbed (no process is touched).
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { GuestSide } from '../../src/migrate/guest.js'
import { MemLink } from '../../src/migrate/memlink.js'
import type { Link } from '../../src/migrate/link.js'
import type { Cluster } from '../../src/migrate/cluster.js'
import { Peer, StubEngine, StubRestored, cluster, until } from './migrate-fixture.js'
import { GuestStates } from '../../src/migrate/state.js'
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

let keep: NodeJS.Timeout
before(() => { keep = setInterval(() => {}, 1000) })
after(() => clearInterval(keep))

const OFFER = { t: 'migrate', home: 1, pid: 500, name: 'subject', bytes: 1 << 20, stdin: 'none', age: 4, decay: 'fast', kind: 'iojob' } as const

/** Node 2's guest side; `dialed` are the connections it opened (to M), played by the test too
 * (`onDial` sees each before the side gets it). */
function setup (over: Partial<Cluster> = {}, onDial?: (mine: Link, n: number) => Promise<void>): { side: GuestSide, engine: StubEngine, dialed: Array<Peer & { node: number }> } {
  const engine = new StubEngine()
  const dialed: Array<Peer & { node: number }> = []
  const side = new GuestSide({
    cluster: cluster(2, over),
    engine,
    hostInfo: async () => 'node-2-host',
    dial: async (node): Promise<Link> => {
      const [mine, theirs] = MemLink.pair(`node ${node}`, 'node 2')
      dialed.push(Object.assign(new Peer(theirs), { node }))
      await onDial?.(mine, dialed.length)
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
  // one with its siginfo goes through its keeper, which queues it with that siginfo
  await home.link.send({ t: 'signal', sig: 34, code: -1, from: 77, uid: 1000, value: '-42' })
  await until(() => r.queued.length === 1, 'the queued signal')
  assert.deepEqual(r.queued, [[34, { code: -1, pid: 77, uid: 1000, value: '-42' }]])
  assert.deepEqual(s.engine.signals, [[4242, 15]], 'not as a plain signal too')
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

test('the connection to home closes: the guest rejoins; home refusing it kills it', async () => {
  const s = setup()
  const home = await arrive(s)
  home.link.close()
  await until(() => s.dialed.length === 1, 'a connection to home')
  const back = s.dialed[0]
  assert.equal(back.node, 1)
  assert.deepEqual(await back.next('rejoin'), { t: 'rejoin', home: 1, pid: 500, guest: 4242, node: 2 })
  assert.equal(s.side.guests.size, 1, 'listed while it rejoins')
  await back.link.send({ t: 'refuse', reason: 'no process 500 away' })
  await until(() => s.side.guests.size === 0, 'the guest forgotten')
  assert.deepEqual(s.engine.signals, [[4242, 'SIGKILL']])
})

test('the connection to home closes and home takes the guest back: output written meanwhile and its end go over the new connection', async () => {
  const s = setup()
  const home = await arrive(s)
  const r = s.engine.restoredProcs[0]
  r.stdout.write('before\n')
  await home.until(() => home.frames.length === 1, 'output')
  home.link.close()
  await until(() => s.dialed.length === 1, 'a connection to home')
  const back = s.dialed[0]
  await back.next('rejoin')
  r.stdout.write('while away 1\n')
  r.stderr.write('while away 2\n')
  r.stdout.write('while away 3\n')
  // home has 'bef' of what went over the old connection: the rest of it is sent again, once
  await back.link.send({ t: 'rejoin-ok', got: [[1, 3]] })
  await back.until(() => back.frames.length === 4, 'the output kept meanwhile')
  const of = (t: string): string => back.frames.filter(f => f[0] === t).map(f => f[1].toString()).join('')
  assert.equal(of('O'), 'ore\nwhile away 1\nwhile away 3\n', 'stdout in order, from where home is')
  assert.equal(of('E'), 'while away 2\n')
  // home acknowledges: the node keeps only what follows
  const g = [...s.side.guests.values()][0]
  await back.link.send({ t: 'ack', got: [[1, 33], [2, 13]] })
  await until(() => g.out.log.kept === 0, 'acknowledged output dropped')
  await back.link.send({ t: 'signal', sig: 10 })
  await until(() => s.engine.signals.length === 1, 'the signal')
  assert.deepEqual(s.engine.signals, [[4242, 10]])
  r.finish({ code: 3, signal: null })
  assert.deepEqual(await back.next('exit'), { t: 'exit', code: 3, signal: null })
  assert.equal(s.side.guests.size, 0)
})

test('a rejoin refused with home\'s count (it runs on another node now): the output home lacks goes first, then the guest is killed', async () => {
  const s = setup()
  const home = await arrive(s)
  const r = s.engine.restoredProcs[0]
  r.stdout.write('abc\n')
  await home.until(() => home.frames.length === 1, 'output')
  home.link.close()
  await until(() => s.dialed.length === 1, 'a connection to home')
  const back = s.dialed[0]
  await back.next('rejoin')
  await back.link.send({ t: 'refuse', reason: 'process 500 runs on node 3', got: [[1, 2]] })
  await back.until(() => back.closed, 'closed')
  assert.deepEqual(back.frames.map(([t, d]) => `${t}${d.toString()}`), ['Oc\n'])
  await until(() => s.side.guests.size === 0, 'the guest forgotten')
  assert.deepEqual(s.engine.signals, [[4242, 'SIGKILL']])
})

test('a rejoin whose new connection closes before it can ask: the daemon goes on (no unhandled rejection) and the next try rejoins', async () => {
  const unhandled: unknown[] = []
  const note = (e: unknown): void => { unhandled.push(e) }
  process.on('unhandledRejection', note)
  try {
    // the first connection home is closed by the time the guest side has it: its rejoin cannot be sent
    const s = setup({}, async (mine, n) => { if (n === 1) { mine.close(); await new Promise(resolve => setTimeout(resolve, 5)) } })
    s.side.rejoinEveryMs = 20
    const home = await arrive(s)
    home.link.close()
    await until(() => s.dialed.length === 2, 'a second try')
    await s.dialed[1].next('rejoin')
    await s.dialed[1].link.send({ t: 'rejoin-ok' })
    await until(() => [...s.side.guests.values()][0]?.conn.closed === false, 'rejoined')
    await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(unhandled, [], 'no promise left rejected without a handler')
  } finally { process.off('unhandledRejection', note) }
})

test('a guest whose home cannot be reached for the guest lease is killed', async () => {
  const s = setup()
  s.side.leaseMs = 300
  s.side.rejoinEveryMs = 20
  const home = await arrive(s)
  home.link.close()
  const refused = setInterval(() => { for (const d of s.dialed) d.link.close() }, 5) // its home is down
  await until(() => s.side.guests.size === 0, 'the guest given up', 3000).finally(() => clearInterval(refused))
  assert.deepEqual(s.engine.signals, [[4242, 'SIGKILL']])
  assert.ok(s.dialed.length >= 2, 'it tried again')
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

test('gohome or sendto when the state dir\'s disk has no room for the copy: stay with the reason, nothing dumped; the guest runs on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpc-guest-space-'))
  try {
    const s = setup()
    s.side.states = new GuestStates(dir)
    const home = await arrive(s)
    const big = 2 ** 52 // more than any disk has free
    s.engine.psInfo = () => ({ utime: 0, stime: 0, state: 'S', rss: big, vsize: big, cmdline: '' })
    await home.link.send({ t: 'gohome' })
    assert.match((await home.next('stay')).reason, /no space left on the disk of .*hpc-guest-space-.* MiB needed/)
    await home.link.send({ t: 'sendto', node: 3, ticket: 't', hostinfo: '' })
    assert.match((await home.next('stay')).reason, /no space left/)
    assert.ok(!s.engine.calls.some(c => c.startsWith('dump')), 'nothing dumped')
    assert.equal(s.side.guests.size, 1, 'it runs on here')
    assert.deepEqual(readdirSync(dir).filter(f => f.endsWith('.img')), [], 'no copy left')
  } finally { rmSync(dir, { recursive: true, force: true }) }
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

test('sendto whose connection to M fails after the process ended by itself: stay, and its end goes home (not taken for a dump)', async () => {
  let r: StubRestored | undefined
  // the process ends on its own while N dials M, and the dial then fails (a handshake timed out)
  const s = setup({}, async () => {
    r?.finish({ code: 5, signal: null })
    await r?.exited
    throw new Error('handshake timed out')
  })
  const home = await arrive(s)
  r = s.engine.restoredProcs[0]
  await home.link.send({ t: 'sendto', node: 3, ticket: 't-9', hostinfo: '' })
  assert.deepEqual(await home.next('stay'), { t: 'stay', reason: 'handshake timed out' })
  assert.deepEqual(await home.next('exit'), { t: 'exit', code: 5, signal: null })
  assert.ok(!s.engine.calls.some(c => c.startsWith('dump')), 'nothing dumped')
  assert.ok(!home.msgs.some(m => m.t === 'sent'), 'never said sent')
})

test('gohome whose dump fails after the process ended and home\'s connection broke: it rejoins home, and its end goes over the new connection', async () => {
  const s = setup()
  const home = await arrive(s)
  const r = s.engine.restoredProcs[0]
  const g = s.side.guests.get(4242)
  assert.ok(g)
  s.engine.dump = async () => {
    home.link.close()
    r.finish({ code: 4, signal: null })
    await r.exited
    await until(() => g.conn.closed, 'the connection to home closed')
    throw new Error('no such process')
  }
  await home.link.send({ t: 'gohome' })
  await until(() => s.dialed.length === 1, 'a connection to home')
  const back = s.dialed[0]
  await back.next('rejoin')
  await back.link.send({ t: 'rejoin-ok', got: [] })
  assert.deepEqual(await back.next('exit'), { t: 'exit', code: 4, signal: null })
  await until(() => s.side.guests.size === 0, 'forgotten here')
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

test('gohome that home cannot restore: until the copy run again here has a record of its own, the leaving record and the copy stay on disk (a daemon dying then leaves its successor the copy), and the copy is held until its record is saved', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-guests-'))
  const at = mkdtempSync(join(tmpdir(), 'hpcfs-guests-crash-'))
  try {
    const s = setup()
    s.side.states = new GuestStates(dir)
    const home = await arrive(s)
    const r = s.engine.restoredProcs[0]
    s.engine.onDump = () => { r.stdout.end(); r.stderr.end(); r.finish({ code: null, signal: 9 }) }
    // the disk as a daemon dying at the end of the copy's restore would leave it
    const restore = s.engine.restore.bind(s.engine)
    s.engine.restore = async (src, opts) => {
      const p = await restore(src, opts)
      cpSync(dir, at, { recursive: true })
      const go = p.go.bind(p)
      p.go = async () => {
        assert.ok(readdirSync(dir).includes(`${p.pid}.json`), 'its record saved before it runs')
        await go()
      }
      return p
    }
    await home.link.send({ t: 'gohome' })
    await home.next('image-start')
    await home.next('image-end')
    await home.link.send({ t: 'home-failed', reason: 'test' })
    assert.deepEqual(await home.next('resumed'), { t: 'resumed', pid: 4243 })
    assert.equal(s.engine.calls.filter(c => c.startsWith('restore')).at(-1), `restore ${s.engine.image.length} held`, 'the copy restored held')
    assert.equal(s.engine.restoredProcs[1].running, true, 'then let run')
    assert.deepEqual(readdirSync(dir).sort(), ['4243.json', '4243.out'], 'the new record only: the old one and the copy are gone')
    // the successor of a daemon that died at that moment: the copy, restored held, rejoins home
    const t = setup()
    t.side.states = new GuestStates(at)
    await t.side.readopt()
    assert.deepEqual(t.engine.calls, [`restore ${s.engine.image.length} held`])
    assert.deepEqual(t.engine.restoredProcs[0].image, s.engine.image)
    await until(() => t.dialed.length === 1, 'a connection to home')
    assert.deepEqual(await t.dialed[0].next('rejoin'), { t: 'rejoin', home: 1, pid: 500, guest: 4242, node: 2 })
  } finally {
    rmSync(dir, { recursive: true, force: true })
    rmSync(at, { recursive: true, force: true })
  }
})

for (const how of ['sendto', 'gohome'] as const) {
  test(`${how} that fails at the other end (${how === 'sendto' ? 'resume' : 'home-failed'}) while the connection to home breaks during the restore of the copy: one copy runs, and it rejoins home`, async () => {
    const s = setup()
    s.side.rejoinEveryMs = 50
    const home = await arrive(s)
    const r = s.engine.restoredProcs[0]
    s.engine.onDump = () => { r.stdout.end(); r.stderr.end() }
    if (how === 'sendto') {
      await home.link.send({ t: 'sendto', node: 3, ticket: 't-9', hostinfo: '' })
      await until(() => s.dialed.length === 1, 'a connection to M')
      await s.dialed[0].next('image')
      await s.dialed[0].next('image-end')
      await home.next('sent')
    } else {
      await home.link.send({ t: 'gohome' })
      await home.next('image-start')
      await home.next('image-end')
    }
    // the copy's restore: home's connection has closed, here too, before it is done
    const here = s.side.guests.get(4242)?.conn
    assert.ok(here !== undefined)
    const restore = s.engine.restore.bind(s.engine)
    s.engine.restore = async (src, opts) => {
      const p = await restore(src, opts)
      home.link.close()
      await until(() => here.closed, 'closed on this side')
      return p
    }
    await home.link.send(how === 'sendto' ? { t: 'resume' } : { t: 'home-failed', reason: 'test' })
    const dials = how === 'sendto' ? 2 : 1
    await until(() => s.dialed.length === dials, 'the copy rejoins home', 5000)
    const back = s.dialed[dials - 1]
    assert.deepEqual(await back.next('rejoin'), { t: 'rejoin', home: 1, pid: 500, guest: 4243, node: 2 })
    await back.link.send({ t: 'rejoin-ok', got: [] })
    await until(() => { const g = s.side.guests.get(4243); return g !== undefined && !g.conn.closed && g.orphaned === 0 }, 'the copy back in touch with home')
    assert.equal(s.engine.restoredProcs.length, 2, 'one copy restored, not sent home nor restored again')
    assert.equal(s.engine.restoredProcs[1].running, true, 'it runs')
    assert.deepEqual([...s.side.guests.keys()], [4243])
  })
}

test('a restored process is held until home commits the move; if the connection breaks first home decides: refused, it is removed, never run', async () => {
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
  await until(() => s.dialed.length === 1, 'a connection to home')
  await s.dialed[0].next('rejoin')
  await s.dialed[0].link.send({ t: 'refuse', reason: 'process 500 runs at home' })
  await until(() => s.side.guests.size === 0, 'the guest forgotten')
  assert.deepEqual(s.engine.signals, [[4242, 'SIGKILL']])
  assert.equal(r.running, false, 'it never ran')
})

test('a held process whose connection broke after home committed the move runs once home takes it back', async () => {
  const s = setup()
  const [homeEnd, nodeEnd] = MemLink.pair('node 2', 'node 1')
  const home = new Peer(homeEnd)
  s.side.accept(nodeEnd)
  await homeEnd.send(OFFER)
  await home.next('accept')
  await homeEnd.send({ t: 'image-end' })
  await home.next('running')
  homeEnd.close() // home sent `run`, which never arrived
  await until(() => s.dialed.length === 1, 'a connection to home')
  await s.dialed[0].next('rejoin')
  await s.dialed[0].link.send({ t: 'rejoin-ok' })
  await until(() => s.engine.restoredProcs[0].running, 'it runs')
  assert.equal(s.side.guests.get(4242)?.held, false)
})

test('a daemon started again adopts the guests its predecessor left (records on disk), and they rejoin their home', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-guests-'))
  try {
    const s = setup()
    s.side.states = new GuestStates(dir)
    const home = await arrive(s)
    const r = s.engine.restoredProcs[0]
    assert.deepEqual(readdirSync(dir), ['4242.json', '4242.out'], 'its record, and its output spill file (empty)')
    s.side.close() // the daemon stops (or dies): its guest runs on under its keeper
    assert.equal(r.detached, true)
    assert.deepEqual(s.engine.signals, [], 'not killed')
    await home.until(() => home.closed, 'its connection closed')
    // the next daemon of node 2
    const t = setup()
    t.engine.kept.set(4242, r)
    t.side.states = new GuestStates(dir)
    await t.side.readopt()
    assert.deepEqual(t.engine.calls, ['adopt 4242'])
    const g = t.side.guests.get(4242)
    assert.ok(g)
    assert.deepEqual([g.home, g.homePid, g.decay.rate, g.decay.kind], [1, 500, 'fast', 'iojob'])
    await until(() => t.dialed.length === 1, 'a connection to home')
    assert.deepEqual(await t.dialed[0].next('rejoin'), { t: 'rejoin', home: 1, pid: 500, guest: 4242, node: 2 })
    await t.dialed[0].link.send({ t: 'rejoin-ok' })
    r.finish({ code: 0, signal: null })
    assert.deepEqual(await t.dialed[0].next('exit'), { t: 'exit', code: 0, signal: null })
    assert.deepEqual(readdirSync(dir), [], 'its record is gone with it')
    assert.equal(r.released, true, 'its keeper is told it may leave')
    // a record whose keeper is gone is dropped
    t.side.states.save({ pid: 77, home: 1, homePid: 9, stdin: 'none', age: 0, since: 0, decay: { rate: 'slow', kind: '' }, held: false, leaving: false, keeper: { pid: 77, helper: 99999, start: '', fds: { in: 5, out: 6, err: 7, ctl: 8, cmd: 9 } } })
    writeFileSync(join(dir, '78.json'), 'not a record')
    await t.side.readopt()
    assert.equal(t.side.guests.size, 0)
    assert.deepEqual(readdirSync(dir), [])
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('a daemon started again after its guest was dumped to leave: the copy it left is restored held and rejoins home (under a new pid or its own)', async () => {
  for (const pid of [5000, 4242]) await copyRejoins(pid)
})

async function copyRejoins (pid: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-guests-'))
  try {
    const t = setup()
    t.side.states = new GuestStates(dir)
    // what the dead daemon left: the record of a guest leaving, its process removed by the dump, its copy
    const gone = new StubRestored(4242, Buffer.alloc(0))
    gone.finish({ code: null, signal: 9 })
    await gone.exited
    t.engine.kept.set(4242, gone)
    t.side.states.save({ pid: 4242, home: 1, homePid: 500, stdin: 'none', age: 4, since: 1, decay: { rate: 'slow', kind: '' }, held: false, leaving: true, keeper: gone.keeper })
    writeFileSync(join(dir, '4242.img'), t.engine.image)
    t.engine.nextPid = pid
    await t.side.readopt()
    assert.deepEqual(t.engine.calls, ['adopt 4242', `restore ${t.engine.image.length} held`])
    assert.deepEqual([...t.side.guests.keys()], [pid])
    assert.deepEqual(readdirSync(dir), [`${pid}.json`, `${pid}.out`], 'the copy is used up; the record (and output spill file) is the new process\'s')
    await until(() => t.dialed.length === 1, 'a connection to home')
    assert.deepEqual(await t.dialed[0].next('rejoin'), { t: 'rejoin', home: 1, pid: 500, guest: pid, node: 2 })
    assert.equal(t.engine.restoredProcs[0].running, false, 'held until home has said')
    await t.dialed[0].link.send({ t: 'rejoin-ok' }) // home still had it on node 2: it runs
    await until(() => t.engine.restoredProcs[0].running, 'it runs')
  } finally { rmSync(dir, { recursive: true, force: true }) }
}

test('a guest record\'s relay ends must be fds above 2 and paths of its own keeper\'s fds', async () => {
  const { toRecord } = await import('../../src/migrate/state.js')
  const rec = (relays: unknown): unknown => ({ pid: 77, home: 1, homePid: 9, stdin: 'none', age: 0, since: 0, decay: { rate: 'slow', kind: '' }, held: false, leaving: false, keeper: { pid: 77, helper: 99, start: '', fds: { in: 5, out: 6, err: 7, ctl: 8, cmd: 9 }, relays } })
  assert.notEqual(toRecord(rec(undefined)), null)
  assert.notEqual(toRecord(rec([{ fd: 3, read: null, write: '/proc/99/fd/12' }, { fd: 4, read: '/proc/99/fd/13', write: '/proc/99/fd/14' }])), null)
  for (const bad of [{ fd: 2, read: null, write: '/proc/99/fd/12' }, { fd: 3, read: '/etc/passwd', write: null }, { fd: 3, read: '/proc/98/fd/1', write: null }, { fd: 3, read: 5, write: null }]) {
    assert.equal(toRecord(rec([bad])), null, JSON.stringify(bad))
  }
  assert.equal(toRecord(rec('x')), null)
})

test('connections dialled ahead wait unused: at most IDLE_CONNECTIONS_PER_PEER per peer host, the oldest closed; another host\'s are kept', async () => {
  const { IDLE_CONNECTIONS_PER_PEER } = await import('../../src/config.js')
  const s = setup()
  // [the dialling end, the end accepted here, named by the address it came from]
  const mine = Array.from({ length: IDLE_CONNECTIONS_PER_PEER + 2 }, (_, i) => MemLink.pair('10.0.0.2:4660', `10.0.0.1:${5000 + i}`))
  const other = MemLink.pair('10.0.0.2:4660', '10.0.0.3:7000')
  s.side.accept(other[1])
  for (const [dialler, accepted] of mine) {
    s.side.accept(accepted)
    await dialler.send({ t: 'ping' }) // (pings keep it unused)
  }
  const keep = mine.map((_, i) => i >= mine.length - IDLE_CONNECTIONS_PER_PEER)
  await until(() => mine.every(([d], i) => d.closed !== keep[i]), 'the oldest closed, the newest open')
  assert.equal(other[0].closed, false, 'another host\'s spare stays')
  // a kept one still works: an offer on it is received
  const [dialler] = mine[mine.length - 1]
  const home = new Peer(dialler)
  await dialler.send(OFFER)
  assert.equal((await home.next('accept')).t, 'accept')
})
