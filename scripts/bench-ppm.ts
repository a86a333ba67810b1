// PPM benchmark (run through scripts/bench-ppm, which builds first).
// For processes of about 1, 10, 100 and 500 MiB (a walker holding that much written, random
// anonymous memory) it measures, each size `runs` times, reporting the median:
//   - freeze: the time the process is stopped while dumping to a file (page cache);
//   - restore: restoring that file into a fresh process (stub spawn included);
//   - move: dump streamed through a pipe straight into a restore (no file), wall time and MB/s,
//     next to a raw copy of the same number of bytes through a pipe measured in the same run.
// Goals (issue #3): move within 2x of the raw copy at 100 MiB and up; freeze under 50 ms for a
// process under 5 MiB.
// Then the same for a multi-threaded walker (issue #11: 1, 4 and 16 threads sharing 100 MiB, each
// walking its slice); the 1-thread walker is the single-threaded figure they are compared with.
// Then pre-copy (issue #10): a process of --precopy-mb MiB that keeps writing --precopy-rate MiB/s
// (test/ppm/subjects/dirtier.c) is dumped, in the same run, plainly (stop-and-copy) and with
// pre-copy; the freeze (the time it is stopped) of each, the rounds and their time, and the restore
// of each image; then a streamed move of such a process (over a local socket into a restore, the
// original removed) plainly and with pre-copy: the downtime, from the freeze to the restored
// process running (wall clock, helper STAT freeze_at/running_at), and the whole move.
// Goal: pre-copy freeze <= 20 ms for 100 MiB writing 1 MiB/s.
// Case fill (not by default): the restore's page fill by UFFDIO_COPY against /proc/PID/mem
// (HPC_PPM_FILL=pwrite, the baseline), alternating within the run, for each of --sizes: one image
// restored `runs` times with each fill, then `runs` streamed moves with each of one walker left
// running (`--leave-running`, so that both fills move the same process); medians and ratios.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { dump, helperPath, restore, socketFd } from '../src/ppm/ppm.js'
import { compileC, median } from './bench-util.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const args = process.argv.slice(2)
function opt (name: string, def: string): string {
  const i = args.indexOf(name)
  if (i < 0) return def
  const v = args[i + 1]
  if (v === undefined) usage(`${name} needs a value`)
  return v
}
function usage (msg: string): never {
  console.error(`bench-ppm: ${msg}\nusage: scripts/bench-ppm [--sizes 1,10,100,500] [--runs 3] [--threads 1,4,16] [--thread-mb 100]\n` +
    '                        [--precopy-mb 100] [--precopy-rate 1] [--cases sizes,threads,precopy,fill]')
  process.exit(2)
}
for (let i = 0; i < args.length; i += 2) if (!['--sizes', '--runs', '--threads', '--thread-mb', '--precopy-mb', '--precopy-rate', '--cases'].includes(args[i])) usage(`unknown argument ${args[i]}`)
const sizes = opt('--sizes', '1,10,100,500').split(',').map(Number)
const runs = Number(opt('--runs', '3'))
const threadCounts = opt('--threads', '1,4,16').split(',').map(Number)
const threadMb = Number(opt('--thread-mb', '100'))
if (sizes.some(s => !Number.isInteger(s) || s < 1 || s > 8192) || !Number.isInteger(runs) || runs < 1) usage('bad --sizes or --runs')
if (threadCounts.some(t => !Number.isInteger(t) || t < 1 || t > 256) || !Number.isInteger(threadMb) || threadMb < 1 || threadMb > 8192) usage('bad --threads or --thread-mb')
const precopyMb = Number(opt('--precopy-mb', '100'))
const precopyRate = Number(opt('--precopy-rate', '1'))
const cases = new Set(opt('--cases', 'sizes,threads,precopy').split(','))
if (!Number.isInteger(precopyMb) || precopyMb < 1 || precopyMb > 8192 || !(precopyRate > 0 && precopyRate <= 1024)) usage('bad --precopy-mb or --precopy-rate')
if ([...cases].some(c => !['sizes', 'threads', 'precopy', 'fill'].includes(c))) usage('bad --cases')

