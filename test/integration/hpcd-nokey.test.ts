// Daemons started without --key: the built-in key is known to everyone, so such a node takes no
// guests and sends none of its processes away, and says so at start and in its tree.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HPCD, cat, sh, until } from '../helpers/daemon.js'
import { Conn } from '../../src/migrate/wire.js'
import { Keyring } from '../../src/gossip/keyring.js'

const dir = mkdtempSync(join(tmpdir(), 'hpcfs-nokey-'))
const PORT = 17700
const daemons: ChildProcess[] = []
const mount = (id: number): string => join(dir, `hpc${id}`)
const logOf = (id: number): string => readFileSync(join(dir, `hpcd${id}.log`), 'utf8')

before(async () => {
  writeFileSync(join(dir, 'map'), `1 127.0.0.1:${PORT + 1} 1\n2 127.0.0.1:${PORT + 2} 1\n`)
  for (const id of [1, 2]) {
    const out = openSync(join(dir, `hpcd${id}.log`), 'a')
    daemons.push(spawn(process.execPath, [HPCD, '--addr', '127.0.0.1', '--port', String(PORT + id), '--map', join(dir, 'map'),
      '--mount', mount(id), '--speed', String(10000 * id), '--interval', '0.2', '--no-balance'], { stdio: ['ignore', out, out] }))
    closeSync(out)
  }
  for (const id of [1, 2]) await until(`node ${id} sees the other`, async () => (await cat(join(mount(id), `nodes/${3 - id}/status`))).trim() !== '1')
})

after(async () => {
  for (const d of daemons) if (d.exitCode === null && d.signalCode === null) { d.kill('SIGTERM'); await new Promise(resolve => d.once('exit', resolve)) }
  for (const id of [1, 2]) await sh(`mountpoint -q ${mount(id)} && fusermount -uz ${mount(id)}; true`)
  rmSync(dir, { recursive: true, force: true })
})

test('a node without a key says at start and in its tree that it takes no guests and keeps its processes', async () => {
  assert.match(logOf(1), /no --key.*refuses guests and keeps its processes/s)
  const m = mount(1)
  assert.equal(await cat(join(m, 'admin/block')), '1\n')
  assert.equal(await cat(join(m, 'admin/stay')), '1\n')
  const w = await sh(`echo 0 > ${m}/admin/block`)
  assert.notEqual(w.code, 0)
  assert.match(w.stderr, /Operation not permitted/)
  assert.equal((await sh(`echo 0 > ${m}/admin/stay`)).code === 0, false)
  assert.equal(await cat(join(m, 'admin/block')), '1\n')
  // every node sees it blocked (16) and staying (4), so no balancer picks it
  await until('node 2 sees node 1 blocked and staying', async () => ((Number(await cat(join(mount(2), 'nodes/1/status'))) & 20) === 20))
})

test('a process of a node without a key does not leave it', async () => {
  const subject = spawn('sleep', ['1000000'], { stdio: 'ignore' }) // lives until killed below
  try {
    const r = await sh(`echo 2 > ${mount(1)}/proc/${subject.pid}/goto`)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /Operation not permitted/)
    assert.equal(await cat(join(mount(1), `proc/${subject.pid}/where`)), '0\n')
    assert.equal((await sh(`ls ${mount(2)}/remote`)).stdout, '')
  } finally { subject.kill('SIGKILL') }
})

test('anyone holding the built-in key is refused at the transfer port', async () => {
  // the built-in key is public: the handshake succeeds, the request does not
  const c = await Conn.client('127.0.0.1', PORT + 2 - 768, new Keyring(null))
  try {
    await c.send({ t: 'migrate', home: 1, pid: 4242, name: 'forged', bytes: 4096, stdin: 'none' })
    const m = await c.expect('accept', 'refuse')
    assert.equal(m.t, 'refuse')
    assert.match(String(m.reason), /blocked/)
  } finally { c.close() }
  assert.equal((await sh(`ls ${mount(2)}/remote`)).stdout, '')
})
