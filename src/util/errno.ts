// Errors that carry a Linux errno, as procfs handlers return them. The FUSE layer turns them into
// negative errno replies; the tools print their message.
import { constants } from 'node:os'

export type ErrnoName = keyof typeof constants.errno

export class ErrnoError extends Error {
  readonly code: ErrnoName
  readonly errno: number
  constructor (code: ErrnoName, message?: string) {
    super(message ?? code)
    this.code = code
    this.errno = constants.errno[code]
  }
}

export const einval = (why: string): ErrnoError => new ErrnoError('EINVAL', why)
