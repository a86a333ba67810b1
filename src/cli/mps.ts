#!/usr/bin/env node
// mps: ps with a NODE column (openMosix mps, docs/tools.md The originals). Lists the processes under
// cluster discipline (proc/ in the hpcfs tree), or the given pids, or with -a / BSD `ax` every
// process; NODE is proc/<pid>/where (0 = at home). A migrated process is shown as it runs on its
// node (command line, state, memory; CPU time on every node), not as its hollow deputy (ps.ts).
import debug from '../util/log.js'
import { CliError, UsageError, openTree, runTool } from './common.js'
import { allPids, parsePid } from './proc-common.js'
import { HEADER_DEFAULT, HEADER_USER, hostContext, lineDefault, lineUser, listDisciplined, readRows, rowJson, type PsRow } from './ps.js'

const log = debug('hpcfs:mps')

/** The options: one place, printed by --help (and the source of the man page). */
const USAGE = `Usage: mps [-a|-A|-e] [a] [x] [u] [r] [w] [--json] [PID...]

 which processes
  (none)         the processes under cluster discipline (listed in proc/ of the tree)
  PID...         these processes
  -a, -A, -e     every process of this system
  a              BSD: the processes with a terminal, of every user (with x: every process)
  x              BSD: also the processes without a terminal (alone: your own processes)
  r              only the running ones (state R where they run)
 how
  u              user-oriented format: USER PID %CPU %MEM VSZ RSS TTY NODE STAT START TIME COMMAND
  w              wide: do not cut lines to the terminal's width
  --json         a JSON array, one object per process (fields in docs/tools-proc.md)
BSD letters may be combined and given with or without a dash (aux, -aux, ax, u).

Columns: PID, TTY, NODE (proc/PID/where: 0 = at home, N = running on node N, mig = moving,
-1 = unreadable), STAT (state letter, where it runs), TIME (CPU time on every node it ran on,
M:SS), COMMAND (its command line, where it runs). Processes not under cluster discipline: NODE 0.
Exit 1 when none of the given PIDs exists.
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

interface Options {
  select: 'discipline' | 'pids' | 'all' | 'tty' | 'mine'
  running: boolean
  format: 'default' | 'user' | 'json'
  wide: boolean
  pids: number[]
}

function parseArgs (argv: string[]): Options {
  let every = false
  let bsdA = false
  let bsdX = false
  let running = false
  let user = false
  let json = false
  let wide = false
  const pids: number[] = []
  for (const a of argv) {
    if (a === '--') continue
    if (a === '--json') json = true
    else if (a === '-a' || a === '-A' || a === '-e') every = true
    else if (/^-?[axurw]+$/.test(a) && !/^\d/.test(a)) {
      for (const c of a.replace(/^-/, '')) {
        if (c === 'a') bsdA = true
        else if (c === 'x') bsdX = true
        else if (c === 'u') user = true
        else if (c === 'r') running = true
        else wide = true
      }
    } else if (a.startsWith('-')) throw new UsageError(`unknown option "${a}"`)
    else pids.push(parsePid(a))
  }
  if (json && user) throw new UsageError('u and --json cannot be combined')
  const all = every || (bsdA && bsdX)
  if ((all || bsdA || bsdX) && pids.length > 0) throw new UsageError('-a, a and x cannot be combined with PIDs')
  const select = pids.length > 0 ? 'pids' : all ? 'all' : bsdA ? 'tty' : bsdX ? 'mine' : 'discipline'
  return { select, running, format: json ? 'json' : user ? 'user' : 'default', wide, pids: [...new Set(pids)] }
}

async function main (argv: string[]): Promise<number> {
  const o = parseArgs(argv)
  const tree = openTree('mps')
  // A tree without proc/ (an older hpcd) has nothing under discipline: -a and PIDs still work;
  // the default listing fails with a clear error.
  if (o.select === 'discipline' && !tree.isDir('proc')) {
    throw new CliError(`cannot list ${tree.path('proc')}: no such directory (does this hpcd serve proc/?)`)
  }
  const listed = new Set(await listDisciplined(tree))
  const which = o.select === 'pids' ? o.pids : o.select === 'discipline' ? [...listed] : allPids()
  let rows = await readRows(tree, which, listed)
  const me = process.geteuid?.() ?? 0
  if (o.select === 'tty') rows = rows.filter(r => r.tty !== '?')
  if (o.select === 'mine') rows = rows.filter(r => r.uid === me)
  if (o.running) rows = rows.filter(r => r.state === 'R')
  log('%d rows of %d pids', rows.length, which.length)
  const ctx = hostContext(tree)
  if (o.format === 'json') {
    process.stdout.write(JSON.stringify(rows.map(r => rowJson(r, ctx)), null, 2) + '\n')
  } else {
    const width = process.stdout.isTTY && !o.wide ? process.stdout.columns : undefined
    const line = o.format === 'user' ? (r: PsRow) => lineUser(r, ctx) : lineDefault
    const lines = [o.format === 'user' ? HEADER_USER : HEADER_DEFAULT, ...rows.map(line)]
    process.stdout.write(lines.map(l => (width !== undefined && width > 0 ? l.slice(0, width) : l) + '\n').join(''))
  }
  return o.select === 'pids' && rows.length === 0 ? 1 : 0
}

await runTool('mps', USAGE, main)
