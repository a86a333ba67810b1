// The GUI's HTTP side over real loopback HTTP, on a node core without FUSE or migration: the page
// and its vendored graph library, the state, the event stream, the speed control going to the
// same core as admin/speed, and the access rules (tokens in files only their user can read).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'node:http'
import { HpcNode, type ProbeLike } from '../../src/core/node.js'
import { DEFAULTS } from '../../src/config.js'
import { Keyring } from '../../src/gossip/keyring.js'
import { rootDir } from '../../src/fs/root.js'
import { resolve as resolvePath, type FileNode } from '../../src/fs/tree.js'
import { GuiServer } from '../../src/gui/server.js'
import { mayChangeNode, mayMove, TokenStore } from '../../src/gui/auth.js'
import { parseListen } from '../../src/util/listen.js'

const isRoot = process.getuid?.() === 0
let tmp: string
let node: HpcNode
let gui: GuiServer
let base: string

function fakeProbe (): ProbeLike {
  let speed = 10000
  return {
    snapshot: () => ({ cpus: 2, speed, load: 120, localLoad: 100, tmem: 8e9, rmem: 4e9, mem: 5e9, util: 60 }),
    setSpeed: s => { speed = s }
  }
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'hpcfs-gui-unit-'))
  node = new HpcNode({ ...DEFAULTS, id: 4, addr: '10.0.0.4' }, fakeProbe(), new Keyring(null), { seeds: [], now: () => 0 })
  gui = new GuiServer(node, null, { intervalMs: 100, tokenDir: join(tmp, 'tokens'), historySamples: 5 })
  await gui.start({ host: '127.0.0.1', port: 0 })
  base = `http://127.0.0.1:${gui.port}`
})
after(async () => {
  await gui?.close()
  rmSync(tmp, { recursive: true, force: true })
})

const token = (uid: number): string => readFileSync(join(tmp, 'tokens', String(uid)), 'utf8').trim()
const treeSpeed = (): string => ((resolvePath(rootDir(node), '/admin/speed') as FileNode).show?.() as string).trim()

async function post (path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: { error?: string, message?: string, speed?: number } }> {
  const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  return { status: r.status, json: await r.json() as { error?: string, message?: string } }
}

test('the page, its script and uPlot from the uplot package are served, with a strict content policy', async () => {
  const page = await fetch(base + '/')
  assert.equal(page.status, 200)
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/)
  const html = await page.text()
  for (const id of ['view-map', 'view-procs', 'view-sched', 'view-events', 'view-history']) assert.match(html, new RegExp(`id="${id}"`))
  const js = await fetch(base + '/app.js')
  assert.match(js.headers.get('content-type') ?? '', /javascript/)
  assert.match(await js.text(), /EventSource\('\/api\/events'\)/)
  const up = await fetch(base + '/vendor/uPlot.iife.min.js')
  assert.equal(up.status, 200)
  assert.match(await up.text(), /uPlot/)
  assert.equal((await fetch(base + '/vendor/uPlot.min.css')).status, 200)
  assert.equal((await fetch(base + '/nope')).status, 404)
  assert.equal((await fetch(base + '/../../etc/passwd')).status, 404)
  assert.equal((await fetch(base + '/api/state', { method: 'PUT' })).status, 405)
})

test('the state is the core\'s: this node with its load, speed and memory', async () => {
  const s = await (await fetch(base + '/api/state')).json() as { self: number, nodes: Array<{ id: number, self: boolean, up: boolean, load: number, speed: number, mem: number, tmem: number }>, procs: unknown[] }
  assert.equal(s.self, 4)
  assert.deepEqual(s.nodes.map(n => [n.id, n.self, n.up, n.load, n.speed, n.mem, n.tmem]), [[4, true, true, 120, node.speed, 5e9, 8e9]])
  assert.deepEqual(s.procs, [])
})

test('the event stream says hello with the state and history, then pushes the state every interval', async () => {
  const text = await new Promise<string>((resolve, reject) => {
    let buf = ''
    const req = request(base + '/api/events', res => {
      assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/)
      res.on('data', (c: Buffer) => {
        buf += c.toString()
        if (/event: state\n/.test(buf)) { req.destroy(); resolve(buf) }
      })
    })
    req.on('error', e => { if (!buf) reject(e) })
    req.end()
  })
  const hello = /event: hello\ndata: (.*)\n\n/.exec(text)
  assert.ok(hello, text.slice(0, 200))
  const h = JSON.parse(hello[1]) as { state: { self: number }, history: Array<{ loads: Record<string, number> }>, events: unknown[] }
  assert.equal(h.state.self, 4)
  assert.ok(h.history.length >= 1 && h.history.length <= 5, `history kept: ${h.history.length} (at most 5)`)
  assert.equal(h.history[0].loads['4'], 120)
  assert.deepEqual(h.events, [])
})

