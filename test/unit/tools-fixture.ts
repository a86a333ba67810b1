// Test fixture for the admin tools: a temp directory laid out like the hpcfs tree (admin/, decay/,
// nodes/<id>/) with random but consistent values, and a runner for the compiled tools.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnSync } from 'node:child_process'
import type { NodeSample } from '../../src/cli/mosmon-render.js'

export const CLI_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli')

/** One node's files, as mosmon reads them, plus whether it is up and its address. */
export interface FixtureNode extends NodeSample {
  up: boolean
  addr: string
}

export interface Fixture {
  root: string
  me: number
  nodes: FixtureNode[]
  read: (rel: string) => string
  write: (rel: string, text: string) => void
  cleanup: () => void
}

const rand = (lo: number, hi: number): number => lo + Math.floor(Math.random() * (hi - lo + 1))

/** A test body run against a fresh tree, cleaned up even when it fails. */
export function withTree (opts: Parameters<typeof makeTree>[0], fn: (f: Fixture) => void): () => void {
  return () => {
    const f = makeTree(opts)
    try {
      fn(f)
    } finally {
      f.cleanup()
    }
  }
}

/** A tree with `count` nodes on 10.<a>.<b>.1.. (node `me` is this node); `down` lists down nodes. */
export function makeTree (opts: { count?: number, me?: number, down?: number[] } = {}): Fixture {
  const count = opts.count ?? 3
  const me = opts.me ?? 1
  const down = new Set(opts.down ?? [])
  const root = mkdtempSync(join(tmpdir(), 'hpcfs-tools-'))
  const write = (rel: string, text: string): void => {
    mkdirSync(dirname(join(root, rel)), { recursive: true })
    writeFileSync(join(root, rel), text)
  }
  const read = (rel: string): string => readFileSync(join(root, rel), 'utf8')
  const net = `10.${rand(0, 255)}.${rand(0, 255)}`
  const firstId = rand(1, 100)
  const nodes: FixtureNode[] = []
  for (let k = 0; k < count; k++) {
    const id = firstId + k
    const tmem = rand(1, 64) * 1024 * 1024 * 1024
    const rmem = rand(0, tmem)
    nodes.push({
      id,
      up: !down.has(k + 1),
      load: rand(0, 400),
      speed: rand(1000, 30000),
      cpus: rand(1, 16),
      mem: Math.min(tmem, rmem + rand(0, 1024 * 1024)),
      rmem,
      tmem,
      util: rand(0, 100),
      status: down.has(k + 1) ? 1 : 3,
      addr: `${net}.${k + 1}`
    })
  }
  const meId = firstId + me - 1
  write('admin/mospe', `${meId}\n`)
  for (const f of ['block', 'stay', 'lstay', 'quiet', 'bring', 'expel']) write(`admin/${f}`, '0\n')
  write('admin/speed', `${nodes[me - 1].speed}\n`)
  write('admin/version', 'hpcfs 0.1.0 (openMosix-compatible tree)\n')
  write('admin/decay-interval', '1\n')
  write('admin/slow-decay', '975\n')
  write('admin/fast-decay', '926\n')
  write('admin/config', `# hpcfs cluster map\n${firstId} ${net}.1 ${count}\n`)
  write('admin/migrate', '')
  write('admin/gossip-stats', 'sent 0\nreceived 0\n')
  for (const f of ['clear', 'cpujob', 'iojob', 'slow', 'fast']) write(`decay/${f}`, '')
  for (const n of nodes) {
    for (const f of ['load', 'speed', 'cpus', 'mem', 'rmem', 'tmem', 'util'] as const) {
      write(`nodes/${n.id}/${f}`, `${n.up ? n[f] : -101}\n`)
    }
    write(`nodes/${n.id}/status`, `${n.status}\n`)
    write(`nodes/${n.id}/addr`, `${n.addr}:5428\n`)
    write(`nodes/${n.id}/age`, '0\n')
  }
  return { root, me: meId, nodes, read, write, cleanup: () => rmSync(root, { recursive: true, force: true }) }
}

export interface RunResult {
  status: number | null
  stdout: string
  stderr: string
}

/** Run a compiled tool (`mosctl`, ...) with HPC_ROOT = root. */
export function runTool (tool: string, args: string[], opts: { root?: string, input?: string, env?: NodeJS.ProcessEnv } = {}): RunResult {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env }
  delete env.DEBUG
  if (opts.root !== undefined) env.HPC_ROOT = opts.root
  const r = spawnSync(process.execPath, [join(CLI_DIR, `${tool}.js`), ...args], { env, input: opts.input ?? '', encoding: 'utf8', timeout: 20000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}
