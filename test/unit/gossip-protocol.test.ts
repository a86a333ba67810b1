// The protocol over the in-memory transport, driven tick by tick with a virtual clock.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Gossiper } from '../../src/gossip/gossiper.js'
import { Keyring, MAC_LEN } from '../../src/gossip/keyring.js'
import { MemoryNetwork, type Address } from '../../src/gossip/transport.js'
import { encode, ENTRY_LEN, HEADER_LEN } from '../../src/gossip/codec.js'

interface Sim { nodes: Gossiper[], net: MemoryNetwork, clock: { t: number }, round: () => void }

function cluster (n: number, opts: { window?: number, loss?: number, key?: Keyring | null, open?: boolean, downAfter?: number } = {}): Sim {
  const clock = { t: 0 }
  let s = 7
  const rng = (): number => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 }
  const queue: Array<() => void> = []
  const net = new MemoryNetwork({ loss: opts.loss ?? 0, rng, schedule: (_d, fn) => queue.push(fn) })
  const key = opts.key === undefined ? new Keyring(Buffer.from('k'.repeat(32))) : opts.key
  const members = new Map(Array.from({ length: n }, (_, i) => [i + 1, { host: `10.0.0.${i + 1}`, port: 5428 }]))
  const nodes = Array.from({ length: n }, (_, i) => {
    const id = i + 1
    const g = new Gossiper({
      id, addr: `10.0.0.${id}`, port: 5428, incarnation: 1, window: opts.window ?? 4, downAfter: opts.downAfter ?? 30_000, sendToAnyCycle: 5,
      seeds: opts.open && id !== 1 ? [{ host: '10.0.0.1', port: 5428 }] : [], now: () => clock.t, rng
    }, key, () => ({ status: 3, cpus: 2, speed: 10000 * id, load: id, tmem: 1 << 30, rmem: 1 << 29, mem: 1 << 29, util: 100 }))
    g.attach(net.bind({ host: `10.0.0.${id}`, port: 5428 }, (b, from) => g.onDatagram(b, from)))
    if (!opts.open) g.setMembers(members)
    return g
  })
  const round = (): void => {
    clock.t += 1000
    for (const g of nodes) g.tick()
    while (queue.length) (queue.shift() as () => void)()
  }
  return { nodes, net, clock, round }
}

const everyoneSeesEveryone = (nodes: Gossiper[]): boolean =>
  nodes.every(g => nodes.every(o => o === g || (g.table.get(o.id) !== undefined && g.isUp(g.table.get(o.id)!))))

test('all nodes learn all others within a bounded number of rounds', () => {
  const { nodes, round } = cluster(16, { window: 4 })
  let rounds = 0
  while (!everyoneSeesEveryone(nodes) && rounds < 60) { round(); rounds++ }
  assert.ok(everyoneSeesEveryone(nodes), `not converged after ${rounds} rounds`)
  assert.equal(nodes[3].table.get(9)?.info.speed, 90000)
})

test('an open cluster forms from a single seed', () => {
  const { nodes, round } = cluster(8, { open: true })
  let rounds = 0
  while (!everyoneSeesEveryone(nodes) && rounds < 80) { round(); rounds++ }
  assert.ok(everyoneSeesEveryone(nodes), `not converged after ${rounds} rounds`)
})

test('datagrams never exceed one window, whatever the cluster size', () => {
  for (const n of [8, 64]) {
    const { nodes, round } = cluster(n, { window: 6 })
    for (let i = 0; i < 30; i++) round()
    const perPacket = nodes.reduce((a, g) => a + g.stats.sentBytes, 0) / nodes.reduce((a, g) => a + g.stats.sent, 0)
    assert.ok(perPacket <= HEADER_LEN + 6 * ENTRY_LEN + MAC_LEN, `${perPacket} bytes per packet at n=${n}`)
  }
})

test('a silent node reads down, and up again when it speaks', () => {
  const { nodes, round, clock } = cluster(6, { window: 6, downAfter: 10_000 })
  for (let i = 0; i < 30; i++) round()
  nodes[5].quiet = true
  const k = (g: Gossiper) => g.table.get(6)!
  let rounds = 0
  while (nodes.slice(0, 5).some(g => g.isUp(k(g))) && rounds < 40) { round(); rounds++ }
  assert.ok(nodes.slice(0, 5).every(g => !g.isUp(k(g))), 'quiet node still up somewhere')
  assert.ok(rounds * 1000 >= 10_000 - 2000, 'went down before downAfter')
  nodes[5].quiet = false
  rounds = 0
  while (nodes.slice(0, 5).some(g => !g.isUp(k(g))) && rounds < 60) { round(); rounds++ }
  assert.ok(nodes.slice(0, 5).every(g => g.isUp(k(g))), `returned node not up everywhere after ${rounds} rounds (t=${clock.t})`)
})

