// File semantics of the tree, through the same operations table that FUSE calls (no mount).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { constants } from 'node:os'
import { HpcNode, type ProbeLike } from '../../src/core/node.js'
import { DEFAULTS, MAX_TREE_GATHER, MAX_TREE_WRITE } from '../../src/config.js'
import { Keyring } from '../../src/gossip/keyring.js'
import { rootDir } from '../../src/fs/root.js'
import { TreeMount } from '../../src/fs/fuse.js'
import type { Ops } from 'fuse-native'

const E = constants.errno

function fakeProbe (): ProbeLike {
  let speed = 10000
  return {
    snapshot: () => ({ cpus: 2, speed, load: 50, localLoad: 40, tmem: 8e9, rmem: 4e9, mem: 5e9, util: 100 }),
    setSpeed: s => { speed = s }
  }
}

function setup (key: Buffer | null = Buffer.from('k'.repeat(32))): { node: HpcNode, ops: Required<Ops> } {
  let t = 0
  const node = new HpcNode({ ...DEFAULTS, id: 3, addr: '10.0.0.3' }, fakeProbe(), new Keyring(key), { seeds: [], now: () => t++ })
  const ops = new TreeMount(rootDir(node), '/nonexistent').ops() as Required<Ops>
  return { node, ops }
}

const call = <T extends unknown[]>(fn: (...a: [...T, (...r: any[]) => void]) => void, ...args: T): Promise<any[]> =>
  new Promise(resolve => fn(...args, (...r: any[]) => resolve(r)))

async function readFile (ops: Required<Ops>, path: string): Promise<string | number> {
  const [err, fh] = await call(ops.open, path, 0)
  if (err) return err
  const buf = Buffer.alloc(4096)
  const [n] = await call(ops.read, path, fh, buf, 4096, 0)
  const [eof] = await call(ops.read, path, fh, buf, 4096, n)
  assert.equal(eof, 0)
  await call(ops.release, path, fh)
  return buf.toString('utf8', 0, n)
}

async function writeFile (ops: Required<Ops>, path: string, text: string): Promise<number> {
  const [err, fh] = await call(ops.open, path, 1)
  if (err) return err
  const [t] = await call(ops.ftruncate, path, fh, 0)
  if (t) return t
  const b = Buffer.from(text)
  const [n] = await call(ops.write, path, fh, b, b.length, 0)
  const [f] = await call(ops.flush, path, fh) // close(2): gathered files are stored here
  await call(ops.release, path, fh)
  return n < 0 ? n : f
}

test('every admin number file takes a good value and refuses bad ones unchanged', async () => {
  const { ops } = setup()
  const cases: Record<string, { good: string, bad: string[] }> = {
    block: { good: '1', bad: ['2', '-1', 'yes', '', '1 1'] },
    stay: { good: '1', bad: ['7'] },
    lstay: { good: '1', bad: ['x'] },
    quiet: { good: '1', bad: ['0x1'] },
    speed: { good: '23456', bad: ['0', '1000001', '12.5', 'fast', '-5'] },
    'decay-interval': { good: '5', bad: ['0', '3601'] },
    'slow-decay': { good: '900', bad: ['1001', '-1'] },
    'fast-decay': { good: '800', bad: ['abc'] },
    mospe: { good: '3', bad: ['4', '70000'] }
  }
  for (const [name, c] of Object.entries(cases)) {
    const path = `/admin/${name}`
    assert.equal(await writeFile(ops, path, c.good + '\n'), 0, `${name} good`)
    const after = await readFile(ops, path)
    assert.equal(after, c.good + '\n', name)
    for (const bad of c.bad) {
      assert.equal(await writeFile(ops, path, bad + '\n'), -E.EINVAL, `${name} <- ${JSON.stringify(bad)}`)
      assert.equal(await readFile(ops, path), after, `${name} unchanged after ${JSON.stringify(bad)}`)
    }
  }
})

