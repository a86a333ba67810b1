// Adapters from what hpcd already has (gossip entries, the local probe's info) to the policy's view.
import { STATUS, type LocalInfo, type NodeInfo } from '../gossip/info.js'
import type { NodeView, SelfView } from './policy.js'

/** A gossip entry as a policy candidate. `up`: the caller's liveness verdict (entry age below its dead threshold). */
export function nodeViewOf (info: NodeInfo, up = true): NodeView {
  return {
    id: info.id,
    load: info.load,
    speed: info.speed,
    cpus: info.cpus,
    freeMem: info.mem,
    totalMem: info.tmem,
    up,
    block: (info.status & STATUS.BLOCK) !== 0
  }
}

/** The local node's own info (probe + admin flags) as the policy's `self`. */
export function selfViewOf (id: number, info: LocalInfo): SelfView {
  return {
    id,
    load: info.load,
    speed: info.speed,
    cpus: info.cpus,
    freeMem: info.mem,
    totalMem: info.tmem,
    stay: (info.status & STATUS.STAY) !== 0,
    lstay: (info.status & STATUS.LSTAY) !== 0,
    block: (info.status & STATUS.BLOCK) !== 0
  }
}
