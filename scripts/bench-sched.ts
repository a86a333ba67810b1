// Scheduling-policy benchmark (docs/sched.md): mean slowdown and migrations per job of round robin,
// random, E-PVM, Mosix-like and ours (src/sched) on simulated heterogeneous clusters, over seeds.
// Usage: scripts/bench-sched [--quick] [--sizes 8,64] [--seeds N] [--util 0.75] [--mem-median-mb 64]
//        [--staleness 3] [--choices 2] [--hysteresis 1.3] [--arrival 300] [--json]
import { simulate, POLICIES, SIM_DEFAULTS, type PolicyName, type SimResult } from '../src/sched/sim.js'
import { SCHED_DEFAULTS } from '../src/sched/policy.js'

const argv = process.argv.slice(2)
const flag = (name: string): boolean => argv.includes(`--${name}`)
const opt = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined }
const num = (name: string, dflt: number): number => { const v = opt(name); return v === undefined ? dflt : Number(v) }

const quick = flag('quick')
const sizes = (opt('sizes') ?? (quick ? '8,64' : '8,64,256,1024')).split(',').map(Number)
const seedsFor = (n: number): number => num('seeds', quick ? (n <= 8 ? 5 : 2) : n <= 8 ? 20 : n <= 64 ? 8 : n <= 256 ? 3 : 2)
const tunables = {
  ...(opt('choices') !== undefined ? { choices: num('choices', SCHED_DEFAULTS.choices) } : {}),
  ...(opt('hysteresis') !== undefined ? { hysteresis: num('hysteresis', SCHED_DEFAULTS.hysteresis) } : {})
}
const base = {
  utilisation: num('util', SIM_DEFAULTS.utilisation),
  memMedian: num('mem-median-mb', SIM_DEFAULTS.memMedian / (1 << 20)) * (1 << 20),
  maxStaleness: num('staleness', SIM_DEFAULTS.maxStaleness),
  arrivalSeconds: num('arrival', quick ? 120 : SIM_DEFAULTS.arrivalSeconds),
  tunables
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
const sd = (xs: number[]): number => { const m = mean(xs); return Math.sqrt(mean(xs.map(x => (x - m) ** 2))) }
const f = (x: number, d = 2): string => x >= 1000 ? x.toExponential(2) : x.toFixed(d)

const t0 = Date.now()
const all: SimResult[] = []
console.log(`# ${sizes.join(', ')} nodes; utilisation ${base.utilisation}; arrivals for ${base.arrivalSeconds} s; views ${SIM_DEFAULTS.window} nodes, 1..${base.maxStaleness} intervals old;` +
  ` job memory median ${base.memMedian / (1 << 20)} MB; tunables ${JSON.stringify({ ...SCHED_DEFAULTS, ...tunables })}`)
console.log('| nodes | seeds | jobs/seed | policy | mean slowdown (sd over seeds) | median slowdown | ÷ Mosix-like | migrations/job | thrashing share |')
console.log('|---|---|---|---|---|---|---|---|---|')
for (const n of sizes) {
  const seeds = seedsFor(n)
  const by = new Map<PolicyName, SimResult[]>()
  for (const policy of POLICIES) {
    const rs: SimResult[] = []
    for (let seed = 1; seed <= seeds; seed++) rs.push(simulate({ ...base, nodes: n, seed, policy }))
    by.set(policy, rs)
    all.push(...rs)
  }
  const mosix = mean(by.get('mosix')!.map(r => r.meanSlowdown))
  for (const policy of POLICIES) {
    const rs = by.get(policy)!
    const ms = rs.map(r => r.meanSlowdown)
    console.log(`| ${n} | ${seeds} | ${Math.round(mean(rs.map(r => r.jobs)))} | ${policy} | ${f(mean(ms))} (${f(sd(ms))}) | ${f(mean(rs.map(r => r.medianSlowdown)))} |` +
      ` ${f(mean(ms) / mosix)} | ${mean(rs.map(r => r.migrationsPerJob)).toFixed(3)} | ${mean(rs.map(r => r.thrashShare)).toFixed(3)} |`)
  }
}
console.log(`# ${((Date.now() - t0) / 1000).toFixed(1)} s`)
if (flag('json')) console.log(JSON.stringify(all))
