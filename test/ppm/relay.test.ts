// The engine's relayed descriptors (--relay, native/relay.c): a pipe whose other end another
// process holds and a connected TCP socket are no obstacle with --relay; the deputy reports them;
// a restore elsewhere puts a pipe end and a socketpair end at the same numbers with the same flags
// (a duplicate stays a duplicate) and hands out the other ends, through which bytes flow; the
// deputy closes (or shuts down) the original's descriptors when told (CLOSE); a listening socket
// still refuses the move with its reason.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readlinkSync, writeFileSync, openSync, closeSync, writeSync, constants as C } from 'node:fs'
import { Socket } from 'node:net'
import { check, deputy, restore, startDeputy } from '../../src/ppm/ppm.js'
import { Lab, waitFor, withGoWait } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

// fd 15: the read end of a pipe (O_NONBLOCK) whose write end its child holds; fd 17 a duplicate;
// fd 16: a TCP connection to the child. It copies what comes on fd 15 to fd 16; the child prints
// what it receives. With "listen": fd 15 is a listening socket instead.
const SUBJECT = `import os, select, socket, sys, time
if sys.argv[1] == 'listen':
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1); os.dup2(s.fileno(), 15)
    print('ready', flush=True); time.sleep(60); sys.exit(0)
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    c, _ = srv.accept()
    while True:
        b = c.recv(100)
        if not b: break
        print('child got', b.decode(), flush=True)
    os._exit(0)
os.close(w)
c = socket.create_connection(srv.getsockname()); srv.close()
os.dup2(r, 15); os.dup2(c.fileno(), 16); os.dup2(15, 17); os.close(r); c.close()
os.set_blocking(15, False)
print('ready', flush=True)
while True:
    select.select([15], [], [])
    try: b = os.read(15, 100)
    except BlockingIOError: continue
    if not b: break
    os.write(16, b)
`

const flags = (pid: number, fd: number): number => parseInt(/^flags:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '-1', 8)

test('a deputy started ahead reports each relayed descriptor once: GO in time, and GO late (the process let go meanwhile and read again)', async () => {
  const py = lab.path('subject-ahead.py')
  writeFileSync(py, SUBJECT)
  for (const wait of ['60000', '0']) {
    const s = lab.start('python3', [py, 'talk'])
    await waitFor(() => s.out.includes('ready'), 10_000, 'subject ready')
    const a = await withGoWait(wait, async () => await startDeputy(s.pid, lab.path(`ahead-${wait}.img`), { family: true, relay: true }))
    if (wait === '0') await waitFor(() => a.stats.go_late === '1', 5000, 'let go while the deputy waits')
    const kept = await a.go()
    assert.equal(kept.stats.go_read_ahead, wait === '0' ? undefined : '1')
    const d = lab.trackDeputy(await kept.hollow())
    assert.deepEqual(d.relayed, [{ fd: 15, dir: 'r', kind: 'pipe' }, { fd: 16, dir: 'rw', kind: 'sock' }])
  }
})

test('a pipe to another process and a TCP connection are relayed: same numbers, flags and duplicates elsewhere, bytes flow', async () => {
  const py = lab.path('subject.py')
  writeFileSync(py, SUBJECT)
  const s = lab.start('python3', [py, 'talk'])
  await waitFor(() => s.out.includes('ready'), 10_000, 'subject ready')
  const plain = (await check(s.pid, { family: true })).map(r => r.code)
  assert.ok(plain.includes('fd-pipe') && plain.includes('fd-socket'), plain.join(' '))
  assert.deepEqual(await check(s.pid, { family: true, relay: true }), [])
  const img = lab.path('relay.img')
  const d = lab.trackDeputy(await deputy(s.pid, img, { family: true, relay: true }))
  assert.deepEqual(d.relayed, [{ fd: 15, dir: 'r', kind: 'pipe' }, { fd: 16, dir: 'rw', kind: 'sock' }])
  const r = lab.track(await restore(img, { keepPid: false, family: true, hold: true, stdio: ['ignore', 'pipe', 'pipe'] }))
  assert.deepEqual(r.relays.map(e => [e.fd, e.read !== null, e.write !== null]).sort(), [[15, false, true], [16, true, true]])
  assert.equal(flags(r.pid, 15) & (3 | C.O_NONBLOCK), C.O_RDONLY | C.O_NONBLOCK, 'fd 15: a read end, non-blocking')
  assert.match(readlinkSync(`/proc/${r.pid}/fd/15`), /^pipe:/)
  assert.equal(readlinkSync(`/proc/${r.pid}/fd/17`), readlinkSync(`/proc/${r.pid}/fd/15`), 'fd 17 is still a duplicate of fd 15')
  assert.match(readlinkSync(`/proc/${r.pid}/fd/16`), /^socket:/)
  const e5 = r.relays.find(e => e.fd === 15) as typeof r.relays[0]
  const e6 = r.relays.find(e => e.fd === 16) as typeof r.relays[0]
  const input = openSync(e5.write as string, C.O_WRONLY | C.O_NONBLOCK)
  const output = new Socket({ fd: openSync(e6.read as string, C.O_RDONLY | C.O_NONBLOCK), readable: true, writable: false })
  let got = ''
  output.on('data', (b: Buffer) => { got += b.toString() })
  r.relayed()
  r.go()
  writeSync(input, 'over the relay')
  await waitFor(() => got === 'over the relay', 10_000, 'what it read on fd 15 and wrote on fd 16 comes out of the relay')
  closeSync(input) // the end of its input: it ends
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  output.destroy()
  // what the process did away from home is done at home too (docs/migrate.md "Relayed descriptors",
  // Ends): a shutdown of its socket for writing ends the peer's input (the child at home, the
  // original's child, then ends: a zombie of the hollow original); closes leave the original without
  // those fds (fd 17 stays: a duplicate the process did not close)
  const child = Number(readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').trim())
  assert.ok(child > 0)
  const state = (pid: number): string => { const st = readFileSync(`/proc/${pid}/stat`, 'utf8'); return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) }
  assert.notEqual(state(child), 'Z')
  await d.closeFd(16, true)
  await waitFor(() => state(child) === 'Z', 10_000, 'the peer at home saw the end of the stream')
  assert.match(readlinkSync(`/proc/${s.pid}/fd/16`), /^socket:/, 'shut down, not closed')
  await d.closeFd(16)
  await d.closeFd(15)
  assert.throws(() => readlinkSync(`/proc/${s.pid}/fd/16`), /ENOENT/)
  assert.throws(() => readlinkSync(`/proc/${s.pid}/fd/15`), /ENOENT/)
  assert.match(readlinkSync(`/proc/${s.pid}/fd/17`), /^pipe:/)
  assert.deepEqual(await d.exit(0), { code: 0, signal: null })
  await s.exited
})

test('a listening socket keeps its reason with --relay', async () => {
  const py = lab.path('subject.py')
  writeFileSync(py, SUBJECT)
  const s = lab.start('python3', [py, 'listen'])
  await waitFor(() => s.out.includes('ready'), 10_000, 'subject ready')
  const reasons = await check(s.pid, { relay: true })
  assert.ok(reasons.some(r => r.code === 'fd-socket' && /fd \d+ is a listening TCP\/IPv4 socket/.test(r.text)), JSON.stringify(reasons))
  s.child.kill('SIGKILL')
  await s.exited
})
