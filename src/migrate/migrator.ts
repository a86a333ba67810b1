// Process migration between daemons: the home side (deputy) and the guest side (remote).
//
// A process under cluster discipline lives on its home node (UHN). When it leaves, its original
// stays home as the deputy (src/ppm: dumped, hollowed, parked under its own pid): its parent can
// wait() for it, signals sent to it are forwarded, its stdin/stdout/stderr are relayed, and when
// the remote ends the deputy ends the same way. The remote is the restored process on the other
// node, a guest there. Every move is driven by the home node:
//   home -> N      deputy dump streams to N (a copy is kept until N runs it: a failed restore
//                  puts the process back into its original, never two copies, never none)
//   N -> home      N dumps it, drains its output, streams the image back; home restores it into
//                  the original (same pid)
//   N -> M         M is asked first (a refusal leaves the process running on N); then N stops
//                  it and streams the image straight to M, keeping a copy until home tells it
//                  M runs it: if M cannot, N runs it again (or, failing that, sends it home)
// Guests whose home dies are killed; a deputy whose remote node dies prints why on its stderr and
// exits with LOST_STATUS.
import { EventEmitter } from 'node:events'
import { createServer, Socket, type Server } from 'node:net'
import { createWriteStream, readFileSync, readlinkSync, readSync, openSync, closeSync, fstatSync, constants as fsc } from 'node:fs'
import { PassThrough, Readable, Writable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import debug from '../util/log.js'
import * as ppm from '../ppm/ppm.js'
import type { Keyring } from '../gossip/keyring.js'
import { ErrnoError, einval } from '../util/errno.js'
import { Conn, MIGRATION_PORT, type Msg } from './wire.js'
import { ctxtSwitches, stdinWait, syscallLine } from './stdin.js'
import { processAge, residentBytes } from '../util/procfs.js'

const log = debug('hpcfs:migrate')

/** Exit status of a deputy whose remote was lost with its node (EHOSTDOWN). */
export const LOST_STATUS = 112

/** What the migrator needs to know about the cluster (from the node core). */
export interface Cluster {
  readonly id: number
  /** Address of a node's transfer port; undefined when unknown. */
  addressOf (id: number): { host: string, port: number } | undefined
  isUp (id: number): boolean
  /** Guests refused (admin/block). */
  readonly blocked: boolean
  /** admin/stay or admin/lstay: this node's own processes do not leave. */
  readonly keepsLocal: boolean
}

export type Where = 'home' | 'migrating' | number

/**
 * How a process's CPU statistics decay (openMosix decay/ hints, proc/<pid>/decay): `rate` slow
 * (admin/slow-decay, the default) or fast (admin/fast-decay); `kind` cpujob (counted CPU-bound
 * whatever it used lately), iojob (counted as using no CPU) or none; `cleared` when the statistics
 * were last cleared (ms; the balancer starts them afresh).
 */
export interface DecayHints { rate: 'slow' | 'fast', kind: '' | 'cpujob' | 'iojob', cleared: number }

export const DECAY_HINTS = ['clear', 'cpujob', 'iojob', 'slow', 'fast'] as const
export type DecayHint = typeof DECAY_HINTS[number]

/** Applies one hint to a process's decay settings. */
export function applyHint (d: DecayHints, hint: DecayHint, now = Date.now()): void {
  if (hint === 'clear') { d.cleared = now; d.kind = '' } else if (hint === 'slow' || hint === 'fast') d.rate = hint; else d.kind = hint
}

/** proc/<pid>/decay's text: the rate, then the kind if any. */
export function formatHints (d: DecayHints): string {
  return d.kind === '' ? d.rate : `${d.rate} ${d.kind}`
}

/** A process whose home is this node. */
export class HomeProc {
  lock = false
  nmigs = 0
  readonly decay: DecayHints = { rate: 'slow', kind: '', cleared: 0 }
  where: Where = 'home'
  lastError = ''
  deputy: ppm.Deputy | null = null
  conn: Conn | null = null
  out: Array<Writable | null> = [null, null, null]
  /** stdin relayed on demand (pull): the guest asks for what a blocked read wants */
  stdinFd: number | null = null
  stdinMode: 'pull' | 'none' = 'none'
  /** set while the process is being moved: no stdin is handed out */
  moving = false
  imageIn: Buffer[] | null = null
  /** Size of the image while it is away (sent with a hop so the next node can check its memory). */
  imageBytes: number | null = null
  /** What fds 0-2 were when the process left (a socket needs the engine's relay). */
  stdioKinds: string[] = []
  /** Output that arrived before the relay was ready, in order. */
  pendingOut: Array<[number, Buffer]> | null = []
  /** During N -> M: M's connection, whose output and messages wait until N has sent all of its own. */
  holdFor: Conn | null = null
  held: Array<[number, Buffer]> = []
  heldMsgs: Msg[] = []
  /** Signals that reached the deputy while the process was in transit, for wherever it lands. */
  pendingSignals: number[] = []
  imageWaiter: ((chunks: Buffer[]) => void) | null = null
  /** When the image now coming home started (for the bandwidth measurement). */
  imageStart = 0
  /** The node it runs on or last ran on away from home (0: never left). */
  at = 0
  constructor (readonly pid: number) {}
}

/** A process running here whose home is another node. */
export class Guest {
  leaving = false
  wanting = false
  wantLine = ''
  wantKind: 'read' | 'poll' = 'read'
  stdinEnded = false
  /** stdin handed over and not known to be read yet: the wait it was for, and the switches then */
  delivered: { kind: 'read' | 'poll', line: string, switches: number } | null = null
  outputDone: Promise<void>
  /** When this node last asked home to move it on, or home last said no (0: never); the balancer waits 30 s after either. */
  moveAsked = 0
  /** Its decay hints, as home holds them (they travel with every move). */
  readonly decay: DecayHints = { rate: 'slow', kind: '', cleared: 0 }
  /** Removes its listeners from conn (when it leaves, or runs again here under another pid). */
  detach: () => void = () => {}
  /**
   * `since`: arrival here (ms); `age`: seconds it had run when it arrived (its start at home,
   * which its restored copy here does not show).
   */
  constructor (readonly pid: number, readonly home: number, readonly homePid: number, readonly conn: Conn, readonly r: ppm.Restored, readonly since: number,
    readonly stdinMode: 'pull' | 'none' = 'none', readonly age = 0) {
    const ends = [r.stdout, r.stderr].filter((s): s is Readable => s !== null).map(s => new Promise<void>(resolve => { s.once('end', resolve); s.once('close', resolve) }))
    this.outputDone = Promise.all(ends).then(() => {})
  }
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' } }

export class Migrator extends EventEmitter {
  readonly procs = new Map<number, HomeProc>()
  readonly guests = new Map<number, Guest>()
  private server: Server | null = null
  private hostInfo: Promise<string> | null = null
  /** N -> M on M: accepted moves whose image comes over another connection, by ticket. */
  private readonly tickets = new Map<string, (c: Conn) => void>()

  /**
   * Fault injection for tests (hpcd --test-fault): 'restore' makes every restore here fail, the
   * 1st, 3rd, ... early in the image (the sender's dump fails too), the 2nd, 4th, ... once all of
   * it has arrived (the sender has finished and removed its process).
   */
  testFault = ''
  private restores = 0

  constructor (readonly cluster: Cluster, private readonly keys: Keyring, readonly port = MIGRATION_PORT) { super() }

  // ---- listening -------------------------------------------------------------------------

  async listen (host: string): Promise<void> {
    this.hostInfo = ppm.hostInfo()
    this.hostInfo.catch(e => log('hostinfo: %s', (e as Error).message))
    const server = createServer(sock => { void this.accept(sock) })
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(this.port, host, () => { server.off('error', reject); resolve() }) })
    this.server = server
    log('transfer port %s:%d', host, this.port)
  }

  async close (): Promise<void> {
    for (const g of this.guests.values()) { try { process.kill(g.pid, 'SIGKILL') } catch {} g.conn.close() }
    for (const p of this.procs.values()) p.conn?.close()
    await new Promise<void>(resolve => this.server ? this.server.close(() => resolve()) : resolve())
  }

  private async accept (sock: Socket): Promise<void> {
    let conn: Conn
    try { conn = await Conn.server(sock, this.keys) } catch (e) { log('refused %s: %s', sock.remoteAddress, (e as Error).message); sock.destroy(); return }
    conn.once('msg', (m: Msg) => {
      if (m.t === 'migrate') void this.receive(conn, m).catch(e => log('receive: %s', (e as Error).message))
      else if (m.t === 'image' && this.tickets.has(String(m.ticket))) this.tickets.get(String(m.ticket))?.(conn)
      else { void conn.send({ t: 'error', reason: `unexpected ${m.t}` }); conn.close() }
    })
  }

  /** Why a local process cannot move (empty when it can), from the engine's analysis. */
  async cantMove (pid: number): Promise<string[]> {
    const reasons = await ppm.check(pid).catch(e => [{ code: 'error', text: (e as Error).message }])
    return reasons.map(r => r.text)
  }

  // ---- home side -------------------------------------------------------------------------

  /** The process entry for a local pid (creating it puts the process under cluster discipline). */
  adopt (pid: number): HomeProc {
    let p = this.procs.get(pid)
    if (p) return p
    if (!Number.isInteger(pid) || pid < 2 || !alive(pid)) throw new ErrnoError('ESRCH', `no process ${pid}`)
    p = new HomeProc(pid)
    this.procs.set(pid, p)
    this.reapWhenGone(p)
    return p
  }

  private reapWhenGone (p: HomeProc): void {
    const t = setInterval(() => {
      if (p.where === 'home' && !p.deputy && !alive(p.pid)) { clearInterval(t); this.procs.delete(p.pid) }
    }, 1000)
    t.unref()
  }

  /** Asks for a move; validates at once (EINVAL, EAGAIN, ESRCH), moves in the background. */
  requestMove (pid: number, target: number | 'home'): Promise<void> {
    const p = this.adopt(pid)
    if (p.where === 'migrating') throw new ErrnoError('EAGAIN', `process ${pid} is in transit`)
    if (target === this.cluster.id) target = 'home'
    if (target !== 'home') {
      if (!this.cluster.addressOf(target)) throw einval(`no node ${target}`)
      if (!this.cluster.isUp(target)) throw new ErrnoError('EHOSTUNREACH', `node ${target} is down`)
    }
    if ((target === 'home' && p.where === 'home') || target === p.where) return Promise.resolve()
    if (p.where === 'home' && this.cluster.keepsLocal) throw new ErrnoError('EPERM', 'this node keeps its processes (admin/stay or admin/lstay)')
    const from = p.where
    p.where = 'migrating'
    p.lastError = ''
    const run = async (): Promise<void> => {
      if (from === 'home') await this.moveOut(p, target as number)
      else if (target === 'home') await this.comeHome(p)
      else await this.hop(p, from as number, target)
    }
    const done = run().catch(e => {
      p.lastError = (e as Error).message
      log('move of %d to %s failed: %s', pid, target, p.lastError)
      if (p.where === 'migrating') p.where = from
      p.moving = false // stdin is handed out again
      // it was away and its connection broke during the move: it is lost with that node
      if (typeof from === 'number' && p.deputy && (!p.conn || p.conn.closed)) void this.lost(p, from)
    })
    return done
  }

  private async connect (node: number): Promise<Conn> {
    const a = this.cluster.addressOf(node)
    if (!a) throw einval(`no node ${node}`)
    return await Conn.client(a.host, a.port, this.keys)
  }

  /**
   * Offers the process to node; resolves with the connection once accepted. `ticket`: the image
   * will come from another node over a connection of its own that names this ticket.
   */
  private async offer (p: HomeProc, node: number, ticket?: string): Promise<{ conn: Conn, hostinfo: string }> {
    const conn = await this.connect(node)
    await conn.send({ t: 'migrate', home: this.cluster.id, pid: p.pid, name: comm(p.pid), bytes: p.imageBytes ?? residentBytes(p.pid), stdin: p.stdinMode, age: processAge(p.pid), decay: p.decay.rate, kind: p.decay.kind, ...(ticket !== undefined ? { ticket } : {}) })
    let m: Msg
    try { m = await conn.expect('accept', 'refuse') } catch (e) { conn.close(); throw e }
    if (m.t === 'refuse') { conn.close(); throw new ErrnoError('EPERM', `node ${node} refused: ${String(m.reason)}`) }
    return { conn, hostinfo: String(m.hostinfo ?? '') }
  }

  private async moveOut (p: HomeProc, node: number): Promise<void> {
    const reasons = await this.cantMove(p.pid)
    if (reasons.length) throw new ErrnoError('EPERM', `cannot move: ${reasons.join('; ')}`)
    p.stdioKinds = [0, 1, 2].map(fd => stdioKind(p.pid, fd))
    const k0 = p.stdioKinds[0]
    p.stdinMode = k0 === 'pipe' || k0 === 'tty' || k0 === 'socket' ? 'pull' : 'none'
    const { conn, hostinfo } = await this.offer(p, node)
    const reply = conn.expect('running', 'failed').catch(e => ({ t: 'failed', reason: (e as Error).message } as Msg))
    this.bind(p, conn, node)
    const copy: Buffer[] = []
    const sink = conn.imageWriter()
    const tee = new Writable({
      write: (c: Buffer, _e, cb) => { copy.push(c); sink.write(c, cb) },
      final: cb => { sink.end(cb) }
    })
    let dep: ppm.Deputy
    try {
      dep = await ppm.deputy(p.pid, tee, hostinfo ? { target: hostinfo } : {})
    } catch (e) {
      p.conn = null
      await conn.send({ t: 'abort', reason: (e as Error).message }).catch(() => {})
      conn.close()
      throw e
    }
    p.deputy = dep
    dep.on('signal', (s: number) => {
      log('deputy %d got signal %d', p.pid, s)
      if (p.moving || p.where === 'migrating') p.pendingSignals.push(s); else void p.conn?.send({ t: 'signal', sig: s }).catch(() => {})
    })
    dep.on('end', () => this.deputyEnded(p))
    const m = await reply
    if (m.t !== 'running') {
      p.conn = null
      conn.close()
      await dep.restoreInto(Readable.from(copy))
      this.detachDeputy(p)
      p.where = 'home'
      throw new Error(`node ${node} could not run it: ${String(m.reason)}; it runs at home again`)
    }
    this.noteTransfer(node, Number(m.bytes), Number(m.ms))
    await this.relayStdio(p)
    this.arrived(p, node)
  }

  private async relayStdio (p: HomeProc): Promise<void> {
    if (!p.deputy || p.out.some(Boolean)) return
    // pipes, FIFOs and terminals are opened again by path; sockets cannot be, so then the engine
    // relays all three through pipes of its own
    const sockets = p.stdioKinds.some(k => k === 'socket')
    const fds = await p.deputy.takeFds({ relay: sockets })
    const relay = (i: number): boolean => fds[i] !== null && ['pipe', 'socket', 'tty'].includes(p.stdioKinds[i])
    for (const i of [1, 2]) {
      if (relay(i)) p.out[i] = openRelay(fds[i] as string).on('error', e => log('fd %d of %d: %s', i, p.pid, e.message))
    }
    if (relay(0)) {
      // pull: read only what the remote process is blocked reading, so nothing is left behind on
      // the remote. (With a socket the engine's relay has to read it first: what it took from
      // the socket and nobody pulled is lost if the process comes home.)
      p.stdinFd = openSync(fds[0] as string, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
    }
    for (const [fd, d] of p.pendingOut ?? []) p.out[fd]?.write(d)
    p.pendingOut = null
  }

  /**
   * Makes conn the process's session with node: output, messages and loss are handled from now on
   * (`take` false: conn is M's during N -> M, held until the move completes).
   */
  private bind (p: HomeProc, conn: Conn, node: number, take = true): void {
    if (take) p.conn = conn
    conn.on('data', (type: string, d: Buffer) => {
      if (type === 'I') { p.imageIn?.push(d); return }
      const fd = type === 'O' ? 1 : type === 'E' ? 2 : 0
      if (!fd) return
      if (p.holdFor === conn) p.held.push([fd, d])
      else if (p.pendingOut) p.pendingOut.push([fd, d])
      else p.out[fd]?.write(d)
    })
    conn.on('msg', (m: Msg) => {
      if (p.holdFor === conn && m.t !== 'want') p.heldMsgs.push(m)
      else this.onHomeMsg(p, conn, m).catch(e => log('process %d: %s: %s', p.pid, m.t, (e as Error).message))
    })
    conn.on('close', () => {
      if (p.conn !== conn) return
      p.conn = null
      void this.lost(p, node)
    })
  }

  private arrived (p: HomeProc, node: number): void {
    p.moving = false
    p.where = node
    p.at = node
    p.nmigs++
    log('process %d runs on node %d', p.pid, node)
    this.emit('moved', p.pid, node)
    this.deliverSignals(p)
  }

  /** Signals the deputy got while the process was in transit go to where it is now. */
  private deliverSignals (p: HomeProc): void {
    const sigs = p.pendingSignals
    p.pendingSignals = []
    for (const s of sigs) {
      if (p.where === 'home') { try { process.kill(p.pid, s) } catch {} } else void p.conn?.send({ t: 'signal', sig: s }).catch(() => {})
    }
  }

  /** Measured transfer bandwidth to each node (bytes/s), from the images that went there. */
  readonly bandwidth = new Map<number, number>()

  /** Records a transfer's measured rate (a receiver's report: bytes, ms); small images only show latency. */
  private noteTransfer (node: number, bytes: number, ms: number): void {
    if (!(bytes >= MIN_MEASURED_BYTES && ms > 0)) return
    const bw = bytes / (ms / 1000)
    const old = this.bandwidth.get(node)
    this.bandwidth.set(node, old === undefined ? bw : (old + bw) / 2)
    log('transfer to node %d: %d bytes in %d ms (%d MB/s)', node, bytes, ms, Math.round(bw / 1e6))
  }

  private async onHomeMsg (p: HomeProc, conn: Conn, m: Msg): Promise<void> {
    if (m.t === 'exit') {
      p.conn = null
      conn.close()
      if (p.pendingOut) await this.relayStdio(p)
      await this.flushOut(p)
      const dep = p.deputy
      if (!dep) return
      if (m.signal) await dep.kill(Number(m.signal)).catch(e => log('kill deputy: %s', e.message))
      else await dep.exit(Number(m.code ?? 0)).catch(e => log('exit deputy: %s', e.message))
      this.forget(p)
    } else if (m.t === 'want') {
      this.serveWant(p, conn, Number(m.n))
    } else if (m.t === 'leaving') {
      // the guest's node sends it home by itself (expel): no more stdin from now on, so that none
      // arrives after it has stopped
      p.moving = true
      await conn.send({ t: 'leaving-ok' }).catch(() => {})
    } else if (m.t === 'stay' && p.where !== 'migrating') {
      p.moving = false // it could not leave after all: stdin is handed out again
    } else if (m.t === 'move-request') {
      // the node it runs on found a cheaper place for it (its balancer decides for its guests)
      this.guestAsks(p, conn, m)
    } else if (m.t === 'image-start') {
      p.imageIn = []
      p.imageStart = Date.now()
    } else if (m.t === 'image-end') {
      const chunks = p.imageIn ?? []
      p.imageIn = null
      if (p.at > 0 && p.imageStart > 0) this.noteTransfer(p.at, chunks.reduce((a, c) => a + c.length, 0), Date.now() - p.imageStart)
      if (p.imageWaiter) { const w = p.imageWaiter; p.imageWaiter = null; w(chunks) } else {
        // the guest node sends it home by itself (expel)
        p.where = 'migrating'
        await this.landHome(p, conn, chunks)
      }
    }
  }

  /** Hands the remote at most n bytes of stdin, as soon as there are some (or EOF). */
  private serveWant (p: HomeProc, conn: Conn, n: number): void {
    const fd = p.stdinFd
    if (fd === null || p.conn !== conn || p.moving) {
      // Not yet: the relay is being set up, or conn is M's during N -> M. (To N during a move the
      // want is dropped: N stops waiting for it and the process reads again wherever it lands.)
      const soon = conn === p.holdFor || (conn === p.conn && !p.moving && p.where === 'migrating')
      if (soon && !conn.closed) setTimeout(() => this.serveWant(p, conn, n), 5).unref()
      return
    }
    const buf = Buffer.alloc(Math.max(1, Math.min(n, 65536)))
    let got: number
    try { got = readSync(fd, buf, 0, buf.length, null) } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') { setTimeout(() => this.serveWant(p, conn, n), 5).unref(); return }
      log('stdin of %d: %s', p.pid, (e as Error).message)
      got = 0
    }
    if (got === 0) void conn.send({ t: 'stdin-end' }).catch(() => {})
    else void conn.frame('N', buf.subarray(0, got)).catch(() => {})
  }

  private async flushOut (p: HomeProc): Promise<void> {
    await Promise.all(p.out.map(s => s ? new Promise<void>(resolve => { if (s.writableLength === 0) resolve(); else s.once('drain', () => resolve()) }) : undefined))
  }

  /** Gets the image of a remote process back over its connection (the remote stops it). */
  private async fetchImage (p: HomeProc): Promise<{ conn: Conn, chunks: Buffer[] }> {
    const conn = p.conn
    if (!conn) throw new Error('no connection to the remote')
    p.moving = true
    const got = new Promise<Buffer[]>(resolve => { p.imageWaiter = resolve })
    await conn.send({ t: 'gohome' })
    const chunks = await Promise.race([got, conn.expect('stay').then(m => { throw new Error(`remote could not stop it: ${String(m.reason)}`) })])
    return { conn, chunks }
  }

  private async landHome (p: HomeProc, conn: Conn, chunks: Buffer[]): Promise<void> {
    const dep = p.deputy as ppm.Deputy
    p.conn = null
    await this.flushOut(p)
    try {
      await dep.restoreInto(Readable.from(chunks))
    } catch (e) {
      p.conn = conn
      await conn.send({ t: 'home-failed', reason: (e as Error).message })
      throw e
    }
    await conn.send({ t: 'home-ok' }).catch(() => {})
    conn.close()
    this.detachDeputy(p)
    p.moving = false
    p.where = 'home'
    p.nmigs++
    log('process %d is home', p.pid)
    this.emit('moved', p.pid, 0)
    this.deliverSignals(p)
  }

  private async comeHome (p: HomeProc): Promise<void> {
    const { conn, chunks } = await this.fetchImage(p)
    await this.landHome(p, conn, chunks)
  }

  /**
   * N -> M. M is asked first: a refusal leaves the process running on N. Then N stops it and
   * streams the image straight to M over a connection of its own (named by a one-time ticket),
   * keeping a copy. M's output and messages are held until N has sent the last of its own, so the
   * output keeps its order. If M cannot run it, N runs it again from its copy; if N cannot
   * either, N sends the image home and it runs in its original.
   */
  private async hop (p: HomeProc, from: number, node: number): Promise<void> {
    const old = p.conn
    if (!old) throw new Error('no connection to the remote')
    const ticket = randomBytes(16).toString('hex')
    const next = await this.offer(p, node, ticket)
    const reply = next.conn.expect('running', 'failed').catch(e => ({ t: 'failed', reason: (e as Error).message } as Msg))
    p.holdFor = next.conn
    p.held = []
    p.heldMsgs = []
    this.bind(p, next.conn, node, false)
    p.moving = true
    const sent = old.expect('sent', 'stay').catch(e => ({ t: 'stay', reason: (e as Error).message } as Msg))
    await old.send({ t: 'sendto', node, ticket, hostinfo: next.hostinfo }).catch(() => {})
    const s = await sent
    const release = (): void => { p.holdFor = null; p.held = []; p.heldMsgs = [] }
    if (s.t === 'stay') {
      // N could not stop it, or M broke off the transfer (the dump then fails and leaves the
      // process as it was), or N is gone: the process is where it was, M has nothing
      const m = await Promise.race([reply, new Promise<undefined>(resolve => { setTimeout(() => resolve(undefined), 2000).unref() })])
      release()
      next.conn.close()
      p.moving = false
      const why = m?.t === 'failed' ? `node ${node} could not run it: ${String(m.reason)}` : `node ${from} could not send it: ${String(s.reason)}`
      throw new Error(old.closed ? why : `${why}; it runs on node ${from} again`)
    }
    const m = await reply
    if (m.t === 'running') {
      const held = p.held
      const msgs = p.heldMsgs
      release()
      p.conn = next.conn
      p.imageBytes = Number(s.bytes) > 0 ? Number(s.bytes) : p.imageBytes
      this.noteTransfer(node, Number(m.bytes), Number(m.ms))
      for (const [fd, d] of held) p.out[fd]?.write(d)
      await old.send({ t: 'home-ok' }).catch(() => {})
      old.close()
      this.arrived(p, node)
      for (const x of msgs) await this.onHomeMsg(p, next.conn, x)
      return
    }
    release()
    next.conn.close()
    const why = `node ${node} could not run it: ${String(m.reason)}`
    const back = new Promise<Buffer[]>(resolve => { p.imageWaiter = resolve })
    await old.send({ t: 'resume' })
    const got = await Promise.race([old.expect('resumed').then(() => null), back]).finally(() => { p.imageWaiter = null })
    if (got === null) {
      p.moving = false
      throw new Error(`${why}; it runs on node ${from} again`)
    }
    await this.landHome(p, old, got)
    throw new Error(`${why}; node ${from} could not run it again either, so it runs at home`)
  }

  /** A decay hint for a process of this node (proc/<pid>/decay); it reaches the remote if it is away. */
  hint (pid: number, hint: DecayHint): void {
    const p = this.adopt(pid)
    applyHint(p.decay, hint)
    if (typeof p.where === 'number') void p.conn?.send({ t: 'hint', hint }).catch(() => {})
  }

  /** A guest's node asks to move it on (its balancer's choice); home checks and carries it out. */
  private guestAsks (p: HomeProc, conn: Conn, m: Msg): void {
    const target = Number(m.node)
    if (p.conn !== conn || typeof p.where !== 'number' || p.moving) return
    const refuse = (reason: string): void => { void conn.send({ t: 'move-failed', reason }).catch(() => {}) }
    if (p.lock) { refuse('locked at home (proc/PID/lock)'); return }
    if (!Number.isInteger(target) || target < 1 || target === p.where) { refuse(`bad target ${String(m.node)}`); return }
    log('node %d asks to move %d to %d: %s', p.where, p.pid, target, String(m.why ?? ''))
    try {
      void this.requestMove(p.pid, target).then(() => { if (p.lastError) refuse(p.lastError) })
    } catch (e) {
      refuse((e as Error).message)
    }
  }

  /** The remote's node died or the connection broke: the deputy reports it and exits. */
  private async lost (p: HomeProc, node: number): Promise<void> {
    // during a move the move itself handles a broken connection (and calls this when the process
    // was lost with it)
    if (p.where !== node) return
    const msg = `hpcfs: process ${p.pid} was lost with node ${node}\n`
    log(msg.trim())
    await new Promise<void>(resolve => p.out[2] ? p.out[2].write(msg, () => resolve()) : resolve())
    await p.deputy?.exit(LOST_STATUS).catch(() => {})
    this.forget(p)
  }

  private deputyEnded (p: HomeProc): void {
    // the original died at home (SIGKILL cannot be intercepted): end the remote too
    if (p.conn) { void p.conn.send({ t: 'kill' }).catch(() => {}); p.conn.close(); p.conn = null }
    this.forget(p)
  }

  private detachDeputy (p: HomeProc): void {
    p.deputy?.removeAllListeners()
    p.deputy = null
    for (const s of p.out) s?.end()
    p.out = [null, null, null]
    if (p.stdinFd !== null) { try { closeSync(p.stdinFd) } catch {} p.stdinFd = null }
    p.pendingOut = []
  }

  private forget (p: HomeProc): void {
    this.detachDeputy(p)
    p.where = 'home'
    this.procs.delete(p.pid)
  }

  /** Brings every process of this node home (admin/bring); resolves when all are home. */
  async bringAll (): Promise<void> {
    await Promise.all([...this.procs.values()].filter(p => typeof p.where === 'number').map(p => this.requestMove(p.pid, 'home').catch(() => {})))
  }

  // ---- guest side ------------------------------------------------------------------------

  private async receive (conn: Conn, m: Msg): Promise<void> {
    const home = Number(m.home)
    if (this.cluster.blocked) { await conn.send({ t: 'refuse', reason: 'this node is blocked (admin/block)' }); conn.close(); return }
    if (!Number.isInteger(home) || !this.cluster.addressOf(home)) { await conn.send({ t: 'refuse', reason: `unknown home node ${home}` }); conn.close(); return }
    const need = Number(m.bytes ?? 0)
    const free = availableBytes()
    if (need > 0 && free < need + MEMORY_RESERVE) {
      await conn.send({ t: 'refuse', reason: `not enough memory (${Math.round(need / 2 ** 20)} MiB wanted, ${Math.round(free / 2 ** 20)} MiB available)` })
      conn.close()
      return
    }
    const hostinfo = await this.hostInfo?.catch(() => '') ?? ''
    const image = new PassThrough()
    const fault = this.testFault === 'restore' ? (this.restores++ % 2 === 0 ? 'early' : 'end') : ''
    let received = 0
    let first = 0
    let ended = 0
    const cleanups: Array<() => void> = []
    /** Image frames from c (home's connection, or the one N opens with the ticket during N -> M). */
    let last: Buffer | undefined // with the 'end' fault: every frame is held back until the next comes
    const feed = (c: Conn): void => {
      const onData = (type: string, d: Buffer): void => {
        if (type !== 'I') return
        if (first === 0) first = Date.now()
        received += d.length
        if (fault === 'early' && received > 4096) { image.destroy(new Error('injected fault: restore broken half-way')); return }
        if (fault === 'end') { const prev = last; last = d; if (prev === undefined) return; d = prev }
        if (!image.write(d)) { c.sock.pause(); image.once('drain', () => c.sock.resume()) }
      }
      const onMsg = (x: Msg): void => {
        if (x.t === 'image-end') {
          ended = Date.now()
          // the 'end' fault: the last frame never reaches the engine, so the restore fails once the
          // sender has sent everything (and removed its process)
          if (fault === 'end') image.destroy(new Error('injected fault: restore broken at the end')); else image.end()
        } else if (x.t === 'abort') image.destroy(new Error(String(x.reason)))
      }
      const onClose = (): void => { if (ended === 0) image.destroy(new Error('connection closed')) }
      c.on('data', onData)
      c.on('msg', onMsg)
      c.once('close', onClose)
      cleanups.push(() => { c.off('data', onData); c.off('msg', onMsg); c.off('close', onClose); c.sock.resume() })
    }
    const ticket = typeof m.ticket === 'string' ? m.ticket : undefined
    if (ticket !== undefined) {
      // N -> M: the image comes from the node the process runs on now
      const t = setTimeout(() => { this.tickets.delete(ticket); image.destroy(new Error('the image did not come')) }, TICKET_MS)
      this.tickets.set(ticket, c => { clearTimeout(t); this.tickets.delete(ticket); feed(c); cleanups.push(() => c.close()) })
      const onHomeClose = (): void => { clearTimeout(t); this.tickets.delete(ticket); image.destroy(new Error('home closed the connection')) }
      conn.once('close', onHomeClose)
      cleanups.push(() => { clearTimeout(t); this.tickets.delete(ticket); conn.off('close', onHomeClose) })
    } else {
      feed(conn)
    }
    await conn.send({ t: 'accept', hostinfo })
    let r: ppm.Restored
    try {
      r = await ppm.restore(image, { stdio: ['pipe', 'pipe', 'pipe'], clock: 'auto' })
    } catch (e) {
      for (const f of cleanups) f()
      log('restore from node %d failed: %s', home, (e as Error).message)
      await conn.send({ t: 'failed', reason: (e as Error).message }).catch(() => {})
      conn.close()
      return
    }
    for (const f of cleanups) f()
    const age = Number(m.age)
    const g = this.startGuest(conn, r, home, Number(m.pid), m.stdin === 'pull' ? 'pull' : 'none', Number.isFinite(age) ? age : 0)
    if (m.decay === 'fast') g.decay.rate = 'fast'
    if (m.kind === 'cpujob' || m.kind === 'iojob') g.decay.kind = m.kind
    await conn.send({ t: 'running', pid: r.pid, bytes: received, ms: Math.max(1, (ended || Date.now()) - (first || Date.now())) })
    log('guest %d from node %d (its pid %d) runs here', r.pid, home, g.homePid)
  }

  /** A restored process becomes a guest: its output, stdin, signals and end go over conn to home. */
  private startGuest (conn: Conn, r: ppm.Restored, home: number, homePid: number, stdin: 'pull' | 'none', age: number): Guest {
    const g = new Guest(r.pid, home, homePid, conn, r, Date.now(), stdin, age)
    this.guests.set(r.pid, g)
    r.stdout?.on('data', (d: Buffer) => { void conn.frame('O', d).catch(() => {}) })
    r.stderr?.on('data', (d: Buffer) => { void conn.frame('E', d).catch(() => {}) })
    r.stdin?.on('error', () => {})
    const onData = (type: string, d: Buffer): void => {
      if (type !== 'N') return
      // its switches before it can have the data: once they change, it woke up for it
      g.delivered = { kind: g.wantKind, line: g.wantLine, switches: ctxtSwitches(g.pid) }
      g.wanting = false
      r.stdin?.write(d)
    }
    const onMsg = (x: Msg): void => { this.onGuestMsg(g, x).catch(e => log('guest %d: %s: %s', g.pid, x.t, (e as Error).message)) }
    const onClose = (): void => {
      if (this.guests.get(g.pid) !== g || g.leaving) return
      log('lost home of guest %d (node %d): killing it', g.pid, g.home)
      try { process.kill(g.pid, 'SIGKILL') } catch {}
      this.guests.delete(g.pid)
    }
    conn.on('data', onData)
    conn.on('msg', onMsg)
    conn.on('close', onClose)
    g.detach = () => { conn.off('data', onData); conn.off('msg', onMsg); conn.off('close', onClose) }
    if (stdin === 'pull') this.pullStdin(g)
    void r.exited.then(async st => {
      if (g.leaving) return
      await g.outputDone
      this.guests.delete(g.pid)
      await conn.send({ t: 'exit', code: st.code, signal: st.signal }).catch(() => {})
      conn.close()
    })
    return g
  }

  private async onGuestMsg (g: Guest, m: Msg): Promise<void> {
    if (m.t === 'signal') { try { process.kill(g.pid, Number(m.sig)) } catch (e) { log('signal %d to %d: %s', m.sig, g.pid, (e as Error).message) } } else if (m.t === 'kill') { try { process.kill(g.pid, 'SIGKILL') } catch {} } else if (m.t === 'stdin-end') { g.stdinEnded = true; g.wanting = false; g.r.stdin?.end() }
    else if (m.t === 'gohome') await this.sendHome(g, true)
    else if (m.t === 'sendto') await this.sendTo(g, m)
    else if (m.t === 'hint' && (DECAY_HINTS as readonly string[]).includes(String(m.hint))) applyHint(g.decay, m.hint as DecayHint)
    else if (m.t === 'move-failed') { g.moveAsked = Date.now(); log('home did not move guest %d: %s', g.pid, String(m.reason)) }
  }

  /**
   * Has the process read the stdin last handed to it? A blocked read takes all of it as soon as it
   * wakes; a poll-style wait has read it all only once it blocks on stdin again (src/migrate/stdin.ts).
   */
  private consumed (g: Guest): boolean {
    const d = g.delivered
    if (d === null) return true
    const line = syscallLine(g.pid)
    if (line === '') return true // gone
    const woke = ctxtSwitches(g.pid) !== d.switches
    const done = d.kind === 'read' ? woke || line !== d.line : woke && stdinWait(g.pid, line) !== null
    if (done) g.delivered = null
    return done
  }

  /**
   * Pull-mode stdin: every few ms, if the guest is blocked waiting for stdin (a read, or a
   * poll/select/epoll watching fd 0) and has read what it was handed before, ask home for what
   * that wait may take; nothing it has not asked for waits in its pipe when it moves on.
   */
  private pullStdin (g: Guest): void {
    const t = setInterval(() => {
      if (this.guests.get(g.pid) !== g || g.stdinEnded) { clearInterval(t); return }
      if (g.wanting || g.leaving || !this.consumed(g)) return
      const line = syscallLine(g.pid)
      const w = stdinWait(g.pid, line)
      if (w === null) return
      g.wanting = true
      g.wantLine = line
      g.wantKind = w.kind
      void g.conn.send({ t: 'want', n: w.n }).catch(() => {})
    }, 5)
    t.unref()
  }

  /**
   * Stdin handed over must be read before the process stops, or it would be lost in the pipe: waits
   * up to a second for that. If it is still unread, the move is refused: the guest stays (home is
   * told why) and this returns false. Home hands out no stdin during a move (it said so before it
   * asked, or answered `leaving`), so a want still open gets nothing more: it is dropped, and asked
   * again if the process stays.
   */
  private async settleStdin (g: Guest): Promise<boolean> {
    let ok = this.consumed(g)
    for (let i = 0; i < 200 && !ok; i++) {
      await new Promise(resolve => setTimeout(resolve, 5))
      ok = this.consumed(g)
    }
    g.wanting = false
    if (ok) return true
    g.leaving = false
    await g.conn.send({ t: 'stay', reason: UNREAD_STDIN }).catch(() => {})
    return false
  }

  /** Stops the guest, drains its output, and streams its image home (gohome from home, or expel here). */
  async sendHome (g: Guest, byHome = false): Promise<void> {
    if (g.leaving) return
    g.leaving = true
    if (!byHome) {
      // expel: home must stop handing out stdin first (it answers at once; an old home may not)
      const ok = g.conn.expect('leaving-ok').then(() => true, () => false)
      await g.conn.send({ t: 'leaving' }).catch(() => {})
      await Promise.race([ok, new Promise(resolve => setTimeout(resolve, 2000))])
    }
    if (!await this.settleStdin(g)) return
    const chunks: Buffer[] = []
    try {
      await ppm.dump(g.pid, new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb() } }))
    } catch (e) {
      g.leaving = false
      await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
      return
    }
    await g.outputDone
    await this.imageHome(g, chunks)
  }

  /** Sends a stopped guest's image home; if home cannot take it, runs it here again rather than lose it. */
  private async imageHome (g: Guest, chunks: Buffer[]): Promise<void> {
    await g.conn.send({ t: 'image-start' })
    for (const c of chunks) await g.conn.frame('I', c)
    await g.conn.send({ t: 'image-end' })
    const m = await g.conn.expect('home-ok', 'home-failed').catch(e => ({ t: 'home-failed', reason: (e as Error).message } as Msg))
    if (m.t === 'home-ok') { this.guests.delete(g.pid); g.conn.close(); return }
    log('home refused guest %d back (%s): restoring it here', g.pid, m.reason)
    this.guests.delete(g.pid)
    try { const r = await ppm.restore(Readable.from(chunks), { stdio: ['ignore', 'ignore', 'ignore'] }); log('guest restored here as %d', r.pid) } catch (e) { log('guest lost: %s', (e as Error).message) }
  }

  /**
   * N -> M, on N: stops the guest and streams its image straight to node M (home named it and
   * gave M the ticket), keeping a copy until home says M runs it. A dump that fails leaves the
   * process running here. If M cannot run it, home says `resume` and it runs here again.
   */
  private async sendTo (g: Guest, m: Msg): Promise<void> {
    if (g.leaving) return
    g.leaving = true
    if (!await this.settleStdin(g)) return
    const chunks: Buffer[] = []
    let bytes = 0
    let out: Conn | undefined
    try {
      const a = this.cluster.addressOf(Number(m.node))
      if (!a) throw new Error(`no address for node ${String(m.node)}`)
      out = await Conn.client(a.host, a.port, this.keys)
      await out.send({ t: 'image', ticket: String(m.ticket) })
      const sink = out.imageWriter()
      const tee = new Writable({
        write: (c: Buffer, _e, cb) => { chunks.push(c); bytes += c.length; sink.write(c, cb) },
        final: cb => { sink.end(cb) }
      })
      await ppm.dump(g.pid, tee, typeof m.hostinfo === 'string' && m.hostinfo !== '' ? { target: m.hostinfo } : {})
    } catch (e) {
      out?.close()
      g.leaving = false
      log('guest %d stays: %s', g.pid, (e as Error).message)
      await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
      return
    }
    out.close()
    await g.outputDone
    await g.conn.send({ t: 'sent', bytes }).catch(() => {})
    const r = await g.conn.expect('home-ok', 'resume').catch(() => undefined)
    if (r?.t !== 'resume') { this.guests.delete(g.pid); g.detach(); g.conn.close(); return }
    // M could not run it: it runs here again, still a guest on the same connection
    this.guests.delete(g.pid)
    g.detach()
    try {
      const again = await ppm.restore(Readable.from(chunks), { stdio: ['pipe', 'pipe', 'pipe'], clock: 'auto' })
      Object.assign(this.startGuest(g.conn, again, g.home, g.homePid, g.stdinMode, g.age + (Date.now() - g.since) / 1000).decay, g.decay)
      await g.conn.send({ t: 'resumed', pid: again.pid })
      log('guest %d runs here again as %d', g.pid, again.pid)
    } catch (e) {
      log('guest %d cannot run here again (%s): sending it home', g.pid, (e as Error).message)
      g.leaving = true
      this.guests.set(g.pid, g)
      await this.imageHome(g, chunks)
    }
  }

  /** This node's balancer found a cheaper node for a guest: its home moves it (or says why not). */
  askHomeToMove (g: Guest, target: number, why: string): void {
    g.moveAsked = Date.now()
    void g.conn.send({ t: 'move-request', node: target, why }).catch(() => {})
  }

  /** Sends every guest home (admin/expel); resolves when none is left. */
  async expelAll (): Promise<void> {
    await Promise.all([...this.guests.values()].map(g => this.sendHome(g).catch(e => log('expel %d: %s', g.pid, (e as Error).message))))
  }
}

