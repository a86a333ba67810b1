// Benchmark of the gossip protocol against the MOSIX age model (docs/gossip.md: the benchmark's
// items 1-3, the model in section 2). Prints, per cluster size n and window w: the measured average age and
// mean maximum age (in intervals) next to the model's A_v and M, their ratios, and bytes per node
// per interval; then change propagation, failure and rejoin times, the scaling law, and the
// gossimon settings. Cases run in parallel child processes (--jobs, default 2).
//
//   scripts/bench-gossip [--quick] [--full] [--seed N] [--jobs N] [--json]
//
// Engines: 'gossiper' = n real Gossipers (src/gossip) over a MemoryNetwork in virtual time;
// 'fast' = the typed-array mirror of the same rules (src/sim/fastsim.ts), for n ≥ 1024 where the
// real objects take minutes (see docs/gossip.md).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import debug from '../src/util/log.js'
import { calcWinsizeGivenAv, calcWinsizeGivenMax, EULER_GAMMA, model } from '../src/sim/agemodel.js'
import {
  runAges, runChange, runColdStart, runKillRevive,
  type AgeRunResult, type ChangeResult, type ColdStartResult, type EngineKind, type KillReviveResult
} from '../src/sim/experiments.js'
import { FastSimulation } from '../src/sim/fastsim.js'
import { Simulation } from '../src/sim/simulator.js'
import { expectedMaxAge } from '../src/config.js'
import { MAX_WINDOW } from '../src/gossip/codec.js'

const log = debug('hpcfs:bench-gossip')

interface Case {
  id: string
  engine: EngineKind
  n: number
  w: number
  loss?: number
  /** One-way latency in ms (gossiper engine): also compares believed and true ages. */
  latencyMs?: number
  /** Also time a changed value, and (gossiper engine) a kill and a restart. */
  events?: boolean
  seed: number
  /** 'cold': time a simultaneous cold start with the given send-to-any rule (fast engine, 3 seeds). */
  cold?: 'known' | 'heard'
}

interface CaseResult {
  c: Case
  ages?: AgeRunResult
  cold?: ColdStartResult
  /** Mean believed and true ages (intervals) over 10 snapshots after the age measurement. */
  truth?: { believed: number, truth: number }
  change?: ChangeResult
  killRevive?: KillReviveResult
  wallMs: number
}

function runCase (c: Case): CaseResult {
  const t0 = performance.now()
  if (c.cold) {
    const cold = runColdStart(c.n, c.w, c.cold, [c.seed, c.seed + 1, c.seed + 2])
    return { c, cold, wallMs: performance.now() - t0 }
  }
  const { sim, result } = runAges({ engine: c.engine, n: c.n, window: c.w, loss: c.loss ?? 0, latencyMs: c.latencyMs ?? 0, seed: c.seed })
  const out: CaseResult = { c, ages: result, wallMs: 0 }
  if (sim instanceof Simulation && c.latencyMs !== undefined) {
    let b = 0; let t = 0
    for (let i = 0; i < 10; i++) { sim.runIntervals(5); const a = sim.trueAges(); b += a.believed; t += a.truth }
    out.truth = { believed: b / 10, truth: t / 10 }
  }
  if (c.events) {
    const limit = Math.ceil(10 * result.model.M)
    if (sim instanceof FastSimulation) out.change = sim.propagate(1, limit)
    else if (sim instanceof Simulation) {
      out.change = runChange(sim, 1, limit)
      out.killRevive = runKillRevive(sim, 2, limit)
    }
  }
  out.wallMs = performance.now() - t0
  return out
}

// --- case lists --------------------------------------------------------------------------------

