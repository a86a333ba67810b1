// The pure parts of the load scopes (src/probe/cgroup.ts, src/probe/netns.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cpuGroupOf, cpuShareOf, runnableInGroup } from '../../src/probe/cgroup.js'
import { NetnsLoad, netnsOf } from '../../src/probe/netns.js'
import { readProcText, readUids, residentBytes, statState, statThreads, statusField } from '../../src/util/procfs.js'

test('the CPU group of a /proc/PID/cgroup text: v1 cpu controller, v2 unified, none at the root', () => {
  const v1 = '12:pids:/\n4:cpu,cpuacct:/hpcfs-bench/node1\n1:name=systemd:/\n0::/\n'
  const seen: string[] = []
  const exists = (p: string): boolean => { seen.push(p); return p === '/sys/fs/cgroup/cpu,cpuacct/hpcfs-bench/node1/tasks' }
  assert.deepEqual(cpuGroupOf(v1, '/sys/fs/cgroup', exists), { version: 1, dir: '/sys/fs/cgroup/cpu,cpuacct/hpcfs-bench/node1' })
  // separately mounted controllers (this machine: /sys/fs/cgroup/cpu)
  assert.deepEqual(cpuGroupOf('1:cpu:/g\n', '/c', p => p === '/c/cpu/g/tasks'), { version: 1, dir: '/c/cpu/g' })
  assert.equal(cpuGroupOf('1:cpu:/\n0::/\n', '/c', () => true), undefined, 'the root group is the machine')
  assert.deepEqual(cpuGroupOf('0::/system.slice/x\n', '/c', p => p === '/c/system.slice/x/cpu.max'), { version: 2, dir: '/c/system.slice/x' })
  assert.equal(cpuGroupOf('0::/x\n', '/c', () => false), undefined, 'no cpu controller in that v2 group')
  assert.equal(cpuGroupOf('garbage\n', '/c', () => true), undefined)
})

test('the CPU share: v1 quota/period, v2 cpu.max, unlimited', () => {
  const files = (m: Record<string, string>) => (p: string): string => { const k = p.split('/').pop() as string; if (!(k in m)) throw new Error(`no ${p}`); return m[k] }
  assert.equal(cpuShareOf({ version: 1, dir: '/g' }, files({ 'cpu.cfs_quota_us': '25000\n', 'cpu.cfs_period_us': '100000\n' })), 0.25)
  assert.equal(cpuShareOf({ version: 1, dir: '/g' }, files({ 'cpu.cfs_quota_us': '-1\n', 'cpu.cfs_period_us': '100000\n' })), undefined)
  assert.equal(cpuShareOf({ version: 2, dir: '/g' }, files({ 'cpu.max': '150000 100000\n' })), 1.5)
  assert.equal(cpuShareOf({ version: 2, dir: '/g' }, files({ 'cpu.max': 'max 100000\n' })), undefined)
})

test('the state letter of a stat line, whatever the command name holds', () => {
  assert.equal(statState('42 (sh) R 1 42 42 0 -1'), 'R')
  assert.equal(statState('42 (a) b) S 1 2'), 'S')
  assert.equal(statState('garbage'), '')
})

test('num_threads of a stat line; this process is in its own network namespace', () => {
  assert.equal(statThreads('42 (node) S 1 42 42 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 11 0 100'), 11)
  assert.equal(statThreads('42 (a) b) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100'), 1)
  assert.equal(statThreads(readFileSync('/proc/self/stat', 'latin1')) >= 1, true)
  assert.match(netnsOf('self'), /^net:\[\d+\]$/)
  assert.equal(netnsOf(process.pid), netnsOf('self'))
})

