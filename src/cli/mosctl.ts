#!/usr/bin/env node
// mosctl: the openMosix node-control tool, working through the hpcfs tree (admin/*, nodes/<id>/*).
// Subcommands and meanings follow mosctl(1) of openmosix-tools (docs/tools.md, The originals).
import { readdirSync } from 'node:fs'
import { isIP } from 'node:net'
import debug from '../util/log.js'
import { CliError, UsageError, addressesOf, openTree, parseIntArg, parseNodeId, runTool, type Tree } from './common.js'
import { expandMap, parseMap, MapError, type MapNode } from '../map/map.js'
import { poll } from '../util/poll.js'
import { SPEED } from '../config.js'

const log = debug('hpcfs:mosctl')

const USAGE = `Usage: mosctl {stay|nostay|lstay|nolstay|block|noblock|quiet|noquiet|expel|bring|getdecay}
       mosctl whois [openMosix-ID|IP-address|hostname]
       mosctl {getload|getspeed|status|isup|getmem|getfree|getutil} [openMosix-ID]
       mosctl setspeed numeric-value            (${SPEED.min}..${SPEED.max}; ${SPEED.standard} = Pentium III 1 GHz)
       mosctl setdecay interval slow fast       (seconds >= 1; per-mille 0..1000 kept per interval)

  stay / nostay      no automatic migration away from this node / allow it again
  lstay / nolstay    local processes stay (guests may leave) / local processes may leave
  block / noblock    refuse / accept guest processes
  quiet / noquiet    stop / resume sending load information
  expel              send guest processes home (also sets block)
  bring              bring this node's migrated processes home (also sets lstay)
  getload, getspeed, getmem (logical free bytes), getfree (physical free bytes), getutil (%)
                     print the value for this node or node ID
  isup [ID]          print "yes" when the node is up, else "no"
  status [ID] [--json]
                     "Node #N is up" (down, not configured), then its status bits, settings and
                     values; --json: one JSON object (fields in docs/tools.md)
  whois              "This is openMosix #N"; with an argument, map id <-> address
  getdecay           show the decay interval and the slow/fast decay rates
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

/** Flag subcommands: file in admin/ and the value written. `-stay` etc. are the man page's aliases. */
const FLAGS: Record<string, [file: string, value: 0 | 1]> = {
  stay: ['stay', 1],
  nostay: ['stay', 0],
  '-stay': ['stay', 0],
  lstay: ['lstay', 1],
  nolstay: ['lstay', 0],
  '-lstay': ['lstay', 0],
  block: ['block', 1],
  noblock: ['block', 0],
  '-block': ['block', 0],
  quiet: ['quiet', 1],
  noquiet: ['quiet', 0],
  '-quiet': ['quiet', 0]
}

/**
 * expel / bring: the implied flag is set first, then the trigger file is written; like mosctl(1),
 * the command then waits until all guests are gone (remote/ is empty) / all of this node's
 * processes are home (every proc/<pid>/where reads 0). Interrupt it to stop waiting (the
 * evacuation goes on in the daemon).
 */
interface Evacuation {
  implies: string
  trigger: string
  waitUntilDone: (tree: Tree) => Promise<void>
}

const names = (tree: Tree, dir: string): string[] => { try { return readdirSync(tree.path(dir)).filter(n => /^\d+$/.test(n)) } catch { return [] } }

async function pollUntil (done: () => boolean): Promise<void> {
  await poll('the evacuation', done, { timeoutMs: Infinity })
}

const EVACUATIONS: Record<string, Evacuation> = {
  expel: { implies: 'block', trigger: 'expel', waitUntilDone: async tree => { await pollUntil(() => names(tree, 'remote').length === 0) } },
  bring: {
    implies: 'lstay',
    trigger: 'bring',
    waitUntilDone: async tree => {
      await pollUntil(() => names(tree, 'proc').every(pid => { try { return tree.read(`proc/${pid}/where`).trim() === '0' } catch { return true } }))
    }
  }
}

/** mosctl(1) subcommands with nothing behind them in hpcfs. */
const UNSUPPORTED: Record<string, string> = {
  nomfs: 'there is no MFS', mfs: 'there is no MFS', gettune: 'there is no overheads table',
  getyard: 'loads are normalised to speed 10000', setyard: 'loads are normalised to speed 10000'
}

/** Per-node value subcommands: the file in nodes/<id>/. */
const GETTERS: Record<string, string> = {
  getload: 'load',
  getspeed: 'speed',
  getmem: 'mem',
  getfree: 'rmem',
  getutil: 'util'
}

const STATUS_BITS: Array<[bit: number, name: string]> = [
  [1, 'configured'], [2, 'up'], [4, 'stay'], [8, 'lstay'], [16, 'block'], [32, 'quiet']
]

function noExtra (args: string[], max: number, cmd: string): void {
  if (args.length > max) throw new UsageError(`too many arguments for ${cmd}: ${args.slice(max).join(' ')}`)
}

/** The node a get*, status or isup command is about: the argument, or this node (admin/mospe). */
function targetNode (tree: Tree, arg: string | undefined): number {
  if (arg !== undefined) {
    const id = parseNodeId(arg, 'openMosix-ID')
    if (!tree.isDir(`nodes/${id}`)) throw new CliError(`no node ${id} in the cluster (no ${tree.path(`nodes/${id}`)})`)
    return id
  }
  const me = tree.myId()
  if (me === 0) throw new CliError('this node is not configured (admin/mospe is 0; see setpe)')
  if (!tree.isDir(`nodes/${me}`)) throw new CliError(`this node (#${me}) has no ${tree.path(`nodes/${me}`)}`)
  return me
}

