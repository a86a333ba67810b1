// Stubs for unit tests of the migration state machines (src/migrate/home.ts, guest.ts): an engine
// that touches no process and records what it was asked, a cluster, and a peer driven by the test
// over an in-memory connection (src/migrate/memlink.ts).
import { EventEmitter } from 'node:events'
import { writeSync } from 'node:fs'
import { PassThrough, type Readable, type Writable } from 'node:stream'
import type { Cluster } from '../../src/migrate/cluster.js'
import type { DeputyHandle, Engine, GuestProcess } from '../../src/migrate/engine.js'
import type { Link } from '../../src/migrate/link.js'
import type { Kind, Message, MsgOf } from '../../src/migrate/protocol.js'
import type { ExitStatus, KeepInfo, SigInfo } from '../../src/ppm/ppm.js'
import type { PsInfo } from '../../src/util/procfs.js'
import { poll } from '../../src/util/poll.js'

export function cluster (id: number, over: Partial<Cluster> = {}): Cluster {
  return { id, addressOf: n => n >= 1 && n <= 9 ? { host: '127.0.0.1', port: 4660 + n } : undefined, isUp: () => true, blocked: false, keepsLocal: false, ...over }
}

export async function readAll (src: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of src) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** A deputy that records what it is told. */
export class StubDeputy extends EventEmitter {
  exited: number[] = []
  killed: number[] = []
  restored: Buffer[] = []
  /** make restoreInto fail with this message */
  failRestore = ''
  async exit (code: number): Promise<ExitStatus> { this.exited.push(code); return { code, signal: null } }
  async kill (sig: number): Promise<ExitStatus> { this.killed.push(sig); return { code: null, signal: sig } }
  async restoreInto (src: Readable | string | number): Promise<{ restoreMs: number, stats: Record<string, string> }> {
    const image = await readAll(src as Readable)
    if (this.failRestore) throw new Error(this.failRestore)
    this.restored.push(image)
    return { restoreMs: 1, stats: {} }
  }
  async takeFds (): Promise<Array<string | null>> { return [null, null, null] }
}

/** A restored guest process that does nothing: its streams and end are the test's. */
export class StubRestored implements GuestProcess {
  readonly stdin = new PassThrough()
  readonly stdout = new PassThrough()
  readonly stderr = new PassThrough()
  end!: (st: ExitStatus) => void
  readonly exited = new Promise<ExitStatus>(resolve => { this.end = resolve })
  /** it was let run (go) */
  running = false
  /** signals its keeper was told to send with their siginfo (sigqueue) */
  readonly queued: Array<[number, SigInfo]> = []
  sigqueue (sig: number, info: SigInfo): void { this.queued.push([sig, info]) }
  /** the daemon let go of it (detach); its stdin was ended (endStdin) */
  detached = false
  stdinEnded = false
  ended = false
  readonly keeper: KeepInfo
  constructor (readonly pid: number, readonly image: Buffer) {
    this.keeper = { pid, helper: pid + 100000, start: '1', fds: { in: 5, out: 6, err: 7, ctl: 8, cmd: 9 } }
    void this.exited.then(() => { this.ended = true })
  }

  async go (): Promise<void> { this.running = true }
  endStdin (): void { this.stdinEnded = true; this.stdin.end() }
  detach (): void { this.detached = true }
  /** let go for good (release) */
  released = false
  release (): void { this.released = true; this.detached = true }
  alive (): boolean { return !this.ended }
  /** The process ends: its output closes, then it exits. */
  finish (st: ExitStatus): void { this.stdout.end(); this.stderr.end(); this.stdout.resume(); this.stderr.resume(); this.end(st) }
}

/** An engine that touches no process: every call is recorded; images are bytes given by the test. */
export class StubEngine implements Engine {
  calls: string[] = []
  /** what check() answers */
  reasons: Array<{ code: string, text: string }> = []
  /** the image a dump writes */
  image = Buffer.from('IMAGE'.repeat(2000))
  /** make the next deputy()/dump()/restore() fail with this message */
  failDeputy = ''
  failDump = ''
  failRestore = ''
  deputies: StubDeputy[] = []
  restoredProcs: StubRestored[] = []
  signals: Array<[number, number | string]> = []
  nextPid = 4242
  free = 8 * 2 ** 30
  onDump: ((pid: number) => void) | null = null

