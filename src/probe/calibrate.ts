// Speed calibration: how fast one CPU of this node is, on the openMosix scale where a
// Pentium III at 1 GHz reads 10000 (docs/probe.md, Speed calibration; the rule of thumb there is
// speed ≈ MHz × 10 for a PIII-class core).
//
// HOW (also in docs/probe.md):
//  1. Kernel: a 32-bit xorshift generator plus a running sum, one dependent chain per iteration:
//        x ^= x << 13;  x ^= x >>> 17;  x ^= x << 5;  acc = (acc + x) | 0
//     The result is folded into a module-level sink and returned, and the seed and the iteration
//     count are run-time values, so the JIT can neither constant-fold nor drop the loop.
//  2. Measure iterations per second on this machine: JIT warm-up, then a few timed runs of
//     ≈25 ms each within a total budget (default 150 ms), keep the best run (least disturbed by
//     interrupts, GC). A run's time is min(wall time, process CPU time), so other processes
//     time-sharing the CPU do not make the node look slower (its speed is per CPU, the load
//     accounts for sharing).
//  3. Reference rate, an ESTIMATE for a Pentium III 1 GHz running the same kernel compiled natively:
//     on x86 each `x ^= x << k` is `mov t,x; shl t,k; xor x,t`, three 1-cycle-latency integer
//     uops on the critical path (P6 has no move elimination; latencies from Agner Fog's tables),
//     so the dependent chain costs 3 × 3 = 9 cycles/iteration. The other uops (add, dec, jnz; 12
//     uops in all at 3 per cycle, 3 shifts on port 0) fit under that chain. Hence
//     reference = 1e9 / 9 ≈ 111 M iterations/s, and speed = 10000 × measured / reference.
//  The reference is not measured on real P6 hardware; it is a latency estimate and the figure
//  should be read to ±30 %. A dependent integer chain mostly measures clock × latency, so it
//  under-rates modern wide cores on ordinary code; `speedFromCpuinfo()` (MHz × 10) is the
//  openMosix rule of thumb, given as a cross-check. Both are overridable (setSpeed / options).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import createDebug from '../util/log.js'
import { SPEED } from '../config.js'

const debug = createDebug('hpcfs:probe')

/** Standard ("yardstick") speed: a Pentium III at 1 GHz. */
export const STD_SPEED = SPEED.standard
export const MIN_SPEED = SPEED.min
export const MAX_SPEED = SPEED.max
/** Estimated P6 cycles per kernel iteration (see the comment above). */
export const P6_CYCLES_PER_ITER = 9
/** Estimated kernel rate of a Pentium III at 1 GHz, iterations/s. */
export const REFERENCE_RATE = 1e9 / P6_CYCLES_PER_ITER

let sink = 0 // module-level: every store to it is observable, so the loop results are kept

function kernel (n: number, seed: number): number {
  let x = seed | 0
  let acc = 0
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    acc = (acc + x) | 0
  }
  return acc ^ x
}

function nowMs (): number {
  return Number(process.hrtime.bigint()) / 1e6
}

export interface CalibrateOptions {
  budgetMs?: number // total time for the timed runs, default 150
  runMs?: number // length of one timed run, default 25
}

export interface Calibration {
  speed: number // integer, clamped to MIN_SPEED..MAX_SPEED
  rate: number // best measured kernel iterations/s
  runs: number // timed runs done
  ms: number // wall time of the whole calibration, warm-up included
}

/** Run the benchmark and return speed and details. Blocks the event loop for ≈ budgetMs + warm-up. */
export function calibrate (opts: CalibrateOptions = {}): Calibration {
  const budgetMs = opts.budgetMs ?? 150
  const runMs = opts.runMs ?? 25
  const t0 = nowMs()
  // Warm-up: small batches until the optimising compiler has taken over, i.e. until the rate has
  // not improved for a while (at least 20 batches and 40 ms); also gives a first rate estimate.
  // (A fixed count of batches sometimes ended before the optimised code was installed, and the
  // timed runs then measured the baseline tier at about 0.4x.)
  let rate = 0
  let lastGain = nowMs()
  // Many short calls first: V8 tiers a function up by calls and loop iterations, and a few long
  // calls could leave the timed runs in a baseline tier (about 0.4x) for a few hundred ms.
  for (let w = 0; w < 3000; w++) sink ^= kernel(500, w)
  for (let w = 0; w < 2000; w++) {
    const n = 50000
    const s = nowMs()
    sink ^= kernel(n, w + 1 + (sink & 1))
    const e = nowMs()
    const r = (e - s) > 0 ? n / ((e - s) / 1000) : 0
    if (r > rate * 1.05) lastGain = e
    rate = Math.max(rate, r)
    if (w >= 20 && e - t0 >= 40 && e - lastGain >= 20) break
  }
  const n = Math.max(10000, Math.round(rate * runMs / 1000))
  let best = 0
  let runs = 0
  const start = nowMs()
  while (runs < 3 || nowMs() - start < budgetMs) {
    const s = nowMs()
    const cpu0 = process.cpuUsage()
    sink ^= kernel(n, runs + 7 + (sink & 1))
    const cpu = process.cpuUsage(cpu0)
    // time on CPU when other processes share it (wall time then includes their slices), wall
    // time otherwise (process CPU time also counts node's helper threads: GC, compiler)
    const dt = Math.min(nowMs() - s, (cpu.user + cpu.system) / 1000)
    runs++
    if (dt > 0) best = Math.max(best, n / (dt / 1000))
    if (runs >= 50) break
  }
  const speed = Math.min(MAX_SPEED, Math.max(MIN_SPEED, Math.round(STD_SPEED * best / REFERENCE_RATE)))
  const ms = nowMs() - t0
  debug('calibration: %d iterations/s best of %d runs, speed %d, %d ms', Math.round(best), runs, speed, Math.round(ms))
  return { speed, rate: best, runs, ms }
}

/** Calibrated speed of one CPU of this node (PIII 1 GHz = 10000). */
export function calibrateSpeed (opts?: CalibrateOptions): number {
  return calibrate(opts).speed
}

/** MHz × 10 from a /proc/cpuinfo text (highest `cpu MHz` line); undefined when none (e.g. arm64). */
export function parseCpuinfoSpeed (text: string): number | undefined {
  let mhz = 0
  for (const m of text.matchAll(/^cpu MHz\s*:\s*(\d+(?:\.\d+)?)/gm)) mhz = Math.max(mhz, Number(m[1]))
  return mhz > 0 ? Math.round(mhz * 10) : undefined
}

/**
 * openMosix rule of thumb speed ≈ MHz × 10, as a cross-check of calibrate(). Uses the maximum
 * frequency of cpu0 from cpufreq when present, else /proc/cpuinfo `cpu MHz`; undefined if unknown.
 */
export function speedFromCpuinfo (procRoot = '/proc', sysRoot = '/sys'): number | undefined {
  try {
    const khz = Number(readFileSync(join(sysRoot, 'devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq'), 'latin1').trim())
    if (Number.isFinite(khz) && khz > 0) return Math.round(khz / 100)
  } catch {}
  try {
    return parseCpuinfoSpeed(readFileSync(join(procRoot, 'cpuinfo'), 'latin1'))
  } catch {
    return undefined
  }
}
