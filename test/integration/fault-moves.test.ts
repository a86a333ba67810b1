// Moves that fail or stall, between real daemons in network namespaces: each ends with the process
// running in exactly one place, tracked by its deputy (issue 9).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { alive, failedMove, guests, moveTo, startJob, where } from '../helpers/jobs.js'

let lab: Lab
let bins: Bins
let speaker: string
let launcher: string

before(async () => {
  bins = new Bins()
  speaker = bins.compile('speaker')
  launcher = bins.compile('launch')
  spawnSync('chmod', ['755', bins.dir]) // a job that drops to another uid runs them too
  lab = await Lab.create({ nodes: 3, tag: 'fmov', interval: 0.25, hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '2', '--no-balance'], env: { DEBUG: 'hpcfs:home,hpcfs:guest,hpcfs:transfer' } })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

test('a move home that fails leaves the process running where it was, listed there, its signals and end relayed', async () => {
  // stdout is a root-owned file opened before the job dropped to nobody: node 2 reopens it (the
  // restore sets the credentials last) but the original at home, nobody already, cannot
  const file = join(bins.dir, 'rootout')
  const job = startJob(lab, launcher, bins.dir, speaker, ['100000', '20000', '0'], { stdout: file, as: 65534 })
  const size = (): number => statSync(file).size
  try {
    await until('output', () => size() > 0)
    await moveTo(lab, job.pid, 2)
    const err = await failedMove(lab, job.pid, 'home')
    assert.match(err, /Permission denied/)
    assert.equal(await where(lab, job.pid), '2', 'it runs on node 2 again')
    assert.equal(guests(lab, 2).length, 1, 'node 2 lists it in remote/')
    const guest = guests(lab, 2)[0]
    assert.equal((await lab.node(2).read(`remote/${guest}/from`)).trim(), '1')
    const seen = size()
    await until('output flows on node 2', () => size() > seen, 10_000)
    process.kill(job.pid, 'SIGTERM')
    assert.deepEqual(await Promise.race([job.exited, new Promise(resolve => setTimeout(() => resolve('hung'), 15_000))]), { code: null, signal: 'SIGTERM' })
    await until('the guest gone from node 2', () => guests(lab, 2).length === 0 && !alive(guest))
    assert.match(readFileSync(file, 'utf8'), /^line 0 /)
  } finally { job.close() }
})
