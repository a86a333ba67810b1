// Every tunable of a node, with its default and meaning, in one place (as memberlist's Config).
// hpcd's flags and the keys of the config file (--config, e.g. /etc/hpcfs.conf) mirror these names.

export interface Config {
  /** Node id 1..65535. Default: from the map (the line holding --addr), else the last two octets of --addr (omdiscd rule). */
  id?: number
  /** IPv4 address to bind and advertise. Default 0.0.0.0 bind with the first non-loopback address advertised. */
  addr: string
  /** UDP gossip port (openMosix info daemon: 5428). */
  port: number
  /** Cluster map file in setpe grammar; when given only its nodes are members. */
  map?: string
  /** Seed peers `host[:port]` to join an open cluster (no map). */
  join: string[]
  /** Mount point of the tree. */
  mount: string
  /** Cluster key file; packets are authenticated with HMAC-SHA256 of its bytes' hash. Without it a built-in key is used (insecure, logged). */
  key?: string
  /** Seconds between gossip sends (gossimon: 0.5, openMosix: 1). */
  interval: number
  /** Entries per datagram, own included (gossimon default 20; at most 29 fit 1400 bytes). */
  window: number
  /** Seconds without fresh news after which a node reads down; 0 = automatic from the age model. */
  downAfter: number
  /** Send to any node (perhaps down) with probability 1/max(this, live nodes) (gossimon: 5). */
  sendToAnyCycle: number
  /** Speed override (10000 = Pentium III 1 GHz); 0 = calibrate at start. */
  speed: number
  /** Per-process statistics decay, as openMosix admin/decay-interval, slow-decay, fast-decay. */
  decayInterval: number
  slowDecay: number
  fastDecay: number
  /** Seconds a migration connection may stay silent (not even a ping) before the peer is taken for unreachable: a move stalled that long is abandoned and the process resumes where it was. */
  linkTimeout: number
  /** Seconds a guest may be out of touch with its home (connection broken, or its own node's daemon down) before it is killed; a home waits 2 × this + 5 s for a lost node to come back before it reports its process lost. Every node should use the same value. */
  guestLease: number
  /** Where a node keeps what its guests need to survive a restart of its daemon (<stateDir>/<node id>/guests/<pid>.json). */
  stateDir: string
  /** A process with at least this many MiB resident moves with pre-copy (docs/ppm.md "Pre-copy"): its memory is copied while it runs and it is frozen only for what it wrote during the last round; the whole move takes longer. 0 = never. */
  precopy: number
}

/**
 * A raw image (written or read by an engine helper straight on a migration connection, docs/
 * migrate.md) that makes no progress for this long fails: the move is abandoned as for a silent
 * peer (the default link timeout).
 */
export const IMAGE_STALL_MS = 10_000
/**
 * A migration connection closed (Conn.close) is destroyed this long after everything written on it
 * went to the kernel, if the peer has not ended it by then (ms); what is written is never cut off
 * by this timer: a peer slow to read gets it all (up to CONN_FLUSH_MS).
 */
export const CONN_LINGER_MS = 2000
/** ... and at the latest this long after the close, when what was written cannot go (a peer that stopped reading: ms). */
export const CONN_FLUSH_MS = 60_000

/**
 * Largest value one write to a tree file may carry: one page, as sysfs allows a store. A longer
 * write is EINVAL and changes nothing (FUSE would hand it over in pieces of 128 KiB; none is
 * applied alone).
 */
export const MAX_TREE_WRITE = 4096

/** Largest text gathered by a multi-write tree file (admin/config) before it is stored at close. */
export const MAX_TREE_GATHER = 1 << 20

export const DEFAULTS: Config = {
  addr: '0.0.0.0',
  port: 5428,
  join: [],
  mount: '/mnt/hpc',
  interval: 1,
  window: 16,
  downAfter: 0,
  sendToAnyCycle: 5,
  speed: 0,
  decayInterval: 1,
  slowDecay: 975,
  fastDecay: 926,
  linkTimeout: 10,
  guestLease: 30,
  stateDir: '/run/hpcfs',
  precopy: 0
}

