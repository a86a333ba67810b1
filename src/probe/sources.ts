// Linux state for the local probe, read synchronously from small /proc files (see docs/probe.md).
// Each file is opened once and re-read with pread at offset 0, which costs a few µs per read
// (measured: /proc/loadavg ≈ 2 µs, /proc/meminfo ≈ 6 µs, /proc/pressure/memory ≈ 2 µs), so the
// event loop is never held for long. The proc root is injectable so tests can parse fixture files.
//
// - runnable: the kernel's nr_running(), i.e. `procs_running` of /proc/stat. We read it from
//   /proc/loadavg (4th field "running/total"), which prints the same nr_running() but is 25 bytes
//   long whatever the number of CPUs and IRQs, whereas /proc/stat grows with both (its `intr` line
//   sums every IRQ on every CPU). The sampling thread is itself running while it reads, so one is
//   subtracted. Note: nr_running is system-wide, also inside a container.
// - cpus: the CPUs this process may run on (sched affinity), os.availableParallelism().
// - memory, in bytes: tmem = MemTotal, rmem = MemFree (raw, as Linux sees it),
//   mem = MemAvailable (free as the cluster counts it; kernels < 3.14 lack it: MemFree + Buffers +
//   Cached is used instead).
// - util, 0..100 "utilizability": 100 - `full avg10` of /proc/pressure/memory (the share of time
//   every non-idle task was stalled on memory), rounded; 100 when PSI is absent or disabled.
import { openSync, readSync, closeSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import createDebug from '../util/log.js'

const debug = createDebug('hpcfs:probe')

export interface MemInfo {
  tmem: number // bytes, MemTotal
  rmem: number // bytes, MemFree
  mem: number // bytes, MemAvailable
}

/** `procs_running` of a /proc/stat text. */
export function parseProcsRunning (statText: string): number {
  const m = /^procs_running\s+(\d+)\s*$/m.exec(statText)
  if (m === null) throw new Error('no procs_running line in /proc/stat')
  return Number(m[1])
}

/** Running count (4th field "running/total") of a /proc/loadavg text: nr_running(), like procs_running. */
export function parseLoadavgRunning (text: string): number {
  const m = /^\s*\S+\s+\S+\s+\S+\s+(\d+)\/\d+/.exec(text)
  if (m === null) throw new Error(`unexpected /proc/loadavg text: ${JSON.stringify(text.slice(0, 60))}`)
  return Number(m[1])
}

/** MemTotal / MemFree / MemAvailable of a /proc/meminfo text, in bytes. */
export function parseMeminfo (text: string): MemInfo {
  const kb = (k: string): number | undefined => {
    const m = new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)
    return m === null ? undefined : Number(m[1])
  }
  const tmem = kb('MemTotal')
  const rmem = kb('MemFree')
  if (tmem === undefined || rmem === undefined) throw new Error('no MemTotal/MemFree in /proc/meminfo')
  const avail = kb('MemAvailable') ?? rmem + (kb('Buffers') ?? 0) + (kb('Cached') ?? 0)
  return { tmem: tmem * 1024, rmem: rmem * 1024, mem: Math.min(avail, tmem) * 1024 }
}

/** `full avg10` of a /proc/pressure/memory text; undefined when there is no `full` line (old kernels). */
export function parsePressureFullAvg10 (text: string): number | undefined {
  const m = /^full\s.*?\bavg10=(\d+(?:\.\d+)?)/m.exec(text)
  return m === null ? undefined : Number(m[1])
}

/** Utilizability 0..100 from the memory-pressure `full avg10` percentage (undefined: no PSI → 100). */
export function utilFromPressure (fullAvg10: number | undefined): number {
  if (fullAvg10 === undefined || !Number.isFinite(fullAvg10)) return 100
  return Math.min(100, Math.max(0, Math.round(100 - fullAvg10)))
}

/** CPUs this process may run on (sched affinity). */
export function cpuCount (): number {
  return availableParallelism()
}

// One /proc file kept open and re-read from offset 0. 'absent' once opening or reading failed
// with an error meaning "not supported here" (no PSI, PSI disabled by psi=0).
class ProcFile {
  private fd: number | undefined
  private absent = false
  private buf: Buffer

  constructor (readonly path: string, size: number) {
    this.buf = Buffer.allocUnsafe(size)
  }

  /** Text of the file, or undefined when it does not exist / is not supported (only if optional). */
  read (optional: boolean): string | undefined {
    if (this.absent) return undefined
    try {
      if (this.fd === undefined) this.fd = openSync(this.path, 'r')
      let len = readSync(this.fd, this.buf, 0, this.buf.length, 0)
      while (len === this.buf.length) { // grew beyond the buffer: double it and re-read
        this.buf = Buffer.allocUnsafe(this.buf.length * 2)
        len = readSync(this.fd, this.buf, 0, this.buf.length, 0)
      }
      return this.buf.toString('latin1', 0, len)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (optional && (code === 'ENOENT' || code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'EACCES')) {
        debug('%s unavailable (%s): treated as absent', this.path, code)
        this.absent = true
        this.close()
        return undefined
      }
      throw err
    }
  }

  close (): void {
    if (this.fd !== undefined) {
      try { closeSync(this.fd) } catch {}
      this.fd = undefined
    }
  }
}

/** Synchronous readers of the probe's /proc files under `procRoot`. */
export class ProcSources {
  private readonly loadavg: ProcFile
  private readonly meminfo: ProcFile
  private readonly pressure: ProcFile

  constructor (readonly procRoot = '/proc') {
    this.loadavg = new ProcFile(join(procRoot, 'loadavg'), 256)
    this.meminfo = new ProcFile(join(procRoot, 'meminfo'), 4096)
    this.pressure = new ProcFile(join(procRoot, 'pressure', 'memory'), 256)
  }

  /** Runnable tasks system-wide, not counting the thread that is reading (it is running). */
  runnable (): number {
    return Math.max(0, parseLoadavgRunning(this.loadavg.read(false) as string) - 1)
  }

  memory (): MemInfo {
    return parseMeminfo(this.meminfo.read(false) as string)
  }

  util (): number {
    const text = this.pressure.read(true)
    return utilFromPressure(text === undefined ? undefined : parsePressureFullAvg10(text))
  }

  cpus (): number {
    return cpuCount()
  }

  close (): void {
    this.loadavg.close()
    this.meminfo.close()
    this.pressure.close()
  }
}