test('forged, replayed, unknown and self-claiming datagrams are dropped and counted, state untouched', () => {
  const { nodes, round } = cluster(3)
  for (let i = 0; i < 10; i++) round()
  const g = nodes[0]
  const before = JSON.stringify([...g.table.values()].map(k => k.info))
  const from: Address = { host: '10.9.9.9', port: 1 }
  const entry = { info: { id: 2, addr: '10.0.0.2', port: 5428, incarnation: 5, seq: 1, status: 3, cpus: 1, speed: 1, load: 9999, tmem: 0, rmem: 0, mem: 0, util: 0 }, age: 0 }
  const wrongKey = new Keyring(Buffer.from('x'.repeat(32)))
  const dest = { id: 1, addr: '10.0.0.1', port: 5428 }
  g.onDatagram(encode({ sender: 2, incarnation: 5, seq: 1, dest, entries: [entry] }, wrongKey), from)
  assert.equal(g.stats.droppedBadmac, 1)
  const right = new Keyring(Buffer.from('k'.repeat(32)))
  g.onDatagram(encode({ sender: 77, incarnation: 5, seq: 1, dest, entries: [{ ...entry, info: { ...entry.info, id: 77 } }] }, right), from)
  assert.equal(g.stats.droppedUnknown, 1)
  g.onDatagram(encode({ sender: 1, incarnation: 5, seq: 1, dest, entries: [] }, right), from)
  assert.equal(g.stats.droppedSelf, 1)
  g.onDatagram(Buffer.from([1, 2, 3]), from)
  assert.equal(g.stats.droppedMalformed, 1)
  assert.equal(JSON.stringify([...g.table.values()].map(k => k.info)), before)
  // a replay of a real datagram
  const real = encode({ sender: 3, incarnation: 99, seq: 1, dest, entries: [] }, right)
  g.onDatagram(real, from)
  g.onDatagram(real, from)
  assert.equal(g.stats.droppedReplay, 1)
})

test('a datagram captured on its way to one node is dropped and counted by every other, and replayed to its own', () => {
  const { nodes, round } = cluster(4)
  for (let i = 0; i < 10; i++) round()
  // node 1's next datagram, caught on the wire
  const wire: Array<{ to: Address, data: Buffer }> = []
  nodes[0].attach({ local: { host: '10.0.0.1', port: 5428 }, send: (to, data) => wire.push({ to, data: Buffer.from(data) }), close: async () => {} })
  nodes[0].tick()
  assert.equal(wire.length, 1)
  const { to, data } = wire[0]
  const from: Address = { host: '10.0.0.1', port: 5428 }
  const dest = nodes.find(g => g.opts.addr === to.host) as Gossiper
  const others = nodes.slice(1).filter(g => g !== dest)
  const views = others.map(g => JSON.stringify([...g.table.values()].map(k => [k.info, k.freshAt])))
  for (const g of others) {
    const received = g.stats.received
    g.onDatagram(data, from)
    assert.equal(g.stats.droppedMisdirected, 1, `node ${g.id} took a datagram meant for node ${dest.id}`)
    assert.equal(g.stats.received, received)
  }
  assert.deepEqual(others.map(g => JSON.stringify([...g.table.values()].map(k => [k.info, k.freshAt]))), views)
  const received = dest.stats.received
  dest.onDatagram(data, from)
  assert.equal(dest.stats.received, received + 1, 'its destination takes it')
  dest.onDatagram(data, from)
  assert.equal(dest.stats.droppedReplay, 1, 'once')
  assert.equal(dest.stats.droppedMisdirected, 0)
})

test('a datagram to a node not yet known by id (a seed) names its address; no other node takes it', () => {
  const { nodes, round } = cluster(3)
  for (let i = 0; i < 5; i++) round()
  const key = new Keyring(Buffer.from('k'.repeat(32)))
  const from: Address = { host: '10.0.0.3', port: 5428 }
  const toSeed = encode({ sender: 3, incarnation: 7, seq: 1, dest: { id: 0, addr: '10.0.0.1', port: 5428 }, entries: [] }, key)
  nodes[1].onDatagram(toSeed, from)
  assert.equal(nodes[1].stats.droppedMisdirected, 1)
  const received = nodes[0].stats.received
  nodes[0].onDatagram(toSeed, from)
  assert.equal(nodes[0].stats.received, received + 1)
  // same address, another port: another node
  nodes[0].onDatagram(encode({ sender: 3, incarnation: 7, seq: 2, dest: { id: 0, addr: '10.0.0.1', port: 5429 }, entries: [] }, key), from)
  assert.equal(nodes[0].stats.droppedMisdirected, 1)
})

test('with 20% loss the cluster still converges', () => {
  const { nodes, round } = cluster(12, { loss: 0.2 })
  let rounds = 0
  while (!everyoneSeesEveryone(nodes) && rounds < 100) { round(); rounds++ }
  assert.ok(everyoneSeesEveryone(nodes))
})
