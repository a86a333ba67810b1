// The home side's state machine (src/migrate/home.ts) against a node played by the test over an
// in-memory connection, with the engine stubbed (no process is touched).
import { after, before, test } from 'node:test'
import { spawnSync } from 'node:child_process'
import { closeSync, constants as fsc, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import { Home, LOST_STATUS } from '../../src/migrate/home.js'
import { parseFdFrame } from '../../src/migrate/relay.js'
import { MemLink } from '../../src/migrate/memlink.js'
import type { Link } from '../../src/migrate/link.js'
import type { DeputyHandle, Engine } from '../../src/migrate/engine.js'
import { Peer, StubDeputy, StubEngine, cluster, until } from './migrate-fixture.js'

const PID = 31337

// the state machines' own timers do not hold the event loop (a daemon's); the tests' waits do
let keep: NodeJS.Timeout
before(() => { keep = setInterval(() => {}, 1000) })
after(() => clearInterval(keep))

/** A home (node 1) whose connections go to the test, which plays the other nodes. */
function setup (): { home: Home, engine: StubEngine, moves: Array<[number, number]>, peers: Array<Peer & { node: number }> } {
  const engine = new StubEngine()
  const moves: Array<[number, number]> = []
  const peers: Array<Peer & { node: number }> = []
  const home = new Home({
    cluster: cluster(1),
    engine,
    bandwidth: new Map(),
    moved: (pid, node) => moves.push([pid, node]),
    dial: async (node): Promise<Link> => {
      const [mine, theirs] = MemLink.pair(`node ${node}`, 'node 1')
      peers.push(Object.assign(new Peer(theirs), { node }))
      return mine
    }
  })
  return { home, engine, moves, peers }
}

/** Moves PID to node 2, the test's node accepting and running it. */
async function moveOut (s: ReturnType<typeof setup>): Promise<{ peer: Peer, dep: StubDeputy }> {
  const done = s.home.requestMove(PID, 2)
  assert.equal(s.home.procs.get(PID)?.where, 'migrating')
  await until(() => s.peers.length === 1, 'an offer')
  const peer = s.peers[0]
  const offer = await peer.next('migrate')
  assert.deepEqual(offer, { t: 'migrate', home: 1, pid: PID, name: 'subject', bytes: 1 << 20, stdin: 'none', age: 12.5, decay: 'slow', kind: '' })
  await peer.link.send({ t: 'accept', hostinfo: 'node-2-host' })
  await peer.next('image-end')
  assert.deepEqual(peer.image(), s.engine.image, 'the image streamed to the node')
  assert.deepEqual(s.engine.calls, [`check ${PID}`, `deputy ${PID} node-2-host`])
  await peer.link.send({ t: 'running', pid: 555, bytes: s.engine.image.length, ms: 2 })
  assert.deepEqual(await peer.next('run'), { t: 'run' }, 'the move is committed')
  await done
  return { peer, dep: s.engine.deputies[0] }
}

test('home -> N accepted: offer, image, running; then the remote exits and the deputy exits the same way', async () => {
  const s = setup()
  const { peer, dep } = await moveOut(s)
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 2)
  assert.equal(p.nmigs, 1)
  assert.equal(p.lastError, '')
  assert.deepEqual(s.moves, [[PID, 2]])
  // a signal to the deputy reaches the remote
  dep.emit('signal', 10)
  assert.deepEqual(await peer.next('signal'), { t: 'signal', sig: 10 })
  // with its siginfo: a value queued with it goes along; kill's code (0) the node's keeper could
  // not queue, so it goes as a plain signal
  dep.emit('signal', 34, { code: -1, pid: 4321, uid: 1000, value: '-42' })
  assert.deepEqual(await peer.next('signal'), { t: 'signal', sig: 34, code: -1, from: 4321, uid: 1000, value: '-42' })
  dep.emit('signal', 12, { code: 0, pid: 4321, uid: 1000, value: '0' })
  assert.deepEqual(await peer.next('signal'), { t: 'signal', sig: 12 })
  // a hint reaches it too
  s.home.hint(PID, 'cpujob')
  assert.deepEqual(await peer.next('hint'), { t: 'hint', hint: 'cpujob' })
  // a malformed message from the node is dropped, never acted on
  ;(peer.link as MemLink).raw(Buffer.from('{"t":"exit","code":"7"}'))
  await peer.link.send({ t: 'exit', code: 7, signal: null })
  await until(() => !s.home.procs.has(PID), 'the process forgotten')
  assert.deepEqual(dep.exited, [7])
  assert.deepEqual(dep.killed, [])
  assert.equal(p.conn, null)
  await peer.until(() => peer.closed, 'the connection closed')
})

