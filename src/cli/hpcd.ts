#!/usr/bin/env node
// hpcd: the per-host daemon. Probes the local node, gossips with the others over UDP and serves
// the cluster tree over FUSE at --mount. See `hpcd --help` and the README.
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { networkInterfaces } from 'node:os'
import { isIPv4 } from 'node:net'
import { lookup } from 'node:dns/promises'
import { performance } from 'node:perf_hooks'
import debug from '../util/log.js'
import { DEFAULTS, DISCOVERY, HTTP_DEFAULTS, MIG_PORT_OFFSET, NODE_ID, type Config } from '../config.js'
import { HpcNode, KEYLESS } from '../core/node.js'
import { prepareMountpoint } from '../core/mountpoint.js'
import { Keyring } from '../gossip/keyring.js'
import { nextIncarnation } from '../gossip/incarnation.js'
import { UdpTransport } from '../gossip/udp.js'
import type { Address } from '../gossip/transport.js'
import { expandMap, idFromAddress, parseMap, MapError } from '../map/map.js'
import { Probe } from '../probe/probe.js'
import { rootDir } from '../fs/root.js'
import { TreeMount } from '../fs/fuse.js'
import { versionText } from './common.js'
import { Migrator } from '../migrate/migrator.js'
import { Balancer } from '../sched/balancer.js'
import { GuiServer } from '../gui/server.js'
import { defaultTokenDir } from '../gui/auth.js'
import { MetricsServer } from '../metrics/server.js'
import { MigrationLog } from '../metrics/migrations.js'
import { formatListen, parseListen } from '../util/listen.js'
import { Discovery, discoveryOptions } from '../discovery/discovery.js'
import { monotonicMs } from '../util/clock.js'

const log = debug('hpcfs:hpcd')

const BOOLEAN_WORDS: Record<string, boolean> = { yes: true, true: true, on: true, 1: true, no: false, false: false, off: false, 0: false }

/**
 * Reads a config file (/etc/hpcfs.conf, hpcfs.conf(5)): `key = value` or `key value` lines, `#`
 * comments, values optionally in double quotes; keys as the long flags. Keys in `booleans` take
 * yes/no, true/false, on/off or 1/0 (yargs would read any other word as false); `join` may list
 * several peers and be repeated.
 */
export function parseConfigFile (path: string, booleans: ReadonlySet<string> = new Set()): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  readFileSync(path, 'utf8').split('\n').forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*/, '').trim()
    if (!line) return
    const m = /^([a-z][a-z-]*)\s*(?:=\s*|\s+)(.+)$/.exec(line)
    if (!m) throw new Error(`${path}:${i + 1}: expected "key = value"`)
    const key = m[1]
    const value = m[2].replace(/^"(.*)"$/, '$1')
    if (booleans.has(key)) {
      const b = BOOLEAN_WORDS[value.toLowerCase()]
      if (b === undefined) throw new Error(`${path}:${i + 1}: ${key} takes yes or no (true/false, on/off, 1/0), not "${value}"`)
      out[key] = b
    } else if (key === 'join') out.join = [...((out.join as string[]) ?? []), ...value.split(/[\s,]+/)]
    else out[key] = value
  })
  return out
}

/** The boolean options of a yargs instance (its getOptions(), which the typings leave out). */
const booleanOptions = (y: object): ReadonlySet<string> =>
  new Set((y as { getOptions?: () => { boolean?: string[] } }).getOptions?.().boolean ?? [])

function firstAddress (): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return '127.0.0.1'
}

