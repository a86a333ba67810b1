// What the migration state machines need from the engine (src/ppm) and from this host: the one
// seam where they touch real processes. `realEngine` is the daemon's; unit tests pass stubs.
import { readFileSync } from 'node:fs'
import type { Readable, Writable } from 'node:stream'
import * as ppm from '../ppm/ppm.js'
import type { KeepInfo } from '../ppm/ppm.js'
import { attachKept, type Kept } from '../ppm/keeper.js'
import { processAge, psInfo, residentBytes, statusField, type PsInfo } from '../util/procfs.js'
import { stdioKind, type StdioKind } from './fdkind.js'
import { AHEAD_CANCEL_MS } from '../config.js'
import { within } from '../util/poll.js'
import debug from '../util/log.js'

const log = debug('hpcfs:engine')

/** The deputy as the home side uses it (ppm.Deputy). Events: 'signal' (number, and its ppm.SigInfo when known), 'end'. */
export type DeputyHandle = Pick<ppm.Deputy, 'on' | 'removeAllListeners' | 'exit' | 'kill' | 'restoreInto' | 'takeFds'> & Partial<Pick<ppm.Deputy, 'restoreFromFd' | 'relayed' | 'relayFds' | 'pull' | 'closeFd'>>

/**
 * An image written by the engine straight into a connection's socket (`fd`, see Link.rawFd), with
 * a copy into the open file `copy`; a socket that takes nothing for `stallMs` fails the dump.
 */
export interface RawSink { fd: number, copy: number, stallMs: number }
/** An image read by the engine straight from a connection's socket. */
export interface RawSource { fd: number, stallMs: number, testFault?: 'early' | 'end' }

/** Is x a connection's socket for the engine (not a stream, not a plain descriptor)? */
export function isRaw<T> (x: T | RawSink | RawSource): x is RawSink | RawSource {
  return typeof x === 'object' && x !== null && typeof (x as { fd?: unknown }).fd === 'number' && !('write' in x) && !('read' in x)
}

/** A restored process as the guest side uses it (ppm.Restored); `family`: its family calls (family.ts). */
export type RestoredHandle = Pick<ppm.Restored, 'pid' | 'stdin' | 'stdout' | 'stderr' | 'exited' | 'go'> & Partial<Pick<ppm.Restored, 'family' | 'stats' | 'relays' | 'relayed'>>

/**
 * A guest process: restored in keeper mode (src/ppm/keeper.ts), so that it outlives this daemon,
 * and attached to. `keeper` is what a daemon started again needs to attach to it (`adopt`).
 */
export interface GuestProcess extends Omit<RestoredHandle, 'go'> {
  /** lets a held process run; resolves once it runs (untraced: it can be dumped again) or has ended */
  go: () => Promise<void>
  readonly keeper: KeepInfo
  /** its stdin reaches its end */
  endStdin: () => void
  /** the input of its relayed fd (above 2) reaches its end (the keeper closes its end of it) */
  endRelay?: (fd: number) => void
  /** its relayed output fd (1, 2, or above) is broken at home: the keeper lets go of its reader of it */
  breakRelay?: (fd: number) => void
  /** signal sig sent to it with this siginfo (by its keeper: kept where the kernel lets another process queue it) */
  sigqueue?: (sig: number, info: ppm.SigInfo) => void
  /** bytes waiting unread in its descriptor fd (-1: cannot be told) */
  unread?: (fd: number) => Promise<number>
  /** lets go of it (it lives on under its keeper, for the lease) */
  detach: () => void
  /** lets go of it for good: its end was passed on, or it left (its keeper leaves once it has ended) */
  release: () => void
  /** does it still run? */
  alive: () => boolean
  /** is it held by a tracer other than its keeper (a dump that keeps it frozen as its copy)? */
  frozen?: () => boolean
}

/** What `startDeputy` says once the process is checked. */
export type StartedDeputy = { reasons: Array<{ code: string, text: string }> } | { reasons: null, go: (target?: string) => Promise<DumpedHandle>, cancel: () => Promise<void> }