test('home -> N refused: the process stays home, untouched, with the reason', async () => {
  const s = setup()
  const done = s.home.requestMove(PID, 3)
  await until(() => s.peers.length === 1, 'an offer')
  const peer = s.peers[0]
  assert.equal(peer.node, 3)
  await peer.next('migrate')
  await peer.link.send({ t: 'refuse', reason: 'this node is blocked (admin/block)' })
  await done
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 'home')
  assert.equal(p.nmigs, 0)
  assert.match(p.lastError, /node 3 refused: this node is blocked/)
  assert.deepEqual(s.engine.calls, [`check ${PID}`], 'no dump was started')
  assert.deepEqual(s.moves, [])
  await peer.until(() => peer.closed, 'the connection closed')
})

test('home -> N whose restore fails: the deputy gets its own image back and the process runs at home', async () => {
  const s = setup()
  const done = s.home.requestMove(PID, 2)
  await until(() => s.peers.length === 1, 'an offer')
  const peer = s.peers[0]
  await peer.next('migrate')
  await peer.link.send({ t: 'accept', hostinfo: '' })
  await peer.next('image-end')
  await peer.link.send({ t: 'failed', reason: 'no memory' })
  await done
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 'home')
  assert.match(p.lastError, /node 2 could not run it: no memory; it runs at home again/)
  assert.deepEqual(s.engine.deputies[0].restored, [s.engine.image])
  assert.equal(p.deputy, null)
})

test('a process the engine says cannot move (checked while it is offered) is withdrawn: nothing is dumped, the connection closes', async () => {
  const s = setup()
  s.engine.reasons = [{ code: 'fd', text: 'fd 3 is a listening socket' }]
  await s.home.requestMove(PID, 2)
  assert.match(s.home.procs.get(PID)?.lastError ?? '', /cannot move: fd 3 is a listening socket/)
  assert.equal(s.home.procs.get(PID)?.where, 'home')
  await until(() => s.peers.length === 1, 'the offer')
  const peer = s.peers[0]
  await peer.next('migrate')
  await peer.link.send({ t: 'accept', hostinfo: 'node-2-host' })
  await until(() => peer.link.closed, 'the offer withdrawn')
  assert.deepEqual(s.engine.calls, [`check ${PID}`], 'no dump was started')
  assert.throws(() => s.home.requestMove(PID, 42), /no node 42/)
})

test('the connection to the node running it closes and the node does not come back: the deputy reports the loss and exits LOST_STATUS', async () => {
  const s = setup()
  s.home.rejoinWaitMs = 200
  const { peer, dep } = await moveOut(s)
  // output home got is acknowledged by byte count, per fd
  await peer.link.frame('O', Buffer.from('out 1\n'))
  await peer.link.frame('E', Buffer.from('err\n'))
  assert.deepEqual(await peer.next('ack'), { t: 'ack', got: [[1, 6], [2, 4]] })
  await peer.link.frame('O', Buffer.from('out 2\n')) // home gets it, the node does not hear so
  await until(() => s.home.procs.get(PID)?.got.unacked === 6, 'counted')
  peer.link.close()
  await until(() => s.home.procs.get(PID)?.limbo != null, 'waiting for the node')
  assert.throws(() => s.home.requestMove(PID, 'home'), /out of reach/)
  await until(() => !s.home.procs.has(PID), 'the process forgotten')
  assert.deepEqual(dep.exited, [LOST_STATUS])
})

