// Hostile datagrams against real daemons over real UDP on loopback: every one is dropped and
// counted in admin/gossip-stats, and the daemon's view is untouched.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { LoopbackCluster, cat, sh, until, HPCD, type Daemon } from '../helpers/daemon.js'
import { MAX_DATAGRAM, encode } from '../../src/gossip/codec.js'
import { Keyring } from '../../src/gossip/keyring.js'
import type { NodeInfo } from '../../src/gossip/info.js'
import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'

// node 3 is in the map but runs no daemon: its port is the test's, to capture what is sent to it
const c = new LoopbackCluster([1, 2, 3], 17500, ['--interval', '0.2'])
let d1: Daemon
let d2: Daemon

before(async () => { d1 = await c.start(1); d2 = await c.start(2) })
after(async () => { await c.destroy() })

const stats = async (mount: string): Promise<Record<string, number>> =>
  Object.fromEntries((await cat(join(mount, 'admin/gossip-stats'))).trim().split('\n').map(l => { const [k, v] = l.split(' '); return [k, Number(v)] }))

function sendTo (port: number, ...datagrams: Buffer[]): Promise<void> {
  const sock = createSocket('udp4')
  return (async () => {
    try {
      for (const b of datagrams) await new Promise<void>((resolve, reject) => sock.send(b, port, '127.0.0.1', e => e ? reject(e) : resolve()))
    } finally { sock.close() }
  })()
}

test('oversized datagrams are dropped and counted as malformed', async () => {
  await until('node 1 sees node 2', async () => (await cat(join(d1.mount, 'nodes/2/status'))).trim() === '3')
  const before = await stats(d1.mount)
  // one byte over the limit, a jumbo one, and one that starts like a real datagram
  const hp = Buffer.alloc(4000); hp.write('HP\x01\x01', 'latin1')
  await sendTo(d1.port, Buffer.alloc(MAX_DATAGRAM + 1, 0x41), Buffer.alloc(9000, 0x42), hp)
  await until('3 more dropped-malformed', async () => (await stats(d1.mount))['dropped-malformed'] >= before['dropped-malformed'] + 3, 5000)
  const after = await stats(d1.mount)
  assert.ok(after['received-bytes'] >= before['received-bytes'] + MAX_DATAGRAM + 1 + 9000 + 4000, 'their bytes are counted as received')
  assert.equal((await cat(join(d1.mount, 'nodes/2/status'))).trim(), '3', 'the daemon keeps working')
})

test('a signed datagram naming a node at port 0 (one no daemon could send to) is dropped and counted; the daemon goes on', async () => {
  await until('node 1 sees node 2', async () => (await cat(join(d1.mount, 'nodes/2/status'))).trim() === '3')
  const keys = Keyring.fromFile(c.keyFile)
  const entry = (id: number, port: number): NodeInfo => ({ id, addr: '127.0.0.1', port, incarnation: 5, seq: 1, status: 1, cpus: 1, speed: 10000, load: 0, tmem: 2 ** 30, rmem: 2 ** 29, mem: 2 ** 29, util: 0 })
  // from node 3 (in the map, no daemon): its own entry, and one of a node 100 listening nowhere
  const datagram = encode({ sender: 3, incarnation: 5, seq: 1, dest: { id: 1, addr: '127.0.0.1', port: d1.port }, entries: [{ info: entry(3, 17503), age: 0 }, { info: entry(100, 0), age: 0 }] }, keys)
  const before = await stats(d1.mount)
  await sendTo(d1.port, datagram)
  await until('dropped-malformed counted', async () => (await stats(d1.mount))['dropped-malformed'] >= before['dropped-malformed'] + 1, 5000)
  assert.ok(!existsSync(join(d1.mount, 'nodes/100')), 'node 100 is not known')
  // some gossip rounds later the daemon still works (one that took the entry would have thrown sending to it)
  const sent = (await stats(d1.mount)).sent
  await until('more rounds', async () => (await stats(d1.mount)).sent >= sent + 10, 10_000)
  assert.equal((await cat(join(d1.mount, 'nodes/2/status'))).trim(), '3', 'the daemon keeps working')
})

test('a datagram captured on its way to one node is dropped and counted by another', async () => {
  // catch a real datagram a daemon sends to node 3 (it tries nodes it believes down now and then)
  const trap = createSocket('udp4')
  await new Promise<void>(resolve => trap.bind(17503, '127.0.0.1', resolve))
  assert.equal((trap.address() as AddressInfo).port, 17503)
  let caught: Buffer | undefined
  trap.on('message', m => { caught ??= m })
  try {
    await until('a datagram for node 3', () => caught, 15_000)
  } finally { trap.close() }
  const datagram = caught as Buffer
  const sender = datagram.readUInt16BE(6)
  const victim = sender === 1 ? d2 : d1
  // (the victim may not have heard from the sender yet on a busy machine: the replay must not change a live view)
  await until(`node ${victim.id} sees node ${sender} up`, async () => (await cat(join(victim.mount, `nodes/${sender}/status`))).trim() === '3', 10_000)
  const before = await stats(victim.mount)
  await sendTo(victim.port, datagram)
  await until(`node ${victim.id} counts the replay`, async () => (await stats(victim.mount))['dropped-misdirected'] >= (before['dropped-misdirected'] ?? 0) + 1, 5000)
  const after = await stats(victim.mount)
  assert.equal(after['dropped-misdirected'], (before['dropped-misdirected'] ?? 0) + 1)
  assert.equal((await cat(join(victim.mount, `nodes/${sender}/status`))).trim(), '3', 'the real sender is still seen')
})

test('an open cluster forms through a seed given by name (datagrams to a seed name its address)', async () => {
  const mounts = [join(c.dir, 'open1'), join(c.dir, 'open2')]
  const common = ['--addr', '127.0.0.1', '--key', c.keyFile, '--interval', '0.2']
  const procs = [
    spawn(process.execPath, [HPCD, ...common, '--id', '11', '--port', '17511', '--mount', mounts[0], '--speed', '11000'], { stdio: 'ignore' }),
    spawn(process.execPath, [HPCD, ...common, '--id', '12', '--port', '17512', '--mount', mounts[1], '--speed', '12000', '--join', 'localhost:17511'], { stdio: 'ignore' })
  ]
  try {
    await until('node 11 sees node 12 through its seed', async () => (await cat(join(mounts[0], 'nodes/12/speed'))) === '12000\n')
    await until('node 12 sees node 11', async () => (await cat(join(mounts[1], 'nodes/11/speed'))) === '11000\n')
    assert.equal((await stats(mounts[1]))['dropped-misdirected'], 0)
  } finally {
    for (const p of procs) p.kill('SIGTERM')
    await Promise.all(procs.map(p => p.exitCode === null && p.signalCode === null ? new Promise(resolve => p.once('exit', resolve)) : undefined))
    for (const m of mounts) await sh(`mountpoint -q ${m} && fusermount -uz ${m}; true`)
  }
})
