#!/usr/bin/env node
// hpc-ppm: the PPM engine for admins and tests (docs/ppm.md).
//   hpc-ppm check PID            print why PID cannot move; exit 3 if it cannot
//   hpc-ppm dump PID IMAGE       checkpoint PID into IMAGE (a path, or - for standard output);
//                                the process is removed once the image is complete unless
//                                --leave-running; --precopy [--rounds N]: copy the memory while
//                                it runs, freeze it for the last round only
//   hpc-ppm restore IMAGE        restore IMAGE (a path, or - for standard input) into a fresh
//                                process, print its pid and return once it runs
//   hpc-ppm info IMAGE           read and verify a whole image, print its summary
//   hpc-ppm hostinfo             this host's compatibility record (for dump --target)
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import debug from '../util/log.js'
import { spawn } from 'node:child_process'
import { openSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { check, dump, helperPath, hostInfo, info, PpmError } from '../ppm/ppm.js'
import { versionText } from './common.js'

const log = debug('hpcfs:hpc-ppm')

function pidArg (v: unknown): number {
  const s = String(v)
  if (!/^[1-9][0-9]*$/.test(s)) throw new Error(`bad pid '${s}'`)
  return Number(s)
}

// yargs turns a lone '-' positional into ''
function imageArg (v: unknown): string {
  const s = String(v ?? '')
  if (s === '' && process.argv.includes('-')) return '-'
  if (s === '') throw new Error("bad image ''")
  return s
}

function report (e: unknown): number {
  if (e instanceof PpmError) {
    for (const r of e.reasons) console.error(`hpc-ppm: ${r.code}: ${r.text}`)
    console.error(`hpc-ppm: ${e.message}`)
    return e.reasons.length > 0 ? 3 : 1
  }
  console.error(`hpc-ppm: ${e instanceof Error ? e.message : String(e)}`)
  return 1
}

async function restoreCmd (image: string, o: { newPid: boolean, requirePid: boolean, clock?: string, eintr: boolean }): Promise<number> {
  // The restored process outlives this command: the helper runs detached and, with --no-wait,
  // leaves the process to init once it runs. Its stdio is ours (stdin is /dev/null when the image
  // comes from stdin).
  const args = ['restore', '--no-wait']
  if (o.newPid) args.push('--new-pid')
  if (o.requirePid) args.push('--require-pid')
  if (o.eintr) args.push('--eintr')
  if (o.clock != null) args.push('--clock', o.clock)
  const img = image === '-' ? 0 : openSync(image, 'r')
  const child = spawn(helperPath(), args, { stdio: [image === '-' ? 'ignore' : 0, 1, 2, img, 'pipe'], detached: true })
  const rl = createInterface({ input: child.stdio[4] as NodeJS.ReadableStream })
  const reasons: string[] = []
  return await new Promise(resolve => {
    let pid = 0
    rl.on('line', l => {
      log('helper: %s', l)
      if (l.startsWith('REASON ')) reasons.push(l.slice(7))
      else if (l.startsWith('PID ')) pid = Number(l.slice(4))
      else if (l.startsWith('ERR ')) {
        for (const r of reasons) console.error(`hpc-ppm: ${r.replace(' ', ': ')}`)
        console.error(`hpc-ppm: ${l.slice(4).replace(/^\S+ /, '')}`)
        resolve(reasons.length > 0 ? 3 : 1)
      } else if (l === 'OK' && pid > 0) { console.log(pid); resolve(0) }
    })
    child.on('exit', code => { if (code !== 0) resolve(code ?? 1) })
    child.unref()
  })
}

async function main (): Promise<number> {
  let code = 0
  const cli = yargs(hideBin(process.argv))
    .scriptName('hpc-ppm')
    .usage('Usage: $0 <command> [options]')
    .command('check <pid>', 'print the reasons why PID cannot move (exit 3 if any)', y => y.positional('pid', { type: 'string', demandOption: true }),
      async a => {
        const reasons = await check(pidArg(a.pid))
        for (const r of reasons) console.log(`${r.code}: ${r.text}`)
        code = reasons.length > 0 ? 3 : 0
      })
    .command('dump <pid> <image>', 'checkpoint PID into IMAGE (- = standard output)', y => y
      .positional('pid', { type: 'string', demandOption: true })
      .positional('image', { type: 'string', demandOption: true })
      .option('leave-running', { type: 'boolean', default: false, describe: 'keep the process running after the dump' })
      .option('target', { type: 'string', describe: 'compatibility record of the target host (hpc-ppm hostinfo there)' })
      .option('precopy', { type: 'boolean', default: false, describe: 'pre-copy: copy the memory in rounds while it runs, freeze it for the last one' })
      .option('rounds', { type: 'number', describe: 'pre-copy: at most this many rounds (2-100, default 8), then a plain dump' }),
    async a => {
      const precopy = a.rounds != null ? { rounds: a.rounds } : a.precopy
      const r = await dump(pidArg(a.pid), imageArg(a.image), { leaveRunning: a['leave-running'], target: a.target, precopy })
      const pre = r.stats.precopy_rounds != null ? `, pre-copy ${r.stats.precopy_rounds} rounds${r.stats.precopy_fallback === '1' ? ' (fell back to stop-and-copy)' : ''}` : ''
      console.error(`hpc-ppm: ${r.bytes} bytes, ${r.pages} pages, frozen ${r.freezeMs.toFixed(1)} ms${pre}`)
    })
    .command('restore <image>', 'restore IMAGE (- = standard input); prints the pid once it runs', y => y
      .positional('image', { type: 'string', demandOption: true })
      .option('new-pid', { type: 'boolean', default: false, describe: 'do not try to keep the original pid' })
      .option('require-pid', { type: 'boolean', default: false, describe: 'fail if the original pid is taken' })
      .option('clock', { type: 'string', describe: 'CLOCK_MONOTONIC: auto, real, continue or an offset in ns' })
      .option('eintr', { type: 'boolean', default: false, describe: 'interrupted sleeps return EINTR instead of resuming' }),
    async a => {
      if (a.clock != null && !/^(auto|real|continue|-?[0-9]+)$/.test(a.clock)) throw new Error(`bad --clock '${a.clock}'`)
      code = await restoreCmd(imageArg(a.image), { newPid: a['new-pid'], requirePid: a['require-pid'], clock: a.clock, eintr: a.eintr })
    })
    .command('info <image>', 'read and verify a whole image (- = standard input)', y => y.positional('image', { type: 'string', demandOption: true }),
      async a => {
        const r = await info(imageArg(a.image))
        for (const [k, v] of Object.entries(r.fields)) console.log(`${k}: ${v}`)
        for (const x of r.reasons) console.log(`cannot restore here: ${x.code}: ${x.text}`)
        code = r.reasons.length > 0 ? 3 : 0
      })
    .command('hostinfo', "print this host's compatibility record", () => {}, async () => { console.log(await hostInfo()) })
    .demandCommand(1, 'a command is needed')
    .strict()
    .version(versionText('hpc-ppm'))
    .help()
    .fail((msg, err, y) => {
      if (err != null && !(err.name === 'YError')) throw err
      y.showHelp('error')
      console.error(`\nhpc-ppm: ${msg ?? err?.message ?? 'bad usage'}`)
      process.exit(2)
    })
  try {
    await cli.parseAsync()
  } catch (e) {
    if (e instanceof Error && /^bad (pid|--clock|image)/.test(e.message)) {
      console.error(`hpc-ppm: ${e.message}`)
      return 2
    }
    return report(e)
  }
  return code
}

process.exitCode = await main()
