// Pre-copy (docs/ppm.md "Pre-copy"): the memory of a process that keeps writing is copied in
// rounds while it runs, the last round taken frozen; a process that writes faster than the rounds
// copy falls back to a plain stop-and-copy after the bounded rounds; a failed pre-copy leaves the
// process running with no userfaultfd and no write protection left in it.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { PassThrough, Writable } from 'node:stream'
import { deputy, dump, restore, PpmError } from '../../src/ppm/ppm.js'
import { Lab, lines, reference, waitFor, type Subject } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

function status (pid: number, key: string): string {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] ?? ''
}

/** what the engine must never leave in a process: a userfaultfd among its descriptors, or a region
 * still registered for write protection (VmFlags `uw` in smaps) */
function leftovers (pid: number): string[] {
  const found: string[] = []
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try { const l = readlinkSync(`/proc/${pid}/fd/${fd}`); if (l.includes('userfaultfd')) found.push(`fd ${fd} ${l}`) } catch {}
  }
  for (const l of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (l.startsWith('VmFlags:') && l.split(/\s+/).some(f => f === 'uw' || f === 'um')) found.push(l)
  }
  return found
}

/** "steps N sum H side S": the end line of a dirtier; the same for any run of N steps */
function endLine (out: string): { line: string, steps: string } {
  const m = /^steps (\d+) .*$/m.exec(out)
  assert.ok(m != null, `no end line in ${JSON.stringify(out.slice(-200))}`)
  return { line: m[0], steps: m[1] }
}

function expected (bin: string, mb: string, pages: string, steps: string): string {
  return endLine(reference(bin, [mb, pages, '0', steps]).out).line
}

/** Tells a copy to stop (its stop file); once it has ended well, its end line. */
async function stoppedCopy (stop: string, r: { exited: Promise<unknown> }, out: () => string): Promise<{ line: string, steps: string }> {
  writeFileSync(stop, '')
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  await waitFor(() => /^steps /m.test(out()), 5000, 'end line')
  return endLine(out())
}

async function started (bin: string, args: string[]): Promise<Subject> {
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 1, 20000, 'dirtier ready')
  return s
}

test('a process that keeps writing is dumped with pre-copy while it runs; the copy and the original end alike', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-1')
  // 48 MiB, 2 pages written every 2 ms (4 MiB/s), side regions mapped and unmapped, pages zapped
  const s = await started(bin, ['48', '2', '2000', stop])
  const pt = new PassThrough()
  const rp = restore(pt, { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] })
  const d = await dump(s.pid, pt, { leaveRunning: true, precopy: true })
  const r = lab.track(await rp)
  let copy = ''
  r.stdout?.on('data', (b: Buffer) => { copy += b.toString() })
  assert.equal(d.stats.precopy_fallback, '0')
  assert.ok(Number(d.stats.precopy_rounds) >= 2, `rounds ${d.stats.precopy_rounds}`)
  // most of the memory went out while it ran: the frozen part is a small remainder
  const valid = Number(d.stats.valid_pages)
  assert.ok(valid > 10000, `pages sent early and still valid: ${valid}`)
  assert.ok(Number(d.stats.final_pages) < valid / 4, `pages sent frozen: ${d.stats.final_pages}`)
  assert.equal(Number(r.stats.staged_applied), valid)
  assert.ok(Number(r.stats.uffd_pages) >= valid, `staged pages put in by UFFDIO_COPY: ${r.stats.uffd_pages}`)
  assert.deepEqual(leftovers(r.pid), [], 'nor in the copy: its page fill left no userfaultfd')
  // the original runs on, unprotected, with nothing of the engine left in it
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'released')
  assert.deepEqual(leftovers(s.pid), [])
  writeFileSync(stop, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  await waitFor(() => /^steps /m.test(copy), 5000, 'end line of the copy')
  const a = endLine(s.out)
  const b = endLine(copy)
  assert.equal(a.line, expected(bin, '48', '2', a.steps))
  assert.equal(b.line, expected(bin, '48', '2', b.steps))
})

test('a pre-copy dump that removes the original: the restored process ends as an undisturbed run', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-2')
  const s = await started(bin, ['32', '4', '1000', stop])
  const pt = new PassThrough()
  const rp = restore(pt, { stdio: ['ignore', 'pipe', 'ignore'] })
  const d = await dump(s.pid, pt, { precopy: { rounds: 5 } })
  const r = lab.track(await rp)
  assert.equal(r.pid, s.pid, 'pid kept')
  let copy = ''
  r.stdout?.on('data', (b: Buffer) => { copy += b.toString() })
  assert.equal(d.stats.precopy_fallback, '0')
  assert.ok(Number(d.stats.valid_pages) > 5000)
  const b = await stoppedCopy(stop, r, () => copy)
  assert.equal(b.line, expected(bin, '32', '4', b.steps))
})

