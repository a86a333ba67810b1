// A fast engine for large clusters: the same gossip algorithm as src/gossip/gossiper.ts, kept in
// flat typed arrays instead of n Gossiper objects exchanging encoded datagrams.
//
// Why it exists: the real code costs ~15–25 µs per tick at n = 64 and ~60 µs at n = 1024 (string
// IP conversion per entry, object spreads, per-entry objects, and cache misses walking n linked
// freshness lists of n entries each; see docs/gossip.md). The warm-up the benchmark needs is
// 3·M ≈ 3(n−1)(ln n + γ)/w intervals of n ticks each, so n ≥ 1024 takes minutes with real
// Gossipers. This engine does a tick in ~1–3 µs and is cross-checked against the real one (test
// sim-fast.test.ts): same rules, same statistics.
//
// What it mirrors, rule by rule (gossiper.ts / state.ts):
// - tick: the node pushes its own entry (age 0) and its w−1 freshest foreign entries, stopping at
//   the first one older than downAfter (NodeTable.freshest);
// - target (chooseTarget): with probability 1/max(sendToAnyCycle, n−1) any other node, else up to
//   8 uniform draws for a node that reads up, else a random node that reads up, else any node;
// - merge: a receiver keeps an entry only if it is newer than what it holds (with zero latency
//   and integer ms, newer seq ⇔ later stamp time, so comparing stamp times is the same test);
//   among equal stamp times the entry merged last counts as fresher, as NodeTable.link orders it;
// - datagram size: HEADER_LEN + entries × ENTRY_LEN (unsigned, as in the simulator).
// Not mirrored: latency (deliveries are immediate), kill/revive, keys. Use Simulation for those.
import debug from '../util/log.js'
import { ENTRY_LEN, HEADER_LEN } from '../gossip/codec.js'
import { DEFAULTS, downAfterMs } from '../config.js'
import { deriveSeed, mulberry32 } from './random.js'
import type { AgeSample } from './simulator.js'

const log = debug('hpcfs:sim')

/** Marks a pair never heard; times are integer ms below 2^31 (≈ 24 virtual days). */
const NEVER = -2147483648

export interface FastSimOptions {
  n: number
  /** Window, own entry included. Not limited by the codec's MAX_WINDOW (29). */
  window: number
  intervalMs?: number
  loss?: number
  downAfterMs?: number
  sendToAnyCycle?: number
  sync?: boolean
  seed?: number
  /**
   * Probability of sending to any node: 1/max(sendToAnyCycle, m) with m = 'known': every node in
   * the table (gossiper.ts before the cold-start fix); 'heard': the nodes heard from so far, close
   * to gossimon's #alive and to gossiper.ts now, which counts nodes that read up (expiry is
   * ignored here). Default 'heard'.
   */
  anyRule?: 'known' | 'heard'
}

export class FastSimulation {
  readonly n: number
  readonly window: number
  readonly interval: number
  readonly downAfter: number
  /** fresh[i·n + j]: time (integer ms) at which node i's information about node j was fresh (NEVER: unknown). */
  private readonly fresh: Int32Array
  /** top[i·k ..]: ids of node i's k = w−1 freshest foreign entries, freshest first. */
  private readonly top: Int32Array
  /** topF[i·k ..]: the stamp times of those entries (kept beside the ids: no cache miss per look). */
  private readonly topF: Int32Array
  private readonly topLen: Int32Array
  private readonly k: number
  private readonly order: Int32Array // node indexes sorted by phase
  /** heard[i]: how many other nodes node i has heard of (the 'heard' sendToAny rule). */
  private readonly heard: Int32Array
  /** Pairs (i, j ≠ i) where i has heard of j; n(n−1) once the cluster has converged. */
  knownPairs = 0
  /** Time (ms) at which every node had heard of every other (NaN until then). */
  allKnownAt = NaN
  private readonly anyRule: 'known' | 'heard'
  private readonly cycleParam: number
  private readonly phase: Float64Array
  private readonly rng: () => number
  private readonly netRng: () => number
  private readonly loss: number
  private readonly anyP: number
  private cycle = 0 // current interval index
  private pos = 0 // next position in `order` within the current interval
  now = 0
  bytes = 0
  packets = 0
  lost = 0
  private readonly win: Int32Array
  private readonly winFresh: Int32Array
  private watchId = -1
  private watchFrom = 0
  private watchSeen: Float64Array | null = null
  private watchRemaining = 0

