// PPM engine, TypeScript side: drives the native helper (native/*.c, built into
// native/build/hpc-ppm-helper) that checkpoints and restores processes and their threads.
//
// Protocol with the helper (docs/ppm.md has the full description):
//   fd 3  the image stream (dump/deputy write it, restore reads it);
//   fd 4  control lines from the helper: REASON, STAT, PID, HOLLOW, SIGNAL, FD, IMAGE-IN, EXIT,
//         KILLED, RESTORED, OK, ERR <ERRNO> <text>;
//   fd 5  command lines to a deputy: EXIT n, KILL sig, RESTORE [path], FDS [fd...],
//         RELAY [fd:dir...], PULL fd n; to a restore with --family: DENY id errno (a FAMILY
//         line's call fails), RELAYED (the caller has opened the relays' ends);
//   fd 0-2 become the stdio of a process restored into a fresh stub.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, fstatSync, openSync, createWriteStream, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { EventEmitter } from 'node:events'
import { pipeline } from 'node:stream/promises'
import type { Readable, Writable, Stream } from 'node:stream'
import type { Socket } from 'node:net'
import debug from '../util/log.js'
import { ErrnoError, einval, type ErrnoName } from '../util/errno.js'
import { onlyStdio } from '../util/fds.js'
import { StandbyPool, type StandbyKind } from './standby.js'
import { trace } from '../util/trace.js'

const log = debug('hpcfs:ppm')

/** One stdio slot of a child process. */
export type StdioItem = 'pipe' | 'ignore' | 'inherit' | Stream | number | null | undefined

/**
 * A descriptor above 2 relayed through home (engine option `relay`, native/relay.c): the process
 * reads it ('r', a pipe's read end), writes it ('w') or both ('rw', a connected stream socket).
 */
export interface RelayedFd { fd: number, dir: 'r' | 'w' | 'rw', kind: 'pipe' | 'sock' }

/**
 * The helper's end of a relayed descriptor of a process restored here: `read` is a path the
 * caller opens to read what the process writes on fd, `write` one it opens to write what the
 * process reads (paths under /proc of pipes).
 */
export interface RelayEnd { fd: number, read: string | null, write: string | null }

/** One obstacle to a move, in the spirit of openMosix's cantmove. */
export interface Reason { code: string, text: string }

/** A failed engine operation; `reasons` lists the obstacles when the helper refused. */
export class PpmError extends ErrnoError {
  constructor (code: ErrnoName, message: string, readonly reasons: Reason[] = []) {
    super(code, message)
  }
}

/** How a process ended, as its parent's wait() sees it. */
export interface ExitStatus { code: number | null, signal: number | null }

/**
 * What a signal sent to a hollow original said of itself (its siginfo, docs/ppm.md "Pending
 * signals"): its code (SI_USER 0, SI_QUEUE -1, SI_TKILL -6, ...), sender pid and uid, and its
 * value (si_value, a 64-bit integer in decimal).
 */
export interface SigInfo { code: number, pid: number, uid: number, value: string }

/** "SIGNAL sig [code pid uid value]" of a deputy: the signal number, and its siginfo when given. */
export function parseSignalLine (rest: string): { sig: number, info?: SigInfo } {
  const [sig, code, pid, uid, value] = rest.split(' ')
  const n = (x: string | undefined): number => x !== undefined && /^-?\d{1,10}$/.test(x) ? Number(x) : NaN
  const info = { code: n(code), pid: n(pid), uid: n(uid), value: value ?? '' }
  const ok = Number.isSafeInteger(info.code) && Number.isSafeInteger(info.pid) && Number.isSafeInteger(info.uid) && /^-?\d{1,20}$/.test(info.value)
  return ok ? { sig: Number(sig), info } : { sig: Number(sig) }
}

/** Where an image goes: a path, an open fd, or a writable stream (pipe, socket, file stream). */
export type ImageSink = string | number | Writable
/** Where an image comes from: a path, an open fd, or a readable stream. */
export type ImageSource = string | number | Readable

function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir
    const up = dirname(dir)
    if (up === dir) throw new PpmError('ENOENT', 'cannot find the package root')
    dir = up
  }
}

/** Path of the native helper (env HPC_PPM_HELPER overrides). */
export function helperPath (): string {
  const p = process.env.HPC_PPM_HELPER ?? join(packageRoot(), 'native', 'build', 'hpc-ppm-helper')
  if (!existsSync(p)) throw new PpmError('ENOENT', `PPM helper ${p} is missing: run npm run build`)
  return p
}

/** Can a process have pid (1 to the kernel's largest pid_max)? */
export function isPid (pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && pid <= 0x3fffffff
}

function checkPid (pid: number): void {
  if (!isPid(pid)) throw einval(`bad pid ${String(pid)}`)
}

/** Helpers started ahead (standby.ts); on only where `useStandby(true)` was called (the daemon). */
const standbys = new StandbyPool(kind => {
  const stdio: StdioItem[] = ['ignore', 'ignore', kind === 'deputy' ? 'pipe' : 'ignore', 'ignore', 'pipe', 'pipe']
  try { return spawn(helperPath(), ['standby'], { stdio: onlyStdio(stdio), detached: kind === 'keep' }) } catch (e) { log('standby: %s', (e as Error).message); return undefined }
})

export function useStandby (on: boolean): void { standbys.use(on) }

const errnoNames = new Set(['EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'EIO', 'EBADF', 'ECHILD', 'EAGAIN', 'ENOMEM', 'EACCES',
  'EFAULT', 'EBUSY', 'EEXIST', 'EINVAL', 'ENOSPC', 'EPIPE', 'ERANGE', 'ENOSYS', 'EBADMSG', 'EPROTO', 'ENOTSUP', 'ENXIO', 'ESTALE'])

/** A running helper with its control-line stream. */
class Helper extends EventEmitter {
  readonly child: ChildProcess
  readonly reasons: Reason[] = []
  readonly stats: Record<string, string> = {}
  /** RELAYFD lines (a deputy's relayed fds) and RELAY lines (a restore's relay ends) */
  readonly relayed: RelayedFd[] = []
  readonly relayEnds: RelayEnd[] = []
  private readonly waiters: Array<{ kinds: string[], resolve: (l: string[]) => void, reject: (e: Error) => void }> = []
  private readonly backlog: string[][] = []
  private ended = false
  private error: PpmError | undefined
  private stderr = ''
  readonly done: Promise<number>

