// What a blocked process waits for on its stdin (src/migrate/stdin.ts): the pure parsers, and real
// processes blocked in read, poll, select and epoll on stdin or on something else.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { epollWatchesStdin, pollfdsWatchStdin, stdinWait, syscallLine, STDIN_CHUNK } from '../../src/migrate/stdin.js'
import { closedHow, fdFrame, parseFdFrame } from '../../src/migrate/relay.js'
import { unread } from '../../src/ppm/ppm.js'
import { readlinkSync } from 'node:fs'
import { Lab as Bins } from '../ppm/harness.js'
import { poll } from '../../src/util/poll.js'

const bins = new Bins()
const kids: ChildProcess[] = []
after(() => { for (const k of kids) k.kill('SIGKILL'); bins.cleanup() })

test('struct pollfd arrays and epoll fdinfo: is fd 0 watched for input?', () => {
  const pfd = (fd: number, events: number): Buffer => { const b = Buffer.alloc(8); b.writeInt32LE(fd, 0); b.writeInt16LE(events, 4); return b }
  assert.equal(pollfdsWatchStdin(Buffer.concat([pfd(5, 1), pfd(0, 1)])), true)
  assert.equal(pollfdsWatchStdin(pfd(0, 0x40)), true, 'POLLRDNORM')
  assert.equal(pollfdsWatchStdin(pfd(0, 4)), false, 'POLLOUT only')
  assert.equal(pollfdsWatchStdin(pfd(3, 1)), false)
  assert.equal(pollfdsWatchStdin(Buffer.alloc(0)), false)
  const info = (fd: number, ev: string): string => `pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1038\ntfd:        ${fd} events:       ${ev} data:                0  pos:0 ino:178d1d sdev:f\n`
  assert.equal(epollWatchesStdin(info(0, '19')), 'level')
  assert.equal(epollWatchesStdin(info(0, '80000019')), 'edge')
  assert.equal(epollWatchesStdin(info(0, '4')), null, 'EPOLLOUT only')
  assert.equal(epollWatchesStdin(info(10, '19')), null)
  assert.equal(epollWatchesStdin(info(4, '19') + info(0, '1').split('\n').find(l => l.startsWith('tfd')) as string), 'level')
  // any other fd (a relayed one above 2)
  assert.equal(pollfdsWatchStdin(Buffer.concat([pfd(0, 1), pfd(3, 1)]), 3), true)
  assert.equal(pollfdsWatchStdin(pfd(0, 1), 3), false)
  assert.equal(epollWatchesStdin(info(3, '19'), 3), 'level')
  assert.equal(epollWatchesStdin(info(0, '19'), 3), null)
})

test('W and R frames carry the fd, then the bytes', () => {
  const f = fdFrame(70000, Buffer.from('abc'))
  assert.deepEqual(parseFdFrame(f), [70000, Buffer.from('abc')])
  assert.deepEqual(parseFdFrame(fdFrame(3, Buffer.alloc(0))), [3, Buffer.alloc(0)])
  assert.equal(parseFdFrame(Buffer.from([0, 0, 3])), null)
})

/** Starts a process with a pipe as stdin and waits until it is blocked in system call `nr`. */
async function blocked (nr: number[], cmd: string, args: string[]): Promise<number> {
  const c = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'ignore'] })
  kids.push(c)
  const pid = c.pid as number
  await poll(`${cmd} to block in ${nr.join('/')}`, () => nr.includes(Number(syscallLine(pid).split(' ')[0])), { timeoutMs: 5000, everyMs: 10 })
    .catch(e => { throw new Error(`${(e as Error).message}: ${syscallLine(pid)}`) })
  return pid
}

const READ = [0]
const POLL = [7, 271]
const SELECT = [23, 270]
const EPOLL = [232, 281, 441]
const SLEEP = [35, 230]

