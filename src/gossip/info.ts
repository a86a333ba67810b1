// What one node tells the others about itself: the payload of a gossip entry.

/** Status bits of `nodes/<id>/status` (bit 2 = up, as openMosix consumers test). */
export const STATUS = {
  CONFIGURED: 1,
  UP: 2,
  STAY: 4,
  LSTAY: 8,
  BLOCK: 16,
  QUIET: 32
} as const

/** Everything a node advertises, as measured by its probe and set by its admin. */
export interface LocalInfo {
  status: number // STATUS bits of the origin (UP is implied by freshness, not sent)
  cpus: number
  speed: number // 10000 = Pentium III 1 GHz
  load: number // advertised (upper) load, openMosix units: 100 = one busy standard CPU
  tmem: number // bytes total
  rmem: number // bytes free as Linux counts it
  mem: number // bytes free as the cluster counts it
  util: number // 0..100
}

/** A gossip entry: a node's info plus who it is, where it listens and how fresh it is. */
export interface NodeInfo extends LocalInfo {
  id: number // 1..65535
  addr: string // IPv4 the node listens on
  port: number
  incarnation: number // origin's start time (its own clock, seconds); a restart makes it larger
  seq: number // origin's counter, +1 per gossip interval: orders entries of one incarnation
}

/** True when a is newer information than b about the same node. */
export function fresher (a: NodeInfo, b: NodeInfo): boolean {
  return a.incarnation !== b.incarnation ? a.incarnation > b.incarnation : a.seq > b.seq
}
