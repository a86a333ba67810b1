// The hpcfs GUI page: no build step, no framework. It follows the daemon's state through
// Server-Sent Events (/api/events: `hello` once, then `state` every interval and `migration`
// events) and sends changes as JSON POSTs with the user's token (src/gui/server.ts). The graph is
// uPlot (served from the uplot npm package at /vendor/). Everything the daemon sends that a user
// could have written (command lines, errors) goes into the page as text, never as HTML.

const $ = sel => document.querySelector(sel)
const HISTORY_MAX = 600
const PALETTE = ['#2458c6', '#c2410c', '#15803d', '#7e22ce', '#be123c', '#0e7490', '#a16207', '#4d7c0f', '#9d174d', '#334155']
const color = id => PALETTE[(id - 1) % PALETTE.length]

/** h('div', { class: 'x', dataset: { node: 1 } }, 'text', child...) */
function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k === 'class') el.className = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c))
  return el
}
const nodesOf = (...items) => items.filter(x => x instanceof Node)

const fmtBytes = b => b === null ? '-' : b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${Math.round(b / 2 ** 20)} MiB`
const fmtTime = t => new Date(t).toLocaleTimeString([], { hour12: false })
/** Costs are n^utilisation sums: tiny for a light process, so small ones keep three digits. */
const fmtCost = v => v === null ? '-' : v === 0 ? '0' : Math.abs(v) < 0.001 ? v.toExponential(2) : v.toFixed(4)
/** The command as ps shows it, with the program's directory left out (the full line is the title). */
const shortCommand = c => c.replace(/^\/\S*\//, '')
const whereText = w => w === 'migrating' ? 'migrating' : w === 0 ? 'home' : `node ${w}`

const ui = {
  self: 0,
  state: null,
  token: sessionStorage.getItem('hpcfs-token') ?? '',
  admin: false,
  selected: null,
  cards: new Map(),
  rows: new Map(),
  chart: null,
  chartNodes: '',
  history: { t: [], loads: new Map() }
}

// ---- messages and token ---------------------------------------------------------------------

function say (text, error = false) {
  const m = $('#message')
  m.textContent = text
  m.classList.toggle('error', error)
}

async function whoami () {
  const r = await fetch('/api/whoami', { headers: ui.token ? { Authorization: `Bearer ${ui.token}` } : {} })
  const w = await r.json()
  ui.admin = w.mayChangeNode
  const who = $('#who')
  who.textContent = w.uid === null ? (ui.token ? 'unknown token: read-only' : 'read-only') : `uid ${w.uid}${w.mayChangeNode ? ' (may change this node)' : ''}`
  who.classList.toggle('admin', w.uid !== null)
  who.dataset.uid = w.uid === null ? '' : String(w.uid)
  $('#token-help').textContent = w.uid === null ? `To change anything, use your token: the file ${w.tokenDir}/<your uid> (cat it; only you can read it).` : ''
  for (const el of document.querySelectorAll('.speed-control input, .speed-control button')) el.disabled = !ui.admin
}

$('#token-form').addEventListener('submit', ev => {
  ev.preventDefault()
  ui.token = $('#token').value.trim()
  $('#token').value = ''
  sessionStorage.setItem('hpcfs-token', ui.token)
  void whoami()
})

{
  const m = /(?:^#|&)token=([0-9a-f]+)/.exec(location.hash)
  if (m) {
    ui.token = m[1]
    sessionStorage.setItem('hpcfs-token', ui.token)
    history.replaceState(null, '', location.pathname) // the token does not stay in the address bar
  }
}

async function post (path, body) {
  const r = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(ui.token ? { Authorization: `Bearer ${ui.token}` } : {}) },
    body: JSON.stringify(body)
  })
  const data = await r.json().catch(() => ({}))
  if (!r.ok) throw new Error(`${data.error ?? r.status}: ${data.message ?? r.statusText}`)
  return data
}

// ---- cluster map ----------------------------------------------------------------------------

function nodeCard (id) {
  const field = name => h('dd', { dataset: { field: name } })
  const card = h('div', { class: 'node-card', dataset: { node: id } },
    h('div', { class: 'title' },
      h('span', { class: 'swatch' }, '●'),
      h('span', { class: 'name' }, `Node ${id}`),
      h('span', { class: 'badges' })),
    h('div', { class: 'bar load', title: 'load' }, h('div')),
    h('dl', {},
      h('dt', {}, 'load'), field('load'),
      h('dt', {}, 'speed'), field('speed'),
      h('dt', {}, 'CPUs'), field('cpus'),
      h('dt', {}, 'memory'), field('mem'),
      h('dt', {}, 'util'), field('util'),
      h('dt', {}, 'address'), field('addr'),
      h('dt', {}, 'age'), field('age')),
    h('div', { class: 'bar mem', title: 'memory used' }, h('div')))
  card.querySelector('.swatch').style.color = color(id) // the graph's colour of this node
  card.addEventListener('dragover', ev => {
    if (!ev.dataTransfer.types.includes('text/x-hpcfs-pid')) return
    ev.preventDefault()
    ev.dataTransfer.dropEffect = 'move'
    card.classList.add('drop')
  })
  card.addEventListener('dragleave', () => card.classList.remove('drop'))
  card.addEventListener('drop', ev => {
    ev.preventDefault()
    card.classList.remove('drop')
    const pid = Number(ev.dataTransfer.getData('text/x-hpcfs-pid'))
    if (pid) void move(pid, id === ui.self ? 'home' : id)
  })
  return card
}

function speedControl (n) {
  const input = h('input', { type: 'number', min: 1, max: 1000000, step: 1, class: 'speed-input', 'aria-label': `speed of node ${n.id}` })
  const button = h('button', { type: 'submit', class: 'speed-set' }, 'Set speed')
  const form = h('form', { class: 'speed-control', novalidate: true }, input, button) // the daemon checks the value (EINVAL)
  input.disabled = button.disabled = !ui.admin
  form.addEventListener('submit', async ev => {
    ev.preventDefault()
    const speed = Number(input.value)
    try {
      const r = await post('/api/speed', { speed })
      say(`node ${n.id}: speed set to ${r.speed}; the other nodes see it through gossip`)
      input.value = ''
    } catch (e) { say(`speed not changed: ${e.message}`, true) }
  })
  return form
}

function renderNodes (nodes) {
  const box = $('#nodes')
  const maxLoad = Math.max(100, ...nodes.map(n => n.load ?? 0))
  const ids = new Set(nodes.map(n => n.id))
  for (const [id, card] of ui.cards) if (!ids.has(id)) { card.remove(); ui.cards.delete(id) }
  for (const n of nodes) {
    let card = ui.cards.get(n.id)
    if (!card) {
      card = nodeCard(n.id)
      if (n.self) card.append(speedControl(n))
      else card.append(h('p', { class: 'help' }, `speed: set on node ${n.id}'s own GUI or tree`))
      ui.cards.set(n.id, card)
    }
    box.append(card) // keeps them in id order
    card.classList.toggle('self', n.self)
    card.classList.toggle('down', !n.up)
    card.dataset.state = n.up ? 'up' : 'down'
    const badges = card.querySelector('.badges')
    badges.replaceChildren(...nodesOf(
      n.self ? h('span', { class: 'badge self' }, 'this node') : null,
      h('span', { class: `badge ${n.up ? 'up' : 'down'}` }, n.up ? 'up' : 'down'),
      ...['block', 'stay', 'lstay', 'quiet'].filter(f => n[f]).map(f => h('span', { class: 'badge flag' }, f))))
    const set = (f, v) => { card.querySelector(`[data-field="${f}"]`).textContent = v }
    set('load', n.load ?? '-')
    set('speed', n.speed ?? '-')
    set('cpus', n.cpus ?? '-')
    set('mem', n.mem === null ? '-' : `${fmtBytes(n.mem)} free of ${fmtBytes(n.tmem)}`)
    set('util', n.util === null ? '-' : `${n.util}%`)
    set('addr', n.addr)
    set('age', n.self ? '-' : `${(n.age / 1000).toFixed(1)} s`)
    card.querySelector('.bar.load > div').style.width = `${Math.min(100, (n.load ?? 0) / maxLoad * 100)}%`
    card.querySelector('.bar.mem > div').style.width = n.tmem ? `${Math.min(100, (1 - n.mem / n.tmem) * 100)}%` : '0'
  }
}

