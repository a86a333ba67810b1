// Relayed descriptors between real daemons in network namespaces (docs/migrate.md, "Relayed
// descriptors"): a process whose pipes or stream sockets lead to processes at home moves
// home -> 2 -> 3 -> home while they talk, and every byte arrives once, in order: the middle stage
// of a pipeline, a child talking to its parent over pipes on fds 3 and 4, a worker sharing a
// jobserver pipe (both ends) with another, a client of a TCP server and of a unix-socket server at
// home; the same child while the daemon where it runs is killed and
// started again (its keeper holds the relay ends for the new daemon). A listening or datagram
// socket still keeps a process home, with its reason. After each: no guest left anywhere.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { fifoSink } from '../helpers/fifo.js'
import { moveTo as moveJob } from '../helpers/jobs.js'
import { readStat } from '../../src/util/procfs.js'
import { stdinWait, syscallLine } from '../../src/migrate/stdin.js'
import { unread } from '../../src/ppm/ppm.js'

let lab: Lab
let bins: Bins
let launcher: string

// Subjects. Each talks until its stop file exists, checks every answer, and says what it did.
const SCRIPTS: Record<string, string> = {
  // a | b | c: gen prints numbers until told to stop, then its count; square squares them
  'gen.py': `import os, sys, time
stop, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else -1
i = 0
while (n < 0 and not os.path.exists(stop)) or i < n:
    print(i, flush=True); i += 1
    if n < 0: time.sleep(0.005)
print('total', i, flush=True)
`,
  'square.py': `import os, sys
open(sys.argv[1], 'w').write(str(os.getpid()))
for line in sys.stdin:
    f = line.split()
    print(int(f[0]) ** 2 if len(f) == 1 else line.strip(), flush=True)
`,
  // a parent and its child over two pipes on the child's fds 3 and 4 (subprocess pass_fds)
  'talk.py': `import os, subprocess, sys, time
stop = sys.argv[1]
if len(sys.argv) > 2:
    r, w = os.fdopen(3, 'r'), os.fdopen(4, 'w')
    for line in r:
        w.write(str(int(line) * 2) + '\\n'); w.flush()
    sys.exit(7)
a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
def fds(): os.dup2(a_r, 3); os.dup2(b_w, 4)
p = subprocess.Popen([sys.executable, __file__, stop, 'child'], preexec_fn=fds, pass_fds=(3, 4))
os.close(a_r); os.close(b_w)
print('pid', p.pid, flush=True)
w, r = os.fdopen(a_w, 'w'), os.fdopen(b_r, 'r')
i = 0
paused = False
while not os.path.exists(stop):
    # STOP.pause: the parent stops talking after a whole round (nothing in flight) until it is removed
    if os.path.exists(stop + '.pause'):
        if not paused: print('paused', i, flush=True); paused = True
        time.sleep(0.005); continue
    paused = False
    w.write(f'{i}\\n'); w.flush()
    got = r.readline()
    if int(got) != 2 * i: print('wrong', i, repr(got), flush=True); sys.exit(1)
    i += 1
    if i % 50 == 0: print('rounds', i, flush=True)
    time.sleep(0.002)
w.close()
print('talked', i, 'child', p.wait(), flush=True)
`,
  // a server at home and its child as the client, over TCP or a unix socket
  'stream.py': `import os, socket, sys, time
stop, kind = sys.argv[1], sys.argv[2]
if kind == 'tcp':
    srv = socket.socket(); srv.bind(('127.0.0.1', 0)); addr = srv.getsockname()
else:
    addr = stop + '.sock'; srv = socket.socket(socket.AF_UNIX); srv.bind(addr)
srv.listen(1)
pid = os.fork()
if pid == 0:
    srv.close()
    c = socket.socket(srv.family); c.connect(addr)
    f = c.makefile('rw')
    i = 0
    while not os.path.exists(stop):
        f.write(f'{i}\\n'); f.flush()
        got = f.readline()
        if int(got) != 3 * i: print('wrong', i, repr(got), flush=True); os._exit(1)
        i += 1
        if i % 50 == 0: print('rounds', i, flush=True)
        time.sleep(0.002)
    c.shutdown(socket.SHUT_WR)
    print('client', i, repr(f.read()), flush=True)
    os._exit(0)
print('pid', pid, flush=True)
conn, _ = srv.accept(); srv.close()
f = conn.makefile('rw')
n = 0
for line in f:
    f.write(str(int(line) * 3) + '\\n'); f.flush(); n += 1
f.write('bye'); f.flush(); conn.shutdown(socket.SHUT_WR)
print('served', n, 'child', os.waitpid(pid, 0)[1], flush=True)
`,
  // a jobserver: 3 tokens in a pipe whose both ends every worker holds (as make hands them to a
  // recursive make); each worker takes a token, works, gives it back
  'tokens.py': `import os, sys, time
stop, tokens = sys.argv[1], 3
r, w = os.pipe()
os.write(w, b'+' * tokens)
pids = []
for k in range(2):
    pid = os.fork()
    if pid == 0:
        os.dup2(r, 10); os.dup2(w, 11); os.close(r); os.close(w)
        n = 0
        while not os.path.exists(stop):
            t = os.read(10, 1)
            time.sleep(0.002)
            os.write(11, t)
            n += 1
            if k == 0 and n % 50 == 0: print('rounds', n, flush=True)
        os._exit(0)
    pids.append(pid)
print('pid', pids[0], flush=True)
for p in pids: os.waitpid(p, 0)
os.set_blocking(r, False)
left = os.read(r, 100)
print('tokens left', len(left), left == b'+' * len(left), flush=True)
`,
  // sockets that cannot be relayed
  'listen.py': `import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[2] == 'tcp' else socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0))
if sys.argv[2] == 'tcp': s.listen(1)
print('pid', os.getpid(), flush=True)
while not os.path.exists(sys.argv[1]): time.sleep(0.05)
`
}

