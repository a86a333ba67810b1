// Process families (docs/family.md): a process under cluster discipline brings its descendants
// under it, and a process away from home keeps its family at home.
//
// - Discipline is inherited (`Descendants`, home side): every `scanMs` the children of every
//   process of this node under discipline (at home or away: a deputy keeps the children it had)
//   are put under discipline too, with their parent's lock and decay hints, recursively; so
//   `mosrun -l make -j8` gives unlocked compilers, listed in proc/ and balanced like any process
//   (the balancer's age rule leaves the short-lived ones alone).
// - The family calls of a guest (guest side, `superviseFamily`): a guest is restored with its
//   fork, wait, kill of another process, setpgid and setsid caught (native/family.c): it waits in
//   the call while its node asks home to take it back (`family`, every `retryMs` until it leaves);
//   the move home interrupts the call, which runs again at home, natively, in the original: a
//   child gets a home pid and the original as its parent, a wait reaps the original's children.
//   Its CPU statistics start afresh at home (it arrives blocked in the call); the balancer may
//   send it out again later. If it cannot come home, home says `family-failed` and the call fails.
// - A locked process keeps its place (`returnWhenDone`): brought home for a family call, it goes
//   back to the node it came from once it is out of family calls (a parent waiting for its
//   children waits at home), and its locked children born meanwhile are sent there too: the
//   family of `mosrun -N 2 -L make` runs on node 2, as openMosix created children where their
//   parent ran.
// - Home side (`familyCall`): a `family` message brings the process home (a move under way does
//   that anyway, or lands it where it asks again).
import { readFileSync, readdirSync } from 'node:fs'
import { constants } from 'node:os'
import debug from '../util/log.js'
import { monotonicMs } from '../util/clock.js'
import { FAMILY_DENY_AFTER, FAMILY_RETRY_MS, FAMILY_RETURN_MS, FAMILY_SCAN_MS } from '../config.js'
import type { RestoredHandle } from './engine.js'
import type { Guest } from './guest.js'
import type { Home, HomeProc } from './home.js'
import type { Link } from './link.js'
import type { FamilyFailedMsg, FamilyMsg } from './protocol.js'
import { threadSyscallLines } from './stdin.js'

const log = debug('hpcfs:family')

// ---- discipline is inherited -----------------------------------------------------------------

/** The live (not zombie) children of a process, from /proc (every thread's `children`). */
export function liveChildren (pid: number, procRoot = '/proc'): number[] {
  const out: number[] = []
  let tids: string[]
  try { tids = readdirSync(`${procRoot}/${pid}/task`) } catch { return out }
  for (const tid of tids) {
    let text: string
    try { text = readFileSync(`${procRoot}/${pid}/task/${tid}/children`, 'latin1') } catch { continue }
    for (const c of text.split(' ')) {
      const child = Number(c)
      if (!Number.isInteger(child) || child < 2) continue
      let state = ''
      try { const st = readFileSync(`${procRoot}/${child}/stat`, 'latin1'); state = st.charAt(st.lastIndexOf(') ') + 2) } catch { continue }
      if (state !== 'Z' && state !== 'X') out.push(child)
    }
  }
  return out
}

