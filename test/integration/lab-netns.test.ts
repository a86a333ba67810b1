// The lab (src/lab): namespaces, addresses, UDP reachability, daemon kill/restart, and that
// destroy(), the signal hooks and cleanupStale() leave no namespace, veth, bridge, mount or process.
// Uses a stand-in daemon (FUSE tree with admin/mospe and nodes/<id>/status, plus a UDP echo and a
// tiny heartbeat) so it runs before hpcd exists; the last test uses the real hpcd when it is built.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, writeFile, rm, readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Lab, cleanupStale, labNames, REPO_ROOT, HPCD_JS, type LabNodeSpec } from '../../src/lab/lab.js'
import { run, type RunResult, netnsList, linkList, mountPoints, pidAlive, isRoot, poll, haveCommand } from '../../src/lab/sys.js'

const root = isRoot()
const TAGS = ['lt1', 'lt2', 'lt3', 'lt4', 'lt5', 'lt6', 'lt7']
const work = await mkdtemp(join(tmpdir(), 'hpcfs-labtest-'))
after(async () => {
  for (const t of TAGS) await cleanupStale(t).catch(() => undefined)
  await rm(work, { recursive: true, force: true })
})

// Stand-in daemon: argv id addr port mount map. Serves admin/mospe and nodes/<j>/status (3 if a
// heartbeat from j arrived in the last 3 s, else 0), answers "<id>:<msg>" to UDP datagrams.
// No autoUnmount, so kill -9 leaves a dead mount behind that the lab must remove.
const STANDIN = `
const Fuse = require(${JSON.stringify(join(REPO_ROOT, 'node_modules/fuse-native'))})
const dgram = require('dgram'), fs = require('fs')
const [,, idS, addr, portS, mnt, mapFile] = process.argv
const id = Number(idS)
const peers = []
for (const l of fs.readFileSync(mapFile, 'utf8').split('\\n')) {
  const f = l.replace(/#.*/, '').trim().split(/\\s+/); if (f.length !== 3) continue
  const [h, p] = f[1].split(':'); const o = h.split('.').map(Number)
  for (let k = 0; k < Number(f[2]); k++) peers.push({ id: Number(f[0]) + k, host: o.slice(0, 3).join('.') + '.' + (o[3] + k), port: p ? Number(p) : Number(portS) })
}
const seen = new Map([[id, Infinity]])
const file = p => {
  if (p === '/admin/mospe') return Buffer.from(id + '\\n')
  const m = /^\\/nodes\\/(\\d+)\\/status$/.exec(p)
  if (m && peers.some(x => x.id === Number(m[1]))) return Buffer.from(((seen.get(Number(m[1])) || 0) > Date.now() - 3000 ? 3 : 0) + '\\n')
}
const dirs = p => p === '/' ? ['admin', 'nodes'] : p === '/admin' ? ['mospe'] : p === '/nodes' ? peers.map(x => String(x.id))
  : /^\\/nodes\\/\\d+$/.test(p) && peers.some(x => '/nodes/' + x.id === p) ? ['status'] : undefined
const t = new Date()
const ops = {
  readdir (p, cb) { const d = dirs(p); d ? cb(0, d) : cb(Fuse.ENOENT) },
  getattr (p, cb) {
    if (dirs(p)) return cb(0, { mtime: t, atime: t, ctime: t, nlink: 2, size: 4096, mode: 0o40755, uid: 0, gid: 0 })
    const b = file(p); if (b) return cb(0, { mtime: t, atime: t, ctime: t, nlink: 1, size: b.length, mode: 0o100444, uid: 0, gid: 0 })
    cb(Fuse.ENOENT)
  },
  open (p, fl, cb) { file(p) ? cb(0, 42) : cb(Fuse.ENOENT) },
  read (p, fd, buf, len, pos, cb) { const b = file(p); if (!b) return cb(0); const s = b.subarray(pos, pos + len); s.copy(buf); cb(s.length) }
}
const fuse = new Fuse(mnt, ops, { force: true, mkdir: true })
const sock = dgram.createSocket('udp4')
sock.on('message', (m, r) => {
  const hb = /^hb (\\d+)$/.exec(String(m))
  if (hb) seen.set(Number(hb[1]), Date.now())
  else sock.send(Buffer.from(id + ':' + m), r.port, r.address)
})
sock.bind(Number(portS), addr, () => {
  setInterval(() => { for (const x of peers) if (x.id !== id) sock.send('hb ' + id, x.port, x.host, () => {}) }, 200)
  fuse.mount(err => { if (err) { console.error(err); process.exit(1) } })
})
for (const s of ['SIGINT', 'SIGTERM']) process.once(s, () => fuse.unmount(() => process.exit(0)))
`
const standinFile = join(work, 'standin.cjs')
await writeFile(standinFile, STANDIN)
const standin = (n: LabNodeSpec): { cmd: string, args: string[] } =>
  ({ cmd: process.execPath, args: [standinFile, String(n.id), n.addr, String(n.port), n.mount, n.mapFile] })

