// Memory and process state: a 200 MB walker moved around, the exact layout and attributes after a
// restore, the full vector register state (AVX, AVX-512) of a process caught mid-computation, the
// page fill, and the pages a process only read (the zero page), left out of its image.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { deputy, dump, restore } from '../../src/ppm/ppm.js'
import { Lab, chain, lines, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

test('a 200 MB memory walker is moved three times and finishes identically', async () => {
  const bin = lab.compile('walker')
  const args = ['200', '14', '60000', '8']
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  const t = await chain(lab, s, { progress: () => lines(s.out), marks: [3, 7, 10], relay: true, timeoutMs: 60000 })
  assert.deepEqual(await s.exited, { code: 8, signal: null })
  assert.equal(s.out, ref.out)
  console.log(`# 200 MB walker: freeze ms ${t.freezeMs.map(x => x.toFixed(1)).join(', ')}; restore ms ${t.restoreMs.map(x => x.toFixed(1)).join(', ')}`)
})

function stat (pid: number): string[] {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return s.slice(s.lastIndexOf(')') + 2).split(' ')
}

test('layout and attributes: maps byte-identical, name, exe, cwd, umask, personality, auxv, mm fields', async () => {
  const bin = lab.compile('counter')
  const s = lab.start('sh', ['-c', `umask 027; cd "${lab.dir}"; exec setarch -R "${bin}" 1000000 400 0 50000`])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  const pid = s.pid
  const before = {
    maps: readFileSync(`/proc/${pid}/maps`, 'utf8'),
    comm: readFileSync(`/proc/${pid}/comm`, 'utf8'),
    exe: readlinkSync(`/proc/${pid}/exe`),
    cwd: readlinkSync(`/proc/${pid}/cwd`),
    umask: /Umask:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1],
    pers: readFileSync(`/proc/${pid}/personality`, 'utf8'),
    auxv: readFileSync(`/proc/${pid}/auxv`),
    mm: [25, 26, 27, 44, 45, 46, 47, 48, 49, 50].map(i => stat(pid)[i - 2])
  }
  assert.equal(before.umask, '0027')
  assert.equal(before.pers, '00040000\n')
  await dump(pid, lab.path('layout.img'))
  await s.exited
  const r = lab.track(await restore(lab.path('layout.img'), { requirePid: true, stdio: ['ignore', 'ignore', 'ignore'] }))
  assert.equal(r.pid, pid)
  assert.equal(readFileSync(`/proc/${pid}/maps`, 'utf8'), before.maps)
  assert.equal(readFileSync(`/proc/${pid}/comm`, 'utf8'), before.comm)
  assert.equal(readlinkSync(`/proc/${pid}/exe`), before.exe)
  assert.equal(readlinkSync(`/proc/${pid}/cwd`), before.cwd)
  assert.equal(/Umask:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1], before.umask)
  assert.equal(readFileSync(`/proc/${pid}/personality`, 'utf8'), before.pers)
  assert.ok(readFileSync(`/proc/${pid}/auxv`).equals(before.auxv))
  assert.deepEqual([25, 26, 27, 44, 45, 46, 47, 48, 49, 50].map(i => stat(pid)[i - 2]), before.mm)
  process.kill(pid, 'SIGKILL')
  await r.exited
})

test('full XSTATE: AVX and AVX-512 registers and mask registers survive moves mid-computation', async () => {
  const bin = lab.compile('xstate', 'xstate', ['-mavx2'])
  // calibrate the spin so one block takes about 150 ms here
  let spin = 20000000
  for (;;) {
    const t0 = Date.now()
    reference(bin, ['1', String(spin)])
    const ms = Date.now() - t0
    if (ms > 60) { spin = Math.round(spin * 150 / ms); break }
    spin *= 4
  }
  const args = ['14', String(spin)]
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [2, 5, 9], relay: true })
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(s.out, Array.from({ length: 14 }, (_, i) => `block ${i} ok\n`).join(''))
})

