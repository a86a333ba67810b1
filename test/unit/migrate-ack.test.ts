// Acknowledged output (src/migrate/ack.ts): the guest side's log of output home has not
// acknowledged, home's counts, and the reading that stops (never drops) while home cannot take it;
// home's log of input handed to a process away (InLog).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough, type Readable } from 'node:stream'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GuestOutput, InLog, OutCounts, OutLog, outFrame } from '../../src/migrate/ack.js'
import { MemLink } from '../../src/migrate/memlink.js'
import { parseFdFrame } from '../../src/migrate/relay.js'
import { Peer, until } from './migrate-fixture.js'

const b = (s: string): Buffer => Buffer.from(s)
const text = (xs: Array<[number, Buffer]>): string[] => xs.map(([fd, d]) => `${fd}:${d.toString()}`)

test('the log numbers output per fd and drops what home acknowledged, a part of a chunk too', () => {
  const log = new OutLog(1000)
  log.add(1, b('hello '))
  log.add(2, b('oops\n'))
  log.add(1, b('world\n'))
  log.add(3, b('w3'))
  assert.deepEqual([...log.read], [[1, 12], [2, 5], [3, 2]])
  assert.equal(log.kept, 19)
  log.ack([[1, 8], [2, 5]])
  assert.equal(log.kept, 6)
  // home got 'hello wo' and all of stderr: on a new connection it is sent the rest, in order
  assert.deepEqual(text(log.rejoined([[1, 8], [2, 5]])), ['1:rld\n', '3:w3'])
  // an older count (already acknowledged) drops nothing more and brings nothing back
  assert.deepEqual(text(log.rejoined([[1, 3]])), ['1:rld\n', '3:w3'])
  log.ack([[1, 12], [3, 2]])
  assert.equal(log.kept, 0)
  assert.deepEqual(log.rejoined([[1, 12], [2, 5], [3, 2]]), [])
  log.add(1, b('more'))
  assert.deepEqual(text(log.rejoined([[1, 12]])), ['1:more'])
})

test('the log is full at its bound; acknowledgements make room', () => {
  const log = new OutLog(10)
  log.add(1, b('12345'))
  assert.equal(log.full(), false)
  log.add(1, b('67890'))
  assert.equal(log.full(), true)
  log.ack([[1, 4]])
  assert.equal(log.full(), false)
  assert.equal(log.kept, 6)
})

test('the bound is per fd: one output at its bound leaves the others below theirs', () => {
  const log = new OutLog(10)
  log.add(1, b('1234567890'))
  log.add(2, b('abc'))
  assert.equal(log.full(1), true)
  assert.equal(log.full(2), false)
  assert.equal(log.full(), true, 'some fd is at its bound')
  log.ack([[1, 1]])
  assert.equal(log.full(1), false)
  assert.equal(log.full(), false)
})

test('a log whose start is unknown (taken up by a daemon started again) follows home\'s count: all it kept goes, numbered after it', () => {
  const log = new OutLog(1000, true)
  log.add(1, b('left in the pipe\n'))
  log.ack([[1, 3]]) // (not before home has given its count)
  assert.equal(log.kept, 17)
  assert.deepEqual(text(log.rejoined([[1, 500], [2, 7]])), ['1:left in the pipe\n'])
  assert.deepEqual([...log.read].sort(), [[1, 517], [2, 7]])
  log.ack([[1, 510]])
  assert.deepEqual(text(log.rejoined([[1, 510], [2, 7]])), ['1:e pipe\n'])
  // a count beyond anything read here (another numbering) is taken the same way, never as "all sent"
  const other = new OutLog(1000)
  other.add(1, b('abc'))
  assert.deepEqual(text(other.rejoined([[1, 99]])), ['1:abc'])
  assert.equal(other.read.get(1), 102)
})

test('home counts what it got per fd and says it is due at once past the byte bound', () => {
  const c = new OutCounts()
  assert.equal(c.add(1, 10, 100), false)
  assert.equal(c.add(3, 50, 100), false)
  assert.equal(c.add(1, 40, 100), true)
  assert.deepEqual(c.take(), [[1, 50], [3, 50]])
  assert.equal(c.unacked, 0)
  assert.equal(c.add(2, 1, 100), false)
  assert.deepEqual(c.counts(), [[1, 50], [2, 1], [3, 50]])
})

