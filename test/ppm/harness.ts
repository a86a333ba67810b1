// Shared pieces of the PPM tests: subject programs compiled at test time into a temp dir,
// processes that are always cleaned up, polling, and the "move it around" chain that checkpoints
// a subject several times between fresh processes and its hollowed original.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
import { once } from 'node:events'
import { createServer, connect, type Socket } from 'node:net'
import { constants, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PassThrough } from 'node:stream'
import assert from 'node:assert/strict'
import { deputy, dump, restore, type Deputy, type ExitStatus, type Restored, type StdioItem } from '../../src/ppm/ppm.js'
import { poll } from '../../src/util/poll.js'

const here = dirname(fileURLToPath(import.meta.url))
/** test/ppm/subjects in the source tree (this file runs from dist/test/ppm) */
export const subjectsDir = join(here, '..', '..', '..', 'test', 'ppm', 'subjects')

export class Lab {
  readonly dir = mkdtempSync(join(tmpdir(), 'hpc-ppm-test-'))
  private launcher: string | undefined
  private readonly children: ChildProcess[] = []
  private readonly pids = new Set<number>()
  private readonly deputies: Deputy[] = []
  private readonly fds: number[] = []

  /** Compiles subject NAME.c (extra gcc flags allowed); returns the binary's path. */
  compile (name: string, out = name, flags: string[] = []): string {
    const bin = join(this.dir, out)
    const r = spawnSync('gcc', ['-O2', '-Wall', '-o', bin, join(subjectsDir, `${name}.c`), ...flags, '-lpthread'], { encoding: 'utf8' })
    assert.equal(r.status, 0, `gcc ${name}: ${r.stderr}`)
    return bin
  }

  path (name: string): string { return join(this.dir, name) }

  open (path: string, flags: string): number {
    const fd = openSync(path, flags)
    this.fds.push(fd)
    return fd
  }

  /** Starts a subject (this test process is its parent). */
  start (cmd: string, args: string[], stdio: StdioItem[] = ['ignore', 'pipe', 'pipe'], cwd?: string): Subject {
    this.launcher ??= this.compile('launch')
    const child = spawn(this.launcher, [cmd, ...args], { stdio: stdio as any, cwd })
    this.children.push(child)
    return new Subject(child)
  }

  track (r: Restored): Restored { this.pids.add(r.pid); void r.exited.then(() => this.pids.delete(r.pid), () => {}); return r }
  trackDeputy (d: Deputy): Deputy { this.deputies.push(d); return d }

  cleanup (): void {
    for (const d of this.deputies) d.abandon()
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const p of this.pids) { try { process.kill(p, 'SIGKILL') } catch {} }
    for (const fd of this.fds) { try { closeSync(fd) } catch {} }
    rmSync(this.dir, { recursive: true, force: true })
  }
}

export class Subject {
  out = ''
  err = ''
  readonly exited: Promise<ExitStatus>
  constructor (readonly child: ChildProcess) {
    child.stdout?.on('data', (b: Buffer) => { this.out += b.toString() })
    child.stderr?.on('data', (b: Buffer) => { this.err += b.toString() })
    this.exited = new Promise(resolve => child.on('close', (code, sig) => resolve({ code, signal: sig == null ? null : sigNum(sig) })))
  }

  get pid (): number { return this.child.pid as number }
}

export function sigNum (name: NodeJS.Signals): number {
  return constants.signals[name] ?? -1
}

/** Runs f with HPC_PPM_GO_WAIT_MS set to ms (the helpers it spawns take it), then puts it back. */
export async function withGoWait<T> (ms: string, f: () => Promise<T>): Promise<T> {
  const old = process.env.HPC_PPM_GO_WAIT_MS
  process.env.HPC_PPM_GO_WAIT_MS = ms
  try { return await f() } finally { if (old === undefined) delete process.env.HPC_PPM_GO_WAIT_MS; else process.env.HPC_PPM_GO_WAIT_MS = old }
}

/** Polls `cond` every 10 ms until it holds (src/util/poll.ts); fails after `ms`. */
export async function waitFor (cond: () => boolean, ms: number, what: string): Promise<void> {
  await poll(what, cond, { timeoutMs: ms, everyMs: 10 })
}

