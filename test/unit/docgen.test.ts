// The --help reader behind the man pages and the completion (scripts/docgen): usage, yargs
// sections, option names, subcommands and choices, and roff escaping.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { choices, items, optionNames, parseHelp, splitAnnotations, subcommands } from '../../scripts/docgen/help.js'
import { esc, manPage } from '../../scripts/docgen/roff.js'
import { bashCompletion } from '../../scripts/docgen/completion.js'

const YARGS = `hpcd [options]

The hpcfs daemon: one per host.

Options:
      --id              node id 1..65535 (default: from the map line holding --addr, else the last
                        two octets of --addr)                                   [number]
      --port            UDP gossip port                                     [number] [default: 5428]
      --load-scope      what the load counts
                                [choices: "host", "cgroup", "netns"] [default: "host"]
      --balance         move processes automatically; --no-balance: only explicit moves
                                                                           [boolean] [default: true]
  -h, --help            Show help                                                          [boolean]
`

const HAND = `Usage: setpe -w|-W [-c] [-p openMosix-ID] [-f {file|-}]
       setpe -r [-f {file|-}]
       setpe -off

  -w, -W     load a cluster map
  -off       take this node out of the cluster
Map lines: "first-id address count".
`

test('a yargs help: usage, text, and option entries with continuation lines and annotations', () => {
  const h = parseHelp('hpcd', YARGS)
  assert.deepEqual(h.usage, ['hpcd [options]'])
  assert.deepEqual(h.body[0], { kind: 'text', lines: ['The hpcfs daemon: one per host.'] })
  const opts = items(h, 'Options')
  assert.deepEqual(opts.map(o => o.term), ['--id', '--port', '--load-scope', '--balance', '-h, --help'])
  assert.equal(opts[0].text, 'node id 1..65535 (default: from the map line holding --addr, else the last two octets of --addr)')
  assert.deepEqual(opts[0].annotations, ['number'])
  assert.deepEqual(opts[1].annotations, ['number', 'default: 5428'])
  assert.deepEqual(choices(h).get('--load-scope'), ['host', 'cgroup', 'netns'])
  assert.ok(optionNames(h).includes('--no-balance'), 'options named in descriptions count')
})

test('a hand-written help: usage continuation lines, options, and no subcommand from an option\'s {a|b}', () => {
  const h = parseHelp('setpe', HAND)
  assert.deepEqual(h.usage, ['setpe -w|-W [-c] [-p openMosix-ID] [-f {file|-}]', 'setpe -r [-f {file|-}]', 'setpe -off'])
  assert.equal(h.body.length, 1)
  assert.deepEqual(optionNames(h), ['-W', '-c', '-f', '-off', '-p', '-r', '-w'])
  assert.deepEqual(subcommands(h), [], '{file|-} is the value of -f, openMosix-ID a placeholder')
  const m = parseHelp('mosctl', 'Usage: mosctl {stay|nostay|getdecay}\n       mosctl whois [openMosix-ID|IP-address]\n')
  assert.deepEqual(subcommands(m), ['stay', 'nostay', 'getdecay', 'whois'])
  const g = parseHelp('migrate', 'Usage: migrate PID {openMosix-ID|home|balance} [--wait [SECONDS]]\n')
  assert.deepEqual(subcommands(g), ['home', 'balance'])
  assert.deepEqual(optionNames(parseHelp('mosrun', 'Usage: mosrun [-h | -N ID | -ID] [--] command\n  -c CPU-bound, -i I/O-bound\n')), ['-N', '-c', '-h', '-i'])
})

test('annotations are split off the end only', () => {
  assert.deepEqual(splitAnnotations('a [b] text [number] [default: "x"]'), { text: 'a [b] text', annotations: ['number', 'default: "x"'] })
  assert.deepEqual(splitAnnotations('no annotations'), { text: 'no annotations', annotations: [] })
})

test('roff: hyphens, backslashes and leading dots are escaped; the page holds the help', () => {
  assert.equal(esc('--port'), '\\-\\-port')
  assert.equal(esc('a\\b'), 'a\\eb')
  assert.equal(esc('.hidden'), '\\&.hidden')
  assert.equal(esc("'quoted"), "\\&'quoted")
  const page = manPage(parseHelp('setpe', HAND), { section: 1, summary: 'load a map', version: '9.9', seeAlso: ['hpcd(1)'] })
  assert.match(page, /^\.TH SETPE 1 "" "hpcfs 9\.9" "hpcfs"$/m)
  assert.match(page, /^setpe \\- load a map$/m)
  assert.ok(page.includes('setpe \\-r [\\-f {file|\\-}]'))
  assert.ok(page.includes('Map lines: "first\\-id address count".'))
  assert.match(page, /^\.BR hpcd \(1\)$/m)
})

test('the completion script registers every command and names its options', () => {
  const script = bashCompletion([
    { name: 'mosctl', options: ['--help'], words: ['getload'], valued: {}, positional: ['words', 'nodes'] },
    { name: 'hpcd', options: ['--port', '--load-scope'], words: [], valued: { '--load-scope': 'choices:host netns' }, positional: ['none'] }
  ], '9.9')
  assert.match(script, /^complete -F _hpcfs mosctl hpcd$/m)
  assert.ok(script.includes("'hpcd --load-scope') _hpcfs_kind 'choices:host netns'; return ;;"))
  assert.ok(script.includes("mosctl) opts='--help'; words='getload'; pos='words nodes';"))
})
