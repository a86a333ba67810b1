// Disk space checks before a move writes an image copy or a record (src/migrate/space.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeBytes, spaceRefusal } from '../../src/migrate/space.js'

test('a directory with room says nothing; one without says how much it has and needs; an unknown one is not refused', () => {
  const free = freeBytes(tmpdir())
  assert.ok(free !== null && free > 0)
  assert.equal(spaceRefusal(tmpdir(), 1), null)
  assert.match(spaceRefusal(tmpdir(), 2 ** 60) ?? '', /^no space left on the disk of .* \(\d+\.\d MiB free, \d+\.\d MiB needed\)$/)
  assert.equal(spaceRefusal(null, 2 ** 60), null)
  assert.equal(spaceRefusal(join(tmpdir(), 'hpc-no-such-dir-here', 'x'), 2 ** 60), null)
})
