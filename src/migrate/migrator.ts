// Process migration between daemons: the home side (deputy) and the guest side (remote).
//
// A process under cluster discipline lives on its home node (UHN). When it leaves, its original
// stays home as the deputy (src/ppm: dumped, hollowed, parked under its own pid): its parent can
// wait() for it, signals sent to it are forwarded, its stdin/stdout/stderr are relayed, and when
// the remote ends the deputy ends the same way. The remote is the restored process on the other
// node, a guest there. Every move is driven by the home node:
//   home -> N      deputy dump streams to N (a copy is kept until N runs it: a failed restore
//                  puts the process back into its original, never two copies, never none)
//   N -> home      N dumps it, drains its output, streams the image back; home restores it into
//                  the original (same pid)
//   N -> M         as N -> home, then home -> M from the image (images travel through home)
// Guests whose home dies are killed; a deputy whose remote node dies prints why on its stderr and
// exits with LOST_STATUS.
import { EventEmitter } from 'node:events'
import { createServer, Socket, type Server } from 'node:net'
import { createWriteStream, readFileSync, readlinkSync, readSync, openSync, closeSync, fstatSync, constants as fsc } from 'node:fs'
import { PassThrough, Readable, Writable } from 'node:stream'
import debug from 'debug'
import * as ppm from '../ppm/ppm.js'
import type { Keyring } from '../gossip/keyring.js'
import { ErrnoError, einval } from '../util/errno.js'
import { Conn, MIGRATION_PORT, type Msg } from './wire.js'

const log = debug('hpcfs:migrate')

/** Exit status of a deputy whose remote was lost with its node (EHOSTDOWN). */
export const LOST_STATUS = 112

/** What the migrator needs to know about the cluster (from the node core). */
export interface Cluster {
  readonly id: number
  /** Address of a node's transfer port; undefined when unknown. */
  addressOf (id: number): { host: string, port: number } | undefined
  isUp (id: number): boolean
  /** Guests refused (admin/block). */
  readonly blocked: boolean
  /** admin/stay or admin/lstay: this node's own processes do not leave. */
  readonly keepsLocal: boolean
}

export type Where = 'home' | 'migrating' | number

/** A process whose home is this node. */
export class HomeProc {
  lock = false
  nmigs = 0
  where: Where = 'home'
  lastError = ''
  deputy: ppm.Deputy | null = null
  conn: Conn | null = null
  out: Array<Writable | null> = [null, null, null]
  /** stdin relayed on demand (pull): the guest asks for what a blocked read wants */
  stdinFd: number | null = null
  stdinMode: 'pull' | 'none' = 'none'
  /** set while the process is being moved: no stdin is handed out */
  moving = false
  imageIn: Buffer[] | null = null
  /** Size of the image while it is away (sent with a hop so the next node can check its memory). */
  imageBytes: number | null = null
  /** What fds 0-2 were when the process left (a socket needs the engine's relay). */
  stdioKinds: string[] = []
  /** Output that arrived before the relay was ready, in order. */
  pendingOut: Array<[number, Buffer]> | null = []
  imageWaiter: ((chunks: Buffer[]) => void) | null = null
  constructor (readonly pid: number) {}
}

/** A process running here whose home is another node. */
export class Guest {
  leaving = false
  wanting = false
  wantLine = ''
  stdinEnded = false
  delivered: { line: string, switches: number } | null = null
  outputDone: Promise<void>
  constructor (readonly pid: number, readonly home: number, readonly homePid: number, readonly conn: Conn, readonly r: ppm.Restored, readonly since: number) {
    const ends = [r.stdout, r.stderr].filter((s): s is Readable => s !== null).map(s => new Promise<void>(resolve => { s.once('end', resolve); s.once('close', resolve) }))
    this.outputDone = Promise.all(ends).then(() => {})
  }
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' } }

export class Migrator extends EventEmitter {
  readonly procs = new Map<number, HomeProc>()
  readonly guests = new Map<number, Guest>()
  private server: Server | null = null
  private hostInfo: Promise<string> | null = null

  /** Fault injection for tests (hpcd --test-fault): 'restore' makes every restore here fail half-way. */
  testFault = ''

