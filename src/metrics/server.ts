// hpcd --metrics ADDR:PORT: the Prometheus endpoint. GET /metrics answers one scrape in the text
// format, read from the core at the time of the request; anything else is 404 (or 405 for another
// method). Read-only: it changes nothing, so it needs no access check beyond where it listens.
import { createServer, type Server } from 'node:http'
import debug from '../util/log.js'
import type { HpcNode } from '../core/node.js'
import { listen, shut, type ListenAddr } from '../util/listen.js'
import { collectMetrics } from './collect.js'
import type { MigrationLog } from './migrations.js'
import { CONTENT_TYPE, formatMetrics } from './prom.js'

const log = debug('hpcfs:metrics')

export class MetricsServer {
  private readonly server: Server
  scrapes = 0

  constructor (readonly node: HpcNode, readonly migrations: MigrationLog | null) {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (path !== '/metrics') { res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: the metrics are at /metrics\n'); return }
      if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('GET only\n'); return }
      let body: string
      try {
        body = formatMetrics(collectMetrics(this.node, this.migrations))
      } catch (e) {
        log('scrape failed: %s', (e as Error).message)
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${(e as Error).message}\n`)
        return
      }
      this.scrapes++
      res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' })
      res.end(req.method === 'HEAD' ? undefined : body)
    })
  }

  async start (at: ListenAddr): Promise<void> {
    await listen(this.server, at)
    log('metrics at %s:%d', at.host, at.port)
  }

  /** The port it listens on (the one given, or the one the system chose for 0). */
  get port (): number {
    const a = this.server.address()
    return typeof a === 'object' && a !== null ? a.port : 0
  }

  async close (): Promise<void> { await shut(this.server) }
}