const dir = mkdtempSync(join(tmpdir(), 'hpc-ppm-bench-'))
let walker: string, launch: string, dirtier: string
try {
  [walker, launch, dirtier] = ['walker', 'launch', 'dirtier'].map(name => compileC(join(root, 'test', 'ppm', 'subjects', `${name}.c`), dir))
} catch (e) {
  console.error((e as Error).message)
  process.exit(1)
}


interface Started { pid: number, done: Promise<void>, kill: () => void }
async function startWalker (mb: number, threads = 1): Promise<Started> {
  const c = spawn(launch, [walker, String(mb), '1000000', '50000', '0', String(threads)], { stdio: ['ignore', 'pipe', 'ignore'] })
  const rl = createInterface({ input: c.stdout })
  await new Promise<void>((resolve, reject) => {
    rl.on('line', l => { if (l.startsWith('walk 0')) resolve() })
    c.on('exit', () => reject(new Error('walker ended early')))
  })
  c.stdout.resume()
  return { pid: c.pid as number, done: new Promise(resolve => c.on('close', () => resolve())), kill: () => c.kill('SIGKILL') }
}

async function socketPair (): Promise<[Socket, Socket]> {
  const path = join(dir, `s${Math.random().toString(36).slice(2)}.sock`)
  const srv = createServer({ pauseOnConnect: true })
  srv.listen(path)
  await once(srv, 'listening')
  const accepted = once(srv, 'connection')
  const c = connect(path)
  await once(c, 'connect')
  const [s] = await accepted as [Socket]
  srv.close()
  return [s, c]
}

function rawPipe (bytes: number, hot = false): number {
  const r = spawnSync(helperPath(), ['rawpipe', String(bytes), ...(hot ? ['--hot'] : [])], { encoding: 'utf8' })
  const m = /raw_ms=([\d.]+)/.exec(r.stdout)
  if (m == null) throw new Error(`rawpipe failed: ${r.stdout}${r.stderr}`)
  return Number(m[1])
}

interface Figures { imageMiB: number, freezeMs: number, restoreMs: number, fillMs: number, moveMs: number, moveMBs: number, rawMs: number, rawMBs: number, ratio: number, rawHotMs: number }
/** `runs` times: dump to a file (freeze), restore from it, a streamed move, raw copies; medians */
async function measure (mb: number, threads = 1): Promise<Figures> {
  const freeze: number[] = []; const rest: number[] = []; const fill: number[] = []; const move: number[] = []; const raw: number[] = []; const hot: number[] = []; let bytes = 0
  for (let i = 0; i < runs; i++) {
    // freeze and restore through a file
    const w = await startWalker(mb, threads)
    const img = join(dir, 'bench.img')
    const d = await dump(w.pid, img)
    await w.done
    freeze.push(d.freezeMs)
    bytes = statSync(img).size
    const r = await restore(img, { stdio: ['ignore', 'ignore', 'ignore'] })
    rest.push(r.restoreMs)
    fill.push(Number(r.stats.fill_ms))
    process.kill(r.pid, 'SIGKILL')
    await r.exited
    rmSync(img)
    // the streamed move over a local socket (the helpers use it directly), then a raw pipe
    // copy of the same bytes
    const w2 = await startWalker(mb, threads)
    const [rs, ws] = await socketPair()
    const t0 = performance.now()
    // a new pid, as on another host where the pid is free: restoring under the same pid here
    // would have to wait until the original is gone, i.e. until the dump is over
    const rp = restore(socketFd(rs), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] })
    const d2 = await dump(w2.pid, socketFd(ws))
    const r2 = await rp
    const ms = performance.now() - t0
    move.push(ms)
    bytes = d2.bytes
    rs.destroy()
    ws.destroy()
    process.kill(r2.pid, 'SIGKILL')
    await r2.exited
    await w2.done
    raw.push(rawPipe(bytes))
    hot.push(rawPipe(bytes, true))
  }
  const mib = bytes / 1048576
  return {
    imageMiB: Number(mib.toFixed(1)),
    freezeMs: Number(median(freeze).toFixed(1)),
    restoreMs: Number(median(rest).toFixed(1)),
    fillMs: Number(median(fill).toFixed(1)),
    moveMs: Number(median(move).toFixed(1)),
    moveMBs: Number((mib / (median(move) / 1000)).toFixed(0)),
    rawMs: Number(median(raw).toFixed(1)),
    rawMBs: Number((mib / (median(raw) / 1000)).toFixed(0)),
    ratio: Number((median(move) / median(raw)).toFixed(2)),
    rawHotMs: Number(median(hot).toFixed(1))
  }
}

