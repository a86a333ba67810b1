// Cluster benchmark (docs/bench-cluster.md): 3 namespaced nodes, each daemon (and everything it
// starts or restores) in its own cgroup v1 cpu group with a CFS quota, so the nodes have different
// speeds on one machine. A batch of CPU-bound jobs is started with mosrun (unlocked, lock 0) on the
// slow node 1; we measure total time, mean slowdown, migrations and the paths of the jobs with
// automatic balancing off, on at every node, and on at node 1 only. The daemons run with
// `--load-scope cgroup` (each node's load is its own group's runnable threads, its speed the
// calibration scaled by its quota), then, for comparison, they are restarted with the machine-wide
// default scope (`host`) for one more 'balance on' batch.
// Usage: scripts/bench-cluster [--quick] [--jobs K] [--rounds R] [--quota 25000,80000,80000] [--host-scope] [--no-compare] [--only LIST] [--log-dir DIR] [--explain] [--json]
//        scripts/bench-cluster --pair [--quick] [--seconds 20] [--repeat 2] [--quota 100000,100000] [--log-dir DIR] [--json]
//        scripts/bench-cluster --hetero [--quick] [--jobs 7] [--seconds 20] [--home ID] [--repeat 1] [--quota 25000,50000,100000] [--log-dir DIR] [--json]
//   --pair, --hetero: issue 10's cases (see the section at the end of this file)
//   --host-scope: every batch in host scope (the old way); the comparison batch is then 'balance on,
//                 speed ∝ quota' (admin/speed set by hand, since host-scope calibration does not see a quota)
//   --no-compare: skip the comparison batch (and the restart it needs)
//   --only off,on,node1,compare: run only these batches (default all)
//   --log-dir DIR: keep the daemons' logs in DIR/node<i>.log, with DEBUG=hpcfs:sched,hpcfs:home,hpcfs:guest (moves decided and done)
//   --explain: print node 1's admin/costs and one job's proc/<pid>/costs 2 s into each batch
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Lab, HPCD_JS, REPO_ROOT, type LabNodeSpec } from '../src/lab/lab.js'
import { compileC, median, sleep } from './bench-util.js'

const argv = process.argv.slice(2)
const flag = (name: string): boolean => argv.includes(`--${name}`)
const opt = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined }
const num = (name: string, dflt: number): number => { const v = opt(name); return v === undefined ? dflt : Number(v) }

const quick = flag('quick')
const hostScope = flag('host-scope')
/** hpcd --load-scope of the running daemons; the comparison batch restarts them with 'host'. */
let scope: 'host' | 'cgroup' = hostScope ? 'host' : 'cgroup'
/** --pair: two nodes of one CPU each; --hetero: three of 0.25, 0.5 and 1 CPU (issue 10's cases, docs/bench-cluster.md). */
const NODES = flag('pair') ? 2 : 3
/** Node ids 1..NODES. */
const IDS = Array.from({ length: NODES }, (_, k) => k + 1)
const PERIOD = 100000
const quotas = (opt('quota') ?? (flag('pair') ? '100000,100000' : flag('hetero') ? '25000,50000,100000' : '25000,80000,80000')).split(',').map(Number)
const JOBS = num('jobs', quick ? 3 : 6)
const ROUNDS = num('rounds', quick ? 1500 : 4000) // counter rounds over a 4 MB array: ≈ 0.8 ms CPU each
const ARRAY_KB = 4096
const SPACING_MS = 200
const INTERVAL = 0.5
const CG_ROOT = '/sys/fs/cgroup/cpu'
/** cpu.shares of every node's group: 32 root-group tasks' worth (see setupCgroups). */
const SHARES = 32 * 1024
const CG_BASE = join(CG_ROOT, 'hpcfs-bench')
const cgDir = (id: number): string => join(CG_BASE, `node${id}`)

if (quotas.length !== NODES || quotas.some(q => !Number.isInteger(q) || q < 1000)) {
  console.error(`--quota needs ${NODES} integers >= 1000 (µs per ${PERIOD} µs period)`)
  process.exit(2)
}
if (process.getuid?.() !== 0) { console.error('bench-cluster needs root (namespaces, cgroups)'); process.exit(2) }
if (!existsSync(join(CG_ROOT, 'cpu.cfs_quota_us'))) { console.error(`no cgroup v1 cpu controller at ${CG_ROOT}`); process.exit(2) }

const log = (s: string): void => { process.stderr.write(`# ${s}\n`) }
const now = (): number => Number(process.hrtime.bigint()) / 1e6
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)

// ---------------------------------------------------------------------------------------------
// Cleanup: jobs, lab, cgroups; also on Ctrl-C and on any exit

const jobs = new Set<ChildProcess>()
let lab: Lab | undefined
let tmp: string | undefined

function cgroupPids (id: number): number[] {
  try {
    return readFileSync(join(cgDir(id), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** Remove the cgroups; anything still inside (should be nothing) is moved back to the root group first. */
function removeCgroups (): void {
  for (let id = 1; id <= NODES; id++) {
    if (!existsSync(cgDir(id))) continue
    for (const p of cgroupPids(id)) try { writeFileSync(join(CG_ROOT, 'cgroup.procs'), `${p}\n`) } catch {}
    try { rmdirSync(cgDir(id)) } catch (e) { log(`rmdir ${cgDir(id)}: ${(e as Error).message}`) }
  }
  if (existsSync(CG_BASE)) try { rmdirSync(CG_BASE) } catch (e) { log(`rmdir ${CG_BASE}: ${(e as Error).message}`) }
}

function killJobs (): void {
  for (const j of jobs) if (j.exitCode === null && j.signalCode === null) try { j.kill('SIGKILL') } catch {}
}

let cleaning: Promise<void> | undefined
async function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    killJobs()
    await lab?.destroy().catch(e => log(`lab destroy: ${(e as Error).message}`))
    // the jobs' pids (and restored copies) are gone with the namespaces; give the kernel a moment
    for (let k = 0; k < 20 && IDS.some(id => cgroupPids(id).length > 0); k++) await sleep(100)
    removeCgroups()
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true })
  })()
  await cleaning
}

process.on('exit', () => { killJobs(); lab?.destroySync(); removeCgroups(); if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true }) })
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]) {
  process.on(sig, () => {
    log(`${sig}: cleaning up`)
    void cleanup().finally(() => process.exit(130))
  })
}

// ---------------------------------------------------------------------------------------------
// Setup

