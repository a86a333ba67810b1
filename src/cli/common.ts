// Shared pieces of the admin tools (mosctl, setpe, showmap, mosmon): where the tree is, reading and
// writing its files with clear errors, argument checks and the usage/exit conventions.
//
// The tools work only through the tree's files, like the openMosix originals worked through
// /proc/hpc. The tree root comes from env HPC_ROOT; without it, `<package root>/mnt/hpc` when
// running from a checkout (package root = the directory holding package.json, found from this
// file's own path) and a tree is mounted there, else `/mnt/hpc`.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeSync, constants as fsc } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isIP } from 'node:net'
import debug from '../util/log.js'
import { VERSION } from '../version.js'
import { NODE_ID } from '../config.js'

const log = debug('hpcfs:cli')

/** Exit codes: 1 = runtime failure (tree missing, write refused, no such node), 2 = misuse. */
export const EXIT_FAIL = 1
export const EXIT_USAGE = 2

/** An error the tool reports as `<tool>: <message>` and exits with `exitCode`. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode: number = EXIT_FAIL) {
    super(message)
  }
}

/** Misuse: the message, then the usage text on stderr, exit 2. */
export class UsageError extends CliError {
  constructor (message: string) {
    super(message, EXIT_USAGE)
  }
}

/** The directory holding package.json, walking up from `start` (default: this file's directory). */
export function packageRoot (start: string = dirname(fileURLToPath(import.meta.url))): string | undefined {
  let dir = start
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir
    const up = dirname(dir)
    if (up === dir) return undefined
    dir = up
  }
}

/** Where hpcd mounts the tree by default (hpcd --mount). */
export const SYSTEM_ROOT = '/mnt/hpc'

/**
 * Where to look for the tree without HPC_ROOT, in order: `<package root>/mnt/hpc` when running
 * from a checkout (a package root with .git: `npm start` mounts node 1 there), then /mnt/hpc.
 */
export function rootCandidates (start?: string): string[] {
  const pkg = packageRoot(start)
  if (pkg !== undefined && existsSync(join(pkg, '.git'))) return [join(pkg, 'mnt', 'hpc'), SYSTEM_ROOT]
  return [SYSTEM_ROOT]
}

/** The first candidate that holds a tree, else the first candidate (named in the error). */
export function defaultRoot (start?: string, hasTree: (root: string) => boolean = isTree): string {
  const all = rootCandidates(start)
  return all.find(hasTree) ?? all[0]
}

export function resolveRoot (env: NodeJS.ProcessEnv = process.env, start?: string, hasTree?: (root: string) => boolean): string {
  const r = env.HPC_ROOT
  return r !== undefined && r !== '' ? r : defaultRoot(start, hasTree)
}

/** The places a tool looked in, for its "no hpcfs tree" message. */
export function describeRoots (env: NodeJS.ProcessEnv = process.env, start?: string): string {
  const r = env.HPC_ROOT
  if (r !== undefined && r !== '') return r
  return rootCandidates(start).join(' or ')
}

const ERRNO_TEXT: Record<string, string> = {
  EINVAL: 'invalid value (EINVAL)',
  EACCES: 'permission denied (EACCES): read-only file, or not allowed',
  EPERM: 'operation not permitted (EPERM)',
  ENOENT: 'no such file (ENOENT)',
  EISDIR: 'is a directory (EISDIR)',
  ENOTDIR: 'not a directory (ENOTDIR)',
  EAGAIN: 'busy, try again (EAGAIN)',
  EBUSY: 'busy (EBUSY)',
  ENOTCONN: 'the tree is not connected (ENOTCONN): is hpcd still running?',
  ECONNABORTED: 'the tree connection was aborted (ECONNABORTED): is hpcd still running?',
  EIO: 'input/output error (EIO)',
  ENOSYS: 'not supported by the tree (ENOSYS)'
}

/** Human text for an fs error: `cannot write "1" to /mnt/hpc/admin/speed: invalid value (EINVAL)`. */
export function describeFsError (err: unknown, what: string): string {
  const e = err as NodeJS.ErrnoException
  const code = typeof e?.code === 'string' ? e.code : undefined
  const text = code !== undefined ? (ERRNO_TEXT[code] ?? `${e.message}`) : String(err)
  return `${what}: ${text}`
}

