// hpcd --gui: the web GUI, served by the daemon over node:http. Reads go to the same core as the
// tree (src/gui/model.ts); the page gets the state once per interval and every migration event as
// Server-Sent Events (GET /api/events: plain `event:`/`data:` lines over one long response, which
// browsers reconnect by themselves). Changes are small JSON POSTs that carry a token
// (src/gui/auth.ts) and call the core exactly as the tree's files do: the speed as admin/speed
// (HpcNode.setSpeed), a move as proc/<pid>/goto (Migrator.requestMove; `balance` through the
// scheduler's placement). Errors are the core's errno errors, as JSON with an HTTP status.
//
//   GET  /                      the page (src/gui/public), /vendor/uPlot.* from the uplot package
//   GET  /api/state             ClusterState (model.ts) with the token directory and interval
//   GET  /api/events            SSE: `hello` (state, history, recent events), then `state`, `migration`
//   GET  /api/whoami            the uid of the request's token and what it may change
//   GET  /api/procs/<pid>/costs the scheduler's explanation (the text of proc/<pid>/costs too)
//   POST /api/speed             {"speed": N}                         root or the daemon's user
//   POST /api/procs/<pid>/move  {"target": N | "home" | "balance"}   root or the process's owner
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import debug from '../util/log.js'
import type { HpcNode } from '../core/node.js'
import type { MigrationEvent, MigrationLog } from '../metrics/migrations.js'
import { ErrnoError, notRunning, type ErrnoName } from '../util/errno.js'
import { listen, shut, type ListenAddr } from '../util/listen.js'
import { readUids } from '../util/procfs.js'
import { mayChangeNode, mayMove, TokenStore } from './auth.js'
import { LoadHistory } from './history.js'
import { clusterState, commandOf, explanationOf, nodeStates } from './model.js'
import { NODE_ID } from '../config.js'

const log = debug('hpcfs:gui')

export interface GuiOptions {
  /** ms between state pushes and history samples (the gossip interval) */
  intervalMs: number
  tokenDir: string
  historySamples: number
}

interface Asset { type: string, body: Buffer }

const here = dirname(fileURLToPath(import.meta.url))
/** The page's sources, served as they are (no build step): src/gui/public from dist/src/gui. */
export const PUBLIC_DIR = join(here, '..', '..', '..', 'src', 'gui', 'public')

