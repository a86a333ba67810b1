// The daemon's life: options and misuse, config file, clean stop, crash and restart on the same mount.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LoopbackCluster, sh, cat, until, HPCD } from '../helpers/daemon.js'

const c = new LoopbackCluster([1, 2], 17400)
after(async () => { await c.destroy() })

const mounted = (path: string): boolean => readFileSync('/proc/self/mounts', 'utf8').includes(` ${path} `)

test('--help documents every option with its default; misuse prints usage and fails', async () => {
  const h = await sh(`node ${HPCD} --help`)
  assert.equal(h.code, 0)
  for (const o of ['--id', '--addr', '--port', '--map', '--join', '--mount', '--key', '--interval', '--window', '--config', '--down-after', '--speed']) {
    assert.match(h.stdout, new RegExp(`${o}\\b`), o)
  }
  assert.match(h.stdout, /default: 5428/)
  for (const bad of ['--port 0', '--window 40', '--addr nowhere', '--bogus 1', '--interval -1', '--id 70000']) {
    const r = await sh(`node ${HPCD} ${bad} --mount ${c.dir}/never`)
    assert.notEqual(r.code, 0, bad)
    assert.match(r.stderr, /Options:|must|Unknown/, bad)
  }
  const m = await sh(`printf '1 127.0.0.1 banana\\n' > ${c.dir}/badmap && node ${HPCD} --map ${c.dir}/badmap --addr 127.0.0.1 --mount ${c.dir}/never`)
  assert.notEqual(m.code, 0)
  assert.match(m.stderr, /line 1: bad count/)
  const notme = await sh(`printf '1 10.1.1.1 1\\n' > ${c.dir}/othermap && node ${HPCD} --map ${c.dir}/othermap --addr 127.0.0.1 --mount ${c.dir}/never`)
  assert.match(notme.stderr, /my address .* is not there/)
})

test('a config file sets options; flags win over it', async () => {
  const conf = join(c.dir, 'hpcfs.conf')
  writeFileSync(conf, '# test config\nwindow = 7\ninterval = 0.5\nslow-decay = 960\n')
  const d = await c.start(1, ['--config', conf, '--interval', '0.3'])
  assert.equal(await cat(join(d.mount, 'admin/slow-decay')), '960\n')
  await c.stop(1)
  assert.equal(d.proc.exitCode, 0, 'SIGTERM gives a clean exit')
  assert.equal(mounted(d.mount), false, 'unmounted on SIGTERM')
})

test('a second daemon refuses a live mount; after kill -9 a restart mounts again', async () => {
  const d = await c.start(2)
  const second = await sh(`node ${HPCD} --id 9 --addr 127.0.0.1 --port 17499 --mount ${d.mount} --speed 10000`, { timeout: 15_000 })
  assert.notEqual(second.code, 0)
  assert.match(second.stderr, /already mounted/)
  assert.equal(await cat(join(d.mount, 'admin/mospe')), '2\n', 'the live daemon is untouched')
  d.proc.kill('SIGKILL')
  await until('daemon gone', () => d.proc.exitCode !== null || d.proc.signalCode !== null)
  c.daemons.delete(2)
  const again = await c.start(2)
  assert.equal(await cat(join(again.mount, 'admin/mospe')), '2\n')
})