test('a speed change needs a token of root or the daemon\'s user, goes to the core (admin/speed shows it), and bad input changes nothing', async () => {
  const before = treeSpeed()
  const none = await post('/api/speed', { speed: 12345 })
  assert.equal(none.status, 401)
  assert.match(none.json.message ?? '', /token/)
  assert.equal((await post('/api/speed', { speed: 12345 }, { Authorization: 'Bearer 00ff' })).status, 401)
  const auth = { Authorization: `Bearer ${token(process.getuid?.() ?? 0)}` }
  assert.equal((await post('/api/speed', { speed: 12345 }, { ...auth, 'Content-Type': 'text/plain' })).status, 415)
  assert.equal((await post('/api/speed', '{"speed": 1', auth)).status, 400)
  const zero = await post('/api/speed', { speed: 0 }, auth)
  assert.equal(zero.status, 400)
  assert.equal(zero.json.error, 'EINVAL')
  assert.equal((await post('/api/speed', { speed: '9000' }, auth)).status, 400)
  assert.equal((await post('/api/speed', { speed: 'x'.repeat(5000) }, auth)).status, 413)
  assert.equal(treeSpeed(), before, 'refused writes changed nothing')
  const ok = await post('/api/speed', { speed: 23456 }, auth)
  assert.equal(ok.status, 200)
  assert.equal(ok.json.speed, 23456)
  assert.equal(treeSpeed(), '23456', 'the tree shows what the GUI set: one core')
  const who = await (await fetch(base + '/api/whoami', { headers: auth })).json() as { uid: number, mayChangeNode: boolean }
  assert.deepEqual([who.uid, who.mayChangeNode], [process.getuid?.() ?? 0, true])
})

test('another user\'s token may not change the node; moves need migration and an owner', { skip: !isRoot && 'needs root (tokens for other users)' }, async () => {
  assert.ok(gui.tokens.issue(65534))
  const st = statSync(join(tmp, 'tokens', '65534'))
  assert.equal(st.uid, 65534)
  assert.equal(st.mode & 0o777, 0o400, 'readable by its user only')
  const nobody = { Authorization: `Bearer ${token(65534)}` }
  const r = await post('/api/speed', { speed: 777 }, nobody)
  assert.equal(r.status, 403)
  assert.notEqual(treeSpeed(), '777')
  const who = await (await fetch(base + '/api/whoami', { headers: nobody })).json() as { uid: number, mayChangeNode: boolean }
  assert.deepEqual([who.uid, who.mayChangeNode], [65534, false])
  const m = await post(`/api/procs/${process.pid}/move`, { target: 2 }, { Authorization: `Bearer ${token(0)}` })
  assert.equal(m.status, 501, 'no migration on this node')
})

test('token files: one per uid, 0400 in a 0755 directory, removed at close; the access rules', () => {
  const dir = join(tmp, 'store')
  const s = new TokenStore(dir)
  s.init()
  assert.equal(statSync(dir).mode & 0o777, 0o755)
  const me = process.getuid?.() ?? 0
  const t = readFileSync(join(dir, String(me)), 'utf8').trim()
  assert.match(t, /^[0-9a-f]{64}$/)
  assert.equal(s.uidOf(t), me)
  assert.equal(s.uidOf(t.slice(1)), undefined)
  assert.equal(s.uidOf(undefined), undefined)
  assert.equal(s.issue(me), t, 'stable for the daemon\'s life')
  if (!isRoot) assert.equal(s.issue(me + 1), undefined, 'a daemon that is not root hands out only its own user\'s token')
  const again = new TokenStore(dir)
  again.init() // a restart: the old tokens are gone
  assert.equal(again.uidOf(t), undefined)
  assert.notEqual(readFileSync(join(dir, String(me)), 'utf8').trim(), t)
  again.close()
  assert.equal(existsSync(dir), false)
  assert.equal(mayChangeNode(0), true)
  assert.equal(mayChangeNode(me), true)
  assert.equal(mayMove(0, 123, () => 1000), true, 'root moves anything')
  assert.equal(mayMove(1000, 123, () => 1000), true, 'the owner moves their own')
  assert.equal(mayMove(1001, 123, () => 1000), false, 'another user may not')
  assert.equal(mayMove(1000, 123, () => undefined), false, 'a gone process cannot be moved')
})

test('listen addresses: HOST:PORT, [v6]:PORT, PORT; anything else is a clear error', () => {
  assert.deepEqual(parseListen('0.0.0.0:5480', '127.0.0.1', '--gui-addr'), { host: '0.0.0.0', port: 5480 })
  assert.deepEqual(parseListen('9100', '127.0.0.1', '--metrics'), { host: '127.0.0.1', port: 9100 })
  assert.deepEqual(parseListen('[::1]:80', '127.0.0.1', '--metrics'), { host: '::1', port: 80 })
  assert.deepEqual(parseListen('localhost:80', '127.0.0.1', '--metrics'), { host: 'localhost', port: 80 })
  assert.throws(() => parseListen('host.example:80', '127.0.0.1', '--metrics'), /--metrics: "host.example" is not an IP/)
  assert.throws(() => parseListen('1.2.3.4:99999', '127.0.0.1', '--metrics'), /outside 1..65535/)
  assert.throws(() => parseListen('1.2.3.4', '127.0.0.1', '--gui-addr'), /--gui-addr: expected HOST:PORT/)
  assert.throws(() => parseListen('', '127.0.0.1', '--gui-addr'), /expected/)
})
