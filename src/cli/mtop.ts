#!/usr/bin/env node
// mtop: top with a NODE column (openMosix mtop, docs/tools.md The originals): every process of this
// system, most CPU first, with where each process under cluster discipline runs and its CPU use
// there (ps.ts reads the rows). Interactive on a terminal (screen.ts), or batch frames for
// scripts and tests (-b, -n N; also when stdout is not a terminal).
import { readFile, readdir } from 'node:fs/promises'
import debug from '../util/log.js'
import { UsageError, describeFsError, openTree, runTool, type Tree } from './common.js'
import { allPids, sleep } from './proc-common.js'
import { hostContext, listDisciplined, memPercent, readRows } from './ps.js'
import { applyTopKey, renderTop, type TopRow, type TopState } from './mtop-render.js'
import { runScreen } from './screen.js'
import { CLK_TCK } from '../util/procfs.js'

const log = debug('hpcfs:mtop')

/** The options: one place, printed by --help (and the source of the man page). */
const USAGE = `Usage: mtop [-d SECONDS] [-n FRAMES] [-b] [-i] [-c] [-m] [-s] [-q]
Every process of this system, most CPU first, with the node each one runs on (NODE: 0 = here,
N = migrated to node N, mig = moving). CPU and memory of a migrated process are measured where it
runs. openMosix's spellings without a dash work too: mtop d 2 c i.
  -d SECONDS   time between frames (default 5; -q: 0.5)
  -n FRAMES    stop after that many frames
  -b           batch: plain frames one after the other, for scripts (also when standard output is
               not a terminal)
  -i           hide idle processes (no CPU used in the last interval)
  -c           full command lines instead of program names
  -m           only the processes under cluster discipline
  -s           secure: keys other than q are ignored
Keys: q quit, i idle, c command lines, m cluster processes only.
Columns: PID USER NODE VIRT RES (KiB) S %CPU (of one CPU, last interval) %MEM TIME COMMAND.
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

const DEFAULT_DELAY_S = 5
const QUICK_DELAY_S = 0.5
/** The first frame's %CPU is measured over this long (or the delay, if shorter). */
const FIRST_MS = 500

interface Options {
  delayS: number
  frames?: number
  batch: boolean
  state: TopState
}

function parseArgs (argv: string[]): Options {
  const state: TopState = {
    clock: '', myId: 0, nodesUp: 0, nodesTotal: 0, myLoad: null, clusterLoad: null, rows: [],
    hideIdle: false, fullCommand: false, onlyCluster: false, secure: false
  }
  let delayS = DEFAULT_DELAY_S
  let frames: number | undefined
  let batch = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-' || a === '--') continue
    if (a.startsWith('--')) throw new UsageError(`unknown option "${a}"`)
    const letters = a.replace(/^-/, '')
    for (let k = 0; k < letters.length; k++) {
      const c = letters[k]
      if (c === 'd' || c === 'n') {
        const v = letters.slice(k + 1) !== '' ? letters.slice(k + 1) : argv[++i]
        if (v === undefined) throw new UsageError(`${c} needs a value`)
        if (c === 'd') {
          if (!/^\d+(\.\d+)?$/.test(v) || Number(v) <= 0) throw new UsageError(`bad delay "${v}" (expected seconds > 0)`)
          delayS = Number(v)
        } else {
          if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`bad frame count "${v}" (expected a number >= 1)`)
          frames = Number(v)
        }
        break
      }
      if (c === 'q') delayS = QUICK_DELAY_S
      else if (c === 'b') batch = true
      else if (c === 'i') state.hideIdle = true
      else if (c === 'c') state.fullCommand = true
      else if (c === 'm') state.onlyCluster = true
      else if (c === 's') state.secure = true
      else if (c === 'S') throw new UsageError('S (cumulative time of dead children) is not supported')
      else throw new UsageError(`unknown option "${a}"`)
    }
  }
  return { delayS, frames, batch, state }
}

async function num (path: string): Promise<number | null> {
  try {
    const s = (await readFile(path, 'utf8')).trim()
    return /^-?\d+$/.test(s) ? Number(s) : null
  } catch {
    return null
  }
}

/** Ticks per pid at the previous sample, and when. */
interface Previous { at: number, ticks: Map<number, number> }

/** One sample of the processes and the cluster; CPU shares against `prev` (lifetime when new). */
async function sample (tree: Tree, s: TopState, prev: Previous): Promise<{ state: TopState, prev: Previous }> {
  const at = Date.now()
  const now = new Date(at)
  const clock = [now.getHours(), now.getMinutes(), now.getSeconds()].map(n => String(n).padStart(2, '0')).join(':')
  let ids: number[]
  try {
    ids = (await readdir(tree.path('nodes'))).filter(n => /^\d+$/.test(n)).map(Number)
  } catch (err) {
    log('sample: %s', (err as Error).message)
    return { state: { ...s, clock, rows: [], error: describeFsError(err, `cannot list ${tree.path('nodes')} (hpcd stopped?)`) }, prev }
  }
  const [myId, loads, statuses] = await Promise.all([
    num(tree.path('admin/mospe')),
    Promise.all(ids.map(async id => await num(tree.path(`nodes/${id}/load`)))),
    Promise.all(ids.map(async id => await num(tree.path(`nodes/${id}/status`))))
  ])
  const upIdx = ids.map((_, i) => i).filter(i => ((statuses[i] ?? 0) & 2) !== 0 && loads[i] !== null && (loads[i] as number) >= 0)
  const listed = new Set(await listDisciplined(tree))
  const rows = await readRows(tree, allPids(), listed)
  const ctx = hostContext(tree)
  const dt = (at - prev.at) / 1000
  const ticks = new Map<number, number>()
  const top: TopRow[] = rows.map(r => {
    ticks.set(r.pid, r.ticks)
    const before = prev.ticks.get(r.pid)
    const age = ctx.uptime - r.startTicks / CLK_TCK
    const cpu = before !== undefined && dt > 0
      ? Math.max(0, (r.ticks - before) / CLK_TCK / dt * 100)
      : age > 0 ? r.ticks / CLK_TCK / age * 100 : 0
    return { ...r, cpu: Math.min(cpu, 9999), mem: memPercent(r, ctx) }
  })
  const me = myId ?? 0
  const meIdx = ids.indexOf(me)
  return {
    state: {
      ...s,
      clock,
      myId: me,
      nodesTotal: ids.length,
      nodesUp: upIdx.length,
      myLoad: meIdx >= 0 ? loads[meIdx] : null,
      clusterLoad: upIdx.length > 0 ? upIdx.reduce((sum, i) => sum + (loads[i] as number), 0) : null,
      rows: top,
      error: undefined
    },
    prev: { at, ticks }
  }
}

async function main (argv: string[]): Promise<number> {
  const o = parseArgs(argv)
  const tree = openTree('mtop')
  if (!o.batch && !process.stdout.isTTY) {
    log('standard output is not a terminal: batch mode')
    o.batch = true
  }
  // A first sample, so that the first frame's %CPU covers a short interval, as top does.
  let { state, prev } = await sample(tree, o.state, { at: 0, ticks: new Map() })
  await sleep(Math.min(FIRST_MS, o.delayS * 1000))
  ;({ state, prev } = await sample(tree, state, prev))
  if (o.batch) {
    const width = process.stdout.isTTY ? process.stdout.columns : 0
    for (let frame = 1; ; frame++) {
      process.stdout.write((frame > 1 ? '\n' : '') + renderTop(state, width).join('\n') + '\n')
      if (o.frames !== undefined && frame >= o.frames) return 0
      await sleep(o.delayS * 1000)
      ;({ state, prev } = await sample(tree, state, prev))
    }
  }
  return await runScreen<TopState>({
    tool: 'mtop',
    root: tree.root,
    intervalMs: o.delayS * 1000,
    initial: state,
    sample: async s => {
      const r = await sample(tree, s, prev)
      prev = r.prev
      return r.state
    },
    // the keys' toggles stay; the data is the sample's
    merge: (s, next) => ({ ...next, hideIdle: s.hideIdle, fullCommand: s.fullCommand, onlyCluster: s.onlyCluster, secure: s.secure }),
    render: (s, c, r) => renderTop(s, c, r),
    key: applyTopKey,
    stalled: (s, secs) => ({ ...s, error: `the tree at ${tree.root} has not answered for ${secs} s` }),
    frames: o.frames,
    sampleAtStart: false
  })
}

await runTool('mtop', USAGE, main)
process.exit(process.exitCode ?? 0)