test('readProcText reads a file whole: a /proc file, one shorter than its buffer, one of exactly its size, a longer one; a missing one throws ENOENT', () => {
  assert.match(readProcText('/proc/self/status'), /^Name:\t/)
  assert.equal(statState(readProcText(`/proc/${process.pid}/stat`)), 'R') // (this thread, reading it)
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-proctext-'))
  try {
    for (const n of [0, 100, 4095, 4096, 4097, 100_000]) {
      const text = Array.from({ length: n }, (_, i) => String.fromCharCode(32 + (i * 7) % 95)).join('')
      writeFileSync(join(dir, 'f'), text, 'latin1')
      assert.equal(readProcText(join(dir, 'f')), text, `${n} bytes`)
    }
    assert.throws(() => readProcText(join(dir, 'none')), { code: 'ENOENT' })
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('NetnsLoad counts the runnable threads of its namespace only, and forgets pids that end', async () => {
  const { spawn } = await import('node:child_process')
  const mine = new NetnsLoad(netnsOf('self'))
  const other = new NetnsLoad('net:[1]') // no process is in such a namespace
  const busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' })
  try {
    let seen = 0
    for (let i = 0; i < 100 && seen < 1; i++) {
      seen = mine.runnable()
      if (seen < 1) await new Promise(resolve => setTimeout(resolve, 20))
    }
    assert.ok(seen >= 1, 'the busy loop is counted')
    assert.equal(other.runnable(), 0)
  } finally { busy.kill('SIGKILL') }
})

test('NetnsLoad sees a process that enters its namespace after it was first seen (nsenter), within recheckMs', () => {
  // A fixture /proc: pid 100 runs in namespace A; pid 200 starts in A and then setns()es into B.
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-netns-'))
  const proc = (pid: number, ns: string, state: string): void => {
    mkdirSync(join(root, String(pid), 'ns'), { recursive: true })
    try { unlinkSync(join(root, String(pid), 'ns', 'net')) } catch {}
    symlinkSync(ns, join(root, String(pid), 'ns', 'net'))
    writeFileSync(join(root, String(pid), 'stat'), `${pid} (job) ${state} 1 ${pid} ${pid} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n`)
  }
  try {
    let now = 0
    const b = new NetnsLoad('net:[B]', 1, root, 1000, () => now)
    proc(100, 'net:[A]', 'R')
    proc(200, 'net:[A]', 'R')
    assert.equal(b.runnable(), 0)
    proc(200, 'net:[B]', 'R') // setns: same pid, new namespace
    now = 999
    assert.equal(b.runnable(), 0, 'the verdict is kept for recheckMs')
    now = 1000
    assert.equal(b.runnable(), 1, 'then read again: pid 200 counts')
    proc(200, 'net:[B]', 'S')
    assert.equal(b.runnable(), 0, 'sleeping threads do not count')
    // A pid that leaves B (or ends and is reused outside it) stops counting after recheckMs too.
    proc(200, 'net:[A]', 'R')
    now = 2000
    assert.equal(b.runnable(), 0)
  } finally { rmSync(root, { recursive: true, force: true }) }
})

test('the daemon\'s own threads are not load: its FUSE, libuv and V8 threads in R count in neither scope', () => {
  // A fixture /proc: pid 50 is the daemon (three threads, all R), pid 60 a job (one thread, R).
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-self-'))
  const stat = (id: number, state: string, threads: number): string => `${id} (x) ${state} 1 ${id} ${id} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 ${threads} 0 100 0 0\n`
  try {
    for (const [pid, tids] of [[50, [50, 51, 52]], [60, [60]]] as Array<[number, number[]]>) {
      mkdirSync(join(root, String(pid), 'ns'), { recursive: true })
      symlinkSync('net:[B]', join(root, String(pid), 'ns', 'net'))
      writeFileSync(join(root, String(pid), 'stat'), stat(pid, 'R', tids.length))
      for (const t of tids) {
        mkdirSync(join(root, String(pid), 'task', String(t)), { recursive: true })
        writeFileSync(join(root, String(pid), 'task', String(t), 'stat'), stat(t, 'R', tids.length))
        // (/proc/TID/stat, which the cgroup scope reads: a real /proc has it, unlisted; here it is
        // listed, but with no ns/net, so the netns scope passes over it)
        if (t !== pid) { mkdirSync(join(root, String(t))); writeFileSync(join(root, String(t), 'stat'), stat(t, 'R', tids.length)) }
      }
    }
    assert.equal(new NetnsLoad('net:[B]', 50, root).runnable(), 1, 'netns: the job only')
    assert.equal(new NetnsLoad('net:[B]', 1, root).runnable(), 4, 'from another process, all four count')
    const group = join(root, 'group')
    mkdirSync(group)
    writeFileSync(join(group, 'tasks'), '50\n51\n52\n60\n')
    assert.equal(runnableInGroup({ version: 1, dir: group }, 50, root), 1, 'cgroup: the job only')
    assert.equal(runnableInGroup({ version: 1, dir: group }, 1, root), 4)
  } finally { rmSync(root, { recursive: true, force: true }) }
})

test('status fields: the first line, a later one, an absent one, a gone process; uids and VmRSS', () => {
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-status-'))
  try {
    mkdirSync(join(root, '7'))
    writeFileSync(join(root, '7', 'status'), 'Name:\tsh\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nVmRSS:\t   1234 kB\n')
    assert.equal(statusField(7, 'Name', root), 'sh')
    assert.equal(statusField(7, 'VmRSS', root), '1234 kB')
    assert.equal(statusField(7, 'Vm', root), undefined, 'a whole key, not a prefix')
    assert.equal(statusField(7, 'Gid', root), undefined)
    assert.equal(statusField(8, 'Name', root), undefined)
    assert.deepEqual(readUids(7, root), { real: 1000, effective: 1001 })
    assert.equal(readUids(8, root), undefined)
  } finally { rmSync(root, { recursive: true, force: true }) }
  assert.deepEqual(readUids('self'), { real: process.getuid?.(), effective: process.geteuid?.() })
  assert.ok(residentBytes(process.pid) > 1 << 20)
  assert.equal(residentBytes(2 ** 22 + 1), 0)
})
