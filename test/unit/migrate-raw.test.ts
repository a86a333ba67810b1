// Raw images on a transfer connection (src/migrate/wire.ts, docs/migrate.md "Raw images"): while
// one end is quiet and the other holds its input, bytes written on the socket's descriptor reach
// the other descriptor whole, none is taken by either daemon's framing, and the frames sent
// meanwhile follow them in order once both ends are released; a close does not cut off what a slow
// reader has not read yet. Two real connections on loopback.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readSync, writeSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { Keyring } from '../../src/gossip/keyring.js'
import { Conn } from '../../src/migrate/wire.js'
import type { Message } from '../../src/migrate/protocol.js'
import { until } from './migrate-fixture.js'
import { CONN_LINGER_MS } from '../../src/config.js'

async function pair (): Promise<{ server: Conn, client: Conn, close: () => void }> {
  const keys = new Keyring(Buffer.from('raw-test-key'))
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as { port: number }).port
  const accepted = once(srv, 'connection') as Promise<[Socket]>
  const clientP = Conn.client('127.0.0.1', port, keys)
  const [sock] = await accepted
  const server = await Conn.server(sock, keys)
  const client = await clientP
  srv.close()
  return { server, client, close: () => { client.abort(); server.abort() } }
}

/** Reads exactly n bytes from a non-blocking descriptor, polling while it has none. */
async function readRaw (fd: number, n: number): Promise<Buffer> {
  const b = Buffer.alloc(n)
  let got = 0
  await until(() => {
    try { got += readSync(fd, b, got, n - got, null) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e }
    return got === n
  }, `${n} raw bytes`)
  return b
}

test('raw bytes between a quiet end and a holding end arrive whole; frames sent meanwhile follow them, in order', async () => {
  const { server, client, close } = await pair()
  try {
    const seen: Message[] = []
    let unhold: (() => void) | null = null
    // as home does for image-start: hold the input in the delivery of the message, then say so
    server.on('msg', m => {
      seen.push(m)
      if (m.t === 'image-start') { unhold = server.holdIn(); void server.send({ t: 'image-ready' }) }
    })
    const fd = client.rawFd()
    const sfd = server.rawFd()
    assert.ok(fd !== null && sfd !== null)
    const ready = client.expect('image-ready')
    const sent = client.send({ t: 'image-start', raw: true })
    const loud = client.quiet()
    await sent
    await ready
    const held = client.send({ t: 'image-end' }) // waits while the end is quiet
    const raw = Buffer.from('an image, unframed: 0123456789'.repeat(20000))
    let off = 0
    const reading = readRaw(sfd, raw.length)
    await until(() => {
      try { off += writeSync(fd, raw, off, raw.length - off) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e }
      return off === raw.length
    }, 'the raw bytes written')
    assert.deepEqual(await reading, raw, 'the raw bytes arrive whole, none taken by the framing')
    assert.deepEqual(seen.map(m => m.t), ['image-start'], 'nothing was delivered while held')
    loud()
    ;(unhold as unknown as () => void)()
    await held
    await client.send({ t: 'home-ok' })
    await until(() => seen.length === 3, 'the held frames')
    assert.deepEqual(seen.map(m => m.t), ['image-start', 'image-end', 'home-ok'])
    assert.equal(server.dropped, 0)
  } finally { close() }
})

test('frames waiting on a quiet end fail when its connection closes', async () => {
  const { client, close } = await pair()
  try {
    client.quiet()
    const held = client.send({ t: 'run' })
    client.abort()
    await assert.rejects(held, /closed/)
  } finally { close() }
})

test('a connection closed right after a big write: a reader slower than the close\'s linger still gets every byte, then the end', async () => {
  const { server, client, close } = await pair()
  try {
    let got = 0
    server.on('data', (_type: string, payload: Buffer) => { got += payload.length })
    const ended = once(server, 'close')
    server.pause() // a slow reader: nothing read for longer than CONN_LINGER_MS
    const chunk = Buffer.alloc(4 << 20, 0x5a)
    for (let i = 0; i < 8; i++) void client.frame('O', chunk).catch(() => {})
    client.close()
    setTimeout(() => server.resume(), CONN_LINGER_MS + 1000)
    await ended
    assert.equal(got, 8 * chunk.length, 'every byte written before the close')
  } finally { close() }
})
