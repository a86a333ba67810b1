// The hpc-ppm command: check with reasons and exit status, dump and restore through files and
// through - (a pipe from one command into the other), info, hostinfo, misuse.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { IMG_VERSION, Lab, lines, reference, waitFor } from './harness.js'

const lab = new Lab()
after(() => lab.cleanup())
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'hpc-ppm.js')

function run (args: string[], input?: Buffer): { code: number | null, out: string, err: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, maxBuffer: 1 << 28 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

test('check prints reasons and exits 3; a movable process exits 0', async () => {
  const threads = lab.start(lab.compile('threads'), ['30', 'files'])
  await waitFor(() => threads.err.includes('ready'), 5000, 'thread')
  const r = run(['check', String(threads.pid)])
  assert.equal(r.code, 3)
  assert.match(r.out, /^thread-unshared: thread \d+ has a descriptor table of its own/m)
  const c = lab.start(lab.compile('counter'), ['1000000', '100', '0', '20000'])
  await waitFor(() => lines(c.out) >= 1, 5000, 'output')
  const ok = run(['check', String(c.pid)])
  assert.equal(ok.code, 0)
  assert.equal(ok.out, '')
  threads.child.kill('SIGKILL')
  c.child.kill('SIGKILL')
  await threads.exited
  await c.exited
})

test('dump - | restore -: moved through a pipe between two commands, same pid, same output', async () => {
  const bin = lab.compile('counter')
  const args = ['25', '400', '3', '40000']
  const ref = reference(bin, args)
  const out = lab.path('cli.out')
  const s = lab.start(bin, args, ['ignore', lab.open(out, 'w'), 'ignore'])
  await waitFor(() => readFileSync(out, 'utf8').split('\n').length > 4, 5000, 'output')
  const pid = s.pid
  // sh is the pipeline; the test stays the original's parent and reaps it, so the pid frees up
  const p = spawn('sh', ['-c', `"${process.execPath}" "${cli}" dump ${pid} - | "${process.execPath}" "${cli}" restore -`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let so = ''
  let se = ''
  p.stdout.on('data', (b: Buffer) => { so += b.toString() })
  p.stderr.on('data', (b: Buffer) => { se += b.toString() })
  const [code] = await Promise.all([new Promise(resolve => p.on('close', resolve)), s.exited])
  assert.equal(code, 0, se)
  assert.match(se, /bytes, \d+ pages, frozen [\d.]+ ms/)
  const newPid = Number(so.trim())
  assert.equal(newPid, pid, `restore printed ${so}`)
  await waitFor(() => readFileSync(out, 'utf8') === ref.out, 15000, 'restored run to finish the output')
  await waitFor(() => { try { readFileSync(`/proc/${newPid}/stat`); return false } catch { return true } }, 15000, 'restored process to end')
})

test('dump to a file, info, restore from the file; hostinfo', async () => {
  const bin = lab.compile('speaker')
  const s = lab.start(bin, ['100000', '20000', '0'])
  await waitFor(() => lines(s.out) >= 3, 5000, 'output')
  const img = lab.path('cli.img')
  assert.equal(run(['dump', String(s.pid), img, '--leave-running']).code, 0)
  const i = run(['info', img])
  assert.equal(i.code, 0, i.err)
  assert.match(i.out, /^comm: speaker$/m)
  assert.match(i.out, new RegExp(`^version: ${IMG_VERSION}$`, 'm'))
  assert.match(i.out, /^threads: 1$/m)
  assert.match(run(['hostinfo']).out, /^xcr0=0x[0-9a-f]+,xsave=\d+,cpuid=[0-9a-f.]+,vdso=[0-9a-f.]+\n$/)
  // the restored process inherits the command's stdout: the pid line and its lines interleave
  const p = spawn(process.execPath, [cli, 'restore', img, '--new-pid'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let so = ''
  p.stdout.on('data', (b: Buffer) => { so += b.toString() })
  const [code] = await once(p, 'exit')
  assert.equal(code, 0)
  await waitFor(() => /^\d+$/m.test(so), 5000, 'pid line')
  const pid = Number((/^(\d+)$/m.exec(so) as RegExpExecArray)[1])
  assert.ok(pid > 0 && pid !== s.pid, so)
  assert.equal(readFileSync(`/proc/${pid}/comm`, 'utf8'), 'speaker\n')
  await waitFor(() => /^line \d+ [0-9a-f]+$/m.test(so), 5000, 'output of the restored process')
  process.kill(pid, 'SIGKILL')
  process.kill(s.pid, 'SIGKILL')
  await s.exited
})

test('misuse prints usage and exits 2; failures exit 1 with a message', () => {
  for (const args of [[], ['check'], ['check', 'abc'], ['dump', '123'], ['frobnicate'], ['restore', 'x', '--clock', 'sideways']]) {
    const r = run(args)
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`)
    assert.match(r.err, /hpc-ppm/)
  }
  const missing = run(['restore', lab.path('no-such.img')])
  assert.equal(missing.code, 1)
  assert.match(missing.err, /no-such\.img/)
  const gone = run(['dump', '4000000', lab.path('x.img')])
  assert.equal(gone.code, 3)
  assert.match(gone.err, /no-process/)
})
