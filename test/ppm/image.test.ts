// The image format: versioned, checksummed, streamable; it records what the target must match and
// a restore that cannot be faithful refuses with a clear reason, leaving no process behind.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, readdirSync, readFileSync, readlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { check, dump, hostInfo, info, restore, PpmError } from '../../src/ppm/ppm.js'
import { IMG_VERSION, Lab, lines, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

// CRC32C (Castagnoli), as the helper uses, to forge records with valid checksums
const table = Array.from({ length: 256 }, (_, i) => { let c = i; for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1; return c >>> 0 })
function crc32c (buf: Buffer): number {
  let c = 0xffffffff
  for (const b of buf) c = table[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

interface Rec { off: number, type: number, len: number }
function records (img: Buffer): Rec[] {
  const out: Rec[] = []
  for (let off = 0; off < img.length;) {
    const type = img.readUInt32LE(off)
    const len = Number(img.readBigUInt64LE(off + 8))
    out.push({ off, type, len })
    off += 16 + len + 4
  }
  return out
}
/** changes the payload of record `r` and fixes its checksum */
function forge (img: Buffer, r: Rec, edit: (payload: Buffer) => void): Buffer {
  const b = Buffer.from(img)
  edit(b.subarray(r.off + 16, r.off + 16 + r.len))
  b.writeUInt32LE(crc32c(b.subarray(r.off, r.off + 16 + r.len)), r.off + 16 + r.len)
  return b
}

function stubsRunning (): number {
  let n = 0
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    try { if (readlinkSync(`/proc/${p}/exe`).endsWith('/hpc-ppm-stub')) n++ } catch {}
  }
  return n
}

/** the image format version of native/image.h */
const VERSION = IMG_VERSION
assert.ok(VERSION >= 6, `IMG_VERSION read from native/image.h: ${VERSION}`)
let good: Buffer
let bin: string
const args = ['10', '400', '7', '30000']

test('an image is versioned records, each checksummed, ending in a trailer', async () => {
  bin = lab.compile('counter')
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  await dump(s.pid, lab.path('good.img'), { leaveRunning: true })
  assert.deepEqual(await s.exited, { code: 7, signal: null })
  good = readFileSync(lab.path('good.img'))
  assert.equal(good.subarray(16, 24).toString('latin1'), 'HPCPPM\r\n')
  assert.equal(good.readUInt32LE(16 + 8), VERSION, `format version ${VERSION}`)
  const recs = records(good)
  assert.equal(recs[0].type, 1, 'header first')
  assert.equal(recs[recs.length - 1].type, 8, 'trailer last')
  let end = 0
  for (const r of recs) {
    assert.equal(good.readUInt32LE(r.off + 4), 0x52504d50, 'record magic')
    assert.equal(good.readUInt32LE(r.off + 16 + r.len), crc32c(good.subarray(r.off, r.off + 16 + r.len)), `checksum of record at ${r.off}`)
    end = r.off + 16 + r.len + 4
  }
  assert.equal(end, good.length)
  const i = await info(lab.path('good.img'))
  assert.equal(i.fields.version, String(VERSION))
  assert.equal(i.fields.threads, '1')
  assert.equal(i.fields.comm, 'counter')
  assert.deepEqual(i.reasons, [])
})

async function refused (img: Buffer, name: string, code: string, pattern: RegExp): Promise<PpmError> {
  writeFileSync(lab.path(name), img)
  const before = stubsRunning()
  let err: PpmError | undefined
  await assert.rejects(restore(lab.path(name), { stdio: ['ignore', 'ignore', 'ignore'] }), (e: unknown) => {
    assert.ok(e instanceof PpmError, String(e))
    assert.equal(e.code, code, e.message)
    assert.match(e.message, pattern)
    err = e
    return true
  })
  assert.equal(stubsRunning(), before, 'no stub or half-restored process left behind')
  return err as PpmError
}

test('corruption anywhere is refused with a clear reason and leaves nothing behind', async () => {
  const recs = records(good)
  const pages = recs.filter(r => r.type === 7)
  const bad = Buffer.from(good)
  bad[pages[Math.floor(pages.length / 2)].off + 16 + 100] ^= 1
  await refused(bad, 'bad-page.img', 'EBADMSG', /checksum mismatch/)
  const bad2 = Buffer.from(good)
  bad2[recs[1].off + 40] ^= 1
  await refused(bad2, 'bad-core.img', 'EBADMSG', /checksum mismatch/)
  await refused(good.subarray(0, good.length - 30), 'short.img', 'EBADMSG', /truncated/)
  await refused(Buffer.from('this is not an image at all, not even close....'), 'junk.img', 'EBADMSG', /corrupt|not an hpc-ppm image/)
  await refused(Buffer.alloc(0), 'empty.img', 'EBADMSG', /truncated/)
  // dropping a whole page record is caught by the trailer
  const p = pages[0]
  const cut = Buffer.concat([good.subarray(0, p.off), good.subarray(p.off + 16 + p.len + 4)])
  await refused(cut, 'cut.img', 'EBADMSG', /incomplete/)
})

test('the restore\'s injected calls, in batches or one by one (HPC_PPM_BATCH=off): the same process, and a call that fails is the error, nothing left behind', async () => {
  const ref = reference(bin, args)
  const stats: Array<Record<string, string>> = []
  for (const batch of ['', 'off']) {
    process.env.HPC_PPM_BATCH = batch
    try {
      const r = await restore(lab.path('good.img'), { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      r.stdout?.on('data', (b: Buffer) => { out += b.toString() })
      assert.deepEqual(await r.exited, { code: 7, signal: null })
      assert.equal(out, ref.out.slice(ref.out.length - out.length), 'the rest of its output')
      assert.ok(out.length > 0)
      stats.push(r.stats)
      // a region whose protection the kernel refuses (an unknown bit): mprotect fails
      const vma = records(good).find(x => x.type === 4 && good.readUInt32LE(x.off + 16 + 28) === 1)
      assert.ok(vma !== undefined, 'an anonymous region')
      const bad = forge(good, vma, b => b.writeUInt32LE(b.readUInt32LE(24) | 0x1000, 24))
      await refused(bad, `prot-${batch || 'batch'}.img`, 'EINVAL', /injected SYS_mprotect failed: Invalid argument/)
    } finally { delete process.env.HPC_PPM_BATCH }
  }
  assert.ok(Number(stats[0].batches) >= 3, `batches ${stats[0].batches}`)
  assert.equal(stats[1].batches, '0')
  assert.equal(Number(stats[0].injections), Number(stats[1].injections) + 1, 'the same calls, and the mprotect of the batches\' code page')
})

test('a core record whose counts overrun its arrays (forged, checksums valid) is refused before any process exists', async () => {
  const core = records(good).find(r => r.type === 2)
  assert.ok(core !== undefined && core.len === 11472, 'the core record (struct img_core)')
  // offsets in struct img_core (native/image.h): auxv_len 2200, nsig 2204, ngroups 2752, nrlim 11208, rlim 11216
  assert.equal(good.readUInt32LE(core.off + 16 + 11208), 16, 'the 16 resource limits')
  const edits: Array<[string, (b: Buffer) => void]> = [
    ['auxv', b => b.writeUInt32LE(4096, 2200)],
    ['auxv16', b => b.writeUInt32LE(b.readUInt32LE(2200) - 8, 2200)],
    ['nsig', b => b.writeUInt32LE(65537, 2204)],
    ['groups', b => b.writeUInt32LE(2000, 2752)],
    ['nrlim', b => b.writeUInt32LE(17, 11208)],
    ['rlim', b => { b.writeBigUInt64LE(5n, 11216 + 7 * 16); b.writeBigUInt64LE(4n, 11216 + 7 * 16 + 8) }] // RLIMIT_NOFILE soft above hard
  ]
  for (const [name, edit] of edits) await refused(forge(good, core, edit), `core-${name}.img`, 'EBADMSG', /bad core record/)
  await refused(forge(good, core, b => b.writeUInt32LE(1, 2204)), 'core-nsig1.img', 'EBADMSG', /image has 0 of its 1 signal records/)
  // a second core record (one that could change the counts the first one's arrays were made for)
  const at = core.off + 16 + core.len + 4
  await refused(Buffer.concat([good.subarray(0, at), good.subarray(core.off, at), good.subarray(at)]), 'core-twice.img', 'EBADMSG', /a second core record/)
})

/** `good` with a SIGINFO record (struct img_siginfo: thread, pad, siginfo) after its threads' records,
 * the core's count and the trailer's made to agree */
function withSignal (thread: number, signo: number, code: number, count = 1): Buffer {
  const recs = records(good)
  const core = recs.find(r => r.type === 2)
  assert.ok(core !== undefined)
  const lastX = recs.filter(r => r.type === 3).at(-1)
  assert.ok(lastX !== undefined, 'an XSTATE record')
  const rec = Buffer.alloc(16 + 136 + 4)
  rec.writeUInt32LE(17, 0)
  rec.writeUInt32LE(0x52504d50, 4)
  rec.writeBigUInt64LE(136n, 8)
  rec.writeInt32LE(thread, 16)
  rec.writeInt32LE(signo, 24) // si_signo
  rec.writeInt32LE(code, 32) // si_code
  rec.writeUInt32LE(crc32c(rec.subarray(0, 16 + 136)), 16 + 136)
  const img = forge(good, core, b => b.writeUInt32LE(count, 2204))
  const e = recs[recs.length - 1]
  const end = Buffer.from(img.subarray(e.off))
  end.writeUInt32LE(end.readUInt32LE(16) + 1, 16)
  end.writeBigUInt64LE(end.readBigUInt64LE(24) + BigInt(rec.length), 24)
  end.writeUInt32LE(crc32c(end.subarray(0, 16 + e.len)), 16 + e.len)
  const at = lastX.off + 16 + lastX.len + 4
  return Buffer.concat([img.subarray(0, at), rec, img.subarray(at, e.off), end])
}

test('a pending signal record: one for a thread or a signal that cannot be (forged) is refused; a good one is queued in the restored process', async () => {
  for (const [name, thread, signo] of [['thread', 1, 12], ['below', -2, 12], ['kill', -1, 9], ['zero', -1, 0], ['65', 0, 65]] as Array<[string, number, number]>) {
    await refused(withSignal(thread, signo, 0), `sig-${name}.img`, 'EBADMSG', /bad signal record/)
  }
  await refused(withSignal(-1, 12, 0, 0), 'sig-over.img', 'EBADMSG', /bad signal record/)
  // SIGUSR2 from kill() pending for the process: the counter has no handler for it and dies of it
  writeFileSync(lab.path('sig-usr2.img'), withSignal(-1, 12, 0))
  const r = lab.track(await restore(lab.path('sig-usr2.img'), { stdio: ['ignore', 'ignore', 'ignore'] }))
  assert.deepEqual(await r.exited, { code: null, signal: 12 })
})

test('another format version, older or newer, is refused', async () => {
  for (const v of [VERSION - 1, VERSION + 1]) {
    const img = forge(good, records(good)[0], b => b.writeUInt32LE(v, 8))
    await refused(img, `v${v}.img`, 'EPROTO', new RegExp(`version ${v} is not supported`))
  }
})

test('CPU features, XSTATE and vDSO identity that the target lacks are refused before any process exists', async () => {
  const h = records(good)[0]
  const pkru = forge(good, h, b => b.writeBigUInt64LE(b.readBigUInt64LE(16) | (1n << 9n), 16))
  const e1 = await refused(pkru, 'pkru.img', 'ENOTSUP', /cannot restore the image faithfully/)
  assert.ok(e1.reasons.some(r => r.code === 'xstate'), JSON.stringify(e1.reasons))
  const vdso = forge(good, h, b => b.writeUInt32LE((b.readUInt32LE(60) ^ 1) >>> 0, 60))
  const e2 = await refused(vdso, 'vdso.img', 'ENOTSUP', /faithfully/)
  assert.ok(e2.reasons.some(r => r.code === 'vdso'))
  const cpu = forge(good, h, b => b.writeUInt32LE(0xffffffff, 36))
  const e3 = await refused(cpu, 'cpu.img', 'ENOTSUP', /faithfully/)
  assert.ok(e3.reasons.some(r => r.code === 'cpu-features'))
})

test('a mapped executable that changed since the dump is refused', async () => {
  const copy = lab.path('counter-copy')
  copyFileSync(bin, copy)
  const s = lab.start(copy, ['1000000', ...args.slice(1)], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  await dump(s.pid, lab.path('exe.img'))
  await s.exited
  utimesSync(copy, new Date(), new Date(Date.now() - 3600e3))
  const e = await refused(readFileSync(lab.path('exe.img')), 'exe2.img', 'ENOTSUP', /faithfully/)
  assert.ok(e.reasons.some(r => r.code === 'file-mismatch'), JSON.stringify(e.reasons))
})

test('dump --target refuses before touching the process when the target host lacks features', async () => {
  const here = await hostInfo()
  assert.match(here, /^xcr0=0x[0-9a-f]+,xsave=\d+,cpuid=/)
  // a target without AVX-512 (XCR0 x87|SSE|AVX only, no AVX-512 CPUID bits)
  const poor = here.replace(/xcr0=0x[0-9a-f]+/, 'xcr0=0x7').replace(/cpuid=([0-9a-f]+)\.([0-9a-f]+)\.([0-9a-f]+)\./, (_m, a: string, b: string) => `cpuid=${a}.${b}.0.`)
  const ref = reference(bin, args)
  const s = lab.start(bin, args, ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 2, 5000, 'output')
  const xcr0 = BigInt((/xcr0=(0x[0-9a-f]+)/.exec(here) as RegExpExecArray)[1])
  if ((xcr0 & ~7n) !== 0n) { // this host has more than x87/SSE/AVX, so the poor target must be refused
    await assert.rejects(dump(s.pid, lab.path('t.img'), { target: poor }), (e: unknown) => {
      assert.ok(e instanceof PpmError)
      assert.equal(e.code, 'ENOTSUP')
      assert.ok(e.reasons.some(r => r.code === 'xstate' || r.code === 'cpu-features'))
      return true
    })
  }
  await assert.rejects(dump(s.pid, lab.path('t2.img'), { target: 'nonsense' }), (e: unknown) => e instanceof PpmError && e.code === 'EINVAL')
  assert.deepEqual(await check(s.pid), [])
  // the same host is a fine target
  await dump(s.pid, lab.path('t3.img'), { target: here, leaveRunning: true })
  assert.deepEqual(await s.exited, { code: 7, signal: null })
  assert.equal(s.out, ref.out)
})

test('private file mappings contribute only their changed (copy-on-write) pages', () => {
  const recs = records(good)
  const vmas = recs.filter(r => r.type === 4).map(r => {
    const p = good.subarray(r.off + 16, r.off + 16 + r.len)
    return { start: p.readBigUInt64LE(0), end: p.readBigUInt64LE(8), prot: p.readUInt32LE(24), kind: p.readUInt32LE(28) }
  })
  const runs = recs.filter(r => r.type === 7).map(r => ({ addr: good.readBigUInt64LE(r.off + 16), len: good.readBigUInt64LE(r.off + 24) }))
  const fileVmas = vmas.filter(v => v.kind === 3) // private file mappings
  assert.ok(fileVmas.length >= 4, 'executable and libc are mapped from their files')
  let filePages = 0n
  let mappedFile = 0n
  for (const v of fileVmas) {
    mappedFile += (v.end - v.start) / 4096n
    for (const r of runs) {
      if (r.addr >= v.start && r.addr < v.end) {
        assert.ok((v.prot & 2) !== 0 || (v.prot & 4) === 0, `page data only in written mappings (prot ${v.prot})`)
        filePages += r.len / 4096n
      }
    }
  }
  assert.ok(filePages * 10n < mappedFile, `${filePages} of ${mappedFile} file-mapped pages in the image`)
})

test('a page written twice (forged image): UFFDIO_COPY takes the first, the second is EEXIST and written through /proc/PID/mem', async () => {
  const recs = records(good)
  const anon = recs.filter(r => r.type === 4).map(r => {
    const p = good.subarray(r.off + 16, r.off + 16 + r.len)
    return { start: p.readBigUInt64LE(0), end: p.readBigUInt64LE(8), kind: p.readUInt32LE(28) }
  }).filter(v => v.kind === 1 && v.end - v.start >= 400n * 1024n)
  // a page record of the counter's 400 KiB array (private anonymous memory of its own), preceded
  // by a forged copy of it holding garbage: the process computes on right only if the later
  // record wins
  assert.equal(anon.length, 1, 'the array is a region of its own')
  const p = recs.find(r => r.type === 7 && good.readBigUInt64LE(r.off + 16) >= anon[0].start && good.readBigUInt64LE(r.off + 16) < anon[0].end)
  assert.ok(p !== undefined, 'a page record of the array')
  const len = Number(good.readBigUInt64LE(p.off + 24))
  const dup = Buffer.from(good.subarray(p.off, p.off + 16 + p.len + 4))
  dup.fill(0xa5, 32, 16 + p.len)
  dup.writeUInt32LE(crc32c(dup.subarray(0, 16 + p.len)), 16 + p.len)
  const e = recs[recs.length - 1]
  const end = Buffer.from(good.subarray(e.off))
  end.writeUInt32LE(end.readUInt32LE(16) + 1, 16)
  end.writeBigUInt64LE(end.readBigUInt64LE(24) + BigInt(dup.length), 24)
  end.writeBigUInt64LE(end.readBigUInt64LE(32) + BigInt(len / 4096), 32)
  end.writeUInt32LE(crc32c(end.subarray(0, 16 + e.len)), 16 + e.len)
  writeFileSync(lab.path('twice.img'), Buffer.concat([good.subarray(0, p.off), dup, good.subarray(p.off, e.off), end]))
  const out = lab.path('twice.out')
  const r = lab.track(await restore(lab.path('twice.img'), { stdio: ['ignore', lab.open(out, 'w'), 'ignore'] }))
  assert.equal(r.stats.fill, 'uffd')
  assert.equal(r.stats.uffd_eexist, String(len / 4096))
  assert.deepEqual(await r.exited, { code: 7, signal: null })
  const ref = reference(bin, args).out
  const rest = readFileSync(out, 'utf8')
  assert.match(rest, /^(round \d+ [0-9a-f]{16}\n)*done [0-9a-f]{16} rseq ok\n$/)
  assert.ok(ref.endsWith(rest), `the restored process went on as the original did:\n${rest}`)
})

test('a kernel without userfaultfd (ENOSYS): every page goes through /proc/PID/mem, and STAT says why', async () => {
  const out = lab.path('nouffd.out')
  process.env.HPC_PPM_TEST_FAULT = 'no-userfaultfd'
  const rp = restore(lab.path('good.img'), { stdio: ['ignore', lab.open(out, 'w'), 'ignore'] })
  delete process.env.HPC_PPM_TEST_FAULT
  const r = lab.track(await rp)
  assert.equal(r.stats.fill, 'pwrite')
  assert.equal(r.stats.fill_why, 'userfaultfd:ENOSYS')
  assert.equal(r.stats.uffd_pages, '0')
  assert.ok(Number(r.stats.mem_pages) >= 100, `pages through /proc/PID/mem: ${r.stats.mem_pages}`)
  assert.deepEqual(await r.exited, { code: 7, signal: null })
  const rest = readFileSync(out, 'utf8')
  assert.match(rest, /^(round \d+ [0-9a-f]{16}\n)*done [0-9a-f]{16} rseq ok\n$/)
  assert.ok(reference(bin, args).out.endsWith(rest), `the restored process went on as the original did:\n${rest}`)
})

test('a pre-copy image: another version, a damaged or missing round, a range never sent are refused and leave nothing behind', async () => {
  const bin = lab.compile('dirtier')
  const stop = lab.path('stop-pre')
  const s = lab.start(bin, ['8', '1', '2000', stop], ['ignore', 'pipe', 'pipe'])
  await waitFor(() => lines(s.out) >= 1, 10000, 'dirtier ready')
  await dump(s.pid, lab.path('pre.img'), { leaveRunning: true, precopy: true })
  writeFileSync(stop, '')
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  const img = readFileSync(lab.path('pre.img'))
  const recs = records(img)
  assert.equal(recs[0].type, 14, 'PRECOPY first')
  const rounds = recs.filter(r => r.type === 15)
  const valid = recs.filter(r => r.type === 16)
  assert.ok(rounds.length > 0 && valid.length > 0, `${rounds.length} PREPAGES, ${valid.length} PREVALID`)
  assert.equal(recs[rounds.length + 1].type, 1, 'then the HEADER')
  await refused(forge(img, recs[0], b => b.writeUInt32LE(VERSION + 1, 8)), 'pre-v.img', 'EPROTO', new RegExp(`version ${VERSION + 1} is not supported`))
  const bad = Buffer.from(img)
  bad[rounds[0].off + 16 + 16 + 5] ^= 1
  await refused(bad, 'pre-bad.img', 'EBADMSG', /checksum mismatch/)
  // without its rounds, the first PREVALID range names pages that were never sent (the trailer's
  // counts made to agree: else the reader thread, which checks them ahead, may refuse it first)
  const end = rounds[rounds.length - 1]
  const from = rounds[0].off
  const to = end.off + 16 + end.len + 4
  const cut = Buffer.concat([img.subarray(0, from), img.subarray(to)])
  const trailer = records(cut).find(r => r.type === 8) as Rec // (END)
  const fixed = forge(cut, trailer, b => {
    b.writeUInt32LE(b.readUInt32LE(0) - rounds.length, 0)
    b.writeBigUInt64LE(b.readBigUInt64LE(8) - BigInt(to - from), 8)
  })
  await refused(fixed, 'pre-cut.img', 'EBADMSG', /was never sent/)
  // a PREVALID range where the image maps nothing
  await refused(forge(img, valid[0], b => { b.writeBigUInt64LE(0x10000n, 0) }), 'pre-where.img', 'EBADMSG', /outside the image's regions/)
})
