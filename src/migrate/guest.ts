// The guest side of migration: processes running on this node whose home is another node.
// A guest arrives by an offer from its home (receive: migrate, accept or refuse, the image,
// running or failed), or, during N -> M, by an offer naming a ticket whose image comes from the
// node it ran on. Running here, its output goes home (O, E frames; W for its relayed fds above 2),
// its stdin and relayed input are pulled from home (relay.ts), and home's messages (signal, kill, hint, gohome, sendto) act on it. It leaves
// when home asks (gohome: sendHome; sendto: sendTo) or when this node expels it (sendHome with
// `leaving` first). A guest whose home connection closes is killed (its home is gone).
import { Readable } from 'node:stream'
import debug from '../util/log.js'
import type { Cluster, Dial } from './cluster.js'
import type { Engine, RestoredHandle } from './engine.js'
import { familyFailed, superviseFamily } from './family.js'
import { applyHint, defaultHints, type DecayHints } from './hints.js'
import type { Link } from './link.js'
import type { Message, MigrateMsg, SendToMsg } from './protocol.js'
import { GuestRelays, StdinPull, fdFrame, parseFdFrame } from './relay.js'
import { ImageCopy, ImageIn, TICKET_MS, Tickets, memoryRefusal, replay, sendImage, tee } from './transfer.js'

const log = debug('hpcfs:guest')

/** Why a guest does not move now: stdin it was handed is still in its pipe. */
export const UNREAD_STDIN = 'it has not read the stdin it was given yet (try again later)'

