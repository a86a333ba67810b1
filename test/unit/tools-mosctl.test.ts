// mosctl against a plain directory laid out like the tree.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTool, withTree, type Fixture } from './tools-fixture.js'

const mosctl = (f: Fixture | string, ...args: string[]): ReturnType<typeof runTool> =>
  runTool('mosctl', args, { root: typeof f === 'string' ? f : f.root })

test('flag subcommands write 1 / 0 to the admin file', withTree({}, f => {
  const cases: Array<[string, string, string]> = [
    ['stay', 'stay', '1'], ['nostay', 'stay', '0'], ['lstay', 'lstay', '1'], ['nolstay', 'lstay', '0'],
    ['block', 'block', '1'], ['noblock', 'block', '0'], ['quiet', 'quiet', '1'], ['noquiet', 'quiet', '0']
  ]
  for (const [cmd, file, want] of cases) {
    f.write(`admin/${file}`, want === '1' ? '0\n' : '1\n')
    const r = mosctl(f, cmd)
    assert.equal(r.status, 0, `${cmd}: ${r.stderr}`)
    assert.equal(r.stdout, '')
    assert.equal(f.read(`admin/${file}`), `${want}\n`, cmd)
  }
  // The man page's "-stay" spelling of nostay.
  f.write('admin/stay', '1\n')
  assert.equal(mosctl(f, '-stay').status, 0)
  assert.equal(f.read('admin/stay'), '0\n')
}))

test('expel also sets block, bring also sets lstay', withTree({}, f => {
  assert.equal(mosctl(f, 'expel').status, 0)
  assert.equal(f.read('admin/block'), '1\n')
  assert.equal(f.read('admin/expel'), '1\n')
  assert.equal(f.read('admin/lstay'), '0\n')
  assert.equal(mosctl(f, 'bring').status, 0)
  assert.equal(f.read('admin/lstay'), '1\n')
  assert.equal(f.read('admin/bring'), '1\n')
}))

test('get* print the node files, for this node or a given id', withTree({ count: 3, me: 2 }, f => {
  const files: Record<string, 'load' | 'speed' | 'mem' | 'rmem' | 'util'> = {
    getload: 'load', getspeed: 'speed', getmem: 'mem', getfree: 'rmem', getutil: 'util'
  }
  for (const [cmd, field] of Object.entries(files)) {
    for (const n of f.nodes) {
      const r = mosctl(f, cmd, String(n.id))
      assert.equal(r.status, 0, r.stderr)
      assert.equal(r.stdout, `${n[field]}\n`, `${cmd} ${n.id}`)
    }
  }
  const me = f.nodes.find(n => n.id === f.me)
  assert.ok(me)
  assert.equal(mosctl(f, 'getload').stdout, `${me.load}\n`)
  assert.equal(mosctl(f, 'getutil').stdout, `${me.util}\n`)
  // getspeed without an id is this node's setting.
  f.write('admin/speed', '4321\n')
  assert.equal(mosctl(f, 'getspeed').stdout, '4321\n')
}))

test('isup and status tell up from down', withTree({ count: 3, down: [3] }, f => {
  const [a, , c] = f.nodes
  assert.equal(mosctl(f, 'isup').stdout, 'yes\n')
  assert.equal(mosctl(f, 'isup', String(a.id)).stdout, 'yes\n')
  assert.equal(mosctl(f, 'isup', String(c.id)).stdout, 'no\n')
  assert.equal(mosctl(f, 'getload', String(c.id)).stdout, '-101\n')

  const up = mosctl(f, 'status')
  assert.equal(up.status, 0)
  assert.match(up.stdout, new RegExp(`^Node #${f.me} is up\n`))
  assert.match(up.stdout, /status: 3 \(configured, up\)/)
  assert.match(up.stdout, /block: +off/)
  f.write('admin/block', '1\n')
  assert.match(mosctl(f, 'status').stdout, /block: +on/)
  const down = mosctl(f, 'status', String(c.id))
  assert.equal(down.status, 0)
  assert.match(down.stdout, new RegExp(`^Node #${c.id} is down\nstatus: 1 \\(configured\\)\n$`))
}))

test('status of another node decodes its bits', withTree({ count: 2 }, f => {
  const b = f.nodes[1]
  f.write(`nodes/${b.id}/status`, `${1 | 2 | 4 | 16}\n`)
  const r = mosctl(f, 'status', String(b.id))
  assert.equal(r.status, 0)
  assert.match(r.stdout, /status: 23 \(configured, up, stay, block\)/)
  assert.match(r.stdout, /stay: +on/)
  assert.match(r.stdout, /lstay: +off/)
  assert.match(r.stdout, /block: +on/)
  assert.match(r.stdout, /quiet: +off/)
}))

