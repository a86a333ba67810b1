// Discrete-event simulation of the real gossip code (src/gossip/gossiper.ts) in virtual time.
//
// n unmodified Gossipers talk over a MemoryNetwork whose deliveries go through a binary-heap event
// queue; every node's now() is the queue's virtual clock and randomness comes from seeded
// generators, so a run is determined by its seed. Each node ticks once per interval at its own
// random phase (asynchronous rounds, as real daemons), or all at phase 0 with `sync`. Membership
// is pre-seeded as with a map file (every node knows every address, so targets are uniform among
// the other n−1 nodes, as the age model assumes). Datagrams are unsigned (no Keyring), which skips
// MAC and replay work but leaves the protocol itself unchanged.
//
// Cost: a tick is O(w) (window building, encoding, decoding, merging into a freshness-ordered
// list); sampling ages over all (node, entry) pairs is O(n²), so callers sample every k intervals.
import debug from '../util/log.js'
import { Gossiper } from '../gossip/gossiper.js'
import type { Known } from '../gossip/state.js'
import type { LocalInfo } from '../gossip/info.js'
import { MemoryNetwork, type Address, type Transport } from '../gossip/transport.js'
import { DEFAULTS, downAfterMs } from '../config.js'
import { EventQueue } from './eventqueue.js'
import { deriveSeed, mulberry32 } from './random.js'

const log = debug('hpcfs:sim')

export interface SimOptions {
  /** Number of nodes; ids are 1..n. */
  n: number
  /** Window (entries per datagram, own included). The codec caps it at MAX_WINDOW (29). */
  window: number
  /** Gossip interval in virtual ms (default 1000: ages in seconds = ages in intervals). */
  intervalMs?: number
  /** Fraction of datagrams lost (default 0). */
  loss?: number
  /** One-way delivery delay in virtual ms (default 0). */
  latencyMs?: number
  /** Age after which a node reads down; default as hpcd computes it (3·M + 5 intervals, ≥ 5 s). */
  downAfterMs?: number
  /** gossimon's INFOD_SEND_TO_ANY_CYCLE (default 5, as hpcd). */
  sendToAnyCycle?: number
  /** All nodes tick at phase 0 (synchronous rounds, send-all-then-receive) instead of random phases. */
  sync?: boolean
  /** Seed of every random stream (default 1). */
  seed?: number
}

export interface SimNode {
  readonly id: number
  readonly addr: Address
  gossiper: Gossiper
  transport: Transport | null
  /** What the node advertises; change it (e.g. speed) and the next tick publishes it. */
  readonly info: LocalInfo
  alive: boolean
  /** Bumped on kill/revive so stale tick events stop. */
  generation: number
  /** Offset of this node's ticks within the interval (ms). */
  readonly phase: number
  /** Virtual time of this incarnation's first tick: seq s was stamped at firstTick + (s−1)·interval. */
  firstTick: number
}

/** One snapshot of the ages held by the live nodes about the live nodes (in intervals). */
export interface AgeSample {
  /** Mean age over all (node, entry) pairs, i ≠ j, both alive, entry heard at least once. */
  avgAge: number
  /** Mean over nodes of the oldest entry a node holds. */
  meanMaxAge: number
  /** The oldest entry anywhere. */
  maxAge: number
  pairs: number
  /** Pairs never heard (a node has no information about another). */
  unknown: number
  /** Pairs whose entry is older than downAfter: a live node reported down. */
  falseDown: number
}

/** Records, for each live node, the first time its table satisfies a predicate about one node. */
export class Watch {
  readonly seenAt: Float64Array
  remaining = 0
  /** Virtual time when every node counted at creation satisfied the predicate (NaN until then). */
  doneAt = NaN

  constructor (readonly sim: Simulation, readonly id: number, readonly pred: (k: Known, g: Gossiper) => boolean, readonly since: number) {
    this.seenAt = new Float64Array(sim.n + 1).fill(NaN)
    for (const node of sim.nodes) {
      if (node.id === id || !node.alive) continue
      this.remaining++
      this.check(node)
    }
    if (this.remaining === 0) this.doneAt = since
  }

  check (node: SimNode): void {
    if (!Number.isNaN(this.seenAt[node.id])) return
    const k = node.gossiper.table.get(this.id)
    if (k === undefined || !this.pred(k, node.gossiper)) return
    this.seenAt[node.id] = this.sim.now
    if (--this.remaining === 0) { this.doneAt = this.sim.now; this.sim.unwatch(this) }
  }

