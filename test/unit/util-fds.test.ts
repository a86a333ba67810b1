// Which descriptors a child inherits, and a spawn that gives it only its stdio (src/util/fds.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { inheritableFds, onlyStdio } from '../../src/util/fds.js'

const FDS = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '../../src/util/fds.js')).href

test('descriptors Node opens are close-on-exec', () => {
  const fd = openSync('/dev/null', 'r')
  try {
    assert.equal(inheritableFds(0).includes(fd), false)
    assert.deepEqual(inheritableFds(3).filter((n: number) => n < 3), [])
    assert.deepEqual(onlyStdio(['ignore', 'pipe', 'pipe']).slice(0, 3), ['ignore', 'pipe', 'pipe'])
  } finally { closeSync(fd) }
})

test('a descriptor without FD_CLOEXEC reaches every child, except through onlyStdio', () => {
  // a Node process holding fd 30 without FD_CLOEXEC (as the daemon holds libfuse's /dev/fuse):
  // what do its children see at fd 30?
  const script = `
    import { spawnSync } from 'node:child_process'
    const { inheritableFds, onlyStdio } = await import(${JSON.stringify(FDS)})
    const see = stdio => spawnSync('readlink', ['/proc/self/fd/30'], { stdio, encoding: 'utf8' }).stdout.trim()
    console.log(JSON.stringify({ found: inheritableFds(3), plain: see(['ignore', 'pipe', 'pipe']), only: see(onlyStdio(['ignore', 'pipe', 'pipe'])) }))`
  const r = spawnSync('bash', ['-c', 'exec 30</proc/version; exec "$0" --input-type=module -e "$1"', process.execPath, script], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const seen = JSON.parse(r.stdout) as { found: number[], plain: string, only: string }
  assert.ok(seen.found.includes(30), `inheritable: ${seen.found.join(' ')}`)
  assert.equal(seen.plain, '/proc/version', 'a plain spawn passes it on')
  assert.equal(seen.only, '/dev/null', 'onlyStdio does not')
})
