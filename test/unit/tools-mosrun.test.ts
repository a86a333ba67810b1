// mosrun against a plain directory laid out like the tree. HPCFS_TEST_MKPROC=1 makes mosrun create
// proc/<pid>/ (the real tree has it for every live pid).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { CLI_DIR, type Fixture } from './tools-fixture.js'
import { run, startTool, until, withProcTree } from './tools-proc-fixture.js'
import { applyHint, formatHints, parseHint, type DecayHint, type DecayHints } from '../../src/migrate/migrator.js'

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

test('-d and -t write the fine-tuned decay; they exclude -c -i -s -f -n and leave the lock', withProcTree({ count: 3 }, async f => {
  const perMille = Math.floor(Math.random() * 1001)
  const interval = 1 + Math.floor(Math.random() * 3600)
  for (const [args, want] of [[['-d', String(perMille)], `decay ${perMille}\n`], [[`-t${interval}`], `interval ${interval}\n`],
    [['-d', String(perMille), '-t', String(interval)], `interval ${interval}\n`]] as Array<[string[], string]>) {
    clearProc(f)
    const r = await mosrun(f, [...args, 'true'])
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`)
    // (a plain file keeps the last write; hpcd keeps both, see the parser test below)
    assert.equal(f.read(`proc/${onlyProc(f)}/decay`), want, args.join(' '))
    assert.equal(f.read(`proc/${onlyProc(f)}/lock`), '0\n', 'a decay option keeps the lock')
  }
  const marker = join(f.root, 'ran')
  for (const [args, err] of [[['-d', '1001'], /-d per-mille 1001 out of range 0\.\.1000/], [['-t', '0'], /-t interval 0 out of range 1\.\.3600/],
    [['-d', 'x'], /bad -d per-mille "x"/], [['-c', '-d', '5'], /-t and -d do not go with -c/], [['-t', '5', '-s'], /-t and -d do not go with/], [['-d'], /bad -d per-mille "touch"/]] as Array<[string[], RegExp]>) {
    clearProc(f)
    const r = await mosrun(f, [...args, 'touch', marker])
    assert.equal(r.status, 2, args.join(' '))
    assert.match(r.stderr, err, args.join(' '))
    assert.equal(existsSync(marker), false)
  }
}))

test('the tree\'s decay parser takes the words, "decay N" and "interval N", and shows them', () => {
  for (const w of ['clear', 'cpujob', 'iojob', 'slow', 'fast', 'decay 0', 'decay 1000', ' interval 3600\n', 'interval 1']) assert.notEqual(parseHint(w), undefined, w)
  for (const w of ['decay 1001', 'decay -1', 'interval 0', 'interval 3601', 'decay', 'decay 5 6', 'Slow', '']) assert.equal(parseHint(w), undefined, w)
  const d: DecayHints = { rate: 'slow', kind: '', cleared: 0 }
  applyHint(d, parseHint('decay 900') as DecayHint)
  applyHint(d, parseHint('interval 4') as DecayHint)
  applyHint(d, 'cpujob')
  assert.equal(formatHints(d), 'decay 900 interval 4 cpujob')
  applyHint(d, 'fast') // a rate name replaces its own per-mille
  assert.equal(formatHints(d), 'fast interval 4 cpujob')
})

test('a blocked node is refused before the command runs, unless -F; -j and -b skip blocked nodes', withProcTree({ count: 3 }, async f => {
  const [, b, c] = f.nodes.map(n => n.id)
  f.write(`nodes/${b}/status`, `${1 | 2 | 16}\n`)
  const marker = join(f.root, 'ran')
  let r = await mosrun(f, ['-N', String(b), 'touch', marker])
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `mosrun: node ${b} takes no guest processes (it is blocked) (use -F to run at home instead)\n`)
  assert.equal(existsSync(marker), false)
  r = await mosrun(f, ['-F', '-N', String(b), 'touch', marker])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(existsSync(marker), true)
  for (let k = 0; k < 4; k++) {
    clearProc(f)
    r = await mosrun(f, ['-j', `${b},${c}`, ...WAIT_GOTO])
    assert.equal(r.status, 0, r.stderr)
    assert.equal(f.read(`proc/${onlyProc(f)}/goto`), `${c}\n`)
  }
}))

test('a move refused after the start stops the command (exit 1, the reason), unless -F', withProcTree({ count: 3 }, async f => {
  const target = f.nodes[1].id
  const reason = `node ${target} refused: not enough memory (${Math.floor(Math.random() * 1e6)} MiB wanted)`
  // The command plays hpcd's answer: once goto is written, where stays 0 and error says why;
  // then it waits for the test's go (bounded).
  const refusedThenWait = ['sh', '-c', 'd=$HPC_ROOT/proc/$$; i=0; while [ ! -s $d/goto ]; do i=$((i+1)); [ $i -gt 1000 ] && exit 9; sleep 0.01; done; ' +
    'printf "%s\\n" "$0" > $d/error; i=0; while [ ! -e $HPC_ROOT/go ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 8; sleep 0.01; done; echo finished', reason]
  let r = await mosrun(f, ['-N', String(target), ...refusedThenWait])
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `mosrun: node ${target} refused the command: ${reason}; the command was stopped (use -F to run it at home instead)\n`)
  assert.equal(r.stdout, '')
  clearProc(f)
  const m = startTool('mosrun', ['-F', '-N', String(target), ...refusedThenWait], { root: f.root, env: TEST_ENV })
  await until(() => m.err().includes('running at home (-F)'), 'the note')
  f.write('go', '')
  r = await m.done
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout, 'finished\n')
  assert.equal(r.stderr, `mosrun: node ${target} refused the command: ${reason}: running at home (-F)\n`)
}))

test('an obstacle the exec keeps (another namespace) is refused before the command runs, unless -F', withProcTree({ count: 3 }, async f => {
  const target = f.nodes[2].id
  const marker = join(f.root, 'ran')
  const env = { ...TEST_ENV, HPCFS_TEST_CANTMOVE: 'fd 3 is an unnamed pipe (pipe:[1])\nprocess is in a different net namespace\n' }
  let r = await run('mosrun', ['-N', String(target), 'touch', marker], { root: f.root, env })
  assert.equal(r.status, 1)
  assert.equal(r.stderr, `mosrun: cannot run the command on node ${target}: process is in a different net namespace (run mosrun in the namespace of the hpcd that serves ${f.root}); the command was not started (use -F to run it at home instead)\n`)
  assert.equal(existsSync(marker), false)
  clearProc(f)
  r = await run('mosrun', ['-F', '-N', String(target), 'touch', marker], { root: f.root, env })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stderr, /process is in a different net namespace .*: running at home \(-F\)\n$/)
  assert.equal(existsSync(marker), true)
  assert.equal(f.read(`proc/${onlyProc(f)}/goto`), '', 'no goto')
  // a pipe of the held shell alone is no obstacle: the exec'd command does not have it
  clearProc(f)
  r = await run('mosrun', ['-N', String(target), ...WAIT_GOTO], { root: f.root, env: { ...TEST_ENV, HPCFS_TEST_CANTMOVE: 'fd 3 is an unnamed pipe (pipe:[1])\n' } })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read(`proc/${onlyProc(f)}/goto`), `${target}\n`)
}))

test('the wrappers: runon, runhome, nomig, cpujob, iojob, nodecay, slowdecay, fastdecay', withProcTree({ count: 3 }, async f => {
  const target = f.nodes[1].id
  // each name is a link to mosrun.js, as npm's "bin" makes them
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-wrappers-'))
  try {
    const as = async (name: string, args: string[]): ReturnType<typeof run> => {
      const link = join(dir, name)
      if (!existsSync(link)) symlinkSync(join(CLI_DIR, 'mosrun.js'), link)
      const r = spawnSync(process.execPath, [link, ...args], { env: { ...process.env, ...TEST_ENV, HPC_ROOT: f.root, DEBUG: '' }, encoding: 'utf8', timeout: 20000 })
      return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
    }
    let r = await as('runon', [String(target), ...WAIT_GOTO])
    assert.equal(r.status, 0, r.stderr)
    assert.equal(f.read(`proc/${onlyProc(f)}/goto`), `${target}\n`)
    assert.equal(f.read(`proc/${onlyProc(f)}/lock`), '1\n')
    for (const [name, lock, goto] of [['runhome', '1\n', ''], ['nomig', '1\n', '']]) {
      clearProc(f)
      r = await as(name, ['printf', '%s', '-x'])
      assert.equal(r.status, 0, `${name}: ${r.stderr}`)
      assert.equal(r.stdout, '-x', 'arguments of the command are its own')
      assert.equal(f.read(`proc/${onlyProc(f)}/lock`), lock, name)
      assert.equal(f.read(`proc/${onlyProc(f)}/goto`), goto, name)
    }
    for (const [name, hint] of [['cpujob', 'cpujob'], ['iojob', 'iojob'], ['nodecay', 'clear'], ['slowdecay', 'slow'], ['fastdecay', 'fast']]) {
      clearProc(f)
      r = await as(name, ['true'])
      assert.equal(r.status, 0, `${name}: ${r.stderr}`)
      assert.equal(f.read(`proc/${onlyProc(f)}/decay`), `${hint}\n`, name)
      assert.equal(f.read(`proc/${onlyProc(f)}/lock`), '0\n', `${name} keeps the lock`)
    }
    // the decay wrappers take -h or -ID first
    clearProc(f)
    r = await as('cpujob', [`-${target}`, ...WAIT_GOTO])
    assert.equal(r.status, 0, r.stderr)
    assert.equal(f.read(`proc/${onlyProc(f)}/goto`), `${target}\n`)
    assert.equal(f.read(`proc/${onlyProc(f)}/decay`), 'cpujob\n')
    // help and misuse in the wrapper's own words
    r = await as('runon', ['--help'])
    assert.equal(r.status, 0)
    assert.match(r.stdout, /^Usage: runon ID command/)
    for (const [name, args, err] of [['runon', [], /^runon: missing node id\nUsage: runon /], ['runon', ['x', 'true'], /^runon: bad node id "x"/],
      ['nomig', ['-z', 'a', 'true'], /^nomig: -z: setting argv\[0\] is not supported/], ['runhome', ['-L', 'true'], /^runhome: unknown option "-L"/],
      ['iojob', ['-q', 'true'], /^iojob: unknown option "-q"/], ['runhome', [], /^runhome: missing command/]] as Array<[string, string[], RegExp]>) {
      r = await as(name, args)
      assert.equal(r.status, 2, `${name} ${args.join(' ')}`)
      assert.match(r.stderr, err)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}))
