// The FUSE layer: a thin translation of file operations onto the tree (src/fs/tree.ts), which
// works on the cluster core. Files report size 0 and the mount uses direct_io, so every read
// reaches the daemon and returns the current value (procfs semantics; why: docs/bench-fs.md,
// reference measurement).
// Handlers never block and never touch the mount themselves.
import Fuse, { type Ops, type Stat } from 'fuse-native'
import { constants } from 'node:os'
import debug from '../util/log.js'
import { MAX_TREE_GATHER, MAX_TREE_WRITE } from '../config.js'
import { ErrnoError } from '../util/errno.js'
import { resolve, type DirNode, type FileNode } from './tree.js'

const log = debug('hpcfs:fuse')
const E = constants.errno
const err = (code: keyof typeof E): number => -E[code]

const O_ACCMODE = 3
const O_WRONLY = 1
const O_RDWR = 2

/** An open file: what it showed when opened; for a gathering file, the bytes written so far. */
interface Handle { file: FileNode, content: Buffer | null, pending: Buffer[] | null, pendingBytes: number, failed: boolean }

export interface MountOptions {
  /** Extra libfuse options (debug). */
  debug?: boolean
}

export class TreeMount {
  private readonly handles = new Map<number, Handle>()
  private nextFh = 1
  private fuse: Fuse | null = null
  private readonly started = new Date()
  readonly uid = process.getuid?.() ?? 0
  readonly gid = process.getgid?.() ?? 0

  constructor (readonly root: DirNode, readonly mountpoint: string) {}

  async mount (opts: MountOptions = {}): Promise<void> {
    // fuse-native turns on libfuse's debug dump whenever DEBUG contains '*' (e.g. DEBUG=hpcfs:*);
    // hide the asterisk while it reads its options. Our own debug namespaces were set at load time.
    const savedDebug = process.env.DEBUG
    if (savedDebug && !opts.debug) process.env.DEBUG = savedDebug.replace(/\*/g, 'all')
    const fuse = new Fuse(this.mountpoint, this.ops(), {
      force: true, // clears a stale "Transport endpoint is not connected" mount left by a crash
      mkdir: true,
      autoUnmount: true, // the kernel side goes away even after kill -9
      fsname: 'hpc,direct_io',
      attrTimeout: '1',
      entryTimeout: '1',
      timeout: 5000,
      // every user may read the tree; the kernel checks writes against each file's mode and owner
      // (admin/ is root's; proc/<pid>/ belongs to the process's user: who may kill may migrate)
      allowOther: true,
      defaultPermissions: true,
      debug: opts.debug
    })
    try {
      await new Promise<void>((resolve, reject) => fuse.mount(e => e ? reject(e) : resolve()))
    } finally {
      if (savedDebug !== undefined) process.env.DEBUG = savedDebug
    }
    this.fuse = fuse
    log('mounted on %s', this.mountpoint)
  }

  async unmount (): Promise<void> {
    const fuse = this.fuse
    if (!fuse) return
    this.fuse = null
    await new Promise<void>(resolve => fuse.unmount(e => {
      if (e) log('unmount %s: %s', this.mountpoint, e.message)
      resolve()
    }))
    log('unmounted %s', this.mountpoint)
  }

  private stat (mode: number, uid = this.uid): Stat {
    const t = this.started
    return { mtime: t, atime: t, ctime: t, size: 0, mode, uid, gid: uid === this.uid ? this.gid : uid, nlink: mode & 0o040000 ? 2 : 1 }
  }

  /** Stores gathered writes (on close); the error reaches close(2) through FUSE flush. */
  private commit (fh: number): number {
    const h = this.handles.get(fh)
    if (!h || h.pending === null || !h.file.store) return 0
    const text = Buffer.concat(h.pending).toString('utf8')
    h.pending = null
    h.pendingBytes = 0
    if (h.failed) return err('EINVAL')
    try { h.file.store(text) } catch (e) { log('store: %s', (e as Error).message); return toErrno(e) }
    return 0
  }

