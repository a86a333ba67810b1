// The transfer connection between two daemons (TCP, default port 4660, as openMosix's migration
// daemon): a mutual challenge-response with the cluster key, then frames.
//
//   handshake  server -> client: "HPCM" 0x01 | nonceS (16)
//              client -> server: nonceC (16) | MAC("c" nonceS nonceC)
//              server -> client: MAC("s" nonceC nonceS)           (or the connection is closed)
//   frame      length u32 (type + payload) | type u8 | payload
//              J control message (JSON, a typed Message of protocol.ts) · I image bytes · O stdout
//              E stderr · N stdin (link.ts: what every connection end does with them)
//
// MAC is the cluster key's HMAC (src/gossip/keyring.ts). A peer without the key learns nothing and
// can send nothing: the connection closes after the handshake fails.
import { connect, type Socket } from 'node:net'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Keyring } from '../gossip/keyring.js'
import { MAC_LEN } from '../gossip/keyring.js'
import { Link, type FrameType } from './link.js'
import { CONN_FLUSH_MS, CONN_LINGER_MS } from '../config.js'

export type { FrameType } from './link.js'

const MAGIC = Buffer.from([0x48, 0x50, 0x43, 0x4d, 0x01]) // "HPCM" v1
const NONCE = 16
const MAX_FRAME = 8 << 20
const HANDSHAKE_MS = 5000

/** Reads exactly n bytes from a socket during the handshake. */
function readExact (sock: Socket, n: number, state: { buf: Buffer }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tryTake = (): boolean => {
      if (state.buf.length < n) return false
      const out = state.buf.subarray(0, n)
      state.buf = state.buf.subarray(n)
      cleanup()
      resolve(out)
      return true
    }
    const onData = (d: Buffer): void => { state.buf = Buffer.concat([state.buf, d]); tryTake() }
    const onEnd = (): void => { cleanup(); reject(new Error('connection closed during handshake')) }
    const onErr = (e: Error): void => { cleanup(); reject(e) }
    const cleanup = (): void => { sock.off('data', onData); sock.off('end', onEnd); sock.off('close', onEnd); sock.off('error', onErr) }
    if (tryTake()) return
    sock.on('data', onData); sock.once('end', onEnd); sock.once('close', onEnd); sock.once('error', onErr)
  })
}

function equal (a: Buffer, b: Buffer): boolean { return a.length === b.length && timingSafeEqual(a, b) }

async function withDeadline<T> (p: Promise<T>, sock: Socket): Promise<T> {
  const t = setTimeout(() => sock.destroy(new Error('handshake timed out')), HANDSHAKE_MS)
  try { return await p } finally { clearTimeout(t) }
}

/** A framed, authenticated TCP connection (a Link: typed messages, frames, close). */
export class Conn extends Link {
  private buf: Buffer = Buffer.alloc(0)
  constructor (readonly sock: Socket, rest: Buffer, peer: string) {
    super(peer)
    sock.setNoDelay(true)
    sock.setKeepAlive(true, 2000)
    sock.on('data', d => this.onData(d))
    sock.on('error', e => this.finish(e))
    sock.on('close', () => this.finish())
    if (rest.length) queueMicrotask(() => this.onData(rest))
  }

  static async server (sock: Socket, keys: Keyring): Promise<Conn> {
    const state: { buf: Buffer } = { buf: Buffer.alloc(0) }
    const nonceS = randomBytes(NONCE)
    sock.write(Buffer.concat([MAGIC, nonceS]))
    const reply = await withDeadline(readExact(sock, NONCE + MAC_LEN, state), sock)
    const nonceC = reply.subarray(0, NONCE)
    if (!equal(reply.subarray(NONCE), keys.mac(Buffer.concat([Buffer.from('c'), nonceS, nonceC])))) {
      sock.destroy()
      throw new Error(`peer ${sock.remoteAddress} failed authentication`)
    }
    sock.write(keys.mac(Buffer.concat([Buffer.from('s'), nonceC, nonceS])))
    return new Conn(sock, state.buf, `${sock.remoteAddress}:${sock.remotePort}`)
  }

