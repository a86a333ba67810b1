// The local probe of one node (docs/probe.md). Like the kernel's per-tick accumulation, it samples
// the runnable count every `sampleMs` (default 100 ms); every `periodMs` (default 1 s) it averages
// the samples into the raw load (runnable tasks), feeds the MOSIX smoother (smoothing.ts), reads
// memory and utilisation, and emits 'update' with a snapshot. The exported loads are normalised to
// openMosix units at read time, so a setSpeed() shows at once:
//
//   load = round(100 × runnable × STD_SPEED / (speed × cpus))
//
// 100 = every CPU of a standard-speed (PIII 1 GHz) node busy; faster or SMP nodes show lower loads.
// `load` is the advertised (upper) value, `localLoad` the local mean. `adjust(delta)` is the
// scheduler telling the probe of a change it knows about (a process left, exited or came in):
// both values move at once (LoadSmoother.shift) and the period's samples so far, taken before the
// change, are dropped.
import { EventEmitter } from 'node:events'
import createDebug from '../util/log.js'
import { LoadSmoother } from './smoothing.js'
import { ProcSources, type MemInfo } from './sources.js'
import { calibrateSpeed, STD_SPEED, MIN_SPEED, MAX_SPEED } from './calibrate.js'
import { cpuGroupOf, cpuShareOf, runnableInGroup } from './cgroup.js'
import { NetnsLoad, netnsOf } from './netns.js'
import { readFileSync } from 'node:fs'

const debug = createDebug('hpcfs:probe')

export interface ProbeOptions {
  speed?: number // override: skips calibration
  sampleMs?: number // runnable-count sampling interval, default 100
  periodMs?: number // load computation period, default 1000
  procRoot?: string // default '/proc'
  /**
   * 'host' (default): the machine's runnable count and CPUs. 'cgroup': the node is the daemon's
   * CPU cgroup (src/probe/cgroup.ts): its runnable threads, its CPU quota as CPUs, and a calibrated
   * speed scaled by the quota. 'netns': the runnable threads of the processes in the daemon's
   * network namespace (src/probe/netns.ts).
   */
  scope?: 'host' | 'cgroup' | 'netns'
}

export interface ProbeSnapshot {
  cpus: number
  speed: number
  load: number // advertised (upper), integer, openMosix units
  localLoad: number // local mean, integer, openMosix units
  tmem: number // bytes
  rmem: number // bytes
  mem: number // bytes
  util: number // 0..100
}

/** openMosix load units of a raw runnable count. */
export function normaliseLoad (runnable: number, speed: number, cpus: number): number {
  return Math.round(100 * runnable * STD_SPEED / (speed * cpus))
}

function checkSpeed (n: number): number {
  if (!Number.isInteger(n) || n < MIN_SPEED || n > MAX_SPEED) {
    throw new RangeError(`speed must be an integer in ${MIN_SPEED}..${MAX_SPEED}, got ${n}`)
  }
  return n
}

function checkMs (name: string, n: number): number {
  if (!Number.isFinite(n) || n < 1) throw new RangeError(`${name} must be >= 1 ms, got ${n}`)
  return n
}

export class Probe extends EventEmitter<{ update: [ProbeSnapshot] }> {
  readonly sampleMs: number
  readonly periodMs: number
  private readonly src: ProcSources
  private readonly smoother = new LoadSmoother()
  private _speed: number
  private cpus: number
  /** The runnable count of the node, by its load scope. */
  private readonly runnable: () => number
  /** The 'cgroup' scope fixes cpus from the quota: not read again every period. */
  private readonly quotaCpus: boolean
  private mem: MemInfo
  private util: number
  private sum = 0
  private count = 0
  private sampleTimer: NodeJS.Timeout | undefined
  private periodTimer: NodeJS.Timeout | undefined

