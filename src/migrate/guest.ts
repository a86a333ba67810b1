// The guest side of migration: processes running on this node whose home is another node.
// A guest arrives by an offer from its home (receive: migrate, accept or refuse, the image,
// running or failed), or, during N -> M, by an offer naming a ticket whose image comes from the
// node it ran on. Running here, its output goes home (O, E frames; W for its relayed fds above 2),
// its stdin and relayed input are pulled from
// home (relay.ts), and home's messages (signal, kill, hint, gohome, sendto) act on it. It leaves
// when home asks (gohome: sendHome; sendto: sendTo) or when this node expels it (sendHome with
// `leaving` first).
// A guest outlives this daemon: it runs under its keeper (src/ppm/keeper.ts) and its record is on
// disk (state.ts); a daemon started again adopts it (readopt). A guest whose connection to its home
// breaks, or that was adopted so, rejoins its home on a new connection (rejoin); home says whether
// it still has it here. One out of touch with its home for the guest lease is killed. What this
// node still has of a process whose connection broke while it was leaving (the process, or the copy
// of its image, restored held) rejoins too: home decides, so there is never a second copy.
import { createReadStream, existsSync, fstatSync, rmSync } from 'node:fs'
import { Readable } from 'node:stream'
import debug from '../util/log.js'
import type { Cluster, Dial } from './cluster.js'
import type { Engine, FrozenGuest, GuestProcess, RawSink, RawSource } from './engine.js'
import type { ExitStatus } from '../ppm/ppm.js'
import { familyFailed, superviseFamily } from './family.js'
import { applyHint, defaultHints, type DecayHints } from './hints.js'
import { Link } from './link.js'
import type { Message, MigrateMsg, RejoinMsg, SendToMsg } from './protocol.js'
import { GuestRelays, StdinPull, parseFdFrame, pipeEmpty, watchCloses } from './relay.js'
import { GuestOutput, outFrame, type Counts } from './ack.js'
import { IDLE_CONNECTIONS_PER_PEER, OUTPUT_DRAIN_MS, OUTPUT_KEEP_BYTES, RECORD_SPACE } from '../config.js'
import { spaceRefusal } from './space.js'
import { GuestStates, type GuestRecord } from './state.js'
import { poll } from '../util/poll.js'
import { ImageCopy, ImageIn, TICKET_MS, Tickets, memoryRefusal, rawSink, rawSource, replay, sendImage, tee } from './transfer.js'
import { trace } from '../util/trace.js'
import { monotonicMs } from '../util/clock.js'

const log = debug('hpcfs:guest')

/** Why a guest does not move now: stdin it was handed is still in its pipe. */
export const UNREAD_STDIN = 'it has not read the stdin it was given yet (try again later)'

/** Bytes in a copy's file (written by an engine helper, not through the stream). */
function statSize (copy: ImageCopy): number { try { return fstatSync(copy.descriptor).size } catch { return 0 } }

/** The path of the pipe a reader reads (this daemon's descriptor of it, a net.Socket's), or null. */
function pipePath (s: Readable | null): string | null {
  const fd = (s as unknown as { _handle?: { fd?: unknown } } | null)?._handle?.fd
  return typeof fd === 'number' && fd >= 0 ? `/proc/${process.pid}/fd/${fd}` : null
}

/**
 * Can a guest leaving be kept frozen as its copy? Not with a relayed socket (relay.c): what it wrote
 * into one passes through the keeper's pump, whose buffer no drain can see; its dump writes the copy
 * beside the stream and removes it, as before (its output then ends).
 */
function canFreeze (g: GuestProcess): boolean {
  return (g.relays ?? []).every(r => r.read === null || r.write === null)
}

/** The connection of a guest adopted after a restart, before it has rejoined its home: none. */
class Unlinked extends Link {
  constructor () { super('nowhere'); this.closed = true }
  frame (): Promise<void> { return Promise.reject(new Error('not connected to its home')) }
  close (): void {}
  pause (): void {}
  resume (): void {}
}

/** A process running here whose home is another node. */
export class Guest {
  leaving = false
  /** restored but stopped until home commits the move (`run`) */
  held = false
  /** how it ended, once it has */
  ended: ExitStatus | null = null
  /** resolves once it runs untraced after `run` (a move waits for it: a traced process cannot be dumped) */
  released: Promise<void> = Promise.resolve()
  /** pull-mode stdin (relay.ts) */
  readonly pull: StdinPull
  /** its relayed descriptors above 2 (relay.ts) */
  readonly relays: GuestRelays
  outputDone: Promise<void>
  /** When this node last asked home to move it on, or home last said no (monotonicMs; 0: never); the balancer waits 30 s after either. */
  moveAsked = 0
  /** Its relayed fds whose close home has been told of (an output's end and its input's check both see a socket's). */
  readonly closedFds = new Set<number>()
  /** Its decay hints, as home holds them (they travel with every move). */
  readonly decay: DecayHints = defaultHints()
  /** Removes its listeners from conn (when it leaves, or runs again here under another pid). */
  detach: () => void = () => {}
  /** Since when it is out of touch with its home (monotonicMs; 0: it is not) */
  orphaned = 0
  /** bytes of each input fd (0: stdin, relayed fds above 2) written into its pipes here (ack.ts InLog: told with each want) */
  inGot = new Map<number, number>()
  /** its output, kept until home acknowledges it (ack.ts; set by startGuest) */
  out: GuestOutput = new GuestOutput(OUTPUT_KEEP_BYTES)
  /** called with true when it is in touch with home again, false when it is given up */
  reached: Array<(ok: boolean) => void> = []
  /**
   * `conn`: its session with home (replaced when it rejoins). `since`: arrival here (ms); `age`:
   * seconds it had run when it arrived (its start at home, which its restored copy here does not show).
   */
  constructor (readonly pid: number, readonly home: number, readonly homePid: number, public conn: Link, readonly r: GuestProcess, readonly since: number,
    readonly stdinMode: 'pull' | 'none' = 'none', readonly age = 0) {
    this.pull = new StdinPull(pid)
    this.relays = new GuestRelays(pid, r)
    const ends = [r.stdout, r.stderr].filter((s): s is Readable => s !== null).map(s => new Promise<void>(resolve => { s.once('end', resolve); s.once('close', resolve) }))
    this.outputDone = Promise.all([...ends, this.relays.done]).then(() => {})
  }
}

export interface GuestDeps {
  cluster: Cluster
  engine: Engine
  dial: Dial
  /** this host's compatibility record (sent with accept) */
  hostInfo: () => Promise<string>
}

