// nodes/<id>/: every known node, local or remote (openMosix /proc/hpc/nodes). A node that is
// down reads -101 in every file but status (1 = configured, not up).
import { DOWN, type HpcNode, type NodeView } from '../core/node.js'
import { dir, ro, type DirNode, type TreeNode } from './tree.js'

type Field = (v: NodeView) => string | number

const FIELDS: Record<string, Field> = {
  load: v => v.info.load,
  speed: v => v.info.speed,
  cpus: v => v.info.cpus,
  mem: v => v.info.mem,
  rmem: v => v.info.rmem,
  tmem: v => v.info.tmem,
  util: v => v.info.util,
  status: v => v.status,
  addr: v => `${v.info.addr}:${v.info.port}`,
  age: v => Math.round(v.age)
}
const ALWAYS = new Set(['status', 'addr', 'age'])

function nodeDir (node: HpcNode, id: number): DirNode {
  const table: Record<string, TreeNode> = {}
  for (const [name, f] of Object.entries(FIELDS)) {
    table[name] = ro(() => {
      const v = node.view(id)
      if (!v) return DOWN
      return v.up || ALWAYS.has(name) ? f(v) : DOWN
    })
  }
  return dir(table)
}

export function nodesDir (node: HpcNode): DirNode {
  const cache = new Map<number, DirNode>()
  return {
    kind: 'dir',
    list: () => node.nodeIds().map(String),
    lookup: name => {
      if (!/^[1-9]\d*$/.test(name)) return undefined
      const id = Number(name)
      if (!node.view(id)) { cache.delete(id); return undefined }
      let d = cache.get(id)
      if (!d) { d = nodeDir(node, id); cache.set(id, d) }
      return d
    }
  }
}
