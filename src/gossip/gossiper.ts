// The gossip protocol (no master; MOSIX/gossimon style, see docs/gossip.md):
// every interval a node stamps its own entry fresh and pushes a window (its own entry plus the
// w-1 freshest entries it knows) to one node chosen at random: a live node, except with
// probability 1/max(sendToAnyCycle, live nodes) any known node, possibly one believed down, so
// that returning nodes are found again. Receivers keep, per node, the freshest entry seen. A node
// whose information is older than downAfter is reported down.
//
// The driver calls tick() every interval and onDatagram() for each datagram; time comes from
// now() (monotonic ms), randomness from rng(): the daemon passes real ones, the simulator virtual.
import debug from '../util/log.js'
import { decode, DecodeError, encode, MAX_WINDOW, type Destination, type WireEntry } from './codec.js'
import type { Keyring } from './keyring.js'
import { ReplayGuard } from './replay.js'
import { NodeTable, type Known } from './state.js'
import { addrKey, type Address, type Transport } from './transport.js'
import type { LocalInfo, NodeInfo } from './info.js'

const log = debug('hpcfs:gossip')

export interface GossipOptions {
  id: number
  addr: string
  port: number
  /** Origin's start time in its own clock (s); larger after a restart. */
  incarnation: number
  /** Entries per datagram, own included; capped at MAX_WINDOW. */
  window: number
  /** Age (ms) after which a node is reported down. */
  downAfter: number
  /** Send to any node (maybe down) with probability 1/max(this, live nodes). gossimon: 5. */
  sendToAnyCycle: number
  /** Seed addresses to contact before their ids are known (--join). */
  seeds: Address[]
  now: () => number
  rng: () => number
}

export interface GossipStats {
  sent: number
  sentBytes: number
  received: number
  receivedBytes: number
  merged: number
  droppedMalformed: number
  droppedVersion: number
  droppedBadmac: number
  droppedReplay: number
  droppedUnknown: number
  droppedSelf: number
  /** Signed for another node: a datagram captured on its way elsewhere and replayed here. */
  droppedMisdirected: number
  /** Gossip intervals ticked, quiet ones included (what a test waits for instead of a time). */
  rounds: number
}

export interface Member { host: string, port?: number }

export class Gossiper {
  readonly table = new NodeTable()
  readonly stats: GossipStats = {
    sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, merged: 0,
    droppedMalformed: 0, droppedVersion: 0, droppedBadmac: 0, droppedReplay: 0, droppedUnknown: 0, droppedSelf: 0, droppedMisdirected: 0, rounds: 0
  }

  /** When true the node sends nothing (admin/quiet, or mospe 0); it still listens. */
  quiet = false
  private seq = 0
  private packetSeq = 0
  private members: ReadonlyMap<number, Member> | null = null
  private readonly replay: ReplayGuard | null
  private transport: Transport | null = null

  constructor (readonly opts: GossipOptions, private readonly keys: Keyring | null, private readonly local: () => LocalInfo) {
    this.replay = keys ? new ReplayGuard() : null
  }

  attach (t: Transport): void { this.transport = t }

  get id (): number { return this.opts.id }
  get window (): number { return Math.max(1, Math.min(MAX_WINDOW, this.opts.window)) }

  /** The static map: only these nodes are accepted, and each is known (down until heard). null = open cluster. */
  setMembers (members: ReadonlyMap<number, Member> | null): void {
    this.members = members
    if (!members) {
      // open cluster: keep the nodes heard from, forget map entries never heard
      for (const k of [...this.table.values()]) if (k.freshAt === -Infinity) this.table.remove(k.info.id)
    } else {
      for (const id of this.table.ids()) if (!members.has(id)) this.table.remove(id)
      for (const [id, m] of members) {
        if (id === this.opts.id) continue
        this.table.placeholder({
          id, addr: m.host, port: m.port ?? this.opts.port, incarnation: 0, seq: 0,
          status: 0, cpus: 1, speed: 1, load: 0, tmem: 0, rmem: 0, mem: 0, util: 0
        })
      }
    }
  }

  /** This node's own entry, fresh. */
  self (): NodeInfo {
    return { ...this.local(), id: this.opts.id, addr: this.opts.addr, port: this.opts.port, incarnation: this.opts.incarnation, seq: this.seq }
  }

  age (k: Known, now = this.opts.now()): number { return now - k.freshAt }
  isUp (k: Known, now = this.opts.now()): boolean { return now - k.freshAt <= this.opts.downAfter }

  /** One gossip step: push the window to one chosen node. */
  tick (): void {
    this.seq++
    this.stats.rounds++
    if (this.quiet || !this.transport) return
    const to = this.chooseTarget()
    if (to) this.pushTo(to)
  }