/** A dump started ahead (Engine.startDump): its reasons when it cannot move, else `go` (dump it, `target` checked first) or `cancel` (let go unchanged). */
export type StartedDump = { reasons: Array<{ code: string, text: string }> } | { reasons: null, go: (target?: string) => Promise<unknown>, cancel: () => Promise<void> }

/**
 * A guest dumped and kept frozen as its own copy (Engine.startFrozenDump): no copy file is written
 * beside the stream. `drained(paths)` once the pipes its output goes through (this daemon reads their
 * other ends) are empty (false: not within 10 s);
 * then one of `kill` (the move is committed), `release` (the target could not run it: it runs on)
 * or `save` (its image into the copy file, then it is removed: the connection to home broke).
 */
export interface FrozenGuest {
  bytes: number
  drained: (paths: string[]) => Promise<boolean>
  kill: () => Promise<void>
  release: () => Promise<void>
  save: () => Promise<void>
}

/** A frozen dump started ahead: as StartedDump; `streamed()` after `go` failed: did any of the image go (false: it was ended by an empty image)? */
export type StartedFrozenDump = { reasons: Array<{ code: string, text: string }> } | { reasons: null, go: (target?: string) => Promise<FrozenGuest>, cancel: () => Promise<void>, streamed: () => boolean }

/**
 * A process dumped by a deputy started ahead, frozen, not yet hollow: the copy kept until the
 * target runs it (no copy file). `hollow` once the move is committed (an original that cannot be
 * hollowed then is killed, never let run), `release` when it is not (it runs on where it was).
 */
export interface DumpedHandle { hollow: () => Promise<DeputyHandle>, release: () => Promise<void> }

export interface Engine {
  /** Why pid cannot move (empty when it can). */
  check (pid: number): Promise<Array<{ code: string, text: string }>>
  /** This host's compatibility record. */
  hostInfo (): Promise<string>
  /** Keeps engine helpers started ahead of the moves that will use them (on: the daemon listens; off: it closes). Optional. */
  standby?: (on: boolean) => void
  /** Dumps pid into out (a stream, or a connection's socket with a copy) and leaves its original behind as the deputy; `precopy`: copying its memory while it runs first. */
  deputy (pid: number, out: Writable | RawSink, opts: { target?: string, precopy?: boolean }): Promise<DeputyHandle>
  /**
   * A deputy started ahead of its move, into a connection's socket (a raw image, `out.copy`
   * unused): its helper starts and checks pid while the caller offers the process; `reasons` when
   * it cannot move, else `go` (dump it, `target` checked first: the original stays frozen as the
   * copy, DumpedHandle) or `cancel` (nothing touched).
   * Optional: without it, `check` and then `deputy`.
   */
  startDeputy?: (pid: number, out: RawSink, opts: { precopy?: boolean }) => Promise<StartedDeputy>
  /**
   * A dump into a connection's socket started ahead of its move (optional: without it, `dump`): its
   * helper starts, checks pid and reads all of it but its pages while the caller waits for the
   * reader's answer; `go` writes the image (the process is removed once it is out), `cancel` lets
   * it go unchanged. With pre-copy it touches the process only on `go`.
   */
  startDump?: (pid: number, out: RawSink, opts: { precopy?: boolean }) => Promise<StartedDump>
  /**
   * startDump, but once the image is out the process stays frozen as the copy kept until the
   * target runs it (FrozenGuest): `out.copy` is written only by `save`, or by the helper itself
   * should this daemon die first (a daemon started again finds the copy as before). Optional.
   */
  startFrozenDump?: (pid: number, out: RawSink, opts: { precopy?: boolean }) => Promise<StartedFrozenDump>
  /** Dumps pid into out, a stream, a file descriptor the engine writes itself, or a connection's socket with a copy (the process is removed once the image is complete); `precopy` as for deputy. */
  dump (pid: number, out: Writable | number | RawSink, opts: { target?: string, precopy?: boolean }): Promise<unknown>
  /**
   * Restores an image (a stream, or a connection's socket the engine reads itself) into a fresh
   * guest process, kept by its restore helper (keeper mode): with `hold` it runs only once told to
   * go; with nobody attached for `leaseMs`, its keeper kills it. `pidNow`: see ppm.RestoreOptions.
   * `pidHint`: its pid as its offer said: its pid namespace and stub are made while the image comes
   * (docs/ppm.md "A guest's stub made ahead").
   */
  restore (src: Readable | RawSource, opts: { hold: boolean, family?: boolean, leaseMs: number, pidNow?: boolean, pidHint?: number }): Promise<GuestProcess>
  /** Attaches again to a guest process (after this daemon was restarted); throws when it is gone. */
  adopt (keeper: KeepInfo): GuestProcess
  /** process.kill */
  kill (pid: number, sig: number | NodeJS.Signals): void
  /** Does the process exist? */
  alive (pid: number): boolean
  /** Its command name, resident bytes and age (s), for an offer. */
  describe (pid: number): { name: string, bytes: number, age: number }
  /** What its fds 0-2 are (relay.ts). */
  stdioKinds (pid: number): StdioKind[]
  /** MemAvailable of this host, in bytes. */
  availableBytes (): number
  /** What ps shows of a local process (CPU ticks, state, memory, command line); undefined when gone. */
  psInfo (pid: number): PsInfo | undefined
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' } }

function comm (pid: number): string {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '?' }
}