test('a process of 4 threads each writing its slice is dumped with pre-copy and its copy goes on exactly', async () => {
  const bin = lab.compile('walker')
  const args = ['24', '150', '20000', '0', '4']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 3, 20000, 'walker output')
  const pt = new PassThrough()
  const rp = restore(pt, { stdio: ['ignore', 'pipe', 'ignore'] })
  const d = await dump(s.pid, pt, { precopy: true })
  const r = lab.track(await rp)
  let copy = ''
  r.stdout?.on('data', (b: Buffer) => { copy += b.toString() })
  assert.equal(d.stats.threads, '4')
  // each walk writes every page: whether the rounds converge depends on the machine's load (else
  // the fallback); either way the copy must go on exactly
  assert.ok(Number(d.stats.precopy_rounds) >= 2, `rounds ${d.stats.precopy_rounds}`)
  assert.deepEqual(await r.exited, { code: 0, signal: null })
  await waitFor(() => s.out + copy === ref.out, 5000, 'the rest of the output')
})

test('a deputy dumped with pre-copy: hollowed, then restored into from its pre-copy image, it goes on', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-5')
  const s = await started(bin, ['24', '2', '1000', stop])
  const d = lab.trackDeputy(await deputy(s.pid, lab.path('dep.img'), { precopy: true }))
  assert.equal(d.pid, s.pid)
  const rss = parseInt(status(s.pid, 'VmRSS'))
  assert.ok(rss < 1000, `VmRSS ${rss} kB after hollowing`)
  assert.deepEqual(leftovers(s.pid), [])
  await d.restoreInto(lab.path('dep.img'))
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'home and running')
  assert.deepEqual(leftovers(s.pid), [])
  writeFileSync(stop, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  const a = endLine(s.out)
  assert.equal(a.line, expected(bin, '24', '2', a.steps))
})

test('a process that writes faster than the rounds copy falls back to stop-and-copy after the bounded rounds', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-3')
  // every page of 32 MiB written in each step, without pause
  const s = await started(bin, ['32', '8192', '0', stop])
  const pt = new PassThrough()
  const rp = restore(pt, { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] })
  const d = await dump(s.pid, pt, { precopy: { rounds: 3 } })
  const r = lab.track(await rp)
  let copy = ''
  r.stdout?.on('data', (b: Buffer) => { copy += b.toString() })
  assert.equal(d.stats.precopy_fallback, '1')
  assert.equal(d.stats.precopy_rounds, '3')
  // a plain image: every page in the frozen part, none taken from the rounds
  assert.equal(d.stats.valid_pages, '0')
  assert.ok(Number(d.pages) >= 8192, `pages ${d.pages}`)
  assert.equal(r.stats.staged_applied, undefined)
  const b = await stoppedCopy(stop, r, () => copy)
  assert.equal(b.line, expected(bin, '32', '8192', b.steps))
})

test('a process rewriting a working set smaller than its memory: the rounds stop at their bound, the frozen part is that set', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-6')
  // 32 MiB, of which the first 8 MiB are written over and over without pause
  const args = ['32', '256', '0', stop, '0', '8']
  const s = await started(bin, args)
  const pt = new PassThrough()
  const rp = restore(pt, { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] })
  const d = await dump(s.pid, pt, { precopy: { rounds: 3 } })
  const r = lab.track(await rp)
  let copy = ''
  r.stdout?.on('data', (b: Buffer) => { copy += b.toString() })
  assert.equal(d.stats.precopy_fallback, '0')
  assert.ok(Number(d.stats.valid_pages) >= 4096, `valid pages ${d.stats.valid_pages}`)
  const b = await stoppedCopy(stop, r, () => copy)
  assert.equal(b.line, endLine(reference(bin, ['32', '256', '0', b.steps, '0', '8']).out).line)
})

test('a failed pre-copy leaves the process running, with no userfaultfd and no protection in it', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-4')
  const s = await started(bin, ['32', '4', '1000', stop])
  // the stream breaks during the rounds
  let seen = 0
  const breaking = new Writable({
    write (chunk: Buffer, _enc, cb) { seen += chunk.length; if (seen > (4 << 20)) cb(new Error('link down')); else cb() }
  })
  await assert.rejects(dump(s.pid, breaking, { precopy: true }))
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'released')
  assert.deepEqual(leftovers(s.pid), [])
  // the setup fails after the userfaultfd was made in the process (fault-injection hook)
  process.env.HPC_PPM_TEST_FAULT = 'precopy-setup'
  const p = dump(s.pid, lab.path('fault.img'), { precopy: true })
  delete process.env.HPC_PPM_TEST_FAULT
  await assert.rejects(p, (e: unknown) => e instanceof PpmError && /fault injected/.test(e.message))
  await waitFor(() => status(s.pid, 'TracerPid') === '0', 5000, 'released')
  assert.deepEqual(leftovers(s.pid), [])
  // bad input changes nothing
  await assert.rejects(dump(s.pid, lab.path('x.img'), { precopy: { rounds: 1 } }), /rounds must be 2-100/)
  writeFileSync(stop, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  const a = endLine(s.out)
  assert.equal(a.line, expected(bin, '32', '4', a.steps))
})
