// setpe and showmap against a plain directory laid out like the tree.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTool, withTree, type Fixture } from './tools-fixture.js'
import { expandMap, formatMap, parseMap } from '../../src/map/map.js'

const setpe = (f: Fixture | string, args: string[], input = ''): ReturnType<typeof runTool> =>
  runTool('setpe', args, { root: typeof f === 'string' ? f : f.root, input })
const showmap = (f: Fixture | string, ...args: string[]): ReturnType<typeof runTool> =>
  runTool('showmap', args, { root: typeof f === 'string' ? f : f.root })

/** A map that holds the fixture's nodes, written the long way (one line each, with comments). */
const mapOf = (f: Fixture): string => '# test map\n\n' + f.nodes.map(n => `${n.id}\t${n.addr}   1  # node ${n.id}`).join('\n') + '\n'

test('setpe -w reads a map on stdin and writes it, normalised, to admin/config', withTree({ count: 4 }, f => {
  const text = mapOf(f)
  const r = setpe(f, ['-w'], text)
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read('admin/config'), formatMap(expandMap(parseMap(text)).values()))
  assert.equal(f.read('admin/config').split('\n').filter(Boolean).length, 1, 'consecutive nodes fold into one line')
}))

test('setpe -w -f file, -W, and -f -', withTree({ count: 2 }, f => {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-map-'))
  try {
    const file = join(dir, 'openmosix.map')
    const text = `${f.nodes[0].id} ${f.nodes[0].addr} 1\n${f.nodes[1].id} ${f.nodes[1].addr} 1\n${f.nodes[0].id} alias-${f.nodes[0].id}.example ALIAS\n`
    writeFileSync(file, text)
    const want = formatMap(expandMap(parseMap(text)).values())
    f.write('admin/config', '\n')
    assert.equal(setpe(f, ['-w', '-f', file]).status, 0)
    assert.equal(f.read('admin/config'), want)
    f.write('admin/config', '\n')
    assert.equal(setpe(f, ['-W', `-f${file}`]).status, 0)
    assert.equal(f.read('admin/config'), want)
    f.write('admin/config', '\n')
    assert.equal(setpe(f, ['-w', '-f', '-'], text).status, 0)
    assert.equal(f.read('admin/config'), want)
    const missing = setpe(f, ['-w', '-f', join(dir, 'nope.map')])
    assert.equal(missing.status, 1)
    assert.match(missing.stderr, /cannot read .*nope\.map: no such file/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}))

test('setpe -w rejects a bad map with its line number and writes nothing', withTree({ count: 2 }, f => {
  const before = f.read('admin/config')
  const cases: Array<[string, RegExp]> = [
    [`${mapOf(f)}oops\n`, /^setpe: line \d+: expected "first-id address count"/],
    [`${f.nodes[0].id} ${f.nodes[0].addr} 1\n0 10.0.0.1 1\n`, /^setpe: line 2: node id 0 out of range/],
    [`${f.nodes[0].id} ${f.nodes[0].addr} 1\n${f.nodes[0].id} 192.0.2.1 1\n`, new RegExp(`^setpe: node ${f.nodes[0].id} listed twice`)],
    [`${f.nodes[0].id} ${f.nodes[0].addr} x\n`, /^setpe: line 1: bad count "x"/]
  ]
  for (const [text, re] of cases) {
    const r = setpe(f, ['-w'], text)
    assert.equal(r.status, 1, text)
    assert.match(r.stderr, re)
    assert.equal(f.read('admin/config'), before)
  }
}))

test('setpe -w refuses a table without this node', withTree({ count: 3 }, f => {
  const before = f.read('admin/config')
  const others = f.nodes.filter(n => n.id !== f.me)
  const r = setpe(f, ['-w'], others.map(n => `${n.id} ${n.addr} 1`).join('\n') + '\n')
  assert.equal(r.status, 1)
  const me = f.nodes.find(n => n.id === f.me)
  assert.ok(me)
  assert.equal(r.stderr, `setpe: the supplied table is well-formatted, but my IP address (${me.addr}:5428) is not there!\n`)
  assert.equal(f.read('admin/config'), before)
  // Right address, wrong id: hpcd needs its own id in the table.
  const moved = setpe(f, ['-w'], `${f.me + 1000} ${me.addr} 1\n`)
  assert.equal(moved.status, 1)
  assert.match(moved.stderr, new RegExp(`my openMosix-ID \\(${f.me}\\) is not there!`))
  // -n names the address to look for.
  const n = setpe(f, ['-w', '-n', '192.0.2.9'], mapOf(f))
  assert.equal(n.status, 1)
  assert.match(n.stderr, /my IP address \(192\.0\.2\.9\) is not there!/)
  assert.equal(f.read('admin/config'), before)
}))

test('setpe -c checks only, with or without a tree', withTree({ count: 2 }, f => {
  const before = f.read('admin/config')
  const ok = setpe(f, ['-c'], mapOf(f))
  assert.equal(ok.status, 0, ok.stderr)
  assert.match(ok.stdout, /well-formatted \(2 nodes\)/)
  assert.equal(setpe(f, ['-w', '-c'], mapOf(f)).status, 0)
  assert.equal(f.read('admin/config'), before)
  assert.equal(setpe(f, ['-c'], 'junk\n').status, 1)
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    assert.equal(setpe(empty, ['-c'], mapOf(f)).status, 0)
    assert.match(setpe(empty, ['-c'], '1 10.0.0.1 300\n').stderr, /^setpe: line 1: /)
    assert.match(setpe(empty, ['-w'], mapOf(f)).stderr, /no hpcfs tree at/)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
}))

test('setpe -w with an empty table clears the static map', withTree({}, f => {
  const r = setpe(f, ['-w'], '# nothing\n\n')
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read('admin/config'), '\n')
}))

test('setpe -r prints the table as setpe -w takes it, -r -f writes it to a file, --json one entry per node', withTree({ count: 3 }, f => {
  // hpcd's admin/config starts with a comment and may list nodes one by one: -r prints the table
  const [a, b, c] = f.nodes
  f.write('admin/config', `# hpcfs cluster map (static map plus nodes heard by gossip)\n${a.id} ${a.addr} 1\n${b.id} ${b.addr} 1\n${c.id} ${c.addr}:6000 1\n${a.id} alias-a.example ALIAS\n`)
  const want = `${a.id} ${a.addr} 2\n${c.id} ${c.addr}:6000 1\n${a.id} alias-a.example ALIAS\n`
  const r = setpe(f, ['-r'])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout, want)
  // what it prints loads back unchanged
  assert.equal(setpe(f, ['-w', '-n', a.addr], r.stdout).status, 0)
  assert.equal(setpe(f, ['-r']).stdout, want)
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-map-'))
  try {
    const out = join(dir, 'saved.map')
    assert.equal(setpe(f, ['-r', '-f', out]).status, 0)
    assert.equal(readFileSync(out, 'utf8'), want)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const j = setpe(f, ['-r', '--json'])
  assert.equal(j.status, 0, j.stderr)
  assert.deepEqual(JSON.parse(j.stdout), {
    myId: f.me,
    nodes: [
      { id: a.id, address: a.addr, port: null, aliases: ['alias-a.example'] },
      { id: b.id, address: b.addr, port: null, aliases: [] },
      { id: c.id, address: c.addr, port: 6000, aliases: [] }
    ]
  })
  for (const bad of [['--json'], ['-w', '--json'], ['-off', '--json']]) {
    const m = setpe(f, bad, want)
    assert.equal(m.status, 2, bad.join(' '))
    assert.match(m.stderr, /Usage: setpe/)
  }
}))

test('setpe -off writes 0 to mospe, -p ID writes the id (also after -w)', withTree({ count: 2 }, f => {
  assert.equal(setpe(f, ['-off']).status, 0)
  assert.equal(f.read('admin/mospe'), '0\n')
  assert.equal(setpe(f, ['-p', String(f.me)]).status, 0)
  assert.equal(f.read('admin/mospe'), `${f.me}\n`)
  f.write('admin/mospe', '0\n')
  const other = f.nodes.find(n => n.id !== f.me)
  assert.ok(other)
  const r = setpe(f, ['-w', `-p${other.id}`], mapOf(f))
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read('admin/mospe'), `${other.id}\n`)
  const absent = setpe(f, ['-w', '-p', '65000'], mapOf(f))
  assert.equal(absent.status, 1)
  assert.match(absent.stderr, /my openMosix-ID \(65000\) is not there!/)
}))

