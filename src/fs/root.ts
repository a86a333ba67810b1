// The whole tree (the mount root plays /proc/hpc).
import { resolve, join } from 'node:path'
import type { HpcNode } from '../core/node.js'
import { DECAY_HINTS, type DecayHint } from '../migrate/migrator.js'
import { ErrnoError } from '../util/errno.js'
import { processesHolding } from '../util/holders.js'
import { adminDir } from './admin.js'
import { nodesDir } from './nodes.js'
import { dir, parseInt10, wo, type DirNode, type FileNode } from './tree.js'
import { procDir, remoteDir } from './proc.js'

/**
 * decay/: `echo 1 > decay/<hint>` gives the writing process that decay hint (openMosix: clear,
 * cpujob, iojob, slow, fast), as proc/<pid>/decay does for a named process. The writer is found by
 * the descriptor it holds on the file while it writes.
 */
function decayDir (node: HpcNode): DirNode {
  const hint = (name: DecayHint): FileNode => wo(text => {
    parseInt10(text, 1, 1, name)
    const m = node.migrator
    if (!m) return
    const writers = processesHolding(join(resolve(node.cfg.mount), 'decay', name), process.pid, '/proc', true) // not a reader (it reads empty)
    if (writers.length === 0) throw new ErrnoError('ESRCH', `decay/${name}: cannot tell which process wrote it`)
    for (const pid of writers) m.hint(pid, name)
  })
  return dir(Object.fromEntries(DECAY_HINTS.map(h => [h, hint(h)])))
}

export function rootDir (node: HpcNode): DirNode {
  return dir({
    admin: adminDir(node),
    nodes: nodesDir(node),
    decay: decayDir(node),
    remote: node.migrator ? remoteDir(node.migrator, node.balancer) : dir({}),
    proc: node.migrator ? procDir(node.migrator, node.balancer) : dir({})
  })
}
