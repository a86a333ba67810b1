import { test } from 'node:test'
import assert from 'node:assert/strict'
import { NodeTable } from '../../src/gossip/state.js'
import { ReplayGuard } from '../../src/gossip/replay.js'
import type { NodeInfo } from '../../src/gossip/info.js'

const info = (id: number, seq: number, incarnation = 1): NodeInfo =>
  ({ id, addr: '10.0.0.' + id, port: 5428, incarnation, seq, status: 3, cpus: 1, speed: 10000, load: 0, tmem: 0, rmem: 0, mem: 0, util: 100 })

test('keeps the freshest entry per node: higher seq, or a newer incarnation', () => {
  const t = new NodeTable()
  assert.equal(t.merge(info(2, 5), 100, 1000), true)
  assert.equal(t.merge(info(2, 4), 0, 1000), false, 'older seq refused even if younger-looking')
  assert.equal(t.get(2)?.info.seq, 5)
  assert.equal(t.merge(info(2, 6), 50, 1000), true)
  assert.equal(t.merge(info(2, 0, 2), 0, 1000), true, 'restarted node (new incarnation) accepted')
  assert.equal(t.merge(info(2, 99, 1), 0, 1000), false, 'old incarnation refused')
})

test('ages come from carried ages and the local clock only', () => {
  const t = new NodeTable()
  t.merge(info(3, 1), 700, 10_000) // 700 ms old when received at local t=10000
  const k = t.get(3)!
  assert.equal(10_500 - k.freshAt, 1200)
})

test('freshest(n) walks in freshness order and stops at maxAge', () => {
  const t = new NodeTable()
  const ages = [500, 100, 900, 300, 2000, 50]
  ages.forEach((a, i) => t.merge(info(i + 1, 1), a, 5000))
  const got = t.freshest(10, 5000, 1000).map(k => 5000 - k.freshAt)
  assert.deepEqual(got, [...ages].filter(a => a <= 1000).sort((a, b) => a - b))
  assert.equal(t.freshest(2, 5000, Infinity).length, 2)
  t.merge(info(5, 2), 0, 5000) // node 5 news: now the freshest
  assert.equal(t.freshest(1, 5000, Infinity)[0].info.id, 5)
})

test('placeholders read as never heard and are replaced by the first news', () => {
  const t = new NodeTable()
  t.placeholder({ ...info(9, 0), incarnation: 0 })
  assert.equal(t.get(9)?.freshAt, -Infinity)
  assert.equal(t.freshest(5, 0, 1e12).length, 0)
  assert.equal(t.merge(info(9, 1), 10, 100), true)
  assert.equal(t.freshest(5, 100, 1e12).length, 1)
})

test('remove keeps the random-choice array consistent', () => {
  const t = new NodeTable()
  for (let i = 1; i <= 5; i++) t.merge(info(i, 1), i, 100)
  t.remove(2); t.remove(5)
  assert.deepEqual(t.ids(), [1, 3, 4])
  const seen = new Set<number>()
  for (let i = 0; i < 100; i++) seen.add(t.random(() => (i % 3) / 3 + 0.01)!.info.id)
  assert.deepEqual([...seen].sort(), [1, 3, 4])
})

test('replay guard: each (incarnation, seq) once, reordering inside the window, restarts reset', () => {
  const g = new ReplayGuard()
  assert.equal(g.accept(1, 10, 5), true)
  assert.equal(g.accept(1, 10, 5), false, 'exact replay')
  assert.equal(g.accept(1, 10, 7), true)
  assert.equal(g.accept(1, 10, 6), true, 'late but new')
  assert.equal(g.accept(1, 10, 6), false)
  assert.equal(g.accept(1, 10, 100), true)
  assert.equal(g.accept(1, 10, 60), false, 'too old for the window')
  assert.equal(g.accept(1, 9, 1000), false, 'older incarnation')
  assert.equal(g.accept(1, 11, 1), true, 'restarted sender')
  assert.equal(g.accept(2, 10, 5), true, 'senders are independent')
})
