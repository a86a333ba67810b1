/* hpc-ppm-helper internals shared by its modules:
 *   util.c     control lines, errors, small /proc file readers, clocks
 *   image.c    CRC32C, the record stream (write, read, check), the parsed image
 *   compat.c   host compatibility record (CPU, XSTATE, vDSO, kernel)
 *   proc.c     /proc parsing: maps, stat, status, process attributes
 *   inject.c   the tracee: seizing, syscall injection (the "parasite"), its memory
 *   batch.c    injected calls in batches, run by a few instructions put into the process
 *   check.c    can't-move analysis
 *   files.c    descriptors: the table of a process's fds, what each one is, can it move, how
 *              it is saved and recreated (by kind, in the modules below)
 *   pipes.c    pipes and socketpairs whose both ends the process holds, with buffered data
 *   anonfds.c  eventfd, timerfd, signalfd, epoll, inotify
 *   memfd.c    memfd contents, size, seals
 *   timers.c   POSIX timers (timer_create)
 *   sigq.c     the signals a process has not taken yet, with their siginfo
 *   threads.c  the other threads of a process: freeze, dump, end (hollow), recreate (threads.h)
 *   dump.c     dump: per-thread state, process state, memory, the image
 *   precopy.c  pre-copy: dirty tracking with userfaultfd write-protection, the rounds taken while
 *              the process runs, and their staging on the restore side
 *   restore.c  restore: into a fresh stub or a hollow original
 *   fill.c     the restore's page fill: UFFDIO_COPY into private anonymous regions, else
 *              /proc/PID/mem
 *   pipeline.c the image stream in two threads: the dump's writer, the restore's reader
 *   deputy.c   the hollow original parked at home, and its commands
 *   relay.c    descriptors relayed through home (--relay): which, recreated as a pipe or
 *              socketpair end on a remote, pumped by the helper
 *   keep.c     keeper mode of restore: the restored process kept independent of its daemon
 *   family.c   the family calls of a guest (fork, wait, ...): caught on a remote, run at home
 *   ppm.c      commands and main
 */
#ifndef HPC_PPM_H
#define HPC_PPM_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <ctype.h>
#include <dirent.h>
#include <poll.h>
#include <time.h>
#include <limits.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/user.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <elf.h>
#include <stddef.h>
#include <sched.h>
#include "image.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#define PAGE 4096UL
#define CHUNK (1UL << 20)	/* largest page record, and the I/O buffer */
#define SCRATCH_LEN (64 * 1024UL)	/* scratch area mapped into the tracee during a restore */
#define TASK_TOP 0x7ffffffff000UL
#define PR_SET_MM_MAP_ 14
struct prctl_mm_map_ {
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size, exe_fd;
};
#define NR_RSEQ 334
#define NR_CLONE3 435
#define NR_PIDFD_OPEN 434
#define NR_PIDFD_GETFD 438
#define NR_SECCOMP 317
#define NR_KCMP 312
#define KCMP_FILE 0
#define KCMP_FILES 2
#define KCMP_EPOLL_TFD 7
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define MAX_TIMERS 256
#define SEIZE_OPTS (PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP)

/* ---------- util.c ---------- */
extern FILE *ctl;		/* control lines (fd 4, or stdout) */
extern char g_err[1024];	/* the first error of the operation */
extern int g_errno;
void ctlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fail(int e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));	/* records the first error, returns -e */
extern double g_inject_ms;
void clear_err(void);
void err_copy(char *buf, size_t n);	/* this thread's last failure's message */
const char *errname(int e);
int report_err(void);
int cmd_line(char *line, size_t cap);	/* one line from fd 5; -1 at its end (util.c) */
int fd_of(pid_t pid, int fd);	/* a duplicate (close-on-exec) of descriptor fd of process pid, or -1 with errno */
double now_ms(void);
void trace(const char *what);
int64_t clock_ns(clockid_t id);
ssize_t read_file(const char *path, char *buf, size_t cap);
char *read_file_alloc(const char *path);	/* whole file, NUL-terminated; NULL on error */
int status_field(const char *status, const char *key, char *out, size_t cap);
int sig_nondefault(pid_t pid, uint64_t *mask, uint64_t *ign);
int ends_with(const char *s, const char *suf);