before(async () => {
  bins = new Bins()
  launcher = bins.compile('launch')
  for (const [name, text] of Object.entries(SCRIPTS)) writeFileSync(join(bins.dir, name), text)
  lab = await Lab.create({ nodes: 3, tag: 'rel', interval: 0.25, hpcdArgs: () => ['--down-after', '2', '--no-balance', '--link-timeout', '3', '--guest-lease', '3'], env: { DEBUG: process.env.RELAY_DEBUG ?? 'hpcfs:home,hpcfs:guest,hpcfs:relay' }, ...(process.env.RELAY_LOGS !== undefined ? { logDir: process.env.RELAY_LOGS } : {}) })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

interface Job { child: ChildProcess, out: () => string, stop: () => void, exited: Promise<number | null>, close: () => void }

/** Starts `argv` at node 1 (its namespace) with stdout and stderr to a FIFO; `stop()` makes its stop file. */
function start (argv: string[], name: string): Job {
  const sink = fifoSink(bins.dir, `out-${name}`)
  const stopFile = join(bins.dir, `stop-${name}`)
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, ...argv.map(a => a === 'STOP' ? stopFile : a)], { stdio: ['ignore', sink.fd, sink.fd], detached: true })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  return {
    child,
    out: sink.out,
    stop: () => writeFileSync(stopFile, ''),
    exited,
    close: () => { if (child.exitCode === null && child.signalCode === null) { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} } sink.close() }
  }
}

const where = async (pid: number): Promise<string> => (await lab.node(1).read(`proc/${pid}/where`)).trim()

/** Writes goto at node 1 and waits until the move is done (test/helpers/jobs.ts). */
const moveTo = async (pid: number, target: number | 'home'): Promise<void> => { await moveJob(lab, pid, target) }

/** Node 2's daemon killed (-9) and started again, heard by every node, its guest adopted again. */
async function restartNode2 (guest: number): Promise<void> {
  lab.node(2).kill('SIGKILL')
  await lab.node(2).waitExit()
  await lab.node(2).start()
  await lab.waitAllUp()
  await until('the guest adopted again', () => guests(2).includes(String(guest)), 15_000)
}