  /**
   * detached: the helper (and a process it restores) gets a session of its own. `standby`: a
   * helper started ahead (`standby` below) is told to run args instead of a new one spawned.
   */
  constructor (args: string[], stdio: StdioItem[], opts: { detached?: boolean, standby?: ChildProcess } = {}) {
    super()
    log(opts.standby !== undefined ? 'standby helper %d runs %o' : 'spawn helper %o', ...(opts.standby !== undefined ? [opts.standby.pid, args] : [args]))
    // onlyStdio: the helper gets its stdio and none of the daemon's descriptors (src/util/fds.ts)
    this.child = opts.standby ?? spawn(helperPath(), args, { stdio: onlyStdio(stdio), detached: opts.detached === true })
    const ctl = this.child.stdio[4] as Readable | null
    if (ctl == null) throw new PpmError('EIO', 'helper control pipe missing')
    const err = this.child.stdio[2] as Readable | null
    if (err != null && typeof (err as Readable).on === 'function' && stdio[2] === 'pipe') {
      err.on('data', (b: Buffer) => { this.stderr += b.toString() })
    }
    const cmd = (this.child.stdio as unknown as Array<Writable | null>)[5]
    cmd?.on('error', (e: Error) => log('deputy command pipe: %s', e.message))
    const rl = createInterface({ input: ctl })
    rl.on('line', line => this.onLine(line))
    if (opts.standby !== undefined) {
      // its fds 3 and 6 are this process's (pidfd_getfd), the rest it has already; each named with
      // its inode, so that a descriptor closed (and its number reused) before it is taken fails
      // the command instead of handing it another connection
      const fd = (i: number): string => typeof stdio[i] === 'number' ? `${stdio[i] as number}:${fstatSync(stdio[i] as number).ino}` : '-'
      trace('RUN-sent')
      try { cmd?.write(`RUN ${process.pid} ${fd(3)} ${fd(6)} ${args.join(' ')}\n`) } catch (e) {
        log('standby %d: %s', this.child.pid, (e as Error).message) // a descriptor already closed: the command fails
        this.child.kill('SIGKILL')
      }
    }
    let closed = false
    const ctlClosed = new Promise<void>(resolve => rl.on('close', () => { closed = true; resolve() }))
    this.done = new Promise(resolve => {
      this.child.on('error', e => {
        this.fail(new PpmError('EIO', `cannot run the PPM helper: ${e.message}`))
        resolve(-1)
      })
      this.child.on('exit', (code, sig) => {
        const finish = (): void => {
          this.ended = true
          if (this.error == null && code !== 0) {
            this.fail(new PpmError('EIO', `PPM helper ended with ${code ?? String(sig)}${this.stderr !== '' ? ': ' + this.stderr.trim() : ''}`, this.reasons))
          }
          this.fail(this.error ?? new PpmError('EIO', 'PPM helper ended'))
          resolve(code ?? -1)
        }
        if (closed) finish(); else void ctlClosed.then(finish)
      })
    })
  }

  private onLine (line: string): void {
    log('helper: %s', line)
    const sp = line.indexOf(' ')
    const kind = sp < 0 ? line : line.slice(0, sp)
    const rest = sp < 0 ? '' : line.slice(sp + 1)
    if (kind === 'REASON') {
      const s = rest.indexOf(' ')
      this.reasons.push({ code: s < 0 ? rest : rest.slice(0, s), text: s < 0 ? '' : rest.slice(s + 1) })
    } else if (kind === 'STAT') {
      for (const kv of rest.split(' ')) {
        const eq = kv.indexOf('=')
        if (eq > 0) this.stats[kv.slice(0, eq)] = kv.slice(eq + 1)
      }
    } else if (kind === 'ERR') {
      const s = rest.indexOf(' ')
      const name = s < 0 ? rest : rest.slice(0, s)
      const code = (errnoNames.has(name) ? name : 'EIO') as ErrnoName
      const msg = (s < 0 ? name : rest.slice(s + 1)) + (this.reasons.length > 0 ? ': ' + this.reasons.map(r => `${r.code}: ${r.text}`).join('; ') : '')
      const e = new PpmError(code, msg, [...this.reasons])
      this.reasons.length = 0
      this.fail(e)
      return
    } else if (kind === 'RELAYFD') {
      const [fd, dir, k] = rest.split(' ')
      this.relayed.push({ fd: Number(fd), dir: dir === 'r' || dir === 'w' ? dir : 'rw', kind: k === 'sock' ? 'sock' : 'pipe' })
    } else if (kind === 'RELAY') {
      const [fd, dir, a, b] = rest.split(' ')
      this.relayEnds.push({ fd: Number(fd), read: dir === 'w' ? a : dir === 'rw' ? a : null, write: dir === 'r' ? a : dir === 'rw' ? b : null })
    } else if (kind === 'SIGNAL') {
      const { sig, info } = parseSignalLine(rest)
      this.emit('signal', sig, info)
    } else if (kind === 'FAMILY') {
      const s = rest.indexOf(' ')
      this.emit('family', { id: rest.slice(0, s), call: rest.slice(s + 1) })
    }
    const parts = [kind, ...rest.split(' ')]
    const i = this.waiters.findIndex(w => w.kinds.includes(kind))
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(parts)
    else if (kind !== 'STAT' && kind !== 'REASON' && kind !== 'SIGNAL' && kind !== 'FD' && kind !== 'FAMILY' && kind !== 'RELAYFD' && kind !== 'RELAY') this.backlog.push(parts)
    this.emit('line', parts)
  }

  private fail (e: PpmError): void {
    const w = this.waiters.splice(0)
    if (w.length === 0) { this.error ??= e; return }
    for (const x of w) x.reject(e)
  }

  /** Resolves with the next line of one of these kinds; rejects on ERR or when the helper ends. */
  next (...kinds: string[]): Promise<string[]> {
    const p = this.take(kinds)
    p.catch(() => {}) // a waiter abandoned because a command could not be sent is no unhandled rejection
    return p
  }

  private take (kinds: string[]): Promise<string[]> {
    const b = this.backlog.findIndex(l => kinds.includes(l[0]))
    if (b >= 0) return Promise.resolve(this.backlog.splice(b, 1)[0])
    if (this.error != null) {
      const e = this.error
      this.error = undefined
      return Promise.reject(e)
    }
    if (this.ended) return Promise.reject(new PpmError('ESRCH', 'PPM helper has ended'))
    return new Promise((resolve, reject) => this.waiters.push({ kinds, resolve, reject }))
  }

