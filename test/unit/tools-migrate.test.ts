// migrate against a plain directory laid out like the tree, with real subject processes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { addProc, deadPid, run, startTool, until, withProcTree } from './tools-proc-fixture.js'
import type { Fixture } from './tools-fixture.js'

/**
 * Plays hpcd for one move: once migrate has written goto, where reads `migrating`, then `arrive`
 * (the target), or back to `stay` with `error` holding the reason.
 */
async function answer (f: Fixture, pid: number, outcome: { arrive: string } | { stay: string, error: string }): Promise<void> {
  await until(() => f.read(`proc/${pid}/goto`) !== '', 'goto written')
  f.write(`proc/${pid}/where`, 'migrating\n')
  await new Promise(resolve => setTimeout(resolve, 150)) // a move takes a moment; migrate must still wait
  if ('arrive' in outcome) f.write(`proc/${pid}/where`, `${outcome.arrive}\n`)
  else {
    f.write(`proc/${pid}/error`, `${outcome.error}\n`)
    f.write(`proc/${pid}/where`, `${outcome.stay}\n`)
  }
}

test('writes the node id to proc/PID/goto and returns when it has arrived; home, own id and balance', withProcTree({ count: 3 }, async (f, s) => {
  const pid = s.sleep()
  addProc(f, pid)
  const other = f.nodes[1].id
  let m = startTool('migrate', [String(pid), String(other)], { root: f.root })
  await answer(f, pid, { arrive: String(other) })
  let r = await m.done
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout + r.stderr, '')
  assert.equal(f.read(`proc/${pid}/goto`), `${other}\n`)
  f.write(`proc/${pid}/goto`, '')
  m = startTool('migrate', [String(pid), 'home'], { root: f.root })
  await answer(f, pid, { arrive: '0' })
  assert.equal((await m.done).status, 0)
  assert.equal(f.read(`proc/${pid}/goto`), '0\n')
  // already there: returns at once
  f.write(`proc/${pid}/goto`, '')
  r = await run('migrate', [String(pid), String(f.me)], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read(`proc/${pid}/goto`), '0\n', 'this node\'s own id means home')
  // balance: not moving right after the write = the balancer keeps it there
  r = await run('migrate', [String(pid), 'balance'], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read(`proc/${pid}/goto`), 'balance\n')
}))

test('a refused move prints the reason from proc/PID/error and exits 1, at once, with or without --wait', withProcTree({ count: 3 }, async (f, s) => {
  const pid = s.sleep()
  addProc(f, pid)
  const other = f.nodes[2].id
  const reason = `node ${other} refused: this node is blocked (admin/block) #${Math.random().toString(36).slice(2)}`
  for (const wait of [[], ['--wait', '60']]) {
    f.write(`proc/${pid}/goto`, '')
    f.write(`proc/${pid}/error`, '')
    f.write(`proc/${pid}/where`, '0\n')
    const t0 = Date.now()
    const m = startTool('migrate', [String(pid), String(other), ...wait], { root: f.root })
    await answer(f, pid, { stay: '0', error: reason })
    const r = await m.done
    assert.equal(r.status, 1, wait.join(' '))
    assert.equal(r.stderr, `migrate: process ${pid} was not moved to node ${other}: ${reason} (where: 0)\n`)
    assert.ok(Date.now() - t0 < 30_000, 'returned when the reason came, not after the wait')
  }
  // N -> M refused: it runs on N again
  f.write(`proc/${pid}/goto`, '')
  f.write(`proc/${pid}/error`, '')
  f.write(`proc/${pid}/where`, `${f.nodes[1].id}\n`)
  const m = startTool('migrate', [String(pid), 'home'], { root: f.root })
  await answer(f, pid, { stay: String(f.nodes[1].id), error: 'remote could not stop it: x' })
  const r = await m.done
  assert.equal(r.status, 1)
  assert.match(r.stderr, /was not moved home: remote could not stop it: x \(where: \d+\)\n$/)
}))

test('--wait succeeds once where shows the target', withProcTree({ count: 3 }, async (f, s) => {
  const pid = s.sleep()
  addProc(f, pid)
  const other = f.nodes[2].id
  const m = startTool('migrate', [String(pid), String(other), '--wait', '10'], { root: f.root })
  await until(() => f.read(`proc/${pid}/goto`) !== '', 'goto written')
  f.write(`proc/${pid}/where`, 'migrating\n')
  // Still waiting while in transit.
  await new Promise(resolve => setTimeout(resolve, 250))
  assert.equal(m.child.exitCode, null, 'migrate returned while the process was in transit')
  f.write(`proc/${pid}/where`, `${other}\n`)
  const r = await m.done
  assert.equal(r.status, 0, r.stderr)
  // Home is where = 0 (--wait=S form).
  const h = startTool('migrate', [String(pid), 'home', '--wait=10'], { root: f.root })
  await until(() => f.read(`proc/${pid}/goto`) === '0\n', 'goto home written')
  f.write(`proc/${pid}/where`, '0\n')
  assert.equal((await h.done).status, 0)
}))

