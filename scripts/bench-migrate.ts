// scripts/bench-migrate: how long a migration between namespaced nodes takes, next to raw TCP
// between two of the same namespaces measured in the same run (method: docs/bench-migrate.md).
//
// A lab of 3 hpcd daemons (tag bmig). For each size (default 1, 100, 500 MiB; --quick: 1, 50) a
// subject holding that much distinct, written memory (scripts/bench-migrate-subject.c, compiled at
// run time) is started at home inside node 1's namespace (this process is its parent), then moved
// --runs times round `goto 2` (out), `goto 3` (N -> M: the image goes from node 2 straight to
// node 3), `goto 2` (back, shown per run only), `goto home` (from node 2): the time from the write
// of goto until `where` reads the target (polled every 5 ms). Then a C server in node 2's namespace
// receives the same number of bytes (the image size) from a C client in node 1's namespace
// (scripts/bench-migrate-tcp.c): raw TCP from and into one reused 1 MiB buffer, and memory to
// memory. Then the pre-copy case (--precopy-mib, default 100, with --quick 0; 0: none): a subject of that size
// writing --write-kib KiB/s (default 1024) is moved out and home --runs times in the same lab
// (stop-and-copy), then in a 2-node lab whose daemons run with --precopy: its freeze and downtime
// side by side. Everything it starts is removed on exit, error or Ctrl-C. --pin: each node as a
// machine of its own, confined to one CPU (node 1, with this bench, its subjects and the reference
// clients, on CPU 0; node 2 and the reference servers on CPU 1; node 3 on CPU 0): the two sides of
// a move do not share a CPU, as on two hosts.
//
//   scripts/bench-migrate [--quick] [--pin] [--sizes 1,100,500] [--runs 3] [--precopy-mib 100] [--write-kib 1024]
import { parseArgs } from 'node:util'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, openSync, readSync, closeSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir, loadavg } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { Lab, type LabNode } from '../src/lab/lab.js'
import { compileC, median, sleep } from './bench-util.js'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const SUBJECT_SRC = join(REPO, 'scripts/bench-migrate-subject.c')
const LAUNCH_SRC = join(REPO, 'test/ppm/subjects/launch.c')
const MEM_SRC = join(REPO, 'scripts/bench-migrate-tcp.c')
const MEM_PORT = 5998
const POLL_MS = 5
const MOVE_TIMEOUT_MS = 60_000

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    pin: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    runs: { type: 'string', default: '3' },
    'precopy-mib': { type: 'string' },
    'write-kib': { type: 'string', default: '1024' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
function usage (msg?: string): never {
  if (msg) console.error(`bench-migrate: ${msg}`)
  console.error('usage: scripts/bench-migrate [--quick] [--pin] [--sizes 1,100,500] [--runs 3] [--precopy-mib 100] [--write-kib 1024]')
  process.exit(msg ? 2 : 0)
}
if (opts.help) usage()
const sizes = (opts.sizes ?? (opts.quick ? '1,50' : '1,100,500')).split(',').map(Number)
const runs = Number(opts.runs)
const precopyMib = Number(opts['precopy-mib'] ?? (opts.quick ? '0' : '100')) // (--quick: none unless asked)
const writeKib = Number(opts['write-kib'])
if (sizes.some(s => !Number.isInteger(s) || s < 1 || s > 8192) || !Number.isInteger(runs) || runs < 1) usage('bad --sizes or --runs')
if (!Number.isInteger(precopyMib) || precopyMib < 0 || precopyMib > 8192 || !Number.isInteger(writeKib) || writeKib < 1) usage('bad --precopy-mib or --write-kib')
if (process.getuid?.() !== 0) usage('needs root (network namespaces)')
if (opts.pin && availableParallelism() < 2) usage('--pin needs 2 CPUs')

const f1 = (x: number): string => Number.isFinite(x) ? x.toFixed(1) : '-'
const f0 = (x: number): string => Number.isFinite(x) ? x.toFixed(0) : '-'
const MiB = 1 << 20

// ---- cleanup --------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'hpc-bench-migrate-'))
const children = new Set<ChildProcess>()
let lab: Lab | undefined
let cleaning: Promise<void> | undefined
let interrupted = false

function killChildren (): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) { try { c.kill('SIGKILL') } catch {} }
}
async function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    killChildren() // subjects first (a deputy's death ends its remote), then the daemons
    await sleep(100)
    // BENCH_LOGS=dir keeps the daemons' logs (with BENCH_DEBUG=namespaces, e.g. hpcfs:*)
    if (process.env.BENCH_LOGS) for (const n of lab?.nodes ?? []) { try { copyFileSync(n.logFile, join(process.env.BENCH_LOGS, `node${n.id}.log`)) } catch {} }
    await lab?.destroy().catch(e => console.error(`bench-migrate: lab cleanup: ${(e as Error).message}`))
    rmSync(dir, { recursive: true, force: true })
  })()
  await cleaning
}
process.on('exit', () => { killChildren(); rmSync(dir, { recursive: true, force: true }) })
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    interrupted = true
    console.error(`\nbench-migrate: ${sig}, cleaning up`)
    void cleanup().finally(() => process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)))
  })
}
function track (c: ChildProcess): ChildProcess {
  children.add(c)
  c.once('exit', () => children.delete(c))
  return c
}

