// The terminal driver of the full-screen tools (mosmon, mtop): alternate screen, hidden cursor,
// cursor home + overwrite lines + clear to end of line (no full clear per frame), raw keys,
// redraw on resize, a sample of the tree every interval, and the terminal restored on every way
// out. What is shown and what the keys do belong to the tool (its pure render and key functions).
import debug from '../util/log.js'

const log = debug('hpcfs:cli')

const ENTER = '\x1b[?1049h\x1b[?25l' // alternate screen, hide cursor
export const LEAVE = '\x1b[?25h\x1b[?1049l' // show cursor, main screen
const HUNG_EXIT_MS = 500
const LINE_GRACE_MS = 100

export interface ScreenApp<S> {
  /** The tool's name, for messages. */
  tool: string
  /** The tree's root, for messages. */
  root: string
  intervalMs: number
  initial: S
  /** A fresh sample of the tree; asynchronous, so that a hung tree leaves the keys working. */
  sample: (s: S) => Promise<S>
  /** The state with the sampled data, keeping what keys changed meanwhile. */
  merge: (current: S, sampled: S) => S
  /** The screen: at most `rows` lines of at most `cols` characters. */
  render: (s: S, cols: number, rows: number) => string[]
  /** The state after a key, or 'quit'. */
  key: (s: S, key: string) => S | 'quit'
  /** The state showing that the tree has not answered for `secs` seconds. */
  stalled: (s: S, secs: number) => S
  /** Quit (exit 0) once this many frames of data were shown, the initial one included. */
  frames?: number
  /** Sample at once after the first frame (default), or only after the first interval (mtop: its %CPU needs one). */
  sampleAtStart?: boolean
}

export function terminalSize (): { cols: number, rows: number } {
  const cols = process.stdout.columns > 0 ? process.stdout.columns : 80
  const rows = process.stdout.rows > 0 ? process.stdout.rows : 24
  return { cols, rows }
}

/**
 * The interactive loop; resolves with the exit code: 0 on q or end of input, 130 on Ctrl-C and
 * SIGINT, 143 on SIGTERM, 129 on SIGHUP. A sample still in flight at the end (a hung tree) would
 * keep the process alive forever (libuv joins its threads at exit): after HUNG_EXIT_MS it says so
 * and kills itself.
 */
export function runScreen<S> (app: ScreenApp<S>): Promise<number> {
  return new Promise(resolve => {
    const out = process.stdout
    const stdin = process.stdin
    let state = app.initial
    let sampling: number | undefined // start time of the sample in flight
    let sampled: (() => void) | undefined // called when the sample in flight comes back
    let restored = false
    let timer: NodeJS.Timeout | undefined
    let shown = 1 // frames of data drawn

    const draw = (): void => {
      const { cols, rows } = terminalSize()
      const lines = app.render(state, cols, rows)
      out.write('\x1b[H' + lines.map(l => l + '\x1b[K').join('\r\n') + '\x1b[J')
    }
    const restore = (): void => {
      if (restored) return
      restored = true
      if (timer !== undefined) clearInterval(timer)
      try {
        if (stdin.isTTY) stdin.setRawMode(false)
      } catch (err) {
        log('setRawMode(false): %s', (err as Error).message)
      }
      stdin.pause()
      out.write(LEAVE)
    }
    const finish = (code: number): void => {
      restore()
      for (const [sig, h] of handlers) process.off(sig, h)
      process.off('uncaughtException', onCrash)
      out.off('resize', draw)
      stdin.off('data', onKey)
      stdin.off('end', onEnd)
      if (sampling === undefined) return resolve(code)
      const t = setTimeout(() => {
        process.stderr.write(`${app.tool}: the tree at ${app.root} is not answering; exiting without waiting for it\n`)
        // The line is in the pty, but the reader on the master side may not have it yet: a proxy such
        // as script(1) stops reading 10 ms after its child dies. Give it a moment before vanishing.
        setTimeout(() => process.kill(process.pid, 'SIGKILL'), LINE_GRACE_MS)
      }, HUNG_EXIT_MS)
      sampled = () => { clearTimeout(t); resolve(code) }
    }
    const onKey = (chunk: Buffer | string): void => {
      for (const key of String(chunk)) {
        const next = app.key(state, key)
        if (next === 'quit') return finish(key === '\x03' ? 130 : 0)
        state = next
      }
      draw()
    }
    const onEnd = (): void => finish(0)
    const onCrash = (err: Error): void => {
      restore()
      process.stderr.write(`${app.tool}: ${err.message}\n`)
      log('%O', err)
      process.exit(1)
    }
    const handlers: Array<[NodeJS.Signals, () => void]> = [
      ['SIGINT', () => finish(130)], ['SIGTERM', () => finish(143)], ['SIGHUP', () => finish(129)]
    ]

    for (const [sig, h] of handlers) process.on(sig, h)
    process.on('uncaughtException', onCrash)
    process.on('exit', restore)
    out.write(ENTER)
    if (stdin.isTTY) stdin.setRawMode(true)
    stdin.on('data', onKey)
    stdin.on('end', onEnd)
    stdin.resume()
    out.on('resize', draw) // node turns SIGWINCH into 'resize' on a TTY
    const tick = (): void => {
      if (sampling !== undefined) {
        // The previous sample has not come back: say so, keep the keys working.
        const secs = Math.round((Date.now() - sampling) / 1000)
        if (secs >= 2) { state = app.stalled(state, secs); draw() }
        return
      }
      sampling = Date.now()
      app.sample(state).then(next => {
        sampling = undefined
        if (sampled !== undefined) return sampled()
        if (restored) return
        state = app.merge(state, next)
        draw()
        if (app.frames !== undefined && ++shown >= app.frames) finish(0)
      }, onCrash)
    }
    draw()
    if (app.frames !== undefined && app.frames <= 1) return finish(0)
    if (app.sampleAtStart !== false) tick()
    timer = setInterval(tick, app.intervalMs)
  })
}
