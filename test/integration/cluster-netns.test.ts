// Several real daemons, each in its own network namespace with its own address, talking over
// real UDP: membership, propagation, failure and return, hostile datagrams, and the tools.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { availableParallelism } from 'node:os'
import { Lab, type LabNode } from '../../src/lab/lab.js'
import { encode } from '../../src/gossip/codec.js'
import { Keyring } from '../../src/gossip/keyring.js'
import { until, sh, ROOT } from '../helpers/daemon.js'

const N = 6
const INTERVAL = 0.25
let lab: Lab

before(async () => {
  lab = await Lab.create({
    nodes: N,
    tag: 'itest',
    interval: INTERVAL,
    window: 8,
    hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '3'],
    env: { DEBUG: 'hpcfs:*' }
  })
})
after(async () => { await lab?.destroy() })

const stat = async (via: LabNode, id: number, file: string): Promise<string> => (await via.read(`nodes/${id}/${file}`)).trim()
const stats = async (n: LabNode): Promise<Record<string, number>> =>
  Object.fromEntries((await n.read('admin/gossip-stats')).trim().split('\n').map(l => { const [k, v] = l.split(' '); return [k, Number(v)] }))

test('every node sees every other node up within a bounded number of intervals', async () => {
  const t0 = Date.now()
  await lab.waitAllUp({ timeoutMs: 40 * INTERVAL * 1000 })
  const n1 = lab.node(1)
  for (let id = 1; id <= N; id++) {
    assert.equal(await stat(n1, id, 'speed'), String(10000 * id))
    assert.equal(await stat(n1, id, 'status'), '3')
    assert.match(await stat(n1, id, 'load'), /^\d+$/)
  }
  console.log(`# converged in ${Date.now() - t0} ms`)
})

test('a speed written on one node is seen on every other node within a few intervals', async () => {
  await lab.node(3).write('admin/speed', '33333\n')
  const t0 = Date.now()
  await until('speed 33333 everywhere', async () => {
    const vs = await Promise.all(lab.nodes.map(n => stat(n, 3, 'speed')))
    return vs.every(v => v === '33333')
  }, 20 * INTERVAL * 1000, 50)
  assert.ok(Date.now() - t0 < 20 * INTERVAL * 1000)
})

test('each node\'s load is that of the processes in its namespace (the lab\'s load scope), seen by the others', async () => {
  const [n2, n3] = [lab.node(2), lab.node(3)]
  const load = async (via: LabNode, id: number): Promise<number> => Number(await stat(via, id, 'load'))
  const one = (id: number): number => 100 * 10000 / (10000 * id * availableParallelism()) // one busy task on node id
  const loop = lab.spawn(3, 'sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' })
  try {
    await until('node 3 counts its busy loop', async () => (await load(n3, 3)) >= one(3) / 2, 10_000, 100)
    await until('node 2 sees it', async () => (await load(n2, 3)) >= one(3) / 2, 10_000, 100)
    assert.ok(await load(n2, 2) < one(2) / 2, `node 2's own load ${await load(n2, 2)} (one busy task: ${one(2)})`)
  } finally { loop.kill('SIGKILL') }
  await until('node 3 idle again', async () => (await load(n3, 3)) < one(3) / 2, 15_000, 100)
})

test('a killed node reads down everywhere and comes back after restart', async () => {
  const victim = lab.node(5)
  victim.kill('SIGKILL')
  await victim.waitExit()
  const others = lab.nodes.filter(n => n.id !== 5)
  await until('node 5 down everywhere', async () => {
    const vs = await Promise.all(others.map(n => stat(n, 5, 'load')))
    return vs.every(v => v === '-101')
  }, 15_000, 100)
  for (const n of others) assert.equal(await stat(n, 5, 'status'), '1')
  await victim.start()
  await lab.waitAllUp({ timeoutMs: 20_000 })
  assert.equal(await stat(lab.node(1), 5, 'speed'), '50000')
})

