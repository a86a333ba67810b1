// Daemons killed with SIGKILL where a guest runs, between real daemons in network namespaces: the
// guest survives under its keeper and its node's next daemon adopts it, its home takes it up again;
// a node that does not come back ends in the one documented loss, with nothing left behind (issue 9).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab, labNames } from '../../src/lab/lab.js'
import { netnsPids } from '../../src/lab/sys.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { alive, guests, moveTo, reference, startJob, where } from '../helpers/jobs.js'
import { LOST_STATUS } from '../../src/migrate/migrator.js'

const LEASE = 2 // s: hpcd --guest-lease (a home waits 2 × 2 + 5 = 9 s for a node to come back)
/** hpcd --test-fault of node 2's daemon, from its next start */
let fault2 = ''
/** HPC_PPM_TEST_SAVE_GATE (native/frozen.c): present, the copy of a frozen guest is written at once */
const gate = (): string => join(bins.dir, 'save-gate')
let lab: Lab
let bins: Bins
let speaker: string
let walker: string
let launcher: string

before(async () => {
  bins = new Bins()
  speaker = bins.compile('speaker')
  walker = bins.compile('walker')
  launcher = bins.compile('launch')
  lab = await Lab.create({
    nodes: 3,
    tag: 'fcrash',
    interval: 0.25,
    hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '2', '--no-balance', '--link-timeout', '3', '--guest-lease', String(LEASE), ...(id === 2 && fault2 !== '' ? ['--test-fault', fault2] : [])],
    // (a frozen guest's copy is written only once the gate exists: a test holds it back)
    env: { DEBUG: 'hpcfs:home,hpcfs:guest,hpcfs:keeper,hpcfs:state', HPC_PPM_TEST_SAVE_GATE: gate() }
  })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

/** Has pid ended (gone, or a zombie its keeper has not reaped yet)? */
function ended (pid: number): boolean {
  try { return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').startsWith('Z') } catch { return true }
}

/** What runs in node n's namespace besides its daemon and the daemon's FUSE watchdog. */
async function others (n: number): Promise<string[]> {
  return (await netnsPids(lab.node(n).ns as string)).filter(p => p !== lab.node(n).pid)
    .map(p => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() } catch { return '' } })
    .filter(c => c !== '' && !c.startsWith('fusermount ') && !c.endsWith('hpc-ppm-helper standby')) // (its watchdog, its idle helpers)
}

test('kill -9 of the daemon where a guest runs: the guest runs on, the restarted daemon adopts it, output and end reach home, nothing lost or doubled', async () => {
  const args = ['300', '20000', '7']
  const job = startJob(lab, launcher, bins.dir, speaker, args)
  try {
    await until('output', () => job.out().length > 0)
    await moveTo(lab, job.pid, 2)
    const guest = guests(lab, 2)[0]
    assert.ok(guest > 0)
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
    assert.ok(alive(guest), 'the guest outlives its daemon')
    assert.ok(alive(job.pid), 'the deputy waits for the node')
    await lab.node(2).start()
    await lab.waitAllUp()
    await until('the guest adopted and listed again', () => guests(lab, 2).includes(guest), 15_000)
    assert.equal((await lab.node(2).read(`remote/${guest}/from`)).trim(), '1')
    assert.equal(await where(lab, job.pid), '2')
    const seen = job.out().length
    await until('output flows again', () => job.out().length > seen, 15_000)
    assert.deepEqual(await job.exited, { code: 7, signal: null })
    await until('all output, once', () => job.out() === reference(speaker, args), 5000)
    await until('nothing left on node 2', async () => guests(lab, 2).length === 0 && (await others(2)).length === 0 && readdirSync(join(lab.tmp, 'state', '2', 'guests')).length === 0, 10_000)
  } finally { job.close() }
})

test('kill -9 of the source daemon while the image streams from it to another node: the process stays where it was and is taken up again', async () => {
  const job = startJob(lab, launcher, bins.dir, walker, ['200', '100000', '20000', '0'])
  const intoNode3 = (): number => Number(readFileSync(`/sys/class/net/${labNames('fcrash').veth(3)}/statistics/tx_bytes`, 'utf8'))
  try {
    await until('the walker ready', () => job.out().includes('ready\n'), 20_000)
    await moveTo(lab, job.pid, 2)
    const guest = guests(lab, 2)[0]
    const before = intoNode3()
    await lab.node(1).write(`proc/${job.pid}/goto`, '3\n')
    await until('20 MB on the way to node 3', async () => {
      if (intoNode3() - before > 20 << 20) return true
      if (Date.now() % 50 < 3 && (await where(lab, job.pid)) !== 'migrating') throw new Error(`the move ended: where ${await where(lab, job.pid)}, ${await lab.node(1).read(`proc/${job.pid}/error`)}`)
      return undefined
    }, 20_000, 2)
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
    await lab.node(2).start()
    await lab.waitAllUp()
    await until('the move over, the process on node 2 again', async () => (await where(lab, job.pid)) === '2' && guests(lab, 2).includes(guest), 20_000, 100)
    assert.match((await lab.node(1).read(`proc/${job.pid}/error`)).trim(), /node 2 could not send it|node 3 could not run it/)
    assert.deepEqual(guests(lab, 3), [], 'no copy on node 3')
    const seen = job.out().length
    await until('the walker walks on', () => job.out().length > seen, 15_000)
    process.kill(job.pid, 'SIGTERM')
    assert.deepEqual(await job.exited, { code: null, signal: 'SIGTERM' })
    await until('nothing left on nodes 2 and 3', async () => guests(lab, 2).length === 0 && (await others(2)).length === 0 && (await others(3)).length === 0, 10_000)
  } finally { job.close() }
})

