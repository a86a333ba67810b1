// The migration protocol's validator (src/migrate/protocol.ts) and what a connection end does with
// what it reads (src/migrate/link.ts, over the in-memory pair of src/migrate/memlink.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { KINDS, ProtocolError, decode, encode, toMessage, type Kind, type Message } from '../../src/migrate/protocol.js'
import { MemLink } from '../../src/migrate/memlink.js'
import { until } from './migrate-fixture.js'

/** One valid message of every kind. */
const SAMPLES: { [K in Kind]: Extract<Message, { t: K }> } = {
  migrate: { t: 'migrate', home: 1, pid: 1234, name: 'cc1', bytes: 1 << 20, stdin: 'pull', age: 3.5, decay: 'fast', kind: 'cpujob', ticket: 'ab12' },
  image: { t: 'image', ticket: 'ab12' },
  accept: { t: 'accept', hostinfo: 'x86_64 ...' },
  refuse: { t: 'refuse', reason: 'blocked' },
  error: { t: 'error', reason: 'unexpected x' },
  'image-end': { t: 'image-end' },
  abort: { t: 'abort', reason: 'dump failed' },
  running: { t: 'running', pid: 99, bytes: 4096, ms: 3 },
  failed: { t: 'failed', reason: 'restore failed' },
  signal: { t: 'signal', sig: 15 },
  kill: { t: 'kill' },
  want: { t: 'want', n: 4096, fd: 3 },
  'stdin-end': { t: 'stdin-end' },
  hint: { t: 'hint', hint: 'iojob' },
  'move-request': { t: 'move-request', node: 3, why: 'cheaper' },
  'move-failed': { t: 'move-failed', reason: 'locked' },
  exit: { t: 'exit', code: 0, signal: null },
  gohome: { t: 'gohome' },
  leaving: { t: 'leaving' },
  'leaving-ok': { t: 'leaving-ok' },
  stay: { t: 'stay', reason: 'unread stdin' },
  'image-start': { t: 'image-start' },
  'home-ok': { t: 'home-ok' },
  'home-failed': { t: 'home-failed', reason: 'x' },
  sendto: { t: 'sendto', node: 4, ticket: 'ab12', hostinfo: '' },
  sent: { t: 'sent', bytes: 1 << 20 },
  resume: { t: 'resume' },
  resumed: { t: 'resumed', pid: 77 },
  'stat?': { t: 'stat?' },
  stat: { t: 'stat', utime: 12, stime: 3, state: 'R', rss: 4096, vsize: 8192, cmdline: 'python3\u0000-c\u0000pass' },
  family: { t: 'family', call: 'fork' },
  'family-failed': { t: 'family-failed', reason: 'it cannot come home' },
  ping: { t: 'ping' },
  run: { t: 'run' },
  rejoin: { t: 'rejoin', home: 1, pid: 1234, guest: 4321, node: 2 },
  'rejoin-ok': { t: 'rejoin-ok', got: [[1, 4096], [2, 0], [3, 17]] },
  'image-ready': { t: 'image-ready' },
  closed: { t: 'closed', fd: 1, how: 'close' },
  broken: { t: 'broken', fd: 1 },
  ack: { t: 'ack', got: [[1, 1 << 40]] }
}

test('every kind of message is accepted, unchanged, through encode and decode', () => {
  assert.deepEqual(Object.keys(SAMPLES).sort(), [...KINDS].sort(), 'a sample for every kind')
  for (const m of Object.values(SAMPLES)) assert.deepEqual(decode(encode(m)), m, m.t)
  // the optional fields of an offer may be left out (an offer from an older sender); age may be null (NaN in JSON)
  assert.deepEqual(toMessage({ t: 'migrate', home: 1, pid: 1, name: 'huge', bytes: 2 ** 50 }), { t: 'migrate', home: 1, pid: 1, name: 'huge', bytes: 2 ** 50 })
  assert.equal(toMessage({ ...SAMPLES.migrate, age: null }).t, 'migrate')
  assert.deepEqual(toMessage({ t: 'exit', code: null, signal: 9 }), { t: 'exit', code: null, signal: 9 })
  const queued = { t: 'signal', sig: 34, code: -1, from: 4321, uid: 1000, value: '-9223372036854775808' }
  assert.deepEqual(decode(encode(queued as Message)), queued, 'a signal with its siginfo (a 64-bit value as a string)')
})

