// The tree as procfs/sysfs declare it: each file is one entry with a `show` and an optional
// `store`, in one table per directory; errors are errno values (ErrnoError). Directories are
// either static tables or dynamic (a list of names and a lookup, like nodes/<id>).
import { einval } from '../util/errno.js'

export interface FileNode {
  kind: 'file'
  /** Permission bits: 0444 read-only, 0644 read-write (write-only triggers too: they read as empty). */
  mode: number
  /** Current contents, ending in a newline (a promise for the few that ask another process). Absent: the file cannot be read (EACCES). */
  show?: () => string | Promise<string>
  /** Applies a write (the text as written, newline included); throws ErrnoError (EINVAL) and changes nothing on bad input. */
  store?: (text: string) => void
  /**
   * Multi-line files (a map) may arrive in several write() calls: gather them and store the whole
   * text when the file is closed; `check` vets the complete lines of each write so that a bad
   * line already fails the write that carries it.
   */
  gather?: { check: (completeLines: string) => void }
  /** Owner uid (default: the daemon's). The mount uses default_permissions: the kernel checks modes. */
  owner?: () => number
}

export interface DirNode {
  kind: 'dir'
  owner?: () => number
  list: () => string[]
  lookup: (name: string) => TreeNode | undefined
}

export type TreeNode = FileNode | DirNode

export type Table = Record<string, TreeNode>

export function dir (table: Table, owner?: () => number): DirNode {
  const names = Object.keys(table)
  return { kind: 'dir', owner, list: () => names, lookup: name => Object.hasOwn(table, name) ? table[name] : undefined }
}

export const ro = (show: () => string | number): FileNode => ({ kind: 'file', mode: 0o444, show: () => `${show()}\n` })

export const rw = (show: () => string | number, store: (text: string) => void): FileNode =>
  ({ kind: 'file', mode: 0o644, show: () => `${show()}\n`, store })

/**
 * A write-only file (a trigger: goto, admin/migrate, decay/*). It reads as empty, with mode 0644,
 * so that recursive readers (`grep -r . admin/`, `cat admin/*`, a backup) walk the tree without a
 * permission error; an empty read cannot be mistaken for a value.
 */
export const wo = (store: (text: string) => void): FileNode => ({ kind: 'file', mode: 0o644, show: () => '', store })

/** Parses what `echo N` writes: one decimal integer, optional surrounding white space. */
export function parseInt10 (text: string, min: number, max: number, what: string): number {
  const s = text.trim()
  if (!/^-?\d+$/.test(s)) throw einval(`${what}: expected an integer, got "${s.slice(0, 40)}"`)
  const v = Number(s)
  if (v < min || v > max) throw einval(`${what}: ${v} is outside ${min}..${max}`)
  return v
}

/** A 0/1 switch file. */
export const flag = (get: () => boolean, set: (v: boolean) => void, what: string): FileNode =>
  rw(() => get() ? 1 : 0, text => set(parseInt10(text, 0, 1, what) === 1))

/** Walks a path ("/a/b") from the root; undefined when it does not exist. */
export function resolve (root: DirNode, path: string): TreeNode | undefined {
  let node: TreeNode = root
  if (path === '/') return node
  let start = 1
  while (start <= path.length) {
    let end = path.indexOf('/', start)
    if (end < 0) end = path.length
    if (node.kind !== 'dir') return undefined
    const next: TreeNode | undefined = node.lookup(path.slice(start, end))
    if (!next) return undefined
    node = next
    start = end + 1
  }
  return node
}

