#!/usr/bin/env node
// mps: ps with a NODE column (openMosix mps, spec proc-hpc.md §4.7). Lists the processes under
// cluster discipline (proc/ in the hpcfs tree), or the given pids, or with -a every process;
// NODE is proc/<pid>/where (0 = at home).
import debug from '../util/log.js'
import { UsageError, openTree, runTool, type Tree } from './common.js'
import { allPids, cpuTime, disciplinedPids, parsePid, readCommand, readProcStat, ttyName } from './proc-common.js'

const log = debug('hpcfs:mps')

const USAGE = `Usage: mps [-a] [PID...]

  (no argument)  the processes under cluster discipline (listed in proc/ of the tree)
  PID...         these processes
  -a (-A, -e)    every process of this system (NODE 0 for those not under cluster discipline)

Columns: PID, TTY, NODE (proc/PID/where: 0 = at home, N = running on node N, mig = moving,
-1 = unreadable), STAT (state letter), TIME (user+system CPU time here, M:SS), COMMAND.
Exit 1 when none of the given PIDs exists.
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc, else /mnt/hpc).`

const HEADER = '  PID TTY      NODE STAT     TIME COMMAND'

function nodeColumn (tree: Tree, pid: number, listed: Set<number>): string {
  // Not under cluster discipline: it runs here (and the real tree would say 0 as well).
  if (!listed.has(pid)) return '0'
  try {
    const w = tree.read(`proc/${pid}/where`).trim()
    if (w === 'migrating') return 'mig'
    if (/^-?\d+$/.test(w)) return w
    log('where of %d: %j', pid, w)
  } catch (err) {
    log('%s', (err as Error).message)
  }
  return '-1'
}

async function main (argv: string[]): Promise<number> {
  let all = false
  const pids: number[] = []
  for (const a of argv) {
    if (a === '--') continue
    if (/^-?(a|ax|A|e)$/.test(a)) all = true
    else if (a.startsWith('-')) throw new UsageError(`unknown option "${a}"`)
    else pids.push(parsePid(a))
  }
  if (all && pids.length > 0) throw new UsageError('-a and PIDs cannot be combined')
  const tree = openTree('mps')
  // A tree without proc/ (an older hpcd) has nothing under discipline: -a and PIDs still work;
  // the default listing fails with a clear error.
  const listed = new Set(tree.isDir('proc') || (!all && pids.length === 0) ? disciplinedPids(tree) : [])
  const which = all ? allPids() : pids.length > 0 ? [...new Set(pids)] : [...listed]
  const width = process.stdout.isTTY ? process.stdout.columns : undefined
  const lines = [HEADER]
  let found = 0
  for (const pid of which) {
    const st = readProcStat(pid)
    if (st === undefined) continue
    found++
    const line = `${String(pid).padStart(5)} ${ttyName(st.ttyNr).padEnd(8)} ${nodeColumn(tree, pid, listed).padStart(4)} ` +
      `${st.state.padEnd(4)} ${cpuTime(st.ticks).padStart(8)} ${readCommand(pid, st.comm)}`
    lines.push(width !== undefined && width > 0 ? line.slice(0, width) : line)
  }
  process.stdout.write(lines.map(l => l + '\n').join(''))
  return pids.length > 0 && found === 0 ? 1 : 0
}

await runTool('mps', USAGE, main)