function cases (mode: 'quick' | 'default' | 'full', seed: number): Case[] {
  const c = (engine: EngineKind, n: number, w: number, extra: Partial<Case> = {}): Case =>
    ({ id: `${engine}-${n}-${w}-${extra.loss ?? 0}-${extra.latencyMs ?? 0}`, engine, n, w, seed, ...extra })
  if (mode === 'quick') {
    return [
      c('gossiper', 64, 8, { events: true }), c('fast', 64, 8), c('fast', 128, 16),
      c('gossiper', 64, 8, { loss: 0.1 }), c('gossiper', 32, 6, { latencyMs: 200 }),
      c('fast', 64, 8, { cold: 'known', id: 'cold-64-known' }), c('fast', 64, 8, { cold: 'heard', id: 'cold-64-heard' })
    ]
  }
  const list = [
    // the heaviest first, so that two jobs finish together
    c('fast', 2048, 16),
    c('fast', 1024, 8),
    c('gossiper', 256, 16, { events: true }),
    c('gossiper', 256, 16, { loss: 0.1 }),
    c('gossiper', 64, 8, { events: true }),
    c('gossiper', 64, 16),
    c('gossiper', 64, 8, { latencyMs: 0 }), c('gossiper', 64, 8, { latencyMs: 200 }),
    c('fast', 64, 8),
    c('fast', 256, 16),
    c('fast', 512, 16),
    c('fast', 1024, 16, { events: true }),
    c('fast', 1024, 16, { loss: 0.1 }),
    c('fast', 1024, 20),
    c('fast', 1024, 32),
    c('fast', 1024, 16, { cold: 'known', id: 'cold-1024-known' }), c('fast', 1024, 16, { cold: 'heard', id: 'cold-1024-heard' }),
    c('fast', 256, 16, { cold: 'known', id: 'cold-256-known' }), c('fast', 256, 16, { cold: 'heard', id: 'cold-256-heard' })
  ]
  if (mode === 'full') {
    list.unshift(
      c('fast', 4096, 16), c('fast', 4096, 32), c('fast', 2048, 32),
      c('gossiper', 1024, MAX_WINDOW, { events: true }), c('gossiper', 1024, 16)
    )
  }
  return list
}

// --- parallel runner ---------------------------------------------------------------------------

const self = fileURLToPath(import.meta.url)

function runChild (c: Case): Promise<CaseResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [self, '--case', JSON.stringify(c)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    p.on('error', reject)
    p.on('close', code => {
      if (code !== 0) { reject(new Error(`case ${c.id} exited with ${code}`)); return }
      try { resolve(JSON.parse(out) as CaseResult) } catch (e) { reject(e) }
    })
  })
}

async function runAll (list: Case[], jobs: number): Promise<CaseResult[]> {
  const results: CaseResult[] = new Array(list.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const i = next++
      results[i] = await runChild(list[i])
      log('%s done in %d ms', list[i].id, results[i].wallMs)
      process.stderr.write('.')
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker))
  process.stderr.write('\n')
  return results
}

// --- report ------------------------------------------------------------------------------------

const f = (x: number, d = 1): string => Number.isFinite(x) ? x.toFixed(d) : '-'
const pad = (s: string | number, w: number): string => String(s).padStart(w)

