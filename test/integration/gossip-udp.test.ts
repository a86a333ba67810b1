// Hostile datagrams against real daemons over real UDP on loopback: every one is dropped and
// counted in admin/gossip-stats, and the daemon's view is untouched.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { join } from 'node:path'
import { LoopbackCluster, cat, until, type Daemon } from '../helpers/daemon.js'
import { MAX_DATAGRAM } from '../../src/gossip/codec.js'

const c = new LoopbackCluster([1, 2], 17500, ['--interval', '0.2'])
let d1: Daemon

before(async () => { d1 = await c.start(1); await c.start(2) })
after(async () => { await c.destroy() })

const stats = async (d: Daemon): Promise<Record<string, number>> =>
  Object.fromEntries((await cat(join(d.mount, 'admin/gossip-stats'))).trim().split('\n').map(l => { const [k, v] = l.split(' '); return [k, Number(v)] }))

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
  const before = await stats(d1)
  // one byte over the limit, a jumbo one, and one that starts like a real datagram
  const hp = Buffer.alloc(4000); hp.write('HP\x01\x01', 'latin1')
  await sendTo(d1.port, Buffer.alloc(MAX_DATAGRAM + 1, 0x41), Buffer.alloc(9000, 0x42), hp)
  await until('3 more dropped-malformed', async () => (await stats(d1))['dropped-malformed'] >= before['dropped-malformed'] + 3, 5000)
  const after = await stats(d1)
  assert.ok(after['received-bytes'] >= before['received-bytes'] + MAX_DATAGRAM + 1 + 9000 + 4000, 'their bytes are counted as received')
  assert.equal((await cat(join(d1.mount, 'nodes/2/status'))).trim(), '3', 'the daemon keeps working')
})