/** Moves pid home -> 2 -> 3 -> home; after each move the talk goes on (`progress` grows). */
async function tour (pid: number, progress: () => number): Promise<void> {
  for (const target of [2, 3, 'home'] as const) {
    await moveTo(pid, target)
    const seen = progress()
    await until(`talk goes on at ${target}`, () => progress() > seen + 1, 15_000)
  }
  assert.equal((await lab.node(1).read(`proc/${pid}/nmigs`)).trim(), '3')
}

const guests = (n: number): string[] => readdirSync(join(lab.node(n).mount, 'remote'))
const noGuests = async (): Promise<void> => { await until('no guest left on nodes 2 and 3', () => guests(2).length === 0 && guests(3).length === 0, 10_000) }

const pidOf = async (j: Job): Promise<number> => Number(await until('its pid', () => /^pid (\d+)$/m.exec(j.out())?.[1]))
const rounds = (j: Job) => (): number => Math.max(0, ...[...j.out().matchAll(/^rounds (\d+)$/gm)].map(m => Number(m[1])))

/**
 * python3 bins/<script> STOP ...args at home: waits for its first round, moves it (by default the
 * tour home -> 2 -> 3 -> home while it works), stops it, checks that it ended well and that no node
 * keeps a guest; returns its output.
 */
async function relayedRun (script: string, args: string[], tag: string, moves?: (pid: number, job: Job) => Promise<void>): Promise<string> {
  const job = start(['python3', join(bins.dir, script), 'STOP', ...args], tag)
  try {
    const pid = await pidOf(job)
    await until('its first round', () => rounds(job)() > 0)
    await (moves ?? (async (p: number) => { await tour(p, rounds(job)) }))(pid, job)
    job.stop()
    assert.equal(await job.exited, 0, job.out())
    await noGuests()
    return job.out()
  } finally { job.close() }
}

test('a | b | c: the middle stage moved home -> 2 -> 3 -> home gives the output of an undisturbed run', async () => {
  const pidFile = join(bins.dir, 'square.pid')
  const py = (s: string, ...a: string[]): string => `python3 ${join(bins.dir, s)} ${a.join(' ')}`
  const job = start(['bash', '-c', `${py('gen.py', 'STOPFILE')} | ${py('square.py', pidFile)} | cat`.replace('STOPFILE', join(bins.dir, 'stop-pipe'))], 'pipe')
  try {
    const pid = Number(await until('the middle stage', () => { try { return readFileSync(pidFile, 'utf8') || undefined } catch { return undefined } }))
    const lines = (): number => job.out().split('\n').length
    await until('output', () => lines() > 10)
    await tour(pid, lines)
    job.stop()
    assert.equal(await job.exited, 0)
    const total = Number(await until('the count', () => /^total (\d+)$/m.exec(job.out())?.[1]))
    assert.ok(total > 100, `it ran while it moved (${total} lines)`)
    await noGuests()
    const undisturbed = spawnSync('bash', ['-c', `${py('gen.py', '/nonexistent', String(total))} | ${py('square.py', '/dev/null')} | cat`], { encoding: 'utf8' }).stdout
    assert.equal(job.out(), undisturbed)
  } finally { job.close() }
})

test('a child talking to its parent over pipes on fds 3 and 4 moves home -> 2 -> 3 -> home; nothing lost or repeated', async () => {
  const out = await relayedRun('talk.py', [], 'talk')
  assert.match(out, /^talked \d+ child 7$/m)
  assert.doesNotMatch(out, /wrong/)
})

test('kill -9 of the daemon where a child on relayed pipes runs: the restarted daemon takes the relays up again', async () => {
  const pause = join(bins.dir, 'stop-restart.pause')
  const out = await relayedRun('talk.py', [], 'restart', async (pid, job) => {
    await moveTo(pid, 2)
    const guest = Number(guests(2)[0])
    writeFileSync(pause, '')
    await until('the talk paused between two rounds', () => /^paused \d+$/m.test(job.out()))
    await restartNode2(guest)
    rmSync(pause)
    const seen = rounds(job)()
    await until('talk goes on', () => rounds(job)() > seen + 1, 15_000)
    await moveTo(pid, 'home')
  })
  assert.match(out, /^talked \d+ child 7$/m)
  assert.doesNotMatch(out, /wrong/)
})

