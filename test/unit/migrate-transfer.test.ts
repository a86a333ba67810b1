// Image copies (src/migrate/transfer.ts): kept in a nameless temporary file, not in the heap; an
// incoming image's bytes and time (the bandwidth the scheduler prices moves with).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { ImageCopy, ImageIn, replay, tee } from '../../src/migrate/transfer.js'
import { MemLink } from '../../src/migrate/memlink.js'
import { readAll, until } from './migrate-fixture.js'

test('an image copy is written in order, read back whole as often as needed, and leaves nothing behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-copy-'))
  try {
    const copy = new ImageCopy(dir)
    const chunks = Array.from({ length: 40 }, (_, i) => randomBytes(1000 + i * 997))
    const sent: Buffer[] = []
    const sink = new Writable({ write: (c: Buffer, _e, cb) => { sent.push(c); setImmediate(cb) } })
    await pipeline(async function * () { yield * chunks }, tee(sink, copy))
    const all = Buffer.concat(chunks)
    assert.deepEqual(Buffer.concat(sent), all, 'the sink got everything')
    assert.equal(copy.size, all.length)
    assert.deepEqual(await readAll(await replay(copy)), all)
    assert.deepEqual(await readAll(await replay(copy)), all, 'twice')
    let n = 0
    for await (const c of await replay(copy)) { n += (c as Buffer).length; if (n > 1000) break } // a reader that gives up
    assert.deepEqual(await readAll(await replay(copy)), all, 'still readable after a reader gave up')
    assert.deepEqual(readdirSync(dir), [], 'the file has no name')
    const open = (): string[] => readdirSync('/proc/self/fd').map(fd => { try { return readlinkSync(`/proc/self/fd/${fd}`) } catch { return '' } }).filter(l => l.startsWith(dir))
    await until(() => open().length === 1, 'only its own descriptor left open while kept')
    copy.release()
    await until(() => open().length === 0, 'the file closed')
    assert.throws(() => copy.stream(), /released/)
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('the time an image took to come is measured on the monotonic clock: a wall clock set forward an hour meanwhile does not count', async () => {
  const [a, b] = MemLink.pair('a', 'b')
  const img = new ImageIn()
  img.feed(b)
  let got = 0
  img.image.on('data', (d: Buffer) => { got += d.length })
  const realNow = Date.now
  try {
    await a.frame('I', randomBytes(64 * 1024))
    await until(() => img.first > 0, 'the first frame')
    Date.now = () => realNow() + 3_600_000
    await a.frame('I', randomBytes(64 * 1024))
    await a.send({ t: 'image-end' })
    await until(() => img.ended > 0 && got === 128 * 1024, 'the end of the image')
  } finally { Date.now = realNow }
  const ms = img.ms()
  assert.ok(ms >= 1 && ms < 10_000, `the image took ${ms} ms`)
  img.done()
  a.close()
})
