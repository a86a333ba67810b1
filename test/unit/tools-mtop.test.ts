// mtop: the pure renderer and keys, batch frames against a plain directory laid out like the tree
// with real subject processes, and the interactive program under a pty (tools-pty.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyTopKey, FOOTER, HEADER, programName, renderTop, type TopRow, type TopState } from '../../src/cli/mtop-render.js'
import { makeTree } from './tools-fixture.js'
import { addProc, run, until, withProcTree } from './tools-proc-fixture.js'
import { exitCode, noPty, startPty, stop } from './tools-pty.js'
import { readProcStat } from '../../src/cli/proc-common.js'

function row (pid: number, over: Partial<TopRow> = {}): TopRow {
  return {
    pid, ppid: 1, uid: 0, user: 'root', tty: '?', node: 0, migrating: false, disciplined: false, state: 'S', ticks: 0, startTicks: 0,
    vsize: 4096 * 1024, rss: 1024 * 1024, command: `/usr/bin/prog${pid} --arg`, lock: null, nmigs: null, cpu: 0, mem: 0.1, ...over
  }
}

function state (rows: TopRow[], over: Partial<TopState> = {}): TopState {
  return { clock: '12:34:56', myId: 3, nodesUp: 2, nodesTotal: 4, myLoad: 42, clusterLoad: 110, rows, hideIdle: false, fullCommand: false, onlyCluster: false, secure: false, ...over }
}

test('renderTop: header, NODE column, most CPU first, program names or command lines', () => {
  const s = state([
    row(10, { cpu: 1.5 }),
    row(20, { cpu: 99.5, state: 'R', disciplined: true, node: 4, ticks: 72_700, user: 'averyverylongname' }),
    row(30, { disciplined: true, migrating: true, node: null }),
    row(5, { cpu: 1.5, command: '[kthreadd]' })
  ])
  const lines = renderTop(s, 200)
  assert.equal(lines[0], 'mtop - 12:34:56  node #3: load 0.42; cluster: 2 of 4 nodes up, load 1.10')
  assert.equal(lines[1], 'Tasks: 4 total, 1 running; 2 under cluster discipline, 2 away')
  assert.equal(lines[2], '')
  assert.equal(lines[3], HEADER)
  assert.deepEqual(lines.slice(4).map(l => Number(l.slice(0, 5))), [20, 5, 10, 30])
  assert.equal(lines[4], '   20 averyve+     4    4096   1024 R  99.5  0.1    12:07 prog20')
  assert.match(lines[7], /^ {3}30 root +mig /)
  assert.ok(lines[5].endsWith(' [kthreadd]'))
  assert.ok(renderTop({ ...s, fullCommand: true }, 200)[4].endsWith(' /usr/bin/prog20 --arg'))
  assert.equal(programName('/a/b/python3 x.py'), 'python3')
  assert.equal(programName('[kworker/0:1]'), '[kworker/0:1]')
  // i hides idle ones (no CPU and not running); m keeps the cluster's processes
  assert.deepEqual(renderTop({ ...s, hideIdle: true }, 200).slice(4).map(l => Number(l.slice(0, 5))), [20, 5, 10])
  assert.deepEqual(renderTop({ ...s, onlyCluster: true }, 200).slice(4).map(l => Number(l.slice(0, 5))), [20, 30])
  // an unreadable tree, unknown loads
  const bad = renderTop(state([], { error: 'cannot list /x/nodes', myLoad: null, clusterLoad: null }), 200)
  assert.match(bad[0], /load \?; .* load \?$/)
  assert.equal(bad[2], '(cannot list /x/nodes)')
})

test('renderTop fits a terminal: lines cut to the width, rows to the height with a "more" line and the keys', () => {
  const s = state(Array.from({ length: 50 }, (_, i) => row(100 + i, { cpu: 50 - i })))
  const lines = renderTop(s, 40, 12)
  assert.equal(lines.length, 12)
  assert.ok(lines.every(l => l.length <= 40))
  assert.equal(lines[10], '... 44 more')
  assert.equal(lines[11], FOOTER.slice(0, 40))
  assert.equal(renderTop({ ...s, secure: true }, 80, 12)[11], 'q)uit')
  // batch: every row, no key help
  assert.equal(renderTop(s, 0).length, 4 + 50)
})

test('keys: i, c, m toggle; q quits; secure mode ignores all but q', () => {
  const s = state([])
  const i = applyTopKey(s, 'i') as TopState
  assert.equal(i.hideIdle, true)
  assert.equal((applyTopKey(i, 'i') as TopState).hideIdle, false)
  assert.equal((applyTopKey(s, 'c') as TopState).fullCommand, true)
  assert.equal((applyTopKey(s, 'm') as TopState).onlyCluster, true)
  assert.equal(applyTopKey(s, 'x'), s)
  for (const q of ['q', 'Q', '\x03']) assert.equal(applyTopKey(s, q), 'quit')
  const secure = state([], { secure: true })
  assert.equal(applyTopKey(secure, 'i'), secure)
  assert.equal(applyTopKey(secure, 'q'), 'quit')
})

