// The cluster node as a domain object: this node's admin state, its probe, its gossip, and the
// view of every known node. The FUSE tree, the daemon and the tests all work through this class;
// it knows nothing about FUSE.
import { clockIncarnation } from '../gossip/incarnation.js'
import debug from '../util/log.js'
import { DEFAULTS, SPEED, downAfterMs, type Config } from '../config.js'
import { Gossiper, type Member } from '../gossip/gossiper.js'
import { STATUS, type LocalInfo, type NodeInfo } from '../gossip/info.js'
import type { Keyring } from '../gossip/keyring.js'
import type { Address } from '../gossip/transport.js'
import { ErrnoError, einval } from '../util/errno.js'
import { expandMap, formatMap, MapError, parseMap, type MapNode } from '../map/map.js'
import type { Cluster, Migrator } from '../migrate/migrator.js'
import type { Balancer } from '../sched/balancer.js'
import type { Discovery } from '../discovery/discovery.js'

const log = debug('hpcfs:node')

/** What the node needs from its local probe (src/probe). */
export interface ProbeLike {
  snapshot (): { cpus: number, speed: number, load: number, localLoad: number, tmem: number, rmem: number, mem: number, util: number }
  setSpeed (speed: number): void
  /** A change of the node's runnable tasks the scheduler knows about (a process came in or left). */
  adjust?: (delta: number) => void
}

/** One node as the tree shows it. `up` false: the files read -101. */
export interface NodeView {
  id: number
  up: boolean
  self: boolean
  age: number // ms since the information was fresh (0 for self)
  status: number
  info: NodeInfo
}

export const DOWN = -101 // -ENETUNREACH, what openMosix printed for a node without information

/** Why a node without a key file refuses guests and keeps its processes. */
export const KEYLESS = 'this node has no cluster key (hpcd --key FILE, the same file on every node), so it refuses guests and keeps its processes'

export class HpcNode implements Cluster {
  readonly gossip: Gossiper
  /** Process migration (set by the daemon; absent in tests of the tree alone). */
  migrator: Migrator | null = null
  /** The scheduler (set by the daemon with the migrator). */
  balancer: Balancer | null = null
  /** Multicast discovery of nodes on the LAN (set by the daemon with --discover). */
  discovery: Discovery | null = null
  /** TCP transfer port; every node's sits at the same distance from its gossip port (default 4660 for 5428). */
  migPort = 4660
  /**
   * Started without a key file: the built-in key is known to everyone, and with it anyone could
   * send this node a process to run (any user's) or receive one of its processes. Such a node takes
   * no guests and keeps its processes (block and stay read 1 and cannot be cleared); its gossip
   * still works (README, trust model).
   */
  readonly keyless: boolean
  private blockFlag = false
  private stayFlag = false
  lstay = false
  private quietFlag = false
  private enabled = true
  decayInterval: number
  slowDecay: number
  fastDecay: number
  /** The static map (admin/config, --map); null when the cluster is open (joined by seeds). */
  private staticMap: Map<number, MapNode> | null = null

  constructor (readonly cfg: Config & { id: number }, readonly probe: ProbeLike, keys: Keyring, opts: { seeds: Address[], now: () => number, rng?: () => number, incarnation?: number }) {
    this.keyless = keys.insecure
    this.decayInterval = cfg.decayInterval
    this.slowDecay = cfg.slowDecay
    this.fastDecay = cfg.fastDecay
    this.gossip = new Gossiper({
      id: cfg.id,
      addr: cfg.addr,
      port: cfg.port,
      incarnation: opts.incarnation ?? clockIncarnation(),
      window: cfg.window,
      downAfter: downAfterMs(cfg, 1),
      sendToAnyCycle: cfg.sendToAnyCycle,
      seeds: opts.seeds,
      now: opts.now,
      rng: opts.rng ?? Math.random
    }, keys, () => this.localInfo())
  }

  get id (): number { return this.cfg.id }

  private localInfo (): LocalInfo {
    const s = this.probe.snapshot()
    return { status: this.localStatus(), cpus: s.cpus, speed: s.speed, load: s.load, tmem: s.tmem, rmem: s.rmem, mem: s.mem, util: s.util }
  }

  private localStatus (): number {
    return STATUS.CONFIGURED | (this.enabled ? STATUS.UP : 0) | (this.stay ? STATUS.STAY : 0) | (this.lstay ? STATUS.LSTAY : 0) |
      (this.block ? STATUS.BLOCK : 0) | (this.quietFlag ? STATUS.QUIET : 0)
  }

  /** Called by the driver once per interval. */
  tick (): void {
    this.gossip.opts.downAfter = downAfterMs(this.cfg, this.gossip.table.size + 1)
    // the balancer first: the load its bookkeeping changed (processes that came or left) goes out now
    this.balancer?.tick()
    this.gossip.tick()
  }

  // ---- admin state -------------------------------------------------------------------------

  get quiet (): boolean { return this.quietFlag }
  set quiet (v: boolean) { this.quietFlag = v; this.gossip.quiet = v || !this.enabled }

