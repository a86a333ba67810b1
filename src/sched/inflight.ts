// Moves in flight, as one node knows them: the load (and memory) it expects another node to have
// gained or lost through moves it made or saw, counted in its view of that node until that node's
// own news shows them (docs/sched.md "Loads that know about moves"). Gossip shows a node's load as
// it was an interval or two ago, smoothed: without this, a node that has just sent a process sees
// the target as idle as before and sends it the next one too (issue 10: 3 of 4 jobs to one node).
// gossimon's infod-best does the same for one choice (`updateChosenNodeLoad`, docs/sched.md);
// here an entry lasts until news *newer than the move* arrives, so it neither vanishes before the
// target shows the process nor counts it twice afterwards.
//
// Pure bookkeeping: every time is given by the caller, on one clock and in one unit (the daemon:
// ms of the gossip clock, on which a node's news is dated; the simulator: its own seconds).
import { capacityOf } from './cost.js'
import type { NodeView } from './policy.js'

/** One expected change of one node's load. */
export interface InFlightEntry {
  pid: number
  /** The node whose load it changes. */
  node: number
  /** Runnable tasks it adds there (1 = a CPU-bound process); negative: a process that left there. */
  demand: number
  /** Bytes of memory it adds there (negative: frees). */
  mem: number
  /** When it was decided or seen. */
  since: number
  /** When it arrived (or left) there; undefined while the move is under way. */
  landedAt?: number
}

export class InFlight {
  private readonly entries: InFlightEntry[] = []

  /**
   * `settle`: how long after a move the node's own news shows it (the daemon: its next tick, or
   * the end of its probe's period, then one gossip send): news fresh at least that long after the
   * landing replaces the entry. `maxAge`: an entry that neither lands nor is replaced by news
   * within this time is dropped (a move that failed without a word, a node that fell silent).
   */
  constructor (readonly settle: number, readonly maxAge: number) {}

  /** A move this node decided: pid (of that load and memory) goes to node. Counted from now. */
  sent (pid: number, node: number, demand: number, mem: number, now: number): void {
    this.drop(e => e.pid === pid && e.node === node)
    this.entries.push({ pid, node, demand, mem, since: now })
  }

  /** pid arrived on node (or node is where it went: a move it did not decide). */
  landed (pid: number, node: number, now: number, demand = 1, mem = 0): void {
    const e = this.entries.find(x => x.pid === pid && x.node === node && x.demand >= 0)
    if (e !== undefined) { e.landedAt = now; return }
    this.entries.push({ pid, node, demand, mem, since: now, landedAt: now })
  }

  /** pid left node (a hop from it, or it came home from it): that node has its load less. */
  left (pid: number, node: number, now: number, demand = 1, mem = 0): void {
    this.drop(e => e.pid === pid && e.node === node)
    this.entries.push({ pid, node, demand: -demand, mem: -mem, since: now, landedAt: now })
  }

  /** The move of pid did not happen: forget what was expected of it and not seen yet. */
  failed (pid: number): void {
    this.drop(e => e.pid === pid && e.landedAt === undefined)
  }

  /**
   * n as this node should see it: its news (fresh at `freshAt`) plus what moves have changed since.
   * Entries that news already shows, and expired entries (of any node), are forgotten here.
   */
  apply (n: NodeView, freshAt: number, now: number): NodeView {
    this.drop(e => (e.node === n.id && e.landedAt !== undefined && freshAt >= e.landedAt + this.settle) || now - (e.landedAt ?? e.since) > this.maxAge)
    let demand = 0
    let mem = 0
    for (const e of this.entries) if (e.node === n.id) { demand += e.demand; mem += e.mem }
    if (demand === 0 && mem === 0) return n
    return { ...n, load: Math.max(0, n.load + 100 * demand / capacityOf(n.cpus, n.speed)), freeMem: n.freeMem - mem }
  }

  /** What is counted now (for explanations and tests). */
  list (): readonly InFlightEntry[] {
    return this.entries
  }

  private drop (which: (e: InFlightEntry) => boolean): void {
    for (let i = this.entries.length - 1; i >= 0; i--) if (which(this.entries[i])) this.entries.splice(i, 1)
  }
}
