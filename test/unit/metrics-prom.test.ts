// The Prometheus text formatter, the scrape read from a node's core, and the migration log's
// counters (over a stand-in migrator: an event emitter with process entries).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { formatMetrics, MetricsError, type MetricFamily } from '../../src/metrics/prom.js'
import { collectMetrics } from '../../src/metrics/collect.js'
import { MigrationLog, type MigrationEvent } from '../../src/metrics/migrations.js'
import { HpcNode, type ProbeLike } from '../../src/core/node.js'
import { DEFAULTS } from '../../src/config.js'
import { Keyring } from '../../src/gossip/keyring.js'
import type { Migrator } from '../../src/migrate/migrator.js'

test('families become HELP, TYPE and sample lines; labels and help are escaped; special values', () => {
  const families: MetricFamily[] = [
    { name: 'hpcfs_node_load', help: 'load\nof a node \\ in openMosix units', type: 'gauge', samples: [{ labels: { node: 1 }, value: 150 }, { labels: { node: 2 }, value: 0.5 }] },
    { name: 'hpcfs_things_total', help: 'things', type: 'counter', samples: [{ value: 3 }] },
    { name: 'hpcfs_odd', help: 'odd values', type: 'gauge', samples: [{ labels: { a: 'x"y\\z\nw' }, value: NaN }, { labels: { a: 'inf' }, value: Infinity }, { labels: { a: 'minf' }, value: -Infinity }] },
    { name: 'hpcfs_empty', help: 'no samples', type: 'gauge', samples: [] }
  ]
  assert.equal(formatMetrics(families), [
    '# HELP hpcfs_node_load load\\nof a node \\\\ in openMosix units',
    '# TYPE hpcfs_node_load gauge',
    'hpcfs_node_load{node="1"} 150',
    'hpcfs_node_load{node="2"} 0.5',
    '# HELP hpcfs_things_total things',
    '# TYPE hpcfs_things_total counter',
    'hpcfs_things_total 3',
    '# HELP hpcfs_odd odd values',
    '# TYPE hpcfs_odd gauge',
    'hpcfs_odd{a="x\\"y\\\\z\\nw"} NaN',
    'hpcfs_odd{a="inf"} +Inf',
    'hpcfs_odd{a="minf"} -Inf',
    '# HELP hpcfs_empty no samples',
    '# TYPE hpcfs_empty gauge',
    ''
  ].join('\n'))
})

test('what Prometheus would reject or our conventions forbid is refused', () => {
  const g = (name: string, samples: MetricFamily['samples'] = [{ value: 1 }]): MetricFamily => ({ name, help: 'h', type: 'gauge', samples })
  assert.throws(() => formatMetrics([g('1bad')]), MetricsError)
  assert.throws(() => formatMetrics([g('bad-name')]), MetricsError)
  assert.throws(() => formatMetrics([g('ok'), g('ok')]), /given twice/)
  assert.throws(() => formatMetrics([{ name: 'hpcfs_moves', help: 'h', type: 'counter', samples: [] }]), /_total/)
  assert.throws(() => formatMetrics([{ name: 'x_total', help: 'h', type: 'counter', samples: [{ value: -1 }] }]), /negative/)
  assert.throws(() => formatMetrics([g('x', [{ labels: { 'bad-label': 1 }, value: 1 }])]), /label name/)
  assert.throws(() => formatMetrics([g('x', [{ labels: { __reserved: 1 }, value: 1 }])]), /label name/)
  assert.throws(() => formatMetrics([g('x', [{ labels: { n: 1 }, value: 1 }, { labels: { n: '1' }, value: 2 }])]), /given twice/)
})

function fakeProbe (): ProbeLike {
  let speed = 10000
  return {
    snapshot: () => ({ cpus: 4, speed, load: 250, localLoad: 200, tmem: 8e9, rmem: 4e9, mem: 5e9, util: 75 }),
    setSpeed: s => { speed = s }
  }
}

/** Parses a scrape into `name{labels}` -> value, checking every line's shape on the way. */
function parse (text: string): Map<string, number> {
  const out = new Map<string, number>()
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const t = /^# TYPE (\S+) (counter|gauge)$/.exec(line)
    if (t) { types.set(t[1], t[2]); continue }
    if (/^# HELP \S+ .+$/.test(line)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    assert.ok(m, `bad line: ${line}`)
    assert.ok(types.has(m[1]), `${m[1]} has a TYPE line before its samples`)
    if (types.get(m[1]) === 'counter') assert.match(m[1], /_total$/)
    out.set(m[1] + (m[2] ?? ''), Number(m[3]))
  }
  return out
}

