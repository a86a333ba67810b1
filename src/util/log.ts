// One logger per module, `debug('hpcfs:<module>')`, as the `debug` package makes them; but the
// package itself is loaded only when the DEBUG environment variable is set. Loading it costs about
// 8 ms of CPU, a sixth of a command-line tool's whole start-up (scripts/bench-startup), and the
// tools nearly always run without DEBUG. Without DEBUG every logger is a no-op, which is what
// `debug` would make of it too (it reads DEBUG once, when loaded).
import { createRequire } from 'node:module'
import type { Debugger } from 'debug'

/** A module's logger: printf-style (`%s %d %j %o %O`), to stderr under DEBUG=hpcfs:*. */
export type Log = (formatter: unknown, ...args: unknown[]) => void

const off: Log = () => {}
let load: ((namespace: string) => Debugger) | undefined

export default function debug (namespace: string): Log {
  if (process.env.DEBUG === undefined || process.env.DEBUG === '') return off
  load ??= createRequire(import.meta.url)('debug') as (namespace: string) => Debugger
  return load(namespace)
}
