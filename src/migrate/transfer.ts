// Moving images: streaming them out (with a copy kept until the process runs elsewhere), taking
// them in (from the offering connection, or from another node's connection naming a ticket),
// and the transfer bandwidth measured from them.
import { randomBytes } from 'node:crypto'
import { close as fsClose, constants as fsc, createReadStream, fstatSync, openSync, rmSync, unlinkSync, write as fsWrite } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import debug from '../util/log.js'
import type { RawSink, RawSource } from './engine.js'
import type { Link } from './link.js'
import type { Message } from './protocol.js'
import { monotonicMs } from '../util/clock.js'

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

/** Linux open(2) O_TMPFILE (not in Node's fs.constants): a file with no name in a directory. */
const O_TMPFILE = 0o20200000

/**
 * A copy of an image kept until the move ends (so that the process can run again if the other
 * side cannot), in a temporary file without a name (O_TMPFILE; a file unlinked at once where the
 * file system cannot): not in the daemon's memory, which an image of hundreds of MB would swell
 * for good, and gone with the daemon if it dies. Written as a stream (in order, with backpressure);
 * `stream()` reads it back as often as needed once it is complete; `release()` frees it.
 */
export class ImageCopy extends Writable {
  /** bytes written */
  size = 0
  private fd: number | null

  /**
   * `path`: a named file instead (a guest's copy while it leaves, which a daemon started again
   * after a crash must find: state.ts), removed on release.
   */
  constructor (dir = tmpdir(), readonly path: string | null = null) {
    super({ highWaterMark: 4 << 20 })
    let fd: number
    if (path !== null) {
      fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC, 0o600)
    } else {
      try {
        fd = openSync(dir, O_TMPFILE | fsc.O_RDWR, 0o600)
      } catch {
        const tmp = join(dir, `hpcfs-image-${process.pid}-${randomBytes(6).toString('hex')}`)
        fd = openSync(tmp, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600)
        unlinkSync(tmp)
      }
    }
    this.fd = fd
  }

  /** The file's descriptor, for a writer that fills it directly (then `filled`). */
  get descriptor (): number {
    if (this.fd === null) throw new Error('image copy released')
    return this.fd
  }

  /** The file was filled through `descriptor`: it is complete as it is. */
  filled (): void {
    this.size = fstatSync(this.descriptor).size
    this.end()
  }

  override _write (c: Buffer, _e: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.fd === null) { cb(new Error('image copy released')); return }
    const at = this.size
    this.size += c.length
    fsWrite(this.fd, c, 0, c.length, at, e => cb(e))
  }

  /** Ends the copy; resolves once every byte written is in the file. */
  async complete (): Promise<void> {
    if (this.writableFinished) return
    const done = new Promise<void>((resolve, reject) => { this.once('finish', resolve); this.once('error', reject) })
    if (!this.writableEnded) this.end()
    await done
  }

  /** The copy, from its first byte, as a stream (to restore or send it). */
  stream (): Readable {
    if (this.fd === null) throw new Error('image copy released')
    if (this.size === 0) return Readable.from([])
    // a descriptor of its own (opened through /proc: the file may have no name): a stream that is
    // given up closes its descriptor, whatever autoClose says, and the copy must stay readable
    return createReadStream(`/proc/self/fd/${this.fd}`, { start: 0, end: this.size - 1, highWaterMark: 1 << 20 })
  }

  /** Frees the copy (the move has ended). */
  release (): void {
    if (this.fd === null) return
    const fd = this.fd
    this.fd = null
    this.destroy()
    fsClose(fd, () => {})
    if (this.path !== null) rmSync(this.path, { force: true })
  }
}

/** A Writable that keeps every chunk in `copy` and passes it on to `sink` (optionally counting). */
export function tee (sink: Writable, copy: ImageCopy, count?: (n: number) => void): Writable {
  return new Writable({
    write: (c: Buffer, _e, cb) => {
      count?.(c.length)
      let n = 2
      let err: Error | null | undefined
      const one = (e?: Error | null): void => { err ??= e; if (--n === 0) cb(err) }
      copy.write(c, one)
      sink.write(c, one)
    },
    final: cb => { copy.end(); sink.end(cb) }
  })
}