test('real processes: read, poll and select on stdin are waits for stdin; a sleep or a poll on another fd is not', async () => {
  const pollcat = bins.compile('pollcat')
  const cat = await blocked(READ, 'cat', [])
  assert.deepEqual(stdinWait(cat, syscallLine(cat)), { kind: 'read', n: Math.min(STDIN_CHUNK, Number(syscallLine(cat).split(' ')[3])) })
  for (const how of ['poll', 'select']) {
    const p = await blocked(how === 'poll' ? POLL : SELECT, pollcat, [how])
    assert.deepEqual(stdinWait(p, syscallLine(p)), { kind: 'poll', n: STDIN_CHUNK }, how)
  }
  const sleeper = await blocked(SLEEP, 'sleep', ['60'])
  assert.equal(stdinWait(sleeper, syscallLine(sleeper)), null)
  // python3, when there: epoll on stdin (level-triggered), then poll on fd 3 only
  if (spawnSync('python3', ['-c', '']).status === 0) {
    const ep = await blocked(EPOLL, 'python3', ['-c', 'import select; e = select.epoll(); e.register(0, select.EPOLLIN); e.poll()'])
    assert.deepEqual(stdinWait(ep, syscallLine(ep)), { kind: 'poll', n: STDIN_CHUNK }, 'epoll, level-triggered')
    const et = await blocked(EPOLL, 'python3', ['-c', 'import select; e = select.epoll(); e.register(0, select.EPOLLIN | select.EPOLLET); e.poll()'])
    assert.deepEqual(stdinWait(et, syscallLine(et)), { kind: 'poll', n: 1 }, 'epoll, edge-triggered: a byte at a time')
    const other = await blocked(POLL, 'python3', ['-c', 'import os, select; r, w = os.pipe(); p = select.poll(); p.register(r, select.POLLIN); p.poll()'])
    assert.equal(stdinWait(other, syscallLine(other)), null, 'a poll without fd 0')
    assert.deepEqual(stdinWait(other, syscallLine(other), 3), { kind: 'poll', n: STDIN_CHUNK }, 'a poll of fd 3, asked about fd 3')
    // (python's start-up may read other fds: wait for the read of the pipe, moved to fd 40)
    const rd = await blocked(READ, 'python3', ['-c', 'import os; r, w = os.pipe(); os.dup2(r, 40); os.read(40, 100)'])
    await poll('the read of fd 40', () => syscallLine(rd).startsWith('0 0x28 '), { timeoutMs: 5000, everyMs: 10 }).catch(() => undefined) // checked below, with the line
    assert.deepEqual(stdinWait(rd, syscallLine(rd), 40), { kind: 'read', n: 100 }, `a read of fd 40: ${syscallLine(rd)}`)
    assert.equal(stdinWait(rd, syscallLine(rd), 4), null)
    const rv = await blocked([45], 'python3', ['-c', 'import socket; a, b = socket.socketpair(); a.recv(300)'])
    assert.deepEqual(stdinWait(rv, syscallLine(rv), 3), { kind: 'read', n: 300 }, 'a recv of a socket on fd 3')
  }
})

/** Polls fn (every 10 ms, 5 s at most) until it returns what is wanted; returns its last value (the caller asserts it). */
async function becomes<T> (fn: () => T | Promise<T>, want: T): Promise<T> {
  return await poll('a value', async () => { const v = await fn(); return v === want ? { v } : undefined }, { timeoutMs: 5000, everyMs: 10 })
    .then(r => r.v, async () => await fn())
}

test('closedHow: a relayed output closed or shut down by a process that runs on, and one that ended', { skip: spawnSync('python3', ['-c', '']).status !== 0 }, async () => {
  // fd 3 and fd 4 are socketpairs (node's stdio pipes); it shuts 3 down for writing, closes 4, on stdin lines
  const c = spawn('python3', ['-c', 'import socket, sys\nsys.stdin.readline(); s = socket.socket(fileno=3); s.shutdown(socket.SHUT_WR)\nsys.stdin.readline(); import os; os.close(4)\nsys.stdin.readline()'], { stdio: ['pipe', 'ignore', 'ignore', 'pipe', 'pipe'] })
  kids.push(c)
  const pid = c.pid as number
  assert.equal(await becomes(() => syscallLine(pid).startsWith('0 0x0 '), true), true, 'it waits for its first line')
  const [was3, was4] = [3, 4].map(fd => readlinkSync(`/proc/${pid}/fd/${fd}`))
  assert.match(was3, /^socket:/)
  assert.equal(closedHow(pid, was3), 'shutdown', 'a socket it still holds: its end came from a shutdown')
  c.stdin?.write('\n')
  c.stdin?.write('\n')
  assert.equal(await becomes(() => closedHow(pid, was4), 'close'), 'close', 'a socket it holds no more: closed')
  assert.equal(closedHow(pid, was3), 'shutdown')
  c.stdin?.end('\n')
  await new Promise(resolve => c.once('exit', resolve))
  assert.equal(await becomes(() => closedHow(pid, was4), null), null, 'gone: its end closed everything, no close to pass on')
  // a pipe it still holds is no close
  const d = spawn('python3', ['-c', 'import os, time; r, w = os.pipe(); os.dup2(r, 50); time.sleep(60)'], { stdio: 'ignore' })
  kids.push(d)
  const fd50 = (): string => { try { return readlinkSync(`/proc/${d.pid as number}/fd/50`) } catch { return '' } }
  assert.equal(await becomes(() => fd50() !== '', true), true)
  const link = fd50()
  assert.match(link, /^pipe:/)
  assert.equal(closedHow(d.pid as number, link), null)
})

test('unread: the bytes waiting in a process\'s pipe or socket (FIONREAD through the engine helper)', async () => {
  const c = spawn('sleep', ['60'], { stdio: ['pipe', 'ignore', 'ignore'] })
  kids.push(c)
  const pid = c.pid as number
  assert.equal(await unread(pid, 0), 0)
  c.stdin?.write('hello')
  assert.equal(await becomes(async () => await unread(pid, 0), 5), 5)
  assert.equal(await unread(pid, 77), -1, 'no such fd')
})