test('--wait fails clearly on timeout and when the process ends', withProcTree({ count: 3 }, async (f, s) => {
  const pid = s.sleep()
  addProc(f, pid)
  const other = f.nodes[1].id
  const t0 = Date.now()
  let r = await run('migrate', [String(pid), String(other), '--wait', '0.4'], { root: f.root })
  assert.equal(r.status, 1)
  assert.ok(Date.now() - t0 >= 400)
  assert.equal(r.stderr, `migrate: process ${pid} did not reach node ${other} within 0.4 s (where: 0)\n`)

  f.write(`proc/${pid}/goto`, '')
  const m = startTool('migrate', [String(pid), String(other), '--wait'], { root: f.root })
  await until(() => f.read(`proc/${pid}/goto`) !== '', 'goto written')
  await s.killAll()
  r = await m.done
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `migrate: process ${pid} ended before reaching node ${other}\n`)
}))

test('refuses unknown pids, pids outside proc/, unknown nodes and bad arguments', withProcTree({ count: 3 }, async (f, s) => {
  const dead = await deadPid()
  let r = await run('migrate', [String(dead), String(f.nodes[1].id)], { root: f.root })
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `migrate: no such process ${dead}\n`)

  const pid = s.sleep()
  r = await run('migrate', [String(pid), String(f.nodes[1].id)], { root: f.root })
  assert.equal(r.status, 1)
  assert.match(r.stderr, new RegExp(`^migrate: process ${pid} is not in .*/proc`))

  addProc(f, pid)
  const missing = Math.max(...f.nodes.map(n => n.id)) + 1
  r = await run('migrate', [String(pid), String(missing)], { root: f.root })
  assert.equal(r.status, 1)
  assert.match(r.stderr, new RegExp(`^migrate: no node ${missing} in the cluster`))

  const misuse: string[][] = [
    [], [String(pid)], [String(pid), 'elsewhere'], [String(pid), '0'], [String(pid), '70000'],
    ['12x', 'home'], [String(pid), 'home', 'extra'], [String(pid), 'balance', '--wait'],
    [String(pid), 'home', '--wait=-1'], [String(pid), 'home', '--bogus']
  ]
  for (const args of misuse) {
    r = await run('migrate', args, { root: f.root })
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, /^migrate: .*\nUsage: migrate PID/, args.join(' '))
  }
  assert.equal(f.read(`proc/${pid}/goto`), '', 'nothing written on refusal')

  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    r = await run('migrate', [String(pid), 'home'], { root: empty })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /^migrate: no hpcfs tree at /)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }

  r = await run('migrate', ['-h'], { root: f.root })
  assert.equal(r.status, 0)
  assert.match(r.stdout, /^Usage: migrate PID/)
}))

test('who may kill a process may migrate it', { skip: process.geteuid?.() !== 0 ? 'needs root to run as another uid' : false },
  withProcTree({ count: 3 }, async (f, s) => {
    chmodSync(f.root, 0o755)
    const nobody = 65534
    const mine = s.sleep({ uid: nobody, gid: nobody })
    const roots = s.sleep()
    addProc(f, mine)
    addProc(f, roots)
    chmodSync(join(f.root, 'proc', String(mine), 'goto'), 0o666)
    chmodSync(join(f.root, 'proc', String(roots), 'goto'), 0o666)
    const other = String(f.nodes[1].id)
    let r = await run('migrate', [String(roots), other], { root: f.root, uid: nobody, gid: nobody })
    assert.equal(r.status, 1)
    assert.match(r.stderr, new RegExp(`^migrate: ${roots}: not allowed \\(it belongs to uid 0, you are uid ${nobody}`))
    assert.equal(f.read(`proc/${roots}/goto`), '')
    const m = startTool('migrate', [String(mine), other], { root: f.root, uid: nobody, gid: nobody })
    await answer(f, mine, { arrive: other })
    r = await m.done
    assert.equal(r.status, 0, r.stderr)
    assert.equal(f.read(`proc/${mine}/goto`), `${other}\n`)
    // Root may migrate anyone's process.
    const h = startTool('migrate', [String(mine), 'home'], { root: f.root })
    await answer(f, mine, { arrive: '0' })
    r = await h.done
    assert.equal(r.status, 0, r.stderr)
    assert.equal(f.read(`proc/${mine}/goto`), '0\n')
  }))

test('a refused goto write names the errno', withProcTree({ count: 3 }, async (f, s) => {
  const pid = s.sleep()
  addProc(f, pid)
  // A directory where goto should be: the write fails with EISDIR, reported with the path.
  rmSync(join(f.root, 'proc', String(pid), 'goto'))
  mkdirSync(join(f.root, 'proc', String(pid), 'goto'))
  const r = await run('migrate', [String(pid), String(f.nodes[1].id)], { root: f.root })
  assert.equal(r.status, 1)
  assert.match(r.stderr, /^migrate: cannot write "\d+" to .*\/goto: is a directory \(EISDIR\)\n$/)
}))
