// One end of a migration connection, whatever carries it: the TCP transfer connection (wire.ts)
// or an in-memory pair for unit tests (memlink.ts). Frames are typed: J control message (a typed
// Message, protocol.ts) · I image bytes · O stdout · E stderr · N stdin · W bytes the process wrote
// on a relayed fd above 2 · R bytes for it to read there (W and R: the fd, u32 big-endian, then the
// bytes; relay.ts). A control frame that is
// not a valid message is dropped and counted (`dropped`, event 'dropped'), never delivered.
//
// Events: 'msg' (Message), 'data' (type, Buffer) for I/O/E/N/W/R frames, 'close' (Error?), 'dropped'
// (reason).
import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { IMAGE_STALL_MS } from '../config.js'
import debug from '../util/log.js'
import { monotonicMs } from '../util/clock.js'
import { decode, encode, ProtocolError, type Kind, type Message, type MsgOf } from './protocol.js'

const log = debug('hpcfs:link')

export type FrameType = 'J' | 'I' | 'O' | 'E' | 'N' | 'W' | 'R'
export type DataType = Exclude<FrameType, 'J'>

/* eslint-disable @typescript-eslint/method-signature-style */
export interface Link {
  on(ev: 'msg', l: (m: Message) => void): this
  on(ev: 'data', l: (type: DataType, d: Buffer) => void): this
  on(ev: 'close', l: (e?: Error) => void): this
  on(ev: 'dropped', l: (reason: string) => void): this
  once(ev: 'msg', l: (m: Message) => void): this
  once(ev: 'data', l: (type: DataType, d: Buffer) => void): this
  once(ev: 'close', l: (e?: Error) => void): this
  once(ev: 'dropped', l: (reason: string) => void): this
  off(ev: 'msg', l: (m: Message) => void): this
  off(ev: 'data', l: (type: DataType, d: Buffer) => void): this
  off(ev: 'close', l: (e?: Error) => void): this
  off(ev: 'dropped', l: (reason: string) => void): this
}
/* eslint-enable @typescript-eslint/method-signature-style */

export abstract class Link extends EventEmitter {
  closed = false
  /** Control frames dropped because they were not valid messages. */
  dropped = 0
  /** When the peer was last heard (monotonicMs; any frame; a ping every quarter of the link timeout: lease.ts). */
  heardAt = monotonicMs()
  constructor (readonly peer: string) { super() }

  /** Writes a frame; resolves when the carrier can take more (backpressure). */
  abstract frame (type: FrameType, payload: Buffer): Promise<void>
  /** Closes the connection (both ends see 'close'). */
  abstract close (): void
  /** Breaks the connection off at once, unsent frames dropped (a silent peer, src/migrate/lease.ts). */
  abort (e?: Error): void { this.close(); if (e) this.finish(e) }
  /** Stops / restarts delivering incoming frames (flow control of an image being received). */
  abstract pause (): void
  abstract resume (): void

  /**
   * The descriptor of the socket under this connection, when an engine helper may write or read an
   * image on it directly, unframed (a raw image, docs/migrate.md "Raw images"); null when it cannot
   * (an in-memory link).
   */
  rawFd (): number | null { return null }
  /** Set while a helper reads a raw image from this connection (the lease counts it as heard). */
  rawIn = false
  /** How long a raw image on this connection may make no progress (the link timeout once a lease watches it). */
  stallMs = IMAGE_STALL_MS
  /**
   * A helper writes on the socket from now on: frames sent meanwhile wait, in order, until the
   * returned function is called.
   */
  quiet (): () => void { return () => {} }
  /**
   * A helper reads from the socket from now on: nothing is read here until the returned function
   * is called. Throws if bytes past the last frame delivered were read already.
   */
  holdIn (): () => void { return () => {} }

  /** Hands one incoming frame to the listeners (called by the carrier). */
  protected deliver (type: FrameType, payload: Buffer): void {
    this.heardAt = monotonicMs()
    if (type !== 'J') { this.emit('data', type, payload); return }
    let m: Message
    try { m = decode(payload) } catch (e) {
      if (!(e instanceof ProtocolError)) throw e
      this.dropped++
      log('%s: dropped a control message: %s', this.peer, e.message)
      this.emit('dropped', e.message)
      return
    }
    log('%s <- %o', this.peer, m)
    this.emit('msg', m)
  }

  /** Marks the connection closed and tells the listeners, once. */
  protected finish (e?: Error): void {
    if (this.closed) return
    this.closed = true
    this.emit('close', e)
  }

  send (m: Message): Promise<void> { log('%s -> %o', this.peer, m); return this.frame('J', encode(m)) }

  /**
   * Waits for the next control message of one of the given kinds (an `error` message rejects).
   * Set up before a send, an expectation may be left unawaited when that send fails: its rejection
   * (the connection closed) is then no one's, and must not end the daemon.
   */
  expect<K extends Kind> (...kinds: K[]): Promise<MsgOf<K>> {
    const p = new Promise<MsgOf<K>>((resolve, reject) => {
      const onMsg = (m: Message): void => {
        if (m.t === 'error') { cleanup(); reject(new Error(m.reason)) } else if ((kinds as Kind[]).includes(m.t)) { cleanup(); resolve(m as MsgOf<K>) }
      }
      const onClose = (e?: Error): void => { cleanup(); reject(e ?? new Error(`connection to ${this.peer} closed`)) }
      const cleanup = (): void => { this.off('msg', onMsg); this.off('close', onClose) }
      if (this.closed) { reject(new Error(`connection to ${this.peer} closed`)); return }
      this.on('msg', onMsg)
      this.on('close', onClose)
    })
    p.catch(() => {})
    return p
  }

  /** A Writable whose bytes go out as image frames, ending with image-end. */
  imageWriter (): Writable {
    const w = new Writable({
      write: (chunk: Buffer, _enc, cb) => { this.frame('I', chunk).then(() => cb(), cb) },
      final: cb => { this.send({ t: 'image-end' }).then(() => cb(), cb) }
    })
    // The writer's user learns of a broken connection from its write callbacks (the dump fails);
    // the stream's own 'error' event must not become an uncaught exception in the daemon.
    w.on('error', e => log('%s: image stream: %s', this.peer, e.message))
    return w
  }
}
