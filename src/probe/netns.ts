// A node that is a network namespace (`hpcd --load-scope netns`): the lab and `npm start` run
// several daemons on one machine, each in a namespace of its own, and a node's processes are the
// ones in its namespace (the jobs started there with nsenter, the guests its daemon restores).
// The machine-wide runnable count would make every node show the same load, so the balancer could
// not tell a busy node from an idle one. In this scope the probe counts the runnable threads of the
// processes in its own network namespace (docs/probe.md).
import { readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { readProcText, statState, statThreads } from '../util/procfs.js'

/** The network namespace of a process, as /proc/<pid>/ns/net reads (`net:[4026531840]`). */
export function netnsOf (pid: number | 'self', procRoot = '/proc'): string {
  return readlinkSync(join(procRoot, String(pid), 'ns', 'net'))
}

/**
 * Counts the runnable threads (state R) of the processes in namespace `ns`, not counting any thread
 * of the process `self` (the daemon: its sampling thread is running as it reads, and its FUSE, libuv
 * and V8 threads are the system's own work, not a job's; on a busy machine they sit in R waiting
 * for a CPU, and an idle node read as half-loaded). Which namespace a pid is in is read with a
 * readlink and kept for `recheckMs`, so a sample reads the stat files of this node's processes
 * only, not of the whole machine, and each pid costs one readlink per `recheckMs` rather than one
 * per sample. The verdict must expire: a process's
 * namespace can change under the same pid (nsenter forks in the caller's namespace and calls setns
 * before it execs the job; unshare(1) and `ip netns exec` do the same), and a pid can be reused.
 */
export class NetnsLoad {
  private readonly member = new Map<number, { inside: boolean, at: number }>()

  constructor (readonly ns: string, readonly self = process.pid, readonly procRoot = '/proc',
    readonly recheckMs = 1000, private readonly now: () => number = Date.now) {}

  runnable (): number {
    let n = 0
    const t = this.now()
    const seen = new Set<number>()
    for (const name of readdirSync(this.procRoot)) {
      if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue
      const pid = Number(name)
      if (pid === this.self) continue
      seen.add(pid)
      let v = this.member.get(pid)
      if (v === undefined || t - v.at >= this.recheckMs) {
        try { v = { inside: readlinkSync(join(this.procRoot, name, 'ns', 'net')) === this.ns, at: t } } catch { continue }
        this.member.set(pid, v)
      }
      if (v.inside) n += this.runnableThreads(name, pid)
    }
    for (const pid of this.member.keys()) if (!seen.has(pid)) this.member.delete(pid)
    return n
  }

  private runnableThreads (name: string, pid: number): number {
    try {
      const stat = readProcText(join(this.procRoot, name, 'stat'))
      if (statThreads(stat) <= 1) return statState(stat) === 'R' ? 1 : 0
      let n = 0
      for (const tid of readdirSync(join(this.procRoot, name, 'task'))) {
        if (statState(readProcText(join(this.procRoot, name, 'task', tid, 'stat'))) === 'R') n++
      }
      return n
    } catch {
      return 0 // gone meanwhile
    }
  }
}
