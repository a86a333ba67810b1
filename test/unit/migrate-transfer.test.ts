// Image copies (src/migrate/transfer.ts): kept in a nameless temporary file, not in the heap.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { ImageCopy, replay, tee } from '../../src/migrate/transfer.js'
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
