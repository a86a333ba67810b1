// Listening addresses of the daemon's HTTP servers (hpcd --gui-addr, --metrics): `HOST:PORT`,
// `[IPv6]:PORT` or a bare `PORT` (on the given default host); and starting/stopping such a server.
import { isIP } from 'node:net'
import type { Server } from 'node:http'

export interface ListenAddr { host: string, port: number }

/** Parses `HOST:PORT`, `[V6]:PORT` or `PORT`; throws an Error naming `what` on anything else. */
export function parseListen (text: string, defaultHost: string, what: string): ListenAddr {
  const s = text.trim()
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d+)$/.exec(s) ?? /^()()(\d+)$/.exec(s)
  if (!m) throw new Error(`${what}: expected HOST:PORT or PORT, got "${text}"`)
  const host = m[1] || m[2] || defaultHost
  const port = Number(m[3])
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what}: port ${m[3]} is outside 1..65535`)
  if (host !== 'localhost' && isIP(host) === 0) throw new Error(`${what}: "${host}" is not an IP address (or localhost)`)
  return { host, port }
}

export const formatListen = (a: ListenAddr): string => isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`

/** Starts listening; rejects with the listen error (EADDRINUSE, EADDRNOTAVAIL...). */
export async function listen (server: Server, a: ListenAddr): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(a.port, a.host, () => { server.off('error', reject); resolve() })
  })
}

/** Stops accepting and ends every open connection (streams included). */
export async function shut (server: Server): Promise<void> {
  const closed = new Promise<void>(resolve => server.close(() => resolve()))
  server.closeAllConnections()
  await closed
}
