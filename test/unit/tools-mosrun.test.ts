// mosrun against a plain directory laid out like the tree. HPCFS_TEST_MKPROC=1 makes mosrun create
// proc/<pid>/ (the real tree has it for every live pid).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { CLI_DIR, type Fixture } from './tools-fixture.js'
import { run, startTool, until, withProcTree } from './tools-proc-fixture.js'

const TEST_ENV = { HPCFS_TEST_MKPROC: '1' }

const mosrun = async (f: Fixture, args: string[], input = ''): ReturnType<typeof run> =>
  await run('mosrun', args, { root: f.root, env: TEST_ENV, input })

/** The one pid mosrun put under discipline. */
function onlyProc (f: Fixture): string {
  const pids = readdirSync(join(f.root, 'proc'))
  assert.equal(pids.length, 1, `proc/ holds ${pids.join(' ')}`)
  return pids[0]
}

function clearProc (f: Fixture): void {
  for (const p of readdirSync(join(f.root, 'proc'))) rmSync(join(f.root, 'proc', p), { recursive: true })
}

/** A command that waits until mosrun has written its goto, then exits 0 (the tool's timeout ends it if it never comes). */
const WAIT_GOTO = ['sh', '-c', 'while [ ! -s "$HPC_ROOT/proc/$$/goto" ]; do sleep 0.01; done']

test('runs the command with stdin/stdout/stderr passed through and its exit status', withProcTree({ count: 3 }, async f => {
  const r = await mosrun(f, ['sh', '-c', 'read x; echo "out:$x"; echo "err:$x" >&2; exit 3'], 'hello\n')
  assert.equal(r.status, 3, r.stderr)
  assert.equal(r.stdout, 'out:hello\n')
  assert.equal(r.stderr, 'err:hello\n')
  const pid = onlyProc(f)
  // No location and no decay option: locked (mosrun(1) default); no goto.
  assert.equal(f.read(`proc/${pid}/lock`), '1\n')
  assert.equal(f.read(`proc/${pid}/goto`), '')
  // Exit 0 and arguments with spaces arrive untouched.
  clearProc(f)
  const ok = await mosrun(f, ['--', 'printf', '%s|', 'a b', '-h', ''])
  assert.equal(ok.status, 0, ok.stderr)
  assert.equal(ok.stdout, 'a b|-h||')
}))

test('death by a signal is passed on: the shell sees 143 for SIGTERM', withProcTree({ count: 3 }, async f => {
  const r = await mosrun(f, ['sh', '-c', 'kill -TERM $$'])
  assert.equal(r.status, null)
  assert.equal(r.signal, 'SIGTERM')
  const sh = spawnSync('sh', ['-c', `"${process.execPath}" "${join(CLI_DIR, 'mosrun.js')}" sh -c 'kill -TERM $$'; echo "status $?"`],
    { env: { ...process.env, ...TEST_ENV, HPC_ROOT: f.root }, encoding: 'utf8', timeout: 20000 })
  assert.equal(sh.stdout, 'status 143\n')
  const k = await mosrun(f, ['sh', '-c', 'kill -KILL $$'])
  assert.equal(k.signal, 'SIGKILL')
}))

test('forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 to the command', withProcTree({ count: 3 }, async f => {
  for (const sig of ['TERM', 'INT', 'HUP', 'QUIT', 'USR1', 'USR2']) {
    const m = startTool('mosrun', ['sh', '-c', `trap 'echo got-${sig}; exit 7' ${sig}; echo ready; while :; do sleep 0.01; done`],
      { root: f.root, env: TEST_ENV })
    await until(() => m.out().includes('ready'), `${sig}: command ready`)
    m.child.kill(`SIG${sig}` as NodeJS.Signals)
    const r = await m.done
    assert.equal(r.stdout, `ready\ngot-${sig}\n`, `${sig}: ${r.stderr}`)
    assert.equal(r.status, 7, sig)
    clearProc(f)
  }
}))

