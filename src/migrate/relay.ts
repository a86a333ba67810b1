// The relay of a moved process's descriptors between the node it runs on and its home: fds 0-2,
// and every descriptor above 2 that the engine relays (a pipe, or a connected stream socket, whose
// other end stays behind: native/relay.c, docs/migrate.md "Relayed descriptors").
//
// Home side (HomeStdio): while the process is away its deputy holds the original descriptors;
// output frames from the guest (O, E for fds 1-2; W for the others) are written to them, and input
// is handed out on demand (pull): the guest asks (want, with the fd) for what a blocked read wants,
// and home reads at most that much (a socket through the deputy's PULL), so nothing waits unread
// on the remote when the process moves on (src/migrate/stdin.ts).
// Guest side (StdinPull per input fd, GuestRelays): watches the guest for a blocked wait on an
// input and asks for it; carries the relayed descriptors' bytes to and from the restored process.
// Closes: a close (or shutdown) the process makes away from home is seen on N (watchCloses, and
// StdinPull for input pipes) and made at home too (HomeStdio.closeFd, through the deputy).
import { createWriteStream, readdirSync, readSync, openSync, closeSync, fstatSync, writeSync, constants as fsc } from 'node:fs'
import { readStat } from '../util/procfs.js'
import { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import debug from '../util/log.js'
import type { Link } from './link.js'
import type { DeputyHandle, RestoredHandle } from './engine.js'
import type { RelayedFd } from '../ppm/ppm.js'
import { NO_READ_AHEAD } from '../ppm/keeper.js'
import { ctxtSwitches, stdinWait, syscallLine, STDIN_CHUNK } from './stdin.js'
import { BROKEN_RESEND_MS, INPUT_CLOSE_CHECK_MS, INPUT_POLL_IDLE_MS, INPUT_POLL_MS, INPUT_SETTLE_MS } from '../config.js'
import { poll, PollTimeout } from '../util/poll.js'
import { fdLink, type StdioKind } from './fdkind.js'
import { monotonicMs } from '../util/clock.js'

const log = debug('hpcfs:relay')

/** The stdin mode of a process leaving with these fds 0-2: pull when fd 0 is relayed. */
export function stdinModeOf (kinds: StdioKind[]): 'pull' | 'none' {
  const k0 = kinds[0]
  return k0 === 'pipe' || k0 === 'tty' || k0 === 'socket' ? 'pull' : 'none'
}

/**
 * Opens the output end of a relayed descriptor. Pipes become non-blocking libuv streams
 * (net.Socket), so that a slow reader blocks no thread-pool thread; terminals use fs streams.
 */
export function openRelay (path: string): Writable {
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
  if (fstatSync(fd).isFIFO()) return new Socket({ fd, readable: false, writable: true })
  return createWriteStream('', { fd })
}

/** A W or R frame's payload: the descriptor (u32, big-endian), then its bytes. */
export function fdFrame (fd: number, d: Buffer): Buffer {
  const h = Buffer.alloc(4)
  h.writeUInt32BE(fd)
  return Buffer.concat([h, d])
}

/** A W or R frame's descriptor and bytes (null: too short to be one). */
export function parseFdFrame (p: Buffer): [number, Buffer] | null {
  return p.length < 4 ? null : [p.readUInt32BE(0), p.subarray(4)]
}

/** Home side of a process's relayed descriptors (fds 0-2 and those above) while it is away. */
export class HomeStdio {
  out: Array<Writable | null> = [null, null, null]
  /** stdin relayed on demand (pull): the guest asks for what a blocked read wants */
  stdinFd: number | null = null
  /** What fds 0-2 were when the process left (a socket needs the engine's relay). */
  kinds: StdioKind[] = []
  /** Output (and closes of outputs) that arrived before the relay was ready, in order (null once it is ready). */
  pendingOut: Array<[number, Buffer | 'close' | 'shutdown', (() => void)?]> | null = []
  /** A path that opens the original's fd 2 (from the deputy), for a line home itself has to say there. */
  errPath: string | null = null
  /** Its descriptors above 2 relayed by the deputy (native/relay.c), and their ends here. */
  extra: RelayedFd[] = []
  private readonly extraOut = new Map<number, Writable>()
  /** input of an fd above 2: read here (a pipe), or pulled by the deputy into this pipe first (a socket) */
  readonly extraIn = new Map<number, { fd: number, pull: boolean }>()
  private dep: DeputyHandle | null = null
  private opening: Promise<void> | null = null
  /** deputy pulls in flight, and who waits for none */
  private pulls = 0
  private idlers: Array<() => void> = []
  /** outputs whose other end is gone at home (EPIPE, ECONNRESET), and when the node was last told */
  readonly broken = new Map<number, number>()
  /** tells the node the process runs on that output fd is broken (home: a `broken` message) */
  onBroken: ((fd: number) => void) | null = null

  constructor (readonly pid: number) {}

  /** Opens the relay from the deputy's descriptors (once: a second caller waits for the first), then writes (and closes) what arrived meanwhile. */
  async open (dep: DeputyHandle | null): Promise<void> {
    if (!dep) return
    this.opening ??= this.openNow(dep)
    await this.opening
  }

  private async openNow (dep: DeputyHandle): Promise<void> {
    this.dep = dep
    const pending = this.pendingOut ?? []
    try {
      // pipes, FIFOs and terminals are opened again by path; sockets cannot be, so then the engine
      // relays all three through pipes of its own
      const sockets = this.kinds.some(k => k === 'socket')
      const fds = await dep.takeFds({ relay: sockets })
      this.errPath = fds[2]
      const relay = (i: number): boolean => fds[i] !== null && ['pipe', 'socket', 'tty'].includes(this.kinds[i])
      for (const i of [1, 2]) {
        if (relay(i)) this.out[i] = this.openOut(i, fds[i] as string)
      }
      if (relay(0)) {
        // pull: read only what the remote process is blocked reading, so nothing is left behind on
        // the remote. (With a socket the engine's relay has to read it first: what it took from
        // the socket and nobody pulled is lost if the process comes home.)
        this.stdinFd = openSync(fds[0] as string, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
      }
      await this.openExtra(dep)
    } catch (e) {
      // (the deputy could not hand its descriptors over: the process runs where it went all the
      // same, and what it writes meanwhile is dropped, as on a closed output)
      log('relay of %d: %s', this.pid, (e as Error).message)
    }
    this.pendingOut = null
    for (const [fd, d, done] of pending) {
      if (typeof d === 'string') await this.closeFd(fd, d)
      else this.write(fd, d, done)
    }
  }

  /** The deputy's relays of the descriptors above 2: a pipe by path, a socket through pipes of the deputy. */
  private async openExtra (dep: DeputyHandle): Promise<void> {
    this.extra = dep.relayed ?? []
    if (this.extra.length === 0 || !dep.relayFds) return
    const paths = await dep.relayFds(this.extra.map(r => ({ fd: r.fd, how: r.kind === 'sock' ? 's' : 'p' })))
    for (const r of this.extra) {
      const ps = paths.get(r.fd)
      if (!ps) continue
      if (r.kind === 'sock') {
        this.extraIn.set(r.fd, { fd: openSync(ps[0], fsc.O_RDONLY | fsc.O_NONBLOCK), pull: true })
        const s = this.openOut(r.fd, ps[1])
        if (s !== null) this.extraOut.set(r.fd, s)
      } else if (r.dir === 'r') {
        this.extraIn.set(r.fd, { fd: openSync(ps[0], fsc.O_RDONLY | fsc.O_NONBLOCK), pull: false })
      } else {
        const s = this.openOut(r.fd, ps[0])
        if (s !== null) this.extraOut.set(r.fd, s)
      }
    }
  }

  /**
   * The writer of output fd at home, or null when its descriptor cannot be opened: a pipe whose
   * reader has gone (ENXIO) is a broken output from the start, as one whose reader goes later
   * (brokenOut); so is any other failure to open it (the process sees EPIPE where it runs).
   */
  private openOut (fd: number, path: string): Writable | null {
    try { return this.watchBroken(fd, openRelay(path)) } catch (e) {
      log('fd %d of %d: cannot be opened at home (%s): broken', fd, this.pid, (e as Error).message)
      this.tellBroken(fd, true)
      return null
    }
  }

  /** Is the input of fd (stdin, or a relayed fd above 2) open here? */
  ready (fd: number): boolean { return fd === 0 ? this.stdinFd !== null : this.extraIn.has(fd) }

  private outOf (fd: number): Writable | null | undefined { return fd <= 2 ? this.out[fd] : this.extraOut.get(fd) }

  /**
   * Output of the guest (fd 1, 2 or a relayed one above): written now, or kept until the relay is
   * open; dropped when broken (or not relayed). `done`: once written (its reader here has taken it:
   * the writer's callback) or dropped.
   */
  write (fd: number, d: Buffer, done?: () => void): void {
    if (this.pendingOut) { this.pendingOut.push([fd, d, done]); return }
    if (this.broken.has(fd)) { this.tellBroken(fd, false); done?.(); return }
    const s = this.outOf(fd)
    if (s != null && !s.destroyed) s.write(d, () => done?.()); else done?.()
  }

  /**
   * Writing output fd into the original's descriptor (or the deputy's relay of it, which the
   * deputy closes when the socket's peer is gone, native/deputy.c) failing with EPIPE or
   * ECONNRESET: the reader at home is gone. Other errors are logged.
   */
  private watchBroken (fd: number, s: Writable): Writable {
    return s.on('error', e => {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EPIPE' || code === 'ECONNRESET') this.brokenOut(fd, s)
      else log('fd %d of %d: %s', fd, this.pid, e.message)
    })
  }

  /** The other end of output fd (written through s) is gone: what arrives for it is dropped, and the node is told (onBroken). */
  brokenOut (fd: number, s: Writable): void {
    if (this.outOf(fd) === s) {
      if (fd <= 2) this.out[fd] = null; else this.extraOut.delete(fd)
    }
    s.destroy()
    log('fd %d of %d: broken at home', fd, this.pid)
    this.tellBroken(fd, true)
  }

  /** Tells the node that fd is broken, now (`first`) or again at most every BROKEN_RESEND_MS while bytes arrive. */
  private tellBroken (fd: number, first: boolean): void {
    const last = this.broken.get(fd)
    const now = monotonicMs()
    if (!first && last !== undefined && now - last < BROKEN_RESEND_MS) return
    if (first && last !== undefined) return
    this.broken.set(fd, now)
    this.onBroken?.(fd)
  }

  /** Resolves when what was written has gone out, or cannot any more (its reader went: the writer is destroyed). */
  async flush (): Promise<void> {
    const writers = [...this.out, ...this.extraOut.values()].filter((s): s is Writable => s !== null && !s.destroyed && s.writableLength > 0)
    await Promise.all(writers.map(drained))
  }

  /** Reads at most n bytes of a socket's input through the deputy (PULL); -1 at its end, 0 when none yet. */
  async pull (fd: number, n: number, into: Buffer): Promise<number> {
    const src = this.extraIn.get(fd)
    if (!src || !this.dep?.pull) return -1
    this.pulls++
    try {
      const k = await this.dep.pull(fd, Math.min(n, into.length))
      return k > 0 ? readSync(src.fd, into, 0, k, null) : k
    } finally {
      if (--this.pulls === 0) for (const w of this.idlers.splice(0)) w()
    }
  }

  /** Resolves when no pull is in flight (a move waits for it: what it read goes out before the move). */
  async idle (): Promise<void> {
    if (this.pulls > 0) await new Promise<void>(resolve => this.idlers.push(resolve))
  }

  /**
   * The process closed fd away from home (`shutdown`: shut that socket down for writing), after
   * what it wrote there, which has been written here already: that goes out, then the deputy lets
   * go of fd and the original closes it (or shuts it down), so that the other end at home sees the
   * end. A move waits for this as for a pull (idle).
   */
  async closeFd (fd: number, how: 'close' | 'shutdown'): Promise<void> {
    if (fd > 2 && !this.extra.some(r => r.fd === fd) && this.pendingOut === null) {
      log('fd %d of %d: a %s of a descriptor not relayed: ignored', fd, this.pid, how) // (only the process's relayed fds are its node's to close)
      return
    }
    if (this.pendingOut !== null) { this.pendingOut.push([fd, how]); return } // in order, once the relay is open
    const dep = this.dep
    if (dep?.closeFd === undefined) return
    if (how === 'shutdown' && this.broken.has(fd)) return // (its end on N after a broken output: nothing to pass on)
    this.pulls++
    try {
      const s = this.outOf(fd)
      if (fd <= 2) this.out[fd] = null; else this.extraOut.delete(fd)
      if (fd === 2 && how === 'close') this.errPath = null
      if (s) await endStream(s)
      if (how === 'close') {
        const i = this.extraIn.get(fd)
        if (i) { try { closeSync(i.fd) } catch {} this.extraIn.delete(fd) }
        if (fd === 0 && this.stdinFd !== null) { try { closeSync(this.stdinFd) } catch {} this.stdinFd = null }
        this.extra = this.extra.filter(r => r.fd !== fd)
      }
      await dep.closeFd(fd, how === 'shutdown')
      log('fd %d of %d: %s away from home, passed on', fd, this.pid, how)
    } catch (e) {
      log('fd %d of %d: %s: %s', fd, this.pid, how, (e as Error).message)
    } finally {
      if (--this.pulls === 0) for (const w of this.idlers.splice(0)) w()
    }
  }

  /**
   * Writes a line on the process's stderr, whatever it is: through the relay, or else (a file or
   * FIFO the process reopened by path wherever it ran) appended through the deputy's descriptor.
   */
  async say (text: string): Promise<void> {
    const relay = this.out[2]
    if (relay) { await new Promise<void>(resolve => relay.write(text, () => resolve())); return }
    if (this.errPath === null) return
    try {
      const fd = openSync(this.errPath, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_NONBLOCK | fsc.O_NOCTTY)
      try { writeSync(fd, text) } finally { closeSync(fd) }
    } catch (e) { log('stderr of %d: %s', this.pid, (e as Error).message) }
  }

  /** Closes the relay (the process is home again, or gone); output is kept again until reopened. */
  close (): void {
    for (const s of this.out) s?.end()
    for (const s of this.extraOut.values()) s.end()
    this.out = [null, null, null]
    this.errPath = null
    this.extraOut.clear()
    if (this.stdinFd !== null) { try { closeSync(this.stdinFd) } catch {} this.stdinFd = null }
    for (const i of this.extraIn.values()) { try { closeSync(i.fd) } catch {} }
    this.extraIn.clear()
    this.extra = []
    this.broken.clear() // (the original's own descriptors from now on: a broken pipe is seen there)
    this.dep = null
    this.opening = null
    this.pendingOut = []
  }
}

/** Resolves on the writer's `drain`, or once it is closed (destroyed after an error: no `drain` ever comes then). */
async function drained (s: Writable): Promise<void> {
  if (s.destroyed) return
  await new Promise<void>(resolve => {
    const done = (): void => { s.off('drain', done); s.off('close', done); resolve() }
    s.once('drain', done)
    s.once('close', done)
  })
}

/** Ends a relay's writer: what it holds is written, then its descriptor is closed. */
async function endStream (s: Writable): Promise<void> {
  if (s.destroyed) return
  await new Promise<void>(resolve => { s.once('close', () => resolve()); s.end(() => s.destroy()) })
}

/**
 * Hands the remote at most n bytes of stdin (fd 0) or of a relayed input fd over conn, as soon as
 * there are some (or its end). `gate` says whether input may be handed out on conn now (it is when
 * the relay is open), later (retry in 5 ms), or never (the want is dropped: the guest stops
 * waiting for it and reads again wherever it lands).
 */
export function serveWant (io: HomeStdio, conn: Link, n: number, gate: () => 'now' | 'later' | 'never', fd = 0, handed?: (d: Buffer) => void): void {
  const g = gate()
  const src = fd === 0 ? (io.stdinFd === null ? undefined : { fd: io.stdinFd, pull: false }) : io.extraIn.get(fd)
  const again = (): void => { if (!conn.closed) setTimeout(() => serveWant(io, conn, n, gate, fd, handed), INPUT_POLL_MS).unref() }
  if (g !== 'now' || src === undefined) {
    if (g === 'later') again()
    return
  }
  const buf = Buffer.alloc(Math.max(1, Math.min(n, STDIN_CHUNK)))
  const hand = (got: number): void => {
    if (got < 0 || (got === 0 && !src.pull)) void conn.send({ t: 'stdin-end', ...(fd !== 0 ? { fd } : {}) }).catch(() => {})
    else if (got === 0) again()
    else {
      handed?.(buf.subarray(0, got))
      handInput(conn, fd, buf.subarray(0, got))
    }
  }
  if (src.pull) {
    // a socket: the deputy reads at most n of it now; the frame is queued before any move goes on (idle)
    io.pull(fd, n, buf).then(hand, e => { log('fd %d of %d: %s', fd, io.pid, (e as Error).message); hand(-1) })
    return
  }
  let got: number
  try { got = readSync(src.fd, buf, 0, buf.length, null) } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') { again(); return }
    log('fd %d of %d: %s', fd, io.pid, (e as Error).message)
    got = 0
  }
  hand(got)
}

/** Input d of fd goes to the process away over conn: an N frame (stdin) or an R frame (a relayed fd). */
export function handInput (conn: Link, fd: number, d: Buffer): void {
  if (fd === 0) void conn.frame('N', d).catch(() => {})
  else void conn.frame('R', fdFrame(fd, d)).catch(() => {})
}

/**
 * Is nothing handed over left unread: no write to the process's pipe pending here, and its fd holds
 * no byte (undefined when that cannot be asked)?
 */
export function pipeEmpty (w: Writable | null | undefined, unread: ((fd: number) => Promise<number>) | undefined, fd: number): (() => Promise<boolean>) | undefined {
  if (unread === undefined) return undefined
  return async () => (w?.writableLength ?? 0) === 0 && await unread(fd) === 0
}

/** Guest side of pull-mode input (stdin, or a relayed fd above 2). */
export class StdinPull {
  wanting = false
  wantLine = ''
  wantKind: 'read' | 'poll' = 'read'
  ended = false
  /** stdin handed over and not known to be read yet: the wait it was for, and the switches then */
  delivered: { kind: 'read' | 'poll', line: string, switches: number } | null = null
  /**
   * What a poll-style wait on a relayed fd above 2 may be handed next: one byte at first, doubled
   * each time the process read all it was handed and waits on the fd again (a stream). Such a fd
   * may be make's jobserver: a make that sees it readable takes one token and goes on to fork
   * (which brings it home); tokens it was handed and did not take would be held up on this node.
   */
  private pollChunk = 1

  constructor (readonly pid: number, readonly fd = 0) {}

  /** Stdin arrived for the wait it asked for; it goes into the process's pipe now. */
  handed (): void {
    // its switches before it can have the data: once they change, it woke up for it
    this.delivered = { kind: this.wantKind, line: this.wantLine, switches: ctxtSwitches(this.pid) }
    this.wanting = false
  }

  /**
   * Has the process read the stdin last handed to it? A blocked read takes all of it as soon as it
   * wakes; a poll-style wait has read it all only once it blocks on stdin again (src/migrate/stdin.ts).
   */
  consumed (): boolean {
    const d = this.delivered
    if (d === null) return true
    const line = syscallLine(this.pid)
    if (line === '') return true // gone
    const woke = ctxtSwitches(this.pid) !== d.switches
    const done = d.kind === 'read' ? woke || line !== d.line : woke && stdinWait(this.pid, line, this.fd) !== null
    if (done) this.delivered = null
    if (done && d.kind === 'poll') this.pollChunk = Math.min(2 * this.pollChunk, STDIN_CHUNK)
    return done
  }

  /**
   * Has the process closed its input pipe or socket (every fd that held it, `was`) while it runs
   * on? Then it reads no more: nothing is asked for, and `closed` (start) passes the close on. (A
   * socket's close shows as the end of its output too, watchCloses, except after a shutdown.)
   */
  private closedHere (was: string): boolean {
    if (!/^(pipe|socket):/.test(was) || fdLink(this.pid, this.fd) === was || closedHow(this.pid, was) !== 'close') return false
    this.ended = true
    this.wanting = false
    return true
  }

  /**
   * Every few ms (INPUT_POLL_MS, backing off to INPUT_POLL_IDLE_MS while it does not wait for
   * input), while `current()`: if the process is blocked waiting for stdin (a read, or a
   * poll/select/epoll watching fd 0), has read what it was handed before and is not `leaving()`,
   * ask for what that wait may take (`want`); nothing it has not asked for waits in its pipe when
   * it moves on. With `closed`: every INPUT_CLOSE_CHECK_MS, whether the process closed it (then
   * `closed()`, once), also after its input ended (a socket it shut down, then closes).
   */
  start (current: () => boolean, leaving: () => boolean, want: (n: number) => void, closed?: () => void): void {
    const was = fdLink(this.pid, this.fd)
    let every = INPUT_POLL_MS
    let closeAt = performance.now() + INPUT_CLOSE_CHECK_MS
    const tick = (): void => {
      if (!current() || (this.ended && closed === undefined)) return
      if (closed !== undefined && performance.now() >= closeAt) {
        closeAt = performance.now() + INPUT_CLOSE_CHECK_MS
        if (this.closedHere(was)) { closed(); return }
      }
      // busy with input: looked at again soon; else less and less often, up to INPUT_POLL_IDLE_MS
      every = this.look(leaving, want) ? INPUT_POLL_MS : Math.min(2 * every, INPUT_POLL_IDLE_MS)
      setTimeout(tick, every).unref()
    }
    setTimeout(tick, every).unref()
  }

  /**
   * One look (start): asks for input if the process waits for it; true while input is under way
   * (asked for, handed and not read yet, asked for now, or a move is on), false when it does not wait.
   */
  private look (leaving: () => boolean, want: (n: number) => void): boolean {
    if (this.ended) return false
    if (this.wanting || leaving() || !this.consumed()) return true
    const line = syscallLine(this.pid)
    const w = stdinWait(this.pid, line, this.fd)
    if (w === null) return false
    this.wanting = true
    this.wantLine = line
    this.wantKind = w.kind
    want(w.kind === 'poll' && this.fd > 2 ? Math.min(w.n, this.pollChunk) : w.n)
    return true
  }

  /**
   * Waits up to a second for the stdin handed over to be read (it would be lost in the pipe
   * otherwise). A want still open gets nothing more (home hands out no stdin during a move): it is
   * dropped. Resolves whether all was read. `empty` (every 50 ms) asks the pipe itself: a process
   * handed input on a poll-style wait that read it and went on to something else (make: a token,
   * then a fork) does not block on the fd again, yet nothing of it is left.
   */
  async settle (empty?: () => Promise<boolean>): Promise<boolean> {
    let i = 0
    const ok = await poll(`input of fd ${this.fd} of ${this.pid} read`, async () => {
      if (this.consumed()) return true
      if (empty !== undefined && ++i % 10 === 0 && await empty()) { this.delivered = null; return true }
      return false
    }, { timeoutMs: INPUT_SETTLE_MS, everyMs: INPUT_POLL_MS }).catch(e => { if (e instanceof PollTimeout) return false; throw e })
    this.wanting = false
    return ok
  }
}

/**
 * Guest side of the relayed descriptors above 2 of a restored process (Restored.relays): what the
 * process writes comes out of `readers` (sent home in W frames); what home hands it for an input
 * fd (R frames, asked for by that fd's StdinPull) goes into its writer.
 */
export class GuestRelays {
  readonly readers: Array<[number, Readable]> = []
  readonly writers = new Map<number, Writable>()
  readonly pulls = new Map<number, StdinPull>()
  /** resolves when every reader has ended (the process's ends are closed: it is gone) */
  readonly done: Promise<void>

  /** a keeper holds its ends for whoever attaches: it closes its writer of fd on this (GuestProcess.endRelay) */
  private readonly endRelay?: (fd: number) => void
  /** bytes unread in the process's fd (GuestProcess.unread) */
  private readonly unread?: (fd: number) => Promise<number>

  constructor (readonly pid: number, r: RestoredHandle & { endRelay?: (fd: number) => void, unread?: (fd: number) => Promise<number> }) {
    this.endRelay = r.endRelay
    this.unread = r.unread
    for (const e of r.relays ?? []) {
      try {
        if (e.read !== null) this.readers.push([e.fd, new Socket({ fd: openSync(e.read, fsc.O_RDONLY | fsc.O_NONBLOCK), readable: true, writable: false, ...NO_READ_AHEAD })])
        if (e.write !== null) {
          const w = new Socket({ fd: openSync(e.write, fsc.O_WRONLY | fsc.O_NONBLOCK), readable: false, writable: true })
          w.on('error', x => log('fd %d of guest %d: %s', e.fd, pid, x.message))
          this.writers.set(e.fd, w)
          this.pulls.set(e.fd, new StdinPull(pid, e.fd))
        }
      } catch (x) { log('fd %d of guest %d: %s', e.fd, pid, (x as Error).message) }
    }
    r.relayed?.() // the helper closes its copies: our close is the end of the process's input (not a keeper's)
    this.done = Promise.all(this.readers.map(([, s]) => new Promise<void>(resolve => { s.once('end', resolve); s.once('close', resolve) }))).then(() => {})
    void r.exited.then(() => this.close(), () => this.close())
  }

  /** Bytes home handed over for fd (its StdinPull asked); `written` once they are in the process's pipe. */
  input (fd: number, d: Buffer, written?: () => void): void {
    this.pulls.get(fd)?.handed()
    this.writers.get(fd)?.write(d, e => { if (e == null) written?.() })
  }

  /** Home's side of input fd reached its end. */
  end (fd: number): void {
    const p = this.pulls.get(fd)
    if (p) { p.ended = true; p.wanting = false }
    this.writers.get(fd)?.end()
    this.endRelay?.(fd)
  }

  /** Wants asked on a connection that is gone are void: they are asked again on the next. */
  drop (): void { for (const p of this.pulls.values()) p.wanting = false }

  /** Waits until every input handed over has been read (see StdinPull.settle); false if some has not. */
  async settle (): Promise<boolean> {
    const r = await Promise.all([...this.pulls.values()].map(async p => await p.settle(pipeEmpty(this.writers.get(p.fd), this.unread, p.fd))))
    return r.every(Boolean)
  }

  /** The process is gone: the input ends are closed (a socket's pump then ends). */
  close (): void {
    for (const w of this.writers.values()) w.destroy()
  }

  /**
   * This node lets go of the guest (it left for another node, or was given up): its output ends
   * here are closed too. One at its bound (or held while out of touch) is not being read, so it
   * would never see the end of the pipe, and its socket and what it keeps would stay for good.
   */
  release (): void {
    for (const [, s] of this.readers) s.destroy()
    this.close()
  }
}


/** PF_EXITING in /proc/<pid>/stat's flags: the process is in exit(), closing its files. */
const PF_EXITING = 0x4

/**
 * After the end of a relayed output of process pid whose descriptor was `was` (fdLink): `close`
 * when the process still runs and holds that object at no fd any more, `shutdown` when it still
 * holds it (a socket it shut down for writing), null when it is gone, a zombie or exiting (its end
 * closes everything, e.g. a dumped copy killed once it runs elsewhere: that is no close to pass on).
 */
export function closedHow (pid: number, was: string): 'close' | 'shutdown' | null {
  const f = readStat(pid) // (flags: field 9)
  if (f === undefined || /^[ZX]/.test(f[0]) || (Number(f[6]) & PF_EXITING) !== 0) return null
  let fds: string[]
  try { fds = readdirSync(`/proc/${pid}/fd`) } catch { return null }
  if (fds.some(f => fdLink(pid, Number(f)) === was)) return was.startsWith('socket:') ? 'shutdown' : null
  return 'close'
}

/**
 * Guest side: the process's own close of a relayed output (fd 1, 2, or a pipe or socket above 2),
 * or a shutdown of a relayed socket for writing, shows on N as the end of the stream the daemon
 * reads that output from (its write end was the process's alone) while the process runs on:
 * `report` is told which, after the last of its bytes ('end' comes after the last 'data').
 */
export function watchCloses (pid: number, ends: Array<[number, Readable | null]>, report: (fd: number, how: 'close' | 'shutdown') => void): void {
  for (const [fd, s] of ends) {
    const was = fdLink(pid, fd)
    if (s === null || was === '') continue
    s.once('end', () => {
      const how = closedHow(pid, was)
      if (how !== null) report(fd, how)
    })
  }
}