export class GuestSide {
  readonly guests = new Map<number, Guest>()
  /** Where the guests' records go (Migrator sets this node's; none in unit tests). */
  states = new GuestStates(null)
  /** A guest out of touch with its home this long is killed; its keeper does the same without a daemon (config guestLease). */
  leaseMs = 30_000
  /** How often a guest out of touch tries to rejoin its home (ms). */
  rejoinEveryMs = 1000
  /** A connection whose first message is `rejoin` (a node coming back to this node as home): the Migrator hands it to home. */
  rejoined: (conn: Link, m: RejoinMsg) => void = conn => { void conn.send({ t: 'refuse', reason: 'no home side here' }).catch(() => {}); conn.close() }
  /** N -> M on M: accepted moves whose image comes over another connection. */
  private readonly tickets = new Tickets()
  /** Connections that have not said what they are for yet (spares dialled ahead by other nodes): closed with this side. */
  private readonly unused = new Set<Link>()
  /**
   * Fault injection for tests (hpcd --test-fault): 'restore' makes every restore here fail, the
   * 1st, 3rd, ... early in the image (the sender's dump fails too), the 2nd, 4th, ... once all of
   * it has arrived (the sender has finished and removed its process). 'crash-frozen': this daemon
   * kills itself (SIGKILL) as soon as a guest kept frozen as its copy has left (`sent` or
   * `image-end` said), the window in which its dump's helper must write the copy for the next one.
   */
  testFault = ''
  private restores = 0
  /** How long an expelled guest waits for home's leaving-ok (ms). */
  leavingWaitMs = 2000

  constructor (private readonly d: GuestDeps) {}

  /** A new connection to the transfer port: its first message says what it is for. */
  accept (conn: Link): void {
    // spares dialled ahead wait here unused: a few per peer host, the oldest closed beyond that
    const host = (l: Link): string => l.peer.slice(0, l.peer.lastIndexOf(':'))
    const same = [...this.unused].filter(c => host(c) === host(conn))
    for (const old of same.slice(0, Math.max(0, same.length - IDLE_CONNECTIONS_PER_PEER + 1))) { log('%s: an unused connection closed (a newer one came)', old.peer); old.abort(); this.unused.delete(old) }
    this.unused.add(conn)
    conn.once('close', () => this.unused.delete(conn))
    const first = (m: Message): void => {
      if (m.t === 'ping') return // a connection dialled ahead (dialer.ts) waits for its first use
      conn.off('msg', first)
      this.unused.delete(conn)
      if (m.t === 'migrate') void this.receive(conn, m).catch(e => log('receive: %s', (e as Error).message))
      else if (m.t === 'rejoin') this.rejoined(conn, m)
      else if (m.t === 'image' && this.tickets.claim(m.ticket, conn, m.raw === true)) { /* N -> M: the image for an accepted move */ } else { void conn.send({ t: 'error', reason: `unexpected ${m.t}` }).catch(() => {}); conn.close() }
    }
    conn.on('msg', first)
  }

  /** An offer from a home: refused, or accepted, restored and started as a guest. */
  private async receive (conn: Link, m: MigrateMsg): Promise<void> {
    const { cluster, engine } = this.d
    const home = m.home
    const refuse = async (reason: string): Promise<void> => { await conn.send({ t: 'refuse', reason }); conn.close() }
    trace('n:migrate')
    if (cluster.blocked) { await refuse('this node is blocked (admin/block)'); return }
    if (!cluster.addressOf(home)) { await refuse(`unknown home node ${home}`); return }
    const short = memoryRefusal(m.bytes, engine.availableBytes()) ?? spaceRefusal(this.states.dir, RECORD_SPACE)
    if (short !== null) { await refuse(short); return }
    const hostinfo = await this.d.hostInfo().catch(() => '')
    const fault = this.testFault === 'restore' ? (this.restores++ % 2 === 0 ? 'early' : 'end') : ''
    const img = new ImageIn(fault)
    const ticket = m.ticket
    // raw: the image comes unframed on the connection, straight into the engine (docs/migrate.md)
    let unhold: (() => void) | null = null
    if (ticket === undefined && m.raw === true && conn.rawFd() !== null) {
      try { unhold = conn.holdIn() } catch (e) { log('raw image from node %d: %s', home, (e as Error).message) }
    }
    let from: Promise<{ c: Link, raw: boolean }> | null = null
    if (ticket !== undefined) {
      // N -> M: the image comes from the node the process runs on now
      from = new Promise((resolve, reject) => {
        const stop = this.tickets.wait(ticket, TICKET_MS, (c, raw) => resolve({ c, raw }), () => reject(new Error('the image did not come')))
        const onHomeClose = (): void => { stop(); reject(new Error('home closed the connection')) }
        conn.once('close', onHomeClose)
        img.onDone(() => { stop(); conn.off('close', onHomeClose) })
      })
      from.catch(() => {})
    } else if (unhold === null) {
      img.feed(conn)
    }
    await conn.send({ t: 'accept', hostinfo, ...(unhold !== null ? { raw: true } : {}) })
    trace('n:accepted')
    let r: GuestProcess
    const t0 = monotonicMs()
    let raw = unhold !== null
    try {
      let src: Readable | RawSource = img.image
      if (from !== null) {
        const { c, raw: offered } = await from
        img.onDone(() => c.close())
        if (offered && c.rawFd() !== null) {
          unhold = c.holdIn()
          raw = true
          await c.send({ t: 'accept', hostinfo: '', raw: true })
        } else {
          img.feed(c)
          if (offered) await c.send({ t: 'accept', hostinfo: '' }) // framed after all
        }
        if (raw) src = rawSource(c, fault || undefined) as RawSource
      } else if (raw) src = rawSource(conn, fault || undefined) as RawSource
      // pidNow: on N -> M the image's pid may still be held by N's copy, frozen while it streams
      // (nodes sharing one pid space, as in the lab): no waiting for it, the restore overlaps the stream;
      // pidHint: the pid the offer said, for its pid namespace and stub made while the image comes
      r = await engine.restore(src, { hold: true, family: true, leaseMs: this.leaseMs, ...(raw ? { pidNow: true } : {}), pidHint: m.pid })
    } catch (e) {
      unhold?.()
      img.done()
      log('restore from node %d failed: %s', home, (e as Error).message)
      await conn.send({ t: 'failed', reason: (e as Error).message }).catch(() => {})
      conn.close()
      return
    }
    trace('n:restored')
    unhold?.()
    if (conn.closed) {
      // home went away while the image came: nobody can commit the move
      img.done()
      try { engine.kill(r.pid, 'SIGKILL') } catch {}
      r.release()
      log('home node %d closed the connection during the restore: removed', home)
      return
    }
    if (raw) { img.received = Number(r.stats?.image_bytes ?? m.bytes); img.first = t0; img.ended = monotonicMs() }
    img.done()
    const age = m.age ?? 0
    const g = this.newGuest(conn, r, home, m.pid, m.stdin === 'pull' ? 'pull' : 'none', Number.isFinite(age) ? age : 0)
    g.held = true // until home has heard `running` and says `run` (or, if the connection breaks first, until home says it has it here)
    if (m.decay === 'fast') g.decay.rate = 'fast'
    if (m.kind === 'cpujob' || m.kind === 'iojob') g.decay.kind = m.kind
    if (m.perMille !== undefined) g.decay.perMille = m.perMille
    if (m.interval !== undefined) g.decay.interval = m.interval
    // its record first (a daemon started again finds it, held), then `running`, then its output,
    // stdin and session are wired while the answer is on its way: all in this one turn of the
    // event loop, so no message of home's (`run`, a signal) can come before the wiring, and the
    // process, held stopped, writes nothing before `run`
    this.save(g)
    trace('n:saved')
    const sent = conn.send({ t: 'running', pid: r.pid, bytes: img.received, ms: img.ms() })
    this.wireGuest(g)
    trace('n:guest')
    await sent
    log('guest %d from node %d (its pid %d) runs here', r.pid, home, g.homePid)
  }

