// A close or shutdown made away from home reaches home (docs/migrate.md, "Relayed descriptors",
// Ends): between real daemons in network namespaces, a writer moved to node 2 closes its stdout (or
// a relayed fd 3) while it runs on, and the reader at home sees the end of the pipe at once; a
// reader on node 2 closes its stdin, and the writer at home gets SIGPIPE; a TCP client moved to
// node 2 shuts its connection down for writing, the server at home sees the end and answers, the
// client reads the answer there and then closes its socket, which closes at home too. Every byte
// arrives once, in order; after each: the process moves on, ends well, no guest left anywhere.
// And the other way, a broken pipe: a writer on node 2 (yes on its stdout, a writer on a relayed fd
// 3) whose reader at home exits gets SIGPIPE there; one that ignores SIGPIPE gets EPIPE, and again
// after its node's daemon was restarted, after it moved on to node 3 and after it came home; a TCP
// client on node 2 whose server at home closes the connection gets EPIPE (or ECONNRESET) there.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { fifoSink } from '../helpers/fifo.js'

let lab: Lab
let bins: Bins
let launcher: string

const SCRIPTS: Record<string, string> = {
  // writes numbered lines on fd FD until STOP.go exists, then "last N", closes FD and runs on until STOP
  'closer.py': `import os, sys, time
stop, fd = sys.argv[1], int(sys.argv[2])
print('pid', os.getpid(), file=sys.stderr, flush=True)
i = 0
while not os.path.exists(stop + '.go'):
    os.write(fd, b'%d\\n' % i); i += 1; time.sleep(0.005)
os.write(fd, b'last %d\\n' % i)
os.close(fd)
while not os.path.exists(stop): time.sleep(0.01)
print('writer done', i, file=sys.stderr, flush=True)
`,
  // reads its stdin (slowly) until STOP.go exists, then closes it and runs on until STOP
  'reader.py': `import os, sys, time
stop = sys.argv[1]
print('pid', os.getpid(), flush=True)
n = 0
while not os.path.exists(stop + '.go'):
    if sys.stdin.readline() != 'y\\n': print('wrong', n, flush=True)
    n += 1
    time.sleep(0.001)
os.close(0)
print('closed its stdin after', n, 'lines', flush=True)
while not os.path.exists(stop): time.sleep(0.01)
`,
  // writes blocks on fd FD until EPIPE (mode sig: dies of SIGPIPE, as yes would), says so, and
  // again after each STOP.K file (K = 1, 2, ...) appears, until STOP
  'spew.py': `import os, signal, sys, time
stop, fd, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == 'sig': signal.signal(signal.SIGPIPE, signal.SIG_DFL)
print('pid', os.getpid(), file=sys.stderr, flush=True)
b = b'y\\n' * 512
def spew():
    n = 0
    while True:
        try: os.write(fd, b); n += 1
        except BrokenPipeError: return n
k = 0
while not os.path.exists(stop):
    print('round', k, 'EPIPE after', spew(), 'writes', file=sys.stderr, flush=True)
    k += 1
    while not os.path.exists(stop + '.' + str(k)) and not os.path.exists(stop): time.sleep(0.01)
print('writer done', file=sys.stderr, flush=True)
`,
  // reads lines of its stdin until STOP.go exists, then one more, and exits (head -1 after a while)
  'gate.py': `import os, sys
stop = sys.argv[1]
while not os.path.exists(stop + '.go'): sys.stdin.buffer.readline()
print('reader read', sys.stdin.buffer.readline().decode().strip(), flush=True)
`,
  // says it has started (STOP.started), writes nothing until STOP.go exists, then blocks of y
  // lines on its stdout for ever (SIGPIPE as yes has it: it dies of it)
  'late.py': `import os, signal, sys, time
stop = sys.argv[1]
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
print('pid', os.getpid(), file=sys.stderr, flush=True)
open(stop + '.started', 'w').close()
while not os.path.exists(stop + '.go'): time.sleep(0.01)
while True: os.write(1, b'y\\n' * 512)
`,
  // runs late.py on a terminal of its own (a pty), whose other end it closes once late.py runs:
  // a terminal hung up under a job, as when its window closed; then says how late.py ended
  'hungup.py': `import os, pty, subprocess, sys, time
stop = sys.argv[1]
m, s = pty.openpty()
p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(sys.argv[0]), 'late.py'), stop], stdout=s)
os.close(s)
while not os.path.exists(stop + '.started'): time.sleep(0.01)
os.close(m)
print('terminal hung up', file=sys.stderr, flush=True)
rc = p.wait()
print('writer ended', 128 - rc if rc < 0 else rc, file=sys.stderr, flush=True)
`,
  // once STOP.go exists, writes TOTAL bytes (a byte pattern of period 256) on fd FD (default 1),
  // saying after each 64 KiB how much it has written (in the file PROGRESS), then "flood done N"
  'flood.py': `import os, sys, time
stop, total, progress = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = int(sys.argv[4]) if len(sys.argv) > 4 else 1
print('pid', os.getpid(), file=sys.stderr, flush=True)
while not os.path.exists(stop + '.go'): time.sleep(0.01)
b = bytes(range(256)) * 256
n = 0
while n < total:
    v = memoryview(b)
    while len(v): v = v[os.write(fd, v):]
    n += len(b)
    with open(progress + '.tmp', 'w') as f: f.write(str(n))
    os.replace(progress + '.tmp', progress)
print('flood done', n, file=sys.stderr, flush=True)
`,
  // once STOP.go exists, a thread writes flood.py's pattern on stdout for ever (saying how much in
  // PROGRESS) while the main thread writes "tick N" on stderr every 20 ms, until STOP
  'twin.py': `import os, sys, threading, time
stop, progress = sys.argv[1], sys.argv[2]
print('pid', os.getpid(), file=sys.stderr, flush=True)
while not os.path.exists(stop + '.go'): time.sleep(0.01)
def flood():
    b = bytes(range(256)) * 256
    n = 0
    while True:
        v = memoryview(b)
        while len(v): v = v[os.write(1, v):]
        n += len(b)
        with open(progress + '.tmp', 'w') as f: f.write(str(n))
        os.replace(progress + '.tmp', progress)
threading.Thread(target=flood, daemon=True).start()
i = 0
while not os.path.exists(stop):
    os.write(2, b'tick %d\\n' % i); i += 1; time.sleep(0.02)
`,
  // reads nothing until STOP.read exists, then all of its stdin, checking flood.py's pattern
  'slow.py': `import os, sys, time
stop = sys.argv[1]
while not os.path.exists(stop + '.read'): time.sleep(0.01)
pat = bytes(range(256)) * 260
n, ok = 0, True
while True:
    d = sys.stdin.buffer.read(65536)
    if not d: break
    if d != pat[n % 256:n % 256 + len(d)]: ok = False
    n += len(d)
print('read', n, 'in order' if ok else 'WRONG', flush=True)
`,
  // once STOP.go exists, writes 256 KiB on its stdout at once and exits 3
  'burst.py': `import os, sys, time
stop = sys.argv[1]
print('pid', os.getpid(), file=sys.stderr, flush=True)
while not os.path.exists(stop + '.go'): time.sleep(0.01)
sys.stdout.buffer.write(b'z' * (256 << 10)); sys.stdout.flush()
sys.exit(3)
`,
  // reads one byte of its stdin, says so, and exits once STOP.read exists (the rest unread)
  'sip.py': `import os, sys, time
stop = sys.argv[1]
sys.stdin.buffer.read(1)
print('sipped', flush=True)
while not os.path.exists(stop + '.read'): time.sleep(0.01)
`,
  // a server at home and its child as a TCP client that sends lines until its send fails (SIGPIPE
  // ignored, as Python does), then runs on until STOP; the server reads until STOP.go, then closes
  'peer.py': `import os, socket, sys, time
stop = sys.argv[1]
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1); addr = srv.getsockname()
pid = os.fork()
if pid == 0:
    srv.close()
    c = socket.socket(); c.connect(addr)
    i = 0
    try:
        while True: c.sendall(b'%d\\n' % i); i += 1; time.sleep(0.002)
    except (BrokenPipeError, ConnectionResetError) as e:
        print('client', type(e).__name__, flush=True)
    while not os.path.exists(stop): time.sleep(0.01)
    os._exit(0)
print('pid', pid, flush=True)
conn, _ = srv.accept(); srv.close()
conn.settimeout(0.05)
while not os.path.exists(stop + '.go'):
    try: conn.recv(65536)
    except socket.timeout: pass
conn.close()
print('server closed', flush=True)
print('child', os.waitpid(pid, 0)[1], flush=True)
`,
  // a server at home and its child as a TCP client: the client sends numbered lines until STOP.go
  // exists, then "last N", shuts down for writing and reads the server's answer (sent once the
  // server saw the end), then runs on until STOP
  'shut.py': `import os, socket, sys, time
stop = sys.argv[1]
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1); addr = srv.getsockname()
pid = os.fork()
if pid == 0:
    srv.close()
    c = socket.socket(); c.connect(addr)
    i = 0
    while not os.path.exists(stop + '.go'):
        c.sendall(b'%d\\n' % i); i += 1; time.sleep(0.005)
    c.sendall(b'last %d\\n' % i)
    c.shutdown(socket.SHUT_WR)
    got = b''
    while True:
        d = c.recv(65536)
        if not d: break
        got += d
    print('client got', got.decode(), flush=True)
    while not os.path.exists(stop + '.close'): time.sleep(0.01)
    c.close()
    print('client closed', flush=True)
    while not os.path.exists(stop): time.sleep(0.01)
    os._exit(0)
print('pid', pid, flush=True)
conn, _ = srv.accept(); srv.close()
data = b''
while True:
    d = conn.recv(65536)
    if not d: break
    data += d
lines = data.decode().split('\\n')
n = len(lines) - 2
ok = lines[-1] == '' and lines[-2] == 'last %d' % n and all(lines[k] == str(k) for k in range(n))
print('server saw the end after', n, 'lines', 'in order' if ok else 'WRONG', flush=True)
conn.sendall(b'served %d' % n); conn.close()
print('child', os.waitpid(pid, 0)[1], flush=True)
`
}