test('home acknowledges only what it has written: output waiting for a reader at home is got, not acknowledged, until written', () => {
  const c = new OutCounts()
  assert.equal(c.add(1, 60, 100, false), false, 'waiting: nothing due')
  assert.equal(c.add(2, 30, 100), false)
  assert.deepEqual(c.take(), [[1, 0], [2, 30]])
  assert.equal(c.written(1, 40, 100), false)
  assert.equal(c.add(1, 70, 100), true, '40 + 70 written since the last acknowledgement')
  assert.deepEqual(c.take(), [[1, 110], [2, 30]], '20 bytes of fd 1 still wait')
  // a new connection is told all that home has, written or not (nothing is sent again)
  assert.deepEqual(c.takeAll(), [[1, 130], [2, 30]])
  assert.equal(c.unacked, 0)
})

test('output frames: O for fd 1, E for fd 2, W with the fd above', () => {
  assert.deepEqual(outFrame(1, b('x')), ['O', b('x')])
  assert.deepEqual(outFrame(2, b('y')), ['E', b('y')])
  const [t, p] = outFrame(7, b('z'))
  assert.equal(t, 'W')
  assert.deepEqual(parseFdFrame(p), [7, b('z')])
})

test('a guest\'s output: sent while in touch; kept and not read while away; what home lacks is sent once on the new connection; reading stops at the bound until acknowledged', async () => {
  const out1 = new PassThrough()
  const out2 = new PassThrough()
  const o = new GuestOutput(64)
  o.attach([[1, out1], [2, out2]])
  const [mine, theirs] = MemLink.pair('node 1', 'node 2')
  const home = new Peer(theirs)
  o.connect(mine)
  out1.write('a1\n')
  out2.write('e1\n')
  await home.until(() => home.frames.length === 2, 'two frames')
  assert.deepEqual(home.frames.map(([t, d]) => `${t}${d.toString()}`), ['Oa1\n', 'Ee1\n'])
  // the connection breaks; what is written meanwhile is kept (one chunk read, then reading stops)
  mine.close()
  await until(() => mine.closed, 'closed')
  out1.write('a2\n')
  await until(() => o.log.read.get(1) === 6, 'a2 read')
  o.disconnect()
  out1.write('a3\n')
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(o.log.read.get(1), 6, 'not read while away: it waits in the pipe')
  // home got a1 but not e1 (say it was on its way when the connection broke)
  const [m2, t2] = MemLink.pair('node 1', 'node 2')
  const back = new Peer(t2)
  o.connect(m2, [[1, 3]])
  await back.until(() => back.frames.map(f => f[1].toString()).join('').includes('a3'), 'the rest')
  assert.deepEqual(back.frames.map(([t, d]) => `${t}${d.toString()}`), ['Ee1\n', 'Oa2\n', 'Oa3\n'])
  // at the bound (64 bytes kept) it stops reading until home acknowledges
  const chunk = 'x'.repeat(40)
  out1.write(chunk)
  out1.write(chunk)
  await until(() => o.log.full(), 'full')
  out1.write(chunk)
  await new Promise(resolve => setTimeout(resolve, 50))
  const read = o.log.read.get(1) ?? 0
  assert.equal(read, 6 + 3 + 80, 'nothing read past the bound')
  o.ack([[1, read], [2, 3]])
  await until(() => o.log.read.get(1) === read + 40, 'reading again once acknowledged')
  assert.equal(o.log.kept, 40)
})

test('a guest\'s output drains what an ended process left in its pipes, even while away', async () => {
  const out1 = new PassThrough()
  const o = new GuestOutput(1 << 20)
  o.attach([[1, out1]])
  o.disconnect()
  out1.write('last words\n')
  out1.end()
  const ended = new Promise<void>(resolve => out1.once('end', resolve))
  await o.drain(ended, 2000)
  assert.equal(o.log.read.get(1), 11)
  assert.deepEqual(text(o.log.rejoined([])), ['1:last words\n'])
})

