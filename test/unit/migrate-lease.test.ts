// Liveness of migration connections (src/migrate/lease.ts) over the in-memory pair: pings keep a
// connection up; a peer that sends nothing for the link timeout is cut off; the wall clock does not
// count (a step of it cuts nothing off).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { heartbeat } from '../../src/migrate/lease.js'
import { MemLink } from '../../src/migrate/memlink.js'
import type { Message } from '../../src/migrate/protocol.js'
import { until } from './migrate-fixture.js'

test('two ends that both ping stay connected; an end whose peer falls silent cuts it off within the timeout', async () => {
  const [a, b] = MemLink.pair('a', 'b')
  const stopA = heartbeat(a, 200)
  const stopB = heartbeat(b, 200)
  const pings: Message[] = []
  a.on('msg', m => pings.push(m))
  const t0 = Date.now()
  await until(() => Date.now() - t0 > 1000, 'a second of pings', 2000)
  assert.equal(a.closed || b.closed, false, 'still connected after 5 timeouts')
  assert.ok(pings.length >= 4 && pings.every(m => m.t === 'ping'), `pings: ${pings.length}`)
  stopB() // b is alive but says nothing any more (a partition, as a sees it)
  const cut = Date.now()
  let why: Error | undefined
  a.once('close', e => { why = e })
  await until(() => a.closed, 'a cuts b off', 2000)
  assert.ok(Date.now() - cut < 1000, `cut off after ${Date.now() - cut} ms`)
  assert.match(String(why?.message), /silent/)
  await until(() => b.closed, 'b sees the close', 2000)
  stopA()
})

test('a wall clock set forward an hour does not cut off a connection that pings', async () => {
  const [a, b] = MemLink.pair('a', 'b')
  const stopA = heartbeat(a, 200)
  const stopB = heartbeat(b, 200)
  const realNow = Date.now
  try {
    let pings = 0
    a.on('msg', m => { if (m.t === 'ping') pings++ })
    Date.now = () => realNow() + 3_600_000
    await until(() => pings >= 6 || a.closed || b.closed, 'six pings (1.5 timeouts)', 5000)
    assert.equal(a.closed || b.closed, false, 'still connected')
  } finally {
    Date.now = realNow
    stopA()
    stopB()
  }
})