test('the node comes back (rejoin) while the deputy waits: the session goes on; signals sent meanwhile arrive; its end ends the deputy', async () => {
  const s = setup()
  const { peer, dep } = await moveOut(s)
  // output home got is acknowledged by byte count, per fd
  await peer.link.frame('O', Buffer.from('out 1\n'))
  await peer.link.frame('E', Buffer.from('err\n'))
  assert.deepEqual(await peer.next('ack'), { t: 'ack', got: [[1, 6], [2, 4]] })
  await peer.link.frame('O', Buffer.from('out 2\n')) // home gets it, the node does not hear so
  await until(() => s.home.procs.get(PID)?.got.unacked === 6, 'counted')
  peer.link.close()
  await until(() => s.home.procs.get(PID)?.limbo != null, 'waiting for the node')
  dep.emit('signal', 10) // while it is out of reach
  const [mine, theirs] = MemLink.pair('node 1', 'node 2')
  const back = new Peer(mine)
  // a rejoin for a process home does not have away, or not on that node, is refused
  const [x1, y1] = MemLink.pair('node 1', 'node 3')
  const other = new Peer(x1)
  s.home.rejoin(y1, { t: 'rejoin', home: 1, pid: PID, guest: 555, node: 3 })
  assert.match((await other.next('refuse')).reason, /runs on node 2/)
  s.home.rejoin(theirs, { t: 'rejoin', home: 1, pid: PID, guest: 555, node: 2 })
  assert.deepEqual(await back.next('rejoin-ok'), { t: 'rejoin-ok', got: [[1, 12], [2, 4]] }, 'what home has of its output')
  assert.deepEqual(await back.next('signal'), { t: 'signal', sig: 10 })
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.limbo, null)
  assert.equal(p.where, 2)
  await mine.send({ t: 'exit', code: 4, signal: null })
  await until(() => !s.home.procs.has(PID), 'the process forgotten')
  assert.deepEqual(dep.exited, [4])
  const [x2, y2] = MemLink.pair('node 1', 'node 2')
  const late = new Peer(x2)
  s.home.rejoin(y2, { t: 'rejoin', home: 1, pid: PID, guest: 555, node: 2 })
  assert.match((await late.next('refuse')).reason, /no process/)
})

/** The connection to node 2 breaks; home waits for it; node 2 rejoins over a new one (mine: the test's end). */
async function breakAndRejoin (s: ReturnType<typeof setup>, peer: Peer, p: { limbo: unknown }): Promise<{ mine: MemLink, back: Peer }> {
  peer.link.close()
  await until(() => p.limbo != null, 'waiting for the node')
  const [mine, theirs] = MemLink.pair('node 1', 'node 2')
  const back = new Peer(mine)
  s.home.rejoin(theirs, { t: 'rejoin', home: 1, pid: PID, guest: 555, node: 2 })
  await back.next('rejoin-ok')
  return { mine, back }
}

/** A process moved out to the test's node 2, and a FIFO at home the test writes (rd: home's end, wr: the test's). */
async function movedWithFifo (s: ReturnType<typeof setup>): Promise<{ peer: Peer, p: NonNullable<ReturnType<Home['procs']['get']>>, rd: number, wr: number, close: () => void }> {
  const { peer } = await moveOut(s)
  const p = s.home.procs.get(PID)
  assert.ok(p)
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-in-'))
  const fifo = join(dir, 'in')
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
  const rd = openSync(fifo, fsc.O_RDWR | fsc.O_NONBLOCK)
  const wr = openSync(fifo, fsc.O_WRONLY | fsc.O_NONBLOCK)
  return { peer, p, rd, wr, close: () => { closeSync(rd); closeSync(wr); rmSync(dir, { recursive: true, force: true }) } }
}

