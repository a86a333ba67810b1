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

/** The subsystems a node may run without (a daemon always runs them; a node embedded in a test may not). */
export type Subsystem = 'process migration' | 'the scheduler'

/**
 * The one answer of a subsystem this node does not run, wherever it is asked for (a tree file, the
 * GUI): a change fails with ENOSYS "<subsystem> is not running on this node"; a file of it reads
 * empty (so that `cat` and `grep -r` still work).
 */
export const notRunning = (what: Subsystem): ErrnoError => new ErrnoError('ENOSYS', `${what} is not running on this node`)
