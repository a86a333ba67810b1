// Attaching to a process kept by its restore helper (keeper mode, native/keep.c; docs/ppm.md
// "Keeper"). The keeper holds the other ends of the process's stdio pipes and a control pipe of its
// own; whoever attaches opens them through /proc/<keeper>/fd/<n>: the daemon that restored the
// process, or, after that daemon died, the one started again. Opening the command pipe (last) tells
// the keeper someone is there: without anyone for its lease, it kills the process.
import { EventEmitter } from 'node:events'
import { closeSync, constants as fsc, openSync, readFileSync, readlinkSync, realpathSync, writeSync } from 'node:fs'
import { Socket } from 'node:net'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import debug from '../util/log.js'
import { ErrnoError } from '../util/errno.js'
import { FamilyCalls, helperPath, startTime, type ExitStatus, type KeepInfo, type SigInfo } from './ppm.js'

const log = debug('hpcfs:keeper')

/**
 * Options of a socket that reads a kept process's output: no read-ahead (net.Socket takes the
 * stream option; its types do not list it), so that while the stream is paused what the process
 * wrote stays in its pipe, where the keeper holds it should this daemon die.
 */
export const NO_READ_AHEAD = { readableHighWaterMark: 0 } as object

/** A kept process, attached: its stdio, its end, and the keeper's commands. */
export interface Kept {
  readonly pid: number
  readonly info: KeepInfo
  readonly stdin: Writable | null
  readonly stdout: Readable | null
  readonly stderr: Readable | null
  /** how it ended (as its keeper, its parent, saw it) */
  readonly exited: Promise<ExitStatus>
  /** its family calls, when restored with `family` (the ones still waiting are said again on attach) */
  readonly family: FamilyCalls
  /** lets a held process run (no effect on one that runs); resolves once it runs untraced (or has ended) */
  go: () => Promise<void>
  /** its stdin reaches its end */
  endStdin: () => void
  /** the input of its relayed fd (above 2; info.relays) reaches its end: the keeper closes its end */
  endRelay: (fd: number) => void
  /** its output fd (1, 2, or relayed above 2) is broken at home: the keeper's reader of it is replaced by one of a pipe without writer */
  breakRelay: (fd: number) => void
  /** signal sig sent to it by its keeper with this siginfo where the kernel lets another process queue it (code below 0 but SI_TKILL), else as kill sends it */
  sigqueue: (sig: number, info: SigInfo) => void
  /** lets go of it without ending it: the keeper keeps it (for its lease) until someone attaches again */
  detach: () => void
  /** lets go of it for good (its end is passed on, or it left): its keeper leaves once it has ended */
  release: () => void
  /** does it run (still its keeper's child, not ended)? */
  alive: () => boolean
}

// (libuv opens every file close-on-exec)
function openPath (info: KeepInfo, fd: number, flags: number): number {
  return openSync(`/proc/${info.helper}/fd/${fd}`, flags | fsc.O_NONBLOCK | fsc.O_NOCTTY)
}

/**
 * Attaches to the process `info` describes (restoreKept's answer, or a record of it). Throws ESRCH
 * when its keeper is gone or is not the one recorded (another process under a reused pid): checked
 * for a record, not for restoreKept's answer of a moment ago (`fresh`: its helper has just said so).
 */
export function attachKept (info: KeepInfo, fresh = false): Kept {
  const { helper } = info
  let exe = ''
  if (!fresh) try { exe = readlinkSync(`/proc/${helper}/exe`) } catch {}
  if (!fresh && (exe === '' || exe !== realpathSync(helperPath()) || (info.start !== '' && startTime(helper) !== info.start))) {
    throw new ErrnoError('ESRCH', `the keeper ${helper} of process ${info.pid} is gone`)
  }
  const opened: number[] = []
  const open = (fd: number, flags: number): number => { const f = openPath(info, fd, flags); opened.push(f); return f }
  let stdout: Socket, stderr: Socket, ctlIn: Socket, stdin: Socket | null, cmd: number
  try {
    stdout = new Socket({ fd: open(info.fds.out, fsc.O_RDONLY), readable: true, writable: false, ...NO_READ_AHEAD })
    stderr = new Socket({ fd: open(info.fds.err, fsc.O_RDONLY), readable: true, writable: false, ...NO_READ_AHEAD })
    ctlIn = new Socket({ fd: open(info.fds.ctl, fsc.O_RDONLY), readable: true, writable: false })
    // its stdin has no reader any more once it has ended (ENXIO): then there is nothing to write to
    let inFd = -1
    try { inFd = open(info.fds.in, fsc.O_WRONLY) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e }
    stdin = inFd >= 0 ? new Socket({ fd: inFd, readable: false, writable: true }) : null
    stdin?.on('error', e => log('stdin of %d: %s', info.pid, e.message))
    cmd = open(info.fds.cmd, fsc.O_WRONLY) // last: from now on the keeper knows someone is there
  } catch (e) {
    for (const f of opened) { try { closeSync(f) } catch {} }
    throw new ErrnoError('ESRCH', `cannot attach to process ${info.pid} (keeper ${helper}): ${(e as Error).message}`)
  }
  const say = (line: string): void => {
    try { writeSync(cmd, line + '\n') } catch (e) { log('keeper %d: %s: %s', helper, line, (e as Error).message) }
  }
  const running: Array<() => void> = [] // waiting for the answer to GO
  const lines = new EventEmitter()
  const family = new FamilyCalls(lines, say)
  const exited = new Promise<ExitStatus>(resolve => {
    const rl = createInterface({ input: ctlIn })
    let done = false
    rl.on('line', line => {
      const m = /^(EXIT|KILLED) (\d+)$/.exec(line)
      if (m) {
        done = true
        resolve(m[1] === 'EXIT' ? { code: Number(m[2]), signal: null } : { code: null, signal: Number(m[2]) })
        for (const w of running.splice(0)) w()
      } else if (line === 'RUNNING') running.shift()?.()
      else if (line.startsWith('FAMILY ')) {
        const [, id, call] = line.split(' ')
        lines.emit('family', { id, call })
      }
      else log('keeper %d: %s', helper, line)
    })
    rl.on('close', () => {
      if (done || detached) return
      // the keeper died without a word (killed): nobody can tell how the process ends any more
      log('keeper %d of %d ended without its status: killing it', helper, info.pid)
      try { process.kill(info.pid, 'SIGKILL') } catch {}
      resolve({ code: null, signal: 9 })
    })
  })
  let detached = false
  const detach = (): void => {
    if (detached) return
    detached = true
    for (const s of [stdout, stderr, ctlIn, stdin]) s?.destroy()
    try { closeSync(cmd) } catch {}
  }
  return {
    pid: info.pid,
    info,
    stdin,
    stdout,
    stderr,
    exited,
    family,
    go: async () => {
      const ran = new Promise<void>(resolve => running.push(resolve))
      say('GO')
      await Promise.race([ran, exited])
    },
    alive: () => {
      try {
        const f = readFileSync(`/proc/${info.pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
        return f[0] !== 'Z' && Number(f[1]) === helper
      } catch { return false }
    },
    endStdin: () => { stdin?.end(); say('STDIN-END') },
    endRelay: fd => { say(`RELAY-END ${fd}`) },
    breakRelay: fd => { say(`RELAY-BROKEN ${fd}`) },
    sigqueue: (sig, i) => { say(`SIGQUEUE ${sig} ${i.code} ${i.pid} ${i.uid} ${i.value}`) },
    release: () => { if (!detached) say('DONE'); detach() },
    detach
  }
}
