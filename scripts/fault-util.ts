// What scripts/fault-matrix and scripts/soak share: jobs started at a lab node with their output
// collected, where they are, the checks every case ends with (one copy, output neither lost nor
// doubled, nothing left behind), and the kill and restart of a node's daemon.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Lab } from '../src/lab/lab.js'
import { netnsPids } from '../src/lab/sys.js'
import { readStat } from '../src/util/procfs.js'
import { poll as pollUntil, PollTimeout } from '../src/util/poll.js'

/** A job started at a node (this process is its parent), with its stdout and stderr (pipes: relayed while it is away). */
export interface Job {
  child: ChildProcess
  pid: number
  out: string
  err: string
  status: { code: number | null, signal: NodeJS.Signals | null } | null
  exited: Promise<void>
}

export function startJob (lab: Lab, home: number, launcher: string, cmd: string, args: string[]): Job {
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(home).ns as string}`, '--', launcher, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const job: Job = { child, pid: child.pid as number, out: '', err: '', status: null, exited: Promise.resolve() }
  child.stdout?.on('data', (d: Buffer) => { job.out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { job.err += d.toString() })
  job.exited = new Promise(resolve => child.on('close', (code, signal) => { job.status = { code, signal }; resolve() }))
  return job
}

/** The output of an uninterrupted run of cmd. */
export function reference (cmd: string, args: string[]): string {
  return spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 }).stdout
}

/**
 * Output against the reference: 'complete' (all of it, once), 'prefix k/n' (the first k lines, once,
 * none missing in between: the process stopped there), or what is wrong (lines lost or doubled).
 */
export function judgeOutput (out: string, ref: string): string {
  const got = out.split('\n').filter(Boolean)
  const want = ref.split('\n').filter(Boolean)
  for (let i = 0; i < got.length; i++) {
    if (i >= want.length || got[i] !== want[i]) {
      const dup = want.indexOf(got[i])
      return dup >= 0 && dup < i ? `DOUBLED at line ${i}` : `LOST before line ${i}`
    }
  }
  return got.length === want.length ? 'complete' : `prefix ${got.length}/${want.length}`
}

/** proc/<pid>/where at node 1 ('' when it cannot be read: the process is gone, or node 1's tree is). */
export async function where (lab: Lab, pid: number, home = 1): Promise<string> {
  return (await lab.node(home).read(`proc/${pid}/where`, 3000).catch(() => '')).trim()
}

/** The guests a node lists (none when its tree is not there). */
export function guests (lab: Lab, n: number): number[] {
  try { return readdirSync(join(lab.node(n).mount, 'remote')).map(Number) } catch { return [] }
}

/** Bytes the bridge has sent into node n's namespace (its veth's host end). */
export function intoNode (lab: Lab, n: number): number {
  return Number(readFileSync(`/sys/class/net/hv-${lab.tag}-${n}/statistics/tx_bytes`, 'utf8'))
}

/** Does a process of this name (comm) or one of these pids run anywhere? */
export function running (pids: number[]): number[] {
  return pids.filter(p => { try { process.kill(p, 0); return true } catch { return false } })
}

/**
 * What is left on the lab's nodes besides their daemons and FUSE watchdogs: processes in their
 * namespaces (helpers, keepers, guests), guest records under stateDir. Empty when clean.
 */
export async function leftovers (lab: Lab, stateDir: string): Promise<string[]> {
  const out: string[] = []
  for (const nd of lab.nodes) {
    for (const p of await netnsPids(nd.ns as string)) {
      if (p === nd.pid) continue
      let cmd = ''
      try { cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() } catch {}
      if (cmd === '' || cmd.startsWith('fusermount ') || cmd.startsWith('nsenter ')) continue
      if (cmd.endsWith('hpc-ppm-helper standby') && Number(readStat(p)?.[1]) === nd.pid) continue // (an idle helper its daemon keeps ready)
      out.push(`node ${nd.id}: ${p} ${cmd.slice(0, 60)}`)
    }
    const dir = join(stateDir, String(nd.id), 'guests')
    if (existsSync(dir)) for (const f of readdirSync(dir)) out.push(`node ${nd.id}: record ${f}`)
  }
  return out
}

/** kill -9 of node n's daemon; resolves once it is gone. */
export async function crash (lab: Lab, n: number): Promise<void> {
  lab.node(n).kill('SIGKILL')
  await lab.node(n).waitExit(10_000)
}

/** Starts node n's daemon again (if it is not running). */
export async function restart (lab: Lab, n: number): Promise<void> {
  if (!lab.node(n).running) await lab.node(n).start()
}

/** Polls f every `every` ms until it returns a value (not undefined) or ms pass (then undefined). */
export async function poll<T> (ms: number, f: () => Promise<T | undefined> | T | undefined, every = 100): Promise<T | undefined> {
  return await pollUntil('a fault case', f, { timeoutMs: ms, everyMs: every }).catch(e => { if (e instanceof PollTimeout) return undefined; throw e })
}