test('input handed to a node whose connection broke before it was written there is handed again, once, on the connection it rejoins over', async () => {
  const s = setup()
  // its stdin at home: a FIFO the test writes
  const { peer, p, rd, wr, close } = await movedWithFifo(s)
  p.io.stdinFd = rd
  const stdin = (peerOf: Peer): string => peerOf.frames.filter(([t]) => t === 'N').map(([, d]) => d.toString()).join('')
  try {
    writeSync(wr, 'one\n')
    await peer.link.send({ t: 'want', n: 100, got: 0 })
    await peer.until(() => stdin(peer) === 'one\n', 'the first line')
    // the node wrote it into the process's pipe and wants more: the second line is handed, and the
    // connection breaks before the node could write it
    await peer.link.send({ t: 'want', n: 100, got: 4 })
    writeSync(wr, 'two\n')
    await peer.until(() => stdin(peer) === 'one\ntwo\n', 'the second line')
    const { mine, back } = await breakAndRejoin(s, peer, p)
    // its want says it has 4 bytes: the second line again, and nothing new (none was written)
    await mine.send({ t: 'want', n: 100, got: 4 })
    await back.until(() => stdin(back) === 'two\n', 'the second line handed again')
    await mine.send({ t: 'want', n: 100, got: 8 })
    writeSync(wr, 'three\n')
    await back.until(() => stdin(back) === 'two\nthree\n', 'the third line')
    assert.equal(p.inLog.kept(), 6, 'the third line, until a want says it is there')
    await mine.send({ t: 'want', n: 100, got: 14 })
    await until(() => p.inLog.kept() === 0, 'acknowledged')
    assert.equal(stdin(back), 'two\nthree\n', 'nothing handed twice on one connection')
  } finally {
    p.io.stdinFd = null
    close()
  }
})

test('socket input read through the deputy while the connection breaks is handed again on the connection the node rejoins over', async () => {
  const s = setup()
  // a relayed socket (fd 3): the deputy moves what it reads into a pipe, which home reads
  const { peer, p, rd, wr, close } = await movedWithFifo(s)
  let answer: ((k: number) => void) | undefined
  const dep = { pull: async (): Promise<number> => await new Promise<number>(resolve => { answer = resolve }) }
  ;(p.io as unknown as { dep: unknown }).dep = dep
  p.io.extraIn.set(3, { fd: rd, pull: true })
  const relayed = (peerOf: Peer): string => peerOf.frames.filter(([t]) => t === 'R').map(([, d]) => parseFdFrame(d)?.[1].toString() ?? '').join('')
  try {
    await peer.link.send({ t: 'want', fd: 3, n: 100, got: 0 })
    await until(() => answer !== undefined, 'the deputy asked to read the socket')
    const first = answer as (k: number) => void
    const { mine, back } = await breakAndRejoin(s, peer, p)
    // the read in flight ends now, its bytes taken out of the socket: they went to a connection
    // that is gone, and must reach the process over the new one
    writeSync(wr, 'abc')
    first(3)
    await until(() => p.inLog.kept() === 3, 'the bytes kept until the node says it has them')
    await mine.send({ t: 'want', fd: 3, n: 100, got: 0 })
    await back.until(() => relayed(back) === 'abc', 'the bytes read from the socket handed again')
  } finally {
    p.io.extraIn.delete(3)
    close()
  }
})

test('N -> home: gohome, the image comes back and is restored into the deputy', async () => {
  const s = setup()
  const { peer, dep } = await moveOut(s)
  const back = s.home.requestMove(PID, 'home')
  await peer.next('gohome')
  const image = Buffer.from('the image on its way home')
  await peer.link.send({ t: 'image-start' })
  await peer.link.frame('I', image)
  await peer.link.send({ t: 'image-end' })
  assert.deepEqual(await peer.next('home-ok'), { t: 'home-ok' })
  await back
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 'home')
  assert.equal(p.nmigs, 2)
  assert.deepEqual(dep.restored, [image])
  assert.deepEqual(s.moves, [[PID, 2], [PID, 0]])
})