/**
 * `mosctl status [ID]` as data; also its --json form (field names documented in docs/tools.md,
 * stable). Values that cannot be read, and those of a down node, are null.
 */
interface NodeStatus {
  id: number
  self: boolean
  configured: boolean
  up: boolean
  status: number | null
  flags: string[]
  stay: boolean | null
  lstay: boolean | null
  block: boolean | null
  quiet: boolean | null
  load: number | null
  speed: number | null
  cpus: number | null
  util: number | null
  mem: number | null
  rmem: number | null
  tmem: number | null
  addr: string | null
  ageMs: number | null
}

function nodeStatus (tree: Tree, id: number, me: number): NodeStatus {
  const self = id === me && id !== 0
  const none: NodeStatus = {
    id, self, configured: false, up: false, status: null, flags: [], stay: null, lstay: null, block: null, quiet: null,
    load: null, speed: null, cpus: null, util: null, mem: null, rmem: null, tmem: null, addr: null, ageMs: null
  }
  if (id === 0 || !tree.isDir(`nodes/${id}`)) return none
  const num = (f: string): number | null => {
    try {
      const v = tree.readInt(`nodes/${id}/${f}`)
      return v === -101 ? null : v
    } catch (err) {
      log('status: %s', (err as Error).message)
      return null
    }
  }
  const status = num('status')
  const bits = status ?? 0
  // For this node the admin/ files are the settings themselves; other nodes' come from status bits.
  const adminFile: Record<number, string> = { 4: 'stay', 8: 'lstay', 16: 'block', 32: 'quiet' }
  const setting = (b: number): boolean | null => {
    if (self && tree.exists(`admin/${adminFile[b]}`)) {
      try {
        return tree.readInt(`admin/${adminFile[b]}`) !== 0
      } catch (err) {
        log('status: %s', (err as Error).message)
      }
    }
    return status === null ? null : (bits & b) !== 0
  }
  const up = (bits & 2) !== 0
  let addr: string | null = null
  try { addr = tree.read(`nodes/${id}/addr`).trim() || null } catch {}
  const live = (v: number | null): number | null => up ? v : null
  return {
    id,
    self,
    configured: true,
    up,
    status,
    flags: STATUS_BITS.filter(([b]) => (bits & b) !== 0).map(([, n]) => n),
    stay: setting(4),
    lstay: setting(8),
    block: setting(16),
    quiet: setting(32),
    load: live(num('load')),
    speed: live(num('speed')),
    cpus: live(num('cpus')),
    util: live(num('util')),
    mem: live(num('mem')),
    rmem: live(num('rmem')),
    tmem: live(num('tmem')),
    addr,
    ageMs: num('age')
  }
}