  static async client (host: string, port: number, keys: Keyring, timeoutMs = 5000): Promise<Conn> {
    const sock = connect({ host, port })
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { sock.destroy(); reject(new Error(`connect to ${host}:${port} timed out`)) }, timeoutMs)
      sock.once('connect', () => { clearTimeout(t); resolve() })
      sock.once('error', e => { clearTimeout(t); reject(e) })
    })
    const state: { buf: Buffer } = { buf: Buffer.alloc(0) }
    const hello = await withDeadline(readExact(sock, MAGIC.length + NONCE, state), sock)
    if (!equal(hello.subarray(0, MAGIC.length), MAGIC)) { sock.destroy(); throw new Error(`${host}:${port} is not an hpcfs transfer port (or another version)`) }
    const nonceS = hello.subarray(MAGIC.length)
    const nonceC = randomBytes(NONCE)
    sock.write(Buffer.concat([nonceC, keys.mac(Buffer.concat([Buffer.from('c'), nonceS, nonceC]))]))
    const proof = await withDeadline(readExact(sock, MAC_LEN, state).catch(() => { throw new Error(`${host}:${port} refused our cluster key`) }), sock)
    if (!equal(proof, keys.mac(Buffer.concat([Buffer.from('s'), nonceC, nonceS])))) { sock.destroy(); throw new Error(`${host}:${port} does not hold the cluster key`) }
    return new Conn(sock, state.buf, `${host}:${port}`)
  }

  private onData (d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(0)
      if (len < 1 || len > MAX_FRAME) { this.sock.destroy(new Error(`bad frame length ${len}`)); return }
      if (this.buf.length < 4 + len) break
      const type = String.fromCharCode(this.buf[4]) as FrameType
      const payload = this.buf.subarray(5, 4 + len)
      this.buf = this.buf.subarray(4 + len)
      if (!'JIOENWR'.includes(type)) { this.sock.destroy(new Error(`bad frame type ${type}`)); return }
      this.deliver(type, payload)
    }
  }

  /** Frames sent while a helper writes on the socket (quiet), in order. */
  private waiting: Array<{ type: FrameType, payload: Buffer, resolve: () => void, reject: (e: Error) => void }> | null = null

  /** The socket's descriptor (net.Socket keeps it in its libuv handle). */
  override rawFd (): number | null {
    const fd = (this.sock as unknown as { _handle?: { fd?: number } })._handle?.fd
    return typeof fd === 'number' && fd >= 0 && !this.closed ? fd : null
  }

  override quiet (): () => void {
    if (this.waiting !== null) throw new Error('connection already quiet')
    this.waiting = []
    return () => {
      const w = this.waiting ?? []
      this.waiting = null
      for (const f of w) this.frame(f.type, f.payload).then(f.resolve, f.reject)
    }
  }

  override holdIn (): () => void {
    const h = (this.sock as unknown as { _handle?: { reading?: boolean, readStop?: () => number, readStart?: () => number } })._handle
    const stop = h?.readStop?.bind(h)
    const start = h?.readStart?.bind(h)
    if (!h || !stop || !start) throw new Error('connection has no socket')
    if (this.buf.length > 0 || this.sock.readableLength > 0) throw new Error('bytes after the last frame were read already')
    // net.Socket reads on until its buffer is full even when paused, and starts reading again
    // whenever its stream asks for more (_read): stop the handle itself, and _read with it
    const sock = this.sock as unknown as { _read: (n: number) => void }
    const read = sock._read
    sock._read = () => {}
    h.reading = false
    stop()
    this.rawIn = true
    return () => {
      if (!this.rawIn) return
      this.rawIn = false
      sock._read = read
      if (this.closed || this.sock.destroyed) return
      h.reading = true
      start()
    }
  }

  /** Writes a frame; resolves when the socket can take more (backpressure). */
  frame (type: FrameType, payload: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`connection to ${this.peer} closed`))
    if (this.waiting !== null) {
      const w = this.waiting
      return new Promise((resolve, reject) => { w.push({ type, payload, resolve, reject }) })
    }
    const head = Buffer.alloc(5)
    head.writeUInt32BE(payload.length + 1, 0)
    head[4] = type.charCodeAt(0)
    // one write (writev) for the header and the payload: one segment and one wake-up of the
    // reader for a control message, not two (the socket has Nagle off)
    this.sock.cork()
    this.sock.write(head)
    const more = this.sock.write(payload)
    this.sock.uncork()
    if (more) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const done = (): void => { this.sock.off('drain', done); this.off('close', fail); resolve() }
      const fail = (): void => { this.sock.off('drain', done); reject(new Error(`connection to ${this.peer} closed`)) }
      this.sock.once('drain', done)
      this.once('close', fail)
    })
  }

  protected override finish (e?: Error): void {
    const w = this.waiting ?? []
    this.waiting = null
    super.finish(e)
    for (const f of w) f.reject(new Error(`connection to ${this.peer} closed`))
  }

  pause (): void { this.sock.pause() }
  resume (): void { this.sock.resume() }

  /** Ends the connection after what was written (see CONN_LINGER_MS, CONN_FLUSH_MS). */
  close (): void {
    this.sock.end()
    const kill = (): void => { this.sock.destroy() }
    const cap = setTimeout(kill, CONN_FLUSH_MS).unref()
    this.sock.once('finish', () => { clearTimeout(cap); setTimeout(kill, CONN_LINGER_MS).unref() })
  }
  override abort (e?: Error): void { this.sock.destroy(e) }
}