before(async () => {
  bins = new Bins()
  launcher = bins.compile('launch')
  for (const [name, text] of Object.entries(SCRIPTS)) writeFileSync(join(bins.dir, name), text)
  lab = await Lab.create({ nodes: 3, tag: 'rcl', interval: 0.25, hpcdArgs: () => ['--down-after', '2', '--no-balance'], env: { DEBUG: process.env.RELAY_DEBUG ?? 'hpcfs:home,hpcfs:guest,hpcfs:relay' }, ...(process.env.RELAY_LOGS !== undefined ? { logDir: process.env.RELAY_LOGS } : {}) })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

interface Job { child: ChildProcess, out: () => string, stopFile: string, exited: Promise<number | null>, close: () => void }

/** `bash -c script` at node 1 (STOP in it: this job's stop file), stdout and stderr to a FIFO. */
function start (script: string, name: string): Job {
  const sink = fifoSink(bins.dir, `out-${name}`)
  const stopFile = join(bins.dir, `stop-${name}`)
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, 'bash', '-c', `set -o pipefail; ${script.replaceAll('STOP', stopFile)}`], { stdio: ['ignore', sink.fd, sink.fd], detached: true })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  return {
    child,
    out: sink.out,
    stopFile,
    exited,
    close: () => { if (child.exitCode === null && child.signalCode === null) { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} } sink.close() }
  }
}

