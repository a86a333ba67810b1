#!/usr/bin/env node
// mosmon: live view of every node's load (or speed, memory, utilisation) as bars, reading
// nodes/*/ once a second, like mosmon(1) of openmosix-tools (docs/tools.md, The originals).
// The screen is drawn by renderFrame (mosmon-render.ts); the terminal is driven by screen.ts
// (alternate screen, raw keys, resize, the terminal restored on every way out).
import { access, readdir, readFile } from 'node:fs/promises'
import debug from '../util/log.js'
import { CliError, UsageError, describeFsError, isTree, resolveRoot, runTool, Tree } from './common.js'
import { applyKey, renderFrame, type Mode, type MonState, type NodeSample } from './mosmon-render.js'
import { runScreen } from './screen.js'

const log = debug('hpcfs:mosmon')

const USAGE = `Usage: mosmon [-l|-L|-s|-m|-r|-u] [-t] [-d] [--once] [-h]
Shows every node of the cluster as a bar, refreshed each second. Options and keys:
  l  load (default; 1.00 = one standard CPU fully busy)
  L  load on a logarithmic scale
  s  speed (10000 = Pentium III 1 GHz), with the CPU count of SMP nodes
  m  memory: used as a solid bar, free as "+" up to the total (MB)
  r  raw memory (free as Linux counts it)
  u  utilizability (%)
  t  toggle the total node count
  d  toggle showing dead (down) nodes
  q  quit (also Ctrl-C)
  --once  print one frame as plain text and exit (for scripts; no terminal needed)
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

const INTERVAL_MS = 1000

const MODE_FLAGS: Record<string, Mode> = { '-l': 'load', '-L': 'logload', '-s': 'speed', '-m': 'mem', '-r': 'rmem', '-u': 'util' }

function parseArgs (argv: string[]): { state: MonState, once: boolean } {
  const state: MonState = { mode: 'load', showTotal: false, showDead: false, myId: 0, nodes: [] }
  let once = false
  for (const a of argv) {
    if (a in MODE_FLAGS) state.mode = MODE_FLAGS[a]
    else if (a === '-t') state.showTotal = true
    else if (a === '-d') state.showDead = true
    else if (a === '--once') once = true
    else throw new UsageError(`unknown option "${a}"`)
  }
  return { state, once }
}

async function num (tree: Tree, rel: string): Promise<number> {
  try {
    const s = (await readFile(tree.path(rel), 'utf8')).trim()
    return /^-?\d+$/.test(s) ? Number(s) : NaN
  } catch {
    return NaN // transiently unreadable: shown as "?"
  }
}

const FIELDS = ['load', 'speed', 'cpus', 'mem', 'rmem', 'tmem', 'util', 'status'] as const

/**
 * Read nodes/*\/ into the state. Asynchronous, so that a tree that stops answering (a hung FUSE
 * mount) leaves the keys working; a vanished tree becomes an error line, not a crash.
 */
async function sample (tree: Tree, s: MonState): Promise<MonState> {
  try {
    await access(tree.path('admin/mospe'))
  } catch {
    return { ...s, nodes: [], error: `no hpcfs tree at ${tree.root} any more (hpcd stopped?)` }
  }
  let ids: number[]
  try {
    ids = (await readdir(tree.path('nodes'))).filter(n => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
  } catch (err) {
    log('sample: %s', (err as Error).message)
    return { ...s, nodes: [], error: describeFsError(err, `cannot list ${tree.path('nodes')}`) }
  }
  const nodes = await Promise.all(ids.map(async (id): Promise<NodeSample> => {
    const v = await Promise.all(FIELDS.map(async f => await num(tree, `nodes/${id}/${f}`)))
    const [load, speed, cpus, mem, rmem, tmem, util, status] = v
    return { id, load, speed, cpus, mem, rmem, tmem, util, status }
  }))
  const me = await num(tree, 'admin/mospe')
  return { ...s, nodes, myId: Number.isFinite(me) ? me : 0, error: undefined }
}

/** The interactive screen (src/cli/screen.ts); resolves with the exit code. */
async function interactive (tree: Tree, initial: MonState): Promise<number> {
  return await runScreen<MonState>({
    tool: 'mosmon',
    root: tree.root,
    intervalMs: INTERVAL_MS,
    initial,
    sample: async s => await sample(tree, s),
    // Keep the keys pressed meanwhile: only the data comes from the sample.
    merge: (s, next) => ({ ...s, nodes: next.nodes, myId: next.myId, error: next.error }),
    render: renderFrame,
    key: applyKey,
    stalled: (s, secs) => ({ ...s, error: `the tree at ${tree.root} has not answered for ${secs} s` })
  })
}

async function main (argv: string[]): Promise<number> {
  const { state, once } = parseArgs(argv)
  const root = resolveRoot()
  if (!isTree(root)) throw new CliError('This is NOT a openMosix system!')
  const tree = new Tree(root)
  if (once) {
    const s = await sample(tree, state)
    const lines = renderFrame(s, process.stdout.columns > 0 ? process.stdout.columns : 80, Math.max(10, s.nodes.length + 10))
    process.stdout.write(lines.join('\n') + '\n')
    return 0
  }
  if (!process.stdout.isTTY) throw new CliError('standard output is not a terminal (use --once for one plain frame)')
  return await interactive(tree, await sample(tree, state))
}

await runTool('mosmon', USAGE, main)
process.exit(process.exitCode ?? 0)
