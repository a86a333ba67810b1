// Writes to the tree are all or nothing, whatever their size: FUSE splits a write of more than
// 128 KiB into several requests, and none of them may be applied alone.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { LoopbackCluster, sh, cat, type Daemon } from '../helpers/daemon.js'

const c = new LoopbackCluster([1], 17600)
let d: Daemon
let root: string

before(async () => { d = await c.start(1); root = d.mount })
after(async () => { await c.destroy() })

const KIB = 1024

test('a value padded past 128 KiB fails with EINVAL and changes nothing (cat, echo, write(2))', async () => {
  const speed = join(root, 'admin/speed')
  const before = await cat(speed)
  assert.notEqual(before, '20000\n')
  // a valid value followed by white space: the first 128 KiB alone would parse as 20000
  const big = join(c.dir, 'big')
  writeFileSync(big, '20000' + ' '.repeat(200 * KIB) + '\n')
  const r = await sh(`cat ${big} > ${speed}`)
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /Invalid argument/)
  assert.equal(await cat(speed), before)
  const e = await sh(`echo "20000$(head -c ${200 * KIB} /dev/zero | tr '\\0' ' ')" > ${speed}`)
  assert.notEqual(e.code, 0, 'the shell reports the failure')
  assert.match(e.stderr, /Invalid argument/)
  assert.equal(await cat(speed), before)
  await assert.rejects(writeFile(speed, '20000' + ' '.repeat(300 * KIB)), { code: 'EINVAL' })
  assert.equal(await cat(speed), before)
  // the same value in a normal write still works
  assert.equal((await sh(`echo 20000 > ${speed}`)).code, 0)
  assert.equal(await cat(speed), '20000\n')
})

test('a goto padded past 128 KiB does not take the process under cluster discipline', async () => {
  const subject = spawn('sleep', ['1000000'], { stdio: 'ignore' }) // lives until killed below
  try {
    const goto = join(root, `proc/${subject.pid}/goto`)
    const r = await sh(`printf '%s' "home$(head -c ${150 * KIB} /dev/zero | tr '\\0' ' ')" > ${goto}`)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /Invalid argument/)
    assert.equal((await sh(`ls ${join(root, 'proc')}`)).stdout.split('\n').includes(String(subject.pid)), false)
    assert.equal((await sh(`echo home > ${goto}`)).code, 0)
    assert.equal((await sh(`ls ${join(root, 'proc')}`)).stdout.split('\n').includes(String(subject.pid)), true, 'a normal write does')
  } finally { subject.kill('SIGKILL') }
})

test('a map of 200 KiB is stored whole; one with a bad line at its end stores nothing', async () => {
  const config = join(root, 'admin/config')
  const padding = '# padding\n'.repeat(20 * KIB)
  const good = join(c.dir, 'goodmap')
  writeFileSync(good, padding + `1 127.0.0.1:${d.port} 1\n7 127.0.0.1:17607 1\n`)
  const w = await sh(`cat ${good} > ${config}`)
  assert.equal(w.code, 0, w.stderr)
  assert.match(await cat(config), /^7 127\.0\.0\.1:17607 1$/m, 'the line after the first 128 KiB was stored')
  const before = await cat(config)
  const bad = join(c.dir, 'badmap')
  writeFileSync(bad, `1 127.0.0.1:${d.port} 1\n` + padding + '8 127.0.0.1:17608 banana\n')
  const b = await sh(`cat ${bad} > ${config}`)
  assert.notEqual(b.code, 0)
  assert.match(b.stderr, /Invalid argument/)
  assert.equal(await cat(config), before)
})