/** the image format version the engine writes and reads (IMG_VERSION of native/image.h) */
export const IMG_VERSION = Number(/^#define IMG_VERSION (\d+)$/m.exec(readFileSync(join(subjectsDir, '..', '..', '..', 'native', 'image.h'), 'utf8'))?.[1])

/** A connected pair of loopback TCP sockets, neither read from yet. */
export async function tcpPair (): Promise<{ a: Socket, b: Socket, close: () => void }> {
  const srv = createServer({ pauseOnConnect: true })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as { port: number }).port
  const accepted = once(srv, 'connection') as Promise<[Socket]>
  const a = connect(port, '127.0.0.1')
  await once(a, 'connect')
  const [b] = await accepted
  srv.close()
  return { a, b, close: () => { a.destroy(); b.destroy() } }
}

export function lines (s: string): number { return s.split('\n').length - 1 }
export function fileSize (p: string): number { try { return statSync(p).size } catch { return 0 } }
export function fileLines (p: string): number { try { return lines(readFileSync(p, 'utf8')) } catch { return 0 } }

/** Uninterrupted reference run: stdout (or the named output file) and exit status. */
export function reference (cmd: string, args: string[], cwd?: string): { out: string, code: number | null } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd, maxBuffer: 1 << 28 })
  return { out: r.stdout, code: r.status }
}

/** Deterministic text input (compressible, not trivially so). */
export async function makeInput (path: string, bytes: number): Promise<void> {
  const w = createWriteStream(path)
  let x = 88172645463325252n & 0xffffffffn
  let n = 0
  const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'iota', 'kappa', 'lambda', 'mu']
  while (n < bytes) {
    let chunk = ''
    for (let i = 0; i < 4000; i++) {
      x = (x * 1103515245n + 12345n) & 0x7fffffffn
      const v = Number(x)
      chunk += `${words[v % 12]} ${v.toString(36)} ${(v >> 7) % 1000}\n`
    }
    n += chunk.length
    if (!w.write(chunk)) await once(w, 'drain')
  }
  w.end()
  await once(w, 'finish')
}

export interface ChainOptions {
  /** progress measure of the subject (lines of output, bytes written, ...) */
  progress: () => number
  /** progress to reach before each of the three moves */
  marks: [number, number, number]
  /** relay stdio of the fresh copies through the deputy's fds 0-2 */
  relay?: boolean
  timeoutMs?: number
  /** called with the pid of each fresh copy once it runs */
  onCopy?: (pid: number) => void
}

/**
 * Moves a running subject around: dump + hollow the original (deputy), restore into a fresh
 * process, move that one into a second fresh process through a stream (no temp file), then dump
 * the second and restore it back into the hollowed original, which then finishes at home.
 * Returns the timings seen and the three restores' STAT figures.
 */
export async function chain (lab: Lab, s: Subject, o: ChainOptions): Promise<{ freezeMs: number[], restoreMs: number[], stats: Array<Record<string, string>> }> {
  const tmo = o.timeoutMs ?? 20000
  const freezeMs: number[] = []
  const restoreMs: number[] = []
  await waitFor(() => o.progress() >= o.marks[0], tmo, `progress ${o.marks[0]}`)
  const imgA = lab.path(`a-${s.pid}.img`)
  const dep = lab.trackDeputy(await deputy(s.pid, imgA))
  freezeMs.push(dep.freezeMs)
  const stdio: [StdioItem, StdioItem, StdioItem] = ['ignore', 'ignore', 'ignore']
  const stdioFrom = o.relay === true ? s.pid : undefined
  const r1 = lab.track(await restore(imgA, { keepPid: false, stdio, stdioFrom }))
  restoreMs.push(r1.restoreMs)
  assert.notEqual(r1.pid, s.pid)
  o.onCopy?.(r1.pid)
  await waitFor(() => o.progress() >= o.marks[1], tmo, `progress ${o.marks[1]}`)
  const pt = new PassThrough()
  const r2p = restore(pt, { keepPid: false, stdio, stdioFrom })
  const d1 = await dump(r1.pid, pt)
  freezeMs.push(d1.freezeMs)
  const r2 = lab.track(await r2p)
  restoreMs.push(r2.restoreMs)
  o.onCopy?.(r2.pid)
  assert.deepEqual(await r1.exited, { code: null, signal: 9 }, 'the first copy is removed after its dump')
  await waitFor(() => o.progress() >= o.marks[2], tmo, `progress ${o.marks[2]}`)
  const imgC = lab.path(`c-${s.pid}.img`)
  const d2 = await dump(r2.pid, imgC)
  freezeMs.push(d2.freezeMs)
  const home = await dep.restoreInto(imgC)
  restoreMs.push(home.restoreMs)
  return { freezeMs, restoreMs, stats: [r1.stats, r2.stats, home.stats] }
}