  /**
   * A restored process becomes a guest: its output, stdin, signals and end go over its connection
   * to home. `out`: the output of the process it ran as before on this node (it runs again from its
   * copy), whose numbering it goes on with; a fresh one otherwise.
   */
  private startGuest (conn: Link, r: GuestProcess, home: number, homePid: number, stdin: 'pull' | 'none', age: number, since = Date.now(), out?: GuestOutput, inGot?: Map<number, number>): Guest {
    const g = this.newGuest(conn, r, home, homePid, stdin, age, since, out, inGot)
    this.wireGuest(g)
    return g
  }

  /** startGuest's first half: the guest is known here (and can be saved), nothing wired yet. */
  private newGuest (conn: Link, r: GuestProcess, home: number, homePid: number, stdin: 'pull' | 'none', age: number, since = Date.now(), out?: GuestOutput, inGot?: Map<number, number>): Guest {
    const g = new Guest(r.pid, home, homePid, conn, r, since, stdin, age)
    this.guests.set(r.pid, g)
    if (out !== undefined) g.out = out
    if (inGot !== undefined) g.inGot = inGot
    return g
  }

  /** startGuest's second half: its output, stdin, relays, family calls, end and session wired. */
  private wireGuest (g: Guest): void {
    const { r, conn, stdinMode: stdin } = g
    // what it writes is on disk until home has it, for the next daemon should this one die (readopt)
    g.out.persist(this.states.spillPath(r.pid))
    // what it writes is kept until home has it; out of touch with home, the rest waits in its pipes
    const sources: Array<[number, Readable]> = [[1, r.stdout], [2, r.stderr]].filter((x): x is [number, Readable] => x[1] !== null)
    g.out.attach([...sources, ...g.relays.readers])
    if (conn.closed) g.out.disconnect(); else g.out.connect(conn)
    watchCloses(r.pid, [[1, r.stdout], [2, r.stderr], ...g.relays.readers], (fd, how) => { void this.closedHere(g, fd, how) })
    r.stdin?.on('error', () => {})
    this.bindConn(g, conn)
    superviseFamily(g, r, () => this.guests.get(g.pid) === g)
    if (stdin === 'pull') g.pull.start(() => this.guests.get(g.pid) === g, () => g.leaving || g.conn.closed, n => { void g.conn.send({ t: 'want', n, got: g.inGot.get(0) ?? 0 }).catch(() => {}) }, () => { void this.closedHere(g, 0, 'close') })
    for (const [fd, p] of g.relays.pulls) p.start(() => this.guests.get(g.pid) === g, () => g.leaving || g.conn.closed, n => { void g.conn.send({ t: 'want', n, fd, got: g.inGot.get(fd) ?? 0 }).catch(() => {}) }, () => { void this.closedHere(g, fd, 'close') })
    void r.exited.then(st => {
      g.ended = st
      if (!g.leaving) void this.reportEnd(g, st) // (while it leaves: ended by its dump, or reported if it stays after all)
    })
  }

  /** The guest closed a relayed output here (or shut a socket down for writing): home does the same, after what it wrote. */
  private async closedHere (g: Guest, fd: number, how: 'close' | 'shutdown'): Promise<void> {
    if (how === 'close') {
      if (g.closedFds.has(fd)) return
      g.closedFds.add(fd)
    }
    if (!await this.inTouch(g) || this.guests.get(g.pid) !== g) return
    log('guest %d: fd %d: %s', g.pid, fd, how)
    await g.conn.send({ t: 'closed', fd, how }).catch(() => {})
  }

  /**
   * Home found output fd broken (its reader there is gone): the daemon's reader of it and the
   * keeper's are let go, so that the process's next write fails with EPIPE as at home (a socket:
   * the pump shuts its end down for reading). What it wrote meanwhile is dropped.
   */
  private brokenHere (g: Guest, fd: number): void {
    const s = fd === 1 ? g.r.stdout : fd === 2 ? g.r.stderr : g.relays.readers.find(([f]) => f === fd)?.[1]
    if (s === undefined || s === null || s.destroyed) return
    log('guest %d: fd %d broken at home', g.pid, fd)
    s.destroy()
    g.r.breakRelay?.(fd)
  }

  /** The guest ended here: once its output is out and home can be told (it may have to rejoin first), home hears how. */
  private async reportEnd (g: Guest, st: ExitStatus): Promise<void> {
    await g.outputDone
    if (this.guests.get(g.pid) !== g || !await this.inTouch(g)) return
    this.forget(g)
    await g.conn.send({ t: 'exit', code: st.code, signal: st.signal }).catch(() => {})
    g.r.release()
    g.conn.close()
  }

  /** conn becomes the guest's session with home: stdin, messages, and what happens when it breaks. */
  private bindConn (g: Guest, conn: Link): void {
    const onData = (type: string, d: Buffer): void => {
      if (type === 'R') {
        const f = parseFdFrame(d)
        if (f !== null) g.relays.input(f[0], f[1], () => { this.gotInput(g, f[0], f[1].length) })
        return
      }
      if (type !== 'N') return
      g.pull.handed()
      g.r.stdin?.write(d, e => { if (e == null) this.gotInput(g, 0, d.length) })
    }
    const onMsg = (x: Message): void => { this.onGuestMsg(g, x).catch(e => log('guest %d: %s: %s', g.pid, x.t, (e as Error).message)) }
    const onClose = (): void => {
      if (this.guests.get(g.pid) !== g || g.leaving) return
      this.orphan(g)
    }
    conn.on('data', onData)
    conn.on('msg', onMsg)
    conn.on('close', onClose)
    g.detach = () => { conn.off('data', onData); conn.off('msg', onMsg); conn.off('close', onClose) }
    // (a connection that closed before it was bound, while a copy was restored to run again, say:
    // its close has been and gone, and the guest is out of touch from the start)
    if (conn.closed) onClose()
  }

