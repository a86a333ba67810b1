// Pages sent by the process (docs/ppm.md "Pages sent by the process"): a dump into a socket has the
// stopped process send runs of its own memory into the connection (native/gsend.c). The restored
// process computes on to the same results as an uninterrupted run; the descriptor it was lent is
// gone again, also when the dump fails, and it is not dumpable meanwhile; a process that cannot
// take it (one descriptor free: the unix socket it is sent on takes it), one that shares its
// descriptor table with its parent, a stream that is not TCP and HPC_PPM_SEND=copy take the old
// path.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { deputy, dump, restore, socketFd } from '../../src/ppm/ppm.js'
import { Lab, lines, reference, tcpPair, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

const quiet = ['ignore', 'ignore', 'ignore'] as ['ignore', 'ignore', 'ignore']

/** fd number -> what it refers to, of a live process */
function fds (pid: number): Record<string, string> {
  const out: Record<string, string> = {}
  for (const n of readdirSync(`/proc/${pid}/fd`)) {
    try { out[n] = readlinkSync(`/proc/${pid}/fd/${n}`) } catch { /* closed meanwhile */ }
  }
  return out
}

test('a 64 MB walker of 4 threads sends its own pages into the connection, twice (out and back home), and finishes identically', async () => {
  const bin = lab.compile('walker')
  const args = ['64', '10', '60000', '5', '4']	// 4 threads, each walking its slice
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 20000, 'walker output')
  const before = fds(s.pid)
  // out: the deputy dumps the original into a socket and keeps it, hollow
  const p1 = await tcpPair()
  const r1p = restore(socketFd(p1.b), { keepPid: false, stdio: quiet, stdioFrom: s.pid, stallMs: 20_000 })
  const dep = lab.trackDeputy(await deputy(s.pid, socketFd(p1.a), { stallMs: 20_000 }))
  const r1 = lab.track(await r1p)
  p1.close()
  assert.ok(Number(dep.dump.stats.gsend_pages) >= 64 * 256 * 0.95, `pages the original wrote itself: ${dep.dump.stats.gsend_pages}`)
  assert.ok(Number(dep.dump.stats.gsend_calls) >= 64, `its write calls: ${dep.dump.stats.gsend_calls}`)
  assert.deepEqual(fds(r1.pid), before, 'the copy has the descriptors of the original, no more')
  await waitFor(() => lines(s.out) >= 5, 30000, 'output of the copy')
  // back home: the copy dumps itself into a socket, the deputy restores the original from it
  const p2 = await tcpPair()
  const homep = dep.restoreFromFd(process.pid, socketFd(p2.b), async () => {})
  const d = await dump(r1.pid, socketFd(p2.a), { stallMs: 20_000 })
  const home = await homep
  p2.close()
  assert.ok(Number(d.stats.gsend_pages) >= 64 * 256 * 0.95, `pages the copy wrote itself: ${d.stats.gsend_pages}`)
  assert.ok(home.restoreMs > 0)
  assert.deepEqual(fds(s.pid), before, 'home with its own descriptors, no more')
  assert.deepEqual(await s.exited, { code: 5, signal: null })
  assert.equal(s.out, ref.out)
})

test('HPC_PPM_SEND=guest on a mix of mappings: private data behind PROT_NONE goes the old way, the rest by the process', async () => {
  const bin = lab.compile('mapmix')
  const mk = (n: string): string => { const p = lab.path(n); writeFileSync(p, Buffer.alloc(65536, 0x11)); return p }
  const [rs, rp, ss, sp] = [mk('gs-rs'), mk('gs-rp'), mk('gs-ss'), mk('gs-sp')]
  const args = ['30', '50000', '4']
  const ref = reference(bin, [rs, rp, ...args])
  const s = lab.start(bin, [ss, sp, ...args], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 10000, 'output')
  const guest = async <T>(f: () => Promise<T>): Promise<T> => {
    process.env.HPC_PPM_SEND = 'guest'
    try { return await f() } finally { delete process.env.HPC_PPM_SEND }
  }
  const p1 = await tcpPair()
  const rp1 = restore(socketFd(p1.b), { keepPid: false, stdio: quiet, stdioFrom: s.pid, stallMs: 20_000 })
  const dep = lab.trackDeputy(await guest(async () => await deputy(s.pid, socketFd(p1.a), { stallMs: 20_000 })))
  const r = lab.track(await rp1)
  p1.close()
  // the 1 MiB shared region by the process; the 64 KiB behind PROT_NONE, and short runs, not
  const st = dep.dump.stats
  assert.ok(Number(st.gsend_pages) >= 256, `pages written by the process: ${st.gsend_pages}`)
  assert.ok(Number(st.gsend_pages) <= Number(st.pages) - 16, `not every page (${st.gsend_pages} of ${st.pages})`)
  await waitFor(() => lines(s.out) >= 6, 20000, 'output of the copy')
  const p2 = await tcpPair()
  const homep = dep.restoreFromFd(process.pid, socketFd(p2.b), async () => {})
  const d = await guest(async () => await dump(r.pid, socketFd(p2.a), { stallMs: 20_000 }))
  await homep
  p2.close()
  assert.ok(Number(d.stats.gsend_pages) >= 256, `pages the copy wrote: ${d.stats.gsend_pages}`)
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
})