const where = async (pid: number): Promise<string> => (await lab.node(1).read(`proc/${pid}/where`)).trim()

async function moveTo (pid: number, target: number | 'home'): Promise<void> {
  await lab.node(1).write(`proc/${pid}/goto`, `${target}\n`)
  const want = target === 'home' ? '0' : String(target)
  const err = await until(`process ${pid} at ${want}`, async () => {
    const w = await where(pid)
    if (w === want) return 'ok'
    const e = (await lab.node(1).read(`proc/${pid}/error`)).trim()
    return e && w !== 'migrating' ? e : undefined
  }, 20_000, 50)
  assert.equal(err, 'ok', `move of ${pid} to ${target} failed`)
}

const guests = (n: number): string[] => readdirSync(join(lab.node(n).mount, 'remote'))
const noGuests = async (): Promise<void> => { await until('no guest left on nodes 2 and 3', () => guests(2).length === 0 && guests(3).length === 0, 10_000) }
const pidOf = async (j: Job): Promise<number> => Number(await until('its pid', () => /^pid (\d+)$/m.exec(j.out())?.[1]))

/** The job's subject (it prints its pid) moved to node 2, then told to go on (its `.go` file); its pid. */
async function goAway (j: Job): Promise<number> {
  const pid = await pidOf(j)
  await moveTo(pid, 2)
  writeFileSync(`${j.stopFile}.go`, '')
  return pid
}
/** The byte count a writer (flood.py, twin.py) keeps in the file `path` (0 before it has one). */
const progressOf = (path: string) => (): number => { try { return Number(readFileSync(path, 'utf8')) } catch { return 0 } }

