// Automatic discovery of the nodes on a LAN (`hpcd --discover`), as openMosix's omdiscd did, but
// authenticated like gossip. Every node sends a signed announcement (announce.ts: "node ID gossips
// at ADDR:PORT") to a multicast group at start and every few seconds. A node that hears a valid one
// from a node it does not know, or believes down, introduces it to gossip (Gossiper.introduce),
// which sends that node our window at once: both know each other within a round trip, with no map
// and no seed. Anything malformed, signed with another key, replayed, claiming an address it was not
// sent from, or claiming an id that is up elsewhere is dropped and counted (admin/discovery-stats).
// The group is joined and sent to on the interface of the node's own address, so a node needs no
// default route (omdiscd did).
import { createSocket, type Socket } from 'node:dgram'
import debug from '../util/log.js'
import { DISCOVERY } from '../config.js'
import type { Gossiper } from '../gossip/gossiper.js'
import type { Keyring } from '../gossip/keyring.js'
import { ReplayGuard } from '../gossip/replay.js'
import type { Address } from '../gossip/transport.js'
import { AnnounceError, decodeAnnouncement, encodeAnnouncement } from './announce.js'

const log = debug('hpcfs:discovery')

export interface DiscoveryStats {
  sent: number
  /** Valid announcements from other nodes. */
  received: number
  /** Nodes introduced to gossip (unknown or down when announced). */
  learned: number
  droppedMalformed: number
  droppedVersion: number
  /** Signed with another key, or forged. */
  droppedBadmac: number
  droppedReplay: number
  /** The announced address is not the one the datagram came from. */
  droppedAddress: number
  /** An id that is up at another address, or this node's own id announced from elsewhere. */
  droppedConflict: number
  /** A node the static map leaves out. */
  droppedUnknown: number
}

export interface DiscoveryOptions {
  group: string
  port: number
  /** Seconds between announcements. */
  interval: number
  ttl: number
}

/** Defaults for a node whose gossip port is `gossipPort`. */
export function discoveryOptions (gossipPort: number): DiscoveryOptions {
  return { group: DISCOVERY.group, port: gossipPort + DISCOVERY.portOffset, interval: DISCOVERY.interval, ttl: DISCOVERY.ttl }
}

export class Discovery {
  readonly stats: DiscoveryStats = {
    sent: 0, received: 0, learned: 0, droppedMalformed: 0, droppedVersion: 0, droppedBadmac: 0,
    droppedReplay: 0, droppedAddress: 0, droppedConflict: 0, droppedUnknown: 0
  }

  private readonly replay = new ReplayGuard()
  private seq = 0
  private sock: Socket | null = null
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly gossip: Gossiper, private readonly keys: Keyring, readonly opts: DiscoveryOptions) {}

  /** Joins the group on the interface of the node's address and starts announcing. */
  static async start (gossip: Gossiper, keys: Keyring, opts: DiscoveryOptions): Promise<Discovery> {
    const d = new Discovery(gossip, keys, opts)
    await d.open()
    return d
  }

  private async open (): Promise<void> {
    const { addr } = this.gossip.opts
    const { group, port } = this.opts
    const sock = createSocket({ type: 'udp4', reuseAddr: true })
    try {
      // Bound to the group: only its datagrams arrive, and no unicast socket on the port is in the way.
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject)
        sock.bind(port, group, () => { sock.off('error', reject); resolve() })
      })
      sock.addMembership(group, addr)
      sock.setMulticastInterface(addr)
      sock.setMulticastTTL(this.opts.ttl)
      sock.setMulticastLoopback(true) // several nodes in one network namespace hear each other
    } catch (e) {
      sock.close()
      throw new Error(`discovery: cannot join ${group}:${port} on ${addr} (${(e as Error).message}); --addr must be the address of a LAN interface`)
    }
    sock.on('message', (msg, r) => this.onDatagram(msg, { host: r.address, port: r.port }))
    sock.on('error', e => { log('socket error: %s', e.message) })
    this.sock = sock
    log('announcing node %d on %s:%d via %s', this.gossip.id, group, port, addr)
    const loop = (): void => {
      this.announce()
      this.timer = setTimeout(loop, this.opts.interval * 1000 * (0.8 + 0.4 * Math.random()))
    }
    loop()
  }

  /** This node's next announcement. */
  announcement (): Buffer {
    const o = this.gossip.opts
    return encodeAnnouncement({ id: o.id, addr: o.addr, port: o.port, incarnation: o.incarnation, seq: ++this.seq }, this.keys)
  }

  /** Sends an announcement to the group, unless the node is quiet or out of the cluster (admin/quiet, mospe 0). */
  announce (): void {
    if (this.sock === null || this.gossip.quiet) return
    this.stats.sent++
    this.sock.send(this.announcement(), this.opts.port, this.opts.group, err => {
      if (err) log('announce: %s', err.message)
    })
  }

  /** Handles one datagram from the group. */
  onDatagram (buf: Buffer, from: Address): void {
    let a
    try {
      a = decodeAnnouncement(buf, this.keys)
    } catch (e) {
      if (!(e instanceof AnnounceError)) throw e
      if (e.reason === 'version') this.stats.droppedVersion++
      else if (e.reason === 'badmac') this.stats.droppedBadmac++
      else this.stats.droppedMalformed++
      log('dropped datagram from %s: %s', from.host, e.message)
      return
    }
    const me = this.gossip.opts
    if (a.id === me.id) {
      if (a.addr === me.addr && a.port === me.port) return // our own, looped back
      this.stats.droppedConflict++
      log('node %s:%d announces my id %d (ids from addresses can collide; give --id)', a.addr, a.port, a.id)
      return
    }
    if (a.addr !== from.host) {
      this.stats.droppedAddress++
      log('node %d announces %s but sent from %s', a.id, a.addr, from.host)
      return
    }
    if (!this.replay.accept(a.id, a.incarnation, a.seq)) {
      this.stats.droppedReplay++
      log('replayed announcement of node %d (incarnation %d, seq %d)', a.id, a.incarnation, a.seq)
      return
    }
    this.stats.received++
    const r = this.gossip.introduce(a.id, { host: a.addr, port: a.port })
    if (r === 'learned') {
      this.stats.learned++
      log('node %d at %s:%d', a.id, a.addr, a.port)
    } else if (r === 'conflict') {
      this.stats.droppedConflict++
      log('node %d announced at %s:%d but known elsewhere', a.id, a.addr, a.port)
    } else if (r === 'excluded') this.stats.droppedUnknown++
  }

  async close (): Promise<void> {
    clearTimeout(this.timer)
    const s = this.sock
    this.sock = null
    if (s !== null) await new Promise<void>(resolve => s.close(() => resolve()))
  }
}