  send (cmd: string): void {
    const w = (this.child.stdio as unknown as Array<Writable | null>)[5]
    if (w == null || w.destroyed || this.ended) throw new PpmError('ESRCH', 'the deputy has ended')
    w.write(cmd + '\n')
  }
}

function num (s: string | undefined): number { return s == null ? NaN : Number(s) }

/** Where a kept process (restoreKept) is: its pid, its keeper (the restore helper: pid and start
 * time, to know it again) and the keeper's fds that a caller opens through /proc/<helper>/fd/. */
export interface KeepInfo {
  pid: number
  helper: number
  /** the helper's start time (field 22 of /proc/<pid>/stat), '' if unknown */
  start: string
  fds: { in: number, out: number, err: number, ctl: number, cmd: number }
  /** the keeper's ends of its relayed descriptors above 2 (native/relay.c), held for whoever attaches */
  relays?: RelayEnd[]
}

/** A process's start time (clock ticks after boot; field 22 of /proc/<pid>/stat), '' when gone. */
export function startTime (pid: number): string {
  try { return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[19] ?? '' } catch { return '' }
}

/**
 * Reasons why `pid` cannot move (empty: it can). Touches nothing. `family`: children are no
 * obstacle (moved as a deputy, the original stays their parent; docs/family.md).
 */
export async function check (pid: number, opts: { family?: boolean, relay?: boolean } = {}): Promise<Reason[]> {
  checkPid(pid)
  const h = new Helper(['check', String(pid), ...(opts.family === true ? ['--family'] : []), ...(opts.relay === true ? ['--relay'] : [])], ['ignore', 'ignore', 'pipe', 'ignore', 'pipe'])
  try {
    await h.next('OK')
    return []
  } catch (e) {
    if (e instanceof PpmError && e.reasons.length > 0) return e.reasons
    throw e
  }
}

/** This host's compatibility record (CPU features, XSTATE, vDSO), for `DumpOptions.target`. */
export async function hostInfo (): Promise<string> {
  const h = new Helper(['hostinfo'], ['ignore', 'ignore', 'pipe', 'ignore', 'pipe'])
  const l = await h.next('HOSTINFO')
  return l[1]
}

/**
 * Bytes waiting unread in descriptor fd of process pid (a pipe or a stream socket: FIONREAD through
 * pidfd_getfd), or -1 when that cannot be told (the process or the fd is gone).
 */
export async function unread (pid: number, fd: number): Promise<number> {
  try {
    const h = new Helper(['unread', String(pid), String(fd)], ['ignore', 'ignore', 'pipe', 'ignore', 'pipe'])
    const l = await h.next('UNREAD')
    return Number(l[1])
  } catch { return -1 }
}

/**
 * The OS fd under a connected net.Socket, so that a helper reads or writes the image on it
 * directly instead of through this process (the fast path for moving a process over the network).
 * A socket used as an image source must not have been read from: create it paused
 * (`pauseOnConnect: true` on the server) and attach no 'data' listener.
 */
export function socketFd (sock: Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw einval('socket has no file descriptor')
  if (sock.readableLength > 0 || sock.bytesRead > 0) throw einval('socket has already been read from')
  return fd
}

interface SinkSetup { stdio: StdioItem, attach: (h: Helper) => Promise<void>, close: () => void }

function sinkFor (out: ImageSink): SinkSetup {
  if (typeof out === 'number') return { stdio: out, attach: async () => {}, close: () => {} }
  if (typeof out === 'string') {
    const fd = out === '-' ? 1 : openSync(out, 'w', 0o600)
    return { stdio: fd, attach: async () => {}, close: () => { if (fd !== 1) closeSync(fd) } }
  }
  return {
    stdio: 'pipe',
    attach: async h => { await pipeline(h.child.stdio[3] as Readable, out) },
    close: () => {}
  }
}

/**
 * Copies an image stream into a helper's input. The helper stops reading once it has the image's
 * END record (or when it refuses the image) and closes its end: what src still has is then read
 * and dropped, not destroyed, so that whoever writes src (a dump into the same stream) ends as it
 * would have. An error of src closes the helper's input (it sees a truncated image).
 */
async function feed (src: Readable, w: Writable): Promise<void> {
  await new Promise<void>(resolve => {
    let done = false
    const stop = (): void => {
      if (done) return
      done = true
      src.unpipe(w)
      src.on('data', () => {})
      src.resume()
      resolve()
    }
    w.on('error', stop)
    w.on('close', stop)
    src.on('error', () => { w.destroy(); stop() })
    src.pipe(w)
  })
}

function sourceFor (src: ImageSource): SinkSetup {
  if (typeof src === 'number') return { stdio: src, attach: async () => {}, close: () => {} }
  if (typeof src === 'string') {
    const fd = src === '-' ? 0 : openSync(src, 'r')
    return { stdio: fd, attach: async () => {}, close: () => { if (fd !== 0) closeSync(fd) } }
  }
  return {
    stdio: 'pipe',
    attach: async h => { await feed(src, h.child.stdio[3] as Writable) },
    close: () => {}
  }
}

export interface DumpOptions {
  /** keep the process running after the dump (default: it is removed once the image is complete) */
  leaveRunning?: boolean
  /** compatibility record of the target host (hostInfo() there): refuse before touching the process */
  target?: string
  /** pipes and stream sockets whose other end is elsewhere are relayed, not refused (native/relay.c) */
  relay?: boolean
  /** an open file that gets a copy of every byte of the image too (the helper writes both) */
  copy?: number
  /** a sink (a non-blocking socket) that takes nothing for this long fails the dump (ms) */
  stallMs?: number
  /** pre-copy (docs/ppm.md "Pre-copy"): copy the memory in rounds while the process runs, then
   * freeze it for the pages written during the last round only; `rounds` bounds the rounds
   * (default 8, 2-100), after which (or once a round from the third on copies no less than the one
   * before) a process that keeps writing too fast is dumped plainly */
  precopy?: boolean | { rounds?: number }
}

/** Arguments and stdio slot 6 for DumpOptions.copy and stallMs. */
function sinkArgs (opts: { copy?: number, stallMs?: number }): { args: string[], extra: StdioItem[] } {
  const args: string[] = []
  if (opts.stallMs != null) args.push('--stall-ms', String(Math.max(1, Math.round(opts.stallMs))))
  if (opts.copy == null) return { args, extra: [] }
  args.push('--copy')
  return { args, extra: [opts.copy] }
}

export interface DumpResult { bytes: number, pages: number, freezeMs: number, stats: Record<string, string> }

