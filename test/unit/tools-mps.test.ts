// mps against a plain directory laid out like the tree, with real subject processes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cpuTime, readCommand, readProcStat, ttyName } from '../../src/cli/proc-common.js'
import { addProc, deadPid, run, withProcTree } from './tools-proc-fixture.js'

const HEADER = '  PID TTY      NODE STAT     TIME COMMAND'

interface Row { pid: number, tty: string, node: string, stat: string, time: string, command: string }

function rows (stdout: string): Row[] {
  const lines = stdout.split('\n')
  assert.equal(lines[0], HEADER)
  assert.equal(lines.at(-1), '')
  return lines.slice(1, -1).map(l => {
    // Columns are padded to ps's widths and grow when a value is wider (pids over 99999 on hosts
    // where pid_max is 4194304, as systemd sets it).
    const m = /^( *\d{1,7}) (\S+ *) ( *\S+) (\S+ *) ( *[\d:]+) (.*)$/.exec(l)
    assert.ok(m !== null, `row layout: ${JSON.stringify(l)}`)
    return { pid: Number(m[1]), tty: m[2].trim(), node: m[3].trim(), stat: m[4].trim(), time: m[5].trim(), command: m[6] }
  })
}

test('lists the processes in proc/ with NODE from where', withProcTree({ count: 3 }, async (f, s) => {
  const home = s.sleep()
  const away = s.sleep()
  const moving = s.sleep()
  const broken = s.sleep()
  const outside = s.sleep()
  const other = f.nodes[2].id
  addProc(f, home)
  addProc(f, away, { where: `${other}\n` })
  addProc(f, moving, { where: 'migrating\n' })
  addProc(f, broken)
  rmSync(join(f.root, 'proc', String(broken), 'where'))
  addProc(f, await deadPid()) // listed but gone: not shown
  const r = await run('mps', [], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  const got = rows(r.stdout)
  assert.deepEqual(got.map(x => x.pid), [home, away, moving, broken].sort((a, b) => a - b))
  const by = new Map(got.map(x => [x.pid, x]))
  assert.equal(by.get(home)?.node, '0')
  assert.equal(by.get(away)?.node, String(other))
  assert.equal(by.get(moving)?.node, 'mig')
  assert.equal(by.get(broken)?.node, '-1')
  for (const x of got) {
    assert.equal(x.command, 'sleep infinity')
    assert.equal(x.tty, '?')
    assert.match(x.stat, /^[SR]$/)
    assert.equal(x.time, '0:00')
  }
  assert.equal(by.has(outside), false)
}))

test('-a lists every process, NODE 0 outside cluster discipline; PIDs select', withProcTree({ count: 3 }, async (f, s) => {
  const away = s.sleep()
  const outside = s.sleep()
  const other = f.nodes[1].id
  addProc(f, away, { where: `${other}\n` })
  let r = await run('mps', ['-a'], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  let got = rows(r.stdout)
  const by = new Map(got.map(x => [x.pid, x]))
  assert.equal(by.get(away)?.node, String(other))
  assert.equal(by.get(outside)?.node, '0')
  assert.equal(by.get(outside)?.command, 'sleep infinity')
  assert.ok(by.has(process.pid), 'the test runner itself is listed')
  assert.ok(got.length > 5)
  // Kernel threads have no command line: [comm].
  if (by.has(2)) assert.match(by.get(2)?.command ?? '', /^\[.+\]$/)

  r = await run('mps', [String(outside), String(away)], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  got = rows(r.stdout)
  assert.deepEqual(got.map(x => [x.pid, x.node]), [[outside, '0'], [away, String(other)]])

  const dead = await deadPid()
  r = await run('mps', [String(dead)], { root: f.root })
  assert.equal(r.status, 1)
  assert.equal(r.stdout, HEADER + '\n')
}))

test('misuse and a missing tree', withProcTree({ count: 3 }, async f => {
  for (const args of [['-x'], ['12ab'], ['-a', '1']]) {
    const r = await run('mps', args, { root: f.root })
    assert.equal(r.status, 2, args.join(' '))
    assert.match(r.stderr, /^mps: .*\nUsage: mps /)
  }
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    const r = await run('mps', [], { root: empty })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /^mps: no hpcfs tree at /)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
  rmSync(join(f.root, 'proc'), { recursive: true })
  const r = await run('mps', [], { root: f.root })
  assert.equal(r.status, 1)
  assert.match(r.stderr, /^mps: cannot list .*\/proc: .*does this hpcd serve proc\/\?/)
}))

test('tty names, CPU time and /proc/PID/stat parsing', () => {
  assert.equal(ttyName(0), '?')
  assert.equal(ttyName((136 << 8) | 3), 'pts/3')
  assert.equal(ttyName((137 << 8) | 4), 'pts/260')
  assert.equal(ttyName((4 << 8) | 1), 'tty1')
  assert.equal(ttyName((4 << 8) | 65), 'ttyS1')
  assert.equal(ttyName((5 << 8) | 1), 'console')
  assert.equal(ttyName((180 << 8) | 1), '?')
  assert.equal(cpuTime(0), '0:00')
  assert.equal(cpuTime(6150), '1:01')
  assert.equal(cpuTime(100 * 3600 * 2), '120:00')
  // A newline or escape in an argument would break the listing: shown as ?, as ps does.
  const procfs = mkdtempSync(join(tmpdir(), 'hpcfs-procfs-'))
  try {
    mkdirSync(join(procfs, '7'))
    writeFileSync(join(procfs, '7', 'cmdline'), '/bin/sh\0-c\0sleep 60\0x\ny\x1b[2J\0')
    assert.equal(readCommand(7, 'sh', procfs), '/bin/sh -c sleep 60 x?y?[2J')
    assert.equal(readCommand(8, 'a\tb', procfs), '[a?b]')
  } finally { rmSync(procfs, { recursive: true, force: true }) }
  const me = readProcStat(process.pid)
  assert.ok(me !== undefined)
  assert.equal(me.pid, process.pid)
  assert.equal(me.ppid, process.ppid)
  assert.equal(me.state, 'R')
})
