// Starts real hpcd processes on loopback for integration tests, and always cleans them up.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { poll, type Check } from '../../src/util/poll.js'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..') // dist/
export const HPCD = join(ROOT, 'src', 'cli', 'hpcd.js')

/** Runs a shell command line; resolves with its exit code and output (never rejects). */
export function sh (cmd: string, opts: { env?: NodeJS.ProcessEnv, timeout?: number } = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile('bash', ['-c', cmd], { env: { ...process.env, ...opts.env }, timeout: opts.timeout ?? 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : 1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

/** The tests' form of the one polling helper (src/util/poll.ts): a check that throws is tried again. */
export async function until<T> (what: string, fn: Check<T>, timeout = 15_000, every = 100): Promise<T> {
  return await poll(what, fn, { timeoutMs: timeout, everyMs: every, retryErrors: true })
}

/** Awaits `p` for at most `ms`: a process that never ends fails the test with `what`, not the whole file by its time limit. */
export async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms) })
  try { return await Promise.race([p, late]) } finally { clearTimeout(timer) }
}

/** Reads a tree file through a child `cat` with a timeout (a hung mount cannot hang the test). */
export async function cat (path: string): Promise<string> {
  const r = await sh(`cat ${JSON.stringify(path)}`, { timeout: 5000 })
  if (r.code !== 0) throw new Error(`cat ${path}: ${r.stderr.trim()}`)
  return r.stdout
}

export interface Daemon { id: number, port: number, mount: string, proc: ChildProcess, log: () => string }

export class LoopbackCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'hpcfs-test-'))
  readonly keyFile = join(this.dir, 'key')
  readonly mapFile = join(this.dir, 'map')
  readonly daemons = new Map<number, Daemon>()

  constructor (readonly ids: number[], readonly basePort: number, readonly extra: string[] = []) {
    writeFileSync(this.keyFile, randomBytes(32))
    writeFileSync(this.mapFile, ids.map(id => `${id} 127.0.0.1:${basePort + id} 1`).join('\n') + '\n')
  }

  /** `cgroup`: a cgroup v1 directory the daemon joins before it starts (its `tasks` file). */
  async start (id: number, args: string[] = [], opts: { cgroup?: string } = {}): Promise<Daemon> {
    const port = this.basePort + id
    const mount = join(this.dir, `hpc${id}`)
    const logFile = join(this.dir, `hpcd${id}.log`)
    const { openSync } = await import('node:fs')
    const out = openSync(logFile, 'a')
    const argv = [HPCD, '--addr', '127.0.0.1', '--port', String(port), '--map', this.mapFile, '--mount', mount, '--key', this.keyFile,
      ...(args.includes('--speed') ? [] : ['--speed', String(10000 + id)]), ...this.extra, ...args]
    const [cmd, cmdArgs] = opts.cgroup === undefined
      ? [process.execPath, argv]
      : ['sh', ['-c', 'echo $$ > "$0/tasks" && exec "$@"', opts.cgroup, process.execPath, ...argv]]
    const proc = spawn(cmd, cmdArgs, { stdio: ['ignore', out, out], env: { ...process.env, DEBUG: 'hpcfs:*' } })
    const d: Daemon = { id, port, mount, proc, log: () => readFileSync(logFile, 'utf8') }
    this.daemons.set(id, d)
    await until(`hpcd ${id} mounted`, async () => {
      if (proc.exitCode !== null) throw new Error(`hpcd ${id} exited ${proc.exitCode}: ${d.log()}`)
      return (await cat(join(mount, 'admin/mospe'))) === `${id}\n`
    })
    return d
  }

  async stop (id: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const d = this.daemons.get(id)
    if (!d) return
    this.daemons.delete(id)
    if (d.proc.exitCode === null && d.proc.signalCode === null) {
      const exited = new Promise(resolve => d.proc.once('exit', resolve))
      d.proc.kill(signal)
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
      if (d.proc.exitCode === null && d.proc.signalCode === null) { d.proc.kill('SIGKILL'); await exited }
    }
    const mounts = readFileSync('/proc/self/mounts', 'utf8')
    if (mounts.includes(` ${d.mount} `)) await sh(`fusermount -uz ${JSON.stringify(d.mount)}`)
  }

  async destroy (): Promise<void> {
    for (const id of [...this.daemons.keys()]) await this.stop(id)
    rmSync(this.dir, { recursive: true, force: true })
  }
}
