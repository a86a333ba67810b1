// Load history per node for the GUI's graph (openMosixview's "load history"): one sample of every
// known node's load per interval, the last `keep` kept, so a page opened late still shows the
// recent past. A node down at a sample has a gap (null) there.
import type { NodeState } from './model.js'

export interface HistorySample {
  /** ms since the epoch */
  t: number
  /** node id -> load (null: down) */
  loads: Record<number, number | null>
}

export class LoadHistory {
  private readonly samples: HistorySample[] = []
  constructor (readonly keep: number) {}

  add (t: number, nodes: readonly NodeState[]): HistorySample {
    const s: HistorySample = { t, loads: {} }
    for (const n of nodes) s.loads[n.id] = n.load
    this.samples.push(s)
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep)
    return s
  }

  all (): HistorySample[] { return [...this.samples] }
}