// ---- processes ------------------------------------------------------------------------------

async function move (pid, target) {
  try {
    await post(`/api/procs/${pid}/move`, { target })
    say(`process ${pid}: moving to ${target === 'home' ? 'home' : target === 'balance' ? 'the cheapest node' : `node ${target}`}`)
  } catch (e) { say(`process ${pid} not moved: ${e.message}`, true) }
}

function moveOptions (select, nodes) {
  const want = nodes.filter(n => !n.self).map(n => `${n.id}${n.up ? '' : '-'}`).join(',')
  if (select.dataset.options === want) return
  select.dataset.options = want
  select.replaceChildren(h('option', { value: '' }, 'choose…'), h('option', { value: 'home' }, `home (node ${ui.self})`),
    ...nodes.filter(n => !n.self).map(n => h('option', { value: String(n.id), disabled: !n.up }, `node ${n.id}`)),
    h('option', { value: 'balance' }, 'balance (lowest cost)'))
}

function procRow (pid) {
  const cell = (f, cls) => h('td', { class: cls ?? f, dataset: { field: f } })
  const select = h('select', { class: 'move-select', 'aria-label': `move process ${pid}` })
  select.addEventListener('click', ev => ev.stopPropagation())
  select.addEventListener('change', () => {
    const v = select.value
    select.value = ''
    if (v) void move(pid, v === 'home' || v === 'balance' ? v : Number(v))
  })
  const row = h('tr', { class: 'proc', draggable: 'true', dataset: { pid } },
    h('td', {}, String(pid)), cell('command', 'cmd'), cell('uid'), cell('where'), cell('lock'), cell('nmigs'), cell('cost'), h('td', {}, select))
  row.addEventListener('dragstart', ev => {
    ev.dataTransfer.setData('text/x-hpcfs-pid', String(pid))
    ev.dataTransfer.effectAllowed = 'move'
  })
  row.addEventListener('click', () => select_(pid))
  return row
}

