// Decay hints of a process (openMosix decay/, proc/<pid>/decay): how its CPU statistics decay in
// the balancer. Home holds them; they travel with every move (migrate) and every change reaches
// the node it runs on (hint).

/**
 * How a process's CPU statistics decay: `rate` slow (admin/slow-decay, the default) or fast
 * (admin/fast-decay); `kind` cpujob (counted CPU-bound whatever it used lately), iojob (counted as
 * using no CPU) or none; `cleared` when the statistics were last cleared (ms; the balancer starts
 * them afresh).
 */
export interface DecayHints { rate: 'slow' | 'fast', kind: '' | 'cpujob' | 'iojob', cleared: number }

export const DECAY_HINTS = ['clear', 'cpujob', 'iojob', 'slow', 'fast'] as const
export type DecayHint = typeof DECAY_HINTS[number]

/** A process's hints before any is given. */
export function defaultHints (): DecayHints { return { rate: 'slow', kind: '', cleared: 0 } }

/** Applies one hint to a process's decay settings. */
export function applyHint (d: DecayHints, hint: DecayHint, now = Date.now()): void {
  if (hint === 'clear') { d.cleared = now; d.kind = '' } else if (hint === 'slow' || hint === 'fast') d.rate = hint; else d.kind = hint
}

/** proc/<pid>/decay's text: the rate, then the kind if any. */
export function formatHints (d: DecayHints): string {
  return d.kind === '' ? d.rate : `${d.rate} ${d.kind}`
}