/* ---------- image.c ---------- */
void crc_init(void);
uint32_t crc32c(uint32_t crc, const void *buf, size_t n);
/* fd: the image stream; copy: a second descriptor that gets every byte too (-1: none), e.g. the
 * file a sender keeps until the process runs elsewhere while the stream goes into a socket */
struct wahead;
struct gsend;
struct imgw { int fd; uint32_t nrec; uint64_t bytes, pages; int copy; struct wahead *wa;	/* records written by a thread (pipeline.c) */
	      struct gsend *gs; };	/* pages the process sends into the socket itself (gsend.c) */
struct stage;
struct rahead;
struct imgr { int fd; uint32_t nrec; uint64_t bytes, pages; int peeked; struct rechdr peek; uint8_t *pre; size_t pre_len, pre_off, pre_cap;
	      struct stage *stage;	/* pages of a pre-copy stream's rounds (precopy.c) */
	      struct rahead *ra;	/* records read ahead by a thread (pipeline.c) */
	      int ended; };		/* its END record was read (checked or not) */
int rec_put(struct imgw *w, uint32_t type, const void *a, size_t al, const void *b, size_t bl);
int rec_hdr(struct imgr *r, struct rechdr *h);
int rec_peek(struct imgr *r, uint32_t *type);
int rec_body(struct imgr *r, const struct rechdr *h, void *buf, size_t cap);
int rec_end(struct imgr *r, const struct rechdr *h);
int rec_body_ref(struct imgr *r, const struct rechdr *h, void *buf, size_t cap, const uint8_t **out);
int drain_image(struct imgr *r);

/* ---------- pipeline.c ---------- */
int rahead_make(void);
int rahead_start(struct imgr *r);
int rahead_next(struct imgr *r, struct rechdr *h);
const uint8_t *rahead_body(struct imgr *r);
int rahead_end(struct imgr *r);
void rahead_stop(struct imgr *r, int drain);
#define WAHEAD_MAX (CHUNK + 16)	/* the longest record body a writer's slot takes */
int wahead_start(struct imgw *w);
uint8_t *wahead_body(struct imgw *w, int *e);
int wahead_put(struct imgw *w, uint32_t type, size_t len);
int wahead_sync(struct imgw *w);
int wahead_stop(struct imgw *w);
int w_vec(int fd, struct iovec *iov, int n);
int wait_io(int fd, short ev);	/* until fd is ready for ev, within --stall-ms and while the daemon lives */

extern volatile sig_atomic_t g_orphaned;
void cancel_empty_image(void);
void abort_when_orphaned(void);
extern int g_stall_ms;	/* --stall-ms: a stream (socket) that makes no progress for this long fails; -1 never */
extern int g_copy_fd;	/* --copy: fd 6 gets a copy of the image written to fd 3 */
extern int g_confirm;	/* --confirm: the dumped original stays frozen until HOLLOW or RELEASE (deputy.c); a dump's until KILL, RELEASE or SAVE (frozen.c) */
extern int g_keep_fd;	/* dump --confirm --copy: fd 6, written only on SAVE or when the caller is gone (frozen.c) */
extern volatile sig_atomic_t g_streamed;	/* a byte of the image has gone into fd 3 */
extern int g_seized;	/* the process was stopped for its dump (after a pre-copy's rounds, which run
			 * while it runs); said with streamed= on failure, for the logs */
extern long g_fault_after;	/* --test-fault early: reading the image fails after this many bytes */

/* ---------- gsend.c ---------- */
struct tracee;
int gsend_open(struct imgw *w, struct tracee *t, int fd);
int gsend_takes(const struct imgw *w, uint32_t prot, uint64_t len);
int gsend_run(struct imgw *w, struct tracee *t, uint64_t addr, uint64_t len);
int gsend_close(struct imgw *w, struct tracee *t);

/* one thread of a parsed image */
struct image_thread {
	struct img_thread th;
	uint8_t xs[XSTATE_MAX];
	uint32_t xlen;
};

/* an image's metadata, everything before its page records */
struct image {
	struct img_header h;
	struct img_core c;
	struct image_thread *threads;
	int nthreads;
	struct img_vma *vmas;
	int nvma;
	struct img_fd *fds;
	int nfd;
	uint8_t *filters[8];
	uint32_t nins[8];
	int nfilt;
	struct img_epoll *epolls;
	int nepoll;
	struct img_inotify *watches;
	int nwatch;
	struct img_timer *timers;
	int ntimer;
	struct img_siginfo *sigs;
	int nsig;
};
int read_meta(struct imgr *r, struct image **out);
void free_image(struct image *im);