/**
 * Raw images (docs/migrate.md "Raw images"): the engine writes the image straight into the
 * connection's socket (and the copy kept until the move ends), or reads it straight from it, and
 * the image never crosses this process. Null when conn cannot carry one (an in-memory link).
 */
export function rawSink (conn: Link, copy: ImageCopy): RawSink | null {
  const fd = conn.rawFd()
  return fd === null ? null : { fd, copy: copy.descriptor, stallMs: conn.stallMs }
}

/** The engine reads a raw image from conn (its input held: `holdIn`); null when it cannot. */
export function rawSource (conn: Link, testFault?: 'early' | 'end'): RawSource | null {
  const fd = conn.rawFd()
  return fd === null ? null : { fd, stallMs: conn.stallMs, ...(testFault !== undefined ? { testFault } : {}) }
}

/** A copy, once complete, as a stream from its first byte (to restore it). */
export async function replay (copy: ImageCopy): Promise<Readable> {
  await copy.complete()
  return copy.stream()
}

/** Sends a whole image kept in a copy over conn: image-start, the frames, image-end (with the CPU ticks it used here, if known). */
export async function sendImage (conn: Link, copy: ImageCopy, used?: { utime: number, stime: number }): Promise<void> {
  await copy.complete()
  await conn.send({ t: 'image-start' })
  for await (const c of copy.stream()) await conn.frame('I', c as Buffer)
  await conn.send(used ? { t: 'image-end', utime: used.utime, stime: used.stime } : { t: 'image-end' })
}

/** N -> M, on M: accepted moves whose image comes over another connection, by ticket. */
export class Tickets {
  private readonly waiting = new Map<string, (c: Link, raw: boolean) => void>()

  has (ticket: string): boolean { return this.waiting.has(ticket) }

  /**
   * Waits up to `ms` for a connection naming ticket: `come` gets it, or `late` is called. The
   * returned function stops waiting.
   */
  wait (ticket: string, ms: number, come: (c: Link, raw: boolean) => void, late: () => void): () => void {
    const t = setTimeout(() => { this.waiting.delete(ticket); late() }, ms)
    this.waiting.set(ticket, (c, raw) => { clearTimeout(t); this.waiting.delete(ticket); come(c, raw) })
    return () => { clearTimeout(t); this.waiting.delete(ticket) }
  }

  /** A connection names ticket (`raw`: it offers a raw image): handed to its waiter (false if nobody waits for it). */
  claim (ticket: string, c: Link, raw = false): boolean {
    const w = this.waiting.get(ticket)
    if (!w) return false
    w(c, raw)
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
  /** when its first and last bytes came (monotonicMs; 0: not yet) */
  first = 0
  ended = 0
  private last: Buffer | undefined // with the 'end' fault: every frame is held back until the next comes
  private readonly cleanups: Array<() => void> = []

  constructor (private readonly fault: '' | 'early' | 'end' = '') {}

  /** Takes image frames from c (home's connection, or the one N opens with the ticket). */
  feed (c: Link): void {
    const onData = (type: string, d: Buffer): void => {
      if (type !== 'I') return
      if (this.first === 0) this.first = monotonicMs()
      this.received += d.length
      if (this.fault === 'early' && this.received > 4096) { this.image.destroy(new Error('injected fault: restore broken half-way')); return }
      if (this.fault === 'end') { const prev = this.last; this.last = d; if (prev === undefined) return; d = prev }
      if (!this.image.write(d)) { c.pause(); this.image.once('drain', () => c.resume()) }
    }
    const onMsg = (x: Message): void => {
      if (x.t === 'image-end') {
        this.ended = monotonicMs()
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
  ms (): number {
    const now = monotonicMs()
    return Math.max(1, (this.ended || now) - (this.first || now))
  }
}
