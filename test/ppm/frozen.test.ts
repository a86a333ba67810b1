// A dump kept frozen as its own copy (startFrozenDump: dump --wait --confirm, native/frozen.c):
// once its image is out the process stays frozen, nothing written to its copy; then KILL, RELEASE
// or SAVE (a second image of the same freeze into the copy), and SAVE when its caller is gone.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, constants as fsc, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import { helperPath, restore, startFrozenDump, unread } from '../../src/ppm/ppm.js'
import { poll, within } from '../../src/util/poll.js'
import { Lab, lines, reference, waitFor, withGoWait, type Subject } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

function status (pid: number, key: string): string {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] ?? ''
}

async function counter (rounds = '60'): Promise<{ s: Subject, ref: { out: string, code: number | null }, bin: string, args: string[] }> {
  const bin = lab.compile('counter')
  const args = [rounds, '400', '4', '40000']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  return { s, ref, bin, args }
}

/** Restores image (a fresh pid) and returns all it writes to stdout, once it has ended with `code`. */
async function runOn (img: string, code: number): Promise<string> {
  const back = lab.track(await restore(img, { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] }))
  let out = ''
  back.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const end = new Promise(resolve => back.stdout?.on('end', resolve))
  assert.deepEqual(await back.exited, { code, signal: null })
  await end
  return out
}

test('kept frozen: its image goes out and nothing into the copy; released, it runs on as it was; told to kill, it is removed and its image runs on from where it stopped', async () => {
  const { s, ref } = await counter()
  const copy = lab.open(lab.path('f0.copy'), 'w+')
  const a = await withGoWait('60000', async () => await startFrozenDump(s.pid, lab.path('f0.img'), { copy }))
  const f = await a.go()
  assert.ok(f.bytes > 0 && statSync(lab.path('f0.img')).size === f.bytes, 'the image is out')
  assert.equal(statSync(lab.path('f0.copy')).size, 0, 'nothing written into the copy')
  assert.ok(status(s.pid, 'State').startsWith('t'), 'frozen')
  const n = lines(s.out)
  await f.release()
  assert.equal(status(s.pid, 'TracerPid'), '0', 'let go')
  await waitFor(() => lines(s.out) > n, 5000, 'output once released')
  await assert.rejects(f.kill(), /told RELEASE already/)

  const img = lab.path('f1.img')
  const b = await withGoWait('60000', async () => await startFrozenDump(s.pid, img, { copy }))
  const g = await b.go()
  const before = s.out
  await g.kill()
  assert.deepEqual(await s.exited, { code: null, signal: 9 }, 'removed once told')
  assert.equal(statSync(lab.path('f0.copy')).size, 0, 'still nothing in the copy')
  assert.equal(before + await runOn(img, 4), ref.out)
})

