// Test entry point for `npm test`: runs every compiled test file under dist/test with node's own
// runner, one file at a time (integration tests share mounts, namespaces and ports).
// Arguments select files by substring: `npm test -- gossip fs`.
import { readdirSync, statSync } from 'node:fs'
import { join, dirname, relative } from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const testDir = join(root, 'test')

function walk (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

const filters = process.argv.slice(2)
const files = walk(testDir).filter(f => filters.length === 0 || filters.some(s => relative(testDir, f).includes(s)))
if (files.length === 0) {
  console.error('run-tests: no test file matches', filters.join(' '))
  process.exit(1)
}
// --test-force-exit: a file whose tests have all ended is done, even if a failed test left a
// handle open (a helper's pipe, a timer); without it one such failure hangs the whole run.
// --test-timeout: a test file that hangs (a process that never ends, awaited without a bound) fails
// after FILE_TIMEOUT_MS with its name, and the run goes on to the next file (node 20 applies the
// limit to each file); the longest file takes about three minutes on a busy 2-core machine.
const FILE_TIMEOUT_MS = 360_000
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-force-exit', `--test-timeout=${FILE_TIMEOUT_MS}`, ...files], { stdio: 'inherit' })
process.exit(r.status ?? 1)
