// The analytic age model of MOSIX windowed push gossip (docs/gossip.md, section 2; Amar,
// Barak, Drezner, Okun 2009; the same formulas as gossimon's libgossip/gossiplib.c).
//
// n nodes; every time unit each node stamps its own entry and pushes its w freshest entries (own
// included) to one node chosen uniformly among the other n−1. T is the age below which an entry is
// still inside the windows being sent; X(T) is how many nodes hold an entry of age ≤ T (logistic
// spread), so a fixed window w gives T(w) with X(T(w)) = w. All ages are in gossip intervals.
import debug from '../util/log.js'

const log = debug('hpcfs:sim')

/** The Euler–Mascheroni constant as gossimon's calcMaxAge writes it (0.577). */
export const GAMMA = 0.577
/** The Euler–Mascheroni constant to double precision. Table C's row n=4096 (docs/gossip.md, section 2) of the E[max]
 * columns (608, 1822) is only reproduced with this value: gossimon's 0.577 gives 607 and 1821. */
export const EULER_GAMMA = 0.5772156649015329

/** X(T) = n·e^{nT/(n−1)} / (n − 1 + e^{nT/(n−1)}): nodes holding an entry of age ≤ T. */
export function xOfT (n: number, T: number): number {
  const e = Math.exp(n * T / (n - 1))
  if (!Number.isFinite(e)) return n
  return n * e / (n - 1 + e)
}

/** T(w) = ((n−1)/n)·ln(w(n−1)/(n−w)): the in-window age horizon for a window of w (1 ≤ w < n). */
export function tOfW (n: number, w: number): number {
  if (w >= n) return Infinity
  return Math.log(w * (n - 1) / (n - w)) * (n - 1) / n
}

/** A_w = T − ((n−1)/X)·[ln(n − 1 + e^{nT/(n−1)}) − ln n]: mean age of the entries inside the window. */
export function inWindowAge (n: number, T: number): number {
  const x = xOfT(n, T)
  const a = n * T / (n - 1)
  // ln(n − 1 + e^a), computed without overflow for large a
  const lnSum = a > 700 ? a + Math.log1p((n - 1) * Math.exp(-a)) : Math.log(n - 1 + Math.exp(a))
  return T - ((n - 1) / x) * (lnSum - Math.log(n))
}

/** A_v = 1/(1 − (1 − 1/(n−1))^X) + A_w: expected average age of a node's vector. */
export function averageAgeOfT (n: number, T: number): number {
  const x = xOfT(n, T)
  return 1 / (1 - Math.pow(1 - 1 / (n - 1), x)) + inWindowAge(n, T)
}

/** M = (ln n + 0.577) / (X·(−ln(1 − 1/(n−1)))): expected maximum age in a node's vector. */
export function maxAgeOfT (n: number, T: number, gamma = GAMMA): number {
  const x = xOfT(n, T)
  return -(Math.log(n) + gamma) / (x * Math.log(1 - 1 / (n - 1)))
}

/** Expected number of entries of age ≤ t: X if t ≤ T, else n·[1 − (1 − 1/(n−1))^{X(t − A_w)}]. */
export function entriesUpToAge (n: number, T: number, t: number): number {
  const x = xOfT(n, T)
  if (t <= T) return x
  return n * (1 - Math.pow(1 - 1 / (n - 1), x * (t - inWindowAge(n, T))))
}

/** Everything the model says about n nodes and window w. */
export interface ModelPoint {
  n: number
  w: number
  /** In-window age horizon T(w). */
  T: number
  /** Mean age inside the window. */
  Aw: number
  /** Expected average age of a vector. */
  Av: number
  /** Expected maximum age of a vector. */
  M: number
}

export function model (n: number, w: number): ModelPoint {
  if (!(n >= 3)) throw new RangeError(`the model needs n ≥ 3 (got ${n})`)
  if (!(w >= 1 && w < n)) throw new RangeError(`the model needs 1 ≤ w < n (got w=${w}, n=${n})`)
  const T = tOfW(n, w)
  return { n, w, T, Aw: inWindowAge(n, T), Av: averageAgeOfT(n, T), M: maxAgeOfT(n, T) }
}

/** Expected average age for window w (A_v). */
export const expectedAverageAge = (n: number, w: number): number => model(n, w).Av
/** Expected maximum age for window w (M). */
export const expectedMaximumAge = (n: number, w: number): number => model(n, w).M

function smallestWindow (n: number, target: number, f: (T: number) => number, what: string): number {
  if (n < 3 || !(target > 0)) return 0
  for (let w = 1; w < n; w++) {
    if (f(tOfW(n, w)) < target) { log('n=%d %s<%d: w=%d', n, what, target, w); return w }
  }
  return 0 // no window below n reaches the target (gossimon returns 0 as an error)
}

/** Smallest window whose expected average age is below desiredAv (gossimon calcWinsizeGivenAv); 0 if none. */
export function calcWinsizeGivenAv (n: number, desiredAv: number): number {
  return smallestWindow(n, desiredAv, T => averageAgeOfT(n, T), 'Av')
}

/** Smallest window whose expected maximum age is below desiredMax (gossimon calcWinsizeGivenMax); 0 if none. */
export function calcWinsizeGivenMax (n: number, desiredMax: number, gamma = GAMMA): number {
  return smallestWindow(n, desiredMax, T => maxAgeOfT(n, T, gamma), 'max')
}

/** Smallest window with at least `entries` entries younger than `age` (gossimon calcWinsizeGivenUptoageEntries); 0 if none. */
export function calcWinsizeGivenUptoAgeEntries (n: number, age: number, entries: number): number {
  if (n < 3 || !(age > 0) || entries >= n) return 0
  for (let w = 1; w < n; w++) if (entriesUpToAge(n, tOfW(n, w), age) >= entries) return w
  return 0
}
