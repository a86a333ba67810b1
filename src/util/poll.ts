// The one polling helper of the project: the lab, the scripts and the tests wait for a condition
// with it (never with a fixed sleep). A check returns a truthy value when the condition holds (that
// value is the result), anything falsy while it does not.

export interface PollOptions {
  /** Give up after this many ms (default 15 s); Infinity waits for ever. */
  timeoutMs?: number
  /** Time between two checks (default 100 ms). */
  everyMs?: number
  /**
   * A check that throws is tried again (the error is reported if time runs out), e.g. a file that
   * does not exist yet. Default false: the error ends the wait at once, so that a check can say
   * "this will never hold" (a daemon that died while it was awaited).
   */
  retryErrors?: boolean
}

export type Check<T> = () => T | undefined | null | false | 0 | '' | Promise<T | undefined | null | false | 0 | ''>

/** What `poll` throws when time runs out. */
export class PollTimeout extends Error {}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Whether p settles (either way) within ms. */
export async function within (p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined
  const late = new Promise<boolean>(resolve => { t = setTimeout(() => resolve(false), ms) })
  try { return await Promise.race([p.then(() => true, () => true), late]) } finally { clearTimeout(t) }
}

/** Calls `check` until it returns a truthy value, and returns that value; throws "timed out after N ms waiting for <what>" when time runs out. */
export async function poll<T> (what: string, check: Check<T>, opts: PollOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 15_000
  const everyMs = opts.everyMs ?? 100
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v as T
    } catch (e) {
      if (opts.retryErrors !== true) throw e
      last = e
    }
    if (Date.now() >= deadline) throw new PollTimeout(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? ': ' + String(last) : ''}`)
    await sleep(everyMs)
  }
}