  /** Time from `since` until the last node saw it, in intervals (NaN while some have not). */
  get allAfter (): number { return (this.doneAt - this.since) / this.sim.interval }
  /** Time from `since` until a fraction q of the nodes saw it, in intervals. */
  quantileAfter (q: number): number {
    const t = [...this.seenAt].filter((x, id) => id !== this.id && !Number.isNaN(x)).sort((a, b) => a - b)
    const need = Math.ceil(q * (t.length + this.remaining))
    return need <= t.length && need > 0 ? (t[need - 1] - this.since) / this.sim.interval : NaN
  }
}

export class Simulation {
  readonly q = new EventQueue()
  readonly net: MemoryNetwork
  readonly nodes: SimNode[] = []
  readonly n: number
  readonly window: number
  readonly interval: number
  readonly downAfter: number
  readonly members: Map<number, { host: string, port: number }>
  private readonly rng: () => number
  private readonly opts: SimOptions
  private watches: Watch[] = []
  /** Bytes and datagrams sent by gossipers since replaced (killed/revived). */
  private retiredBytes = 0
  private retiredPackets = 0

  constructor (opts: SimOptions) {
    if (!(opts.n >= 2 && opts.n <= 65535)) throw new RangeError(`n must be 2..65535 (got ${opts.n})`)
    this.opts = opts
    this.n = opts.n
    this.window = opts.window
    this.interval = opts.intervalMs ?? 1000
    const seed = opts.seed ?? 1
    this.rng = mulberry32(deriveSeed(seed, 0))
    const phaseRng = mulberry32(deriveSeed(seed, 1))
    this.downAfter = opts.downAfterMs ?? downAfterMs({ ...DEFAULTS, window: opts.window, interval: this.interval / 1000 }, opts.n)
    this.net = new MemoryNetwork({
      loss: opts.loss ?? 0,
      latency: opts.latencyMs ?? 0,
      rng: mulberry32(deriveSeed(seed, 2)),
      schedule: (d, fn) => this.q.schedule(d, fn)
    })
    this.members = new Map()
    for (let id = 1; id <= this.n; id++) this.members.set(id, { host: `10.${(id >> 16) & 255}.${(id >> 8) & 255}.${id & 255}`, port: DEFAULTS.port })
    for (let id = 1; id <= this.n; id++) {
      const m = this.members.get(id) as { host: string, port: number }
      const node: SimNode = {
        id,
        addr: { host: m.host, port: m.port },
        info: { status: 3, cpus: 1, speed: 10000, load: 0, tmem: 1 << 30, rmem: 1 << 29, mem: 1 << 29, util: 0 },
        alive: false,
        generation: 0,
        phase: opts.sync ? 0 : Math.floor(phaseRng() * this.interval),
        gossiper: null as unknown as Gossiper,
        transport: null,
        firstTick: 0
      }
      this.nodes.push(node)
      this.start(node, 1)
    }
    log('n=%d w=%d interval=%dms downAfter=%dms loss=%d latency=%dms', this.n, this.window, this.interval, this.downAfter, opts.loss ?? 0, opts.latencyMs ?? 0)
  }

  get now (): number { return this.q.now }
  /** Virtual time in intervals. */
  get intervals (): number { return this.q.now / this.interval }
  node (id: number): SimNode { return this.nodes[id - 1] }
  get alive (): number { let a = 0; for (const x of this.nodes) if (x.alive) a++; return a }

  private start (node: SimNode, incarnation: number): void {
    const g = new Gossiper({
      id: node.id,
      addr: node.addr.host,
      port: node.addr.port,
      incarnation,
      window: this.window,
      downAfter: this.downAfter,
      sendToAnyCycle: this.opts.sendToAnyCycle ?? DEFAULTS.sendToAnyCycle,
      seeds: [],
      now: () => this.q.now,
      rng: this.rng
    }, null, () => node.info)
    g.setMembers(this.members)
    node.gossiper = g
    node.transport = this.net.bind(node.addr, (buf, from) => {
      g.onDatagram(buf, from)
      if (this.watches.length) for (const w of this.watches) if (w.id !== node.id) w.check(node)
    })
    g.attach(node.transport)
    node.alive = true
    const gen = ++node.generation
    const tick = (): void => {
      if (node.generation !== gen) return
      g.tick()
      this.q.schedule(this.interval, tick)
    }
    // first tick at the node's phase, at or after now
    const base = Math.floor(this.q.now / this.interval) * this.interval + node.phase
    node.firstTick = base >= this.q.now ? base : base + this.interval
    this.q.at(node.firstTick, tick)
  }

  /** Runs the simulation for k more intervals. */
  runIntervals (k: number): void { this.q.runUntil(this.q.now + k * this.interval) }
  /** Runs until virtual time t (ms). */
  runUntil (t: number): void { this.q.runUntil(t) }

