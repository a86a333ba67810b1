// The web GUI in a real browser (Debian's chromium, driven by playwright-core) against three
// namespaced daemons, and the metrics endpoint fetched over HTTP: the map shows every node; a
// speed set in the GUI is read from another node's tree; a process dragged onto a node (or sent
// there by choosing it) moves there, as proc/<pid>/where says; the scheduler's explanation is the
// one proc/<pid>/costs gives; the load history is drawn; a killed node reads down on the map.
// A screenshot of each view is taken once the test has checked the elements it should show
// (they stay in $TMPDIR/hpcfs-gui-screenshots to be looked at).
//
// Needs root (network namespaces). Without chromium the browser tests skip, saying so; under CI
// (CI set, as .ci/run runs) a missing chromium fails them instead: `npm test` installs it
// (scripts/setup --test).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Locator, type Page } from 'playwright-core'
import { Lab } from '../../src/lab/lab.js'
import { isRoot } from '../../src/lab/sys.js'
import { Lab as Bins } from '../ppm/harness.js'
import { until } from '../helpers/daemon.js'
import { defaultTokenDir } from '../../src/gui/auth.js'

const CHROMIUM = process.env.HPCFS_CHROMIUM ?? '/usr/bin/chromium'
const haveChromium = existsSync(CHROMIUM)
const root = isRoot()
const noLab = !root && 'needs root (the nodes run in network namespaces)'
const noBrowser = noLab || (!haveChromium && !process.env.CI && `${CHROMIUM} not found: install Debian's chromium (apt-get install chromium; npm test does it)`)
const GUI_PORT = 5480
const METRICS_PORT = 9480
const SHOTS = join(tmpdir(), 'hpcfs-gui-screenshots')

let lab: Lab
let bins: Bins
let counter: string
let launcher: string
let browser: Browser | undefined
let page: Page
let gui: string
const jobs: ChildProcess[] = []

before(async () => {
  if (noLab) return
  bins = new Bins()
  counter = bins.compile('counter')
  launcher = bins.compile('launch')
  lab = await Lab.create({
    nodes: 3,
    tag: 'gui',
    interval: 0.5,
    // (--down-after 4: 8 intervals of silence; with 2 a node on a busy machine could read down for a
    // moment, and a move to it be refused)
    hpcdArgs: id => ['--speed', String(10000 * id), '--down-after', '4', '--no-balance', '--metrics', `0.0.0.0:${METRICS_PORT}`,
      ...(id === 1 ? ['--gui-addr', `0.0.0.0:${GUI_PORT}`] : [])]
  })
  await lab.waitAllUp()
  gui = `http://${lab.node(1).addr}:${GUI_PORT}`
  if (noBrowser) return
  assert.ok(haveChromium, `${CHROMIUM} not found, and CI needs the browser tests: apt-get install chromium (scripts/setup --test)`)
  mkdirSync(SHOTS, { recursive: true, mode: 0o755 })
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // what Chromium needs here: no sandbox as root, no GPU, and no connections of its own
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-proxy-server']
  })
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
  const token = readFileSync(join(defaultTokenDir(lab.node(1).mount), '0'), 'utf8').trim()
  await page.goto(`${gui}/#token=${token}`)
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20_000 })
})
after(async () => {
  await browser?.close()
  for (const j of jobs) if (j.exitCode === null) j.kill('SIGKILL')
  await lab?.destroy()
  bins?.cleanup()
})

const where = async (pid: number): Promise<string> => (await lab.node(1).read(`proc/${pid}/where`)).trim()

/** A subject that lives until killed, at home on node 1, under cluster discipline. */
async function startJob (uid?: number): Promise<number> {
  const as = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']
  const child = spawn('nsenter', [`--net=/run/netns/${lab.node(1).ns as string}`, '--', ...as, launcher, counter, '1000000', '64', '0', '100000'], { stdio: 'ignore', cwd: '/' }) // (cwd: one every user may enter, see jobs.ts)
  jobs.push(child)
  const pid = child.pid as number
  // (nsenter and setpriv run as root before the job drops to uid: the tree checks the owner)
  if (uid !== undefined) await until('the job runs as its user', () => new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(readFileSync(`/proc/${pid}/status`, 'utf8')), 10_000)
  if (uid === undefined) await lab.node(1).write(`proc/${pid}/lock`, '0\n')
  return pid
}

