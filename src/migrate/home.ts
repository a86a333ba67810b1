// The home side of migration: the processes whose home is this node, and the state machine that
// moves them (every move is driven by home). While a process is away its original stays here as
// the deputy (src/ppm: dumped, hollowed, parked under its own pid): its parent can wait() for it,
// signals sent to it are forwarded, its fds 0-2 and the pipes and stream sockets above whose
// other end stays here are relayed (relay.ts), and when the remote ends
// the deputy ends the same way.
//   home -> N   moveOut: the deputy's dump streams to N (a copy is kept until N runs it: a failed
//               restore puts the process back into its original, never two copies, never none)
//   N -> home   comeHome: N dumps it, drains its output, streams the image back; landHome restores
//               it into the original (same pid). N may also send it by itself (expel).
//   N -> M      hop: M is asked first (a refusal leaves it running on N); then N stops it and
//               streams the image straight to M with a ticket, keeping a copy until home tells it
//               M runs it: if M cannot, N runs it again (or, failing that, sends it home)
// A deputy whose remote's node dies (its connection breaks) prints why on its stderr and exits
// with LOST_STATUS. docs/migrate.md has the sequence pictures.
import { randomBytes } from 'node:crypto'
import debug from '../util/log.js'
import { ACK_BYTES, ACK_MS, DEFAULTS, rejoinWaitMs } from '../config.js'
import { InLog, OutCounts } from './ack.js'
import { ErrnoError, einval } from '../util/errno.js'
import type { Cluster, Dial } from './cluster.js'
import type { DeputyHandle, DumpedHandle, Engine, StartedDeputy } from './engine.js'
import { familyCall } from './family.js'
import { applyHint, defaultHints, type DecayHint, type DecayHints } from './hints.js'
import type { Link } from './link.js'
import type { PsInfo } from '../util/procfs.js'
import { queueable, type AcceptMsg, type FailedMsg, type ImageEndMsg, type RefuseMsg, type Message, type MoveRequestMsg, type RejoinMsg, type RunningMsg, type StayMsg } from './protocol.js'
import type { SigInfo } from '../ppm/ppm.js'
import { HomeStdio, handInput, parseFdFrame, serveWant, stdinModeOf } from './relay.js'
import { ImageCopy, noteTransfer, rawSink, replay, tee } from './transfer.js'
import { spaceRefusal } from './space.js'
import { tmpdir } from 'node:os'
import { trace } from '../util/trace.js'
import { monotonicMs } from '../util/clock.js'

const log = debug('hpcfs:home')

/** How long proc/<pid>/stats waits for the node a process runs on to say how it is doing. */
const STAT_WAIT_MS = 500

/** Exit status of a deputy whose remote was lost with its node (EHOSTDOWN). */
export const LOST_STATUS = 112

export type Where = 'home' | 'migrating' | number

/** A process whose home is this node. */
export class HomeProc {
  lock = false
  nmigs = 0
  readonly decay: DecayHints = defaultHints()
  where: Where = 'home'
  /**
   * The node a move out has committed to (`run` sent: the process runs there) while home still
   * finishes it (the original hollowed, its relays opened); `where` shows it. null otherwise.
   */
  committed: number | null = null
  /** the move under way (requestMove's promise): a request made while it finishes waits for it */
  current: Promise<void> | null = null
  lastError = ''
  deputy: DeputyHandle | null = null
  conn: Link | null = null
  /** its fds 0-2 (and relayed fds above) while it is away */
  readonly io: HomeStdio
  stdinMode: 'pull' | 'none' = 'none'
  /** set while the process is being moved: no stdin is handed out */
  moving = false
  /** the image coming home (N -> home, expel), kept in a copy until it runs */
  imageIn: ImageCopy | null = null
  /** Size of the image while it is away (sent with a hop so the next node can check its memory). */
  imageBytes: number | null = null
  /** During N -> M: M's connection, whose output and messages wait until N has sent all of its own. */
  holdFor: Link | null = null
  held: Array<[number, Buffer]> = []
  heldMsgs: Message[] = []
  /** Signals that reached the deputy while the process was in transit, for wherever it lands. */
  pendingSignals: Array<{ sig: number, info?: SigInfo }> = []
  /** Who waits for the image coming home: handed the way to land it (framed: from its copy; raw: read as it comes). */
  imageWaiter: ((land: () => Promise<void>) => void) | null = null
  /** A raw image is coming home (docs/migrate.md "Raw images"): its image-end is the landing's. */
  rawLanding = false
  /** When the image now coming home started (monotonicMs, for the bandwidth measurement; 0: none). */
  imageStart = 0
  /** The node it runs on or last ran on away from home (0: never left). */
  at = 0
  /** Its command line when it last left home (the deputy's memory, and so its /proc cmdline, is gone). */
  cmdline = ''
  /** CPU ticks [utime, stime] it used on other nodes in stays that have ended. */
  readonly awayTicks: [number, number] = [0, 0]
  /** What the node it runs on said of it last (psInfo there), and who waits for the next answer. */
  remote: PsInfo | null = null
  statWaiters: Array<() => void> = []
  /** It was lost with its node: the deputy is reporting it and ends. */
  lost = false
  /** Its node is out of reach (connection broken): the deputy waits this timer for it to come back (rejoin). */
  limbo: NodeJS.Timeout | null = null
  /** A rejoin that came during a move: answered when the move ends. */
  pendingRejoin: { conn: Link, m: RejoinMsg } | null = null
  /** The output got from its stream where it runs (ack.ts), and the acknowledgement waiting to go. */
  got = new OutCounts()
  ackTimer: NodeJS.Timeout | null = null
  /** The input handed to it where it runs and not yet known to be there (ack.ts). */
  inLog = new InLog()
  /**
   * N -> M committed while N's connection was broken: N may still have the end of its output.
   * M's output and messages are held until N has sent it (it rejoins and is refused: `got` is
   * what home has of N's stream) or until the wait for a lost node is over.
   */
  tail: { node: number, got: OutCounts, timer: NodeJS.Timeout, conn: Link } | null = null
  constructor (readonly pid: number) {
    this.io = new HomeStdio(pid)
    // a relayed output broken at home: the node it runs on lets go of its reader too (docs/migrate.md "Ends")
    this.io.onBroken = fd => { void this.conn?.send({ t: 'broken', fd }).catch(() => {}) }
  }
}

