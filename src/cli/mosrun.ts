#!/usr/bin/env node
// mosrun: run a command under cluster discipline (openMosix mosrun(1), docs/tools.md The originals, with
// MOSIX's -N and -b). The command is a child that inherits stdin/stdout/stderr; mosrun sets its
// lock and target through proc/<pid>/ in the hpcfs tree, forwards signals and exits as it did.
//
// The child is started held: /bin/sh waits on a pipe (fd 3) before it execs the command. The lock
// is written while it waits, so the command never runs outside cluster discipline, and a refused
// write stops it before the command ever ran. goto is written after the exec (the held shell still
// has the pipe open, and a process with a pipe/socket to mosrun is not what should move).
//
// One program, several names (openMosix's wrappers): invoked as runon, runhome, nomig, cpujob,
// iojob, nodecay, slowdecay or fastdecay (the basename of argv[1]: a package "bin" link or a
// wrapper that keeps the name), it is mosrun with that wrapper's options (ALIASES below).
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, existsSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync, constants as fsc } from 'node:fs'
import { constants as osc } from 'node:os'
import { basename, delimiter, join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import debug from '../util/log.js'
import { CliError, UsageError, openTree, parseIntArg, parseNodeId, runTool, type Tree } from './common.js'
import { nodeUp, readProcStat, sleep } from './proc-common.js'

const log = debug('hpcfs:mosrun')

const USAGE = `Usage: mosrun [-h | -N ID | -ID | -j ID1-ID2,ID3,... | -b] [-F] [-l | -L | -k]
              [-c | -i | -s | -f | -n | [-t SECONDS] [-d PERMILLE]] [--] command [arg...]

 where to run
  -h             at home (this node), locked there unless -l
  -N ID, -ID     on node ID (fails if the node is unknown, down or blocked, or refuses the
                 command, e.g. because mosrun does not run in the node's namespace; unless -F)
  -j LIST        on a random up node of LIST (ids and ranges: 1-4,7); fails if none is up, unless -F
  -b             on the best node now: lowest load (per standard CPU) among up nodes
  -F             force: when the node is unavailable or refuses, run at home instead of failing
                 (without -F a move refused after the start stops the command: exit 1)
 automatic migration (proc/PID/lock)
  -L             locked: no automatic migration (default with -h, -N, -ID, -j, and with no
                 decay option)
  -l             unlocked: the balancer may move it (default with -b)
  -k             keep the current lock value
 decay of the process statistics (proc/PID/decay: cpujob, iojob, slow, fast, clear)
  -c CPU-bound, -i I/O-bound, -s slow decay, -f fast decay, -n no decay
  -d PERMILLE    its own decay: per mille of its CPU history kept each interval (0..1000),
                 instead of admin/slow-decay or fast-decay
  -t SECONDS     its own decay interval (1..3600), instead of admin/decay-interval

The same program as runon ID, runhome, nomig, cpujob, iojob, nodecay, slowdecay, fastdecay
(see "runon --help").

mosrun waits for the command, forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to
it and exits with its status (or dies of the same signal). Exit 2 = misuse, 1 = the tree refused
or the node is unavailable (the command did not run), 126/127 = command not executable / found.
--help prints this text. The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

/** Signals passed on to the command. */
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']

/** Options the original had that hpcfs has nothing behind. */
const UNSUPPORTED: Record<string, string> = {
  '-z': 'setting argv[0] is not supported',
  '-e': 'not supported by hpcfs',
  '-E': 'not supported by hpcfs',
  '-r': 'not supported by hpcfs',
  '-R': 'not supported by hpcfs'
}

const DECAY: Record<string, string> = { c: 'cpujob', i: 'iojob', s: 'slow', f: 'fast', n: 'clear' }

/** Tie margin for -b, in load units (100 = one standard CPU busy). */
const BEST_TIE = 5

type Where = { kind: 'none' } | { kind: 'home' } | { kind: 'node', id: number } | { kind: 'list', ids: number[] } | { kind: 'best' }

interface Options {
  where: Where
  force: boolean
  lock?: 'l' | 'L' | 'k'
  /** A hint word (-c -i -s -f -n); -d and -t are perMille and interval. */
  decay?: string
  perMille?: number
  interval?: number
  command: string[]
}

/** `1-4,7`: ids and ascending ranges, each 1..65535; duplicates dropped. */
function parseNodeList (s: string): number[] {
  if (s === '') throw new UsageError('empty node list for -j')
  const out = new Set<number>()
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part)
    if (m === null) throw new UsageError(`bad node list "${s}" (expected ids and ranges like 1-4,7)`)
    const lo = parseNodeId(m[1])
    const hi = m[2] !== undefined ? parseNodeId(m[2]) : lo
    if (hi < lo) throw new UsageError(`bad range "${part}" in node list (the first id must not be above the second)`)
    if (hi - lo > 65535) throw new UsageError(`range "${part}" too large`)
    for (let id = lo; id <= hi; id++) out.add(id)
  }
  return [...out]
}

function parseArgs (argv: string[]): Options | 'help' {
  const o: Options = { where: { kind: 'none' }, force: false, command: [] }
  const setWhere = (w: Where, opt: string): void => {
    if (o.where.kind !== 'none') throw new UsageError(`${opt}: only one of -h, -N, -ID, -j and -b may be given`)
    o.where = w
  }
  const setLock = (l: 'l' | 'L' | 'k'): void => {
    if (o.lock !== undefined && o.lock !== l) throw new UsageError('only one of -l, -L and -k may be given')
    o.lock = l
  }
  const setDecay = (d: string): void => {
    if (o.decay !== undefined && o.decay !== d) throw new UsageError('only one of -c, -i, -s, -f and -n may be given')
    if (o.perMille !== undefined || o.interval !== undefined) throw new UsageError('-t and -d do not go with -c, -i, -s, -f and -n')
    o.decay = d
  }
  let i = 0
  for (; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') { i++; break }
    if (a === '--help') return 'help'
    if (!a.startsWith('-') || a === '-') break
    if (a in UNSUPPORTED) throw new UsageError(`${a}: ${UNSUPPORTED[a]}`)
    let m: RegExpExecArray | null
    // the value of -N or -j: attached (-N3) or the next argument (-N 3)
    const value = (attached: string, what: string): string => {
      if (attached !== '') return attached
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs ${what}`)
      return argv[++i]
    }
    if ((m = /^-(\d+)$/.exec(a)) !== null) {
      setWhere({ kind: 'node', id: parseNodeId(m[1]) }, a)
    } else if ((m = /^-N(.*)$/.exec(a)) !== null) {
      setWhere({ kind: 'node', id: parseNodeId(value(m[1], 'a node id')) }, '-N')
    } else if ((m = /^-j(.*)$/.exec(a)) !== null) {
      setWhere({ kind: 'list', ids: parseNodeList(value(m[1], 'a node list')) }, '-j')
    } else if ((m = /^-([dt])(.*)$/.exec(a)) !== null) {
      if (o.decay !== undefined) throw new UsageError('-t and -d do not go with -c, -i, -s, -f and -n')
      if (m[1] === 'd') o.perMille = parseIntArg(value(m[2], 'a per-mille value 0..1000'), '-d per-mille', 0, 1000)
      else o.interval = parseIntArg(value(m[2], 'seconds 1..3600'), '-t interval', 1, 3600)
    } else if (/^-[hbFlLkcisfn]+$/.test(a)) {
      for (const c of a.slice(1)) {
        if (c === 'h') setWhere({ kind: 'home' }, '-h')
        else if (c === 'b') setWhere({ kind: 'best' }, '-b')
        else if (c === 'F') o.force = true
        else if (c === 'l' || c === 'L' || c === 'k') setLock(c)
        else setDecay(DECAY[c])
      }
    } else {
      throw new UsageError(`unknown option "${a}"`)
    }
  }
  o.command = argv.slice(i)
  if (o.command.length === 0) throw new UsageError('missing command')
  return o
}

