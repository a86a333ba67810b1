// The relay of a moved process's fds 0-2 between the node it runs on and its home.
//
// Home side (HomeStdio): while the process is away its deputy holds the original descriptors;
// stdout and stderr frames (O, E) from the guest are written to them, and stdin is handed out
// on demand (pull): the guest asks (want) for what a blocked read wants, and home reads at most
// that much, so nothing waits unread on the remote when the process moves on (src/migrate/stdin.ts).
// Guest side (StdinPull): watches the guest for a blocked wait on stdin and asks for it.
import { createWriteStream, readlinkSync, readSync, openSync, closeSync, fstatSync, writeSync, constants as fsc } from 'node:fs'
import { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import debug from '../util/log.js'
import type { Link } from './link.js'
import type { DeputyHandle } from './engine.js'
import { ctxtSwitches, stdinWait, syscallLine, STDIN_CHUNK } from './stdin.js'

const log = debug('hpcfs:relay')

export type StdioKind = 'pipe' | 'socket' | 'tty' | 'path' | 'closed'

/**
 * What a standard descriptor of a process is: unnamed pipes, sockets and terminals are relayed by
 * the deputy; regular files and named FIFOs travel in the image by path (the cluster shares a file
 * namespace), and so does anything else.
 */
export function stdioKind (pid: number, fd: number): StdioKind {
  let link: string
  try { link = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return 'closed' }
  if (link.startsWith('pipe:')) return 'pipe'
  if (link.startsWith('socket:')) return 'socket'
  if (/^\/dev\/(pts\/|tty|console)/.test(link)) return 'tty'
  return 'path'
}

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

/** Home side of a process's fds 0-2 while it is away. */
export class HomeStdio {
  out: Array<Writable | null> = [null, null, null]
  /** stdin relayed on demand (pull): the guest asks for what a blocked read wants */
  stdinFd: number | null = null
  /** What fds 0-2 were when the process left (a socket needs the engine's relay). */
  kinds: StdioKind[] = []
  /** Output that arrived before the relay was ready, in order (null once it is ready). */
  pendingOut: Array<[number, Buffer]> | null = []
  /** A path that opens the original's fd 2 (from the deputy), for a line home itself has to say there. */
  errPath: string | null = null

  constructor (readonly pid: number) {}

  /** Opens the relay from the deputy's descriptors (once), then writes what arrived meanwhile. */
  async open (dep: DeputyHandle | null): Promise<void> {
    if (!dep || this.out.some(Boolean)) return
    // pipes, FIFOs and terminals are opened again by path; sockets cannot be, so then the engine
    // relays all three through pipes of its own
    const sockets = this.kinds.some(k => k === 'socket')
    const fds = await dep.takeFds({ relay: sockets })
    this.errPath = fds[2]
    const relay = (i: number): boolean => fds[i] !== null && ['pipe', 'socket', 'tty'].includes(this.kinds[i])
    for (const i of [1, 2]) {
      if (relay(i)) this.out[i] = openRelay(fds[i] as string).on('error', e => log('fd %d of %d: %s', i, this.pid, e.message))
    }
    if (relay(0)) {
      // pull: read only what the remote process is blocked reading, so nothing is left behind on
      // the remote. (With a socket the engine's relay has to read it first: what it took from
      // the socket and nobody pulled is lost if the process comes home.)
      this.stdinFd = openSync(fds[0] as string, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
    }
    for (const [fd, d] of this.pendingOut ?? []) this.out[fd]?.write(d)
    this.pendingOut = null
  }

  /** Output of the guest (fd 1 or 2): written now, or kept until the relay is open. */
  write (fd: number, d: Buffer): void {
    if (this.pendingOut) this.pendingOut.push([fd, d])
    else this.out[fd]?.write(d)
  }

  /** Resolves when what was written has gone out. */
  async flush (): Promise<void> {
    await Promise.all(this.out.map(s => s ? new Promise<void>(resolve => { if (s.writableLength === 0) resolve(); else s.once('drain', () => resolve()) }) : undefined))
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
    this.out = [null, null, null]
    this.errPath = null
    if (this.stdinFd !== null) { try { closeSync(this.stdinFd) } catch {} this.stdinFd = null }
    this.pendingOut = []
  }
}

/**
 * Hands the remote at most n bytes of stdin over conn, as soon as there are some (or EOF).
 * `gate` says whether stdin may be handed out on conn now (it is when the relay is open), later
 * (retry in 5 ms), or never (the want is dropped: the guest stops waiting for it and reads again
 * wherever it lands).
 */
export function serveWant (io: HomeStdio, conn: Link, n: number, gate: () => 'now' | 'later' | 'never'): void {
  const g = gate()
  if (g !== 'now' || io.stdinFd === null) {
    if (g === 'later' && !conn.closed) setTimeout(() => serveWant(io, conn, n, gate), 5).unref()
    return
  }
  const fd = io.stdinFd as number
  const buf = Buffer.alloc(Math.max(1, Math.min(n, STDIN_CHUNK)))
  let got: number
  try { got = readSync(fd, buf, 0, buf.length, null) } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') { setTimeout(() => serveWant(io, conn, n, gate), 5).unref(); return }
    log('stdin of %d: %s', io.pid, (e as Error).message)
    got = 0
  }
  if (got === 0) void conn.send({ t: 'stdin-end' }).catch(() => {})
  else void conn.frame('N', buf.subarray(0, got)).catch(() => {})
}

/** Guest side of pull-mode stdin. */
export class StdinPull {
  wanting = false
  wantLine = ''
  wantKind: 'read' | 'poll' = 'read'
  ended = false
  /** stdin handed over and not known to be read yet: the wait it was for, and the switches then */
  delivered: { kind: 'read' | 'poll', line: string, switches: number } | null = null

  constructor (readonly pid: number) {}

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
    const done = d.kind === 'read' ? woke || line !== d.line : woke && stdinWait(this.pid, line) !== null
    if (done) this.delivered = null
    return done
  }

  /**
   * Every few ms, while `current()`: if the process is blocked waiting for stdin (a read, or a
   * poll/select/epoll watching fd 0), has read what it was handed before and is not `leaving()`,
   * ask for what that wait may take (`want`); nothing it has not asked for waits in its pipe when
   * it moves on.
   */
  start (current: () => boolean, leaving: () => boolean, want: (n: number) => void): void {
    const t = setInterval(() => {
      if (!current() || this.ended) { clearInterval(t); return }
      if (this.wanting || leaving() || !this.consumed()) return
      const line = syscallLine(this.pid)
      const w = stdinWait(this.pid, line)
      if (w === null) return
      this.wanting = true
      this.wantLine = line
      this.wantKind = w.kind
      want(w.n)
    }, 5)
    t.unref()
  }

  /**
   * Waits up to a second for the stdin handed over to be read (it would be lost in the pipe
   * otherwise). A want still open gets nothing more (home hands out no stdin during a move): it is
   * dropped. Resolves whether all was read.
   */
  async settle (): Promise<boolean> {
    let ok = this.consumed()
    for (let i = 0; i < 200 && !ok; i++) {
      await new Promise(resolve => setTimeout(resolve, 5))
      ok = this.consumed()
    }
    this.wanting = false
    return ok
  }
}