/** The text of `mosctl status`: openMosix's first line (`Node #N is up|down|not configured`), then the details. */
function statusLines (st: NodeStatus): string[] {
  if (!st.configured) return [`Node #${st.id} is not configured`]
  const out = [
    `Node #${st.id} is ${st.up ? 'up' : 'down'}`,
    `status: ${st.status ?? '?'} (${st.flags.length > 0 ? st.flags.join(', ') : 'none'})`
  ]
  if (!st.up) return out
  const onOff = (v: boolean | null, on: string, off: string): string => v === null ? '?' : v ? `on  (${on})` : `off (${off})`
  out.push(
    `stay:   ${onOff(st.stay, 'no automatic migration away from this node', 'processes may migrate away automatically')}`,
    `lstay:  ${onOff(st.lstay, 'local processes stay', 'local processes may leave')}`,
    `block:  ${onOff(st.block, 'guest processes refused', 'guest processes accepted')}`,
    `quiet:  ${onOff(st.quiet, 'load information not sent', 'load information sent')}`
  )
  const extra = (['load', 'speed', 'cpus', 'util'] as const).filter(f => st[f] !== null).map(f => `${f} ${String(st[f])}`)
  if (extra.length > 0) out.push(extra.join(', '))
  return out
}

/** The known nodes from admin/config (static map plus discovered nodes). */
function readMap (tree: Tree): Map<number, MapNode> {
  const text = tree.read('admin/config')
  try {
    return expandMap(parseMap(text))
  } catch (err) {
    if (err instanceof MapError) throw new CliError(`${tree.path('admin/config')} does not parse: ${err.message}`)
    throw err
  }
}

const addrText = (n: MapNode): string => `${n.host}${n.port !== undefined ? ':' + String(n.port) : ''}`

async function whois (tree: Tree, arg: string | undefined): Promise<string[]> {
  if (arg === undefined) {
    const me = tree.myId()
    if (me === 0) throw new CliError('this node is not configured (admin/mospe is 0; see setpe)')
    return [`This is openMosix #${me}`]
  }
  const nodes = readMap(tree)
  if (/^\d+$/.test(arg)) {
    const id = parseNodeId(arg, 'openMosix-ID')
    const n = nodes.get(id)
    if (n === undefined) throw new CliError(`openMosix #${id} is not in the cluster map`)
    return [`openMosix #${id} is at IP address ${addrText(n)}`, ...n.aliases.map(a => `openMosix #${id} is also at ${a}`)]
  }
  // An address (optionally ip:port), or a hostname to resolve.
  const m = /^(.*):(\d+)$/.exec(arg)
  const host = m !== null && isIP(m[1]) !== 0 ? m[1] : arg
  const port = m !== null && isIP(m[1]) !== 0 ? Number(m[2]) : undefined
  let addrs = [host]
  if (isIP(host) === 0) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) throw new UsageError(`bad address or hostname "${arg}"`)
    addrs = await addressesOf(host)
  }
  const hits: number[] = []
  for (const n of nodes.values()) {
    const names = [n.host, ...n.aliases]
    if (names.some(h => addrs.includes(h)) && (port === undefined || n.port === port)) hits.push(n.id)
  }
  if (hits.length === 0) throw new CliError(`${arg} is not in the cluster map`)
  return hits.map(id => `${arg} is openMosix #${id}`)
}

