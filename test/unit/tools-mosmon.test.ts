// mosmon: the pure renderer, the --once frame, and the interactive program under a pty (ptyrun.c).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyKey, FOOTER, renderFrame, TITLES, type MonState, type NodeSample } from '../../src/cli/mosmon-render.js'
import { makeTree, runTool, type Fixture } from './tools-fixture.js'
import { exitCode, findTool, noPty, startPty, stop, type Pty } from './tools-pty.js'

const GB = 1024 * 1024 * 1024

function node (id: number, over: Partial<NodeSample> = {}): NodeSample {
  return { id, load: 100, speed: 10000, cpus: 1, mem: 2 * GB, rmem: 2 * GB, tmem: 4 * GB, util: 100, status: 3, ...over }
}

function state (nodes: NodeSample[], over: Partial<MonState> = {}): MonState {
  return { mode: 'load', showTotal: false, showDead: false, myId: nodes[0]?.id ?? 0, nodes, ...over }
}

/** The bar of node `id` in a frame: the text between the first two `|`. */
function barOf (lines: string[], id: number): string {
  const line = lines.find(l => new RegExp(`^[ *] *${id} \\|`).test(l))
  assert.ok(line, `no line for node ${id} in\n${lines.join('\n')}`)
  return line.slice(line.indexOf('|') + 1, line.lastIndexOf('|'))
}