test('forged, garbage, truncated, replayed and foreign-version datagrams are dropped and counted', async () => {
  const target = lab.node(1)
  const before = await stats(target)
  const key = new Keyring(readFileSync(lab.node(1).keyFile))
  const evil = { info: { id: 2, addr: lab.node(2).addr, port: lab.node(2).port, incarnation: 0xfffffff0, seq: 1, status: 3, cpus: 1, speed: 1, load: 999999, tmem: 0, rmem: 0, mem: 0, util: 0 }, age: 0 }
  const dest = { id: 1, addr: target.addr, port: target.port }
  const forged = encode({ sender: 2, incarnation: 0xfffffff0, seq: 1, dest, entries: [evil] }, new Keyring(Buffer.from('not the cluster key, 32 bytes..!')))
  // incarnation 1 is older than any real one: it can never lock out the real node 4
  const valid = encode({ sender: 4, incarnation: 1, seq: 1, dest, entries: [] }, key)
  const v2 = Buffer.from(valid); v2[2] = 9
  const sock = createSocket('udp4')
  const send = (b: Buffer): Promise<void> => new Promise((resolve, reject) => sock.send(b, target.port, target.addr, e => e ? reject(e) : resolve()))
  try {
    await send(forged)
    await send(Buffer.from('garbage garbage garbage'))
    await send(valid.subarray(0, valid.length - 3))
    await send(v2)
    await send(valid)
    await send(valid) // replay
  } finally { sock.close() }
  await until('counters', async () => {
    const s = await stats(target)
    return s['dropped-badmac'] >= before['dropped-badmac'] + 1 && s['dropped-malformed'] >= before['dropped-malformed'] + 2 &&
      s['dropped-version'] >= before['dropped-version'] + 1 && s['dropped-replay'] >= before['dropped-replay'] + 1
  }, 5000)
  assert.notEqual(await stat(target, 2, 'load'), '999999')
  assert.equal(await stat(target, 2, 'speed'), '20000')
  await lab.waitAllUp({ timeoutMs: 10_000 }) // and the daemon keeps working
})

test('the tools print what the files hold', async () => {
  const n1 = lab.node(1)
  const env = { HPC_ROOT: n1.mount }
  const tool = (t: string, args: string): Promise<{ code: number, stdout: string, stderr: string }> =>
    sh(`node ${join(ROOT, 'src/cli', t + '.js')} ${args}`, { env })
  for (const id of [1, 2, 6]) {
    assert.equal((await tool('mosctl', `getspeed ${id}`)).stdout.trim(), await stat(n1, id, 'speed'))
    assert.equal((await tool('mosctl', `isup ${id}`)).stdout.trim(), 'yes')
  }
  assert.equal((await tool('mosctl', 'whois')).stdout.trim(), 'This is openMosix #1')
  const map = await tool('setpe', '-r')
  assert.equal(map.code, 0, map.stderr)
  assert.match(map.stdout, new RegExp(`^1 ${lab.node(1).addr.replace(/\./g, '\\.')} ${N}$`, 'm'))
  const sm = await tool('showmap', '')
  assert.match(sm.stdout, /My Node-Id: 0x0001/)
  assert.equal((await tool('mosctl', 'setspeed 12121')).code, 0)
  assert.equal(await stat(n1, 1, 'speed'), '12121')
  const bad = await tool('mosctl', 'setspeed fast')
  assert.notEqual(bad.code, 0)
  assert.equal(await stat(n1, 1, 'speed'), '12121')
  const mon = await tool('mosmon', '--once')
  if (mon.code === 0) for (let id = 1; id <= N; id++) assert.match(mon.stdout, new RegExp(`\\b${id}\\b`))
})

test('with 30% packet loss on one node the cluster still agrees', async () => {
  await lab.dropPackets(2, 30)
  await lab.node(2).write('admin/speed', '22222\n')
  await until('speed of node 2 seen everywhere despite loss', async () => {
    const vs = await Promise.all(lab.nodes.map(n => stat(n, 2, 'speed')))
    return vs.every(v => v === '22222')
  }, 20_000, 100)
  await lab.dropPackets(2, 0)
})
