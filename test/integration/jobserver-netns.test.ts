// A real recursive make jobserver spread over namespaced nodes (docs/family.md "Make's jobserver
// across nodes"): `mosrun -l make -j4` runs a makefile whose recipes are a sub-make ($(MAKE)) and
// CPU-bound members; GNU make 4.3 hands its jobserver pipe (--jobserver-auth=R,W in MAKEFLAGS) to
// the sub-make and to the `+` recipes. Members holding that pipe, and the sub-make while it waits
// in pselect for a token, are moved to other nodes (proc/<pid>/goto); two tokens freed at home at
// once reach the sub-make away through the relay one at a time (it takes one, and the fork that
// follows brings it home), and it starts its last two jobs; the run ends as an undisturbed one:
// every job once, exit status 0, every token back (make warns otherwise), nothing left on any node.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Lab } from '../../src/lab/lab.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until, within, ROOT } from '../helpers/daemon.js'
import { fifoSink } from '../helpers/fifo.js'
import { moveTo as moveJob } from '../helpers/jobs.js'

let lab: Lab
let bins: Bins
let launcher: string
const ROUNDS = '40'

before(async () => {
  bins = new Bins()
  bins.compile('member')
  launcher = bins.compile('launch')
  // top: the sub-make and members 1, 2; sub: members 11 to 14. With -j4 (three tokens in the
  // pipe): the sub-make runs on top's free slot, members 1 and 2 on a token each; the sub-make runs
  // 11 on its free slot, 12 on the third token, and waits in pselect for a token for 13. The
  // sub-make starts once members 1 and 2 have their tokens (each marks its start): else, on a
  // busy machine, it can take the second token before top does, and member 2 never starts
  const mark = (n: string): string => join(bins.dir, `started-${n}`)
  writeFileSync(join(bins.dir, 'top.mk'), `all: sub x1 x2\nsub:\n\t@while [ ! -e ${mark('1')} ] || [ ! -e ${mark('2')} ]; do sleep 0.02; done; exec $(MAKE) -s -f ${join(bins.dir, 'sub.mk')}\nx1 x2:\n\t+@touch ${join(bins.dir, 'started-')}$(subst x,,$@); exec member $(subst x,,$@) ${ROUNDS} $(SPIN)\n.PHONY: all sub x1 x2\n`)
  writeFileSync(join(bins.dir, 'sub.mk'), `all: j1 j2 j3 j4\nj1 j2 j3 j4:\n\t+@member 1$(subst j,,$@) ${ROUNDS} $(SPIN)\n.PHONY: all j1 j2 j3 j4\n`)
  lab = await Lab.create({ nodes: 3, tag: 'job', interval: 0.25, hpcdArgs: () => ['--down-after', '2', '--no-balance'], env: { DEBUG: process.env.JOB_DEBUG ?? 'hpcfs:home,hpcfs:guest,hpcfs:relay,hpcfs:family' }, ...(process.env.JOB_LOGS !== undefined ? { logDir: process.env.JOB_LOGS } : {}) })
  await lab.waitAllUp()
})
after(async () => {
  await lab?.destroy()
  bins?.cleanup()
})

const n1 = (): ReturnType<Lab['node']> => lab.node(1)
const where = async (pid: number): Promise<string> => (await n1().read(`proc/${pid}/where`)).trim()
const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
const link = (pid: number, fd: number): string => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { return '' } }
const argv = (pid: number): string[] => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0') } catch { return [] } }
const ppid = (pid: number): number => { try { return Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) } catch { return 0 } }
const sorted = (s: string): string[] => s.split('\n').filter(Boolean).sort()

async function listed (): Promise<number[]> {
  return (await lab.exec(1, 'ls', [join(n1().mount, 'proc')])).stdout.split('\n').filter(Boolean).map(Number)
}

/** Writes goto at node 1 and waits until the move is done (test/helpers/jobs.ts). */
const moveTo = async (pid: number, target: number | 'home'): Promise<void> => { await moveJob(lab, pid, target) }

