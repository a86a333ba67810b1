// Process migration between daemons: the facade the rest of the daemon uses. It listens on the
// transfer port (wire.ts) and joins the two roles:
//   home.ts      the processes whose home is this node, and the moves (home -> N, N -> home,
//                N -> M), all driven by home; the deputy; loss
//   guest.ts     the processes running here whose home is elsewhere (receive, run, leave)
//   relay.ts     fds 0-2 of a process away (output relay, pull-mode stdin)
//   transfer.ts  images (streaming, tickets for N -> M, bandwidth measurement)
//   family.ts    descendants come under discipline; a guest's fork, wait, ... are made at home
//   hints.ts     decay hints; protocol.ts the typed control messages; link.ts / wire.ts /
//                memlink.ts the connections; engine.ts the seam to src/ppm
// docs/migrate.md has the module map, the message table and the sequence pictures.
import { EventEmitter } from 'node:events'
import { createServer, type Socket, type Server } from 'node:net'
import debug from '../util/log.js'
import { DEFAULTS, rejoinWaitMs } from '../config.js'
import type { Keyring } from '../gossip/keyring.js'
import { einval } from '../util/errno.js'
import type { Cluster, Dial } from './cluster.js'
import { DialAhead } from './dialer.js'
import { realEngine, withPrecopy, type Engine } from './engine.js'
import { Descendants } from './family.js'
import { GuestSide, type Guest } from './guest.js'
import type { DecayHint } from './hints.js'
import { Home, type HomeProc } from './home.js'
import { heartbeat } from './lease.js'
import { GuestStates } from './state.js'
import { Conn } from './wire.js'
import { MIGRATION_PORT } from '../config.js'
import type { PsInfo } from '../util/procfs.js'

export type { Cluster } from './cluster.js'
export { DECAY_HINTS, applyHint, formatHints, parseHint, type DecayHint, type DecayHints } from './hints.js'
export { HomeProc, LOST_STATUS, type Where } from './home.js'
export { Guest } from './guest.js'
export { MEMORY_RESERVE } from './transfer.js'

const log = debug('hpcfs:migrate')

export class Migrator extends EventEmitter {
  /** Measured transfer bandwidth to each node (bytes/s), from the images that went there. */
  readonly bandwidth = new Map<number, number>()
  readonly home: Home
  readonly guestSide: GuestSide
  readonly procs: Map<number, HomeProc>
  readonly guests: Map<number, Guest>
  /** the children of processes under discipline come under it too (family.ts) */
  readonly family: Descendants
  /** Control messages dropped on this node's connections because they were not valid. */
  droppedMessages = 0
  /** A connection whose peer has been silent this long is cut off (src/migrate/lease.ts; config linkTimeout). */
  linkTimeoutMs = DEFAULTS.linkTimeout * 1000
  /** Processes with at least this many bytes resident move with pre-copy (config precopy, in MiB; 0 = never). */
  precopyBytes = DEFAULTS.precopy * 1048576
  private server: Server | null = null
  private readonly dialer: DialAhead
  private hostInfo: Promise<string> | null = null

  /** `engine` and `dial` are replaced in unit tests only. */
  constructor (readonly cluster: Cluster, private readonly keys: Keyring, readonly port = MIGRATION_PORT, private readonly engine: Engine = realEngine, dial?: Dial) {
    super()
    // between daemons a spare connection to a node is dialled ahead for the next move there (dialer.ts)
    this.dialer = new DialAhead(async node => {
      const a = this.cluster.addressOf(node)
      if (!a) throw einval(`no node ${node}`)
      return this.counted(await Conn.client(a.host, a.port, this.keys))
    }, node => this.cluster.isUp(node), () => this.linkTimeoutMs / 2)
    const connect: Dial = dial ?? this.dialer.dial
    const moves = withPrecopy(engine, () => this.precopyBytes)
    this.home = new Home({ cluster, engine: moves, dial: connect, bandwidth: this.bandwidth, moved: (pid, node) => this.emit('moved', pid, node) })
    this.guestSide = new GuestSide({ cluster, engine: moves, dial: connect, hostInfo: async () => await (this.hostInfo ?? Promise.resolve('')) })
    this.procs = this.home.procs
    this.guests = this.guestSide.guests
    this.guestSide.rejoined = (conn, m) => this.home.rejoin(conn, m)
    this.family = new Descendants(this.home)
  }