/** The rows of one batch frame: pid -> [node, %cpu, command]. */
function frameRows (frame: string): Map<number, { node: string, cpu: number, state: string, time: string, command: string }> {
  const lines = frame.split('\n')
  assert.match(lines[0], /^mtop - \d\d:\d\d:\d\d {2}node #\d+: load \d+\.\d\d; cluster: \d+ of \d+ nodes? up, load/)
  assert.equal(lines[3], HEADER)
  const out = new Map<number, { node: string, cpu: number, state: string, time: string, command: string }>()
  for (const l of lines.slice(4).filter(Boolean)) {
    const m = /^ *(\d+) (\S+) +(\S+) +(\d+) +(\d+) (\S) +([\d.]+) +([\d.]+) +([\d:]+) (.*)$/.exec(l)
    assert.ok(m !== null, `row layout: ${JSON.stringify(l)}`)
    out.set(Number(m[1]), { node: m[3], state: m[6], cpu: Number(m[7]), time: m[9], command: m[10] })
  }
  return out
}

test('batch frames: a busy process on top with its %CPU, a migrated one with its node and CPU time from the tree', withProcTree({ count: 3 }, async (f, s) => {
  const busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' })
  try {
    await until(() => readProcStat(busy.pid as number)?.state === 'R', 'the busy loop runs')
    const away = s.sleep()
    const other = f.nodes[1].id
    addProc(f, away, { where: `${other}\n`, stats: 'utime 12000 stime 345 state R rss 8192 vsize 16384\n', cmdline: 'python3 /data/render.py --frames 1-100\n' })
    const r = await run('mtop', ['-b', '-n', '2', '-d', '0.3', '-c'], { root: f.root })
    assert.equal(r.status, 0, r.stderr)
    const frames = r.stdout.split(/\n(?=mtop - )/)
    assert.equal(frames.length, 2, r.stdout.slice(0, 500))
    for (const frame of frames) {
      const rows = frameRows(frame)
      // > 0, not a share: on a loaded machine a busy loop may get little of a 0.3 s frame
      assert.ok((rows.get(busy.pid as number)?.cpu ?? 0) > 0, `the busy loop uses CPU: ${JSON.stringify(rows.get(busy.pid as number))}`)
      const a = rows.get(away)
      assert.deepEqual(a, { node: String(other), state: 'R', cpu: a?.cpu, time: '2:03', command: 'python3 /data/render.py --frames 1-100' })
      assert.match(frame.split('\n')[1], /1 under cluster discipline, 1 away$/)
    }
    // -m: only the processes under cluster discipline; program names without -c
    const m = await run('mtop', ['b', 'n', '1', 'm'], { root: f.root })
    assert.equal(m.status, 0, m.stderr)
    const only = frameRows(m.stdout)
    assert.deepEqual([...only.keys()], [away])
    assert.equal(only.get(away)?.command, 'python3')
  } finally { busy.kill('SIGKILL') }
}))

test('misuse prints usage and exits 2; no tree exits 1', withProcTree({ count: 2 }, async f => {
  for (const args of [['-d', '0'], ['-d', 'x'], ['-n', '0'], ['-n'], ['-z'], ['S'], ['--json']]) {
    const r = await run('mtop', args, { root: f.root })
    assert.equal(r.status, 2, args.join(' '))
    assert.match(r.stderr, /^mtop: .*\nUsage: mtop /, args.join(' '))
  }
  const h = await run('mtop', ['--help'], { root: f.root })
  assert.equal(h.status, 0)
  assert.match(h.stdout, /^Usage: mtop /)
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    const r = await run('mtop', ['-b', '-n', '1'], { root: empty })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /^mtop: no hpcfs tree at /)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
}))

test('mtop under a pty: the screen, a key, -n frames, q restores the terminal', { skip: noPty }, async () => {
  const f = makeTree({ count: 2 })
  // the header line directly followed by the key help (the pty turns \n into \r\n)
  const escape = (x: string): string => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const emptyList = new RegExp(`${escape(HEADER)}\x1b\\[K\r+\n${escape(FOOTER)}`)
  let p = startPty('mtop', f, ['-d', '0.3'])
  try {
    await p.waitFor(o => o.includes(HEADER) && o.includes(FOOTER) && !emptyList.test(o), 'the process list')
    assert.ok(p.output().startsWith('\x1b[?1049h'), 'alternate screen')
    p.proc.stdin?.write('m')
    // no process of this tree is under cluster discipline: the list empties
    await p.waitFor(o => emptyList.test(o), 'the empty list after m')
    p.proc.stdin?.write('q')
    assert.equal(await exitCode(p), 0)
    assert.ok(p.output().endsWith('\x1b[?25h\x1b[?1049l'), `restores the terminal: ${JSON.stringify(p.output().slice(-40))}`)
  } finally {
    await stop(p)
  }
  p = startPty('mtop', f, ['-n', '2', '-d', '0.2'])
  try {
    assert.equal(await exitCode(p), 0)
    assert.ok(p.output().includes(HEADER))
    assert.ok(p.output().endsWith('\x1b[?25h\x1b[?1049l'))
  } finally {
    await stop(p)
    f.cleanup()
  }
})
