// The tools against real hpcd trees: two daemons on loopback ports (src/lab) for the admin
// tools, and three in network namespaces for the per-process tools (a process really migrated);
// the tools are pointed at node 1's mount with HPC_ROOT.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Tree } from '../../src/cli/common.js'
import { CLI_DIR, runTool } from '../unit/tools-fixture.js'
import { Lab as Bins } from '../ppm/harness.js'
import { readProcStat } from '../../src/cli/proc-common.js'
import { until } from '../helpers/daemon.js'

const skip = existsSync('/dev/fuse') ? false : 'no /dev/fuse'
const skipNs = skip !== false ? skip : process.geteuid?.() !== 0 ? 'network namespaces need root' : false
let lab: Lab | undefined
let root = ''

const tool = (name: string, args: string[], input = ''): ReturnType<typeof runTool> => runTool(name, args, { root, input })

before(async () => {
  if (skip !== false) return
  lab = await Lab.create({ nodes: 2, tag: 'tools', netns: false, interval: 0.2, hpcdArgs: () => ['--no-balance'] })
  await lab.waitAllUp({ via: [1], timeoutMs: 30000 })
  root = lab.node(1).mount
})

after(async () => {
  await lab?.destroy()
})

test('mosctl status --json, showmap --json and setpe -r --json on the real tree', { skip }, () => {
  const st = JSON.parse(tool('mosctl', ['status', '--json']).stdout)
  assert.equal(st.id, 1)
  assert.equal(st.self, true)
  assert.equal(st.up, true)
  assert.equal(st.status & 3, 3)
  assert.equal(typeof st.load, 'number')
  assert.match(st.addr, /^127\.0\.0\.1:\d+$/)
  const two = JSON.parse(tool('mosctl', ['status', '2', '--json']).stdout)
  assert.equal(two.id, 2)
  assert.equal(two.self, false)
  assert.equal(two.up, true)
  assert.equal(tool('mosctl', ['status', '2']).stdout.split('\n')[0], 'Node #2 is up')
  assert.equal(tool('mosctl', ['status', '99']).stdout, 'Node #99 is not configured\n')
  const map = JSON.parse(tool('showmap', ['--json']).stdout)
  assert.equal(map.myId, 1)
  assert.deepEqual(map.map.map((l: { base: number }) => l.base), [1, 2])
  const nodes = JSON.parse(tool('setpe', ['-r', '--json']).stdout)
  assert.equal(nodes.myId, 1)
  assert.deepEqual(nodes.nodes.map((n: { id: number, address: string }) => [n.id, n.address]), [[1, '127.0.0.1'], [2, '127.0.0.1']])
  assert.equal(typeof nodes.nodes[1].port, 'number')
  // -r prints what -w takes: no comment lines
  assert.doesNotMatch(tool('setpe', ['-r']).stdout, /#/)
})

test('mosctl reads and sets through the real tree', { skip }, async () => {
  assert.equal(tool('mosctl', ['whois']).stdout, 'This is openMosix #1\n')
  assert.equal(tool('mosctl', ['isup', '2']).stdout, 'yes\n')
  assert.match(tool('mosctl', ['getload', '2']).stdout, /^-?\d+\n$/)
  assert.match(tool('mosctl', ['whois', '2']).stdout, /^openMosix #2 is at IP address 127\.0\.0\.1:\d+\n$/)

  assert.equal(tool('mosctl', ['setspeed', '23456']).status, 0)
  assert.equal(tool('mosctl', ['getspeed']).stdout, '23456\n')
  assert.equal(tool('mosctl', ['setdecay', '3', '950', '900']).status, 0)
  assert.match(tool('mosctl', ['getdecay']).stdout, /interval: 3 .*\n.*950 .*\n.*900 /)

  // hpcd refuses this one with EINVAL: the tool says so and the values stay.
  const r = tool('mosctl', ['setdecay', '999999', '1', '1'])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /admin\/decay-interval: invalid value \(EINVAL\)/)
  assert.match(tool('mosctl', ['getdecay']).stdout, /interval: 3 .*\n.*950 .*\n.*900 /)

  assert.equal(tool('mosctl', ['block']).status, 0)
  assert.match(tool('mosctl', ['status']).stdout, /block: +on/)
  // Node 2 hears about it by gossip.
  await until('node 2 to see node 1 blocked', () => /block: +on/.test(runTool('mosctl', ['status', '1'], { root: lab?.node(2).mount }).stdout), 20_000)
  assert.equal(tool('mosctl', ['noblock']).status, 0)
  assert.match(tool('mosctl', ['status']).stdout, /block: +off/)
})

test('a read-only file refuses the write with EACCES', { skip }, () => {
  assert.throws(() => new Tree(root).write('admin/version', 'x'), /admin\/version: permission denied \(EACCES\)/)
})

test('setpe, showmap and mosmon --once on the real tree', { skip }, async () => {
  const printed = tool('setpe', ['-r'])
  assert.equal(printed.status, 0)
  assert.match(printed.stdout, /^1 127\.0\.0\.1/m)
  assert.match(printed.stdout, /^2 127\.0\.0\.1:\d+ 1$/m)

  const map = tool('showmap', [])
  assert.equal(map.status, 0, map.stderr)
  assert.match(map.stdout, /^My Node-Id: 0x0001\n\nBase Node-Id Address +Count\n/)
  assert.match(map.stdout, /^0x0002 +127\.0\.0\.1:\d+ +1$/m)

  const lines = printed.stdout.split('\n').filter(l => /^\d/.test(l))
  const without1 = lines.filter(l => !l.startsWith('1 ')).join('\n') + '\n'
  const refused = tool('setpe', ['-w'], without1)
  assert.equal(refused.status, 1)
  assert.match(refused.stderr, /well-formatted, but my (IP address|openMosix-ID) .* is not there!/)
  assert.equal(tool('setpe', ['-r']).stdout, printed.stdout)

  const once = tool('mosmon', ['--once', '-t'])
  assert.equal(once.status, 0, once.stderr)
  assert.match(once.stdout, /^\* *1 \|/m)
  assert.match(once.stdout, /^ *2 \|/m)
  assert.match(once.stdout, /Total: 2 nodes, 2 up/)

  // Leave the cluster and come back.
  assert.equal(tool('setpe', ['-off']).status, 0)
  assert.equal(new Tree(root).read('admin/mospe'), '0')
  assert.match(tool('mosctl', ['status']).stdout, /not configured/)
  // Now the tool cannot tell its own id; hpcd still refuses a map without it.
  const refusedByHpcd = tool('setpe', ['-w'], without1)
  assert.equal(refusedByHpcd.status, 1)
  assert.match(refusedByHpcd.stderr, /admin\/config: invalid value \(EINVAL\); hpcd refused the map/)
  assert.equal(tool('setpe', ['-p', '1']).status, 0)
  assert.equal(tool('mosctl', ['whois']).stdout, 'This is openMosix #1\n')
})

// ---- the per-process tools on a process that really migrates (network namespaces) ------------

let ns: Lab | undefined
let bins: Bins | undefined
let counter = ''
let launcher = ''
const jobs: ChildProcess[] = []

/** The tools against node 1 of the namespaced lab, run from this (the root) namespace. */
const nsTool = (name: string, args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof runTool> =>
  runTool(name, args, { root: ns?.node(1).mount, env })


/** A CPU-bound job started in node 1's namespace (so node 1 may move it), this test its parent. */
function startJob (): number {
  const lab = ns as Lab
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, counter, '100000000', '1024', '0', '1'], { stdio: 'ignore' })
  jobs.push(child)
  return child.pid as number
}