test('a non-root process keeps its credentials, also when it comes home into its hollow original', async () => {
  const bin = lab.compile('counter')
  // a process coming home opens its mapped files with its own credentials: let nobody reach them
  chmodSync(lab.dir, 0o755)
  const args = ['24', '100', '5', '50000']
  const ref = reference(bin, args)
  const s = lab.start('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', bin, ...args], ['ignore', 'pipe', 'pipe'], '/')
  await waitFor(() => lines(s.out) >= 1, 5000, 'output')
  const ids = (pid: number): string => {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8')
    return ['Uid', 'Gid', 'Groups'].map(k => new RegExp(`^${k}:(.*)$`, 'm').exec(st)?.[1].trim()).join('|')
  }
  const want = ids(s.pid)
  assert.equal(want, '65534\t65534\t65534\t65534|65534\t65534\t65534\t65534|')
  const copies: string[] = []
  const t = await chain(lab, s, { progress: () => lines(s.out), marks: [3, 9, 15], relay: true, onCopy: pid => copies.push(ids(pid)) })
  assert.deepEqual(copies, [want, want], 'the fresh copies run with them too')
  assert.equal(ids(s.pid), want, 'home again with its own credentials')
  assert.equal(t.stats[2].fill, 'uffd', 'its hollow original, without CAP_SYS_PTRACE, is filled by UFFDIO_COPY too (UFFD_USER_MODE_ONLY)')
  assert.deepEqual(await s.exited, { code: 5, signal: null })
  assert.equal(s.out, ref.out)
})

/** what a process holds that a userfaultfd would leave: its descriptors' links, its regions' uffd flags */
function uffdTrace (pid: number): { fds: string[], uffdFlags: string[] } {
  const fds = readdirSync(`/proc/${pid}/fd`).map(n => `${n} ${readlinkSync(`/proc/${pid}/fd/${n}`)}`)
  const uffdFlags = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n').filter(l => /^VmFlags:.*\b(um|uw|ui)\b/.test(l))
  return { fds, uffdFlags }
}

test('page fill: UFFDIO_COPY into private anonymous regions, /proc/PID/mem elsewhere, no userfaultfd left; HPC_PPM_FILL=pwrite', async () => {
  // mapmix: private anonymous data behind PROT_NONE, heap and stack (UFFDIO_COPY), a private file
  // mapping with copy-on-write pages (/proc/PID/mem), shared memory (written by neither)
  const bin = lab.compile('mapmix')
  const mk = (n: string): string => { const p = lab.path(n); writeFileSync(p, Buffer.alloc(65536, 0x11)); return p }
  const [rs, rp, ss, sp] = [mk('fill-rs'), mk('fill-rp'), mk('fill-ss'), mk('fill-sp')]
  const args = ['40', '50000', '4']
  const ref = reference(bin, [rs, rp, ...args])
  const s = lab.start(bin, [ss, sp, ...args], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 10000, 'output')
  const before = uffdTrace(s.pid)
  assert.deepEqual(before.uffdFlags, [])
  const stdio = { stdio: ['ignore', 'ignore', 'ignore'] as ['ignore', 'ignore', 'ignore'], stdioFrom: s.pid }
  const dep = lab.trackDeputy(await deputy(s.pid, lab.path('fill-a.img')))
  const r1 = lab.track(await restore(lab.path('fill-a.img'), { keepPid: false, ...stdio }))
  assert.equal(r1.stats.fill, 'uffd')
  assert.ok(Number(r1.stats.uffd_pages) >= 16, `pages by UFFDIO_COPY: ${r1.stats.uffd_pages}`)
  assert.ok(Number(r1.stats.mem_pages) >= 1, `pages through /proc/PID/mem: ${r1.stats.mem_pages}`)
  assert.equal(r1.stats.uffd_unregistered, '0')
  assert.deepEqual(uffdTrace(r1.pid), before, 'the same descriptors as the original, no region registered')
  await waitFor(() => lines(s.out) >= 6, 20000, 'output of the first copy')
  // the old way, forced: nothing by UFFDIO_COPY
  process.env.HPC_PPM_FILL = 'pwrite'
  const pt = new PassThrough()
  const r2p = restore(pt, { keepPid: false, ...stdio })
  delete process.env.HPC_PPM_FILL
  await dump(r1.pid, pt)
  const r2 = lab.track(await r2p)
  assert.equal(r2.stats.fill, 'pwrite')
  assert.equal(r2.stats.fill_why, 'env')
  assert.equal(r2.stats.uffd_pages, '0')
  assert.ok(Number(r2.stats.mem_pages) >= 17)
  await waitFor(() => lines(s.out) >= 10, 20000, 'output of the second copy')
  // home into the hollow original, filled by UFFDIO_COPY
  await dump(r2.pid, lab.path('fill-c.img'))
  const home = await dep.restoreInto(lab.path('fill-c.img'))
  assert.equal(home.stats.fill, 'uffd')
  assert.ok(Number(home.stats.uffd_pages) >= 16, `pages by UFFDIO_COPY: ${home.stats.uffd_pages}`)
  assert.deepEqual(uffdTrace(s.pid), before, 'home with its own descriptors, no region registered')
  // and it computes on to the same checksums as an uninterrupted run
  assert.deepEqual(await s.exited, { code: 4, signal: null })
  assert.equal(s.out, ref.out)
  assert.ok(readFileSync(ss).equals(readFileSync(rs)), 'shared file identical')
})

