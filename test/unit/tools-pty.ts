// The full-screen tools (mosmon, mtop) under a pty made by test/unit/ptyrun.c.
//
// Not script(1): it stops reading the pty 10 ms after its child dies, so on a busy machine the
// last bytes a program writes (the terminal restore, a parting line) can go missing.
import { after } from 'node:test'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLI_DIR, type Fixture } from './tools-fixture.js'
import { poll, PollTimeout } from '../../src/util/poll.js'

const ptyDir = mkdtempSync(join(tmpdir(), 'hpcfs-ptyrun-'))
const PTYRUN = join(ptyDir, 'ptyrun')
const ptyBuild = spawnSync('gcc', ['-O2', '-Wall', '-o', PTYRUN, join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'unit', 'ptyrun.c')], { encoding: 'utf8' })
/** A skip reason when ptyrun cannot be built, else false. */
export const noPty = ptyBuild.status === 0 ? false : `cannot build ptyrun: ${ptyBuild.error?.message ?? ptyBuild.stderr}`
after(() => rmSync(ptyDir, { recursive: true, force: true }))

export interface Pty {
  proc: ChildProcess
  output: () => string
  exited: Promise<number | null>
  waitFor: (pred: (out: string) => boolean, what: string, ms?: number) => Promise<void>
}

/** Starts a compiled tool (`mosmon`, `mtop`) on an 80x24 pty with HPC_ROOT = the fixture. */
export function startPty (tool: string, f: Fixture, args: string[] = []): Pty {
  const env: NodeJS.ProcessEnv = { ...process.env, HPC_ROOT: f.root, TERM: 'xterm' }
  delete env.DEBUG
  const proc = spawn(PTYRUN, [process.execPath, join(CLI_DIR, `${tool}.js`), ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  // 'close', not 'exit': the last bytes through the pipes may arrive after the process has exited.
  const exited = new Promise<number | null>(resolve => proc.on('close', code => resolve(code)))
  let done = false
  void exited.then(() => { done = true })
  const waitFor = async (pred: (o: string) => boolean, what: string, ms = 10000): Promise<void> => {
    await poll(what, () => {
      if (pred(out)) return true
      if (done) throw new Error(`${tool} exited before ${what}; output: ${JSON.stringify(out)}`)
      return false
    }, { timeoutMs: ms, everyMs: 25 }).catch(e => { throw e instanceof PollTimeout ? new Error(`${e.message}; output: ${JSON.stringify(out)}`) : e })
  }
  return { proc, output: () => out, exited, waitFor }
}

/** The exit code, or an error when the program has not exited within `ms`. */
export async function exitCode (p: Pty, ms = 10000): Promise<number | null> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p.exited, new Promise<never>((_resolve, reject) => {
      t = setTimeout(() => reject(new Error(`the program did not exit within ${ms} ms; output: ${JSON.stringify(p.output().slice(-300))}`)), ms)
    })])
  } finally {
    clearTimeout(t)
  }
}

export async function stop (p: Pty): Promise<void> {
  if (p.proc.exitCode === null && p.proc.signalCode === null) {
    p.proc.kill('SIGKILL')
    await p.exited
  }
}

/** The tool's process (ptyrun's child running `<tool>.js`) and its pty. */
export function findTool (runnerPid: number, tool: string): { pid: number, tty: string } | undefined {
  try {
    const kids = readFileSync(`/proc/${runnerPid}/task/${runnerPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
    for (const k of kids) {
      const cmd = readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0')
      if (cmd.some(a => a.endsWith(`${tool}.js`))) return { pid: Number(k), tty: readlinkSync(`/proc/${k}/fd/1`) }
    }
  } catch {
    // the process went away
  }
  return undefined
}
