// The real tree on a real FUSE mount, driven with the shell tools admins use.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { LoopbackCluster, sh, cat, until, type Daemon } from '../helpers/daemon.js'

const c = new LoopbackCluster([1], 17300, ['--interval', '0.2'])
let d: Daemon
let root: string

before(async () => { d = await c.start(1); root = d.mount })
after(async () => { await c.destroy() })

test('ls -l shows the tree with procfs-like modes', async () => {
  const r = await sh(`cd ${root} && ls -l admin nodes/1 && ls`)
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /-rw-r--r-- .* speed\n/)
  assert.match(r.stdout, /-r--r--r-- .* version\n/)
  assert.match(r.stdout, /-rw-r--r-- .* migrate\n/) // write-only: reads as empty (fs-grep.test.ts)
  assert.match(r.stdout, /-r--r--r-- .* load\n/)
  for (const d of ['admin', 'decay', 'nodes', 'proc', 'remote']) assert.match(r.stdout, new RegExp(`^${d}$`, 'm'))
})

test('cat sees fresh values; echo, printf and tee write', async () => {
  assert.equal(await cat(join(root, 'admin/speed')), '10001\n')
  assert.equal((await sh(`echo 23456 > ${root}/admin/speed`)).code, 0)
  assert.equal(await cat(join(root, 'nodes/1/speed')), '23456\n')
  assert.equal((await sh(`printf 34567 > ${root}/admin/speed`)).code, 0)
  assert.equal(await cat(join(root, 'admin/speed')), '34567\n')
  const t = await sh(`echo 1 | tee ${root}/admin/block`)
  assert.equal(t.code, 0, t.stderr)
  assert.equal(await cat(join(root, 'admin/block')), '1\n')
  assert.equal(Number(await cat(join(root, 'nodes/1/status'))) & 16, 16)
  assert.equal((await sh(`echo 0 > ${root}/admin/block`)).code, 0)
  // head/wc/grep work on size-0 files thanks to direct_io
  assert.equal((await sh(`wc -c < ${root}/admin/version`)).stdout.trim(), String(readFileSync(join(root, 'admin/version')).length))
})

test('bad writes fail with the right errno message and change nothing', async () => {
  const before = await cat(join(root, 'admin/speed'))
  const r = await sh(`echo fast > ${root}/admin/speed`)
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /Invalid argument/)
  assert.equal(await cat(join(root, 'admin/speed')), before)
  const ro = await sh(`echo 5 > ${root}/nodes/1/load`)
  assert.match(ro.stderr, /Permission denied/)
  const nf = await sh(`echo 5 > ${root}/admin/nosuchfile`)
  assert.notEqual(nf.code, 0)
  for (const f of ['block', 'stay', 'lstay', 'quiet', 'mospe', 'decay-interval', 'slow-decay', 'fast-decay', 'config']) {
    const v = await cat(join(root, 'admin', f))
    const w = await sh(`echo 'not a value' > ${root}/admin/${f}`)
    assert.match(w.stderr, /Invalid argument/, f)
    assert.equal(await cat(join(root, 'admin', f)), v, f)
  }
})

test('a shell loop over nodes/* works and the daemon keeps answering', async () => {
  const r = await sh(`for n in ${root}/nodes/*; do echo "$(basename $n) $(cat $n/load) $(cat $n/status)"; done`)
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^1 \d+ 3$/m)
  const par = await sh(`for i in $(seq 1 40); do cat ${root}/nodes/1/load >/dev/null & done; wait; cat ${root}/admin/mospe`)
  assert.equal(par.stdout, '1\n')
})

test('a multi-line map written in several chunks is stored whole; a bad one changes nothing', async () => {
  const map = `${root}/admin/config`
  // bash's printf writes each line separately: the tree gathers the writes and stores at close
  const w = await sh(`printf '# two nodes\n1 127.0.0.1:17301 1\n2 127.0.0.1:17399 1\n' > ${map}`)
  assert.equal(w.code, 0, w.stderr)
  assert.match(await cat(map), /^2 127\.0\.0\.1:17399 1$/m)
  assert.equal((await sh(`ls ${root}/nodes`)).stdout, '1\n2\n')
  assert.equal(await cat(join(root, 'nodes/2/load')), '-101\n')
  const before = await cat(map)
  const bad = await sh(`printf '1 127.0.0.1:17301 1\n3 127.0.0.1 banana\n' > ${map}`)
  assert.match(bad.stderr, /Invalid argument/)
  // a map without this node parses line by line, so it can only be refused at close (flush): cat
  // reports close errors, bash's builtins do not
  const lacksMe = await sh(`printf '5 127.0.0.1:17305 1\n' | cat > ${map}`)
  assert.notEqual(lacksMe.code, 0)
  assert.match(lacksMe.stderr, /Invalid argument/)
  assert.equal(await cat(map), before)
})

test('quiet really stops sending', async () => {
  const sent = async (): Promise<number> => Number(/^sent (\d+)$/m.exec(await cat(join(root, 'admin/gossip-stats')))?.[1])
  // node 2 of the map above does not run, but node 1 keeps trying it (interval 0.2 s)
  const s0 = await until('sending', async () => { const v = await sent(); return v > 0 ? v : undefined })
  await sh(`echo 1 > ${root}/admin/quiet`)
  const s1 = await sent()
  const rounds = async (): Promise<number> => Number(/^rounds (\d+)$/m.exec(await cat(join(root, 'admin/gossip-stats')))?.[1])
  const r1 = await rounds()
  await until('6 gossip intervals in which nothing may be sent', async () => (await rounds()) >= r1 + 6)
  assert.equal(await sent(), s1, 'sent while quiet')
  assert.ok(s1 >= s0)
  assert.equal(Number(await cat(join(root, 'nodes/1/status'))) & 32, 32)
  await sh(`echo 0 > ${root}/admin/quiet`)
  await until('sending again', async () => (await sent()) > s1)
})