  constructor (opts: ProbeOptions = {}) {
    super()
    this.sampleMs = checkMs('sampleMs', opts.sampleMs ?? 100)
    this.periodMs = checkMs('periodMs', opts.periodMs ?? 1000)
    this.src = new ProcSources(opts.procRoot)
    this.cpus = this.src.cpus()
    let share: number | undefined
    if (opts.scope === 'cgroup') {
      const g = cpuGroupOf(readFileSync('/proc/self/cgroup', 'utf8'))
      if (g === undefined) throw new Error('load scope cgroup: this process is not in a CPU cgroup of its own')
      share = cpuShareOf(g)
      // a quota of 0.25 CPU is one CPU at a quarter of the speed; 1.5 CPUs, two at three quarters
      if (share !== undefined && share < this.cpus) this.cpus = Math.max(1, Math.ceil(share))
      this.runnable = () => runnableInGroup(g)
    } else if (opts.scope === 'netns') {
      const ns = new NetnsLoad(netnsOf('self'))
      this.runnable = () => ns.runnable()
    } else {
      this.runnable = () => this.src.runnable()
    }
    this.quotaCpus = opts.scope === 'cgroup'
    const calibrated = (): number => {
      const s = calibrateSpeed()
      if (share === undefined) return s
      const scaled = Math.max(MIN_SPEED, Math.round(s * Math.min(1, share / this.cpus)))
      debug('probe: calibrated %d, CPU share %s of %d CPUs: speed %d', s, share, this.cpus, scaled)
      return scaled
    }
    this._speed = opts.speed !== undefined ? checkSpeed(opts.speed) : checkSpeed(calibrated())
    this.mem = this.src.memory()
    this.util = this.src.util()
    debug('probe: speed %d, cpus %d, sample %d ms, period %d ms', this._speed, this.cpus, this.sampleMs, this.periodMs)
  }

  get speed (): number {
    return this._speed
  }

  /** Set the node speed (mosctl setspeed); integer 1..1000000, else RangeError. */
  setSpeed (n: number): void {
    this._speed = checkSpeed(n)
    debug('speed set to %d', n)
  }

  /**
   * A known change of the node's runnable tasks (src/sched/balancer.ts: a process of load `delta`
   * came in, or left with -delta): applied at once to both loads, and the period restarts its
   * samples (those taken before the change would pull the loads back towards what they were).
   */
  adjust (delta: number): void {
    this.smoother.shift(delta)
    this.sum = 0
    this.count = 0
    debug('load adjusted by %s: mean %s, upper %s', delta.toFixed(2), this.smoother.mean.toFixed(2), this.smoother.upper.toFixed(2))
  }

  get running (): boolean {
    return this.sampleTimer !== undefined
  }

  start (): void {
    if (this.running) return
    this.sum = 0
    this.count = 0
    this.sampleTimer = setInterval(() => this.sample(), this.sampleMs).unref()
    this.periodTimer = setInterval(() => this.period(), this.periodMs).unref()
  }

  stop (): void {
    clearInterval(this.sampleTimer)
    clearInterval(this.periodTimer)
    this.sampleTimer = undefined
    this.periodTimer = undefined
  }

  /** Stop and close the /proc file descriptors. */
  close (): void {
    this.stop()
    this.src.close()
  }

  snapshot (): ProbeSnapshot {
    return {
      cpus: this.cpus,
      speed: this._speed,
      load: normaliseLoad(this.smoother.upper, this._speed, this.cpus),
      localLoad: normaliseLoad(this.smoother.mean, this._speed, this.cpus),
      tmem: this.mem.tmem,
      rmem: this.mem.rmem,
      mem: this.mem.mem,
      util: this.util
    }
  }

  private sample (): void {
    try {
      this.sum += this.runnable()
      this.count++
    } catch (err) {
      debug('runnable sample failed: %s', (err as Error).message)
    }
  }

  private period (): void {
    if (this.count === 0) this.sample() // period shorter than the sampling interval
    if (this.count > 0) this.smoother.update(this.sum / this.count)
    this.sum = 0
    this.count = 0
    try {
      if (!this.quotaCpus) this.cpus = this.src.cpus()
      this.mem = this.src.memory()
      this.util = this.src.util()
    } catch (err) {
      debug('memory/util read failed: %s', (err as Error).message)
    }
    this.emit('update', this.snapshot())
  }
}