// UDP client run inside a namespace: sends "ping" until an answer arrives, prints it; with a third
// argument, gives up after that many ms with status 2 (to show that no answer comes). Without it,
// it lives until the answer (or the caller's timeout): a busy machine may be slow to answer.
const UDP_CLIENT = `
const s = require('dgram').createSocket('udp4')
const [addr, port, giveUpMs] = process.argv.slice(1)
s.on('message', m => { console.log(String(m)); process.exit(0) })
const t = setInterval(() => s.send('ping', Number(port), addr, () => {}), 100)
s.send('ping', Number(port), addr, () => {})
if (giveUpMs) setTimeout(() => process.exit(2), Number(giveUpMs))
`

async function leftovers (tag: string, mounts: string[]): Promise<string[]> {
  const n = labNames(tag)
  const out: string[] = []
  for (const ns of await netnsList()) if (ns.startsWith(`hpc-${tag}-`)) out.push(`netns ${ns}`)
  for (const l of await linkList()) if (l === n.bridge || l.startsWith(`hv-${tag}-`)) out.push(`link ${l}`)
  const mp = await mountPoints()
  for (const m of mounts) if (mp.has(m)) out.push(`mount ${m}`)
  return out
}

test('namespaces: addresses, UDP between nodes, kill -9 + restart, clean destroy', { skip: !root && 'needs root' }, async () => {
  const lab = await Lab.create({ nodes: 3, tag: 'lt1', mountRoot: join(work, 'm1'), command: standin })
  const mounts = lab.nodes.map(n => n.mount)
  try {
    const nss = await netnsList()
    const links = await linkList()
    assert.ok(links.includes('hpb-lt1'), 'bridge exists')
    for (const n of lab.nodes) {
      assert.ok(nss.includes(`hpc-lt1-${n.id}`), `namespace of node ${n.id}`)
      assert.ok(links.includes(`hv-lt1-${n.id}`), `veth of node ${n.id}`)
      assert.equal(n.addr, `${lab.subnet}.${n.id}`)
      const a = await n.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'eth0'])
      assert.match(a.stdout, new RegExp(`inet ${n.addr.replace(/\./g, '\\.')}/24`))
      const lo = await n.exec('ip', ['-o', 'link', 'show', 'lo'])
      assert.match(lo.stdout, /[<,]UP[,>]/)
      assert.equal((await n.read('admin/mospe')).trim(), String(n.id))
      assert.ok((await mountPoints()).has(n.mount), 'mounted in the host mount namespace')
    }
    assert.match(await readFile(lab.mapFile, 'utf8'), new RegExp(`^1 ${lab.subnet!.replace(/\./g, '\\.')}\\.1 3$`, 'm'))
    // UDP from node 1's namespace to nodes 2 and 3, and from the host (bridge address) to node 1.
    for (const to of [2, 3]) {
      const r = await lab.exec(1, process.execPath, ['-e', UDP_CLIENT, lab.node(to).addr, String(lab.node(to).port)])
      assert.equal(r.stdout.trim(), `${to}:ping`, `node 1 -> node ${to}: ${r.stderr}`)
    }
    const h = await run(process.execPath, ['-e', UDP_CLIENT, lab.node(1).addr, String(lab.node(1).port)])
    assert.equal(h.stdout.trim(), '1:ping')
    // Loopback inside a namespace is up too.
    const l = await lab.exec(2, process.execPath, ['-e', UDP_CLIENT, lab.node(2).addr, String(lab.node(2).port)])
    assert.equal(l.stdout.trim(), '2:ping')
    await lab.waitAllUp({ timeoutMs: 10_000 })

    // kill -9: the stand-in leaves a dead mount; restart() clears it and brings the node back.
    const pid2 = lab.node(2).pid!
    assert.ok(lab.node(2).kill('SIGKILL'))
    assert.ok(await lab.node(2).waitExit(5000))
    assert.equal(pidAlive(pid2), false)
    assert.equal(lab.node(2).running, false)
    await lab.node(2).restart()
    assert.notEqual(lab.node(2).pid, pid2)
    assert.equal((await lab.node(2).read('admin/mospe')).trim(), '2')
    await lab.waitAllUp({ timeoutMs: 10_000 })

    // Partition: node 3 cut off the bridge, then healed.
    await lab.partition(3, true)
    const cut = await lab.exec(1, process.execPath, ['-e', UDP_CLIENT, lab.node(3).addr, String(lab.node(3).port), '3000'])
    assert.equal(cut.code, 2, 'no answer from a partitioned node')
    await lab.partition(3, false)
    await lab.waitAllUp({ timeoutMs: 10_000 })

    // Leave node 3 dead (kill -9, dead mount) for destroy() to clean.
    const pid3 = lab.node(3).pid!
    lab.node(3).kill('SIGKILL')
    await lab.node(3).waitExit(5000)
    assert.ok((await mountPoints()).has(lab.node(3).mount), 'dead mount left by kill -9')
    const pid1 = lab.node(1).pid!
    await lab.destroy()
    assert.equal(pidAlive(pid1), false)
    assert.equal(pidAlive(pid3), false)
  } finally {
    await lab.destroy()
  }
  assert.deepEqual(await leftovers('lt1', mounts), [])
  assert.equal(existsSync(lab.tmp), false, 'temp dir removed')
  await lab.destroy() // idempotent
})

