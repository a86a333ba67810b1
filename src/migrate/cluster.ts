// What the migration needs to know about the cluster (from the node core, src/core/node.ts), and
// how it reaches another node's transfer port.
import type { Link } from './link.js'

export interface Cluster {
  readonly id: number
  /** Address of a node's transfer port; undefined when unknown. */
  addressOf (id: number): { host: string, port: number } | undefined
  isUp (id: number): boolean
  /** Guests refused (admin/block). */
  readonly blocked: boolean
  /** admin/stay or admin/lstay: this node's own processes do not leave. */
  readonly keepsLocal: boolean
}

/** Opens an authenticated connection to node's transfer port (wire.ts; an in-memory pair in tests). */
export type Dial = (node: number) => Promise<Link>