test('N -> M: M accepts with a ticket, N sends it on; home-ok to N, and M is its node now', async () => {
  const s = setup()
  const first = await moveOut(s)
  const hop = s.home.requestMove(PID, 3)
  await until(() => s.peers.length === 2, 'the offer to M')
  const m = s.peers[1]
  const offer = await m.next('migrate')
  assert.equal(typeof offer.ticket, 'string')
  await m.link.send({ t: 'accept', hostinfo: 'node-3-host' })
  const sendto = await first.peer.next('sendto')
  assert.deepEqual(sendto, { t: 'sendto', node: 3, ticket: offer.ticket, hostinfo: 'node-3-host' })
  await first.peer.link.frame('O', Buffer.from('N: last words\n')) // N's output, numbered on N
  assert.deepEqual(await first.peer.next('ack'), { t: 'ack', got: [[1, 14]] })
  // M's output arrives before N has said it sent everything: held until the move completes
  await m.link.frame('O', Buffer.from('M0\n'))
  await first.peer.link.send({ t: 'sent', bytes: 12345 })
  await m.link.send({ t: 'running', pid: 777, bytes: 12345, ms: 1 })
  assert.deepEqual(await m.next('run'), { t: 'run' }, 'the move to M is committed')
  assert.deepEqual(await first.peer.next('home-ok'), { t: 'home-ok' })
  await hop
  // M's output is a new stream, numbered from its start on M (what was held counts first)
  assert.deepEqual(await m.next('ack'), { t: 'ack', got: [[1, 3]] })
  await m.link.frame('O', Buffer.from('M\n'))
  assert.deepEqual(await m.next('ack'), { t: 'ack', got: [[1, 5]] })
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 3)
  assert.equal(p.imageBytes, 12345)
  assert.equal(p.conn, (m.link as MemLink).other)
  assert.deepEqual(s.moves, [[PID, 2], [PID, 3]])
})

test('N -> M while N\'s connection breaks: M runs, its output and messages wait for the end of N\'s output, which N\'s copy sends when it rejoins (refused)', async () => {
  const s = setup()
  const first = await moveOut(s)
  const p = s.home.procs.get(PID)
  assert.ok(p)
  const written: string[] = []
  p.io.write = (fd: number, d: Buffer) => { written.push(`${fd}:${d.toString()}`) }
  await first.peer.link.frame('O', Buffer.from('N1\n'))
  await until(() => written.length === 1, 'N1')
  const hop = s.home.requestMove(PID, 3)
  await until(() => s.peers.length === 2, 'the offer to M')
  const m = s.peers[1]
  await m.next('migrate')
  await m.link.send({ t: 'accept', hostinfo: 'node-3-host' })
  await first.peer.next('sendto')
  first.peer.link.close() // N's connection breaks after its image went to M
  await m.link.send({ t: 'running', pid: 777, bytes: 1, ms: 1 })
  assert.deepEqual(await m.next('run'), { t: 'run' })
  await hop
  assert.equal(p.where, 3)
  await m.link.frame('O', Buffer.from('M1\n'))
  await m.link.send({ t: 'exit', code: 0, signal: null })
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.deepEqual(written, ['1:N1\n'], 'M\'s output waits')
  assert.throws(() => s.home.requestMove(PID, 2), /waiting for the end of its output on node 2/)
  // N's copy rejoins: refused, told what home has of N's output; it sends the rest and closes
  const [mine, theirs] = MemLink.pair('node 1', 'node 2')
  const back = new Peer(mine)
  s.home.rejoin(theirs, { t: 'rejoin', home: 1, pid: PID, guest: 555, node: 2 })
  assert.deepEqual(await back.next('refuse'), { t: 'refuse', reason: `process ${PID} runs on node 3`, got: [[1, 3]] })
  await mine.frame('O', Buffer.from('N2\n'))
  mine.close()
  await until(() => !s.home.procs.has(PID), 'M\'s exit, held until then, ends the deputy')
  assert.deepEqual(written, ['1:N1\n', '1:N2\n', '1:M1\n'])
  assert.deepEqual(s.engine.deputies[0].exited, [0])
})

