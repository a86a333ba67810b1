// `npm start`: a small hpcfs cluster on this one machine. Brings up N hpcd daemons (network
// namespaces when root, loopback ports otherwise), node 1's tree at <repo>/mnt/hpc and node i's at
// <repo>/mnt/hpc<i>, waits until node 1 sees every node up, prints what to try, and stays up until
// Ctrl-C / SIGTERM; then removes every mount, namespace and process it made and exits 0.
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import createDebug from '../src/util/log.js'
import { Lab, LabBusyError, REPO_ROOT, labOwner, type LabOwner } from '../src/lab/lab.js'
import { isRoot, netnsPids } from '../src/lab/sys.js'
import { defaultTokenDir } from '../src/gui/auth.js'
import { HTTP_DEFAULTS } from '../src/config.js'

const debug = createDebug('hpcfs:demo')

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm start --')
  .usage('$0 [options]\n\nRuns an hpcfs cluster of N daemons on this machine until Ctrl-C.')
  .option('nodes', { alias: 'n', type: 'number', default: 4, describe: 'number of nodes (1..250)' })
  .option('loopback', { type: 'boolean', default: !isRoot(), describe: 'ports on 127.0.0.1 instead of network namespaces (default when not root)' })
  .option('interval', { type: 'number', default: 1, describe: 'gossip interval in seconds (hpcd --interval)' })
  .option('timeout', { type: 'number', default: 60, describe: 'seconds to wait for all nodes to be seen up' })
  .option('tag', { type: 'string', default: 'demo', hidden: true, describe: 'lab tag (names of namespaces and links)' })
  .option('mnt', { type: 'string', default: join(REPO_ROOT, 'mnt'), hidden: true, describe: 'directory of the mount points and logs' })
  .check(a => {
    if (!Number.isInteger(a.nodes) || a.nodes < 1 || a.nodes > 250) throw new Error('--nodes must be 1..250')
    if (!a.loopback && !isRoot()) throw new Error('network namespaces need root; use --loopback')
    return true
  })
  .strict()
  .help()
  .parseAsync()

const mnt = resolve(argv.mnt)
const mountOf = (id: number): string => join(mnt, id === 1 ? 'hpc' : `hpc${id}`)
const GUI_PORT = HTTP_DEFAULTS.guiPort
const rel = (p: string): string => {
  const r = relative(process.cwd(), p)
  return r === '' ? '.' : r.startsWith('..') ? p : r
}

/** A second demo (or another lab of this tag) must not take the running one's daemons away. */
function refuse (owner: LabOwner, mounts: string[]): never {
  const tree = mounts.length > 0 ? `, node 1's tree at ${rel(mounts[0])}` : ''
  console.error(`demo: a demo is already running (pid ${owner.pid}: ${owner.command}${tree}).
Nothing was changed. Stop it first: Ctrl-C in its terminal, or
  kill ${owner.pid}
(it then ends its jobs and removes its daemons, mounts and namespaces), and run npm start again.`)
  process.exit(1)
}

const busy = labOwner(argv.tag)
if (busy !== undefined) refuse(busy.owner, busy.mounts)

/** A process that stopping the cluster ends or leaves without its nodes. */
interface Job { node: number, pid: number, command: string, note: string }

function commandOf (pid: number): string {
  try {
    const c = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(a => a !== '').join(' ')
    return c.length > 70 ? c.slice(0, 67) + '...' : c
  } catch {
    return '?'
  }
}

function parentOf (pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1])
  } catch {
    return 0
  }
}

/**
 * The jobs on the cluster: in namespace mode every process in a node's namespace but its daemon
 * and what the daemon runs itself (fusermount, the engine's helper), guests excepted: destroy()
 * kills them all. In loopback mode the processes under cluster discipline (they stay, but lose what
 * runs on other nodes). Each says where it runs.
 */
