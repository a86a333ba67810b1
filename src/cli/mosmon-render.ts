// mosmon's screen as a pure function: state -> lines (each at most `width` characters, at most
// `height` lines), plus the key handling. The interactive driver is in mosmon.ts.
//
// Horizontal layout: one line per node, `*` marks this node:
//   *  1 |##########                       | 1.23
// Modes (mosmon(1) keys): l load (default), L load on a log scale, s speed (xN = CPUs), m memory (used `#`, free `+` up to
// total), r raw memory (same, as Linux counts it), u utilisation. t toggles the total line, d shows
// dead nodes.

export type Mode = 'load' | 'logload' | 'speed' | 'mem' | 'rmem' | 'util'

/** One node's files from nodes/<id>/ (NaN when a file could not be read or parsed). */
export interface NodeSample {
  id: number
  load: number
  speed: number
  cpus: number
  mem: number
  rmem: number
  tmem: number
  util: number
  status: number
}

export interface MonState {
  mode: Mode
  showTotal: boolean
  showDead: boolean
  myId: number
  nodes: NodeSample[]
  /** Shown under the title when the tree could not be read. */
  error?: string
}

export const DOWN = -101

export const TITLES: Record<Mode, string> = {
  load: 'Load (1.00 = one standard CPU fully busy)',
  logload: 'Load, log scale (1.00 = one standard CPU fully busy)',
  speed: 'Speed (10000 = Pentium III 1 GHz; xN = CPUs)',
  mem: 'Memory in MB (# used, + free, as the cluster counts it)',
  rmem: 'Raw memory in MB (# used, + free, as Linux counts it)',
  util: 'Utilizability (%)'
}

export const FOOTER = 'l)oad L)og-load s)peed m)em r)aw-mem u)til t)otal d)ead q)uit'

const KEY_MODES: Record<string, Mode> = { l: 'load', L: 'logload', s: 'speed', m: 'mem', r: 'rmem', u: 'util' }

/** A node is up when its status has bit 2 and its load is not the -101 "down" marker. */
export function nodeUp (n: NodeSample): boolean {
  return Number.isFinite(n.status) && (n.status & 2) !== 0 && n.load !== DOWN
}

/** The state after a key press, or 'quit' (q, Q, Ctrl-C). Unknown keys change nothing. */
export function applyKey (s: MonState, key: string): MonState | 'quit' {
  if (key === 'q' || key === 'Q' || key === '\x03') return 'quit'
  const mode = KEY_MODES[key]
  if (mode !== undefined) return { ...s, mode }
  if (key === 't') return { ...s, showTotal: !s.showTotal }
  if (key === 'd') return { ...s, showDead: !s.showDead }
  return s
}

const MB = 1024 * 1024
const fit = (s: string, width: number): string => s.length > width ? s.slice(0, Math.max(0, width)) : s
const known = (x: number): boolean => Number.isFinite(x) && x !== DOWN

function label (s: MonState, n: NodeSample): string {
  if (!nodeUp(n)) return 'down'
  switch (s.mode) {
    case 'load':
    case 'logload': return known(n.load) ? (n.load / 100).toFixed(2) : '?'
    case 'speed': return known(n.speed) ? `${n.speed}${known(n.cpus) && n.cpus > 1 ? ` x${n.cpus}` : ''}` : '?'
    case 'mem':
    case 'rmem': {
      const free = s.mode === 'mem' ? n.mem : n.rmem
      if (!known(free) || !known(n.tmem)) return '?'
      return `${Math.round(Math.max(0, n.tmem - free) / MB)}/${Math.round(n.tmem / MB)}`
    }
    case 'util': return known(n.util) ? `${n.util}%` : '?'
  }
}

/** The full scale of the bars for the shown nodes. */
function scale (s: MonState, shown: NodeSample[]): number {
  const up = shown.filter(nodeUp)
  const max = (f: (n: NodeSample) => number): number => up.reduce((m, n) => known(f(n)) ? Math.max(m, f(n)) : m, 0)
  switch (s.mode) {
    case 'load':
    case 'logload': return Math.max(100, max(n => n.load))
    case 'speed': return Math.max(1, max(n => n.speed))
    case 'mem':
    case 'rmem': return Math.max(1, max(n => n.tmem))
    case 'util': return 100
  }
}

function bar (s: MonState, n: NodeSample, full: number, width: number): string {
  if (!nodeUp(n)) return ''
  const cells = (v: number): number => Math.max(0, Math.min(width, Math.round(v / full * width)))
  switch (s.mode) {
    case 'load': return known(n.load) ? '#'.repeat(cells(n.load)) : ''
    // log scale: 0 -> empty, the full scale -> full, each tenfold of load the same length.
    case 'logload': return known(n.load) ? '#'.repeat(cells(full * Math.log1p(Math.max(0, n.load) / 10) / Math.log1p(full / 10))) : ''
    case 'speed': return known(n.speed) ? '#'.repeat(cells(n.speed)) : ''
    case 'util': return known(n.util) ? '#'.repeat(cells(n.util)) : ''
    case 'mem':
    case 'rmem': {
      const free = s.mode === 'mem' ? n.mem : n.rmem
      if (!known(free) || !known(n.tmem)) return ''
      const used = cells(Math.max(0, n.tmem - free))
      const total = cells(n.tmem)
      return '#'.repeat(used) + '+'.repeat(Math.max(0, total - used))
    }
  }
}

/** The screen for `s` in a width x height terminal: at most `height` lines of at most `width` characters. */
export function renderFrame (s: MonState, width: number, height: number): string[] {
  width = Math.max(1, Math.floor(width))
  height = Math.max(1, Math.floor(height))
  const up = s.nodes.filter(nodeUp)
  const shown = s.showDead ? s.nodes : up
  const head = [`mosmon: ${TITLES[s.mode]}`]
  if (s.showTotal) head.push(`Total: ${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}, ${up.length} up`)
  if (s.error !== undefined) head.push(`(${s.error})`)
  head.push('')

  const idW = Math.max(1, ...shown.map(n => String(n.id).length))
  const labels = shown.map(n => label(s, n))
  const labelW = Math.max(0, ...labels.map(l => l.length))
  // "* 12 |" + bar + "| " + label
  const barW = Math.max(1, width - (idW + 3) - 2 - labelW - 1)
  const full = scale(s, shown)
  const body = shown.map((n, i) => {
    const b = nodeUp(n) ? bar(s, n, full, barW) : '(down)'.slice(0, barW)
    return `${n.id === s.myId ? '*' : ' '}${String(n.id).padStart(idW)} |${b.padEnd(barW)}| ${labels[i]}`
  })
  if (shown.length === 0) body.push(s.nodes.length === 0 ? 'no nodes' : `no node is up (${s.nodes.length} down; press d to show them)`)

  const foot = ['', FOOTER]
  let lines: string[]
  if (head.length + body.length + foot.length <= height) {
    lines = [...head, ...body, ...foot]
  } else {
    // Too small: keep the title, then as many nodes as fit with a "more" line, then the key help.
    const footFit = height >= head.length + 3 ? [FOOTER] : []
    const room = height - head.length - footFit.length
    if (room <= 0) {
      lines = head.slice(0, height)
    } else if (body.length <= room) {
      lines = [...head, ...body, ...footFit]
    } else {
      const keep = Math.max(0, room - 1)
      lines = [...head, ...body.slice(0, keep), `... ${body.length - keep} more node${body.length - keep === 1 ? '' : 's'} (enlarge the window)`, ...footFit]
    }
  }
  return lines.slice(0, height).map(l => fit(l, width))
}