test('malformed messages are rejected with the reason', () => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /not an object/],
    [[1, 2], /not an object/],
    ['running', /not an object/],
    [{}, /unknown kind/],
    [{ t: 7 }, /unknown kind/],
    [{ t: 'nonsense' }, /unknown kind "nonsense"/],
    [{ t: 'toString' }, /unknown kind/],
    [{ t: 'running', pid: 1, bytes: 2 }, /missing ms/],
    [{ t: 'running', pid: '1', bytes: 2, ms: 1 }, /bad or missing pid/],
    [{ t: 'running', pid: 0, bytes: 2, ms: 1 }, /pid/],
    [{ t: 'running', pid: 1.5, bytes: 2, ms: 1 }, /pid/],
    [{ t: 'signal', sig: 0 }, /sig/],
    [{ t: 'signal', sig: 65 }, /sig/],
    [{ t: 'signal', sig: 34, code: 0 }, /bad code/], // kill's: another process may not queue it
    [{ t: 'signal', sig: 34, code: -6 }, /bad code/], // tgkill's (SI_TKILL)
    [{ t: 'signal', sig: 34, code: 3 }, /bad code/], // the kernel's
    [{ t: 'signal', sig: 34, code: -1, value: '12x' }, /bad value/],
    [{ t: 'signal', sig: 34, code: -1, value: 12 }, /bad value/],
    [{ t: 'signal', sig: 34, code: -1, uid: -1 }, /bad uid/],
    [{ t: 'signal', sig: 34, code: -1, from: 1.5 }, /bad from/],
    [{ t: 'want', n: 0 }, /n/],
    [{ t: 'want', n: 1, fd: 2 }, /bad fd/],
    [{ t: 'want', n: 1, fd: '3' }, /bad fd/],
    [{ t: 'stdin-end', fd: -1 }, /bad fd/],
    [{ t: 'stdin-end', fd: 1 << 20 }, /bad fd/],
    [{ t: 'closed', fd: -1, how: 'close' }, /fd/],
    [{ t: 'closed', fd: 3 }, /how/],
    [{ t: 'closed', fd: 3, how: 'shutdown-rd' }, /how/],
    [{ t: 'broken', fd: 0 }, /fd/],
    [{ t: 'broken' }, /fd/],
    [{ t: 'broken', fd: 3, how: 'close' }, /unexpected field how/],
    [{ t: 'hint', hint: 'rm -rf' }, /hint/],
    [{ t: 'hint', hint: 'decay 2000' }, /hint/],
    [{ t: 'stat', utime: 1, stime: 1, state: 'running', rss: 0, vsize: 0, cmdline: '' }, /state/],
    [{ t: 'migrate', home: 0, pid: 1, name: 'x', bytes: 1 }, /home/],
    [{ t: 'migrate', home: 70000, pid: 1, name: 'x', bytes: 1 }, /home/],
    [{ t: 'migrate', home: 1, pid: 1, name: 'x', bytes: -1 }, /bytes/],
    [{ t: 'migrate', home: 1, pid: 1, name: 'x', bytes: 1, stdin: 'push' }, /stdin/],
    [{ t: 'migrate', home: 1, pid: 1, name: 'x', bytes: 1, decay: 'medium' }, /decay/],
    [{ t: 'migrate', home: 1, pid: 1, name: 'x', bytes: 1, ticket: 5 }, /ticket/],
    [{ t: 'exit', code: '0', signal: null }, /code/],
    [{ t: 'exit', code: 0 }, /signal/],
    [{ t: 'move-request', node: 2 }, /why/],
    [{ t: 'sendto', node: 2, ticket: 'x' }, /hostinfo/],
    [{ t: 'kill', sig: 9 }, /unexpected field sig/],
    [{ t: 'family' }, /call/],
    [{ t: 'family', call: 'fork; rm -rf /' }, /call/],
    [{ t: 'family', call: 'x'.repeat(33) }, /call/],
    [{ t: 'accept', hostinfo: 'h', __proto__x: 1 }, /unexpected field/],
    [{ t: 'ack' }, /got/],
    [{ t: 'ack', got: [[0, 5]] }, /got/],
    [{ t: 'ack', got: [[1, -5]] }, /got/],
    [{ t: 'ack', got: [[1, 5, 6]] }, /got/],
    [{ t: 'ack', got: [['1', 5]] }, /got/],
    [{ t: 'ack', got: { 1: 5 } }, /got/],
    [{ t: 'ack', got: Array.from({ length: 1025 }, (_, i) => [i + 1, 0]) }, /got/],
    [{ t: 'rejoin-ok', got: [[1, 1.5]] }, /got/],
    [{ t: 'refuse', reason: 'x', got: [[1]] }, /got/]
  ]
  for (const [v, re] of bad) assert.throws(() => toMessage(v), (e: Error) => e instanceof ProtocolError && re.test(e.message), JSON.stringify(v))
  assert.throws(() => decode(Buffer.from('{"t":"kill"')), /not JSON/)
  assert.throws(() => decode(Buffer.from([0xff, 0xfe])), ProtocolError)
})

test('a connection drops and counts a malformed control message and delivers the next ones in order', async () => {
  const [a, b] = MemLink.pair()
  const got: Message[] = []
  const dropped: string[] = []
  b.on('msg', m => got.push(m))
  b.on('dropped', r => dropped.push(r))
  await a.send({ t: 'signal', sig: 2 })
  a.raw(Buffer.from('{"t":"signal","sig":"KILL"}'))
  a.raw(Buffer.from('not json'))
  await a.frame('O', Buffer.from('out'))
  await a.send({ t: 'kill' })
  await until(() => got.length === 2, 'two messages')
  assert.deepEqual(got, [{ t: 'signal', sig: 2 }, { t: 'kill' }])
  assert.equal(b.dropped, 2)
  assert.equal(dropped.length, 2)
  assert.equal(a.dropped, 0)
  a.close()
  await until(() => b.closed, 'close')
  await assert.rejects(b.send({ t: 'kill' }), /closed/)
})

test('expect() resolves with the kind asked for, rejects on an error message or a close', async () => {
  const [a, b] = MemLink.pair()
  const p = b.expect('accept', 'refuse')
  await a.send({ t: 'stay', reason: 'not this one' })
  await a.send({ t: 'refuse', reason: 'full' })
  const m = await p
  assert.equal(m.t, 'refuse')
  assert.equal(m.reason, 'full')
  const q = b.expect('running')
  await a.send({ t: 'error', reason: 'unexpected migrate' })
  await assert.rejects(q, /unexpected migrate/)
  const r = b.expect('running')
  a.close()
  await assert.rejects(r, /closed/)
  await assert.rejects(b.expect('running'), /closed/)
})
