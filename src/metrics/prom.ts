// The Prometheus text exposition format (version 0.0.4), as a pure formatter: metric families in,
// text out. What a reader needs of the format (from Prometheus's exposition-format document):
//
//   # HELP <name> <text, with \ and newline escaped as \\ and \n>
//   # TYPE <name> counter|gauge
//   <name>{<label>="<value, with \, " and newline escaped>",...} <value>
//
// Names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not starting with
// "__"); values are Go floats: NaN, +Inf, -Inf or a decimal number. By convention a counter's name
// ends in `_total` and a value with a unit names it, in base units (`_bytes`, `_seconds`, `_ratio`).
// Every line ends in "\n"; the families of one scrape have distinct names.

export type MetricType = 'counter' | 'gauge'

export interface Sample {
  labels?: Record<string, string | number>
  value: number
}

export interface MetricFamily {
  name: string
  help: string
  type: MetricType
  samples: Sample[]
}

/** The content type of a scrape in this format. */
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/

export class MetricsError extends Error {}

function formatValue (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
const escapeLabel = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

function formatLabels (name: string, labels: Record<string, string | number> | undefined): string {
  if (!labels) return ''
  const keys = Object.keys(labels)
  if (keys.length === 0) return ''
  for (const k of keys) {
    if (!LABEL.test(k) || k.startsWith('__')) throw new MetricsError(`${name}: bad label name "${k}"`)
  }
  return '{' + keys.map(k => `${k}="${escapeLabel(String(labels[k]))}"`).join(',') + '}'
}

/**
 * The text of one scrape. Throws MetricsError for what Prometheus would reject or our naming
 * rules forbid: a bad metric or label name, a name given twice, a counter not named `*_total`, a
 * negative counter, two samples of a family with the same labels.
 */
export function formatMetrics (families: readonly MetricFamily[]): string {
  const seen = new Set<string>()
  let out = ''
  for (const f of families) {
    if (!NAME.test(f.name)) throw new MetricsError(`bad metric name "${f.name}"`)
    if (seen.has(f.name)) throw new MetricsError(`metric ${f.name} given twice`)
    seen.add(f.name)
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new MetricsError(`counter ${f.name} must be named *_total`)
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`
    const series = new Set<string>()
    for (const s of f.samples) {
      if (f.type === 'counter' && !(s.value >= 0)) throw new MetricsError(`counter ${f.name} has a negative or NaN value ${s.value}`)
      const labels = formatLabels(f.name, s.labels)
      if (series.has(labels)) throw new MetricsError(`${f.name}${labels} given twice`)
      series.add(labels)
      out += `${f.name}${labels} ${formatValue(s.value)}\n`
    }
  }
  return out
}