/* ---------- compat.c ---------- */
void host_compat(struct compat *c);
void compat_line(const struct compat *c, char *out, size_t cap);
int compat_parse(const char *s, struct compat *c);
int compat_check(const struct compat *img, const struct compat *host, int print);
uint32_t host_xsave_len(void);

/* ---------- proc.c ---------- */
struct vma {
	uint64_t start, end, pgoff, ino;
	uint32_t prot;
	int shared;
	char path[PATH_MAX];
};
int parse_maps(pid_t pid, struct vma **out);
int is_special(const char *path);
int stat_fields(pid_t pid, unsigned long long *f, int nf);
char proc_state(pid_t pid);
int read_core_proc(pid_t pid, struct img_core *c);
int read_comm(pid_t pid, pid_t tid, char comm[16]);
void read_timens(pid_t pid, int64_t *mono_off, int64_t *boot_off);
int ns_differs(pid_t pid, const char *ns);
pid_t ns_inner(pid_t tid);
int task_status(pid_t pid, pid_t tid, char *buf, size_t cap);	/* /proc/PID/task/TID/status: 0, or -1 */
int read_limits(pid_t pid, uint64_t lim[16][2]);	/* its resource limits, soft and hard: how many */
int shmem_shared_elsewhere(pid_t pid, uint64_t ino);
int being_dumped(pid_t pid);
int fd_numbers(pid_t pid, int **out);	/* its descriptor numbers, ascending (malloc'd): how many, or -1 */

/* ---------- inject.c ---------- */
#define TRACEE_PEND 32	/* signals kept per thread: every standard one once, real-time ones up to this */
/* A traced, stopped task. Injections run in it at a `syscall` instruction of the vDSO; regs0 are
 * its registers when it was stopped (the base of every injection). */
struct tracee {
	pid_t pid;
	int memfd;		/* /proc/PID/mem */
	uint64_t sc_ip;		/* address of a `syscall` instruction */
	struct user_regs_struct regs0;
	/* asynchronous signals taken out of the kernel by its stops while it was worked on (re-sent
	 * later, sigq.c); the first pend_imaged of them are in its image */
	int npend, pend_imaged;
	siginfo_t pend[TRACEE_PEND];
	/* a dumped process's main thread: its image's SIGINFO records (sigq_read), and which of them
	 * were read from the kernel's queues, where they still are (the others are in pend) */
	struct img_siginfo *sigs;
	uint8_t *sig_queued;
	int nsig;
	int sig_restored;	/* a restore: the image's SIGINFO records up to this one are queued in it (sigq_restore) */
	int dead;
	long ninject;		/* calls injected, also in batches */
	long nbatch, nbatched;	/* batches run (batch.c), and the calls in them */
	/* a process's main thread only (threads.c): its other threads, stopped under this helper,
	 * and the tid policy of a restore (0 new tids, 1 the image's where free, 2 the image's or fail) */
	struct tracee *thr;
	int nthr;
	int keep_tids;
	pid_t vpid;		/* its id in its own pid namespace (a guest's: its home id); 0: pid */
	pid_t event_pid;	/* the host tid of the last PTRACE_EVENT_CLONE seen by inject, 0: none */
	/* as it was when stopped, before any injected call changed it (a single step's trap and a
	 * batch's int3 unblock a blocked SIGTRAP and reset a blocked or ignored one's action): its
	 * mask; the signals with a handler or ignored (sig_save); SIGTRAP's action, read then when
	 * some thread blocks it or it is ignored (trap_saved) */
	uint64_t mask0;
	uint64_t nondef0;
	struct ksigaction trap_act0;
	int trap_saved;
};
int twait(struct tracee *t, int *st);
int inject(struct tracee *t, long nr, long a1, long a2, long a3, long a4, long a5, long a6, long *ret);
int inject_v(struct tracee *t, long *ret, long nr, const char *name, long a[6]);
/* INJ(t, &ret or NULL, SYS_x, args...): injects a syscall; a -errno result is an error */
#define INJ(t, ret, nr, ...) inject_v(t, ret, nr, #nr, (long[6]){ __VA_ARGS__ })
void tracee_pending(struct tracee *t, int sig, const siginfo_t *si);	/* an asynchronous signal that came meanwhile (its siginfo, NULL: read from the stop), re-sent later */
/* SIGTRAP's action set from *set and/or read into *get (NULL: not) by calls that stop at syscall
 * entry and exit, so that no trap resets it (docs/ppm.md "SIGTRAP and the traps of injected
 * calls"), at scr (0: a page mapped for it), which is unmapped then (len bytes) */
