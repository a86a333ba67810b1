// hpcd --discover on namespaced nodes (the lab's bridge carries the multicast): two daemons without
// a map or a seed find each other; a third with another cluster key is never learned; forged,
// malformed and replayed announcements sent onto the bridge are dropped and counted.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Lab, HPCD_JS, cleanupStale, type LabNodeSpec } from '../../src/lab/lab.js'
import { isRoot, poll, sleep } from '../../src/lab/sys.js'
import { DISCOVERY } from '../../src/config.js'
import { encodeAnnouncement } from '../../src/discovery/announce.js'
import { Keyring } from '../../src/gossip/keyring.js'

const TAG = 'disc'
const work = await mkdtemp(join(tmpdir(), 'hpcfs-disctest-'))
after(async () => {
  await cleanupStale(TAG).catch(() => undefined)
  await rm(work, { recursive: true, force: true })
})

const PORT = 5428
const GROUP_PORT = PORT + DISCOVERY.portOffset

/** admin/discovery-stats as numbers. */
async function stats (lab: Lab, id: number): Promise<Record<string, number>> {
  const text = await lab.node(id).read('admin/discovery-stats')
  return Object.fromEntries(text.trim().split('\n').map(l => { const [k, v] = l.split(' '); return [k, Number(v)] }))
}

const listNodes = async (lab: Lab, id: number): Promise<string[]> =>
  (await lab.exec(id, 'ls', [join(lab.node(id).mount, 'nodes')])).stdout.split('\n').filter(s => s !== '')

test('two daemons without a map find each other; another key, forgeries, garbage and replays are dropped and counted', { skip: !isRoot() && 'needs root (network namespaces)' }, async () => {
  const otherKey = join(work, 'other.key')
  await writeFile(otherKey, randomBytes(32))
  // No --map, no --join: the open cluster of each node starts empty; node 3 has another key.
  const command = (n: LabNodeSpec): { cmd: string, args: string[] } => ({
    cmd: process.execPath,
    args: [HPCD_JS, '--id', String(n.id), '--addr', n.addr, '--port', String(n.port), '--mount', n.mount,
      '--key', n.id === 3 ? otherKey : n.keyFile, '--discover', '--load-scope', 'netns', '--speed', '10000']
  })
  const lab = await Lab.create({ nodes: 3, tag: TAG, port: PORT, mountRoot: join(work, 'mnt'), command, env: { DEBUG: 'hpcfs:discovery' } })
  // Sockets of the test itself on the host's end of the bridge, closed whatever happens.
  const sock = createSocket({ type: 'udp4', reuseAddr: true })
  const capture = createSocket({ type: 'udp4', reuseAddr: true })
  try {
    await poll('nodes 1 and 2 to see each other up', async () => {
      const [a, b] = await Promise.all([lab.readStatuses(1, [2]), lab.readStatuses(2, [1])])
      return (a[0] ?? 0) & 2 && (b[0] ?? 0) & 2
    }, { timeoutMs: 30_000, everyMs: 250 })
    const [s1, s2] = [await stats(lab, 1), await stats(lab, 2)]
    assert.equal(s1.enabled, 1)
    assert.ok(s1.sent >= 1 && s2.sent >= 1, JSON.stringify([s1, s2]))
    // The first to hear the other's announcement learns it; the other learns back through gossip.
    assert.ok(s1.learned + s2.learned >= 1, JSON.stringify([s1, s2]))
    // Node 3's announcements carry another cluster's MAC: dropped, and node 3 never appears.
    await poll('node 1 to drop node 3\'s announcements', async () => (await stats(lab, 1))['dropped-badmac'] >= 1, { timeoutMs: 20_000 })
    assert.deepEqual(await listNodes(lab, 1), ['1', '2'])
    assert.deepEqual(await listNodes(lab, 3), ['3'], 'node 3 learned nobody either')
    await poll('node 3 to drop the announcements of nodes 1 and 2 (another key)', async () => (await stats(lab, 3))['dropped-badmac'] >= 1, { timeoutMs: 20_000 })

    // Datagrams from the host onto the bridge: garbage, and a well-formed announcement of a node 77
    // signed with a key the cluster does not have.
    const before = await stats(lab, 1)
    await new Promise<void>(resolve => sock.bind(0, lab.bridgeAddr, () => resolve()))
    sock.setMulticastInterface(lab.bridgeAddr!)
    const send = async (buf: Buffer): Promise<void> => { await new Promise<void>((resolve, reject) => sock.send(buf, GROUP_PORT, DISCOVERY.group, e => e ? reject(e) : resolve())) }
    await send(Buffer.from('garbage, not an announcement'))
    await send(encodeAnnouncement({ id: 77, addr: lab.bridgeAddr!, port: PORT, incarnation: 1, seq: 1 }, new Keyring(randomBytes(32))))
    await poll('node 1 to count the garbage and the forgery', async () => {
      const s = await stats(lab, 1)
      return s['dropped-malformed'] > before['dropped-malformed'] && s['dropped-badmac'] > before['dropped-badmac']
    }, { timeoutMs: 10_000 })

    // A replay: node 2's own announcement, captured off the group and sent again from node 2's
    // address (so that only its sequence number gives it away).
    const captured = new Promise<Buffer>(resolve => capture.on('message', (m, r) => { if (r.address === lab.node(2).addr) resolve(m) }))
    await new Promise<void>(resolve => capture.bind(GROUP_PORT, DISCOVERY.group, () => resolve()))
    capture.addMembership(DISCOVERY.group, lab.bridgeAddr)
    const heard = await Promise.race([captured, sleep(20_000).then(() => undefined)])
    assert.ok(heard !== undefined, 'an announcement of node 2 heard on the bridge')
    const replays = (await stats(lab, 1))['dropped-replay']
    await poll('node 1 to count the replay', async () => {
      // sent from inside node 2's namespace, with node 2's address as the source
      const r = await lab.exec(2, process.execPath, ['-e', `
        const s = require('dgram').createSocket('udp4')
        s.bind(0, ${JSON.stringify(lab.node(2).addr)}, () => {
          s.setMulticastInterface(${JSON.stringify(lab.node(2).addr)})
          s.send(Buffer.from(${JSON.stringify(heard.toString('hex'))}, 'hex'), ${GROUP_PORT}, ${JSON.stringify(DISCOVERY.group)}, () => s.close())
        })`])
      assert.equal(r.code, 0, r.stderr)
      return (await stats(lab, 1))['dropped-replay'] > replays
    }, { timeoutMs: 10_000, everyMs: 500 })
    assert.deepEqual(await listNodes(lab, 1), ['1', '2'], 'no forged node learned')
    assert.ok((await lab.readStatuses(1, [2]))[0]! & 2, 'node 2 still up')
  } finally {
    sock.close()
    capture.close()
    await lab.destroy()
  }
})