test('saved: the copy is a whole image of the same freeze (threads, SIGTRAP caught and blocked), written after the stream; the process is removed and its copy runs on', async () => {
  const bin = lab.compile('trapmask')
  const s = lab.start(bin, ['150', '20000', 'handler'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  const copyPath = lab.path('f2.copy')
  const copy = lab.open(copyPath, 'w+')
  const a = await withGoWait('60000', async () => await startFrozenDump(s.pid, lab.path('f2.img'), { copy }))
  const f = await a.go()
  const before = s.out
  await f.save()
  assert.deepEqual(await s.exited, { code: null, signal: 9 })
  assert.ok(statSync(copyPath).size > 0)
  const all = before + await runOn(copyPath, 0)
  assert.equal(lines(all), 151, all)
  assert.ok(all.split('\n').slice(0, 150).every(l => l.endsWith('trap caught blocked')), all)
  assert.match(all, /other thread blocked\n$/)
})

test('drained: DRAINED only once the pipes named (the ends the caller reads) are empty; a path that is no pipe, or gone, is left out; the output read then and after its move is all of it, once', async () => {
  const bin = lab.compile('counter')
  const args = ['60', '400', '4', '40000']
  const ref = reference(bin, args)
  const fifo = lab.path('f4.fifo')
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
  const rfd = openSync(fifo, fsc.O_RDWR | fsc.O_NONBLOCK) // (O_RDWR: opens without a writer; only read here)
  const wfd = openSync(fifo, 'w')
  const s = lab.start(bin, args, ['ignore', wfd, 'ignore'])
  closeSync(wfd)
  let out = ''
  const readAll = (): void => {
    const b = Buffer.alloc(65536)
    for (;;) {
      let n = 0
      try { n = readSync(rfd, b) } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return; throw e }
      if (n <= 0) return
      out += b.subarray(0, n).toString()
    }
  }
  try {
    await waitFor(() => { readAll(); return lines(out) >= 2 }, 5000, 'output')
    // its output left unread: the next lines wait in the pipe
    await poll('output unread in the pipe', async () => await unread(s.pid, 1) > 0, { timeoutMs: 5000, everyMs: 10 })
    const copy = lab.open(lab.path('f4.copy'), 'w+')
    const img = lab.path('f4.img')
    const a = await withGoWait('60000', async () => await startFrozenDump(s.pid, img, { copy }))
    const f = await a.go()
    const d = f.drained([`/proc/${process.pid}/fd/${rfd}`, lab.path('f4.img'), '/proc/self/fd/999999'])
    assert.equal(await within(d, 300), false, 'not drained while its output waits in the pipe')
    readAll()
    assert.equal(await d, true)
    await f.kill()
    assert.deepEqual(await s.exited, { code: null, signal: 9 })
    const drainedOut = out
    // (restored, its fd 1 is the FIFO again, reopened by its path)
    const more = await runOn(img, 4)
    readAll()
    assert.equal(out + more, ref.out)
    assert.ok(ref.out.startsWith(drainedOut) && drainedOut.length > 0)
  } finally { closeSync(rfd) }
})

test('bad commands to a frozen dump: an unknown line, or one too long, is answered ERR EINVAL and changes nothing; RELEASE still lets it run on', async () => {
  const { s } = await counter()
  const img = lab.open(lab.path('f5.img'), 'w')
  const copy = lab.open(lab.path('f5.copy'), 'w+')
  const h = spawn(helperPath(), ['dump', String(s.pid), '--wait', '--confirm', '--copy'], { stdio: ['ignore', 'ignore', 'pipe', img, 'pipe', 'pipe', copy] })
  const said: string[] = []
  createInterface({ input: h.stdio[4] as Readable }).on('line', l => said.push(l))
  const cmd = (h.stdio as unknown as Array<Writable | null>)[5] as Writable
  const seen = async (re: RegExp, what: string): Promise<void> => { await waitFor(() => said.some(l => re.test(l)), 10_000, what) }
  try {
    await seen(/^CHECKED$/, 'checked')
    cmd.write('GO\n')
    await seen(/^DUMPED /, 'dumped')
    cmd.write('BOGUS\n')
    await seen(/^ERR EINVAL unknown command.*BOGUS/, 'the unknown command refused')
    cmd.write(`DRAIN ${'/x'.repeat(10_000)}\n`)
    await waitFor(() => said.filter(l => l.startsWith('ERR EINVAL')).length === 2, 10_000, 'the long line refused')
    assert.ok(status(s.pid, 'State').startsWith('t'), 'still frozen')
    assert.equal(statSync(lab.path('f5.copy')).size, 0, 'nothing saved')
    const n = lines(s.out)
    cmd.write('RELEASE\n')
    await seen(/^RELEASED /, 'released')
    await waitFor(() => lines(s.out) > n, 5000, 'output once released')
  } finally { if (h.exitCode === null) h.kill('SIGKILL') }
})

test('its caller gone while it is frozen (the daemon died): the helper writes the copy itself, then removes the process; the copy runs on', async () => {
  const { s, ref } = await counter('80')
  const copyPath = lab.path('f3.copy')
  // a caller of its own, killed once the image is out
  const ppm = fileURLToPath(new URL('../../src/ppm/ppm.js', import.meta.url))
  const script = `import { openSync } from 'node:fs'
import { startFrozenDump } from ${JSON.stringify(ppm)}
const a = await startFrozenDump(${s.pid}, ${JSON.stringify(lab.path('f3.img'))}, { copy: openSync(${JSON.stringify(copyPath)}, 'w+') })
await a.go()
console.log('DUMPED')
setInterval(() => {}, 1000)`
  const caller = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, HPC_PPM_GO_WAIT_MS: '60000' } })
  let said = ''
  caller.stdout?.on('data', (b: Buffer) => { said += b.toString() })
  try {
    await waitFor(() => said.includes('DUMPED'), 20_000, 'the image out')
    assert.ok(status(s.pid, 'State').startsWith('t'), 'frozen')
    const before = s.out
    caller.kill('SIGKILL')
    assert.deepEqual(await s.exited, { code: null, signal: 9 }, 'removed once its copy is written')
    assert.ok(statSync(copyPath).size > 0)
    assert.equal(before + await runOn(copyPath, 4), ref.out)
  } finally { if (caller.exitCode === null) caller.kill('SIGKILL') }
})