function renderProcs (s) {
  const body = $('#procs tbody')
  const pids = new Set(s.procs.map(p => p.pid))
  for (const [pid, row] of ui.rows) if (!pids.has(pid)) { row.remove(); ui.rows.delete(pid) }
  for (const p of s.procs) {
    let row = ui.rows.get(p.pid)
    if (!row) { row = procRow(p.pid); ui.rows.set(p.pid, row) }
    body.append(row)
    const set = (f, v) => { row.querySelector(`[data-field="${f}"]`).textContent = v }
    set('command', shortCommand(p.command))
    row.querySelector('.cmd').title = p.command + (p.error ? `\nlast move failed: ${p.error}` : '')
    set('uid', p.uid ?? '-')
    set('where', whereText(p.where) + (p.error ? ' (last move failed)' : ''))
    set('lock', p.lock ? 'locked' : 'no')
    set('nmigs', p.nmigs)
    set('cost', p.costs ? fmtCost(p.costs.costHere) : p.where === 0 ? '-' : `on node ${p.where}`)
    row.dataset.where = String(p.where)
    row.classList.toggle('migrating', p.where === 'migrating')
    row.classList.toggle('selected', ui.selected === p.pid)
    moveOptions(row.querySelector('select'), s.nodes)
  }
  $('#procs-empty').hidden = s.procs.length > 0
  $('#guests tbody').replaceChildren(...s.guests.map(g => h('tr', { class: 'guest', dataset: { pid: g.pid } },
    h('td', {}, g.pid), h('td', {}, `node ${g.home}`), h('td', {}, g.homePid), h('td', { class: 'cmd', title: g.command }, shortCommand(g.command)), h('td', {}, fmtTime(g.since)))))
  if (s.guests.length === 0) $('#guests tbody').append(h('tr', {}, h('td', { colspan: 5, class: 'help' }, 'none')))
}

// ---- scheduler ------------------------------------------------------------------------------

let treeText = ''
async function select_ (pid) {
  ui.selected = pid
  treeText = ''
  if (ui.state) { renderProcs(ui.state); renderExplain(ui.state) }
  try {
    const r = await fetch(`/api/procs/${pid}/costs`)
    if (r.ok && ui.selected === pid) { treeText = (await r.json()).text; if (ui.state) renderExplain(ui.state) }
  } catch {}
}

function renderExplain (s) {
  $('#decision').textContent = s.decision
  const box = $('#explain')
  const pid = ui.selected
  if (pid === null) return
  const p = s.procs.find(x => x.pid === pid)
  if (!p) { box.replaceChildren(h('p', { class: 'help' }, `process ${pid} is gone`)); return }
  const open = box.dataset.pid === String(pid) && (box.querySelector('details')?.open ?? false) // stays unfolded across updates
  box.dataset.pid = String(pid)
  const tree = treeText ? h('details', { open }, h('summary', {}, `as proc/${pid}/costs read`), h('pre', { class: 'tree' }, treeText)) : null
  if (!p.costs) {
    box.replaceChildren(h('p', { class: 'explain-head' }, `Process ${pid} (${shortCommand(p.command)}) runs ${whereText(p.where)}: ${p.where === 'migrating' ? 'in transit' : `node ${p.where} decides its costs (remote/<pid>/costs there)`}.`), tree)
    return
  }
  const e = p.costs
  box.replaceChildren(
    h('p', { class: 'explain-head' },
      h('strong', {}, `Process ${pid}`), ` (${shortCommand(p.command)}): cost here `, h('strong', { class: 'cost-here' }, fmtCost(e.costHere)),
      `, ${e.movable ? 'movable' : 'pinned'}: `, h('span', { class: 'why' }, e.why)),
    h('table', { class: 'candidates' },
      h('thead', {}, h('tr', {}, h('th', {}, 'node'), h('th', {}, 'marginal cost'), h('th', {}, 'load with it'), h('th', {}, 'saves'), h('th', {}, 'migration'), h('th', {}, 'verdict'))),
      h('tbody', {}, ...e.candidates.map(c => h('tr', { dataset: { node: c.node } },
        h('td', {}, `node ${c.node}`), h('td', {}, fmtCost(c.cost)), h('td', {}, c.load),
        h('td', {}, c.saves === null ? '-' : `${c.saves.toFixed(1)} s`), h('td', {}, c.migration === null ? '-' : `${c.migration.toFixed(2)} s`),
        h('td', { class: `verdict verdict-${c.verdict}` }, c.verdict))))),
    tree)
}

