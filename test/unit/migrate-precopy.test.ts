// The pre-copy option of moves (config precopy, src/migrate/engine.ts withPrecopy): the deputy or
// dump of a process with at least that much resident memory asks the engine for pre-copy, a
// smaller one or a threshold of 0 does not; the rest of the engine is passed through.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { withPrecopy, type Engine } from '../../src/migrate/engine.js'

function stub (sizes: Record<number, number>, calls: Array<[string, number, unknown]>): Engine {
  return {
    check: async () => [],
    hostInfo: async () => 'host',
    deputy: async (pid, _out, opts) => { calls.push(['deputy', pid, opts]); return {} as never },
    dump: async (pid, _out, opts) => { calls.push(['dump', pid, opts]) },
    restore: async () => { throw new Error('not here') },
    adopt: () => { throw new Error('not here') },
    kill: () => {},
    alive: () => true,
    describe: pid => ({ name: 'p', bytes: sizes[pid] ?? 0, age: 1 }),
    stdioKinds: () => [],
    availableBytes: () => 1 << 30,
    psInfo: () => undefined
  }
}

test('pre-copy is asked for processes at or above the threshold only, and never with 0', async () => {
  const calls: Array<[string, number, unknown]> = []
  let min = 64 << 20
  const e = withPrecopy(stub({ 10: 100 << 20, 11: 1 << 20, 12: 64 << 20 }, calls), () => min)
  await e.deputy(10, new PassThrough(), { target: 'x' })
  await e.deputy(11, new PassThrough(), {})
  await e.dump(12, new PassThrough(), {})
  await e.dump(11, new PassThrough(), { target: 'y' })
  min = 0
  await e.deputy(10, new PassThrough(), {})
  assert.deepEqual(calls, [
    ['deputy', 10, { target: 'x', precopy: true }],
    ['deputy', 11, { precopy: false }],
    ['dump', 12, { precopy: true }],
    ['dump', 11, { target: 'y', precopy: false }],
    ['deputy', 10, { precopy: false }]
  ])
  assert.equal(await e.hostInfo(), 'host')
  assert.equal(e.describe(10).bytes, 100 << 20)
})