test('setpe misuse prints usage and exits 2', withTree({}, f => {
  const before = f.read('admin/mospe')
  for (const args of [[], ['-x'], ['-r', '-off'], ['-w', '-r'], ['-p'], ['-p', 'abc'], ['-p', '0'], ['-off', '-f', 'x'], ['-g', '7', '-w'], ['-off', '-p', '1']]) {
    const r = setpe(f, args)
    assert.equal(r.status, 2, args.join(' '))
    assert.match(r.stderr, /Usage: setpe/)
  }
  assert.equal(f.read('admin/mospe'), before)
  assert.match(setpe(f, ['-h']).stdout, /^Usage: setpe/)
}))

test('showmap prints the omdiscd layout', withTree({ count: 2 }, f => {
  const [a, b] = f.nodes
  f.write('admin/config', `# map\n${a.id} ${a.addr} 2\n${b.id} alt.example ALIAS\n300 127.0.0.1:6001 1\n`)
  const r = showmap(f)
  assert.equal(r.status, 0, r.stderr)
  const hex = (n: number): string => '0x' + n.toString(16).padStart(4, '0')
  assert.equal(r.stdout, [
    `My Node-Id: ${hex(f.me)}`,
    '',
    'Base Node-Id Address          Count',
    '------------ ---------------- -----',
    `${hex(a.id).padEnd(12)} ${a.addr.padEnd(16)} 2`,
    `${hex(b.id).padEnd(12)} ${'alt.example'.padEnd(16)} ALIAS`,
    `0x012c       127.0.0.1:6001   1`,
    ''
  ].join('\n'))
  const j = showmap(f, '--json')
  assert.equal(j.status, 0, j.stderr)
  assert.deepEqual(JSON.parse(j.stdout), {
    myId: f.me,
    map: [
      { base: a.id, address: a.addr, port: null, count: 2, alias: false },
      { base: b.id, address: 'alt.example', port: null, count: 0, alias: true },
      { base: 300, address: '127.0.0.1', port: 6001, count: 1, alias: false }
    ]
  })
  assert.equal(showmap(f, '--json', 'x').status, 2)
}))

test('showmap errors: bad config, no tree, extra argument', withTree({}, f => {
  f.write('admin/config', '1 10.0.0.1\n')
  const bad = showmap(f)
  assert.equal(bad.status, 1)
  assert.match(bad.stderr, /admin\/config does not parse: line 1:/)
  assert.equal(showmap(f, 'extra').status, 2)
  assert.match(showmap(f, '-h').stdout, /^Usage: showmap/)
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    const r = showmap(empty)
    assert.equal(r.status, 1)
    assert.match(r.stderr, /^showmap: no hpcfs tree at /)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
}))