  /** Stops a node: it neither sends nor receives (its address drops datagrams). */
  kill (id: number): void {
    const node = this.node(id)
    if (!node.alive) return
    node.alive = false
    node.generation++
    node.gossiper.quiet = true
    this.retiredBytes += node.gossiper.stats.sentBytes
    this.retiredPackets += node.gossiper.stats.sent
    node.gossiper.stats.sentBytes = node.gossiper.stats.sent = 0
    void node.transport?.close()
    node.transport = null
  }

  /** Restarts a killed node as a new process: larger incarnation, empty table (map known). */
  revive (id: number): void {
    const node = this.node(id)
    if (node.alive) return
    this.start(node, node.gossiper.opts.incarnation + 1)
  }

  /** Changes what a node advertises; it goes out with its next tick. */
  setSpeed (id: number, speed: number): void { this.node(id).info.speed = speed }

  /** Starts recording when each live node first holds an entry about `id` satisfying pred. */
  watch (id: number, pred: (k: Known, g: Gossiper) => boolean): Watch {
    const w = new Watch(this, id, pred, this.q.now)
    if (w.remaining > 0) this.watches.push(w)
    return w
  }

  unwatch (w: Watch): void { this.watches = this.watches.filter(x => x !== w) }

  /** Total bytes and datagrams sent so far by all gossipers, including replaced ones. */
  sent (): { bytes: number, packets: number } {
    let bytes = this.retiredBytes
    let packets = this.retiredPackets
    for (const x of this.nodes) { bytes += x.gossiper.stats.sentBytes; packets += x.gossiper.stats.sent }
    return { bytes, packets }
  }

  /** Ages (in intervals) over all (live node, live node's entry) pairs: O(n²). */
  sampleAges (): AgeSample {
    const now = this.q.now
    const iv = this.interval
    let sum = 0; let pairs = 0; let unknown = 0; let falseDown = 0; let maxSum = 0; let holders = 0; let maxAll = 0
    const aliveById = new Uint8Array(this.n + 1)
    for (const x of this.nodes) if (x.alive) aliveById[x.id] = 1
    for (const x of this.nodes) {
      if (!x.alive) continue
      let max = 0
      let any = false
      for (const k of x.gossiper.table.values()) {
        if (aliveById[k.info.id] === 0) continue
        if (k.freshAt === -Infinity) { unknown++; continue }
        const age = now - k.freshAt
        if (age > this.downAfter) falseDown++
        sum += age
        pairs++
        if (age > max) max = age
        any = true
      }
      if (any) { maxSum += max; holders++; if (max > maxAll) maxAll = max }
    }
    return {
      avgAge: pairs ? sum / pairs / iv : NaN,
      meanMaxAge: holders ? maxSum / holders / iv : NaN,
      maxAge: maxAll / iv,
      pairs,
      unknown,
      falseDown
    }
  }

  /**
   * Ages as they really are against ages as the nodes believe them (in intervals), over all pairs
   * of live nodes holding the origin's current incarnation. The true age counts from the moment
   * the origin stamped that seq; the believed one is `now − freshAt`, which misses transit time.
   */
  trueAges (): { believed: number, truth: number, pairs: number } {
    const now = this.q.now
    let b = 0; let t = 0; let pairs = 0
    for (const x of this.nodes) {
      if (!x.alive) continue
      for (const k of x.gossiper.table.values()) {
        const o = this.nodes[k.info.id - 1]
        if (!o.alive || k.freshAt === -Infinity || k.info.incarnation !== o.gossiper.opts.incarnation) continue
        b += now - k.freshAt
        t += now - (o.firstTick + (k.info.seq - 1) * this.interval)
        pairs++
      }
    }
    return { believed: pairs ? b / pairs / this.interval : NaN, truth: pairs ? t / pairs / this.interval : NaN, pairs }
  }

  /**
   * After a kill at `killedAt`, once the last news of the node has stopped spreading (≥ downAfter
   * later): when each live node started reporting it down, in intervals after the kill.
   */
  downTimes (id: number, killedAt: number): { first: number, all: number, stillUp: number } {
    let first = Infinity; let all = -Infinity; let stillUp = 0
    for (const x of this.nodes) {
      if (!x.alive || x.id === id) continue
      const k = x.gossiper.table.get(id)
      if (k === undefined) continue
      if (x.gossiper.isUp(k)) stillUp++
      const downAt = Math.max(killedAt, k.freshAt + this.downAfter)
      if (downAt < first) first = downAt
      if (downAt > all) all = downAt
    }
    return { first: (first - killedAt) / this.interval, all: (all - killedAt) / this.interval, stillUp }
  }
}
