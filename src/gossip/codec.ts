// Wire format of a gossip datagram (all integers big-endian). One datagram never exceeds
// MAX_DATAGRAM bytes, whatever the cluster size: the window is capped at MAX_WINDOW entries, and
// a longer datagram is malformed.
//
//   header (24 B): magic "HP" | version u8 | type u8 | flags u8 | count u8 | sender u16 |
//                  sender incarnation u32 | packet seq u32 |
//                  destination id u16 | destination port u16 | destination addr u32
//   count entries (46 B each): id u16 | port u16 | addr u32 | incarnation u32 | seq u32 |
//                  age ms u32 | status u16 | cpus u16 | speed u32 | load u32 |
//                  tmem KiB u32 | rmem KiB u32 | mem KiB u32 | util u8 | reserved u8
//   mac (16 B): HMAC-SHA256 of everything before it, truncated
//
// Memory travels in KiB (up to 4 TiB a node) and is shown in bytes.
//
// The MAC covers the sender and the destination: a datagram captured on its way to one node is
// refused by every other (the receiver checks the destination, gossiper.ts), and the per-sender
// replay window (replay.ts) refuses it at its own destination. The destination is named by its
// node id; a node not yet known by id (a --join seed) by the IPv4 address and port it was sent to,
// with id 0. Version 2 added the destination; version 1 datagrams are refused as 'version'.
import { isIPv4 } from 'node:net'
import { SPEED } from '../config.js'
import { MAC_LEN, type Keyring } from './keyring.js'
import type { NodeInfo } from './info.js'

export const MAGIC = 0x4850 // "HP"
export const VERSION = 2
export const TYPE_GOSSIP = 1
export const HEADER_LEN = 24
export const ENTRY_LEN = 46
export const MAX_DATAGRAM = 1400
export const MAX_WINDOW = Math.floor((MAX_DATAGRAM - HEADER_LEN - MAC_LEN) / ENTRY_LEN) // 29
const U32 = 0xffffffff

/** An entry as carried on the wire: the info plus its age when sent. */
export interface WireEntry { info: NodeInfo, age: number }

/** Whom a datagram is for: a node id, or 0 and the address it was sent to (a seed not yet known by id). */
export interface Destination { id: number, addr: string, port: number }

export interface Packet {
  sender: number
  incarnation: number
  seq: number
  dest: Destination
  entries: WireEntry[]
}

/** Why a datagram was refused; each reason has its own counter. */
export type DropReason = 'malformed' | 'version' | 'badmac'

export class DecodeError extends Error {
  constructor (readonly reason: DropReason, message: string) { super(message) }
}

function ipToU32 (ip: string): number {
  const p = ip.split('.')
  return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0
}