test('kill -9 of the daemon where a child runs, with a line home handed it still on the way: the line is handed again once the daemon is back, nothing lost or repeated', async () => {
  const out = await relayedRun('talk.py', [], 'inflight', async (pid, job) => {
    await moveTo(pid, 2)
    const guest = Number(guests(2)[0])
    const parent = Number(readStat(pid)?.[1] ?? 0) // (ppid of the child's original at home, the deputy)
    assert.ok(parent > 1)
    const waits = (p: number, fd: number): boolean => stdinWait(p, syscallLine(p), fd) !== null
    // The talk is paused between two rounds (nothing on its way), the child waits for the next line
    // (and has asked home for it), node 2's daemon is stopped, then the talk goes on: the parent's
    // line is read at home for the child's want and sent, and stays in node 2's socket; the child
    // cannot have had it. If home did not read it (the want had not come yet): again.
    const pause = join(bins.dir, 'stop-inflight.pause')
    const pauses = (): number => [...job.out().matchAll(/^paused \d+$/gm)].length
    let inFlight = false
    for (let attempt = 1; attempt <= 20 && !inFlight; attempt++) {
      const before = pauses()
      writeFileSync(pause, '')
      await until('the talk paused between two rounds', () => pauses() > before, 15_000)
      let seen = 0
      await until('the child waiting for its next line a while', () => { seen = waits(guest, 3) ? seen + 1 : 0; return seen >= 3 }, 15_000, 50)
      lab.node(2).kill('SIGSTOP')
      rmSync(pause)
      await until('the parent waits for its answer (in read)', () => syscallLine(parent).startsWith('0 '), 10_000, 20)
      inFlight = await until('its line read at home', async () => await unread(pid, 3) === 0, 1000, 20).then(() => true, () => false)
      if (!inFlight) lab.node(2).kill('SIGCONT')
    }
    assert.ok(inFlight, 'a line handed to node 2 and not in the child\'s pipe when its daemon dies')
    await restartNode2(guest)
    const seen = rounds(job)()
    await until('talk goes on', () => rounds(job)() > seen + 1, 15_000)
    await moveTo(pid, 'home')
  })
  assert.match(out, /^talked \d+ child 7$/m)
  assert.doesNotMatch(out, /wrong/)
})

test('a worker holding both ends of a jobserver pipe shared with another moves home -> 2 -> 3 -> home; no token lost or doubled', async () => {
  assert.match(await relayedRun('tokens.py', [], 'tokens'), /^tokens left 3 True$/m)
})

for (const kind of ['tcp', 'unix']) {
  test(`a ${kind} client of a server at home moves home -> 2 -> 3 -> home; the byte stream stays whole`, async () => {
    const out = await relayedRun('stream.py', [kind], kind)
    const c = /^client (\d+) 'bye'$/m.exec(out)
    const s = /^served (\d+) child 0$/m.exec(out)
    assert.ok(c !== null && s !== null, out)
    assert.equal(c[1], s[1], 'every line the client sent was served once')
    assert.doesNotMatch(out, /wrong/)
  })
}

test('a listening or a datagram socket keeps a process home, with its reason', async () => {
  for (const [kind, why] of [['tcp', /fd \d+ is a listening TCP\/IPv4 socket/], ['udp', /fd \d+ is a UDP datagram socket/]] as const) {
    const job = start(['python3', join(bins.dir, 'listen.py'), 'STOP', kind], `listen-${kind}`)
    try {
      const pid = await pidOf(job)
      await lab.node(1).write(`proc/${pid}/goto`, '2\n')
      const err = await until('the refusal', async () => (await lab.node(1).read(`proc/${pid}/error`)).trim() || undefined, 20_000, 50)
      assert.match(err, why)
      assert.equal(await where(pid), '0')
      job.stop()
      assert.equal(await job.exited, 0)
    } finally { job.close() }
  }
})
