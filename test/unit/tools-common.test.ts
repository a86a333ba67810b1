// src/cli/common.ts: root resolution, tree reads and writes, argument checks, error texts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CliError, Tree, UsageError, defaultRoot, describeFsError, describeRoots, isTree, openTree, packageRoot, parseIntArg, parseNodeId, resolveRoot, rootCandidates } from '../../src/cli/common.js'
import { runTool } from './tools-fixture.js'

function tempDir (): { dir: string, done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-common-'))
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) }
}

test('package root and default root: the checkout\'s mnt/hpc when mounted, else /mnt/hpc', () => {
  const { dir, done } = tempDir()
  const none = (): boolean => false
  try {
    const deep = join(dir, 'pkg', 'dist', 'src', 'cli')
    mkdirSync(deep, { recursive: true })
    assert.equal(packageRoot(deep), undefined)
    assert.equal(defaultRoot(deep, none), '/mnt/hpc')
    writeFileSync(join(dir, 'pkg', 'package.json'), '{}')
    assert.equal(packageRoot(deep), join(dir, 'pkg'))
    assert.deepEqual(rootCandidates(deep), ['/mnt/hpc'], 'an installed package (no .git) uses /mnt/hpc')
    mkdirSync(join(dir, 'pkg', '.git'))
    const own = join(dir, 'pkg', 'mnt', 'hpc')
    assert.deepEqual(rootCandidates(deep), [own, '/mnt/hpc'])
    // nothing mounted anywhere: the checkout's (named first in the error)
    assert.equal(defaultRoot(deep, none), own)
    // a daemon at the default /mnt/hpc, none in the checkout: /mnt/hpc
    assert.equal(defaultRoot(deep, r => r === '/mnt/hpc'), '/mnt/hpc')
    // both: the checkout's (npm start) wins
    assert.equal(defaultRoot(deep, () => true), own)
    // the real check: a tree is a directory with admin/mospe
    mkdirSync(join(own, 'admin'), { recursive: true })
    writeFileSync(join(own, 'admin', 'mospe'), '1\n')
    assert.equal(defaultRoot(deep), own)
    assert.equal(resolveRoot({}, deep), own)
    assert.equal(describeRoots({}, deep), `${own} or /mnt/hpc`)
    assert.equal(describeRoots({ HPC_ROOT: '/x' }, deep), '/x')
  } finally {
    done()
  }
  // This checkout.
  const here = packageRoot()
  assert.ok(here !== undefined && existsSync(join(here, 'package.json')))
})

test('HPC_ROOT wins over the default; empty means unset', () => {
  assert.equal(resolveRoot({ HPC_ROOT: '/some/where' }), '/some/where')
  assert.equal(resolveRoot({ HPC_ROOT: '' }), defaultRoot())
  assert.equal(resolveRoot({}), defaultRoot())
})

test('a tool run from this checkout without HPC_ROOT names both places it looked', () => {
  const here = packageRoot() as string
  // (nothing to see when HPC_ROOT is set or a tree is really mounted at one of them)
  if ((process.env.HPC_ROOT ?? '') !== '' || isTree(join(here, 'mnt', 'hpc')) || isTree('/mnt/hpc')) return
  const r = runTool('mosctl', ['status'])
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `mosctl: no hpcfs tree at ${join(here, 'mnt', 'hpc')} or /mnt/hpc (is hpcd running? set HPC_ROOT)\n`)
})

test('openTree needs admin/mospe', () => {
  const { dir, done } = tempDir()
  try {
    assert.equal(isTree(dir), false)
    assert.throws(() => openTree('t', { HPC_ROOT: dir }), (e: unknown) =>
      e instanceof CliError && e.exitCode === 1 && e.message === `no hpcfs tree at ${dir} (is hpcd running? set HPC_ROOT)`)
    mkdirSync(join(dir, 'admin'))
    writeFileSync(join(dir, 'admin', 'mospe'), '7\n')
    const t = openTree('t', { HPC_ROOT: dir })
    assert.equal(t.myId(), 7)
  } finally {
    done()
  }
})

