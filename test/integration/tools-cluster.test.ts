// The admin tools against real hpcd trees: two daemons on loopback ports (src/lab), the tools
// pointed at node 1's mount with HPC_ROOT.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { Lab } from '../../src/lab/lab.js'
import { Tree } from '../../src/cli/common.js'
import { runTool } from '../unit/tools-fixture.js'

const skip = existsSync('/dev/fuse') ? false : 'no /dev/fuse'
let lab: Lab | undefined
let root = ''

const tool = (name: string, args: string[], input = ''): ReturnType<typeof runTool> => runTool(name, args, { root, input })

async function until (what: string, pred: () => boolean, ms = 20000): Promise<void> {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

before(async () => {
  if (skip !== false) return
  lab = await Lab.create({ nodes: 2, tag: 'tools', netns: false, interval: 0.2, hpcdArgs: () => ['--no-balance'] })
  await lab.waitAllUp({ via: [1], timeoutMs: 30000 })
  root = lab.node(1).mount
})

after(async () => {
  await lab?.destroy()
})

test('mosctl reads and sets through the real tree', { skip }, async () => {
  assert.equal(tool('mosctl', ['whois']).stdout, 'This is openMosix #1\n')
  assert.equal(tool('mosctl', ['isup', '2']).stdout, 'yes\n')
  assert.match(tool('mosctl', ['getload', '2']).stdout, /^-?\d+\n$/)
  assert.match(tool('mosctl', ['whois', '2']).stdout, /^openMosix #2 is at IP address 127\.0\.0\.1:\d+\n$/)

  assert.equal(tool('mosctl', ['setspeed', '23456']).status, 0)
  assert.equal(tool('mosctl', ['getspeed']).stdout, '23456\n')
  assert.equal(tool('mosctl', ['setdecay', '3', '950', '900']).status, 0)
  assert.match(tool('mosctl', ['getdecay']).stdout, /interval: 3 .*\n.*950 .*\n.*900 /)

  // hpcd refuses this one with EINVAL: the tool says so and the values stay.
  const r = tool('mosctl', ['setdecay', '999999', '1', '1'])
  assert.equal(r.status, 1)
  assert.match(r.stderr, /admin\/decay-interval: invalid value \(EINVAL\)/)
  assert.match(tool('mosctl', ['getdecay']).stdout, /interval: 3 .*\n.*950 .*\n.*900 /)

  assert.equal(tool('mosctl', ['block']).status, 0)
  assert.match(tool('mosctl', ['status']).stdout, /block: +on/)
  // Node 2 hears about it by gossip.
  await until('node 2 to see node 1 blocked', () => /block: +on/.test(runTool('mosctl', ['status', '1'], { root: lab?.node(2).mount }).stdout))
  assert.equal(tool('mosctl', ['noblock']).status, 0)
  assert.match(tool('mosctl', ['status']).stdout, /block: +off/)
})

test('a read-only file refuses the write with EACCES', { skip }, () => {
  assert.throws(() => new Tree(root).write('admin/version', 'x'), /admin\/version: permission denied \(EACCES\)/)
})

test('setpe, showmap and mosmon --once on the real tree', { skip }, async () => {
  const printed = tool('setpe', ['-r'])
  assert.equal(printed.status, 0)
  assert.match(printed.stdout, /^1 127\.0\.0\.1/m)
  assert.match(printed.stdout, /^2 127\.0\.0\.1:\d+ 1$/m)

  const map = tool('showmap', [])
  assert.equal(map.status, 0, map.stderr)
  assert.match(map.stdout, /^My Node-Id: 0x0001\n\nBase Node-Id Address +Count\n/)
  assert.match(map.stdout, /^0x0002 +127\.0\.0\.1:\d+ +1$/m)

  const lines = printed.stdout.split('\n').filter(l => /^\d/.test(l))
  const without1 = lines.filter(l => !l.startsWith('1 ')).join('\n') + '\n'
  const refused = tool('setpe', ['-w'], without1)
  assert.equal(refused.status, 1)
  assert.match(refused.stderr, /well-formatted, but my (IP address|openMosix-ID) .* is not there!/)
  assert.equal(tool('setpe', ['-r']).stdout, printed.stdout)

  const once = tool('mosmon', ['--once', '-t'])
  assert.equal(once.status, 0, once.stderr)
  assert.match(once.stdout, /^\* *1 \|/m)
  assert.match(once.stdout, /^ *2 \|/m)
  assert.match(once.stdout, /Total: 2 nodes, 2 up/)

  // Leave the cluster and come back.
  assert.equal(tool('setpe', ['-off']).status, 0)
  assert.equal(new Tree(root).read('admin/mospe'), '0')
  assert.match(tool('mosctl', ['status']).stdout, /not configured/)
  // Now the tool cannot tell its own id; hpcd still refuses a map without it.
  const refusedByHpcd = tool('setpe', ['-w'], without1)
  assert.equal(refusedByHpcd.status, 1)
  assert.match(refusedByHpcd.stderr, /admin\/config: invalid value \(EINVAL\); hpcd refused the map/)
  assert.equal(tool('setpe', ['-p', '1']).status, 0)
  assert.equal(tool('mosctl', ['whois']).stdout, 'This is openMosix #1\n')
})
