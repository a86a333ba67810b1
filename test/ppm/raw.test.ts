// Raw images (docs/migrate.md "Raw images"): the helpers write an image straight into a connected
// TCP socket (with a copy into a file) and read it straight from the other end, and a dump that
// fails before its first byte sends an empty image that the reader consumes exactly. The records
// go through a writer thread on one side and a reader thread on the other (docs/ppm.md "Pipelined
// streams"): a stream that stops makes either fail within its stall bound.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { once } from 'node:events'
import { dump, info, restore, socketFd } from '../../src/ppm/ppm.js'
import { Lab, lines, tcpPair, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

test('an image written into a socket, with a copy, is restored straight from the other end', async () => {
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '4000', '0', '20000'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
  const { a, b, close } = await tcpPair()
  const copyPath = lab.path('raw-copy.img')
  const copy = openSync(copyPath, 'w', 0o600)
  try {
    const restored = restore(socketFd(b), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'], stallMs: 20_000 })
    const d = await dump(s.pid, socketFd(a), { copy, stallMs: 20_000 })
    const r = lab.track(await restored) // (removed at the end should an assertion fail first)
    assert.ok(r.pid > 0 && r.pid !== s.pid)
    assert.equal(Number(r.stats.image_bytes), d.bytes, 'the restore read the whole image from the socket')
    assert.equal(statSync(copyPath).size, d.bytes, 'the copy holds every byte too')
    const { reasons } = await info(copyPath)
    assert.deepEqual(reasons, [], 'the copy is a whole image')
    process.kill(r.pid, 'SIGKILL')
    assert.deepEqual(await r.exited, { code: null, signal: 9 })
  } finally { closeSync(copy); close() }
})

test('a dump that fails before its first byte sends an empty image: the reader fails at once and the connection goes on', async () => {
  const { a, b, close } = await tcpPair()
  const copy = openSync(lab.path('raw-none.img'), 'w', 0o600)
  try {
    // the reader may fail before the dump has said so: its failure is awaited from the start
    const restored = assert.rejects(restore(socketFd(b), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'], stallMs: 20_000 }), /sent no image/)
    // pid 0x3ffffff0 does not exist: the dump fails before it writes anything
    await assert.rejects(dump(0x3ffffff0, socketFd(a), { copy, stallMs: 20_000 }))
    await restored
    // the reader consumed exactly the empty image: what follows on the connection arrives whole
    a.write('after')
    b.resume()
    const [d] = await once(b, 'data') as [Buffer]
    assert.equal(d.toString(), 'after')
  } finally { closeSync(copy); close() }
})

test('a dump into a connection nobody reads fails within its stall bound (its writer thread blocked), and the process runs on', async () => {
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '32768', '0', '20000'])	// 32 MiB: more than the socket buffers hold
  await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
  const { a, close } = await tcpPair()
  try {
    await assert.rejects(dump(s.pid, socketFd(a), { stallMs: 1000 }), /made no progress for 1000 ms/)
    const n = lines(s.out)
    await waitFor(() => lines(s.out) > n, 10_000, 'the counter going on after the failed dump')
  } finally { close() }
})

test('a restore whose sender stops half-way fails within its stall bound (its reader thread waiting), and leaves no process', async () => {
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '32768', '0', '20000'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
  const img = lab.path('half.img')
  const d = await dump(s.pid, img, { leaveRunning: true })
  // the metadata and the first 8 MiB of pages, then nothing more on an open connection
  const half = Buffer.alloc(8 << 20)
  const fd = openSync(img, 'r')
  const n = readSync(fd, half, 0, half.length, 0)
  closeSync(fd)
  assert.ok(n === half.length && d.bytes > 2 * n, 'an image longer than what is sent')
  const { a, b, close } = await tcpPair()
  // the test's children that are not subjects (a helper, whose child the stub is)
  const helpers = (): string[] => readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
    .filter(p => { try { return readFileSync(`/proc/${p}/comm`, 'utf8').trim() !== 'counter' } catch { return false } })
  try {
    const restored = restore(socketFd(b), { keepPid: false, stdio: ['ignore', 'ignore', 'ignore'], stallMs: 1000 })
    a.write(half)
    await assert.rejects(restored, /made no progress for 1000 ms/)
    // the helper has ended (with its half-restored process): nothing of it is left
    await waitFor(() => helpers().length === 0, 10_000, 'the helper gone')
  } finally { close() }
})
