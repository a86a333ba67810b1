// What the daemon remembers of process migration over time, from the migrator's public side only:
// its 'moved' events (a process of this node arrived somewhere: a node id, or 0 = back home) and
// its process entries (`procs`: where each is, and the reason its last move failed). The GUI shows
// the recent events live; the metrics endpoint exports the counters.
//
// A failure has no event: it is seen when a process's `lastError` turns non-empty, sampled every
// interval (a move started and failed again within one interval counts once), except for moves
// asked for through `noteRequest`, whose outcome is awaited and counted exactly.
import { EventEmitter } from 'node:events'
import debug from '../util/log.js'
import type { Migrator } from '../migrate/migrator.js'

const log = debug('hpcfs:metrics')

/** One entry of the migration log. `from`/`to`: node ids, 0 = home. */
export interface MigrationEvent {
  /** ms since the epoch */
  t: number
  pid: number
  kind: 'requested' | 'moved' | 'failed'
  from?: number
  to?: number
  /** what asked for it ('gui') or why it failed */
  detail?: string
}

export class MigrationLog extends EventEmitter {
  /** Arrivals by destination node id (0 = home). */
  readonly moves = new Map<number, number>()
  failures = 0
  private readonly recent: MigrationEvent[] = []
  /** Last node each process was seen arriving at (absent: home). */
  private readonly at = new Map<number, number>()
  /** The lastError seen for each process at the previous sample. */
  private readonly errors = new Map<number, string>()
  private readonly timer: NodeJS.Timeout
  private readonly onMoved = (pid: number, node: number): void => {
    const from = this.at.get(pid) ?? 0
    if (node === 0) this.at.delete(pid); else this.at.set(pid, node)
    this.moves.set(node, (this.moves.get(node) ?? 0) + 1)
    this.errors.set(pid, '')
    this.push({ t: Date.now(), pid, kind: 'moved', from, to: node })
  }

  constructor (readonly migrator: Migrator, intervalMs: number, readonly keep = 200) {
    super()
    migrator.on('moved', this.onMoved)
    this.timer = setInterval(() => this.sample(), intervalMs)
    this.timer.unref()
  }

  close (): void {
    clearInterval(this.timer)
    this.migrator.off('moved', this.onMoved)
  }

  /** The events kept, oldest first. */
  events (): MigrationEvent[] { return [...this.recent] }

  private push (e: MigrationEvent): void {
    this.recent.push(e)
    if (this.recent.length > this.keep) this.recent.splice(0, this.recent.length - this.keep)
    log('%s %d %s', e.kind, e.pid, e.detail ?? '')
    this.emit('event', e)
  }

  private failed (pid: number, reason: string, to?: number): void {
    this.failures++
    this.errors.set(pid, reason)
    this.push({ t: Date.now(), pid, kind: 'failed', from: this.at.get(pid) ?? 0, to, detail: reason })
  }

  /** Looks for moves that failed since the last sample; forgets processes that are gone. */
  sample (): void {
    for (const [pid, p] of this.migrator.procs) {
      const seen = this.errors.get(pid) ?? ''
      if (p.lastError !== '' && p.lastError !== seen) this.failed(pid, p.lastError)
      else if (p.lastError === '') this.errors.set(pid, '')
    }
    for (const pid of this.errors.keys()) if (!this.migrator.procs.has(pid)) { this.errors.delete(pid); this.at.delete(pid) }
  }

  /** Records a move asked for by `by` and counts its outcome when it settles. */
  noteRequest (pid: number, to: number, by: string, done: Promise<void>): void {
    this.push({ t: Date.now(), pid, kind: 'requested', from: this.at.get(pid) ?? 0, to, detail: by })
    void done.then(() => {
      const p = this.migrator.procs.get(pid)
      if (p && p.lastError !== '' && p.lastError !== this.errors.get(pid)) this.failed(pid, p.lastError, to)
    })
  }
}