int trap_act(struct tracee *t, const struct ksigaction *set, struct ksigaction *get, uint64_t scr, size_t len);
/* Before the first injected call into t (and its stopped threads): its signal dispositions
 * (t->nondef0), and SIGTRAP's action (t->trap_act0) if a thread blocks SIGTRAP or it is ignored */
int sig_save(struct tracee *t);
/* t and its threads as they were when stopped (registers, masks, SIGTRAP's action), still stopped:
 * should this helper die now, the process runs on as it was */
void tracee_back(struct tracee *t);

/* ---------- sigq.c ---------- */
#define SIGQ_MAX 65536	/* SIGINFO records in an image at most */
/* The signals a dumped process has not taken yet, with their siginfo: read into t->sigs (those
 * its stops took out of the kernel, then each thread's queue, then the process's); how many */
int sigq_read(struct tracee *t);
/* the image's signals queued again in the restored process by its own threads (so that the
 * kernel keeps every field of each siginfo), all signals blocked in those threads until their
 * masks are set (restore_thread_regs); SIGTRAP's are left for sigq_after */
int sigq_restore(struct tracee *t, const struct image *im, uint64_t scr);
/* after the process runs: the image's SIGTRAPs, sent from here (sigq_send) */
void sigq_after(struct tracee *t, const struct image *im);
/* a signal sent again from this helper to thread tid of tgid (tid 0: to the process): with its
 * whole siginfo where the kernel lets another process queue it (si_code < 0 but SI_TKILL), else
 * as tgkill/kill would send it */
void sigq_send(pid_t tgid, pid_t tid, const siginfo_t *si);
/* t's pend sent again from here (released, or restored home), to its thread (to the process if
 * process: a restore's) */
void sigq_resend(struct tracee *t, pid_t tgid, int process);
/* a signal the hollowing took out of the original's queues: 1 if it is one of its image's (read
 * from the queues by sigq_read, not claimed before), which the process took with it */
int sigq_claim(struct tracee *t, const siginfo_t *si);
/* the image's signals for the process and its main thread, claimable as if read by sigq_read */
void sigq_expect(struct tracee *t, const struct image *im);
/* a signal sent to a hollow original, reported to be passed on to the process where it runs:
 * "SIGNAL sig code pid uid value" (its siginfo's; value: si_value as a 64-bit integer) */
void sigq_report(const siginfo_t *si);
/* the same for the signal of thread tid's signal-delivery-stop (its siginfo read there) */
void sigq_report_stop(pid_t tid, int sig);
/* the siginfo of thread tid's signal-delivery-stop for sig (PTRACE_GETSIGINFO; SI_USER from no
 * one when it cannot be read) */
void stop_siginfo(pid_t tid, int sig, siginfo_t *si);
/* a keeper's "SIGQUEUE sig code pid uid value": that signal sent to pid (sigq_send: its siginfo
 * kept where the kernel allows another process to queue it); -1 if line is not one */
int sigq_command(pid_t pid, const char *line);

