// Replay protection per sender, as IPsec does it: a packet must carry the sender's current
// incarnation and a sequence number not seen before within a sliding window of the last 32.
// Reordered packets inside the window are accepted once; anything older or repeated is a replay.

const WINDOW = 32

interface Slot { incarnation: number, top: number, seen: number }

export class ReplayGuard {
  private readonly senders = new Map<number, Slot>()

  /** Records the packet and returns true if it is new; false for a replay (state unchanged). */
  accept (sender: number, incarnation: number, seq: number): boolean {
    const s = this.senders.get(sender)
    if (s === undefined || incarnation > s.incarnation) {
      this.senders.set(sender, { incarnation, top: seq, seen: 1 })
      return true
    }
    if (incarnation < s.incarnation) return false
    if (seq > s.top) {
      const shift = seq - s.top
      s.seen = shift >= WINDOW ? 1 : ((s.seen << shift) | 1) >>> 0
      s.top = seq
      return true
    }
    const back = s.top - seq
    if (back >= WINDOW) return false
    const bit = (1 << back) >>> 0
    if ((s.seen & bit) !== 0) return false
    s.seen = (s.seen | bit) >>> 0
    return true
  }

  forget (sender: number): void { this.senders.delete(sender) }
}
