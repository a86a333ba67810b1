// A node that is a network namespace (`hpcd --load-scope netns`): the lab and `npm start` run
// several daemons on one machine, each in a namespace of its own, and a node's processes are the
// ones in its namespace (the jobs started there with nsenter, the guests its daemon restores).
// The machine-wide runnable count would make every node show the same load, so the balancer could
// not tell a busy node from an idle one. In this scope the probe counts the runnable threads of the
// processes in its own network namespace (docs/probe.md).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { statState } from './cgroup.js'

/** The network namespace of a process, as /proc/<pid>/ns/net reads (`net:[4026531840]`). */
export function netnsOf (pid: number | 'self', procRoot = '/proc'): string {
  return readlinkSync(join(procRoot, String(pid), 'ns', 'net'))
}

/** num_threads of a /proc/<pid>/stat text (field 20). */
export function statThreads (statText: string): number {
  const i = statText.lastIndexOf(') ')
  if (i < 0) return 0
  return Number(statText.slice(i + 2).split(' ')[17])
}

/** Runnable threads (state R) of the processes in namespace `ns`, not counting the thread `self`. */
export function runnableInNetns (ns: string, self = process.pid, procRoot = '/proc'): number {
  let n = 0
  for (const name of readdirSync(procRoot)) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue
    try {
      if (readlinkSync(join(procRoot, name, 'ns', 'net')) !== ns) continue
      const stat = readFileSync(join(procRoot, name, 'stat'), 'latin1')
      if (statThreads(stat) <= 1) {
        if (Number(name) !== self && statState(stat) === 'R') n++
        continue
      }
      for (const tid of readdirSync(join(procRoot, name, 'task'))) {
        if (Number(tid) === self) continue
        if (statState(readFileSync(join(procRoot, name, 'task', tid, 'stat'), 'latin1')) === 'R') n++
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return n
}