export interface HomeDeps {
  cluster: Cluster
  engine: Engine
  dial: Dial
  /** measured transfer bandwidth to each node (bytes/s), shared with the guest side */
  bandwidth: Map<number, number>
  /** a process of this node now runs on node (0: home) */
  moved: (pid: number, node: number) => void
}

export class Home {
  readonly procs = new Map<number, HomeProc>()
  /** How often a process left (or not) is checked for being gone (ms). */
  reapMs = 1000
  /** How long a deputy waits for a node out of reach to come back before it reports the process lost (config: 2 × guestLease + 5 s). */
  rejoinWaitMs = rejoinWaitMs(DEFAULTS.guestLease)

  constructor (private readonly d: HomeDeps) {}

  /** Why a local process cannot move (empty when it can), from the engine's analysis. */
  async cantMove (pid: number): Promise<string[]> {
    const reasons = await this.d.engine.check(pid).catch(e => [{ code: 'error', text: (e as Error).message }])
    return reasons.map(r => r.text)
  }

  /** The process entry for a local pid (creating it puts the process under cluster discipline). */
  adopt (pid: number): HomeProc {
    let p = this.procs.get(pid)
    if (p) return p
    if (!Number.isInteger(pid) || pid < 2 || !this.d.engine.alive(pid)) throw new ErrnoError('ESRCH', `no process ${pid}`)
    p = new HomeProc(pid)
    this.procs.set(pid, p)
    this.reapWhenGone(p)
    return p
  }

  private reapWhenGone (p: HomeProc): void {
    const t = setInterval(() => {
      if (this.procs.get(p.pid) !== p) { clearInterval(t); return }
      if (p.where === 'home' && !p.deputy && !this.d.engine.alive(p.pid)) { clearInterval(t); this.procs.delete(p.pid) }
    }, this.reapMs)
    t.unref()
  }