/** The executable `cmd` names, as execvp would find it; CliError 127 / 126 when it cannot run. */
function resolveCommand (cmd: string, env: NodeJS.ProcessEnv = process.env): string {
  const usable = (p: string): 'ok' | 'missing' | 'noexec' => {
    try {
      if (!statSync(p).isFile()) return 'noexec'
      accessSync(p, fsc.X_OK)
      return 'ok'
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'missing' : 'noexec'
    }
  }
  if (cmd === '') throw new CliError('empty command name', 127)
  if (cmd.includes('/')) {
    const u = usable(cmd)
    if (u === 'missing') throw new CliError(`${cmd}: no such file`, 127)
    if (u === 'noexec') throw new CliError(`${cmd}: not an executable file (permission denied)`, 126)
    return cmd
  }
  let sawNoexec = false
  for (const dir of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    const p = join(dir === '' ? '.' : dir, cmd)
    const u = usable(p)
    if (u === 'ok') return p
    if (u === 'noexec' && existsSync(p)) sawNoexec = true
  }
  if (sawNoexec) throw new CliError(`${cmd}: not an executable file (permission denied)`, 126)
  throw new CliError(`${cmd}: command not found`, 127)
}

interface Plan {
  /** Node to write to goto after the start, or undefined to stay at home. */
  goto?: number
  /** Value for lock, or undefined to keep it. */
  lock?: 0 | 1
}