test('node 2\'s daemon dies while a guest that left it (to node 3, then home) is kept frozen as its copy: the dump\'s helper writes the copy (the next daemon, started meanwhile, waits for it) and removes it; the copy restored held is refused by home, which keeps the one that runs; all output once', async () => {
  const args = ['400', '20000', '5']
  const job = startJob(lab, launcher, bins.dir, speaker, args)
  const log2 = (): string => readFileSync(lab.node(2).logFile as string, 'utf8')
  const restart2 = async (): Promise<void> => {
    if (lab.node(2).running) { lab.node(2).kill('SIGKILL'); await lab.node(2).waitExit() }
    await lab.node(2).start()
    await lab.waitAllUp()
  }
  try {
    fault2 = 'crash-frozen'
    await restart2()
    await until('output', () => job.out().length > 0)
    for (const target of [3, 'home'] as const) {
      await moveTo(lab, job.pid, 2)
      const guest = guests(lab, 2)[0]
      const held = log2().split('its copy runs held').length
      const waited = log2().split('waiting for its copy').length
      // to node 3: the copy is written at once; home: only once the next daemon waits for it
      if (target === 3) writeFileSync(gate(), ''); else rmSync(gate(), { force: true })
      await lab.node(1).write(`proc/${job.pid}/goto`, `${target}\n`)
      await lab.node(2).waitExit(20_000)
      assert.equal(lab.node(2).lastExit?.signal, 'SIGKILL', `node 2 died of its test fault (${target})`)
      if (target === 3) {
        await until(`the guest removed by its dump's helper, once its copy is written (${target})`, () => ended(guest), 15_000)
        await restart2()
      } else {
        assert.ok(!ended(guest), 'still held by its dump\'s helper')
        await restart2()
        await until('the next daemon waits for the copy', () => log2().split('waiting for its copy').length > waited, 15_000)
        assert.ok(!ended(guest), 'still held while the next daemon waits')
        writeFileSync(gate(), '')
        await until('the guest removed by its dump\'s helper, once its copy is written', () => ended(guest), 15_000)
      }
      await until(`the move done (${target})`, async () => (await where(lab, job.pid)) === (target === 'home' ? '0' : '3'), 20_000)
      await until(`node 2's copy refused and removed (${target})`, async () => guests(lab, 2).length === 0 && readdirSync(join(lab.tmp, 'state', '2', 'guests')).length === 0, 20_000)
      assert.ok(log2().split('its copy runs held').length > held, `node 2's next daemon restored the copy (${target})`)
      if (target === 3) await moveTo(lab, job.pid, 'home')
    }
    assert.deepEqual(await job.exited, { code: 5, signal: null })
    await until('all output, once', () => job.out() === reference(speaker, args), 5000)
  } finally {
    job.close()
    fault2 = ''
    await restart2()
  }
})

test('a node whose daemon does not come back: its guest is killed at the lease, the deputy reports the loss and exits 112, nothing is left', async () => {
  const job = startJob(lab, launcher, bins.dir, speaker, ['100000', '20000', '0'])
  try {
    await until('output', () => job.out().length > 0)
    await moveTo(lab, job.pid, 2)
    const guest = guests(lab, 2)[0]
    const keeper = Number(readFileSync(`/proc/${guest}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1])
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
    const t0 = Date.now()
    await until('the guest killed by its keeper at the lease', () => !alive(guest) && !alive(keeper), (LEASE + 10) * 1000)
    assert.deepEqual(await job.exited, { code: LOST_STATUS, signal: null })
    const took = Date.now() - t0
    assert.ok(took >= (2 * LEASE + 5) * 1000 - 1500, `the deputy waited ${took} ms for the node`)
    assert.match(job.out(), new RegExp(`hpcfs: process ${job.pid} was lost with node 2\\n$`))
    assert.deepEqual(await others(2), [])
  } finally {
    job.close()
    // back, and heard by every node again before a later test moves anything to it
    if (!lab.node(2).running) { await lab.node(2).start(); await lab.waitAllUp() }
  }
})