async function main (argv: string[]): Promise<number> {
  const json = argv.includes('--json')
  argv = argv.filter(a => a !== '--json')
  if (argv.length === 0) throw new UsageError('missing subcommand')
  const [cmd, ...args] = argv
  if (json && cmd !== 'status') throw new UsageError('--json goes with status')
  const known = cmd in FLAGS || cmd in EVACUATIONS || cmd in GETTERS ||
    ['status', 'isup', 'whois', 'setspeed', 'getdecay', 'setdecay'].includes(cmd)
  if (!known && cmd in UNSUPPORTED) throw new UsageError(`${cmd} is not supported by hpcfs (${UNSUPPORTED[cmd]})`)
  if (!known) throw new UsageError(`unknown subcommand "${cmd}"`)
  // Check the arguments' shape before touching the tree.
  if (cmd in FLAGS || cmd in EVACUATIONS || cmd === 'getdecay') noExtra(args, 0, cmd)
  if (cmd in GETTERS || cmd === 'status' || cmd === 'isup' || cmd === 'whois') noExtra(args, 1, cmd)
  if (cmd === 'setspeed' && args.length !== 1) throw new UsageError('setspeed needs one numeric value')
  if (cmd === 'setdecay' && args.length !== 3) throw new UsageError('setdecay needs three values: interval slow fast')
  const speed = cmd === 'setspeed' ? parseIntArg(args[0], 'speed', SPEED.min, SPEED.max) : 0
  const decay = cmd === 'setdecay'
    ? [parseIntArg(args[0], 'decay interval', 1, 2 ** 31 - 1), parseIntArg(args[1], 'slow decay', 0, 1000), parseIntArg(args[2], 'fast decay', 0, 1000)]
    : []
  if (args[0] !== undefined && (cmd in GETTERS || cmd === 'status' || cmd === 'isup')) parseNodeId(args[0], 'openMosix-ID')

  const tree = openTree('mosctl')
  const print = (lines: string[]): void => { process.stdout.write(lines.map(l => l + '\n').join('')) }

  if (cmd in FLAGS) {
    const [file, value] = FLAGS[cmd]
    tree.write(`admin/${file}`, value)
    return 0
  }
  if (cmd in EVACUATIONS) {
    const ev = EVACUATIONS[cmd]
    tree.writeAll([[`admin/${ev.implies}`, 1], [`admin/${ev.trigger}`, 1]])
    await ev.waitUntilDone(tree)
    return 0
  }
  if (cmd === 'getspeed' && args[0] === undefined) {
    print([String(tree.readInt('admin/speed'))])
    return 0
  }
  if (cmd in GETTERS) {
    const id = targetNode(tree, args[0])
    print([String(tree.readInt(`nodes/${id}/${GETTERS[cmd]}`))])
    return 0
  }
  switch (cmd) {
    case 'isup': {
      const id = targetNode(tree, args[0])
      print([(tree.readInt(`nodes/${id}/status`) & 2) !== 0 ? 'yes' : 'no'])
      return 0
    }
    case 'status': {
      const me = tree.myId()
      // this node, or the id given; an id the tree does not know is "not configured", as openMosix said
      const st = nodeStatus(tree, args[0] !== undefined ? parseNodeId(args[0], 'openMosix-ID') : me, me)
      if (json) process.stdout.write(JSON.stringify(st, null, 2) + '\n')
      else print(statusLines(st))
      return 0
    }
    case 'whois':
      print(await whois(tree, args[0]))
      return 0
    case 'setspeed':
      tree.write('admin/speed', speed)
      return 0
    case 'getdecay':
      print([
        `decay interval: ${tree.readInt('admin/decay-interval')} second(s)`,
        `slow decay: ${tree.readInt('admin/slow-decay')} per mille kept each interval`,
        `fast decay: ${tree.readInt('admin/fast-decay')} per mille kept each interval`
      ])
      return 0
    case 'setdecay':
      tree.writeAll([['admin/decay-interval', decay[0]], ['admin/slow-decay', decay[1]], ['admin/fast-decay', decay[2]]])
      return 0
  }
  throw new UsageError(`unknown subcommand "${cmd}"`)
}

await runTool('mosctl', USAGE, main)
