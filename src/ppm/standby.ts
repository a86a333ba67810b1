// Helpers started ahead (`hpc-ppm-helper standby`, docs/ppm.md), one of each kind, so that a move
// starts none on its path: spawning one holds the daemon's event loop for milliseconds, and the
// helper takes as long again to start. A standby waits for one RUN line on its fd 5, takes the
// descriptors named there from the daemon (pidfd_getfd) and runs the command; it ends by itself
// when the daemon does (its fd 5 ends). 'deputy': stderr piped, as a deputy's; 'keep': a session
// of its own, as a kept restore's. Only commands whose fds 3 and 6 are plain descriptors of the
// daemon (a connection's socket, a file) and whose arguments have no white space run on one.
import type { ChildProcess } from 'node:child_process'
import { SPARE_REPLACE_MS } from '../config.js'

export type StandbyKind = 'deputy' | 'keep'

export class StandbyPool {
  private readonly idle = new Map<StandbyKind, ChildProcess>()
  private on = false

  /** `start` spawns a standby helper of that kind (undefined if it cannot). */
  constructor (private readonly start: (kind: StandbyKind) => ChildProcess | undefined) {}

  /** Keeps one standby of each kind from now on, or ends them. */
  use (on: boolean): void {
    this.on = on
    if (on) { this.fill('deputy'); this.fill('keep'); return }
    for (const c of this.idle.values()) c.kill('SIGKILL')
    this.idle.clear()
  }

  /** Whether a standby of that kind is there (on) and has not ended. */
  ready (kind: StandbyKind): boolean {
    const c = this.idle.get(kind)
    return this.on && c !== undefined && c.exitCode === null && c.signalCode === null
  }

  /** The standby of that kind if one is ready for args; another is started SPARE_REPLACE_MS later. */
  take (kind: StandbyKind, args: string[]): ChildProcess | undefined {
    if (!this.on || args.some(a => /\s/.test(a) || a === '')) return undefined
    const c = this.ready(kind) ? this.idle.get(kind) : undefined
    this.idle.delete(kind)
    setTimeout(() => this.fill(kind), SPARE_REPLACE_MS).unref() // (after a small move that took it has ended)
    return c
  }

  private fill (kind: StandbyKind): void {
    if (!this.on || this.idle.has(kind)) return
    const c = this.start(kind)
    if (c === undefined) return
    const gone = (): void => { if (this.idle.get(kind) === c) this.idle.delete(kind) }
    c.on('error', gone)
    c.on('exit', gone)
    this.idle.set(kind, c)
  }
}