function precopyArgs (p: DumpOptions['precopy']): string[] {
  if (p == null || p === false) return []
  const rounds = p === true ? undefined : p.rounds
  if (rounds == null) return ['--precopy']
  if (!Number.isInteger(rounds) || rounds < 2 || rounds > 100) throw einval(`pre-copy rounds must be 2-100, not ${String(rounds)}`)
  return ['--precopy', '--rounds', String(rounds)]
}

/** Checkpoints `pid` into `out`. A process that cannot move, or any failure, leaves it running as before. */
export async function dump (pid: number, out: ImageSink, opts: DumpOptions = {}): Promise<DumpResult> {
  const { args, more } = dumpArgs(pid, opts)
  const sink = sinkFor(out)
  const { h, copy } = spawnDump(args, more, sink, false)
  return await dumpDone(h, copy, sink)
}

/**
 * A dump's helper (a standby where one can take it) and its image being passed on; `wait`: dump
 * --wait, fd 5 the caller's commands (on a standby it is a pipe the dump does not read otherwise).
 */
function spawnDump (args: string[], more: ReturnType<typeof sinkArgs>, sink: SinkSetup, wait: boolean): { h: Helper, copy: Promise<void> } {
  try {
    const standby = typeof sink.stdio === 'number' && more.extra.every(x => typeof x === 'number') ? standbys.take('deputy', args) : undefined
    const fd5: StdioItem[] = wait || standby !== undefined ? ['pipe'] : more.extra.length > 0 ? ['ignore'] : []
    const h = new Helper(args, ['ignore', 'ignore', 'pipe', sink.stdio, 'pipe', ...fd5, ...more.extra], standby !== undefined ? { standby } : {})
    return { h, copy: sink.attach(h) }
  } catch (e) { sink.close(); throw e }
}

/** The arguments of a dump of pid (without --wait), and its stdio slot 6. */
function dumpArgs (pid: number, opts: DumpOptions): { args: string[], more: ReturnType<typeof sinkArgs> } {
  checkPid(pid)
  const args = ['dump', String(pid)]
  if (opts.leaveRunning === true) args.push('--leave-running')
  if (opts.target != null) args.push('--target', opts.target)
  if (opts.relay === true) args.push('--relay')
  const more = sinkArgs(opts)
  args.push(...more.args)
  args.push(...precopyArgs(opts.precopy))
  return { args, more }
}

/** A dump's helper, until its image is out (OK) and passed on. */
async function dumpDone (h: Helper, copy: Promise<void>, sink: SinkSetup): Promise<DumpResult> {
  await imageOut(h, 'OK', copy, sink, null)
  return { bytes: num(h.stats.bytes), pages: num(h.stats.pages), freezeMs: num(h.stats.freeze_ms), stats: h.stats }
}

/**
 * Until the helper says `line` (its image written) and the image has been passed on (`copy`); the
 * sink is closed then. A helper's failure is the error. `kept` (a deputy's pid): the original is
 * frozen or hollow all the same and must be handed over (only the deputy can put it back), so a
 * failure to pass on the image's very end is logged, the caller's stream knows it; else it is the
 * error too.
 */
async function imageOut (h: Helper, line: string, copy: Promise<void>, sink: SinkSetup, kept: number | null): Promise<void> {
  try {
    const ok = h.next(line)
    const [r] = await Promise.allSettled([ok, copy])
    if (r.status === 'rejected') { await copy.catch(() => {}); throw r.reason }
    if (kept === null) await copy
    else await copy.catch(e => log('deputy %d: the image was written but not all passed on: %s', kept, (e as Error).message))
  } finally {
    sink.close()
  }
}

export interface RestoreOptions {
  /** try to keep the original pid (default true); it falls back to a new pid when the pid is taken */
  keepPid?: boolean
  /** fail instead of falling back to a new pid */
  requirePid?: boolean
  /** keep the pid only if it is free now: never wait for an original still being dumped (the
   * restore then writes the pages as the stream comes, instead of reading it ahead) */
  pidNow?: boolean
  /** CLOCK_MONOTONIC policy: 'auto' (default: real clock on the same boot, else continue),
   * 'real', 'continue' (the clock goes on from where it stopped) or an offset in ns */
  clock?: 'auto' | 'real' | 'continue' | number
  /** return EINTR from an interrupted ERESTART_RESTARTBLOCK sleep instead of re-issuing it */
  eintr?: boolean
  /** give the restored process the same stdio objects as process `stdioFrom` (pidfd_getfd of its
   * fds 0-2; typically the deputy's hollow original), instead of `stdio` */
  stdioFrom?: number
  /** stdio of the restored process where the image has no regular file (default: inherit) */
  stdio?: [StdioItem, StdioItem, StdioItem]
  /** keep the restored process stopped until `go()` (a move is committed only then); if the
   * caller never says go (or goes away), it is removed */
  hold?: boolean
  /** catch its family calls (fork, wait, kill of another process, ...): `Restored.family` reports
   * them, each waiting until the process is dumped (it runs again where it lands) or denied */
  family?: boolean
  /** a source (a non-blocking socket) that brings nothing for this long fails the restore (ms) */
  stallMs?: number
  /** fault injection for tests: 'early' fails once 4 KiB are read, 'end' once all of it is */
  testFault?: 'early' | 'end'
}

/** A family call of a process restored with `family` (native/family.c): `call` is its name. */
export interface FamilyCall { id: string, call: string }

/**
 * The family calls of a restored process. Event 'call' (FamilyCall): the process waits in the call.
 * A dump interrupts the wait and the call runs again wherever the image is restored.
 */
export class FamilyCalls extends EventEmitter {
  /** source: emits 'family' (FamilyCall) for each FAMILY line; send: a command line to the helper */
  constructor (source: EventEmitter, private readonly send: (line: string) => void) {
    super()
    source.on('family', (c: FamilyCall) => this.emit('call', c))
  }

  /** The call fails with errno `errno` (a number, os.constants.errno). */
  deny (id: string, errno: number): void {
    if (!/^\d+$/.test(id) || !Number.isInteger(errno) || errno < 1 || errno > 4095) throw einval('bad family call or errno')
    this.send(`DENY ${id} ${errno}`)
  }
}