function parseHostPort (s: string, defPort: number): Address {
  const m = /^(.+?)(?::(\d+))?$/.exec(s)
  if (!m) throw new Error(`bad peer "${s}"`)
  const port = m[2] ? Number(m[2]) : defPort
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad peer "${s}": port ${port} is not 1-65535`)
  return { host: m[1], port }
}

/** A --join seed as IPv4 and port: a gossip datagram to a seed names the address it is sent to. */
async function resolveSeed (s: string, defPort: number): Promise<Address> {
  const a = parseHostPort(s, defPort)
  if (isIPv4(a.host)) return a
  try { return { host: (await lookup(a.host, { family: 4 })).address, port: a.port } } catch (e) {
    throw new Error(`--join ${s}: ${(e as Error).message}`)
  }
}

async function main (): Promise<void> {
  const cli = yargs(hideBin(process.argv))
  const argv = await cli
    .scriptName('hpcd')
    .usage('$0 [options]\n\nThe hpcfs daemon: one per host. Gossips load over UDP and serves the cluster tree over FUSE.')
    .option('id', { type: 'number', describe: 'node id 1..65535 (default: from the map line holding --addr, else the last two octets of --addr, as omdiscd)' })
    .option('addr', { type: 'string', describe: 'IPv4 address to bind and advertise (default: first non-loopback address)' })
    .option('port', { type: 'number', default: DEFAULTS.port, describe: 'UDP gossip port' })
    .option('map', { type: 'string', describe: 'cluster map file in setpe grammar ("first-id address count", ALIAS, # comments); only its nodes are members' })
    .option('join', { type: 'string', array: true, default: [] as string[], describe: 'seed peer host[:port] to join an open cluster (repeatable)' })
    .option('mount', { type: 'string', default: DEFAULTS.mount, describe: 'mount point of the tree (the /proc/hpc of this node)' })
    .option('key', { type: 'string', describe: 'cluster key file (same on every node; >= 16 bytes); without it the node gossips with a built-in key known to everyone, refuses guests and keeps its processes' })
    .option('interval', { type: 'number', default: DEFAULTS.interval, describe: 'seconds between gossip sends' })
    .option('window', { type: 'number', default: DEFAULTS.window, describe: 'entries per gossip datagram, own included (1..29)' })
    .option('down-after', { type: 'number', default: DEFAULTS.downAfter, describe: 'seconds without news before a node reads down (0 = from the gossip age model: 3 x expected max age + 5 intervals, at least 5 s)' })
    .option('send-to-any', { type: 'number', default: DEFAULTS.sendToAnyCycle, describe: 'gossip to any node, maybe down, with probability 1/max(N, live nodes)' })
    .option('speed', { type: 'number', default: DEFAULTS.speed, describe: 'node speed (10000 = Pentium III 1 GHz); 0 = calibrate at start' })
    .option('decay-interval', { type: 'number', default: DEFAULTS.decayInterval, describe: 'seconds between decays of process statistics' })
    .option('slow-decay', { type: 'number', default: DEFAULTS.slowDecay, describe: 'per-mille kept per decay interval (slow)' })
    .option('fast-decay', { type: 'number', default: DEFAULTS.fastDecay, describe: 'per-mille kept per decay interval (fast)' })
    .option('mig-port', { type: 'number', describe: 'TCP port of process transfer (default: the gossip port - 768, i.e. 4660 for 5428; every node keeps the same distance)' })
    .option('load-scope', { choices: ['host', 'cgroup', 'netns'] as const, default: 'host' as const, describe: 'what the node\'s load counts. host: the machine; for several nodes emulated on one machine, cgroup: the daemon\'s CPU cgroup (its runnable tasks, its quota as CPUs and speed) or netns: the processes in the daemon\'s network namespace' })
    .option('discover', { type: 'boolean', default: false, describe: `find the other nodes on this LAN by multicast, as omdiscd (group ${DISCOVERY.group}, UDP port --port + ${DISCOVERY.portOffset}); announcements are signed with the cluster key` })
    .option('balance', { type: 'boolean', default: true, describe: 'move processes automatically by opportunity cost, as openMosix did (admin/balance); --no-balance: only explicit moves' })
    .option('gui', { type: 'boolean', default: false, describe: `serve the web GUI (docs/gui.md) at --gui-addr (default ${HTTP_DEFAULTS.host}:${HTTP_DEFAULTS.guiPort}: this host only)` })
    .option('gui-addr', { type: 'string', describe: 'HOST:PORT (or PORT) of the web GUI; implies --gui' })
    .option('gui-tokens', { type: 'string', describe: 'directory of the GUI\'s token files, one per uid (default: /run/hpcfs/<mount point>.gui as root)' })
    .option('metrics', { type: 'string', describe: 'serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: on 127.0.0.1)' })
    .option('link-timeout', { type: 'number', default: DEFAULTS.linkTimeout, describe: 'seconds a migration connection may stay silent before its peer is taken for unreachable (a stalled move is abandoned)' })
    .option('guest-lease', { type: 'number', default: DEFAULTS.guestLease, describe: 'seconds a guest may be out of touch with its home (or its own daemon) before it is killed; a home waits 2 x this + 5 s for a lost node to come back' })
    .option('state-dir', { type: 'string', default: DEFAULTS.stateDir, describe: 'where the guests\' records are kept so that they survive a restart of this daemon (<dir>/<node id>/guests/)' })
    .option('precopy', { type: 'number', default: DEFAULTS.precopy, describe: 'MiB: a process with at least this much resident memory moves with pre-copy (frozen only for the last round of its memory; docs/ppm.md); 0 = never' })
    .option('test-fault', { type: 'string', hidden: true, describe: 'fault injection for tests (restore, crash-frozen)' })
    .config('config', 'config file (e.g. /etc/hpcfs.conf, hpcfs.conf(5)): "key = value" lines, keys as the long options', (path: string) => parseConfigFile(path, booleanOptions(cli)))
    .check(a => {
      if (a.id !== undefined && (!Number.isInteger(a.id) || a.id < NODE_ID.min || a.id > NODE_ID.max)) throw new Error(`--id must be ${NODE_ID.min}..${NODE_ID.max}`)
      if (!(Number.isFinite(a.precopy) && a.precopy >= 0)) throw new Error('--precopy must be a number of MiB, 0 or more')
      if (a.addr !== undefined && !isIPv4(a.addr)) throw new Error('--addr must be an IPv4 address')
      if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) throw new Error('--port must be 1..65535')
      if (!(a.interval > 0)) throw new Error('--interval must be > 0')
      if (!Number.isInteger(a.window) || a.window < 1 || a.window > 29) throw new Error('--window must be 1..29')
      if (!(a['down-after'] >= 0)) throw new Error('--down-after must be >= 0')
      if (!(a['send-to-any'] >= 1)) throw new Error('--send-to-any must be >= 1')
      if (a['mig-port'] !== undefined && (!Number.isInteger(a['mig-port']) || a['mig-port'] < 1 || a['mig-port'] > 65535)) throw new Error('--mig-port must be 1..65535')
      if (!(a['link-timeout'] >= 1)) throw new Error('--link-timeout must be >= 1')
      if (!(a['guest-lease'] >= 1)) throw new Error('--guest-lease must be >= 1')
      if (a.speed !== 0 && (!Number.isInteger(a.speed) || a.speed < 1 || a.speed > 1000000)) throw new Error('--speed must be 1..1000000 (or 0)')
      if (a['gui-addr'] !== undefined) parseListen(a['gui-addr'], HTTP_DEFAULTS.host, '--gui-addr')
      if (a.metrics !== undefined) parseListen(a.metrics, HTTP_DEFAULTS.host, '--metrics')
      return true
    })
    .strict()
    .version(versionText('hpcd'))
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .parseAsync()

  const addr = argv.addr ?? firstAddress()
  let mapText: string | undefined
  let id = argv.id
  if (argv.map) {
    mapText = readFileSync(argv.map, 'utf8')
    let nodes
    try { nodes = expandMap(parseMap(mapText)) } catch (e) {
      if (e instanceof MapError) throw new Error(`${argv.map}: ${e.message}`)
      throw e
    }
    if (id === undefined) {
      for (const n of nodes.values()) {
        if ((n.host === addr || n.aliases.includes(addr)) && (n.port ?? argv.port) === argv.port) { id = n.id; break }
      }
      if (id === undefined) throw new Error(`${argv.map}: my address (${addr}:${argv.port}) is not there! (give --id or fix the map)`)
    }
  }
  id ??= idFromAddress(addr)
  if (!id) throw new Error(`cannot derive a node id from ${addr}; give --id`)

  const cfg: Config & { id: number } = {
    id, addr, port: argv.port, map: argv.map, join: argv.join, mount: argv.mount, key: argv.key,
    interval: argv.interval, window: argv.window, downAfter: argv['down-after'], sendToAnyCycle: argv['send-to-any'],
    speed: argv.speed, decayInterval: argv['decay-interval'], slowDecay: argv['slow-decay'], fastDecay: argv['fast-decay'],
    linkTimeout: argv['link-timeout'], guestLease: argv['guest-lease'], stateDir: argv['state-dir'], precopy: argv.precopy
  }
  const keys = Keyring.fromFile(cfg.key)
  if (keys.insecure) console.error(`hpcd: warning: no --key given: gossip uses the built-in key, with which anyone can forge load information; ${KEYLESS} (admin/block and admin/stay read 1)`)

  const probe = new Probe({ speed: cfg.speed || undefined, scope: argv['load-scope'] })
  probe.start()
  const node = new HpcNode(cfg, probe, keys, {
    seeds: await Promise.all(cfg.join.map(s => resolveSeed(s, cfg.port))),
    now: monotonicMs,
    // (kept in the state dir: a restart never comes back lower, whatever the clock says)
    incarnation: nextIncarnation(join(cfg.stateDir, String(cfg.id), 'incarnation'))
  })
  node.setDecay(cfg.decayInterval, cfg.slowDecay, cfg.fastDecay)
  if (mapText !== undefined) node.setMapText(mapText)

  node.migPort = argv['mig-port'] ?? cfg.port - MIG_PORT_OFFSET
  if (!(node.migPort >= 1 && node.migPort <= 65535)) throw new Error(`bad transfer port ${node.migPort}; give --mig-port`)
  const migrator = new Migrator(node, keys, node.migPort)
  migrator.linkTimeoutMs = cfg.linkTimeout * 1000
  migrator.keepGuests(cfg.stateDir, cfg.guestLease * 1000)
  migrator.precopyBytes = cfg.precopy * 1048576
  await migrator.listen(addr)
  node.migrator = migrator
  migrator.testFault = argv['test-fault'] ?? ''
  node.balancer = new Balancer(node, migrator)
  node.balancer.enabled = argv.balance

  const transport = await UdpTransport.open({ host: addr, port: cfg.port }, (buf, from) => node.gossip.onDatagram(buf, from))
  node.gossip.attach(transport)

  if (argv.discover) node.discovery = await Discovery.start(node.gossip, keys, discoveryOptions(cfg.port))

  await prepareMountpoint(cfg.mount)
  const mount = new TreeMount(rootDir(node), cfg.mount)
  await mount.mount()

  // The web GUI and the metrics endpoint, on demand (after the mount: the token directory is named
  // after the mount point, which a second daemon could not have mounted).
  const guiAt = argv.gui || argv['gui-addr'] !== undefined ? parseListen(argv['gui-addr'] ?? String(HTTP_DEFAULTS.guiPort), HTTP_DEFAULTS.host, '--gui-addr') : null
  const metricsAt = argv.metrics !== undefined ? parseListen(argv.metrics, HTTP_DEFAULTS.host, '--metrics') : null
  const migrations = guiAt || metricsAt ? new MigrationLog(migrator, cfg.interval * 1000, HTTP_DEFAULTS.migrationEvents) : null
  let gui: GuiServer | null = null
  let metrics: MetricsServer | null = null
  let starting = '--gui'
  try {
    if (guiAt) {
      gui = new GuiServer(node, migrations, { intervalMs: cfg.interval * 1000, tokenDir: argv['gui-tokens'] ?? defaultTokenDir(cfg.mount), historySamples: HTTP_DEFAULTS.historySamples })
      await gui.start(guiAt)
      console.log(`hpcd: GUI at http://${formatListen(guiAt)}/ (changes need the token in ${gui.tokens.dir}/<uid>)`)
    }
    if (metricsAt) {
      starting = '--metrics'
      metrics = new MetricsServer(node, migrations)
      await metrics.start(metricsAt)
      console.log(`hpcd: metrics at http://${formatListen(metricsAt)}/metrics`)
    }
  } catch (e) {
    await mount.unmount()
    await gui?.close()
    throw new Error(`${starting}: ${(e as Error).message}`)
  }

  // Gossip every interval, with ±10% jitter so that nodes started together drift apart.
  let timer: NodeJS.Timeout | undefined
  const loop = (): void => {
    node.tick()
    timer = setTimeout(loop, cfg.interval * 1000 * (0.9 + 0.2 * Math.random()))
  }
  loop()

  let stopping = false
  const stop = async (code: number): Promise<void> => {
    if (stopping) return
    stopping = true
    clearTimeout(timer)
    probe.close()
    await gui?.close()
    await metrics?.close()
    migrations?.close()
    await node.discovery?.close()
    await migrator.close()
    await mount.unmount()
    await transport.close()
    log('stopped')
    process.exit(code)
  }
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => { void stop(0) })
  process.on('uncaughtException', e => { console.error('hpcd: fatal:', e); void stop(1) })

  console.log(`hpcd: node ${id} at ${addr}:${cfg.port}, speed ${probe.speed}, tree on ${cfg.mount}`)
}

main().catch(e => {
  console.error(`hpcd: ${(e as Error).message}`)
  process.exit(1)
})