  /**
   * Guests outlive this daemon: their records go under stateDir (readopted by listen), and one out
   * of touch with its home for leaseMs is killed; home waits 2 × leaseMs + 5 s for a node to come
   * back with a process (config guestLease, stateDir).
   */
  keepGuests (stateDir: string, leaseMs: number): void {
    this.guestSide.states = GuestStates.forNode(stateDir, this.cluster.id)
    this.guestSide.leaseMs = leaseMs
    this.home.rejoinWaitMs = rejoinWaitMs(leaseMs / 1000)
  }

  /** Fault injection for tests (hpcd --test-fault), see GuestSide.testFault. */
  get testFault (): string { return this.guestSide.testFault }
  set testFault (f: string) { this.guestSide.testFault = f }

  // ---- listening -------------------------------------------------------------------------

  async listen (host: string): Promise<void> {
    this.hostInfo = this.engine.hostInfo()
    this.engine.standby?.(true) // no helper is spawned on a move's path (ppm.ts useStandby)
    this.hostInfo.catch(e => log('hostinfo: %s', (e as Error).message))
    const server = createServer(sock => { void this.accept(sock) })
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(this.port, host, () => { server.off('error', reject); resolve() }) })
    this.server = server
    this.family.start()
    log('transfer port %s:%d', host, this.port)
    // guests the last daemon of this node left to their keepers
    void this.guestSide.readopt().catch(e => log('readopt: %s', (e as Error).message))
  }

  async close (): Promise<void> {
    this.dialer.close()
    this.engine.standby?.(false)
    this.family.stop()
    this.guestSide.close()
    this.home.close()
    await new Promise<void>(resolve => this.server ? this.server.close(() => resolve()) : resolve())
  }

  private async accept (sock: Socket): Promise<void> {
    let conn: Conn
    try { conn = await Conn.server(sock, this.keys) } catch (e) { log('refused %s: %s', sock.remoteAddress, (e as Error).message); sock.destroy(); return }
    this.guestSide.accept(this.counted(conn))
  }

  private counted<C extends Conn> (c: C): C {
    c.on('dropped', () => { this.droppedMessages++ })
    heartbeat(c, this.linkTimeoutMs)
    return c
  }

  // ---- home side -------------------------------------------------------------------------

  /** Why a local process cannot move (empty when it can), from the engine's analysis. */
  async cantMove (pid: number): Promise<string[]> { return await this.home.cantMove(pid) }
  /** The process entry for a local pid (creating it puts the process under cluster discipline). */
  adopt (pid: number): HomeProc { return this.home.adopt(pid) }
  /** Asks for a move; validates at once (EINVAL, EAGAIN, ESRCH), moves in the background. */
  requestMove (pid: number, target: number | 'home'): Promise<void> { return this.home.requestMove(pid, target) }
  /** A decay hint for a process of this node (proc/<pid>/decay); it reaches the remote if it is away. */
  hint (pid: number, hint: DecayHint): void { this.home.hint(pid, hint) }
  /** What ps shows of a process of this node wherever it runs (home.ts). */
  async psInfo (pid: number): Promise<PsInfo | undefined> { return await this.home.psInfo(pid) }
  /** Brings every process of this node home (admin/bring); resolves when all are home. */
  async bringAll (): Promise<void> { await this.home.bringAll() }

  // ---- guest side ------------------------------------------------------------------------

  /** Stops the guest, drains its output, and streams its image home (gohome from home, or expel here). */
  async sendHome (g: Guest, byHome = false): Promise<void> { await this.guestSide.sendHome(g, byHome) }
  /** This node's balancer found a cheaper node for a guest: its home moves it (or says why not). */
  askHomeToMove (g: Guest, target: number, why: string): void { this.guestSide.askHomeToMove(g, target, why) }
  /** Sends every guest home (admin/expel); resolves when none is left. */
  async expelAll (): Promise<void> { await this.guestSide.expelAll() }
}