export interface Restored {
  pid: number
  pidKept: boolean
  restoreMs: number
  stats: Record<string, string>
  /** the restored process' stdio streams when `stdio` asked for pipes */
  stdin: Writable | null
  stdout: Readable | null
  stderr: Readable | null
  /** resolves when the restored process ends */
  exited: Promise<ExitStatus>
  /** its family calls when restored with `family` (else null) */
  family: FamilyCalls | null
  /** its relayed descriptors (above 2): the helper's ends, to open by path; then call `relayed()` */
  relays: RelayEnd[]
  /** the relays' ends are open: the helper closes its copies (with `family` or `hold` only) */
  relayed: () => void
  /** with `hold`: lets it run (once); without, does nothing */
  go: () => void
}

function parseEnd (l: string[]): ExitStatus {
  return l[0] === 'EXIT' ? { code: Number(l[1]), signal: null } : { code: null, signal: Number(l[1]) }
}

/** Restores an image into a fresh process; resolves once it runs. */
export async function restore (src: ImageSource, opts: RestoreOptions = {}): Promise<Restored> {
  const args = ['restore']
  if (opts.keepPid === false) args.push('--new-pid')
  if (opts.requirePid === true) args.push('--require-pid')
  if (opts.pidNow === true) args.push('--pid-now')
  if (opts.eintr === true) args.push('--eintr')
  if (opts.family === true) args.push('--family')
  if (opts.hold === true) args.push('--hold')
  if (opts.stallMs != null) args.push('--stall-ms', String(Math.max(1, Math.round(opts.stallMs))))
  if (opts.testFault != null) args.push('--test-fault', opts.testFault)
  if (opts.stdioFrom != null) { checkPid(opts.stdioFrom); args.push('--stdio-from', String(opts.stdioFrom)) }
  if (opts.clock != null) {
    if (typeof opts.clock === 'number' && !Number.isSafeInteger(opts.clock)) throw einval('clock offset must be an integer of ns')
    args.push('--clock', String(opts.clock))
  }
  const source = sourceFor(src)
  // an image read from our stdin must not also become the restored process' stdin
  const stdio = opts.stdio ?? [src === '-' || src === 0 ? 'ignore' : 'inherit', 'inherit', 'inherit']
  // a restored process is nobody's child here: its own session, out of the restorer's job control
  const h = new Helper(args, [stdio[0], stdio[1], stdio[2], source.stdio, 'pipe', ...(opts.family === true || opts.hold === true ? ['pipe' as const] : [])], { detached: true })
  const family = opts.family === true ? new FamilyCalls(h, line => h.send(line)) : null
  const copy = source.attach(h)
  try {
    const l = await h.next('PID')
    const exited = h.next('EXIT', 'KILLED').then(parseEnd)
    exited.catch(() => {})
    void copy.finally(() => source.close())
    return {
      pid: Number(l[1]),
      pidKept: h.stats.pid_kept === '1',
      restoreMs: num(h.stats.restore_ms),
      stats: h.stats,
      stdin: h.child.stdin,
      stdout: h.child.stdout,
      stderr: stdio[2] === 'pipe' ? h.child.stderr : null,
      exited,
      family,
      relays: h.relayEnds,
      relayed: () => {
        const w = (h.child.stdio as unknown as Array<Writable | null>)[5]
        if (w != null && !w.destroyed && h.relayEnds.length > 0) w.write('RELAYED\n')
      },
      go: () => {
        if (opts.hold !== true) return
        const w = (h.child.stdio as unknown as Array<Writable | null>)[5]
        // with `family` fd 5 carries the DENY commands after GO: it stays open
        if (w != null && !w.destroyed) { if (opts.family === true) w.write('GO\n'); else w.end('GO\n') }
      }
    }
  } catch (e) {
    source.close()
    throw e
  }
}

/**
 * Restores an image into a fresh process kept by its restore helper (keeper mode, `restore --keep`,
 * docs/ppm.md "Keeper"): the process outlives the caller, and any process of this host (a daemon
 * started again) attaches to it with `attachKept` (src/ppm/keeper.ts) from what this returns. With
 * `hold` it runs only once told to go. `leaseMs`: with nobody attached that long, it is killed.
 * `guest`: it runs with a guest's ids (real and saved uid GUEST_ID_BASE + its own, docs/ppm.md), in a
 * pid namespace of its own where it has its image's pid and tids (the returned pid is its host pid).
 * `family`: its family calls are caught (as restore's); whoever attaches hears them (Kept.family).
 * `pidHint` (with `guest`): the pid its offer said it has: its pid namespace and stub are made while
 * the image comes (docs/ppm.md "A guest's stub made ahead"); an image of another pid gets a stub
 * made again.
 */
export async function restoreKept (src: ImageSource, opts: { clock?: RestoreOptions['clock'], hold?: boolean, guest?: boolean, family?: boolean, leaseMs: number, pidHint?: number } & Pick<RestoreOptions, 'pidNow' | 'stallMs' | 'testFault'>): Promise<KeepInfo> {
  if (!Number.isSafeInteger(opts.leaseMs) || opts.leaseMs < 1) throw einval(`bad lease ${opts.leaseMs}`)
  const args = ['restore', '--keep', String(opts.leaseMs)]
  if (opts.hold === true) args.push('--hold')
  if (opts.pidNow === true) args.push('--pid-now')
  if (opts.stallMs != null) args.push('--stall-ms', String(Math.max(1, Math.round(opts.stallMs))))
  if (opts.testFault != null) args.push('--test-fault', opts.testFault)
  if (opts.guest === true) args.push('--guest')
  if (opts.guest === true && opts.pidHint !== undefined) { checkPid(opts.pidHint); args.push('--pid-hint', String(opts.pidHint)) }
  if (opts.family === true) args.push('--family')
  if (opts.clock != null) args.push('--clock', String(opts.clock))
  const source = sourceFor(src)
  const standby = typeof source.stdio === 'number' ? standbys.take('keep', args) : undefined
  const h = new Helper(args, ['ignore', 'ignore', 'ignore', source.stdio, 'pipe'], standby !== undefined ? { standby } : { detached: true })
  const copy = source.attach(h)
  try {
    const k = await h.next('KEEP')
    trace('n:KEEP')
    const l = await h.next('PID')
    trace('n:PID')
    void copy.finally(() => source.close())
    const fd = (name: string): number => Number(/^\w+=(\d+)$/.exec(k.find(x => x.startsWith(`${name}=`)) ?? '')?.[1] ?? NaN)
    const fds = { in: fd('in'), out: fd('out'), err: fd('err'), ctl: fd('ctl'), cmd: fd('cmd') }
    const helper = h.child.pid as number
    // a guest runs in a pid namespace of its own (docs/ppm.md); said when none could be made
    if (opts.guest === true && h.stats.pidns !== '1') log('guest %s runs in the host pid namespace (%s)', l[1], h.stats.reason ?? 'no namespace')
    return { pid: Number(l[1]), helper, start: startTime(helper), fds, ...(h.relayEnds.length > 0 ? { relays: [...h.relayEnds] } : {}) }
  } catch (e) {
    source.close()
    throw e
  }
}