function u32ToIp (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

const kib = (bytes: number): number => Math.min(U32, Math.max(0, Math.round(bytes / 1024)))
const clamp = (v: number, max: number): number => Math.min(max, Math.max(0, Math.round(v)))

export function encode (p: Packet, keys: Keyring | null): Buffer {
  if (p.entries.length > MAX_WINDOW) throw new RangeError(`window of ${p.entries.length} entries exceeds ${MAX_WINDOW}`)
  const body = HEADER_LEN + p.entries.length * ENTRY_LEN
  const buf = Buffer.alloc(body + (keys ? MAC_LEN : 0))
  buf.writeUInt16BE(MAGIC, 0)
  buf.writeUInt8(VERSION, 2)
  buf.writeUInt8(TYPE_GOSSIP, 3)
  buf.writeUInt8(keys ? 1 : 0, 4)
  buf.writeUInt8(p.entries.length, 5)
  buf.writeUInt16BE(p.sender, 6)
  buf.writeUInt32BE(p.incarnation >>> 0, 8)
  buf.writeUInt32BE(p.seq >>> 0, 12)
  buf.writeUInt16BE(p.dest.id & 0xffff, 16)
  buf.writeUInt16BE(p.dest.port & 0xffff, 18)
  buf.writeUInt32BE(isIPv4(p.dest.addr) ? ipToU32(p.dest.addr) : 0, 20)
  let o = HEADER_LEN
  for (const { info: e, age } of p.entries) {
    buf.writeUInt16BE(e.id, o)
    buf.writeUInt16BE(e.port, o + 2)
    buf.writeUInt32BE(isIPv4(e.addr) ? ipToU32(e.addr) : 0, o + 4)
    buf.writeUInt32BE(e.incarnation >>> 0, o + 8)
    buf.writeUInt32BE(e.seq >>> 0, o + 12)
    buf.writeUInt32BE(clamp(age, U32), o + 16)
    buf.writeUInt16BE(e.status & 0xffff, o + 20)
    buf.writeUInt16BE(clamp(e.cpus, 0xffff), o + 22)
    buf.writeUInt32BE(clamp(e.speed, U32), o + 24)
    buf.writeUInt32BE(clamp(e.load, U32), o + 28)
    buf.writeUInt32BE(kib(e.tmem), o + 32)
    buf.writeUInt32BE(kib(e.rmem), o + 36)
    buf.writeUInt32BE(kib(e.mem), o + 40)
    buf.writeUInt8(clamp(e.util, 100), o + 44)
    o += ENTRY_LEN
  }
  if (keys) keys.mac(buf.subarray(0, body)).copy(buf, body)
  return buf
}

/** Decodes and authenticates a datagram; throws DecodeError with the reason to count. */
export function decode (buf: Buffer, keys: Keyring | null): Packet {
  if (buf.length > MAX_DATAGRAM) throw new DecodeError('malformed', `oversized datagram (${buf.length} bytes, at most ${MAX_DATAGRAM})`)
  if (buf.length < HEADER_LEN) throw new DecodeError('malformed', `short datagram (${buf.length} bytes)`)
  if (buf.readUInt16BE(0) !== MAGIC) throw new DecodeError('malformed', 'bad magic')
  const version = buf.readUInt8(2)
  if (version !== VERSION) throw new DecodeError('version', `protocol version ${version}, expected ${VERSION}`)
  if (buf.readUInt8(3) !== TYPE_GOSSIP) throw new DecodeError('malformed', `unknown type ${buf.readUInt8(3)}`)
  const signed = buf.readUInt8(4) === 1
  const count = buf.readUInt8(5)
  const body = HEADER_LEN + count * ENTRY_LEN
  if (keys && !signed) throw new DecodeError('badmac', 'unsigned datagram')
  if (buf.length !== body + (signed ? MAC_LEN : 0)) throw new DecodeError('malformed', `length ${buf.length} does not match ${count} entries`)
  if (keys && !keys.verify(buf.subarray(0, body), buf.subarray(body))) throw new DecodeError('badmac', 'bad MAC')
  const sender = buf.readUInt16BE(6)
  if (sender === 0) throw new DecodeError('malformed', 'sender id 0')
  const entries: WireEntry[] = []
  let o = HEADER_LEN
  for (let i = 0; i < count; i++, o += ENTRY_LEN) {
    const id = buf.readUInt16BE(o)
    const util = buf.readUInt8(o + 44)
    const cpus = buf.readUInt16BE(o + 22)
    const speed = buf.readUInt32BE(o + 24)
    const port = buf.readUInt16BE(o + 2)
    const addr = buf.readUInt32BE(o + 4)
    const [tmem, rmem, mem] = [buf.readUInt32BE(o + 32), buf.readUInt32BE(o + 36), buf.readUInt32BE(o + 40)]
    // (a node is sent to at its port and address: port 0 could not be, nor address 0 but for the
    // sender's own, which the receiver takes from the datagram; a speed outside the range every
    // node keeps to, or free memory beyond the total, would skew every cost)
    if (id === 0 || util > 100 || cpus === 0 || speed < SPEED.min || speed > SPEED.max || port === 0 || (addr === 0 && id !== sender) || rmem > tmem || mem > tmem) {
      throw new DecodeError('malformed', `bad entry ${i}`)
    }
    entries.push({
      age: buf.readUInt32BE(o + 16),
      info: {
        id,
        port,
        addr: u32ToIp(addr),
        incarnation: buf.readUInt32BE(o + 8),
        seq: buf.readUInt32BE(o + 12),
        status: buf.readUInt16BE(o + 20),
        cpus,
        speed,
        load: buf.readUInt32BE(o + 28),
        tmem: tmem * 1024,
        rmem: rmem * 1024,
        mem: mem * 1024,
        util
      }
    })
  }
  const dest = { id: buf.readUInt16BE(16), port: buf.readUInt16BE(18), addr: u32ToIp(buf.readUInt32BE(20)) }
  return { sender, incarnation: buf.readUInt32BE(8), seq: buf.readUInt32BE(12), dest, entries }
}
