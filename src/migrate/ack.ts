// Acknowledged output (docs/migrate.md "Output acknowledgement") and input (InLog, "Input
// acknowledgement"). The output of a process away
// from home (fds 1 and 2, and its relayed fds above 2) is numbered by byte, per fd, from the moment
// it starts running on a node (its "stream", which goes on when it runs there again from its copy
// after a failed move). The node keeps what home has not acknowledged (OutLog), home counts what
// it got (OutCounts) and says so (`ack`, and `rejoin-ok` when the node comes back over a new
// connection); on a new connection the node sends again what home has not got. On one connection
// frames arrive once and in order or not at all, so what home got is always a prefix of what was
// sent: no byte is lost, none is written twice.
import { closeSync, ftruncateSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { OUTPUT_PACE_MS } from '../config.js'
import debug from '../util/log.js'
import type { DataType, Link } from './link.js'
import { fdFrame } from './relay.js'

const log = debug('hpcfs:ack')

/** Byte counts per fd: [fd, bytes] pairs, as they go in `ack` and `rejoin-ok`. */
export type Counts = Array<[number, number]>

/** The frame that carries output of fd: O (1), E (2) or W (above 2: the fd, then the bytes). */
export function outFrame (fd: number, d: Buffer): [DataType, Buffer] {
  return fd === 1 ? ['O', d] : fd === 2 ? ['E', d] : ['W', fdFrame(fd, d)]
}

interface Entry { fd: number, d: Buffer, end: number }

/** Guest side: a guest's output, numbered per fd, kept until home acknowledges it. */
export class OutLog {
  /** bytes of each fd numbered so far (read from the process) */
  readonly read = new Map<number, number>()
  /** kept entries, in the order they were read (and sent) */
  private entries: Entry[] = []
  /** bytes kept of each fd */
  private readonly keptBy = new Map<number, number>()
  /**
   * Where the numbering starts is not known (a daemon started again took the guest up: what the
   * last one read is gone with it): the first count home gives is taken as the start.
   */
  rebase: boolean

  constructor (readonly max: number, rebase = false) { this.rebase = rebase }

  /** d was read from the process's fd: numbered and kept. */
  add (fd: number, d: Buffer): void {
    if (d.length === 0) return
    const end = (this.read.get(fd) ?? 0) + d.length
    this.read.set(fd, end)
    this.entries.push({ fd, d, end })
    this.keptBy.set(fd, (this.keptBy.get(fd) ?? 0) + d.length)
  }

  /** bytes kept */
  get kept (): number { let n = 0; for (const k of this.keptBy.values()) n += k; return n }

  /** Bytes that went before what is kept (a log taken up from a spill file, GuestOutput.resume). */
  seed (counts: Counts): void { for (const [fd, n] of counts) this.read.set(fd, n) }

  /**
   * Is as much kept of fd as may be (reading that fd stops until home acknowledges some of it)?
   * Without fd: of any fd. The bound is per fd, so that a slow reader of one output at home holds
   * back the process's writes to that output alone, as its own pipe would at home.
   */
  full (fd?: number): boolean {
    if (fd !== undefined) return (this.keptBy.get(fd) ?? 0) >= this.max
    for (const n of this.keptBy.values()) if (n >= this.max) return true
    return false
  }

  /** Home has the first got[fd] bytes of each fd: they are dropped. */
  ack (got: Counts): void {
    if (this.rebase) return
    const has = new Map(got)
    const keep: Entry[] = []
    for (const e of this.entries) {
      const h = has.get(e.fd) ?? 0
      if (h >= e.end) continue
      const start = e.end - e.d.length
      if (h > start) { keep.push({ fd: e.fd, d: e.d.subarray(h - start), end: e.end }) } else keep.push(e)
    }
    this.entries = keep
    this.keptBy.clear()
    for (const e of keep) this.keptBy.set(e.fd, (this.keptBy.get(e.fd) ?? 0) + e.d.length)
  }

  /**
   * Home's counts on a new connection: what it lacks, in order, to send again (what it has is
   * dropped). A count beyond what was read here (home counts another numbering) or a log whose
   * start is unknown: home's counts become the numbering's start, and all that is kept is sent.
   */
  rejoined (got: Counts): Array<[number, Buffer]> {
    const ahead = got.some(([fd, n]) => n > (this.read.get(fd) ?? 0))
    if (this.rebase || ahead) {
      this.rebase = false
      const has = new Map(got)
      const base = new Map<number, number>()
      for (const e of this.entries) if (!base.has(e.fd)) base.set(e.fd, (this.read.get(e.fd) ?? 0) - this.sizeOf(e.fd))
      // renumber: each fd's kept bytes follow home's count
      for (const e of this.entries) e.end = e.end - (base.get(e.fd) ?? 0) + (has.get(e.fd) ?? 0)
      for (const fd of new Set([...this.read.keys(), ...has.keys()])) this.read.set(fd, (has.get(fd) ?? 0) + this.sizeOf(fd))
      return this.entries.map(e => [e.fd, e.d])
    }
    this.ack(got)
    return this.entries.map(e => [e.fd, e.d])
  }

  private sizeOf (fd: number): number { let n = 0; for (const e of this.entries) if (e.fd === fd) n += e.d.length; return n }

  /** What is kept, in order; and the count of each fd before it (null: the start is not known, rebase). */
  snapshot (): { before: Counts | null, entries: Array<[number, Buffer]> } {
    const before = this.rebase ? null : [...this.read.keys()].sort((a, b) => a - b).map((fd): [number, number] => [fd, (this.read.get(fd) ?? 0) - this.sizeOf(fd)])
    return { before, entries: this.entries.map(e => [e.fd, e.d]) }
  }
}

/**
 * Home side: the bytes of each fd got from a process's current stream, and when to say so. An
 * acknowledgement covers only what has been written at home (`unwritten`: got, still in a writer
 * for a reader at home that has not taken it), so that the node the process runs on keeps the
 * rest and, at its bound, stops reading that output (the process waits in its write, as at home).
 */
export class OutCounts {
  private readonly got = new Map<number, number>()
  private readonly unwritten = new Map<number, number>()
  /** bytes written at home since the last acknowledgement */
  unacked = 0

  /**
   * n bytes of fd got; `written` false: they wait for a reader at home (`written` later).
   * True when an acknowledgement is due at once (`ackBytes` written and not acknowledged).
   */
  add (fd: number, n: number, ackBytes: number, written = true): boolean {
    this.got.set(fd, (this.got.get(fd) ?? 0) + n)
    if (!written) { this.unwritten.set(fd, (this.unwritten.get(fd) ?? 0) + n); return false }
    this.unacked += n
    return this.unacked >= ackBytes
  }

  /** n bytes of fd that `add` had waiting have been written at home; true when an acknowledgement is due at once. */
  written (fd: number, n: number, ackBytes: number): boolean {
    const left = (this.unwritten.get(fd) ?? 0) - n
    if (left > 0) this.unwritten.set(fd, left); else this.unwritten.delete(fd)
    this.unacked += n
    return this.unacked >= ackBytes
  }

  /** What was got of each fd, for a new connection (rejoin-ok): the node sends what follows; and from now on acknowledged. */
  takeAll (): Counts {
    this.unacked = 0
    return this.counts()
  }

  /** The counts to acknowledge: what was got and written of each fd (and from now on acknowledged). */
  take (): Counts {
    this.unacked = 0
    return [...this.got.entries()].sort((a, b) => a[0] - b[0]).map(([fd, n]): [number, number] => [fd, n - (this.unwritten.get(fd) ?? 0)])
  }

  /** What was got of each fd, written or not (home has it: a new connection starts after it). */
  counts (): Counts { return [...this.got.entries()].sort((a, b) => a[0] - b[0]) }
}

/**
 * Home side: input handed to a process away (stdin, relayed input fds), numbered per fd from the
 * start of its stream where it runs, and kept until its node says the bytes are in the process's
 * pipe (the `got` of its next `want`). A want that comes over another connection than the one
 * bytes went out on (the old one broke, or the node's daemon was started again) with less than was
 * handed: those bytes never reached the process and are handed again; bytes that went out on the
 * same connection are still on their way. Pull mode hands out one chunk per want, so little is kept.
 */
export class InLog {
  private readonly handed = new Map<number, number>()
  private entries: Array<Entry & { on: object }> = []

  /** d was handed out for fd over connection `on`. */
  add (fd: number, d: Buffer, on: object): void {
    if (d.length === 0) return
    const end = (this.handed.get(fd) ?? 0) + d.length
    this.handed.set(fd, end)
    this.entries.push({ fd, d, end, on })
  }

  /**
   * A want for fd over `on`: the node has the first `got` bytes of fd in the process (undefined: it
   * does not say, and nothing kept of fd can be told apart). What it has is dropped; returned: what
   * went out on another connection and is not there, to hand again (now counted as gone out on `on`).
   */
  want (fd: number, got: number | undefined, on: object): Buffer[] {
    const handed = this.handed.get(fd) ?? 0
    if (got === undefined || got > handed) {
      // (more than was handed: another numbering; nothing of it can be matched)
      if (got !== undefined) { log('fd %d: the node has %d bytes of %d handed out: nothing handed again', fd, got, handed); this.handed.set(fd, got) }
      this.entries = this.entries.filter(e => e.fd !== fd)
      return []
    }
    const again: Buffer[] = []
    const keep: typeof this.entries = []
    for (const e of this.entries) {
      if (e.fd !== fd) { keep.push(e); continue }
      if (e.end <= got) continue
      const start = e.end - e.d.length
      const k = start < got ? { ...e, d: e.d.subarray(got - start) } : e
      if (k.on !== on) { again.push(k.d); k.on = on }
      keep.push(k)
    }
    this.entries = keep
    return again
  }

  /** Bytes kept (handed out and not known to be in the process). */
  kept (): number { let n = 0; for (const e of this.entries) n += e.d.length; return n }
}

/**
 * Stops reading a process's pipe now. A paused net.Socket still takes one more chunk out of the pipe
 * into its buffer (its read goes on until a push is refused), where it is neither emitted nor on
 * disk: a daemon that dies then loses it. So the handle's reading is stopped too, as Node's own
 * pause does for a socket read with `onread`; `resume` starts it again (Socket._read).
 */
function stop (s: Readable): void {
  s.pause()
  const h = handleOf(s)
  if (h?.reading === true && !s.destroyed) { h.reading = false; h.readStop(); stopped.add(s) }
}

/** Reading again (what Node's resume does for a socket read with `onread`: its stream does not know the handle stopped). */
function go (s: Readable): void {
  const h = handleOf(s)
  if (stopped.delete(s) && h !== null && h.reading === false && !s.destroyed) { h.reading = true; h.readStart() }
  s.resume()
}

const stopped = new WeakSet<Readable>()

function handleOf (s: Readable): { reading: boolean, readStop: () => number, readStart: () => number } | null {
  const h = (s as unknown as { _handle?: { reading?: unknown, readStop?: unknown, readStart?: unknown } | null })._handle
  return h != null && typeof h.reading === 'boolean' && typeof h.readStop === 'function' && typeof h.readStart === 'function' ? h as { reading: boolean, readStop: () => number, readStart: () => number } : null
}

/** A stream read this many times within OUTPUT_PACE_MS streams (GuestOutput.pace): 400 reads a second. */
const PACE_READS = 8
/** A read this soon after a rest ended found the pipe with more in it: the stream streams (ms). */
const PACE_WAITING_MS = 2

/** A chunk of output as the spill file holds it: fd, length, bytes. */
function chunk (fd: number, d: Buffer): Buffer {
  const h = Buffer.alloc(8)
  h.writeUInt32BE(fd)
  h.writeUInt32BE(d.length, 4)
  return Buffer.concat([h, d])
}

/** Why none of a guest's output is read now: out of touch with home (an fd at its bound stops alone: GuestOutput.full). */
export type Hold = 'away'

/**
 * Guest side: reads the process's output (its stdout, stderr and relayed fds above 2), numbers and
 * keeps it (OutLog) and sends it home while in touch. It stops reading (the process then blocks in
 * write once its pipe is full) while out of touch with home and while as much as may be is kept
 * unacknowledged; it never drops anything. What it reads is on disk until home has it (persist),
 * for a daemon started again should this one die. A process that runs again from its copy on the
 * same node goes on with the same numbering (attach).
 */
export class GuestOutput {
  readonly log: OutLog
  private sources: Array<[number, Readable]> = []
  private readonly holds = new Set<Hold>()
  /** fds as much of which is kept as may be (OutLog.full): not read until home acknowledges some */
  private readonly full = new Set<number>()
  private link: Link | null = null
  private draining = false
  /** the file that holds what is kept, for a daemon started again (persist): its descriptor, and where the next chunk goes */
  private spill: { path: string, fd: number, at: number } | null = null

  constructor (max: number, rebase = false) { this.log = new OutLog(max, rebase) }

  /**
   * What is read is also written to `path` (`<state>/<pid>.out`) before it is sent, after the counts
   * its first kept byte follows, so that a daemon started again after this one died (with output
   * read and not yet at home: in its memory, in a socket, or behind a raw image on the connection)
   * has it and knows where the output stands (resume). The file is rewritten with only what is
   * kept whenever home has acknowledged all, or it has grown past four times the bound.
   */
  persist (path: string | null): void {
    this.unpersist(false)
    if (path === null) return
    try { this.spill = { path, fd: openSync(path, 'w', 0o600), at: 0 }; this.rewrite() } catch (e) { log('%s: %s', path, (e as Error).message); this.unpersist(true) }
  }

  /** The file is let go (closed; `remove`: removed too). */
  unpersist (remove: boolean): void {
    const sp = this.spill
    if (sp === null) return
    this.spill = null
    try { closeSync(sp.fd) } catch {}
    if (remove) rmSync(sp.path, { force: true })
  }

  /** The spill file as the log stands: its counts before what is kept, then what is kept. */
  private rewrite (): void {
    const sp = this.spill
    if (sp === null) return
    const { before, entries } = this.log.snapshot()
    const head = Buffer.from(JSON.stringify(before))
    const len = Buffer.alloc(4)
    len.writeUInt32BE(head.length)
    try {
      ftruncateSync(sp.fd, 0)
      sp.at = 0
      this.append(Buffer.concat([len, head]))
      for (const [fd, d] of entries) this.append(chunk(fd, d))
    } catch (e) { log('%s: %s', sp.path, (e as Error).message); this.unpersist(true) }
  }

  private append (b: Buffer): void {
    const sp = this.spill
    if (sp === null) return
    writeSync(sp.fd, b, 0, b.length, sp.at)
    sp.at += b.length
  }

  /** What was read of each fd so far. */
  counts (): Counts { return [...this.log.read.entries()].sort((a, b) => a[0] - b[0]) }

  /**
   * The output of a guest taken up by a daemon started again: from the spill file its predecessor
   * left (the counts before what it kept, and what it kept), or, without one, a log whose numbering
   * starts at home's count (OutLog.rebase). The file is removed (the guest writes its own again).
   */
  static resume (path: string | null, max: number): GuestOutput {
    let data: Buffer | null = null
    if (path !== null) { try { data = readFileSync(path) } catch {} rmSync(path, { force: true }) }
    const o = new GuestOutput(max, data === null)
    if (data === null) return o
    try {
      const n = data.readUInt32BE(0)
      const counts = JSON.parse(data.subarray(4, 4 + n).toString()) as unknown
      if (counts !== null && (!Array.isArray(counts) || !counts.every(x => Array.isArray(x) && x.length === 2 && Number.isSafeInteger(x[0]) && Number.isSafeInteger(x[1])))) throw new Error('bad counts')
      if (counts === null) o.log.rebase = true // (its start was not known to that daemon either)
      else o.log.seed(counts as Counts)
      for (let at = 4 + n; at + 8 <= data.length;) {
        const fd = data.readUInt32BE(at)
        const len = data.readUInt32BE(at + 4)
        if (at + 8 + len > data.length) break // (cut short by the death of its writer)
        o.log.add(fd, Buffer.from(data.subarray(at + 8, at + 8 + len)))
        at += 8 + len
      }
    } catch (e) {
      log('%s: %s: numbering from home\'s count', path, (e as Error).message)
      return new GuestOutput(max, true)
    }
    return o
  }

  /** The process's output streams, by fd (they replace those of the process it ran as before). */
  attach (sources: Array<[number, Readable]>): void {
    this.wake()
    this.paces.clear()
    this.sources = sources
    for (const [fd, s] of sources) {
      s.on('data', (d: Buffer) => { this.got(fd, d); this.pace(s) })
      if (this.held(fd) && !this.draining) stop(s)
    }
  }

  /** Is fd not to be read now (out of touch with home, or at its bound)? */
  private held (fd: number): boolean { return this.holds.size > 0 || this.full.has(fd) }

  /** The fds at their bound that are no longer: read again (unless all are held). */
  private refill (): void {
    for (const fd of [...this.full]) {
      if (this.log.full(fd)) continue
      this.full.delete(fd)
      if (this.holds.size > 0) continue
      for (const [f, s] of this.sources) if (f === fd) { this.wakeOne(s); go(s) }
    }
  }

  /** per stream: when its last reads came (up to PACE_READS), when it last woke from a rest, and its rest's timer while it rests */
  private readonly paces = new Map<Readable, { reads: number[], woke: number, rest?: NodeJS.Timeout }>()

  /**
   * After a read, a stream that streams rests for OUTPUT_PACE_MS while its pipe fills (not while
   * the ended process's pipes are drained): read in fewer, bigger chunks, a chatty process costs
   * the daemons little. It streams when PACE_READS reads came within OUTPUT_PACE_MS, or when it
   * had more waiting as it woke from a rest; a process that writes now and then (a request, an
   * answer: hundreds a second at most, each after a wait) is read at once.
   */
  private pace (s: Readable): void {
    if (this.draining || !this.sources.some(([, x]) => x === s)) return
    const p = this.paces.get(s) ?? { reads: [], woke: -Infinity }
    this.paces.set(s, p)
    if (p.rest !== undefined) return
    const now = performance.now()
    p.reads.push(now)
    if (p.reads.length > PACE_READS) p.reads.shift()
    const busy = p.reads.length === PACE_READS && now - p.reads[0] < OUTPUT_PACE_MS
    if (!busy && now - p.woke > PACE_WAITING_MS) return
    stop(s)
    p.rest = setTimeout(() => {
      p.rest = undefined
      p.woke = performance.now()
      const fd = this.sources.find(([, x]) => x === s)?.[0]
      if ((fd !== undefined && !this.held(fd)) || this.draining) go(s)
    }, OUTPUT_PACE_MS)
  }

  /** The timers of the streams resting after a read cleared: the caller reads them again (go) or replaces them. */
  private wake (): void {
    for (const s of this.paces.keys()) this.wakeOne(s)
  }

  private wakeOne (s: Readable): void {
    const p = this.paces.get(s)
    if (p !== undefined) { clearTimeout(p.rest); p.rest = undefined }
  }

  /** Output goes home over link from now on; `got` (home's counts, a new connection): what home lacks is sent again first. */
  connect (link: Link, got?: Counts): void {
    this.link = link
    if (got !== undefined) {
      for (const [fd, d] of this.log.rejoined(got)) { const [t, p] = outFrame(fd, d); void link.frame(t, p).catch(() => {}) }
      this.rewrite() // (its numbering may have been taken from home's count)
      this.refill() // (home's count may cover what was kept at the bound: no ack would come for it)
    }
    this.release('away')
  }

  /** Out of touch with home: what is read is kept, and reading stops. */
  disconnect (): void { this.link = null; this.hold('away') }

  /** Home acknowledged got. */
  ack (got: Counts): void {
    this.log.ack(got)
    const sp = this.spill
    if (sp !== null && sp.at > 0 && (this.log.kept === 0 || sp.at > 4 * this.log.max)) this.rewrite()
    this.refill()
  }

  hold (why: Hold): void {
    this.holds.add(why)
    if (!this.draining) for (const [, s] of this.sources) stop(s)
  }

  release (why: Hold): void {
    // (not held for that reason: nothing changes, and streams resting after a read rest on)
    if (!this.holds.delete(why)) return
    if (this.holds.size === 0) { this.wake(); for (const [fd, s] of this.sources) if (!this.full.has(fd)) go(s) }
  }

  /**
   * Reads what is left in the pipes of a process that has ended (whatever holds it: away from home,
   * or at the bound), keeping it and sending it if in touch, until `ended` (its streams' end) or
   * `ms`; reading stops again after that if it is held.
   */
  async drain (ended: Promise<void>, ms?: number): Promise<void> {
    this.draining = true
    this.wake()
    for (const [, s] of this.sources) go(s)
    let t: NodeJS.Timeout | undefined
    await Promise.race([ended, ...(ms === undefined ? [] : [new Promise<void>(resolve => { t = setTimeout(resolve, ms) })])]).finally(() => clearTimeout(t))
    this.draining = false
    for (const [fd, s] of this.sources) if (this.held(fd)) stop(s)
  }

  private got (fd: number, d: Buffer): void {
    this.log.add(fd, d)
    if (this.spill !== null) {
      try { this.append(chunk(fd, d)) } catch (e) { log('%s: %s', this.spill.path, (e as Error).message); this.unpersist(true) }
    }
    const link = this.link
    if (link !== null && !link.closed) { const [t, p] = outFrame(fd, d); void link.frame(t, p).catch(() => {}) } else if (!this.draining) this.hold('away')
    if (!this.full.has(fd) && this.log.full(fd)) {
      this.full.add(fd)
      if (!this.draining) for (const [f, s] of this.sources) if (f === fd) stop(s)
    }
  }
}