test('whois maps ids and addresses through admin/config', withTree({ count: 3 }, f => {
  assert.equal(mosctl(f, 'whois').stdout, `This is openMosix #${f.me}\n`)
  for (const n of f.nodes) {
    assert.equal(mosctl(f, 'whois', String(n.id)).stdout, `openMosix #${n.id} is at IP address ${n.addr}\n`)
    assert.equal(mosctl(f, 'whois', n.addr).stdout, `${n.addr} is openMosix #${n.id}\n`)
  }
  f.write('admin/config', '7 127.0.0.1:6001 1\n8 127.0.0.1:6002 1\n')
  assert.equal(mosctl(f, 'whois', '127.0.0.1:6002').stdout, '127.0.0.1:6002 is openMosix #8\n')
  assert.equal(mosctl(f, 'whois', '8').stdout, 'openMosix #8 is at IP address 127.0.0.1:6002\n')
  const unknown = mosctl(f, 'whois', '192.0.2.77')
  assert.equal(unknown.status, 1)
  assert.match(unknown.stderr, /192\.0\.2\.77 is not in the cluster map/)
  assert.equal(mosctl(f, 'whois', '9').status, 1)
}))

test('getdecay / setdecay', withTree({}, f => {
  const interval = 2 + Math.floor(Math.random() * 50)
  const r = mosctl(f, 'setdecay', String(interval), '900', '800')
  assert.equal(r.status, 0, r.stderr)
  assert.equal(f.read('admin/decay-interval'), `${interval}\n`)
  assert.equal(f.read('admin/slow-decay'), '900\n')
  assert.equal(f.read('admin/fast-decay'), '800\n')
  const g = mosctl(f, 'getdecay')
  assert.match(g.stdout, new RegExp(`interval: ${interval} `))
  assert.match(g.stdout, /slow decay: 900 /)
  assert.match(g.stdout, /fast decay: 800 /)
  for (const bad of [['0', '900', '800'], ['1', '1001', '800'], ['1', '900', 'x'], ['1', '900']]) {
    const b = mosctl(f, 'setdecay', ...bad)
    assert.equal(b.status, 2, bad.join(' '))
    assert.match(b.stderr, /Usage: mosctl/)
    assert.equal(f.read('admin/slow-decay'), '900\n')
  }
}))

test('setdecay puts back what it wrote when a later write fails', withTree({}, f => {
  rmSync(join(f.root, 'admin/fast-decay'))
  mkdirSync(join(f.root, 'admin/fast-decay')) // writing it fails with EISDIR
  const r = mosctl(f, 'setdecay', '5', '500', '400')
  assert.equal(r.status, 1)
  assert.match(r.stderr, /^mosctl: cannot write "400" to .*admin\/fast-decay: is a directory \(EISDIR\)\n$/)
  assert.equal(f.read('admin/decay-interval'), '1\n')
  assert.equal(f.read('admin/slow-decay'), '975\n')
}))

test('setspeed checks its argument and changes nothing on bad input', withTree({}, f => {
  const before = f.read('admin/speed')
  for (const bad of [['0'], ['1000001'], ['fast'], ['-5'], [], ['100', '200']]) {
    const r = mosctl(f, 'setspeed', ...bad)
    assert.equal(r.status, 2, `setspeed ${bad.join(' ')}`)
    assert.match(r.stderr, /^mosctl: .*\nUsage: mosctl/)
    assert.equal(f.read('admin/speed'), before)
  }
  const speed = 1 + Math.floor(Math.random() * 1000000)
  assert.equal(mosctl(f, 'setspeed', String(speed)).status, 0)
  assert.equal(f.read('admin/speed'), `${speed}\n`)
}))

test('misuse prints usage and exits 2; -h prints usage and exits 0', withTree({}, f => {
  for (const args of [[], ['frobnicate'], ['stay', 'extra'], ['getload', 'abc'], ['getload', '0'], ['getload', '65536'], ['isup', '1', '2']]) {
    const r = mosctl(f, ...args)
    assert.equal(r.status, 2, args.join(' '))
    assert.match(r.stderr, /Usage: mosctl/)
    assert.equal(r.stdout, '')
  }
  for (const cmd of ['nomfs', 'mfs', 'gettune', 'getyard', 'setyard']) {
    const r = mosctl(f, cmd)
    assert.equal(r.status, 2, cmd)
    assert.match(r.stderr, new RegExp(`^mosctl: ${cmd} is not supported by hpcfs \\(`))
  }
  for (const h of ['-h', '--help']) {
    const r = mosctl(f, h)
    assert.equal(r.status, 0)
    assert.match(r.stdout, /^Usage: mosctl/)
  }
}))