function setupCgroups (): void {
  removeCgroups() // leftovers of an interrupted run (empty groups)
  mkdirSync(CG_BASE, { recursive: true })
  for (let id = 1; id <= NODES; id++) {
    mkdirSync(cgDir(id), { recursive: true })
    writeFileSync(join(cgDir(id), 'cpu.cfs_period_us'), `${PERIOD}\n`)
    writeFileSync(join(cgDir(id), 'cpu.cfs_quota_us'), `${quotas[id - 1]}\n`)
    // A node is a machine of its quota: with the default weight (1024, as one task of the root
    // group) every busy process elsewhere on this shared host would take a share of its CPU.
    writeFileSync(join(cgDir(id), 'cpu.shares'), `${SHARES}\n`)
  }
}

/**
 * sh wrapper that puts itself into node `id`'s cgroup, then execs the command (same pid) through the
 * `launch` subject, which closes every inherited fd above 2 first: an fd this process inherited
 * (e.g. a pipe of whatever started it) would otherwise reach the jobs, and the migration engine
 * refuses a process holding an unnamed pipe (proc/<pid>/cantmove).
 */
let launcher = ''
const inCgroup = (id: number, cmd: string, args: string[]): { cmd: string, args: string[] } =>
  ({ cmd: 'sh', args: ['-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', join(cgDir(id), 'cgroup.procs'), launcher, cmd, ...args] })

function hpcdCommand (n: LabNodeSpec): { cmd: string, args: string[] } {
  const args = [HPCD_JS, '--id', String(n.id), '--addr', n.addr, '--port', String(n.port),
    '--map', n.mapFile, '--mount', n.mount, '--key', n.keyFile, '--interval', String(INTERVAL),
    // balancing is on by default; every batch sets each node's admin/balance itself, and the
    // reference runs and the start-up are better left alone
    '--no-balance']
  if (scope !== 'host') args.push('--load-scope', scope)
  return inCgroup(n.id, process.execPath, args)
}

/** Compile a test/ppm/subjects program into the temp dir. */
function compile (name: string): string {
  tmp ??= mkdtempSync(join(tmpdir(), 'hpcfs-bench-cluster-'))
  return compileC(join(REPO_ROOT, `test/ppm/subjects/${name}.c`), tmp)
}

// ---------------------------------------------------------------------------------------------
// Jobs

/**
 * `path`: the nodes node 1's proc/<pid>/where showed, in order (read every 250 ms: a stay shorter
 * than that can be missed; nmigs cannot); `polls`: successful reads of `where`; `cmdMs`: when
 * mosrun's command (the job's pid) appeared.
 */
interface JobResult { pid: number, startMs: number, cmdMs: number, endMs: number, code: number | null, nmigs: number, path: number[], polls: number }