function loadAssets (): Map<string, Asset> {
  const uplot = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist')
  const files: Array<[string, string, string]> = [
    ['/', join(PUBLIC_DIR, 'index.html'), 'text/html; charset=utf-8'],
    ['/app.js', join(PUBLIC_DIR, 'app.js'), 'text/javascript; charset=utf-8'],
    ['/app.css', join(PUBLIC_DIR, 'app.css'), 'text/css; charset=utf-8'],
    ['/vendor/uPlot.iife.min.js', join(uplot, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/vendor/uPlot.min.css', join(uplot, 'uPlot.min.css'), 'text/css; charset=utf-8']
  ]
  return new Map(files.map(([path, file, type]) => [path, { type, body: readFileSync(file) }]))
}

const STATUS_OF: Partial<Record<ErrnoName, number>> = { EINVAL: 400, EPERM: 403, EACCES: 403, ESRCH: 404, EAGAIN: 409, EHOSTUNREACH: 409, ENOSYS: 501 }

class HttpError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer'
}

const MAX_BODY = 4096

export class GuiServer {
  private readonly server: Server
  private readonly assets = loadAssets()
  readonly tokens: TokenStore
  private readonly history: LoadHistory
  private readonly streams = new Set<ServerResponse>()
  /** command lines of this node's processes as seen at home (a deputy shows none) */
  private readonly commands = new Map<number, string>()
  private timer: NodeJS.Timeout | undefined
  private readonly onEvent = (e: MigrationEvent): void => { this.broadcast('migration', e) }

  constructor (readonly node: HpcNode, readonly migrations: MigrationLog | null, readonly opts: GuiOptions) {
    this.tokens = new TokenStore(opts.tokenDir)
    this.history = new LoadHistory(opts.historySamples)
    this.server = createServer((req, res) => {
      this.route(req, res).catch(e => this.fail(res, e))
    })
  }

  async start (at: ListenAddr): Promise<void> {
    this.tokens.init()
    await listen(this.server, at)
    this.migrations?.on('event', this.onEvent)
    this.tick()
    log('GUI at http://%s:%d/ (tokens in %s)', at.host, at.port, this.opts.tokenDir)
  }

  /** The port it listens on (the one given, or the one the system chose for 0). */
  get port (): number {
    const a = this.server.address()
    return typeof a === 'object' && a !== null ? a.port : 0
  }

  async close (): Promise<void> {
    clearTimeout(this.timer)
    this.migrations?.off('event', this.onEvent)
    for (const s of this.streams) s.end()
    this.streams.clear()
    await shut(this.server)
    this.tokens.close()
  }

  /** Every interval: a history sample, tokens for new process owners, their command lines, the state to open pages. */
  private tick (): void {
    try {
      const live = this.streams.size > 0
      const state = live ? clusterState(this.node, this.commands) : null
      const nodes = state?.nodes ?? nodeStates(this.node)
      this.history.add(Date.now(), nodes)
      for (const p of this.node.migrator?.procs.values() ?? []) {
        const uid = readUids(p.pid)?.real
        if (uid !== undefined) this.tokens.issue(uid)
        if (!live && p.where === 'home' && !this.commands.has(p.pid)) commandOf(p.pid, this.commands)
      }
      if (state) this.broadcast('state', state)
    } catch (e) {
      log('tick: %s', (e as Error).message)
    }
    this.timer = setTimeout(() => this.tick(), this.opts.intervalMs)
    this.timer.unref()
  }

  private broadcast (event: string, data: unknown): void {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    for (const s of this.streams) s.write(text)
  }

  private send (res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body)
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) })
    res.end(text)
  }

  private fail (res: ServerResponse, e: unknown): void {
    if (res.headersSent) { res.destroy(); return }
    if (e instanceof HttpError) { this.send(res, e.status, { error: e.code, message: e.message }); return }
    if (e instanceof ErrnoError) { this.send(res, STATUS_OF[e.code] ?? 500, { error: e.code, message: e.message }); return }
    log('error: %s', (e as Error).stack)
    this.send(res, 500, { error: 'EIO', message: (e as Error).message })
  }

  /** The uid of the request's token; 401 without a valid one. */
  private caller (req: IncomingMessage): number {
    const m = /^Bearer\s+(\S+)$/.exec(req.headers.authorization ?? '')
    const uid = this.tokens.uidOf(m?.[1])
    if (uid === undefined) throw new HttpError(401, 'EACCES', `a change needs your token: the file ${this.opts.tokenDir}/<your uid> (readable by you only), sent as "Authorization: Bearer <token>"`)
    return uid
  }

  private async body (req: IncomingMessage): Promise<Record<string, unknown>> {
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'EINVAL', 'send JSON (Content-Type: application/json)')
    let size = 0
    const chunks: Buffer[] = []
    for await (const c of req) {
      size += (c as Buffer).length
      if (size > MAX_BODY) throw new HttpError(413, 'EINVAL', `body over ${MAX_BODY} bytes`)
      chunks.push(c as Buffer)
    }
    let v: unknown
    try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { throw new HttpError(400, 'EINVAL', 'body is not JSON') }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, 'EINVAL', 'body must be a JSON object')
    return v as Record<string, unknown>
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    const method = req.method ?? 'GET'
    if (method === 'GET' || method === 'HEAD') {
      const asset = this.assets.get(path === '/index.html' ? '/' : path)
      if (asset) {
        res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Content-Length': asset.body.length, 'Cache-Control': 'no-cache' })
        res.end(method === 'HEAD' ? undefined : asset.body)
        return
      }
      if (path === '/favicon.ico') { res.writeHead(204).end(); return }
      if (path === '/api/state') { this.send(res, 200, { ...clusterState(this.node, this.commands), tokenDir: this.opts.tokenDir, interval: this.opts.intervalMs }); return }
      if (path === '/api/events') { this.stream(req, res); return }
      if (path === '/api/whoami') {
        const m = /^Bearer\s+(\S+)$/.exec(req.headers.authorization ?? '')
        const uid = this.tokens.uidOf(m?.[1]) ?? null
        this.send(res, 200, { uid, mayChangeNode: uid !== null && mayChangeNode(uid), tokenDir: this.opts.tokenDir })
        return
      }
      const costs = /^\/api\/procs\/([1-9]\d{0,9})\/costs$/.exec(path)
      if (costs) { this.costs(res, Number(costs[1])); return }
      throw new HttpError(404, 'ENOENT', `no such page: ${path}`)
    }
    if (method === 'POST') {
      if (path === '/api/speed') { await this.setSpeed(req, res); return }
      const move = /^\/api\/procs\/([1-9]\d{0,9})\/move$/.exec(path)
      if (move) { await this.move(req, res, Number(move[1])); return }
      throw new HttpError(404, 'ENOENT', `no such action: ${path}`)
    }
    res.setHeader('Allow', 'GET, HEAD, POST')
    throw new HttpError(405, 'EINVAL', `method ${method} not allowed`)
  }

  private stream (req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' })
    const state = clusterState(this.node, this.commands)
    const hello = { state, history: this.history.all(), events: this.migrations?.events() ?? [], interval: this.opts.intervalMs, tokenDir: this.opts.tokenDir }
    res.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify(hello)}\n\n`)
    this.streams.add(res)
    req.on('close', () => this.streams.delete(res))
  }

  private costs (res: ServerResponse, pid: number): void {
    const b = this.node.balancer
    // no scheduler here: empty, as proc/<pid>/costs reads (util/errno.ts notRunning)
    const e = b?.explainAll().find(x => x.pid === pid)
    this.send(res, 200, { pid, text: b?.explain(pid) ?? '', explanation: e ? explanationOf(e) : null })
  }

  private async setSpeed (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const uid = this.caller(req)
    const body = await this.body(req)
    if (!mayChangeNode(uid)) throw new HttpError(403, 'EACCES', `uid ${uid} may not change this node (admin/ is root's)`)
    const speed = body.speed
    if (typeof speed !== 'number') throw new ErrnoError('EINVAL', 'speed: expected a number')
    this.node.setSpeed(speed) // EINVAL and unchanged when out of range, as admin/speed
    log('uid %d set the speed to %d', uid, speed)
    this.send(res, 200, { speed: this.node.speed })
  }

  private async move (req: IncomingMessage, res: ServerResponse, pid: number): Promise<void> {
    const uid = this.caller(req)
    const body = await this.body(req)
    const m = this.node.migrator
    if (!m) throw notRunning('process migration')
    if (!m.procs.has(pid)) throw new ErrnoError('ESRCH', `process ${pid} is not under cluster discipline here`)
    if (!mayMove(uid, pid)) throw new HttpError(403, 'EACCES', `uid ${uid} may not move process ${pid}: only its owner and root may`)
    const t = body.target
    let target: number | 'home'
    if (t === 'home' || t === 0) target = 'home'
    else if (t === 'balance') {
      const b = this.node.balancer
      if (!b) throw notRunning('the scheduler')
      target = b.place(pid)
    } else if (typeof t === 'number' && Number.isInteger(t) && t >= NODE_ID.min && t <= NODE_ID.max) target = t
    else throw new ErrnoError('EINVAL', 'target: expected a node id, "home" or "balance"')
    const done = m.requestMove(pid, target) // throws EINVAL/EAGAIN/EHOSTUNREACH/EPERM at once, as proc/<pid>/goto
    this.migrations?.noteRequest(pid, target === 'home' ? 0 : target, `gui uid ${uid}`, done)
    log('uid %d moves %d to %s', uid, pid, target)
    this.send(res, 202, { pid, target })
  }
}