test('N -> M refused by N (stay): the process runs on N again', async () => {
  const s = setup()
  const first = await moveOut(s)
  const hop = s.home.requestMove(PID, 3)
  await until(() => s.peers.length === 2, 'the offer to M')
  const m = s.peers[1]
  await m.next('migrate')
  await m.link.send({ t: 'accept', hostinfo: '' })
  await first.peer.next('sendto')
  await first.peer.link.send({ t: 'stay', reason: 'it has not read the stdin it was given yet' })
  await hop
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 2)
  assert.match(p.lastError, /node 2 could not send it: it has not read the stdin.*; it runs on node 2 again/)
  await m.until(() => m.closed, "M's connection closed")
})

test('N -> home whose restore into the deputy fails: N runs it again (resumed), the deputy tracks it there', async () => {
  const s = setup()
  const { peer, dep } = await moveOut(s)
  dep.failRestore = 'reopening fd 1 (/out): Permission denied'
  const back = s.home.requestMove(PID, 'home')
  await peer.next('gohome')
  await peer.link.send({ t: 'image-start' })
  await peer.link.frame('I', Buffer.from('image'))
  await peer.link.send({ t: 'image-end' })
  assert.deepEqual(await peer.next('home-failed'), { t: 'home-failed', reason: 'reopening fd 1 (/out): Permission denied' })
  await peer.link.send({ t: 'resumed', pid: 556 })
  await back
  const p = s.home.procs.get(PID)
  assert.ok(p)
  assert.equal(p.where, 2)
  assert.match(p.lastError, /could not run at home: reopening fd 1.*Permission denied; it runs on node 2 again/)
  assert.equal(p.nmigs, 1, 'a failed move does not count')
  // still tracked: a signal reaches it, its end ends the deputy
  dep.emit('signal', 15)
  assert.deepEqual(await peer.next('signal'), { t: 'signal', sig: 15 })
  await peer.link.send({ t: 'exit', code: null, signal: 15 })
  await until(() => !s.home.procs.has(PID), 'the process forgotten')
  assert.deepEqual(dep.killed, [15])
})

test('N -> home failing at home and on N again: the deputy reports the loss', async () => {
  const s = setup()
  const { peer, dep } = await moveOut(s)
  dep.failRestore = 'no'
  const back = s.home.requestMove(PID, 'home')
  await peer.next('gohome')
  await peer.link.send({ t: 'image-start' })
  await peer.link.send({ t: 'image-end' })
  await peer.next('home-failed')
  await peer.link.send({ t: 'failed', reason: 'not here either' })
  await back
  await until(() => !s.home.procs.has(PID), 'the process forgotten')
  assert.deepEqual(dep.exited, [LOST_STATUS])
})

/** A connection end that says it can carry a raw image (the stub engine writes nothing on it). */
class RawMemLink extends MemLink {
  override rawFd (): number | null { return this.closed ? null : 99 }
}

/** A home whose engine starts deputies ahead and whose connections can carry raw images (to the test's peers). */
function rawHome (engine: StubEngine, startDeputy: NonNullable<Engine['startDeputy']>): { home: Home, peers: Peer[] } {
  const peers: Peer[] = []
  const home = new Home({
    cluster: cluster(1),
    engine: Object.assign(engine, { startDeputy }),
    bandwidth: new Map(),
    moved: () => {},
    dial: async (node): Promise<Link> => {
      const mine = new RawMemLink(`node ${node}`)
      const theirs = new MemLink('node 1')
      mine.other = theirs
      theirs.other = mine
      peers.push(new Peer(theirs))
      return mine
    }
  })
  return { home, peers }
}

