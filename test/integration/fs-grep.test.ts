// Recursive readers over the real tree: write-only files (goto, admin/migrate, decay/*) read as
// empty, so `grep -r . admin/`, `grep -r` over the whole tree and `cat admin/*` work for root and
// for other users, while the files still take writes.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { LoopbackCluster, sh, cat, until, type Daemon } from '../helpers/daemon.js'

const c = new LoopbackCluster([1], 17700, ['--interval', '0.2', '--no-balance'])
let d: Daemon
let root: string
let job: ChildProcess | undefined

before(async () => {
  d = await c.start(1)
  root = d.mount
  // another uid must reach the mount point through the test's temp dir
  chmodSync(dirname(root), 0o755)
})
after(async () => {
  if (job?.exitCode === null) job.kill('SIGKILL')
  await c.destroy()
})

test('grep -r . admin/ reads every file, write-only ones as empty', async () => {
  const r = await sh(`cd ${root} && grep -r . admin/`)
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stderr, '')
  assert.match(r.stdout, /^admin\/mospe:1$/m)
  assert.match(r.stdout, /^admin\/version:hpcfs /m)
  assert.match(r.stdout, /^admin\/gossip-stats:sent \d+$/m)
  assert.doesNotMatch(r.stdout, /^admin\/migrate:/m, 'a write-only file has no lines')
  // grep -c counts it, with 0 lines: it was read, not skipped
  const counted = await sh(`cd ${root} && grep -rc '' admin/ | sort`)
  assert.match(counted.stdout, /^admin\/migrate:0$/m)
  assert.equal(await cat(join(root, 'admin/migrate')), '')
  assert.equal((await sh(`cat ${root}/admin/*`)).code, 0)
})

test('grep -r over the whole tree, with a process under discipline, as root and as another user', async () => {
  job = spawn('sleep', ['600'], { stdio: 'ignore' })
  const pid = job.pid as number
  assert.equal((await sh(`echo 1 > ${root}/proc/${pid}/lock`)).code, 0, 'put under discipline')
  await until('proc/ lists it', async () => (await sh(`ls ${root}/proc`)).stdout.split('\n').includes(String(pid)))
  const all = await sh(`grep -r . ${root}`, { timeout: 30_000 })
  assert.equal(all.code, 0, all.stderr)
  assert.equal(all.stderr, '')
  assert.ok(all.stdout.includes(`${root}/proc/${pid}/lock:1\n`))
  assert.ok(all.stdout.includes(`${root}/nodes/1/status:3\n`))
  // goto reads as empty but still moves the process (here: an unknown node is refused)
  assert.equal(await cat(join(root, `proc/${pid}/goto`)), '')
  assert.match((await sh(`echo 99 > ${root}/proc/${pid}/goto`)).stderr, /Invalid argument/)
  const hint = await sh(`echo 1 > ${root}/decay/cpujob`)
  assert.equal(hint.code, 0, `decay/ still takes writes: ${hint.stderr}`)

  const nobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'grep', '-r', '.', join(root, 'admin'), join(root, 'decay'), join(root, 'proc')], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(nobody.status, 0, nobody.stderr)
  assert.equal(nobody.stderr, '')
  assert.ok(nobody.stdout.includes(`${root}/admin/mospe:1\n`))
  // and it still may not write what is root's
  const w = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', `echo '${pid} 1' > ${root}/admin/migrate`], { encoding: 'utf8' })
  assert.match(w.stderr, /Permission denied/)
})