test('a scrape holds every known node\'s values and the gossip counters, from the core', () => {
  const node = new HpcNode({ ...DEFAULTS, id: 3, addr: '10.0.0.3' }, fakeProbe(), new Keyring(null), { seeds: [], now: () => 0 })
  node.setMapText('1 10.0.0.1 3\n')
  node.setSpeed(23456)
  node.gossip.stats.sent = 7
  node.gossip.stats.droppedBadmac = 2
  const v = parse(formatMetrics(collectMetrics(node, null)))
  assert.equal(v.get('hpcfs_info{node="3",version="0.1.0"}'), 1)
  assert.equal(v.get('hpcfs_node_speed{node="3"}'), 23456)
  assert.equal(v.get('hpcfs_node_load{node="3"}'), 250)
  assert.equal(v.get('hpcfs_node_cpus{node="3"}'), 4)
  assert.equal(v.get('hpcfs_node_memory_available_bytes{node="3"}'), 5e9)
  assert.equal(v.get('hpcfs_node_memory_free_bytes{node="3"}'), 4e9)
  assert.equal(v.get('hpcfs_node_memory_total_bytes{node="3"}'), 8e9)
  assert.equal(v.get('hpcfs_node_utilization_ratio{node="3"}'), 0.75)
  // nodes 1 and 2 are in the map but never heard: known, down, without values
  assert.equal(v.get('hpcfs_node_up{node="1"}'), 0)
  assert.equal(v.get('hpcfs_node_up{node="3"}'), 1)
  assert.equal(v.get('hpcfs_node_status{node="2"}'), 1)
  assert.equal(v.has('hpcfs_node_load{node="1"}'), false)
  assert.equal(v.get('hpcfs_gossip_sent_datagrams_total'), 7)
  assert.equal(v.get('hpcfs_gossip_dropped_datagrams_total{reason="badmac"}'), 2)
  assert.equal(v.get('hpcfs_gossip_dropped_datagrams_total{reason="replay"}'), 0)
  assert.equal(v.has('hpcfs_migrations_total'), false, 'no migration counters without a migrator')
})

class FakeMigrator extends EventEmitter {
  readonly procs = new Map<number, { lastError: string, where: 'home' | 'migrating' | number }>()
  readonly guests = new Map<number, unknown>()
}

test('the migration log counts arrivals by target, failures once each, and keeps the recent events', async () => {
  const fm = new FakeMigrator()
  const ml = new MigrationLog(fm as unknown as Migrator, 3_600_000, 3)
  const seen: MigrationEvent[] = []
  ml.on('event', (e: MigrationEvent) => seen.push(e))
  try {
    fm.procs.set(100, { lastError: '', where: 'home' })
    fm.emit('moved', 100, 2)
    fm.emit('moved', 100, 3)
    fm.emit('moved', 100, 0)
    assert.deepEqual([...ml.moves].sort(), [[0, 1], [2, 1], [3, 1]])
    assert.deepEqual(seen.map(e => [e.kind, e.from, e.to]), [['moved', 0, 2], ['moved', 2, 3], ['moved', 3, 0]])
    // a failure is counted when its reason appears, once, however often it is sampled
    fm.procs.get(100)!.lastError = 'node 2 refused: blocked'
    ml.sample(); ml.sample()
    assert.equal(ml.failures, 1)
    // a new attempt clears the reason; failing again counts again
    fm.procs.get(100)!.lastError = ''
    ml.sample()
    fm.procs.get(100)!.lastError = 'node 2 refused: blocked'
    ml.sample()
    assert.equal(ml.failures, 2)
    // a requested move's outcome is counted when it settles, not twice by the sampler
    fm.procs.get(100)!.lastError = ''
    let settle = (): void => {}
    ml.noteRequest(100, 3, 'gui uid 0', new Promise<void>(resolve => { settle = resolve }))
    fm.procs.get(100)!.lastError = 'connection refused'
    settle()
    await new Promise(resolve => setImmediate(resolve))
    ml.sample()
    assert.equal(ml.failures, 3)
    assert.deepEqual(ml.events().map(e => e.kind), ['failed', 'requested', 'failed'], 'only the last 3 are kept')
    // a process that is gone is forgotten
    fm.procs.delete(100)
    ml.sample()
    fm.procs.set(100, { lastError: 'connection refused', where: 'home' })
    ml.sample()
    assert.equal(ml.failures, 4, 'a new process under the same pid starts afresh')
  } finally {
    ml.close()
  }
  assert.equal(fm.listenerCount('moved'), 0, 'close() stops listening')
})