/** The tree seen from a tool: relative paths like `admin/speed`, `nodes/3/load`. */
export class Tree {
  constructor (readonly root: string) {}

  path (rel: string): string {
    return join(this.root, rel)
  }

  exists (rel: string): boolean {
    return existsSync(this.path(rel))
  }

  isDir (rel: string): boolean {
    try {
      return statSync(this.path(rel)).isDirectory()
    } catch {
      return false
    }
  }

  /** The file's text without its final newline. */
  read (rel: string): string {
    const p = this.path(rel)
    try {
      const s = readFileSync(p, 'utf8')
      log('read %s -> %j', p, s)
      return s.endsWith('\n') ? s.slice(0, -1) : s
    } catch (err) {
      throw new CliError(describeFsError(err, `cannot read ${p}`))
    }
  }

  /** The file as one integer; a non-numeric content is an error naming the file. */
  readInt (rel: string): number {
    const s = this.read(rel).trim()
    if (!/^-?\d+$/.test(s)) throw new CliError(`unexpected content in ${this.path(rel)}: ${JSON.stringify(s)} (expected an integer)`)
    return Number(s)
  }

  /**
   * Write `value` plus "\n" like `echo value > file`, but never creating the file: open with
   * O_WRONLY|O_TRUNC (the tree implements truncate), one write at offset 0.
   */
  write (rel: string, value: string | number): void {
    const p = this.path(rel)
    const text = String(value).endsWith('\n') ? String(value) : `${String(value)}\n`
    const shown = text.trimEnd()
    const what = shown.includes('\n') || shown.length > 40 ? `cannot write ${p}` : `cannot write ${JSON.stringify(shown)} to ${p}`
    log('write %s <- %j', p, text)
    let fd: number | undefined
    try {
      fd = openSync(p, fsc.O_WRONLY | fsc.O_TRUNC)
      const buf = Buffer.from(text)
      const n = writeSync(fd, buf, 0, buf.length, 0)
      if (n !== buf.length) throw Object.assign(new Error(`short write (${n} of ${buf.length} bytes)`), { code: 'EIO' })
    } catch (err) {
      throw new CliError(describeFsError(err, what))
    } finally {
      if (fd !== undefined) {
        try {
          closeSync(fd)
        } catch (err) {
          // FUSE may report the write's failure only at close (flush).
          throw new CliError(describeFsError(err, what))
        }
      }
    }
  }

  /**
   * Several writes that belong together: when one fails, the files written before it get back the
   * value they had (when they were readable), so a refused value changes nothing.
   */
  writeAll (writes: Array<[rel: string, value: string | number]>): void {
    const done: Array<[string, string]> = []
    try {
      for (const [rel, value] of writes) {
        let old: string | undefined
        try {
          old = readFileSync(this.path(rel), 'utf8')
        } catch {
          old = undefined
        }
        this.write(rel, value)
        if (old !== undefined) done.push([rel, old])
      }
    } catch (err) {
      for (const [rel, old] of done.reverse()) {
        try {
          this.write(rel, old)
        } catch (e) {
          log('rollback of %s failed: %s', rel, (e as Error).message)
        }
      }
      throw err
    }
  }

