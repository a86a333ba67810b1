// A lab: N hpcd daemons on this one machine. As root, each node gets its own network namespace
// (hpc-<tag>-<i>) with a veth (hv-<tag>-<i> on the host side, eth0 inside) on a bridge hpb-<tag>,
// address <subnet>.<i>/24; the host has <subnet>.254 on the bridge. Without root the nodes share
// 127.0.0.1 with one UDP port each. Daemons are started with `nsenter --net=...` only (not
// `ip netns exec`, whose private mount namespace would hide the FUSE mount from the host).
//
// Used by integration tests, `npm start` (scripts/demo.ts) and benchmarks. See docs/lab.md.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile, rm, mkdir, rmdir, stat, realpath } from 'node:fs/promises'
import { openSync, closeSync, readFileSync, rmSync, rmdirSync, writeFileSync, existsSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { tmpdir } from 'node:os'
import { join, resolve, dirname, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { constants as osConstants } from 'node:os'
import createDebug from '../util/log.js'
import { DEFAULTS } from '../config.js'
import {
  run, must, runSyncQuiet, unmountIfMounted, unmountSync, isMounted, netnsList, linkList, netnsPids,
  pidAlive, pidStartTime, isRoot, haveCommand, sleep, poll, type RunResult
} from './sys.js'

const debug = createDebug('hpcfs:lab')

/** The repository root (this file is dist/src/lab/lab.js once compiled). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const HPCD_JS = join(REPO_ROOT, 'dist/src/cli/hpcd.js')
/** Default UDP port of every node in namespace mode (the openMosix info daemon's port). */
export const DEFAULT_PORT = DEFAULTS.port

/** What a node's command line is built from. */
export interface LabNodeSpec {
  id: number
  addr: string // IPv4 address the daemon binds
  port: number
  ns?: string // network namespace name; undefined in loopback mode
  mount: string
  mapFile: string
  keyFile: string
  logFile: string
}

export interface LabOptions {
  nodes: number
  /** 1..8 characters [a-z0-9]; names the bridge, namespaces and veths. One live lab per tag. */
  tag: string
  /** Namespaces (default: when root) or loopback ports. */
  netns?: boolean
  /** First three octets, e.g. '10.77.3'; default: derived from the tag, skipping subnets in use. */
  subnet?: string
  /** Namespace mode: every node's port (default 5428). Loopback mode: node i gets port+i-1 (default: free ports). */
  port?: number
  /** Mount points are <mountRoot>/node<i> unless `mount` is given (default: <lab temp dir>/mnt). */
  mountRoot?: string
  mount?: (id: number) => string
  interval?: number // --interval, default 1
  window?: number // --window, passed only when given
  /**
   * hpcd --load-scope. Default in namespace mode: 'netns', so that each node's load is that of the
   * processes in its namespace (with 'host' every node would show the whole machine's load).
   */
  loadScope?: 'host' | 'netns' | 'cgroup'
  /** Extra hpcd arguments for node `id` (e.g. ['--speed', '20000'] or ['--join', '10.77.3.1']). */
  hpcdArgs?: (id: number) => string[]
  /** Added to process.env for the daemons (e.g. { DEBUG: 'hpcfs:*' }). */
  env?: NodeJS.ProcessEnv
  /** Replace hpcd by another program (a stand-in for tests); it is still run under nsenter. */
  command?: (n: LabNodeSpec) => { cmd: string, args: string[] }
  /** Readiness: 'mospe' (default) = <mount>/admin/mospe reads the node id; 'none'; or a predicate. */
  ready?: 'mospe' | 'none' | ((n: LabNode) => Promise<boolean>)
  readyTimeoutMs?: number // default 20000
  /** Start the daemons in create() (default true); otherwise call lab.startAll() or node.start(). */
  start?: boolean
  /** Daemon stderr/stdout: into <logDir>/node<i>.log (default) or inherited. */
  stdio?: 'file' | 'inherit'
  /** Where the node<i>.log files go (default: the lab's temp dir, removed by destroy()). */
  logDir?: string
  /** Clean up on SIGINT/SIGTERM/SIGHUP, then exit 128+signal (default true). The 'exit' hook is always set. */
  handleSignals?: boolean
}

const TAG_RE = /^[a-z0-9]{1,8}$/

/** Names used for a tag; all within the 15-character limit of Linux interface names. */
export function labNames (tag: string): { bridge: string, ns: (i: number) => string, veth: (i: number) => string } {
  return {
    bridge: `hpb-${tag}`,
    ns: (i: number) => `hpc-${tag}-${i}`,
    veth: (i: number) => `hv-${tag}-${i}`
  }
}

/** Where a lab records what it created, for cleanupStale after a crash: one file per tag. */
function stateFile (tag: string): string {
  return join(tmpdir(), `hpcfs-labstate-${tag}.json`)
}

/** The process that made a lab: while it lives, the lab is not stale. */
export interface LabOwner { pid: number, start?: string, command: string }

interface LabState {
  tag: string
  tmp: string
  netns: boolean
  mounts: string[]
  pids: Array<{ pid: number, start?: string }>
  owner?: LabOwner
}

/** Lab.create or cleanupStale for a tag whose lab belongs to another process that still runs. */
export class LabBusyError extends Error {
  constructor (readonly tag: string, readonly owner: LabOwner, readonly mounts: string[]) {
    super(`lab ${tag} belongs to process ${owner.pid} (${owner.command}), which is still running`)
  }
}

const me = (): LabOwner => ({ pid: process.pid, start: pidStartTime(process.pid), command: process.argv.slice(1).join(' ') })

const ownerAlive = (o: LabOwner | undefined): o is LabOwner =>
  o !== undefined && o.pid !== process.pid && pidAlive(o.pid) && (o.start === undefined || pidStartTime(o.pid) === o.start)

// ---------------------------------------------------------------------------------------------
// One node

export class LabNode implements LabNodeSpec {
  readonly id: number
  readonly addr: string
  readonly port: number
  readonly ns?: string
  readonly mount: string
  readonly mapFile: string
  readonly keyFile: string
  readonly logFile: string
  private child?: ChildProcess
  private exitPromise?: Promise<void>
  /** Exit code / signal of the last run, once it ended. */
  lastExit?: { code: number | null, signal: NodeJS.Signals | null }

  constructor (private readonly lab: Lab, spec: LabNodeSpec) {
    this.id = spec.id
    this.addr = spec.addr
    this.port = spec.port
    this.ns = spec.ns
    this.mount = spec.mount
    this.mapFile = spec.mapFile
    this.keyFile = spec.keyFile
    this.logFile = spec.logFile
  }

  get pid (): number | undefined {
    return this.running ? this.child?.pid : undefined
  }

  get running (): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** The daemon's command line (without the nsenter prefix). */
  commandLine (): { cmd: string, args: string[] } {
    const o = this.lab.options
    if (o.command) return o.command(this)
    const args = [HPCD_JS, '--id', String(this.id), '--addr', this.addr, '--port', String(this.port),
      '--map', this.mapFile, '--mount', this.mount, '--key', this.keyFile,
      '--interval', String(o.interval ?? 1), '--state-dir', join(this.lab.tmp, 'state')]
    if (o.window !== undefined) args.push('--window', String(o.window))
    const scope = o.loadScope ?? (this.ns !== undefined ? 'netns' : 'host')
    if (scope !== 'host') args.push('--load-scope', scope)
    if (o.hpcdArgs) args.push(...o.hpcdArgs(this.id))
    return { cmd: process.execPath, args }
  }

  /** Wrap a command so that it runs inside this node's network namespace. */
  wrap (cmd: string, args: string[]): { cmd: string, args: string[] } {
    if (this.ns === undefined) return { cmd, args }
    return { cmd: 'nsenter', args: [`--net=/run/netns/${this.ns}`, '--', cmd, ...args] }
  }

  /** Start the daemon (clearing a stale mount first) and wait until it is ready. */
  async start (opts: { wait?: boolean } = {}): Promise<void> {
    if (this.lab.destroyed) throw new Error('lab destroyed')
    if (this.running) throw new Error(`node ${this.id} is already running (pid ${this.child?.pid})`)
    await unmountIfMounted(this.mount)
    const line = this.commandLine()
    const { cmd, args } = this.wrap(line.cmd, line.args)
    const env = { ...process.env, ...this.lab.options.env }
    let fd: number | undefined
    if ((this.lab.options.stdio ?? 'file') === 'file') {
      fd = openSync(this.logFile, 'a')
      writeFileSync(fd, `--- ${new Date().toISOString()} start: ${cmd} ${args.join(' ')}\n`)
    }
    debug('node %d: %s %s', this.id, cmd, args.join(' '))
    const child = spawn(cmd, args, {
      cwd: REPO_ROOT,
      env,
      detached: true, // own process group: a terminal Ctrl-C reaches the lab, which stops nodes in order
      stdio: fd !== undefined ? ['ignore', fd, fd] : ['ignore', 'inherit', 'inherit']
    })
    if (fd !== undefined) closeSync(fd)
    this.child = child
    this.lastExit = undefined
    this.exitPromise = new Promise(resolveExit => {
      child.once('exit', (code, signal) => {
        debug('node %d: exited code=%s signal=%s', this.id, code, signal)
        this.lastExit = { code, signal }
        resolveExit()
      })
      child.once('error', err => {
        debug('node %d: spawn error %s', this.id, err.message)
        this.lastExit = { code: -1, signal: null }
        resolveExit()
      })
    })
    this.lab.saveState()
    if (opts.wait !== false) await this.waitReady()
  }

  /** Wait until the node is ready (see LabOptions.ready); throws with the log tail if it dies or times out. */
  async waitReady (timeoutMs = this.lab.options.readyTimeoutMs ?? 20_000): Promise<void> {
    const ready = this.lab.options.ready ?? 'mospe'
    if (ready === 'none') return
    const check = ready === 'mospe'
      ? async () => (await this.read('admin/mospe', 2000).catch(() => '')).trim() === String(this.id)
      : async () => await ready(this)
    try {
      await poll(`node ${this.id} ready`, async () => {
        if (!this.running) throw new Error(`node ${this.id} exited during start (${JSON.stringify(this.lastExit)})`)
        return await check()
      }, { timeoutMs })
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- ${this.logFile} (tail):\n${this.logTail()}`)
    }
  }

  /** Send a signal to the daemon (default SIGKILL). Returns false if it was not running. */
  kill (signal: NodeJS.Signals = 'SIGKILL'): boolean {
    if (!this.running || this.child?.pid === undefined) return false
    try {
      process.kill(this.child.pid, signal)
      return true
    } catch {
      return false
    }
  }

  /** Resolves true once the daemon has exited, false at the timeout. */
  async waitExit (timeoutMs = 5000): Promise<boolean> {
    if (!this.running || this.exitPromise === undefined) return true
    let timer: NodeJS.Timeout | undefined
    const t = new Promise<boolean>(resolveT => { timer = setTimeout(() => resolveT(false), timeoutMs) })
    const r = await Promise.race([this.exitPromise.then(() => true), t])
    clearTimeout(timer)
    return r
  }

  /** SIGTERM, wait, SIGKILL a straggler, then remove the mount if the daemon left it behind. */
  async stop (timeoutMs = 5000): Promise<void> {
    if (this.running) {
      this.kill('SIGTERM')
      if (!(await this.waitExit(timeoutMs))) {
        debug('node %d: no exit after SIGTERM, SIGKILL', this.id)
        this.kill('SIGKILL')
        await this.waitExit(5000)
      }
    }
    await unmountIfMounted(this.mount)
    this.lab.saveState()
  }

  /** stop() (if running), then start() again and wait until ready. */
  async restart (): Promise<void> {
    await this.stop()
    await this.start()
  }

  /**
   * Read a file of this node's tree (`rel` relative to the mount point) with `cat` under a timeout
   * (10 s: generous for a loaded 2-core CI machine, still far short of a hung mount's forever).
   */
  async read (rel: string, timeoutMs = 10_000): Promise<string> {
    const path = join(this.mount, rel)
    const r = await run('cat', [path], { timeoutMs })
    if (r.code !== 0) throw new Error(`cat ${path}: ${r.timedOut ? 'timed out' : r.stderr.trim()}`)
    return r.stdout
  }

  /** Write `data` to a file of this node's tree (like `echo data > file`), under a timeout. */
  async write (rel: string, data: string, timeoutMs = 10_000): Promise<void> {
    const path = join(this.mount, rel)
    const r = await run('sh', ['-c', 'cat > "$1"', 'sh', path], { timeoutMs, input: data })
    if (r.code !== 0) throw new Error(`write ${path}: ${r.timedOut ? 'timed out' : r.stderr.trim()}`)
  }

  /** Run a command in this node's network namespace (see Lab.exec). */
  exec (cmd: string, args: string[] = [], opts: { timeoutMs?: number, input?: string } = {}): Promise<RunResult> {
    return this.lab.exec(this.id, cmd, args, opts)
  }

  /** The daemon's log so far ('' when stdio is 'inherit'). */
  log (): string {
    try {
      return readFileSync(this.logFile, 'utf8')
    } catch {
      return ''
    }
  }

  logTail (lines = 30): string {
    return this.log().split('\n').slice(-lines - 1).join('\n')
  }
}

// ---------------------------------------------------------------------------------------------
// The lab

const live = new Set<Lab>()
let hooksInstalled = false
const signalHandlers = new Map<NodeJS.Signals, () => void>()

function installHooks (withSignals: boolean): void {
  if (!hooksInstalled) {
    hooksInstalled = true
    process.on('exit', () => {
      for (const lab of live) lab.destroySync()
    })
  }
  if (withSignals && signalHandlers.size === 0) {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]) {
      const h = (): void => {
        debug('%s: destroying %d lab(s)', sig, live.size)
        const n = osConstants.signals[sig]
        void Promise.allSettled([...live].map(async l => await l.destroy())).then(() => process.exit(128 + n))
      }
      signalHandlers.set(sig, h)
      process.on(sig, h)
    }
  }
}

function maybeRemoveSignalHandlers (): void {
  if (live.size > 0) return
  for (const [sig, h] of signalHandlers) process.off(sig, h)
  signalHandlers.clear()
}

function hashTag (tag: string): number {
  let h = 2166136261
  for (const c of tag) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0
  return h
}

async function pickSubnet (tag: string): Promise<string> {
  const r = await run('ip', ['-o', '-4', 'addr', 'show'])
  const used = new Set<string>()
  for (const m of r.stdout.matchAll(/inet (\d+\.\d+\.\d+)\.\d+/g)) used.add(m[1])
  const start = hashTag(tag) % 200
  for (let k = 0; k < 200; k++) {
    const s = `10.77.${20 + (start + k) % 200}`
    if (!used.has(s)) return s
  }
  throw new Error('no free 10.77.x subnet')
}

async function freeUdpPorts (n: number): Promise<number[]> {
  const socks = await Promise.all(Array.from({ length: n }, async () => {
    const s = createSocket('udp4')
    await new Promise<void>((resolveB, reject) => { s.once('error', reject); s.bind(0, '127.0.0.1', () => resolveB()) })
    return s
  }))
  const ports = socks.map(s => s.address().port)
  await Promise.all(socks.map(s => new Promise<void>(resolveC => s.close(() => resolveC()))))
  return ports
}

export class Lab {
  readonly tag: string
  readonly netns: boolean
  readonly subnet?: string
  readonly bridgeAddr?: string
  readonly tmp: string
  readonly mapFile: string
  readonly keyFile: string
  readonly nodes: LabNode[] = []
  destroyed = false
  private destroying?: Promise<void>
  private readonly execChildren = new Set<ChildProcess>()
  private readonly createdDirs: string[] = []
  private setupDone = { bridge: false, ns: [] as string[], veth: [] as string[] }

  private constructor (readonly options: LabOptions, tmp: string, netns: boolean, subnet: string | undefined) {
    this.tag = options.tag
    this.netns = netns
    this.subnet = subnet
    this.bridgeAddr = subnet !== undefined ? `${subnet}.254` : undefined
    this.tmp = tmp
    this.mapFile = join(tmp, 'hpc.map')
    this.keyFile = join(tmp, 'hpc.key')
  }

  /** Bring up the lab (and, unless start:false, every daemon, waiting until each is ready). */
  static async create (options: LabOptions): Promise<Lab> {
    const { tag, nodes: n } = options
    if (!TAG_RE.test(tag)) throw new Error(`lab tag "${tag}" must be 1..8 characters [a-z0-9]`)
    if (!Number.isInteger(n) || n < 1 || n > 250) throw new Error(`lab nodes must be 1..250, not ${n}`)
    const netns = options.netns ?? isRoot()
    if (netns && !isRoot()) throw new Error('network namespaces need root')
    if (netns) for (const c of ['ip', 'nsenter']) if (!haveCommand(c)) throw new Error(`${c} not found (apt-get install iproute2 util-linux)`)
    await cleanupStale(tag)
    const subnet = netns ? (options.subnet ?? await pickSubnet(tag)) : undefined
    if (subnet !== undefined && !/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`subnet "${subnet}" must be three octets, e.g. 10.77.3`)
    claimTag(tag, netns)
    const tmp = await mkdtemp(join(tmpdir(), `hpcfs-lab-${tag}-`)).catch(e => { rmSync(stateFile(tag), { force: true }); throw e })
    const lab = new Lab(options, tmp, netns, subnet)
    live.add(lab)
    installHooks(options.handleSignals !== false)
    try {
      await lab.setup()
      if (options.start !== false) await lab.startAll()
    } catch (e) {
      await lab.destroy().catch(err => debug('destroy after failed create: %s', (err as Error).message))
      throw e
    }
    return lab
  }

  private async setup (): Promise<void> {
    const o = this.options
    const n = o.nodes
    const names = labNames(this.tag)
    const ports = this.netns
      ? Array.from({ length: n }, () => o.port ?? DEFAULT_PORT)
      : o.port !== undefined ? Array.from({ length: n }, (_, k) => o.port! + k) : await freeUdpPorts(n)
    const mountRoot = o.mountRoot ?? join(this.tmp, 'mnt')
    if (o.logDir !== undefined) await mkdir(o.logDir, { recursive: true })
    for (let id = 1; id <= n; id++) {
      // Mount points as /proc/self/mountinfo shows them: the parent directory without symlinks.
      const want = resolve(o.mount ? o.mount(id) : join(mountRoot, `node${id}`))
      await mkdir(dirname(want), { recursive: true })
      const mount = join(await realpath(dirname(want)), basename(want))
      this.nodes.push(new LabNode(this, {
        id,
        addr: this.netns ? `${this.subnet}.${id}` : '127.0.0.1',
        port: ports[id - 1],
        ns: this.netns ? names.ns(id) : undefined,
        mount,
        mapFile: this.mapFile,
        keyFile: this.keyFile,
        logFile: join(o.logDir ?? this.tmp, `node${id}.log`)
      }))
    }
    // Mount points: create the missing ones (and remember them, to remove them at the end).
    for (const nd of this.nodes) {
      if (await isMounted(nd.mount)) continue
      const exists = await stat(nd.mount).then(() => true, () => false)
      if (!exists) {
        await mkdir(nd.mount, { recursive: true })
        this.createdDirs.push(nd.mount)
      }
    }
    const map = this.netns
      ? `# hpcfs lab ${this.tag}: ${n} nodes in network namespaces\n1 ${this.subnet}.1 ${n}\n`
      : `# hpcfs lab ${this.tag}: ${n} nodes on loopback\n` + this.nodes.map(nd => `${nd.id} 127.0.0.1:${nd.port} 1`).join('\n') + '\n'
    await writeFile(this.mapFile, map)
    await writeFile(this.keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 })
    this.saveState()
    if (!this.netns) return

    // Bridge with the host's address, then one namespace + veth per node.
    await must('ip', ['link', 'add', names.bridge, 'type', 'bridge'])
    this.setupDone.bridge = true
    await must('ip', ['addr', 'add', `${this.bridgeAddr}/24`, 'dev', names.bridge])
    await must('ip', ['link', 'set', names.bridge, 'up'])
    for (const nd of this.nodes) {
      const ns = nd.ns!
      const veth = names.veth(nd.id)
      await must('ip', ['netns', 'add', ns])
      this.setupDone.ns.push(ns)
      await must('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      this.setupDone.veth.push(veth)
      await must('ip', ['link', 'set', veth, 'master', names.bridge, 'up'])
      await must('ip', ['-n', ns, 'addr', 'add', `${nd.addr}/24`, 'dev', 'eth0'])
      await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    }
    debug('lab %s: %d namespaces on %s (%s.0/24)', this.tag, n, names.bridge, this.subnet)
  }

  /** Start every node that is not running, up to 8 at a time, and wait until all are ready. */
  async startAll (): Promise<void> {
    const todo = this.nodes.filter(nd => !nd.running)
    const worker = async (): Promise<void> => {
      for (let nd = todo.shift(); nd !== undefined; nd = todo.shift()) await nd.start()
    }
    await Promise.all(Array.from({ length: Math.min(8, todo.length) }, worker))
  }

  /** Node by id (1..N). */
  node (id: number): LabNode {
    const nd = this.nodes[id - 1]
    if (nd === undefined) throw new Error(`no node ${id} in lab ${this.tag} (1..${this.nodes.length})`)
    return nd
  }

  /** Run a command inside node `id`'s network namespace (plain child in loopback mode), with a timeout. */
  async exec (id: number, cmd: string, args: string[] = [], opts: { timeoutMs?: number, input?: string } = {}): Promise<RunResult> {
    const w = this.node(id).wrap(cmd, args)
    return await run(w.cmd, w.args, { timeoutMs: opts.timeoutMs ?? 10_000, input: opts.input })
  }

  /** Start a long-running command inside node `id`'s namespace; it is killed by destroy(). */
  spawn (id: number, cmd: string, args: string[] = [], opts: { stdio?: 'pipe' | 'inherit' | 'ignore', env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    const w = this.node(id).wrap(cmd, args)
    const child = spawn(w.cmd, w.args, { stdio: opts.stdio ?? 'pipe', env: { ...process.env, ...opts.env }, cwd: REPO_ROOT })
    this.execChildren.add(child)
    child.once('exit', () => this.execChildren.delete(child))
    return child
  }

  /**
   * Drop `percent` % of the UDP packets arriving at node `id` (0 removes the rule). Needs
   * namespaces and `nft` (nftables); throws when neither nft nor tc netem can do it.
   */
  async dropPackets (id: number, percent: number): Promise<void> {
    const nd = this.node(id)
    if (nd.ns === undefined) throw new Error('dropPackets needs namespace mode')
    if (!(percent >= 0 && percent <= 100)) throw new Error(`percent must be 0..100, not ${percent}`)
    if (haveCommand('nft')) {
      await this.exec(id, 'nft', ['delete', 'table', 'inet', 'hpclab'])
      if (percent === 0) return
      const rules = 'table inet hpclab {\n chain in {\n  type filter hook input priority 0; policy accept;\n' +
        `  meta l4proto udp ${percent >= 100 ? '' : `numgen random mod 100 < ${Math.max(1, Math.round(percent))} `}drop\n }\n}\n`
      const r = await this.exec(id, 'nft', ['-f', '-'], { input: rules })
      if (r.code !== 0) throw new Error(`nft: ${r.stderr.trim()}`)
      return
    }
    await this.exec(id, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root'])
    if (percent === 0) return
    const r = await this.exec(id, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'loss', `${percent}%`])
    if (r.code !== 0) throw new Error(`dropPackets: no nft, and tc netem failed: ${r.stderr.trim()} (apt-get install nftables)`)
  }

  /** Cut node `id` off the bridge (true) or reconnect it (false); namespace mode only. */
  async partition (id: number, cut = true): Promise<void> {
    const nd = this.node(id)
    if (nd.ns === undefined) throw new Error('partition needs namespace mode')
    await must('ip', ['link', 'set', labNames(this.tag).veth(id), cut ? 'down' : 'up'])
  }

  /**
   * Wait until every node in `via` (default: all running nodes) sees every node in `expect`
   * (default: all) with status bit 2 (up) in <mount>/nodes/<id>/status.
   */
  async waitAllUp (opts: { via?: number[], expect?: number[], timeoutMs?: number } = {}): Promise<void> {
    const via = opts.via ?? this.nodes.filter(nd => nd.running).map(nd => nd.id)
    const expect = opts.expect ?? this.nodes.map(nd => nd.id)
    let last = ''
    try {
      await poll('all nodes up', async () => {
        const views = await Promise.all(via.map(async v => {
          const st = await this.readStatuses(v, expect)
          return { v, st }
        }))
        last = views.map(({ v, st }) => `node ${v} sees ${expect.map((e, k) => `${e}:${st[k] ?? '?'}`).join(' ')}`).join('; ')
        return views.every(({ st }) => st.every(s => s !== undefined && (s & 2) !== 0))
      }, { timeoutMs: opts.timeoutMs ?? 30_000, everyMs: 250 })
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${last}`)
    }
  }

  /** nodes/<id>/status as numbers (undefined where unreadable), read in one child with a timeout. */
  async readStatuses (via: number, ids: number[]): Promise<Array<number | undefined>> {
    const mount = this.node(via).mount
    const files = ids.map(id => join(mount, 'nodes', String(id), 'status'))
    const r = await run('sh', ['-c', 'for f; do v=$(cat "$f" 2>/dev/null) || v=x; echo "$v"; done', 'sh', ...files], { timeoutMs: 5000 })
    const lines = r.stdout.split('\n')
    return ids.map((_, k) => /^-?\d+$/.test((lines[k] ?? '').trim()) ? Number(lines[k].trim()) : undefined)
  }

  /** Record what a later cleanupStale(tag) must remove if this process dies without destroy(). */
  saveState (): void {
    if (this.destroyed) return
    const st: LabState = {
      tag: this.tag,
      tmp: this.tmp,
      netns: this.netns,
      mounts: this.nodes.map(nd => nd.mount),
      pids: this.nodes.filter(nd => nd.pid !== undefined).map(nd => ({ pid: nd.pid!, start: pidStartTime(nd.pid!) })),
      owner: me()
    }
    try {
      writeFileSync(stateFile(this.tag), JSON.stringify(st) + '\n')
    } catch (e) {
      debug('saveState: %s', (e as Error).message)
    }
  }

  /** Stop every daemon and remove every mount, namespace, veth, bridge and temp file. Idempotent. */
  async destroy (): Promise<void> {
    if (this.destroying) return await this.destroying
    this.destroying = this.doDestroy()
    return await this.destroying
  }

  private async doDestroy (): Promise<void> {
    debug('lab %s: destroy', this.tag)
    const errors: string[] = []
    await Promise.allSettled(this.nodes.map(async nd => await nd.stop(5000).catch(e => { errors.push((e as Error).message) })))
    this.destroyed = true
    for (const c of this.execChildren) c.kill('SIGKILL')
    for (const nd of this.nodes) await unmountIfMounted(nd.mount).catch(e => { errors.push((e as Error).message) })
    if (this.netns) await removeNetwork(this.tag).catch(e => { errors.push((e as Error).message) })
    for (const d of this.createdDirs.reverse()) await rmdir(d).catch(() => undefined)
    await rm(this.tmp, { recursive: true, force: true }).catch(() => undefined)
    await rm(stateFile(this.tag), { force: true }).catch(() => undefined)
    live.delete(this)
    maybeRemoveSignalHandlers()
    if (errors.length > 0) throw new Error(`lab ${this.tag}: destroy: ${errors.join('; ')}`)
  }

  /** Synchronous best-effort teardown for process 'exit' (no waiting for graceful exits). */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const nd of this.nodes) nd.kill('SIGKILL')
    for (const c of this.execChildren) c.kill('SIGKILL')
    for (const nd of this.nodes) unmountSync(nd.mount)
    if (this.netns) {
      const names = labNames(this.tag)
      for (const nd of this.nodes) {
        runSyncQuiet('ip', ['netns', 'del', names.ns(nd.id)])
        runSyncQuiet('ip', ['link', 'del', names.veth(nd.id)])
      }
      runSyncQuiet('ip', ['link', 'del', names.bridge])
    }
    for (const d of this.createdDirs.reverse()) try { rmdirSync(d) } catch {}
    try { rmSync(this.tmp, { recursive: true, force: true }) } catch {}
    try { rmSync(stateFile(this.tag), { force: true }) } catch {}
    live.delete(this)
  }
}

/** Kill what is left in the tag's namespaces, delete namespaces, veths and the bridge. */
async function removeNetwork (tag: string): Promise<void> {
  const names = labNames(tag)
  const nsRe = new RegExp(`^hpc-${tag}-\\d+$`)
  const vethRe = new RegExp(`^hv-${tag}-\\d+$`)
  const nss = (await netnsList()).filter(ns => nsRe.test(ns))
  const pids = (await Promise.all(nss.map(netnsPids))).flat().filter(p => p !== process.pid)
  for (const p of pids) try { process.kill(p, 'SIGKILL') } catch {}
  if (pids.length > 0) await poll('namespace processes gone', () => pids.every(p => !pidAlive(p)), { timeoutMs: 5000 }).catch(() => undefined)
  for (const ns of nss) await run('ip', ['netns', 'del', ns])
  for (const l of await linkList()) {
    if (vethRe.test(l) || l === names.bridge) await run('ip', ['link', 'del', l])
  }
  const left = [...(await netnsList()).filter(ns => nsRe.test(ns)), ...(await linkList()).filter(l => vethRe.test(l) || l === names.bridge)]
  if (left.length > 0) throw new Error(`could not remove ${left.join(', ')}`)
}

/**
 * Record this process as the tag's owner, atomically: a second process that passed cleanupStale at
 * the same moment finds the file and gets a LabBusyError.
 */
function claimTag (tag: string, netns: boolean): void {
  const st: LabState = { tag, tmp: '', netns, mounts: [], pids: [], owner: me() }
  try {
    writeFileSync(stateFile(tag), JSON.stringify(st) + '\n', { flag: 'wx' })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    const other = readState(tag)
    throw new LabBusyError(tag, other?.owner ?? { pid: 0, command: 'unknown' }, other?.mounts ?? [])
  }
}

function readState (tag: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(tag), 'utf8')) as LabState
  } catch {
    return undefined
  }
}

/** The lab of this tag when another process that still runs owns it (as cleanupStale would refuse). */
export function labOwner (tag: string): { owner: LabOwner, mounts: string[] } | undefined {
  const st = readState(tag)
  return ownerAlive(st?.owner) ? { owner: st.owner, mounts: st.mounts } : undefined
}

/**
 * Remove the leftovers of an earlier run with this tag that died without destroy(): its daemons
 * (pids recorded in the state file, checked by start time, and any process in its namespaces),
 * mounts, namespaces, veths, bridge and temp dir. Called by Lab.create(); safe when nothing is left. A lab whose owner still runs is not
 * stale: LabBusyError, and nothing is touched.
 */
export async function cleanupStale (tag: string): Promise<void> {
  if (!TAG_RE.test(tag)) throw new Error(`bad lab tag "${tag}"`)
  for (const lab of live) if (lab.tag === tag && !lab.destroyed) throw new Error(`lab ${tag} is live in this process`)
  const st = readState(tag)
  if (ownerAlive(st?.owner)) throw new LabBusyError(tag, st.owner, st.mounts)
  if (st !== undefined) {
    debug('cleanupStale %s: state file found (%d pids)', tag, st.pids.length)
    const pids = st.pids.filter(p => pidAlive(p.pid) && (p.start === undefined || pidStartTime(p.pid) === p.start)).map(p => p.pid)
    for (const p of pids) try { process.kill(p, 'SIGKILL') } catch {}
    if (pids.length > 0) await poll('stale daemons gone', () => pids.every(p => !pidAlive(p)), { timeoutMs: 5000 }).catch(() => undefined)
    for (const m of st.mounts) await unmountIfMounted(m).catch(e => debug('cleanupStale: %s', (e as Error).message))
  }
  if (isRoot()) await removeNetwork(tag)
  if (st !== undefined) {
    if (st.tmp.startsWith(join(tmpdir(), 'hpcfs-lab-')) && existsSync(st.tmp)) await rm(st.tmp, { recursive: true, force: true })
    await rm(stateFile(tag), { force: true })
  }
}

export { sleep, poll }
