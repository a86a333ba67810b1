// The part of fuse-native 2.2.6's API that hpcfs uses (the package ships no types).
declare module 'fuse-native' {
  type Cb<T = void> = (err: number, value?: T, ...rest: unknown[]) => void
  export interface Stat { mtime: Date, atime: Date, ctime: Date, size: number, mode: number, uid: number, gid: number, nlink?: number }
  export interface Ops {
    init?: (cb: (err: number) => void) => void
    getattr?: (path: string, cb: (err: number, stat?: Stat) => void) => void
    readdir?: (path: string, cb: (err: number, names?: string[]) => void) => void
    open?: (path: string, flags: number, cb: (err: number, fd?: number) => void) => void
    release?: (path: string, fd: number, cb: (err: number) => void) => void
    read?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytes: number) => void) => void
    write?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytes: number) => void) => void
    flush?: (path: string, fd: number, cb: (err: number) => void) => void
    truncate?: (path: string, size: number, cb: (err: number) => void) => void
    ftruncate?: (path: string, fd: number, size: number, cb: (err: number) => void) => void
    create?: (path: string, mode: number, cb: (err: number, fd?: number) => void) => void
    unlink?: (path: string, cb: (err: number) => void) => void
    mkdir?: (path: string, mode: number, cb: (err: number) => void) => void
    rmdir?: (path: string, cb: (err: number) => void) => void
    rename?: (src: string, dest: string, cb: (err: number) => void) => void
    chmod?: (path: string, mode: number, cb: (err: number) => void) => void
    chown?: (path: string, uid: number, gid: number, cb: (err: number) => void) => void
    utimens?: (path: string, atime: number, mtime: number, cb: (err: number) => void) => void
    statfs?: (path: string, cb: (err: number, st?: Record<string, number>) => void) => void
  }
  export interface Options {
    force?: boolean, mkdir?: boolean, autoUnmount?: boolean, fsname?: string, attrTimeout?: string,
    entryTimeout?: string, timeout?: number | false, debug?: boolean, allowOther?: boolean, defaultPermissions?: boolean
  }
  export default class Fuse {
    constructor (mnt: string, ops: Ops, opts?: Options)
    mount (cb: (err: Error | null) => void): void
    unmount (cb: (err: Error | null) => void): void
    static unmount (mnt: string, cb: (err: Error | null) => void): void
    static isConfigured (cb: (err: Error | null, configured: boolean) => void): void
    static ENOENT: number
  }
}