  /** Ids of the nodes/ directories (decimal names only), ascending. */
  nodeIds (): number[] {
    const p = this.path('nodes')
    let names: string[]
    try {
      names = readdirSync(p)
    } catch (err) {
      throw new CliError(describeFsError(err, `cannot list ${p}`))
    }
    return names.filter(n => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
  }

  /** This node's id from admin/mospe (0 = not in a cluster). */
  myId (): number {
    return this.readInt('admin/mospe')
  }
}

/** True when `root` looks like an hpcfs tree (it has admin/mospe). */
export function isTree (root: string): boolean {
  return existsSync(join(root, 'admin', 'mospe'))
}

/** The tree at HPC_ROOT (or the default), or a CliError naming the root. */
export function openTree (tool: string, env: NodeJS.ProcessEnv = process.env): Tree {
  const root = resolveRoot(env)
  if (!isTree(root)) throw new CliError(`no hpcfs tree at ${describeRoots(env)} (is hpcd running? set HPC_ROOT)`)
  log('%s: tree at %s', tool, root)
  return new Tree(root)
}

/** A node id argument: decimal NODE_ID.min..max (1..65535), else a UsageError. */
export function parseNodeId (s: string, what = 'node id'): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`bad ${what} "${s}" (expected a number ${NODE_ID.min}..${NODE_ID.max})`)
  const n = Number(s)
  if (n < NODE_ID.min || n > NODE_ID.max) throw new UsageError(`${what} ${n} out of range ${NODE_ID.min}..${NODE_ID.max}`)
  return n
}

/** A decimal integer argument within [min, max], else a UsageError. */
export function parseIntArg (s: string, what: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(s)) throw new UsageError(`bad ${what} "${s}" (expected an integer ${min}..${max})`)
  const n = Number(s)
  if (n < min || n > max) throw new UsageError(`${what} ${n} out of range ${min}..${max}`)
  return n
}

/** What `<tool> --version` prints: `mosctl (hpcfs) 0.1.0`. */
export function versionText (tool: string): string {
  return `${tool} (hpcfs) ${VERSION}`
}

/** `--version` as the only argument (so `mosrun cmd --version` still passes it to cmd). */
function isVersion (argv: string[]): boolean {
  return argv.length === 1 && argv[0] === '--version'
}

export function isHelp (argv: string[]): boolean {
  return argv.some(a => a === '-h' || a === '--help' || a === '-H')
}

/**
 * Run a tool's main: `-h`/`--help` prints the usage on stdout (exit 0), `--version` alone the
 * version (also for a tool that parses its own arguments and passes none); a UsageError prints
 * `<tool>: <message>` and the usage on stderr (exit 2); a CliError prints `<tool>: <message>`
 * (its exit code); anything else is a bug and is reported with its stack under DEBUG.
 */
export async function runTool (tool: string, usage: string, main: (argv: string[]) => Promise<number | void> | number | void,
  argv: string[] = process.argv.slice(2)): Promise<void> {
  let code: number
  // `mosctl status | head -1`: a closed pipe ends the tool quietly, as it would a C tool.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0)
    throw err
  })
  try {
    if (isVersion(argv) || isVersion(process.argv.slice(2))) {
      process.stdout.write(versionText(tool) + '\n')
      code = 0
    } else if (isHelp(argv)) {
      process.stdout.write(usage.endsWith('\n') ? usage : usage + '\n')
      code = 0
    } else {
      code = (await main(argv)) ?? 0
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${tool}: ${err.message}\n${usage.endsWith('\n') ? usage : usage + '\n'}`)
      code = err.exitCode
    } else if (err instanceof CliError) {
      process.stderr.write(`${tool}: ${err.message}\n`)
      code = err.exitCode
    } else {
      log('%s: unexpected error: %O', tool, err)
      process.stderr.write(`${tool}: ${(err as Error)?.message ?? String(err)}\n`)
      code = EXIT_FAIL
    }
  }
  process.exitCode = code
}

/**
 * `host` and the addresses it resolves to (an IP address stands for itself). A name that does not
 * resolve within `ms` (no DNS on the machine, say) gives just [host].
 */
export async function addressesOf (host: string, ms = 2000): Promise<string[]> {
  if (isIP(host) !== 0) return [host]
  let timer: NodeJS.Timeout | undefined
  try {
    const found = await Promise.race([
      // loaded here, not at the top: node:dns costs a tool about 4 ms of start-up (bench-startup)
      import('node:dns/promises').then(async dns => await dns.lookup(host, { all: true })).then(r => r.map(a => a.address)),
      new Promise<string[]>(resolve => { timer = setTimeout(() => resolve([]), ms) })
    ])
    return [host, ...found]
  } catch (err) {
    log('lookup %s: %s', host, (err as Error).message)
    return [host]
  } finally {
    clearTimeout(timer)
  }
}