test('render: one line per up node, bars proportional to load, this node marked', () => {
  const lines = renderFrame(state([node(1, { load: 50 }), node(2, { load: 200 }), node(10, { load: 0 })], { myId: 2 }), 80, 24)
  assert.equal(lines[0], `mosmon: ${TITLES.load}`)
  const b1 = barOf(lines, 1).trimEnd().length
  const b2 = barOf(lines, 2).trimEnd().length
  assert.equal(barOf(lines, 10).trim(), '')
  assert.equal(barOf(lines, 2).length, b2, 'the busiest node fills the bar')
  assert.ok(Math.abs(b2 / b1 - 4) < 0.5, `bars ${b1} and ${b2} should be 1:4`)
  assert.ok(lines.some(l => /^\* 2 \|#+\| 2\.00$/.test(l)), lines.join('\n'))
  assert.ok(lines.some(l => /^  1 \|#+ +\| 0\.50$/.test(l)))
  assert.equal(lines.at(-1), FOOTER)
  for (const l of lines) assert.ok(l.length <= 80)
})

test('render: log-scale load gives small loads longer bars than the linear view', () => {
  const s = state([node(1, { load: 10 }), node(2, { load: 1000 }), node(3, { load: 0 })], { mode: 'logload' })
  const log = renderFrame(s, 80, 20)
  const lin = renderFrame({ ...s, mode: 'load' }, 80, 20)
  assert.equal(log[0], `mosmon: ${TITLES.logload}`)
  const len = (lines: string[], id: number): number => barOf(lines, id).trimEnd().length
  assert.equal(len(log, 2), barOf(log, 2).length, 'the busiest node fills the bar')
  assert.equal(len(log, 3), 0)
  assert.ok(len(log, 1) > len(lin, 1), `log ${len(log, 1)} vs linear ${len(lin, 1)}`)
  assert.ok(log.some(l => l.endsWith('| 0.10')))
})

test('render: dead nodes hidden unless d, total line on t', () => {
  const s = state([node(1), node(2, { status: 1, load: -101 }), node(3, { status: 3, load: -101 })])
  const hidden = renderFrame(s, 60, 20)
  assert.equal(hidden.filter(l => l.includes('|')).length, 1)
  assert.ok(!hidden.some(l => l.startsWith('Total')))
  const shown = renderFrame({ ...s, showDead: true, showTotal: true }, 60, 20)
  assert.match(barOf(shown, 2), /^\(down\) *$/)
  assert.ok(shown.some(l => /^ *3 \|.*\| down$/.test(l)))
  assert.ok(shown.includes('Total: 3 nodes, 1 up'))
  const none = renderFrame(state([node(4, { status: 1 })]), 60, 20)
  assert.ok(none.some(l => l.includes('no node is up')))
})

test('render: memory as used # plus free + up to the total', () => {
  const s = state([node(1, { mem: 1 * GB, tmem: 4 * GB }), node(2, { mem: 2 * GB, rmem: 3 * GB, tmem: 2 * GB })], { mode: 'mem' })
  const lines = renderFrame(s, 70, 20)
  assert.equal(lines[0], `mosmon: ${TITLES.mem}`)
  const b1 = barOf(lines, 1)
  const used1 = (b1.match(/#/g) ?? []).length
  const free1 = (b1.match(/\+/g) ?? []).length
  assert.equal(used1 + free1, b1.length, 'the largest node fills the bar')
  assert.ok(Math.abs(used1 / (used1 + free1) - 0.75) < 0.05)
  const b2 = barOf(lines, 2)
  assert.equal((b2.match(/#/g) ?? []).length, 0, 'nothing used')
  assert.ok(Math.abs((b2.match(/\+/g) ?? []).length / b1.length - 0.5) < 0.05)
  assert.ok(lines.some(l => l.endsWith('| 3072/4096')))
  // Raw memory uses rmem.
  const raw = renderFrame({ ...s, mode: 'rmem' }, 70, 20)
  assert.equal(raw[0], `mosmon: ${TITLES.rmem}`)
  assert.ok(raw.some(l => l.endsWith('| 2048/4096')), raw.join('\n'))
})

test('render: speed shows the CPU count of SMP nodes, util in percent', () => {
  const s = state([node(1, { speed: 20000, cpus: 4 }), node(2, { speed: 10000, util: 37 })], { mode: 'speed' })
  const lines = renderFrame(s, 60, 20)
  assert.ok(lines.some(l => l.endsWith('| 20000 x4')))
  assert.ok(lines.some(l => /\| 10000 *$/.test(l)))
  const u = renderFrame({ ...s, mode: 'util' }, 60, 20)
  assert.ok(u.some(l => l.endsWith('| 37%')))
  const unknown = renderFrame(state([node(1, { load: NaN })]), 60, 20)
  assert.ok(unknown.some(l => l.endsWith('| ?')))
})

test('render: fits any terminal size', () => {
  const nodes = Array.from({ length: 50 }, (_, i) => node(i + 1, { load: i * 10 }))
  for (const [w, h] of [[80, 24], [20, 5], [1, 1], [200, 60], [40, 3], [10, 100]]) {
    const lines = renderFrame(state(nodes, { showTotal: true, error: 'x'.repeat(300) }), w, h)
    assert.ok(lines.length <= h, `${w}x${h}: ${lines.length} lines`)
    for (const l of lines) assert.ok(l.length <= w, `${w}x${h}: ${JSON.stringify(l)}`)
  }
  const small = renderFrame(state(nodes), 80, 12)
  assert.ok(small.some(l => /^\.\.\. \d+ more nodes/.test(l)), small.join('\n'))
})

test('keys switch modes and toggles; q and Ctrl-C quit; other keys change nothing', () => {
  const s = state([node(1)])
  const modes: Record<string, MonState['mode']> = { l: 'load', L: 'logload', s: 'speed', m: 'mem', r: 'rmem', u: 'util' }
  for (const [k, mode] of Object.entries(modes)) {
    const n = applyKey({ ...s, mode: mode === 'load' ? 'util' : 'load' }, k)
    assert.notEqual(n, 'quit')
    if (n !== 'quit') assert.equal(n.mode, mode)
  }
  const t = applyKey(s, 't')
  assert.ok(t !== 'quit' && t.showTotal)
  const d = applyKey(s, 'd')
  assert.ok(d !== 'quit' && d.showDead)
  assert.equal(applyKey(s, 'q'), 'quit')
  assert.equal(applyKey(s, '\x03'), 'quit')
  assert.deepEqual(applyKey(s, 'x'), s)
})

test('mosmon --once prints a plain frame with every up node', () => {
  const f = makeTree({ count: 4, down: [3] })
  try {
    const r = runTool('mosmon', ['--once', '-t'], { root: f.root })
    assert.equal(r.status, 0, r.stderr)
    assert.doesNotMatch(r.stdout, /\x1b/)
    for (const n of f.nodes) {
      const re = new RegExp(`^[ *] *${n.id} \\|.*\\| ${(n.load / 100).toFixed(2)}$`, 'm')
      if (n.up) assert.match(r.stdout, re)
      else assert.doesNotMatch(r.stdout, new RegExp(`^[ *] *${n.id} \\|`, 'm'))
    }
    assert.match(r.stdout, /Total: 4 nodes, 3 up/)
    assert.match(r.stdout, new RegExp(`^\\* *${f.me} \\|`, 'm'))
  } finally {
    f.cleanup()
  }
})

test('mosmon: no tree, bad option, -h, not a terminal', () => {
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  const f = makeTree({})
  try {
    const r = runTool('mosmon', [], { root: empty })
    assert.equal(r.status, 1)
    assert.equal(r.stderr, 'mosmon: This is NOT a openMosix system!\n')
    const bad = runTool('mosmon', ['-z'], { root: f.root })
    assert.equal(bad.status, 2)
    assert.match(bad.stderr, /Usage: mosmon/)
    const h = runTool('mosmon', ['-h'], { root: empty })
    assert.equal(h.status, 0)
    assert.match(h.stdout, /^Usage: mosmon/)
    const pipe = runTool('mosmon', [], { root: f.root })
    assert.equal(pipe.status, 1)
    assert.match(pipe.stderr, /not a terminal/)
  } finally {
    rmSync(empty, { recursive: true, force: true })
    f.cleanup()
  }
})

// ---- interactive, under a pty made by test/unit/ptyrun.c (tools-pty.ts) ------------------------

const startMosmon = (f: Fixture, args: string[] = []): Pty => startPty('mosmon', f, args)
const findMosmon = (runnerPid: number): ReturnType<typeof findTool> => findTool(runnerPid, 'mosmon')

test('mosmon under a pty: shows nodes, switches mode on a key, quits on q restoring the terminal', { skip: noPty }, async () => {
  const f = makeTree({ count: 3 })
  const p = startMosmon(f)
  try {
    await p.waitFor(o => o.includes(TITLES.load) && f.nodes.every(n => o.includes(`${n.id} |`)), 'the load view')
    const start = p.output()
    assert.ok(start.startsWith('\x1b[?1049h'), 'enters the alternate screen first')
    assert.ok(start.includes('\x1b[?25l'), 'hides the cursor')
    assert.ok(!start.includes('\x1b[2J'), 'no full clear')
    p.proc.stdin?.write('m')
    await p.waitFor(o => o.includes(TITLES.mem), 'the memory view')
    p.proc.stdin?.write('t')
    await p.waitFor(o => o.includes(`Total: ${f.nodes.length} nodes`), 'the total line')
    // A node's load changes: the next refresh (once a second) shows it.
    p.proc.stdin?.write('l')
    const n = f.nodes[1]
    f.write(`nodes/${n.id}/load`, '12345\n')
    await p.waitFor(o => o.includes('| 123.45'), 'the new load')
    p.proc.stdin?.write('q')
    assert.equal(await exitCode(p), 0)
    assert.ok(p.output().endsWith('\x1b[?25h\x1b[?1049l'), `restores the terminal: ${JSON.stringify(p.output().slice(-40))}`)
  } finally {
    await stop(p)
    f.cleanup()
  }
})

test('mosmon under a pty: Ctrl-C restores the terminal; a resize redraws to the new width', { skip: noPty }, async () => {
  const f = makeTree({ count: 2 })
  const p = startMosmon(f, ['-u'])
  try {
    await p.waitFor(o => o.includes(TITLES.util), 'the util view')
    const m = findMosmon(p.proc.pid as number)
    assert.ok(m !== undefined && m.tty.startsWith('/dev/pts/'), `found the pty of mosmon: ${JSON.stringify(m)}`)
    assert.equal(spawnSync('stty', ['-F', m.tty, 'cols', '30', 'rows', '12']).status, 0, 'stty sets the pty size')
    // The kernel sends SIGWINCH; the footer is cut to the new width.
    await p.waitFor(o => o.includes(FOOTER.slice(0, 30) + '\x1b[K'), 'a 30-column frame')
    p.proc.stdin?.write('\x03')
    assert.equal(await exitCode(p), 130)
    assert.ok(p.output().endsWith('\x1b[?25h\x1b[?1049l'))
  } finally {
    await stop(p)
    f.cleanup()
  }
})

test('mosmon under a pty: survives the tree going away, restores the terminal on SIGTERM', { skip: noPty }, async () => {
  const f = makeTree({ count: 2 })
  const p = startMosmon(f)
  try {
    await p.waitFor(o => f.nodes.every(n => o.includes(`${n.id} |`)), 'the nodes')
    rmSync(join(f.root, 'admin', 'mospe'))
    await p.waitFor(o => o.includes(`no hpcfs tree at ${f.root} any more`), 'the missing-tree line')
    const m = findMosmon(p.proc.pid as number)
    assert.ok(m, 'found mosmon')
    process.kill(m.pid, 'SIGTERM')
    assert.equal(await exitCode(p), 143)
    assert.ok(p.output().endsWith('\x1b[?25h\x1b[?1049l'))
  } finally {
    await stop(p)
    f.cleanup()
  }
})

test('mosmon under a pty: a tree that stops answering is reported and q still works', { skip: noPty }, async () => {
  const f = makeTree({ count: 2 })
  const p = startMosmon(f)
  try {
    await p.waitFor(o => f.nodes.every(n => o.includes(`${n.id} |`)), 'the nodes')
    // A FIFO without a writer: reading it blocks, like a hung FUSE mount.
    const file = join(f.root, 'nodes', String(f.nodes[1].id), 'load')
    rmSync(file)
    assert.equal(spawnSync('mkfifo', [file]).status, 0)
    await p.waitFor(o => o.includes(`the tree at ${f.root} has not answered for`), 'the not-answering line')
    p.proc.stdin?.write('q')
    // It cannot wait for the stuck read: it says so and kills itself, after restoring the terminal.
    assert.equal(await exitCode(p), 128 + 9)
    assert.match(p.output(), /\x1b\[\?25h\x1b\[\?1049lmosmon: the tree at .* is not answering; exiting without waiting for it\r?\n$/)
  } finally {
    await stop(p)
    f.cleanup()
  }
})