test('-L -N ID writes lock 1 and goto ID; -l, -k, -h and the node\'s own id', withProcTree({ count: 3 }, async f => {
  const target = f.nodes[1].id
  let r = await mosrun(f, ['-L', '-N', String(target), ...WAIT_GOTO])
  assert.equal(r.status, 0, r.stderr)
  let pid = onlyProc(f)
  assert.equal(f.read(`proc/${pid}/lock`), '1\n')
  assert.equal(f.read(`proc/${pid}/goto`), `${target}\n`)
  // openMosix spellings: -ID, -N attached; -l unlocks.
  for (const args of [[`-${target}`, '-l'], [`-N${target}`, '-l']]) {
    clearProc(f)
    r = await mosrun(f, [...args, ...WAIT_GOTO])
    assert.equal(r.status, 0, r.stderr)
    pid = onlyProc(f)
    assert.equal(f.read(`proc/${pid}/lock`), '0\n', args.join(' '))
    assert.equal(f.read(`proc/${pid}/goto`), `${target}\n`, args.join(' '))
  }
  // -h: locked at home, no goto; -N <this node>: the same.
  for (const args of [['-h'], ['-N', String(f.me)]]) {
    clearProc(f)
    r = await mosrun(f, [...args, 'true'])
    assert.equal(r.status, 0, r.stderr)
    pid = onlyProc(f)
    assert.equal(f.read(`proc/${pid}/lock`), '1\n', args.join(' '))
    assert.equal(f.read(`proc/${pid}/goto`), '', args.join(' '))
  }
  // -k keeps the lock as the tree shows it (written back, so the process is under discipline).
  clearProc(f)
  r = await mosrun(f, ['-k', 'true'])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read(`proc/${onlyProc(f)}/lock`), '0\n')
}))

test('-j picks a random node among the up ones only', withProcTree({ count: 5, down: [2, 4] }, async f => {
  const [, down1, up1, down2, up2] = f.nodes.map(n => n.id)
  const seen = new Set<string>()
  for (let k = 0; k < 12; k++) {
    clearProc(f)
    const r = await mosrun(f, ['-j', `${down1}-${up2}`, ...WAIT_GOTO])
    assert.equal(r.status, 0, r.stderr)
    const pid = onlyProc(f)
    assert.equal(f.read(`proc/${pid}/lock`), '1\n')
    seen.add(f.read(`proc/${pid}/goto`).trim())
  }
  assert.ok([...seen].every(g => g === String(up1) || g === String(up2)), `picked ${[...seen].join(',')}`)
  // Attached form with a list: only one up node in it.
  clearProc(f)
  const r = await mosrun(f, [`-j${down1},${up1},${down2}`, ...WAIT_GOTO])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read(`proc/${onlyProc(f)}/goto`), `${up1}\n`)
}))

test('-j with no up node fails without running the command, unless -F', withProcTree({ count: 4, down: [2, 4] }, async f => {
  const [, down1, , down2] = f.nodes.map(n => n.id)
  const marker = join(f.root, 'ran')
  let r = await mosrun(f, ['-j', `${down1},${down2}`, 'touch', marker])
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `mosrun: none of the nodes ${down1},${down2} is up (use -F to run at home instead)\n`)
  assert.equal(existsSync(marker), false)
  assert.deepEqual(readdirSync(join(f.root, 'proc')), [])
  r = await mosrun(f, ['-F', '-j', `${down1},${down2}`, 'touch', marker])
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stderr, /running at home \(-F\)/)
  assert.equal(existsSync(marker), true)
  assert.equal(f.read(`proc/${onlyProc(f)}/goto`), '')
}))

test('-b picks the least loaded up node', withProcTree({ count: 4, down: [4] }, async f => {
  const [me, a, b, down] = f.nodes.map(n => n.id)
  const set = (id: number, load: number, speed: number, cpus: number): void => {
    f.write(`nodes/${id}/load`, `${load}\n`)
    f.write(`nodes/${id}/speed`, `${speed}\n`)
    f.write(`nodes/${id}/cpus`, `${cpus}\n`)
  }
  set(me, 300, 10000, 1)
  set(a, 120, 10000, 1) // one more process adds 100: 220
  set(b, 150, 20000, 2) // one more process adds 25: 175 -> best
  set(down, 0, 90000, 64) // down: never chosen whatever it shows
  for (let k = 0; k < 4; k++) {
    clearProc(f)
    const r = await mosrun(f, ['-b', ...WAIT_GOTO])
    assert.equal(r.status, 0, r.stderr)
    const pid = onlyProc(f)
    assert.equal(f.read(`proc/${pid}/goto`), `${b}\n`)
    assert.equal(f.read(`proc/${pid}/lock`), '0\n', '-b leaves automatic migration on')
  }
  // Home is best: no goto.
  set(me, 0, 10000, 1)
  clearProc(f)
  const r = await mosrun(f, ['-b', 'true'])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read(`proc/${onlyProc(f)}/goto`), '')
}))

