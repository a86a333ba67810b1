// The control messages of the migration protocol: one interface per kind (`t`), one union of all,
// and the validator that turns a decoded JSON value into a typed message or rejects it. A message
// that does not validate is dropped and counted by the connection that read it (src/migrate/link.ts),
// never handed to the state machines. docs/migrate.md has the same table and the sequence pictures.
//
// Roles: H = the home node (the deputy's side), N = the node a guest runs on (or is offered to),
// M = the next node during N -> M. Phases: offer (H -> N: migrate/accept/refuse), image (the image
// frames and their end), running (the guest runs, H relays its stdio), move (gohome, sendto, expel),
// end (exit, kill, loss); family (a guest's family call: family, family-failed; docs/family.md).
import { parseHint, type DecayHint } from './hints.js'
import { NODE_ID } from '../config.js'

/** H -> N, first message on a new connection (offer): take process `pid` of node `home`. */
export interface MigrateMsg {
  t: 'migrate'
  home: number
  pid: number
  /** its command name (comm), for logs */
  name: string
  /** its image size (resident bytes before the first move): N checks its free memory */
  bytes: number
  /** 'pull': H hands out stdin only when the guest blocks waiting for it (want); 'none': no stdin */
  stdin?: 'pull' | 'none'
  /** seconds it had run at home (the balancer's age rule) */
  age?: number
  /** decay hints (hints.ts) */
  decay?: 'slow' | 'fast'
  kind?: '' | 'cpujob' | 'iojob'
  /** its own decay per-mille and interval (mosrun -d, -t), when set */
  perMille?: number
  interval?: number
  /** N -> M: the image comes from the node the process runs on, on a connection naming this ticket */
  ticket?: string
  /** H can send the image raw (docs/migrate.md "Raw images"); it sends nothing more until N answers */
  raw?: boolean
}

/** N -> M, first message on the connection carrying the image of an accepted N -> M move. */
export interface ImageMsg { t: 'image', ticket: string, raw?: boolean }

/** N -> H (offer): accepted; `hostinfo` is N's compatibility record (the dump checks it). */
export interface AcceptMsg { t: 'accept', hostinfo: string, raw?: boolean }

/**
 * N -> H (offer): refused (blocked, unknown home, not enough memory). The connection closes.
 * H -> N (rejoin): home has the process elsewhere; with `got` ([fd, bytes] pairs), N moved it on
 * to M while its connection broke: home wants the rest of the output N has of it first.
 */
export interface RefuseMsg { t: 'refuse', reason: string, got?: Array<[number, number]> }

/** Either side, instead of what was expected (an unexpected first message): `expect` rejects. */
export interface ErrorMsg { t: 'error', reason: string }

/**
 * Sender of an image -> its receiver: the image frames (I) are complete. From a guest's node going
 * home: the CPU ticks the process used there (`utime`, `stime`), counted at home.
 */
export interface ImageEndMsg { t: 'image-end', utime?: number, stime?: number, bytes?: number }

/** H -> N (image): the dump failed; N drops what it received. */
export interface AbortMsg { t: 'abort', reason: string }

/** N -> H (image): restored and running as `pid` on N; `bytes` received in `ms` (bandwidth). */
export interface RunningMsg { t: 'running', pid: number, bytes: number, ms: number }

/** N -> H (image): the restore failed; the process runs where it was. */
export interface FailedMsg { t: 'failed', reason: string }

/**
 * H -> N (running): a signal reached the deputy; deliver it to the guest. A signal queued with a
 * value (sigqueue, si_code below 0 but SI_TKILL) comes with its siginfo: code, sender pid and uid
 * (as home saw them), value (si_value, a 64-bit integer in decimal).
 */
export interface SignalMsg { t: 'signal', sig: number, code?: number, from?: number, uid?: number, value?: string }

/**
 * Is a signal of this si_code one whose siginfo another process (N's keeper) may queue for it?
 * The kernel allows the codes below 0 (SI_QUEUE -1, SI_TIMER -2, SI_MESGQ -3, ...) but SI_TKILL
 * (-6); kill's (SI_USER 0) and the kernel's own (above 0) it refuses.
 */
export function queueable (code: number): boolean { return Number.isSafeInteger(code) && code < 0 && code !== -6 && code >= -64 }

/** H -> N (end): the original died at home; kill the guest. */
export interface KillMsg { t: 'kill' }