test('mosrun -l make -j4 with a sub-make: members holding the jobserver pipe and the sub-make waiting for a token run away; every job once, every token back', async () => {
  const sink = fifoSink(bins.dir, 'out-make')
  const env = { ...process.env, HPC_ROOT: n1().mount, PATH: `${bins.dir}:${process.env.PATH ?? ''}` }
  const child: ChildProcess = spawn('nsenter', [`--net=/run/netns/${n1().ns as string}`, '--', launcher, process.execPath, join(ROOT, 'src/cli/mosrun.js'), '-l', 'make', '-s', '-j4', '-f', join(bins.dir, 'top.mk'), 'SPIN=spin'],
    { stdio: ['ignore', sink.fd, sink.fd], env, detached: true })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  const seen = new Set<number>()
  try {
    const member = async (id: string): Promise<number> => await until(`member ${id} under discipline`, async () => {
      const ps = await listed()
      for (const p of ps) seen.add(p)
      return ps.find(p => argv(p)[0] === 'member' && argv(p)[1] === id)
    }, 30_000, 100)
    const [m1, m2, m11, m12] = [await member('1'), await member('2'), await member('11'), await member('12')]
    const sub = ppid(m11)
    const top = ppid(sub)
    assert.ok((await listed()).includes(sub) && (await listed()).includes(top), 'both makes are under discipline')
    // the jobserver: the pipe named by the sub-make's MAKEFLAGS, the same in the top make
    const auth = /--jobserver-auth=(\d+),(\d+)/.exec(readFileSync(`/proc/${sub}/environ`, 'utf8'))
    assert.ok(auth !== null, 'make passes --jobserver-auth=R,W (a pipe, not a fifo)')
    const [rfd, wfd] = [Number(auth[1]), Number(auth[2])]
    const pipe = link(top, rfd)
    assert.match(pipe, /^pipe:/)
    const holds = (pid: number): boolean => link(pid, rfd) === pipe && link(pid, wfd) === pipe
    for (const p of [sub, m1, m2, m11, m12]) assert.ok(holds(p), `${p} holds the jobserver pipe`)
    // the sub-make waits for a token for its third job: in pselect6 on the jobserver's read end
    await until('the sub-make waiting for a token', () => /^270 /.test(readFileSync(`/proc/${sub}/syscall`, 'utf8')), 20_000)

    await moveTo(m11, 2)
    await moveTo(m12, 3)
    await moveTo(sub, 2)
    for (const [p, n] of [[m11, '2'], [m12, '3'], [sub, '2']] as const) {
      assert.equal(await where(p), n, `${p} runs on node ${n}`)
      assert.ok(holds(p), `${p}'s original at home holds the jobserver pipe while it runs on node ${n}`)
    }
    // members 1 and 2 end at home: top returns their tokens; the sub-make, away, gets one through
    // the relay and starts its third job (the fork brings it home), then its fourth
    process.kill(m1, 'SIGUSR1')
    process.kill(m2, 'SIGUSR1')
    const [m13, m14] = [await member('13'), await member('14')]
    for (const p of [m13, m14]) {
      assert.equal(ppid(p), sub, 'the sub-make started its last jobs')
      assert.ok(holds(p))
    }
    assert.ok(Number((await n1().read(`proc/${sub}/nmigs`)).trim()) >= 2, 'the sub-make came home to fork')
    await moveTo(m13, 3)
    assert.ok(holds(m13))
    for (const p of [m11, m12, m13, m14]) process.kill(p, 'SIGUSR1') // at home: to the process or its deputy

    assert.deepEqual(await within(exited, 120_000, 'make to end (every member told to stop)'), { code: 0, signal: null }, sink.out())
    const ref = spawnSync('make', ['-s', '-j4', '-f', join(bins.dir, 'top.mk'), 'SPIN='], { env, encoding: 'utf8' })
    assert.equal(ref.status, 0)
    assert.equal(sorted(ref.stdout).length, 6)
    await until('all output', () => sorted(sink.out()).length >= 6, 5000)
    // every job once, and no word from make (a token lost or doubled makes it say INTERNAL: ...)
    assert.doesNotMatch(sink.out(), /INTERNAL|jobserver|Error/, 'make says nothing about its tokens')
    assert.deepEqual(sorted(sink.out()), sorted(ref.stdout + ref.stderr))

    for (const id of [2, 3]) {
      await until(`remote/ empty on node ${id}`, async () => (await lab.exec(id, 'ls', [join(lab.node(id).mount, 'remote')])).stdout.trim() === '', 30_000)
    }
    const pids = [...seen, child.pid as number]
    await until('every member gone', () => pids.every(p => !alive(p)), 30_000)
    await until('proc/ lists none of them', async () => (await listed()).every(p => !pids.includes(p)), 10_000)
  } finally {
    if (child.exitCode === null && child.signalCode === null) { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} }
    sink.close()
  }
})