/**
 * The deputy: the original process, dumped, hollowed out and parked under ptrace. It keeps its
 * pid and parent. Events: 'signal' (signal number sent to it, and its SigInfo when the helper
 * gave it), 'end' (ExitStatus).
 */
export class Deputy extends EventEmitter {
  readonly freezeMs: number
  readonly hollowMs: number
  readonly ended: Promise<ExitStatus>
  private busy: Promise<unknown> = Promise.resolve()

  /** its descriptors above 2 relayed through home (dumped with `relay`) */
  readonly relayed: RelayedFd[]

  constructor (readonly pid: number, private readonly h: Helper, readonly dump: DumpResult) {
    super()
    this.relayed = [...h.relayed]
    this.freezeMs = num(h.stats.freeze_ms)
    this.hollowMs = num(h.stats.hollow_ms)
    h.on('signal', (s: number, info?: SigInfo) => this.emit('signal', s, info))
    this.ended = new Promise(resolve => {
      h.on('line', (l: string[]) => {
        if (l[0] === 'EXIT' || l[0] === 'KILLED') { const st = parseEnd(l); this.emit('end', st); resolve(st) }
      })
    })
  }

  private serial<T> (f: () => Promise<T>): Promise<T> {
    const p = this.busy.then(f, f)
    this.busy = p.catch(() => {})
    return p
  }

  /** Makes the original exit with `code`, as its parent's wait() sees it. */
  async exit (code: number): Promise<ExitStatus> {
    if (!Number.isInteger(code) || code < 0 || code > 255) throw einval(`bad exit status ${code}`)
    return await this.serial(async () => {
      const p = this.h.next('EXIT', 'KILLED')
      this.h.send(`EXIT ${code}`)
      return parseEnd(await p)
    })
  }

  /** Makes the original die by signal `sig` (default disposition), as its parent's wait() sees it. */
  async kill (sig: number): Promise<ExitStatus> {
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) throw einval(`bad signal ${sig}`)
    return await this.serial(async () => {
      const p = this.h.next('EXIT', 'KILLED')
      this.h.send(`KILL ${sig}`)
      return parseEnd(await p)
    })
  }

  /**
   * Duplicates the original's fds 0-2 (pidfd_getfd) into the deputy helper and returns paths under
   * /proc that open them (null: closed). Such a path opens files, pipes and ttys, not sockets.
   * With `relay`, each path is a pipe instead that the helper copies to or from the original's
   * fd, for any kind of descriptor: fd 0's path is read (the original's input), fd 1's and
   * fd 2's are written (they reach the original's output). Once, while the deputy lasts.
   */
  async takeFds (opts: { relay?: boolean } = {}): Promise<Array<string | null>> {
    return await this.serial(async () => {
      const out: Array<string | null> = [null, null, null]
      const onLine = (l: string[]): void => { if (l[0] === 'FD') out[Number(l[1])] = l[2] === '-' ? null : l[2] }
      this.h.on('line', onLine)
      try {
        const p = this.h.next('OK')
        this.h.send(opts.relay === true ? 'RELAY' : 'FDS')
        await p
      } finally { this.h.off('line', onLine) }
      return out
    })
  }

  /**
   * Like takeFds, for any fds: `p` the original's fd by path, `r` a pipe that carries its input as
   * it comes, `w` a pipe whose bytes go to it, `s` (a socket) both: [its input, read only on
   * `pull`; a pipe whose bytes are written to it]. Once, while the deputy lasts, for all relays.
   */
  async relayFds (fds: Array<{ fd: number, how: 'p' | 'r' | 'w' | 's' }>): Promise<Map<number, string[]>> {
    return await this.serial(async () => {
      const out = new Map<number, string[]>()
      const onLine = (l: string[]): void => { if (l[0] === 'FD' && l[2] !== '-') out.set(Number(l[1]), l.slice(2)) }
      const byPath = fds.filter(f => f.how === 'p').map(f => String(f.fd))
      const relayed = fds.filter(f => f.how !== 'p').map(f => `${f.fd}:${f.how}`)
      this.h.on('line', onLine)
      try {
        for (const [cmd, list] of [['FDS', byPath], ['RELAY', relayed]] as const) {
          if (list.length === 0) continue
          const p = this.h.next('OK')
          this.h.send(`${cmd} ${list.join(' ')}`)
          await p
        }
      } finally { this.h.off('line', onLine) }
      return out
    })
  }

  /**
   * Reads at most n bytes of the original's socket `fd` (relayed with `s`) into its input pipe, if
   * there are some now: resolves with the count (0: none yet, -1: the end of the stream).
   */
  async pull (fd: number, n: number): Promise<number> {
    return await this.serial(async () => {
      const p = this.h.next('PULLED')
      this.h.send(`PULL ${fd} ${n}`)
      return Number((await p)[2])
    })
  }

  /**
   * The process closed its `fd` away from home (`shut`: shut that socket down for writing): what
   * the relays still hold for it goes to the original first, then the deputy lets go of its copies
   * and relays of fd and the original closes it (with `shut`: the socket is shut down for writing,
   * its input still relayed).
   */
  async closeFd (fd: number, shut = false): Promise<void> {
    if (!Number.isInteger(fd) || fd < 0) throw einval(`bad fd ${fd}`)
    await this.serial(async () => {
      const p = this.h.next('OK')
      this.h.send(`CLOSE ${fd} ${shut ? 'w' : 'c'}`)
      await p
    })
  }

  /**
   * Restores an image back into the original (same pid); on failure the original stays hollow.
   * `stats`: the helper's STAT figures so far (the restore's among them).
   */
  async restoreInto (src: ImageSource): Promise<{ restoreMs: number, stats: Record<string, string> }> {
    return await this.serial(async () => {
      let path: string | undefined
      if (typeof src === 'string') path = src
      else if (typeof src === 'number') path = `/proc/${process.pid}/fd/${src}`
      if (path != null) {
        if (/\s/.test(path)) throw einval('image path must not contain white space')
        const p = this.h.next('OK')
        this.h.send(`RESTORE ${path}`)
        await p
      } else {
        const p = this.h.next('IMAGE-IN')
        this.h.send('RESTORE')
        const l = await p
        const ok = this.h.next('OK')
        const w = createWriteStream(l[1])
        const copy = feed(src as Readable, w)
        await ok
        await copy
      }
      return { restoreMs: num(this.h.stats.restore_ms), stats: { ...this.h.stats } }
    })
  }

  /**
   * Restores an image read straight from descriptor `fd` of process `from` (pidfd_getfd: e.g. this
   * daemon's connection to the node the process comes from) back into the original (same pid). Once
   * the whole image is read, `read()` is awaited (the caller passes on what the connection carried
   * before it, such as its output) and only then does the original run. A restore that fails reads
   * the rest of the image, so that the connection can go on; the original stays hollow.
   */
  async restoreFromFd (from: number, fd: number, read: () => Promise<void>): Promise<{ restoreMs: number }> {
    checkPid(from)
    if (!Number.isInteger(fd) || fd < 0) throw einval(`bad fd ${fd}`)
    return await this.serial(async () => {
      const imageRead = this.h.next('IMAGE-READ')
      const ok = this.h.next('OK')
      this.h.send(`RESTORE-FD ${from} ${fd}`)
      const first = await Promise.race([imageRead.then(() => 'read'), ok.then(() => 'ok')])
      if (first === 'read') {
        await read().catch(() => {})
        this.h.send('GO')
      }
      await ok
      return { restoreMs: num(this.h.stats.restore_ms) }
    })
  }

  /** Ends the deputy helper abruptly: the original dies with SIGKILL (PTRACE_O_EXITKILL). */
  abandon (): void {
    this.h.child.kill('SIGKILL')
  }
}

