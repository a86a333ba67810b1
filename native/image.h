/* hpc-ppm image format: the records of the image stream (see docs/ppm.md, "Images").
 *
 * An image is one stream of records, written and read strictly in order:
 *   struct rechdr { type, REC_MAGIC, len }, payload[len], u32 CRC32C(header + payload)
 * A PAGES record whose bytes the process sent into a TCP socket itself (native/gsend.c) has
 * REC_MAGIC_NC instead, and its u32 is 0: no CRC (END still checks the counts).
 * Records, in order: HEADER, CORE, then per thread a THREAD record followed by its XSTATE record,
 * SECCOMP (oldest filter first), VMA, FD, EPOLL, INOTIFY, TIMER (the metadata, all read before
 * any process is touched), then PAGES, PREVALID and FDDATA records in any order, END.
 * A pre-copy dump (native/precopy.c) puts its rounds before the HEADER: PRECOPY, then PREPAGES
 * records (taken while the process ran, later ones override earlier ones at the same address),
 * which a restore stages; PREVALID records of the final part say which staged pages are the
 * process's memory (the rest is dropped).
 * Any change to a record's layout or meaning bumps IMG_VERSION: a restore refuses other versions.
 */
#ifndef HPC_PPM_IMAGE_H
#define HPC_PPM_IMAGE_H

#include <stdint.h>
#include <stddef.h>
#include <limits.h>
#include <sys/user.h>

#define IMG_MAGIC "HPCPPM\r\n"
#define IMG_VERSION 7
#define REC_MAGIC 0x52504d50u /* "PMPR" */
#define REC_MAGIC_NC 0x4e504d50u /* "PMPN": a PAGES record without a CRC */
#define MAX_REC (64UL << 20)	/* no record is longer */
#define XSTATE_MAX 16384	/* XSAVE buffer, larger than any CPU's today */

/* record types; numbers are part of the format (never renumber, only append) */
enum {
	R_HEADER = 1,
	R_CORE,		/* process-wide state */
	R_XSTATE,	/* XSAVE buffer of the thread whose THREAD record precedes it */
	R_VMA,
	R_FD,
	R_SECCOMP,
	R_PAGES,
	R_END,
	R_THREAD,	/* per-thread state */
	R_EPOLL,	/* one registration of an epoll descriptor's interest list */
	R_INOTIFY,	/* one watch of an inotify descriptor */
	R_TIMER,	/* one POSIX timer (timer_create) */
	R_FDDATA,	/* data held by a descriptor: buffered bytes of a pipe or socket, memfd contents */
	R_PRECOPY,	/* first record of a pre-copy stream: magic, version, pid */
	R_PREPAGES,	/* pages copied in a pre-copy round while the process ran: as R_PAGES, staged */
	R_PREVALID,	/* u64 address, u64 length: the staged pages of this range are the process's */
	R_SIGINFO,	/* one signal not taken yet, with its siginfo (struct img_siginfo) */
	R_LAST = R_SIGINFO
};
/* kinds of memory region */
enum { K_ANON = 1, K_STACK, K_FILE_PRIV, K_FILE_SHARED, K_SHMEM, K_FULL,
       K_MEMFD,	/* MAP_SHARED of a memfd the process holds (img_vma.fd): mapped from it, no page data */
       K_LAST = K_MEMFD };
/* kinds of descriptor */
enum {
	F_FILE = 1, F_DIR, F_CHR, F_FIFO,	/* reopened by path */
	F_INHERIT,	/* fds 0-2: the restorer's (or the hollow original's own) */
	F_PIPE,		/* an unnamed pipe whose two ends the process holds */
	F_UNIX,		/* an unnamed AF_UNIX socket whose peer the process holds (socketpair) */
	F_EVENTFD, F_TIMERFD, F_SIGNALFD, F_EPOLL,
	F_MEMFD,	/* memfd_create: contents, size, seals, mode */
	F_INOTIFY,	/* its watches are INOTIFY records */
	F_RELAY,	/* a pipe or connected stream socket whose other end stays behind: relayed through
			 * home (relay.c); u.sock.type: RT_PIPE or RT_SOCK */
	F_LAST = F_RELAY
};

struct rechdr { uint32_t type, magic; uint64_t len; };

/* what the target host must match: CPU features, XSTATE, vDSO, kernel */
struct compat {
	uint64_t xcr0;
	uint32_t xsave_len;
	uint32_t cpuid[5];	/* 1.ecx 1.edx 7.ebx 7.ecx 7.edx */
	uint32_t vvar_len, vclock_len, vdso_len, vdso_crc;
	char release[65];
	char boot_id[40];
	char pad[7];
};

/* R_HEADER */
struct img_header {
	char magic[8];
	uint32_t version, hdr_size;
	struct compat c;
	int64_t mono_ns, boot_ns;	/* process' view of its clocks at dump time */
	int64_t mono_off_ns, boot_off_ns; /* its time namespace offsets at dump time */
	int32_t pid;
	uint32_t nthreads;	/* THREAD records that follow CORE */
};

struct ksigaction { uint64_t handler, flags, restorer, mask; };

