// Start-up benchmark of the command-line tools: every command of package.json's `bin` run with
// --version and --help, next to `node -e 0` (Node's own start-up) measured in the same rounds.
// Rounds interleave the commands so that a busy machine slows all of them alike; each figure is the
// median over the rounds. CPU time is the children's user+system time (from /proc/self/stat).
// Usage: scripts/bench-startup [--runs N] [--bin-dir DIR] [--only mosctl,mps] [--flags --version,--help] [--json]
//   --bin-dir DIR  run DIR/<command> (e.g. the bin directory of an `npm install -g` prefix)
//                  instead of `node dist/src/cli/<tool>.js`; DIR1,DIR2 compares two installations
//                  in the same rounds (e.g. before and after a change)
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median } from './bench-util.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const argv = process.argv.slice(2)
const opt = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined }
const runs = Number(opt('runs') ?? 20)
const binDirs = opt('bin-dir')?.split(',')
const only = opt('only')?.split(',')
const flags = (opt('flags') ?? '--version,--help').split(',')
const json = argv.includes('--json')
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer')

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }
const tools = Object.entries(pkg.bin).filter(([name]) => only === undefined || only.includes(name))

interface Cmd { label: string, file: string, args: string[] }
const cmds: Cmd[] = [{ label: 'node -e 0', file: process.execPath, args: ['-e', '0'] }]
for (const [name, file] of tools) {
  for (const flag of flags) {
    if (binDirs === undefined) cmds.push({ label: `${name} ${flag}`, file: process.execPath, args: [join(ROOT, file), flag] })
    else for (const d of binDirs) cmds.push({ label: `${name} ${flag}${binDirs.length > 1 ? ` (${d})` : ''}`, file: join(d, name), args: [flag] })
  }
}

const TICK_MS = 10 // USER_HZ is 100 on Linux
/** User+system time of this process's waited-for children so far, in ms. */
function childrenCpuMs (): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // f[0] is field 3 (state)
  return (Number(f[13]) + Number(f[14])) * TICK_MS // cutime, cstime (fields 16, 17)
}

const wall = new Map<string, number[]>(cmds.map(c => [c.label, []]))
const cpu = new Map<string, number>(cmds.map(c => [c.label, 0]))
for (let r = 0; r < runs; r++) {
  // rotate the order each round so no command always runs first after a pause
  for (let k = 0; k < cmds.length; k++) {
    const c = cmds[(k + r) % cmds.length]
    const c0 = childrenCpuMs()
    const t0 = process.hrtime.bigint()
    const res = spawnSync(c.file, c.args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBUG: '' } })
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (res.status !== 0) throw new Error(`${c.label}: exit ${res.status}: ${String(res.stderr).trim()}`)
    wall.get(c.label)!.push(ms)
    cpu.set(c.label, cpu.get(c.label)! + childrenCpuMs() - c0)
  }
}

const base = median(wall.get('node -e 0')!)
const baseCpu = cpu.get('node -e 0')! / runs
const rows = cmds.map(c => {
  const w = median(wall.get(c.label)!)
  const u = cpu.get(c.label)! / runs
  return { command: c.label, medianMs: w, ratio: w / base, cpuMs: u, cpuRatio: u / baseCpu }
})
if (json) {
  console.log(JSON.stringify({ runs, binDirs, rows }, null, 2))
} else {
  console.log(`# ${runs} interleaved rounds; ${binDirs !== undefined ? `commands from ${binDirs.join(' and ')}` : 'node dist/src/cli/<tool>.js'}; Node ${process.version}`)
  console.log('| command | median wall ms | ÷ node -e 0 | CPU ms/run | ÷ node -e 0 |')
  console.log('|---|---|---|---|---|')
  for (const r of rows) console.log(`| ${r.command} | ${r.medianMs.toFixed(1)} | ${r.ratio.toFixed(2)} | ${r.cpuMs.toFixed(1)} | ${r.cpuRatio.toFixed(2)} |`)
  for (const d of binDirs ?? ['']) {
    const tl = rows.filter(r => r.command !== 'node -e 0' && !r.command.startsWith('hpcd ') && r.command.includes(d))
    console.log(`tools other than hpcd${d !== '' ? ` in ${d}` : ''}: median of the ratios ${median(tl.map(r => r.ratio)).toFixed(2)} (wall), ${median(tl.map(r => r.cpuRatio)).toFixed(2)} (CPU)`)
  }
}
