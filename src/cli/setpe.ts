#!/usr/bin/env node
// setpe: load, check or print the cluster map (admin/config) and switch this node on/off
// (admin/mospe), like setpe(1) of openmosix-tools (docs/tools.md, The originals).
import { readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import debug from '../util/log.js'
import { CliError, UsageError, addressesOf, describeFsError, isTree, openTree, parseIntArg, parseNodeId, resolveRoot, runTool, Tree } from './common.js'
import { expandMap, formatMap, parseMap, MapError, type MapNode } from '../map/map.js'

const log = debug('hpcfs:setpe')

const USAGE = `Usage: setpe -w|-W [-c] [-p openMosix-ID] [-n address] [-f {file|-}]
       setpe -c [-p openMosix-ID] [-n address] [-f {file|-}]
       setpe -r [--json] [-f {file|-}]
       setpe -p openMosix-ID
       setpe -off

  -w, -W     load a cluster map (from -f file, or standard input) into admin/config
  -c         only check the map (well-formed, and this node is in it); write nothing
  -p ID      force this node's openMosix-ID (written to admin/mospe after the map)
  -n ADDR    this node's address (ip or ip:port) for the "is my address in the map" check;
             default: the address hpcd reports in nodes/<my id>/addr
  -r         print the current map (to -f file, or standard output): one "first-id address count"
             line per run of consecutive nodes ("id address ALIAS" for aliases), as setpe -w takes it
  --json     with -r: {"myId": 1, "nodes": [{"id": 1, "address": "10.0.0.1", "port": null,
             "aliases": []}, ...]}, one entry per node (fields in docs/tools.md)
  -off       take this node out of the cluster (writes 0 to admin/mospe)
  -g N       gateways: accepted for compatibility, ignored (hpcfs has no gateways)
Map lines: "first-id address count", "id address ALIAS", comments after "#".
hpcfs extension: "address:port" with count 1. Ids 1..65535, at most 256 lines.`

interface Options {
  write: boolean
  check: boolean
  read: boolean
  off: boolean
  id?: number
  addr?: string
  file?: string
  json: boolean
}

function parseArgs (argv: string[]): Options {
  const o: Options = { write: false, check: false, read: false, off: false, json: false }
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1]
    if (v === undefined) throw new UsageError(`${flag} needs a value`)
    return v
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    // `-pN`, `-fFILE`, `-gN`, `-nADDR` are accepted as well as the separated form.
    const attached = /^-([pfgn])(.+)$/.exec(a)
    const flag = attached !== null && a !== '-off' ? `-${attached[1]}` : a
    const val = (): string => {
      if (attached !== null && a !== '-off') return attached[2]
      return value(i++, flag)
    }
    switch (flag) {
      case '-w': case '-W': o.write = true; break
      case '-c': o.check = true; break
      case '-r': o.read = true; break
      case '-off': o.off = true; break
      case '--json': o.json = true; break
      case '-p': o.id = parseNodeId(val(), 'openMosix-ID'); break
      case '-n': o.addr = val(); break
      case '-f': o.file = val(); break
      case '-g': parseIntArg(val(), 'gateways', 0, 2); process.stderr.write('setpe: -g (gateways) is ignored by hpcfs\n'); break
      default: throw new UsageError(`unknown option "${a}"`)
    }
  }
  const actions = [o.write || o.check, o.read, o.off].filter(Boolean).length
  if (actions > 1) throw new UsageError('use only one of -w/-c, -r and -off')
  if (actions === 0 && o.id === undefined) throw new UsageError('nothing to do (give -w, -c, -r, -off or -p)')
  if ((o.read || o.off) && (o.id !== undefined || o.addr !== undefined)) throw new UsageError('-p and -n go with -w or -c')
  if (o.off && o.file !== undefined) throw new UsageError('-f does not go with -off')
  if (o.json && !o.read) throw new UsageError('--json goes with -r')
  if (o.id !== undefined && !(o.write || o.check) && (o.file !== undefined || o.addr !== undefined)) throw new UsageError('-f and -n need -w or -c')
  return o
}

function readInput (file: string | undefined): string {
  const name = file === undefined || file === '-' ? 'standard input' : file
  try {
    return readFileSync(file === undefined || file === '-' ? 0 : file, 'utf8')
  } catch (err) {
    throw new CliError(describeFsError(err, `cannot read ${name}`))
  }
}

/** Parse and expand; errors read `line N: ...` (or the expansion's message). */
function validate (text: string): Map<number, MapNode> {
  try {
    return expandMap(parseMap(text))
  } catch (err) {
    if (err instanceof MapError) throw new CliError(err.message)
    throw err
  }
}

