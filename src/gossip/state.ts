// The node table: for every other node, the freshest entry seen. Entries are kept in a list
// ordered by freshness (most recent first), so that building a window of the w freshest entries
// costs O(w) rather than a scan of the whole table: this is what lets the same code simulate
// thousands of nodes.
//
// Ages need no synchronised clocks: an entry carries its age (ms since its origin made it), and a
// receiver stores the local monotonic time at which it was fresh (`freshAt = now - age`); its age
// at any later time is `now - freshAt`. Only the origin's own clock orders its entries
// (incarnation, seq).
import { fresher, type NodeInfo } from './info.js'

export interface Known {
  info: NodeInfo
  freshAt: number // local ms at which this info was fresh; -Infinity for a node never heard
  prev: Known | null
  next: Known | null
  index: number // position in the array used for uniform random choice
}

export class NodeTable {
  private readonly byId = new Map<number, Known>()
  private readonly list: Known[] = []
  private head: Known | null = null
  private tail: Known | null = null

  get size (): number { return this.list.length }
  get (id: number): Known | undefined { return this.byId.get(id) }
  has (id: number): boolean { return this.byId.has(id) }
  /** Uniform random entry (for target choice); undefined when empty. */
  random (rng: () => number): Known | undefined { return this.list[Math.floor(rng() * this.list.length)] }
  values (): IterableIterator<Known> { return this.byId.values() }
  ids (): number[] { return [...this.byId.keys()].sort((a, b) => a - b) }

  /** Adds a node never heard from (e.g. from the map); it reads as down until news arrives. */
  placeholder (info: NodeInfo): void {
    const k = this.byId.get(info.id)
    if (k) {
      if (k.freshAt === -Infinity) k.info = info
      else { k.info.addr = info.addr; k.info.port = info.port }
      return
    }
    this.insert({ info, freshAt: -Infinity, prev: null, next: null, index: -1 })
  }

  /** Merges an entry received with the given age; returns true if it was news. */
  merge (info: NodeInfo, age: number, now: number): boolean {
    const k = this.byId.get(info.id)
    if (k) {
      if (k.freshAt !== -Infinity && !fresher(info, k.info)) return false
      this.unlink(k)
      k.info = info
      k.freshAt = now - age
      this.link(k)
      return true
    }
    this.insert({ info, freshAt: now - age, prev: null, next: null, index: -1 })
    return true
  }

  remove (id: number): void {
    const k = this.byId.get(id)
    if (!k) return
    this.unlink(k)
    this.byId.delete(id)
    const last = this.list.pop() as Known
    if (last !== k) { this.list[k.index] = last; last.index = k.index }
  }

  /** Up to n entries, freshest first, no older than maxAge. */
  freshest (n: number, now: number, maxAge: number): Known[] {
    const out: Known[] = []
    for (let k = this.head; k && out.length < n; k = k.next) {
      if (now - k.freshAt > maxAge) break
      out.push(k)
    }
    return out
  }

  private insert (k: Known): void {
    k.index = this.list.length
    this.list.push(k)
    this.byId.set(k.info.id, k)
    this.link(k)
  }

  // Insert in freshness order, walking from the head: news is nearly always among the freshest.
  private link (k: Known): void {
    let after: Known | null = null
    let cur = this.head
    while (cur && cur.freshAt > k.freshAt) { after = cur; cur = cur.next }
    k.prev = after
    k.next = cur
    if (after) after.next = k; else this.head = k
    if (cur) cur.prev = k; else this.tail = k
  }

  private unlink (k: Known): void {
    if (k.prev) k.prev.next = k.next; else this.head = k.next
    if (k.next) k.next.prev = k.prev; else this.tail = k.prev
    k.prev = k.next = null
  }
}