  /** n bytes of input fd are in the guest's pipe: counted, and recorded (a daemon started again tells home). */
  private gotInput (g: Guest, fd: number, n: number): void {
    g.inGot.set(fd, (g.inGot.get(fd) ?? 0) + n)
    this.save(g)
  }

  /** The guest's record on disk, so that it survives a restart of this daemon. */
  private save (g: Guest, leaving = g.leaving): void {
    if (this.guests.get(g.pid) !== g) return
    this.states.save({ pid: g.pid, home: g.home, homePid: g.homePid, stdin: g.stdinMode, age: g.age, since: g.since, decay: { rate: g.decay.rate, kind: g.decay.kind, perMille: g.decay.perMille, interval: g.decay.interval }, keeper: g.r.keeper, held: g.held, leaving, inGot: [...g.inGot.entries()] })
  }

  /** This node no longer has the guest (it ended, left, or was killed). */
  private forget (g: Guest): void {
    this.drop(g)
    this.unrecord(g)
  }

  /** forget's first half: the guest is no longer this daemon's (its record stays on disk). */
  private drop (g: Guest): void {
    if (this.guests.get(g.pid) === g) this.guests.delete(g.pid)
    g.detach()
    for (const w of g.reached.splice(0)) w(false)
  }

  /** forget's second half: its record and output spill file are removed. */
  private unrecord (g: Guest): void {
    g.out.unpersist(false)
    this.states.remove(g.pid)
  }

  /** Resolves true once the guest is in touch with its home (at once if it is), false if it is given up. */
  private async inTouch (g: Guest): Promise<boolean> {
    if (!g.conn.closed) return true
    return await new Promise(resolve => g.reached.push(resolve))
  }

  /**
   * The guest is out of touch with its home (its connection broke, or it was adopted after a
   * restart): it tries to rejoin its home every second; after the guest lease it is killed. Home
   * refusing it (it has the process elsewhere, or gave it up) kills it at once.
   */
  private orphan (g: Guest): void {
    if (g.orphaned !== 0) return
    g.orphaned = monotonicMs()
    g.pull.wanting = false // a want on the old connection is void: it is asked again once rejoined
    g.relays.drop()
    g.out.disconnect()
    log('guest %d is out of touch with its home (node %d): rejoining for up to %d ms', g.pid, g.home, this.leaseMs)
    void this.rejoin(g)
  }

