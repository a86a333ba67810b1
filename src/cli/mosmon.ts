#!/usr/bin/env node
// mosmon: live view of every node's load (or speed, memory, utilisation) as bars, reading
// nodes/*/ once a second, like mosmon(1) of openmosix-tools (spec proc-hpc.md §4.6).
// The screen is drawn by renderFrame (mosmon-render.ts); this file is the terminal driver:
// alternate screen, hidden cursor, cursor home + overwrite lines + clear to end of line (no full
// clear per frame), raw keys, resize, and restoring the terminal on every way out.
import { access, readdir, readFile } from 'node:fs/promises'
import debug from '../util/log.js'
import { CliError, UsageError, describeFsError, isTree, resolveRoot, runTool, Tree } from './common.js'
import { applyKey, renderFrame, type Mode, type MonState, type NodeSample } from './mosmon-render.js'

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
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc, else /mnt/hpc).`

const ENTER = '\x1b[?1049h\x1b[?25l' // alternate screen, hide cursor
const LEAVE = '\x1b[?25h\x1b[?1049l' // show cursor, main screen
const INTERVAL_MS = 1000
const HUNG_EXIT_MS = 500
const LINE_GRACE_MS = 100

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

function size (): { cols: number, rows: number } {
  const cols = process.stdout.columns > 0 ? process.stdout.columns : 80
  const rows = process.stdout.rows > 0 ? process.stdout.rows : 24
  return { cols, rows }
}

/** The interactive loop; resolves with the exit code. */
function interactive (tree: Tree, initial: MonState): Promise<number> {
  return new Promise(resolve => {
    const out = process.stdout
    const stdin = process.stdin
    let state = initial
    let sampling: number | undefined // start time of the sample in flight
    let sampled: (() => void) | undefined // called when the sample in flight comes back
    let restored = false
    let timer: NodeJS.Timeout | undefined

    const draw = (): void => {
      const { cols, rows } = size()
      const lines = renderFrame(state, cols, rows)
      out.write('\x1b[H' + lines.map(l => l + '\x1b[K').join('\r\n') + '\x1b[J')
    }
    const restore = (): void => {
      if (restored) return
      restored = true
      if (timer !== undefined) clearInterval(timer)
      try {
        if (stdin.isTTY) stdin.setRawMode(false)
      } catch (err) {
        log('setRawMode(false): %s', (err as Error).message)
      }
      stdin.pause()
      out.write(LEAVE)
    }
    const finish = (code: number): void => {
      restore()
      for (const [sig, h] of handlers) process.off(sig, h)
      process.off('uncaughtException', onCrash)
      out.off('resize', draw)
      stdin.off('data', onKey)
      stdin.off('end', onEnd)
      if (sampling === undefined) return resolve(code)
      // A read still in flight holds a libuv thread; if the tree hangs, a normal exit would wait for
      // it forever (libuv joins its threads at exit). Give it a moment, then leave without waiting.
      const t = setTimeout(() => {
        process.stderr.write(`mosmon: the tree at ${tree.root} is not answering; exiting without waiting for it\n`)
        // The line is in the pty, but the reader on the master side may not have it yet: a proxy such
        // as script(1) stops reading 10 ms after its child dies. Give it a moment before vanishing.
        setTimeout(() => process.kill(process.pid, 'SIGKILL'), LINE_GRACE_MS)
      }, HUNG_EXIT_MS)
      sampled = () => { clearTimeout(t); resolve(code) }
    }
    const onKey = (chunk: Buffer | string): void => {
      for (const key of String(chunk)) {
        const next = applyKey(state, key)
        if (next === 'quit') return finish(key === '\x03' ? 130 : 0)
        state = next
      }
      draw()
    }
    const onEnd = (): void => finish(0)
    const onCrash = (err: Error): void => {
      restore()
      process.stderr.write(`mosmon: ${err.message}\n`)
      log('%O', err)
      process.exit(1)
    }
    const handlers: Array<[NodeJS.Signals, () => void]> = [
      ['SIGINT', () => finish(130)], ['SIGTERM', () => finish(143)], ['SIGHUP', () => finish(129)]
    ]

    for (const [sig, h] of handlers) process.on(sig, h)
    process.on('uncaughtException', onCrash)
    process.on('exit', restore)
    out.write(ENTER)
    if (stdin.isTTY) stdin.setRawMode(true)
    stdin.on('data', onKey)
    stdin.on('end', onEnd)
    stdin.resume()
    out.on('resize', draw) // node turns SIGWINCH into 'resize' on a TTY
    const tick = (): void => {
      if (sampling !== undefined) {
        // The previous sample has not come back: say so, keep the keys working.
        const secs = Math.round((Date.now() - sampling) / 1000)
        if (secs >= 2) { state = { ...state, error: `the tree at ${tree.root} has not answered for ${secs} s` }; draw() }
        return
      }
      sampling = Date.now()
      sample(tree, state).then(next => {
        sampling = undefined
        if (sampled !== undefined) return sampled()
        if (restored) return
        // Keep the keys pressed meanwhile: only the data comes from the sample.
        state = { ...state, nodes: next.nodes, myId: next.myId, error: next.error }
        draw()
      }, onCrash)
    }
    draw()
    tick()
    timer = setInterval(tick, INTERVAL_MS)
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
