// Two linked in-memory connection ends, for unit tests of the home and guest state machines
// without sockets. Each frame goes to the other end in order, asynchronously, through the same
// decoding as a TCP connection (a control message that is not valid is dropped and counted);
// closing either end closes both.
import { Link, type FrameType } from './link.js'

export class MemLink extends Link {
  other: MemLink | null = null
  private paused = false
  private readonly queue: Array<[FrameType, Buffer]> = []
  private pumping = false

  /** A connected pair: what one end sends the other receives. */
  static pair (a = 'a', b = 'b'): [MemLink, MemLink] {
    const x = new MemLink(a)
    const y = new MemLink(b)
    x.other = y
    y.other = x
    return [x, y]
  }

  frame (type: FrameType, payload: Buffer): Promise<void> {
    if (this.closed || this.other === null) return Promise.reject(new Error(`connection to ${this.peer} closed`))
    this.other.arrive(type, Buffer.from(payload))
    return Promise.resolve()
  }

  /** Sends raw bytes as a control frame (tests: what a faulty or hostile peer might send). */
  raw (payload: Buffer): void { this.other?.arrive('J', payload) }

  private arrive (type: FrameType, payload: Buffer): void {
    this.queue.push([type, payload])
    this.pump()
  }

  private pump (): void {
    if (this.pumping) return
    this.pumping = true
    setImmediate(() => {
      this.pumping = false
      while (!this.paused && !this.closed && this.queue.length > 0) {
        const [type, payload] = this.queue.shift() as [FrameType, Buffer]
        this.deliver(type, payload)
      }
    })
  }

  pause (): void { this.paused = true }
  resume (): void { if (this.paused) { this.paused = false; this.pump() } }

  close (): void {
    const o = this.other
    setImmediate(() => { this.finish(); o?.flushThenFinish() })
  }

  /** The other end closed: frames it sent before still arrive, then 'close'. */
  private flushThenFinish (): void {
    const go = (): void => {
      if (this.queue.length > 0 && !this.paused) { setImmediate(go); return }
      this.finish()
    }
    setImmediate(go)
  }
}