function readNum (tree: Tree, rel: string): number | undefined {
  try {
    return tree.readInt(rel)
  } catch {
    return undefined
  }
}

/** True when nodes/<id>/status has the block bit (16): the node refuses guests. */
function nodeBlocked (tree: Tree, id: number): boolean {
  try {
    return (tree.readInt(`nodes/${id}/status`) & 16) !== 0
  } catch {
    return false
  }
}

/** -b: the up node where one more process would add the least: load + 100 standard-CPU units / capacity. */
function pickBest (nodes: Array<{ id: number, load: number, speed: number, cpus: number }>, random = Math.random): number | undefined {
  const scored = nodes.filter(n => n.load >= 0).map(n => ({
    id: n.id,
    score: n.load + 100 * 10000 / (Math.max(1, n.speed) * Math.max(1, n.cpus))
  }))
  if (scored.length === 0) return undefined
  const min = Math.min(...scored.map(n => n.score))
  const near = scored.filter(n => n.score <= min + BEST_TIE)
  return near[Math.floor(random() * near.length)].id
}

/** Where the command goes and its lock, all checked before anything runs. */
function plan (tree: Tree, o: Options): Plan {
  const p: Plan = {}
  if (o.lock === 'l') p.lock = 0
  else if (o.lock === 'L') p.lock = 1
  else if (o.lock === undefined) {
    if (o.where.kind === 'home' || o.where.kind === 'node' || o.where.kind === 'list') p.lock = 1
    else if (o.where.kind === 'best') p.lock = 0
    else if (o.decay === undefined && o.perMille === undefined && o.interval === undefined) p.lock = 1
  }
  const w = o.where
  if (w.kind === 'none' || w.kind === 'home') return p
  const me = tree.myId()
  if (me === 0) {
    if (o.force) return p
    throw new CliError('this node is not configured (admin/mospe is 0; see setpe): cannot place the command on another node')
  }
  const homeAnyway = (why: string): Plan => {
    if (!o.force) throw new CliError(`${why} (use -F to run at home instead)`)
    process.stderr.write(`${tool}: ${why}: running at home (-F)\n`)
    return p
  }
  if (w.kind === 'node') {
    if (w.id === me) return p
    if (!tree.isDir(`nodes/${w.id}`)) return homeAnyway(`no node ${w.id} in the cluster`)
    if (!nodeUp(tree, w.id)) return homeAnyway(`node ${w.id} is down`)
    if (nodeBlocked(tree, w.id)) return homeAnyway(`node ${w.id} takes no guest processes (it is blocked)`)
    return { ...p, goto: w.id }
  }
  if (w.kind === 'list') {
    const up = w.ids.filter(id => tree.isDir(`nodes/${id}`) && nodeUp(tree, id) && (id === me || !nodeBlocked(tree, id)))
    log('-j: up among %j: %j', w.ids, up)
    if (up.length === 0) return homeAnyway(`none of the nodes ${w.ids.length > 8 ? 'listed' : w.ids.join(',')} is up`)
    const id = up[Math.floor(Math.random() * up.length)]
    return id === me ? p : { ...p, goto: id }
  }
  // best
  const nodes = tree.nodeIds().filter(id => nodeUp(tree, id) && (id === me || !nodeBlocked(tree, id))).map(id => ({
    id,
    load: readNum(tree, `nodes/${id}/load`) ?? -1,
    speed: readNum(tree, `nodes/${id}/speed`) ?? 10000,
    cpus: readNum(tree, `nodes/${id}/cpus`) ?? 1
  }))
  const id = pickBest(nodes)
  log('-b: %j -> %s', nodes, id)
  return id === undefined || id === me ? p : { ...p, goto: id }
}

/**
 * Test hook (documented in docs/tools-proc.md, for plain-directory trees only): the real tree has
 * proc/<pid>/ for every live local pid; a plain directory has not, so HPCFS_TEST_MKPROC=1 makes
 * mosrun create proc/<pid>/{lock,goto,where,nmigs,cantmove,decay} before it writes them.
 */