test('loopback mode: ports on 127.0.0.1, UDP echo, clean destroy', async () => {
  const lab = await Lab.create({ nodes: 2, tag: 'lt2', netns: false, mountRoot: join(work, 'm2'), command: standin })
  const mounts = lab.nodes.map(n => n.mount)
  try {
    assert.equal(lab.node(1).addr, '127.0.0.1')
    assert.notEqual(lab.node(1).port, lab.node(2).port)
    assert.equal(lab.node(1).ns, undefined)
    const map = await readFile(lab.mapFile, 'utf8')
    assert.match(map, new RegExp(`^2 127\\.0\\.0\\.1:${lab.node(2).port} 1$`, 'm'))
    const r = await lab.exec(1, process.execPath, ['-e', UDP_CLIENT, '127.0.0.1', String(lab.node(2).port)])
    assert.equal(r.stdout.trim(), '2:ping')
    await lab.waitAllUp({ timeoutMs: 10_000 })
  } finally {
    await lab.destroy()
  }
  assert.deepEqual(await leftovers('lt2', mounts), [])
})

// A child process that creates a lab and prints its pids and mounts, then waits.
async function labInChild (tag: string, mountRoot: string): Promise<{ child: ReturnType<typeof spawn>, info: { pids: number[], mounts: string[] } }> {
  const script = join(work, `child-${tag}.mjs`)
  await writeFile(script, `
import { Lab } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'dist/src/lab/lab.js')).href)}
const standin = n => ({ cmd: process.execPath, args: [${JSON.stringify(standinFile)}, String(n.id), n.addr, String(n.port), n.mount, n.mapFile] })
const lab = await Lab.create({ nodes: 2, tag: ${JSON.stringify(tag)}, mountRoot: ${JSON.stringify(mountRoot)}, command: standin })
console.log(JSON.stringify({ pids: lab.nodes.map(n => n.pid), mounts: lab.nodes.map(n => n.mount) }))
setInterval(() => {}, 1000)
`)
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  const info = await poll(`lab ${tag} up in a child`, async () => {
    if (child.exitCode !== null) throw new Error(`child exited ${child.exitCode}`)
    const line = out.split('\n').find(l => l.startsWith('{'))
    return line !== undefined ? JSON.parse(line) as { pids: number[], mounts: string[] } : undefined
  }, { timeoutMs: 30_000 })
  return { child, info }
}

