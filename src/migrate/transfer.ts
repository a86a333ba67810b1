// Moving images: streaming them out (with a copy kept until the process runs elsewhere), taking
// them in (from the offering connection, or from another node's connection naming a ticket),
// and the transfer bandwidth measured from them.
import { PassThrough, Readable, Writable } from 'node:stream'
import debug from '../util/log.js'
import type { Link } from './link.js'
import type { Message } from './protocol.js'

const log = debug('hpcfs:transfer')

/** How long an accepted N -> M move waits for its image to start coming from N. */
export const TICKET_MS = 30_000

/** Transfers smaller than this measure latency, not bandwidth: not recorded. */
export const MIN_MEASURED_BYTES = 1 << 20

/** Memory a node keeps free for itself when it takes guests. */
export const MEMORY_RESERVE = 64 * 2 ** 20

/** Why a node with `free` bytes available refuses an image of `need` bytes, or null. */
export function memoryRefusal (need: number, free: number): string | null {
  if (need > 0 && free < need + MEMORY_RESERVE) return `not enough memory (${Math.round(need / 2 ** 20)} MiB wanted, ${Math.round(free / 2 ** 20)} MiB available)`
  return null
}

/** Records a transfer's measured rate (a receiver's report: bytes, ms); small images only show latency. */
export function noteTransfer (bandwidth: Map<number, number>, node: number, bytes: number, ms: number): void {
  if (!(bytes >= MIN_MEASURED_BYTES && ms > 0)) return
  const bw = bytes / (ms / 1000)
  const old = bandwidth.get(node)
  bandwidth.set(node, old === undefined ? bw : (old + bw) / 2)
  log('transfer to node %d: %d bytes in %d ms (%d MB/s)', node, bytes, ms, Math.round(bw / 1e6))
}

/** A Writable that keeps every chunk in `copy` and passes it on to `sink` (optionally counting). */
export function tee (sink: Writable, copy: Buffer[], count?: (n: number) => void): Writable {
  return new Writable({
    write: (c: Buffer, _e, cb) => { copy.push(c); count?.(c.length); sink.write(c, cb) },
    final: cb => { sink.end(cb) }
  })
}

/** A Writable that keeps every chunk in `chunks`. */
export function collect (chunks: Buffer[]): Writable {
  return new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb() } })
}

/** An image kept in memory, as a stream (to restore it). */
export function replay (chunks: Buffer[]): Readable { return Readable.from(chunks) }

/** Sends a whole image kept in memory over conn: image-start, the frames, image-end (with the CPU ticks it used here, if known). */
export async function sendImage (conn: Link, chunks: Buffer[], used?: { utime: number, stime: number }): Promise<void> {
  await conn.send({ t: 'image-start' })
  for (const c of chunks) await conn.frame('I', c)
  await conn.send(used ? { t: 'image-end', utime: used.utime, stime: used.stime } : { t: 'image-end' })
}

/** N -> M, on M: accepted moves whose image comes over another connection, by ticket. */
export class Tickets {
  private readonly waiting = new Map<string, (c: Link) => void>()

  has (ticket: string): boolean { return this.waiting.has(ticket) }

  /**
   * Waits up to `ms` for a connection naming ticket: `come` gets it, or `late` is called. The
   * returned function stops waiting.
   */
  wait (ticket: string, ms: number, come: (c: Link) => void, late: () => void): () => void {
    const t = setTimeout(() => { this.waiting.delete(ticket); late() }, ms)
    this.waiting.set(ticket, c => { clearTimeout(t); this.waiting.delete(ticket); come(c) })
    return () => { clearTimeout(t); this.waiting.delete(ticket) }
  }

  /** A connection names ticket: handed to its waiter (false if nobody waits for it). */
  claim (ticket: string, c: Link): boolean {
    const w = this.waiting.get(ticket)
    if (!w) return false
    w(c)
    return true
  }
}

/**
 * An image coming in over one or more connections (I frames until image-end, or abort), as a
 * stream for the restore; measures its bytes and time. `fault` injects a failure for tests
 * ('early': broken half-way, 'end': the last frame never reaches the engine).
 */
export class ImageIn {
  readonly image = new PassThrough()
  received = 0
  first = 0
  ended = 0
  private last: Buffer | undefined // with the 'end' fault: every frame is held back until the next comes
  private readonly cleanups: Array<() => void> = []

  constructor (private readonly fault: '' | 'early' | 'end' = '') {}

  /** Takes image frames from c (home's connection, or the one N opens with the ticket). */
  feed (c: Link): void {
    const onData = (type: string, d: Buffer): void => {
      if (type !== 'I') return
      if (this.first === 0) this.first = Date.now()
      this.received += d.length
      if (this.fault === 'early' && this.received > 4096) { this.image.destroy(new Error('injected fault: restore broken half-way')); return }
      if (this.fault === 'end') { const prev = this.last; this.last = d; if (prev === undefined) return; d = prev }
      if (!this.image.write(d)) { c.pause(); this.image.once('drain', () => c.resume()) }
    }
    const onMsg = (x: Message): void => {
      if (x.t === 'image-end') {
        this.ended = Date.now()
        // the 'end' fault: the last frame never reaches the engine, so the restore fails once the
        // sender has sent everything (and removed its process)
        if (this.fault === 'end') this.image.destroy(new Error('injected fault: restore broken at the end')); else this.image.end()
      } else if (x.t === 'abort') this.image.destroy(new Error(x.reason))
    }
    const onClose = (): void => { if (this.ended === 0) this.image.destroy(new Error('connection closed')) }
    c.on('data', onData)
    c.on('msg', onMsg)
    c.once('close', onClose)
    this.cleanups.push(() => { c.off('data', onData); c.off('msg', onMsg); c.off('close', onClose); c.resume() })
  }

  /** Runs f when the transfer is over (done). */
  onDone (f: () => void): void { this.cleanups.push(f) }

  /** The transfer is over (restored or failed): stops listening to its connections. */
  done (): void { for (const f of this.cleanups) f() }

  /** How long the image took to come (ms, at least 1). */
  ms (): number { return Math.max(1, (this.ended || Date.now()) - (this.first || Date.now())) }
}