const mpsJson = (pid: number): Record<string, unknown> => (JSON.parse(nsTool('mps', ['--json', String(pid)]).stdout) as Array<Record<string, unknown>>)[0]

test('per-process tools on a migrated process: mps and mtop show it as it runs there, migrate moves it or says why not', { skip: skipNs, timeout: 180_000 }, async (t) => {
  bins = new Bins()
  counter = bins.compile('counter')
  launcher = bins.compile('launch')
  ns = await Lab.create({ nodes: 3, tag: 'toolsns', interval: 0.25, hpcdArgs: () => ['--no-balance', '--down-after', '3'] })
  await ns.waitAllUp()
  const pid = startJob()
  await until('the job runs', () => readProcStat(pid)?.comm === 'counter', 20_000)
  await ns.node(1).write(`proc/${pid}/lock`, '1\n') // under cluster discipline

  await t.test('migrate PID N returns once it has arrived; mps shows the command line, state and CPU time there', async () => {
    const r = nsTool('migrate', [String(pid), '2'])
    assert.equal(r.status, 0, r.stderr)
    assert.equal((await ns?.node(1).read(`proc/${pid}/where`))?.trim(), '2', 'arrived when migrate returned')
    const line = nsTool('mps', []).stdout.split('\n').find(l => l.trim().startsWith(`${pid} `))
    assert.ok(line !== undefined)
    const f = line.trim().split(/\s+/)
    assert.equal(f[2], '2', 'NODE')
    assert.equal(f.slice(5).join(' '), `${counter} 100000000 1024 0 1`, 'its command line, not [counter]')
    // its CPU time where it runs: the deputy here uses none
    const deputy = readProcStat(pid)?.ticks ?? 0
    const j = await until('CPU time counted on node 2', () => { const x = mpsJson(pid); return Number(x.cpuSeconds) > deputy / 100 + 1 ? x : undefined }, 20_000)
    assert.equal(j.node, 2)
    assert.equal(j.disciplined, true)
    assert.equal(j.command, `${counter} 100000000 1024 0 1`)
    assert.ok(Number(j.rssBytes) > 1 << 20, `its memory there: ${String(j.rssBytes)}`)
    assert.ok((readProcStat(pid)?.ticks ?? 0) - deputy < 50, 'the deputy itself stays idle')
    const u = nsTool('mps', ['u', String(pid)])
    assert.match(u.stdout.split('\n')[1], new RegExp(`^root +${pid} +\\d+\\.\\d +\\d+\\.\\d +\\d+ +\\d+ \\S+ +2 [RS]`))
  })

  await t.test('mtop -b shows it on node 2 with the CPU it uses there', async () => {
    const frame = await until('mtop sees it busy', () => {
      const r = nsTool('mtop', ['-b', '-n', '1', '-d', '1', '-m', '-c'])
      const l = r.stdout.split('\n').find(x => x.trim().startsWith(`${pid} `))
      const f = l?.trim().split(/\s+/)
      return f !== undefined && f[2] === '2' && Number(f[6]) > 20 ? r.stdout : undefined
    }, 20_000)
    assert.match(frame, /1 under cluster discipline, 1 away/)
  })

  await t.test('the CPU time keeps counting across moves (2 -> 3 -> home)', async () => {
    let before = Number(mpsJson(pid).cpuSeconds)
    for (const target of ['3', 'home']) {
      const r = nsTool('migrate', [String(pid), target, '--wait', '30'])
      assert.equal(r.status, 0, `${target}: ${r.stderr}`)
      const j = mpsJson(pid)
      assert.equal(j.node, target === 'home' ? 0 : 3)
      assert.ok(Number(j.cpuSeconds) >= before, `${target}: ${String(j.cpuSeconds)} < ${before}`)
      assert.equal(j.command, `${counter} 100000000 1024 0 1`)
      before = Number(j.cpuSeconds)
    }
  })

  await t.test('a refused move: migrate prints the reason and exits 1 at once, with or without --wait', async () => {
    const status2 = (): number => Number(spawnSync('cat', [join(ns?.node(1).mount ?? '', 'nodes/2/status')], { encoding: 'utf8' }).stdout)
    await ns?.node(2).write('admin/block', '1\n')
    // node 1 hears of it by gossip: until it has, its view of node 2 is the one from before the
    // block, and a late copy of the blocked state could reach it after the unblock below
    await until('node 1 to see node 2 blocked', () => (status2() & 16) !== 0, 20_000)
    try {
      for (const wait of [[], ['--wait', '60']]) {
        const t0 = Date.now()
        const r = nsTool('migrate', [String(pid), '2', ...wait])
        assert.equal(r.status, 1, wait.join(' '))
        assert.match(r.stderr, new RegExp(`^migrate: process ${pid} was not moved to node 2: node 2 refused: this node is blocked \\(admin/block\\) \\(where: 0\\)\\n$`))
        assert.ok(Date.now() - t0 < 20_000, 'not after the whole wait')
      }
      assert.equal((await ns?.node(1).read(`proc/${pid}/where`))?.trim(), '0')
    } finally {
      await ns?.node(2).write('admin/block', '0\n')
      // node 1 hears of it by gossip
      // (up and unblocked: a node that reads as down shows no block bit, whatever it last said)
      await until('node 1 to see node 2 up and unblocked', () => (status2() & (16 | 2)) === 2, 20_000)
    }
  })

  await t.test('mosrun -N 2 outside node 1\'s namespace fails clearly and runs nothing, unless -F', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hpcfs-mosrun-ns-'))
    try {
      const marker = join(dir, 'ran')
      let r = nsTool('mosrun', ['-N', '2', 'touch', marker])
      assert.equal(r.status, 1)
      assert.match(r.stderr, /^mosrun: cannot run the command on node 2: process is in a different net namespace \(run mosrun in the namespace of the hpcd that serves .*\); the command was not started \(use -F/)
      assert.equal(existsSync(marker), false)
      // the same through the runon wrapper (a link named runon, as npm's bin makes it)
      const runon = join(dir, 'runon')
      symlinkSync(join(CLI_DIR, 'mosrun.js'), runon)
      const w = spawnSync(process.execPath, [runon, '2', 'touch', marker], { env: { ...process.env, HPC_ROOT: ns?.node(1).mount }, encoding: 'utf8', timeout: 20_000 })
      assert.equal(w.status, 1)
      assert.match(w.stderr, /^runon: cannot run the command on node 2: process is in a different net namespace/)
      assert.equal(existsSync(marker), false)
      r = nsTool('mosrun', ['-F', '-N', '2', 'touch', marker])
      assert.equal(r.status, 0, r.stderr)
      assert.match(r.stderr, /different net namespace.*: running at home \(-F\)\n$/)
      assert.equal(existsSync(marker), true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  await t.test('mosrun -d and -t reach proc/PID/decay through hpcd', async () => {
    const lab = ns as Lab
    const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, process.execPath, join(CLI_DIR, 'mosrun.js'), '-d', '900', '-t', '3', counter, '100000000', '64', '0', '1000'],
      { stdio: 'ignore', env: { ...process.env, HPC_ROOT: lab.node(1).mount } })
    jobs.push(child)
    const job = await until('mosrun\'s command under discipline', () => {
      const listed = spawnSync('ls', [join(lab.node(1).mount, 'proc')], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)
      return listed.find(p => p !== pid && readProcStat(p)?.comm === 'counter')
    }, 20_000)
    const decay = await until('the hints', () => { const d = spawnSync('cat', [join(lab.node(1).mount, `proc/${job}/decay`)], { encoding: 'utf8' }).stdout; return d === 'decay 900 interval 3\n' ? d : undefined }, 20_000)
    assert.equal(decay, 'decay 900 interval 3\n')
    process.kill(job, 'SIGKILL')
  })
})

after(async () => {
  for (const j of jobs) if (j.exitCode === null && j.signalCode === null) j.kill('SIGKILL')
  await ns?.destroy()
  bins?.cleanup()
})