/** Node speeds, in openMosix's units: `standard` is a Pentium III at 1 GHz (admin/speed, mosctl setspeed, the calibration, the cost model). */
export const SPEED = { standard: 10_000, min: 1, max: 1_000_000 } as const

/** Node ids, in the map, the tree, the tools and on the wire (admin/mospe also takes 0: out of the cluster). */
export const NODE_ID = { min: 1, max: 65535 } as const

/** Every node's transfer port is its gossip port minus this: 5428 - 768 = 4660, openMosix's two ports. */
export const MIG_PORT_OFFSET = 768

/** The transfer port of a node on the default gossip port. */
export const MIGRATION_PORT = DEFAULTS.port - MIG_PORT_OFFSET

/**
 * How long after a spare connection (src/migrate/dialer.ts) or a helper started ahead
 * (src/ppm/standby.ts) was taken the next one is started (ms): after a small move that took it has
 * ended (a big one hardly notices), long before the next move comes in a bench.
 */
export const SPARE_REPLACE_MS = 50

/** Connections a node keeps open unused for one peer host (spares it dialled ahead); more close the oldest. */
export const IDLE_CONNECTIONS_PER_PEER = 2

/** How long a home waits for a node whose connection broke to come back with its process: 2 × the guest lease + 5 s (after that the guest is dead wherever it was: see README "Failure semantics"). */
export function rejoinWaitMs (guestLease: number): number {
  return (2 * guestLease + 5) * 1000
}

/**
 * Automatic discovery of nodes on a LAN (`hpcd --discover`, src/discovery), as openMosix's omdiscd:
 * signed announcements to a multicast group, link-local by default (TTL 1).
 */
export const DISCOVERY = {
  /** Administratively scoped group (239.255/16, RFC 2365); 54.29 for the port. */
  group: '239.255.54.29',
  /** UDP port: the gossip port + 1 (5429 for 5428, as openMosix 2.6's omd PORT_DISCOVERY). */
  portOffset: 1,
  /** Seconds between announcements (±20 % jitter); the first goes out at start. */
  interval: 5,
  /** Multicast TTL: 1 keeps announcements on the local network. */
  ttl: 1
} as const

/**
 * Expected maximum age (in intervals) of a node's information in a cluster of n nodes with window
 * w, from the MOSIX gossip model (docs/gossip.md, section 2): M ≈ (n−1)(ln n + γ)/w, at least 1.
 */
export function expectedMaxAge (n: number, w: number): number {
  if (n <= 1) return 1
  const x = Math.min(w, n)
  return Math.max(1, (Math.log(n) + 0.5772) / (x * -Math.log(1 - 1 / (n - 1 || 1))))
}

/** downAfter in ms: the configured value, or 3 × the expected maximum age + 5 intervals (at least 5 s). */
export function downAfterMs (c: Config, clusterSize: number): number {
  if (c.downAfter > 0) return c.downAfter * 1000
  const intervals = 3 * expectedMaxAge(clusterSize, c.window) + 5
  return Math.max(5000, intervals * c.interval * 1000)
}

/** The daemon's web GUI and Prometheus endpoint (src/gui, src/metrics): both off unless asked for. */
export const HTTP_DEFAULTS = {
  /** Host of `hpcd --gui` unless --gui-addr says otherwise, and of a --gui-addr or --metrics given as a bare port: this host only. */
  host: '127.0.0.1',
  /** Port of `hpcd --gui` unless --gui-addr says otherwise. */
  guiPort: 5480,
  /** Load samples kept per node for the GUI's graph (one per interval: 10 minutes at 1 s). */
  historySamples: 600,
  /** Migration events kept for the GUI's log. */
  migrationEvents: 200
}

/**
 * How long a move that does not go ahead waits for the helper it started ahead to let go of the
 * process (ms; docs/migrate.md "Fixed costs"): it ends then all the same, with a log line (a helper
 * stuck on a process in uninterruptible sleep must not hold the move).
 */