function testMkproc (tree: Tree, pid: number): void {
  if (process.env.HPCFS_TEST_MKPROC !== '1') return
  mkdirSync(tree.path(`proc/${pid}`), { recursive: true })
  // HPCFS_TEST_CANTMOVE: what proc/<pid>/cantmove says (the engine's reasons, one per line)
  const init: Record<string, string> = { lock: '0\n', goto: '', where: '0\n', nmigs: '0\n', cantmove: process.env.HPCFS_TEST_CANTMOVE ?? '', decay: 'slow\n' }
  for (const [f, v] of Object.entries(init)) {
    if (!existsSync(tree.path(`proc/${pid}/${f}`))) writeFileSync(tree.path(`proc/${pid}/${f}`), v)
  }
}

/**
 * The held child: /bin/sh blocks reading fd 3, then execs the command. Pipes and sockets above fd 2
 * that mosrun itself inherited are closed first: they would pin the job to its home node
 * (cantmove: "unnamed pipe"); regular files are kept (they travel with the process).
 */
const SHELL = existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh' // dash cannot close fds above 9
const GATE = 'read _ <&3 || exit 125; exec 3<&-; ' +
  'for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] 2>/dev/null && { [ -p "$f" ] || [ -S "$f" ]; } && eval "exec $n>&-"; done; ' +
  'exec "$@"'

/** True when we are in the terminal's foreground process group (the terminal signalled the child too). */
function inForeground (): boolean {
  const st = readProcStat('self')
  return st !== undefined && st.tpgid > 0 && st.tpgid === st.pgrp
}

/** Die of `sig` like the child did, so the shell sees it; 128+n when that is not possible. */
function reraise (sig: NodeJS.Signals): number {
  for (const s of FORWARDED) process.removeAllListeners(s)
  try {
    process.kill(process.pid, sig)
  } catch (err) {
    log('re-raise %s: %s', sig, (err as Error).message)
  }
  return 128 + (osc.signals[sig] ?? 0)
}

