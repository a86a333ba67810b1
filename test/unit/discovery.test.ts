// Discovery (src/discovery) without sockets: announcements decoded, checked and handed to a real
// Gossiper over the in-memory network; every bad datagram dropped under its own counter.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Gossiper } from '../../src/gossip/gossiper.js'
import { Keyring } from '../../src/gossip/keyring.js'
import { MemoryNetwork } from '../../src/gossip/transport.js'
import { decode } from '../../src/gossip/codec.js'
import { ANNOUNCE_LEN, decodeAnnouncement, encodeAnnouncement, type Announcement } from '../../src/discovery/announce.js'
import { Discovery, discoveryOptions } from '../../src/discovery/discovery.js'

const key = new Keyring(Buffer.from('cluster key of the test, 32 byte'))
const otherKey = new Keyring(Buffer.from('another cluster entirely, 32 byt'))

/** Node `id` at 10.0.0.<id>, with its gossip on the in-memory network and its discovery. */
function node (net: MemoryNetwork, id: number, members?: number[]): { g: Gossiper, d: Discovery, got: Buffer[] } {
  const g = new Gossiper({
    id, addr: `10.0.0.${id}`, port: 5428, incarnation: 100 + id, window: 8, downAfter: 10_000, sendToAnyCycle: 5, seeds: [], now: () => 0, rng: Math.random
  }, key, () => ({ status: 3, cpus: 1, speed: 10000, load: 0, tmem: 1 << 30, rmem: 1 << 29, mem: 1 << 29, util: 100 }))
  const got: Buffer[] = []
  g.attach(net.bind({ host: g.opts.addr, port: 5428 }, (b, f) => { got.push(b); g.onDatagram(b, f) }))
  if (members !== undefined) g.setMembers(new Map(members.map(m => [m, { host: `10.0.0.${m}`, port: 5428 }])))
  return { g, d: new Discovery(g, key, discoveryOptions(5428)), got }
}

const from = (id: number): { host: string, port: number } => ({ host: `10.0.0.${id}`, port: 5429 })
const ann = (a: Partial<Announcement> = {}, k = key): Buffer =>
  encodeAnnouncement({ id: 2, addr: '10.0.0.2', port: 5428, incarnation: 102, seq: 1, ...a }, k)

test('an announcement round-trips and is 40 bytes', () => {
  const a = { id: 513, addr: '192.168.2.1', port: 5428, incarnation: 77, seq: 9 }
  const buf = encodeAnnouncement(a, key)
  assert.equal(buf.length, ANNOUNCE_LEN)
  assert.equal(ANNOUNCE_LEN, 40)
  assert.deepEqual(decodeAnnouncement(buf, key), a)
})

test('a valid announcement introduces the node: known at once, and our window sent to it', async () => {
  const net = new MemoryNetwork()
  const a = node(net, 1)
  const b = node(net, 2)
  b.d.onDatagram(a.d.announcement(), from(1))
  assert.equal(b.d.stats.learned, 1)
  assert.equal(b.d.stats.received, 1)
  assert.ok(b.g.table.has(1), 'node 2 knows node 1')
  assert.equal(b.g.isUp(b.g.table.get(1)!), false, 'down until heard')
  await new Promise(resolve => setImmediate(resolve))
  assert.equal(a.got.length, 1, 'node 2 pushed its window to node 1 right away')
  assert.equal(decode(a.got[0], key).sender, 2)
  assert.ok(a.g.table.has(2), 'node 1 heard of node 2 through that window')
  // Node 1 gossips back; then a new announcement of node 1 is received but teaches nothing.
  a.g.pushTo({ host: '10.0.0.2', port: 5428, id: 2 })
  await new Promise(resolve => setImmediate(resolve))
  assert.ok(b.g.isUp(b.g.table.get(1)!), 'node 2 sees node 1 up')
  b.d.onDatagram(a.d.announcement(), from(1))
  assert.equal(b.d.stats.received, 2)
  assert.equal(b.d.stats.learned, 1)
})

test('forged, malformed, replayed, misaddressed and conflicting announcements are dropped and counted', () => {
  const net = new MemoryNetwork()
  const me = node(net, 1)
  const d = me.d
  const s = d.stats
  d.onDatagram(ann({}, otherKey), from(2))
  assert.equal(s.droppedBadmac, 1, 'another cluster key')
  const flipped = ann()
  flipped[10] ^= 1 // the address changed in transit (or by a forger): the MAC no longer matches
  d.onDatagram(flipped, from(2))
  assert.equal(s.droppedBadmac, 2)
  d.onDatagram(Buffer.from('garbage that is not an announcement'), from(2))
  d.onDatagram(ann().subarray(0, 30), from(2))
  d.onDatagram(Buffer.alloc(0), from(2))
  assert.equal(s.droppedMalformed, 3)
  const v2 = ann()
  v2[2] = 2
  d.onDatagram(v2, from(2))
  assert.equal(s.droppedVersion, 1)
  d.onDatagram(ann(), from(3))
  assert.equal(s.droppedAddress, 1, 'announced 10.0.0.2, sent from 10.0.0.3')
  d.onDatagram(ann({ id: 1, addr: '10.0.0.9' }), from(9))
  assert.equal(s.droppedConflict, 1, 'my own id from another address')
  assert.equal(me.g.table.size, 0, 'nothing learned from any of them')

  d.onDatagram(ann({ seq: 5 }), from(2))
  assert.equal(s.learned, 1)
  d.onDatagram(ann({ seq: 5 }), from(2))
  d.onDatagram(ann({ seq: 4, incarnation: 101 }), from(2)) // an older incarnation
  assert.equal(s.droppedReplay, 2)
  assert.equal(s.received, 1)
  // Our own announcement looped back by the group is neither learned nor counted as a drop.
  d.onDatagram(d.announcement(), { host: '10.0.0.1', port: 5429 })
  assert.equal(s.received, 1)
  assert.equal(s.droppedConflict, 1)
})

test('with a static map, a node outside it is not learned; an id up elsewhere is a conflict', () => {
  const net = new MemoryNetwork()
  const me = node(net, 1, [1, 2])
  me.d.onDatagram(ann({ id: 7, addr: '10.0.0.7' }), from(7))
  assert.equal(me.d.stats.droppedUnknown, 1)
  assert.equal(me.g.table.has(7), false)
  me.d.onDatagram(ann({ id: 2, addr: '10.0.0.8' }), from(8))
  assert.equal(me.d.stats.droppedConflict, 1, 'the map says node 2 is at 10.0.0.2')
  me.d.onDatagram(ann({ id: 2, addr: '10.0.0.2', seq: 2 }), from(2))
  assert.equal(me.d.stats.learned, 1, 'node 2 at its map address, not heard yet: introduced')
})
