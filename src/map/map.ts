// The cluster map in openMosix `setpe` grammar (see docs/tools.md, setpe and The originals):
//
//   # comment
//   first-id  host-or-IP[:port]  count      count consecutive ids on consecutive last octets
//   id        alternate-IP       ALIAS      another address of an already listed node
//
// Ids are 1..65535, at most 256 table lines. `:port` is an hpcfs extension for clusters of
// several daemons on one address (the non-root demo); it is only allowed with count 1.
import { isIPv4 } from 'node:net'

export const MAX_ID = 65535
export const MAX_LINES = 256

export interface MapLine {
  first: number
  host: string
  port?: number
  count: number // 0 for an ALIAS line
}

export interface MapNode {
  id: number
  host: string
  port?: number
  aliases: string[]
}

export class MapError extends Error {
  constructor (readonly line: number, message: string) {
    super(line > 0 ? `line ${line}: ${message}` : message)
  }
}

function ipToInt (ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0)
}

export function intToIp (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

/** Parse map text; throws MapError naming the first bad line. */
export function parseMap (text: string): MapLine[] {
  const lines: MapLine[] = []
  text.split('\n').forEach((raw, i) => {
    const lineNo = i + 1
    const s = raw.replace(/#.*/, '').trim()
    if (s === '') return
    const f = s.split(/\s+/)
    if (f.length !== 3) throw new MapError(lineNo, `expected "first-id address count", got "${s}"`)
    const [idS, addrS, countS] = f
    if (!/^\d+$/.test(idS)) throw new MapError(lineNo, `bad node id "${idS}"`)
    const first = Number(idS)
    if (first < 1 || first > MAX_ID) throw new MapError(lineNo, `node id ${first} out of range 1..${MAX_ID}`)
    let host = addrS
    let port: number | undefined
    const m = /^(.*):(\d+)$/.exec(addrS)
    if (m) {
      host = m[1]
      port = Number(m[2])
      if (port < 1 || port > 65535) throw new MapError(lineNo, `bad port ${m[2]}`)
    }
    if (host === '' || /\s/.test(host)) throw new MapError(lineNo, `bad address "${addrS}"`)
    let count: number
    if (countS.toUpperCase() === 'ALIAS') count = 0
    else if (/^\d+$/.test(countS) && Number(countS) >= 1) count = Number(countS)
    else throw new MapError(lineNo, `bad count "${countS}" (a positive number or ALIAS)`)
    if (count > 1) {
      if (!isIPv4(host)) throw new MapError(lineNo, `a count above 1 needs an IPv4 address, not "${host}"`)
      if (port !== undefined) throw new MapError(lineNo, 'a port is only allowed with count 1')
      if (first + count - 1 > MAX_ID) throw new MapError(lineNo, `ids ${first}..${first + count - 1} exceed ${MAX_ID}`)
      if ((ipToInt(host) & 255) + count - 1 > 255) throw new MapError(lineNo, `${count} addresses from ${host} run past the last octet`)
    }
    lines.push({ first, host, port, count })
    if (lines.length > MAX_LINES) throw new MapError(lineNo, `more than ${MAX_LINES} table lines`)
  })
  return lines
}

/** Expand lines into nodes; checks duplicate ids and addresses, and that ALIAS names a listed id. */
export function expandMap (lines: MapLine[]): Map<number, MapNode> {
  const nodes = new Map<number, MapNode>()
  const seen = new Map<string, number>()
  const claim = (key: string, id: number): void => {
    const other = seen.get(key)
    if (other !== undefined && other !== id) throw new MapError(0, `address ${key} given to both node ${other} and node ${id}`)
    seen.set(key, id)
  }
  for (const l of lines) {
    if (l.count === 0) continue
    for (let k = 0; k < l.count; k++) {
      const id = l.first + k
      if (nodes.has(id)) throw new MapError(0, `node ${id} listed twice`)
      const host = l.count > 1 ? intToIp(ipToInt(l.host) + k) : l.host
      claim(`${host}:${l.port ?? ''}`, id)
      nodes.set(id, { id, host, port: l.port, aliases: [] })
    }
  }
  for (const l of lines) {
    if (l.count !== 0) continue
    const n = nodes.get(l.first)
    if (!n) throw new MapError(0, `ALIAS for node ${l.first}, which is not listed`)
    claim(`${l.host}:${l.port ?? ''}`, l.first)
    n.aliases.push(l.port !== undefined ? `${l.host}:${l.port}` : l.host)
  }
  return nodes
}

/** Render nodes back to map text, folding runs of consecutive ids on consecutive addresses. */
export function formatMap (nodes: Iterable<MapNode>): string {
  const sorted = [...nodes].sort((a, b) => a.id - b.id)
  const out: string[] = []
  let i = 0
  while (i < sorted.length) {
    const a = sorted[i]
    let count = 1
    if (isIPv4(a.host) && a.port === undefined) {
      while (i + count < sorted.length) {
        const b = sorted[i + count]
        if (b.id !== a.id + count || b.port !== undefined || !isIPv4(b.host)) break
        if (ipToInt(b.host) !== ipToInt(a.host) + count || (ipToInt(a.host) & 255) + count > 255) break
        count++
      }
    }
    out.push(`${a.id} ${a.host}${a.port !== undefined ? ':' + a.port : ''} ${count}`)
    i += count
  }
  for (const n of sorted) for (const al of n.aliases) out.push(`${n.id} ${al} ALIAS`)
  return out.join('\n') + (out.length ? '\n' : '')
}

/** openMosix omdiscd rule: node id = last two octets of the IPv4 address (0 is not a valid id). */
export function idFromAddress (ip: string): number {
  if (!isIPv4(ip)) return 0
  return ipToInt(ip) & 0xffff
}