/** Wait for a child's exit; resolves with its exit code. */
const exited = async (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null || c.signalCode !== null ? c.exitCode : await new Promise(resolve => c.once('exit', code => resolve(code)))

/** One counter run directly on node `id` (no mosrun, no daemon involved): wall time in ms. */
async function alone (counter: string, id: number): Promise<number> {
  const w = inCgroup(id, counter, [String(ROUNDS), String(ARRAY_KB), '0', '0'])
  const t0 = now()
  const c = lab!.spawn(id, w.cmd, w.args, { stdio: 'ignore' })
  jobs.add(c)
  const code = await exited(c)
  jobs.delete(c)
  if (code !== 0) throw new Error(`counter alone on node ${id} exited ${code}`)
  return now() - t0
}

/** The pid of mosrun's child (the command), once it exists. */
async function childOf (pid: number, timeoutMs = 10_000): Promise<number> {
  const t0 = now()
  while (now() - t0 < timeoutMs) {
    try {
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
      if (kids.length > 0) return kids[0]
    } catch {}
    await sleep(10)
  }
  throw new Error(`mosrun ${pid} started no command`)
}

/**
 * K jobs by mosrun -l -c at node 1, each SPACING_MS after the previous one's command started; polls
 * where and nmigs of every started job from the first start until all ended (a job that ends before
 * the last one starts is polled too).
 */
async function batch (counter: string, timeoutMs: number): Promise<{ totalMs: number, results: JobResult[], loads: number[][] }> {
  const n1 = lab!.node(1)
  const mosrun = join(REPO_ROOT, 'dist/src/cli/mosrun.js')
  const running: Array<{ child: ChildProcess, r: JobResult, done: boolean }> = []
  const t0 = now()
  const loads: number[][] = [] // node 1's nodes/<id>/load, one row per poll while jobs run
  let spawning = true
  const poller = (async () => {
    let explained = !flag('explain')
    while (spawning || running.some(e => !e.done)) {
      if (now() - t0 > timeoutMs) {
        // what is stuck: every unfinished job as node 1 sees it, and what runs in each node's group
        for (const e of running.filter(e => !e.done)) {
          const [w, m] = await Promise.all(['where', 'nmigs'].map(async f => (await n1.read(`proc/${e.r.pid}/${f}`, 2000).catch(x => (x as Error).message)).trim()))
          log(`unfinished: job ${e.r.pid} (mosrun ${e.child.pid}), path ${e.r.path.join('→')}, nmigs ${e.r.nmigs}, polls ${e.r.polls}; now where ${w}, nmigs ${m}`)
        }
        for (let id = 1; id <= NODES; id++) log(`cgroup node${id}: ${cgroupPids(id).map(p => { try { const st = readFileSync(`/proc/${p}/stat`, 'latin1'); return `${p} ${st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'))} ${st.charAt(st.lastIndexOf(') ') + 2)}` } catch { return `${p} ?` } }).join(', ')}`)
        throw new Error(`batch not done after ${Math.round(timeoutMs / 1000)} s`)
      }
      const live = running.filter(e => !e.done && e.r.pid !== 0)
      if (!explained && now() - t0 > 2000 && live.length > 0) {
        explained = true
        log(`admin/costs at node 1:\n${await n1.read('admin/costs').catch(e => (e as Error).message)}`)
        log(`proc/${live[0].r.pid}/costs:\n${await n1.read(`proc/${live[0].r.pid}/costs`).catch(e => (e as Error).message)}`)
        for (const e of live) log(`proc/${e.r.pid}/cantmove: ${(await n1.read(`proc/${e.r.pid}/cantmove`).catch(e => (e as Error).message)).trim()}`)
      }
      const [, l] = await Promise.all([
        Promise.all(live.map(async e => {
          const [w, m] = await Promise.all([n1.read(`proc/${e.r.pid}/where`, 2000).catch(() => ''), n1.read(`proc/${e.r.pid}/nmigs`, 2000).catch(() => '')])
          if (e.done) return
          if (/^\d+$/.test(w.trim())) {
            e.r.polls++
            const at = w.trim() === '0' ? 1 : Number(w.trim())
            if (at !== e.r.path[e.r.path.length - 1]) e.r.path.push(at)
          }
          if (/^\d+$/.test(m.trim())) e.r.nmigs = Math.max(e.r.nmigs, Number(m.trim()))
        })),
        Promise.all(IDS.map(async id => Number((await n1.read(`nodes/${id}/load`, 2000).catch(() => 'NaN')).trim())))
      ])
      if (live.length > 0 && l.every(Number.isFinite)) loads.push(l)
      await sleep(250)
    }
  })()
  let failed = false
  poller.catch(() => { failed = true }) // awaited below; this keeps a failure during the spawning from being unhandled
  try {
    for (let k = 0; k < JOBS && !failed; k++) {
      const w = inCgroup(1, process.execPath, [mosrun, '-l', '-c', counter, String(ROUNDS), String(ARRAY_KB), '0', '0'])
      const startMs = now()
      const child = lab!.spawn(1, w.cmd, w.args, { stdio: 'ignore', env: { HPC_ROOT: n1.mount } })
      jobs.add(child)
      const entry = { child, r: { pid: 0, startMs, cmdMs: 0, endMs: 0, code: null as number | null, nmigs: 0, path: [1], polls: 0 }, done: false }
      running.push(entry)
      void exited(child).then(code => { entry.r.endMs = now(); entry.r.code = code; entry.done = true; jobs.delete(child) })
      entry.r.pid = await childOf(child.pid!)
      entry.r.cmdMs = now()
      await sleep(SPACING_MS)
    }
  } finally {
    spawning = false
  }
  await poller
  const results = running.map(e => e.r)
  for (const r of results) if (r.code !== 0) throw new Error(`job ${r.pid} exited ${r.code}`)
  return { totalMs: Math.max(...results.map(r => r.endMs)) - t0, results, loads }
}

async function speeds (): Promise<number[]> {
  const out: number[] = []
  for (let id = 1; id <= NODES; id++) out.push(Number((await lab!.node(1).read(`nodes/${id}/speed`)).trim()))
  return out
}

/** Wait until node 1's view of the machine has quietened (loads decayed after a batch). */
async function settle (): Promise<void> {
  const t0 = now()
  while (now() - t0 < 20_000) {
    const loads = await Promise.all(IDS.map(async id => Number((await lab!.node(1).read(`nodes/${id}/load`).catch(() => '0')).trim())))
    if (loads.every(l => l < 30)) return
    await sleep(500)
  }
}

// ---------------------------------------------------------------------------------------------
// Main

interface Row {
  config: string, scope: string, balance: number[], speeds: number[], totalMs: number, meanSlowdown: number, maxSlowdown: number,
  migrations: number, movedTwice: number, paths: string, meanLoads: number[], results: JobResult[]
}

/** Start the daemons one after the other and check that each is in its cgroup. */
async function startDaemons (): Promise<void> {
  // One after the other, so that each calibrates its speed without the others' start-up (node, JIT,
  // FUSE) competing for the two cores: only its cgroup's limit differs.
  for (const nd of lab!.nodes) await nd.start()
  await lab!.waitAllUp()
  for (let id = 1; id <= NODES; id++) {
    const pid = lab!.node(id).pid!
    const cg = cgroupPids(id)
    if (!cg.includes(pid)) throw new Error(`daemon ${id} (pid ${pid}) is not in ${cgDir(id)} (${cg.join(' ')})`)
  }
  // node 1's view of every node's speed is gossip: wait until it matches what each node says of itself
  const t0 = now()
  for (;;) {
    const own = await Promise.all(IDS.map(async id => Number((await lab!.node(id).read(`nodes/${id}/speed`)).trim())))
    const seen = await speeds()
    if (seen.every((s, k) => s === own[k])) return
    if (now() - t0 > 15_000) throw new Error(`node 1 sees speeds ${seen.join(' / ')}, the nodes say ${own.join(' / ')}`)
    await sleep(250)
  }
}

/** "1→2 ×3, 1→2→3 ×1" */
function pathSummary (results: JobResult[]): string {
  const count = new Map<string, number>()
  for (const r of results) { const k = r.polls === 0 ? '?' : r.path.join('→'); count.set(k, (count.get(k) ?? 0) + 1) }
  return [...count].sort((a, b) => a[0].length - b[0].length || a[0].localeCompare(b[0])).map(([k, c]) => `${k} ×${c}`).join(', ')
}

async function main (): Promise<void> {
  const tStart = now()
  const counter = compile('counter')
  launcher = compile('launch')
  setupCgroups()
  log(`cgroups ${CG_BASE}/node1..${NODES}: quota ${quotas.map(q => (q / PERIOD).toFixed(2)).join(' / ')} CPU; ${JOBS} jobs × counter ${ROUNDS} rounds × ${ARRAY_KB} KB; hpcd --load-scope ${scope}`)
  lab = await Lab.create(labOptions())
  await startDaemons()
  const calibrated = await speeds()
  log(`speeds (nodes/<id>/speed at node 1, load scope ${scope}): ${calibrated.join(' / ')}`)

  const fastest = quotas.indexOf(Math.max(...quotas)) + 1
  const slowest = quotas.indexOf(Math.min(...quotas)) + 1
  const ref = await alone(counter, fastest)
  log(`one job alone on node ${fastest} (fastest): ${(ref / 1000).toFixed(2)} s`)
  const refSlow = await alone(counter, slowest)
  log(`one job alone on node ${slowest} (slowest): ${(refSlow / 1000).toFixed(2)} s (${(refSlow / ref).toFixed(2)}× the fastest; quota ratio ${(Math.max(...quotas) / Math.min(...quotas)).toFixed(2)})`)

  const expectedOff = JOBS * refSlow
  const rows: Row[] = []
  /** One batch with admin/balance `balance[id-1]` at node id. */
  const runBatch = async (config: string, balance: number[]): Promise<void> => {
    await settle()
    for (let id = 1; id <= NODES; id++) await lab!.node(id).write('admin/balance', `${balance[id - 1]}\n`)
    const sp = await speeds()
    log(`${config}: scope ${scope}, balance ${balance.join(' / ')}, speeds ${sp.join(' / ')} ...`)
    const { totalMs, results, loads } = await batch(counter, Math.max(60_000, 2.5 * expectedOff))
    for (let id = 1; id <= NODES; id++) await lab!.node(id).write('admin/balance', '0\n')
    const sl = results.map(r => (r.endMs - r.startMs) / ref)
    const row: Row = {
      config,
      scope,
      balance,
      speeds: sp,
      totalMs,
      meanSlowdown: mean(sl),
      maxSlowdown: Math.max(...sl),
      migrations: results.reduce((a, r) => a + r.nmigs, 0),
      movedTwice: results.filter(r => r.nmigs > 1).length,
      paths: pathSummary(results),
      meanLoads: [0, 1, 2].map(k => Math.round(mean(loads.map(l => l[k])))),
      results
    }
    rows.push(row)
    log(`  commands started at ${results.map(r => ((r.cmdMs - results[0].startMs) / 1000).toFixed(1)).join(', ')} s`)
    log(`  total ${(totalMs / 1000).toFixed(1)} s, mean slowdown ${row.meanSlowdown.toFixed(2)}, migrations ${row.migrations} (${row.paths}), mean loads ${row.meanLoads.join(' / ')}`)
  }

  const only = (opt('only') ?? 'off,on,node1,compare').split(',')
  if (only.includes('off')) await runBatch('balance off', [0, 0, 0])
  if (only.includes('on')) await runBatch('balance on', [1, 1, 1])
  if (only.includes('node1')) await runBatch('balance on at node 1 only', [1, 0, 0])
  if (only.includes('compare') && !flag('no-compare')) {
    if (scope === 'cgroup') {
      // The same 'balance on' with the daemons as they were before --load-scope cgroup: every load
      // is the machine's, every speed the unconfined calibration.
      log('restarting the daemons with --load-scope host ...')
      for (const nd of lab.nodes) await nd.stop()
      scope = 'host'
      await startDaemons()
      await runBatch('balance on, host scope', [1, 1, 1])
    } else {
      // Host scope: calibration does not see the quota; set admin/speed ∝ quota by hand.
      const base = Math.max(...calibrated)
      const want = quotas.map(q => Math.max(1, Math.round(base * q / PERIOD)))
      for (let id = 1; id <= NODES; id++) await lab.node(id).write('admin/speed', `${want[id - 1]}\n`)
      const t0 = now()
      while ((await speeds()).some((s, k) => s !== want[k])) {
        if (now() - t0 > 15_000) throw new Error(`node 1 does not see the speeds ${want.join(' / ')}`)
        await sleep(250)
      }
      await runBatch('balance on, speed ∝ quota', [1, 1, 1])
    }
  }

  console.log(`# ${NODES} nodes, cgroup v1 CPU quota ${quotas.map(q => (q / PERIOD).toFixed(2)).join(' / ')} CPU (period ${PERIOD / 1000} ms), ${JOBS} jobs started by mosrun -l -c at node 1, each ${SPACING_MS} ms after the previous one's command started;` +
    ` job = counter ${ROUNDS} rounds over ${ARRAY_KB} KB; alone: ${(ref / 1000).toFixed(2)} s on node ${fastest}, ${(refSlow / 1000).toFixed(2)} s on node ${slowest}`)
  console.log('| configuration | load scope | balance 1 / 2 / 3 | speeds 1 / 2 / 3 | mean loads 1 / 2 / 3 | total s | mean slowdown | max slowdown | migrations | jobs moved twice+ | paths |')
  console.log('|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(`| ${r.config} | ${r.scope} | ${r.balance.join(' / ')} | ${r.speeds.join(' / ')} | ${r.meanLoads.join(' / ')} | ${(r.totalMs / 1000).toFixed(1)} | ${r.meanSlowdown.toFixed(2)} | ${r.maxSlowdown.toFixed(2)} | ${r.migrations} | ${r.movedTwice} | ${r.paths} |`)
  }
  console.log(`# speeds and loads as node 1 sees them (nodes/<id>/speed, nodes/<id>/load; loads averaged over the 250 ms polls of the batch); ${((now() - tStart) / 1000).toFixed(0)} s`)
  if (flag('json')) console.log(JSON.stringify({ quotas, jobs: JOBS, rounds: ROUNDS, ref, refSlow, calibrated, rows }))
}

// ---------------------------------------------------------------------------------------------
// Family workloads (docs/family.md): --family [--members K] [--family-rounds R] [--workloads make,xargs,loop] [--no-fork]
// K members (test/ppm/subjects/member.c, R rounds each) started at node 1 with one command under
// mosrun -l: make -jK, xargs -PK, a bash & loop; every node with the same quota (default 0.5 CPU
// each). Each workload runs with balancing off (one node alone), on 3 nodes, then on 2 (node 3
// blocked); the ideal is the total CPU work over the CPUs: K × (one member alone on a node) / nodes.
// Then the fork path: a process away from home forks (it is brought home to make the call).

/** The bench's lab; --log-dir DIR keeps the daemons' logs there, with the moves decided and done. */
function labOptions (): Parameters<typeof Lab.create>[0] {
  const logDir = opt('log-dir')
  return {
    nodes: NODES, tag: 'bclu', command: hpcdCommand, handleSignals: false, start: false,
    ...(logDir !== undefined ? { logDir, env: { DEBUG: 'hpcfs:sched,hpcfs:home,hpcfs:guest' } } : {})
  }
}

/** One family run: command at node 1 inside its cgroup; the members seen and their moves. */
async function familyRun (cmd: string[], k: number, tmpDir: string): Promise<{ ms: number, moves: number, away: number, out: string }> {
  const n1 = lab!.node(1)
  const w = inCgroup(1, process.execPath, [join(REPO_ROOT, 'dist/src/cli/mosrun.js'), '-l', ...cmd])
  const t0 = now()
  const child = lab!.spawn(1, w.cmd, w.args, { stdio: 'pipe', env: { HPC_ROOT: n1.mount, PATH: `${tmpDir}:${process.env.PATH ?? ''}` } })
  jobs.add(child)
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  let done = false
  const code = exited(child).then(c => { done = true; jobs.delete(child); return c })
  const nmigs = new Map<number, number>()
  const awayPids = new Set<number>()
  while (!done) {
    let pids: number[] = []
    try { pids = (await lab!.exec(1, 'ls', [join(n1.mount, 'proc')])).stdout.split('\n').filter(Boolean).map(Number) } catch {}
    await Promise.all(pids.map(async pid => {
      let c = ''
      try { c = readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return }
      if (c !== 'member') return
      const [wh, m] = await Promise.all(['where', 'nmigs'].map(async f => (await n1.read(`proc/${pid}/${f}`, 2000).catch(() => '')).trim()))
      if (/^[1-9]\d*$/.test(wh)) awayPids.add(pid)
      if (/^\d+$/.test(m)) nmigs.set(pid, Math.max(nmigs.get(pid) ?? 0, Number(m)))
    }))
    await Promise.race([code, sleep(250)])
  }
  const c = await code
  const ms = now() - t0
  if (c !== 0) throw new Error(`${cmd.join(' ')} exited ${c}: ${out.slice(-300)}`)
  const ids = new Set(out.split('\n').filter(l => l.startsWith('member ')).map(l => l.split(' ')[1]))
  if (ids.size !== k) throw new Error(`${cmd.join(' ')}: ${ids.size} of ${k} members reported: ${out.slice(-300)}`)
  return { ms, moves: [...nmigs.values()].reduce((a, b) => a + b, 0), away: awayPids.size, out }
}

/** The fork path: bench-family-fork at node 1, moved to node 2 before each fork (and native at home). */
async function forkPath (bin: string, n: number): Promise<{ home: number[], away: number[] }> {
  const n1 = lab!.node(1)
  const w = inCgroup(1, process.execPath, [join(REPO_ROOT, 'dist/src/cli/mosrun.js'), '-L', bin])
  const child = lab!.spawn(1, w.cmd, w.args, { stdio: 'pipe', env: { HPC_ROOT: n1.mount } })
  jobs.add(child)
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  const lines = (): string[] => out.split('\n').filter(l => l.startsWith('fork '))
  const waitFor = async (cond: () => boolean, what: string): Promise<void> => {
    const t0 = now()
    while (!cond()) { if (now() - t0 > 30_000) throw new Error(`fork path: no ${what}`); await sleep(5) }
  }
  try {
    await waitFor(() => out.startsWith('ready'), 'ready')
    const pid = await childOf(child.pid!)
    const home: number[] = []
    const away: number[] = []
    for (let i = 0; i < n; i++) {
      child.stdin?.write('x\n')
      await waitFor(() => lines().length === 2 * i + 1, 'fork at home')
      home.push(Number(lines()[2 * i].split(' ')[1]))
      await n1.write(`proc/${pid}/goto`, '2\n')
      for (let t0 = now(); (await n1.read(`proc/${pid}/where`)).trim() !== '2'; await sleep(5)) if (now() - t0 > 30_000) throw new Error('fork path: no move to node 2')
      child.stdin?.write('x\n')
      await waitFor(() => lines().length === 2 * i + 2, 'fork away')
      away.push(Number(lines()[2 * i + 1].split(' ')[1]))
    }
    child.stdin?.end()
    await exited(child)
    return { home, away }
  } finally { if (child.exitCode === null) child.kill('SIGKILL'); jobs.delete(child) }
}

async function familyMain (): Promise<void> {
  const tStart = now()
  const K = num('members', 8)
  const R = num('family-rounds', quick ? 2000 : 6000)
  const workloads = (opt('workloads') ?? 'make,xargs,loop').split(',')
  if (opt('quota') === undefined) quotas.splice(0, NODES, 50000, 50000, 50000)
  if (new Set(quotas).size !== 1) { console.error('--family wants the same --quota on every node'); process.exit(2) }
  const tmpDir = (tmp ??= mkdtempSync(join(tmpdir(), 'hpcfs-bench-cluster-')))
  compileC(join(REPO_ROOT, 'test/ppm/subjects/member.c'), tmpDir)
  const forkBin = compileC(join(REPO_ROOT, 'scripts/bench-family-fork.c'), tmpDir)
  launcher = compile('launch')
  setupCgroups()
  log(`cgroups: quota ${quotas.map(q => (q / PERIOD).toFixed(2)).join(' / ')} CPU; ${K} members × ${R} rounds; hpcd --load-scope ${scope}`)
  lab = await Lab.create(labOptions())
  await startDaemons()
  const t1 = await (async () => {
    const w = inCgroup(2, join(tmpDir, 'member'), ['1', String(R)])
    const t0 = now()
    const c = lab!.spawn(2, w.cmd, w.args, { stdio: 'ignore' })
    jobs.add(c)
    if (await exited(c) !== 0) throw new Error('member alone failed')
    jobs.delete(c)
    return now() - t0
  })()
  log(`one member alone on node 2: ${(t1 / 1000).toFixed(2)} s (the CPU work of the family: ${K} × that × ${(quotas[0] / PERIOD).toFixed(2)} CPU)`)
  const mk = join(tmpDir, 'Makefile')
  const targets = Array.from({ length: K }, (_, i) => `t${i + 1}`).join(' ')
  writeFileSync(mk, `all: ${targets}\n${targets}:\n\t@member $(subst t,,$@) ${R}\n.PHONY: all ${targets}\n`)
  const commands: Record<string, string[]> = {
    make: ['make', '-s', '-f', mk, `-j${K}`],
    xargs: ['bash', '-c', `seq 1 ${K} | xargs -P${K} -I{} member {} ${R}`],
    loop: ['bash', '-c', `for i in $(seq 1 ${K}); do member $i ${R} & done; wait`]
  }
  const label: Record<string, string> = { make: `mosrun -l make -j${K}`, xargs: `mosrun -l xargs -P${K}`, loop: 'mosrun -l bash & loop' }
  interface FamRow { workload: string, nodes: number, ms: number, alone: number, ideal: number, moves: number, away: number }
  const rows: FamRow[] = []
  const balance = async (on: number[]): Promise<void> => { for (let id = 1; id <= NODES; id++) await lab!.node(id).write('admin/balance', `${on[id - 1]}\n`) }
  const alone = new Map<string, number>()
  for (const wl of workloads) {
    const cmd = commands[wl]
    if (cmd === undefined) throw new Error(`unknown workload ${wl} (make, xargs, loop)`)
    await settle()
    await balance([0, 0, 0])
    const a = await familyRun(cmd, K, tmpDir)
    alone.set(wl, a.ms)
    log(`${label[wl]}: one node alone ${(a.ms / 1000).toFixed(1)} s`)
  }
  for (const nodes of [3, 2]) {
    if (nodes === 2) {
      await lab.node(3).write('admin/block', '1\n')
      const t0 = now()
      while ((Number((await lab.node(1).read(`nodes/3/status`)).trim()) & 16) === 0) { if (now() - t0 > 15_000) throw new Error('node 1 does not see node 3 blocked'); await sleep(250) }
    }
    for (const wl of workloads) {
      await settle()
      await balance([1, 1, 1])
      const r = await familyRun(commands[wl], K, tmpDir)
      await balance([0, 0, 0])
      const row = { workload: label[wl], nodes, ms: r.ms, alone: alone.get(wl) ?? NaN, ideal: K * t1 / nodes, moves: r.moves, away: r.away }
      rows.push(row)
      log(`${label[wl]} on ${nodes} nodes: ${(r.ms / 1000).toFixed(1)} s (ideal ${(row.ideal / 1000).toFixed(1)} s, ×${(r.ms / row.ideal).toFixed(2)}), ${r.away} of ${K} members away, ${r.moves} moves`)
    }
  }
  await lab.node(3).write('admin/block', '0\n')
  let fork: { home: number[], away: number[] } | undefined
  if (!flag('no-fork')) {
    await settle()
    fork = await forkPath(forkBin, quick ? 5 : 10)
  }
  console.log(`# ${NODES} nodes (2: node 3 blocked), cgroup v1 CPU quota ${(quotas[0] / PERIOD).toFixed(2)} CPU each; ${K} members × ${R} rounds started at node 1 by one command; one member alone: ${(t1 / 1000).toFixed(2)} s; ideal = ${K} × that / nodes`)
  console.log('| workload | nodes | time s | one node alone s | ideal s | time / ideal | speed-up vs alone | members moved away | moves |')
  console.log('|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) console.log(`| ${r.workload} | ${r.nodes} | ${(r.ms / 1000).toFixed(1)} | ${(r.alone / 1000).toFixed(1)} | ${(r.ideal / 1000).toFixed(1)} | ${(r.ms / r.ideal).toFixed(2)} | ${(r.alone / r.ms).toFixed(2)} | ${r.away} | ${r.moves} |`)
  if (fork) console.log(`# fork path: at home ${(median(fork.home) / 1000).toFixed(2)} ms, away from home (brought home to fork) ${(median(fork.away) / 1000).toFixed(1)} ms (medians of ${fork.home.length}: ${fork.away.map(us => (us / 1000).toFixed(0)).join(', ')} ms)`)
  console.log(`# ${((now() - tStart) / 1000).toFixed(0)} s`)
  if (flag('json')) console.log(JSON.stringify({ quotas, K, R, t1, rows, fork }))
}

// ---------------------------------------------------------------------------------------------
// Issue 10's cases (docs/bench-cluster.md "The issue's cases"):
//   --pair   two nodes of one CPU each; four CPU-bound jobs of >= --seconds (20) started unlocked
//            at node 1 (mosrun -l): speed-up against the same jobs with balancing off (2.0 is the
//            limit), migrations per job. --repeat N balanced batches (default 2).
//   --hetero three nodes of 0.25, 0.5 and 1 CPU; --jobs (7) jobs of --seconds (20) on the fastest,
//            started unlocked at --home (the fastest): mean slowdown against the best static split
//            computed from the speeds measured in the run, that split itself run in the same run.
// Both: --quota to change the nodes, --log-dir, --json as above.

interface Spec { node: number, mosrun: boolean }
interface RunJob { pid: number, node: number, startMs: number, endMs: number, nmigs: number, path: number[], polls: number }

/**
 * Starts one job per spec (in spec order, each once the previous one's command exists): `mosrun -l
 * counter` at its node, or the counter itself there (no daemon involved). Polls every mosrun job's
 * `where` and `nmigs` at its node every 250 ms until all ended; `splits`: per poll, the time (ms
 * from the first start) and how many jobs each node ran.
 */
async function runJobs (counter: string, rounds: number, specs: Spec[], timeoutMs: number): Promise<{ totalMs: number, jobs: RunJob[], splits: Array<{ t: number, per: number[] }> }> {
  const mosrun = join(REPO_ROOT, 'dist/src/cli/mosrun.js')
  const started: Array<{ child: ChildProcess, r: RunJob, mosrun: boolean, done: boolean }> = []
  const splits: Array<{ t: number, per: number[] }> = []
  const t0 = now()
  let spawning = true
  const poller = (async () => {
    while (spawning || started.some(e => !e.done)) {
      if (now() - t0 > timeoutMs) {
        for (const e of started.filter(e => !e.done)) log(`unfinished: job ${e.r.pid} from node ${e.r.node}, path ${e.r.path.join('→')}, nmigs ${e.r.nmigs}`)
        throw new Error(`jobs not done after ${Math.round(timeoutMs / 1000)} s`)
      }
      await Promise.all(started.filter(e => e.mosrun && !e.done && e.r.pid !== 0).map(async e => {
        const home = lab!.node(e.r.node)
        const [w, m] = await Promise.all([home.read(`proc/${e.r.pid}/where`, 2000).catch(() => ''), home.read(`proc/${e.r.pid}/nmigs`, 2000).catch(() => '')])
        if (e.done) return
        if (/^\d+$/.test(w.trim())) {
          e.r.polls++
          const at = w.trim() === '0' ? e.r.node : Number(w.trim())
          if (at !== e.r.path[e.r.path.length - 1]) e.r.path.push(at)
        }
        if (/^\d+$/.test(m.trim())) e.r.nmigs = Math.max(e.r.nmigs, Number(m.trim()))
      }))
      const live = started.filter(e => !e.done)
      if (live.length > 0) splits.push({ t: now() - t0, per: IDS.map(id => live.filter(e => e.r.path[e.r.path.length - 1] === id).length) })
      await sleep(250)
    }
  })()
  let failed = false
  poller.catch(() => { failed = true })
  try {
    for (const sp of specs) {
      if (failed) break
      const w = sp.mosrun
        ? inCgroup(sp.node, process.execPath, [mosrun, '-l', counter, String(rounds), String(ARRAY_KB), '0', '0'])
        : inCgroup(sp.node, counter, [String(rounds), String(ARRAY_KB), '0', '0'])
      const startMs = now()
      const child = lab!.spawn(sp.node, w.cmd, w.args, { stdio: 'ignore', env: { HPC_ROOT: lab!.node(sp.node).mount } })
      jobs.add(child)
      const e = { child, r: { pid: 0, node: sp.node, startMs, endMs: 0, nmigs: 0, path: [sp.node], polls: 0 }, mosrun: sp.mosrun, done: false }
      started.push(e)
      void exited(child).then(code => {
        e.r.endMs = now()
        e.done = true
        jobs.delete(child)
        if (code !== 0) log(`job from node ${sp.node} exited ${code}`)
      })
      e.r.pid = sp.mosrun ? await childOf(child.pid!) : child.pid!
    }
  } finally {
    spawning = false
  }
  await poller
  return { totalMs: Math.max(...started.map(e => e.r.endMs)) - t0, jobs: started.map(e => e.r), splits }
}

/** ms per counter round on node id, from one job of `rounds` alone there. */
async function perRound (counter: string, id: number, rounds: number): Promise<number> {
  const w = inCgroup(id, counter, [String(rounds), String(ARRAY_KB), '0', '0'])
  const t0 = now()
  const c = lab!.spawn(id, w.cmd, w.args, { stdio: 'ignore' })
  jobs.add(c)
  const code = await exited(c)
  jobs.delete(c)
  if (code !== 0) throw new Error(`counter alone on node ${id} exited ${code}`)
  return (now() - t0) / rounds
}

async function setBalance (on: number[]): Promise<void> {
  for (const id of IDS) await lab!.node(id).write('admin/balance', `${on[id - 1]}\n`)
}

/** The lab of the issue's cases: every daemon in its group, in cgroup scope, balancing off until a batch turns it on. */
async function issueLab (): Promise<string> {
  const counter = compile('counter')
  launcher = compile('launch')
  setupCgroups()
  lab = await Lab.create(labOptions())
  await startDaemons()
  log(`${NODES} nodes, quota ${quotas.map(q => (q / PERIOD).toFixed(2)).join(' / ')} CPU, speeds ${(await speeds()).join(' / ')} (load scope ${scope})`)
  return counter
}

/** "1→2 ×2, 1 ×2" */
const paths = (js: RunJob[]): string => pathSummary(js.map(j => ({ pid: j.pid, startMs: 0, cmdMs: 0, endMs: 0, code: 0, nmigs: j.nmigs, path: j.path, polls: j.polls })))

/** The split at the last poll before the first job ended (the spread the balancing made; later moves fill nodes that emptied). */
function splitBeforeFirstEnd (splits: Array<{ t: number, per: number[] }>): string {
  let full = 0
  for (const s of splits) full = Math.max(full, s.per.reduce((a, b) => a + b, 0))
  let last: number[] | undefined
  let started = false
  for (const s of splits) {
    const n = s.per.reduce((a, b) => a + b, 0)
    if (n === full) { started = true; last = s.per } else if (started) break
  }
  return last === undefined ? '-' : last.join(':')
}

/** When the split reached its final shape for good (s from the first start), from the polls. */
function settledAt (splits: Array<{ t: number, per: number[] }>, want: number[]): number {
  const all = want.reduce((a, b) => a + b, 0)
  let at = NaN
  let started = false
  for (const s of splits) {
    if (s.per.reduce((a, b) => a + b, 0) < all) {
      if (started) break // a job ended: the rest is the tail
      continue // not all started yet
    }
    started = true
    if (s.per.every((c, k) => c === want[k])) { if (Number.isNaN(at)) at = s.t } else at = NaN
  }
  return at / 1000
}

/** The machine's 1-minute load average (other sessions share it: context for the figures). */
const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ')[0]

async function pairMain (): Promise<void> {
  const tStart = now()
  const la = loadavg()
  const K = 4
  const seconds = num('seconds', quick ? 8 : 20)
  const repeat = num('repeat', quick ? 1 : 2)
  const counter = await issueLab()
  const r0 = quick ? 1500 : 4000
  const ms = await perRound(counter, 1, r0)
  const rounds = Math.ceil(seconds * 1000 / ms)
  const one = rounds * ms
  log(`one job alone on node 1: ${(r0 * ms / 1000).toFixed(2)} s for ${r0} rounds: the jobs get ${rounds} rounds (≈ ${(one / 1000).toFixed(1)} s alone)`)
  const specs = Array.from({ length: K }, () => ({ node: 1, mosrun: true }))
  const timeout = 3 * K * one + 30_000
  interface PairRow { config: string, totalMs: number, migrations: number, twice: number, paths: string, settled: number, split: string }
  // split: before the first job ended; settled: from when it was 2:2 for good until then
  const rows: PairRow[] = []
  const batch = async (config: string, on: number[], jobsOf = specs): Promise<PairRow> => {
    await settle()
    await setBalance(on)
    const r = await runJobs(counter, rounds, jobsOf, timeout)
    await setBalance(on.map(() => 0))
    const migrations = r.jobs.reduce((a, j) => a + j.nmigs, 0)
    const row = { config, totalMs: r.totalMs, migrations, twice: r.jobs.filter(j => j.nmigs > 1).length, paths: paths(r.jobs), settled: settledAt(r.splits, [K / 2, K / 2]), split: splitBeforeFirstEnd(r.splits) }
    rows.push(row)
    log(`${config}: ${(r.totalMs / 1000).toFixed(1)} s, ${migrations} migrations (${row.paths}), split ${row.split}${Number.isNaN(row.settled) ? '' : `, 2:2 for good from ${row.settled.toFixed(1)} s`}`)
    return row
  }
  const off = await batch('balance off', [0, 0])
  // the best this run's machine allows: two jobs started directly on each node, no daemon involved
  const ideal = await batch('static 2:2 (no balancing)', [0, 0], specs.map((x, k) => ({ node: k % 2 === 0 ? 1 : 2, mosrun: false })))
  for (let k = 1; k <= repeat; k++) await batch(`balance on${repeat > 1 ? ` #${k}` : ''}`, [1, 1])
  console.log(`# 2 nodes, cgroup v1 CPU quota ${quotas.map(q => (q / PERIOD).toFixed(2)).join(' / ')} CPU; ${K} jobs (counter ${rounds} rounds × ${ARRAY_KB} KB, ≈ ${(one / 1000).toFixed(1)} s alone) started by mosrun -l at node 1 one after the other` +
    ` (the static 2:2: started directly on the nodes); speed-up = 'balance off' time / time (limit 2.00; the static 2:2 shows what the machine gave this run); load average at the start ${loadavg()}`)
  console.log('| configuration | total s | speed-up | ÷ static 2:2 | migrations | migrations per job | jobs moved twice+ | split before the first end | 2:2 for good from s | paths |')
  console.log('|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(`| ${r.config} | ${(r.totalMs / 1000).toFixed(1)} | ${(off.totalMs / r.totalMs).toFixed(2)} | ${(r.totalMs / ideal.totalMs).toFixed(3)} | ${r.migrations} | ${(r.migrations / K).toFixed(2)} | ${r.twice} | ${r.split} | ${Number.isNaN(r.settled) ? '-' : r.settled.toFixed(1)} | ${r.paths} |`)
  }
  const on = rows.filter(r => r !== off && r !== ideal)
  const worst = Math.min(...on.map(r => off.totalMs / r.totalMs))
  const migs = Math.max(...on.map(r => r.migrations / K))
  console.log(`# goals: speed-up >= 1.85 (worst ${worst.toFixed(2)}: ${worst >= 1.85 ? 'met' : 'NOT met'}), <= 1.25 migrations per job (most ${migs.toFixed(2)}: ${migs <= 1.25 ? 'met' : 'NOT met'}); ${((now() - tStart) / 1000).toFixed(0)} s`)
  if (flag('json')) console.log(JSON.stringify({ quotas, rounds, msPerRound: ms, rows }))
}

/** The static split of k identical jobs over nodes taking t[i] ms each alone that minimises the mean completion time (Σ k_i² t_i). */
function bestStaticSplit (t: number[], k: number): number[] {
  const split = t.map(() => 0)
  for (let j = 0; j < k; j++) {
    let best = 0
    for (let i = 1; i < t.length; i++) if ((2 * split[i] + 1) * t[i] < (2 * split[best] + 1) * t[best]) best = i
    split[best]++
  }
  return split
}

async function heteroMain (): Promise<void> {
  const tStart = now()
  const la = loadavg()
  const K = num('jobs', 7)
  const seconds = num('seconds', quick ? 5 : 20)
  const counter = await issueLab()
  const r0 = quick ? 800 : 1500
  const ms: number[] = []
  // the best of three per node: other work on the machine only ever slows a measurement down, and a
  // node measured slow gives a wrong static split (the reference of the whole run)
  for (const id of IDS) ms.push(Math.min(await perRound(counter, id, r0), await perRound(counter, id, r0), await perRound(counter, id, r0)))
  const fastest = ms.indexOf(Math.min(...ms)) + 1
  const home = num('home', fastest)
  const rounds = Math.ceil(seconds * 1000 / ms[fastest - 1])
  const alone = ms.map(m => rounds * m) // each node's time for one job alone
  const best = alone[fastest - 1]
  const split = bestStaticSplit(alone, K)
  const predicted = split.reduce((a, k, i) => a + k * k * alone[i], 0) / K / best
  log(`ms per round ${ms.map(m => m.toFixed(3)).join(' / ')} (speed ratio ${ms.map(m => (ms[fastest - 1] / m).toFixed(2)).join(' : ')}); jobs of ${rounds} rounds: ${alone.map(a => (a / 1000).toFixed(1)).join(' / ')} s alone; best static split ${split.join(':')} (mean slowdown ${predicted.toFixed(2)} by the arithmetic)`)
  const timeout = 3 * Math.max(...split.map((k, i) => k * alone[i])) + 60_000
  interface HetRow { config: string, totalMs: number, mean: number, max: number, migrations: number, twice: number, split: string, settled: number, paths: string }
  const rows: HetRow[] = []
  const batch = async (config: string, specs: Spec[], on: number[]): Promise<HetRow> => {
    await settle()
    await setBalance(on)
    const r = await runJobs(counter, rounds, specs, timeout)
    await setBalance(on.map(() => 0))
    const sl = r.jobs.map(j => (j.endMs - j.startMs) / best)
    const row = {
      config,
      totalMs: r.totalMs,
      mean: mean(sl),
      max: Math.max(...sl),
      migrations: r.jobs.reduce((a, j) => a + j.nmigs, 0),
      twice: r.jobs.filter(j => j.nmigs > 1).length,
      split: splitBeforeFirstEnd(r.splits),
      settled: settledAt(r.splits, split),
      paths: specs.some(x => x.mosrun) ? paths(r.jobs) : '-'
    }
    rows.push(row)
    log(`${config}: ${(r.totalMs / 1000).toFixed(1)} s, mean slowdown ${row.mean.toFixed(2)}, ${row.migrations} migrations, split ${row.split}`)
    return row
  }
  // Each balanced batch right after a static one: it is compared with the static split measured
  // just before it, so that a machine whose load changes during the run still gives a fair ratio.
  const repeat = num('repeat', 1)
  const baseline = new Map<HetRow, HetRow>()
  for (let k = 1; k <= repeat; k++) {
    const n = repeat > 1 ? ` #${k}` : ''
    const stat = await batch(`best static split ${split.join(':')}${n}`, split.flatMap((c, i) => Array.from({ length: c }, () => ({ node: i + 1, mosrun: false }))), IDS.map(() => 0))
    const on = await batch(`balance on, all started at node ${home}${n}`, Array.from({ length: K }, () => ({ node: home, mosrun: true })), IDS.map(() => 1))
    baseline.set(stat, stat).set(on, stat)
  }
  console.log(`# ${NODES} nodes, cgroup v1 CPU quota ${quotas.map(q => (q / PERIOD).toFixed(2)).join(' / ')} CPU, measured speed ratio ${ms.map(m => (ms[fastest - 1] / m).toFixed(2)).join(' : ')};` +
    ` ${K} jobs (counter ${rounds} rounds × ${ARRAY_KB} KB: ${alone.map(a => (a / 1000).toFixed(1)).join(' / ')} s alone on each node); slowdown = completion time / alone on the fastest node; machine load average ${la} at the start, ${loadavg()} at the end`)
  console.log(`| configuration | total s | mean slowdown | ÷ best static split (the batch before) | max slowdown | migrations | migrations per job | jobs moved twice+ | split before the first end | ${split.join(':')} for good from s | paths |`)
  console.log('|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(`| ${r.config} | ${(r.totalMs / 1000).toFixed(1)} | ${r.mean.toFixed(2)} | ${(r.mean / (baseline.get(r) ?? r).mean).toFixed(3)} | ${r.max.toFixed(2)} | ${r.migrations} | ${(r.migrations / K).toFixed(2)} | ${r.twice} | ${r.split} | ${Number.isNaN(r.settled) ? '-' : r.settled.toFixed(1)} | ${r.paths} |`)
  }
  const worst = Math.max(...rows.filter(r => baseline.get(r) !== r).map(r => r.mean / (baseline.get(r) ?? r).mean))
  console.log(`# goal: mean slowdown within 10% of the best static split (worst ${worst.toFixed(3)}: ${worst <= 1.1 ? 'met' : 'NOT met'}); the static split by the arithmetic: ${predicted.toFixed(2)}; ${((now() - tStart) / 1000).toFixed(0)} s`)
  if (flag('json')) console.log(JSON.stringify({ quotas, rounds, msPerRound: ms, split, rows }))
}

try {
  await (flag('family') ? familyMain() : flag('pair') ? pairMain() : flag('hetero') ? heteroMain() : main())
  await cleanup()
} catch (e) {
  console.error(`bench-cluster: ${(e as Error).stack ?? String(e)}`)
  for (const nd of lab?.nodes ?? []) if (nd.log() !== '') console.error(`--- node ${nd.id} log (tail):\n${nd.logTail(15)}`)
  await cleanup()
  process.exitCode = 1
}
