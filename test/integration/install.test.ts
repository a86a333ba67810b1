// Installed like a system tool: `npm pack`, then `npm install -g` of the tarball into a temporary
// prefix. Every command of package.json's bin is on the PATH and answers --version and --help, has
// its man page, and completes in bash; the shipped example /etc/hpcfs.conf documents every hpcd
// option, and with every key set it runs the installed daemon the way the shipped systemd unit
// starts it.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from '../../src/lab/lab.js'
import { haveCommand, poll, run, unmountIfMounted } from '../../src/lab/sys.js'
import { esc } from '../../scripts/docgen/roff.js'

const work = mkdtempSync(join(tmpdir(), 'hpcfs-install-'))
const prefix = join(work, 'prefix')
const pkgDir = join(prefix, 'lib', 'node_modules', 'hpcfs')
const PATH = `${join(prefix, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string, bin: Record<string, string>, man: string[] }
const commands = Object.keys(pkg.bin)
let daemon: ChildProcess | undefined
const mount = join(work, 'hpc')

after(async () => {
  if (daemon !== undefined && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL')
  await unmountIfMounted(mount).catch(() => undefined)
  rmSync(work, { recursive: true, force: true })
})

/** An installed command, found on the PATH as a user's shell would. */
const cmd = (name: string, args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof spawnSync> =>
  spawnSync(name, args, { cwd: work, encoding: 'utf8', timeout: 60_000, env: { ...process.env, PATH, DEBUG: '', ...env } })

test('npm pack + npm install -g: every command on the PATH with --version, --help and its man page', async () => {
  const pack = spawnSync('npm', ['pack', '--pack-destination', work, '--loglevel=error'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 600_000 })
  assert.equal(pack.status, 0, pack.stderr)
  const tgz = join(work, pack.stdout.trim().split('\n').pop()!)
  assert.ok(existsSync(tgz), tgz)
  const inst = spawnSync('npm', ['install', '-g', '--prefix', prefix, tgz, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'],
    { cwd: work, encoding: 'utf8', timeout: 600_000 })
  assert.equal(inst.status, 0, inst.stderr)

  // Only what runs is installed: no tests, scripts or sources.
  assert.ok(existsSync(join(pkgDir, 'dist', 'src', 'cli', 'hpcd.js')))
  assert.equal(existsSync(join(pkgDir, 'dist', 'test')), false)
  assert.equal(existsSync(join(pkgDir, 'src', 'cli')), false, 'no TypeScript sources')
  assert.ok(existsSync(join(pkgDir, 'src', 'gui', 'public', 'index.html')), 'the GUI\'s page (served as it is)')
  assert.deepEqual(new Set(pkg.man), new Set([...commands.map(c => `./man/man1/${c}.1`), './man/man5/hpcfs.conf.5']),
    'package.json "man" lists a page for every command')

  for (const c of commands) {
    const v = cmd(c, ['--version'])
    assert.equal(v.status, 0, `${c} --version: ${String(v.stderr)}`)
    assert.match(String(v.stdout), new RegExp(`\\b${pkg.version.replace(/\./g, '\\.')}\\b`), `${c} --version`)
    const h = cmd(c, ['--help'])
    assert.equal(h.status, 0, `${c} --help: ${String(h.stderr)}`)
    const usage = String(h.stdout).split('\n')[0].replace(/^Usage: /, '')
    assert.match(usage, new RegExp(`^${c}\\b`), `${c} --help starts with its usage`)
    const page = join(prefix, 'share', 'man', 'man1', `${c}.1`)
    assert.ok(existsSync(page), `man page of ${c} installed`)
    const roff = readFileSync(page, 'utf8')
    assert.ok(roff.includes(`.TH ${esc(c.toUpperCase())} 1`), `${c}.1 header`)
    assert.ok(roff.includes(esc(usage)), `${c}.1 holds the usage of ${c} --help`)
  }
  assert.ok(existsSync(join(prefix, 'share', 'man', 'man5', 'hpcfs.conf.5')))
  if (haveCommand('man')) {
    const m = cmd('man', ['-P', 'cat', 'mosctl'], { MANPATH: join(prefix, 'share', 'man'), MANWIDTH: '100' })
    assert.equal(m.status, 0, String(m.stderr))
    assert.match(String(m.stdout), /mosctl - control and query this hpcfs node/)
  }
  // The native helper is found in the installed package.
  const hi = cmd('hpc-ppm', ['hostinfo'])
  assert.equal(hi.status, 0, String(hi.stderr))
  assert.match(String(hi.stdout), /xcr0=/)
})

/** COMPREPLY of the installed completion for a command line ('' last word: completing after a space). */
function complete (line: string, tree: string): string[] {
  const words = line.split(' ')
  const script = `source ${JSON.stringify(join(pkgDir, 'completion', 'hpcfs.bash'))}