/** Takes the children of every process under discipline under discipline too, as they appear. */
export class Descendants {
  /** processes put under discipline by inheritance so far */
  adopted = 0
  /** time the last scan took (ms) and how many processes it looked at */
  lastScanMs = 0
  lastScanned = 0
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly home: Home, private readonly children: (pid: number) => number[] = liveChildren, readonly scanMs = FAMILY_SCAN_MS) {
    scanners.set(home, this)
  }

  start (): void {
    if (this.timer) return
    this.timer = setInterval(() => { this.scan() }, this.scanMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  /** One pass: every new child of a process under discipline (and theirs) is adopted; returns their pids. */
  scan (): number[] {
    const t0 = performance.now()
    const procs = this.home.procs
    const todo = [...procs.values()]
    const found: number[] = []
    let scanned = 0
    for (let p = todo.pop(); p !== undefined; p = todo.pop()) {
      scanned++
      for (const pid of this.children(p.pid)) {
        if (procs.has(pid)) continue
        let c: HomeProc
        try { c = this.home.adopt(pid) } catch { continue } // gone meanwhile
        c.lock = p.lock
        c.decay.rate = p.decay.rate
        c.decay.kind = p.decay.kind
        if (p.decay.perMille !== undefined) c.decay.perMille = p.decay.perMille
        if (p.decay.interval !== undefined) c.decay.interval = p.decay.interval
        found.push(pid)
        todo.push(c)
        // a locked child is born where its parent runs (or was when it came home for the fork)
        const there = typeof p.where === 'number' ? p.where : returnsOf(this.home).get(p.pid)
        if (c.lock && there !== undefined) {
          log('locked child %d of %d goes where its parent runs: node %d', pid, p.pid, there)
          placeChild(this.home, c, there)
        }
      }
    }
    this.adopted += found.length
    this.lastScanned = scanned
    this.lastScanMs = performance.now() - t0
    if (found.length > 0) log('under discipline by inheritance: %o', found)
    return found
  }
}

// ---- family calls of a guest -----------------------------------------------------------------

/** What a family call that cannot be made at home fails with. */
export function deniedErrno (call: string): number {
  const e = constants.errno
  if (call === 'fork' || call === 'vfork' || call === 'clone') return e.EAGAIN
  if (call === 'wait4' || call === 'waitid') return e.ECHILD
  if (call === 'setpgid' || call === 'setsid') return e.EPERM
  return e.ESRCH
}

/** The family calls a guest waits in (by id: each thread may wait in one), the timer that asks home again, the failed trips home so far. */
interface Pending { calls: Map<string, string>, timer: NodeJS.Timeout, failed: number, denyAfter: number }
const pending = new WeakMap<Guest, Pending>()

/** The family call a guest waits in (the last one made, if several threads wait), if any. */
export function familyPending (g: Guest): string | undefined {
  const calls = pending.get(g)?.calls
  return calls === undefined ? undefined : [...calls.values()].at(-1)
}

/** Forgets the calls guest g waits in (answered, or it ended). */
function unpend (g: Guest): void {
  const p = pending.get(g)
  if (p === undefined) return
  clearInterval(p.timer)
  pending.delete(g)
}

/**
 * Guest side: when the restored process `r` of guest `g` makes a family call, asks its home to
 * take it back (`family`), again every `retryMs` while it is still here and waits in one (a move
 * under way at home when it asked, one that failed since, ...). Each thread's call is kept until
 * it is answered. `current()`: g is still this node's guest. `denyAfter`: failed trips home
 * before its calls fail (familyFailed).
 */
export function superviseFamily (g: Guest, r: RestoredHandle, current: () => boolean, retryMs = FAMILY_RETRY_MS, denyAfter = FAMILY_DENY_AFTER): void {
  r.family?.on('call', ({ id, call }: { id: string, call: string }) => {
    let p = pending.get(g)
    if (p === undefined) {
      const timer = setInterval(() => askHome(g, current), retryMs)
      timer.unref()
      const mine: Pending = { calls: new Map(), timer, failed: 0, denyAfter }
      pending.set(g, mine)
      void r.exited.then(() => { if (pending.get(g) === mine) unpend(g) })
      p = mine
    }
    p.calls.set(id, call)
    askHome(g, current)
  })
}

/** Asks g's home to take it back for the family call it waits in (none, or g no longer here: forgotten). */
function askHome (g: Guest, current: () => boolean): void {
  const call = familyPending(g)
  if (!current() || call === undefined) { unpend(g); return }
  if (g.leaving) return
  log('guest %d (pid %d at home) calls %s: asking home to take it back', g.pid, g.homePid, call)
  void g.conn.send({ t: 'family', call }).catch(() => {})
}

/**
 * Guest side: home could not take the guest back. It is asked again (superviseFamily's timer)
 * until that has failed `denyAfter` times; then every call it waits in fails, each as it would
 * (one a signal interrupted and that was made again is answered too: its keeper ignores it).
 */
export function familyFailed (g: Guest, r: RestoredHandle, m: FamilyFailedMsg): void {
  const p = pending.get(g)
  if (!p) return
  if (++p.failed < p.denyAfter) {
    log('guest %d: home could not take it back (%d of %d): %s', g.pid, p.failed, p.denyAfter, m.reason)
    return
  }
  unpend(g)
  for (const [id, call] of p.calls) {
    const errno = deniedErrno(call)
    log('guest %d: %s denied (%d): %s', g.pid, call, errno, m.reason)
    try { r.family?.deny(id, errno) } catch (e) { log('deny: %s', (e as Error).message) }
  }
}

/** Home side: the process, away on the node at the end of `conn`, made a family call; bring it home to make it. */
export function familyCall (home: Home, p: HomeProc, conn: Link, m: FamilyMsg): void {
  // During a move it is made again where the process lands (home, or the next node, which asks).
  if (p.conn !== conn || typeof p.where !== 'number' || p.moving) return
  const node = p.where
  const t0 = monotonicMs()
  log('process %d on node %d calls %s: bringing it home', p.pid, node, m.call)
  const failed = (reason: string): void => { void conn.send({ t: 'family-failed', reason }).catch(() => {}) }
  // a locked process's node is known before it lands: a child it forks as soon as it runs at home
  // (before this move's end is seen here) is sent there by the scan
  const back = returnsOf(home)
  if (p.lock) back.set(p.pid, node)
  const unmark = (): void => { if (back.get(p.pid) === node) back.delete(p.pid) }
  let move: Promise<void>
  try { move = home.requestMove(p.pid, 'home') } catch (e) { unmark(); failed((e as Error).message); return }
  void move.then(() => {
    if (p.where !== 'home' || !p.lock) unmark()
    if (p.where === 'home') {
      // Its CPU statistics start afresh (as after a `clear` hint, its decay kind kept): it comes
      // home blocked in the call, and a parent that waits here for its children must not look
      // CPU-bound to the balancer by its history (it would be sent out, and back at once); one
      // that works on after the call shows it within a window and may be sent out again.
      p.decay.cleared = monotonicMs()
      log('process %d is home for its %s after %d ms', p.pid, m.call, monotonicMs() - t0)
      if (p.lock) returnWhenDone(home, p, node)
      return
    }
    if (p.where === node && p.conn === conn) failed(p.lastError || 'it could not come home')
  })
}

// ---- a locked process keeps its place ----------------------------------------------------------

/** x86-64 numbers of the family calls (native/family.c): clone fork vfork wait4 kill setpgid setsid rt_sigqueueinfo tkill tgkill waitid rt_tgsigqueueinfo pidfd_open. */
const FAMILY_NRS = new Set([56, 57, 58, 61, 62, 109, 112, 129, 200, 234, 247, 297, 434])

const returns = new WeakMap<Home, Map<number, number>>()
const scanners = new WeakMap<Home, Descendants>()

/** Locked processes of a home brought home for a family call, and the node each goes back to. */
function returnsOf (home: Home): Map<number, number> {
  let m = returns.get(home)
  if (!m) { m = new Map(); returns.set(home, m) }
  return m
}

/** The latest returnWhenDone of each process: an older one (its retry due) gives way to it. */
const chains = new WeakMap<HomeProc, number>()

/**
 * A locked process brought home for a family call goes back to `node` once none of its threads is
 * in a family call at two checks in a row (`/proc/<pid>/task/<tid>/syscall`, every
 * FAMILY_RETURN_MS): a fork followed by a wait for the child stays home while it waits, in whichever
 * thread. The children it forked meanwhile are adopted at once (the scan), and, locked as it is,
 * sent to `node` too. A move back that fails leaves it home, done with its calls: it is watched
 * again FAMILY_RETRY_MS later (a lock keeps the balancer off it, so nothing else would send it),
 * FAMILY_DENY_AFTER times in all; `node` stays its children's until it has gone or that gives up.
 */
export function returnWhenDone (home: Home, p: HomeProc, node: number, everyMs = FAMILY_RETURN_MS, syscalls: (pid: number) => string[] = threadSyscallLines): void {
  const gen = (chains.get(p) ?? 0) + 1
  chains.set(p, gen)
  watchReturn(home, p, node, everyMs, syscalls, FAMILY_DENY_AFTER, gen)
}

function watchReturn (home: Home, p: HomeProc, node: number, everyMs: number, syscalls: (pid: number) => string[], tries: number, gen: number): void {
  const map = returnsOf(home)
  const mine = (): boolean => chains.get(p) === gen
  const unmark = (): void => { if (mine() && map.get(p.pid) === node) map.delete(p.pid) }
  map.set(p.pid, node)
  scanners.get(home)?.scan()
  let calm = 0
  const t = setInterval(() => {
    if (!mine()) { clearInterval(t); return } // a newer one watches it (and keeps its node)
    if (home.procs.get(p.pid) !== p || p.where !== 'home' || !p.lock) { clearInterval(t); unmark(); return }
    const lines = syscalls(p.pid)
    if (lines.length === 0) { clearInterval(t); unmark(); return }
    if (lines.some(l => FAMILY_NRS.has(l === 'running' ? -1 : Number(l.split(' ')[0])))) { calm = 0; return }
    if (++calm < 2) return
    scanners.get(home)?.scan() // its last children go with it
    clearInterval(t)
    log('locked process %d is done with its family calls: back to node %d', p.pid, node)
    moveLocked(home, p, node, why => {
      if (why === undefined || tries <= 1) { unmark(); return }
      log('locked process %d stays home for now (%d tries left): %s', p.pid, tries - 1, why)
      setTimeout(() => { if (mine()) watchReturn(home, p, node, everyMs, syscalls, tries - 1, gen) }, FAMILY_RETRY_MS).unref()
    })
  }, everyMs)
  t.unref()
}

/** Moves locked process p, at home, to `node`; `then` when that is over: with why it is still home, or nothing (it left). */
function moveLocked (home: Home, p: HomeProc, node: number, then: (why?: string) => void): void {
  let move: Promise<void>
  try { move = home.requestMove(p.pid, node) } catch (e) { then((e as Error).message); return }
  void move.then(() => { then(p.where === 'home' ? (p.lastError || 'it did not move') : undefined) })
}

/**
 * A locked child goes where its parent runs. A lock keeps the balancer off it, so a move that fails
 * (a target busy, a dump that failed) would leave it home for good: it is tried again every
 * FAMILY_RETRY_MS while it is home and locked, `tries` times in all.
 */
function placeChild (home: Home, c: HomeProc, node: number, tries = FAMILY_DENY_AFTER): void {
  moveLocked(home, c, node, why => {
    if (why === undefined || tries <= 1) return
    log('locked child %d stays home for now (%d tries left): %s', c.pid, tries - 1, why)
    setTimeout(() => { if (home.procs.get(c.pid) === c && c.where === 'home' && c.lock) placeChild(home, c, node, tries - 1) }, FAMILY_RETRY_MS).unref()
  })
}
