// MOSIX load smoothing (shared spec algorithms.md §3.2, proc-hpc.md §3.2), as carried into
// Kerrighed's mosix_probe.c. Fed once per period (one second in MOSIX) with the raw load sample:
//
//   mean  (used locally):      rises slowly  new = (5·old + 3·sample)/8, falls at once to the sample
//   upper (advertised outside): rises at once to the sample,  falls slowly new = (7·old + sample)/8
//
// Invariant: upper >= mean after every update (when both start equal). Pure arithmetic on floats;
// MOSIX keeps mean ×128 in integers, callers round when they print.

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

  reset (value = 0): void {
    this.mean = value
    this.upper = value
  }
}