export const AHEAD_CANCEL_MS = 5000
/** How often home looks for new children of its processes under discipline, to adopt them (ms; docs/family.md). */
export const FAMILY_SCAN_MS = 500
/** How often a guest waiting in a family call asks its home again to take it back (ms). */
export const FAMILY_RETRY_MS = 1000
/**
 * Failed trips home a guest's family call waits through before it fails as the call would (EAGAIN,
 * ECHILD, ...; docs/family.md): a temporary cause (unread input on its node, no room for the copy,
 * a dump that failed) gets that many tries, FAMILY_RETRY_MS apart, since a wrong answer stays wrong
 * (a shell that reads ECHILD from wait takes its child for ended). Also the tries a locked process
 * brought home for a family call (and a locked child it forked) gets to go to its node.
 */
export const FAMILY_DENY_AFTER = 5
/** How often a locked process brought home for a family call is checked for being done with it (ms). */
export const FAMILY_RETURN_MS = 50
/**
 * How often a relayed input of a process away is looked at (ms): on its node, whether the process
 * waits for input (then a `want` goes home); at home, whether a want can be served yet.
 */
export const INPUT_POLL_MS = 5
/**
 * ...while input is under way; a process that does not wait for input is looked at less and less
 * often, twice as long each time up to this (ms): a guest busy computing costs its daemon a read of
 * /proc/PID/syscall every 40 ms instead of every 5 (200 a second, a per cent or two of a CPU per
 * guest), and input typed after a long computation waits this long at most before it is asked for.
 */
export const INPUT_POLL_IDLE_MS = 40
/** How long a move waits for the input handed to a process to be read (ms); after that the move is refused (that input would be lost). */
export const INPUT_SETTLE_MS = 1000
/** How often a guest's relayed input pipes are checked for a close made by the process (ms; docs/migrate.md "Relayed descriptors"). */
export const INPUT_CLOSE_CHECK_MS = 100
/** How often at most home tells a guest's node again that a relayed output is broken (`broken`) while bytes still arrive for it (ms). */
export const BROKEN_RESEND_MS = 200

/**
 * Output of a process away (docs/migrate.md "Output acknowledgement"): the node it runs on keeps
 * what home has not acknowledged (home acknowledges what its reader there has taken), up to this
 * many bytes of each output fd; then it stops reading that fd's pipe (the process blocks in its
 * writes to that output, as at home behind a slow reader), never drops.
 */
export const OUTPUT_KEEP_BYTES = 1 << 20
/**
 * A guest's output stream that streams (src/migrate/ack.ts GuestOutput.pace: many reads in a row,
 * or more waiting each time it is read) is read at most once per this many ms (ms): after a read
 * its pipe fills for that long, so a process that writes a line per millisecond costs its node's
 * daemon (and home's) one read, one frame and one write 50 times a second instead of a thousand,
 * CPU that would come out of the guests' own share of the node (with one such guest its node's
 * daemon used 18.4% of a CPU reading every line at once, 6.8% now; 4.0% with a silent guest). Its
 * output reaches home that much later at most, below what a person at a terminal notices; a writer
 * of more than 3 MB/s fills a 64 KiB pipe meanwhile and waits in write (then read in pipefuls). A
 * process that writes now and then (a request, an answer) is read at once.
 */
export const OUTPUT_PACE_MS = 20
/** Home acknowledges relayed output this long after the first byte not yet acknowledged (ms)... */
export const ACK_MS = 200
/** ...or at once when this many bytes are not yet acknowledged. */
export const ACK_BYTES = 256 << 10
/** How long a guest that has ended is read for the output left in its pipes, at most (ms). */
export const OUTPUT_DRAIN_MS = 3000
/** Room a node wants in its state dir for a guest's record before it accepts a guest (bytes; src/migrate/space.ts). */
export const RECORD_SPACE = 64 << 10