/** This node's address, `ip` or `ip:port`: from -n, else nodes/<mospe>/addr; undefined when unknown. */
function myAddress (o: Options, tree: Tree | undefined): string | undefined {
  if (o.addr !== undefined) return o.addr
  if (tree === undefined) return undefined
  try {
    const me = tree.myId()
    if (me === 0 || !tree.exists(`nodes/${me}/addr`)) return undefined
    const a = tree.read(`nodes/${me}/addr`).trim()
    return a === '' ? undefined : a
  } catch (err) {
    log('own address unknown: %s', (err as Error).message)
    return undefined
  }
}

function splitAddr (a: string): { host: string, port?: number } {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(a)
  if (m !== null && (isIP(m[1]) !== 0 || !m[1].includes(':'))) return { host: m[1], port: Number(m[2]) }
  return { host: a }
}

/**
 * The original's last check: this node's address must be in the table (from -n, else the address
 * hpcd reports; skipped with -p alone, which is for when the cluster net is not the usual one).
 * hpcd also needs its own id in the table: -p ID, else admin/mospe when not 0.
 */
async function checkSelf (nodes: Map<number, MapNode>, o: Options, tree: Tree | undefined): Promise<void> {
  if (nodes.size === 0) return
  const addr = o.id === undefined || o.addr !== undefined ? myAddress(o, tree) : undefined
  const { host, port } = addr !== undefined ? splitAddr(addr) : { host: '', port: undefined }
  if (addr !== undefined && host !== '0.0.0.0' && host !== '::') {
    const candidates = [...nodes.values()].filter(n => n.port === undefined || port === undefined || n.port === port)
    const names = candidates.flatMap(n => [n.host, ...n.aliases])
    let found = names.includes(host)
    if (!found) {
      // Names on either side: compare what they resolve to.
      const mine = await addressesOf(host)
      const theirs = await Promise.all(names.map(async h => await addressesOf(h)))
      found = theirs.some(list => list.some(x => mine.includes(x)))
    }
    if (!found) throw new CliError(`the supplied table is well-formatted, but my IP address (${addr}) is not there!`)
  }
  let me = o.id ?? 0
  if (o.id === undefined && tree !== undefined) {
    try {
      me = tree.myId()
    } catch (err) {
      log('own id unknown: %s', (err as Error).message)
    }
  }
  if (me > 0 && !nodes.has(me)) throw new CliError(`the supplied table is well-formatted, but my openMosix-ID (${me}) is not there!`)
}

async function main (argv: string[]): Promise<number> {
  const o = parseArgs(argv)

  if (o.write || o.check) {
    const text = readInput(o.file)
    const nodes = validate(text)
    // -c may run where no hpcd is: it then checks the grammar (and -p / -n) only.
    const root = resolveRoot()
    const tree = o.check && !isTree(root) ? undefined : openTree('setpe')
    await checkSelf(nodes, o, tree)
    if (o.check || tree === undefined) {
      process.stdout.write(`setpe: the supplied table is well-formatted (${nodes.size} node${nodes.size === 1 ? '' : 's'})\n`)
      return 0
    }
    try {
      tree.write('admin/config', nodes.size === 0 ? '\n' : formatMap(nodes.values()))
    } catch (err) {
      if (err instanceof CliError && err.message.includes('(EINVAL)')) throw new CliError(`${err.message}; hpcd refused the map (its log says why)`)
      throw err
    }
    if (o.id !== undefined) tree.write('admin/mospe', o.id)
    return 0
  }

  const tree = openTree('setpe')
  if (o.read) {
    const text = tree.read('admin/config')
    let nodes: Map<number, MapNode>
    try {
      nodes = expandMap(parseMap(text))
    } catch (err) {
      if (err instanceof MapError) throw new CliError(`${tree.path('admin/config')} does not parse: ${err.message}`)
      throw err
    }
    const out = o.json
      ? JSON.stringify({
        myId: tree.myId(),
        nodes: [...nodes.values()].sort((a, b) => a.id - b.id).map(n => ({ id: n.id, address: n.host, port: n.port ?? null, aliases: n.aliases }))
      }, null, 2) + '\n'
      : formatMap(nodes.values())
    if (o.file === undefined || o.file === '-') process.stdout.write(out)
    else {
      try {
        writeFileSync(o.file, out)
      } catch (err) {
        throw new CliError(describeFsError(err, `cannot write ${o.file}`))
      }
    }
    return 0
  }
  if (o.off) {
    tree.write('admin/mospe', 0)
    return 0
  }
  // -p alone: set this node's id.
  tree.write('admin/mospe', o.id as number)
  return 0
}

await runTool('setpe', USAGE, main)