test('a dump into a connection nobody reads fails within its stall bound; meanwhile the process is not dumpable (no process of its user can take the descriptor), and afterwards it has the descriptors and the owner it had', async () => {
  const bin = lab.compile('counter')
  chmodSync(lab.dir, 0o755)
  // 32 MiB: more than the socket buffers hold; as nobody, so that /proc/PID shows its dumpability
  const s = lab.start('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', bin, '1000000', '32768', '0', '20000'], ['ignore', 'pipe', 'pipe'], '/')
  await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
  const owner = (): number => statSync(`/proc/${s.pid}/fd`).uid
  const before = fds(s.pid)
  assert.equal(owner(), 65534)
  const { a, close } = await tcpPair()
  try {
    const failed = assert.rejects(dump(s.pid, socketFd(a), { stallMs: 3000 }), /made no progress for 3000 ms/)
    await waitFor(() => Object.keys(fds(s.pid)).length === Object.keys(before).length + 1, 3000, 'the descriptor lent to the process')
    assert.equal(owner(), 0, 'not dumpable while it holds it: /proc/PID is root\'s')
    await failed
    assert.deepEqual(fds(s.pid), before, 'the descriptor it was lent is closed again')
    assert.equal(owner(), 65534, 'dumpable again')
    const n = lines(s.out)
    await waitFor(() => lines(s.out) > n, 10_000, 'the counter going on after the failed dump')
  } finally { close() }
})

test('a connection that breaks while the process sends its pages: the dump fails, the process runs on (no SIGPIPE) with its descriptors', async () => {
  const bin = lab.compile('counter')
  const s = lab.start(bin, ['1000000', '65536', '0', '20000'])	// 64 MiB
  await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
  const before = fds(s.pid)
  let got = 0
  const { a, b, close } = await tcpPair()
  a.on('error', () => {})	// (the reset reaches this end's reading too)
  b.on('data', (d: Buffer) => { got += d.length; if (got > 4 << 20) b.destroy() })
  b.resume()
  try {
    await assert.rejects(dump(s.pid, socketFd(a), { stallMs: 20_000 }))
  } finally { close() }
  assert.ok(got > 4 << 20, `the stream broke after ${got} bytes`)
  assert.deepEqual(fds(s.pid), before, 'the descriptor it was lent is closed again')
  const n = lines(s.out)
  await waitFor(() => lines(s.out) > n + 1, 10_000, 'the counter going on after the failed dump')
  assert.equal(s.child.exitCode, null)
})

test('the old path: HPC_PPM_SEND=copy, a process with one descriptor free (it takes the unix socket, not the one it is sent), a stream that is not TCP', async () => {
  const bin = lab.compile('counter')
  for (const how of ['copy', 'nofile', 'pipe'] as const) {
    const s = how === 'nofile'
      ? lab.start('sh', ['-c', `ulimit -n 4 && exec "${bin}" 1000000 16384 0 20000`])
      : lab.start(bin, ['1000000', '16384', '0', '20000'])
    await waitFor(() => lines(s.out) >= 1, 5000, 'counter output')
    const before = fds(s.pid)
    const { a, b, close } = await tcpPair()
    try {
      if (how === 'copy') process.env.HPC_PPM_SEND = 'copy'
      // (pipe: a stream that may become a file keeps its CRCs; Node gives the helper a socket pair)
      const pt = new PassThrough()
      const rp = restore(how === 'pipe' ? pt : socketFd(b), { keepPid: false, stdio: quiet, stallMs: 20_000 })
      const d = await dump(s.pid, how === 'pipe' ? pt : socketFd(a), { stallMs: 20_000 }).finally(() => { delete process.env.HPC_PPM_SEND })
      const r = lab.track(await rp)
      assert.equal(d.stats.gsend_pages, undefined, `${how}: no page written by the process`)
      assert.ok(d.pages >= 16384 / 4, `${how}: every page sent (${d.pages})`)
      assert.deepEqual(Object.keys(fds(r.pid)).sort(), Object.keys(before).sort(), `${how}: the same descriptors`)
      process.kill(r.pid, 'SIGKILL')
      await r.exited
    } finally { close() }
  }
})

test('a process that shares its descriptor table with its parent (clone CLONE_FILES) is not lent the descriptor: its parent would hold it too', async () => {
  const bin = lab.compile('fdshare')
  const s = lab.start(bin, ['100000', '20000'])
  await waitFor(() => /^child \d+$/m.test(s.out) && lines(s.out) >= 3, 5000, 'the child\'s output')
  const child = Number(readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').trim())
  const { a, b, close } = await tcpPair()
  try {
    process.env.HPC_PPM_SEND = 'guest'
    const rp = restore(socketFd(b), { keepPid: false, stdio: quiet, stallMs: 20_000 })
    const d = await dump(child, socketFd(a), { stallMs: 20_000 }).finally(() => { delete process.env.HPC_PPM_SEND })
    const r = lab.track(await rp)
    assert.equal(d.stats.gsend_pages, undefined, 'no page sent by the process')
    assert.ok(d.pages >= 1024, `every page sent the old way (${d.pages})`)
    process.kill(r.pid, 'SIGKILL')
    await r.exited
  } finally { close() }
})