/* R_CORE: state shared by all threads of the process */
struct img_core {
	struct ksigaction act[65];
	uint64_t mm[11];	/* start_code end_code start_data end_data start_brk brk start_stack arg_start arg_end env_start env_end */
	uint64_t vvar, vclock, vdso;	/* addresses of the special mappings (0 = absent) */
	uint32_t umask, personality;
	uint32_t auxv_len, nsig;	/* nsig: SIGINFO records after the THREAD records */
	uint64_t auxv[64];
	uint32_t uid[4], gid[4];
	uint32_t ngroups, nnp;
	uint32_t groups[32];
	uint32_t nfilters, pad;
	int64_t itimer[3][4];	/* ITIMER_REAL/VIRTUAL/PROF: interval s, us, value s, us */
	uint64_t exe_size;
	int64_t exe_mtime_s, exe_mtime_ns;
	char cwd[PATH_MAX];
	char exe[PATH_MAX];
	uint32_t nrlim, pad2;	/* resource limits: RLIMIT_CPU .. (nrlim of them), soft and hard */
	uint64_t rlim[16][2];
};

/* R_THREAD: what each thread has of its own. Registers include fs_base/gs_base (TLS). The main
 * thread's record comes first; the others follow in /proc/PID/task order (native/threads.c). */
struct img_thread {
	int32_t tid;
	uint32_t flags;
	struct user_regs_struct regs;
	uint64_t sigmask;
	uint64_t rseq_ptr;
	uint32_t rseq_len, rseq_sig;
	uint64_t ss_sp, ss_size;	/* sigaltstack */
	int32_t ss_flags, pad;
	char comm[16];
	uint64_t robust_ptr, robust_len;	/* set_robust_list (get_robust_list) */
	uint64_t clear_tid;	/* set_tid_address / CLONE_CHILD_CLEARTID (PR_GET_TID_ADDRESS) */
	int32_t policy, nice;	/* SCHED_OTHER/BATCH/IDLE (with SCHED_RESET_ON_FORK), nice value */
};

/* R_SIGINFO: a signal the process has not taken yet (pending, blocked or not, or taken out of
 * the kernel while the dump stopped it), with its siginfo as the kernel gave it, one record per
 * queued instance, in the order they are to be queued again (native/sigq.c) */
struct img_siginfo {
	int32_t thread;		/* for the thread of that THREAD record (0 = the main thread) alone; -1: the process's */
	uint32_t pad;
	uint8_t info[128];	/* siginfo_t */
};

/* R_VMA */
struct img_vma {
	uint64_t start, end, pgoff;
	uint32_t prot, kind;
	uint64_t fsize;
	int64_t mtime_s, mtime_ns;
	uint32_t pathlen;
	int32_t fd;	/* K_MEMFD: the descriptor of the memfd it maps */
	char path[PATH_MAX];
};
#define VMA_FIXED offsetof(struct img_vma, path)

/* R_FD: one per descriptor, in ascending fd order */
struct img_fd {
	int32_t fd;
	uint32_t kind, flags, pathlen;	/* flags: file status flags as fdinfo shows them, O_CLOEXEC included */
	uint64_t pos, size;
	int32_t dup_of;	/* -1, or the lowest fd sharing this open file description: restored by dup3 */
	int32_t peer;	/* F_PIPE: the other end created with this one; F_UNIX: the peer socket */
	int32_t reopen_of;	/* -1, or an fd of the same pipe or memfd in another open file description:
			 * restored by opening /proc/self/fd/<that fd> */
	uint32_t pad;
	uint64_t obj;	/* inode of the pipe, socket or memfd */
	union {
		struct { uint32_t size; } pipe;	/* capacity (F_GETPIPE_SZ) */
		struct { int32_t type, shutdown, sndbuf, rcvbuf, passcred, peek_off; uint64_t peer_ino; } sock;
		struct { uint64_t count; uint32_t semaphore; } efd;
		struct { int32_t clockid, settime_flags; uint64_t ticks; int64_t value_ns, interval_ns; } tfd;
		struct { uint64_t mask; } sfd;
		struct { uint32_t seals, mode, uid, gid; } memfd;	/* path: its name, "memfd:NAME" */
		uint64_t raw[6];
	} u;
	char path[PATH_MAX];
};
#define FD_FIXED offsetof(struct img_fd, path)

/* R_EPOLL: epfd watches the file at tfd (registered under that number) with events and data */
struct img_epoll { int32_t epfd, tfd; uint32_t events, pad; uint64_t data; };

/* R_INOTIFY: watch wd of inotify descriptor fd on path, with mask */
struct img_inotify {
	int32_t fd, wd;
	uint32_t mask, pathlen;
	char path[PATH_MAX];
};
#define INOTIFY_FIXED offsetof(struct img_inotify, path)

/* R_TIMER: POSIX timer id (timer_create). notify is the sigevent's (SIGEV_SIGNAL, SIGEV_NONE,
 * SIGEV_THREAD_ID: to the thread with index `thread`); value is the remaining time, frozen while
 * the process moves; both 0 = disarmed. */
struct img_timer {
	int32_t id, clockid, signo, notify;
	uint64_t sival;
	int64_t value_ns, interval_ns;
	int32_t thread, pad;
};

/* R_PAGES: u64 address, u64 length, then the page data (at most CHUNK bytes) */

/* R_FDDATA: data of descriptor fd: for F_PIPE and F_UNIX, one packet/message (or a run of a
 * stream) of its receive queue, in queue order; for F_MEMFD, contents at offset off */
struct img_fddata { int32_t fd; uint32_t pad; uint64_t off; };

/* R_PRECOPY */
struct img_precopy { char magic[8]; uint32_t version; int32_t pid; };

/* R_END: counts of everything before it */
struct img_end { uint32_t nrec, pad; uint64_t bytes, pages; };

#endif