function availableBytes (): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
  return m ? Number(m[1]) * 1024 : Number.MAX_SAFE_INTEGER
}

/**
 * A helper started ahead for pid: its go and cancel, or the reasons it found the process cannot
 * move. Its cancel resolves once the helper has let go of the process, or after AHEAD_CANCEL_MS
 * with a log line: a helper stuck on a process in uninterruptible sleep must not hold the move.
 */
async function ahead<G, X extends object = object> (pid: number, start: () => Promise<{ go: G, cancel: () => Promise<void> } & X>): Promise<({ reasons: null, go: G, cancel: () => Promise<void> } & X) | { reasons: Array<{ code: string, text: string }> }> {
  try {
    const a = await start()
    const cancel = async (): Promise<void> => { if (!await within(a.cancel(), AHEAD_CANCEL_MS)) log('the helper started ahead for %d has not let go of it after %d ms', pid, AHEAD_CANCEL_MS) }
    return { ...a, reasons: null, go: a.go, cancel }
  } catch (e) {
    if (e instanceof ppm.PpmError && e.reasons.length > 0) return { reasons: e.reasons }
    throw e
  }
}

function fromKept (k: Kept): GuestProcess {
  return { pid: k.pid, keeper: k.info, stdin: k.stdin, stdout: k.stdout, stderr: k.stderr, exited: k.exited, family: k.family, go: k.go, endStdin: k.endStdin, detach: k.detach, release: k.release, alive: k.alive, relays: k.info.relays ?? [], endRelay: k.endRelay, breakRelay: k.breakRelay, sigqueue: k.sigqueue, unread: async fd => await ppm.unread(k.pid, fd), frozen: () => tracedByOther(k.pid, k.info.helper) }
}

/** Is pid traced by a process other than `keeper` (0: not traced; false when it is gone)? */
function tracedByOther (pid: number, keeper: number): boolean {
  const t = Number(statusField(pid, 'TracerPid') ?? '0')
  return t !== 0 && t !== keeper
}

/** `e` with pre-copy for the processes of at least `minBytes()` resident (0 = never; config
 * precopy): their deputy or dump copies their memory while they run (docs/ppm.md "Pre-copy"). */
