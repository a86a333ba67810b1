// Jobs in a namespaced lab (src/lab/lab.ts) for the migration fault tests: a job started at a
// node (inside its namespace, through the test launcher), whose output the test reads, and the
// reads of the tree that say where it is. The subjects are compiled by test/ppm/harness.ts.
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process'
import { closeSync, openSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import assert from 'node:assert/strict'
import type { Lab } from '../../src/lab/lab.js'
import { until } from './daemon.js'
import { fifoSink } from './fifo.js'

export { fifoSink }

export interface Job {
  child: ChildProcess
  pid: number
  /** what it wrote on its stdout so far (a FIFO sink or a pipe) */
  out: () => string
  /** what it wrote on its stderr so far (when it is a pipe) */
  err: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  close: () => void
}

/**
 * Starts `cmd args` at node `home` inside its namespace, through `launcher` (which closes inherited
 * fds). stdout: a FIFO the test reads (default), `pipe` (stdout and stderr are pipes of the test), or a
 * file path (opened here by root). `as`: a uid to drop to (setpriv) after stdout was opened.
 */
export function startJob (lab: Lab, launcher: string, dir: string, cmd: string, args: string[], opts: { home?: number, stdout?: 'fifo' | 'pipe' | string, as?: number } = {}): Job {
  const ns = lab.node(opts.home ?? 1).ns as string
  const mode = opts.stdout ?? 'fifo'
  const sink = mode === 'fifo' ? fifoSink(dir, `out-${Math.random().toString(36).slice(2)}`) : null
  const fd = sink ? sink.fd : mode === 'pipe' ? -1 : openSync(mode, 'w')
  const stdio: StdioOptions = fd < 0 ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd]
  const drop = opts.as !== undefined ? ['setpriv', `--reuid=${opts.as}`, `--regid=${opts.as}`, '--clear-groups'] : []
  // (another uid's job starts in a directory every user may enter: it comes home only where it may chdir)
  const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', ...drop, launcher, cmd, ...args], { stdio, ...(opts.as !== undefined ? { cwd: '/' } : {}) })
  if (!sink && fd >= 0) closeSync(fd)
  let out = ''
  let err = ''
  child.stdout?.on('data', d => { out += d.toString() })
  child.stderr?.on('data', d => { err += d.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    child,
    pid: child.pid as number,
    out: () => sink?.out() ?? out,
    err: () => err,
    exited,
    close: () => { sink?.close(); if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  }
}

/** proc/<pid>/where at its home node: '0' home, a node id, or 'migrating'. */
export async function where (lab: Lab, pid: number, home = 1): Promise<string> {
  return (await lab.node(home).read(`proc/${pid}/where`)).trim()
}

/** The guests listed in node n's remote/ (pids). */
export function guests (lab: Lab, n: number): number[] {
  return readdirSync(join(lab.node(n).mount, 'remote')).map(Number).sort((a, b) => a - b)
}

/** Writes goto and waits until the move is done (where shows the target), or fails with its error. */
export async function moveTo (lab: Lab, pid: number, target: number | 'home', home = 1, ms = 30_000): Promise<void> {
  await lab.node(home).write(`proc/${pid}/goto`, `${target}\n`)
  const want = target === 'home' ? '0' : String(target)
  const err = await until(`process ${pid} at ${want}`, async () => {
    const w = await where(lab, pid, home)
    if (w === want) return 'ok'
    const e = (await lab.node(home).read(`proc/${pid}/error`)).trim()
    return e && w !== 'migrating' ? e : undefined
  }, ms, 50)
  assert.equal(err, 'ok', `move of ${pid} to ${target} failed`)
}

/** Writes goto and waits until the move has ended in failure; resolves with proc/<pid>/error. */
export async function failedMove (lab: Lab, pid: number, target: number | 'home', home = 1, ms = 30_000): Promise<string> {
  await lab.node(home).write(`proc/${pid}/goto`, `${target}\n`)
  return await until(`the failure of the move of ${pid} to ${target}`, async () => {
    const e = (await lab.node(home).read(`proc/${pid}/error`)).trim()
    return e && (await where(lab, pid, home)) !== 'migrating' ? e : undefined
  }, ms, 50)
}

/** The output of an uninterrupted run. */
export function reference (cmd: string, args: string[]): string {
  return spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 }).stdout
}

/** Is pid alive? */
export function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' }
}
