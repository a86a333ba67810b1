// Helpers for the per-process tool tests (migrate, mosrun, mps): a tree with proc/, subject
// processes, an asynchronous tool runner and a bounded poll.
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { CLI_DIR, makeTree, type Fixture } from './tools-fixture.js'
import { poll } from '../../src/util/poll.js'

let copied: string | undefined
/**
 * The tools as another uid can run them. From a checkout under a 0700 directory (/root) it cannot
 * reach dist/ at all, so a copy of package.json, dist/ and the runtime modules goes into a
 * world-readable temp dir, made once and removed when the tests end.
 */
function cliDirFor (uid: number | undefined): string {
  if (uid === undefined || uid === 0) return CLI_DIR
  if (copied === undefined) {
    const repo = dirname(dirname(dirname(CLI_DIR))) // <repo>/dist/src/cli
    const dir = mkdtempSync(join(tmpdir(), 'hpcfs-cli-'))
    chmodSync(dir, 0o755)
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
    const devOnly = new Set(['playwright-core', 'typescript', '@types', 'uplot'])
    cpSync(join(repo, 'package.json'), join(dir, 'package.json'))
    cpSync(join(repo, 'dist'), join(dir, 'dist'), { recursive: true })
    cpSync(join(repo, 'node_modules'), join(dir, 'node_modules'), { recursive: true, filter: src => !devOnly.has(basename(src)) })
    copied = join(dir, 'dist', 'src', 'cli')
  }
  return copied
}

export interface AsyncRun {
  child: ChildProcess
  /** stdout / stderr so far. */
  out: () => string
  err: () => string
  done: Promise<{ status: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }>
}

/** Start a compiled tool with HPC_ROOT = root; killed with SIGKILL after `timeoutMs`. */
export function startTool (tool: string, args: string[], opts: { root?: string, env?: NodeJS.ProcessEnv, input?: string, uid?: number, gid?: number, timeoutMs?: number } = {}): AsyncRun {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env }
  delete env.DEBUG
  if (opts.root !== undefined) env.HPC_ROOT = opts.root
  const child = spawn(process.execPath, [join(cliDirFor(opts.uid), `${tool}.js`), ...args], {
    env, stdio: ['pipe', 'pipe', 'pipe'], uid: opts.uid, gid: opts.gid
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  child.stdin?.on('error', () => {})
  child.stdin?.end(opts.input ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20000)
  const done = new Promise<{ status: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }>(resolve => {
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      resolve({ status, signal, stdout, stderr })
    })
  })
  return { child, out: () => stdout, err: () => stderr, done }
}

export async function run (tool: string, args: string[], opts: Parameters<typeof startTool>[2] = {}): Promise<{ status: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }> {
  return await startTool(tool, args, opts).done
}

/** Polls `cond` every 10 ms until true (src/util/poll.ts); fails after `ms`. */
export async function until (cond: () => boolean, what: string, ms = 10000): Promise<void> {
  await poll(what, cond, { timeoutMs: ms, everyMs: 10 })
}

/** Subject processes (`sleep infinity`: they live until `killAll`). */
export class Subjects {
  readonly procs: ChildProcess[] = []

  sleep (opts: { uid?: number, gid?: number } = {}): number {
    const c = spawn('sleep', ['infinity'], { stdio: 'ignore', uid: opts.uid, gid: opts.gid })
    this.procs.push(c)
    if (c.pid === undefined) throw new Error('cannot start sleep')
    return c.pid
  }

  async killAll (): Promise<void> {
    await Promise.all(this.procs.map(async c => {
      if (c.exitCode !== null || c.signalCode !== null) return
      const gone = new Promise(resolve => c.once('exit', resolve))
      c.kill('SIGKILL')
      await gone
    }))
  }
}

/** Create proc/<pid>/ with the given files (like the real tree shows them). */
export function addProc (f: Fixture, pid: number, files: Record<string, string> = {}): void {
  mkdirSync(join(f.root, 'proc', String(pid)), { recursive: true })
  const all = { where: '0\n', goto: '', lock: '0\n', nmigs: '0\n', cantmove: '', ...files }
  for (const [name, text] of Object.entries(all)) writeFileSync(join(f.root, 'proc', String(pid), name), text)
}

/** makeTree plus an empty proc/, cleaned up (subjects killed) after `fn`. */
export function withProcTree (opts: Parameters<typeof makeTree>[0], fn: (f: Fixture, s: Subjects) => Promise<void>): () => Promise<void> {
  return async () => {
    const f = makeTree(opts)
    mkdirSync(join(f.root, 'proc'))
    const s = new Subjects()
    try {
      await fn(f, s)
    } finally {
      await s.killAll()
      f.cleanup()
    }
  }
}

/** A pid that is not running (a child that has ended). */
export async function deadPid (): Promise<number> {
  const c = spawn('true', [], { stdio: 'ignore' })
  await new Promise(resolve => c.once('exit', resolve))
  if (c.pid === undefined) throw new Error('cannot start true')
  return c.pid
}