/** A process running here whose home is another node. */
export class Guest {
  leaving = false
  /** restored but stopped until home commits the move (`run`) */
  held = false
  /** pull-mode stdin (relay.ts) */
  readonly pull: StdinPull
  /** its relayed descriptors above 2 (relay.ts) */
  readonly relays: GuestRelays
  outputDone: Promise<void>
  /** When this node last asked home to move it on, or home last said no (0: never); the balancer waits 30 s after either. */
  moveAsked = 0
  /** Its decay hints, as home holds them (they travel with every move). */
  readonly decay: DecayHints = defaultHints()
  /** Removes its listeners from conn (when it leaves, or runs again here under another pid). */
  detach: () => void = () => {}
  /**
   * `since`: arrival here (ms); `age`: seconds it had run when it arrived (its start at home,
   * which its restored copy here does not show).
   */
  constructor (readonly pid: number, readonly home: number, readonly homePid: number, readonly conn: Link, readonly r: RestoredHandle, readonly since: number,
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
  /** N -> M on M: accepted moves whose image comes over another connection. */
  private readonly tickets = new Tickets()
  /**
   * Fault injection for tests (hpcd --test-fault): 'restore' makes every restore here fail, the
   * 1st, 3rd, ... early in the image (the sender's dump fails too), the 2nd, 4th, ... once all of
   * it has arrived (the sender has finished and removed its process).
   */
  testFault = ''
  private restores = 0
  /** How long an expelled guest waits for home's leaving-ok (ms). */
  leavingWaitMs = 2000

  constructor (private readonly d: GuestDeps) {}

  /** A new connection to the transfer port: its first message says what it is for. */
  accept (conn: Link): void {
    conn.once('msg', m => {
      if (m.t === 'migrate') void this.receive(conn, m).catch(e => log('receive: %s', (e as Error).message))
      else if (m.t === 'image' && this.tickets.claim(m.ticket, conn)) { /* N -> M: the image for an accepted move */ } else { void conn.send({ t: 'error', reason: `unexpected ${m.t}` }).catch(() => {}); conn.close() }
    })
  }

  /** An offer from a home: refused, or accepted, restored and started as a guest. */
  private async receive (conn: Link, m: MigrateMsg): Promise<void> {
    const { cluster, engine } = this.d
    const home = m.home
    const refuse = async (reason: string): Promise<void> => { await conn.send({ t: 'refuse', reason }); conn.close() }
    if (cluster.blocked) { await refuse('this node is blocked (admin/block)'); return }
    if (!cluster.addressOf(home)) { await refuse(`unknown home node ${home}`); return }
    const short = memoryRefusal(m.bytes, engine.availableBytes())
    if (short !== null) { await refuse(short); return }
    const hostinfo = await this.d.hostInfo().catch(() => '')
    const fault = this.testFault === 'restore' ? (this.restores++ % 2 === 0 ? 'early' : 'end') : ''
    const img = new ImageIn(fault)
    const ticket = m.ticket
    if (ticket !== undefined) {
      // N -> M: the image comes from the node the process runs on now
      const stop = this.tickets.wait(ticket, TICKET_MS, c => { img.feed(c); img.onDone(() => c.close()) }, () => img.image.destroy(new Error('the image did not come')))
      const onHomeClose = (): void => { stop(); img.image.destroy(new Error('home closed the connection')) }
      conn.once('close', onHomeClose)
      img.onDone(() => { stop(); conn.off('close', onHomeClose) })
    } else {
      img.feed(conn)
    }
    await conn.send({ t: 'accept', hostinfo })
    let r: RestoredHandle
    try {
      r = await engine.restore(img.image, { stdio: ['pipe', 'pipe', 'pipe'], clock: 'auto', family: true, hold: true })
    } catch (e) {
      img.done()
      log('restore from node %d failed: %s', home, (e as Error).message)
      await conn.send({ t: 'failed', reason: (e as Error).message }).catch(() => {})
      conn.close()
      return
    }
    img.done()
    const age = m.age ?? 0
    const g = this.startGuest(conn, r, home, m.pid, m.stdin === 'pull' ? 'pull' : 'none', Number.isFinite(age) ? age : 0)
    g.held = true // until home has heard `running` and says `run`: if the connection breaks first, it is removed
    if (m.decay === 'fast') g.decay.rate = 'fast'
    if (m.kind === 'cpujob' || m.kind === 'iojob') g.decay.kind = m.kind
    if (m.perMille !== undefined) g.decay.perMille = m.perMille
    if (m.interval !== undefined) g.decay.interval = m.interval
    await conn.send({ t: 'running', pid: r.pid, bytes: img.received, ms: img.ms() })
    log('guest %d from node %d (its pid %d) runs here', r.pid, home, g.homePid)
  }

  /** A restored process becomes a guest: its output, stdin, signals and end go over conn to home. */
  private startGuest (conn: Link, r: RestoredHandle, home: number, homePid: number, stdin: 'pull' | 'none', age: number): Guest {
    const { engine } = this.d
    const g = new Guest(r.pid, home, homePid, conn, r, Date.now(), stdin, age)
    this.guests.set(r.pid, g)
    r.stdout?.on('data', (d: Buffer) => { void conn.frame('O', d).catch(() => {}) })
    r.stderr?.on('data', (d: Buffer) => { void conn.frame('E', d).catch(() => {}) })
    for (const [fd, s] of g.relays.readers) s.on('data', (d: Buffer) => { void conn.frame('W', fdFrame(fd, d)).catch(() => {}) })
    r.stdin?.on('error', () => {})
    const onData = (type: string, d: Buffer): void => {
      if (type === 'R') {
        const f = parseFdFrame(d)
        if (f !== null) g.relays.input(f[0], f[1])
        return
      }
      if (type !== 'N') return
      g.pull.handed()
      r.stdin?.write(d)
    }
    const onMsg = (x: Message): void => { this.onGuestMsg(g, x).catch(e => log('guest %d: %s: %s', g.pid, x.t, (e as Error).message)) }
    const onClose = (): void => {
      if (this.guests.get(g.pid) !== g || g.leaving) return
      log('lost home of guest %d (node %d): killing it', g.pid, g.home)
      try { engine.kill(g.pid, 'SIGKILL') } catch {}
      this.guests.delete(g.pid)
    }
    conn.on('data', onData)
    conn.on('msg', onMsg)
    conn.on('close', onClose)
    g.detach = () => { conn.off('data', onData); conn.off('msg', onMsg); conn.off('close', onClose) }
    superviseFamily(g, r, () => this.guests.get(g.pid) === g)
    if (stdin === 'pull') g.pull.start(() => this.guests.get(g.pid) === g, () => g.leaving, n => { void conn.send({ t: 'want', n }).catch(() => {}) })
    for (const [fd, p] of g.relays.pulls) p.start(() => this.guests.get(g.pid) === g, () => g.leaving, n => { void conn.send({ t: 'want', n, fd }).catch(() => {}) })
    void r.exited.then(async st => {
      if (g.leaving) return
      await g.outputDone
      this.guests.delete(g.pid)
      await conn.send({ t: 'exit', code: st.code, signal: st.signal }).catch(() => {})
      conn.close()
    })
    return g
  }

  /** A message from the guest's home. */
  private async onGuestMsg (g: Guest, m: Message): Promise<void> {
    const { engine } = this.d
    switch (m.t) {
      case 'signal':
        try { engine.kill(g.pid, m.sig) } catch (e) { log('signal %d to %d: %s', m.sig, g.pid, (e as Error).message) }
        break
      case 'kill':
        try { engine.kill(g.pid, 'SIGKILL') } catch {}
        break
      case 'run':
        if (g.held) { g.held = false; g.r.go() }
        break
      case 'stdin-end':
        if (m.fd !== undefined) { g.relays.end(m.fd); break }
        g.pull.ended = true
        g.pull.wanting = false
        g.r.stdin?.end()
        break
      case 'gohome':
        await this.sendHome(g, true)
        break
      case 'sendto':
        await this.sendTo(g, m)
        break
      case 'hint':
        applyHint(g.decay, m.hint) // validated by the protocol (parseHint)
        break
      case 'stat?': {
        const i = engine.psInfo(g.pid)
        if (i) await g.conn.send({ t: 'stat', ...i }).catch(() => {})
        break
      }
      case 'family-failed':
        familyFailed(g, g.r, m)
        break
      case 'move-failed':
        g.moveAsked = Date.now()
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
    const [a, b] = await Promise.all([g.pull.settle(), g.relays.settle()])
    if (a && b) return true
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
      await Promise.race([ok, new Promise(resolve => setTimeout(resolve, this.leavingWaitMs))])
    }
    if (!await this.settleStdin(g)) return
    const copy = new ImageCopy()
    const used = this.d.engine.psInfo(g.pid)
    try {
      try {
        await this.d.engine.dump(g.pid, copy, {})
      } catch (e) {
        g.leaving = false
        await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
        return
      }
      await g.outputDone
      await this.imageHome(g, copy, used)
    } finally { copy.release() }
  }

  /**
   * Sends a stopped guest's image home. If home cannot run it (home-failed), it runs here again, a
   * guest on the same connection (`resumed`), or, failing that too, home hears `failed` and reports
   * it lost. It tells home the CPU ticks it used here (`used`). If the connection breaks first,
   * home has it or knows it lost: the copy is dropped.
   */
  private async imageHome (g: Guest, copy: ImageCopy, used?: { utime: number, stime: number }): Promise<void> {
    await sendImage(g.conn, copy, used).catch(e => log('sending guest %d home: %s', g.pid, (e as Error).message))
    const m = await g.conn.expect('home-ok', 'home-failed').catch(() => null)
    this.guests.delete(g.pid)
    if (m?.t !== 'home-failed') {
      if (m === null) log('connection to the home of guest %d broke after its image went: dropping the copy', g.pid)
      g.detach()
      g.conn.close()
      return
    }
    log('home could not run guest %d (%s): it runs here again', g.pid, m.reason)
    try {
      const again = await this.runAgain(g, copy)
      await g.conn.send({ t: 'resumed', pid: again.pid })
    } catch (e) {
      log('guest %d cannot run here again either: %s', g.pid, (e as Error).message)
      await g.conn.send({ t: 'failed', reason: (e as Error).message }).catch(() => {})
      g.conn.close()
    }
  }

  /** A guest that stopped to leave but could not: it runs here again from its image, as a guest on the same connection. */
  private async runAgain (g: Guest, copy: ImageCopy): Promise<Guest> {
    this.guests.delete(g.pid)
    g.detach()
    const again = await this.d.engine.restore(await replay(copy), { stdio: ['pipe', 'pipe', 'pipe'], clock: 'auto', family: true })
    const h = this.startGuest(g.conn, again, g.home, g.homePid, g.stdinMode, g.age + (Date.now() - g.since) / 1000)
    Object.assign(h.decay, g.decay)
    log('guest %d runs here again as %d', g.pid, again.pid)
    return h
  }

  /**
   * N -> M, on N: stops the guest and streams its image straight to node M (home named it and
   * gave M the ticket), keeping a copy until home says M runs it. A dump that fails leaves the
   * process running here. If M cannot run it, home says `resume` and it runs here again.
   */
  private async sendTo (g: Guest, m: SendToMsg): Promise<void> {
    if (g.leaving) return
    g.leaving = true
    if (!await this.settleStdin(g)) return
    const copy = new ImageCopy()
    try {
      await this.sendOn(g, m, copy)
    } finally { copy.release() }
  }

  private async sendOn (g: Guest, m: SendToMsg, copy: ImageCopy): Promise<void> {
    let bytes = 0
    let out: Link | undefined
    const used = this.d.engine.psInfo(g.pid)
    try {
      if (!this.d.cluster.addressOf(m.node)) throw new Error(`no address for node ${m.node}`)
      out = await this.d.dial(m.node)
      await out.send({ t: 'image', ticket: m.ticket })
      await this.d.engine.dump(g.pid, tee(out.imageWriter(), copy, n => { bytes += n }), m.hostinfo !== '' ? { target: m.hostinfo } : {})
    } catch (e) {
      out?.close()
      g.leaving = false
      log('guest %d stays: %s', g.pid, (e as Error).message)
      await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
      return
    }
    out.close()
    await g.outputDone
    await g.conn.send({ t: 'sent', bytes, utime: used?.utime ?? 0, stime: used?.stime ?? 0 }).catch(() => {})
    const r = await g.conn.expect('home-ok', 'resume').catch(() => undefined)
    if (r?.t !== 'resume') { this.guests.delete(g.pid); g.detach(); g.conn.close(); return }
    // M could not run it: it runs here again, still a guest on the same connection
    try {
      const again = await this.runAgain(g, copy)
      await g.conn.send({ t: 'resumed', pid: again.pid })
    } catch (e) {
      log('guest %d cannot run here again (%s): sending it home', g.pid, (e as Error).message)
      g.leaving = true
      this.guests.set(g.pid, g)
      await this.imageHome(g, copy)
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

  /** Kills every guest and closes its connection (the daemon stops). */
  close (): void {
    for (const g of this.guests.values()) { try { this.d.engine.kill(g.pid, 'SIGKILL') } catch {} g.conn.close() }
  }
}
