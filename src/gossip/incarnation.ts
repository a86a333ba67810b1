// A node's incarnation: the number its peers know this start of its daemon by. Their replay guard
// (replay.ts) takes every packet of a lower incarnation than the last one seen for a replay, so a
// restarted daemon must never come back lower. The wall clock alone (deciseconds since 2025) can:
// a node that started with its clock ahead and restarted after NTP stepped it back, a VM reverted
// to a snapshot, two starts within 100 ms. The last one is kept in the state dir and the next one
// is above it, whatever the clock says.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import debug from '../util/log.js'

const log = debug('hpcfs:gossip')

const EPOCH = Date.UTC(2025, 0, 1)
const U32 = 0xffffffff

/** The wall clock as an incarnation: deciseconds since 2025-01-01 (at least 1). */
export function clockIncarnation (now = Date.now()): number {
  return Math.min(U32, Math.max(1, Math.floor((now - EPOCH) / 100)))
}

/**
 * This start's incarnation: the clock's, or one above the last one kept in `file`, whichever is
 * larger; it is kept there for the next start. Without a file (null), or one that cannot be
 * written, the clock's (said in the log).
 */
export function nextIncarnation (file: string | null, now = Date.now()): number {
  const clock = clockIncarnation(now)
  if (file === null) return clock
  let last = 0
  try {
    const v = Number(readFileSync(file, 'utf8').trim())
    if (Number.isSafeInteger(v) && v > 0 && v <= U32) last = v
  } catch {}
  const inc = Math.min(U32, Math.max(clock, last + 1))
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
    writeFileSync(`${file}.tmp`, `${inc}\n`, { mode: 0o600 })
    renameSync(`${file}.tmp`, file)
  } catch (e) { log('cannot keep the incarnation in %s: %s', file, (e as Error).message) }
  return inc
}
