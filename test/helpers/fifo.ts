// A FIFO that a test reads everything from, for a job's stdout and stderr.
import { spawnSync } from 'node:child_process'
import { closeSync, openSync, rmSync } from 'node:fs'
import { Socket } from 'node:net'
import { join } from 'node:path'

/**
 * A FIFO in dir: `fd` (opened read-write, so writers never block and it never reads EOF) is what a
 * job gets as stdout/stderr; `out()` is what was written so far. Read through a libuv pipe, not an
 * fs stream: a blocking FIFO read would hold a thread-pool thread.
 */
export function fifoSink (dir: string, name: string): { fd: number, out: () => string, close: () => void } {
  const fifo = join(dir, name)
  spawnSync('mkfifo', [fifo])
  const fd = openSync(fifo, 'r+')
  let out = ''
  const rs = new Socket({ fd: openSync(fifo, 'r+'), readable: true, writable: false })
  rs.on('data', d => { out += d.toString() })
  return { fd, out: () => out, close: () => { rs.destroy(); closeSync(fd); rmSync(fifo, { force: true }) } }
}