/* ---------- batch.c ---------- */
/* Injected calls in batches, run by a few instructions put into the process (one stop for all). */
#define BATCH_MAX 64
#define BATCH_AREA (16 * 1024UL)	/* the code page, the table, the calls' data */
#define B_ARG(i) (1u << (i))	/* argument i is the result of the last B_SAVE call */
#define B_SAVE 64u
#define B_ANY 128u		/* its failure does not stop the batch */
#define B_CLEANUP 256u		/* made also when a call of its chain (since the last B_SAVE) failed: a close */
struct bcall { uint64_t w[9]; };	/* nr, 6 arguments, flags, result */
struct batch {
	struct tracee *t;
	uint64_t area, code, saved;	/* code 0: one injection per call */
	size_t used;			/* bytes of the data area in use */
	int n;
	struct bcall c[BATCH_MAX];
	const char *name[BATCH_MAX];
};
int batch_init(struct batch *b, struct tracee *t, uint64_t addr);
uint64_t batch_data(struct batch *b, const void *p, size_t n, int *e);
int batch_add(struct batch *b, unsigned flags, long nr, const char *name, const long a[6]);
int batch_run(struct batch *b);
#define BQ(b, fl, nr, ...) batch_add(b, fl, nr, #nr, (long[6]){ __VA_ARGS__ })
int mem_write(struct tracee *t, uint64_t addr, const void *p, size_t n);
int mem_read(struct tracee *t, uint64_t addr, void *p, size_t n);
int put_str(struct tracee *t, uint64_t addr, const char *s);
int open_mem(struct tracee *t);
int find_vdso(struct tracee *t, uint64_t *vvar, uint64_t *vclock, uint64_t *vdso);
void fix_restart(struct user_regs_struct *r, int live);
int dump_frozen(struct tracee *t);	/* dump --confirm, once the image is out (frozen.c) */
void release_live(struct tracee *t);
int seize(struct tracee *t, pid_t pid, long opts);
int park(struct tracee *t);
int interrupt_stop(struct tracee *t);
void kill_reap(pid_t pid);

/* ---------- check.c ---------- */
int reason(int print, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int check_pid(pid_t pid, int print);

/* ---------- files.c ---------- */
/* one descriptor of a process being checked or dumped */
struct fdent {
	int fd, kind;		/* kind F_*, 0 = not one the engine can recreate */
	char link[PATH_MAX];	/* readlink of /proc/PID/fd/N */
	struct stat st;		/* stat of /proc/PID/fd/N (the object) */
	char *info;		/* its fdinfo text */
	uint32_t flags;
	uint64_t pos;
	int dup_of;		/* lowest fd of the same open file description, or -1 */
	int relay;		/* F_RELAY: RT_PIPE or RT_SOCK */
};
struct fdtab {
	pid_t pid;
	int pidfd;		/* pidfd of the process, for pidfd_getfd (-1 until needed) */
	int n;
	struct fdent *v;
};
int fdtab_read(pid_t pid, struct fdtab *tab);
void fdtab_free(struct fdtab *tab);
struct fdent *fdtab_find(struct fdtab *tab, int fd);
int fdtab_getfd(struct fdtab *tab, int fd);	/* a duplicate of the process's fd in the helper */
int fds_check(struct fdtab *tab, int print);
int dump_fds(struct fdtab *tab, struct img_fd **out);
int validate_fds(struct image *im, int print);
/* the restore of the descriptors: restore_fds creates them all (before the memory, so that a
 * memfd can be mapped), fd_data applies a FDDATA record, restore_fds_late arms timers and adds
 * seals (at the end, with the itimers); target_fd gives the helper a duplicate of a restored fd */
struct fdrestore { pid_t pid; int pidfd; int cache_fd[16], cache_dup[16]; int ncache; };
int restore_fds(struct tracee *t, struct image *im, uint64_t scr, struct fdrestore *fr);
int fd_data(struct fdrestore *fr, struct image *im, const struct img_fddata *d, const uint8_t *data, size_t len);
int restore_fds_late(struct tracee *t, struct image *im, uint64_t scr, struct fdrestore *fr);
int target_fd(struct fdrestore *fr, int fd);
void fdrestore_done(struct fdrestore *fr);
int kcmp_file(pid_t p1, int fd1, pid_t p2, int fd2);
/* per kind (pipes.c, anonfds.c, memfd.c): can it move (REASON lines, count), what the record
 * holds, how it is recreated (a new fd in the target: its number), what happens after */
int pipe_check(struct fdtab *tab, struct fdent *e, int print);
int unix_check(struct fdtab *tab, struct fdent *e, int print);
int pipe_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f);
int unix_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f);
int queues_dump_data(struct imgw *w, struct fdtab *tab, struct img_fd *fds, int n);
int pipe_create(struct tracee *t, const struct img_fd *f, uint64_t scr, long out[2]);
int unix_create(struct tracee *t, const struct img_fd *f, uint64_t scr, long out[2]);
int queue_setup(struct fdrestore *fr, const struct img_fd *f);
int queue_data(struct fdrestore *fr, struct image *im, const struct img_fd *f, const uint8_t *data, size_t len);
int queue_finish(struct fdrestore *fr, const struct img_fd *f);
int anon_check(struct fdtab *tab, struct fdent *e, int print);
int anon_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f);
int anon_dump_meta(struct imgw *w, struct fdtab *tab, struct img_fd *fds, int n);
int anon_create(struct tracee *t, const struct img_fd *f, uint64_t scr, long *out);
int anon_setup(struct fdrestore *fr, struct image *im, const struct img_fd *f);
int epoll_restore(struct tracee *t, struct image *im, uint64_t scr);
int anon_late(struct fdrestore *fr, const struct img_fd *f);
int inotify_validate(struct image *im, int print);
int memfd_check(struct fdtab *tab, struct fdent *e, int print);
int memfd_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f);
int memfd_dump_data(struct imgw *w, struct fdtab *tab, struct img_fd *fds, int n);
int memfd_create_in(struct tracee *t, const struct img_fd *f, uint64_t scr, long *out);
int memfd_setup(struct fdrestore *fr, const struct img_fd *f);
int memfd_data(struct fdrestore *fr, const struct img_fd *f, uint64_t off, const uint8_t *data, size_t len);
int memfd_late(struct fdrestore *fr, const struct img_fd *f);

