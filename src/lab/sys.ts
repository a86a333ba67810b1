// System helpers for the lab: running commands with a deadline, reading the mount table,
// unmounting FUSE trees, listing network namespaces and links. Every call that can touch a FUSE
// mount or an external tool runs in a child process with a timeout, so a hung mount cannot hang
// the lab itself.
import { execFile, spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { readFileSync, existsSync } from 'node:fs'
import { resolve } from 'node:path'
import createDebug from '../util/log.js'

const debug = createDebug('hpcfs:lab')

export interface RunResult {
  code: number // exit code; -1 when killed by the timeout or a signal
  stdout: string
  stderr: string
  timedOut: boolean
}

/** Run a command; never rejects for a non-zero exit (look at `code`), only when it cannot start. */
export function run (cmd: string, args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv, input?: string } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(cmd, args, {
      timeout: opts.timeoutMs ?? 10_000,
      killSignal: 'SIGKILL',
      env: opts.env,
      maxBuffer: 16 * 1024 * 1024,
      encoding: 'utf8'
    }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT' && stdout === '' && stderr === '') {
        reject(new Error(`${cmd}: command not found`))
        return
      }
      const e = err as (Error & { code?: number | string, killed?: boolean, signal?: string }) | null
      const timedOut = e?.killed === true
      const code = e == null ? 0 : typeof e.code === 'number' ? e.code : -1
      resolvePromise({ code, stdout, stderr, timedOut })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    else child.stdin?.end()
  })
}

/** Like run() but throws when the command fails. */
export async function must (cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.timedOut ? 'timed out' : 'exit ' + r.code}): ${r.stderr.trim()}`)
  }
  return r.stdout
}

/** Synchronous best-effort command, for process 'exit' handlers only. */
export function runSyncQuiet (cmd: string, args: string[], timeoutMs = 5000): number {
  try {
    const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: timeoutMs, killSignal: 'SIGKILL' })
    return r.status ?? -1
  } catch {
    return -1
  }
}

/** Decode the octal escapes (\040 etc.) used in /proc/self/mountinfo. */
function unescapeMount (s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

function parseMountinfo (text: string): Set<string> {
  const out = new Set<string>()
  for (const line of text.split('\n')) {
    const f = line.split(' ')
    if (f.length > 4) out.add(unescapeMount(f[4]))
  }
  return out
}

/** Mount points of this process's mount namespace. */
export async function mountPoints (): Promise<Set<string>> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'))
}

export function mountPointsSync (): Set<string> {
  try {
    return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))
  } catch {
    return new Set()
  }
}

export async function isMounted (path: string): Promise<boolean> {
  return (await mountPoints()).has(resolve(path))
}

/** Lazily unmount `path` if it is mounted: fusermount -uz, then umount -l as a fallback. */
export async function unmountIfMounted (path: string): Promise<void> {
  const p = resolve(path)
  if (!(await isMounted(p))) return
  debug('unmount %s', p)
  await run('fusermount', ['-uz', p], { timeoutMs: 5000 }).catch(() => undefined)
  if (await isMounted(p)) await run('umount', ['-l', p], { timeoutMs: 5000 }).catch(() => undefined)
  if (await isMounted(p)) throw new Error(`cannot unmount ${p}`)
}

export function unmountSync (path: string): void {
  const p = resolve(path)
  if (!mountPointsSync().has(p)) return
  if (runSyncQuiet('fusermount', ['-uz', p]) !== 0 || mountPointsSync().has(p)) runSyncQuiet('umount', ['-l', p])
}

/** Names of the network namespaces in /run/netns. */
export async function netnsList (): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'])
  if (r.code !== 0) return []
  return r.stdout.split('\n').map(l => l.trim().split(/\s+/)[0]).filter(s => s !== '' && s !== undefined)
}

/** Names of all network links in the host namespace. */
export async function linkList (): Promise<string[]> {
  const r = await run('ip', ['-o', 'link', 'show'])
  if (r.code !== 0) return []
  const out: string[] = []
  for (const line of r.stdout.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line)
    if (m) out.push(m[1])
  }
  return out
}

/** Pids of the processes whose network namespace is the named one. */
export async function netnsPids (ns: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', ns])
  if (r.code !== 0) return []
  return r.stdout.split(/\s+/).filter(s => /^\d+$/.test(s)).map(Number)
}

export function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), to tell a pid from a reused one. */
export function pidStartTime (pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return rest[19] // fields after the comm start at field 3
  } catch {
    return undefined
  }
}

export function isRoot (): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

export function haveCommand (cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (dir !== '' && existsSync(`${dir}/${cmd}`)) return true
  }
  return false
}

export { poll, sleep } from '../util/poll.js'