export function withPrecopy (e: Engine, minBytes: () => number): Engine {
  const want = (pid: number): boolean => { const m = minBytes(); return m > 0 && e.describe(pid).bytes >= m }
  return {
    ...e,
    deputy: async (pid, out, opts) => await e.deputy(pid, out, { ...opts, precopy: want(pid) }),
    ...(e.startDeputy !== undefined ? { startDeputy: async (pid: number, out: RawSink, opts: { precopy?: boolean }) => await (e.startDeputy as NonNullable<Engine['startDeputy']>)(pid, out, { ...opts, precopy: want(pid) }) } : {}),
    ...(e.startDump !== undefined ? { startDump: async (pid: number, out: RawSink, opts: { precopy?: boolean }) => await (e.startDump as NonNullable<Engine['startDump']>)(pid, out, { ...opts, precopy: want(pid) }) } : {}),
    ...(e.startFrozenDump !== undefined ? { startFrozenDump: async (pid: number, out: RawSink, opts: { precopy?: boolean }) => await (e.startFrozenDump as NonNullable<Engine['startFrozenDump']>)(pid, out, { ...opts, precopy: want(pid) }) } : {}),
    dump: async (pid, out, opts) => await e.dump(pid, out, { ...opts, precopy: want(pid) })
  }
}

export const realEngine: Engine = {
  // a process leaves home as a deputy: its children stay with the original (family.ts); its pipes
  // and stream sockets whose other end is elsewhere are relayed (relay.ts)
  check: async pid => await ppm.check(pid, { family: true, relay: true }),
  hostInfo: async () => await ppm.hostInfo(),
  standby: on => { ppm.useStandby(on) },
  startDeputy: async (pid, out, opts) => await ahead(pid, async () => {
    const d = await ppm.startDeputy(pid, out.fd, { ...opts, family: true, relay: true, stallMs: out.stallMs })
    return {
      go: async (target?: string) => {
        const dumped = await d.go(target)
        return { hollow: async () => await dumped.hollow(), release: dumped.release }
      },
      cancel: d.cancel
    }
  }),
  startDump: async (pid, out, opts) => await ahead(pid, async () => await ppm.startDump(pid, out.fd, { ...opts, relay: true, copy: out.copy, stallMs: out.stallMs })),
  startFrozenDump: async (pid, out, opts) => await ahead(pid, async () => {
    const d = await ppm.startFrozenDump(pid, out.fd, { ...opts, relay: true, copy: out.copy, stallMs: out.stallMs })
    return { go: d.go, cancel: d.cancel, streamed: () => d.stats.streamed !== '0' }
  }),
  deputy: async (pid, out, opts) => isRaw(out) ? await ppm.deputy(pid, out.fd, { ...opts, family: true, relay: true, copy: out.copy, stallMs: out.stallMs }) : await ppm.deputy(pid, out, { ...opts, family: true, relay: true }),
  dump: async (pid, out, opts) => isRaw(out) ? await ppm.dump(pid, out.fd, { ...opts, relay: true, copy: out.copy, stallMs: out.stallMs }) : await ppm.dump(pid, out, { ...opts, relay: true }),
  restore: async (src, opts) => {
    // (a hint no process can have is not passed on: it is a hint, the restore goes on without it)
    const pidHint = opts.pidHint !== undefined && ppm.isPid(opts.pidHint) ? opts.pidHint : undefined
    const kept = { clock: 'auto' as const, hold: opts.hold, guest: true, family: opts.family, leaseMs: opts.leaseMs, pidNow: opts.pidNow, pidHint }
    return fromKept(attachKept(isRaw(src) ? await ppm.restoreKept(src.fd, { ...kept, stallMs: src.stallMs, testFault: src.testFault }) : await ppm.restoreKept(src, kept), true))
  },
  adopt: keeper => fromKept(attachKept(keeper)),
  kill: (pid, sig) => { process.kill(pid, sig) },
  alive,
  describe: pid => ({ name: comm(pid), bytes: residentBytes(pid), age: processAge(pid) }),
  stdioKinds: pid => [0, 1, 2].map(fd => stdioKind(pid, fd)),
  availableBytes,
  psInfo: pid => psInfo(pid)
}