/* ---------- timers.c ---------- */
int timers_check(pid_t pid, int print);
int timers_dump(struct tracee *t, uint64_t scratch, struct img_timer *out, int *n);
int timers_restore(struct tracee *t, struct image *im, uint64_t scr);
int timers_clear(struct tracee *t, uint64_t scr);

/* ---------- dump.c ---------- */
struct dumpres { struct img_core core; int nvma; struct img_vma *vmas; double freeze_ms; };
int dump_thread(struct tracee *t, uint64_t scratch, struct img_thread *th, uint8_t *xs, uint32_t *xlen);
/* go (or NULL): called once before the first byte is written; non-zero stops the dump there */
int dump_image(struct tracee *t, int imgfd, const char *target, struct dumpres *res, int (*go)(struct tracee *t, const char **target));
int dump_vmas(pid_t pid, struct fdtab *tab, struct img_vma **out);

/* ---------- precopy.c ---------- */
struct precopy {
	pid_t pid;
	int uffd, pmfd, memfd;	/* the helper's duplicate of the process's userfaultfd; its pagemap, mem */
	int rounds, fallback;
	uint64_t pre_bytes, last_dirty;
	struct imgw w;		/* the stream: the rounds, then the image */
};
struct page_region_ { uint64_t start, end, categories; };	/* PAGEMAP_SCAN (Linux 6.7) */
extern struct precopy *g_pc;	/* the pre-copy of the dump under way (dump_image continues its stream) */
extern int g_precopy, g_precopy_rounds;	/* --precopy [--rounds N] */
extern uint64_t g_precopy_final;	/* a round that copied at most this many bytes ends the rounds */
int precopy_start(struct precopy *pc, pid_t pid, int imgfd);
int precopy_round(struct precopy *pc, uint64_t *dirty);
int precopy_rounds(struct precopy *pc);
int precopy_written(struct precopy *pc, const struct img_vma *v, struct page_region_ **vec, long *n);
void precopy_end(struct precopy *pc);
int stage_read(struct imgr *r);
struct fill;
int stage_apply(struct imgr *r, struct fill *f, uint64_t addr, uint64_t len);
void stage_free(struct imgr *r);

/* ---------- restore.c ---------- */
struct clone_args_ { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup; };
struct restore_opts {
	int keep_pid, require_pid, wait, eintr;
	int hold;	/* --hold: the restored process runs only once GO comes (fd 5, or the keeper's command pipe) */
	long keep_ms;	/* --keep LEASE_MS: keeper mode (keep.c), 0: off */
	int clock;	/* 0 auto, 1 real, 2 continue, 3 explicit */
	int64_t mono_off;
	pid_t stdio_from;
	int fault_end;	/* --test-fault end: fail once the whole image is read */
	int pid_now;	/* --pid-now: keep the pid if it is free now, else a new pid at once (no waiting for a holder being dumped) */
	pid_t pid_hint;	/* --pid-hint: a guest's pid as its offer said it (its stub made ahead, ppm.c) */
};
/* Guests' ids (restore --guest): a guest runs with real and saved uid GUEST_ID_BASE + its home
 * uid, and its home uid as effective (and file system) uid: its files are its own, but no local
 * process of its home uid may signal or trace it. Any restore maps such ids back first, so a
 * process that comes home (or moves on) has its own again. */
