// Wire format of a discovery announcement: one UDP datagram to the multicast group, saying "node
// ID gossips at ADDR:PORT". All integers big-endian; 40 bytes.
//
//   magic "HD" u16 | version u8 | type u8 (1 = announce) | node id u16 | gossip port u16 |
//   address u32 | incarnation u32 | seq u32 | reserved u32 |
//   mac (16 B): HMAC-SHA256 of everything before it with the cluster key, truncated
//
// incarnation is the node's gossip incarnation (larger after a restart) and seq counts its
// announcements, so that a replayed announcement can be told from a fresh one.
import { isIPv4 } from 'node:net'
import { MAC_LEN, type Keyring } from '../gossip/keyring.js'

export const MAGIC = 0x4844 // "HD"
export const VERSION = 1
export const TYPE_ANNOUNCE = 1
export const BODY_LEN = 24
export const ANNOUNCE_LEN = BODY_LEN + MAC_LEN

export interface Announcement {
  id: number // 1..65535
  addr: string // IPv4 address the node gossips on
  port: number // its gossip port
  incarnation: number
  seq: number
}

/** Why an announcement was refused; each reason has its own counter. */
export type AnnounceDrop = 'malformed' | 'version' | 'badmac'

export class AnnounceError extends Error {
  constructor (readonly reason: AnnounceDrop, message: string) { super(message) }
}

function ipToU32 (ip: string): number {
  const p = ip.split('.').map(Number)
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0
}

function u32ToIp (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

export function encodeAnnouncement (a: Announcement, keys: Keyring): Buffer {
  if (!isIPv4(a.addr)) throw new RangeError(`announcement address ${a.addr} is not IPv4`)
  const buf = Buffer.alloc(ANNOUNCE_LEN)
  buf.writeUInt16BE(MAGIC, 0)
  buf.writeUInt8(VERSION, 2)
  buf.writeUInt8(TYPE_ANNOUNCE, 3)
  buf.writeUInt16BE(a.id, 4)
  buf.writeUInt16BE(a.port, 6)
  buf.writeUInt32BE(ipToU32(a.addr), 8)
  buf.writeUInt32BE(a.incarnation >>> 0, 12)
  buf.writeUInt32BE(a.seq >>> 0, 16)
  keys.mac(buf.subarray(0, BODY_LEN)).copy(buf, BODY_LEN)
  return buf
}

/** Decodes and authenticates an announcement; throws AnnounceError with the reason to count. */
export function decodeAnnouncement (buf: Buffer, keys: Keyring): Announcement {
  if (buf.length < 4 || buf.readUInt16BE(0) !== MAGIC) throw new AnnounceError('malformed', 'not an announcement (bad magic)')
  if (buf.readUInt8(2) !== VERSION) throw new AnnounceError('version', `announcement version ${buf.readUInt8(2)}, expected ${VERSION}`)
  if (buf.readUInt8(3) !== TYPE_ANNOUNCE) throw new AnnounceError('malformed', `unknown type ${buf.readUInt8(3)}`)
  if (buf.length !== ANNOUNCE_LEN) throw new AnnounceError('malformed', `length ${buf.length}, expected ${ANNOUNCE_LEN}`)
  if (!keys.verify(buf.subarray(0, BODY_LEN), buf.subarray(BODY_LEN))) throw new AnnounceError('badmac', 'bad MAC (another cluster key, or forged)')
  const a: Announcement = {
    id: buf.readUInt16BE(4),
    port: buf.readUInt16BE(6),
    addr: u32ToIp(buf.readUInt32BE(8)),
    incarnation: buf.readUInt32BE(12),
    seq: buf.readUInt32BE(16)
  }
  if (a.id === 0 || a.port === 0 || buf.readUInt32BE(8) === 0) throw new AnnounceError('malformed', 'id, port or address 0')
  return a
}
