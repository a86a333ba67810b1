// A binary-heap event queue in virtual time. Events at the same time run in the order they were
// scheduled (a sequence number breaks ties), so a run is fully determined by its seed.

interface Event { t: number, seq: number, fn: () => void }

const before = (a: Event, b: Event): boolean => a.t < b.t || (a.t === b.t && a.seq < b.seq)

export class EventQueue {
  private readonly heap: Event[] = []
  private seq = 0
  /** Current virtual time (ms). */
  now = 0
  /** Events run so far. */
  executed = 0

  get size (): number { return this.heap.length }

  /** Runs fn `delay` ms from now (delay ≥ 0). */
  schedule (delay: number, fn: () => void): void { this.at(this.now + Math.max(0, delay), fn) }

  /** Runs fn at virtual time t (not before now). */
  at (t: number, fn: () => void): void {
    const h = this.heap
    const e: Event = { t: Math.max(t, this.now), seq: this.seq++, fn }
    let i = h.length
    h.push(e)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(e, h[p])) break
      h[i] = h[p]
      i = p
    }
    h[i] = e
  }

  /** Time of the next event, or Infinity. */
  peek (): number { return this.heap.length ? this.heap[0].t : Infinity }

  private pop (): Event {
    const h = this.heap
    const top = h[0]
    const last = h.pop() as Event
    const n = h.length
    if (n > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && before(h[r], h[l]) ? r : l
        if (!before(h[c], last)) break
        h[i] = h[c]
        i = c
      }
      h[i] = last
    }
    return top
  }

  /** Runs every event up to and including time t, then sets now = t. */
  runUntil (t: number): void {
    while (this.heap.length && this.heap[0].t <= t) {
      const e = this.pop()
      this.now = e.t
      this.executed++
      e.fn()
    }
    if (t > this.now) this.now = t
  }
}
