// Connections to other nodes' transfer ports, dialled ahead of the moves that need them. Opening
// one costs a TCP connect and the key challenge-response (wire.ts): one and a half round trips and
// as many turns of both daemons' event loops, a large part of a small process's move. So a node
// that a connection has been dialled to once gets a spare: a connection opened and authenticated
// ahead, idle until the next move there takes it (and a new spare is dialled behind it). A spare
// is an ordinary connection that has not sent its first message yet: the side that accepted it
// waits for that message (pings aside, guest.ts `accept`), and the heartbeat (lease.ts) keeps it
// alive and cuts it off if its node goes silent. At most one spare per node; a spare that closes
// is forgotten; none is dialled to a node that is down. Nothing about a connection's security
// changes: a spare has passed the same handshake, and what it carries is checked as on any other.
import debug from '../util/log.js'
import { monotonicMs } from '../util/clock.js'
import { SPARE_REPLACE_MS } from '../config.js'
import type { Dial } from './cluster.js'
import type { Link } from './link.js'

const log = debug('hpcfs:dialer')


export class DialAhead {
  private readonly spares = new Map<number, Promise<Link | null>>()
  /** The spares whose connection is open (a spare still connecting is not waited for). */
  private readonly open = new Map<number, Link>()
  private readonly timers = new Map<number, NodeJS.Timeout>()
  private stopped = false
  /** Moves that found a spare ready, and spares not dialled when their time came (node down, or one there) (for tests and logs). */
  hits = 0
  skips = 0

  /**
   * `connect` opens a new connection; `wanted(node)`: whether a spare to node is worth keeping (it
   * is up); `freshMs()`: a spare not heard from for longer (its pings stopped: a peer gone without a
   * reset) is not handed out.
   */
  constructor (private readonly connect: Dial, private readonly wanted: (node: number) => boolean, private readonly freshMs: () => number = () => Infinity) {}

  /**
   * A connection to node: its spare when one is open and its peer was heard lately, else a new one
   * (a spare still connecting stays the next one; a stale one is closed). A spare follows.
   */
  readonly dial: Dial = async node => {
    const ready = this.open.get(node)
    if (ready !== undefined) {
      this.spares.delete(node)
      this.open.delete(node)
      this.later(node)
      if (!ready.closed && monotonicMs() - ready.heardAt <= this.freshMs()) {
        this.hits++
        log('node %d: a spare connection', node)
        return ready
      }
      log('node %d: the spare was not heard for %d ms: a new connection', node, monotonicMs() - ready.heardAt)
      ready.close()
    } else this.later(node)
    return await this.connect(node)
  }

  /** Dials a spare to node after SPARE_REPLACE_MS, unless it has one or is not wanted. */
  private later (node: number): void {
    if (this.stopped || this.timers.has(node)) return
    const t = setTimeout(() => {
      this.timers.delete(node)
      if (this.stopped || this.spares.has(node) || !this.wanted(node)) { this.skips++; return }
      const p = this.connect(node).then(c => {
        if (this.stopped) { c.close(); return null }
        c.once('close', () => { if (this.spares.get(node) === p) { this.spares.delete(node); this.open.delete(node) } })
        if (this.spares.get(node) === p) this.open.set(node, c)
        return c
      }, (e: Error) => {
        log('node %d: no spare connection: %s', node, e.message)
        if (this.spares.get(node) === p) this.spares.delete(node)
        return null
      })
      this.spares.set(node, p)
    }, SPARE_REPLACE_MS)
    t.unref()
    this.timers.set(node, t)
  }

  /** Closes every spare; dials no more. */
  close (): void {
    this.stopped = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    for (const p of this.spares.values()) void p.then(c => c?.abort())
    this.spares.clear()
    this.open.clear()
  }
}