interface PrecopyFigures {
  plainFreezeMs: number, precopyFreezeMs: number, ratio: number, rounds: number, precopyMs: number, earlyMiB: number,
  finalPages: number, fallbacks: number, plainRestoreMs: number, precopyRestoreMs: number, stageMs: number,
  plainDownMs: number, precopyDownMs: number, plainMoveMs: number, precopyMoveMs: number
}
/** `runs` times, a process writing `rate` MiB/s: a plain dump and a pre-copy dump of it (both
 * leaving it running, into files in the page cache), then a restore of each image; medians */
async function measurePrecopy (mb: number, rate: number): Promise<PrecopyFigures> {
  const plain: number[] = []; const pre: number[] = []; const rounds: number[] = []; const preMs: number[] = []; const early: number[] = []
  const fin: number[] = []; const rPlain: number[] = []; const rPre: number[] = []; const stage: number[] = []; let fallbacks = 0
  const down: number[][] = [[], []]; const whole: number[][] = [[], []]
  // 4 pages (16 KiB) a step: 64 * rate steps a second
  const delayUs = String(Math.round(1e6 / (64 * rate)))
  async function startDirtier (): Promise<{ pid: number, done: Promise<void>, kill: () => void }> {
    const c = spawn(launch, [dirtier, String(mb), '4', delayUs, join(dir, 'stop'), '0'], { stdio: ['ignore', 'pipe', 'ignore'] })
    const done = new Promise<void>(resolve => c.on('close', () => resolve()))
    await new Promise<void>((resolve, reject) => {
      c.stdout.once('data', () => resolve())
      c.on('exit', () => reject(new Error('dirtier ended early')))
    })
    c.stdout.resume()
    return { pid: c.pid as number, done, kill: () => c.kill('SIGKILL') }
  }
  for (let i = 0; i < runs; i++) {
    const c = await startDirtier()
    try {
      const imgs = [join(dir, 'plain.img'), join(dir, 'pre.img')]
      // alternate the order, so that neither always comes first
      for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
        const d = await dump(c.pid, imgs[k], { leaveRunning: true, precopy: k === 1 })
        if (k === 0) plain.push(d.freezeMs)
        else {
          pre.push(d.freezeMs); rounds.push(Number(d.stats.precopy_rounds)); preMs.push(Number(d.stats.precopy_ms))
          early.push(Number(d.stats.precopy_bytes) / 1048576); fin.push(Number(d.stats.final_pages))
          if (d.stats.precopy_fallback === '1') fallbacks++
        }
      }
      for (const k of [0, 1]) {
        const r = await restore(imgs[k], { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] })
        ;(k === 0 ? rPlain : rPre).push(r.restoreMs)
        if (k === 1) stage.push(Number(r.stats.stage_ms))
        process.kill(r.pid, 'SIGKILL')
        await r.exited
        rmSync(imgs[k])
      }
    } finally {
      c.kill()
      await c.done
    }
    // streamed moves, plain and pre-copy, each of a fresh process
    for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
      const w = await startDirtier()
      const [rs, ws] = await socketPair()
      const t0 = performance.now()
      const rp = restore(socketFd(rs), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] })
      const d = await dump(w.pid, socketFd(ws), { precopy: k === 1 })
      const r = await rp
      whole[k].push(performance.now() - t0)
      down[k].push(Number(r.stats.running_at) - Number(d.stats.freeze_at))
      rs.destroy()
      ws.destroy()
      process.kill(r.pid, 'SIGKILL')
      await r.exited
      await w.done
    }
  }
  return {
    plainFreezeMs: Number(median(plain).toFixed(1)),
    precopyFreezeMs: Number(median(pre).toFixed(1)),
    ratio: Number((median(pre) / median(plain)).toFixed(3)),
    rounds: median(rounds),
    precopyMs: Number(median(preMs).toFixed(1)),
    earlyMiB: Number(median(early).toFixed(1)),
    finalPages: median(fin),
    fallbacks,
    plainRestoreMs: Number(median(rPlain).toFixed(1)),
    precopyRestoreMs: Number(median(rPre).toFixed(1)),
    stageMs: Number(median(stage).toFixed(1)),
    plainDownMs: Number(median(down[0]).toFixed(1)),
    precopyDownMs: Number(median(down[1]).toFixed(1)),
    plainMoveMs: Number(median(whole[0]).toFixed(1)),
    precopyMoveMs: Number(median(whole[1]).toFixed(1))
  }
}