  private async rejoin (g: Guest): Promise<void> {
    while (this.guests.get(g.pid) === g && g.conn.closed) {
      if (monotonicMs() - g.orphaned > this.leaseMs) { this.giveUp(g, `its home (node ${g.home}) could not be reached for ${Math.round(this.leaseMs / 1000)} s`); return }
      let conn: Link | null = null
      try {
        conn = await this.d.dial(g.home)
        const answer = conn.expect('rejoin-ok', 'refuse')
        await conn.send({ t: 'rejoin', home: g.home, pid: g.homePid, guest: g.pid, node: this.d.cluster.id })
        let timer: NodeJS.Timeout | undefined
        const left = Math.max(0, g.orphaned + this.leaseMs - monotonicMs())
        const m = await Promise.race([answer, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('no answer')), left) })]).finally(() => clearTimeout(timer))
        if (m.t === 'refuse') {
          // (it runs elsewhere now: what home lacks of its output here goes first)
          if (m.got !== undefined) await Promise.all(g.out.log.rejoined(m.got).map(async ([fd, d]) => { const [t, p] = outFrame(fd, d); await (conn as Link).frame(t, p).catch(() => {}) }))
          conn.close()
          this.giveUp(g, `its home refused it: ${m.reason}`)
          return
        }
        if (this.guests.get(g.pid) !== g) { conn.close(); return }
        this.rebind(g, conn, m.got ?? [])
        return
      } catch (e) {
        conn?.close()
        log('guest %d: rejoining node %d: %s', g.pid, g.home, (e as Error).message)
      }
      await new Promise(resolve => setTimeout(resolve, this.rejoinEveryMs).unref())
    }
  }

  /**
   * The guest is in touch with its home again over conn: what home lacks of its output (home has
   * `got` of it) goes first, then the rest as it comes.
   */
  private rebind (g: Guest, conn: Link, got: Counts): void {
    g.detach()
    g.conn = conn
    g.orphaned = 0
    this.bindConn(g, conn)
    g.out.connect(conn, got)
    if (g.held) { g.held = false; g.released = g.r.go() } // home has it here: the move that brought it is committed
    this.save(g)
    log('guest %d rejoined its home (node %d)', g.pid, g.home)
    for (const w of g.reached.splice(0)) w(true)
  }

  /** The guest cannot stay (its home gave it up, or cannot be reached): it is killed and forgotten. */
  private giveUp (g: Guest, why: string): void {
    log('guest %d killed: %s', g.pid, why)
    try { this.d.engine.kill(g.pid, 'SIGKILL') } catch {}
    this.forget(g)
    g.r.release()
    g.relays.release()
  }

  /** A guest that could not leave after all: it runs on here (or, out of touch with home, rejoins it). */
  private stays (g: Guest): void {
    g.leaving = false
    this.save(g)
    // out of touch: it rejoins first (also one that ended meanwhile: its end waits for that)
    if (g.conn.closed && this.guests.get(g.pid) === g) this.orphan(g)
    if (g.ended !== null) void this.reportEnd(g, g.ended)
  }

  /**
   * A daemon started again: adopts the guests whose records the last one left (their keepers kept
   * them running), and each rejoins its home. A guest found dead by SIGKILL while leaving was
   * dumped away: its home has it (or reports it lost).
   */
  async readopt (): Promise<void> {
    const held: Array<Promise<void>> = []
    for (const rec of this.states.load()) {
      if (this.guests.has(rec.pid)) continue
      let r: GuestProcess | null = null
      try { r = this.d.engine.adopt(rec.keeper) } catch (e) {
        log('guest %d of node %d: %s', rec.pid, rec.home, (e as Error).message)
      }
      if (r !== null && rec.leaving && r.alive() && r.frozen?.() === true) {
        // kept frozen as its copy by the helper of its dump (docs/migrate.md "Raw images"): that
        // helper, its daemon gone, writes the copy, then removes it; waited for (attached, so
        // that its keeper's lease does not end it meanwhile) while the others are taken up
        log('guest %d of node %d is held by the dump that kept it frozen: waiting for its copy', rec.pid, rec.home)
        const frozen = r
        held.push(poll('its copy', () => !frozen.alive() || frozen.frozen?.() !== true, { timeoutMs: Infinity, everyMs: 20 }).then(async () => await this.readoptOne(rec, frozen)))
        continue
      }
      await this.readoptOne(rec, r)
    }
    await Promise.all(held)
  }

  /** readopt of one guest's record, its keeper attached (r; null: gone) */
  private async readoptOne (rec: GuestRecord, adopted: GuestProcess | null): Promise<void> {
    let r = adopted
    // what the last daemon read of its output and home had not acknowledged is in the spill
    // file (GuestOutput.persist): it goes home first, from home's count
    const out = GuestOutput.resume(this.states.spillPath(rec.pid), OUTPUT_KEEP_BYTES)
    let copied = false // restored (held) from the copy it left to leave
    if (r === null || (rec.leaving && !r.alive())) {
      // (its keeper says how it ended to whoever attaches; bounded all the same)
      const st = r === null ? null : await Promise.race([r.exited, new Promise<null>(resolve => setTimeout(() => resolve(null), 3000).unref())])
      if (r === null || st === null || st.signal === 9) {
        // gone, or it was dumped to leave: where it went may not have it; its copy (if it left
        // one) is restored held and rejoins home, which keeps the one it has; what it wrote before
        // its dump and is still in its pipes goes home first
        if (r !== null) await this.drainKept(r, out)
        r?.release()
        this.states.remove(rec.pid)
        r = rec.leaving ? await this.fromCopy(rec) : null
        if (r === null) { const img = this.states.imagePath(rec.pid); if (img !== null) rmSync(img, { force: true }); return }
        copied = true
      }
    }
    if (!copied) { const img = this.states.imagePath(rec.pid); if (img !== null) rmSync(img, { force: true }) } // (a dump that failed)
    // (its input count holds for a copy too: it had read all it was handed before its dump)
    const g = this.startGuest(new Unlinked(), r, rec.home, rec.homePid, rec.stdin, rec.age, rec.since, out, new Map(rec.inGot ?? []))
    // a copy runs only once home says it has it here (it may keep the pid it had: the restore
    // keeps it when it is free)
    g.held = rec.held || copied
    g.decay.rate = rec.decay.rate
    g.decay.kind = rec.decay.kind
    if (rec.decay.perMille !== undefined) g.decay.perMille = rec.decay.perMille
    if (rec.decay.interval !== undefined) g.decay.interval = rec.decay.interval
    this.save(g, false)
    log('adopted guest %d of node %d (its pid %d) after a restart', g.pid, g.home, g.homePid)
    this.orphan(g)
  }

  /** Reads what an ended guest (adopted) left in its pipes, its relayed fds' too, into out. */
  private async drainKept (r: GuestProcess, out: GuestOutput): Promise<void> {
    const relays = new GuestRelays(r.pid, r)
    const sources: Array<[number, Readable]> = [[1, r.stdout], [2, r.stderr]].filter((x): x is [number, Readable] => x[1] !== null)
    out.attach([...sources, ...relays.readers])
    const ends = sources.map(([, s]) => new Promise<void>(resolve => { s.once('end', resolve); s.once('close', resolve) }))
    await out.drain(Promise.all([...ends, relays.done]).then(() => {}), OUTPUT_DRAIN_MS)
    relays.close()
  }

  /** The copy a guest dumped to leave left behind, restored held (null: none, or it cannot run). */
  private async fromCopy (rec: GuestRecord): Promise<GuestProcess | null> {
    const path = this.states.imagePath(rec.pid)
    if (path === null || !existsSync(path)) { log('guest %d of node %d was dumped to leave before the restart: no copy', rec.pid, rec.home); return null }
    try {
      const r = await this.d.engine.restore(createReadStream(path), { hold: true, family: true, leaseMs: this.leaseMs })
      log('guest %d of node %d was dumped to leave before the restart: its copy runs held as %d', rec.pid, rec.home, r.pid)
      return r
    } catch (e) {
      log('guest %d of node %d: its copy cannot run: %s', rec.pid, rec.home, (e as Error).message)
      return null
    } finally { rmSync(path, { force: true }) }
  }

  /** A message from the guest's home. */
  private async onGuestMsg (g: Guest, m: Message): Promise<void> {
    const { engine } = this.d
    switch (m.t) {
      case 'signal':
        if (m.code !== undefined && g.r.sigqueue !== undefined) {
          // with the siginfo it was sent with at home (its value), through its keeper
          g.r.sigqueue(m.sig, { code: m.code, pid: m.from ?? 0, uid: m.uid ?? 0, value: m.value ?? '0' })
          break
        }
        try { engine.kill(g.pid, m.sig) } catch (e) { log('signal %d to %d: %s', m.sig, g.pid, (e as Error).message) }
        break
      case 'kill':
        try { engine.kill(g.pid, 'SIGKILL') } catch {}
        break
      case 'run':
        trace('n:run')
        if (g.held) { g.held = false; g.released = g.r.go(); this.save(g) }
        break
      case 'broken':
        this.brokenHere(g, m.fd)
        break
      case 'stdin-end':
        if (m.fd !== undefined) { g.relays.end(m.fd); break }
        g.pull.ended = true
        g.pull.wanting = false
        g.r.endStdin()
        break
      case 'gohome':
        await this.sendHome(g, true)
        break
      case 'sendto':
        await this.sendTo(g, m)
        break
      case 'hint':
        applyHint(g.decay, m.hint) // validated by the protocol (parseHint)
        this.save(g)
        break
      case 'stat?': {
        const i = engine.psInfo(g.pid)
        if (i) await g.conn.send({ t: 'stat', ...i }).catch(() => {})
        break
      }
      case 'family-failed':
        familyFailed(g, g.r, m)
        break
      case 'ack':
        g.out.ack(m.got)
        break
      case 'move-failed':
        g.moveAsked = monotonicMs()
        log('home did not move guest %d: %s', g.pid, m.reason)
        break
      default:
        break
    }
  }

  /**
   * Stdin handed over must be read before the process stops, or it would be lost in the pipe: waits
   * up to a second for that. If it is still unread, the move is refused: the guest stays (home is
   * told why) and this returns false. Home hands out no stdin during a move (it said so before it
   * asked, or answered `leaving`), so a want still open gets nothing more: it is dropped, and asked
   * again if the process stays.
   */
  private async settleStdin (g: Guest): Promise<boolean> {
    await g.released
    const [a, b] = await Promise.all([g.pull.settle(pipeEmpty(g.r.stdin, g.r.unread, 0)), g.relays.settle()])
    if (a && b) return true
    await g.conn.send({ t: 'stay', reason: UNREAD_STDIN }).catch(() => {})
    this.stays(g)
    return false
  }

  /**
   * The copy a leaving guest keeps goes in the state dir: if its disk has no room for the image (its
   * resident memory), the move is refused (`stay`, with why) before anything is written.
   */
  private async roomForCopy (g: Guest): Promise<boolean> {
    const short = spaceRefusal(this.states.dir, this.d.engine.psInfo(g.pid)?.rss ?? 0)
    if (short === null) return true
    log('guest %d stays: %s', g.pid, short)
    await g.conn.send({ t: 'stay', reason: short }).catch(() => {})
    this.stays(g)
    return false
  }

  /** Stops the guest, drains its output, and streams its image home (gohome from home, or expel here). */
  async sendHome (g: Guest, byHome = false): Promise<void> {
    if (g.leaving || g.conn.closed) return
    g.leaving = true
    if (!byHome) {
      // expel: home must stop handing out stdin first (it answers at once; an old home may not)
      const ok = g.conn.expect('leaving-ok').then(() => true, () => false)
      await g.conn.send({ t: 'leaving' }).catch(() => {})
      await Promise.race([ok, new Promise(resolve => setTimeout(resolve, this.leavingWaitMs))])
    }
    if (!await this.settleStdin(g) || !await this.roomForCopy(g)) return
    const copy = new ImageCopy(undefined, this.states.imagePath(g.pid))
    const used = this.d.engine.psInfo(g.pid)
    try {
      this.save(g)
      if (rawSink(g.conn, copy) !== null) { await this.sendHomeRaw(g, copy, used); return }
      try {
        // the engine writes the copy itself: complete before the process is removed
        await this.d.engine.dump(g.pid, copy.descriptor, {})
        copy.filled()
      } catch (e) {
        await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
        this.stays(g)
        return
      }
      await g.out.drain(g.outputDone)
      await this.imageHome(g, copy, used)
    } finally { copy.release() }
  }

  /**
   * sendHome with a raw image (docs/migrate.md "Raw images"): image-start, and once home reads
   * the connection itself (image-ready) the dump writes the image straight into the socket and into
   * the copy; the output it wrote meanwhile follows it, then image-end. A dump that fails before
   * its first byte sends an empty image and the guest stays; one that fails later has broken the
   * stream: the connection is closed (then as for any connection that breaks while it leaves).
   */
  private async sendHomeRaw (g: Guest, copy: ImageCopy, used?: { utime: number, stime: number }): Promise<void> {
    const conn = g.conn
    const ready = conn.expect('image-ready').then(() => null, (e: Error) => e)
    // (its output read while the image is on the connection waits behind it; it is on disk too,
    // for the next daemon should this one die meanwhile: GuestOutput.persist)
    const sent = conn.send({ t: 'image-start', raw: true })
    const loud = conn.quiet()
    const dump = this.dumpAhead(g.pid, rawSink(conn, copy) as RawSink, canFreeze(g.r)) // (while home gets ready)
    await sent.catch(() => {})
    const notReady = await ready
    if (notReady !== null) {
      await dump.cancel()
      loud()
      log('guest %d stays: %s', g.pid, notReady.message)
      this.stays(g)
      return
    }
    let frozen: FrozenGuest | null = null
    try {
      frozen = await dump.go()
      if (frozen === null) copy.filled()
    } catch (e) {
      const why = (e as Error).message
      loud()
      // nothing of it went: it stays (a process that ended by itself meanwhile too: its end goes home)
      if ((dump.streamed() ?? statSize(copy) > 0) === false) {
        log('guest %d stays: %s', g.pid, why)
        await conn.send({ t: 'stay', reason: why }).catch(() => {})
        this.stays(g)
        return
      }
      log('guest %d: its image broke off (%s): the connection is closed', g.pid, why)
      const shut = new Promise(resolve => { if (conn.closed) resolve(null); else conn.once('close', resolve) })
      conn.close()
      // It stays: a raw dump removes a process only once all its image is out, so one gone now
      // ended by itself (during a pre-copy round, say) or was killed (by root, the OOM killer), and
      // its end goes home. It stays once the connection is closed, not just closing: then it
      // rejoins, and an end goes home over the new connection (not into the old one, lost).
      await shut
      this.stays(g)
      return
    }
    loud()
    await this.drainLeft(g, frozen) // (also if the connection broke meanwhile)
    await this.imageHome(g, copy, used, true, frozen)
  }

  /** hpcd --test-fault crash-frozen (testFault) */
  private crashIfAsked (): void {
    if (this.testFault !== 'crash-frozen') return
    log('test fault: this daemon dies while a guest is kept frozen as its copy')
    process.kill(process.pid, 'SIGKILL')
  }

  /**
   * All a guest that left wrote is read: up to the end of its pipes (its dump removed it), or, kept
   * frozen as its copy, until they hold nothing more (they never reach their end).
   */
  private async drainLeft (g: Guest, f: FrozenGuest | null): Promise<void> {
    if (f === null) { await g.out.drain(g.outputDone); return }
    // the pipes this daemon reads: its own descriptors of them (the keeper's ends of the stdio
    // pipes where a reader's cannot be told)
    const k = g.r.keeper
    const paths = [pipePath(g.r.stdout) ?? `/proc/${k.helper}/fd/${k.fds.out}`, pipePath(g.r.stderr) ?? `/proc/${k.helper}/fd/${k.fds.err}`]
    for (const [fd, s] of g.relays.readers) {
      const p = pipePath(s)
      if (p !== null) paths.push(p); else log('guest %d: the pipe of its relayed fd %d cannot be watched while it drains', g.pid, fd)
    }
    const drained = f.drained(paths).then(ok => { if (!ok) log('guest %d: its output pipes are still not empty', g.pid) }, e => log('guest %d: draining its output: %s', g.pid, (e as Error).message))
    await g.out.drain(drained)
  }

  /**
   * Home says the guest runs elsewhere (home-ok): it is forgotten here, and one kept frozen as its
   * copy is removed (the stream had all of it).
   */
  private async gone (g: Guest, f: FrozenGuest | null): Promise<void> {
    await f?.kill().catch(e => { log('guest %d: removing it: %s', g.pid, (e as Error).message); try { this.d.engine.kill(g.pid, 'SIGKILL') } catch {} })
    this.forget(g)
    g.r.release()
    g.relays.release()
    g.conn.close()
  }

  /**
   * Its target could not run a guest kept frozen as its copy: it runs on here, the same process, a
   * guest on the same connection (home hears `resumed`); or, if it cannot (its helper is gone, and
   * the process with it), home hears `failed` and reports it lost.
   */
  private async resumeFrozen (g: Guest, f: FrozenGuest): Promise<void> {
    try { await f.release() } catch (e) {
      log('guest %d cannot run here again: %s', g.pid, (e as Error).message)
      await g.conn.send({ t: 'failed', reason: `it cannot run on node ${this.d.cluster.id} again: ${(e as Error).message}` }).catch(() => {})
      // (gone with its helper: nothing of it stays here, no record, no leaving guest that would
      // keep this node's balancer waiting)
      this.giveUp(g, 'it cannot run here again')
      g.conn.close()
      return
    }
    log('guest %d runs here again', g.pid)
    this.stays(g)
    await g.conn.send({ t: 'resumed', pid: g.pid }).catch(() => {})
  }

  /**
   * Sends a stopped guest's image home. If home cannot run it (home-failed), it runs here again, a
   * guest on the same connection (`resumed`), or, failing that too, home hears `failed` and reports
   * it lost. It tells home the CPU ticks it used here (`used`). If the connection breaks before
   * home's answer, the copy is restored held and rejoins home, which has it (the copy is removed)
   * or not (it runs here).
   */
  private async imageHome (g: Guest, copy: ImageCopy, used?: { utime: number, stime: number }, sentRaw = false, frozen: FrozenGuest | null = null): Promise<void> {
    if (sentRaw) await g.conn.send({ t: 'image-end', utime: used?.utime ?? 0, stime: used?.stime ?? 0, bytes: frozen?.bytes ?? copy.size }).catch(e => log('sending guest %d home: %s', g.pid, (e as Error).message))
    else await sendImage(g.conn, copy, used).catch(e => log('sending guest %d home: %s', g.pid, (e as Error).message))
    if (frozen !== null) this.crashIfAsked()
    const m = await g.conn.expect('home-ok', 'home-failed').catch(() => null)
    if (m === null) { await this.keepCopy(g, copy, frozen); return }
    if (m.t === 'home-ok') { await this.gone(g, frozen); return }
    log('home could not run guest %d (%s): it runs here again', g.pid, m.reason)
    if (frozen !== null) { await this.resumeFrozen(g, frozen); return }
    let again: Guest
    try { again = await this.runAgain(g, copy) } catch (e) {
      log('guest %d cannot run here again either: %s', g.pid, (e as Error).message)
      await g.conn.send({ t: 'failed', reason: (e as Error).message }).catch(() => {})
      g.conn.close()
      return
    }
    // (it runs here again: a connection broken meanwhile makes it an orphan that rejoins home)
    await g.conn.send({ t: 'resumed', pid: again.pid }).catch(() => {})
  }

  /**
   * A guest that stopped to leave but could not: it runs here again from its image, as a guest on
   * the same connection (held: until home says). Its leaving record, output spill file and copy
   * stay on disk until the process restored from the copy has a record of its own, and that one is
   * held until then: a daemon that dies meanwhile leaves the next one the copy to restore (readopt),
   * and no process running here that nobody knows of.
   */
  private async runAgain (g: Guest, copy: ImageCopy, hold = false): Promise<Guest> {
    this.drop(g)
    let again: GuestProcess
    try {
      // what it wrote before its dump and is still in its pipes is kept (its output goes on from there)
      await g.out.drain(g.outputDone, OUTPUT_DRAIN_MS)
      g.r.release()
      again = await this.d.engine.restore(await replay(copy), { hold: true, family: true, leaseMs: this.leaseMs })
    } catch (e) { this.unrecord(g); throw e }
    const h = this.startGuest(g.conn, again, g.home, g.homePid, g.stdinMode, g.age + Math.max(0, Date.now() - g.since) / 1000, Date.now(), g.out, g.inGot)
    Object.assign(h.decay, g.decay)
    h.held = true
    this.save(h)
    if (h.pid !== g.pid) this.states.remove(g.pid) // (its spill file went with its output: wireGuest)
    if (!hold) { h.held = false; h.released = again.go(); this.save(h) }
    log('guest %d runs here again as %d%s', g.pid, again.pid, hold ? ' (held)' : '')
    return h
  }

  /**
   * The connection to home broke while the guest was leaving, after its image went: home may run
   * it, or not. What this node has, the copy, is restored held and rejoins home, which decides.
   */
  private async keepCopy (g: Guest, copy: ImageCopy, frozen: FrozenGuest | null = null): Promise<void> {
    log('the connection to the home of guest %d broke while it left: its copy rejoins home', g.pid)
    if (frozen !== null) {
      // kept frozen: its image goes into the copy now (the process is removed), as beside a stream
      try { await frozen.save(); copy.filled() } catch (e) { log('guest %d: its copy could not be written: %s', g.pid, (e as Error).message) }
    }
    try {
      this.orphan(await this.runAgain(g, copy, true))
    } catch (e) {
      log('guest %d: its copy cannot run here: %s', g.pid, (e as Error).message)
    }
  }

  /**
   * N -> M, on N: stops the guest and streams its image straight to node M (home named it and
   * gave M the ticket), keeping a copy until home says M runs it. A dump that fails leaves the
   * process running here. If M cannot run it, home says `resume` and it runs here again.
   */
  private async sendTo (g: Guest, m: SendToMsg): Promise<void> {
    if (g.leaving) return
    trace('n:sendto')
    g.leaving = true
    if (!await this.settleStdin(g) || !await this.roomForCopy(g)) return
    let copy: ImageCopy | undefined
    try {
      // the copy, and the record that says it leaves, are made while M answers the offer
      await this.sendOn(g, m, () => {
        copy = new ImageCopy(undefined, this.states.imagePath(g.pid))
        return copy
      }, () => { this.save(g) })
    } finally { copy?.release() }
  }

  /**
   * The dump of a leaving guest into sink, started ahead where the engine can (Engine.startDump):
   * its helper's start, its check and the reading of the process overlap with the wait for the
   * reader's answer; `go` writes the image, `cancel` lets the process go on unchanged. Where it
   * cannot be started ahead, or its check finds that the process cannot move, `go` is the plain
   * dump (which then fails as before: an empty image, and the process stays).
   */
  private dumpAhead (pid: number, sink: RawSink, freeze: boolean): { go: (target?: string) => Promise<FrozenGuest | null>, cancel: () => Promise<void>, streamed: () => boolean | null } {
    const { engine } = this.d
    // kept frozen as its copy where it can be and the engine can (no copy file beside the stream)
    const frozen = freeze && engine.startFrozenDump !== undefined ? engine.startFrozenDump(pid, sink, {}) : null
    const ahead = frozen === null && engine.startDump !== undefined ? engine.startDump(pid, sink, {}) : null
    frozen?.catch(() => {})
    ahead?.catch(() => {})
    let streamed: boolean | null = null
    return {
      go: async target => {
        const f = frozen !== null ? await frozen.catch(() => null) : null
        if (f !== null && f.reasons === null) {
          try { return await f.go(target) } catch (e) { streamed = f.streamed(); throw e }
        }
        const a = ahead !== null ? await ahead.catch(() => null) : null
        if (a !== null && a.reasons === null) await a.go(target)
        else await engine.dump(pid, sink, target !== undefined ? { target } : {})
        return null
      },
      cancel: async () => {
        for (const p of [frozen, ahead]) { const a = await p?.catch(() => null); if (a != null && a.reasons === null) await a.cancel() }
      },
      /** after go failed: did any of the image go (null: not known, see the copy) */
      streamed: () => streamed
    }
  }

  /**
   * sendTo once its input is settled: `makeCopy` makes the copy, then the dump is started ahead,
   * and `saveLeaving` saves the record that says it leaves; both before anything is dumped.
   */
  private async sendOn (g: Guest, m: SendToMsg, makeCopy: () => ImageCopy, saveLeaving: () => void): Promise<void> {
    let bytes = 0
    let out: Link | undefined
    let used: ReturnType<Engine['psInfo']> | undefined
    let copy: ImageCopy | undefined
    let loud: (() => void) | null = null
    let dump: ReturnType<GuestSide['dumpAhead']> | null = null
    let frozen: FrozenGuest | null = null
    let framed = false // a framed dump was told to go (see the catch)
    try {
      if (!this.d.cluster.addressOf(m.node)) throw new Error(`no address for node ${m.node}`)
      out = await this.d.dial(m.node)
      trace('n:dialled')
      const target = m.hostinfo !== '' ? { target: m.hostinfo } : {}
      // raw (docs/migrate.md "Raw images"): offered, then nothing is written here until M holds
      // its input; the dump writes the image into the socket and into the copy
      const raw = out.rawFd() !== null
      const sent = out.send({ t: 'image', ticket: m.ticket, ...(raw ? { raw } : {}) })
      if (raw) loud = out.quiet()
      await sent
      used = this.d.engine.psInfo(g.pid)
      copy = makeCopy()
      dump = raw ? this.dumpAhead(g.pid, rawSink(out, copy) as RawSink, canFreeze(g.r)) : null // (while M answers)
      saveLeaving()
      const sink = raw && (await out.expect('accept')).raw === true ? rawSink(out, copy) : null
      trace('n:m-accepted')
      if (sink === null) { await dump?.cancel(); loud?.(); loud = null } // (framed after all: the process let go first)
      if (sink !== null && dump !== null) {
        try {
          frozen = await dump.go(target.target)
        } finally { if (statSize(copy) > 0) copy.filled() }
        bytes = frozen?.bytes ?? copy.size
      } else {
        framed = true
        await this.d.engine.dump(g.pid, tee(out.imageWriter(), copy, n => { bytes += n }), target)
      }
    } catch (e) {
      await dump?.cancel() // (a dump started ahead and not told to go lets go of the process)
      loud?.()
      out?.close()
      // A process gone now was dumped only by a framed dump (an engine without raw images): that
      // removes it once its image is in the pipe, and only passing the image on may fail after.
      // A raw dump (into the socket) removes it only once all of it is out, which a failure never
      // is: one gone now ended by itself (before its image went, or during a pre-copy round) or
      // was killed (by root, the OOM killer); it stays, and its end goes home as any end.
      const went = dump?.streamed() ?? (copy !== undefined && statSize(copy) > 0)
      if (framed && went && !g.r.alive()) {
        // the dump itself went through (the process is gone) and only passing the last of the image
        // on to M failed: as sent; M's answer to home decides (if it cannot run it, N's copy does)
        log('guest %d: dumped, but the image did not all reach node %d: %s', g.pid, m.node, (e as Error).message)
      } else {
        log('guest %d stays: %s', g.pid, (e as Error).message)
        await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
        this.stays(g)
        return
      }
    }
    const kept = copy as ImageCopy // (made before any dump went; a failure before that returned above)
    loud?.()
    out?.close()
    await this.drainLeft(g, frozen)
    await g.conn.send({ t: 'sent', bytes, utime: used?.utime ?? 0, stime: used?.stime ?? 0 }).catch(() => {})
    if (frozen !== null) this.crashIfAsked()
    const r = await g.conn.expect('home-ok', 'resume').catch(() => undefined)
    if (r === undefined) { await this.keepCopy(g, kept, frozen); return }
    if (r.t === 'home-ok') { await this.gone(g, frozen); return }
    // M could not run it: it runs here again, still a guest on the same connection
    if (frozen !== null) { await this.resumeFrozen(g, frozen); return }
    let again: Guest
    try { again = await this.runAgain(g, kept) } catch (e) {
      log('guest %d cannot run here again (%s): sending it home', g.pid, (e as Error).message)
      g.leaving = true
      this.guests.set(g.pid, g)
      this.save(g)
      await this.imageHome(g, kept)
      return
    }
    // (it runs here again: a connection broken meanwhile makes it an orphan that rejoins home)
    await g.conn.send({ t: 'resumed', pid: again.pid }).catch(() => {})
  }

  /** This node's balancer found a cheaper node for a guest: its home moves it (or says why not). */
  askHomeToMove (g: Guest, target: number, why: string): void {
    g.moveAsked = monotonicMs()
    void g.conn.send({ t: 'move-request', node: target, why }).catch(() => {})
  }

  /** Sends every guest home (admin/expel); resolves when none is left. */
  async expelAll (): Promise<void> {
    await Promise.all([...this.guests.values()].map(g => this.sendHome(g).catch(e => log('expel %d: %s', g.pid, (e as Error).message))))
  }

  /**
   * The daemon stops: every guest is let go to its keeper (it runs on, for the guest lease, and a
   * daemon started again adopts it) and its connection closes.
   */
  close (): void {
    for (const c of this.unused) c.abort()
    this.unused.clear()
    for (const g of this.guests.values()) { g.detach(); g.r.detach(); g.conn.close() }
    this.guests.clear()
  }
}
