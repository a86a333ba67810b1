// Unmodified distribution programs at work on real input, checkpointed mid-run several times and
// moved between fresh processes and the hollowed original: gzip, sha256sum, python3, perl.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { Lab, chain, fileSize, lines, makeInput, reference } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())

test('gzip -c on a large file: moved three times, the .gz is byte-identical', async () => {
  const input = lab.path('gz.in')
  await makeInput(input, 24 << 20)
  const refOut = lab.path('gz-ref.gz')
  const r = reference('sh', ['-c', `exec gzip -c "${input}" > "${refOut}"`])
  assert.equal(r.code, 0)
  const out = lab.path('gz.gz')
  const s = lab.start('gzip', ['-c', input], ['ignore', lab.open(out, 'w'), 'pipe'])
  const total = statSync(refOut).size
  await chain(lab, s, { progress: () => fileSize(out), marks: [Math.floor(total * 0.1), Math.floor(total * 0.35), Math.floor(total * 0.6)], timeoutMs: 60000 })
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.ok(readFileSync(out).equals(readFileSync(refOut)), '.gz identical to the reference')
})

test('sha256sum hashing the same file many times: every hash right', async () => {
  const input = lab.path('sha.in')
  await makeInput(input, 24 << 20)
  const args = Array(24).fill(input)
  const ref = reference('sha256sum', args)
  assert.equal(ref.code, 0)
  const out = lab.path('sha.out')
  const s = lab.start('sha256sum', args, ['ignore', lab.open(out, 'w'), 'pipe'])
  // progress: lines done * file size + position in the current file
  const size = statSync(input).size
  const prog = (): number => {
    const done = existsSync(out) ? lines(readFileSync(out, 'utf8')) : 0
    return done * size
  }
  await chain(lab, s, { progress: prog, marks: [2 * size, 7 * size, 13 * size], timeoutMs: 60000 })
  assert.deepEqual(await s.exited, { code: 0, signal: null })
  assert.equal(readFileSync(out, 'utf8'), ref.out)
})

test('python3 script (hashlib, dicts, time.sleep, file output) moved mid-run', async () => {
  const script = lab.path('t.py')
  writeFileSync(script, `import hashlib, time, sys
h = hashlib.sha256()
d = {}
out = open(sys.argv[1], 'w')
for i in range(16):
    for j in range(20000):
        d[j % 977] = d.get(j % 977, 0) + i * j
    h.update(repr(sorted(d.items())).encode())
    print(i, h.hexdigest()[:16], flush=True)
    out.write('%d %s\\n' % (i, h.hexdigest()))
    time.sleep(0.08)
out.close()
sys.exit(3)
`)
  const ref = reference('/usr/bin/python3', [script, lab.path('py-ref.txt')])
  assert.equal(ref.code, 3)
  const s = lab.start('/usr/bin/python3', [script, lab.path('py.txt')], ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [2, 7, 12], relay: true })
  assert.deepEqual(await s.exited, { code: 3, signal: null })
  assert.equal(s.out, ref.out)
  assert.equal(readFileSync(lab.path('py.txt'), 'utf8'), readFileSync(lab.path('py-ref.txt'), 'utf8'))
})

test('perl script (Digest::MD5, hashes, sleeps) moved mid-run', async () => {
  const script = lab.path('t.pl')
  writeFileSync(script, `use strict; use Digest::MD5 qw(md5_hex);
$| = 1;
my %h; my $acc = '';
for my $i (0..15) {
  for my $j (0..20000) { $h{$j % 613} += $i * $j; }
  $acc = md5_hex($acc . join(',', map { "$_=$h{$_}" } sort { $a <=> $b } keys %h));
  print "$i $acc\\n";
  select(undef, undef, undef, 0.08);
}
exit 5;
`)
  const ref = reference('perl', [script])
  assert.equal(ref.code, 5)
  const s = lab.start('perl', [script], ['ignore', 'pipe', 'pipe'])
  await chain(lab, s, { progress: () => lines(s.out), marks: [2, 7, 12], relay: true })
  assert.deepEqual(await s.exited, { code: 5, signal: null })
  assert.equal(s.out, ref.out)
})
