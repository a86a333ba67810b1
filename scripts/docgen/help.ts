// Reading a command's --help text: its usage lines, and its body as verbatim text or, for the
// sections yargs prints (Options:, Commands:, Positionals:), as two-column entries. The man pages
// and the shell completion are made from this, so that --help stays their one source.

/** One entry of an Options/Commands/Positionals section: `--port  UDP gossip port  [number] [default: 5428]`. */
export interface HelpItem {
  /** The left column: `--port`, `-h, --help`, `hpc-ppm dump <pid> <image>`, `pid`. */
  term: string
  /** The description, continuation lines joined, without the trailing [annotations]. */
  text: string
  /** yargs' trailing annotations without brackets: `number`, `default: 5428`, `choices: "a", "b"`. */
  annotations: string[]
}

export type HelpBlock =
  | { kind: 'text', lines: string[] }
  | { kind: 'items', title: string, items: HelpItem[] }

export interface Help {
  tool: string
  /** Usage lines without the `Usage: ` prefix, continuation lines aligned under the first. */
  usage: string[]
  body: HelpBlock[]
}

const SECTION = /^(Options|Commands|Positionals):$/

/** Splits `text [a] [b: c]` into the text and its trailing bracketed annotations. */
export function splitAnnotations (s: string): { text: string, annotations: string[] } {
  const annotations: string[] = []
  let rest = s.trimEnd()
  for (;;) {
    const m = /\s*\[([^[\]]*)\]$/.exec(rest)
    if (m === null) break
    annotations.unshift(m[1])
    rest = rest.slice(0, m.index).trimEnd()
  }
  return { text: rest, annotations }
}

function parseItems (lines: string[]): HelpItem[] {
  const items: Array<{ term: string, parts: string[] }> = []
  let descCol = -1
  for (const line of lines) {
    const indent = line.length - line.trimStart().length
    const m = /^(\s+)(\S(?:.*?\S)?)(?:\s{2,}(\S.*))?$/.exec(line)
    if (m === null) continue
    if (items.length > 0 && descCol >= 0 && indent >= descCol) {
      items[items.length - 1].parts.push(line.trim())
      continue
    }
    items.push({ term: m[2], parts: m[3] !== undefined ? [m[3]] : [] })
    if (m[3] !== undefined) descCol = line.length - line.slice(m[1].length + m[2].length).trimStart().length
  }
  return items.map(({ term, parts }) => ({ term, ...splitAnnotations(parts.join(' ')) }))
}

/** Parses `tool --help` output. */
export function parseHelp (tool: string, output: string): Help {
  const lines = output.replace(/\s+$/, '').split('\n').map(l => l.trimEnd())
  const usage: string[] = []
  let i = 0
  if (lines[0]?.startsWith('Usage: ') || lines[0]?.startsWith(tool)) {
    const indent = lines[0].startsWith('Usage: ') ? 'Usage: '.length : 0
    usage.push(lines[0].slice(indent))
    for (i = 1; i < lines.length && /^\s+\S/.test(lines[i]); i++) {
      const l = lines[i]
      usage.push(l.slice(0, indent).trim() === '' ? l.slice(indent) : l.trimStart())
    }
  }
  const body: HelpBlock[] = []
  let text: string[] = []
  const flush = (): void => {
    while (text.length > 0 && text[0] === '') text.shift()
    while (text.length > 0 && text[text.length - 1] === '') text.pop()
    if (text.length > 0) body.push({ kind: 'text', lines: text })
    text = []
  }
  while (i < lines.length) {
    const m = SECTION.exec(lines[i])
    if (m === null) { text.push(lines[i++]); continue }
    flush()
    const section: string[] = []
    for (i++; i < lines.length && lines[i] !== ''; i++) section.push(lines[i])
    body.push({ kind: 'items', title: m[1], items: parseItems(section) })
  }
  flush()
  return { tool, usage, body }
}

/** Every item of the sections with this title. */
export function items (h: Help, title: string): HelpItem[] {
  return h.body.flatMap(b => b.kind === 'items' && b.title === title ? b.items : [])
}

/** The whole help as one string (usage and body), for searching. */
export function allText (h: Help): string {
  return [...h.usage, ...h.body.flatMap(b => b.kind === 'text' ? b.lines : b.items.map(x => `${x.term}  ${x.text}`))].join('\n')
}

/** The option names a help mentions: `-w`, `--wait`, `-off`, `--no-balance` (not placeholders such as `-ID`). */
export function optionNames (h: Help): string[] {
  const out = new Set<string>()
  for (const m of allText(h).matchAll(/(?<=^|[\s[|(,{])(--?[A-Za-z][A-Za-z0-9-]*)/g)) {
    const name = m[1]
    const bare = name.replace(/^-+/, '')
    if (bare.length > 1 && bare === bare.toUpperCase() && /[A-Z]/.test(bare)) continue // -ID: a placeholder
    out.add(name)
  }
  return [...out].sort()
}

/**
 * The subcommands a help names: words of a `{a|b|c}` group in a usage line that does not follow an
 * option (`mosctl {stay|nostay}`, `migrate PID {ID|home|balance}`, but not `-f {file|-}`), words
 * right after the tool's name (`mosctl whois ...`), and the entries of a yargs Commands section.
 * Only lower-case words: `openMosix-ID` and `PID` are placeholders.
 */
export function subcommands (h: Help): string[] {
  const out = new Set<string>()
  const word = /^[a-z][a-z0-9-]*$/
  for (const line of h.usage) {
    const rest = line.startsWith(h.tool) ? line.slice(h.tool.length) : line
    const first = /^\s+([a-z][a-z0-9-]*)(?=\s|$)/.exec(rest)
    if (first !== null) out.add(first[1])
    for (const m of rest.matchAll(/(\S+)?\s*\{([^}]*)\}/g)) {
      if (m[1] !== undefined && /^[[(|]*-/.test(m[1])) continue
      for (const w of m[2].split('|')) if (word.test(w)) out.add(w)
    }
  }
  for (const it of items(h, 'Commands')) {
    const w = it.term.split(/\s+/)[1]
    if (w !== undefined && word.test(w)) out.add(w)
  }
  return [...out]
}

/** The values of a `[choices: "a", "b"]` annotation, per option name. */
export function choices (h: Help): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const it of items(h, 'Options')) {
    const c = it.annotations.find(a => a.startsWith('choices: '))
    if (c === undefined) continue
    const values = [...c.matchAll(/"([^"]*)"/g)].map(m => m[1])
    for (const name of it.term.split(/,\s*/)) out.set(name.trim(), values)
  }
  return out
}
