// Connections dialled ahead (src/migrate/dialer.ts): the next move to a node takes the spare
// opened behind the last one; a spare that closed, or a node that is down, gets a fresh dial.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DialAhead } from '../../src/migrate/dialer.js'
import { MemLink } from '../../src/migrate/memlink.js'
import type { Link } from '../../src/migrate/link.js'
import { until } from './migrate-fixture.js'

function setup (up = (_n: number) => true): { d: DialAhead, opened: Array<{ node: number, link: MemLink, other: MemLink }> } {
  const opened: Array<{ node: number, link: MemLink, other: MemLink }> = []
  const d = new DialAhead(async (node): Promise<Link> => {
    const [link, other] = MemLink.pair(`node ${node}`, 'us')
    opened.push({ node, link, other })
    return link
  }, up)
  return { d, opened }
}

test('a move to a node takes the spare dialled behind the last one, and another spare follows', async () => {
  const { d, opened } = setup()
  try {
    const a = await d.dial(2)
    assert.equal(opened.length, 1)
    assert.equal(a, opened[0].link)
    await until(() => opened.length === 2, 'a spare to node 2')
    assert.equal(opened[1].node, 2)
    const b = await d.dial(2)
    assert.equal(b, opened[1].link, 'the spare')
    assert.equal(d.hits, 1)
    await until(() => opened.length === 3, 'the next spare')
    const c = await d.dial(3)
    assert.equal(c, opened[3].link, 'node 3 had none: dialled')
  } finally { d.close() }
})

test('a spare that closed is not handed out; none is dialled to a node that is down; close ends the spares', async () => {
  let up = true
  const { d, opened } = setup(() => up)
  try {
    await d.dial(2)
    await until(() => opened.length === 2, 'a spare')
    opened[1].other.close() // its node closed it
    await until(() => opened[1].link.closed, 'the spare closed')
    const b = await d.dial(2)
    assert.notEqual(b, opened[1].link)
    assert.equal(b, opened[2].link, 'a fresh connection')
    assert.equal(d.hits, 0)
    up = false
    await until(() => d.skips === 1, 'the time of the next spare')
    assert.equal(opened.length, 3, 'no spare to a node that is down')
    up = true
    await d.dial(2)
    await until(() => opened.length === 5, 'a spare again')
    d.close()
    await until(() => opened[4].link.closed, 'the spare closed with the dialler')
  } finally { d.close() }
})

test('a spare whose peer has not been heard lately is closed, not handed out: the move gets a new connection', async () => {
  let freshMs = Infinity
  const opened: Array<{ node: number, link: MemLink, other: MemLink }> = []
  const d = new DialAhead(async (node): Promise<Link> => {
    const [link, other] = MemLink.pair(`node ${node}`, 'us')
    opened.push({ node, link, other })
    return link
  }, () => true, () => freshMs)
  try {
    await d.dial(2)
    await until(() => opened.length === 2, 'a spare')
    freshMs = -1 // (its pings stopped: nothing heard within the bound)
    const b = await d.dial(2)
    assert.equal(b, opened[2].link, 'a new connection')
    assert.equal(d.hits, 0)
    await until(() => opened[1].link.closed, 'the stale spare closed')
    freshMs = Infinity
    await until(() => opened.length === 4, 'the next spare')
    await opened[3].other.send({ t: 'ping' })
    await until(() => opened[3].link.heardAt > 0, 'heard')
    assert.equal(await d.dial(2), opened[3].link, 'a spare heard lately is handed out')
  } finally { d.close() }
})