type DeputyOptions = { target?: string, family?: boolean, relay?: boolean, copy?: number, stallMs?: number, precopy?: DumpOptions['precopy'] }

/** Starts the deputy helper of pid writing into out (`wait`: it checks, then waits for GO). */
function spawnDeputy (pid: number, out: ImageSink, opts: DeputyOptions, wait: boolean): { h: Helper, copy: Promise<void>, sink: SinkSetup } {
  // (started ahead, it also keeps the dumped original frozen until told: `Dumped`)
  checkPid(pid)
  const args = ['deputy', String(pid)]
  if (opts.target != null) args.push('--target', opts.target)
  if (opts.family === true) args.push('--family')
  if (opts.relay === true) args.push('--relay')
  const more = sinkArgs(opts)
  args.push(...more.args)
  args.push(...precopyArgs(opts.precopy))
  if (wait) args.push('--wait', '--confirm')
  const sink = sinkFor(out)
  try {
    const stdio: StdioItem[] = ['ignore', 'ignore', 'pipe', sink.stdio, 'pipe', 'pipe', ...more.extra]
    const standby = wait && typeof sink.stdio === 'number' && more.extra.every(x => typeof x === 'number') ? standbys.take('deputy', args) : undefined
    const h = new Helper(args, stdio, standby !== undefined ? { standby } : {})
    return { h, copy: sink.attach(h), sink }
  } catch (e) { sink.close(); throw e }
}

/** The deputy helper has been told to go: the image is written, the original hollowed. */
async function deputyDone (pid: number, h: Helper, copy: Promise<void>, sink: SinkSetup): Promise<Deputy> {
  return await hollowDeputy(pid, h, async () => { await imageOut(h, 'HOLLOW', copy, sink, pid) })
}

/**
 * The Deputy once `hollowed` has seen HOLLOW. The signals that reached the original while it was
 * dumped and hollowed are reported just before HOLLOW: passed on by the Deputy once its caller
 * has had a turn to listen.
 */
async function hollowDeputy (pid: number, h: Helper, hollowed: () => Promise<void>): Promise<Deputy> {
  const early: Array<[number, SigInfo | undefined]> = []
  const onSignal = (sig: number, info?: SigInfo): void => { early.push([sig, info]) }
  h.on('signal', onSignal)
  try { await hollowed() } finally { h.off('signal', onSignal) }
  const d = new Deputy(pid, h, { bytes: num(h.stats.bytes), pages: num(h.stats.pages), freezeMs: num(h.stats.freeze_ms), stats: h.stats })
  if (early.length > 0) setImmediate(() => { for (const [sig, info] of early) d.emit('signal', sig, info) })
  return d
}

/**
 * Dumps `pid` into `out`, then hollows it out and parks it as a deputy. `family`: it may have
 * children; they stay here with the original as their parent (docs/family.md). `precopy`: as for
 * dump, the memory is copied while it runs first.
 */
export async function deputy (pid: number, out: ImageSink, opts: DeputyOptions = {}): Promise<Deputy> {
  const { h, copy, sink } = spawnDeputy(pid, out, opts, false)
  return await deputyDone(pid, h, copy, sink)
}

/**
 * A deputy's original dumped, frozen, not yet hollow (`startDeputy`): it is the copy kept until the
 * target runs the process. `hollow` (the move is committed): the deputy as `deputy` leaves it (an
 * original that cannot be hollowed then is killed, never let run); `release`: it runs on here.
 */
export interface Dumped {
  bytes: number
  stats: Record<string, string>
  hollow: () => Promise<Deputy>
  release: () => Promise<void>
}

/** A helper started ahead of its move (`--wait`), checked, waiting to be told to go. */
export interface Pending<T> {
  /** Dumps it (`target`: the target's hostInfo(), checked first); resolves once the image is out. */
  go: (target?: string) => Promise<T>
  /** The move does not go ahead: the helper ends (resolves then), the process let go unchanged, nothing written. */
  cancel: () => Promise<void>
  /**
   * the helper's STAT lines so far (`go_late`: the answer was late, the process runs on until GO;
   * after a failure of a raw image, `streamed`: 0 when it was ended by an empty image)
   */
  stats: Record<string, string>
}

/** A deputy started ahead of its move (`startDeputy`). */
export type PendingDeputy = Pending<Dumped>

/**
 * Starts the deputy helper of pid ahead of its move (`deputy --wait --confirm`), so that its start
 * and the check of the process overlap with the offer to the target: resolves once the process is
 * checked (rejects with the reasons, a PpmError, when it cannot move); then `go` or `cancel`.
 */