async function main (argv: string[]): Promise<number> {
  const o = parseArgs(argv)
  if (o === 'help') {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const tree = openTree(tool)
  if (!tree.isDir('proc')) throw new CliError(`${tree.path('proc')} is missing: this hpcd does not serve per-process files`)
  const p: Plan = plan(tree, o)
  resolveCommand(o.command[0])
  log('plan %j for %j', p, o.command)

  let child: ChildProcess | undefined
  let exited = false
  let refusal: string | undefined
  const onSignal = (sig: NodeJS.Signals): void => {
    if (child === undefined || exited) {
      // Nothing started yet (or already gone): die of it as the command would have.
      reraise(sig)
      return
    }
    if ((sig === 'SIGINT' || sig === 'SIGQUIT') && inForeground()) {
      log('%s from the terminal: the command has it already', sig)
      return
    }
    log('forward %s to %d', sig, child.pid)
    try {
      child.kill(sig)
    } catch (err) {
      log('forward %s: %s', sig, (err as Error).message)
    }
  }
  for (const s of FORWARDED) process.on(s, onSignal)

  child = spawn(SHELL, ['-c', GATE, 'mosrun', ...o.command], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] })
  const ended = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve, reject) => {
    child?.once('error', reject)
    child?.once('exit', (code, signal) => { exited = true; resolve({ code, signal }) })
  })
  const pid = child.pid
  if (pid === undefined) {
    await ended.catch(err => { throw new CliError(`cannot start /bin/sh: ${(err as Error).message}`) })
    throw new CliError('cannot start /bin/sh')
  }
  const gate = child.stdio[3] as (Readable & Writable) | null
  if (gate === null || gate === undefined) throw new CliError('internal error: no gate pipe')
  const gateClosed = new Promise<void>(resolve => {
    gate.on('error', () => resolve())
    gate.on('close', () => resolve())
    gate.on('end', () => resolve())
    gate.resume()
  })
  const heldCmdline = (() => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      return undefined
    }
  })()

  testMkproc(tree, pid)
  // An obstacle that the exec will not remove (its namespace, real-time scheduling): say so
  // before the command runs.
  if (p.goto !== undefined) {
    const obstacle = lastingObstacle(tree, pid)
    if (obstacle !== undefined) {
      const why = `cannot run the command on node ${p.goto}: ${obstacle}` +
        (obstacle.includes('namespace') ? ` (run ${tool} in the namespace of the hpcd that serves ${tree.root})` : '')
      if (!o.force) {
        child.kill('SIGKILL')
        await ended.catch(() => {})
        throw new CliError(`${why}; the command was not started (use -F to run it at home instead)`)
      }
      process.stderr.write(`${tool}: ${why}: running at home (-F)\n`)
      p.goto = undefined
    }
  }

  // Under discipline before the command runs.
  try {
    if (p.lock !== undefined) tree.write(`proc/${pid}/lock`, p.lock)
    else tree.write(`proc/${pid}/lock`, tree.read(`proc/${pid}/lock`).trim())
    if (o.decay !== undefined) {
      try {
        tree.write(`proc/${pid}/decay`, o.decay)
      } catch (err) {
        log('decay: %s', (err as Error).message)
      }
    }
    for (const hint of [o.perMille !== undefined ? `decay ${o.perMille}` : '', o.interval !== undefined ? `interval ${o.interval}` : '']) {
      if (hint === '') continue
      try {
        tree.write(`proc/${pid}/decay`, hint)
      } catch (err) {
        process.stderr.write(`${tool}: warning: ${(err as Error).message} (the command keeps the node's decay)\n`)
      }
    }
  } catch (err) {
    child.kill('SIGKILL')
    await ended.catch(() => {})
    throw err instanceof CliError ? new CliError(`${err.message}; the command was not started`) : err
  }
  gate.end('go\n')

  if (p.goto !== undefined) {
    // Wait until the shell has let go of the pipe and exec'd the command (bounded).
    await gateClosed
    const until = Date.now() + 1000
    while (!exited && Date.now() < until) {
      let now: string | undefined
      try {
        now = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      } catch {
        break
      }
      if (now !== heldCmdline) break
      await sleep(2)
    }
    if (!exited) {
      try {
        tree.write(`proc/${pid}/goto`, p.goto)
      } catch (err) {
        if (!o.force) {
          child.kill('SIGKILL')
          await ended.catch(() => {})
          throw new CliError(`${(err as Error).message}; the command was stopped`)
        }
        process.stderr.write(`${tool}: ${(err as Error).message}: running at home (-F)\n`)
      }
      const target = p.goto
      void settleMove(tree, pid, target, () => exited).then(reason => {
        if (reason === undefined || exited) return
        if (o.force) {
          process.stderr.write(`${tool}: node ${target} refused the command: ${reason}: running at home (-F)\n`)
          return
        }
        refusal = `node ${target} refused the command: ${reason}; the command was stopped (use -F to run it at home instead)`
        child?.kill('SIGKILL')
      })
    }
  }

  const r = await ended.catch(err => { throw new CliError(`cannot start /bin/sh: ${(err as Error).message}`) })
  log('child %d ended: %j', pid, r)
  if (refusal !== undefined) throw new CliError(refusal)
  if (r.signal !== null) return reraise(r.signal)
  return r.code ?? 1
}

/** Obstacles to a move that outlive an exec (the command inherits them from the held shell). */
const LASTING = /namespace|real-time scheduling/

/** The first lasting obstacle in proc/<pid>/cantmove (hpcd's engine checks the process), if any. */
function lastingObstacle (tree: Tree, pid: number): string | undefined {
  let reasons: string
  try {
    reasons = tree.read(`proc/${pid}/cantmove`)
  } catch (err) {
    log('cantmove: %s', (err as Error).message)
    return undefined
  }
  return reasons.split('\n').find(l => LASTING.test(l))
}

/** The executable a process runs (changes when it execs). */
function exeOf (pid: number): string {
  try { return readlinkSync(`/proc/${pid}/exe`) } catch { return '' }
}

/** How long a refused move waits for the command to exec (a wrapper) before the refusal counts. */
const EXEC_GRACE_MS = 1000
/** How long mosrun watches a move for a refusal (a big image may take a while to arrive). */
const SETTLE_MAX_MS = 120_000

/**
 * After the goto, watches proc/PID/where and error until the move succeeds or is refused; resolves
 * with the reason of a refusal, else undefined (arrived, gone, or a tree that does not say). A
 * command that starts through a wrapper (a shell script, a version-manager shim) cannot move
 * until it has exec'd the real program: when it execs after a refusal, the goto is written again;
 * a refusal counts once the command has not exec'd for EXEC_GRACE_MS.
 */
