// scripts/fault-matrix: faults at every phase of a move between namespaced daemons, each case ending
// with where the process is, how many copies run, how it ended, whether its output was lost or
// doubled, and what was left behind; then the matrix (README "Failure semantics" says what each
// outcome must be). Not part of npm test: about 10 minutes on 2 cores. Needs root.
//
// A lab of 3 daemons (tag fmx; --link-timeout 3, --guest-lease 5, so a home waits 15 s for a lost
// node). The subject: test/ppm/subjects/walker.c holding 64 MiB, printing a line per round, started
// at node 1 with its stdout a pipe (relayed while it is away). Moves: out (home -> 2), back
// (2 -> home), hop (2 -> 3). Faults:
//   kill    kill -9 of the home, source or target daemon before the move (then the move is
//           asked for), during the image stream (16 MiB in, the way into the target slowed by
//           tbf), at the restore (all of the image in), after it; the daemon is started again
//   cut     the source's or target's link cut mid-stream for 6 s (longer than the link timeout)
//   loss    30 % of the packets into the target dropped (nft) during the move
//   gone    the node the process runs on cut off for good (until the home has reported the loss)
//   full    a full disk where images or state are written: the daemons' TMPDIR (the image copies
//           home keeps while a process leaves) or a node's state dir (its guests' records and the
//           copy a guest leaves while it goes home or on), a small tmpfs filled up before the move
//
//   scripts/fault-matrix [--only SUBSTRING]
import { parseArgs } from 'node:util'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Lab } from '../src/lab/lab.js'
import { run } from '../src/lab/sys.js'
import { compileC, sleep } from './bench-util.js'
import { crash, guests, intoNode, judgeOutput, leftovers, poll, reference, restart, startJob, where, type Job } from './fault-util.js'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const LEASE = 5
const LINK = 3
const WAIT = (2 * LEASE + 5) * 1000 // a home's wait for a lost node
const SUBJECT = ['64', '400', '15000', '5'] // walker MiB rounds delay_us exit

const { values: opts } = parseArgs({ options: { only: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } })
if (opts.help) { console.error('usage: scripts/fault-matrix [--only SUBSTRING]'); process.exit(0) }
if (process.getuid?.() !== 0) { console.error('fault-matrix: needs root (network namespaces)'); process.exit(2) }

type Move = 'out' | 'back' | 'hop'
type Role = 'home' | 'source' | 'target'
interface Case { name: string, move: Move, fault: 'kill' | 'cut' | 'loss' | 'gone' | 'full', who: Role, phase: 'before' | 'stream' | 'restore' | 'after' | '', full?: 'tmp' | 'state' }

const nodesOf = (m: Move): { start: number, source: number, target: number | 'home', targetNode: number } =>
  m === 'out' ? { start: 1, source: 1, target: 2, targetNode: 2 } : m === 'back' ? { start: 2, source: 2, target: 'home', targetNode: 1 } : { start: 2, source: 2, target: 3, targetNode: 3 }
const roleNode = (m: Move, r: Role): number => r === 'home' ? 1 : r === 'source' ? nodesOf(m).source : nodesOf(m).targetNode

const cases: Case[] = []
for (const move of ['out', 'back', 'hop'] as const) {
  const roles: Role[] = move === 'out' ? ['home', 'target'] : move === 'back' ? ['home', 'source'] : ['home', 'source', 'target']
  for (const who of roles) for (const phase of ['before', 'stream', 'restore', 'after'] as const) cases.push({ name: `kill ${who}${move === 'out' && who === 'home' ? '=source' : move === 'back' && who === 'home' ? '=target' : ''} ${phase}`, move, fault: 'kill', who, phase })
}
for (const move of ['out', 'hop'] as const) for (const who of ['source', 'target'] as const) cases.push({ name: `cut ${who} 6 s mid-stream`, move, fault: 'cut', who, phase: 'stream' })
for (const move of ['out', 'back', 'hop'] as const) cases.push({ name: 'loss 30% into target', move, fault: 'loss', who: 'target', phase: '' })
cases.push({ name: 'node 2 cut off for good', move: 'out', fault: 'gone', who: 'target', phase: 'after' })
cases.push({ name: 'disk full: TMPDIR (copies)', move: 'out', fault: 'full', who: 'home', phase: '', full: 'tmp' })
cases.push({ name: 'disk full: target state dir', move: 'out', fault: 'full', who: 'target', phase: '', full: 'state' })
for (const move of ['back', 'hop'] as const) cases.push({ name: 'disk full: source state dir', move, fault: 'full', who: 'source', phase: '', full: 'state' })
const chosen = cases.filter(c => opts.only === undefined || `${c.move} ${c.name}`.includes(opts.only))