test('read-only files refuse writes with EACCES, write-only ones read as empty', async () => {
  const { ops } = setup()
  for (const p of ['/admin/version', '/admin/gossip-stats', '/nodes/3/load', '/nodes/3/status']) {
    assert.equal(await writeFile(ops, p, '1\n'), -E.EACCES, p)
  }
  const [tr] = await call(ops.truncate, '/nodes/3/speed', 0)
  assert.equal(tr, -E.EACCES)
  // so that grep -r and cat * walk the tree (docs/tools.md)
  for (const p of ['/decay/cpujob', '/admin/migrate']) {
    assert.equal(await readFile(ops, p), '', p)
    assert.equal(((await call(ops.getattr, p))[1] as { mode: number }).mode & 0o777, 0o644, p)
  }
  assert.equal(await writeFile(ops, '/decay/cpujob', '1\n'), 0)
  assert.equal(await writeFile(ops, '/decay/cpujob', '2\n'), -E.EINVAL)
  assert.equal(await writeFile(ops, '/admin/migrate', '1 2\n'), -E.ENOSYS)
  const [c] = await call(ops.create, '/admin/new', 0o644)
  assert.equal(c, -E.EACCES)
  assert.equal((await call(ops.getattr, '/admin/nothing'))[0], -E.ENOENT)
  assert.equal((await call(ops.getattr, '/nodes/3/load/x'))[0], -E.ENOENT)
})

test('a subsystem the node does not run answers one way: its files read empty, changes fail ENOSYS and change nothing', async () => {
  const { ops } = setup() // a node without migration and scheduler
  for (const p of ['/admin/costs', '/admin/sched', '/admin/migrate']) assert.equal(await readFile(ops, p), '', p)
  assert.equal(await readFile(ops, '/admin/balance'), '0\n')
  for (const [p, v] of [['/admin/migrate', '1 2\n'], ['/admin/balance', '1\n'], ['/admin/sched', 'tieEpsilon 0.1\n']]) {
    assert.equal(await writeFile(ops, p, v), -E.ENOSYS, p)
  }
  assert.equal(await readFile(ops, '/admin/balance'), '0\n', 'unchanged')
})

test('a map may arrive in several writes; it is stored whole at close', async () => {
  const { ops } = setup()
  const [, fh] = await call(ops.open, '/admin/config', 1)
  const parts = ['1 10.0.0.1 2\n', '3 10.0.0', '.3 1\n']
  let pos = 0
  for (const p of parts) {
    const [n] = await call(ops.write, '/admin/config', fh, Buffer.from(p), p.length, pos)
    assert.equal(n, p.length)
    pos += n
    assert.deepEqual((await call(ops.readdir, '/nodes'))[1], ['.', '..', '3'], 'nothing stored before close')
  }
  assert.equal((await call(ops.flush, '/admin/config', fh))[0], 0)
  await call(ops.release, '/admin/config', fh)
  assert.deepEqual((await call(ops.readdir, '/nodes'))[1], ['.', '..', '1', '2', '3'])
  // a bad line fails the write that carries it, and nothing is stored
  const [, fh2] = await call(ops.open, '/admin/config', 1)
  const bad = '1 10.0.0.1 1\n3 10.0.0.3 zero\n'
  assert.equal((await call(ops.write, '/admin/config', fh2, Buffer.from(bad), bad.length, 0))[0], -E.EINVAL)
  assert.equal((await call(ops.flush, '/admin/config', fh2))[0], -E.EINVAL)
  await call(ops.release, '/admin/config', fh2)
  assert.deepEqual((await call(ops.readdir, '/nodes'))[1], ['.', '..', '1', '2', '3'])
})

test('a write must start at offset 0', async () => {
  const { ops } = setup()
  const [, fh] = await call(ops.open, '/admin/speed', 1)
  const [n] = await call(ops.write, '/admin/speed', fh, Buffer.from('5'), 1, 3)
  assert.equal(n, -E.EINVAL)
})

test('a write longer than MAX_TREE_WRITE is refused whole: FUSE would hand it over in pieces', async () => {
  const { ops } = setup()
  const before = await readFile(ops, '/admin/speed')
  const [, fh] = await call(ops.open, '/admin/speed', 1)
  const big = Buffer.from('20000' + ' '.repeat(MAX_TREE_WRITE))
  // the first piece FUSE would send of a write of 200 KiB
  assert.equal((await call(ops.write, '/admin/speed', fh, big, big.length, 0))[0], -E.EINVAL)
  assert.equal((await call(ops.write, '/admin/speed', fh, big, 100, big.length))[0], -E.EINVAL)
  await call(ops.release, '/admin/speed', fh)
  assert.equal(await readFile(ops, '/admin/speed'), before)
  assert.equal(await writeFile(ops, '/admin/speed', '20000' + ' '.repeat(MAX_TREE_WRITE - 6) + '\n'), 0, 'exactly one page is fine')
  assert.equal(await readFile(ops, '/admin/speed'), '20000\n')
})

