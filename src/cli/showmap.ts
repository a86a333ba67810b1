#!/usr/bin/env node
// showmap: print this node's id and the cluster map in the omdiscd/showmap layout
// (docs/tools.md, The originals), from admin/mospe and admin/config.
import { CliError, UsageError, openTree, runTool } from './common.js'
import { parseMap, MapError, type MapLine } from '../map/map.js'

const USAGE = `Usage: showmap [--json]
Prints this node's openMosix id and the cluster map (admin/mospe, admin/config):

  My Node-Id: 0x0001

  Base Node-Id Address          Count
  ------------ ---------------- -----
  0x0001       192.168.1.1      4

  --json   one JSON object: {"myId": 1, "map": [{"base": 1, "address": "192.168.1.1",
           "port": null, "count": 4, "alias": false}, ...]} (an ALIAS line: count 0, alias true)
The tree is found at $HPC_ROOT (default <checkout>/mnt/hpc when mounted, else /mnt/hpc).`

const hex = (n: number): string => '0x' + n.toString(16).padStart(4, '0')

/** The showmap table for `myId` and the map lines (pure, for tests). */
function formatShowmap (myId: number, lines: MapLine[]): string {
  const out = [
    `My Node-Id: ${hex(myId)}`,
    '',
    'Base Node-Id Address          Count',
    '------------ ---------------- -----'
  ]
  for (const l of lines) {
    const addr = `${l.host}${l.port !== undefined ? ':' + String(l.port) : ''}`
    out.push(`${hex(l.first).padEnd(12)} ${addr.padEnd(16)} ${l.count === 0 ? 'ALIAS' : String(l.count)}`)
  }
  return out.join('\n') + '\n'
}

/** The --json form (field names documented in docs/tools.md, stable). */
function showmapJson (myId: number, lines: MapLine[]): string {
  const map = lines.map(l => ({ base: l.first, address: l.host, port: l.port ?? null, count: l.count, alias: l.count === 0 }))
  return JSON.stringify({ myId, map }, null, 2) + '\n'
}

function main (argv: string[]): number {
  const json = argv[0] === '--json'
  const rest = json ? argv.slice(1) : argv
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
  const tree = openTree('showmap')
  const me = tree.myId()
  let lines: MapLine[]
  try {
    lines = parseMap(tree.read('admin/config'))
  } catch (err) {
    if (err instanceof MapError) throw new CliError(`${tree.path('admin/config')} does not parse: ${err.message}`)
    throw err
  }
  process.stdout.write(json ? showmapJson(me, lines) : formatShowmap(me, lines))
  return 0
}

await runTool('showmap', USAGE, main)