// ---- pieces ---------------------------------------------------------------------------------

/** Resident set of pid in KiB (0 when gone). */
function rssKiB (pid: number): number {
  try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) } catch { return 0 }
}

/** CPU time (user + system, ms) of a process itself, without its children (0 when gone). */
function cpuMs (pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    return (Number(f[11]) + Number(f[12])) * 10 // USER_HZ = 100
  } catch { return NaN }
}

/** Reads a file of a node's tree directly (no cat per poll), never waiting more than ms. */
async function readTree (n: LabNode, rel: string, ms = 3000): Promise<string> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      readFile(join(n.mount, rel), 'utf8'),
      new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error(`read ${rel}: timed out`)), ms) })
    ])
  } finally { clearTimeout(t) }
}

/** New bytes of a node's log since offset (the daemons run with DEBUG=hpcfs:ppm). */
function logSince (n: LabNode, offset: number): { text: string, end: number } {
  let end = offset
  try { end = statSync(n.logFile).size } catch { return { text: '', end } }
  if (end <= offset) return { text: '', end }
  const fd = openSync(n.logFile, 'r')
  try {
    const b = Buffer.alloc(end - offset)
    readSync(fd, b, 0, b.length, offset)
    return { text: b.toString('utf8'), end }
  } finally { closeSync(fd) }
}
const logSize = (n: LabNode): number => { try { return statSync(n.logFile).size } catch { return 0 } }
const stat = (text: string, key: string): number => {
  const all = [...text.matchAll(new RegExp(`STAT [^\\n]*\\b${key}=([\\d.]+)`, 'g'))]
  return all.length ? Number(all[all.length - 1][1]) : NaN
}

/**
 * cpu[i]: CPU time of node i+1's daemon during the move (ms). downMs: from the freeze on the
 * source (STAT freeze_at) until it runs on the target (running_at), wall clock of this one host.
 * rounds: pre-copy rounds of the dump (NaN without), fallback: it fell back to stop-and-copy.
 * runMs: from the write of goto until the process runs on the target (its running_at), without
 * the home's bookkeeping after it and the polling of where.
 */
interface Move { ms: number, runMs: number, freezeMs: number, restoreMs: number, fillMs: number, imageBytes: number, cpu: number[], downMs: number, rounds: number, fallback: number }

/**
 * Writes goto TARGET into node 1's tree and times until where reads it (the process is on node
 * FROM before). The PPM helpers' figures come from the logs: freeze_ms and bytes from the dumping
 * node's (FROM), restore_ms and fill_ms (the writing of the page data, its last step) from the
 * restoring node's (TARGET).
 */
