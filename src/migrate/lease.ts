// Bounds on waiting for another node. A migration connection carries a `ping` every quarter of the
// link timeout, both ways; a peer that has sent nothing at all (no frame, no ping) for the link
// timeout is taken for unreachable and its connection is cut off (Link.abort): whatever waited
// on it (a move, a guest's home, a deputy's remote) sees the connection close and acts on it
// within that bound, instead of waiting for TCP to give up (minutes) as it did across a partition.
// The tunables are in src/config.ts (linkTimeout, guestLease); README "Failure semantics".
import debug from '../util/log.js'
import { monotonicMs } from '../util/clock.js'
import type { Link } from './link.js'

const log = debug('hpcfs:lease')

/**
 * Keeps `link` alive and watched: a ping every `timeoutMs` / 4; the link is aborted once nothing
 * has come from the peer for `timeoutMs`. Returns a function that stops watching.
 */
export function heartbeat (link: Link, timeoutMs: number): () => void {
  let heard = monotonicMs()
  link.stallMs = timeoutMs // a raw image stalled this long fails too (the engine helper's own bound)
  const onAny = (): void => { heard = monotonicMs() }
  const t = setInterval(() => {
    if (link.closed) { stop(); return }
    if (link.rawIn) heard = monotonicMs() // an engine helper reads a raw image from it (bounded by its own stall limit)
    const silent = monotonicMs() - heard
    if (silent > timeoutMs) {
      log('%s: nothing heard for %d ms: cut off', link.peer, silent)
      stop()
      link.abort(new Error(`node at ${link.peer} silent for ${Math.round(silent / 1000)} s`))
      return
    }
    void link.send({ t: 'ping' }).catch(() => {})
  }, Math.max(10, Math.floor(timeoutMs / 4)))
  t.unref()
  const stop = (): void => {
    clearInterval(t)
    link.off('msg', onAny)
    link.off('data', onAny)
    link.off('close', stop)
  }
  link.on('msg', onAny)
  link.on('data', onAny)
  link.on('close', stop)
  return stop
}