  constructor (readonly cluster: Cluster, private readonly keys: Keyring, readonly port = MIGRATION_PORT) { super() }

  // ---- listening -------------------------------------------------------------------------

  async listen (host: string): Promise<void> {
    this.hostInfo = ppm.hostInfo()
    this.hostInfo.catch(e => log('hostinfo: %s', (e as Error).message))
    const server = createServer(sock => { void this.accept(sock) })
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(this.port, host, () => { server.off('error', reject); resolve() }) })
    this.server = server
    log('transfer port %s:%d', host, this.port)
  }

  async close (): Promise<void> {
    for (const g of this.guests.values()) { try { process.kill(g.pid, 'SIGKILL') } catch {} g.conn.close() }
    for (const p of this.procs.values()) p.conn?.close()
    await new Promise<void>(resolve => this.server ? this.server.close(() => resolve()) : resolve())
  }

  private async accept (sock: Socket): Promise<void> {
    let conn: Conn
    try { conn = await Conn.server(sock, this.keys) } catch (e) { log('refused %s: %s', sock.remoteAddress, (e as Error).message); sock.destroy(); return }
    conn.once('msg', (m: Msg) => {
      if (m.t === 'migrate') void this.receive(conn, m).catch(e => log('receive: %s', (e as Error).message))
      else { void conn.send({ t: 'error', reason: `unexpected ${m.t}` }); conn.close() }
    })
  }

  /** Why a local process cannot move (empty when it can), from the engine's analysis. */
  async cantMove (pid: number): Promise<string[]> {
    const reasons = await ppm.check(pid).catch(e => [{ code: 'error', text: (e as Error).message }])
    return reasons.map(r => r.text)
  }

  // ---- home side -------------------------------------------------------------------------

  /** The process entry for a local pid (creating it puts the process under cluster discipline). */
  adopt (pid: number): HomeProc {
    let p = this.procs.get(pid)
    if (p) return p
    if (!Number.isInteger(pid) || pid < 2 || !alive(pid)) throw new ErrnoError('ESRCH', `no process ${pid}`)
    p = new HomeProc(pid)
    this.procs.set(pid, p)
    this.reapWhenGone(p)
    return p
  }

  private reapWhenGone (p: HomeProc): void {
    const t = setInterval(() => {
      if (p.where === 'home' && !p.deputy && !alive(p.pid)) { clearInterval(t); this.procs.delete(p.pid) }
    }, 1000)
    t.unref()
  }

  /** Asks for a move; validates at once (EINVAL, EAGAIN, ESRCH), moves in the background. */
  requestMove (pid: number, target: number | 'home'): Promise<void> {
    const p = this.adopt(pid)
    if (p.where === 'migrating') throw new ErrnoError('EAGAIN', `process ${pid} is in transit`)
    if (target === this.cluster.id) target = 'home'
    if (target !== 'home') {
      if (!this.cluster.addressOf(target)) throw einval(`no node ${target}`)
      if (!this.cluster.isUp(target)) throw new ErrnoError('EHOSTUNREACH', `node ${target} is down`)
    }
    if ((target === 'home' && p.where === 'home') || target === p.where) return Promise.resolve()
    if (p.where === 'home' && this.cluster.keepsLocal) throw new ErrnoError('EPERM', 'this node keeps its processes (admin/stay or admin/lstay)')
    const from = p.where
    p.where = 'migrating'
    p.lastError = ''
    const run = async (): Promise<void> => {
      if (from === 'home') await this.moveOut(p, target as number)
      else if (target === 'home') await this.comeHome(p)
      else await this.hop(p, target)
    }
    const done = run().catch(e => {
      p.lastError = (e as Error).message
      log('move of %d to %s failed: %s', pid, target, p.lastError)
      if (p.where === 'migrating') p.where = from
      // it was away and its connection broke during the move: it is lost with that node
      if (typeof from === 'number' && p.deputy && (!p.conn || p.conn.closed)) void this.lost(p, from)
    })
    return done
  }

  private async connect (node: number): Promise<Conn> {
    const a = this.cluster.addressOf(node)
    if (!a) throw einval(`no node ${node}`)
    return await Conn.client(a.host, a.port, this.keys)
  }

  /** Offers the process to node; resolves with the connection once accepted. */
  private async offer (p: HomeProc, node: number): Promise<{ conn: Conn, hostinfo: string }> {
    const conn = await this.connect(node)
    await conn.send({ t: 'migrate', home: this.cluster.id, pid: p.pid, name: comm(p.pid), bytes: p.imageBytes ?? residentBytes(p.pid), stdin: p.stdinMode })
    let m: Msg
    try { m = await conn.expect('accept', 'refuse') } catch (e) { conn.close(); throw e }
    if (m.t === 'refuse') { conn.close(); throw new ErrnoError('EPERM', `node ${node} refused: ${String(m.reason)}`) }
    return { conn, hostinfo: String(m.hostinfo ?? '') }
  }

  private async moveOut (p: HomeProc, node: number): Promise<void> {
    const reasons = await this.cantMove(p.pid)
    if (reasons.length) throw new ErrnoError('EPERM', `cannot move: ${reasons.join('; ')}`)
    p.stdioKinds = [0, 1, 2].map(fd => stdioKind(p.pid, fd))
    const k0 = p.stdioKinds[0]
    p.stdinMode = k0 === 'pipe' || k0 === 'tty' || k0 === 'socket' ? 'pull' : 'none'
    const { conn, hostinfo } = await this.offer(p, node)
    const reply = conn.expect('running', 'failed').catch(e => ({ t: 'failed', reason: (e as Error).message } as Msg))
    this.bind(p, conn, node)
    const copy: Buffer[] = []
    const sink = conn.imageWriter()
    const tee = new Writable({
      write: (c: Buffer, _e, cb) => { copy.push(c); sink.write(c, cb) },
      final: cb => { sink.end(cb) }
    })
    let dep: ppm.Deputy
    try {
      dep = await ppm.deputy(p.pid, tee, hostinfo ? { target: hostinfo } : {})
    } catch (e) {
      p.conn = null
      await conn.send({ t: 'abort', reason: (e as Error).message }).catch(() => {})
      conn.close()
      throw e
    }
    p.deputy = dep
    dep.on('signal', (s: number) => { log('deputy %d got signal %d', p.pid, s); void p.conn?.send({ t: 'signal', sig: s }).catch(() => {}) })
    dep.on('end', () => this.deputyEnded(p))
    const m = await reply
    if (m.t !== 'running') {
      p.conn = null
      conn.close()
      await dep.restoreInto(Readable.from(copy))
      this.detachDeputy(p)
      p.where = 'home'
      throw new Error(`node ${node} could not run it: ${String(m.reason)}; it runs at home again`)
    }
    await this.relayStdio(p)
    this.arrived(p, node)
  }

  private async relayStdio (p: HomeProc): Promise<void> {
    if (!p.deputy || p.out.some(Boolean)) return
    // pipes, FIFOs and terminals are opened again by path; sockets cannot be, so then the engine
    // relays all three through pipes of its own
    const sockets = p.stdioKinds.some(k => k === 'socket')
    const fds = await p.deputy.takeFds({ relay: sockets })
    const relay = (i: number): boolean => fds[i] !== null && ['pipe', 'socket', 'tty'].includes(p.stdioKinds[i])
    for (const i of [1, 2]) {
      if (relay(i)) p.out[i] = openRelay(fds[i] as string).on('error', e => log('fd %d of %d: %s', i, p.pid, e.message))
    }
    if (relay(0)) {
      // pull: read only what the remote process is blocked reading, so nothing is left behind on
      // the remote. (With a socket the engine's relay has to read it first: what it took from
      // the socket and nobody pulled is lost if the process comes home.)
      p.stdinFd = openSync(fds[0] as string, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
    }
    for (const [fd, d] of p.pendingOut ?? []) p.out[fd]?.write(d)
    p.pendingOut = null
  }

  /** Makes conn the process's session with node: output, messages and loss are handled from now on. */
  private bind (p: HomeProc, conn: Conn, node: number): void {
    p.conn = conn
    conn.on('data', (type: string, d: Buffer) => {
      if (type === 'I') { p.imageIn?.push(d); return }
      const fd = type === 'O' ? 1 : type === 'E' ? 2 : 0
      if (!fd) return
      if (p.pendingOut) p.pendingOut.push([fd, d]); else p.out[fd]?.write(d)
    })
    conn.on('msg', (m: Msg) => { void this.onHomeMsg(p, conn, m) })
    conn.on('close', () => {
      if (p.conn !== conn) return
      p.conn = null
      void this.lost(p, node)
    })
  }

  private arrived (p: HomeProc, node: number): void {
    p.moving = false
    p.where = node
    p.nmigs++
    log('process %d runs on node %d', p.pid, node)
    this.emit('moved', p.pid, node)
  }

  private async onHomeMsg (p: HomeProc, conn: Conn, m: Msg): Promise<void> {
    if (m.t === 'exit') {
      p.conn = null
      conn.close()
      if (p.pendingOut) await this.relayStdio(p)
      await this.flushOut(p)
      const dep = p.deputy
      if (!dep) return
      if (m.signal) await dep.kill(Number(m.signal)).catch(e => log('kill deputy: %s', e.message))
      else await dep.exit(Number(m.code ?? 0)).catch(e => log('exit deputy: %s', e.message))
      this.forget(p)
    } else if (m.t === 'want') {
      this.serveWant(p, conn, Number(m.n))
    } else if (m.t === 'image-start') {
      p.imageIn = []
    } else if (m.t === 'image-end') {
      const chunks = p.imageIn ?? []
      p.imageIn = null
      if (p.imageWaiter) { const w = p.imageWaiter; p.imageWaiter = null; w(chunks) } else {
        // the guest node sends it home by itself (expel)
        p.where = 'migrating'
        await this.landHome(p, conn, chunks)
      }
    }
  }

  /** Hands the remote at most n bytes of stdin, as soon as there are some (or EOF). */
  private serveWant (p: HomeProc, conn: Conn, n: number): void {
    const fd = p.stdinFd
    if (fd === null || p.conn !== conn || p.moving) return
    const buf = Buffer.alloc(Math.max(1, Math.min(n, 65536)))
    let got: number
    try { got = readSync(fd, buf, 0, buf.length, null) } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') { setTimeout(() => this.serveWant(p, conn, n), 5).unref(); return }
      log('stdin of %d: %s', p.pid, (e as Error).message)
      got = 0
    }
    if (got === 0) void conn.send({ t: 'stdin-end' }).catch(() => {})
    else void conn.frame('N', buf.subarray(0, got)).catch(() => {})
  }

  private async flushOut (p: HomeProc): Promise<void> {
    await Promise.all(p.out.map(s => s ? new Promise<void>(resolve => { if (s.writableLength === 0) resolve(); else s.once('drain', () => resolve()) }) : undefined))
  }

  /** Gets the image of a remote process back over its connection (the remote stops it). */
  private async fetchImage (p: HomeProc): Promise<{ conn: Conn, chunks: Buffer[] }> {
    const conn = p.conn
    if (!conn) throw new Error('no connection to the remote')
    p.moving = true
    const got = new Promise<Buffer[]>(resolve => { p.imageWaiter = resolve })
    await conn.send({ t: 'gohome' })
    const chunks = await Promise.race([got, conn.expect('stay').then(m => { throw new Error(`remote could not stop it: ${String(m.reason)}`) })])
    return { conn, chunks }
  }

  private async landHome (p: HomeProc, conn: Conn, chunks: Buffer[]): Promise<void> {
    const dep = p.deputy as ppm.Deputy
    p.conn = null
    await this.flushOut(p)
    try {
      await dep.restoreInto(Readable.from(chunks))
    } catch (e) {
      p.conn = conn
      await conn.send({ t: 'home-failed', reason: (e as Error).message })
      throw e
    }
    await conn.send({ t: 'home-ok' }).catch(() => {})
    conn.close()
    this.detachDeputy(p)
    p.moving = false
    p.where = 'home'
    p.nmigs++
    log('process %d is home', p.pid)
    this.emit('moved', p.pid, 0)
  }

  private async comeHome (p: HomeProc): Promise<void> {
    const { conn, chunks } = await this.fetchImage(p)
    await this.landHome(p, conn, chunks)
  }

  private async hop (p: HomeProc, node: number): Promise<void> {
    const { conn: old, chunks } = await this.fetchImage(p)
    p.imageBytes = chunks.reduce((a, c) => a + c.length, 0)
    p.conn = null
    await this.flushOut(p)
    let next: { conn: Conn, hostinfo: string } | undefined
    try {
      next = await this.offer(p, node)
      const reply = next.conn.expect('running', 'failed').catch(e => ({ t: 'failed', reason: (e as Error).message } as Msg))
      this.bind(p, next.conn, node)
      const w = next.conn.imageWriter()
      for (const c of chunks) await new Promise<void>((resolve, reject) => w.write(c, e => e ? reject(e) : resolve()))
      await new Promise<void>(resolve => w.end(resolve))
      const m = await reply
      if (m.t !== 'running') throw new Error(`node ${node} could not run it: ${String(m.reason)}`)
    } catch (e) {
      p.conn = null
      next?.conn.close()
      // back where it was: its old node still has it stopped; put it in its original instead
      await this.landHome(p, old, chunks)
      throw new Error(`${(e as Error).message}; it runs at home again`)
    }
    await old.send({ t: 'home-ok' }).catch(() => {})
    old.close()
    this.arrived(p, node)
  }

  /** The remote's node died or the connection broke: the deputy reports it and exits. */
  private async lost (p: HomeProc, node: number): Promise<void> {
    // during a move the move itself handles a broken connection (and calls this when the process
    // was lost with it)
    if (p.where !== node) return
    const msg = `hpcfs: process ${p.pid} was lost with node ${node}\n`
    log(msg.trim())
    await new Promise<void>(resolve => p.out[2] ? p.out[2].write(msg, () => resolve()) : resolve())
    await p.deputy?.exit(LOST_STATUS).catch(() => {})
    this.forget(p)
  }

  private deputyEnded (p: HomeProc): void {
    // the original died at home (SIGKILL cannot be intercepted): end the remote too
    if (p.conn) { void p.conn.send({ t: 'kill' }).catch(() => {}); p.conn.close(); p.conn = null }
    this.forget(p)
  }

  private detachDeputy (p: HomeProc): void {
    p.deputy?.removeAllListeners()
    p.deputy = null
    for (const s of p.out) s?.end()
    p.out = [null, null, null]
    if (p.stdinFd !== null) { try { closeSync(p.stdinFd) } catch {} p.stdinFd = null }
    p.pendingOut = []
  }

  private forget (p: HomeProc): void {
    this.detachDeputy(p)
    p.where = 'home'
    this.procs.delete(p.pid)
  }

  /** Brings every process of this node home (admin/bring); resolves when all are home. */
  async bringAll (): Promise<void> {
    await Promise.all([...this.procs.values()].filter(p => typeof p.where === 'number').map(p => this.requestMove(p.pid, 'home').catch(() => {})))
  }

  // ---- guest side ------------------------------------------------------------------------

  private async receive (conn: Conn, m: Msg): Promise<void> {
    const home = Number(m.home)
    if (this.cluster.blocked) { await conn.send({ t: 'refuse', reason: 'this node is blocked (admin/block)' }); conn.close(); return }
    if (!Number.isInteger(home) || !this.cluster.addressOf(home)) { await conn.send({ t: 'refuse', reason: `unknown home node ${home}` }); conn.close(); return }
    const need = Number(m.bytes ?? 0)
    const free = availableBytes()
    if (need > 0 && free < need + MEMORY_RESERVE) {
      await conn.send({ t: 'refuse', reason: `not enough memory (${Math.round(need / 2 ** 20)} MiB wanted, ${Math.round(free / 2 ** 20)} MiB available)` })
      conn.close()
      return
    }
    const hostinfo = await this.hostInfo?.catch(() => '') ?? ''
    const image = new PassThrough()
    let received = 0
    const onData = (type: string, d: Buffer): void => {
      if (type !== 'I') return
      received += d.length
      if (this.testFault === 'restore' && received > 4096) { image.destroy(new Error('injected fault: restore broken half-way')); return }
      if (!image.write(d)) { conn.sock.pause(); image.once('drain', () => conn.sock.resume()) }
    }
    conn.on('data', onData)
    const onMsg = (x: Msg): void => { if (x.t === 'image-end') image.end(); else if (x.t === 'abort') image.destroy(new Error(String(x.reason))) }
    conn.on('msg', onMsg)
    conn.once('close', () => image.destroy(new Error('connection closed')))
    await conn.send({ t: 'accept', hostinfo })
    let r: ppm.Restored
    try {
      r = await ppm.restore(image, { stdio: ['pipe', 'pipe', 'pipe'], clock: 'auto' })
    } catch (e) {
      log('restore from node %d failed: %s', home, (e as Error).message)
      await conn.send({ t: 'failed', reason: (e as Error).message }).catch(() => {})
      conn.close()
      return
    }
    conn.off('data', onData)
    conn.off('msg', onMsg)
    conn.sock.resume() // it may have been paused by the image's backpressure
    const g = new Guest(r.pid, home, Number(m.pid), conn, r, Date.now())
    this.guests.set(r.pid, g)
    r.stdout?.on('data', (d: Buffer) => { void conn.frame('O', d).catch(() => {}) })
    r.stderr?.on('data', (d: Buffer) => { void conn.frame('E', d).catch(() => {}) })
    r.stdin?.on('error', () => {})
    conn.on('data', (type: string, d: Buffer) => {
      if (type !== 'N') return
      r.stdin?.write(d)
      g.wanting = false
      g.delivered = { line: g.wantLine, switches: ctxtSwitches(g.pid) }
    })
    if (m.stdin === 'pull') this.pullStdin(g)
    conn.on('msg', (x: Msg) => { void this.onGuestMsg(g, x) })
    conn.on('close', () => {
      if (this.guests.get(g.pid) !== g || g.leaving) return
      log('lost home of guest %d (node %d): killing it', g.pid, g.home)
      try { process.kill(g.pid, 'SIGKILL') } catch {}
      this.guests.delete(g.pid)
    })
    void r.exited.then(async st => {
      if (g.leaving) return
      await g.outputDone
      this.guests.delete(g.pid)
      await conn.send({ t: 'exit', code: st.code, signal: st.signal }).catch(() => {})
      conn.close()
    })
    await conn.send({ t: 'running', pid: r.pid })
    log('guest %d from node %d (its pid %d) runs here', r.pid, home, g.homePid)
  }

  private async onGuestMsg (g: Guest, m: Msg): Promise<void> {
    if (m.t === 'signal') { try { process.kill(g.pid, Number(m.sig)) } catch (e) { log('signal %d to %d: %s', m.sig, g.pid, (e as Error).message) } } else if (m.t === 'kill') { try { process.kill(g.pid, 'SIGKILL') } catch {} } else if (m.t === 'stdin-end') { g.stdinEnded = true; g.wanting = false; g.r.stdin?.end() }
    else if (m.t === 'gohome') await this.sendHome(g)
  }

  /**
   * Pull-mode stdin: every few ms, if the guest is blocked reading fd 0, ask home for at most
   * what that read wants; a pipe read takes all of it, so nothing waits in the pipe when the
   * process is stopped to move on. (A poll/select on fd 0 gets one byte at a time.)
   */
  private pullStdin (g: Guest): void {
    const t = setInterval(() => {
      if (this.guests.get(g.pid) !== g || g.stdinEnded) { clearInterval(t); return }
      if (g.wanting || g.leaving) return
      const line = syscallLine(g.pid)
      const want = stdinWant(line)
      if (!want) return
      if (g.delivered && g.delivered.line === line && ctxtSwitches(g.pid) === g.delivered.switches) return // not consumed yet
      g.wanting = true
      g.wantLine = line
      void g.conn.send({ t: 'want', n: want }).catch(() => {})
    }, 5)
    t.unref()
  }

  /** Stops the guest, drains its output, and streams its image home (gohome, expel). */
  async sendHome (g: Guest): Promise<void> {
    if (g.leaving) return
    g.leaving = true
    // stdin handed over must be read before the process stops, or it would stay in the pipe
    for (let i = 0; i < 200 && (g.wanting || (g.delivered && g.delivered.line === syscallLine(g.pid) && ctxtSwitches(g.pid) === g.delivered.switches)); i++) {
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    const chunks: Buffer[] = []
    try {
      await ppm.dump(g.pid, new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb() } }))
    } catch (e) {
      g.leaving = false
      await g.conn.send({ t: 'stay', reason: (e as Error).message }).catch(() => {})
      return
    }
    await g.outputDone
    await g.conn.send({ t: 'image-start' })
    for (const c of chunks) await g.conn.frame('I', c)
    await g.conn.send({ t: 'image-end' })
    const m = await g.conn.expect('home-ok', 'home-failed').catch(e => ({ t: 'home-failed', reason: (e as Error).message } as Msg))
    if (m.t === 'home-ok') { this.guests.delete(g.pid); g.conn.close(); return }
    // home could not take it back: run it here again rather than lose it
    log('home refused guest %d back (%s): restoring it here', g.pid, m.reason)
    this.guests.delete(g.pid)
    try { const r = await ppm.restore(Readable.from(chunks), { stdio: ['ignore', 'ignore', 'ignore'] }); log('guest restored here as %d', r.pid) } catch (e) { log('guest lost: %s', (e as Error).message) }
  }

  /** Sends every guest home (admin/expel); resolves when none is left. */
  async expelAll (): Promise<void> {
    await Promise.all([...this.guests.values()].map(g => this.sendHome(g).catch(e => log('expel %d: %s', g.pid, (e as Error).message))))
  }
}

