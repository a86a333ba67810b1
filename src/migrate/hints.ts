// Decay hints of a process (openMosix decay/, proc/<pid>/decay): how its CPU statistics decay in
// the balancer. Home holds them; they travel with every move (migrate) and every change reaches
// the node it runs on (hint).
import { monotonicMs } from '../util/clock.js'

/**
 * How a process's CPU statistics decay: `rate` slow (admin/slow-decay, the default) or fast
 * (admin/fast-decay); `kind` cpujob (counted CPU-bound whatever it used lately), iojob (counted as
 * using no CPU) or none; `cleared` when the statistics were last cleared (ms, monotonicMs; the
 * balancer starts them afresh). `perMille` and `interval` (mosrun -d, -t): its own per-mille kept each interval
 * and its own interval in seconds, instead of the node's.
 */
export interface DecayHints { rate: 'slow' | 'fast', kind: '' | 'cpujob' | 'iojob', cleared: number, perMille?: number, interval?: number }

/** The hints that are single words (also the files of decay/). */
export const DECAY_HINTS = ['clear', 'cpujob', 'iojob', 'slow', 'fast'] as const
export type DecayHint = typeof DECAY_HINTS[number] | `decay ${number}` | `interval ${number}`

/** A hint as written to proc/<pid>/decay: a word of DECAY_HINTS, `decay 0..1000` or `interval 1..3600`; else undefined. */
export function parseHint (text: string): DecayHint | undefined {
  const h = text.trim()
  if ((DECAY_HINTS as readonly string[]).includes(h)) return h as DecayHint
  const m = /^(decay|interval) (\d{1,4})$/.exec(h)
  if (m === null) return undefined
  const v = Number(m[2])
  if (m[1] === 'decay' ? v > 1000 : v < 1 || v > 3600) return undefined
  return `${m[1] as 'decay' | 'interval'} ${v}`
}

/** A process's hints before any is given. */
export function defaultHints (): DecayHints { return { rate: 'slow', kind: '', cleared: 0 } }

/** Applies one hint to a process's decay settings (a rate name replaces its own per-mille). */
export function applyHint (d: DecayHints, hint: DecayHint, now = monotonicMs()): void {
  if (hint === 'clear') { d.cleared = now; d.kind = '' } else if (hint === 'slow' || hint === 'fast') { d.rate = hint; d.perMille = undefined } else if (hint === 'cpujob' || hint === 'iojob') d.kind = hint
  else if (hint.startsWith('decay ')) d.perMille = Number(hint.slice(6))
  else d.interval = Number(hint.slice(9))
}

/** proc/<pid>/decay's text: the rate (or `decay N`), `interval N` if set, then the kind if any. */
export function formatHints (d: DecayHints): string {
  return [d.perMille !== undefined ? `decay ${d.perMille}` : d.rate, d.interval !== undefined ? `interval ${d.interval}` : '', d.kind].filter(Boolean).join(' ')
}
