// Moves with pre-copy between real daemons in network namespaces (hpcd --precopy, docs/ppm.md
// "Pre-copy"): a process that keeps writing its memory moves home -> 2 -> home -> 2, each time
// with its memory copied while it runs, and ends exactly as an undisturbed run of as many steps;
// a process that ends by itself during a pre-copy round (out, N -> home, N -> M) was not dumped:
// its end reaches its parent.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { fifoSink } from '../helpers/fifo.js'
import { guests, moveTo as moveJob } from '../helpers/jobs.js'

let lab: Lab
let bins: Bins
let dirtier: string
let launcher: string

before(async () => {
  bins = new Bins()
  dirtier = bins.compile('dirtier')
  launcher = bins.compile('launch')
  // pre-copy for processes of 16 MiB and more; the helpers' STAT lines go to the daemons' logs
  lab = await Lab.create({ nodes: 3, tag: 'precp', interval: 0.25, hpcdArgs: () => ['--down-after', '2', '--no-balance', '--precopy', '16'], env: { DEBUG: 'hpcfs:migrate,hpcfs:ppm' } })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

/** Writes goto at node 1 and waits until the move is done (test/helpers/jobs.ts). */
const moveTo = async (pid: number, target: number | 'home'): Promise<void> => { await moveJob(lab, pid, target) }

/** the pre-copy dumps a daemon's helpers reported: rounds and fallback of each */
function precopies (node: number): string[] {
  return [...lab.node(node).log().matchAll(/precopy_rounds=(\d+) .*?precopy_fallback=(\d)/g)].map(m => `${m[1]}/${m[2]}`)
}

test('a process writing its memory moves with pre-copy home -> 2 -> home -> 2 and ends as an undisturbed run', async () => {
  const stop = join(bins.dir, 'stop')
  const sink = fifoSink(bins.dir, 'out')
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, dirtier, '32', '2', '2000', stop], { stdio: ['ignore', sink.fd, sink.fd] })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  try {
    await until('ready', () => sink.out().startsWith('ready'))
    for (const target of [2, 'home', 2] as const) await moveTo(child.pid as number, target)
    // two deputies at home (out, out again), one dump on node 2 (home), none fell back
    const home = precopies(1)
    const away = precopies(2)
    assert.equal(home.length, 2, `pre-copies at home: ${home.join(' ')}`)
    assert.equal(away.length, 1, `pre-copies on node 2: ${away.join(' ')}`)
    for (const p of [...home, ...away]) assert.match(p, /^\d+\/0$/)
    writeFileSync(stop, '')
    await until('the job ended', () => child.exitCode !== null || child.signalCode !== null, 30_000)
    assert.equal(await exited, 0)
    const end = await until('end line', () => /^steps (\d+) .*$/m.exec(sink.out()) ?? undefined, 10_000)
    const ref = spawnSync(dirtier, ['32', '2', '0', end[1]], { encoding: 'utf8' }).stdout
    assert.equal(end[0], /^steps .*$/m.exec(ref)?.[0])
  } finally {
    sink.close()
    if (child.exitCode === null) child.kill('SIGKILL')
  }
})

test('a process that ends by itself during a pre-copy round was not dumped: its exit status reaches its parent (out, N -> home, N -> M)', async () => {
  for (const [route, target] of [['out', 2], ['N -> home', 'home'], ['N -> M', 3]] as const) {
    // the dirtier ends with 7 as soon as a pre-copy round write-protects its memory, once `armed`
    // exists; it looks every 2 ms, and the first round of 64 MiB takes tens of ms (time to be seen
    // on a busy machine too)
    const armed = join(bins.dir, `armed-${target}`)
    const sink = fifoSink(bins.dir, `ends-${target}`)
    const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', launcher, dirtier, '64', '2', '2000', join(bins.dir, 'never')],
      { stdio: ['ignore', sink.fd, sink.fd], env: { ...process.env, DIRTIER_EXIT_ON_WP: armed } })
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
    const pid = child.pid as number
    try {
      await until('ready', () => sink.out().startsWith('ready'))
      if (route !== 'out') await moveTo(pid, 2)
      writeFileSync(armed, '')
      // the dump's first round starts while it runs, and it ends during it: some of its image went,
      // but it was never stopped for its dump (out: the original at home; else the guest on node 2,
      // whose end goes home over its connection, or over a new one if the image broke that off)
      await lab.node(1).write(`proc/${pid}/goto`, `${target}\n`)
      await until(`the job ended (${route})`, () => child.exitCode !== null || child.signalCode !== null, 30_000)
      assert.deepEqual(await exited, { code: 7, signal: null }, `its own exit status (${route})`)
      await until(`no guest left (${route})`, () => guests(lab, 2).length === 0 && guests(lab, 3).length === 0, 10_000)
    } finally {
      sink.close()
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }
})
