/**
 * HPC_PPM_TRACE=1: the steps of a move with their wall-clock time in microseconds (debug namespace
 * hpcfs:trace), to line them up with the PPM helpers' own `STAT t` lines (docs/ppm.md "Tracing").
 */
import createDebug from 'debug'

const on = process.env.HPC_PPM_TRACE !== undefined
const log = createDebug('hpcfs:trace')

export function trace (what: string): void {
  if (on) log('t %s %s', what, (performance.timeOrigin + performance.now()).toFixed(3))
}