/**
 * Polls `written` every 100 ms until it has stayed the same (above 0) ten polls in a row: the
 * writer is held (blocked in its write); resolves with that count.
 */
async function heldAt (what: string, written: () => number): Promise<number> {
  let last = -1
  let same = 0
  await until(what, () => {
    const w = written()
    same = w > 0 && w === last ? same + 1 : 0
    last = w
    return same >= 10
  }, 30_000, 100)
  return last
}
const numbered = (j: Job): number => j.out().split('\n').filter(l => /^\d+$/.test(l)).length

for (const fd of [1, 3]) {
  const redirect = fd === 1 ? '' : '3>&1 >/dev/null'
  test(`a writer on node 2 closes its ${fd === 1 ? 'stdout' : 'relayed fd 3'} and runs on: the reader at home sees the end at once, every line once`, async () => {
    const job = start(`python3 ${join(bins.dir, 'closer.py')} STOP ${fd} ${redirect} | { cat; echo reader saw the end; }`, `close${fd}`)
    try {
      const pid = await pidOf(job)
      await until('lines', () => numbered(job) > 5)
      await moveTo(pid, 2)
      const seen = numbered(job)
      await until('lines from node 2', () => numbered(job) > seen + 5, 15_000)
      writeFileSync(`${job.stopFile}.go`, '')
      await until('the reader saw the end', () => job.out().includes('reader saw the end'), 15_000)
      assert.equal(await where(pid), '2', 'the writer still runs on node 2')
      assert.doesNotMatch(job.out(), /writer done/)
      // it moves on without the descriptor it closed, and ends well
      await moveTo(pid, 3)
      await moveTo(pid, 'home')
      writeFileSync(job.stopFile, '')
      assert.equal(await job.exited, 0, job.out())
      const n = Number(/^last (\d+)$/m.exec(job.out())?.[1])
      const lines = job.out().split('\n').filter(l => /^(\d+|last \d+|reader saw the end)$/.test(l))
      assert.deepEqual(lines, [...Array.from({ length: n }, (_, k) => String(k)), `last ${n}`, 'reader saw the end'], 'every line once, in order, then the end')
      assert.match(job.out(), new RegExp(`^writer done ${n}$`, 'm'))
      await noGuests()
    } finally { job.close() }
  })
}

