// Small helpers shared by the benchmarks.
import { spawnSync } from 'node:child_process'
import { basename, join } from 'node:path'

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Median of a list (the mean of the middle two for an even length; NaN when empty). */
export function median (xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Compiles one C file with gcc -O2 into dir (named after the source unless `out` is given); returns the binary's path. */
export function compileC (src: string, dir: string, out = basename(src, '.c')): string {
  const bin = join(dir, out)
  const r = spawnSync('gcc', ['-O2', '-Wall', '-o', bin, src], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`gcc ${src}: ${r.stderr}`)
  return bin
}