async function jobsOf (cl: Lab): Promise<Job[]> {
  const jobs: Job[] = []
  for (const nd of cl.nodes) {
    const list = async (dir: string): Promise<number[]> =>
      (await nd.exec('ls', [join(nd.mount, dir)], { timeoutMs: 2000 })).stdout.split('\n').filter(l => /^\d+$/.test(l)).map(Number)
    const note = async (pid: number): Promise<string> => {
      const from = (await nd.read(`remote/${pid}/from`, 2000).catch(() => '')).trim()
      if (from !== '') return `guest from node ${from}`
      const where = (await nd.read(`proc/${pid}/where`, 2000).catch(() => '')).trim()
      return where !== '' && where !== '0' ? `its home part; it runs on node ${where}` : ''
    }
    let pids: number[]
    if (nd.ns !== undefined) {
      const guests = new Set(await list('remote'))
      const daemons = new Set([nd.pid ?? 0])
      const ofDaemon = (p: number): boolean => {
        for (let q = p, hops = 0; q > 1 && hops < 64; q = parentOf(q), hops++) if (daemons.has(q)) return true
        return false
      }
      pids = (await netnsPids(nd.ns)).filter(p => guests.has(p) || !ofDaemon(p))
    } else {
      pids = await list('proc')
    }
    for (const pid of pids) jobs.push({ node: nd.id, pid, command: commandOf(pid), note: await note(pid) })
  }
  return jobs
}

let lab: Lab | undefined
let creating: Promise<Lab> | undefined
let stopping = false
async function shutdown (why: string, code = 0): Promise<void> {
  if (stopping) return
  stopping = true
  console.log(`\n${why}: stopping the cluster ...`)
  try {
    // A signal during start: let create() finish (or fail and clean up by itself), then destroy.
    if (lab === undefined && creating !== undefined) lab = await creating.catch(() => undefined)
    if (lab !== undefined) {
      const jobs = await jobsOf(lab).catch(e => { debug('jobs: %s', (e as Error).message); return [] })
      if (jobs.length === 0) console.log('no jobs were running on the cluster.')
      else {
        console.log(lab.netns ? `ending ${jobs.length} job${jobs.length > 1 ? 's' : ''}:` : `${jobs.length} process${jobs.length > 1 ? 'es' : ''} under cluster discipline keep running at home; what runs on another node is lost:`)
        for (const j of jobs) console.log(`  node ${String(j.node).padEnd(3)} pid ${String(j.pid).padEnd(8)} ${j.command}${j.note !== '' ? `  (${j.note})` : ''}`)
      }
    }
    await lab?.destroy()
    console.log('all daemons stopped; mounts, namespaces and bridge removed.')
  } catch (e) {
    console.error(`demo: cleanup: ${(e as Error).message}`)
    code = 1
  }
  process.exit(code)
}
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => { void shutdown(s) })

console.log(`hpcfs demo: starting ${argv.nodes} nodes (${argv.loopback ? 'loopback ports on 127.0.0.1' : 'one network namespace each'}) ...`)
try {
  lab = await (creating = Lab.create({
    nodes: argv.nodes,
    tag: argv.tag,
    netns: !argv.loopback,
    mount: mountOf,
    interval: argv.interval,
    logDir: join(mnt, 'logs'),
    // node 1 serves the web GUI: in its namespace on every address (only this host reaches the bridge)
    hpcdArgs: id => id === 1 ? ['--gui-addr', `${argv.loopback ? '127.0.0.1' : '0.0.0.0'}:${GUI_PORT}`] : [],
    handleSignals: false // this script's own handlers destroy the lab and exit 0
  }))
} catch (e) {
  if (e instanceof LabBusyError) refuse(e.owner, e.mounts) // started at the same moment as another
  if (!stopping) {
    console.error(`demo: ${(e as Error).message}`)
    process.exit(1)
  }
}
if (stopping || lab === undefined) {
  await new Promise(() => {}) // a signal arrived during start: shutdown() exits
  process.exit(1)
}
const cl: Lab = lab

