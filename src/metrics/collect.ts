// The values of one scrape, read from the same core as the tree (HpcNode: the views of every node,
// the gossip counters; the scheduler's counters; the migration log): each node's nodes/<id>/ files
// as gauges labelled by node, admin/gossip-stats as counters, and the migration and scheduler
// counters. Names follow Prometheus's conventions (src/metrics/prom.ts).
import type { HpcNode } from '../core/node.js'
import type { GossipStats } from '../gossip/gossiper.js'
import { VERSION } from '../version.js'
import type { MigrationLog } from './migrations.js'
import type { MetricFamily, Sample } from './prom.js'

const gauge = (name: string, help: string, samples: Sample[]): MetricFamily => ({ name, help, type: 'gauge', samples })
const counter = (name: string, help: string, samples: Sample[]): MetricFamily => ({ name, help, type: 'counter', samples })

/** admin/gossip-stats' drop counters by the `reason` label they get. */
const DROPS: Record<string, keyof GossipStats> = {
  malformed: 'droppedMalformed',
  version: 'droppedVersion',
  badmac: 'droppedBadmac',
  replay: 'droppedReplay',
  unknown: 'droppedUnknown',
  self: 'droppedSelf'
}

export function collectMetrics (node: HpcNode, migrations: MigrationLog | null): MetricFamily[] {
  const views = node.nodeIds().map(id => node.view(id)).filter(v => v !== undefined)
  const up = views.filter(v => v.up)
  const per = (f: (v: typeof views[number]) => number, of = up): Sample[] => of.map(v => ({ labels: { node: v.id }, value: f(v) }))
  const g = node.gossip.stats
  const out: MetricFamily[] = [
    gauge('hpcfs_info', 'This daemon: its node id and version (value 1).', [{ labels: { node: node.id, version: VERSION }, value: 1 }]),
    gauge('hpcfs_node_up', 'Whether a known node is up (its information is fresh), as nodes/<id>/status bit 2.', per(v => v.up ? 1 : 0, views)),
    gauge('hpcfs_node_info_age_seconds', 'Seconds since the node\'s information was fresh (nodes/<id>/age).', per(v => v.age / 1000, views)),
    gauge('hpcfs_node_status', 'openMosix status bits (nodes/<id>/status): 1 configured, 2 up, 4 stay, 8 lstay, 16 block, 32 quiet.', per(v => v.status, views)),
    gauge('hpcfs_node_load', 'openMosix load (nodes/<id>/load): 100 = one busy standard CPU. Up nodes only.', per(v => v.info.load)),
    gauge('hpcfs_node_speed', 'Node speed (nodes/<id>/speed): 10000 = a Pentium III at 1 GHz. Up nodes only.', per(v => v.info.speed)),
    gauge('hpcfs_node_cpus', 'CPUs of the node (nodes/<id>/cpus). Up nodes only.', per(v => v.info.cpus)),
    gauge('hpcfs_node_memory_available_bytes', 'Memory free as the cluster counts it, MemAvailable (nodes/<id>/mem). Up nodes only.', per(v => v.info.mem)),
    gauge('hpcfs_node_memory_free_bytes', 'Memory free as Linux counts it, MemFree (nodes/<id>/rmem). Up nodes only.', per(v => v.info.rmem)),
    gauge('hpcfs_node_memory_total_bytes', 'Total memory (nodes/<id>/tmem). Up nodes only.', per(v => v.info.tmem)),
    gauge('hpcfs_node_utilization_ratio', 'Utilisability 0..1 (nodes/<id>/util / 100): 1 minus the share of time the node stalled on memory (PSI). Up nodes only.', per(v => v.info.util / 100)),
    counter('hpcfs_gossip_sent_datagrams_total', 'Gossip datagrams sent.', [{ value: g.sent }]),
    counter('hpcfs_gossip_sent_bytes_total', 'Bytes of gossip datagrams sent.', [{ value: g.sentBytes }]),
    counter('hpcfs_gossip_received_datagrams_total', 'Gossip datagrams received and accepted.', [{ value: g.received }]),
    counter('hpcfs_gossip_received_bytes_total', 'Bytes of every gossip datagram received, dropped ones included.', [{ value: g.receivedBytes }]),
    counter('hpcfs_gossip_merged_entries_total', 'Node entries that were fresher than what this node knew.', [{ value: g.merged }]),
    counter('hpcfs_gossip_dropped_datagrams_total', 'Gossip datagrams dropped, by reason (admin/gossip-stats).',
      Object.entries(DROPS).map(([reason, k]) => ({ labels: { reason }, value: g[k] })))
  ]
  const m = node.migrator
  if (m) {
    const where = { home: 0, away: 0, migrating: 0 }
    for (const p of m.procs.values()) where[p.where === 'home' ? 'home' : p.where === 'migrating' ? 'migrating' : 'away']++
    out.push(
      gauge('hpcfs_processes', 'Processes of this node under cluster discipline, by where they are (proc/).',
        Object.entries(where).map(([w, n]) => ({ labels: { where: w }, value: n }))),
      gauge('hpcfs_guests', 'Processes of other nodes running here (remote/).', [{ value: m.guests.size }])
    )
  }
  if (migrations) {
    out.push(
      counter('hpcfs_migrations_total', 'Moves of this node\'s processes that arrived, by target node (0 = back home).',
        [...migrations.moves].sort((a, b) => a[0] - b[0]).map(([target, n]) => ({ labels: { target }, value: n }))),
      counter('hpcfs_migration_failures_total', 'Moves of this node\'s processes that failed (proc/<pid>/error), seen every interval.', [{ value: migrations.failures }])
    )
  }
  const b = node.balancer
  if (b) {
    const s = b.stats
    out.push(
      gauge('hpcfs_sched_balance_enabled', 'Whether automatic balancing is on (admin/balance).', [{ value: b.enabled ? 1 : 0 }]),
      counter('hpcfs_sched_decisions_total', 'Automatic balancing rounds that ran the policy.', [{ value: s.decisions }]),
      counter('hpcfs_sched_placements_total', 'Placements by lowest cost (mosrun -b, goto balance).', [{ value: s.placements }]),
      counter('hpcfs_sched_moves_total', 'Moves the balancer started: its own processes (kind="own"), or guests whose home it asked (kind="guest").',
        [{ labels: { kind: 'own' }, value: s.moves }, { labels: { kind: 'guest' }, value: s.asks }]),
      counter('hpcfs_sched_move_failures_total', 'Moves the balancer started that were refused or failed.', [{ value: s.failures }])
    )
  }
  return out
}
