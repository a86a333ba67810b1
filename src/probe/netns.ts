// A node that is a network namespace (`hpcd --load-scope netns`): the lab and `npm start` run
// several daemons on one machine, each in a namespace of its own, and a node's processes are the
// ones in its namespace (the jobs started there with nsenter, the guests its daemon restores).
// The machine-wide runnable count would make every node show the same load, so the balancer could
// not tell a busy node from an idle one. In this scope the probe counts the runnable threads of the
// processes in its own network namespace (docs/probe.md).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { statState, statThreads } from '../util/procfs.js'

/** The network namespace of a process, as /proc/<pid>/ns/net reads (`net:[4026531840]`). */
export function netnsOf (pid: number | 'self', procRoot = '/proc'): string {
  return readlinkSync(join(procRoot, String(pid), 'ns', 'net'))
}

/**
 * Counts the runnable threads (state R) of the processes in namespace `ns`, not counting the thread
 * `self`. Which namespace a pid is in is read once (a readlink per new pid) and kept while the pid
 * lives, so a sample reads the stat files of this node's processes only, not of the whole machine.
 * (A pid that ends and is reused between two samples keeps its old verdict for one sample.)
 */
export class NetnsLoad {
  private readonly member = new Map<number, boolean>()

  constructor (readonly ns: string, readonly self = process.pid, readonly procRoot = '/proc') {}

  runnable (): number {
    let n = 0
    const seen = new Set<number>()
    for (const name of readdirSync(this.procRoot)) {
      if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue
      const pid = Number(name)
      seen.add(pid)
      let inside = this.member.get(pid)
      if (inside === undefined) {
        try { inside = readlinkSync(join(this.procRoot, name, 'ns', 'net')) === this.ns } catch { continue }
        this.member.set(pid, inside)
      }
      if (inside) n += this.runnableThreads(name, pid)
    }
    for (const pid of this.member.keys()) if (!seen.has(pid)) this.member.delete(pid)
    return n
  }

  private runnableThreads (name: string, pid: number): number {
    try {
      const stat = readFileSync(join(this.procRoot, name, 'stat'), 'latin1')
      if (statThreads(stat) <= 1) return pid !== this.self && statState(stat) === 'R' ? 1 : 0
      let n = 0
      for (const tid of readdirSync(join(this.procRoot, name, 'task'))) {
        if (Number(tid) === this.self) continue
        if (statState(readFileSync(join(this.procRoot, name, 'task', tid, 'stat'), 'latin1')) === 'R') n++
      }
      return n
    } catch {
      return 0 // gone meanwhile
    }
  }
}