function table (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (r: string[]): string => r.map((x, i) => pad(x, widths[i])).join('  ')
  return [line(head), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function report (all: CaseResult[], seed: number): string {
  const out: string[] = []
  const results = all.filter((r): r is CaseResult & { ages: AgeRunResult } => r.ages !== undefined && r.c.latencyMs === undefined)
  const byAge = [...results].sort((a, b) => (a.c.loss ?? 0) - (b.c.loss ?? 0) || a.c.n - b.c.n || a.c.w - b.c.w || a.c.engine.localeCompare(b.c.engine))
  out.push(`Windowed push gossip against the MOSIX age model (docs/gossip.md, section 2), seed ${seed}.`)
  out.push('Interval = 1 unit; each node pushes its own entry + w-1 freshest to one random peer per interval, random')
  out.push('phases; warm-up >= 3*M (longer while some pair is still unknown); ages in intervals; bytes unsigned datagrams.')
  out.push('')
  out.push(table(
    ['engine', 'n', 'w', 'loss', 'warmup', 'A_v model', 'avg meas', 'ratio', 'M model', 'meanmax meas', 'ratio', 'oldest', 'B/node/int', 'pkt/node/int', 'wall s'],
    byAge.map(({ c, ages: a, wallMs }) => [
      c.engine, String(c.n), String(c.w), f(c.loss ?? 0, 2), String(a.warmupIntervals),
      f(a.model.Av, 2), f(a.avgAge, 2), f(a.avgAge / a.model.Av, 3),
      f(a.model.M, 1), f(a.meanMaxAge, 1), f(a.meanMaxAge / a.model.M, 3), f(a.maxAge, 0),
      f(a.bytesPerNodePerInterval, 1), f(a.packetsPerNodePerInterval, 3), f(wallMs / 1000, 1)
    ])
  ))
  out.push('(with loss the model is the loss-free one: a fraction p of pushes is lost, so ages grow by about 1/(1-p))')

  const ev = results.filter(r => r.change || r.killRevive)
  if (ev.length) {
    out.push('')
    out.push('Events after warm-up (intervals): a changed value on node 1 until 50%/99%/all nodes hold it; node 2 killed:')
    out.push('first and last node to read it down (downAfter = 3*M+5 as hpcd); node 2 restarted: 50%/all read it up.')
    out.push('')
    out.push(table(
      ['engine', 'n', 'w', 'change 50%', '99%', 'all', 'downAfter', 'down first', 'down all', 'still up', 'rejoin 50%', 'rejoin all'],
      ev.map(({ c, change: ch, killRevive: k }) => [
        c.engine, String(c.n), String(c.w), f(ch?.half ?? NaN), f(ch?.p99 ?? NaN), f(ch?.all ?? NaN),
        f(k?.downAfterIntervals ?? NaN), f(k?.downFirst ?? NaN), f(k?.downAll ?? NaN), k ? String(k.stillUp) : '-',
        f(k?.upHalf ?? NaN), f(k?.upAll ?? NaN)
      ])
    ))
  }

  // scaling law (docs/gossip.md, item 2), from whatever rows exist at w = 16 without loss
  const at = (n: number, w: number, engine: EngineKind = 'fast'): AgeRunResult | undefined =>
    results.find(r => r.c.n === n && r.c.w === w && (r.c.loss ?? 0) === 0 && r.c.engine === engine)?.ages
  const scale: string[][] = []
  for (const [n1, n2] of [[256, 512], [512, 1024], [1024, 2048], [2048, 4096]]) {
    const a = at(n1, 16); const b = at(n2, 16)
    if (a && b) {
      scale.push([`n ${n1} -> ${n2}, w=16`, f(b.avgAge / a.avgAge, 3), f(b.model.Av / a.model.Av, 3), f(b.meanMaxAge / a.meanMaxAge, 3), f(b.model.M / a.model.M, 3),
        f(b.bytesPerNodePerInterval / a.bytesPerNodePerInterval, 3)])
    }
  }
  for (const [w1, w2, n] of [[8, 16, 1024], [16, 32, 1024], [16, 32, 2048], [16, 32, 4096]]) {
    const a = at(n, w1); const b = at(n, w2)
    if (a && b) {
      scale.push([`w ${w1} -> ${w2}, n=${n}`, f(b.avgAge / a.avgAge, 3), f(b.model.Av / a.model.Av, 3), f(b.meanMaxAge / a.meanMaxAge, 3), f(b.model.M / a.model.M, 3),
        f(b.bytesPerNodePerInterval / a.bytesPerNodePerInterval, 3)])
    }
  }
  if (scale.length) {
    out.push('')
    out.push('Scaling law (item 2): ratios of successive rows, measured and model.')
    out.push('')
    out.push(table(['step', 'avg meas', 'avg model', 'max meas', 'max model', 'bytes'], scale))
  }

  const lat = all.filter(r => r.truth)
  if (lat.length) {
    out.push('')
    out.push('Latency (real Gossipers): ages as the nodes believe them (now - freshAt) and as they are (from the origin\'s')
    out.push('stamp time). The protocol cannot see transit time, so each hop hides one latency.')
    out.push('')
    out.push(table(['n', 'w', 'latency ms', 'believed', 'true', 'hidden', 'hidden / latency'],
      lat.map(r => {
        const t = r.truth as { believed: number, truth: number }
        const l = r.c.latencyMs ?? 0
        return [String(r.c.n), String(r.c.w), String(l), f(t.believed, 3), f(t.truth, 3), f(t.truth - t.believed, 3), l > 0 ? f((t.truth - t.believed) * 1000 / l, 2) : '-']
      })))
  }

  const cold = all.filter(r => r.cold).map(r => r.cold as ColdStartResult)
  if (cold.length) {
    out.push('')
    out.push('Cold start (fast engine, 3 seeds): all nodes start together with the map known. Intervals until every node')
    out.push('has heard of every other, and nodes still knowing <= 3 others after one M. Rule known = the gossiper\'s')
    out.push('send-to-any probability 1/max(5, table size); heard = 1/max(5, nodes heard of), like gossimon\'s #alive.')
    out.push('')
    out.push(table(['n', 'w', 'rule', 'all known (per seed)', 'mean', 'locked after M'],
      cold.sort((a, b) => a.n - b.n || a.rule.localeCompare(b.rule)).map(r => [String(r.n), String(r.w), r.rule, r.allKnown.map(x => f(x, 0)).join(' '),
        f(r.allKnown.reduce((a, b) => a + b, 0) / r.allKnown.length, 0), r.lockedAfterM.join(' ')])))
  }

  // gossimon defaults (docs/gossip.md, item 3): timestep 0.5 s, windows 20 and 16, n = 1024
  const g = [20, 16].map(w => ({ w, a: at(1024, w) })).filter(x => x.a)
  if (g.length) {
    out.push('')
    out.push('gossimon settings (item 3): n=1024, timestep 0.5 s (ages in seconds = intervals x 0.5).')
    out.push('')
    out.push(table(['w', 'avg int', 'avg s', 'model s', 'meanmax int', 'meanmax s', 'model s', 'B/node/s'],
      g.map(({ w, a }) => {
        const r = a as AgeRunResult
        return [String(w), f(r.avgAge, 2), f(r.avgAge * 0.5, 2), f(r.model.Av * 0.5, 2), f(r.meanMaxAge, 1), f(r.meanMaxAge * 0.5, 1), f(r.model.M * 0.5, 1), f(r.bytesPerNodePerInterval * 2, 0)]
      })))
  }
  out.push('')
  out.push(`Auto-sizing at n=1024 (gossimon --avgage 10 / --avgmax 60): w = ${calcWinsizeGivenAv(1024, 10)} / ${calcWinsizeGivenMax(1024, 60)}` +
    ` (Table C: 202 / 128); --avgmax 20: ${calcWinsizeGivenMax(1024, 20)} (Table C: 384).`)
  const cfg = [[64, 8], [256, 16], [1024, 16], [1024, 32], [2048, 16]].map(([n, w]) => `n=${n} w=${w}: ${f(expectedMaxAge(n, w), 2)} vs ${f(model(n, w).M, 2)}` +
    ` (Euler γ: ${f((Math.log(n) + EULER_GAMMA) / (w * -Math.log(1 - 1 / (n - 1))), 2)})`)
  out.push(`config.expectedMaxAge vs agemodel M (γ=0.577): ${cfg.join('; ')}.`)
  return out.join('\n')
}

// --- main --------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const opt = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
  const one = opt('--case')
  if (one !== undefined) { process.stdout.write(JSON.stringify(runCase(JSON.parse(one) as Case))); return }
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log('usage: bench-gossip [--quick | --full] [--seed N] [--jobs N] [--json]')
    return
  }
  const seed = Number(opt('--seed') ?? 1)
  const jobs = Number(opt('--jobs') ?? 2)
  if (!Number.isInteger(seed) || !Number.isInteger(jobs) || jobs < 1) throw new Error('--seed and --jobs take integers (jobs ≥ 1)')
  const mode = argv.includes('--quick') ? 'quick' : argv.includes('--full') ? 'full' : 'default'
  const t0 = performance.now()
  const results = await runAll(cases(mode, seed), jobs)
  if (argv.includes('--json')) console.log(JSON.stringify(results, null, 1))
  else console.log(report(results, seed))
  console.log(`\n${results.length} cases, ${jobs} jobs, ${f((performance.now() - t0) / 1000, 1)} s wall.`)
}

main().catch((e: unknown) => { console.error('bench-gossip:', e instanceof Error ? e.message : e); process.exit(1) })