const dir = mkdtempSync(join(tmpdir(), 'hpc-fault-matrix-'))
/** the daemons' TMPDIR (where home keeps its image copies) */
const TMP = join(dir, 'tmp')
let lab: Lab | undefined
/** a full tmpfs mounted for the case under way */
let fullAt: string | null = null
const cleanup = async (): Promise<void> => {
  if (fullAt !== null) await unmount(fullAt)
  if (lab) {
    for (const n of [1, 2, 3]) await run('tc', ['qdisc', 'del', 'dev', `hv-fmx-${n}`, 'root'])
    await lab.destroy().catch(e => console.error(`fault-matrix: ${(e as Error).message}`))
  }
  rmSync(dir, { recursive: true, force: true })
}
process.on('SIGINT', () => { void cleanup().then(() => process.exit(130)) })

const slow = async (n: number): Promise<void> => { await run('tc', ['qdisc', 'add', 'dev', `hv-fmx-${n}`, 'root', 'tbf', 'rate', '300mbit', 'burst', '256kb', 'latency', '500ms']) }
const fast = async (n: number): Promise<void> => { await run('tc', ['qdisc', 'del', 'dev', `hv-fmx-${n}`, 'root']) }
async function lossy (n: number, percent: number): Promise<void> {
  const l = lab as Lab
  await l.exec(n, 'nft', ['delete', 'table', 'inet', 'fmxloss'])
  if (percent === 0) return
  const rules = `table inet fmxloss {\n chain in {\n  type filter hook input priority 0; policy accept;\n  numgen random mod 100 < ${percent} drop\n }\n}\n`
  const r = await l.exec(n, 'nft', ['-f', '-'], { input: rules })
  if (r.code !== 0) throw new Error(`nft: ${r.stderr.trim()}`)
}

