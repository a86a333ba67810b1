// The clock of intervals (ms): monotonic, so that a step of the wall clock (NTP, an admin's `date`)
// neither stalls nor wipes what is measured over an interval (a process's CPU share, a back-off, a
// residence). Its values mean nothing across processes or restarts and are not comparable with
// Date.now(); what is kept on disk or shown as a date stays on the wall clock.
export function monotonicMs (): number {
  return performance.now()
}
