// A node confined to a CPU cgroup (`hpcd --load-scope cgroup`): several nodes emulated on one
// machine, each daemon with everything it starts or restores in a cgroup of its own with a CFS
// quota (scripts/bench-cluster). There the machine-wide runnable count says nothing about one
// node, and a speed benchmark of ≈ 25 ms fits inside one quota period, so it does not see the
// quota. In this scope the probe counts the runnable tasks of its own group, and a calibrated
// speed is scaled by the group's CPU share (docs/probe.md).
//
// cgroup v1: the `cpu` controller's group from /proc/self/cgroup (`N:cpu,cpuacct:/path`), its
// `tasks` (thread ids) and `cpu.cfs_quota_us` / `cpu.cfs_period_us`. cgroup v2: the `0::/path`
// group, its `cgroup.threads` and `cpu.max`.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { readProcText, statState } from '../util/procfs.js'

export interface CpuGroup {
  version: 1 | 2
  /** The group's directory under the cgroup mount. */
  dir: string
}

/** The CPU group a /proc/<pid>/cgroup text names, as a directory under `mountRoot`; undefined at the root. */
export function cpuGroupOf (cgroupText: string, mountRoot = '/sys/fs/cgroup', exists: (p: string) => boolean = existsSync): CpuGroup | undefined {
  for (const line of cgroupText.split('\n')) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim())
    if (m === null) continue
    const controllers = m[1].split(',')
    if (!controllers.includes('cpu')) continue
    if (m[2] === '/') return undefined
    for (const mount of [controllers.join(','), 'cpu', 'cpu,cpuacct']) {
      const dir = join(mountRoot, mount, m[2])
      if (exists(join(dir, 'tasks'))) return { version: 1, dir }
    }
  }
  const v2 = /^0::(\/.*)$/m.exec(cgroupText)
  if (v2 !== null && v2[1] !== '/') {
    const dir = join(mountRoot, v2[1])
    if (exists(join(dir, 'cpu.max'))) return { version: 2, dir }
  }
  return undefined
}

/** CPUs' worth of time the group may use per period (quota / period); undefined when unlimited. */
export function cpuShareOf (g: CpuGroup, read: (p: string) => string = p => readFileSync(p, 'utf8')): number | undefined {
  let quota: number
  let period: number
  if (g.version === 1) {
    quota = Number(read(join(g.dir, 'cpu.cfs_quota_us')).trim())
    period = Number(read(join(g.dir, 'cpu.cfs_period_us')).trim())
  } else {
    const f = read(join(g.dir, 'cpu.max')).trim().split(/\s+/)
    if (f[0] === 'max') return undefined
    quota = Number(f[0])
    period = Number(f[1])
  }
  if (!(quota > 0 && period > 0)) return undefined
  return quota / period
}

/** Thread ids of the group. */
export function groupThreads (g: CpuGroup): number[] {
  const text = readFileSync(join(g.dir, g.version === 1 ? 'tasks' : 'cgroup.threads'), 'utf8')
  return text.split('\n').filter(l => /^\d+$/.test(l)).map(Number)
}

/**
 * Runnable threads of the group (state R), not counting the threads of process `self` (the daemon:
 * the reading thread is running, and its other threads are the system's work, not a job's).
 */
export function runnableInGroup (g: CpuGroup, self = process.pid, procRoot = '/proc'): number {
  let n = 0
  // (the group's list first: a thread the daemon makes between the two reads is then in its own)
  const tids = groupThreads(g)
  const own = new Set<number>()
  try { for (const t of readdirSync(join(procRoot, String(self), 'task'))) own.add(Number(t)) } catch { own.add(self) }
  for (const tid of tids) {
    if (own.has(tid)) continue
    try {
      if (statState(readProcText(join(procRoot, String(tid), 'stat'))) === 'R') n++
    } catch {
      // gone meanwhile
    }
  }
  return n
}
