// processesHolding: which processes hold a file open (decay/ finds its writer this way), and with
// `writers` only those holding it open for writing: a reader such as grep -r is not a writer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { processesHolding } from '../../src/util/holders.js'
import { poll } from '../../src/util/poll.js'

test('readers and writers of a file; writers only with the flag', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hpcfs-holders-'))
  const file = join(dir, 'hint')
  writeFileSync(file, '')
  const kids: ChildProcess[] = []
  try {
    const reader = spawn('sh', ['-c', 'exec sleep 30 < "$0"', file], { stdio: 'ignore' })
    const writer = spawn('sh', ['-c', 'exec sleep 30 >> "$0"', file], { stdio: 'ignore' })
    kids.push(reader, writer)
    const holds = (pid: number): boolean => { try { return readlinkSync(`/proc/${pid}/fd/${pid === reader.pid ? 0 : 1}`) === file } catch { return false } }
    await poll('the subjects to open the file', () => holds(reader.pid as number) && holds(writer.pid as number), { timeoutMs: 10_000, everyMs: 10 })
    assert.deepEqual(processesHolding(file).sort((a, b) => a - b), [reader.pid, writer.pid].sort((a, b) => (a as number) - (b as number)))
    assert.deepEqual(processesHolding(file, process.pid, '/proc', true), [writer.pid])
  } finally {
    for (const k of kids) k.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})
