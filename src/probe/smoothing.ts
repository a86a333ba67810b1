// MOSIX load smoothing (docs/probe.md, Load), as carried into
// Kerrighed's mosix_probe.c. Fed once per period (one second in MOSIX) with the raw load sample:
//
//   mean  (used locally):      rises slowly  new = (5·old + 3·sample)/8, falls at once to the sample
//   upper (advertised outside): rises at once to the sample,  falls slowly new = (7·old + sample)/8
//
// Invariant: upper >= mean after every update (when both start equal). Pure arithmetic on floats;
// MOSIX keeps mean ×128 in integers, callers round when they print.
//
// A known change of the node's processes (one of its processes left or exited, or one came in:
// docs/sched.md "Loads that know about moves") is not left to the smoothing: `shift` moves both
// values at once by that process's load. The smoothing is there to filter what the node cannot
// explain; a departure it knows about would otherwise keep showing in `upper` for ≈ 15 s (7:1),
// and an arrival would take ≈ 5 s to show in `mean` (5:3).

/** One step of the local mean: slow rise (5:3), immediate fall. */
export function stepMean (old: number, sample: number): number {
  return sample > old ? (5 * old + 3 * sample) / 8 : sample
}

/** One step of the advertised upper load: immediate rise, slow fall (7:1). */
export function stepUpper (old: number, sample: number): number {
  return sample > old ? sample : (7 * old + sample) / 8
}

export class LoadSmoother {
  mean: number
  upper: number

  constructor (initial = 0) {
    this.mean = initial
    this.upper = initial
  }

  update (sample: number): void {
    if (!Number.isFinite(sample) || sample < 0) throw new RangeError(`load sample must be a finite number >= 0, got ${sample}`)
    this.mean = stepMean(this.mean, sample)
    this.upper = stepUpper(this.upper, sample)
  }

  /**
   * A known change of `delta` runnable tasks (a process of that load arrived: > 0; left: < 0).
   * Leaving: both values drop by it at once (never below 0). Arriving: the mean rises by it at once
   * and the upper is raised to the mean if it was below (an upper still falling from a higher load
   * already counts it, and one the probe raised since the arrival too, so it is not added twice).
   * The change may be noticed a little late, when a sample already showed part of it: a mean
   * that overshot falls to the next sample at once, one that undershot rises back as for any rise
   * (so the node never overrates itself because of a shift: it would send work away), and an upper
   * that undershot rises to its sample at once. The smoothing after a shift is the usual one: a
   * sample right after a move also holds the daemon's own work for it (dump, restore), which must
   * not become the mean at once (it did, in a first version, and a job went home and back).
   */
  shift (delta: number): void {
    if (!Number.isFinite(delta)) throw new RangeError(`load shift must be finite, got ${delta}`)
    if (delta < 0) {
      this.mean = Math.max(0, this.mean + delta)
      this.upper = Math.max(0, this.upper + delta)
    } else {
      this.mean += delta
    }
    this.upper = Math.max(this.upper, this.mean)
  }

  reset (value = 0): void {
    this.mean = value
    this.upper = value
  }
}