/** A small tmpfs at `at` (what was there is hidden until it is unmounted). */
async function mountSmall (at: string): Promise<void> {
  mkdirSync(at, { recursive: true, mode: 0o700 })
  const r = await run('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'fmx-full', at])
  if (r.code !== 0) throw new Error(`mount tmpfs on ${at}: ${r.stderr.trim()}`)
  fullAt = at
}
/** Fills it up (a filler file, written until ENOSPC), or frees it again. */
async function fill (at: string): Promise<void> { await run('dd', ['if=/dev/zero', `of=${join(at, 'fmx-filler')}`, 'bs=64k']) }
function unfill (at: string): void { rmSync(join(at, 'fmx-filler'), { force: true }) }
async function unmount (at: string): Promise<void> {
  if ((await run('umount', [at])).code !== 0) await run('umount', ['-l', at])
  fullAt = null
}

interface Row { c: Case, after: string, copies: string, end: string, output: string, left: string, ok: boolean, note: string }

async function moveAndWait (l: Lab, pid: number, target: number | 'home', ms = 30_000): Promise<string> {
  try { await l.node(1).write(`proc/${pid}/goto`, `${target}\n`) } catch (e) { return `goto refused: ${(e as Error).message.replace(/^.*: /, '')}` }
  const want = target === 'home' ? '0' : String(target)
  return await poll(ms, async () => {
    const w = await where(l, pid)
    if (w === want) return 'ok'
    const e = (await l.node(1).read(`proc/${pid}/error`, 3000).catch(() => '')).trim()
    return e !== '' && w !== 'migrating' ? e : undefined
  }, 50) ?? 'timed out'
}

async function runCase (l: Lab, c: Case, walker: string, launcher: string, ref: string): Promise<Row> {
  const { start, target, targetNode } = nodesOf(c.move)
  const victim = roleNode(c.move, c.who)
  const full = c.full === 'tmp' ? TMP : c.full === 'state' ? join(l.tmp, 'state', String(victim), 'guests') : null
  if (full !== null) await mountSmall(full)
  const job: Job = startJob(l, 1, launcher, walker, SUBJECT)
  let note = ''
  try {
    if (await poll(20_000, () => job.out.includes('walk 0') ? true : undefined) === undefined) throw new Error('the subject did not start')
    if (start !== 1) { const r = await moveAndWait(l, job.pid, start); if (r !== 'ok') throw new Error(`setup move: ${r}`) }
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${start === 1 ? job.pid : guests(l, start)[0]}/status`, 'utf8'))?.[1] ?? 0) * 1024
    const goto = async (): Promise<void> => { await l.node(1).write(`proc/${job.pid}/goto`, `${target}\n`).catch(e => { note = `goto: ${(e as Error).message.replace(/^.*: /, '')}` }) }
    const inTarget = intoNode(l, targetNode)
    const streamed = async (bytes: number): Promise<boolean> => await poll(30_000, () => intoNode(l, targetNode) - inTarget >= bytes ? true : undefined, 2) === true
    if (c.fault === 'kill') {
      if (c.phase === 'before') {
        await crash(l, victim)
        if (victim !== 1) await goto()
        await sleep(500)
      } else if (c.phase === 'after') {
        const r = await moveAndWait(l, job.pid, target)
        if (r !== 'ok') note = `move: ${r}`
        await crash(l, victim)
      } else {
        await slow(targetNode)
        await goto()
        // (the image is the resident memory less the shared pages of its libraries: the restore phase is its last MiBs)
        if (!await streamed(c.phase === 'stream' ? 16 << 20 : rss - (4 << 20))) note = 'phase not reached'
        await crash(l, victim)
        await fast(targetNode)
      }
      await restart(l, victim)
    } else if (c.fault === 'cut') {
      await slow(targetNode)
      await goto()
      if (!await streamed(16 << 20)) note = 'phase not reached'
      await l.partition(victim)
      await sleep(6000)
      await l.partition(victim, false)
      await fast(targetNode)
    } else if (c.fault === 'loss') {
      await lossy(targetNode, 30)
      const r = await moveAndWait(l, job.pid, target, 60_000)
      note = r === 'ok' ? 'moved' : `move: ${r.slice(0, 50)}`
      await lossy(targetNode, 0)
    } else if (c.fault === 'full') {
      await fill(full as string)
      const r = await moveAndWait(l, job.pid, target, 60_000)
      note = r === 'ok' ? 'moved' : `move: ${r.replace(/\s+/g, ' ').slice(0, 120)}`
      unfill(full as string)
    } else {
      const r = await moveAndWait(l, job.pid, 2)
      if (r !== 'ok') note = `move: ${r}`
      await l.partition(2)
      await poll(WAIT + 10_000, () => job.status !== null ? true : undefined, 200)
      await l.partition(2, false)
    }
    // settled: no move under way (or the job has ended)
    await poll(WAIT + 10_000, async () => job.status !== null || ((await where(l, job.pid)) !== 'migrating' && (await where(l, job.pid)) !== '') ? true : undefined, 200)
    await sleep(LINK * 1000)
    const after = job.status !== null ? '(ended)' : await where(l, job.pid)
    let copies = job.status !== null ? '-' : String([1, 2, 3].reduce((a, n) => a + guests(l, n).length, 0) + (after === '0' ? 1 : 0))
    // none listed where it ran: it may have just ended there, its end on its way home (then the
    // job ends within moments; a lost process ends with 112 and is judged as such below)
    if (copies === '0' && after !== '0') {
      await poll(5000, () => job.status !== null ? true : undefined, 100)
      if (job.status !== null && job.status.code === 5) copies = '-'
    }
    await poll(WAIT + 40_000, () => job.status !== null ? true : undefined, 200)
    if (job.status === null) { note += ' (killed: did not end)'; process.kill(job.pid, 'SIGKILL'); await job.exited }
    const st = job.status as { code: number | null, signal: NodeJS.Signals | null }
    const lostLine = job.err.includes(`hpcfs: process ${job.pid} was lost with node`)
    const end = st.code === 5 ? 'exit 5' : st.code === 112 ? `lost (112${lostLine ? ', said so' : ', SILENT'})` : st.signal !== null ? st.signal : `exit ${String(st.code)}`
    const output = judgeOutput(job.out, ref)
    for (const n of [1, 2, 3]) await restart(l, n)
    const leftHere = async (): Promise<string[]> => [...await leftovers(l, join(l.tmp, 'state')), ...readdirSync(TMP).map(f => `TMPDIR: ${f}`)]
    const left = await poll(WAIT + 5000, async () => { const x = await leftHere(); return x.length === 0 ? [] : undefined }, 500) ?? await leftHere()
    const documented = (end === 'exit 5' && output === 'complete') || (end === 'lost (112, said so)' && output !== 'complete' && !/LOST|DOUBLED/.test(output)) || (end === 'SIGKILL' && c.who === 'home' && !/LOST|DOUBLED/.test(output))
    const ok = documented && (copies === '-' || copies === '1' || (copies === '0' && end.startsWith('lost'))) && left.length === 0
    return { c, after: after === '0' ? 'home' : after === '(ended)' ? after : `node ${after}`, copies, end, output, left: left.length === 0 ? 'none' : left.join('; '), ok, note }
  } catch (e) {
    return { c, after: '?', copies: '?', end: '?', output: '?', left: '?', ok: false, note: (e as Error).message }
  } finally {
    if (job.status === null) { try { process.kill(job.pid, 'SIGKILL') } catch {} await job.exited }
    if (full !== null) { unfill(full); await unmount(full) }
    for (const n of [1, 2, 3]) { await fast(n); await lossy(n, 0).catch(() => {}); await l.partition(n, false).catch(() => {}) }
    for (const n of [1, 2, 3]) await restart(l, n).catch(() => {})
    await l.waitAllUp({ timeoutMs: 30_000 }).catch(() => {})
  }
}

async function main (): Promise<void> {
  const walker = compileC(join(REPO, 'test/ppm/subjects/walker.c'), dir)
  const launcher = compileC(join(REPO, 'test/ppm/subjects/launch.c'), dir)
  const ref = reference(walker, SUBJECT)
  mkdirSync(TMP, { mode: 0o700 })
  lab = await Lab.create({
    nodes: 3,
    tag: 'fmx',
    interval: 0.25,
    hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '2', '--no-balance', '--link-timeout', String(LINK), '--guest-lease', String(LEASE)],
    env: { DEBUG: 'hpcfs:home,hpcfs:guest,hpcfs:keeper,hpcfs:lease', TMPDIR: TMP },
    logDir: join(dir, 'logs'),
    handleSignals: false
  })
  await lab.waitAllUp()
  console.log(`fault-matrix: ${chosen.length} cases; subject walker ${SUBJECT.join(' ')}; link timeout ${LINK} s, guest lease ${LEASE} s, home waits ${WAIT / 1000} s; load average ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
  const rows: Row[] = []
  const t0 = Date.now()
  for (const c of chosen) {
    const r = await runCase(lab, c, walker, launcher, ref)
    rows.push(r)
    console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${c.move.padEnd(4)} ${c.name.padEnd(26)} -> ${r.after}, copies ${r.copies}, ${r.end}, output ${r.output}, leftovers ${r.left}${r.note ? ` [${r.note}]` : ''}`)
    if (!r.ok) console.log(`       logs: ${join(dir, 'logs')} (kept)`)
  }
  const w = [5, 28, 10, 7, 22, 18, 10]
  const line = (cells: string[]): string => '| ' + cells.map((x, i) => x.padEnd(w[i])).join(' | ') + ' |'
  console.log(`\n${line(['move', 'fault', 'after', 'copies', 'end', 'output', 'leftovers'])}`)
  console.log(line(w.map(n => '-'.repeat(n))))
  for (const r of rows) console.log(line([r.c.move, r.c.name, r.after, r.copies, r.end, r.output, r.left === 'none' ? 'none' : 'SOME']))
  const bad = rows.filter(r => !r.ok)
  console.log(`\n${rows.length - bad.length}/${rows.length} cases end as documented (README "Failure semantics"), in ${Math.round((Date.now() - t0) / 1000)} s; load average ${loadavg().map(x => x.toFixed(2)).join(' ')}`)
  if (bad.length > 0) { console.log('not as documented:'); for (const r of bad) console.log(`  ${r.c.move} ${r.c.name}: ${r.end}, output ${r.output}, copies ${r.copies}, leftovers ${r.left} ${r.note}`) }
  process.exitCode = bad.length > 0 ? 1 : 0
  if (bad.length === 0) await cleanup(); else { await lab.destroy(); lab = undefined; console.log(`(logs in ${join(dir, 'logs')})`) }
}

main().catch(async e => { console.error(`fault-matrix: ${(e as Error).stack ?? String(e)}`); await cleanup(); process.exit(1) })