test('Tree.write truncates, never creates, and names the errno', () => {
  const { dir, done } = tempDir()
  try {
    const t = new Tree(dir)
    writeFileSync(join(dir, 'speed'), '1234567\n')
    t.write('speed', 42)
    assert.equal(readFileSync(join(dir, 'speed'), 'utf8'), '42\n')
    t.write('speed', '7\n')
    assert.equal(readFileSync(join(dir, 'speed'), 'utf8'), '7\n', 'a value with its newline is not doubled')
    assert.throws(() => t.write('nothing', 1), (e: unknown) => e instanceof CliError && /cannot write "1" to .*nothing: no such file \(ENOENT\)/.test(e.message))
    assert.equal(existsSync(join(dir, 'nothing')), false)
    mkdirSync(join(dir, 'adir'))
    assert.throws(() => t.write('adir', 1), /is a directory \(EISDIR\)/)
  } finally {
    done()
  }
})

test('Tree.read / readInt / nodeIds', () => {
  const { dir, done } = tempDir()
  try {
    const t = new Tree(dir)
    writeFileSync(join(dir, 'a'), 'hello\n')
    writeFileSync(join(dir, 'n'), '-101\n')
    writeFileSync(join(dir, 'bad'), '12x\n')
    assert.equal(t.read('a'), 'hello')
    assert.equal(t.readInt('n'), -101)
    assert.throws(() => t.readInt('bad'), /unexpected content in .*bad: "12x"/)
    assert.throws(() => t.read('missing'), /cannot read .*missing: no such file/)
    assert.throws(() => t.nodeIds(), /cannot list .*nodes/)
    for (const n of ['10', '2', 'x', '.hidden', '33']) mkdirSync(join(dir, 'nodes', n), { recursive: true })
    assert.deepEqual(t.nodeIds(), [2, 10, 33])
  } finally {
    done()
  }
})

test('Tree.writeAll puts back earlier files when a later write fails', () => {
  const { dir, done } = tempDir()
  try {
    const t = new Tree(dir)
    writeFileSync(join(dir, 'a'), '1\n')
    writeFileSync(join(dir, 'b'), '2\n')
    assert.throws(() => t.writeAll([['a', 10], ['b', 20], ['c', 30]]), /cannot write "30"/)
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), '1\n')
    assert.equal(readFileSync(join(dir, 'b'), 'utf8'), '2\n')
    writeFileSync(join(dir, 'c'), '3\n')
    t.writeAll([['a', 10], ['b', 20], ['c', 30]])
    assert.equal(readFileSync(join(dir, 'c'), 'utf8'), '30\n')
  } finally {
    done()
  }
})

test('describeFsError explains the errnos the tree returns', () => {
  const err = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: x`), { code })
  assert.equal(describeFsError(err('EINVAL'), 'cannot write "0" to /t/admin/speed'), 'cannot write "0" to /t/admin/speed: invalid value (EINVAL)')
  assert.match(describeFsError(err('EACCES'), 'w'), /^w: permission denied \(EACCES\): read-only file/)
  assert.match(describeFsError(err('ENOTCONN'), 'r'), /is hpcd still running\?/)
  assert.equal(describeFsError(err('EWEIRD'), 'r'), 'r: EWEIRD: x')
  assert.equal(describeFsError('plain', 'r'), 'r: plain')
})

test('argument checks', () => {
  assert.equal(parseNodeId('1'), 1)
  assert.equal(parseNodeId('65535'), 65535)
  for (const bad of ['0', '65536', '-1', 'a', '', '1.5', ' 3']) {
    assert.throws(() => parseNodeId(bad), (e: unknown) => e instanceof UsageError && e.exitCode === 2, bad)
  }
  assert.equal(parseIntArg('-5', 'x', -10, 10), -5)
  assert.throws(() => parseIntArg('11', 'x', -10, 10), /x 11 out of range -10\.\.10/)
  assert.throws(() => parseIntArg('1e3', 'x', 0, 10000), /bad x "1e3"/)
})

test('a long or multi-line value is not quoted in the error', () => {
  const { dir, done } = tempDir()
  try {
    const t = new Tree(dir)
    assert.throws(() => t.write('config', '1 10.0.0.1 1\n2 10.0.0.2 1\n'), (e: unknown) =>
      e instanceof CliError && e.message === `cannot write ${join(dir, 'config')}: no such file (ENOENT)`)
    assert.throws(() => t.write('x', 'y'.repeat(41)), (e: unknown) => e instanceof CliError && e.message.startsWith(`cannot write ${join(dir, 'x')}: `))
  } finally {
    done()
  }
})