#define GUEST_ID_BASE 0x40000000u
extern int guest_ids;	/* restore --guest */
int guest_pidns(void);
int validate_image(struct image *im, int print);
int restore_thread(struct tracee *t, const struct image_thread *it, uint64_t scr);
int restore_thread_regs(struct tracee *t, const struct image_thread *it, int eintr_policy);
int restore_into(struct tracee *t, struct image *im, struct imgr *r, int hollow, int eintr_policy);
/* restore_into done: the process runs (all its threads, its pending signals sent again) */
int restored_run(struct tracee *t, struct image *im);
int spawn_stub(struct tracee *t, pid_t want, int *kept);
void reaper_tell(pid_t id);
int timens_for(struct image *im, struct restore_opts *o, int64_t *off_mono, int64_t *off_boot);
int setup_timens(int64_t off_mono, int64_t off_boot);
int stub_join_timens(struct tracee *t);

/* ---------- fill.c ---------- */
struct fill {
	struct tracee *t;
	int uffd;		/* the helper's duplicate of the tracee's userfaultfd; -1: /proc/PID/mem only */
	uint64_t (*reg)[2];	/* the regions registered with it: start, end */
	int nreg, unreg;	/* registered; private anonymous regions its registration failed for */
	uint64_t copied, eexist, written;	/* pages by UFFDIO_COPY, already present, by /proc/PID/mem */
	char why[48];		/* why the fill is /proc/PID/mem only ("" when it is not) */
};
extern int g_fill_pwrite;	/* HPC_PPM_FILL=pwrite: every page through /proc/PID/mem (the old way, to compare) */
int fill_start(struct fill *f, struct tracee *t, struct image *im);
int fill_write(struct fill *f, uint64_t addr, const void *p, uint64_t len);
int fill_end(struct fill *f, int report);

/* ---------- deputy.c ---------- */
int hollow(struct tracee *t, int *touched);
int cmd_deputy(pid_t pid, const char *target);

/* ---------- relay.c ---------- */
enum { RT_PIPE = 1, RT_SOCK = 2 };
extern int g_relay;	/* --relay: a pipe or connected stream socket whose other end is elsewhere is relayed */
extern int g_relay_keep;	/* restoring into the hollow original: its relayed fds are its own */
extern int g_inject_two_stops;	/* HPC_PPM_INJECT=two-stops: injected calls stop at entry and exit */
void relay_mark(struct fdtab *tab);
int relay_reason(struct fdtab *tab, struct fdent *e, int print);
void relay_note(const struct img_fd *f);
void relay_report_dumped(void);
void relay_forget(void);
int relay_restore(struct tracee *t, const struct img_fd *f, uint64_t scr);
int relay_start(void);
void relay_release(void);
void relay_end(int fd);
void relay_broken(int fd);
void relay_dead_reader(int fd);
int cmd_unread(pid_t pid, int fd);
int shared_objects(struct fdtab *tab, struct fdent **objs, int nobj, int print, char *found);


/* ---------- keep.c ---------- */
struct keep { int in_w, out_r, err_r, ctl_r, ctl_w, cmd_r; };
int keep_prepare(struct keep *k);
void keep_spawned(void);
int keep_run(struct keep *k, struct tracee *t, struct image *im, int hold, long lease_ms);
/* ---------- family.c ---------- */
extern int g_family;	/* --family: restore installs the family filter; check and deputy allow children */
int family_filter(const void *ins, uint32_t n);
int family_install(struct tracee *t, uint64_t scr);
void family_supervise(pid_t pid);
int family_listener(void);
int family_recv(short revents);
void family_repeat(void);
int family_command(const char *line);

/* ---------- ppm.c ---------- */
int seize_and_dump(pid_t pid, const char *target, struct tracee *t, struct dumpres *res, double *t0);
void precopy_done(void);

#endif
