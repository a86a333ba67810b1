// E-PVM opportunity cost (docs/sched.md, Cost): every resource of a node costs n^(utilisation), n = the
// number of nodes; a node's cost is the sum over its resources; the marginal cost of a job on a node
// is how much that node's cost rises when the job is added. Resources: CPU and memory.
//
// CPU utilisation = load / max_jobs, where load is counted in jobs per *standard* CPU: a node of
// speed s with c CPUs is s/10000 × c standard CPUs (10000 = Pentium III 1 GHz, the openMosix unit),
// so its openMosix load (100 = one busy standard CPU) divided by 100 is exactly this load.
// max_jobs starts at 1 and doubles whenever some node ends up with a load above it ("the smallest
// power of two greater than the largest load seen"). Memory utilisation = used / total.

import { SPEED } from '../config.js'

/** Standard speed: a node of this speed and one CPU is one standard CPU. */
export const STD_SPEED = SPEED.standard

/** What the cost function needs to know about a node. */
export interface NodeResources {
  /** Running jobs per standard CPU (openMosix load / 100). */
  load: number
  /** Standard CPUs of the node: cpus × speed / 10000. */
  capacity: number
  memUsed: number // bytes
  memTotal: number // bytes
}

/** What a job adds to a node. */
export interface JobDemand {
  /** CPU demand in CPUs of the node it runs on: 1 = CPU-bound. */
  cpu: number
  mem: number // bytes
}

/** Standard CPUs of a node with `cpus` CPUs of speed `speed`. */
export function capacityOf (cpus: number, speed: number): number {
  return Math.max(1, cpus) * Math.max(1, speed) / STD_SPEED
}

/** openMosix load units (100 = one busy standard CPU) → jobs per standard CPU. */
export function loadToJobs (load: number): number { return Math.max(0, load) / 100 }

/**
 * The cluster-wide part of the cost function: the base n and the doubling max_jobs. Keep one per
 * decision maker and let it observe every load it sees, so max_jobs only ever grows.
 */
export class CostModel {
  base: number
  maxJobs: number

  constructor (n: number, maxJobs = 1) {
    // A base below 2 makes every cost flat (n = 1: 1^x = 1); two nodes is the smallest useful base.
    this.base = Math.max(2, n)
    this.maxJobs = Math.max(1, maxJobs)
  }

  /** The cluster has `n` nodes now (one joined, or was configured): the base follows; max_jobs is kept. */
  resize (n: number): void { this.base = Math.max(2, n) }

  /** Notes a node load (jobs per standard CPU): doubles max_jobs until load ≤ max_jobs. True if it grew. */
  observe (load: number): boolean {
    let grew = false
    while (load > this.maxJobs) { this.maxJobs *= 2; grew = true }
    return grew
  }

  /** n^u for one resource at utilisation u. */
  resourceCost (u: number): number { return Math.pow(this.base, u) }

  cpuCost (load: number): number { return this.resourceCost(load / this.maxJobs) }

  memCost (used: number, total: number): number { return this.resourceCost(total > 0 ? used / total : 1) }

  /** Cost of a node: CPU + memory. */
  nodeCost (r: NodeResources): number {
    return this.cpuCost(r.load) + this.memCost(r.memUsed, r.memTotal)
  }

  /** Load added to a node by a job: its CPU demand over the node's standard CPUs. */
  addedLoad (r: NodeResources, job: JobDemand): number {
    return Math.max(0, job.cpu) / Math.max(1e-9, r.capacity)
  }

  /**
   * MC(m, j) = [n^((mem_m+mem_j)/tot) − n^(mem_m/tot)] + [n^((load_m+Δ)/max_jobs) − n^(load_m/max_jobs)],
   * with the current max_jobs (the doubling happens after the job is assigned: `commit`).
   *
   * `perCapacity` (rebalancing): the CPU term times the node's standard CPUs c, as if the node were
   * c standard machines each at its load per standard CPU (c·n^(L/max_jobs)). A job then costs
   * about the same on any node at the same load per standard CPU, and moves spread running work in
   * proportion to the speeds. Without it (E-PVM, placement) a job costs ≈ 1/c as much more on a
   * node of c standard CPUs, so slow nodes take only what faster ones cannot: right for new jobs,
   * most of them short, whose slowdown is against the fastest node (docs/sched.md measures both).
   */
  marginalCost (r: NodeResources, job: JobDemand, perCapacity = false): number {
    const t = r.memTotal > 0 ? r.memTotal : 1
    const dl = this.addedLoad(r, job)
    const w = perCapacity ? r.capacity : 1
    return (this.resourceCost((r.memUsed + job.mem) / t) - this.resourceCost(r.memUsed / t)) +
      w * (this.cpuCost(r.load + dl) - this.cpuCost(r.load))
  }

  /**
   * What a job already on the node costs there: the drop in the node's cost if it left. Same
   * formula as `marginalCost` taken from the node without the job.
   */
  removalGain (r: NodeResources, job: JobDemand, perCapacity = false): number {
    const dl = this.addedLoad(r, job)
    const without: NodeResources = {
      load: Math.max(0, r.load - dl),
      capacity: r.capacity,
      memUsed: Math.max(0, r.memUsed - job.mem),
      memTotal: r.memTotal
    }
    return this.marginalCost(without, job, perCapacity)
  }

  /** Adds the job to r (in place), doubling max_jobs if the new load exceeds it. Returns r. */
  commit (r: NodeResources, job: JobDemand): NodeResources {
    r.load += this.addedLoad(r, job)
    r.memUsed += job.mem
    this.observe(r.load)
    return r
  }
}

/** The index of the smallest marginal cost (first one on exact ties); −1 for an empty list. */
export function argminCost (costs: readonly number[]): number {
  let best = -1
  let cost = Infinity
  for (let i = 0; i < costs.length; i++) {
    // The book's pseudocode forgets `cost = marginal_cost` (docs/sched.md, Cost): a real argmin updates both.
    if (costs[i] < cost) { cost = costs[i]; best = i }
  }
  return best
}
