// The UDP transport of the daemon: one socket, bound to the node's address and gossip port.
// Every datagram goes to the receiver, whatever its size: the codec refuses and the gossiper counts
// what is too long (dropped-malformed), as anything else malformed.
import { createSocket, type Socket } from 'node:dgram'
import debug from '../util/log.js'
import type { Address, Receiver, Transport } from './transport.js'

const log = debug('hpcfs:udp')

export class UdpTransport implements Transport {
  sendErrors = 0
  private constructor (private readonly sock: Socket, readonly local: Address) {}

  static async open (local: Address, receive: Receiver): Promise<UdpTransport> {
    const sock = createSocket({ type: 'udp4', reuseAddr: false })
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(local.port, local.host, () => { sock.off('error', reject); resolve() })
    })
    const t = new UdpTransport(sock, local)
    sock.on('message', (msg, rinfo) => receive(msg, { host: rinfo.address, port: rinfo.port }))
    sock.on('error', err => { t.sendErrors++; log('socket error %s', err.message) })
    return t
  }

  send (to: Address, data: Buffer): void {
    const failed = (err: Error): void => { this.sendErrors++; log('send to %s:%d: %s', to.host, to.port, err.message) }
    // (dgram throws at once on an address it cannot send to, a port out of range say: counted, as a failed send)
    try { this.sock.send(data, to.port, to.host, err => { if (err) failed(err) }) } catch (e) { failed(e as Error) }
  }

  async close (): Promise<void> {
    await new Promise<void>(resolve => this.sock.close(() => resolve()))
  }
}
