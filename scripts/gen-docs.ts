// Man pages and bash completion for every command of package.json's `bin`, made from each
// command's --help at build time (scripts/build), so that --help is their one source:
//   man/man1/<command>.1     the command's help (yargs subcommands' help as subsections)
//   man/man5/hpcfs.conf.5    hpcd's options as config-file keys, with packaging/hpcfs.conf
//   completion/hpcfs.bash    options, subcommands and choices of every command
// Nothing here is committed: the outputs are regenerated when dist/src, package.json or
// packaging/hpcfs.conf is newer than them.
// Usage: node dist/scripts/gen-docs.js [--force]
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { choices, items, optionNames, parseHelp, subcommands, type Help } from './docgen/help.js'
import { esc, freePage, item, manPage, verbatim } from './docgen/roff.js'
import { bashCompletion, type CommandSpec } from './docgen/completion.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const MAN = join(ROOT, 'man')
const COMPLETION = join(ROOT, 'completion', 'hpcfs.bash')
const EXAMPLE_CONF = join(ROOT, 'packaging', 'hpcfs.conf')
const STAMP = join(ROOT, 'dist', '.gen-docs')

/** NAME lines (what --help does not say in one line). */
const SUMMARY: Record<string, string> = {
  hpcd: 'the hpcfs daemon: load gossip, the /proc/hpc tree over FUSE, process migration',
  mosctl: 'control and query this hpcfs node (openMosix mosctl)',
  setpe: 'load, check or print the cluster map (openMosix setpe)',
  showmap: 'print the cluster map in omdiscd\'s layout',
  mosmon: 'monitor the load, speed and memory of every node',
  mosrun: 'run a command under cluster discipline, at home or on another node',
  migrate: 'move a process to another node, home, or where the balancer chooses',
  mps: 'list processes with the node each one runs on',
  'hpc-ppm': 'checkpoint and restore processes (the hpcfs PPM engine)',
  mtop: 'top with the node each process runs on',
  runon: 'run a command on a given node, locked there (mosrun -N)',
  runhome: 'run a command at home, locked there (mosrun -h)',
  nomig: 'run a command with automatic migration off (mosrun -L)',
  cpujob: 'run a command counted as CPU-bound by the balancer (mosrun -c)',
  iojob: 'run a command counted as using no CPU by the balancer (mosrun -i)',
  nodecay: 'run a command whose CPU statistics do not decay (mosrun -n)',
  slowdecay: 'run a command whose CPU statistics decay slowly (mosrun -s)',
  fastdecay: 'run a command whose CPU statistics decay fast (mosrun -f)'
}

/** What arguments are, which --help cannot say. Commands not listed get their options and words. */
const ARGS: Record<string, Pick<CommandSpec, 'positional' | 'bySub'> & { valued?: Record<string, string> }> = {
  mosctl: { positional: ['words', 'nodes'] },
  setpe: { positional: ['none'], valued: { '-f': 'files', '-p': 'nodes', '-n': 'none', '-g': 'none' } },
  mosrun: { positional: ['command'], valued: { '-N': 'nodes', '-j': 'nodes' } },
  migrate: { positional: ['pids', 'words+nodes'], valued: { '--wait': 'none' } },
  mps: { positional: ['pids'] },
  'hpc-ppm': {
    positional: ['words', 'none'],
    bySub: { check: ['words', 'pids'], dump: ['words', 'pids', 'files'], restore: ['words', 'files'], info: ['words', 'files'] }
  },
  hpcd: { positional: ['none'], valued: { '--map': 'files', '--key': 'files', '--config': 'files', '--mount': 'dirs' } }
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string, bin: Record<string, string> }

function newest (path: string): number {
  const st = statSync(path)
  if (!st.isDirectory()) return st.mtimeMs
  let m = st.mtimeMs
  for (const e of readdirSync(path)) m = Math.max(m, newest(join(path, e)))
  return m
}

function upToDate (): boolean {
  if (!existsSync(STAMP) || !existsSync(COMPLETION) || !existsSync(join(MAN, 'man1'))) return false
  const made = statSync(STAMP).mtimeMs
  const inputs = [join(ROOT, 'dist', 'src'), join(ROOT, 'package.json'), EXAMPLE_CONF, fileURLToPath(import.meta.url)]
  return inputs.every(p => !existsSync(p) || newest(p) <= made)
}

/** Links named after each command, as npm's bin links are: a multi-call program (mosrun's wrappers) tells them apart by that name. */
const LINKS = mkdtempSync(join(tmpdir(), 'hpcfs-gen-docs-'))
process.on('exit', () => { rmSync(LINKS, { recursive: true, force: true }) })