  /** The operations table handed to fuse-native. Exposed for unit tests of the translation. */
  ops (): Ops {
    const root = this.root
    const statOf = (path: string): Stat | number => {
      const n = resolve(root, path)
      if (!n) return err('ENOENT')
      const uid = n.owner?.()
      return n.kind === 'dir' ? this.stat(0o040555, uid) : this.stat(0o100000 | n.mode, uid)
    }
    return {
      getattr: (path, cb) => {
        const s = statOf(path)
        if (typeof s === 'number') cb(s); else cb(0, s)
      },
      readdir: (path, cb) => {
        const n = resolve(root, path)
        if (!n) return cb(err('ENOENT'))
        if (n.kind !== 'dir') return cb(err('ENOTDIR'))
        cb(0, ['.', '..', ...n.list()])
      },
      open: (path, flags, cb) => {
        const n = resolve(root, path)
        if (!n) return cb(err('ENOENT'))
        if (n.kind !== 'file') return cb(err('EISDIR'))
        const acc = flags & O_ACCMODE
        const wants = { read: acc !== O_WRONLY, write: acc === O_WRONLY || acc === O_RDWR }
        if ((wants.write && !n.store) || (wants.read && !n.show)) return cb(err('EACCES'))
        const opened = (content: Buffer | null): void => {
          const fh = this.nextFh++
          this.handles.set(fh, { file: n, content, pending: null, pendingBytes: 0, failed: false })
          cb(0, fh)
        }
        if (!wants.read) return opened(null)
        let shown: string | Promise<string>
        try { shown = (n.show as () => string | Promise<string>)() } catch (e) { return cb(toErrno(e)) }
        if (typeof shown === 'string') return opened(Buffer.from(shown))
        shown.then(s => opened(Buffer.from(s)), e => cb(toErrno(e)))
      },
      read: (path, fh, buf, len, pos, cb) => {
        const h = this.handles.get(fh)
        if (!h || !h.content) return cb(err('EBADF'))
        if (pos >= h.content.length) return cb(0)
        cb(h.content.copy(buf, 0, pos, Math.min(h.content.length, pos + len)))
      },
      write: (path, fh, buf, len, pos, cb) => {
        const h = this.handles.get(fh)
        if (!h || !h.file.store) return cb(err('EBADF'))
        try {
          if (h.file.gather) {
            // several writes at increasing offsets, stored whole at close (flush): all or nothing
            if (h.failed || pos !== h.pendingBytes || h.pendingBytes + len > MAX_TREE_GATHER) { h.failed = true; return cb(err('EINVAL')) }
            h.pending ??= []
            h.pending.push(Buffer.from(buf.subarray(0, len)))
            h.pendingBytes += len
            const text = Buffer.concat(h.pending).toString('utf8')
            h.file.gather.check(text.slice(0, text.lastIndexOf('\n') + 1))
          } else {
            // openMosix rule: one write at offset 0 carries the whole value. A longer one reaches
            // us in pieces (FUSE splits writes at 128 KiB), so it is refused whole, before any
            // piece is applied: all or nothing.
            if (pos !== 0 || len > MAX_TREE_WRITE) return cb(err('EINVAL'))
            h.file.store(buf.toString('utf8', 0, len))
          }
        } catch (e) {
          h.failed = true
          log('write %s: %s', path, (e as Error).message)
          return cb(toErrno(e))
        }
        cb(len)
      },
      flush: (path, fh, cb) => cb(this.commit(fh)),
      release: (path, fh, cb) => { this.commit(fh); this.handles.delete(fh); cb(0) },
      // `echo N > file` truncates first (libfuse2 has no atomic_o_trunc): accept it on writable files.
      truncate: (path, size, cb) => cb(truncOk(resolve(root, path))),
      ftruncate: (path, fh, size, cb) => cb(truncOk(this.handles.get(fh)?.file)),
      create: (path, mode, cb) => cb(err('EACCES')),
      unlink: (path, cb) => cb(err('EACCES')),
      mkdir: (path, mode, cb) => cb(err('EACCES')),
      rmdir: (path, cb) => cb(err('EACCES')),
      rename: (src, dest, cb) => cb(err('EACCES')),
      chmod: (path, mode, cb) => cb(err('EPERM')),
      chown: (path, uid, gid, cb) => cb(err('EPERM')),
      utimens: (path, atime, mtime, cb) => cb(0)
    }
  }
}

function truncOk (n: ReturnType<typeof resolve>): number {
  if (!n) return err('ENOENT')
  if (n.kind !== 'file') return err('EISDIR')
  return n.store ? 0 : err('EACCES')
}

function toErrno (e: unknown): number {
  if (e instanceof ErrnoError) return -e.errno
  log('handler error: %s', (e as Error)?.stack ?? e)
  return err('EIO')
}