/** the Rss (kB) of the region that starts at `start` (hex), from smaps */
function region (pid: number, start: string): { rss: number } {
  const text = readFileSync(`/proc/${pid}/smaps`, 'utf8')
  const at = text.indexOf(`\n${start}-`) + 1 || (text.startsWith(`${start}-`) ? 0 : -1)
  assert.ok(at >= 0, `a region at ${start}`)
  const next = text.slice(at).search(/\n[0-9a-f]+-[0-9a-f]+ /)
  const block = next < 0 ? text.slice(at) : text.slice(at, at + next + 1)
  return { rss: Number(/^Rss:\s+(\d+) kB/m.exec(block)?.[1]) }
}

test('pages only read (the kernel\'s zero page) are left out of the image: a sparse region read in full stays as small as it was', async () => {
  const bin = lab.compile('sparse')
  const s = lab.start(bin, ['64'], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 1, 5000, 'ready')
  const [, dense, sparse] = /^dense (\w+) sparse (\w+)/.exec(s.out) ?? []
  process.kill(s.pid, 'SIGUSR1') // it reads both regions in full (its checksums)
  await waitFor(() => lines(s.out) >= 2, 5000, 'its checksums')
  const sums = s.out.split('\n')[1]
  const before = { dense: region(s.pid, dense), sparse: region(s.pid, sparse) }
  assert.ok(before.dense.rss >= 64 * 1024 && before.sparse.rss < 1024, `dense ${before.dense.rss} kB, sparse ${before.sparse.rss} kB`)
  const d = await dump(s.pid, lab.path('zero.img'))
  await s.exited
  assert.ok(Number(d.stats.zero_pages) >= 16 * 1024 - 64, `pages left out as the zero page: ${d.stats.zero_pages}`)
  assert.ok(Number(d.stats.bytes) < 66 << 20, `the image holds the dense region and little else: ${d.stats.bytes} bytes`)
  const r = lab.track(await restore(lab.path('zero.img'), { keepPid: false, stdio: ['ignore', 'pipe', 'ignore'] }))
  let out = ''
  r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const after = { dense: region(r.pid, dense), sparse: region(r.pid, sparse) }
  assert.equal(after.dense.rss, before.dense.rss)
  assert.equal(after.sparse.rss, before.sparse.rss, 'the sparse region no bigger than it was')
  process.kill(r.pid, 'SIGUSR1')
  await waitFor(() => out.includes('\n'), 5000, 'the copy\'s checksums')
  assert.equal(out, `${sums}\n`, 'the same memory: what was left out reads as zeros')
  process.kill(r.pid, 'SIGUSR2')
  assert.deepEqual(await r.exited, { code: 0, signal: null })
})