// ---- migrations -----------------------------------------------------------------------------

function addEvent (e) {
  const list = $('#events')
  const text = e.kind === 'moved'
    ? `process ${e.pid} moved ${e.from === 0 ? 'home' : `node ${e.from}`} → ${e.to === 0 ? 'home' : `node ${e.to}`}`
    : e.kind === 'requested'
      ? `process ${e.pid}: move to ${e.to === 0 ? 'home' : `node ${e.to}`} asked (${e.detail})`
      : `process ${e.pid}: move failed: ${e.detail}`
  list.prepend(h('li', { class: `event kind-${e.kind}`, dataset: { pid: e.pid, kind: e.kind, to: e.to ?? '' } },
    h('span', { class: 'time' }, fmtTime(e.t)), h('span', { class: 'kind' }, e.kind), h('span', {}, text)))
  while (list.children.length > 200) list.lastChild.remove()
}

// ---- load history (uPlot) -------------------------------------------------------------------

function addSample (t, loads) {
  const hs = ui.history
  hs.t.push(t / 1000)
  for (const id of Object.keys(loads).map(Number)) if (!hs.loads.has(id)) hs.loads.set(id, hs.t.slice(0, -1).map(() => null))
  for (const [id, arr] of hs.loads) arr.push(loads[id] ?? null)
  if (hs.t.length > HISTORY_MAX) { hs.t.shift(); for (const arr of hs.loads.values()) arr.shift() }
}

function drawChart () {
  if (typeof uPlot === 'undefined') return
  const hs = ui.history
  const ids = [...hs.loads.keys()].sort((a, b) => a - b)
  const data = [hs.t, ...ids.map(id => hs.loads.get(id))]
  const box = $('#chart')
  if (ui.chart && ui.chartNodes === ids.join(',')) { ui.chart.setData(data); return }
  ui.chart?.destroy()
  ui.chartNodes = ids.join(',')
  ui.chart = new uPlot({
    width: Math.max(300, box.clientWidth),
    height: 220,
    scales: { y: { range: (u, min, max) => [0, Math.max(100, max ?? 0) * 1.1] } },
    series: [{}, ...ids.map(id => ({ label: `node ${id}`, stroke: color(id), width: 2, spanGaps: false }))],
    axes: [{}, { label: 'load' }]
  }, data, box)
}

// ---- the stream -----------------------------------------------------------------------------

function apply (s) {
  ui.state = s
  ui.self = s.self
  $('#self-title').textContent = `— node ${s.self}`
  document.title = `hpcfs node ${s.self}`
  renderNodes(s.nodes)
  renderProcs(s)
  renderExplain(s)
}

function connect () {
  const es = new EventSource('/api/events')
  const conn = $('#conn')
  es.addEventListener('hello', ev => {
    const d = JSON.parse(ev.data)
    ui.history = { t: [], loads: new Map() }
    for (const s of d.history) addSample(s.t, s.loads)
    $('#events').replaceChildren()
    for (const e of d.events) addEvent(e)
    apply(d.state)
    drawChart()
    conn.textContent = 'live'
    conn.className = 'badge live'
    void whoami() // again after a reconnection: a restarted daemon has new tokens
    document.body.dataset.ready = '1'
  })
  es.addEventListener('state', ev => {
    const s = JSON.parse(ev.data)
    apply(s)
    addSample(s.t, Object.fromEntries(s.nodes.map(n => [n.id, n.load])))
    drawChart()
  })
  es.addEventListener('migration', ev => addEvent(JSON.parse(ev.data)))
  es.addEventListener('error', () => { conn.textContent = 'reconnecting'; conn.className = 'badge lost' })
}

connect()
addEventListener('resize', () => { if (ui.chart) ui.chart.setSize({ width: Math.max(300, $('#chart').clientWidth), height: 220 }) })