  /**
   * A node found by discovery (src/discovery): unless the map leaves it out or its id is up at
   * another address, it is known from now on (down until heard) and, when not up yet, gets our
   * window at once, so that each side hears of the other within one round trip.
   */
  introduce (id: number, at: Address): 'learned' | 'known' | 'excluded' | 'conflict' {
    if (this.members && !this.members.has(id)) return 'excluded'
    const k = this.table.get(id)
    const moved = k !== undefined && (k.info.addr !== at.host || k.info.port !== at.port)
    if (k !== undefined && this.isUp(k)) return moved ? 'conflict' : 'known'
    if (moved && this.members) return 'conflict' // the map says where it is
    this.table.placeholder({
      id, addr: at.host, port: at.port, incarnation: 0, seq: 0, status: 0, cpus: 1, speed: 1, load: 0, tmem: 0, rmem: 0, mem: 0, util: 0
    })
    this.pushTo({ ...at, id })
    return 'learned'
  }

  /** Send our window (own entry plus the freshest known) to one node now (its id: the MAC covers the destination). */
  pushTo (to: Target): void {
    if (this.quiet || !this.transport) return
    const now = this.opts.now()
    const entries: WireEntry[] = [{ info: this.self(), age: 0 }]
    for (const k of this.table.freshest(this.window - 1, now, this.opts.downAfter)) {
      entries.push({ info: k.info, age: now - k.freshAt })
    }
    const dest = { id: to.id, addr: to.host, port: to.port }
    const buf = encode({ sender: this.opts.id, incarnation: this.opts.incarnation, seq: ++this.packetSeq, dest, entries }, this.keys)
    this.stats.sent++
    this.stats.sentBytes += buf.length
    this.transport.send(to, buf)
  }

  /** Where to send, and to whom: a node id, or 0 for a seed not yet known by id. */
  private chooseTarget (): Target | undefined {
    const { rng } = this.opts
    const known = this.table.size
    const seeds = this.opts.seeds
    const seed = (i: number): Target => ({ ...seeds[i], id: 0 })
    const any = (): Target | undefined => {
      const i = Math.floor(rng() * (known + seeds.length))
      if (i >= known) return seed(i - known)
      return targetOf(this.table.random(rng) as Known)
    }
    if (known === 0) return seeds.length ? seed(Math.floor(rng() * seeds.length)) : undefined
    // gossimon's mindead: a live node, except with probability 1/max(cycle, live nodes) any node
    // (maybe down, or a seed not yet known by id). Counting live nodes, not known ones, matters at
    // a cold start: a node that has heard only from B must still reach the others now and then.
    const up = this.table.freshest(known, this.opts.now(), this.opts.downAfter)
    if (up.length === 0 || rng() < 1 / Math.max(this.opts.sendToAnyCycle, up.length)) return any()
    return targetOf(up[Math.floor(rng() * up.length)])
  }

  /** Is a datagram for this node? Its id, or (id 0, sent to a seed) its address and port. */
  private isForMe (dest: Destination): boolean {
    return dest.id !== 0 ? dest.id === this.opts.id : dest.addr === this.opts.addr && dest.port === this.opts.port
  }

  /** Handles one datagram; anything malformed, forged or replayed is dropped and counted. */
  onDatagram (buf: Buffer, from: Address): void {
    this.stats.receivedBytes += buf.length
    let p
    try {
      p = decode(buf, this.keys)
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e
      if (e.reason === 'version') this.stats.droppedVersion++
      else if (e.reason === 'badmac') this.stats.droppedBadmac++
      else this.stats.droppedMalformed++
      log('dropped datagram from %s: %s', addrKey(from), e.message)
      return
    }
    if (p.sender === this.opts.id) { this.stats.droppedSelf++; log('datagram from %s claims my id %d', addrKey(from), p.sender); return }
    if (!this.isForMe(p.dest)) {
      this.stats.droppedMisdirected++
      log('datagram from node %d via %s is for node %d at %s:%d', p.sender, addrKey(from), p.dest.id, p.dest.addr, p.dest.port)
      return
    }
    if (this.members && !this.members.has(p.sender)) { this.stats.droppedUnknown++; log('node %d from %s is not in the map', p.sender, addrKey(from)); return }
    if (this.replay && !this.replay.accept(p.sender, p.incarnation, p.seq)) { this.stats.droppedReplay++; return }
    this.stats.received++
    const now = this.opts.now()
    for (const { info, age } of p.entries) {
      if (info.id === this.opts.id) continue
      if (this.members && !this.members.has(info.id)) continue
      if (info.id === p.sender && info.addr === '0.0.0.0') info.addr = from.host
      if (this.table.merge(info, age, now)) this.stats.merged++
    }
  }

  /** Forget a node (e.g. removed from the map). */
  forget (id: number): void { this.table.remove(id); this.replay?.forget(id) }
}

export interface Target extends Address { id: number }

const targetOf = (k: Known): Target => ({ host: k.info.addr, port: k.info.port, id: k.info.id })