  constructor (opts: FastSimOptions) {
    const n = opts.n
    if (!(n >= 3 && n <= 65535)) throw new RangeError(`n must be 3..65535 (got ${n})`)
    if (!(opts.window >= 1)) throw new RangeError(`window must be ≥ 1 (got ${opts.window})`)
    this.n = n
    this.window = opts.window
    this.k = Math.min(opts.window - 1, n - 1)
    this.interval = opts.intervalMs ?? 1000
    const seed = opts.seed ?? 1
    this.rng = mulberry32(deriveSeed(seed, 0))
    const phaseRng = mulberry32(deriveSeed(seed, 1))
    this.netRng = mulberry32(deriveSeed(seed, 2))
    this.loss = opts.loss ?? 0
    this.downAfter = opts.downAfterMs ?? downAfterMs({ ...DEFAULTS, window: Math.min(opts.window, n), interval: this.interval / 1000 }, n)
    this.cycleParam = opts.sendToAnyCycle ?? DEFAULTS.sendToAnyCycle
    this.anyP = 1 / Math.max(this.cycleParam, n - 1)
    this.anyRule = opts.anyRule ?? 'heard' // as the Gossiper does since the cold-start fix
    this.fresh = new Int32Array(n * n).fill(NEVER)
    this.heard = new Int32Array(n)
    this.top = new Int32Array(n * Math.max(1, this.k))
    this.topF = new Int32Array(n * Math.max(1, this.k))
    this.topLen = new Int32Array(n)
    this.phase = new Float64Array(n)
    for (let i = 0; i < n; i++) this.phase[i] = opts.sync ? 0 : Math.floor(phaseRng() * this.interval)
    this.order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => this.phase[a] - this.phase[b] || a - b)
    this.win = new Int32Array(this.k + 1)
    this.winFresh = new Int32Array(this.k + 1)
    log('n=%d w=%d downAfter=%dms', n, opts.window, this.downAfter)
  }

  get intervals (): number { return this.now / this.interval }

  /** Runs every tick scheduled at or before t (ms), then sets now = t. */
  runUntil (t: number): void {
    const n = this.n
    for (;;) {
      if (this.pos === n) { this.pos = 0; this.cycle++ }
      const i = this.order[this.pos]
      const at = this.cycle * this.interval + this.phase[i]
      if (at > t) break
      this.now = at
      this.pos++
      this.tick(i)
    }
    if (t > this.now) this.now = t
  }

  runIntervals (k: number): void { this.runUntil(this.now + k * this.interval) }

  private isUp (i: number, j: number): boolean { return this.now - this.fresh[i * this.n + j] <= this.downAfter }

  /** Index of another node: the table's list holds every other node in id order. */
  private other (s: number): number {
    const x = Math.floor(this.rng() * (this.n - 1))
    return x < s ? x : x + 1
  }

  private target (s: number): number {
    const p = this.anyRule === 'known' ? this.anyP : 1 / Math.max(this.cycleParam, this.heard[s])
    if (this.rng() < p) return this.other(s)
    for (let tries = 0; tries < 8; tries++) {
      const t = this.other(s)
      if (this.isUp(s, t)) return t
    }
    const up: number[] = []
    for (let j = 0; j < this.n; j++) if (j !== s && this.isUp(s, j)) up.push(j)
    if (up.length) return up[Math.floor(this.rng() * up.length)]
    return this.other(s)
  }

  private tick (s: number): void {
    const n = this.n
    const now = this.now
    const to = this.target(s)
    // window: own entry, then the freshest foreign entries up to the first one older than downAfter
    let c = 0
    this.win[c] = s; this.winFresh[c++] = now
    const base = s * this.k
    for (let p = 0; p < this.topLen[s]; p++) {
      const j = this.top[base + p]
      const f = this.topF[base + p]
      if (now - f > this.downAfter) break
      this.win[c] = j; this.winFresh[c++] = f
    }
    this.packets++
    this.bytes += HEADER_LEN + c * ENTRY_LEN
    if (this.loss > 0 && this.netRng() < this.loss) { this.lost++; return }
    for (let e = 0; e < c; e++) {
      const j = this.win[e]
      if (j !== to) this.merge(to, j, this.winFresh[e])
    }
  }

  private merge (r: number, j: number, f: number): void {
    const idx = r * this.n + j
    const old = this.fresh[idx]
    if (!(f > old)) return
    this.fresh[idx] = f
    if (old === NEVER) {
      this.heard[r]++
      if (++this.knownPairs === this.n * (this.n - 1)) this.allKnownAt = this.now
    }
    if (j === this.watchId && f >= this.watchFrom && this.watchSeen && Number.isNaN(this.watchSeen[r])) {
      this.watchSeen[r] = this.now
      this.watchRemaining--
    }
    const k = this.k
    if (k === 0) return
    const base = r * k
    const top = this.top
    const topF = this.topF
    let len = this.topLen[r]
    // drop j if it is in the list, then insert it before the first entry no fresher than f
    let p = 0
    while (p < len && top[base + p] !== j) p++
    if (p < len) {
      for (; p < len - 1; p++) { top[base + p] = top[base + p + 1]; topF[base + p] = topF[base + p + 1] }
      len--
    }
    let q = 0
    while (q < len && topF[base + q] > f) q++
    if (q >= k) { this.topLen[r] = len; return }
    const end = len < k ? len : k - 1
    for (let x = end; x > q; x--) { top[base + x] = top[base + x - 1]; topF[base + x] = topF[base + x - 1] }
    top[base + q] = j
    topF[base + q] = f
    this.topLen[r] = end + 1
  }

  /** Ages (in intervals) over all pairs i ≠ j: O(n²). */
  sampleAges (): AgeSample {
    const n = this.n
    const now = this.now
    let sum = 0; let pairs = 0; let unknown = 0; let falseDown = 0; let maxSum = 0; let holders = 0; let maxAll = 0
    for (let i = 0; i < n; i++) {
      let max = 0; let any = false
      const row = i * n
      for (let j = 0; j < n; j++) {
        if (j === i) continue
        const f = this.fresh[row + j]
        if (f === NEVER) { unknown++; continue }
        const age = now - f
        if (age > this.downAfter) falseDown++
        sum += age; pairs++; any = true
        if (age > max) max = age
      }
      if (any) { maxSum += max; holders++; if (max > maxAll) maxAll = max }
    }
    const iv = this.interval
    return { avgAge: pairs ? sum / pairs / iv : NaN, meanMaxAge: holders ? maxSum / holders / iv : NaN, maxAge: maxAll / iv, pairs, unknown, falseDown }
  }

  /** Nodes that have heard of at most m others. */
  nodesHearingAtMost (m: number): number {
    let c = 0
    for (let i = 0; i < this.n; i++) if (this.heard[i] <= m) c++
    return c
  }

  /** Ids (1-based) of the foreign entries node `id` would put in its window now, freshest first. */
  windowOf (id: number): number[] {
    const s = id - 1
    const out: number[] = []
    for (let p = 0; p < this.topLen[s]; p++) {
      if (this.now - this.topF[s * this.k + p] > this.downAfter) break
      out.push(this.top[s * this.k + p] + 1)
    }
    return out
  }

  /** Time (ms) at which node `id` last had fresh information about node `of` (null: never heard). */
  freshAt (id: number, of: number): number | null {
    const f = this.fresh[(id - 1) * this.n + of - 1]
    return f === NEVER ? null : f
  }

  sent (): { bytes: number, packets: number } { return { bytes: this.bytes, packets: this.packets } }

  /**
   * A changed value at node `id` (1-based) now: it leaves with that node's next tick. Runs until
   * every other node holds it (or the limit) and returns intervals until half, 99% and all had it.
   */
  propagate (id: number, limitIntervals: number): { half: number, p99: number, all: number } {
    const j = id - 1
    const t0 = this.now
    // the next stamp of node j is its next tick strictly after now
    let next = Math.floor(t0 / this.interval) * this.interval + this.phase[j]
    while (next <= t0) next += this.interval
    this.watchId = j; this.watchFrom = next
    this.watchSeen = new Float64Array(this.n).fill(NaN)
    this.watchRemaining = this.n - 1
    const stop = t0 + limitIntervals * this.interval
    while (this.watchRemaining > 0 && this.now < stop) this.runIntervals(1)
    const times = [...this.watchSeen].filter(x => !Number.isNaN(x)).sort((a, b) => a - b)
    this.watchId = -1; this.watchSeen = null
    const q = (x: number): number => {
      const need = Math.ceil(x * (this.n - 1))
      return need <= times.length ? (times[need - 1] - t0) / this.interval : NaN
    }
    return { half: q(0.5), p99: q(0.99), all: q(1) }
  }
}