export async function startDeputy (pid: number, out: ImageSink, opts: Omit<DeputyOptions, 'target'> = {}): Promise<PendingDeputy> {
  const { h, copy, sink } = spawnDeputy(pid, out, opts, true)
  return await startedAhead(h, copy, sink, 'deputy', async () => {
    await imageOut(h, 'DUMPED', copy, sink, pid)
    let told = false
    const tell = (what: 'HOLLOW' | 'RELEASE'): void => {
      if (told) throw new PpmError('EINVAL', 'this deputy was told already')
      told = true
      h.send(what)
    }
    return {
      bytes: num(h.stats.bytes),
      stats: h.stats,
      hollow: async () => await hollowDeputy(pid, h, async () => {
        const done = h.next('HOLLOW')
        tell('HOLLOW')
        await done
      }),
      release: async () => {
        const done = h.next('RELEASED')
        tell('RELEASE')
        await done
      }
    }
  })
}

/**
 * A helper started ahead (`--wait`): resolves once it has checked the process (rejects with the
 * reasons, a PpmError, when it cannot move); then `go` (GO, with the target's record) and
 * `finish`, what follows GO for that command, or `cancel` (the process let go unchanged, nothing
 * written).
 */
async function startedAhead<T> (h: Helper, copy: Promise<void>, sink: SinkSetup, what: string, finish: () => Promise<T>): Promise<{ go: (target?: string) => Promise<T>, cancel: () => Promise<void>, stats: Record<string, string> }> {
  let used = false
  let ending: Promise<void> | null = null // (every cancel resolves once the helper has ended)
  const cancel = async (): Promise<void> => {
    if (ending === null) {
      if (used) return
      used = true
      try { h.send('CANCEL') } catch {} // (ended already)
      copy.catch(() => {})
      ending = h.done.then(() => { sink.close() })
    }
    await ending
  }
  try {
    await h.next('CHECKED')
  } catch (e) {
    used = true
    sink.close()
    copy.catch(() => {})
    throw e
  }
  return {
    go: async target => {
      if (used) throw new PpmError('EINVAL', `this ${what} was told already`)
      if (target != null && /\s/.test(target)) { void cancel(); throw einval('bad target record') }
      used = true
      // (a helper that has ended already: finish rejects with its own error)
      try { h.send(target != null && target !== '' ? `GO ${target}` : 'GO') } catch {}
      return await finish()
    },
    cancel,
    stats: h.stats
  }
}

/** A dump started ahead of its move (`startDump`), checked, waiting to be told to go. */
export type PendingDump = Pending<DumpResult>

/**
 * Starts the dump of pid ahead of its move (`dump --wait`): the helper's start, the check and the
 * reading of the process (all but its pages) overlap with the offer of its image to the target;
 * resolves once the process is checked (rejects with the reasons, a PpmError, when it cannot move);
 * then `go` (the process is removed once its image is out, as `dump`) or `cancel`.
 */
export async function startDump (pid: number, out: ImageSink, opts: Omit<DumpOptions, 'target' | 'leaveRunning'> = {}): Promise<PendingDump> {
  const { args, more } = dumpArgs(pid, opts)
  args.push('--wait')
  const sink = sinkFor(out)
  const { h, copy } = spawnDump(args, more, sink, true)
  return await startedAhead(h, copy, sink, 'dump', async () => await dumpDone(h, copy, sink))
}

/**
 * A dumped process kept frozen once its image is out (`startFrozenDump`): it is the copy kept until
 * the target runs it (docs/ppm.md "A guest kept frozen as its copy"). One of `kill` (the move is
 * committed: it is removed), `release` (it runs on as it was) or `save` (its image is written into
 * the copy, then it is removed); `drained` before, as often as needed.
 */
export interface FrozenDump {
  bytes: number
  stats: Record<string, string>
  /** until the pipes at `paths` (e.g. /proc/PID/fd/N) hold nothing (false: still not after 10 s) */
  drained: (paths: string[]) => Promise<boolean>
  kill: () => Promise<void>
  release: () => Promise<void>
  save: () => Promise<void>
}

/** A frozen dump started ahead of its move (`startFrozenDump`), checked, waiting to be told to go. */
export type PendingFrozenDump = Pending<FrozenDump>

/**
 * `startDump` whose process is not removed once its image is out but kept frozen (`dump --wait
 * --confirm`), so that no copy is written beside the stream: `copy` (required) is written only when
 * asked (`save`) or when this daemon is gone.
 */
export async function startFrozenDump (pid: number, out: ImageSink, opts: Omit<DumpOptions, 'target' | 'leaveRunning'> & { copy: number }): Promise<PendingFrozenDump> {
  const { args, more } = dumpArgs(pid, opts)
  args.push('--wait', '--confirm')
  const sink = sinkFor(out)
  const { h, copy } = spawnDump(args, more, sink, true)
  return await startedAhead(h, copy, sink, 'dump', async () => {
    await imageOut(h, 'DUMPED', copy, sink, null)
    let told: string | null = null
    const tell = async (what: string, answer: string): Promise<void> => {
      if (told !== null) throw new PpmError('EINVAL', `this frozen process was told ${told} already`)
      told = what
      const done = h.next(answer)
      h.send(what)
      await done
    }
    return {
      bytes: num(h.stats.bytes),
      stats: h.stats,
      drained: async paths => {
        if (told !== null) throw new PpmError('EINVAL', `this frozen process was told ${told} already`)
        if (paths.some(p => p === '' || p.length > 60 || /\s/.test(p))) throw einval('a path to drain must be 1-60 characters without white space')
        if (paths.length > 128) throw einval('at most 128 pipes to drain')
        const done = h.next('DRAINED')
        h.send(`DRAIN ${paths.join(' ')}`)
        return (await done)[1] === '1'
      },
      kill: async () => { await tell('KILL', 'OK') },
      release: async () => { await tell('RELEASE', 'RELEASED') },
      save: async () => { await tell('SAVE', 'SAVED') }
    }
  })
}

/** Reads a whole image and checks it against this host; returns its summary line fields. */
export async function info (src: ImageSource): Promise<{ fields: Record<string, string>, reasons: Reason[] }> {
  const source = sourceFor(src)
  try {
    const h = new Helper(['info'], ['ignore', 'ignore', 'pipe', source.stdio, 'pipe'])
    const copy = source.attach(h)
    const l = await h.next('INFO')
    const fields: Record<string, string> = {}
    for (const kv of l.slice(1)) { const eq = kv.indexOf('='); if (eq > 0) fields[kv.slice(0, eq)] = kv.slice(eq + 1) }
    let reasons: Reason[] = []
    try { await h.next('OK') } catch (e) { if (e instanceof PpmError && e.reasons.length > 0) reasons = e.reasons; else throw e }
    await copy
    return { fields, reasons }
  } finally {
    source.close()
  }
}
