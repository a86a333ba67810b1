// admin/: this node's settings (openMosix /proc/hpc/admin).
import type { HpcNode } from '../core/node.js'
import { notRunning } from '../util/errno.js'
import { dir, flag, parseInt10, ro, rw, wo, type DirNode } from './tree.js'
import { VERSION } from '../version.js'
import { adminMigrate } from './proc.js'
import { NODE_ID, SPEED } from '../config.js'

export function adminDir (node: HpcNode): DirNode {
  const trigger = (what: string, fn: () => void) => ({
    ...wo(text => { if (parseInt10(text, 1, 1, what) === 1) fn() }),
    mode: 0o644,
    show: () => '0\n'
  })
  return dir({
    mospe: rw(() => node.mospe, t => node.setMospe(parseInt10(t, 0, NODE_ID.max, 'mospe'))),
    block: flag(() => node.block, v => { node.block = v }, 'block'),
    stay: flag(() => node.stay, v => { node.stay = v }, 'stay'),
    lstay: flag(() => node.lstay, v => { node.lstay = v }, 'lstay'),
    quiet: flag(() => node.quiet, v => { node.quiet = v }, 'quiet'),
    // expel implies block and bring implies lstay (mosctl man page); moving the processes comes with migration.
    expel: trigger('expel', () => node.expel()),
    bring: trigger('bring', () => node.bring()),
    speed: rw(() => node.speed, t => node.setSpeed(parseInt10(t, SPEED.min, SPEED.max, 'speed'))),
    version: ro(() => `hpcfs ${VERSION} (openMosix-compatible tree)`),
    'decay-interval': rw(() => node.decayInterval, t => node.setDecay(parseInt10(t, 1, 3600, 'decay-interval'), node.slowDecay, node.fastDecay)),
    'slow-decay': rw(() => node.slowDecay, t => node.setDecay(node.decayInterval, parseInt10(t, 0, 1000, 'slow-decay'), node.fastDecay)),
    'fast-decay': rw(() => node.fastDecay, t => node.setDecay(node.decayInterval, node.slowDecay, parseInt10(t, 0, 1000, 'fast-decay'))),
    config: { kind: 'file', mode: 0o644, show: () => node.mapText(), store: t => node.setMapText(t), gather: { check: t => node.checkMapText(t) } },
    migrate: node.migrator ? adminMigrate(node.migrator, node.balancer) : wo(() => { throw notRunning('process migration') }),
    balance: flag(() => node.balancer?.enabled ?? false, v => {
      if (!node.balancer) throw notRunning('the scheduler')
      node.balancer.enabled = v
    }, 'balance'),
    sched: { kind: 'file', mode: 0o644, show: () => node.balancer?.showTunables() ?? '', store: t => { if (!node.balancer) throw notRunning('the scheduler'); node.balancer.setTunables(t) } },
    costs: { kind: 'file', mode: 0o444, show: () => node.balancer?.explainNode() ?? '' },
    'gossip-stats': {
      kind: 'file',
      mode: 0o444,
      show: () => statLines(node.gossip.stats)
    },
    // hpcd --discover: `enabled 0` and no counters without it
    'discovery-stats': {
      kind: 'file',
      mode: 0o444,
      show: () => `enabled ${node.discovery !== null ? 1 : 0}\n` + (node.discovery !== null ? statLines(node.discovery.stats) : '')
    }
  })
}

/** Counters as `name value` lines, camelCase names in kebab-case: droppedBadmac -> dropped-badmac. */
function statLines (stats: object): string {
  return Object.entries(stats).map(([k, v]) => `${k.replace(/[A-Z]/g, c => '-' + c.toLowerCase())} ${String(v)}\n`).join('')
}