async function settleMove (tree: Tree, pid: number, target: number, gone: () => boolean): Promise<string | undefined> {
  let exe = exeOf(pid)
  let refusedAt = 0
  const end = Date.now() + SETTLE_MAX_MS
  while (!gone() && Date.now() < end) {
    await sleep(100)
    let where: string
    let error: string
    try {
      where = tree.read(`proc/${pid}/where`).trim()
      error = tree.read(`proc/${pid}/error`).trim()
    } catch {
      return undefined
    }
    if (where === String(target)) return undefined
    if (where === 'migrating' || error === '') { refusedAt = 0; continue }
    const now = exeOf(pid)
    if (now !== exe) {
      log('refused (%s), but it exec\'d %s: trying again', error, now)
      exe = now
      refusedAt = 0
      try { tree.write(`proc/${pid}/goto`, target) } catch (err) { return (err as Error).message }
      continue
    }
    if (refusedAt === 0) refusedAt = Date.now()
    else if (Date.now() - refusedAt >= EXEC_GRACE_MS) return error
  }
  return undefined
}

/**
 * openMosix's wrappers (docs/tools.md, The originals), each mosrun with fixed options: `usage` is its
 * --help, `args` turns its arguments into mosrun's (its own options first, then the command).
 */
interface Alias { usage: string, args: (argv: string[]) => string[] }

const HOME_OR_NODE = '[-h | -ID]'

function decayAlias (name: string, option: string, what: string): Alias {
  return {
    usage: `Usage: ${name} ${HOME_OR_NODE} command [arg...]
Runs the command ${what} (mosrun ${option}); -h at home, -ID on node ID.
The same program as mosrun: see "mosrun --help".`,
    args: argv => {
      const where = argv[0] === '-h' || /^-\d+$/.test(argv[0] ?? '') ? [argv[0]] : []
      return [option, ...where, ...commandOf(name, argv.slice(where.length))]
    }
  }
}

/** The command part of a wrapper's arguments: `--` is skipped, an option is misuse (-z: unsupported). */
function commandOf (name: string, argv: string[]): string[] {
  const rest = argv[0] === '--' ? argv.slice(1) : argv
  if (rest[0] === '-z') throw new UsageError(`-z: ${UNSUPPORTED['-z']}`)
  if (argv[0] !== '--' && rest[0]?.startsWith('-') === true) throw new UsageError(`unknown option "${rest[0]}" (${name} takes no options but those shown)`)
  return ['--', ...rest]
}

const ALIASES: Record<string, Alias> = {
  runon: {
    usage: `Usage: runon ID command [arg...]
Runs the command on node ID, locked there (mosrun -N ID): fails if the node is unknown, down or
refuses it. The same program as mosrun: see "mosrun --help".`,
    args: argv => {
      if (argv.length === 0) throw new UsageError('missing node id')
      return ['-N', String(parseNodeId(argv[0])), ...commandOf('runon', argv.slice(1))]
    }
  },
  runhome: {
    usage: `Usage: runhome command [arg...]
Runs the command at home, locked there (mosrun -h). The same program as mosrun: see "mosrun --help".`,
    args: argv => ['-h', ...commandOf('runhome', argv)]
  },
  nomig: {
    usage: `Usage: nomig command [arg...]
Runs the command with automatic migration off (mosrun -L). The same program as mosrun: see "mosrun --help".`,
    args: argv => ['-L', ...commandOf('nomig', argv)]
  },
  cpujob: decayAlias('cpujob', '-c', 'as CPU-bound'),
  iojob: decayAlias('iojob', '-i', 'as I/O-bound'),
  nodecay: decayAlias('nodecay', '-n', 'with no decay of its statistics'),
  slowdecay: decayAlias('slowdecay', '-s', 'with slow decay of its statistics'),
  fastdecay: decayAlias('fastdecay', '-f', 'with fast decay of its statistics')
}

/** The name this program was invoked as (a wrapper's, or mosrun). */
const invokedAs = basename(process.argv[1] ?? '').replace(/\.js$/, '')
const alias = Object.hasOwn(ALIASES, invokedAs) ? ALIASES[invokedAs] : undefined
const tool = alias !== undefined ? invokedAs : 'mosrun'

const argv = process.argv.slice(2)
if (alias !== undefined) {
  // A wrapper: --help and -H print its usage; its -h means home, as mosrun's.
  await runTool(tool, alias.usage, async () => await main(alias.args(argv)), argv[0] === '--help' || argv[0] === '-H' ? [argv[0]] : [])
} else {
  // runTool's -h means help, mosrun's -h means home: mosrun handles --help itself.
  await runTool('mosrun', USAGE, async () => await main(argv), [])
}
