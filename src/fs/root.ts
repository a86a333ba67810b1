// The whole tree (the mount root plays /proc/hpc).
import type { HpcNode } from '../core/node.js'
import { adminDir } from './admin.js'
import { nodesDir } from './nodes.js'
import { dir, parseInt10, wo, type DirNode } from './tree.js'
import { procDir, remoteDir } from './proc.js'

/** decay/: per-process decay hints, write 1 to trigger (they act on processes once migration exists). */
function decayDir (): DirNode {
  const hint = (what: string) => wo(text => { parseInt10(text, 1, 1, what) })
  return dir({ clear: hint('clear'), cpujob: hint('cpujob'), iojob: hint('iojob'), slow: hint('slow'), fast: hint('fast') })
}

export function rootDir (node: HpcNode): DirNode {
  return dir({
    admin: adminDir(node),
    nodes: nodesDir(node),
    decay: decayDir(),
    remote: node.migrator ? remoteDir(node.migrator, node.balancer) : dir({}),
    proc: node.migrator ? procDir(node.migrator, node.balancer) : dir({})
  })
}
