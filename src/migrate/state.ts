// What a node keeps about each of its guests so that they survive a crash and restart of its
// daemon: one JSON record per guest, <stateDir>/<node id>/guests/<pid>.json (config stateDir,
// default /run/hpcfs), written when it arrives or changes and removed when it leaves or ends; with
// it, while it leaves, the copy of its image (<pid>.img), so that it is not lost if the daemon dies
// after the dump but before the image has arrived where it goes. A
// daemon started again loads them and attaches to each guest through its keeper (src/ppm/keeper.ts),
// then rejoins its home (guest.ts). The directory is root's alone (0700): a record names processes
// the daemon will signal and attach to, and the keeper's pid is checked with its start time.
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import debug from '../util/log.js'
import type { KeepInfo } from '../ppm/ppm.js'

const log = debug('hpcfs:state')

/** One guest, as a daemon started again needs it. */
export interface GuestRecord {
  /** its pid here */
  pid: number
  home: number
  homePid: number
  stdin: 'pull' | 'none'
  /** seconds it had run when it arrived; when it arrived (ms since the epoch) */
  age: number
  since: number
  decay: { rate: 'slow' | 'fast', kind: '' | 'cpujob' | 'iojob', perMille?: number, interval?: number }
  /** where its keeper is */
  keeper: KeepInfo
  /** restored, waiting for home's `run` */
  held: boolean
  /** being dumped to leave (a process found dead by SIGKILL then left with its image) */
  leaving: boolean
  /** bytes of each input fd written into its pipes here ([fd, bytes] pairs; ack.ts InLog) */
  inGot?: Array<[number, number]>
}

const isInt = (v: unknown, min = 0): v is number => Number.isSafeInteger(v) && (v as number) >= min
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)

/** The record a parsed JSON value is, or null. */
export function toRecord (v: unknown): GuestRecord | null {
  if (typeof v !== 'object' || v === null) return null
  const o = v as Record<string, unknown>
  const k = o.keeper as Record<string, unknown> | null | undefined
  const d = o.decay as Record<string, unknown> | null | undefined
  const fds = (typeof k === 'object' && k !== null ? k.fds : null) as Record<string, unknown> | null
  const ok = isInt(o.pid, 2) && isInt(o.home, 1) && isInt(o.homePid, 1) && (o.stdin === 'pull' || o.stdin === 'none') &&
    isNum(o.age) && isNum(o.since) && typeof o.held === 'boolean' && typeof o.leaving === 'boolean' &&
    typeof d === 'object' && d !== null && (d.rate === 'slow' || d.rate === 'fast') && (d.kind === '' || d.kind === 'cpujob' || d.kind === 'iojob') &&
    (d.perMille === undefined || isInt(d.perMille)) && (d.interval === undefined || isInt(d.interval, 1)) &&
    typeof k === 'object' && k !== null && k.pid === o.pid && isInt(k.helper, 2) && typeof k.start === 'string' &&
    typeof fds === 'object' && fds !== null && ['in', 'out', 'err', 'ctl', 'cmd'].every(f => isInt(fds[f], 3)) &&
    relaysOk(k.relays, k.helper) &&
    (o.inGot === undefined || (Array.isArray(o.inGot) && o.inGot.every(e => Array.isArray(e) && e.length === 2 && isInt(e[0]) && isInt(e[1]))))
  return ok ? v as GuestRecord : null
}

/** The keeper's relay ends (relay.ts), if any: each an fd above 2 and paths of the keeper's own fds. */
function relaysOk (v: unknown, helper: unknown): boolean {
  if (v === undefined) return true
  const path = (p: unknown): boolean => p === null || (typeof p === 'string' && new RegExp(`^/proc/${String(helper)}/fd/\\d+$`).test(p))
  return Array.isArray(v) && v.every(e => typeof e === 'object' && e !== null && isInt((e as Record<string, unknown>).fd, 3) &&
    path((e as Record<string, unknown>).read) && path((e as Record<string, unknown>).write))
}

/** The guest records of one node (dir null: none are kept, e.g. in unit tests). */
export class GuestStates {
  constructor (readonly dir: string | null) {}

  /** <stateDir>/<node>/guests */
  static forNode (stateDir: string, node: number): GuestStates {
    return new GuestStates(join(stateDir, String(node), 'guests'))
  }

  /** Writes (or rewrites) a guest's record; false when it could not (logged: the guest then does not survive a restart). */
  save (r: GuestRecord): boolean {
    if (this.dir === null) return true
    const tmp = join(this.dir, `.${r.pid}.json.tmp`)
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      writeFileSync(tmp, JSON.stringify(r) + '\n', { mode: 0o600 })
      renameSync(tmp, join(this.dir, `${r.pid}.json`))
      return true
    } catch (e) {
      rmSync(tmp, { force: true }) // (a disk that filled up leaves no half record)
      log('cannot save the record of guest %d: %s', r.pid, (e as Error).message)
      return false
    }
  }

  remove (pid: number): void {
    if (this.dir !== null) for (const f of [`${pid}.json`, `${pid}.out`]) rmSync(join(this.dir, f), { force: true })
  }

  /** Where a guest's output is kept until home has it (ack.ts GuestOutput.persist; null: no directory). */
  spillPath (pid: number): string | null {
    if (this.dir === null) return null
    mkdirSync(this.dir, { recursive: true, mode: 0o700 }) // (a node's first guest: before its record)
    return join(this.dir, `${pid}.out`)
  }

  /** Where the copy of a leaving guest's image is kept (null: no directory, a nameless file then). */
  imagePath (pid: number): string | null {
    if (this.dir === null) return null
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    return join(this.dir, `${pid}.img`)
  }

  /** Every valid record; a file that is not one is removed. */
  load (): GuestRecord[] {
    if (this.dir === null) return []
    let names: string[]
    try { names = readdirSync(this.dir) } catch { return [] }
    const out: GuestRecord[] = []
    for (const name of names) {
      const path = join(this.dir, name)
      if (/^\d+\.(img|out)$/.test(name)) {
        // a copy (or spilled output) is needed only by its guest's record
        if (!names.includes(name.replace(/(img|out)$/, 'json'))) rmSync(path, { force: true })
        continue
      }
      let r: GuestRecord | null = null
      if (/^\d+\.json$/.test(name)) { try { r = toRecord(JSON.parse(readFileSync(path, 'utf8'))) } catch {} }
      if (r !== null && `${r.pid}.json` === name) out.push(r)
      else { log('dropping %s: not a guest record', path); rmSync(path, { force: true }) }
    }
    return out
  }
}
