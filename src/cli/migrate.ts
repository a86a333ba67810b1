#!/usr/bin/env node
// migrate: ask for a process to be moved to a node, home, or wherever the balancer prefers
// (openMosix migrate(1), docs/tools.md The originals), by writing proc/<pid>/goto in the hpcfs tree.
// MOSIX's rule decides who may: whoever may kill a process may migrate it.
import debug from '../util/log.js'
import { CliError, UsageError, openTree, parseNodeId, runTool, type Tree } from './common.js'
import { checkMayMigrate, parsePid, requireNode, sleep } from './proc-common.js'

const log = debug('hpcfs:migrate')

const USAGE = `Usage: migrate PID {openMosix-ID|home|balance} [--wait [SECONDS]]

  openMosix-ID   move the process to that node (this node's own id means home)
  home           bring the process back to its home node (this node)
  balance        let the load balancer choose (hpcd may refuse it)
  --wait [S]     wait until proc/PID/where shows the target (home = 0); default 30 s

Writes the target to proc/PID/goto, then watches proc/PID/where: a refused move prints the
reason (proc/PID/error) and exits 1, at once, with or without --wait. Without --wait it returns
when the process has arrived, or after 5 s with the move still going on in the background.
Root may migrate any process; others only processes whose real or effective uid is theirs.
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

const DEFAULT_WAIT_S = 30
/** Without --wait: how long migrate waits for the move to succeed or be refused before leaving it to the background. */
const DECIDE_S = 5
const POLL_MS = 100

interface Args {
  pid: number
  target: number | 'home' | 'balance'
  waitS?: number
}

function parseArgs (argv: string[]): Args {
  const pos: string[] = []
  let waitS: number | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const m = /^--wait(?:=(.*))?$/.exec(a)
    if (m !== null || a === '-w') {
      let v = m?.[1]
      // `--wait 10`: a number after --wait once PID and target are known is the timeout.
      if (v === undefined && pos.length >= 2 && i + 1 < argv.length && /^\d+(\.\d+)?$/.test(argv[i + 1])) v = argv[++i]
      if (v === undefined) waitS = DEFAULT_WAIT_S
      else if (/^\d+(\.\d+)?$/.test(v) && Number(v) > 0) waitS = Number(v)
      else throw new UsageError(`bad --wait value "${v}" (expected seconds > 0)`)
    } else if (a.startsWith('-') && a !== '-') {
      throw new UsageError(`unknown option "${a}"`)
    } else {
      pos.push(a)
    }
  }
  if (pos.length < 2) throw new UsageError(pos.length === 0 ? 'missing PID and target' : 'missing target (node id, home or balance)')
  if (pos.length > 2) throw new UsageError(`too many arguments: ${pos.slice(2).join(' ')}`)
  const pid = parsePid(pos[0])
  const t = pos[1]
  const target = t === 'home' ? 'home' : t === 'balance' ? 'balance' : parseNodeId(t, 'openMosix-ID')
  if (target === 'balance' && waitS !== undefined) throw new UsageError('--wait cannot be used with balance (the target is not known in advance)')
  return { pid, target, waitS }
}

/**
 * After the goto, until the outcome is known: `where` reads the target = done. hpcd marks the
 * process `migrating` while it writes the goto when a move starts, and when the move fails puts
 * `where` back and the reason into proc/PID/error (emptied when a move starts): a reason there =
 * refused. For balance (no target known), `where` changed = moved; not moving right after the
 * write = the balancer keeps it where it is.
 */
async function outcome (tree: Tree, args: Args, before: string, want: string | undefined, waitS: number, dest: string): Promise<number> {
  const where = `proc/${args.pid}/where`
  const deadline = Date.now() + waitS * 1000
  let last = ''
  let sawMoving = false
  for (let polls = 0; ; polls++) {
    try {
      last = tree.read(where).trim()
    } catch (err) {
      last = ''
      log('poll: %s', (err as Error).message)
    }
    if (last === 'migrating') sawMoving = true
    else if (last !== '') {
      if (want !== undefined && last === want) return 0
      if (want === undefined && (last !== before || (!sawMoving && polls === 0))) return 0
      let reason = ''
      if (want !== undefined || sawMoving) {
        try { reason = tree.read(`proc/${args.pid}/error`).trim() } catch {}
      }
      if (reason !== '') throw new CliError(`process ${args.pid} was not moved ${dest}: ${reason} (where: ${last})`)
    }
    try {
      process.kill(args.pid, 0)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') throw new CliError(`process ${args.pid} ended before reaching ${dest.replace(/^to /, '')}`)
    }
    if (Date.now() >= deadline) break
    await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())))
  }
  if (args.waitS === undefined) {
    log('no outcome after %d s: the move goes on in the background', waitS)
    return 0
  }
  throw new CliError(`process ${args.pid} did not reach ${dest.replace(/^to /, '')} within ${args.waitS} s ` +
    `(where: ${last === '' ? 'unreadable' : last})`)
}

async function main (argv: string[]): Promise<number> {
  const args = parseArgs(argv)
  const tree = openTree('migrate')
  checkMayMigrate(args.pid)
  let target = args.target
  if (typeof target === 'number') {
    if (target === tree.myId()) target = 'home'
    else requireNode(tree, target)
  }
  if (!tree.isDir(`proc/${args.pid}`)) {
    throw new CliError(`process ${args.pid} is not in ${tree.path('proc')} (is it a local process? does this hpcd serve proc/?)`)
  }
  let before = ''
  try { before = tree.read(`proc/${args.pid}/where`).trim() } catch {}
  const value = target === 'home' ? '0' : String(target)
  tree.write(`proc/${args.pid}/goto`, value)
  const want = target === 'balance' ? undefined : value
  const dest = target === 'home' ? 'home' : target === 'balance' ? 'by the balancer' : `to node ${target}`
  return await outcome(tree, args, before, want, args.waitS ?? DECIDE_S, dest)
}

await runTool('migrate', USAGE, main)