test('decay options write the hint to proc/PID/decay and keep the lock', withProcTree({ count: 3 }, async f => {
  const files: Record<string, string> = { '-c': 'cpujob', '-i': 'iojob', '-s': 'slow', '-f': 'fast', '-n': 'clear' }
  for (const [opt, file] of Object.entries(files)) {
    clearProc(f)
    const r = await mosrun(f, [opt, 'true'])
    assert.equal(r.status, 0, r.stderr)
    assert.equal(f.read(`proc/${onlyProc(f)}/decay`), `${file}\n`, opt)
    assert.equal(f.read(`proc/${onlyProc(f)}/lock`), '0\n', opt)
  }
}))

test('misuse and unavailable nodes are refused without running the command', withProcTree({ count: 3, down: [3] }, async f => {
  const marker = join(f.root, 'ran')
  const missing = Math.max(...f.nodes.map(n => n.id)) + 1
  const down = f.nodes[2].id
  const cases: Array<[args: string[], status: number, stderr: RegExp]> = [
    [[], 2, /^mosrun: missing command\nUsage: mosrun/],
    [['-L'], 2, /^mosrun: missing command\n/],
    [['-N'], 2, /^mosrun: -N needs a node id\n/],
    [['-N', 'x', 'touch', marker], 2, /^mosrun: bad node id "x"/],
    [['-N', '0', 'touch', marker], 2, /^mosrun: node id 0 out of range/],
    [['-j', '3-1', 'touch', marker], 2, /^mosrun: bad range "3-1"/],
    [['-j', '1,,2', 'touch', marker], 2, /^mosrun: bad node list "1,,2"/],
    [['-N', '2', '-j', '3', 'touch', marker], 2, /only one of -h, -N, -ID, -j and -b/],
    [['-l', '-L', 'touch', marker], 2, /only one of -l, -L and -k/],
    [['-c', '-s', 'touch', marker], 2, /only one of -c, -i, -s, -f and -n/],
    [['-z', 'touch', marker], 2, /^mosrun: -z: setting argv\[0\] is not supported/],
    [['-x', 'touch', marker], 2, /^mosrun: unknown option "-x"/],
    [['-N', String(missing), 'touch', marker], 1, new RegExp(`^mosrun: no node ${missing} in the cluster \\(use -F`)],
    [['-N', String(down), 'touch', marker], 1, new RegExp(`^mosrun: node ${down} is down \\(use -F`)],
    [['no-such-command-hpcfs'], 127, /^mosrun: no-such-command-hpcfs: command not found\n$/],
    [[join(f.root, 'admin', 'mospe')], 126, /not an executable file/]
  ]
  for (const [args, status, stderr] of cases) {
    const r = await mosrun(f, args)
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, stderr, args.join(' '))
    assert.equal(existsSync(marker), false, `${args.join(' ')} ran the command`)
    assert.deepEqual(readdirSync(join(f.root, 'proc')), [], args.join(' '))
  }
  // --help on stdout, exit 0; -h is "home", not help.
  const h = await mosrun(f, ['--help'])
  assert.equal(h.status, 0)
  assert.match(h.stdout, /^Usage: mosrun /)
}))

test('no tree, no proc/, or a refused lock: clear error and the command does not run', withProcTree({ count: 3 }, async f => {
  const marker = join(f.root, 'ran')
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    const r = await run('mosrun', ['touch', marker], { root: empty, env: TEST_ENV })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /^mosrun: no hpcfs tree at /)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
  // Without the test hook the plain directory has no proc/<pid>/lock: the write is refused.
  let r = await run('mosrun', ['touch', marker], { root: f.root })
  assert.equal(r.status, 1)
  assert.match(r.stderr, /^mosrun: cannot write "1" to .*\/proc\/\d+\/lock: no such file \(ENOENT\); the command was not started\n$/)
  assert.equal(existsSync(marker), false)
  rmSync(join(f.root, 'proc'), { recursive: true })
  r = await mosrun(f, ['touch', marker])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /proc is missing: this hpcd does not serve per-process files/)
  assert.equal(existsSync(marker), false)
}))