/**
 * N -> H (running): the guest is blocked waiting for input on stdin (no `fd`: N frames) or on the
 * relayed descriptor `fd` above 2 (R frames); it may be handed up to `n` bytes. `got`: the bytes of
 * that fd N has written into the process's pipe since it runs there (input acknowledgement, ack.ts
 * InLog): what home handed over an older connection beyond it is handed again.
 */
export interface WantMsg { t: 'want', n: number, fd?: number, got?: number }

/** H -> N (running): stdin (or the relayed descriptor `fd`) reached its end. */
export interface StdinEndMsg { t: 'stdin-end', fd?: number }

/**
 * N -> H (running): the process closed its relayed descriptor `fd` (stdin, stdout, stderr, or one
 * above 2) on N (`close`), or shut that socket down for writing (`shutdown`), after writing what
 * came before it: home does the same to the original's descriptor, so that the other end at home
 * sees it (the reader the end of the pipe, the writer EPIPE, the peer the end of the stream).
 */
export interface ClosedMsg { t: 'closed', fd: number, how: 'close' | 'shutdown' }

/**
 * H -> N (running): the other end of the process's relayed output `fd` (stdout, stderr, or a pipe
 * or socket above 2) is gone at home (writing into the original's descriptor failed with EPIPE or
 * ECONNRESET): N lets go of its reader of that pipe (a socket: shuts its end down for reading), so
 * that the process's next write fails with EPIPE (SIGPIPE) as it would at home; what it wrote
 * before is dropped. Sent again while bytes still arrive for fd (after a move, a rejoin).
 */
export interface BrokenMsg { t: 'broken', fd: number }

/** H -> N (running): a decay hint changed at home. */
export interface HintMsg { t: 'hint', hint: DecayHint }

/** N -> H (running): N's balancer found a cheaper node for the guest; H decides. */
export interface MoveRequestMsg { t: 'move-request', node: number, why: string }

/** H -> N (running): H did not carry out a move-request (or it failed). */
export interface MoveFailedMsg { t: 'move-failed', reason: string }

/** N -> H (end): the guest ended (exit code, or the signal that killed it). */
export interface ExitMsg { t: 'exit', code: number | null, signal: number | null }

/** H -> N (move N -> home): stop the guest and send its image home. */
export interface GoHomeMsg { t: 'gohome' }

/** N -> H (move, expel): N sends the guest home by itself; H stops handing out stdin first. */
export interface LeavingMsg { t: 'leaving' }

/** H -> N (move, expel): no stdin will be handed out any more. */
export interface LeavingOkMsg { t: 'leaving-ok' }

/** N -> H (move): the guest could not leave (unread stdin, dump failed); it runs on N. */
export interface StayMsg { t: 'stay', reason: string }

/** N -> H (move to home): the image frames (I) follow, then image-end. */
export interface ImageStartMsg { t: 'image-start', raw?: boolean }

/** H -> N (move): the process runs elsewhere now (home, or M); N forgets its copy. */
export interface HomeOkMsg { t: 'home-ok' }

/** H -> N (move to home): home could not restore it; N runs it again (or loses it). */
export interface HomeFailedMsg { t: 'home-failed', reason: string }

/** H -> N (move N -> M): stop the guest and stream its image to node `node` with `ticket`. */
export interface SendToMsg { t: 'sendto', node: number, ticket: string, hostinfo: string }

/** N -> H (move N -> M): the image went to M (`bytes`), N keeps a copy until home-ok or resume. */
export interface SentMsg { t: 'sent', bytes: number, utime?: number, stime?: number }

/** H -> N (move N -> M): M could not run it; run it again from the copy. */
export interface ResumeMsg { t: 'resume' }

/** N -> H (move N -> M): it runs on N again, as `pid`. */
export interface ResumedMsg { t: 'resumed', pid: number }

/** H -> N (running): how is the guest doing (ps of a process away: proc/<pid>/stats, cmdline)? */
export interface StatQueryMsg { t: 'stat?' }

/** N -> H (running): the answer: CPU ticks there, state, memory (bytes) and command line. */
export interface StatMsg { t: 'stat', utime: number, stime: number, state: string, rss: number, vsize: number, cmdline: string }

/**
 * N -> H (running): the guest waits in a family call (fork, wait, kill of another process,
 * setpgid, setsid; docs/family.md) that must be made at home: bring it home. Sent again while it waits.
 */
export interface FamilyMsg { t: 'family', call: string }