test('cleanupStale removes the leftovers of a kill -9\'d lab process', async () => {
  const { child, info } = await labInChild('lt3', join(work, 'm3'))
  child.kill('SIGKILL')
  await new Promise(resolve => child.once('exit', resolve))
  // Daemons run in their own process group: they survive their lab, with their mounts.
  assert.ok(info.pids.every(pidAlive), 'daemons outlive the killed lab')
  assert.notDeepEqual(await leftovers('lt3', info.mounts), [])
  await cleanupStale('lt3')
  assert.deepEqual(await leftovers('lt3', info.mounts), [])
  assert.ok(info.pids.every(p => !pidAlive(p)), 'stale daemons killed')
  await cleanupStale('lt3') // nothing left: a no-op
})

test('SIGTERM to a process with a live lab cleans up and exits 143', async () => {
  const { child, info } = await labInChild('lt4', join(work, 'm4'))
  const code = await new Promise(resolve => { child.once('exit', (c, s) => resolve(c ?? s)); child.kill('SIGTERM') })
  assert.equal(code, 143)
  assert.deepEqual(await leftovers('lt4', info.mounts), [])
  assert.ok(info.pids.every(p => !pidAlive(p)))
})

test('real hpcd: nodes come up and see each other', { skip: !existsSync(HPCD_JS) && 'dist/src/cli/hpcd.js not built yet' }, async () => {
  const lab = await Lab.create({ nodes: 3, tag: 'lt5', mountRoot: join(work, 'm5') })
  const mounts = lab.nodes.map(n => n.mount)
  try {
    for (const n of lab.nodes) assert.equal((await n.read('admin/mospe')).trim(), String(n.id))
    await lab.waitAllUp({ timeoutMs: 30_000 })
    lab.node(2).kill('SIGKILL')
    await lab.node(2).waitExit()
    await lab.node(2).start()
    await lab.waitAllUp({ timeoutMs: 30_000 })
  } finally {
    await lab.destroy()
  }
  assert.deepEqual(await leftovers('lt5', mounts), [])
})

test('demo (npm start): comes up, Ctrl-C removes everything and exits 0', { skip: !existsSync(HPCD_JS) && 'dist/src/cli/hpcd.js not built yet' }, async () => {
  const mnt = join(work, 'm6')
  const child = spawn(process.execPath, [join(REPO_ROOT, 'dist/scripts/demo.js'), '--nodes', '2', '--tag', 'lt6', '--mnt', mnt],
    { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | string | null>(resolve => child.once('exit', (c, s) => resolve(c ?? s)))
  try {
    await poll('demo up', async () => {
      if (child.exitCode !== null) throw new Error(`demo exited ${child.exitCode}: ${out}`)
      return out.includes('All 2 nodes are up')
    }, { timeoutMs: 60_000 })
    assert.match(out, /Ctrl-C stops the cluster/)
    assert.equal((await run('cat', [join(mnt, 'hpc2', 'admin', 'mospe')], { timeoutMs: 3000 })).stdout.trim(), '2')
    child.kill('SIGINT')
    assert.equal(await exited, 0, out)
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
  }
  assert.deepEqual(await leftovers('lt6', [join(mnt, 'hpc'), join(mnt, 'hpc2')]), [])
})

test('dropPackets: 100 % loss silences a node, 0 % restores it', { skip: (!root || !haveCommand('nft')) && 'needs root and nft (nftables)' }, async () => {
  const lab = await Lab.create({ nodes: 2, tag: 'lt7', mountRoot: join(work, 'm7'), command: standin })
  const mounts = lab.nodes.map(n => n.mount)
  const ping = async (): Promise<RunResult> => await lab.exec(1, process.execPath, ['-e', UDP_CLIENT, lab.node(2).addr, String(lab.node(2).port)])
  try {
    assert.equal((await ping()).stdout.trim(), '2:ping')
    await lab.dropPackets(2, 100)
    assert.equal((await lab.exec(1, process.execPath, ['-e', UDP_CLIENT, lab.node(2).addr, String(lab.node(2).port), '3000'])).code, 2, 'no answer at 100 % loss')
    await lab.dropPackets(2, 0)
    assert.equal((await ping()).stdout.trim(), '2:ping')
    await lab.dropPackets(2, 0) // no rule left: still fine
  } finally {
    await lab.destroy()
  }
  assert.deepEqual(await leftovers('lt7', mounts), [])
})