/** Why a guest does not move now: stdin it was handed is still in its pipe. */
const UNREAD_STDIN = 'it has not read the stdin it was given yet (try again later)'

/** How long an accepted N -> M move waits for its image to start coming from N. */
const TICKET_MS = 30_000

/** Transfers smaller than this measure latency, not bandwidth: not recorded. */
const MIN_MEASURED_BYTES = 1 << 20

/** Memory a node keeps free for itself when it takes guests. */
export const MEMORY_RESERVE = 64 * 2 ** 20

/** MemAvailable of this host, in bytes. */
function availableBytes (): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
  return m ? Number(m[1]) * 1024 : Number.MAX_SAFE_INTEGER
}

function comm (pid: number): string {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '?' }
}

/**
 * Opens the output end of a relayed descriptor. Pipes become non-blocking libuv streams
 * (net.Socket), so that a slow reader blocks no thread-pool thread; terminals use fs streams.
 */
function openRelay (path: string): Writable {
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
  if (fstatSync(fd).isFIFO()) return new Socket({ fd, readable: false, writable: true })
  return createWriteStream('', { fd })
}

/**
 * What a standard descriptor of a process is: unnamed pipes, sockets and terminals are relayed by
 * the deputy; regular files and named FIFOs travel in the image by path (the cluster shares a file
 * namespace), and so does anything else.
 */
function stdioKind (pid: number, fd: number): 'pipe' | 'socket' | 'tty' | 'path' | 'closed' {
  let link: string
  try { link = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return 'closed' }
  if (link.startsWith('pipe:')) return 'pipe'
  if (link.startsWith('socket:')) return 'socket'
  if (/^\/dev\/(pts\/|tty|console)/.test(link)) return 'tty'
  return 'path'
}