async function move (pid: number, from: number | 'home', target: number | 'home'): Promise<Move> {
  const l = lab as Lab
  const home = l.node(1)
  const want = target === 'home' ? '0' : String(target)
  const was = from === 'home' ? '0' : String(from)
  const before = (await readTree(home, `proc/${pid}/where`)).trim()
  if (before !== was) throw new Error(`process ${pid} is on ${before}, not on ${was} (moved by someone else?)`)
  const logOf = l.node(from === 'home' ? 1 : from)
  const restoreLogOf = l.node(target === 'home' ? 1 : target)
  const off = logSize(logOf)
  const roff = logSize(restoreLogOf)
  const daemons = l.nodes.map(n => n.pid)
  const c0 = daemons.map(cpuMs)
  const t0 = performance.now()
  const wall0 = performance.timeOrigin + t0 // (running_at: ms of the wall clock)
  await writeFile(join(home.mount, `proc/${pid}/goto`), `${target}\n`)
  for (;;) {
    const w = (await readTree(home, `proc/${pid}/where`)).trim()
    if (w === want) break
    const dt = performance.now() - t0
    if (w === was || dt > MOVE_TIMEOUT_MS) {
      const e = (await readTree(home, `proc/${pid}/error`)).trim()
      if (e || dt > MOVE_TIMEOUT_MS) throw new Error(`move of ${pid} to ${target} failed after ${f0(dt)} ms: ${e || `where = ${w}`}`)
    }
    await sleep(POLL_MS)
  }
  const ms = performance.now() - t0
  const cpu = daemons.map((d, i) => cpuMs(d) - c0[i])
  await sleep(50) // the log lines are written by then
  const { text } = logSince(logOf, off)
  const rtext = logSince(restoreLogOf, roff).text
  return {
    ms,
    runMs: stat(rtext, 'running_at') - wall0,
    freezeMs: stat(text, 'freeze_ms'),
    restoreMs: stat(rtext, 'restore_ms'),
    fillMs: stat(rtext, 'fill_ms'),
    imageBytes: stat(text, 'bytes'),
    cpu,
    downMs: stat(rtext, 'running_at') - stat(text, 'freeze_at'),
    rounds: stat(text, 'precopy_rounds'),
    fallback: stat(text, 'precopy_fallback')
  }
}

/** --pin: the CPU of node id (a machine of its own: node 2 alone on CPU 1) */
const cpuOfNode = (id: number): number => id === 2 ? 1 : 0

/** pid and its descendants (all of their threads) confined to CPU cpu: what they start later inherits it. */
function pinTree (pid: number, cpu: number): void {
  const kids = (p: number): number[] => {
    let tids: string[] = []
    try { tids = readdirSync(`/proc/${p}/task`) } catch { return [] }
    return tids.flatMap(t => { try { return readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) } catch { return [] } })
  }
  for (const q = [pid]; q.length > 0;) {
    const p = q.shift() as number
    try { execFileSync('taskset', ['-a', '-cp', String(cpu), String(p)], { stdio: 'ignore' }) } catch {} // (gone meanwhile)
    q.push(...kids(p))
  }
}

/** --pin: every node of the lab on its CPU (its daemon, its standby helpers, all they start later). */
function pinLab (l: Lab): void {
  for (const n of l.nodes) if (n.pid !== undefined) pinTree(n.pid, cpuOfNode(n.id))
}