COMP_WORDS=(${words.map(w => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; COMP_LINE=${JSON.stringify(line)}
_hpcfs; printf '%s\\n' "\${COMPREPLY[@]}"`
  const r = spawnSync('bash', ['--norc', '-c', script], { encoding: 'utf8', env: { ...process.env, PATH, HPC_ROOT: tree } })
  assert.equal(r.status, 0, r.stderr)
  return r.stdout.split('\n').filter(s => s !== '').sort()
}

test('bash completion: subcommands, options, choices, node ids and pids from the tree', () => {
  const tree = join(work, 'tree')
  for (const d of ['nodes/1', 'nodes/2', 'nodes/5', 'proc/4242', 'admin']) mkdirSync(join(tree, d), { recursive: true })
  const reg = spawnSync('bash', ['--norc', '-c', `source ${JSON.stringify(join(pkgDir, 'completion', 'hpcfs.bash'))}; complete -p`], { encoding: 'utf8' })
  for (const c of commands) assert.match(reg.stdout, new RegExp(`-F _hpcfs .*\\b${c}\\b`), `completion registered for ${c}`)

  assert.deepEqual(complete('mosctl get', tree), ['getdecay', 'getfree', 'getload', 'getmem', 'getspeed', 'getutil'])
  assert.deepEqual(complete('mosctl getload ', tree), ['1', '2', '5'])
  assert.ok(complete('migrate ', tree).includes('4242'), 'pids under cluster discipline')
  assert.deepEqual(complete('migrate 4242 ', tree), ['1', '2', '5', 'balance', 'home'])
  assert.deepEqual(complete('hpcd --load-scope ', tree), ['cgroup', 'host', 'netns'])
  assert.ok(complete('hpcd --', tree).includes('--discover'))
  const mpsOpts = complete('mps -', tree)
  for (const o of ['--help', '--json', '--version', '-A', '-a', '-e']) assert.ok(mpsOpts.includes(o), `mps ${o} completes: ${mpsOpts.join(' ')}`)
  assert.ok(mpsOpts.every(o => o.startsWith('-')), 'only options after a dash')
  assert.deepEqual(complete('hpc-ppm d', tree), ['dump'])
  assert.deepEqual(complete('setpe -p ', tree), ['1', '2', '5'])
  assert.deepEqual(complete('mosrun -N ', tree), ['1', '2', '5'])
})

function freeUdpPort (): Promise<number> {
  const s = createSocket('udp4')
  return new Promise(resolve => s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) }))
}

function freeTcpPort (): Promise<number> {
  const s = createServer()
  return new Promise(resolve => s.listen(0, '127.0.0.1', () => { const a = s.address() as { port: number }; s.close(() => resolve(a.port)) }))
}

test('the example hpcfs.conf documents every hpcd option; with every key set it runs the installed hpcd as hpcd.service does', async () => {
  const unit = readFileSync(join(pkgDir, 'packaging', 'hpcd.service'), 'utf8')
  const exec = /^ExecStart=(.+)$/m.exec(unit)?.[1].trim().split(/\s+/)
  assert.deepEqual(exec, ['hpcd', '--config', '/etc/hpcfs.conf'])
  assert.match(unit, /^WantedBy=multi-user\.target$/m)
  if (haveCommand('systemd-analyze')) {
    // systemd finds `hpcd` on its own search path, and its man pages with man(1); here they are the installed ones.
    const copy = join(work, 'hpcd.service')
    writeFileSync(copy, unit.replace(/^ExecStart=hpcd /m, `ExecStart=${join(prefix, 'bin', 'hpcd')} `))
    const v = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', env: { ...process.env, MANPATH: join(prefix, 'share', 'man') } })
    assert.equal(v.status, 0, v.stderr)
  }

  const example = readFileSync(join(pkgDir, 'packaging', 'hpcfs.conf'), 'utf8')
  const keyLine = /^#?([a-z][a-z-]*) = (.*)$/
  const documented = new Set(example.split('\n').map(l => keyLine.exec(l)?.[1]).filter((k): k is string => k !== undefined))
  const help = String(cmd('hpcd', ['--help']).stdout)
  const options = new Set([...help.matchAll(/^\s+--([a-z][a-z-]*)\s/gm)].map(m => m[1]).filter(o => !['help', 'version', 'config'].includes(o)))
  assert.deepEqual([...options].filter(o => !documented.has(o)), [], 'hpcd options missing from the example hpcfs.conf')
  assert.deepEqual([...documented].filter(k => !options.has(k)), [], 'keys of the example that hpcd does not have')

  // Every key set, with values this test can see in the tree.
  const [port, seed] = [await freeUdpPort(), await freeUdpPort()]
  const migPort = await freeTcpPort()
  const [guiPort, metricsPort] = [await freeTcpPort(), await freeTcpPort()]
  const keyFile = join(work, 'hpcfs.key')
  writeFileSync(keyFile, randomBytes(32))
  const mapFile = join(work, 'hpcfs.map')
  writeFileSync(mapFile, `7 127.0.0.1:${port} 1\n`)
  const values: Record<string, string> = {
    key: keyFile, map: mapFile, join: `127.0.0.1:${seed}`, discover: 'no', id: '7', addr: '127.0.0.1', port: String(port), 'mig-port': String(migPort),
    mount, speed: '12345', interval: '0.5', window: '8', 'down-after': '9', 'send-to-any': '4', balance: 'no', 'load-scope': 'host',
    'decay-interval': '2', 'slow-decay': '950', 'fast-decay': '900', 'link-timeout': '7', precopy: '64', 'guest-lease': '20', 'state-dir': join(work, 'state'),
    gui: 'yes', 'gui-addr': `127.0.0.1:${guiPort}`, 'gui-tokens': join(work, 'gui-tokens'), metrics: `127.0.0.1:${metricsPort}`
  }
  assert.deepEqual(Object.keys(values).sort(), [...documented].sort(), 'the test sets every key')
  const conf = join(work, 'hpcfs.conf')
  writeFileSync(conf, example.split('\n').map(l => {
    const m = keyLine.exec(l)
    return m === null ? l : `${m[1]} = ${m[1] === 'mount' ? `"${values[m[1]]}"` : values[m[1]]}`
  }).join('\n'))

  const args = exec!.slice(1).map(a => a === '/etc/hpcfs.conf' ? conf : a)
  daemon = spawn(exec![0], args, { cwd: work, env: { ...process.env, PATH, DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  daemon.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  daemon.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>(resolve => daemon!.once('exit', code => resolve(code)))
  const read = async (rel: string): Promise<string> => (await run('cat', [join(mount, rel)], { timeoutMs: 5000 })).stdout.trim()
  await poll('installed hpcd serving its tree', async () => {
    if (daemon!.exitCode !== null) throw new Error(`hpcd exited ${daemon!.exitCode}: ${out}`)
    return await read('admin/mospe') === '7'
  }, { timeoutMs: 60_000, everyMs: 200 })
  assert.equal(await read('admin/speed'), '12345')
  assert.equal(await read('admin/balance'), '0')
  assert.equal(await read('admin/decay-interval'), '2')
  assert.equal(await read('admin/slow-decay'), '950')
  assert.equal(await read('admin/fast-decay'), '900')
  assert.equal(await read('nodes/7/addr'), `127.0.0.1:${port}`)
  assert.match(await read('admin/discovery-stats'), /^enabled 0$/m)
  await new Promise<void>((resolve, reject) => {
    const s = connect(migPort, '127.0.0.1', () => { s.destroy(); resolve() })
    s.once('error', reject)
  })
  const page = await fetch(`http://127.0.0.1:${guiPort}/`)
  assert.equal(page.status, 200, 'the GUI is served at gui-addr')
  await page.text()
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
  assert.match(metrics, /^hpcfs_node_speed\{node="7"\} 12345$/m, 'metrics are served at the metrics address')
  const got = cmd('mosctl', ['getspeed'], { HPC_ROOT: mount })
  assert.equal(String(got.stdout).trim(), '12345', String(got.stderr))
  assert.match(String(cmd('showmap', [], { HPC_ROOT: mount }).stdout), /My Node-Id: 0x0007/)
  daemon.kill('SIGTERM')
  assert.equal(await exited, 0, out)
  assert.equal(readFileSync('/proc/self/mounts', 'utf8').includes(` ${mount} `), false, 'unmounted')

  // A bad value stops hpcd with the file and line; nothing is mounted.
  writeFileSync(conf, readFileSync(conf, 'utf8').replace(/^balance = no$/m, 'balance = maybe'))
  const bad = cmd('hpcd', ['--config', conf])
  assert.notEqual(bad.status, 0)
  assert.match(String(bad.stderr), new RegExp(`${conf.replace(/[.]/g, '\\.')}:\\d+: balance takes yes or no`))
})