interface FillFigures { mb: number, restoreMs: [number, number], fillMs: [number, number], moveMs: [number, number] }
/** the same image restored, and one walker moved (left running), `runs` times with each fill,
 * alternating; [UFFDIO_COPY, /proc/PID/mem] medians */
async function measureFill (mb: number): Promise<FillFigures> {
  const rest: number[][] = [[], []]; const fill: number[][] = [[], []]; const move: number[][] = [[], []]
  const env = process.env.HPC_PPM_FILL
  const use = (k: number): void => { if (k === 1) process.env.HPC_PPM_FILL = 'pwrite'; else delete process.env.HPC_PPM_FILL }
  const w = await startWalker(mb)
  try {
    const img = join(dir, 'fill.img')
    await dump(w.pid, img, { leaveRunning: true })
    for (let i = 0; i < runs; i++) {
      for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
        use(k)
        const rp = restore(img, { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] })
        use(0)
        const r = await rp
        if (r.stats.fill !== (k === 0 ? 'uffd' : 'pwrite')) throw new Error(`restore filled by ${r.stats.fill} (${r.stats.fill_why ?? ''})`)
        rest[k].push(r.restoreMs)
        fill[k].push(Number(r.stats.fill_ms))
        process.kill(r.pid, 'SIGKILL')
        await r.exited
      }
    }
    rmSync(img)
    for (let i = 0; i < runs; i++) {
      for (const k of i % 2 === 0 ? [1, 0] : [0, 1]) {
        const [rs, ws] = await socketPair()
        const t0 = performance.now()
        use(k)
        const rp = restore(socketFd(rs), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'] })
        use(0)
        await dump(w.pid, socketFd(ws), { leaveRunning: true })
        const r = await rp
        move[k].push(performance.now() - t0)
        rs.destroy()
        ws.destroy()
        process.kill(r.pid, 'SIGKILL')
        await r.exited
      }
    }
  } finally {
    if (env === undefined) delete process.env.HPC_PPM_FILL; else process.env.HPC_PPM_FILL = env
    w.kill()
    await w.done
  }
  const m = (v: number[][]): [number, number] => [Number(median(v[0]).toFixed(1)), Number(median(v[1]).toFixed(1))]
  return { mb, restoreMs: m(rest), fillMs: m(fill), moveMs: m(move) }
}