  /** admin/mospe: this node's id, or 0 when taken out of the cluster. */
  get mospe (): number { return this.enabled ? this.id : 0 }
  setMospe (v: number): void {
    if (v !== 0 && v !== this.id) throw einval(`this node is #${this.id}; its id cannot change at run time (write 0 or ${this.id})`)
    this.enabled = v !== 0
    this.quiet = this.quietFlag
    log('mospe %d', v)
  }

  get speed (): number { return this.probe.snapshot().speed }
  setSpeed (v: number): void {
    if (!Number.isInteger(v) || v < SPEED.min || v > SPEED.max) throw einval(`speed must be an integer ${SPEED.min}..${SPEED.max}`)
    this.probe.setSpeed(v)
  }

  setDecay (interval: number, slow: number, fast: number): void {
    if (!Number.isInteger(interval) || interval < 1 || interval > 3600) throw einval('decay interval must be 1..3600 seconds')
    for (const v of [slow, fast]) if (!Number.isInteger(v) || v < 0 || v > 1000) throw einval('decay must be per-mille 0..1000')
    this.decayInterval = interval
    this.slowDecay = slow
    this.fastDecay = fast
  }

  /** admin/block: refuse guests. Always on without a key. */
  get block (): boolean { return this.blockFlag || this.keyless }
  set block (v: boolean) { if (!v) this.needKey('block'); this.blockFlag = v }
  /** admin/stay: no process leaves this node automatically. Always on without a key (and none leaves at all). */
  get stay (): boolean { return this.stayFlag || this.keyless }
  set stay (v: boolean) { if (!v) this.needKey('stay'); this.stayFlag = v }

  private needKey (what: string): void {
    if (!this.keyless) return
    log('%s stays 1: no cluster key', what)
    throw new ErrnoError('EPERM', `${what}: ${KEYLESS}`)
  }

  get blocked (): boolean { return this.block }
  get keepsLocal (): boolean { return this.stay || this.lstay }

  /** admin/expel: refuse guests from now on and send the present ones home. */
  expel (): void {
    this.block = true
    void this.migrator?.expelAll()
  }

  /** admin/bring: keep local processes home from now on and bring the migrated ones back. */
  bring (): void {
    this.lstay = true
    void this.migrator?.bringAll()
  }

  addressOf (id: number): { host: string, port: number } | undefined {
    const v = this.view(id)
    if (!v) return undefined
    return { host: v.info.addr, port: v.info.port + (this.migPort - this.cfg.port) }
  }

  isUp (id: number): boolean { return this.view(id)?.up ?? false }

  // ---- membership -------------------------------------------------------------------------

  /** Checks map lines without installing them; throws EINVAL naming the bad line. */
  checkMapText (text: string): void {
    try { parseMap(text) } catch (e) {
      if (e instanceof MapError) throw einval(`bad map: ${e.message}`)
      throw e
    }
  }

  /** Installs a map (from --map or admin/config); throws EINVAL if it is bad or lacks this node. */
  setMapText (text: string): void {
    if (text.trim() === '') { this.installMap(null); return }
    let nodes
    try {
      nodes = expandMap(parseMap(text))
    } catch (e) {
      if (e instanceof MapError) throw einval(`bad map: ${e.message}`)
      throw e
    }
    if (!nodes.has(this.id)) throw einval(`bad map: this node (#${this.id}) is not in it`)
    this.installMap(nodes)
  }

  private installMap (nodes: Map<number, MapNode> | null): void {
    this.staticMap = nodes
    let members: Map<number, Member> | null = null
    if (nodes) {
      members = new Map()
      for (const [id, n] of nodes) members.set(id, { host: n.host, port: n.port })
    }
    this.gossip.setMembers(members)
    log('map: %s', nodes ? `${nodes.size} nodes` : 'open cluster')
  }

  /** admin/config: every known node (map plus gossip) in setpe grammar. */
  mapText (): string {
    const nodes: MapNode[] = []
    // a line without a port means the protocol's default port; any other port is written out
    const port = (p: number): number | undefined => p === DEFAULTS.port ? undefined : p
    nodes.push({ id: this.id, host: this.cfg.addr, port: port(this.cfg.port), aliases: this.staticMap?.get(this.id)?.aliases ?? [] })
    for (const k of this.gossip.table.values()) {
      nodes.push({ id: k.info.id, host: k.info.addr, port: port(k.info.port), aliases: this.staticMap?.get(k.info.id)?.aliases ?? [] })
    }
    const head = this.staticMap ? '# hpcfs cluster map (static map plus nodes heard by gossip)\n' : '# hpcfs cluster map (open cluster: nodes heard by gossip)\n'
    return head + formatMap(nodes)
  }

  // ---- node views -------------------------------------------------------------------------

  nodeIds (): number[] {
    const ids = this.gossip.table.ids()
    ids.push(this.id)
    return ids.sort((a, b) => a - b)
  }

  view (id: number): NodeView | undefined {
    if (id === this.id) {
      return { id, up: true, self: true, age: 0, status: this.localStatus(), info: this.gossip.self() }
    }
    const k = this.gossip.table.get(id)
    if (!k) return undefined
    const now = this.gossip.opts.now()
    const up = this.gossip.isUp(k, now)
    const age = now - k.freshAt
    return { id, up, self: false, age, status: up ? (k.info.status | STATUS.CONFIGURED | STATUS.UP) : STATUS.CONFIGURED, info: k.info }
  }
}