test('a node that does not exist is a clear error; its status is "not configured"', withTree({ count: 2 }, f => {
  const missing = Math.max(...f.nodes.map(n => n.id)) + 1
  for (const cmd of ['getload', 'isup', 'getmem']) {
    const r = mosctl(f, cmd, String(missing))
    assert.equal(r.status, 1, cmd)
    assert.match(r.stderr, new RegExp(`no node ${missing} in the cluster`))
    assert.equal(r.stdout, '')
  }
  const st = mosctl(f, 'status', String(missing))
  assert.equal(st.status, 0, st.stderr)
  assert.equal(st.stdout, `Node #${missing} is not configured\n`)
}))

test('status --json: one object with documented fields, for this node, another, a down and an unknown node', withTree({ count: 3, down: [3] }, f => {
  const [me, b, down] = f.nodes
  const keys = ['id', 'self', 'configured', 'up', 'status', 'flags', 'stay', 'lstay', 'block', 'quiet', 'load', 'speed', 'cpus', 'util', 'mem', 'rmem', 'tmem', 'addr', 'ageMs']
  f.write('admin/block', '1\n')
  let r = mosctl(f, 'status', '--json')
  assert.equal(r.status, 0, r.stderr)
  let j = JSON.parse(r.stdout) as Record<string, unknown>
  assert.deepEqual(Object.keys(j), keys)
  assert.deepEqual(j, {
    id: me.id, self: true, configured: true, up: true, status: 3, flags: ['configured', 'up'], stay: false, lstay: false, block: true, quiet: false,
    load: me.load, speed: me.speed, cpus: me.cpus, util: me.util, mem: me.mem, rmem: me.rmem, tmem: me.tmem, addr: `${me.addr}:5428`, ageMs: 0
  })
  f.write(`nodes/${b.id}/status`, `${1 | 2 | 8 | 32}\n`)
  j = JSON.parse(mosctl(f, '--json', 'status', String(b.id)).stdout)
  assert.equal(j.self, false)
  assert.deepEqual(j.flags, ['configured', 'up', 'lstay', 'quiet'])
  assert.deepEqual([j.stay, j.lstay, j.block, j.quiet], [false, true, false, true])
  assert.equal(j.load, b.load)
  j = JSON.parse(mosctl(f, 'status', String(down.id), '--json').stdout)
  assert.equal(j.up, false)
  assert.equal(j.configured, true)
  assert.equal(j.load, null, 'a down node\'s -101 is null')
  const missing = down.id + 1
  j = JSON.parse(mosctl(f, 'status', String(missing), '--json').stdout)
  assert.deepEqual(Object.keys(j), keys)
  assert.equal(j.id, missing)
  assert.equal(j.configured, false)
  assert.equal(j.status, null)
  // --json only goes with status
  r = mosctl(f, 'getload', '--json')
  assert.equal(r.status, 2)
  assert.match(r.stderr, /^mosctl: --json goes with status\nUsage: mosctl/)
}))

test('an unconfigured node (mospe 0)', withTree({}, f => {
  f.write('admin/mospe', '0\n')
  const r = mosctl(f, 'getload')
  assert.equal(r.status, 1)
  assert.match(r.stderr, /not configured/)
  assert.equal(mosctl(f, 'status').stdout, 'Node #0 is not configured\n')
  assert.equal(JSON.parse(mosctl(f, 'status', '--json').stdout).configured, false)
  assert.equal(mosctl(f, 'whois').status, 1)
}))

test('a refused write is reported with the path and exits 1; files are never created', withTree({}, f => {
  rmSync(join(f.root, 'admin/quiet'))
  const r = mosctl(f, 'quiet')
  assert.equal(r.status, 1)
  assert.match(r.stderr, /cannot write "1" to .*admin\/quiet: no such file \(ENOENT\)/)
  assert.equal(existsSync(join(f.root, 'admin/quiet')), false)
}))

test('no tree at HPC_ROOT', () => {
  const empty = mkdtempSync(join(tmpdir(), 'hpcfs-notree-'))
  try {
    const r = mosctl(empty, 'getload')
    assert.equal(r.status, 1)
    assert.equal(r.stderr, `mosctl: no hpcfs tree at ${empty} (is hpcd running? set HPC_ROOT)\n`)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
})