  /** Asks for a move; validates at once (EINVAL, EAGAIN, ESRCH), moves in the background. */
  requestMove (pid: number, target: number | 'home'): Promise<void> {
    const { cluster } = this.d
    const p = this.adopt(pid)
    if (target === cluster.id) target = 'home'
    if (target !== 'home') {
      if (!cluster.addressOf(target)) throw einval(`no node ${target}`)
      if (!cluster.isUp(target)) throw new ErrnoError('EHOSTUNREACH', `node ${target} is down`)
    }
    if (p.where === 'migrating' && p.committed !== null && p.current !== null) {
      // committed and running there, home finishing the move: this request follows it (and a
      // request after this one follows this one)
      const next = p.current.then(() => this.requestMove(pid, target)).catch(e => { p.lastError = (e as Error).message })
      p.current = next
      return next
    }
    if (p.where === 'migrating') throw new ErrnoError('EAGAIN', `process ${pid} is in transit`)
    if (p.limbo) throw new ErrnoError('EAGAIN', `node ${String(p.where)} is out of reach: waiting for it to come back`)
    if (p.tail) throw new ErrnoError('EAGAIN', `waiting for the end of its output on node ${p.tail.node}`)
    if ((target === 'home' && p.where === 'home') || target === p.where) return Promise.resolve()
    if (p.where === 'home' && cluster.keepsLocal) throw new ErrnoError('EPERM', 'this node keeps its processes (admin/stay or admin/lstay)')
    trace('h:request')
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
      p.committed = null
      if (p.where === 'migrating') p.where = from
      p.moving = false // stdin is handed out again
      // it was away and its connection broke during the move: wait for that node to come back
      if (typeof from === 'number' && p.deputy && (!p.conn || p.conn.closed)) this.awaitRejoin(p, from)
    }).then(() => this.afterMove(p))
    p.current = done
    const clear = (): void => { if (p.current === done) p.current = null }
    done.then(clear, clear)
    return done
  }

  /**
   * A move is over: a node that came back with the process meanwhile is answered now, and signals
   * that came during a move that failed go to where it runs.
   */
  private afterMove (p: HomeProc): void {
    const r = p.pendingRejoin
    p.pendingRejoin = null
    if (r) this.rejoin(r.conn, r.m)
    this.deliverSignals(p)
  }

  /**
   * Offers the process to node; resolves with the connection once accepted. `ticket`: the image
   * will come from another node over a connection of its own that names this ticket.
   */
  private async offer (p: HomeProc, node: number, ticket?: string, dialled?: Link): Promise<{ conn: Link, hostinfo: string, loud: (() => void) | null }> {
    const conn = dialled ?? await this.d.dial(node)
    const about = this.d.engine.describe(p.pid)
    trace('h:described')
    // raw (docs/migrate.md "Raw images"): the deputy may write the image straight into the socket;
    // nothing else is written on it until N has answered
    const raw = ticket === undefined && conn.rawFd() !== null
    const sent = conn.send({ t: 'migrate', home: this.d.cluster.id, pid: p.pid, name: about.name, bytes: p.imageBytes ?? about.bytes, stdin: p.stdinMode, age: about.age, decay: p.decay.rate, kind: p.decay.kind, perMille: p.decay.perMille, interval: p.decay.interval, ...(ticket !== undefined ? { ticket } : {}), ...(raw ? { raw } : {}) })
    trace('h:offered')
    let loud = raw ? conn.quiet() : null
    let m: AcceptMsg | RefuseMsg
    try { await sent; m = await conn.expect('accept', 'refuse') } catch (e) { loud?.(); conn.close(); throw e }
    trace('h:answer')
    if (m.t === 'refuse') { loud?.(); conn.close(); throw new ErrnoError('EPERM', `node ${node} refused: ${m.reason}`) }
    if (loud !== null && m.raw !== true) { loud(); loud = null }
    return { conn, hostinfo: m.hostinfo, loud }
  }

  /**
   * home -> N. The process is checked while it is offered (the check's helper start and its look
   * at every process's descriptors are much of a small move): by the deputy's helper itself,
   * started ahead and told to go once N has accepted (engines with `startDeputy`, raw images), or
   * by the engine's check. One that cannot move is withdrawn before anything of it is dumped (N's
   * restore sees the connection close).
   */
  private async moveOut (p: HomeProc, node: number): Promise<void> {
    // without a deputy started ahead, the copy kept until N runs it is a file (ImageCopy, in TMPDIR): it must fit
    if (this.d.engine.startDeputy === undefined) {
      const short = spaceRefusal(tmpdir(), this.d.engine.describe(p.pid).bytes)
      if (short !== null) throw new ErrnoError('ENOSPC', `cannot move: ${short}`)
    }
    const copy = new ImageCopy()
    let ahead: Promise<StartedDeputy> | null = null
    try {
      const conn = await this.d.dial(node)
      trace('h:dialled')
      const start = this.d.engine.startDeputy
      const sink = start !== undefined ? rawSink(conn, copy) : null
      const begin = (): Promise<StartedDeputy> | null => {
        const a = start !== undefined && sink !== null ? start(p.pid, sink, {}) : null
        a?.catch(() => {})
        return a
      }
      // the offer goes out first, then the deputy's helper is started (a line to a helper started
      // ahead, or a spawn): it checks the process while the offer goes back and forth
      let offered: ReturnType<Home['offer']>
      try {
        p.remote = null
        p.io.kinds = this.d.engine.stdioKinds(p.pid)
        p.stdinMode = stdinModeOf(p.io.kinds)
        offered = this.offer(p, node, undefined, conn) // (written before its first await)
      } catch (e) {
        conn.close()
        const reasons = await this.cantMove(p.pid).catch(() => [])
        throw reasons.length ? new ErrnoError('EPERM', `cannot move: ${reasons.join('; ')}`) : e
      }
      // N's answer, once it has come: a refusal closes the connection, and a helper that had not
      // taken it yet then fails on a descriptor no longer the one named: the refusal is the reason
      let answer: Error | null = null
      offered.catch(e => { answer = e as Error }) // awaited below, or withdrawn
      ahead = begin()
      p.cmdline = this.d.engine.psInfo(p.pid)?.cmdline ?? '' // (for ps while it is away)
      trace('h:ps')
      const checked = ahead !== null ? ahead.then(a => (a.reasons ?? []).map(r => r.text)) : this.cantMove(p.pid)
      const withdraw = (): void => { void offered.then(o => { o.loud?.(); o.conn.close() }, () => {}) }
      let reasons: string[]
      try { reasons = await checked } catch (e) { withdraw(); throw answer ?? e }
      if (reasons.length) { withdraw(); throw new ErrnoError('EPERM', `cannot move: ${reasons.join('; ')}`) }
      const { hostinfo, loud } = await offered
      const pending = ahead !== null ? await ahead : null
      try {
        await this.sendOut(p, conn, node, hostinfo, copy, loud, pending !== null && pending.reasons === null ? pending : null)
      } finally { loud?.() }
    } finally {
      // a deputy started ahead and never told to go ends here, the process let go unchanged
      // before the move is over (the next one's helper could not stop it while this one holds it)
      copy.release()
      await ahead?.then(async a => { if (a.reasons === null) await a.cancel() }, () => {})
    }
  }

  /** moveOut once offered and accepted: the deputy's dump streams to N (copied); N runs it, or it runs at home again. */
  private async sendOut (p: HomeProc, conn: Link, node: number, hostinfo: string, copy: ImageCopy, loud: (() => void) | null, pending: Extract<StartedDeputy, { reasons: null }> | null): Promise<void> {
    const reply = conn.expect('running', 'failed').catch((e): FailedMsg => ({ t: 'failed', reason: (e as Error).message }))
    p.got = new OutCounts() // its output on N is numbered from its start there
    p.inLog = new InLog() // and its input
    this.bind(p, conn, node)
    let broke: Error | undefined
    conn.once('close', e => { broke = e })
    let told: string | null = null // N's failed, if it broke the image off
    conn.on('msg', m => { if (m.t === 'failed') told = m.reason })
    let dep: DeputyHandle | null = null
    let dumped: DumpedHandle | null = null
    // raw: N reads the image straight from the socket, the deputy writes it there (and into the
    // copy, unless it was started ahead: then the frozen original is the copy, until N runs it)
    const raw = loud !== null ? rawSink(conn, copy) : null
    try {
      if (raw === null) await pending?.cancel() // (N reads framed images after all: the deputy below once the process is let go)
      if (raw !== null && pending !== null) { trace('h:go'); dumped = await pending.go(hostinfo || undefined) }
      else {
        dep = await this.d.engine.deputy(p.pid, raw ?? tee(conn.imageWriter(), copy), hostinfo ? { target: hostinfo } : {})
        if (raw !== null) copy.filled()
      }
    } catch (e) {
      p.conn = null
      // (a raw image broken off ends N's restore by itself: an empty image or a cut stream; when N
      // broke it off, its failed, sent before it closed, says why)
      if (raw === null) await conn.send({ t: 'abort', reason: (e as Error).message }).catch(() => {})
      else await Promise.race([reply, new Promise(resolve => setTimeout(resolve, 1000))])
      conn.close()
      if (told !== null) throw new Error(`node ${node} could not run it: ${told as string}; it runs at home again`)
      if (broke) throw new Error(`the connection to node ${node} broke (${broke.message}): ${(e as Error).message}`)
      throw e
    }
    const watch = (d: DeputyHandle): void => {
      p.deputy = d
      d.on('signal', (s: number, info?: SigInfo) => {
        log('deputy %d got signal %d%s', p.pid, s, info !== undefined ? ` (code ${info.code}, from ${info.pid})` : '')
        p.pendingSignals.push({ sig: s, info })
        this.deliverSignals(p)
      })
      d.on('end', () => this.deputyEnded(p))
    }
    if (dep !== null) watch(dep)
    let m = await reply
    trace('h:running')
    loud?.() // N has read all of the image: frames may follow it
    if (m.t === 'running' && conn.closed) m = { t: 'failed', reason: 'the connection broke before the move was committed' }
    if (m.t !== 'running') {
      p.conn = null
      conn.close()
      if (dumped !== null) await dumped.release() // (it was never emptied: it runs on)
      else {
        await (dep as DeputyHandle).restoreInto(await replay(copy))
        this.detachDeputy(p)
      }
      p.where = 'home'
      throw new Error(`node ${node} could not run it: ${m.reason}; it runs at home again`)
    }
    // committed: N lets it run (N removes a process it holds if this never comes)
    if (dumped !== null) { p.holdFor = conn; p.held = []; p.heldMsgs = [] } // (what N says before the deputy is there: below)
    await conn.send({ t: 'run' }).catch(() => {})
    trace('h:run-sent')
    p.committed = node
    let msgs: Message[] = []
    if (dumped !== null) {
      // the original becomes the deputy while N runs it; one that cannot be emptied has been
      // killed by its helper: the job ends, on N too
      try { watch(await dumped.hollow()) } catch (e) {
        p.holdFor = null
        await conn.send({ t: 'kill' }).catch(() => {})
        conn.close()
        p.conn = null
        p.where = 'home'
        throw new Error(`the original could not become a deputy (${(e as Error).message}): the job was ended`)
      }
      const held = p.held
      msgs = p.heldMsgs
      p.holdFor = null
      p.held = []
      p.heldMsgs = []
      // counted as any output (it was: written, never counted, so a later rejoin had N send it again)
      for (const [fd, d] of held) this.output(p, fd, d)
    }
    noteTransfer(this.d.bandwidth, node, m.bytes, m.ms)
    await p.io.open(p.deputy)
    this.arrived(p, node)
    for (const x of msgs) await this.onHomeMsg(p, conn, x) // (an exit, say: it needs the deputy)
  }

  /**
   * Makes conn the process's session with node: output, messages and loss are handled from now on
   * (`take` false: conn is M's during N -> M, held until the move completes).
   */
  private bind (p: HomeProc, conn: Link, node: number, take = true): void {
    if (take) p.conn = conn
    conn.on('data', (type, d) => {
      if (type === 'I') {
        if (p.imageIn && !p.imageIn.write(d)) { conn.pause(); p.imageIn.once('drain', () => conn.resume()) }
        return
      }
      let fd = type === 'O' ? 1 : type === 'E' ? 2 : 0
      if (type === 'W') {
        const f = parseFdFrame(d)
        if (f === null || f[0] <= 2) return
        [fd, d] = f
      }
      if (!fd) return
      if (p.holdFor === conn) p.held.push([fd, d])
      else if (p.conn === conn) this.output(p, fd, d)
      else log('process %d: output on a connection it left dropped (%d bytes)', p.pid, d.length)
    })
    conn.on('msg', m => {
      if (p.holdFor === conn && m.t !== 'want') p.heldMsgs.push(m)
      else this.onHomeMsg(p, conn, m).catch(e => log('process %d: %s: %s', p.pid, m.t, (e as Error).message))
    })
    conn.on('close', () => {
      if (p.imageIn && (p.conn === conn || p.holdFor === conn)) { p.imageIn.release(); p.imageIn = null }
      if (p.conn !== conn) return
      p.conn = null
      this.awaitRejoin(p, node)
    })
  }

  /**
   * N -> M is over and N's output complete (or given up): M's output and messages, held so far,
   * go on; M's stream is numbered from its start there. M's messages are answered on M's
   * connection even when it has closed meanwhile (M said `exit` and closed: the deputy ends).
   */
  private async endTail (p: HomeProc, conn: Link | null = p.conn ?? p.tail?.conn ?? null): Promise<void> {
    if (p.tail) { clearTimeout(p.tail.timer); p.tail = null }
    const held = p.held
    const msgs = p.heldMsgs
    p.holdFor = null
    p.held = []
    p.heldMsgs = []
    p.got = new OutCounts()
    for (const [fd, d] of held) this.output(p, fd, d)
    if (conn !== null) for (const x of msgs) await this.onHomeMsg(p, conn, x)
  }

  /**
   * Output of the process where it runs: counted, written, and acknowledged soon (at once past
   * ACK_BYTES) once written: its reader at home has taken it (or it was dropped, the output broken).
   * So a slow reader at home holds the process back where it runs, in its writes to that output
   * alone (the node's bound per fd, OUTPUT_KEEP_BYTES), instead of piling its output up here.
   */
  private output (p: HomeProc, fd: number, d: Buffer): void {
    const counts = p.got
    counts.add(fd, d.length, ACK_BYTES, false)
    p.io.write(fd, d, () => {
      if (counts !== p.got) return // (a stream that has ended: no more acknowledgements of it)
      if (counts.written(fd, d.length, ACK_BYTES)) this.ack(p)
      else p.ackTimer ??= setTimeout(() => this.ack(p), ACK_MS).unref()
    })
  }

  /** Tells the node the process runs on how much of its output home has written. */
  private ack (p: HomeProc): void {
    if (p.ackTimer) { clearTimeout(p.ackTimer); p.ackTimer = null }
    const conn = p.conn
    if (conn === null || conn.closed || p.got.unacked === 0) return
    void conn.send({ t: 'ack', got: p.got.take() }).catch(() => {})
  }

  private arrived (p: HomeProc, node: number): void {
    p.moving = false
    p.committed = null
    p.where = node
    p.at = node
    p.nmigs++
    log('process %d runs on node %d', p.pid, node)
    this.d.moved(p.pid, node)
    // its connection broke while home finished the move (its close came during it): wait for the node
    if (p.conn === null || p.conn.closed) this.awaitRejoin(p, node)
    this.deliverSignals(p)
  }

  /**
   * Signals the deputy got go to where the process is now; they wait while it is in transit or its
   * node is out of reach (the end of the move, successful or not, or the rejoin delivers them).
   */
  private deliverSignals (p: HomeProc): void {
    if (this.procs.get(p.pid) !== p || p.lost) { p.pendingSignals = []; return } // (it has ended: its pid may be another's)
    if (p.pendingSignals.length === 0 || p.moving || p.where === 'migrating' || p.limbo) return
    if (p.where !== 'home' && (p.conn === null || p.conn.closed)) return
    const sigs = p.pendingSignals
    p.pendingSignals = []
    for (const { sig, info } of sigs) {
      // a value queued with it goes along (sigqueue's, a timer's): N's keeper queues it so
      const q = info !== undefined && queueable(info.code) ? { code: info.code, from: info.pid, uid: info.uid, value: info.value } : {}
      if (p.where === 'home') { try { this.d.engine.kill(p.pid, sig) } catch {} } else void p.conn?.send({ t: 'signal', sig, ...q }).catch(() => {})
    }
  }

  /** A message from the node the process runs on (or from M, once released during N -> M). */
  private async onHomeMsg (p: HomeProc, conn: Link, m: Message): Promise<void> {
    switch (m.t) {
      case 'exit': {
        p.conn = null
        conn.close()
        if (p.io.pendingOut) await p.io.open(p.deputy)
        await p.io.flush()
        const dep = p.deputy
        if (!dep) return
        if (m.signal) await dep.kill(m.signal).catch(e => log('kill deputy: %s', (e as Error).message))
        else await dep.exit(m.code ?? 0).catch(e => log('exit deputy: %s', (e as Error).message))
        this.forget(p)
        break
      }
      case 'want': {
        const fd = m.fd ?? 0
        if (conn === p.conn) {
          // input acknowledgement (ack.ts InLog): what N has is dropped; what went out over an
          // older connection and never reached the process is handed again, instead of new input
          const again = p.inLog.want(fd, m.got, conn)
          if (again.length > 0) {
            log('process %d: handing %d bytes of fd %d again (lost with an older connection)', p.pid, again.reduce((a, d) => a + d.length, 0), fd)
            for (const d of again) handInput(conn, fd, d)
            break
          }
        }
        serveWant(p.io, conn, m.n, () => {
          if (p.io.ready(m.fd ?? 0) && p.conn === conn && !p.moving) return 'now'
          // Not yet: the relay is being set up, or conn is M's during N -> M. (To N during a move
          // the want is dropped: N stops waiting for it and the process reads again wherever it lands.)
          const soon = conn === p.holdFor || (conn === p.conn && !p.moving && p.where === 'migrating')
          return soon ? 'later' : 'never'
        }, fd, d => {
          // kept until a want says it is in the process, whichever connection it went out on: a
          // read through the deputy (a socket) may end after this one broke or another took over
          p.inLog.add(fd, d, conn)
        })
        break
      }
      case 'closed':
        // the process closed a relayed fd (or shut a socket down for writing) where it runs
        await p.io.closeFd(m.fd, m.how)
        break
      case 'leaving':
        // the guest's node sends it home by itself (expel): no more stdin from now on, so that none
        // arrives after it has stopped (what a pull in flight reads goes out first)
        p.moving = true
        await p.io.idle()
        await conn.send({ t: 'leaving-ok' }).catch(() => {})
        break
      case 'stay':
        if (p.where !== 'migrating') p.moving = false // it could not leave after all: stdin is handed out again
        break
      case 'family':
        // it waits in a family call (fork, wait, ...) that must be made at home (family.ts)
        familyCall(this, p, conn, m)
        break
      case 'move-request':
        // the node it runs on found a cheaper place for it (its balancer decides for its guests)
        this.guestAsks(p, conn, m)
        break
      case 'image-start': {
        p.imageIn?.release()
        p.imageIn = null
        p.imageStart = monotonicMs()
        const dep = p.deputy
        if (m.raw === true) {
          // the image comes raw: read straight into the original while it arrives (N waits for
          // image-ready; a home that cannot read it so breaks the connection off)
          let unhold: () => void
          try {
            if (dep?.restoreFromFd === undefined || conn.rawFd() === null) throw new Error('no raw image here')
            unhold = conn.holdIn()
          } catch (e) { log('raw image of %d: %s', p.pid, (e as Error).message); conn.close(); break }
          p.rawLanding = true
          const land = async (): Promise<void> => { try { await this.landRaw(p, conn, unhold) } finally { p.rawLanding = false } }
          if (p.imageWaiter) { const w = p.imageWaiter; p.imageWaiter = null; w(land) } else {
            // the guest node sends it home by itself (expel)
            p.where = 'migrating'
            await land().catch(e => { p.lastError = (e as Error).message; throw e })
          }
          break
        }
        p.imageIn = new ImageCopy()
        break
      }
      case 'stat':
        p.remote = m
        for (const w of p.statWaiters.splice(0)) w()
        break
      case 'image-end': {
        if (p.rawLanding) break // landRaw has it
        this.stayEnded(p, m)
        const copy = p.imageIn ?? new ImageCopy()
        p.imageIn = null
        if (p.at > 0 && p.imageStart > 0) noteTransfer(this.d.bandwidth, p.at, copy.size, monotonicMs() - p.imageStart)
        if (p.imageWaiter) { const w = p.imageWaiter; p.imageWaiter = null; w(async () => await this.landHome(p, conn, copy)) } else {
          // the guest node sends it home by itself (expel)
          p.where = 'migrating'
          await this.landHome(p, conn, copy).catch(e => { p.lastError = (e as Error).message; throw e }).finally(() => this.afterMove(p))
        }
        break
      }
      default:
        break
    }
  }

  /** A stay away ended (its node reports the CPU time it used there with the image): count it. */
  private stayEnded (p: HomeProc, m: { utime?: number, stime?: number }): void {
    p.awayTicks[0] += m.utime ?? 0
    p.awayTicks[1] += m.stime ?? 0
    p.remote = null
  }

  /**
   * What ps shows of a process of this node wherever it runs (proc/<pid>/stats and cmdline): CPU
   * ticks counted on every node it ran on; state, memory and command line where it runs now. When
   * it is away, its node is asked (waiting at most STAT_WAIT_MS, else its last answer is used).
   * Undefined when the process is gone.
   */
  async psInfo (pid: number): Promise<PsInfo | undefined> {
    const here = this.d.engine.psInfo(pid)
    if (here === undefined) return undefined
    const p = this.procs.get(pid)
    if (!p) return here
    const conn = p.conn
    if (typeof p.where === 'number' && conn && !conn.closed) {
      const answered = new Promise<void>(resolve => {
        const t = setTimeout(resolve, STAT_WAIT_MS)
        p.statWaiters.push(() => { clearTimeout(t); resolve() })
      })
      void conn.send({ t: 'stat?' }).catch(() => {})
      await answered
    }
    const r = p.where === 'home' ? null : p.remote
    return {
      utime: here.utime + p.awayTicks[0] + (r?.utime ?? 0),
      stime: here.stime + p.awayTicks[1] + (r?.stime ?? 0),
      state: r?.state ?? here.state,
      rss: r?.rss ?? here.rss,
      vsize: r?.vsize ?? here.vsize,
      cmdline: r?.cmdline || (p.where === 'home' ? here.cmdline : p.cmdline || here.cmdline)
    }
  }

  /** Gets the image of a remote process back over its connection (the remote stops it): the way to land it. */
  private async fetchImage (p: HomeProc): Promise<() => Promise<void>> {
    const conn = p.conn
    if (!conn) throw new Error('no connection to the remote')
    p.moving = true
    await p.io.idle() // input a pull in flight reads goes out before the guest stops
    const got = new Promise<() => Promise<void>>(resolve => { p.imageWaiter = resolve })
    await conn.send({ t: 'gohome' })
    return await Promise.race([got, conn.expect('stay').then(m => { throw new Error(`remote could not stop it: ${m.reason}`) })]).finally(() => { p.imageWaiter = null })
  }

  /**
   * N -> home with a raw image: the deputy reads it straight from the connection into the original
   * while it arrives; the original runs once the output N sent after it and image-end have been
   * passed on. If N's dump failed before the first byte (an empty image), N says stay and the
   * process runs there on; if the restore fails, the rest of the image has been read and N runs it
   * again from its copy (home-failed), as for a framed image.
   */
  private async landRaw (p: HomeProc, conn: Link, unhold: () => void): Promise<void> {
    const dep = p.deputy as DeputyHandle
    const fd = conn.rawFd()
    const after = conn.expect('image-end', 'stay').catch((e): StayMsg => ({ t: 'stay', reason: (e as Error).message }))
    let end: ImageEndMsg | StayMsg | null = null
    const t0 = monotonicMs()
    await conn.send({ t: 'image-ready' })
    try {
      if (fd === null || dep.restoreFromFd === undefined) throw new Error('connection closed')
      await dep.restoreFromFd(process.pid, fd, async () => {
        // all of the image is in: what came after it (output, image-end) is passed on first
        unhold()
        end = await after
        await p.io.flush()
      })
    } catch (e) {
      unhold()
      const why = (e as Error).message
      if (/sent no image/.test(why) || (end as StayMsg | ImageEndMsg | null)?.t === 'stay') {
        // N's dump failed: it stays there (its stay message reaches fetchImage / the expel)
        p.moving = false
        if (p.where === 'migrating') p.where = p.at
        throw new Error(`node ${p.at} could not send it: ${why}`)
      }
      end ??= await after
      if (end.t === 'image-end') this.stayEnded(p, end)
      await this.homeFailed(p, conn, why)
      return
    }
    const m = end as ImageEndMsg | StayMsg | null
    if (m?.t === 'image-end') {
      this.stayEnded(p, m)
      if (p.at > 0 && m.bytes !== undefined) noteTransfer(this.d.bandwidth, p.at, m.bytes, monotonicMs() - t0)
    }
    await this.homeLanded(p, conn)
  }

  /**
   * Restores an image that came home into the deputy (the original, same pid). If that fails, the
   * node it came from runs it again (home-failed, resumed) and the deputy goes on tracking it there;
   * if that node cannot either (failed) or the connection breaks, the process is lost.
   */
  private async landHome (p: HomeProc, conn: Link, copy: ImageCopy): Promise<void> {
    try {
      await this.restoreHome(p, conn, copy)
    } finally { copy.release() }
  }

  private async restoreHome (p: HomeProc, conn: Link, copy: ImageCopy): Promise<void> {
    const dep = p.deputy as DeputyHandle
    p.conn = null
    await p.io.flush()
    try {
      await dep.restoreInto(await replay(copy))
    } catch (e) {
      await this.homeFailed(p, conn, (e as Error).message)
      return
    }
    await this.homeLanded(p, conn)
  }

  /** The image came home but could not run in the original: its node runs it again, or it is lost. */
  private async homeFailed (p: HomeProc, conn: Link, why: string): Promise<never> {
    {
      const node = p.at
      p.conn = conn
      const again = conn.expect('resumed', 'failed').catch(() => null)
      await conn.send({ t: 'home-failed', reason: why }).catch(() => {})
      const m = await again
      p.where = node
      p.moving = false
      if (m === null) {
        // the node may run it again from its copy: it rejoins
        this.awaitRejoin(p, node)
        throw new Error(`it could not run at home (${why}) and the connection to node ${node} broke`)
      }
      if (m.t === 'failed') {
        p.conn = null
        conn.close()
        void this.lost(p, node)
        throw new Error(`it could not run at home (${why}) nor on node ${node} again (${m.reason})`)
      }
      log('process %d could not come home (%s): it runs on node %d again as %d', p.pid, why, node, m.pid)
      this.deliverSignals(p)
      throw new Error(`it could not run at home: ${why}; it runs on node ${node} again`)
    }
  }

  /** The image came home and runs in the original: its node forgets it. */
  private async homeLanded (p: HomeProc, conn: Link): Promise<void> {
    p.conn = null
    await conn.send({ t: 'home-ok' }).catch(() => {})
    conn.close()
    this.detachDeputy(p)
    p.moving = false
    p.where = 'home'
    p.nmigs++
    log('process %d is home', p.pid)
    this.d.moved(p.pid, 0)
    this.deliverSignals(p)
  }

  /** N -> home. */
  private async comeHome (p: HomeProc): Promise<void> {
    const land = await this.fetchImage(p)
    await land()
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
    const reply = next.conn.expect('running', 'failed').catch((e): FailedMsg => ({ t: 'failed', reason: (e as Error).message }))
    p.holdFor = next.conn
    p.held = []
    p.heldMsgs = []
    this.bind(p, next.conn, node, false)
    p.moving = true
    await p.io.idle()
    trace('h:idle')
    const sent = old.expect('sent', 'stay').catch((e): StayMsg => ({ t: 'stay', reason: (e as Error).message }))
    await old.send({ t: 'sendto', node, ticket, hostinfo: next.hostinfo }).catch(() => {})
    const s = await sent
    if (s.t === 'sent') this.stayEnded(p, s)
    const release = (): void => { p.holdFor = null; p.held = []; p.heldMsgs = [] }
    // N could not stop it, or M broke off the transfer (the dump then fails and leaves the process
    // as it was): it is where it was, M has nothing. N's connection broke: N may have died after
    // its dump, with all of the image at M: M's word decides (its connection is watched)
    const early = s.t === 'stay' && !old.closed ? await Promise.race([reply, new Promise<undefined>(resolve => { setTimeout(() => resolve(undefined), 2000).unref() })]) : await reply
    let m: RunningMsg | FailedMsg = early ?? { t: 'failed', reason: 'no answer' }
    if (m.t === 'running' && next.conn.closed) m = { t: 'failed', reason: 'the connection broke before the move was committed' }
    if (s.t === 'stay' && m.t !== 'running') {
      release()
      next.conn.close()
      p.moving = false
      // (with N's reason too: M's failure may be the consequence of a dump that failed on N)
      const why = early?.t === 'failed' ? `node ${node} could not run it: ${early.reason}${old.closed ? '' : ` (node ${from}: ${s.reason})`}` : `node ${from} could not send it: ${s.reason}`
      throw new Error(old.closed ? why : `${why}; it runs on node ${from} again`)
    }
    if (m.t === 'running') {
      await next.conn.send({ t: 'run' }).catch(() => {})
      p.conn = next.conn
      p.inLog = new InLog() // its input on M is numbered from its start there
      if (s.t === 'sent' && s.bytes > 0) p.imageBytes = s.bytes
      noteTransfer(this.d.bandwidth, node, m.bytes, m.ms)
      const broke = old.closed
      await old.send({ t: 'home-ok' }).catch(() => {})
      old.close()
      this.arrived(p, node)
      if (s.t !== 'sent' && broke) {
        // N's connection broke before it said it had sent all: M's output waits (held, not
        // acknowledged) for the end of N's, which N's copy brings when it rejoins
        log('process %d runs on node %d; waiting for the end of its output on node %d', p.pid, node, from)
        if (p.ackTimer) { clearTimeout(p.ackTimer); p.ackTimer = null }
        p.tail = { node: from, got: p.got, timer: setTimeout(() => { void this.endTail(p) }, this.rejoinWaitMs), conn: next.conn }
        p.got = new OutCounts()
        return
      }
      await this.endTail(p, next.conn)
      return
    }
    release()
    next.conn.close()
    const why = `node ${node} could not run it: ${m.reason}`
    const back = new Promise<() => Promise<void>>(resolve => { p.imageWaiter = resolve })
    await old.send({ t: 'resume' })
    // (`failed`: N cannot run it again and has nothing to send home: its frozen guest is gone)
    const land = await Promise.race([old.expect('resumed', 'failed'), back]).finally(() => { p.imageWaiter = null })
    if (typeof land !== 'function') {
      p.moving = false
      if (land.t === 'resumed') throw new Error(`${why}; it runs on node ${from} again`)
      p.where = from
      p.conn = null
      old.close()
      void this.lost(p, from)
      throw new Error(`${why}; node ${from} could not run it again either (${land.reason})`)
    }
    await land()
    throw new Error(`${why}; node ${from} could not run it again either, so it runs at home`)
  }

  /** A decay hint for a process of this node (proc/<pid>/decay); it reaches the remote if it is away. */
  hint (pid: number, hint: DecayHint): void {
    const p = this.adopt(pid)
    applyHint(p.decay, hint)
    if (typeof p.where === 'number') void p.conn?.send({ t: 'hint', hint }).catch(() => {})
  }

  /** A guest's node asks to move it on (its balancer's choice); home checks and carries it out. */
  private guestAsks (p: HomeProc, conn: Link, m: MoveRequestMsg): void {
    const target = m.node
    if (p.conn !== conn || typeof p.where !== 'number' || p.moving) return
    const refuse = (reason: string): void => { void conn.send({ t: 'move-failed', reason }).catch(() => {}) }
    if (p.lock) { refuse('locked at home (proc/PID/lock)'); return }
    if (target === p.where) { refuse(`bad target ${target}`); return }
    log('node %d asks to move %d to %d: %s', p.where, p.pid, target, m.why)
    try {
      void this.requestMove(p.pid, target).then(() => { if (p.lastError) refuse(p.lastError) })
    } catch (e) {
      refuse((e as Error).message)
    }
  }

  /**
   * The connection to the node running the process broke: that node may come back with it (its
   * daemon restarted, or the link heals) and rejoin; until then signals wait. After rejoinWaitMs
   * the process is lost (by then the guest is dead wherever it was: the guest lease).
   */
  private awaitRejoin (p: HomeProc, node: number): void {
    // during a move the move itself handles a broken connection (and calls this when it ends with
    // the process still on that node)
    if (p.where !== node || p.lost || p.limbo || !p.deputy) return
    p.conn = null
    log('process %d: node %d out of reach: waiting up to %d ms for it to come back', p.pid, node, this.rejoinWaitMs)
    p.limbo = setTimeout(() => { p.limbo = null; void this.lost(p, node) }, this.rejoinWaitMs)
  }

  /**
   * A node comes back with a process of this node (its daemon was restarted, or the link came
   * back): if home still has the process there, the session goes on over conn (rejoin-ok);
   * otherwise it is refused and that node kills its copy. During a move, the answer waits for the
   * move's end.
   */
  rejoin (conn: Link, m: RejoinMsg): void {
    const p = this.procs.get(m.pid)
    const refuse = (reason: string): void => { log('rejoin of %d by node %d refused: %s', m.pid, m.node, reason); void conn.send({ t: 'refuse', reason }).catch(() => {}); conn.close() }
    if (m.home !== this.d.cluster.id || !p || !p.deputy || p.lost) { refuse(`node ${this.d.cluster.id} has no process ${m.pid} away`); return }
    if (p.where === 'migrating') {
      p.pendingRejoin?.conn.close()
      p.pendingRejoin = { conn, m }
      return
    }
    const tail = p.tail
    if (tail !== null && tail.node === m.node && p.where !== m.node) {
      // it moved on from that node while the connection broke: the end of its output there first
      const where = `process ${m.pid} runs on node ${String(p.where)}`
      log('rejoin of %d by node %d refused: %s; taking the end of its output there', m.pid, m.node, where)
      conn.on('data', (type, d) => {
        let fd = type === 'O' ? 1 : type === 'E' ? 2 : 0
        if (type === 'W') { const f = parseFdFrame(d); if (f === null || f[0] <= 2) return; [fd, d] = f }
        if (fd === 0 || p.tail !== tail) return
        p.io.write(fd, d)
        tail.got.add(fd, d.length, Infinity)
      })
      conn.once('close', () => { if (p.tail === tail) void this.endTail(p) })
      void conn.send({ t: 'refuse', reason: where, got: tail.got.counts() }).catch(() => {})
      return
    }
    if (p.where !== m.node) { refuse(`process ${m.pid} runs ${p.where === 'home' ? 'at home' : `on node ${p.where}`}`); return }
    if (p.limbo) { clearTimeout(p.limbo); p.limbo = null }
    const old = p.conn
    p.conn = null
    old?.close()
    this.bind(p, conn, m.node)
    p.moving = false
    // (what it sent on the old connection is all counted: that connection is closed)
    void conn.send({ t: 'rejoin-ok', got: p.got.takeAll() }).catch(() => {})
    log('process %d: node %d is back (its pid there %d)', p.pid, m.node, m.guest)
    this.deliverSignals(p)
  }

  /** The remote's node is gone for good: the deputy reports it and exits. */
  private async lost (p: HomeProc, node: number): Promise<void> {
    if (p.where !== node || p.lost) return
    p.lost = true
    if (p.limbo) { clearTimeout(p.limbo); p.limbo = null }
    const msg = `hpcfs: process ${p.pid} was lost with node ${node}\n`
    log(msg.trim())
    await p.io.say(msg)
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
    p.io.close()
  }

  private forget (p: HomeProc): void {
    if (p.limbo) { clearTimeout(p.limbo); p.limbo = null }
    if (p.ackTimer) { clearTimeout(p.ackTimer); p.ackTimer = null }
    if (p.tail) { clearTimeout(p.tail.timer); p.tail = null }
    if (p.pendingRejoin) { p.pendingRejoin.conn.close(); p.pendingRejoin = null }
    this.detachDeputy(p)
    p.where = 'home'
    this.procs.delete(p.pid)
  }

  /** Brings every process of this node home (admin/bring); resolves when all are home. */
  async bringAll (): Promise<void> {
    await Promise.all([...this.procs.values()].filter(p => typeof p.where === 'number').map(p => this.requestMove(p.pid, 'home').catch(() => {})))
  }

  /** Closes every connection to a remote (the daemon stops). */
  close (): void {
    for (const p of this.procs.values()) p.conn?.close()
  }
}