try {
  await cl.waitAllUp({ via: [1], timeoutMs: argv.timeout * 1000 })
} catch (e) {
  console.error(`demo: ${(e as Error).message}`)
  console.error(`logs: ${rel(join(mnt, 'logs'))}/node*.log`)
  await shutdown('not all nodes came up', 1)
}
debug('all up')

const n1 = cl.node(1)
const rows = await Promise.all(cl.nodes.map(async nd => {
  const load = (await n1.read(`nodes/${nd.id}/load`).catch(() => '?')).trim()
  const speed = (await n1.read(`nodes/${nd.id}/speed`).catch(() => '?')).trim()
  return `  node ${String(nd.id).padEnd(3)} ${(nd.addr + ':' + nd.port).padEnd(22)} ${(nd.ns ?? '-').padEnd(12)} pid ${String(nd.pid).padEnd(8)} ${rel(nd.mount).padEnd(12)} load ${load.padEnd(5)} speed ${speed}`
}))
const guiUrl = `http://${cl.netns ? n1.addr : '127.0.0.1'}:${GUI_PORT}/`
const last = argv.nodes
const other = Math.min(2, last)
const tools = (cmd: string): string => `node ${rel(join(REPO_ROOT, 'dist/src/cli', cmd + '.js'))}`
console.log(`
All ${argv.nodes} nodes are up, as node 1 sees them:
${rows.join('\n')}
${cl.netns ? `  (bridge hpb-${cl.tag}, this host is ${cl.bridgeAddr}; run a command in node ${other}'s namespace: nsenter --net=/run/netns/hpc-${cl.tag}-${other} ip addr)\n` : ''}
What to try, in another shell in ${REPO_ROOT}:
  ls ${rel(mountOf(1))} ${rel(mountOf(1))}/nodes            the tree of node 1 (a /proc/hpc)
  cat ${rel(mountOf(1))}/nodes/*/load                  every node's load, as node 1 knows it
  cat ${rel(mountOf(1))}/admin/mospe                   node 1's id
  echo 20000 > ${rel(mountOf(1))}/admin/speed; sleep 5; cat ${rel(mountOf(other))}/nodes/1/speed
                                              a change on node 1, seen by node ${other} through gossip
  ${tools('mosctl')} getload ${last}           mosctl on node 1's tree (the default root)
  HPC_ROOT=${rel(mountOf(other))} ${tools('mosctl')} status    the same tool on node ${other}
  HPC_ROOT=${rel(mountOf(1))} ${tools('mosmon')}              the load monitor (q quits)
  ${tools('showmap')}                    the cluster map
  ${guiUrl}#token=$(cat ${defaultTokenDir(mountOf(1))}/0)
                                              node 1's web GUI in a browser (docs/gui.md); the token lets root change things
  kill -STOP ${cl.node(last).pid}; watch cat ${rel(mountOf(1))}/nodes/${last}/status
                                              node ${last} reads down after a few seconds; kill -CONT ${cl.node(last).pid} brings it back
${cl.netns && last >= 2 ? `  ${`nsenter --net=/run/netns/hpc-${cl.tag}-1 -- ${tools('mosrun')} -N ${other} python3 -c 'import time; [print(i, flush=True) or time.sleep(1) for i in range(300)]' > /tmp/job.out &`}
                                              a job started on node 1 runs on node ${other}
  ${tools('mps')}                             NODE ${other}: where it runs; then ${tools('migrate')} PID home --wait
` : ''}Daemon logs: ${rel(join(mnt, 'logs'))}/node<i>.log (more with DEBUG=hpcfs:* npm start)

Ctrl-C stops the cluster and removes every mount, namespace and process it made.`)

// Stay up; report daemons that die on their own (they are not restarted).
const reported = new Set<number>()
setInterval(() => {
  for (const nd of cl.nodes) {
    if (!nd.running && !reported.has(nd.id) && !stopping) {
      reported.add(nd.id)
      console.log(`node ${nd.id} exited (${JSON.stringify(nd.lastExit)}); see ${rel(nd.logFile)}`)
    }
  }
}, 1000)
