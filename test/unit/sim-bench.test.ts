// Smoke test of scripts/bench-gossip --quick: it runs, and every loss-free row agrees with the model.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'bench-gossip.js')

test('bench-gossip --quick prints model and measured ages that agree, and the cold-start table', () => {
  const r = spawnSync(process.execPath, [script, '--quick', '--seed', '3'], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)
  const rows = r.stdout.split('\n').map(l => l.trim().split(/\s+/)).filter(c => (c[0] === 'gossiper' || c[0] === 'fast') && c.length === 15)
  assert.ok(rows.length >= 4, r.stdout)
  for (const c of rows) {
    const [loss, avgRatio, maxRatio] = [Number(c[3]), Number(c[7]), Number(c[10])]
    if (loss > 0) { assert.ok(avgRatio > 1, `loss row ${c.join(' ')}`); continue }
    assert.ok(avgRatio > 0.85 && avgRatio < 1.15, c.join(' '))
    assert.ok(maxRatio > 0.85 && maxRatio < 1.15, c.join(' '))
  }
  assert.match(r.stdout, /Cold start/)
  assert.match(r.stdout, /Auto-sizing at n=1024 .*w = 202 \/ 128/)
  const bad = spawnSync(process.execPath, [script, '--seed', 'x'], { encoding: 'utf8' })
  assert.notEqual(bad.status, 0)
})