/** /proc/PID/syscall: "nr arg0 ..." while blocked in a system call, "running" otherwise. */
function syscallLine (pid: number): string {
  try { return readFileSync(`/proc/${pid}/syscall`, 'utf8').trim() } catch { return '' }
}

const POLLS = new Set([7, 23, 232, 270, 271, 281, 441]) // poll select epoll_wait pselect6 ppoll epoll_pwait epoll_pwait2

/** How many stdin bytes a blocked system call wants (0: it is not reading stdin). */
export function stdinWant (line: string): number {
  const f = line.split(' ')
  if (f.length < 4 || !/^\d+$/.test(f[0])) return 0
  const nr = Number(f[0])
  const a0 = Number(f[1])
  if (nr === 0 && a0 === 0) return Math.min(Number(f[3]), 65536) // read(0, buf, count)
  if (nr === 19 && a0 === 0) return 4096 // readv(0, ...)
  if ((nr === 23 || nr === 270) && a0 === 0) return 0 // select used as a sleep
  if ((nr === 7 || nr === 271) && Number(f[2]) === 0) return 0 // poll with no descriptors
  if (POLLS.has(nr)) return 1
  return 0
}

function ctxtSwitches (pid: number): number {
  try { return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? -1) } catch { return -1 }
}

/** Memory a node keeps free for itself when it takes guests. */
export const MEMORY_RESERVE = 64 * 2 ** 20

