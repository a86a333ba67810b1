// mps against a plain directory laid out like the tree, with real subject processes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cpuTime, readCommand, readProcStat, ttyName } from '../../src/cli/proc-common.js'
import { addProc, deadPid, run, until, withProcTree } from './tools-proc-fixture.js'

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
  for (const args of [['-z'], ['12ab'], ['-a', '1'], ['aux', '1'], ['x', '1'], ['u', '--json'], ['--jason'], ['auxq']]) {
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

const USER_HEADER = 'USER         PID %CPU %MEM    VSZ   RSS TTY      NODE STAT START   TIME COMMAND'

interface UserRow { user: string, pid: number, cpu: number, mem: number, vsz: number, rss: number, tty: string, node: string, stat: string, start: string, time: string, command: string }

function userRows (stdout: string): UserRow[] {
  const lines = stdout.split('\n')
  assert.equal(lines[0], USER_HEADER)
  return lines.slice(1, -1).map(l => {
    const m = /^(\S+) +(\d+) +([\d.]+) +([\d.]+) +(\d+) +(\d+) (\S+) +(\S+) (\S+) +(\S+) +([\d:]+) (.*)$/.exec(l)
    assert.ok(m !== null, `u row layout: ${JSON.stringify(l)}`)
    return { user: m[1], pid: Number(m[2]), cpu: Number(m[3]), mem: Number(m[4]), vsz: Number(m[5]), rss: Number(m[6]), tty: m[7], node: m[8], stat: m[9], start: m[10], time: m[11], command: m[12] }
  })
}

test('BSD arguments: aux, ax, u PID, x, a, r; the NODE column in every format', withProcTree({ count: 3 }, async (f, s) => {
  const away = s.sleep()
  const outside = s.sleep()
  const other = f.nodes[1].id
  addProc(f, away, { where: `${other}\n` })
  for (const args of [['aux'], ['-aux'], ['ax', 'u'], ['-e', 'u']]) {
    const r = await run('mps', args, { root: f.root })
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`)
    const by = new Map(userRows(r.stdout).map(x => [x.pid, x]))
    assert.equal(by.get(away)?.node, String(other), args.join(' '))
    assert.equal(by.get(outside)?.node, '0')
    assert.equal(by.get(outside)?.user, 'root')
    assert.equal(by.get(outside)?.command, 'sleep infinity')
    assert.ok((by.get(outside)?.rss ?? 0) > 0, 'RSS in KiB')
    assert.match(by.get(outside)?.start ?? '', /^\d\d:\d\d$/, 'started today: HH:MM')
    assert.ok(by.has(process.pid))
  }
  // ax without u: the default columns, every process
  let r = await run('mps', ['ax'], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  assert.ok(rows(r.stdout).some(x => x.pid === outside))
  // u with pids
  r = await run('mps', ['u', String(away)], { root: f.root })
  assert.deepEqual(userRows(r.stdout).map(x => [x.pid, x.node]), [[away, String(other)]])
  // x: my processes (with or without a terminal); a: processes with a terminal only
  r = await run('mps', ['x'], { root: f.root })
  const mine = rows(r.stdout)
  assert.ok(mine.some(x => x.pid === outside))
  r = await run('mps', ['a'], { root: f.root })
  assert.ok(rows(r.stdout).every(x => x.tty !== '?'), 'a: only processes with a terminal')
  // r: only running ones; this busy loop is one
  const busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' })
  try {
    await until(() => readProcStat(busy.pid as number)?.state === 'R', 'busy loop running')
    r = await run('mps', ['axr'], { root: f.root })
    const running = rows(r.stdout)
    assert.ok(running.every(x => x.stat === 'R'), r.stdout)
    assert.ok(running.some(x => x.pid === busy.pid) || readProcStat(busy.pid as number)?.state !== 'R')
    assert.ok(!running.some(x => x.pid === outside), 'a sleeping process is not running')
  } finally { busy.kill('SIGKILL') }
}))

test('a migrated process shows as it runs on its node: command line, state, memory and CPU time from the tree', withProcTree({ count: 3 }, async (f, s) => {
  const pid = s.sleep()
  const other = f.nodes[2].id
  const cpu = 1000 + Math.floor(Math.random() * 100000) // ticks on every node it ran on
  const rss = 4096 * (1 + Math.floor(Math.random() * 10000))
  addProc(f, pid, {
    where: `${other}\n`,
    lock: '1\n',
    nmigs: '3\n',
    stats: `utime ${cpu - 7} stime 7 state R rss ${rss} vsize ${rss * 3}\n`,
    cmdline: 'python3 -c while True: pass\n'
  })
  const time = `${Math.floor(cpu / 100 / 60)}:${String(Math.floor(cpu / 100) % 60).padStart(2, '0')}`
  let r = await run('mps', [], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(rows(r.stdout).map(x => [x.pid, x.node, x.stat, x.time, x.command]), [[pid, String(other), 'R', time, 'python3 -c while True: pass']])
  r = await run('mps', ['u', String(pid)], { root: f.root })
  const [u] = userRows(r.stdout)
  assert.equal(u.rss, Math.round(rss / 1024))
  assert.equal(u.vsz, Math.round(rss * 3 / 1024))
  assert.equal(u.time, time)
  // the percentage of the memory where it runs: nodes/<other>/tmem
  const tmem = f.nodes[2].tmem
  assert.equal(u.mem, Math.round(rss / tmem * 1000) / 10)

  r = await run('mps', ['--json', String(pid)], { root: f.root })
  assert.equal(r.status, 0, r.stderr)
  const [j] = JSON.parse(r.stdout) as Array<Record<string, unknown>>
  assert.deepEqual(Object.keys(j), ['pid', 'ppid', 'user', 'uid', 'tty', 'node', 'migrating', 'disciplined', 'state', 'cpuSeconds', 'cpuPercent',
    'memPercent', 'vsizeBytes', 'rssBytes', 'start', 'lock', 'nmigs', 'command'])
  assert.equal(j.pid, pid)
  assert.equal(j.node, other)
  assert.equal(j.migrating, false)
  assert.equal(j.disciplined, true)
  assert.equal(j.state, 'R')
  assert.equal(j.cpuSeconds, cpu / 100)
  assert.equal(j.rssBytes, rss)
  assert.equal(j.lock, 1)
  assert.equal(j.nmigs, 3)
  assert.equal(j.command, 'python3 -c while True: pass')
  assert.ok(Math.abs(Date.parse(String(j.start)) - Date.now()) < 120_000, `start ${String(j.start)}`)
  // in transit: node null, migrating true; outside discipline: node 0
  f.write(`proc/${pid}/where`, 'migrating\n')
  const outside = s.sleep()
  r = await run('mps', ['--json', String(pid), String(outside)], { root: f.root })
  const [moving, plain] = JSON.parse(r.stdout) as Array<Record<string, unknown>>
  assert.equal(moving.node, null)
  assert.equal(moving.migrating, true)
  assert.equal(plain.node, 0)
  assert.equal(plain.disciplined, false)
  assert.equal(plain.lock, null)
  assert.equal(plain.command, 'sleep infinity')
  // an empty result is an empty array (and exit 1 for pids that are gone)
  r = await run('mps', ['--json', String(await deadPid())], { root: f.root })
  assert.equal(r.status, 1)
  assert.deepEqual(JSON.parse(r.stdout), [])
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