test('gathered writes count bytes: a character split between two writes arrives whole', async () => {
  const { node, ops } = setup()
  const text = Buffer.from('# nœud\n3 10.0.0.3 1\n')
  const cut = text.indexOf(0xc5) + 1 // between the two bytes of "œ"
  const [, fh] = await call(ops.open, '/admin/config', 1)
  assert.equal((await call(ops.write, '/admin/config', fh, text.subarray(0, cut), cut, 0))[0], cut)
  assert.equal((await call(ops.write, '/admin/config', fh, text.subarray(cut), text.length - cut, cut))[0], text.length - cut)
  assert.equal((await call(ops.flush, '/admin/config', fh))[0], 0)
  await call(ops.release, '/admin/config', fh)
  assert.deepEqual(node.nodeIds(), [3])
  // and a gathered text past MAX_TREE_GATHER is refused
  const [, fh2] = await call(ops.open, '/admin/config', 1)
  const chunk = Buffer.from('#'.repeat(127) + '\n')
  let pos = 0
  let r = 0
  while (r >= 0 && pos <= MAX_TREE_GATHER) { [r] = await call(ops.write, '/admin/config', fh2, chunk, chunk.length, pos); pos += chunk.length }
  assert.equal(r, -E.EINVAL)
  assert.equal((await call(ops.flush, '/admin/config', fh2))[0], -E.EINVAL)
  await call(ops.release, '/admin/config', fh2)
})

test('without a key file, block and stay read 1 and cannot be cleared (EPERM, nothing changes)', async () => {
  const { node, ops } = setup(null)
  for (const f of ['block', 'stay']) {
    assert.equal(await readFile(ops, `/admin/${f}`), '1\n', f)
    assert.equal(await writeFile(ops, `/admin/${f}`, '0\n'), -E.EPERM, f)
    assert.equal(await writeFile(ops, `/admin/${f}`, '1\n'), 0, f)
    assert.equal(await readFile(ops, `/admin/${f}`), '1\n', f)
  }
  assert.equal(node.blocked && node.keepsLocal, true)
  assert.equal(Number(await readFile(ops, '/nodes/3/status')) & 20, 20)
})

test('expel implies block and bring implies lstay; both read 0', async () => {
  const { ops, node } = setup()
  assert.equal(await readFile(ops, '/admin/expel'), '0\n')
  assert.equal(await writeFile(ops, '/admin/expel', '1\n'), 0)
  assert.equal(node.block, true)
  assert.equal(await writeFile(ops, '/admin/bring', '1\n'), 0)
  assert.equal(node.lstay, true)
  assert.equal(await writeFile(ops, '/admin/bring', '0\n'), -E.EINVAL)
})

test('status bits follow the admin flags; readdir lists . .. and entries', async () => {
  const { ops } = setup()
  assert.equal(await readFile(ops, '/nodes/3/status'), '3\n')
  await writeFile(ops, '/admin/block', '1')
  await writeFile(ops, '/admin/stay', '1')
  assert.equal(await readFile(ops, '/nodes/3/status'), `${1 + 2 + 4 + 16}\n`)
  const [, names] = await call(ops.readdir, '/nodes')
  assert.deepEqual(names, ['.', '..', '3'])
  const [, admin] = await call(ops.readdir, '/admin')
  assert.ok(admin.includes('speed') && admin.includes('config'))
  assert.equal((await call(ops.readdir, '/admin/speed'))[0], -E.ENOTDIR)
})

test('admin/config takes a map that holds this node, refuses others unchanged', async () => {
  const { ops } = setup()
  assert.equal(await writeFile(ops, '/admin/config', '1 10.0.0.1 4\n'), 0)
  const [, names] = await call(ops.readdir, '/nodes')
  assert.deepEqual(names, ['.', '..', '1', '2', '3', '4'])
  assert.equal(await readFile(ops, '/nodes/2/load'), '-101\n')
  assert.equal(await readFile(ops, '/nodes/2/status'), '1\n')
  const before = await readFile(ops, '/admin/config')
  for (const bad of ['1 10.0.0.1\n', '5 10.0.0.5 1\n', '1 10.0.0.1 4\n1 10.0.0.9 1\n', 'garbage']) {
    assert.equal(await writeFile(ops, '/admin/config', bad), -E.EINVAL, bad)
    assert.equal(await readFile(ops, '/admin/config'), before)
  }
  assert.equal(await writeFile(ops, '/admin/config', '\n'), 0)
  assert.deepEqual((await call(ops.readdir, '/nodes'))[1], ['.', '..', '3'])
})
