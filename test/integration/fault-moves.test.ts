// Moves that fail or stall, between real daemons in network namespaces: each ends with the process
// running in exactly one place, tracked by its deputy (issue 9).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Lab, labNames } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { alive, failedMove, guests, moveTo, startJob, where } from '../helpers/jobs.js'
import { netnsPids, run } from '../../src/lab/sys.js'

const LINK_TIMEOUT = 3 // s: hpcd --link-timeout of the nodes
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
  spawnSync('chmod', ['755', bins.dir]) // a job that drops to another uid runs them too
  lab = await Lab.create({ nodes: 3, tag: 'fmov', interval: 0.25, hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '2', '--no-balance', '--link-timeout', String(LINK_TIMEOUT)], env: { DEBUG: 'hpcfs:home,hpcfs:guest,hpcfs:transfer' } })
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

test('a move cut off by a partition mid-stream is abandoned within the link timeout; the process runs on at home, one copy', async () => {
  const job = startJob(lab, launcher, bins.dir, walker, ['200', '100000', '20000', '0'])
  const veth = labNames('fmov').veth(2)
  const intoNode2 = (): number => Number(readFileSync(`/sys/class/net/${veth}/statistics/tx_bytes`, 'utf8'))
  // slow the way into node 2 down (when tbf is there) so that the cut surely falls in the stream
  const slowed = (await run('tc', ['qdisc', 'add', 'dev', veth, 'root', 'tbf', 'rate', '400mbit', 'burst', '256kb', 'latency', '500ms'])).code === 0
  try {
    await until('the walker ready', () => job.out().includes('ready\n'), 20_000)
    const before = intoNode2()
    await lab.node(1).write(`proc/${job.pid}/goto`, '2\n')
    await until('20 MB of the image on the way', () => {
      if (intoNode2() - before > 20 << 20) return true
      return undefined
    }, 20_000, 2)
    await lab.partition(2)
    const cut = Date.now()
    assert.equal(await where(lab, job.pid), 'migrating', 'cut during the move')
    const err = await until('the move abandoned', async () => {
      const e = (await lab.node(1).read(`proc/${job.pid}/error`)).trim()
      return e && (await where(lab, job.pid)) !== 'migrating' ? e : undefined
    }, 30_000, 100)
    const took = Date.now() - cut
    assert.ok(took < (LINK_TIMEOUT + 7) * 1000, `abandoned after ${took} ms (link timeout ${LINK_TIMEOUT} s)`)
    assert.match(err, /silent|closed|broke/)
    assert.equal(await where(lab, job.pid), '0', 'it runs at home')
    const seen = job.out().length
    await until('the walker walks on at home', () => job.out().length > seen, 10_000)
    await lab.partition(2, false)
    // node 2 kept nothing: no guest, no helper left in its namespace
    let left = ''
    await until('node 2 left with its daemon alone', async () => {
      const cmds = (await netnsPids(lab.node(2).ns as string)).filter(p => p !== lab.node(2).pid)
        .map(p => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ') } catch { return '' } })
        .filter(c => c !== '' && !c.startsWith('fusermount ') && !c.trim().endsWith('hpc-ppm-helper standby')) // (the daemon's FUSE watchdog, its idle helpers: ppm.ts useStandby)
      left = cmds.join('; ')
      return guests(lab, 2).length === 0 && cmds.length === 0
    }, 15_000).catch(e => { throw new Error(`${(e as Error).message}: ${left}`) })
    if (slowed) await run('tc', ['qdisc', 'del', 'dev', veth, 'root'])
    await lab.waitAllUp({ via: [1] })
    await moveTo(lab, job.pid, 2) // and it can move again
    process.kill(job.pid, 'SIGTERM')
    assert.equal((await job.exited).signal, 'SIGTERM')
  } finally {
    job.close()
    await lab.partition(2, false)
    if (slowed) await run('tc', ['qdisc', 'del', 'dev', veth, 'root'])
  }
})

test('a guest killed while its dump holds it stopped (by root, or the OOM killer) ends with that signal at home: N -> home, N -> M', async () => {
  for (const target of ['home', 3] as const) {
    const job = startJob(lab, launcher, bins.dir, walker, ['96', '100000', '20000', '0'])
    // the way out of node 2 slowed down (when tbf is there), so that its dump lasts
    let slowed = false
    try {
      await until('the walker ready', () => job.out().includes('ready\n'), 20_000)
      await moveTo(lab, job.pid, 2)
      const [guest] = guests(lab, 2)
      assert.ok(guest !== undefined, 'a guest on node 2')
      slowed = (await lab.exec(2, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', '400mbit', 'burst', '256kb', 'latency', '500ms'])).code === 0
      const state = (): string => { try { return /\) (\S)/.exec(readFileSync(`/proc/${guest}/stat`, 'utf8'))?.[1] ?? '' } catch { return '' } }
      const fromNode2 = (): number => Number(readFileSync(`/sys/class/net/${labNames('fmov').veth(2)}/statistics/rx_bytes`, 'utf8'))
      const before = fromNode2()
      await lab.node(1).write(`proc/${job.pid}/goto`, `${target}\n`)
      // stopped by its dump (the walker sleeps between walks: S, or R; t only under ptrace), and
      // 8 MiB of its image on the way: killed in the middle of its dump
      await until(`the guest's image on the way (to ${target})`, () => state() === 't' && fromNode2() - before > 8 << 20, 10_000, 1)
      process.kill(guest, 'SIGKILL')
      await until(`the job ended (to ${target})`, () => job.child.exitCode !== null || job.child.signalCode !== null, 30_000)
      assert.deepEqual(await job.exited, { code: null, signal: 'SIGKILL' }, `its end as it was (to ${target})`)
      await until(`no guest left (to ${target})`, () => guests(lab, 2).length === 0 && guests(lab, 3).length === 0, 10_000)
    } finally {
      if (slowed) await lab.exec(2, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root'])
      job.close()
    }
  }
})

test('a signal sent at home during an N -> M move that fails (M cut off mid-stream) reaches the process on N once the move is over', async () => {
  const job = startJob(lab, launcher, bins.dir, walker, ['96', '100000', '20000', '0'])
  let slowed = false
  try {
    await until('the walker ready', () => job.out().includes('ready\n'), 20_000)
    await moveTo(lab, job.pid, 2)
    // the way out of node 2 slowed down (when tbf is there), so that its dump to node 3 lasts
    slowed = (await lab.exec(2, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', '400mbit', 'burst', '256kb', 'latency', '500ms'])).code === 0
    const fromNode2 = (): number => Number(readFileSync(`/sys/class/net/${labNames('fmov').veth(2)}/statistics/rx_bytes`, 'utf8'))
    const before = fromNode2()
    await lab.node(1).write(`proc/${job.pid}/goto`, '3\n')
    await until('8 MiB of the image on the way to node 3', () => fromNode2() - before > 8 << 20, 10_000, 1)
    await lab.partition(3)
    try {
      // to the deputy: the process is in transit, the signal waits for the end of the move
      process.kill(job.pid, 'SIGTERM')
      assert.equal(await where(lab, job.pid), 'migrating', 'the signal came during the move')
      const st = await Promise.race([job.exited, new Promise(resolve => setTimeout(() => resolve('hung'), (LINK_TIMEOUT + 15) * 1000))])
      assert.deepEqual(st, { code: null, signal: 'SIGTERM' }, 'it ended of the signal on node 2 once the move had failed')
    } finally { await lab.partition(3, false) }
    await until('no guest left', () => guests(lab, 2).length === 0 && guests(lab, 3).length === 0, 20_000)
    await lab.waitAllUp({ via: [1] })
  } finally {
    if (slowed) await lab.exec(2, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root'])
    job.close()
  }
})

/**
 * A walker (stdout a pipe: relayed home) runs on node 2, which is cut off from its home until its
 * daemon finds the link dead; `whileCut` runs then (the link comes back after it). The guest
 * rejoins its home; every line it wrote must reach home once, in order.
 */
async function cutOff (whileCut: () => Promise<void>, after: () => Promise<void> = async () => {}): Promise<void> {
  const job = startJob(lab, launcher, bins.dir, walker, ['8', '10000000', '10000', '0'], { stdout: 'pipe' })
  const walks = (): number[] => [...job.out().matchAll(/^walk (\d+) /gm)].map(m => Number(m[1]))
  const logged = (re: RegExp): number => (lab.node(2).log().match(re) ?? []).length
  try {
    await until('the walker ready', () => job.out().includes('ready\n'), 20_000)
    await moveTo(lab, job.pid, 2)
    const n0 = walks().length
    await until('output from node 2', () => walks().length > n0 + 10, 15_000)
    const outOfTouch = /guest \d+ is out of touch with its home/g
    const rejoined = /guest \d+ rejoined its home/g
    const [outs, rejoins] = [logged(outOfTouch), logged(rejoined)]
    await lab.partition(2)
    try {
      await until('node 2 finds its home silent', () => logged(outOfTouch) > outs, 20_000, 100)
      await whileCut()
    } finally { await lab.partition(2, false) }
    await after()
    await until('the guest rejoined its home', () => logged(rejoined) > rejoins, 30_000, 100)
    assert.equal(await where(lab, job.pid), '2', 'it runs on node 2 still')
    const n1 = walks().length
    await until('output flows again', () => walks().length > n1 + 10, 15_000)
    process.kill(job.pid, 'SIGTERM')
    assert.equal((await job.exited).signal, 'SIGTERM')
    const w = walks()
    const bad = w.findIndex((x, i) => x !== i)
    assert.equal(bad, -1, `line ${bad} is walk ${w[bad]}: ${bad >= 0 && w.indexOf(w[bad]) < bad ? 'doubled' : 'lines lost'}`)
    assert.ok(w.length > n1 + 10)
  } finally {
    job.close()
    if (!lab.node(2).running) await lab.node(2).start()
    // (node 1 may still count node 2 down after the cut: its gossip picks its targets at random,
    // and the guest's rejoin and output go over TCP; the next test moves a process there at once)
    await lab.waitAllUp()
  }
}

test('a guest cut off from its home longer than the link timeout rejoins it: every line it wrote reaches home once, in order', async () => {
  // lines written into the connection before the link timeout found it dead are sent again after
  // the rejoin (output is acknowledged)
  await cutOff(async () => {})
})

test('the daemon of a guest cut off from its home is killed while it holds output home has not acknowledged: the next daemon sends it from disk, every line once, in order', async () => {
  // what node 2's daemon read during the cut went into a connection that carried nothing and is
  // gone: it is kept, unacknowledged, by that daemon alone (and on disk), which is then killed
  await cutOff(async () => {
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
  }, async () => {
    await lab.node(2).start()
    await lab.waitAllUp()
  })
})

test('memory held for an image is released when the move ends: the daemons\' RSS comes back near where it was', async t => {
  const rss = (n: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${lab.node(n).pid as number}/status`, 'utf8'))?.[1]) * 1024
  const job = startJob(lab, launcher, bins.dir, walker, ['100', '100000', '20000', '0'])
  try {
    await until('the walker ready', () => job.out().includes('ready\n'), 20_000)
    const base = [1, 2, 3].map(rss)
    // home -> 2 (home keeps a copy until 2 runs it), 2 -> home (2 keeps one until home runs it),
    // home -> 2, 2 -> 3 (2 keeps one until 3 runs it)
    for (const target of [2, 'home', 2, 3] as const) await moveTo(lab, job.pid, target)
    const slack = 40 << 20 // the image is 100 MB
    const last = [0, 0, 0]
    await until('every daemon back near its baseline', () => {
      for (const n of [1, 2, 3]) last[n - 1] = rss(n)
      return last.every((r, i) => r < base[i] + slack)
    }, 20_000, 500).catch(e => {
      throw new Error(`${(e as Error).message}: RSS MB before ${base.map(b => Math.round(b / 2 ** 20)).join(' ')}, after ${last.map(b => Math.round(b / 2 ** 20)).join(' ')}`)
    })
    t.diagnostic(`daemon RSS MB before ${base.map(b => Math.round(b / 2 ** 20)).join(' ')}, after ${last.map(b => Math.round(b / 2 ** 20)).join(' ')}`)
    process.kill(job.pid, 'SIGTERM')
    assert.equal((await job.exited).signal, 'SIGTERM')
  } finally { job.close() }
})

test('a guest runs under ids no local user has: a local process of its own uid cannot signal or trace it; its files are still its own; home gives it its ids back', async () => {
  const GUEST_ID_BASE = 0x40000000 // native/ppm.h
  const nobody = 65534
  const file = join(bins.dir, 'own.out')
  spawnSync('sh', ['-c', `: > ${file} && chown ${nobody}:${nobody} ${file}`])
  // it opens its file again for every line: on the guest node too, as itself
  const py = 'import sys, time\nfor i in range(100000):\n    with open(sys.argv[1], "a") as f: f.write(f"{i}\\n")\n    time.sleep(0.02)\n'
  const job = startJob(lab, launcher, bins.dir, '/usr/bin/python3', ['-c', py, file], { as: nobody, stdout: 'pipe' }) // (a root-owned FIFO could not be reopened by nobody at home)
  const size = (): number => statSync(file).size
  const uids = (pid: number): string => (/^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '').split(/\s+/).join(' ')
  const as = (cmd: string[]): { code: number | null, err: string } => { const r = spawnSync('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', ...cmd], { encoding: 'utf8' }); return { code: r.status, err: r.stderr } }
  try {
    await until('it writes', () => size() > 0)
    assert.equal(uids(job.pid), `${nobody} ${nobody} ${nobody} ${nobody}`)
    await moveTo(lab, job.pid, 2)
    const guest = guests(lab, 2)[0]
    assert.equal(uids(guest), `${GUEST_ID_BASE + nobody} ${nobody} ${GUEST_ID_BASE + nobody} ${nobody}`, 'real and saved uid a guest id, effective and file system uid its own')
    const kill = as(['kill', '-STOP', String(guest)])
    assert.notEqual(kill.code, 0)
    assert.match(kill.err, /not permitted/)
    const trace = as(['/usr/bin/python3', '-c', `import ctypes, sys; sys.exit(0 if ctypes.CDLL(None).ptrace(16, ${guest}, 0, 0) == 0 else 1)`]) // PTRACE_ATTACH
    assert.equal(trace.code, 1, 'PTRACE_ATTACH refused')
    const seen = size()
    await until('it still writes its own file on node 2', () => size() > seen, 10_000)
    await moveTo(lab, job.pid, 'home')
    assert.equal(uids(job.pid), `${nobody} ${nobody} ${nobody} ${nobody}`, 'its own ids at home')
    const back = size()
    await until('it writes at home', () => size() > back, 10_000)
    process.kill(job.pid, 'SIGTERM')
    assert.equal((await job.exited).signal, 'SIGTERM')
  } finally { job.close() }
})
