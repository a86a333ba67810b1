// `npm start` (scripts/demo.ts) over a running demo: the second refuses, says how to stop the first
// and changes nothing; stopping the first names the jobs it ends, and ends them.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT, cleanupStale } from '../../src/lab/lab.js'
import { isRoot, netnsPids, pidAlive, poll, run } from '../../src/lab/sys.js'

const TAG = 'dmt'
const DEMO = join(REPO_ROOT, 'dist/scripts/demo.js')
const work = await mkdtemp(join(tmpdir(), 'hpcfs-demotest-'))
after(async () => {
  await cleanupStale(TAG).catch(() => undefined)
  await rm(work, { recursive: true, force: true })
})

test('a second demo refuses and names the first; stopping the first lists the jobs it ends', { skip: !isRoot() && 'needs root (network namespaces)' }, async () => {
  const mnt = join(work, 'mnt')
  const args = [DEMO, '--nodes', '2', '--tag', TAG, '--mnt', mnt]
  const first = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  first.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  first.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | string | null>(resolve => first.once('exit', (c, s) => resolve(c ?? s)))
  let job: ReturnType<typeof spawn> | undefined
  try {
    await poll('first demo up', async () => {
      if (first.exitCode !== null) throw new Error(`demo exited ${first.exitCode}: ${out}`)
      return out.includes('All 2 nodes are up')
    }, { timeoutMs: 90_000 })
    const state = JSON.parse(await readFile(join(tmpdir(), `hpcfs-labstate-${TAG}.json`), 'utf8')) as { pids: Array<{ pid: number }> }
    const daemons = state.pids.map(p => p.pid)
    assert.equal(daemons.length, 2)

    const second = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000 })
    assert.equal(second.status, 1, second.stdout + second.stderr)
    assert.match(second.stderr, /a demo is already running \(pid (\d+)/)
    assert.match(second.stderr, new RegExp(`kill ${first.pid!}\\b`))
    assert.match(second.stderr, /Nothing was changed/)
    assert.doesNotMatch(second.stdout, /starting 2 nodes/)
    // The first demo's daemons still serve their trees.
    assert.ok(daemons.every(pidAlive), 'the first demo\'s daemons survive')
    assert.equal((await run('cat', [join(mnt, 'hpc2', 'admin', 'mospe')], { timeoutMs: 5000 })).stdout.trim(), '2')

    // A job in node 1's namespace, as the README's walk-through starts them.
    job = spawn('nsenter', [`--net=/run/netns/hpc-${TAG}-1`, '--', 'sleep', '4242'], { stdio: 'ignore' })
    const jobExit = new Promise<string | null>(resolve => job!.once('exit', (_c, s) => resolve(s)))
    await poll('job in node 1\'s namespace', async () => (await netnsPids(`hpc-${TAG}-1`)).includes(job!.pid!), { timeoutMs: 10_000 })

    first.kill('SIGTERM')
    assert.equal(await exited, 0, out)
    assert.match(out, /ending 1 job:/)
    assert.match(out, new RegExp(`node 1 +pid ${job.pid!} +sleep 4242`))
    assert.equal(await jobExit, 'SIGKILL')
    assert.ok(daemons.every(p => !pidAlive(p)), 'daemons stopped')
  } finally {
    if (first.exitCode === null) first.kill('SIGKILL')
    if (job !== undefined && job.exitCode === null && job.signalCode === null) job.kill('SIGKILL')
  }
})