test('what is read is on disk until home has it: a daemon started again goes on from the spill file exactly, also with frames lost in a dead socket', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpc-ack-'))
  try {
    const path = join(dir, '42.out')
    const out1 = new PassThrough()
    const out2 = new PassThrough()
    const o = new GuestOutput(1 << 20)
    o.attach([[1, out1], [2, out2]])
    o.persist(path)
    assert.ok(existsSync(path))
    const [mine, theirs] = MemLink.pair('node 1', 'node 2')
    const home = new Peer(theirs)
    o.connect(mine)
    out1.write('before\n')
    await home.until(() => home.frames.length === 1, 'a frame')
    o.ack([[1, 7]]) // home has it: the file keeps only its count
    assert.equal(readFileSync(path).length, 4 + JSON.stringify([[1, 7]]).length)
    out1.write('sent, not acknowledged\n')
    out2.write('err\n')
    await until(() => o.log.read.get(1) === 30 && o.log.read.get(2) === 4, 'read on')
    // the daemon dies here (what it sent was lost with its socket): the next one takes the guest up
    // from the spill file
    o.unpersist(false)
    const again = GuestOutput.resume(path, 1 << 20)
    assert.ok(!existsSync(path), 'the spill file is used once (the new daemon writes its own)')
    assert.equal(again.log.rebase, false)
    assert.deepEqual(again.counts(), [[1, 30], [2, 4]])
    // home had 'before\n' (7 bytes) and nothing of fd 2: what it lacks is sent, once
    assert.deepEqual(text(again.log.rejoined([[1, 7]])), ['1:sent, not acknowledged\n', '2:err\n'])
    // persisted again (as the new daemon's guest does): the same state, and then gone with the guest
    again.persist(path)
    assert.deepEqual(GuestOutput.resume(path, 1 << 20).counts(), [[1, 30], [2, 4]])
    again.persist(path)
    again.unpersist(true)
    assert.ok(!existsSync(path))
    // without a spill file the numbering starts at home's count
    assert.equal(GuestOutput.resume(path, 1 << 20).log.rebase, true)
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('a spill file cut short by the death of its writer gives what is whole; a broken one falls back to home\'s count', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpc-ack-'))
  try {
    const path = join(dir, '7.out')
    const head = Buffer.from(JSON.stringify([[1, 100], [2, 5]]))
    const len = Buffer.alloc(4); len.writeUInt32BE(head.length)
    const entry = (fd: number, s: string): Buffer => { const h = Buffer.alloc(8); h.writeUInt32BE(fd); h.writeUInt32BE(s.length, 4); return Buffer.concat([h, Buffer.from(s)]) }
    writeFileSync(path, Buffer.concat([len, head, entry(2, 'err'), entry(1, 'whole'), entry(1, 'cut short').subarray(0, 10)]))
    const o = GuestOutput.resume(path, 1000)
    assert.deepEqual(o.counts(), [[1, 105], [2, 8]])
    assert.deepEqual(text(o.log.rejoined([[1, 100], [2, 5]])), ['2:err', '1:whole'])
    writeFileSync(path, 'garbage')
    assert.equal(GuestOutput.resume(path, 1000).log.rebase, true)
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('input handed out is kept until a want says it is there; what went out on a connection that broke is handed again once, on the new one', () => {
  const log = new InLog()
  const a = {}
  const c = {}
  const strs = (xs: Buffer[]): string[] => xs.map(x => x.toString())
  log.add(0, b('one\n'), a)
  assert.deepEqual(log.want(0, 4, a), [], 'all of it is there')
  assert.equal(log.kept(), 0)
  log.add(0, b('two\n'), a)
  log.add(3, b('x'), a)
  // a want on the same connection that does not count it yet: it is on its way, not handed again
  assert.deepEqual(log.want(0, 4, a), [])
  assert.equal(log.kept(), 5)
  // the connection broke before it arrived: on the new one, the node has 4 bytes of fd 0
  assert.deepEqual(strs(log.want(0, 4, c)), ['two\n'])
  assert.deepEqual(log.want(0, 4, c), [], 'handed again once: now on its way over c')
  assert.deepEqual(log.want(0, 8, c), [])
  // fd 3: part of a chunk got there
  log.add(3, b('yz'), a)
  assert.deepEqual(strs(log.want(3, 2, c)), ['z'])
  assert.deepEqual(log.want(3, 3, c), [])
  assert.equal(log.kept(), 0)
})

test('input: a count beyond what was handed (another numbering) or no count hands nothing again and keeps nothing of that fd', () => {
  const log = new InLog()
  const a = {}
  const c = {}
  log.add(0, b('abc'), a)
  assert.deepEqual(log.want(0, 10, c), [])
  assert.equal(log.kept(), 0)
  log.add(0, b('d'), a)
  assert.deepEqual(log.want(0, 10, c).map(x => x.toString()), ['d'], 'numbered on from the node\'s count: d (the 11th byte) went out on a and is not there')
  log.add(4, b('e'), a)
  assert.deepEqual(log.want(4, undefined, c), [])
  assert.equal(log.kept(), 1, 'd, now on its way over c')
})

test('a guest\'s output that streams is read in fewer, bigger chunks (paced), every byte in order', async () => {
  // a real pipe (a child's stdout): a read takes all that waits in it, as the daemon's reads of a
  // guest's output do; the child writes a line every millisecond, 300 of them
  const child = spawn(process.execPath, ['-e', 'let i = 0; const t = setInterval(() => { process.stdout.write(`line ${i}\\n`); if (++i === 300) clearInterval(t) }, 1)'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const o = new GuestOutput(1 << 20)
  o.attach([[1, child.stdout as Readable]])
  const [mine, theirs] = MemLink.pair('node 1', 'node 2')
  const home = new Peer(theirs)
  o.connect(mine)
  const want = Array.from({ length: 300 }, (_, i) => `line ${i}\n`).join('')
  await home.until(() => home.frames.map(f => f[1].toString()).join('') === want, 'all 300 lines, in order')
  // unpaced, most lines are a read and a frame of their own; paced, a read per OUTPUT_PACE_MS
  // (20 ms) once it streams: about 300 ms / 20 ms of them, whatever the machine's speed
  assert.ok(home.frames.length < 60, `${home.frames.length} frames for 300 lines`)
  mine.close()
})

test('a guest\'s output at its bound on one fd stops reading that fd alone; an acknowledgement, or home\'s count on a new connection, reads it again', async () => {
  const out1 = new PassThrough()
  const out2 = new PassThrough()
  const o = new GuestOutput(64)
  const [mine, theirs] = MemLink.pair('node 2', 'node 1')
  const home = new Peer(theirs)
  o.attach([[1, out1], [2, out2]])
  o.connect(mine)
  const chunk = 'x'.repeat(40)
  out1.write(chunk)
  out1.write(chunk)
  await until(() => o.log.full(1), 'fd 1 at its bound')
  out1.write(chunk)
  out2.write('still read\n')
  await until(() => o.log.read.get(2) === 11, 'fd 2 read on')
  await home.until(() => home.frames.some(([t, d]) => t === 'E' && d.toString() === 'still read\n'), 'fd 2 sent')
  const read = o.log.read.get(1) ?? 0
  assert.equal(read, 80, 'fd 1 not read past its bound')
  o.ack([[1, 40]])
  await until(() => o.log.read.get(1) === 120, 'fd 1 read again once acknowledged')
  // at the bound again; the link breaks; home's count on the new connection covers all of it
  out1.write(chunk)
  await until(() => o.log.full(1) && o.log.read.get(1) === 120, 'fd 1 at its bound again')
  o.disconnect()
  const [m2, t2] = MemLink.pair('node 2', 'node 1')
  const back = new Peer(t2)
  o.connect(m2, [[1, 120], [2, 11]])
  await until(() => o.log.read.get(1) === 160, 'fd 1 read again after the rejoin')
  await back.until(() => back.frames.some(([t]) => t === 'O'), 'sent on the new connection')
})