/** H -> N (running): the guest cannot come home; the family call it waits in fails. */
export interface FamilyFailedMsg { t: 'family-failed', reason: string }

/** Either side, every quarter of the link timeout: it is alive (src/migrate/lease.ts). */
export interface PingMsg { t: 'ping' }

/** H -> N (image): `running` reached home, the move is committed: the held process may run. */
export interface RunMsg { t: 'run' }

/**
 * H -> N (move to home, after image-start with raw): home reads the image straight from the
 * connection from now on: N writes it raw (then its held frames, then image-end).
 */
export interface ImageReadyMsg { t: 'image-ready' }

/**
 * N -> H, first message on a new connection: node `node` still runs process `pid` of home `home`
 * (as `guest` there) after its connection broke (its daemon was restarted, or the link was cut):
 * take it up again. Home answers rejoin-ok, or refuse when it no longer has it there (N kills it).
 */
export interface RejoinMsg { t: 'rejoin', home: number, pid: number, guest: number, node: number }

/**
 * H -> N: home still has the process on N: the session goes on over this connection (a held
 * process runs). `got`: the bytes of each output fd home has of it ([fd, bytes] pairs, ack.ts): N
 * sends again what follows.
 */
export interface RejoinOkMsg { t: 'rejoin-ok', got?: Array<[number, number]> }

/**
 * H -> N (running): home has the first `bytes` of each output fd of the process's stream on N
 * ([fd, bytes] pairs; docs/migrate.md "Output acknowledgement"): N need not keep them any more.
 */
export interface AckMsg { t: 'ack', got: Array<[number, number]> }

/** Every control message. */
export type Message =
  | MigrateMsg | ImageMsg | AcceptMsg | RefuseMsg | ErrorMsg | ImageEndMsg | AbortMsg | RunningMsg | FailedMsg
  | SignalMsg | KillMsg | WantMsg | StdinEndMsg | HintMsg | MoveRequestMsg | MoveFailedMsg | ExitMsg
  | GoHomeMsg | LeavingMsg | LeavingOkMsg | StayMsg | ImageStartMsg | HomeOkMsg | HomeFailedMsg
  | SendToMsg | SentMsg | ResumeMsg | ResumedMsg | StatQueryMsg | StatMsg | FamilyMsg | FamilyFailedMsg
  | PingMsg | RunMsg | RejoinMsg | RejoinOkMsg | ImageReadyMsg | ClosedMsg | BrokenMsg | AckMsg

export type Kind = Message['t']
export type MsgOf<K extends Kind> = Extract<Message, { t: K }>

// ---- validation -------------------------------------------------------------------------------

type Check = (v: unknown) => boolean
/** For each field of a message kind (but t), the check of its value; `opt` for optional fields. */
type Schema<M> = { [F in Exclude<keyof M, 't'>]-?: undefined extends M[F] ? Opt : Check }
interface Opt { opt: Check }

const int: Check = v => Number.isSafeInteger(v)
const nat: Check = v => Number.isSafeInteger(v) && (v as number) >= 0
const node: Check = v => Number.isSafeInteger(v) && (v as number) >= NODE_ID.min && (v as number) <= NODE_ID.max
const pid: Check = v => Number.isSafeInteger(v) && (v as number) >= 1
const num: Check = v => typeof v === 'number' && Number.isFinite(v)
const str: Check = v => typeof v === 'string'
const bool: Check = v => typeof v === 'boolean'
const oneOf = (...xs: readonly unknown[]): Check => v => xs.includes(v)
const orNull = (c: Check): Check => v => v === null || c(v)
const opt = (c: Check): Opt => ({ opt: c })
/** [fd, bytes] pairs (output counts): at most 1024, fds 1 up to 2^20 */
const counts: Check = v => Array.isArray(v) && v.length <= 1024 && v.every(x => Array.isArray(x) && x.length === 2 && int(x[0]) && (x[0] as number) >= 1 && (x[0] as number) < 1 << 20 && nat(x[1]))