/** Checks what a view must show, then takes its screenshot (kept in SHOTS). */
async function shot (name: string, view: Locator, checks: () => Promise<void>): Promise<void> {
  await checks()
  const path = join(SHOTS, `${name}.png`)
  await view.screenshot({ path })
  assert.ok(statSync(path).size > 4000, `${path} holds a picture`)
}

const text = async (l: Locator): Promise<string> => (await l.textContent())?.trim() ?? ''
const card = (id: number): Locator => page.locator(`.node-card[data-node="${id}"]`)
const waitFor = async (what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> => { await until(what, fn, ms, 100) }

test('the map shows every node with its load, speed, memory and state, live', { skip: noBrowser }, async () => {
  await waitFor('three nodes up on the map', async () => await page.locator('.node-card[data-state="up"]').count() === 3)
  await waitFor('root\'s token enables the speed control', async () => await card(1).locator('.speed-input').isEnabled())
  const ages: string[] = []
  await shot('map', page.locator('#view-map'), async () => {
    for (const id of [1, 2, 3]) {
      const c = card(id)
      assert.equal(await text(c.locator('.name')), `Node ${id}`)
      assert.equal(await text(c.locator('[data-field="speed"]')), (await lab.node(1).read(`nodes/${id}/speed`)).trim(), `node ${id}'s speed as node 1's tree has it`)
      assert.match(await text(c.locator('[data-field="load"]')), /^\d+$/)
      assert.match(await text(c.locator('[data-field="mem"]')), /^[\d.]+ [MG]iB free of [\d.]+ [MG]iB$/)
      assert.match(await text(c.locator('.badges')), /up/)
      ages.push(await text(c.locator('[data-field="age"]')))
    }
    assert.match(await text(card(1).locator('.badges')), /this node/)
    assert.match(await text(page.locator('#who')), /^uid 0 \(may change this node\)$/)
    assert.equal(await text(page.locator('#conn')), 'live')
  })
  // live: the gossip ages of the other nodes change without a reload
  await waitFor('node 2\'s age to change on the page', async () => await text(card(2).locator('[data-field="age"]')) !== ages[1])
})

test('a speed set in the GUI is read from another node\'s tree through gossip; a bad one changes nothing', { skip: noBrowser }, async () => {
  const speed = card(1).locator('.speed-input')
  await speed.fill('0')
  await card(1).locator('.speed-set').click()
  await waitFor('the refusal', async () => /speed not changed: EINVAL/.test(await text(page.locator('#message'))))
  assert.equal((await lab.node(1).read('admin/speed')).trim(), '10000', 'unchanged')
  await speed.fill('23456')
  await card(1).locator('.speed-set').click()
  await waitFor('node 3\'s tree shows node 1\'s new speed', async () => (await lab.node(3).read('nodes/1/speed')).trim() === '23456')
  assert.equal((await lab.node(1).read('admin/speed')).trim(), '23456')
  await waitFor('the map shows it', async () => await text(card(1).locator('[data-field="speed"]')) === '23456')
  // a page without a token reads everything and changes nothing
  const anon = await (browser as Browser).newPage()
  try {
    await anon.goto(gui + '/')
    await anon.waitForSelector('body[data-ready="1"]')
    await until('the map', async () => await anon.locator('.node-card').count() === 3)
    assert.equal(await anon.locator('.node-card[data-node="1"] .speed-input').isDisabled(), true)
    assert.match(await text(anon.locator('#who')), /read-only/)
    await until('the page says where the token is', async () => (await text(anon.locator('#token-help'))).includes(`${defaultTokenDir(lab.node(1).mount)}/<your uid>`))
  } finally { await anon.close() }
  const raw = await fetch(`${gui}/api/speed`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"speed": 5}' })
  assert.equal(raw.status, 401)
  assert.equal((await lab.node(1).read('admin/speed')).trim(), '23456')
})

test('a process dragged onto a node moves there; choosing a node moves it too; the migrations view shows the moves', { skip: noBrowser }, async () => {
  const pid = await startJob()
  const row = page.locator(`tr.proc[data-pid="${pid}"]`)
  await row.waitFor({ timeout: 10_000 })
  assert.equal(await text(row.locator('[data-field="where"]')), 'home')
  await row.dragTo(card(3))
  await waitFor('proc/<pid>/where says node 3', async () => (await where(pid)) === '3')
  await waitFor('the row says node 3', async () => await text(row.locator('[data-field="where"]')) === 'node 3')
  await row.locator('select.move-select').selectOption('2')
  await waitFor('proc/<pid>/where says node 2', async () => (await where(pid)) === '2')
  const moved = page.locator(`#events li[data-kind="moved"][data-pid="${pid}"]`)
  await waitFor('both moves in the log', async () => await moved.count() >= 2)
  await waitFor('the row says node 2', async () => await text(row.locator('[data-field="where"]')) === 'node 2')
  await shot('processes', page.locator('#view-procs'), async () => {
    assert.equal(await text(row.locator('[data-field="where"]')), 'node 2')
    assert.equal(await text(row.locator('[data-field="nmigs"]')), '2')
    assert.equal(await text(row.locator('[data-field="lock"]')), 'no')
    assert.match(await text(row.locator('[data-field="command"]')), /counter 1000000/)
  })
  await shot('migrations', page.locator('#view-events'), async () => {
    assert.match(await text(moved.nth(1)), new RegExp(`process ${pid} moved home → node 3`))
    assert.match(await text(moved.nth(0)), new RegExp(`process ${pid} moved node 3 → node 2`))
    assert.equal(await page.locator(`#events li[data-kind="requested"][data-pid="${pid}"]`).count(), 2)
  })
  await row.dragTo(card(1))
  await waitFor('home again', async () => (await where(pid)) === '0')
})

test('the scheduler view explains a process as proc/<pid>/costs does', { skip: noBrowser }, async () => {
  const pid = Number(await page.locator('tr.proc').first().getAttribute('data-pid'))
  await waitFor('the process at home', async () => (await where(pid)) === '0')
  await page.locator(`tr.proc[data-pid="${pid}"]`).click()
  const box = page.locator('#explain')
  await waitFor('the explanation', async () => await box.locator('.cost-here').count() === 1 && await box.locator('pre.tree').count() === 1)
  const tree = await lab.node(1).read(`proc/${pid}/costs`)
  const head = new RegExp(`^pid ${pid} cost-here \\S+ (movable|pinned)`).exec(tree)
  assert.ok(head, tree)
  const treeNodes = [...tree.matchAll(/^node (\d+) cost/gm)].map(m => m[1]).sort()
  await box.locator('summary').click() // unfold the file's text; it stays unfolded while the state updates
  const age = await text(card(2).locator('[data-field="age"]'))
  await waitFor('a state update', async () => await text(card(2).locator('[data-field="age"]')) !== age)
  await shot('scheduler', page.locator('#view-sched'), async () => {
    assert.match(await text(page.locator('#decision')), /^balance off: /)
    assert.match(await text(box.locator('.explain-head')), new RegExp(`Process ${pid} \\(counter 1000000 .*\\): cost here [-+\\d.e]+, ${head[1]}: `))
    const rows = await box.locator('table.candidates tbody tr').evaluateAll(trs => trs.map(tr => (tr as HTMLElement).dataset.node ?? ''))
    assert.deepEqual(rows.sort(), treeNodes, 'the same candidate nodes as the tree')
    assert.deepEqual(treeNodes, ['2', '3'])
    assert.equal(await box.locator('details[open] pre.tree').isVisible(), true)
    assert.match(await text(box.locator('pre.tree')), new RegExp(`^pid ${pid} cost-here`))
  })
})

test('the load history is a graph with one line per node; a busy node\'s line rises', { skip: noBrowser }, async () => {
  // a CPU-bound shell loop in node 2's namespace: node 2's load (netns scope) rises
  const busy = spawn('nsenter', [`--net=/run/netns/${lab.node(2).ns as string}`, '--', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' })
  jobs.push(busy)
  // one busy task on node 2: 100 × 10000 / (speed 20000 × CPUs) (the load is per standard CPU)
  const high = 100 * 10000 / (20000 * Number(await text(card(2).locator('[data-field="cpus"]')))) / 2
  try {
    await waitFor('node 2 busy on the map', async () => Number(await text(card(2).locator('[data-field="load"]'))) > high)
    const legend = page.locator('#chart .u-legend .u-series')
    const over = page.locator('#chart .u-over')
    // the legend shows the values under the cursor: at the right end, the latest sample
    await waitFor('the graph\'s latest sample of node 2 is high', async () => {
      const b = await over.boundingBox()
      if (!b) return false
      await over.hover({ position: { x: b.width - 1, y: b.height / 2 } })
      return Number((await text(legend.nth(2).locator('.u-value'))).replace(/,/g, '')) > high
    })
    await shot('history', page.locator('#view-history'), async () => {
      assert.equal(await page.locator('#chart .uplot canvas').count(), 1)
      const labels = await legend.locator('.u-label').allTextContents()
      assert.deepEqual(labels.slice(1), ['node 1', 'node 2', 'node 3'])
      assert.ok(Number((await text(legend.nth(2).locator('.u-value'))).replace(/,/g, '')) > high)
    })
  } finally { busy.kill('SIGKILL') }
  await page.mouse.move(0, 0)
  await page.screenshot({ path: join(SHOTS, 'page.png'), fullPage: true })
})

test('a killed node reads down on the map and up again when it returns', { skip: noBrowser }, async () => {
  lab.node(3).kill('SIGKILL')
  await lab.node(3).waitExit()
  await waitFor('node 3 down on the map', async () => await card(3).getAttribute('data-state') === 'down')
  await waitFor('the other two up on the map', async () => await page.locator('.node-card[data-state="up"]').count() === 2)
  await shot('map-node-down', page.locator('#view-map'), async () => {
    assert.match(await text(card(3).locator('.badges')), /down/)
    assert.equal(await text(card(3).locator('[data-field="speed"]')), '-')
    assert.equal(await page.locator('.node-card[data-state="up"]').count(), 2)
    assert.equal(await page.locator('select.move-select option[value="3"][disabled]').count(), await page.locator('tr.proc').count())
  })
  await lab.node(3).start()
  await waitFor('node 3 up again', async () => await card(3).getAttribute('data-state') === 'up', 30_000)
  await lab.waitAllUp() // (every node hears it again before the next tests)
})

test('GUI moves: root and the owner may move a process, another user may not; each user reads only their own token', { skip: noLab }, async () => {
  for (const d of [bins.dir, lab.tmp, join(lab.tmp, 'mnt')]) spawnSync('chmod', ['755', d])
  const nobody = 65534
  const pid = await startJob(nobody)
  const mine = spawnSync('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', 'sh', '-c', `echo 0 > ${lab.node(1).mount}/proc/${pid}/lock`], { encoding: 'utf8' })
  assert.equal(mine.status, 0, mine.stderr)
  const dir = defaultTokenDir(lab.node(1).mount)
  const asUser = (uid: number, cmd: string): { status: number | null, stdout: string, stderr: string } =>
    spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', cmd], { encoding: 'utf8' })
  // the daemon hands out the token of a user who has a process under discipline here
  const tok = await until('nobody\'s token file', () => { const r = asUser(nobody, `cat ${dir}/${nobody}`); return r.status === 0 && r.stdout.trim() }, 10_000)
  assert.match(asUser(65533, `cat ${dir}/${nobody}`).stderr, /Permission denied/, 'another user cannot read it')
  assert.match(asUser(nobody, `cat ${dir}/0`).stderr, /Permission denied/, 'nor root\'s')
  const move = async (p: number, target: number | 'home', token: string): Promise<number> =>
    (await fetch(`${gui}/api/procs/${p}/move`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }, body: JSON.stringify({ target }) })).status
  const rootsJob = await startJob()
  assert.equal(await move(rootsJob, 2, tok), 403, 'nobody may not move root\'s process')
  assert.equal(await move(pid, 2, tok), 202, 'nobody moves their own')
  await until('nobody\'s process on node 2', async () => (await where(pid)) === '2', 20_000)
  const speed = await fetch(`${gui}/api/speed`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${tok}` }, body: '{"speed": 7}' })
  assert.equal(speed.status, 403, 'nor change the node')
  const rootTok = readFileSync(join(dir, '0'), 'utf8').trim()
  assert.equal(await move(pid, 99, rootTok), 400, 'an unknown node: EINVAL')
  assert.equal(await move(pid, 'home', rootTok), 202, 'root moves anything')
  await until('home', async () => (await where(pid)) === '0', 20_000)
  assert.equal(await where(rootsJob), '0')
})

test('metrics: every node\'s values and the gossip, migration and scheduler counters over HTTP', { skip: noLab }, async () => {
  const scrape = async (id: number): Promise<{ status: number, type: string, text: string }> => {
    const r = await fetch(`http://${lab.node(id).addr}:${METRICS_PORT}/metrics`)
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() }
  }
  const value = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find(l => l.startsWith(series + ' '))
    return line === undefined ? undefined : Number(line.slice(series.length + 1))
  }
  const pid = await startJob()
  const before = value((await scrape(1)).text, 'hpcfs_migrations_total{target="2"}') ?? 0
  await lab.node(1).write(`proc/${pid}/goto`, '2\n')
  await until('on node 2', async () => (await where(pid)) === '2', 20_000)
  await lab.node(1).write('admin/speed', '34567\n')
  await until('node 2 sees the speed', async () => value((await scrape(2)).text, 'hpcfs_node_speed{node="1"}') === 34567, 15_000)
  // (up is gossip's view: on a busy machine a node may miss a beat; every node up is what the lab is)
  const s = await until('node 1\'s metrics with every node up', async () => {
    const x = await scrape(1)
    return [1, 2, 3].every(id => value(x.text, `hpcfs_node_up{node="${id}"}`) === 1) ? x : undefined
  }, 15_000)
  assert.equal(s.status, 200)
  assert.match(s.type, /^text\/plain; version=0\.0\.4/)
  for (const id of [1, 2, 3]) {
    assert.equal(value(s.text, `hpcfs_node_speed{node="${id}"}`), Number((await lab.node(1).read(`nodes/${id}/speed`)).trim()))
    assert.ok((value(s.text, `hpcfs_node_memory_total_bytes{node="${id}"}`) ?? 0) > 0)
    assert.ok(value(s.text, `hpcfs_node_load{node="${id}"}`) !== undefined)
  }
  assert.equal(value(s.text, 'hpcfs_migrations_total{target="2"}'), before + 1)
  assert.ok((value(s.text, 'hpcfs_gossip_sent_datagrams_total') ?? 0) > 0)
  assert.ok((value(s.text, 'hpcfs_gossip_received_bytes_total') ?? 0) > 0)
  assert.equal(value(s.text, 'hpcfs_gossip_dropped_datagrams_total{reason="badmac"}'), 0)
  const wheres = await Promise.all((await lab.node(1).exec('ls', [join(lab.node(1).mount, 'proc')])).stdout.split('\n').filter(Boolean).map(async p => await where(Number(p))))
  assert.equal(value(s.text, 'hpcfs_processes{where="away"}'), wheres.filter(w => w !== '0').length, `proc/*/where: ${wheres.join(' ')}`)
  assert.equal(value(s.text, 'hpcfs_processes{where="home"}'), wheres.filter(w => w === '0').length)
  assert.equal(value(s.text, 'hpcfs_sched_balance_enabled'), 0)
  assert.ok(value(s.text, 'hpcfs_sched_decisions_total') !== undefined)
  assert.match(s.text, /^# TYPE hpcfs_migrations_total counter$/m)
  const guests = (await lab.node(2).exec('ls', [join(lab.node(2).mount, 'remote')])).stdout.split('\n').filter(Boolean)
  assert.ok(guests.length >= 1)
  assert.equal(value((await scrape(2)).text, 'hpcfs_guests'), guests.length, 'node 2 hosts it (remote/)')
  const other = await fetch(`http://${lab.node(1).addr}:${METRICS_PORT}/`)
  assert.equal(other.status, 404)
  const post = await fetch(`http://${lab.node(1).addr}:${METRICS_PORT}/metrics`, { method: 'POST' })
  assert.equal(post.status, 405)
  await lab.node(1).write(`proc/${pid}/goto`, 'home\n')
  await until('home', async () => (await where(pid)) === '0', 20_000)
})
