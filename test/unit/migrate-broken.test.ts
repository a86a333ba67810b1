// A broken pipe passed on (docs/migrate.md "Relayed descriptors", Ends): home's side of a relayed
// output over a real pipe whose reader goes away (HomeStdio: EPIPE -> onBroken, told again at most
// every BROKEN_RESEND_MS while bytes still arrive, dropped meanwhile), and the guest side's answer to
// `broken` over an in-memory connection with the engine stubbed (its reader and the keeper's go).
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readSync, rmSync, constants as fsc } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HomeStdio } from '../../src/migrate/relay.js'
import type { DeputyHandle } from '../../src/migrate/engine.js'
import { GuestSide } from '../../src/migrate/guest.js'
import { MemLink } from '../../src/migrate/memlink.js'
import { BROKEN_RESEND_MS } from '../../src/config.js'
import { Peer, StubDeputy, StubEngine, cluster, until } from './migrate-fixture.js'

let keep: NodeJS.Timeout
let dir: string
before(() => { keep = setInterval(() => {}, 1000); dir = mkdtempSync(join(tmpdir(), 'hpcfs-broken-')) })
after(() => { clearInterval(keep); rmSync(dir, { recursive: true, force: true }) })

/** A deputy whose original's fd 1 opens as this FIFO, and that records the closes it is told. */
class PipeDeputy extends StubDeputy {
  closes: Array<[number, boolean]> = []
  constructor (readonly path: string) { super() }
  override async takeFds (): Promise<Array<string | null>> { return [null, this.path, null] }
  async closeFd (fd: number, shut: boolean): Promise<void> { this.closes.push([fd, shut]) }
}

test('home: a relayed stdout whose reader is gone is broken: the node is told once, what arrives is dropped, told again while it still arrives', async () => {
  const fifo = join(dir, 'out')
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
  const reader = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK)
  const io = new HomeStdio(100)
  const told: number[] = []
  io.onBroken = fd => told.push(fd)
  io.kinds = ['path', 'pipe', 'path']
  const dep = new PipeDeputy(fifo)
  io.write(1, Buffer.from('before\n')) // kept until the relay is open
  await io.open(dep as unknown as DeputyHandle)
  io.write(1, Buffer.from('after\n'))
  await io.flush()
  const buf = Buffer.alloc(64)
  assert.equal(buf.subarray(0, readSync(reader, buf)).toString(), 'before\nafter\n')
  assert.deepEqual(told, [])
  // the reader goes away: the next write fails with EPIPE
  closeSync(reader)
  io.write(1, Buffer.from('lost\n'))
  await until(() => told.length === 1, 'the node told')
  assert.deepEqual(told, [1])
  assert.equal(io.broken.has(1), true)
  // more output at once: dropped, not told again within BROKEN_RESEND_MS
  for (let i = 0; i < 5; i++) io.write(1, Buffer.from('more\n'))
  assert.deepEqual(told, [1])
  // still arriving later (after a move, say): told again
  const t0 = Date.now()
  await until(() => { io.write(1, Buffer.from('more\n')); return told.length === 2 }, 'told again')
  assert.ok(Date.now() - t0 >= BROKEN_RESEND_MS - 50, 'not before BROKEN_RESEND_MS')
  // a shutdown reported for a broken output is not passed on; a close is
  await io.closeFd(1, 'shutdown')
  assert.deepEqual(dep.closes, [])
  await io.closeFd(1, 'close')
  assert.deepEqual(dep.closes, [[1, false]])
  // the process home again (the relay closed): the original's own pipe tells it from now on
  io.close()
  assert.equal(io.broken.size, 0)
})

test('guest: `broken {fd 1}` from home lets go of its reader of stdout and of the keeper\'s; a second one changes nothing', async () => {
  const engine = new StubEngine()
  const side = new GuestSide({ cluster: cluster(2), engine, hostInfo: async () => 'node-2-host', dial: async () => { throw new Error('no dialling') } })
  const [homeEnd, nodeEnd] = MemLink.pair('node 2', 'node 1')
  const home = new Peer(homeEnd)
  side.accept(nodeEnd)
  await homeEnd.send({ t: 'migrate', home: 1, pid: 500, name: 'subject', bytes: 1 << 20, stdin: 'none' })
  await home.next('accept')
  await homeEnd.frame('I', Buffer.from('an image'))
  await homeEnd.send({ t: 'image-end' })
  await home.next('running')
  await homeEnd.send({ t: 'run' })
  const r = engine.restoredProcs[0]
  await until(() => r.running, 'the process let run')
  const broke: number[] = []
  Object.assign(r, { breakRelay: (fd: number) => broke.push(fd) })
  r.stdout.write('y\n')
  await home.until(() => home.frames.length === 1, 'its output')
  await homeEnd.send({ t: 'broken', fd: 1 })
  await until(() => r.stdout.destroyed, 'its stdout reader let go')
  assert.deepEqual(broke, [1], 'the keeper let go of its reader too')
  await homeEnd.send({ t: 'broken', fd: 1 })
  await homeEnd.send({ t: 'broken', fd: 7 }) // not one of its relayed fds
  await homeEnd.send({ t: 'signal', sig: 15 })
  await until(() => engine.signals.length === 1, 'the next message')
  assert.deepEqual(broke, [1])
  assert.equal(side.guests.size, 1, 'it runs on')
  r.finish({ code: null, signal: 13 })
  assert.deepEqual(await home.next('exit'), { t: 'exit', code: null, signal: 13 })
})

test('home: a close that arrives before the relay is open waits, in order after the output before it; a close of a descriptor not relayed is ignored', async () => {
  const fifo = join(dir, 'early')
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
  const reader = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK)
  try {
    const io = new HomeStdio(101)
    io.kinds = ['path', 'pipe', 'path']
    const dep = new PipeDeputy(fifo)
    io.write(1, Buffer.from('last words\n'))
    await io.closeFd(1, 'close') // N's `closed` before home's relay is ready
    await io.closeFd(9, 'close') // not one of its relayed descriptors
    assert.deepEqual(dep.closes, [], 'nothing passed on before the relay is open')
    await Promise.all([io.open(dep as unknown as DeputyHandle), io.open(dep as unknown as DeputyHandle)]) // (a second caller waits for the first)
    assert.deepEqual(dep.closes, [[1, false]], 'the close passed on once the relay is open; fd 9 ignored')
    const buf = Buffer.alloc(64)
    assert.equal(buf.subarray(0, readSync(reader, buf)).toString(), 'last words\n', 'the output before it went out first')
  } finally { closeSync(reader) }
})
