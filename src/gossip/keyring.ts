// Packet authentication with the cluster key: HMAC-SHA256 truncated to 16 bytes. The key is the
// SHA-256 of the key file's bytes, so any file (random bytes, a passphrase) serves.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'

export const MAC_LEN = 16

export class Keyring {
  private readonly key: Buffer
  /** True when no key file was given and the built-in development key is in use. */
  readonly insecure: boolean

  constructor (secret: Buffer | null) {
    this.insecure = secret === null
    this.key = createHash('sha256').update(secret ?? 'hpcfs insecure default key').digest()
  }

  static fromFile (path: string | undefined): Keyring {
    if (path === undefined || path === '') return new Keyring(null)
    const bytes = readFileSync(path)
    if (bytes.length < 16) throw new Error(`key file ${path} holds ${bytes.length} bytes; at least 16 are needed`)
    return new Keyring(bytes)
  }

  mac (data: Uint8Array): Buffer {
    return createHmac('sha256', this.key).update(data).digest().subarray(0, MAC_LEN)
  }

  verify (data: Uint8Array, mac: Uint8Array): boolean {
    return mac.length === MAC_LEN && timingSafeEqual(this.mac(data), mac)
  }
}