type Row = Figures & { mb: number }
const rows: Row[] = []
const threadRows: Array<Figures & { threads: number }> = []
const fillRows: FillFigures[] = []
let pc: PrecopyFigures | undefined
try {
  for (const mb of cases.has('sizes') ? sizes : []) {
    const row: Row = { mb, ...await measure(mb) }
    rows.push(row)
    console.log(`${String(mb).padStart(4)} MiB process: image ${row.imageMiB} MiB, freeze ${row.freezeMs} ms, restore ${row.restoreMs} ms (page fill ${row.fillMs} ms), ` +
      `streamed move ${row.moveMs} ms (${row.moveMBs} MiB/s), raw pipe copy ${row.rawMs} ms (${row.rawMBs} MiB/s), move/raw ${row.ratio}x (cache-hot raw copy ${row.rawHotMs} ms)`)
  }
  // the walker with 1 thread is the single-threaded figure, measured in this run too
  for (const n of cases.has('threads') ? [...new Set([1, ...threadCounts])].sort((a, b) => a - b) : []) threadRows.push({ threads: n, ...await measure(threadMb, n) })
  const single = threadRows[0]
  for (const r of threadRows) {
    console.log(`${String(threadMb).padStart(4)} MiB, ${String(r.threads).padStart(2)} thread(s): image ${r.imageMiB} MiB, freeze ${r.freezeMs} ms ` +
      `(${(r.freezeMs / single.freezeMs).toFixed(2)}x single-threaded), restore ${r.restoreMs} ms, dump+restore streamed ${r.moveMs} ms ` +
      `(${(r.moveMs / single.moveMs).toFixed(2)}x single-threaded), raw pipe copy ${r.rawMs} ms, move/raw ${r.ratio}x`)
  }
  if (cases.has('precopy')) {
    pc = await measurePrecopy(precopyMb, precopyRate)
    console.log(`${String(precopyMb).padStart(4)} MiB writing ${precopyRate} MiB/s: freeze stop-and-copy ${pc.plainFreezeMs} ms, pre-copy ${pc.precopyFreezeMs} ms ` +
      `(${pc.ratio}x), ${pc.rounds} rounds in ${pc.precopyMs} ms copying ${pc.earlyMiB} MiB while it ran, ${pc.finalPages} pages frozen, ` +
      `${pc.fallbacks} fallback(s); restore from a file ${pc.plainRestoreMs} ms plain, ${pc.precopyRestoreMs} ms pre-copy (${pc.stageMs} ms of it staging the rounds); ` +
      `streamed move: downtime ${pc.plainDownMs} ms plain, ${pc.precopyDownMs} ms pre-copy (${(pc.precopyDownMs / pc.plainDownMs).toFixed(2)}x), whole move ${pc.plainMoveMs} ms plain, ${pc.precopyMoveMs} ms pre-copy`)
  }
  for (const mb of cases.has('fill') ? sizes : []) {
    const f = await measureFill(mb)
    fillRows.push(f)
    const x = (v: [number, number]): string => `${v[0]} ms against ${v[1]} ms (${(v[0] / v[1]).toFixed(2)}x)`
    console.log(`${String(mb).padStart(4)} MiB, page fill by UFFDIO_COPY against /proc/PID/mem, ${runs} of each alternating: restore ${x(f.restoreMs)}, ` +
      `of it the fill ${x(f.fillMs)}; streamed move ${x(f.moveMs)}`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
const big = rows.filter(r => r.mb >= 100)
const small = rows.filter(r => r.imageMiB < 5)
if (big.length > 0) console.log(`goal move within 2x of raw copy at >= 100 MiB: ${big.every(r => r.ratio <= 2) ? 'met' : 'NOT met'} (${big.map(r => `${r.ratio}x`).join(', ')})`)
if (small.length > 0) console.log(`goal freeze under 50 ms under 5 MiB: ${small.every(r => r.freezeMs < 50) ? 'met' : 'NOT met'} (${small.map(r => `${r.freezeMs} ms`).join(', ')})`)
if (pc != null) console.log(`goal pre-copy freeze <= 20 ms (${precopyMb} MiB writing ${precopyRate} MiB/s): ${pc.precopyFreezeMs <= 20 ? 'met' : 'NOT met'} (${pc.precopyFreezeMs} ms, stop-and-copy ${pc.plainFreezeMs} ms)`)
if (cases.has('sizes') || cases.has('threads') || cases.has('precopy')) console.log(`page fill: ${process.env.HPC_PPM_FILL === 'pwrite' ? '/proc/PID/mem (HPC_PPM_FILL=pwrite)' : 'UFFDIO_COPY where it applies'}`)
console.log(`load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
console.log(JSON.stringify({ bench: 'ppm', runs, rows, fill: fillRows, threads: { mb: threadMb, rows: threadRows }, precopy: pc == null ? null : { mb: precopyMb, rate: precopyRate, ...pc } }))
