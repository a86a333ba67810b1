// Who may change what through the GUI, checked as the tree checks it: everyone may read; a node's
// settings (admin/: its speed) are for root and the daemon's own user; a process may be moved by
// root and by its owner (its real uid, as proc/<pid>/ files belong to it: who may kill a process
// may migrate it).
//
// A browser cannot tell the daemon its user, so a change carries a token, and the daemon hands
// each user their token through the file system, which knows who they are: one file per uid,
// `<dir>/<uid>`, readable by that user only (mode 0400, owned by them; the directory belongs to
// the daemon's user and only it writes there). The daemon writes the file of root and of its own
// user at start, and that of every user who owns a process under cluster discipline here (they
// are the only ones with something to change); a daemon not running as root can hand out only its
// own user's token. Tokens are random (256 bits), live as long as the daemon, and their files are
// removed when it stops.
import { randomBytes, createHash } from 'node:crypto'
import { chmodSync, chownSync, lstatSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import debug from '../util/log.js'
import { readUids } from '../util/procfs.js'

const log = debug('hpcfs:gui')

const myUid = (): number => process.getuid?.() ?? 0

/**
 * Default token directory of a daemon whose tree is at `mount`: under /run/hpcfs as root, else
 * under $XDG_RUNTIME_DIR (or the temp dir) in a directory of the user's own; named after the
 * mount point, which is unique per daemon on a host (`/mnt/hpc` gives `mnt-hpc.gui`).
 */
export function defaultTokenDir (mount: string): string {
  const name = resolve(mount).replace(/^\/+/, '').replace(/\//g, '-') || 'root'
  const base = myUid() === 0 ? '/run/hpcfs' : join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `hpcfs-${myUid()}`)
  return join(base, `${name}.gui`)
}

const hash = (token: string): string => createHash('sha256').update(token).digest('hex')

export class TokenStore {
  /** sha256(token) -> uid (the tokens themselves are kept only in their files) */
  private readonly byHash = new Map<string, number>()
  private readonly issued = new Map<number, string>()

  constructor (readonly dir: string) {}

  /** Makes the directory (a stale one is emptied) and writes the tokens of root and of this daemon's user. */
  init (): void {
    const parent = resolve(this.dir, '..')
    // a shared temp dir: the parent must be ours and not a link someone else planted
    mkdirSync(parent, { recursive: true, mode: myUid() === 0 ? 0o755 : 0o700 })
    const st = lstatSync(parent)
    if (!st.isDirectory() || st.uid !== myUid()) throw new Error(`${parent} is not a directory of uid ${myUid()}`)
    rmSync(this.dir, { recursive: true, force: true })
    mkdirSync(this.dir, { mode: 0o755 })
    chmodSync(this.dir, 0o755)
    this.issue(0)
    this.issue(myUid())
  }

  /** The token of `uid`, writing its file the first time; undefined when this daemon cannot (not root). */
  issue (uid: number): string | undefined {
    const have = this.issued.get(uid)
    if (have !== undefined) return have
    if (myUid() !== 0 && uid !== myUid()) return undefined
    const token = randomBytes(32).toString('hex')
    const file = join(this.dir, String(uid))
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, token + '\n', { mode: 0o400, flag: 'wx' })
    if (myUid() === 0) chownSync(tmp, uid, -1)
    renameSync(tmp, file)
    this.issued.set(uid, token)
    this.byHash.set(hash(token), uid)
    log('token file for uid %d: %s', uid, file)
    return token
  }

  /** The uid a token was issued to; undefined for an unknown or missing token. */
  uidOf (token: string | undefined): number | undefined {
    if (!token) return undefined
    return this.byHash.get(hash(token))
  }

  /** Removes the token files. */
  close (): void {
    rmSync(this.dir, { recursive: true, force: true })
    this.byHash.clear()
    this.issued.clear()
  }
}

/** admin/ belongs to the daemon's user: root and that user may change the node. */
export const mayChangeNode = (uid: number): boolean => uid === 0 || uid === myUid()

/** Root and the process's owner (real uid) may move it; false when it is gone. */
export function mayMove (uid: number, pid: number, ownerOf: (pid: number) => number | undefined = p => readUids(p)?.real): boolean {
  if (uid === 0) return true
  const owner = ownerOf(pid)
  return owner !== undefined && owner === uid
}