  async check (pid: number): Promise<Array<{ code: string, text: string }>> { this.calls.push(`check ${pid}`); return this.reasons }
  async hostInfo (): Promise<string> { return 'hostinfo-of-test' }
  private async write (out: Writable): Promise<void> {
    const half = this.image.length >> 1
    await new Promise<void>((resolve, reject) => out.write(this.image.subarray(0, half), e => e ? reject(e) : resolve()))
    await new Promise<void>((resolve, reject) => out.write(this.image.subarray(half), e => e ? reject(e) : resolve()))
    await new Promise<void>(resolve => out.end(resolve))
  }

  async deputy (pid: number, out: Writable, opts: { target?: string }): Promise<DeputyHandle> {
    this.calls.push(`deputy ${pid} ${opts.target ?? ''}`)
    if (this.failDeputy) throw new Error(this.failDeputy)
    await this.write(out)
    const d = new StubDeputy()
    this.deputies.push(d)
    return d as unknown as DeputyHandle
  }

  async dump (pid: number, out: Writable | number, opts: { target?: string }): Promise<unknown> {
    this.calls.push(`dump ${pid} ${opts.target ?? ''}`)
    if (this.failDump) throw new Error(this.failDump)
    if (typeof out === 'number') writeSync(out, this.image); else await this.write(out)
    this.onDump?.(pid)
    return {}
  }

  async restore (src: Readable, opts: { hold: boolean, family?: boolean, leaseMs: number }): Promise<GuestProcess> {
    const image = await readAll(src)
    this.calls.push(`restore ${image.length}${opts.hold ? ' held' : ''}`)
    if (this.failRestore) throw new Error(this.failRestore)
    const r = new StubRestored(this.nextPid++, image)
    r.running = !opts.hold
    this.restoredProcs.push(r)
    return r
  }

  /** the guest processes a daemon started again finds under their keepers (adopt) */
  kept = new Map<number, StubRestored>()
  adopt (k: KeepInfo): GuestProcess {
    const r = this.kept.get(k.pid)
    if (r === undefined || k.helper !== r.keeper.helper) throw new Error(`the keeper ${k.helper} of process ${k.pid} is gone`)
    this.calls.push(`adopt ${k.pid}`)
    return r
  }

  kill (pid: number, sig: number | NodeJS.Signals): void { this.signals.push([pid, sig]) }
  alive (): boolean { return true }
  describe (): { name: string, bytes: number, age: number } { return { name: 'subject', bytes: 1 << 20, age: 12.5 } }
  stdioKinds (): Array<'path'> { return ['path', 'path', 'path'] }
  availableBytes (): number { return this.free }
  psInfo (): PsInfo | undefined { return this.alive() ? { utime: 7, stime: 2, state: 'R', rss: 0, vsize: 0, cmdline: '' } : undefined }
}

/** The test's end of a connection: every message it receives is queued; next() takes them in order. */
export class Peer {
  readonly msgs: Message[] = []
  readonly frames: Array<[string, Buffer]> = []
  private waiter: (() => void) | null = null
  closed = false
  constructor (readonly link: Link) {
    link.on('msg', m => { this.msgs.push(m); this.wake() })
    link.on('data', (t, d) => { this.frames.push([t, d]); this.wake() })
    link.on('close', () => { this.closed = true; this.wake() })
  }

  private wake (): void { const w = this.waiter; this.waiter = null; w?.() }

  /** Waits until cond holds (checked on every event; rejects after ms). */
  async until (cond: () => boolean, what: string, ms = 5000): Promise<void> {
    const end = Date.now() + ms
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>(resolve => { this.waiter = resolve; setTimeout(resolve, 50).unref() })
    }
  }

  /** The next message, which must be of kind k. */
  async next<K extends Kind> (k: K): Promise<MsgOf<K>> {
    await this.until(() => this.msgs.length > 0, `a ${k} message`)
    const m = this.msgs.shift() as Message
    if (m.t !== k) throw new Error(`expected ${k}, got ${JSON.stringify(m)}`)
    return m as MsgOf<K>
  }

  /** The bytes of the I frames received so far (and clears them). */
  image (): Buffer {
    const b = Buffer.concat(this.frames.filter(f => f[0] === 'I').map(f => f[1]))
    this.frames.splice(0, this.frames.length, ...this.frames.filter(f => f[0] !== 'I'))
    return b
  }
}

/** Polls cond (state changed by the code under test) every 5 ms until it holds (src/util/poll.ts). */
export async function until (cond: () => boolean, what: string, ms = 5000): Promise<void> {
  await poll(what, cond, { timeoutMs: ms, everyMs: 5 })
}