test('a reader on node 2 closes its stdin (a pipe from yes at home) and runs on: yes gets SIGPIPE at once', async () => {
  const job = start(`(yes; echo "yes ended $?" >&2) | python3 ${join(bins.dir, 'reader.py')} STOP`, 'stdin')
  try {
    const pid = await goAway(job)
    await until('yes ended', () => /^yes ended (141|1)$/m.test(job.out()), 15_000)
    assert.match(job.out(), /^closed its stdin after \d+ lines$/m)
    assert.equal(await where(pid), '2', 'the reader still runs on node 2')
    await moveTo(pid, 'home')
    writeFileSync(job.stopFile, '')
    assert.equal(await job.exited, 0, job.out())
    assert.doesNotMatch(job.out(), /wrong/)
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a TCP client on node 2 shuts its connection down for writing: the server at home sees the end and answers; the client reads the answer there, then closes the socket there and at home', async () => {
  const job = start(`python3 ${join(bins.dir, 'shut.py')} STOP`, 'shut')
  try {
    const pid = await goAway(job)
    const m = await until('the server saw the end', () => /^server saw the end after (\d+) lines (in order|WRONG)$/m.exec(job.out()) ?? undefined, 15_000)
    assert.equal(m[2], 'in order', job.out())
    await until('the client read the answer', () => job.out().includes('client got'), 15_000)
    assert.match(job.out(), new RegExp(`^client got served ${m[1]}$`, 'm'))
    assert.equal(await where(pid), '2', 'the client still runs on node 2')
    // its socket, shut down, is still open at home (half closed) until it closes it there
    const socketAtHome = (): string => { try { return readlinkSync(`/proc/${pid}/fd/3`) } catch { return '' } }
    assert.match(socketAtHome(), /^socket:/)
    writeFileSync(`${job.stopFile}.close`, '')
    await until('the client closed its socket', () => job.out().includes('client closed'), 15_000)
    await until('the socket closed at home too', () => socketAtHome() === '', 15_000)
    assert.equal(await where(pid), '2')
    await moveTo(pid, 'home')
    writeFileSync(job.stopFile, '')
    assert.equal(await job.exited, 0, job.out())
    assert.match(job.out(), /^child 0$/m)
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

for (const fd of [1, 3]) {
  test(`${fd === 1 ? 'yes' : 'a writer on relayed fd 3'} on node 2, its reader at home exits: it gets SIGPIPE there at once, nothing left behind`, async () => {
    const w = fd === 1 ? 'sh -c \'echo pid $$ >&2; exec yes\'' : `python3 ${join(bins.dir, 'spew.py')} STOP 3 sig 3>&1 >/dev/null`
    const job = start(`{ ${w}; echo "writer ended $?" >&2; } | python3 ${join(bins.dir, 'gate.py')} STOP`, `broken${fd}`)
    try {
      const pid = await goAway(job)
      await until('the reader exits', () => /^reader read y$/m.test(job.out()), 15_000)
      // SIGPIPE: 128 + 13, its status as its parent at home sees it (the deputy ends the same way)
      await until('the writer ended', () => /^writer ended \d+$/m.test(job.out()), 15_000)
      assert.match(job.out(), /^writer ended 141$/m, job.out())
      assert.doesNotMatch(job.out(), /round 0/) // (spew.py: SIGPIPE, not EPIPE)
      assert.equal(await job.exited, 0, job.out())
      await noGuests()
      assert.throws(() => readlinkSync(`/proc/${pid}/exe`), 'nothing left of it at home')
    } catch (e) { console.log(job.out()); throw e } finally { job.close() }
  })
}

test('a writer that ignores SIGPIPE on node 2 gets EPIPE once its reader at home exits, again after a restart of node 2\'s daemon, after it moved on to node 3, and at home', async () => {
  const job = start(`python3 ${join(bins.dir, 'spew.py')} STOP 1 ign | python3 ${join(bins.dir, 'gate.py')} STOP`, 'epipe')
  try {
    const pid = await goAway(job)
    await until('EPIPE on node 2', () => /^round 0 EPIPE after \d+ writes$/m.test(job.out()), 15_000)
    assert.equal(await where(pid), '2')
    // its daemon killed and started again: the keeper's reader is gone too, the pipe stays broken
    const guest = Number(guests(2)[0])
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
    await lab.node(2).start()
    await lab.waitAllUp()
    await until('the guest adopted again', () => guests(2).includes(String(guest)), 15_000)
    writeFileSync(`${job.stopFile}.1`, '')
    await until('EPIPE on node 2 again', () => /^round 1 EPIPE after \d+ writes$/m.test(job.out()), 15_000)
    assert.match(job.out(), /^round 1 EPIPE after 0 writes$/m)
    await moveTo(pid, 3)
    writeFileSync(`${job.stopFile}.2`, '')
    await until('EPIPE on node 3', () => /^round 2 EPIPE after \d+ writes$/m.test(job.out()), 15_000)
    assert.equal(await where(pid), '3')
    await moveTo(pid, 'home')
    writeFileSync(`${job.stopFile}.3`, '')
    // at home the original's own pipe has no reader: its first write fails
    await until('EPIPE at home', () => /^round 3 EPIPE after \d+ writes$/m.test(job.out()), 15_000)
    assert.match(job.out(), /^round 3 EPIPE after 0 writes$/m)
    writeFileSync(job.stopFile, '')
    assert.equal(await job.exited, 0, job.out())
    assert.match(job.out(), /^writer done$/m)
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a TCP client on node 2 whose server at home closes the connection gets EPIPE there', async () => {
  const job = start(`python3 ${join(bins.dir, 'peer.py')} STOP`, 'peer')
  try {
    const pid = await goAway(job)
    await until('the server closed', () => job.out().includes('server closed'), 15_000)
    await until('the client\'s send failed', () => /^client (BrokenPipeError|ConnectionResetError)$/m.test(job.out()), 15_000)
    assert.equal(await where(pid), '2', 'the client still runs on node 2')
    await moveTo(pid, 'home')
    writeFileSync(job.stopFile, '')
    assert.equal(await job.exited, 0, job.out())
    assert.match(job.out(), /^child 0$/m)
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a writer whose terminal hung up before it moved (home cannot open it again: EIO) moves all the same; its output is broken there: it dies of SIGPIPE at its first write', async () => {
  const job = start(`python3 ${join(bins.dir, 'hungup.py')} STOP`, 'hungup')
  try {
    await until('the terminal hung up', () => job.out().includes('terminal hung up'), 15_000)
    await goAway(job) // (it waits until where reads 2: the writer may be gone at once after that)
    await until('the writer ended', () => /^writer ended \d+$/m.test(job.out()), 15_000)
    assert.match(job.out(), /^writer ended 141$/m, job.out())
    assert.equal(await job.exited, 0, job.out())
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a writer on node 2 whose reader at home does not read is held back there, in its write: its output does not pile up at home; all of it arrives, in order, once the reader reads', async () => {
  const total = 32 << 20
  const progress = join(bins.dir, 'flood-progress')
  const written = progressOf(progress)
  const job = start(`python3 ${join(bins.dir, 'flood.py')} STOP ${total} ${progress} | python3 ${join(bins.dir, 'slow.py')} STOP`, 'flood')
  try {
    await goAway(job)
    // held: it writes no more for a second (ten polls in a row), well short of all of it (home
    // acknowledges only what its reader has taken, and node 2 keeps at most 1 MiB of fd 1)
    const last = await heldAt('the writer held', written)
    assert.ok(last < 8 << 20, `it wrote ${last} bytes while nothing was read at home`)
    writeFileSync(`${job.stopFile}.read`, '')
    await until('all of it read', () => /^read \d+ /m.test(job.out()), 30_000)
    assert.match(job.out(), new RegExp(`^read ${total} in order$`, 'm'))
    assert.match(job.out(), new RegExp(`^flood done ${total}$`, 'm'))
    assert.equal(await job.exited, 0, job.out())
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a writer on node 2 ends while its output waits at home for a slow reader, which then exits: its end reaches its parent', async () => {
  const job = start(`python3 ${join(bins.dir, 'burst.py')} STOP | python3 ${join(bins.dir, 'sip.py')} STOP`, 'burst')
  try {
    await goAway(job)
    await until('the reader took a byte', () => job.out().includes('sipped'), 15_000)
    // it ended on node 2, and home heard it (its guest is gone) with most of its output unread
    await noGuests()
    writeFileSync(`${job.stopFile}.read`, '')
    const st = await Promise.race([job.exited, new Promise(resolve => setTimeout(() => resolve('hung'), 15_000))])
    assert.equal(st, 3, job.out())
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a process on node 2 writing two outputs, one read at home and one not: the one not read holds back its writer alone; the other flows on', async () => {
  const progress = join(bins.dir, 'twin-progress')
  const written = progressOf(progress)
  const ticks = (j: Job): number => j.out().split('\n').filter(l => /^tick \d+$/.test(l)).length
  const job = start(`python3 ${join(bins.dir, 'twin.py')} STOP ${progress} | python3 ${join(bins.dir, 'slow.py')} STOP`, 'twin')
  try {
    await goAway(job)
    const last = await heldAt('stdout held', written)
    assert.ok(last < 8 << 20, `it wrote ${last} bytes on stdout while nothing was read at home`)
    const seen = ticks(job)
    await until('stderr flows on while stdout is held', () => ticks(job) > seen + 20, 15_000)
    assert.equal(written(), last, 'stdout still held')
    writeFileSync(`${job.stopFile}.read`, '')
    await until('stdout flows again', () => written() > last, 15_000)
    writeFileSync(job.stopFile, '')
    await until('all of stdout read', () => /^read \d+ /m.test(job.out()), 30_000)
    assert.match(job.out(), /^read \d+ in order$/m)
    const lines = job.out().split('\n').filter(l => /^tick \d+$/.test(l))
    assert.deepEqual(lines, lines.map((_, k) => `tick ${k}`), 'every tick once, in order')
    assert.equal(await job.exited, 0, job.out())
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})

test('a guest held at the bound of a relayed fd that moves on to node 3 leaves nothing of that relay in node 2\'s daemon; all of its output arrives, in order', async () => {
  const total = 16 << 20
  const progress = join(bins.dir, 'flood3-progress')
  const written = progressOf(progress)
  const job = start(`python3 ${join(bins.dir, 'flood.py')} STOP ${total} ${progress} 3 3>&1 >/dev/null | python3 ${join(bins.dir, 'slow.py')} STOP`, 'flood3')
  try {
    const pid = await goAway(job)
    await heldAt('held at the bound of fd 3', written)
    const [guest] = guests(2)
    const pipe = readlinkSync(`/proc/${guest}/fd/3`)
    const daemon = lab.node(2).pid as number
    const holds = (): boolean => readdirSync(`/proc/${daemon}/fd`).some(f => { try { return readlinkSync(`/proc/${daemon}/fd/${f}`) === pipe } catch { return false } })
    assert.ok(holds(), `node 2's daemon reads fd 3 of the guest (${pipe})`)
    await moveTo(pid, 3)
    await until('node 2\'s daemon lets go of it', () => !holds(), 15_000)
    writeFileSync(`${job.stopFile}.read`, '')
    await until('all of it read', () => /^read \d+ /m.test(job.out()), 30_000)
    assert.match(job.out(), new RegExp(`^read ${total} in order$`, 'm'))
    assert.equal(await job.exited, 0, job.out())
    await noGuests()
  } catch (e) { console.log(job.out()); throw e } finally { job.close() }
})