/** A reference server started in node 2's namespace: resolves once it says `listening`. */
async function startServer (what: string, cmd: string, args: string[]): Promise<void> {
  const c = track((lab as Lab).spawn(2, opts.pin ? 'taskset' : cmd, opts.pin ? ['-c', String(cpuOfNode(2)), cmd, ...args] : args, { stdio: 'pipe' }))
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} server did not start`)), 10_000)
    createInterface({ input: c.stdout as NodeJS.ReadableStream }).on('line', line => { if (line === 'listening') { clearTimeout(t); resolve() } })
    c.once('exit', code => { clearTimeout(t); reject(new Error(`${what} server exited (${code})`)) })
  })
}

/** A reference client run in node 1's namespace: the times it prints (a JSON array of ms). */
async function clientTimes (what: string, cmd: string, args: string[]): Promise<number[]> {
  const c = track((lab as Lab).spawn(1, cmd, args, { stdio: 'pipe' }))
  let out = ''
  let err = ''
  c.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  c.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number | null>(resolve => c.once('exit', resolve))
  if (code !== 0) throw new Error(`${what} client failed (${code}): ${err.trim()}`)
  return JSON.parse(out) as number[]
}

// The references (scripts/bench-migrate-tcp.c, one C server in node 2's namespace for both, its
// clients in node 1's): raw TCP, the bytes from one reused 1 MiB buffer into another; memory to
// memory, from resident memory into a fresh mapping, as a move's bytes go.
async function startTcpServer (bin: string): Promise<void> {
  await startServer('reference TCP', bin, ['server', (lab as Lab).node(2).addr, String(MEM_PORT)])
}

async function memTcp (bin: string, bytes: number, reps: number): Promise<number[]> {
  return await clientTimes('memory TCP', bin, ['client', (lab as Lab).node(2).addr, String(MEM_PORT), String(bytes), String(reps)])
}

/** Times of `reps` transfers of `bytes` from node 1's namespace to node 2's (ms each), hot buffers. */
async function rawTcp (bin: string, bytes: number, reps: number): Promise<number[]> {
  return await clientTimes('raw TCP', bin, ['client', (lab as Lab).node(2).addr, String(MEM_PORT), String(bytes), String(reps), 'hot'])
}

interface Subject { pid: number, child: ChildProcess }
async function startSubject (launcher: string, subject: string, mib: number, kibPerS?: number): Promise<Subject> {
  const ns = (lab as Lab).node(1).ns as string
  const args = [launcher, subject, String(mib), ...(kibPerS !== undefined ? [String(kibPerS)] : [])]
  const child = track(spawn('nsenter', [`--net=/run/netns/${ns}`, '--', ...args], { stdio: 'ignore' }))
  const pid = child.pid as number
  const t0 = Date.now()
  while (rssKiB(pid) < mib * 1024) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`subject of ${mib} MiB ended early (${child.exitCode ?? child.signalCode})`)
    if (Date.now() - t0 > 60_000) throw new Error(`subject of ${mib} MiB: RSS ${rssKiB(pid)} KiB after 60 s`)
    await sleep(20)
  }
  return { pid, child }
}
async function stopSubject (s: Subject): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return
  const gone = new Promise<void>(resolve => s.child.once('exit', () => resolve()))
  s.child.kill('SIGKILL')
  await gone
}

/** Moves a subject of mib MiB writing kib KiB/s out (1 -> 2) and home (2 -> 1), runs times, in the lab as it is. */
async function writerMoves (launcher: string, subject: string, mib: number, kib: number, mode: string): Promise<{ outs: Move[], homes: Move[] }> {
  const s = await startSubject(launcher, subject, mib, kib)
  const outs: Move[] = []
  const homes: Move[] = []
  try {
    for (let r = 0; r < runs; r++) {
      outs.push(await move(s.pid, 'home', 2))
      await sleep(200)
      homes.push(await move(s.pid, 2, 'home'))
      await sleep(200)
      const pre = (m: Move): string => Number.isFinite(m.rounds) ? `, ${m.rounds} rounds${m.fallback === 1 ? ' (fell back)' : ''}` : ''
      process.stdout.write(`  ${mode} ${mib} MiB writing ${kib} KiB/s run ${r + 1}: out ${f1(outs[r].ms)} ms (freeze ${f1(outs[r].freezeMs)}, down ${f1(outs[r].downMs)}${pre(outs[r])}), ` +
        `home ${f1(homes[r].ms)} ms (freeze ${f1(homes[r].freezeMs)}, down ${f1(homes[r].downMs)}${pre(homes[r])})\n`)
    }
  } finally { await stopSubject(s) }
  return { outs, homes }
}

// ---- main -----------------------------------------------------------------------------------

interface Row {
  mib: number, imageBytes: number, out: number, home: number, hop: number, runOut: number, runHome: number, runHop: number, freezeOut: number, freezeHome: number, freezeHop: number,
  restoreOut: number, restoreHome: number, restoreHop: number, fillHop: number, cpuOut: string, cpuHome: string, cpuHop: string, raw: number, mem: number
}

/** Median CPU ms of the daemons of nodes 1..n over moves, as "c1/c2[/c3]". */
const cpuOf = (ms: Move[], n: number): string => Array.from({ length: n }, (_, i) => f0(median(ms.map(m => m.cpu[i])))).join('/')
const cpuRun = (m: Move, n: number): string => m.cpu.slice(0, n).map(f0).join('/')

async function main (): Promise<void> {
  const t0 = Date.now()
  const launcher = compileC(LAUNCH_SRC, dir, 'launch')
  const subject = compileC(SUBJECT_SRC, dir, 'subject')
  const memBin = compileC(MEM_SRC, dir, 'memtcp')
  console.log(`bench-migrate: sizes ${sizes.join(', ')} MiB, ${runs} run(s) each; load average ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
  lab = await Lab.create({
    nodes: 3, // 3: N -> M (node 2 -> node 3) for a process whose home is node 1
    tag: 'bmig',
    interval: 0.25,
    hpcdArgs: () => ['--speed', '10000', '--no-balance'], // explicit moves only: the balancer must not move what we time
    env: { DEBUG: process.env.BENCH_DEBUG ?? 'hpcfs:ppm,hpcfs:keeper' }, // the PPM helpers' STAT lines (freeze_ms, bytes; a guest's keeper's running_at) in the logs
    handleSignals: false
  })
  await lab.waitAllUp({ timeoutMs: 30_000 }) // every node sees every other (node 2 sends to node 3 itself)
  if (opts.pin) {
    pinTree(process.pid, cpuOfNode(1)) // this bench is node 1's user: its subjects and clients too
    pinLab(lab)
    console.log('pinned: node 1 (with this bench, its subjects and the reference clients) and node 3 on CPU 0, node 2 and the reference servers on CPU 1')
  }
  const n1 = lab.node(1)
  const n2 = lab.node(2)
  const n3 = lab.node(3)
  console.log(`lab up: ${lab.nodes.map(n => `node ${n.id} ${n.addr} (${n.ns})`).join(', ')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  await startTcpServer(memBin)
  await rawTcp(memBin, 8 * MiB, 1) // warm-up (also checks the path)
  await memTcp(memBin, 8 * MiB, 1)

  const rows: Row[] = []
  for (const mib of sizes) {
    const s = await startSubject(launcher, subject, mib)
    const outs: Move[] = []
    const hops: Move[] = []
    const backs: Move[] = []
    const homes: Move[] = []
    try {
      for (let r = 0; r < runs; r++) {
        outs.push(await move(s.pid, 'home', 2))
        await sleep(200)
        hops.push(await move(s.pid, 2, 3))
        await sleep(200)
        backs.push(await move(s.pid, 3, 2)) // so that "home" is node 2 -> home as before
        await sleep(200)
        homes.push(await move(s.pid, 2, 'home'))
        await sleep(200)
        process.stdout.write(`  ${mib} MiB run ${r + 1}: out ${f1(outs[r].ms)} ms (runs at ${f1(outs[r].runMs)}, hpcd CPU ${cpuRun(outs[r], 2)} ms), 2->3 ${f1(hops[r].ms)} ms (${f1(hops[r].runMs)}, ${cpuRun(hops[r], 3)}), ` +
          `3->2 ${f1(backs[r].ms)} ms (${f1(backs[r].runMs)}, ${cpuRun(backs[r], 3)}), home ${f1(homes[r].ms)} ms (${f1(homes[r].runMs)}, ${cpuRun(homes[r], 2)})\n`)
      }
    } finally { await stopSubject(s) }
    const imageBytes = median(outs.map(m => m.imageBytes).filter(Number.isFinite))
    const bytes = Number.isFinite(imageBytes) ? imageBytes : mib * MiB
    const raws = await rawTcp(memBin, bytes, runs)
    const mems = await memTcp(memBin, bytes, runs)
    process.stdout.write(`  ${mib} MiB raw TCP of ${(bytes / MiB).toFixed(1)} MiB: ${raws.map(f1).join(', ')} ms; memory to memory: ${mems.map(f1).join(', ')} ms\n`)
    rows.push({
      mib,
      imageBytes: bytes,
      out: median(outs.map(m => m.ms)),
      home: median(homes.map(m => m.ms)),
      hop: median(hops.map(m => m.ms)),
      runOut: median(outs.map(m => m.runMs).filter(Number.isFinite)),
      runHome: median(homes.map(m => m.runMs).filter(Number.isFinite)),
      runHop: median(hops.map(m => m.runMs).filter(Number.isFinite)),
      freezeOut: median(outs.map(m => m.freezeMs).filter(Number.isFinite)),
      freezeHome: median(homes.map(m => m.freezeMs).filter(Number.isFinite)),
      freezeHop: median(hops.map(m => m.freezeMs).filter(Number.isFinite)),
      restoreOut: median(outs.map(m => m.restoreMs).filter(Number.isFinite)),
      restoreHome: median(homes.map(m => m.restoreMs).filter(Number.isFinite)),
      restoreHop: median(hops.map(m => m.restoreMs).filter(Number.isFinite)),
      fillHop: median(hops.map(m => m.fillMs).filter(Number.isFinite)),
      cpuOut: cpuOf(outs, 2),
      cpuHome: cpuOf(homes, 2),
      cpuHop: cpuOf(hops, 3),
      raw: median(raws),
      mem: median(mems)
    })
  }

  // the pre-copy case, stop-and-copy first (these daemons run without --precopy)
  const stopCopy = precopyMib > 0 ? await writerMoves(launcher, subject, precopyMib, writeKib, 'stop-and-copy') : null

  const head = ['size', 'image', 'migrate out', 'migrate home', 'migrate 2->3', 'runs out', 'runs home', 'runs 2->3', 'effective', 'effective', 'freeze out', 'restore on 2', 'freeze on 2', 'restore home', 'freeze 2->3', 'restore on 3',
    'hpcd CPU out', 'hpcd CPU home', 'hpcd CPU 2->3', 'raw TCP', 'raw TCP', 'out/raw', 'home/raw', '2->3/raw', 'mem TCP', 'out/mem', 'home/mem', '2->3/mem']
  const unit = ['MiB', 'MiB', 'ms', 'ms', 'ms', 'ms', 'ms', 'ms', 'MB/s (out)', 'MB/s (2->3)', 'ms', 'ms', 'ms', 'ms', 'ms', 'ms', 'ms 1/2', 'ms 1/2', 'ms 1/2/3', 'ms', 'MB/s', '', '', '', 'ms', '', '', '']
  const body = rows.map(r => [
    String(r.mib), (r.imageBytes / MiB).toFixed(1), f1(r.out), f1(r.home), f1(r.hop), f1(r.runOut), f1(r.runHome), f1(r.runHop), f0(r.imageBytes / 1e6 / (r.out / 1000)), f0(r.imageBytes / 1e6 / (r.hop / 1000)),
    f1(r.freezeOut), f1(r.restoreOut), f1(r.freezeHome), f1(r.restoreHome), f1(r.freezeHop), f1(r.restoreHop), r.cpuOut, r.cpuHome, r.cpuHop,
    f1(r.raw), f0(r.imageBytes / 1e6 / (r.raw / 1000)), `${(r.out / r.raw).toFixed(1)}x`, `${(r.home / r.raw).toFixed(1)}x`, `${(r.hop / r.raw).toFixed(1)}x`,
    f1(r.mem), `${(r.out / r.mem).toFixed(2)}x`, `${(r.home / r.mem).toFixed(2)}x`, `${(r.hop / r.mem).toFixed(2)}x`
  ])
  const w = head.map((h, i) => Math.max(h.length, unit[i].length, ...body.map(b => b[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(w[i])).join('  ')
  console.log(`\nmedians of ${runs} run(s); home is node 1 (${n1.ns}), out = 1 -> 2, home = 2 -> 1, 2->3 = node 2 -> node 3 (${n2.ns} -> ${n3.ns}); goto written until where reads the target, polled every ${POLL_MS} ms`)
  console.log(line(head))
  console.log(line(unit))
  for (const b of body) console.log(line(b))
  console.log('\nruns = from the write of goto until the process runs on the target (the restoring helper\'s STAT running_at): migrate without home\'s bookkeeping after it and the polling of where')
  console.log('freeze out = the original stopped at home while its dump streams to node 2; restore on 2 = the restore there (from its start, it reads the stream as it comes)')
  console.log('freeze on 2 = the guest stopped while node 2 dumps it into the connection home (the guest, frozen, is the copy kept on 2); restore home = the deputy\'s restore into the original, from its start (PPM helpers\' STAT lines)')
  console.log('freeze 2->3 = the guest stopped on node 2 while its dump streams straight to node 3 (the guest, frozen, is the copy kept on 2); restore on 3 = the restore there, from its start')
  console.log(`  (the writing of the page data inside the restore on 3, fill on 3: ${rows.map(r => `${f1(r.fillHop)} ms of ${r.mib} MiB`).join(', ')})`)
  console.log('hpcd CPU = user+system time of the daemons of node 1 / node 2 (/ node 3) themselves during the move (their PPM helpers not included)')
  console.log(`image = bytes the deputy streamed (PPM STAT bytes); raw TCP = the same bytes by a C pair (scripts/bench-migrate-tcp.c), client in ${n1.ns} -> server in ${n2.ns} (the same bridge as 2 -> 3), from and into one reused 1 MiB buffer, connect until the server's ack`)
  console.log('mem TCP = the same transfer by the same pair from resident memory into a fresh mapping of that size, as a move\'s bytes go')
  const hwm = (pid: number | undefined): string => { try { return `${Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024)} MiB` } catch { return '?' } }
  console.log(`peak RSS of the daemons: ${lab.nodes.map(n => `node ${n.id} ${hwm(n.pid)}`).join(', ')}`)

  if (stopCopy !== null) {
    // the same moves between daemons that move it with pre-copy (any process of 16 MiB and more)
    await lab.destroy()
    lab = undefined
    lab = await Lab.create({
      nodes: 2,
      tag: 'bmpc',
      interval: 0.25,
      hpcdArgs: () => ['--speed', '10000', '--no-balance', '--precopy', '16'],
      env: { DEBUG: process.env.BENCH_DEBUG ?? 'hpcfs:ppm,hpcfs:keeper' },
      handleSignals: false
    })
    await lab.waitAllUp({ timeoutMs: 30_000 })
    if (opts.pin) pinLab(lab)
    const pre = await writerMoves(launcher, subject, precopyMib, writeKib, 'pre-copy')
    const med = (ms: Move[], k: keyof Move): number => median(ms.map(m => m[k] as number).filter(Number.isFinite))
    const cols = ['', 'freeze out', 'downtime out', 'migrate out', 'freeze home', 'downtime home', 'migrate home', 'rounds out/home', 'fell back']
    const rowOf = (name: string, x: { outs: Move[], homes: Move[] }): string[] => [
      name, f1(med(x.outs, 'freezeMs')), f1(med(x.outs, 'downMs')), f1(med(x.outs, 'ms')), f1(med(x.homes, 'freezeMs')), f1(med(x.homes, 'downMs')), f1(med(x.homes, 'ms')),
      `${f0(med(x.outs, 'rounds'))}/${f0(med(x.homes, 'rounds'))}`, String([...x.outs, ...x.homes].filter(m => m.fallback === 1).length)
    ]
    const prows = [rowOf('stop-and-copy', stopCopy), rowOf('pre-copy', pre)]
    const pw = cols.map((h, i) => Math.max(h.length, ...prows.map(r => r[i].length)))
    const pline = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(pw[i]) : c.padStart(pw[i])).join('  ')
    console.log(`\npre-copy: a ${precopyMib} MiB process writing ${writeKib} KiB/s, out (1 -> 2) and home (2 -> 1), medians of ${runs} run(s), ms; stop-and-copy in the lab above, pre-copy in a 2-node lab with hpcd --precopy 16`)
    console.log(pline(cols))
    for (const r of prows) console.log(pline(r))
    console.log('freeze = the process stopped on the source (STAT freeze_ms: with pre-copy, the last round only); downtime = from that stop until it runs on the target (freeze_at .. running_at, wall clock)')
  }
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s; load average ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
}

let status = 0
try {
  await main()
} catch (e) {
  if (interrupted) await new Promise(() => {}) // the signal handler cleans up and exits
  console.error(`bench-migrate: ${(e as Error).stack ?? String(e)}`)
  const l = lab
  if (l) for (const id of [1, 2, 3]) { try { console.error(`--- node ${id} log (tail):\n${l.node(id).logTail()}`) } catch {} }
  status = 1
}
await cleanup()
process.exit(status)