const SCHEMAS: { [K in Kind]: Schema<MsgOf<K>> } = {
  migrate: { home: node, pid, name: str, bytes: nat, stdin: opt(oneOf('pull', 'none')), age: opt(orNull(num)), decay: opt(oneOf('slow', 'fast')), kind: opt(oneOf('', 'cpujob', 'iojob')), perMille: opt(v => int(v) && (v as number) >= 0 && (v as number) <= 1000), interval: opt(v => int(v) && (v as number) >= 1 && (v as number) <= 3600), ticket: opt(str), raw: opt(bool) },
  image: { ticket: str, raw: opt(bool) },
  accept: { hostinfo: str, raw: opt(bool) },
  refuse: { reason: str, got: opt(counts) },
  error: { reason: str },
  'image-end': { utime: opt(nat), stime: opt(nat), bytes: opt(nat) },
  abort: { reason: str },
  running: { pid, bytes: nat, ms: num },
  failed: { reason: str },
  signal: { sig: v => int(v) && (v as number) >= 1 && (v as number) <= 64, code: opt(v => queueable(v as number)), from: opt(nat), uid: opt(v => nat(v) && (v as number) <= 0xffffffff), value: opt(v => typeof v === 'string' && /^-?\d{1,20}$/.test(v)) },
  kill: {},
  want: { n: v => int(v) && (v as number) >= 1, fd: opt(v => int(v) && (v as number) >= 3 && (v as number) < 1 << 20), got: opt(nat) },
  'stdin-end': { fd: opt(v => int(v) && (v as number) >= 3 && (v as number) < 1 << 20) },
  closed: { fd: v => int(v) && (v as number) >= 0 && (v as number) < 1 << 20, how: oneOf('close', 'shutdown') },
  broken: { fd: v => int(v) && (v as number) >= 1 && (v as number) < 1 << 20 },
  hint: { hint: v => typeof v === 'string' && parseHint(v) === v },
  'move-request': { node, why: str },
  'move-failed': { reason: str },
  exit: { code: orNull(int), signal: orNull(int) },
  gohome: {},
  leaving: {},
  'leaving-ok': {},
  stay: { reason: str },
  'image-start': { raw: opt(bool) },
  'home-ok': {},
  'home-failed': { reason: str },
  sendto: { node, ticket: str, hostinfo: str },
  sent: { bytes: nat, utime: opt(nat), stime: opt(nat) },
  resume: {},
  resumed: { pid },
  'stat?': {},
  stat: { utime: nat, stime: nat, state: v => typeof v === 'string' && /^[A-Za-z?]$/.test(v), rss: nat, vsize: nat, cmdline: v => typeof v === 'string' && v.length <= 65536 },
  family: { call: v => typeof v === 'string' && /^[a-z_0-9]{1,32}$/.test(v) },
  'family-failed': { reason: str },
  ping: {},
  run: {},
  rejoin: { home: node, pid, guest: pid, node },
  'rejoin-ok': { got: opt(counts) },
  ack: { got: counts },
  'image-ready': {}
}

/** Every message kind. */
export const KINDS = Object.keys(SCHEMAS) as Kind[]

/** Why a value is not a message (thrown by toMessage). */
export class ProtocolError extends Error {}

/**
 * The typed message a decoded JSON value is, or a ProtocolError: an object whose `t` is a known
 * kind, with every field of that kind of the right type, and no other field.
 */
export function toMessage (v: unknown): Message {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolError('not an object')
  const o = v as Record<string, unknown>
  const t = o.t
  if (typeof t !== 'string' || !Object.prototype.hasOwnProperty.call(SCHEMAS, t)) throw new ProtocolError(`unknown kind ${JSON.stringify(t)}`)
  const schema = SCHEMAS[t as Kind] as Record<string, Check | Opt>
  for (const [f, c] of Object.entries(schema)) {
    const has = Object.prototype.hasOwnProperty.call(o, f)
    if (typeof c === 'function') {
      if (!has || !c(o[f])) throw new ProtocolError(`${t}: bad or missing ${f}`)
    } else if (has && o[f] !== undefined && !c.opt(o[f])) throw new ProtocolError(`${t}: bad ${f}`)
  }
  for (const f of Object.keys(o)) if (f !== 't' && !Object.prototype.hasOwnProperty.call(schema, f)) throw new ProtocolError(`${t}: unexpected field ${f}`)
  return o as unknown as Message
}

/** A control frame's payload (JSON) to a message; throws ProtocolError. */
export function decode (payload: Buffer): Message {
  let v: unknown
  try { v = JSON.parse(payload.toString('utf8')) } catch { throw new ProtocolError('not JSON') }
  return toMessage(v)
}

/** A message to a control frame's payload. */
export function encode (m: Message): Buffer { return Buffer.from(JSON.stringify(m)) }