/** MemAvailable of this host, in bytes. */
function availableBytes (): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
  return m ? Number(m[1]) * 1024 : Number.MAX_SAFE_INTEGER
}

/** Resident memory of a process (what its image will be, roughly), in bytes. */
function residentBytes (pid: number): number {
  try { return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024 } catch { return 0 }
}

function comm (pid: number): string {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '?' }
}

/**
 * Opens the output end of a relayed descriptor. Pipes become non-blocking libuv streams
 * (net.Socket), so that a slow reader blocks no thread-pool thread; terminals use fs streams.
 */
function openRelay (path: string): Writable {
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY)
  if (fstatSync(fd).isFIFO()) return new Socket({ fd, readable: false, writable: true })
  return createWriteStream('', { fd })
}

/**
 * What a standard descriptor of a process is: unnamed pipes, sockets and terminals are relayed by
 * the deputy; regular files and named FIFOs travel in the image by path (the cluster shares a file
 * namespace), and so does anything else.
 */
function stdioKind (pid: number, fd: number): 'pipe' | 'socket' | 'tty' | 'path' | 'closed' {
  let link: string
  try { link = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return 'closed' }
  if (link.startsWith('pipe:')) return 'pipe'
  if (link.startsWith('socket:')) return 'socket'
  if (/^\/dev\/(pts\/|tty|console)/.test(link)) return 'tty'
  return 'path'
}