/** A deputy started ahead whose original is hollowed only once the test lets it (`letHollow`). */
function heldDeputy (engine: StubEngine): { startDeputy: NonNullable<Engine['startDeputy']>, letHollow: () => void, released: number[] } {
  let letHollow!: () => void
  const hollowed = new Promise<void>(resolve => { letHollow = resolve })
  const released: number[] = []
  const startDeputy: NonNullable<Engine['startDeputy']> = async pid => {
    engine.calls.push(`start ${pid}`)
    return {
      reasons: null,
      cancel: async () => { engine.calls.push('cancel') },
      go: async target => {
        engine.calls.push(`go ${target ?? ''}`)
        return {
          release: async () => { released.push(pid) },
          hollow: async () => {
            await hollowed
            const d = new StubDeputy()
            engine.deputies.push(d)
            return d as unknown as DeputyHandle
          }
        }
      }
    }
  }
  return { startDeputy, letHollow, released }
}

test('out with a deputy started ahead: the frozen original is the copy, released when N fails; what N says before the original is hollow waits for the deputy', async () => {
  const engine = new StubEngine()
  const { startDeputy, letHollow, released } = heldDeputy(engine)
  const { home, peers } = rawHome(engine, startDeputy)
  // N cannot run it: the original, never emptied, runs on (nothing to restore)
  const first = home.requestMove(PID, 2)
  await until(() => peers.length === 1, 'an offer')
  assert.equal((await peers[0].next('migrate')).raw, true)
  await peers[0].link.send({ t: 'accept', hostinfo: 'node-2-host', raw: true })
  await until(() => engine.calls.includes('go node-2-host'), 'the deputy told to go')
  await peers[0].link.send({ t: 'failed', reason: 'no memory' })
  await first
  assert.deepEqual(released, [PID])
  assert.equal(home.procs.get(PID)?.where, 'home')
  assert.match(home.procs.get(PID)?.lastError ?? '', /node 2 could not run it: no memory/)
  assert.deepEqual(engine.calls.filter(c => c.startsWith('check')), [], 'checked by the deputy, not by a check of its own')
  // N runs it and it ends at once, before the original is hollow: its end reaches the deputy
  const second = home.requestMove(PID, 2)
  await until(() => peers.length === 2, 'the second offer')
  await peers[1].next('migrate')
  await peers[1].link.send({ t: 'accept', hostinfo: 'node-2-host', raw: true })
  await until(() => engine.calls.filter(c => c === 'go node-2-host').length === 2, 'the deputy told to go') // (the image: N answers after it)
  await peers[1].link.send({ t: 'running', pid: 555, bytes: 1, ms: 1 })
  assert.deepEqual(await peers[1].next('run'), { t: 'run' }, 'committed before the original is hollow')
  await peers[1].link.send({ t: 'exit', code: 3, signal: null })
  await until(() => home.procs.get(PID)?.heldMsgs.some(m => m.t === 'exit') === true, 'the exit held until the original is hollow')
  letHollow()
  await second
  await until(() => engine.deputies[0]?.exited.includes(3) === true, 'the deputy exits as the remote did')
})

