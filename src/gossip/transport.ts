// How gossip datagrams travel. The protocol code only sees this interface, so the same code runs
// over UDP in the daemon and over the in-memory network in the simulator and unit tests.

export interface Address { host: string, port: number }

export type Receiver = (data: Buffer, from: Address) => void

export interface Transport {
  readonly local: Address
  /** Fire and forget, like UDP: a datagram may be lost; errors are counted, never thrown. */
  send (to: Address, data: Buffer): void
  close (): Promise<void>
}

export const addrKey = (a: Address): string => `${a.host}:${a.port}`

export interface MemoryNetworkOptions {
  /** Fraction of datagrams lost, 0..1. */
  loss?: number
  /** Delivery delay in ms (virtual or real, as the scheduler decides). */
  latency?: number
  rng?: () => number
  /** Runs fn after delay ms; the simulator passes its event queue. Default: setTimeout/queueMicrotask. */
  schedule?: (delay: number, fn: () => void) => void
}

/** An in-memory datagram network: endpoints by address, optional loss and latency. */
export class MemoryNetwork {
  private readonly endpoints = new Map<string, Receiver>()
  readonly opts: Required<MemoryNetworkOptions>
  delivered = 0
  lost = 0

  constructor (opts: MemoryNetworkOptions = {}) {
    this.opts = {
      loss: opts.loss ?? 0,
      latency: opts.latency ?? 0,
      rng: opts.rng ?? Math.random,
      schedule: opts.schedule ?? ((d, fn) => { if (d > 0) setTimeout(fn, d); else queueMicrotask(fn) })
    }
  }

  bind (local: Address, receive: Receiver): Transport {
    const key = addrKey(local)
    if (this.endpoints.has(key)) throw new Error(`address ${key} in use`)
    this.endpoints.set(key, receive)
    return {
      local,
      send: (to, data) => this.send(local, to, data),
      close: async () => { this.endpoints.delete(key) }
    }
  }

  private send (from: Address, to: Address, data: Buffer): void {
    if (this.opts.loss > 0 && this.opts.rng() < this.opts.loss) { this.lost++; return }
    const copy = Buffer.from(data)
    this.opts.schedule(this.opts.latency, () => {
      const r = this.endpoints.get(addrKey(to))
      if (r) { this.delivered++; r(copy, from) } else this.lost++
    })
  }
}
