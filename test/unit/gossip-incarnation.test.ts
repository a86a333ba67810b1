// A node's incarnation across restarts of its daemon (src/gossip/incarnation.ts): never lower than
// the last one, whatever the clock says, so that its peers' replay guard does not drop it for good.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { clockIncarnation, nextIncarnation } from '../../src/gossip/incarnation.js'
import { ReplayGuard } from '../../src/gossip/replay.js'

test('a restart after the clock stepped back (or within 100 ms) comes back above the last incarnation; peers take its packets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpc-inc-'))
  try {
    const file = join(dir, '3', 'incarnation')
    const t0 = Date.UTC(2026, 11, 7, 12)
    const first = nextIncarnation(file, t0)
    assert.equal(first, clockIncarnation(t0), 'a first start: the clock')
    assert.equal(readFileSync(file, 'utf8').trim(), String(first), 'kept for the next start')
    const guard = new ReplayGuard()
    assert.equal(guard.accept(3, first, 100), true)
    // NTP stepped the clock back an hour, then the daemon restarted
    const second = nextIncarnation(file, t0 - 3_600_000)
    assert.equal(second, first + 1)
    assert.equal(guard.accept(3, second, 1), true, 'its first packet after the restart is taken')
    assert.equal(guard.accept(3, clockIncarnation(t0 - 3_600_000), 2), false, 'the clock alone would have been a replay')
    // two starts within the same 100 ms
    assert.equal(nextIncarnation(file, t0 - 3_600_000), second + 1)
    // the clock ahead again: the clock
    assert.equal(nextIncarnation(file, t0 + 60_000), clockIncarnation(t0 + 60_000))
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('an unreadable or garbled file, or none at all, gives the clock\'s incarnation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpc-inc-'))
  try {
    const t = Date.UTC(2026, 0, 1)
    const file = join(dir, 'incarnation')
    for (const junk of ['', 'lots', '-5', '1e99', '4294967296']) {
      writeFileSync(file, junk)
      assert.equal(nextIncarnation(file, t), clockIncarnation(t), JSON.stringify(junk))
    }
    assert.equal(nextIncarnation(null, t), clockIncarnation(t))
    // a state dir that cannot be written (a file where the directory should be): the clock's, no throw
    writeFileSync(join(dir, 'blocked'), '')
    assert.equal(nextIncarnation(join(dir, 'blocked', 'incarnation'), t), clockIncarnation(t))
    assert.equal(clockIncarnation(Date.UTC(2020, 0, 1)), 1, 'a clock before 2025: 1, not a negative number')
  } finally { rmSync(dir, { recursive: true, force: true }) }
})