function helpOf (name: string, file: string, args: string[]): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, DEBUG: '', HPC_ROOT: '' }
  delete env.COLUMNS
  const link = join(LINKS, name)
  if (!existsSync(link)) symlinkSync(join(ROOT, file), link)
  return new Promise((resolveP, reject) => {
    execFile(process.execPath, [link, ...args, '--help'], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${file} ${args.join(' ')} --help: ${err.message} ${stderr}`))
      else resolveP(stdout)
    })
  })
}

/** Write a file whole, never half: a reader sees the old one or the new one. */
function put (path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path + '.tmp', text)
  renameSync(path + '.tmp', path)
}

interface Command { name: string, help: Help, subs: Help[] }

async function gather (): Promise<Command[]> {
  return await Promise.all(Object.entries(pkg.bin).map(async ([name, file]) => {
    const help = parseHelp(name, await helpOf(name, file, []))
    const subs = await Promise.all(subcommands(help).filter(() => items(help, 'Commands').length > 0)
      .map(async w => parseHelp(`${name} ${w}`, await helpOf(name, file, [w]))))
    return { name, help, subs }
  }))
}

function page (c: Command, all: string[]): string {
  const mentions = (s: string): boolean => JSON.stringify(c.help).includes(s)
  return manPage(c.help, {
    section: 1,
    summary: SUMMARY[c.name] ?? 'an hpcfs command',
    version: pkg.version,
    subcommands: c.subs,
    environment: [
      ...(mentions('HPC_ROOT') ? [['HPC_ROOT', 'the hpcfs tree (this node\'s /proc/hpc) the command works through; default /mnt/hpc, or <checkout>/mnt/hpc when run from a checkout'] as [string, string]] : []),
      ['DEBUG', 'hpcfs:* (or one module, e.g. hpcfs:cli) prints debugging messages on standard error']
    ],
    files: c.name === 'hpcd'
      ? [['/etc/hpcfs.conf', 'configuration file, read with --config (hpcfs.conf(5))'], ['/etc/hpcfs.key', 'cluster key, given with --key'], ['/mnt/hpc', 'default mount point of the tree']]
      : [],
    seeAlso: [...all.filter(n => n !== c.name).map(n => `${n}(1)`), 'hpcfs.conf(5)']
  })
}

/** hpcfs.conf(5): hpcd's options as keys, and the shipped example. */
function confPage (hpcd: Help, all: string[]): string {
  const keys = items(hpcd, 'Options').filter(it => !/--(help|version|config)\b/.test(it.term))
  const example = existsSync(EXAMPLE_CONF) ? readFileSync(EXAMPLE_CONF, 'utf8').trimEnd().split('\n') : []
  return freePage('hpcfs.conf', {
    section: 5,
    summary: 'configuration file of the hpcfs daemon',
    version: pkg.version,
    seeAlso: ['hpcd(1)', ...all.filter(n => n !== 'hpcd').map(n => `${n}(1)`)],
    sections: [
      ['SYNOPSIS', ['.B /etc/hpcfs.conf']],
      ['DESCRIPTION', [esc('hpcd --config FILE reads one setting per line, "key = value" or "key value"; "#" starts a comment; values may be in double quotes. ' +
        'The keys are hpcd\'s long options without the dashes, below with hpcd --help\'s text. Options given on the command line win over the file. ' +
        'Boolean keys take yes/no, true/false, on/off or 1/0; join takes several peers separated by commas or spaces and may be given on several lines. ' +
        'An unknown key or a bad value stops hpcd with a message naming it.')]],
      ['KEYS', keys.flatMap(it => item({ ...it, term: it.term.replace(/^.*--/, '') }))],
      ...(example.length > 0 ? [['EXAMPLE', verbatim(example)] as [string, string[]]] : [])
    ]
  })
}

function specOf (c: Command): CommandSpec {
  const a = ARGS[c.name] ?? { positional: ['none'] }
  const valued: Record<string, string> = { ...a.valued }
  for (const h of [c.help, ...c.subs]) {
    const ch = choices(h)
    for (const it of items(h, 'Options')) {
      if (it.annotations.includes('boolean')) continue
      for (const name of it.term.split(/,\s*/).map(s => s.trim())) {
        const values = ch.get(name)
        valued[name] = values !== undefined ? `choices:${values.join(' ')}` : valued[name] ?? 'none'
      }
    }
  }
  const options = new Set(['--help', '--version', ...optionNames(c.help), ...c.subs.flatMap(optionNames)])
  return { name: c.name, options: [...options].sort(), words: subcommands(c.help), valued, positional: a.positional, bySub: a.bySub }
}

async function main (): Promise<void> {
  if (!process.argv.includes('--force') && upToDate()) return
  const commands = await gather()
  const names = commands.map(c => c.name)
  rmSync(MAN, { recursive: true, force: true })
  for (const c of commands) put(join(MAN, 'man1', `${c.name}.1`), page(c, names))
  const hpcd = commands.find(c => c.name === 'hpcd')
  if (hpcd !== undefined) put(join(MAN, 'man5', 'hpcfs.conf.5'), confPage(hpcd.help, names))
  put(COMPLETION, bashCompletion(commands.map(specOf), pkg.version))
  put(STAMP, `${new Date().toISOString()}\n`)
  console.error(`gen-docs: ${commands.length} man pages, hpcfs.conf(5), completion/hpcfs.bash`)
}

await main()
