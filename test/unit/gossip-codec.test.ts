import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decode, DecodeError, encode, ENTRY_LEN, HEADER_LEN, MAX_DATAGRAM, MAX_WINDOW, type Packet } from '../../src/gossip/codec.js'
import { Keyring, MAC_LEN } from '../../src/gossip/keyring.js'
import type { NodeInfo } from '../../src/gossip/info.js'
import { SPEED } from '../../src/config.js'

const keys = new Keyring(Buffer.from('0123456789abcdef0123456789abcdef'))

function info (id: number): NodeInfo {
  return { id, addr: `10.1.${id >> 8}.${id & 255}`, port: 5428, incarnation: 1000 + id, seq: 7 * id, status: 3, cpus: 4, speed: 12345, load: 150 + id, tmem: 8 * 2 ** 30, rmem: 2 ** 30, mem: 3 * 2 ** 30, util: 99 }
}

function packet (n: number): Packet {
  return { sender: 1, incarnation: 42, seq: 9, dest: { id: 513, addr: '10.1.2.1', port: 5429 }, entries: Array.from({ length: n }, (_, i) => ({ info: info(i + 1), age: 100 * i })) }
}

test('round trip keeps every field', () => {
  const p = packet(5)
  const q = decode(encode(p, keys), keys)
  assert.deepEqual(q, p)
})

test('a full window fits one datagram and one more entry is refused', () => {
  const buf = encode(packet(MAX_WINDOW), keys)
  assert.equal(buf.length, HEADER_LEN + MAX_WINDOW * ENTRY_LEN + MAC_LEN)
  assert.ok(buf.length <= MAX_DATAGRAM)
  assert.ok(HEADER_LEN + (MAX_WINDOW + 1) * ENTRY_LEN + MAC_LEN > MAX_DATAGRAM)
  assert.throws(() => encode(packet(MAX_WINDOW + 1), keys), RangeError)
})

function reason (f: () => unknown): string {
  try { f() } catch (e) { if (e instanceof DecodeError) return e.reason; throw e }
  return 'accepted'
}

test('forged, truncated, garbage and foreign-version datagrams are refused with their reason', () => {
  const good = encode(packet(3), keys)
  const other = new Keyring(Buffer.from('another key, also 32 bytes long!'))
  assert.equal(reason(() => decode(encode(packet(3), other), keys)), 'badmac')
  const flipped = Buffer.from(good); flipped[HEADER_LEN + 5] ^= 1
  assert.equal(reason(() => decode(flipped, keys)), 'badmac')
  // the MAC covers the sender and the destination (id, port, address)
  for (const at of [7, 17, 19, 23]) {
    const b = Buffer.from(good); b[at] ^= 1
    assert.equal(reason(() => decode(b, keys)), 'badmac', `byte ${at}`)
  }
  const v1 = Buffer.from(good); v1[2] = 1
  assert.equal(reason(() => decode(v1, keys)), 'version')
  assert.equal(reason(() => decode(good.subarray(0, good.length - 1), keys)), 'malformed')
  assert.equal(reason(() => decode(good.subarray(0, 10), keys)), 'malformed')
  assert.equal(reason(() => decode(Buffer.from('GET / HTTP/1.0\r\n\r\n'), keys)), 'malformed')
  const v9 = Buffer.from(good); v9[2] = 9
  assert.equal(reason(() => decode(v9, keys)), 'version')
  assert.equal(reason(() => decode(encode(packet(3), null), keys)), 'badmac') // unsigned
  assert.equal(reason(() => decode(good, keys)), 'accepted')
})

test('an entry no node could send (port 0, another node\'s address 0, a speed out of range, more free memory than total) is malformed, signed or not', () => {
  const bad: Array<[string, (i: NodeInfo) => void]> = [
    ['port 0', i => { i.port = 0 }],
    ['address 0 of another node', i => { i.addr = '0.0.0.0' }],
    ['speed above SPEED.max', i => { i.speed = SPEED.max + 1 }],
    ['speed 2^32-1', i => { i.speed = 0xffffffff }],
    ['free memory beyond total', i => { i.mem = i.tmem + 1024 }],
    ['Linux free memory beyond total', i => { i.rmem = i.tmem + 1024 }]
  ]
  for (const [what, edit] of bad) {
    const p = packet(3)
    edit(p.entries[1].info)
    for (const k of [keys, null]) assert.equal(reason(() => decode(encode(p, k), k)), 'malformed', what)
  }
  // the sender's own entry may say address 0: the receiver takes it from the datagram
  const own = packet(3)
  own.entries[0].info.addr = '0.0.0.0' // (entry 0 is node 1, the sender)
  assert.equal(reason(() => decode(encode(own, keys), keys)), 'accepted')
  const edge = packet(2)
  edge.entries[0].info.speed = SPEED.max
  edge.entries[1].info.speed = SPEED.min
  assert.equal(reason(() => decode(encode(edge, keys), keys)), 'accepted')
})

test('a datagram longer than MAX_DATAGRAM is malformed, even one well formed and signed', () => {
  // 40 entries, correctly signed: only the length gives it away
  const head = Buffer.from(encode(packet(1), null))
  const body = Buffer.concat([head.subarray(0, HEADER_LEN), ...Array.from({ length: 40 }, () => head.subarray(HEADER_LEN))])
  body.writeUInt8(40, 5)
  const unsigned = Buffer.from(body)
  body.writeUInt8(1, 4)
  const signed = Buffer.concat([body, keys.mac(body)])
  assert.ok(signed.length > MAX_DATAGRAM)
  assert.equal(reason(() => decode(signed, keys)), 'malformed')
  assert.equal(reason(() => decode(unsigned, null)), 'malformed')
  assert.equal(reason(() => decode(Buffer.alloc(MAX_DATAGRAM + 1), keys)), 'malformed')
})

test('random garbage never throws anything but DecodeError', () => {
  let seed = 1
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 16 }
  const good = encode(packet(4), keys)
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(good.subarray(0, rnd() % (good.length + 1)))
    for (let k = 0; k < 3; k++) if (b.length) b[rnd() % b.length] = rnd() & 255
    try { decode(b, keys) } catch (e) { assert.ok(e instanceof DecodeError, String(e)) }
  }
})