test('out, committed while home still hollows the original: where shows the node it runs on; a move asked meanwhile follows once home is done', async () => {
  const engine = new StubEngine()
  const { startDeputy, letHollow } = heldDeputy(engine)
  const { home, peers } = rawHome(engine, startDeputy)
  const out = home.requestMove(PID, 2)
  await until(() => peers.length === 1, 'an offer')
  await peers[0].next('migrate')
  await peers[0].link.send({ t: 'accept', hostinfo: 'node-2-host', raw: true })
  await until(() => engine.calls.includes('go node-2-host'), 'the deputy told to go') // (the image: N answers after it)
  await peers[0].link.send({ t: 'running', pid: 555, bytes: 1, ms: 1 })
  assert.deepEqual(await peers[0].next('run'), { t: 'run' })
  const p = home.procs.get(PID)
  assert.ok(p)
  await until(() => p.committed === 2, 'committed to node 2')
  assert.equal(p.where, 'migrating', 'home has not finished the move')
  // asked now: no EAGAIN; it waits for this move, then goes from node 2 to node 3
  let next: Promise<void> | undefined
  assert.doesNotThrow(() => { next = home.requestMove(PID, 3) })
  assert.throws(() => home.requestMove(PID, 99), /no node 99/, 'a bad target is refused at once')
  assert.equal(peers.length, 1, 'no offer to node 3 while the move out finishes')
  letHollow()
  await out
  assert.equal(p.nmigs, 1, 'the move out done')
  assert.equal(p.committed, null)
  await until(() => peers.length === 2, 'the offer to node 3 once the move out is done')
  const offer = await peers[1].next('migrate')
  assert.equal(typeof offer.ticket, 'string', 'N -> M: the image comes from node 2')
  await peers[1].link.send({ t: 'refuse', reason: 'this node is blocked (admin/block)' })
  await next
  assert.equal(p.where, 2, 'it runs on node 2 still')
  assert.equal(p.lastError, 'node 3 refused: this node is blocked (admin/block)')
})

test('out with a deputy started ahead: a refusal that closes the connection before the helper took it is what the move reports', async () => {
  // On a busy machine N's refusal can come before the deputy's helper has taken the connection:
  // the offer closes it, and the helper then fails on a descriptor that is no longer the one named.
  const engine = new StubEngine()
  let took!: (e: Error) => void
  const startDeputy: NonNullable<Engine['startDeputy']> = async () => await new Promise((resolve, reject) => { took = reject })
  const { home, peers } = rawHome(engine, startDeputy)
  const moved = home.requestMove(PID, 3)
  await until(() => peers.length === 1 && took !== undefined, 'an offer, and the helper starting')
  await peers[0].next('migrate')
  await peers[0].link.send({ t: 'refuse', reason: 'this node is blocked (admin/block)' })
  await until(() => peers[0].link.closed, 'the offer closed on the refusal')
  took(new Error('descriptor 7 of 31337 is no longer the one named (closed before it was taken)'))
  await moved
  assert.equal(home.procs.get(PID)?.where, 'home')
  assert.equal(home.procs.get(PID)?.lastError, 'node 3 refused: this node is blocked (admin/block)')
})

test('out with a deputy started ahead: output N sends before the original is hollow is written and counted (acknowledged, not sent again after a rejoin)', async () => {
  const engine = new StubEngine()
  let letHollow!: () => void
  const hollowed = new Promise<void>(resolve => { letHollow = resolve })
  const startDeputy: NonNullable<Engine['startDeputy']> = async () => ({
    reasons: null,
    cancel: async () => {},
    go: async target => {
      engine.calls.push(`go ${target ?? ''}`)
      return {
        release: async () => {},
        hollow: async () => { await hollowed; const d = new StubDeputy(); engine.deputies.push(d); return d as unknown as DeputyHandle }
      }
    }
  })
  const { home, peers } = rawHome(engine, startDeputy)
  const moved = home.requestMove(PID, 2)
  await until(() => peers.length === 1, 'an offer')
  await peers[0].next('migrate')
  await peers[0].link.send({ t: 'accept', hostinfo: 'node-2-host', raw: true })
  await until(() => engine.calls.includes('go node-2-host'), 'the deputy told to go')
  await peers[0].link.send({ t: 'running', pid: 555, bytes: 1, ms: 1 })
  await peers[0].next('run')
  await peers[0].link.frame('O', Buffer.from('early\n')) // before the original is hollow: held
  await until(() => home.procs.get(PID)?.held.length === 1, 'held until the deputy is there')
  letHollow()
  await moved
  assert.deepEqual(home.procs.get(PID)?.got.counts(), [[1, 6]])
  assert.deepEqual(await peers[0].next('ack'), { t: 'ack', got: [[1, 6]] })
})
