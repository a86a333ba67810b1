/* hpc-ppm-helper: ptrace-based checkpoint/restore engine for single-threaded x86-64 processes.
 *
 * Protocol (see docs/ppm.md):
 *   fd 3  image stream (dump/deputy: written; restore: read)
 *   fd 4  control lines from the helper (falls back to stdout when fd 4 is not open)
 *   fd 5  command lines to a deputy
 *   fd 0-2 are handed to a freshly restored process.
 * Commands: check PID | dump PID [--leave-running] [--target INFO] | restore [opts] |
 *           deputy PID [--target INFO] | hostinfo | info | rawpipe BYTES
 * Lines out: REASON code text | STAT k=v... | PID n | HOLLOW | SIGNAL n | FD n path|- |
 *            IMAGE-IN path | EXIT n | KILLED n | RESTORED n | OK | ERR ERRNO text
 */
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
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <elf.h>
#include <cpuid.h>
#include <stddef.h>
#include <sched.h>
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define PAGE 4096UL
#define IMG_MAGIC "HPCPPM\r\n"
#define IMG_VERSION 1
#define REC_MAGIC 0x52504d50u /* "PMPR" */
#define CHUNK (1UL << 20)
#define MAX_REC (64UL << 20)
#define SCRATCH_LEN (64 * 1024UL)
#define TASK_TOP 0x7ffffffff000UL
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#define PR_SET_MM_MAP_ 14
#define NR_RSEQ 334
#define NR_CLONE3 435
#define NR_PIDFD_OPEN 434
#define NR_PIDFD_GETFD 438
#define NR_SECCOMP 317

enum { R_HEADER = 1, R_CORE, R_XSTATE, R_VMA, R_FD, R_SECCOMP, R_PAGES, R_END };
enum { K_ANON = 1, K_STACK, K_FILE_PRIV, K_FILE_SHARED, K_SHMEM, K_FULL };
enum { F_FILE = 1, F_DIR, F_CHR, F_FIFO, F_INHERIT };

struct rechdr { uint32_t type, magic; uint64_t len; };

struct compat {
	uint64_t xcr0;
	uint32_t xsave_len;
	uint32_t cpuid[5];	/* 1.ecx 1.edx 7.ebx 7.ecx 7.edx */
	uint32_t vvar_len, vclock_len, vdso_len, vdso_crc;
	char release[65];
	char boot_id[40];
	char pad[7];
};

struct img_header {
	char magic[8];
	uint32_t version, hdr_size;
	struct compat c;
	int64_t mono_ns, boot_ns;	/* process' view of its clocks at dump time */
	int64_t mono_off_ns, boot_off_ns; /* its time namespace offsets at dump time */
	int32_t pid;
	uint32_t flags;
};

struct ksigaction { uint64_t handler, flags, restorer, mask; };

struct img_core {
	struct user_regs_struct regs;
	uint64_t sigmask;
	struct ksigaction act[65];
	uint64_t mm[11];	/* start_code end_code start_data end_data start_brk brk start_stack arg_start arg_end env_start env_end */
	uint64_t rseq_ptr;
	uint32_t rseq_len, rseq_sig;
	uint64_t vvar, vclock, vdso;	/* addresses of the special mappings (0 = absent) */
	uint32_t umask, personality;
	char comm[16];
	uint32_t auxv_len, npend;
	int32_t pend[16];
	uint64_t auxv[64];
	uint32_t uid[4], gid[4];
	uint32_t ngroups, nnp;
	uint32_t groups[32];
	uint32_t nfilters, pad;
	int64_t itimer[3][4];	/* ITIMER_REAL/VIRTUAL/PROF: interval s, us, value s, us */
	uint64_t ss_sp, ss_size;	/* sigaltstack */
	int32_t ss_flags, pad2;
	uint64_t exe_size;
	int64_t exe_mtime_s, exe_mtime_ns;
	char cwd[PATH_MAX];
	char exe[PATH_MAX];
};

struct img_vma {
	uint64_t start, end, pgoff;
	uint32_t prot, kind;
	uint64_t fsize;
	int64_t mtime_s, mtime_ns;
	uint32_t pathlen, pad;
	char path[PATH_MAX];
};
#define VMA_FIXED offsetof(struct img_vma, path)

struct img_fd {
	int32_t fd;
	uint32_t kind, flags, pathlen;
	uint64_t pos, size;
	char path[PATH_MAX];
};
#define FD_FIXED offsetof(struct img_fd, path)

struct img_end { uint32_t nrec, pad; uint64_t bytes, pages; };

/* ---------- output, errors ---------- */

static FILE *ctl;
static char g_err[1024];
static int g_errno;

static void ctlf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(ctl, fmt, ap);
	va_end(ap);
	fputc('\n', ctl);
	fflush(ctl);
}

static int fail(int e, const char *fmt, ...)
{
	if (!g_err[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(g_err, sizeof g_err, fmt, ap);
		va_end(ap);
		g_errno = e;
	}
	return -e;
}

static const char *errname(int e)
{
	switch (e) {
	case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case ESRCH: return "ESRCH";
	case EINTR: return "EINTR"; case EIO: return "EIO"; case EBADF: return "EBADF";
	case ECHILD: return "ECHILD"; case EAGAIN: return "EAGAIN"; case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES"; case EFAULT: return "EFAULT"; case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST"; case EINVAL: return "EINVAL"; case ENOSPC: return "ENOSPC";
	case EPIPE: return "EPIPE"; case ERANGE: return "ERANGE"; case ENOSYS: return "ENOSYS";
	case EBADMSG: return "EBADMSG"; case EPROTO: return "EPROTO"; case ENOTSUP: return "ENOTSUP";
	case ENXIO: return "ENXIO"; case ESTALE: return "ESTALE";
	default: return "EIO";
	}
}

static int report_err(void)
{
	ctlf("ERR %s %s", errname(g_errno ? g_errno : EIO), g_err[0] ? g_err : "unknown failure");
	return 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -errno;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return -e; }
		if (r == 0) break;
		n += r;
	}
	buf[n] = 0;
	close(fd);
	return n;
}

static int status_field(const char *status, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == ':') {
			p += kl + 1;
			while (*p == ' ' || *p == '\t') p++;
			size_t n = strcspn(p, "\n");
			if (n >= cap) n = cap - 1;
			memcpy(out, p, n);
			out[n] = 0;
			return 0;
		}
	}
	return -1;
}

/* ---------- CRC32C ---------- */

static uint32_t crc_tab[256];
static int crc_hw;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_tab[i] = c;
	}
	unsigned a, b, c, d;
	__cpuid(1, a, b, c, d);
	crc_hw = (c >> 20) & 1;
}

__attribute__((target("sse4.2")))
static uint32_t crc_sse(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;
	while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; n -= 8; }
	uint32_t c32 = (uint32_t)c;
	while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}

static uint32_t crc32c(uint32_t crc, const void *buf, size_t n)
{
	crc = ~crc;
	if (crc_hw) crc = crc_sse(crc, buf, n);
	else { const uint8_t *p = buf; while (n--) crc = crc_tab[(crc ^ *p++) & 0xff] ^ (crc >> 8); }
	return ~crc;
}

/* ---------- image stream ---------- */

struct imgw { int fd; uint32_t nrec; uint64_t bytes, pages; };
struct imgr { int fd; uint32_t nrec; uint64_t bytes, pages; int peeked; struct rechdr peek; uint8_t *pre; size_t pre_len, pre_off, pre_cap; };

static int w_vec(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t r = writev(fd, iov, n);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno == EAGAIN) { struct pollfd pf = { fd, POLLOUT, 0 }; poll(&pf, 1, -1); continue; } /* a non-blocking socket from the caller */
			return fail(errno, "writing the image: %s", strerror(errno));
		}
		while (n > 0 && (size_t)r >= iov->iov_len) { r -= iov->iov_len; iov++; n--; }
		if (n > 0) { iov->iov_base = (char *)iov->iov_base + r; iov->iov_len -= r; }
	}
	return 0;
}

static int rec_put(struct imgw *w, uint32_t type, const void *a, size_t al, const void *b, size_t bl)
{
	struct rechdr h = { type, REC_MAGIC, al + bl };
	uint32_t crc = crc32c(0, &h, sizeof h);
	crc = crc32c(crc, a, al);
	if (bl) crc = crc32c(crc, b, bl);
	struct iovec iov[4] = { { &h, sizeof h }, { (void *)a, al }, { (void *)b, bl }, { &crc, 4 } };
	int r = w_vec(w->fd, iov, 4);
	if (r) return r;
	w->nrec++;
	w->bytes += sizeof h + al + bl + 4;
	return 0;
}

static int r_all(struct imgr *ir, void *p, size_t n)
{
	int fd = ir->fd;
	if (ir->pre_off < ir->pre_len) {	/* bytes read ahead while waiting for the pid */
		size_t k = ir->pre_len - ir->pre_off < n ? ir->pre_len - ir->pre_off : n;
		memcpy(p, ir->pre + ir->pre_off, k);
		ir->pre_off += k;
		p = (char *)p + k;
		n -= k;
		if (ir->pre_off == ir->pre_len) { free(ir->pre); ir->pre = NULL; ir->pre_len = ir->pre_off = ir->pre_cap = 0; }
	}
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno == EAGAIN) { struct pollfd pf = { fd, POLLIN, 0 }; poll(&pf, 1, -1); continue; }
			return fail(errno, "reading the image: %s", strerror(errno));
		}
		if (r == 0) return fail(EBADMSG, "image truncated (stream ended early)");
		p = (char *)p + r;
		n -= r;
	}
	return 0;
}

static int rec_hdr(struct imgr *r, struct rechdr *h)
{
	if (r->peeked) { *h = r->peek; r->peeked = 0; return 0; }
	int e = r_all(r, h, sizeof *h);
	if (e) return e;
	if (h->magic != REC_MAGIC || h->type < R_HEADER || h->type > R_END || h->len > MAX_REC)
		return fail(EBADMSG, "image corrupt: bad record header (type %u, len %llu)", h->type, (unsigned long long)h->len);
	return 0;
}

static int rec_peek(struct imgr *r, uint32_t *type)
{
	if (!r->peeked) {
		int e = rec_hdr(r, &r->peek);
		if (e) return e;
		r->peeked = 1;
	}
	*type = r->peek.type;
	return 0;
}

/* reads the body of a record whose header is h into buf (cap bytes) and checks its CRC */
static int rec_body(struct imgr *r, const struct rechdr *h, void *buf, size_t cap)
{
	if (h->len > cap) return fail(EBADMSG, "image corrupt: record type %u too long (%llu)", h->type, (unsigned long long)h->len);
	uint32_t crc_img;
	int e = r_all(r, buf, h->len);
	if (!e) e = r_all(r, &crc_img, 4);
	if (e) return e;
	uint32_t crc = crc32c(crc32c(0, h, sizeof *h), buf, h->len);
	if (crc != crc_img) return fail(EBADMSG, "image corrupt: checksum mismatch in record %u (type %u)", r->nrec, h->type);
	r->nrec++;
	r->bytes += sizeof *h + h->len + 4;
	return 0;
}

/* ---------- maps ---------- */

struct vma {
	uint64_t start, end, pgoff, ino;
	uint32_t prot;
	int shared;
	char path[PATH_MAX];
};

static int parse_maps(pid_t pid, struct vma **out)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/maps", pid);
	FILE *f = fopen(fn, "re");
	if (!f) return fail(errno, "cannot read %s: %s", fn, strerror(errno));
	int n = 0, cap = 64;
	struct vma *v = calloc(cap, sizeof *v);
	char *line = NULL;
	size_t ll = 0;
	while (getline(&line, &ll, f) > 0) {
		if (n == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
		struct vma *m = &v[n];
		memset(m, 0, sizeof *m);
		char perms[8];
		unsigned maj, min;
		int off = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &m->start, &m->end, perms, &m->pgoff, &maj, &min, &m->ino, &off) < 7) continue;
		m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
		m->shared = perms[3] == 's';
		m->pgoff /= PAGE;
		char *p = line + off;
		p[strcspn(p, "\n")] = 0;
		snprintf(m->path, sizeof m->path, "%s", p);
		n++;
	}
	free(line);
	fclose(f);
	*out = v;
	return n;
}

static int is_special(const char *p)
{
	return !strcmp(p, "[vvar]") || !strcmp(p, "[vvar_vclock]") || !strcmp(p, "[vdso]") || !strcmp(p, "[vsyscall]");
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* ---------- host compatibility ---------- */

static void host_compat(struct compat *c)
{
	memset(c, 0, sizeof *c);
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	c->xcr0 = (uint64_t)hi << 32 | lo;
	unsigned a, b, cc, d;
	__cpuid_count(0xd, 0, a, b, cc, d);
	c->xsave_len = b;
	__cpuid(1, a, b, cc, d);
	c->cpuid[0] = cc & ~(1u << 31 | 1u << 27);	/* hypervisor, OSXSAVE: not features */
	c->cpuid[1] = d;
	__cpuid_count(7, 0, a, b, cc, d);
	c->cpuid[2] = b;
	c->cpuid[3] = cc;
	c->cpuid[4] = d;
	struct vma *v;
	int n = parse_maps(getpid(), &v);
	for (int i = 0; i < n; i++) {
		uint32_t len = v[i].end - v[i].start;
		if (!strcmp(v[i].path, "[vvar]")) c->vvar_len = len;
		else if (!strcmp(v[i].path, "[vvar_vclock]")) c->vclock_len = len;
		else if (!strcmp(v[i].path, "[vdso]")) { c->vdso_len = len; c->vdso_crc = crc32c(0, (void *)v[i].start, len); }
	}
	if (n > 0) free(v);
	struct utsname u;
	uname(&u);
	snprintf(c->release, sizeof c->release, "%s", u.release);
	char b2[40];
	if (read_file("/proc/sys/kernel/random/boot_id", b2, sizeof b2) > 0) { b2[strcspn(b2, "\n")] = 0; snprintf(c->boot_id, sizeof c->boot_id, "%s", b2); }
}

static void compat_line(const struct compat *c, char *out, size_t cap)
{
	snprintf(out, cap, "xcr0=%#llx,xsave=%u,cpuid=%x.%x.%x.%x.%x,vdso=%u.%u.%u.%08x", (unsigned long long)c->xcr0, c->xsave_len,
		 c->cpuid[0], c->cpuid[1], c->cpuid[2], c->cpuid[3], c->cpuid[4], c->vvar_len, c->vclock_len, c->vdso_len, c->vdso_crc);
}

static int compat_parse(const char *s, struct compat *c)
{
	memset(c, 0, sizeof *c);
	unsigned long long x;
	if (sscanf(s, "xcr0=%llx,xsave=%u,cpuid=%x.%x.%x.%x.%x,vdso=%u.%u.%u.%x", &x, &c->xsave_len, &c->cpuid[0], &c->cpuid[1], &c->cpuid[2],
		   &c->cpuid[3], &c->cpuid[4], &c->vvar_len, &c->vclock_len, &c->vdso_len, &c->vdso_crc) != 11)
		return fail(EINVAL, "bad host info string '%s'", s);
	c->xcr0 = x;
	return 0;
}

/* Can an image recorded on `img` run on `host`? Prints REASON lines, returns the count. */
static int compat_check(const struct compat *img, const struct compat *host, int print)
{
	int n = 0;
	if (img->xcr0 & ~host->xcr0) {
		n++;
		if (print) ctlf("REASON xstate image uses XSAVE features %#llx that the target CPU lacks (target XCR0 %#llx)",
				(unsigned long long)(img->xcr0 & ~host->xcr0), (unsigned long long)host->xcr0);
	}
	static const char *leaf[5] = { "1.ecx", "1.edx", "7.ebx", "7.ecx", "7.edx" };
	for (int i = 0; i < 5; i++)
		if (img->cpuid[i] & ~host->cpuid[i]) {
			n++;
			if (print) ctlf("REASON cpu-features target CPU lacks CPUID %s bits %#x used on the source", leaf[i], img->cpuid[i] & ~host->cpuid[i]);
		}
	if (img->vvar_len != host->vvar_len || img->vclock_len != host->vclock_len || img->vdso_len != host->vdso_len || img->vdso_crc != host->vdso_crc) {
		n++;
		if (print) ctlf("REASON vdso target kernel's vDSO differs (image %u/%u/%u bytes crc %08x, target %u/%u/%u crc %08x)", img->vvar_len,
				img->vclock_len, img->vdso_len, img->vdso_crc, host->vvar_len, host->vclock_len, host->vdso_len, host->vdso_crc);
	}
	return n;
}

/* ---------- tracee and syscall injection ---------- */

struct tracee {
	pid_t pid;
	int memfd;
	uint64_t sc_ip;
	struct user_regs_struct regs0;
	int npend;
	int pend[16];
	int dead;
	long ninject;
};

static int twait(struct tracee *t, int *st)
{
	for (;;) {
		pid_t r = waitpid(t->pid, st, __WALL);
		if (r < 0) {
			if (errno == EINTR) continue;
			return fail(errno, "waitpid(%d): %s", t->pid, strerror(errno));
		}
		if (WIFEXITED(*st) || WIFSIGNALED(*st)) {
			t->dead = 1;
			if (WIFEXITED(*st)) return fail(ESRCH, "process %d exited (status %d) while being worked on", t->pid, WEXITSTATUS(*st));
			return fail(ESRCH, "process %d was killed by signal %d while being worked on", t->pid, WTERMSIG(*st));
		}
		return 0;
	}
}

static void add_pending(struct tracee *t, int sig)
{
	for (int i = 0; i < t->npend; i++) if (t->pend[i] == sig) return;
	if (t->npend < 16) t->pend[t->npend++] = sig;
}

static int is_sync_fault(int sig, const siginfo_t *si)
{
	return (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS) && si->si_code > 0;
}

static int inject(struct tracee *t, long nr, long a1, long a2, long a3, long a4, long a5, long a6, long *ret)
{
	struct user_regs_struct r = t->regs0;
	r.rip = t->sc_ip;
	r.rax = nr;
	r.orig_rax = -1;
	r.rdi = a1; r.rsi = a2; r.rdx = a3; r.r10 = a4; r.r8 = a5; r.r9 = a6;
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	for (int phase = 0; phase < 2; phase++) {
		if (ptrace(PTRACE_SYSCALL, t->pid, 0, 0)) return fail(errno, "PTRACE_SYSCALL: %s", strerror(errno));
		for (;;) {
			int st, e = twait(t, &st);
			if (e) return e;
			int sig = WSTOPSIG(st), ev = st >> 16;
			if (sig == (SIGTRAP | 0x80)) break;
			if (ev == 0) {
				siginfo_t si;
				memset(&si, 0, sizeof si);
				ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si);
				if (is_sync_fault(sig, &si))
					return fail(EFAULT, "synchronous signal %d (code %d, addr %p) during injected syscall %ld: aborted", sig, si.si_code, si.si_addr, nr);
				add_pending(t, sig);
			}
			if (ptrace(PTRACE_SYSCALL, t->pid, 0, 0)) return fail(errno, "PTRACE_SYSCALL: %s", strerror(errno));
		}
	}
	if (ptrace(PTRACE_GETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_GETREGS: %s", strerror(errno));
	t->ninject++;
	*ret = r.rax;
	return 0;
}

#define INJ(t, ret, nr, ...) inject_v(t, ret, nr, #nr, (long[6]){ __VA_ARGS__ })
static int inject_v(struct tracee *t, long *ret, long nr, const char *name, long a[6])
{
	long rv;
	int e = inject(t, nr, a[0], a[1], a[2], a[3], a[4], a[5], &rv);
	if (e) return e;
	if (ret) *ret = rv;
	if (rv < 0 && rv > -4096) return fail(-rv, "injected %s failed: %s", name, strerror(-rv));
	return 0;
}

static int mem_write(struct tracee *t, uint64_t addr, const void *p, size_t n)
{
	while (n) {
		ssize_t r = pwrite(t->memfd, p, n, addr);
		if (r <= 0) {
			if (r < 0 && errno == EINTR) continue;
			return fail(r < 0 ? errno : EIO, "writing process memory at %#lx: %s", addr, r < 0 ? strerror(errno) : "short write");
		}
		p = (const char *)p + r; addr += r; n -= r;
	}
	return 0;
}

static int mem_read(struct tracee *t, uint64_t addr, void *p, size_t n)
{
	while (n) {
		ssize_t r = pread(t->memfd, p, n, addr);
		if (r <= 0) {
			if (r < 0 && errno == EINTR) continue;
			return fail(r < 0 ? errno : EIO, "reading process memory at %#lx: %s", addr, r < 0 ? strerror(errno) : "short read");
		}
		p = (char *)p + r; addr += r; n -= r;
	}
	return 0;
}

static int open_mem(struct tracee *t)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/mem", t->pid);
	t->memfd = open(fn, O_RDWR | O_CLOEXEC);
	if (t->memfd < 0) return fail(errno, "open %s: %s", fn, strerror(errno));
	return 0;
}

/* finds the vDSO in the tracee and a `syscall` instruction in it */
static int find_vdso(struct tracee *t, uint64_t *vvar, uint64_t *vclock, uint64_t *vdso)
{
	struct vma *v;
	int n = parse_maps(t->pid, &v);
	if (n < 0) return n;
	*vvar = *vclock = *vdso = 0;
	uint64_t vlen = 0;
	for (int i = 0; i < n; i++) {
		if (!strcmp(v[i].path, "[vvar]")) *vvar = v[i].start;
		if (!strcmp(v[i].path, "[vvar_vclock]")) *vclock = v[i].start;
		if (!strcmp(v[i].path, "[vdso]")) { *vdso = v[i].start; vlen = v[i].end - v[i].start; }
	}
	free(v);
	if (!*vdso) return fail(ENOTSUP, "process %d has no vDSO", t->pid);
	uint8_t *buf = malloc(vlen);
	int e = mem_read(t, *vdso, buf, vlen);
	if (!e) {
		e = fail(ENOTSUP, "no syscall instruction in the vDSO");
		for (uint64_t i = 0; i + 1 < vlen; i++)
			if (buf[i] == 0x0f && buf[i + 1] == 0x05) { t->sc_ip = *vdso + i; g_err[0] = 0; g_errno = 0; e = 0; break; }
	}
	free(buf);
	return e;
}

static void fix_restart(struct user_regs_struct *r, int live)
{
	if ((long)r->orig_rax >= 0) {
		long rv = (long)r->rax;
		if (rv == -512 || rv == -513 || rv == -514) { r->rax = r->orig_rax; r->rip -= 2; }
		else if (rv == -516) { r->rax = live ? 219 : r->orig_rax; r->rip -= 2; }
	}
	r->orig_rax = -1;
}

/* puts the original back exactly as it was and lets it go */
static void release_live(struct tracee *t)
{
	if (t->dead) return;
	struct user_regs_struct r = t->regs0;
	fix_restart(&r, 1);
	ptrace(PTRACE_SETREGS, t->pid, 0, &r);
	int first = t->npend ? t->pend[0] : 0;
	ptrace(PTRACE_DETACH, t->pid, 0, first);
	for (int i = 1; i < t->npend; i++) kill(t->pid, t->pend[i]);
}

static int seize(struct tracee *t, pid_t pid, long opts)
{
	memset(t, 0, sizeof *t);
	t->pid = pid;
	t->memfd = -1;
	if (ptrace(PTRACE_SEIZE, pid, 0, opts)) return fail(errno == EPERM ? EPERM : errno, "PTRACE_SEIZE %d: %s", pid, strerror(errno));
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) return fail(errno, "PTRACE_INTERRUPT: %s", strerror(errno));
	for (;;) {
		int st, e = twait(t, &st);
		if (e) return e;
		int sig = WSTOPSIG(st), ev = st >> 16;
		if (ev == PTRACE_EVENT_STOP) {
			if (sig != SIGTRAP) {
				ptrace(PTRACE_DETACH, pid, 0, 0);
				return fail(EAGAIN, "process %d is stopped (job control)", pid);
			}
			break;
		}
		if (ev == 0) add_pending(t, sig);
		if (ptrace(PTRACE_CONT, pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	}
	if (ptrace(PTRACE_GETREGS, pid, 0, &t->regs0)) return fail(errno, "PTRACE_GETREGS: %s", strerror(errno));
	return open_mem(t);
}

/* ---------- can't-move analysis ---------- */

static int reason(int print, const char *code, const char *fmt, ...)
{
	if (print) {
		char b[600];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b, sizeof b, fmt, ap);
		va_end(ap);
		ctlf("REASON %s %s", code, b);
	}
	return 1;
}

static int stat_fields(pid_t pid, unsigned long long *f, int nf)
{
	char fn[64], buf[4096];
	snprintf(fn, sizeof fn, "/proc/%d/stat", pid);
	if (read_file(fn, buf, sizeof buf) <= 0) return -1;
	char *p = strrchr(buf, ')');
	if (!p) return -1;
	p += 2;
	memset(f, 0, nf * sizeof *f);
	for (int i = 3; i < nf && *p; i++) {
		if (i == 3) f[i] = *p;
		else f[i] = strtoull(p, NULL, 10);
		p = strchr(p, ' ');
		if (!p) break;
		p++;
	}
	return 0;
}

static int ok_chrdev(const char *p)
{
	return !strcmp(p, "/dev/null") || !strcmp(p, "/dev/zero") || !strcmp(p, "/dev/full") || !strcmp(p, "/dev/random") || !strcmp(p, "/dev/urandom");
}

static int shmem_shared_elsewhere(pid_t pid, uint64_t ino)
{
	DIR *d = opendir("/proc");
	if (!d) return 0;
	struct dirent *de;
	int found = 0;
	while (!found && (de = readdir(d))) {
		if (!isdigit(de->d_name[0])) continue;
		pid_t o = atoi(de->d_name);
		if (o == pid) continue;
		char fn[64];
		snprintf(fn, sizeof fn, "/proc/%d/maps", o);
		FILE *f = fopen(fn, "re");
		if (!f) continue;
		char line[512];
		while (fgets(line, sizeof line, f)) {
			unsigned long s, e2, off, i;
			unsigned ma, mi;
			char perms[8];
			if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &s, &e2, perms, &off, &ma, &mi, &i) == 7 && i == ino && perms[3] == 's' && strstr(line, "(deleted)")) { found = 1; break; }
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

static int ns_differs(pid_t pid, const char *ns)
{
	char a[64], b[64];
	struct stat sa, sb;
	snprintf(a, sizeof a, "/proc/%d/ns/%s", pid, ns);
	snprintf(b, sizeof b, "/proc/self/ns/%s", ns);
	if (stat(a, &sa) || stat(b, &sb)) return 0;
	return sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev;
}

/* Prints one REASON line per obstacle; returns the number of obstacles. Touches nothing. */
static int check_pid(pid_t pid, int print)
{
	int n = 0;
	char fn[PATH_MAX], st[8192], v[256];
	if (pid <= 1 || pid == getpid() || pid == getppid()) return reason(print, "self", "pid %d is init, the engine itself or its caller", pid);
	snprintf(fn, sizeof fn, "/proc/%d/status", pid);
	if (read_file(fn, st, sizeof st) <= 0) return reason(print, "no-process", "no process %d", pid);
	unsigned long long f[52];
	if (stat_fields(pid, f, 52) == 0) {
		if (f[9] & 0x00200000) return reason(print, "kernel-thread", "pid %d is a kernel thread", pid);
		if (f[3] == 'Z' || f[3] == 'X') return reason(print, "zombie", "process %d has exited (zombie)", pid);
		if (f[3] == 'T') n += reason(print, "stopped", "process is stopped (job control)");
		if (f[41] == 1 || f[41] == 2 || f[41] == 6) n += reason(print, "realtime", "process uses real-time scheduling (policy %llu)", f[41]);
	}
	if (!status_field(st, "Threads", v, sizeof v) && atoi(v) > 1) n += reason(print, "threads", "process has %d threads (only single-threaded processes can move)", atoi(v));
	if (!status_field(st, "TracerPid", v, sizeof v) && atoi(v) != 0) n += reason(print, "traced", "process is already traced by pid %d", atoi(v));
	if (!status_field(st, "VmLck", v, sizeof v) && atoi(v) != 0) n += reason(print, "locked-memory", "process has locked memory (VmLck %s)", v);
	if (!status_field(st, "Seccomp", v, sizeof v) && atoi(v) == 1) n += reason(print, "seccomp-strict", "process is in strict seccomp mode");
	snprintf(fn, sizeof fn, "/proc/%d/task/%d/children", pid, pid);
	if (read_file(fn, v, sizeof v) > 0 && strspn(v, " \n") != strlen(v)) n += reason(print, "children", "process has child processes (%.40s)", v);
	static const char *nss[] = { "mnt", "pid", "net", "user", "ipc", "uts", "cgroup" };
	for (unsigned i = 0; i < sizeof nss / sizeof *nss; i++)
		if (ns_differs(pid, nss[i])) n += reason(print, "namespace", "process is in a different %s namespace", nss[i]);
	char lk[PATH_MAX];
	snprintf(fn, sizeof fn, "/proc/%d/exe", pid);
	ssize_t ll = readlink(fn, lk, sizeof lk - 1);
	if (ll > 0) { lk[ll] = 0; if (ends_with(lk, " (deleted)")) n += reason(print, "exe-deleted", "its executable %s was deleted or replaced", lk); }
	snprintf(fn, sizeof fn, "/proc/%d/cwd", pid);
	ll = readlink(fn, lk, sizeof lk - 1);
	if (ll > 0) { lk[ll] = 0; if (ends_with(lk, " (deleted)")) n += reason(print, "cwd-deleted", "its working directory %s was deleted", lk); }
	snprintf(fn, sizeof fn, "/proc/%d/timers", pid);
	if (read_file(fn, v, sizeof v) > 0) n += reason(print, "posix-timers", "process has POSIX timers");

	struct vma *m;
	int nm = parse_maps(pid, &m);
	if (nm < 0) { g_err[0] = 0; return n + reason(print, "no-process", "cannot read the memory map of %d", pid); }
	for (int i = 0; i < nm; i++) {
		const char *p = m[i].path;
		if (!p[0] || p[0] == '[') continue;
		if (!strncmp(p, "/SYSV", 5)) { n += reason(print, "sysv-shm", "SysV shared memory at %#lx", m[i].start); continue; }
		if (!strncmp(p, "anon_inode:", 11)) { n += reason(print, "device-mapping", "special mapping %s at %#lx", p, m[i].start); continue; }
		if (!strncmp(p, "/anon_hugepage", 14)) { n += reason(print, "hugetlb", "huge-page mapping at %#lx", m[i].start); continue; }
		if (ends_with(p, " (deleted)")) {
			if (m[i].shared && shmem_shared_elsewhere(pid, m[i].ino))
				n += reason(print, "shared-memory", "memory at %#lx (%s) is shared with another process", m[i].start, p);
			continue;
		}
		struct stat sb;
		if (stat(p, &sb) == 0 && (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode)))
			n += reason(print, "device-mapping", "device %s mapped at %#lx", p, m[i].start);
	}
	free(m);

	snprintf(fn, sizeof fn, "/proc/%d/fd", pid);
	DIR *d = opendir(fn);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!isdigit(de->d_name[0])) continue;
			int fd = atoi(de->d_name);
			char lp[PATH_MAX], tgt[PATH_MAX];
			snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, fd);
			ssize_t l = readlink(lp, tgt, sizeof tgt - 1);
			if (l < 0) continue;
			tgt[l] = 0;
			if (fd <= 2) continue;	/* stdio is inherited from the restorer or relayed by the deputy */
			struct stat sb;
			if (stat(lp, &sb)) { n += reason(print, "fd-other", "fd %d (%s) cannot be examined", fd, tgt); continue; }
			if (S_ISSOCK(sb.st_mode)) n += reason(print, "fd-socket", "fd %d is a socket (%s)", fd, tgt);
			else if (S_ISFIFO(sb.st_mode) && tgt[0] != '/') n += reason(print, "fd-pipe", "fd %d is an unnamed pipe (%s)", fd, tgt);
			else if (S_ISCHR(sb.st_mode) && !ok_chrdev(tgt)) n += reason(print, "fd-device", "fd %d is a device (%s)", fd, tgt);
			else if (S_ISBLK(sb.st_mode)) n += reason(print, "fd-device", "fd %d is a block device (%s)", fd, tgt);
			else if (tgt[0] != '/') n += reason(print, "fd-other", "fd %d is an unsupported descriptor (%s)", fd, tgt);
			else if (ends_with(tgt, " (deleted)")) n += reason(print, "fd-deleted", "fd %d refers to a deleted file (%s)", fd, tgt);
		}
		closedir(d);
	}
	return n;
}

/* ---------- dump ---------- */

static int read_core_proc(pid_t pid, struct img_core *c)
{
	char fn[PATH_MAX], buf[8192], v[256];
	unsigned long long f[52];
	if (stat_fields(pid, f, 52)) return fail(ESRCH, "cannot read /proc/%d/stat", pid);
	c->mm[0] = f[26]; c->mm[1] = f[27]; c->mm[2] = f[45]; c->mm[3] = f[46]; c->mm[4] = f[47];
	c->mm[6] = f[28]; c->mm[7] = f[48]; c->mm[8] = f[49]; c->mm[9] = f[50]; c->mm[10] = f[51];
	snprintf(fn, sizeof fn, "/proc/%d/auxv", pid);
	ssize_t l = read_file(fn, (char *)c->auxv, sizeof c->auxv);
	if (l <= 0) return fail(EIO, "cannot read %s", fn);
	c->auxv_len = l & ~15;
	snprintf(fn, sizeof fn, "/proc/%d/exe", pid);
	l = readlink(fn, c->exe, sizeof c->exe - 1);
	if (l < 0) return fail(errno, "readlink %s: %s", fn, strerror(errno));
	c->exe[l] = 0;
	if (ends_with(c->exe, " (deleted)")) return fail(ENOENT, "the executable %s was deleted", c->exe);
	struct stat sb;
	if (stat(c->exe, &sb) == 0) { c->exe_size = sb.st_size; c->exe_mtime_s = sb.st_mtim.tv_sec; c->exe_mtime_ns = sb.st_mtim.tv_nsec; }
	snprintf(fn, sizeof fn, "/proc/%d/cwd", pid);
	l = readlink(fn, c->cwd, sizeof c->cwd - 1);
	if (l < 0) return fail(errno, "readlink %s: %s", fn, strerror(errno));
	c->cwd[l] = 0;
	snprintf(fn, sizeof fn, "/proc/%d/status", pid);
	if (read_file(fn, buf, sizeof buf) <= 0) return fail(ESRCH, "cannot read %s", fn);
	if (!status_field(buf, "Umask", v, sizeof v)) c->umask = strtoul(v, NULL, 8);
	if (!status_field(buf, "Uid", v, sizeof v)) sscanf(v, "%u %u %u %u", &c->uid[0], &c->uid[1], &c->uid[2], &c->uid[3]);
	if (!status_field(buf, "Gid", v, sizeof v)) sscanf(v, "%u %u %u %u", &c->gid[0], &c->gid[1], &c->gid[2], &c->gid[3]);
	if (!status_field(buf, "NoNewPrivs", v, sizeof v)) c->nnp = atoi(v);
	if (!status_field(buf, "Groups", v, sizeof v)) {
		char *p = v;
		while (*p && c->ngroups < 32) {
			char *e;
			unsigned long g = strtoul(p, &e, 10);
			if (e == p) break;
			c->groups[c->ngroups++] = g;
			p = e;
		}
	}
	snprintf(fn, sizeof fn, "/proc/%d/comm", pid);
	if (read_file(fn, v, sizeof v) > 0) { v[strcspn(v, "\n")] = 0; memcpy(c->comm, v, 15); c->comm[15] = 0; }
	snprintf(fn, sizeof fn, "/proc/%d/personality", pid);
	if (read_file(fn, v, sizeof v) > 0) c->personality = strtoul(v, NULL, 16);
	return 0;
}

static int read_fds(pid_t pid, struct img_fd **out)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/fd", pid);
	DIR *d = opendir(fn);
	if (!d) return fail(errno, "opendir %s: %s", fn, strerror(errno));
	int n = 0, cap = 16;
	struct img_fd *v = calloc(cap, sizeof *v);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!isdigit(de->d_name[0])) continue;
		if (n == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
		struct img_fd *f = &v[n];
		memset(f, 0, sizeof *f);
		f->fd = atoi(de->d_name);
		char lp[128], info[1024], val[64];
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, f->fd);
		ssize_t l = readlink(lp, f->path, sizeof f->path - 1);
		if (l < 0) continue;
		f->path[l] = 0;
		f->pathlen = l + 1;
		snprintf(lp, sizeof lp, "/proc/%d/fdinfo/%d", pid, f->fd);
		if (read_file(lp, info, sizeof info) <= 0) continue;
		if (!status_field(info, "pos", val, sizeof val)) f->pos = strtoull(val, NULL, 10);
		if (!status_field(info, "flags", val, sizeof val)) f->flags = strtoul(val, NULL, 8);
		struct stat sb;
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, f->fd);
		if (stat(lp, &sb)) { f->kind = F_INHERIT; }
		else if (S_ISREG(sb.st_mode) && f->path[0] == '/') { f->kind = F_FILE; f->size = sb.st_size; }
		else if (S_ISDIR(sb.st_mode)) f->kind = F_DIR;
		else if (S_ISCHR(sb.st_mode) && ok_chrdev(f->path)) f->kind = F_CHR;
		else if (S_ISFIFO(sb.st_mode) && f->path[0] == '/') f->kind = F_FIFO;
		else f->kind = F_INHERIT;
		if (f->kind == F_INHERIT && f->fd > 2) { int r = fail(ENOTSUP, "fd %d (%s) cannot be moved", f->fd, f->path); free(v); closedir(d); return r; }
		n++;
	}
	closedir(d);
	*out = v;
	return n;
}

static int dump_pages_run(struct imgw *w, struct tracee *t, uint8_t *buf, uint64_t addr, uint64_t len)
{
	int e = mem_read(t, addr, buf + 16, len);
	if (e) return e;
	uint64_t hdr[2] = { addr, len };
	memcpy(buf, hdr, 16);
	w->pages += len / PAGE;
	return rec_put(w, R_PAGES, buf, 16 + len, NULL, 0);
}

static int dump_vma_pages(struct imgw *w, struct tracee *t, int pmfd, const struct img_vma *v, uint8_t *buf)
{
	if (v->kind == K_FILE_SHARED) return 0;
	uint64_t np = (v->end - v->start) / PAGE, run_start = 0, run_len = 0;
	uint64_t pm[4096];
	for (uint64_t i = 0; i < np; i += 4096) {
		uint64_t cnt = np - i < 4096 ? np - i : 4096;
		int all = v->kind == K_SHMEM || v->kind == K_FULL;
		if (!all) {
			ssize_t r = pread(pmfd, pm, cnt * 8, (v->start / PAGE + i) * 8);
			if (r != (ssize_t)(cnt * 8)) return fail(EIO, "reading pagemap at %#lx", v->start + i * PAGE);
		}
		for (uint64_t k = 0; k < cnt; k++) {
			int want;
			if (all) want = 1;
			else {
				uint64_t e = pm[k];
				int present = (e >> 63) & 1, swapped = (e >> 62) & 1, filepage = (e >> 61) & 1;
				want = swapped || (present && (v->kind != K_FILE_PRIV || !filepage));
			}
			uint64_t a = v->start + (i + k) * PAGE;
			if (want && run_len && run_start + run_len == a && run_len < CHUNK) { run_len += PAGE; continue; }
			if (run_len) { int e = dump_pages_run(w, t, buf, run_start, run_len); if (e) return e; run_len = 0; }
			if (want) { run_start = a; run_len = PAGE; }
		}
	}
	if (run_len) return dump_pages_run(w, t, buf, run_start, run_len);
	return 0;
}

struct dumpres { struct img_core core; int nvma; struct img_vma *vmas; double freeze_ms; };

/* Dumps the seized, stopped tracee into the image. Leaves the tracee stopped (regs untouched). */
static int dump_image(struct tracee *t, int imgfd, const char *target, struct dumpres *res)
{
	pid_t pid = t->pid;
	struct img_core *c = &res->core;
	memset(c, 0, sizeof *c);
	c->regs = t->regs0;
	static uint8_t xs[16384];
	struct iovec xiov = { xs, sizeof xs };
	if (ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &xiov)) return fail(errno, "PTRACE_GETREGSET NT_X86_XSTATE: %s", strerror(errno));
	if (ptrace(PTRACE_GETSIGMASK, pid, 8, &c->sigmask)) return fail(errno, "PTRACE_GETSIGMASK: %s", strerror(errno));
	struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rs = { 0 };
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, sizeof rs, &rs) > 0 && rs.ptr) { c->rseq_ptr = rs.ptr; c->rseq_len = rs.size; c->rseq_sig = rs.sig; }
	/* seccomp filters, newest first */
	struct sock_filter_ { uint16_t code; uint8_t jt, jf; uint32_t k; };
	static struct sock_filter_ filt[8][4096];
	static uint32_t nins[8];
	for (int i = 0; i < 8; i++) {
		long r = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, NULL);
		if (r < 0) { if (errno == ENOENT) break; if (errno == EINVAL && i == 0) break; return fail(errno, "PTRACE_SECCOMP_GET_FILTER: %s", strerror(errno)); }
		if (r > 4096) return fail(ENOTSUP, "seccomp filter too large (%ld instructions)", r);
		nins[i] = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, filt[i]);
		c->nfilters = i + 1;
	}
	if (c->nfilters == 8 && ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 8, NULL) >= 0) return fail(ENOTSUP, "more than 8 seccomp filters");
	int e = find_vdso(t, &c->vvar, &c->vclock, &c->vdso);
	if (e) return e;
	/* signal handlers and brk through injection, into a scratch page that is removed again */
	long scratch;
	e = INJ(t, &scratch, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e) return e;
	for (int s = 1; s <= 64 && !e; s++) {
		if (s == SIGKILL || s == SIGSTOP) continue;
		e = INJ(t, NULL, SYS_rt_sigaction, s, 0, scratch, 8, 0, 0);
		if (!e) e = mem_read(t, scratch, &c->act[s], sizeof c->act[s]);
	}
	for (int w = 0; w < 3 && !e; w++) {
		e = INJ(t, NULL, SYS_getitimer, w, scratch, 0, 0, 0, 0);
		if (!e) e = mem_read(t, scratch, c->itimer[w], sizeof c->itimer[w]);
	}
	if (!e) e = INJ(t, NULL, SYS_sigaltstack, 0, scratch, 0, 0, 0, 0);
	if (!e) {
		struct { uint64_t sp; int32_t flags, pad; uint64_t size; } ss;
		e = mem_read(t, scratch, &ss, sizeof ss);
		c->ss_sp = ss.sp; c->ss_flags = ss.flags; c->ss_size = ss.size;
	}
	long brk = 0;
	if (!e) e = INJ(t, &brk, SYS_brk, 0, 0, 0, 0, 0, 0);
	int e2 = INJ(t, NULL, SYS_munmap, scratch, PAGE, 0, 0, 0, 0);
	if (e || e2) return e ? e : e2;
	c->mm[5] = brk;
	e = read_core_proc(pid, c);
	if (e) return e;
	/* signals the tracee did not take yet: those caught while stopping it, then the kernel's
	 * pending sets (blocked signals stay pending; siginfo and repeated instances are not kept) */
	c->npend = t->npend;
	memcpy(c->pend, t->pend, sizeof c->pend);
	{
		char fn2[64], st[8192], v[64];
		snprintf(fn2, sizeof fn2, "/proc/%d/status", pid);
		if (read_file(fn2, st, sizeof st) > 0) {
			uint64_t m = 0;
			if (!status_field(st, "SigPnd", v, sizeof v)) m |= strtoull(v, NULL, 16);
			if (!status_field(st, "ShdPnd", v, sizeof v)) m |= strtoull(v, NULL, 16);
			for (int sg = 1; sg <= 64 && c->npend < 16; sg++) {
				if (!(m >> (sg - 1) & 1)) continue;
				int dup = 0;
				for (uint32_t k = 0; k < c->npend; k++) dup |= c->pend[k] == sg;
				if (!dup) c->pend[c->npend++] = sg;
			}
		}
	}

	struct img_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, IMG_MAGIC, 8);
	h.version = IMG_VERSION;
	h.hdr_size = sizeof h;
	host_compat(&h.c);
	h.c.xsave_len = xiov.iov_len;
	memcpy(&h.c.xcr0, xs + 464, 8);
	h.pid = pid;
	char fn[PATH_MAX], buf[512];
	snprintf(fn, sizeof fn, "/proc/%d/timens_offsets", pid);
	if (read_file(fn, buf, sizeof buf) > 0) {
		for (char *p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
			char name[32]; long long s, ns;
			if (sscanf(p, "%31s %lld %lld", name, &s, &ns) == 3) {
				if (!strcmp(name, "monotonic") || !strcmp(name, "1")) h.mono_off_ns = s * 1000000000LL + ns;
				if (!strcmp(name, "boottime") || !strcmp(name, "7")) h.boot_off_ns = s * 1000000000LL + ns;
			}
		}
	}
	h.mono_ns = clock_ns(CLOCK_MONOTONIC) + h.mono_off_ns;
	h.boot_ns = clock_ns(CLOCK_BOOTTIME) + h.boot_off_ns;
	if (target) {
		struct compat tc;
		if ((e = compat_parse(target, &tc))) return e;
		if (compat_check(&h.c, &tc, 1)) return fail(ENOTSUP, "the target host cannot run this process faithfully");
	}

	struct vma *m;
	int nm = parse_maps(pid, &m);
	if (nm < 0) return nm;
	struct img_fd *fds = NULL;
	int nfd = read_fds(pid, &fds);
	if (nfd < 0) { free(m); return nfd; }
	struct img_vma *vm = calloc(nm, sizeof *vm);
	int nv = 0;
	for (int i = 0; i < nm; i++) {
		if (is_special(m[i].path)) continue;
		struct img_vma *v = &vm[nv++];
		v->start = m[i].start; v->end = m[i].end; v->pgoff = m[i].pgoff; v->prot = m[i].prot;
		const char *p = m[i].path;
		if (!p[0] || !strcmp(p, "[heap]") || !strncmp(p, "[anon", 5)) v->kind = m[i].shared ? K_SHMEM : K_ANON;
		else if (!strcmp(p, "[stack]")) v->kind = K_STACK;
		else if (ends_with(p, " (deleted)") || p[0] != '/') v->kind = m[i].shared ? K_SHMEM : K_FULL;
		else {
			struct stat sb;
			if (stat(p, &sb) || sb.st_ino != m[i].ino) v->kind = m[i].shared ? K_SHMEM : K_FULL; /* replaced file: keep the data */
			else {
				v->kind = m[i].shared ? K_FILE_SHARED : K_FILE_PRIV;
				v->fsize = sb.st_size; v->mtime_s = sb.st_mtim.tv_sec; v->mtime_ns = sb.st_mtim.tv_nsec;
			}
		}
		if (v->kind == K_FILE_SHARED || v->kind == K_FILE_PRIV) { snprintf(v->path, sizeof v->path, "%s", p); v->pathlen = strlen(p) + 1; }
		else if (!strcmp(p, "[heap]") || !strcmp(p, "[stack]")) { snprintf(v->path, sizeof v->path, "%s", p); v->pathlen = strlen(p) + 1; }
	}
	free(m);

	int fl = fcntl(imgfd, F_GETFL);
	struct stat isb;
	if (fstat(imgfd, &isb) == 0 && S_ISFIFO(isb.st_mode)) fcntl(imgfd, F_SETPIPE_SZ, 1 << 20);
	(void)fl;
	struct imgw w = { imgfd, 0, 0, 0 };
	e = rec_put(&w, R_HEADER, &h, sizeof h, NULL, 0);
	if (!e) e = rec_put(&w, R_CORE, c, sizeof *c, NULL, 0);
	if (!e) e = rec_put(&w, R_XSTATE, xs, xiov.iov_len, NULL, 0);
	for (int i = c->nfilters - 1; i >= 0 && !e; i--) e = rec_put(&w, R_SECCOMP, &nins[i], 4, filt[i], nins[i] * 8);
	for (int i = 0; i < nv && !e; i++) e = rec_put(&w, R_VMA, &vm[i], VMA_FIXED + vm[i].pathlen, NULL, 0);
	for (int i = 0; i < nfd && !e; i++) e = rec_put(&w, R_FD, &fds[i], FD_FIXED + fds[i].pathlen, NULL, 0);
	free(fds);
	if (!e) {
		snprintf(fn, sizeof fn, "/proc/%d/pagemap", pid);
		int pmfd = open(fn, O_RDONLY | O_CLOEXEC);
		if (pmfd < 0) e = fail(errno, "open %s: %s", fn, strerror(errno));
		uint8_t *pbuf = malloc(CHUNK + 16);
		double tp = now_ms();
		for (int i = 0; i < nv && !e; i++) e = dump_vma_pages(&w, t, pmfd, &vm[i], pbuf);
		if (!e) ctlf("STAT pages_ms=%.3f", now_ms() - tp);
		free(pbuf);
		if (pmfd >= 0) close(pmfd);
	}
	if (!e) {
		struct img_end end = { w.nrec, 0, w.bytes, w.pages };
		e = rec_put(&w, R_END, &end, sizeof end, NULL, 0);
	}
	if (e) { free(vm); return e; }
	res->nvma = nv;
	res->vmas = vm;
	ctlf("STAT bytes=%llu pages=%llu vmas=%d injections=%ld", (unsigned long long)w.bytes, (unsigned long long)w.pages, nv, t->ninject);
	return 0;
}

/* ---------- hollow deputy ---------- */

static int park(struct tracee *t)
{
	struct user_regs_struct r = t->regs0;
	r.rip = t->sc_ip;
	r.rax = SYS_pause;
	r.orig_rax = -1;
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	return 0;
}

/* Empties the (stopped) tracee: rseq unregistered, all memory but the vDSO group unmapped. */
static int hollow(struct tracee *t, int *touched)
{
	*touched = 0;
	uint64_t vvar, vclock, vdso;
	int e = find_vdso(t, &vvar, &vclock, &vdso);
	if (e) return e;
	struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rs = { 0 };
	/* HPC_PPM_TEST_FAULT=keep-rseq is a fault-injection hook for the tests: hollowing without
	 * unregistering rseq makes every return to user mode fault (spec §9.2), which must abort */
	const char *tf = getenv("HPC_PPM_TEST_FAULT");
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->pid, sizeof rs, &rs) > 0 && rs.ptr && !(tf && !strcmp(tf, "keep-rseq")))
		if ((e = INJ(t, NULL, NR_RSEQ, rs.ptr, rs.size, 1 /* RSEQ_FLAG_UNREGISTER */, rs.sig, 0, 0))) return e;
	struct vma *m;
	int nm = parse_maps(t->pid, &m);
	if (nm < 0) return nm;
	for (int i = 0; i < nm && !e; i++)
		if (!is_special(m[i].path)) { *touched = 1; e = INJ(t, NULL, SYS_munmap, m[i].start, m[i].end - m[i].start, 0, 0, 0, 0); }
	free(m);
	return e;
}

/* ---------- restore ---------- */

struct image {
	struct img_header h;
	struct img_core c;
	uint8_t xs[16384];
	uint32_t xlen;
	struct img_vma *vmas;
	int nvma;
	struct img_fd *fds;
	int nfd;
	uint8_t *filters[8];
	uint32_t nins[8];
	int nfilt;
};

static void free_image(struct image *im)
{
	free(im->vmas);
	free(im->fds);
	for (int i = 0; i < im->nfilt; i++) free(im->filters[i]);
	free(im);
}

/* reads the metadata records (everything before the first page record) */
static int read_meta(struct imgr *r, struct image **out)
{
	struct image *im = calloc(1, sizeof *im);
	struct rechdr h;
	int e = rec_hdr(r, &h);
	if (!e && h.type != R_HEADER) e = fail(EBADMSG, "not an hpc-ppm image (first record type %u)", h.type);
	if (!e && h.len < 16) e = fail(EBADMSG, "not an hpc-ppm image");
	if (!e) {
		uint8_t b[4096];
		e = rec_body(r, &h, b, sizeof b);
		if (!e && memcmp(b, IMG_MAGIC, 8)) e = fail(EBADMSG, "not an hpc-ppm image (bad magic)");
		if (!e) {
			memcpy(&im->h, b, sizeof im->h < h.len ? sizeof im->h : h.len);
			if (im->h.version != IMG_VERSION) e = fail(EPROTO, "image format version %u is not supported (this engine reads version %u)", im->h.version, IMG_VERSION);
			else if (h.len != sizeof im->h) e = fail(EBADMSG, "image header has the wrong size");
		}
	}
	int have_core = 0, have_xs = 0, cap_v = 0, cap_f = 0;
	while (!e) {
		uint32_t type;
		if ((e = rec_peek(r, &type))) break;
		if (type == R_PAGES || type == R_END) break;
		if ((e = rec_hdr(r, &h))) break;
		if (type == R_CORE) {
			if (h.len != sizeof im->c) { e = fail(EBADMSG, "core record has the wrong size"); break; }
			e = rec_body(r, &h, &im->c, sizeof im->c);
			have_core = 1;
		} else if (type == R_XSTATE) {
			e = rec_body(r, &h, im->xs, sizeof im->xs);
			im->xlen = h.len;
			have_xs = 1;
		} else if (type == R_SECCOMP) {
			if (im->nfilt == 8) { e = fail(EBADMSG, "too many seccomp filters"); break; }
			uint8_t *b = calloc(1, h.len + 4);
			e = rec_body(r, &h, b, h.len);
			memcpy(&im->nins[im->nfilt], b, 4);
			if (!e && (h.len < 4 || (uint64_t)im->nins[im->nfilt] * 8 + 4 != h.len)) e = fail(EBADMSG, "bad seccomp record");
			im->filters[im->nfilt++] = b;
		} else if (type == R_VMA) {
			if (im->nvma == cap_v) { cap_v = cap_v ? cap_v * 2 : 64; im->vmas = realloc(im->vmas, cap_v * sizeof *im->vmas); }
			struct img_vma *v = &im->vmas[im->nvma];
			memset(v, 0, sizeof *v);
			e = rec_body(r, &h, v, sizeof *v);
			if (!e && (h.len < VMA_FIXED || v->start >= v->end || v->start % PAGE || v->end % PAGE || v->end > TASK_TOP || v->kind < K_ANON || v->kind > K_FULL))
				e = fail(EBADMSG, "bad memory region record");
			v->path[sizeof v->path - 1] = 0;
			im->nvma++;
		} else if (type == R_FD) {
			if (im->nfd == cap_f) { cap_f = cap_f ? cap_f * 2 : 16; im->fds = realloc(im->fds, cap_f * sizeof *im->fds); }
			struct img_fd *f = &im->fds[im->nfd];
			memset(f, 0, sizeof *f);
			e = rec_body(r, &h, f, sizeof *f);
			if (!e && (h.len < FD_FIXED || f->fd < 0 || f->kind < F_FILE || f->kind > F_INHERIT)) e = fail(EBADMSG, "bad fd record");
			f->path[sizeof f->path - 1] = 0;
			im->nfd++;
		} else e = fail(EBADMSG, "unexpected record type %u in image metadata", type);
	}
	if (!e && (!have_core || !have_xs)) e = fail(EBADMSG, "image lacks its core or register state");
	if (e) { free_image(im); return e; }
	*out = im;
	return 0;
}

/* Everything that can be checked before any process is touched. Prints REASON lines. */
static int validate_image(struct image *im, int print)
{
	struct compat host;
	host_compat(&host);
	int n = compat_check(&im->h.c, &host, print);
	struct stat sb;
	if (stat(im->c.exe, &sb) || sb.st_size != (off_t)im->c.exe_size || sb.st_mtim.tv_sec != im->c.exe_mtime_s || sb.st_mtim.tv_nsec != im->c.exe_mtime_ns) {
		n++;
		if (print) ctlf("REASON file-mismatch executable %s is missing or differs from the one in the image", im->c.exe);
	}
	for (int i = 0; i < im->nvma; i++) {
		struct img_vma *v = &im->vmas[i];
		if (v->kind != K_FILE_PRIV && v->kind != K_FILE_SHARED) continue;
		if (stat(v->path, &sb) || (v->kind == K_FILE_PRIV && (sb.st_size != (off_t)v->fsize || sb.st_mtim.tv_sec != v->mtime_s || sb.st_mtim.tv_nsec != v->mtime_ns))) {
			n++;
			if (print) ctlf("REASON file-mismatch mapped file %s is missing or differs from the one in the image", v->path);
		}
	}
	for (int i = 0; i < im->nfd; i++) {
		struct img_fd *f = &im->fds[i];
		if (f->kind == F_INHERIT) continue;
		if (stat(f->path, &sb)) { n++; if (print) ctlf("REASON file-missing fd %d: %s does not exist here", f->fd, f->path); }
		else if (f->kind == F_FILE && !(f->flags & O_APPEND) && (uint64_t)sb.st_size < f->pos) {
			n++;
			if (print) ctlf("REASON file-mismatch fd %d: %s is shorter (%lld) than the saved offset %llu", f->fd, f->path, (long long)sb.st_size, (unsigned long long)f->pos);
		}
	}
	return n;
}

static int overlaps(uint64_t a, uint64_t al, uint64_t b, uint64_t bl) { return a < b + bl && b < a + al; }

/* an address range free in the image and in the target's current layout */
static uint64_t pick_free(struct image *im, struct vma *cur, int ncur, uint64_t len, uint64_t avoid, uint64_t avoid_len)
{
	for (uint64_t a = 0x100000000000UL; a < 0x700000000000UL; a += 0x10000000000UL) {
		int bad = overlaps(a, len, avoid, avoid_len);
		for (int i = 0; i < im->nvma && !bad; i++) bad = overlaps(a, len, im->vmas[i].start, im->vmas[i].end - im->vmas[i].start);
		for (int i = 0; i < ncur && !bad; i++) bad = overlaps(a, len, cur[i].start, cur[i].end - cur[i].start);
		if (im->c.vvar && overlaps(a, len, im->c.vvar, 0x100000)) bad = 1;
		if (im->c.vdso && overlaps(a, len, im->c.vdso - 0x100000, 0x200000)) bad = 1;
		if (!bad) return a;
	}
	return 0;
}

static int put_str(struct tracee *t, uint64_t addr, const char *s)
{
	return mem_write(t, addr, s, strlen(s) + 1);
}

struct prctl_mm_map_ {
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size, exe_fd;
};

static int restore_fds(struct tracee *t, struct image *im, uint64_t scr, int hollow)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/fd", t->pid);
	DIR *d = opendir(fn);
	if (!d) return fail(errno, "opendir %s", fn);
	int cur[1024], ncur = 0;
	struct dirent *de;
	while ((de = readdir(d)) && ncur < 1024) if (isdigit(de->d_name[0])) cur[ncur++] = atoi(de->d_name);
	closedir(d);
	int e = 0;
	/* close what the image does not have; keep inherited stdio where the image wants it */
	for (int i = 0; i < ncur && !e; i++) {
		int keep = 0;
		for (int k = 0; k < im->nfd; k++) if (im->fds[k].fd == cur[i] && im->fds[k].kind == F_INHERIT) keep = 1;
		if (!keep) e = INJ(t, NULL, SYS_close, cur[i], 0, 0, 0, 0, 0);
	}
	(void)hollow;
	for (int k = 0; k < im->nfd && !e; k++) {
		struct img_fd *f = &im->fds[k];
		if (f->kind == F_INHERIT) continue;
		int fl = f->flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
		if (f->kind == F_FIFO) fl |= O_NONBLOCK;
		long tmp;
		if ((e = put_str(t, scr, f->path))) break;
		if ((e = INJ(t, &tmp, SYS_openat, AT_FDCWD, scr, fl, 0, 0, 0))) { g_err[0] = 0; e = fail(-e, "reopening fd %d (%s): %s", f->fd, f->path, strerror(-e)); break; }
		if (tmp != f->fd) {
			e = INJ(t, NULL, SYS_dup3, tmp, f->fd, f->flags & O_CLOEXEC, 0, 0, 0);
			if (!e) e = INJ(t, NULL, SYS_close, tmp, 0, 0, 0, 0, 0);
		}
		if (!e && f->kind == F_FIFO) e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags, 0, 0, 0);
		if (!e && f->kind == F_FILE) e = INJ(t, NULL, SYS_lseek, f->fd, f->pos, SEEK_SET, 0, 0, 0);
	}
	return e;
}

/* Turns the stopped tracee (a fresh stub or a hollow original) into the image read from r.
 * On failure the tracee is left in an undefined state: the caller kills or re-hollows it. */
static int restore_into(struct tracee *t, struct image *im, struct imgr *r, int hollow, int eintr_policy)
{
	struct img_core *c = &im->c;
	uint64_t vvar, vclock, vdso;
	int e = find_vdso(t, &vvar, &vclock, &vdso);
	if (e) return e;
	struct vma *cur;
	int ncur = parse_maps(t->pid, &cur);
	if (ncur < 0) return ncur;
	uint64_t scr = pick_free(im, cur, ncur, SCRATCH_LEN, 0, 0);
	if (!scr) { free(cur); return fail(ENOMEM, "no free address for the scratch area"); }
	long rv;
	e = INJ(t, &rv, SYS_mmap, scr, SCRATCH_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (!e && (uint64_t)rv != scr) e = fail(EEXIST, "scratch area landed at %#lx", rv);
	/* 3. tear down */
	for (int i = 0; i < ncur && !e; i++)
		if (!is_special(cur[i].path)) e = INJ(t, NULL, SYS_munmap, cur[i].start, cur[i].end - cur[i].start, 0, 0, 0, 0);
	/* 4. move the vDSO group as a unit */
	if (!e && vdso != c->vdso) {
		struct { uint64_t from, to, len; } g[3];
		int ng = 0;
		for (int i = 0; i < ncur; i++) {
			uint64_t to = 0;
			if (!strcmp(cur[i].path, "[vvar]")) to = c->vvar;
			else if (!strcmp(cur[i].path, "[vvar_vclock]")) to = c->vclock;
			else if (!strcmp(cur[i].path, "[vdso]")) to = c->vdso;
			else continue;
			if (!to) { e = fail(ENOTSUP, "image has no %s", cur[i].path); break; }
			g[ng].from = cur[i].start; g[ng].to = to; g[ng].len = cur[i].end - cur[i].start; ng++;
		}
		if (!e && ng == 0) e = fail(ENOTSUP, "target has no vDSO group");
		if (e) ng = 0;
		uint64_t lo = ng ? g[0].from : 0, hi = !ng ? 0 : g[ng - 1].from + g[ng - 1].len;
		if (!e && ((vvar && vvar - vdso != c->vvar - c->vdso) || (vclock && vclock - vdso != c->vclock - c->vdso)))
			e = fail(ENOTSUP, "the vDSO group layout differs from the image's");
		uint64_t tmp = e ? 0 : pick_free(im, cur, ncur, hi - lo, scr, SCRATCH_LEN);
		if (!e && !tmp) e = fail(ENOMEM, "no free address to move the vDSO through");
		for (int i = 0; i < ng && !e; i++) e = INJ(t, NULL, SYS_mremap, g[i].from, g[i].len, g[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, tmp + (g[i].from - lo), 0);
		t->sc_ip = t->sc_ip - vdso + tmp + (vdso - lo);
		for (int i = 0; i < ng && !e; i++) e = INJ(t, NULL, SYS_mremap, tmp + (g[i].from - lo), g[i].len, g[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, g[i].to, 0);
		t->sc_ip = t->sc_ip - (tmp + (vdso - lo)) + c->vdso;
	}
	free(cur);
	/* 5. mm fields, auxv and exe link, before any file is mapped. A hollow original coming home
	 * has them already, except brk: an injected brk() sets that one without CAP_SYS_RESOURCE,
	 * which a non-root original lacks. */
	int mm_same = 0;
	if (hollow && !e) {
		struct img_core cur;
		memset(&cur, 0, sizeof cur);
		if (read_core_proc(t->pid, &cur) == 0) {
			mm_same = !strcmp(cur.exe, c->exe) && cur.auxv_len == c->auxv_len && !memcmp(cur.auxv, c->auxv, c->auxv_len);
			for (int i = 0; i < 11; i++) if (i != 5 && cur.mm[i] != c->mm[i]) mm_same = 0;
		}
		g_err[0] = 0; g_errno = 0;
	}
	if (!e && mm_same) {
		long nb;
		e = INJ(t, &nb, SYS_brk, c->mm[5], 0, 0, 0, 0, 0);
		if (!e && (uint64_t)nb != c->mm[5]) e = fail(ENOMEM, "brk(%#lx) gave %#lx", c->mm[5], nb);
	} else if (!e) {
		long exefd = -1;
		e = put_str(t, scr, c->exe);
		if (!e) e = INJ(t, &exefd, SYS_openat, AT_FDCWD, scr, O_RDONLY | O_CLOEXEC, 0, 0, 0);
		struct prctl_mm_map_ mm = { c->mm[0], c->mm[1], c->mm[2], c->mm[3], c->mm[4], c->mm[5], c->mm[6], c->mm[7], c->mm[8], c->mm[9], c->mm[10],
					    scr + 1024, c->auxv_len, (uint32_t)exefd };
		if (!e) e = mem_write(t, scr, &mm, sizeof mm);
		if (!e) e = mem_write(t, scr + 1024, c->auxv, c->auxv_len);
		if (!e) e = INJ(t, NULL, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP_, scr, sizeof mm, 0, 0);
		if (exefd >= 0) INJ(t, NULL, SYS_close, exefd, 0, 0, 0, 0, 0);
	}
	/* 6. memory regions, writable for now */
	for (int i = 0; i < im->nvma && !e; i++) {
		struct img_vma *v = &im->vmas[i];
		uint64_t len = v->end - v->start;
		long fd = -1;
		if (v->kind == K_FILE_PRIV || v->kind == K_FILE_SHARED) {
			int wr = v->kind == K_FILE_SHARED && (v->prot & PROT_WRITE);
			if ((e = put_str(t, scr, v->path))) break;
			if ((e = INJ(t, &fd, SYS_openat, AT_FDCWD, scr, (wr ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0, 0, 0))) break;
			int prot = v->kind == K_FILE_SHARED ? (int)v->prot : PROT_READ | PROT_WRITE;
			e = INJ(t, &rv, SYS_mmap, v->start, len, prot, (v->kind == K_FILE_SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, fd, v->pgoff * PAGE);
			INJ(t, NULL, SYS_close, fd, 0, 0, 0, 0, 0);
		} else {
			int fl = (v->kind == K_SHMEM ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED | (v->kind == K_STACK ? MAP_GROWSDOWN : 0);
			e = INJ(t, &rv, SYS_mmap, v->start, len, PROT_READ | PROT_WRITE, fl, -1, 0);
		}
	}
	/* 7. page data */
	double tf = now_ms();
	uint8_t *buf = malloc(CHUNK + 16);
	while (!e) {
		struct rechdr h;
		if ((e = rec_hdr(r, &h))) break;
		if (h.type == R_END) {
			struct img_end end;
			if (h.len != sizeof end) { e = fail(EBADMSG, "bad end record"); break; }
			uint32_t nrec = r->nrec;
			uint64_t bytes = r->bytes;
			if ((e = rec_body(r, &h, &end, sizeof end))) break;
			if (end.nrec != nrec || end.bytes != bytes || end.pages != r->pages) e = fail(EBADMSG, "image incomplete: %u records/%llu bytes, trailer says %u/%llu", nrec, (unsigned long long)bytes, end.nrec, (unsigned long long)end.bytes);
			break;
		}
		if (h.type != R_PAGES || h.len < 16 + PAGE) { e = fail(EBADMSG, "unexpected record type %u among page data", h.type); break; }
		if ((e = rec_body(r, &h, buf, CHUNK + 16))) break;
		uint64_t addr, len;
		memcpy(&addr, buf, 8);
		memcpy(&len, buf + 8, 8);
		int ok = len == h.len - 16 && len % PAGE == 0 && addr % PAGE == 0;
		for (int i = 0; ok && i < im->nvma; i++) {
			struct img_vma *v = &im->vmas[i];
			if (addr >= v->start && addr + len <= v->end) { ok = v->kind != K_FILE_SHARED ? 2 : 0; break; }
		}
		if (ok != 2) { e = fail(EBADMSG, "page data at %#lx+%#lx outside the image's regions", addr, len); break; }
		e = mem_write(t, addr, buf + 16, len);
		r->pages += len / PAGE;
	}
	free(buf);
	if (!e) ctlf("STAT fill_ms=%.3f", now_ms() - tf);
	/* 8. final protections */
	for (int i = 0; i < im->nvma && !e; i++) {
		struct img_vma *v = &im->vmas[i];
		if (v->kind != K_FILE_SHARED && v->prot != (PROT_READ | PROT_WRITE))
			e = INJ(t, NULL, SYS_mprotect, v->start, v->end - v->start, v->prot, 0, 0, 0);
	}
	/* 9. signals */
	for (int s = 1; s <= 64 && !e; s++) {
		if (s == SIGKILL || s == SIGSTOP) continue;
		e = mem_write(t, scr, &c->act[s], sizeof c->act[s]);
		if (!e) e = INJ(t, NULL, SYS_rt_sigaction, s, scr, 0, 8, 0, 0);
	}
	if (!e && ptrace(PTRACE_SETSIGMASK, t->pid, 8, &c->sigmask)) e = fail(errno, "PTRACE_SETSIGMASK: %s", strerror(errno));
	if (!e && !(c->ss_flags & SS_DISABLE) && c->ss_size) {
		struct { uint64_t sp; int32_t flags, pad; uint64_t size; } ss = { c->ss_sp, c->ss_flags & ~SS_ONSTACK, 0, c->ss_size };
		e = mem_write(t, scr, &ss, sizeof ss);
		if (!e) e = INJ(t, NULL, SYS_sigaltstack, scr, 0, 0, 0, 0, 0);
	}
	/* 10. files */
	if (!e) e = restore_fds(t, im, scr, hollow);
	/* 11. attributes */
	if (!e) e = put_str(t, scr, c->cwd);
	if (!e) e = INJ(t, NULL, SYS_chdir, scr, 0, 0, 0, 0, 0);
	if (!e) e = INJ(t, NULL, SYS_umask, c->umask, 0, 0, 0, 0, 0);
	if (!e) e = INJ(t, NULL, SYS_personality, c->personality, 0, 0, 0, 0, 0);
	if (!e) e = put_str(t, scr, c->comm);
	if (!e) e = INJ(t, NULL, SYS_prctl, PR_SET_NAME, scr, 0, 0, 0, 0);
	/* 12. rseq */
	if (!e && c->rseq_ptr) e = INJ(t, NULL, NR_RSEQ, c->rseq_ptr, c->rseq_len, 0, c->rseq_sig, 0, 0);
	/* seccomp filters (oldest first) unless the hollow original still carries them */
	int have = 0;
	if (hollow) {
		char fn[64], st[4096], v[32];
		snprintf(fn, sizeof fn, "/proc/%d/status", t->pid);
		if (read_file(fn, st, sizeof st) > 0 && !status_field(st, "Seccomp_filters", v, sizeof v)) have = atoi(v);
	}
	if (!e && c->nnp) e = INJ(t, NULL, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0);
	for (int i = have; i < im->nfilt && !e; i++) {
		uint64_t prog[2] = { im->nins[i], scr + 64 };
		if (im->nins[i] * 8 + 64 > SCRATCH_LEN) { e = fail(ENOTSUP, "seccomp filter too large"); break; }
		e = mem_write(t, scr + 64, im->filters[i] + 4, im->nins[i] * 8);
		if (!e) e = mem_write(t, scr, prog, sizeof prog);
		if (!e) e = INJ(t, NULL, NR_SECCOMP, 1 /* SECCOMP_SET_MODE_FILTER */, 0, scr, 0, 0, 0);
	}
	/* credentials last: dropping them earlier would block PR_SET_MM_MAP. A hollow original has
	 * its own, which it may not be allowed to set again. */
	int creds_same = 0;
	if (hollow && !e) {
		struct img_core cur;
		memset(&cur, 0, sizeof cur);
		if (read_core_proc(t->pid, &cur) == 0)
			creds_same = !memcmp(cur.uid, c->uid, sizeof c->uid) && !memcmp(cur.gid, c->gid, sizeof c->gid) && cur.ngroups == c->ngroups &&
				     !memcmp(cur.groups, c->groups, c->ngroups * 4);
		g_err[0] = 0; g_errno = 0;
	}
	if (!e && !creds_same && (c->uid[0] || c->uid[1] || c->uid[2] || c->gid[0] || c->gid[1] || c->gid[2] || c->ngroups)) {
		e = mem_write(t, scr, c->groups, c->ngroups * 4);
		if (!e) e = INJ(t, NULL, SYS_setgroups, c->ngroups, scr, 0, 0, 0, 0);
		if (!e) e = INJ(t, NULL, SYS_setresgid, c->gid[0], c->gid[1], c->gid[2], 0, 0, 0);
		if (!e) e = INJ(t, NULL, SYS_setresuid, c->uid[0], c->uid[1], c->uid[2], 0, 0, 0);
	}
	/* interval timers last, so that they do not run during the restore */
	for (int w = 0; w < 3 && !e; w++) {
		if (!c->itimer[w][2] && !c->itimer[w][3]) continue;
		e = mem_write(t, scr, c->itimer[w], sizeof c->itimer[w]);
		if (!e) e = INJ(t, NULL, SYS_setitimer, w, scr, 0, 0, 0, 0);
	}
	/* 13. scratch away */
	if (!e) e = INJ(t, NULL, SYS_munmap, scr, SCRATCH_LEN, 0, 0, 0, 0);
	/* 14. registers */
	if (!e) {
		struct user_regs_struct regs = c->regs;
		if (eintr_policy && (long)regs.orig_rax >= 0 && (long)regs.rax == -516) regs.rax = -EINTR;
		fix_restart(&regs, 0);
		if (ptrace(PTRACE_SETREGS, t->pid, 0, &regs)) e = fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	}
	if (!e) {
		static uint8_t xs[16384];
		uint32_t host_len;
		unsigned a, b, cc, d;
		__cpuid_count(0xd, 0, a, b, cc, d);
		host_len = b;
		memset(xs, 0, sizeof xs);
		memcpy(xs, im->xs, im->xlen < host_len ? im->xlen : host_len);
		struct iovec iov = { xs, host_len > im->xlen ? host_len : im->xlen };
		if (ptrace(PTRACE_SETREGSET, t->pid, NT_X86_XSTATE, &iov)) e = fail(errno, "PTRACE_SETREGSET NT_X86_XSTATE: %s", strerror(errno));
	}
	return e;
}

/* fresh stub with the wanted pid (if free), traced and stopped after execve */
struct clone_args_ { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup; };

static int spawn_stub(struct tracee *t, pid_t want, int *kept)
{
	char stub[PATH_MAX];
	ssize_t l = readlink("/proc/self/exe", stub, sizeof stub - 32);
	if (l < 0) return fail(errno, "readlink /proc/self/exe");
	stub[l] = 0;
	strcpy(strrchr(stub, '/') + 1, "hpc-ppm-stub");
	if (access(stub, X_OK)) return fail(ENOENT, "restore stub %s missing (run npm run build)", stub);
	pid_t tid = want;
	long pid = -1;
	*kept = 0;
	for (int attempt = 0; want > 0 && attempt < 200; attempt++) {
		struct clone_args_ ca = { 0 };
		ca.exit_signal = SIGCHLD;
		ca.set_tid = (uint64_t)(uintptr_t)&tid;
		ca.set_tid_size = 1;
		pid = syscall(NR_CLONE3, &ca, 88);
		if (pid >= 0 || errno != EEXIST) break;
		/* a zombie original may not be reaped yet: wait for that, not for a live holder */
		unsigned long long f[4];
		if (stat_fields(want, f, 4) == 0 && f[3] != 'Z' && f[3] != 'X') break;
		usleep(5000);
	}
	if (pid >= 0 && want > 0) *kept = 1;
	if (pid < 0) pid = fork();
	if (pid < 0) return fail(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		syscall(SYS_close_range, 3, ~0U, 0);
		char *argv[] = { "hpc-ppm-stub", NULL }, *envp[] = { NULL };
		execve(stub, argv, envp);
		_exit(127);
	}
	memset(t, 0, sizeof *t);
	t->pid = pid;
	t->memfd = -1;
	int st, e = twait(t, &st);
	if (e) return e;
	if (WSTOPSIG(st) != SIGTRAP) { kill(pid, SIGKILL); return fail(EIO, "restore stub did not stop after exec"); }
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_SUSPEND_SECCOMP)) {
		kill(pid, SIGKILL);
		return fail(errno, "PTRACE_SETOPTIONS: %s", strerror(errno));
	}
	ptrace(PTRACE_GETREGS, pid, 0, &t->regs0);
	return open_mem(t);
}

static void kill_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	int st;
	while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR);
}

static int setup_timens(int64_t off_mono, int64_t off_boot)
{
	if (unshare(CLONE_NEWTIME)) return fail(errno, "unshare(CLONE_NEWTIME): %s", strerror(errno));
	int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0) return fail(errno, "open timens_offsets: %s", strerror(errno));
	char b[128];
	int64_t ms = off_mono / 1000000000LL, mn = off_mono % 1000000000LL;
	if (mn < 0) { mn += 1000000000LL; ms--; }
	int64_t bs = off_boot / 1000000000LL, bn = off_boot % 1000000000LL;
	if (bn < 0) { bn += 1000000000LL; bs--; }
	int n = snprintf(b, sizeof b, "monotonic %lld %lld\nboottime %lld %lld\n", (long long)ms, (long long)mn, (long long)bs, (long long)bn);
	if (write(fd, b, n) != n) { int e = errno; close(fd); return fail(e, "setting time namespace offsets: %s", strerror(e)); }
	close(fd);
	return 0;
}

/* ---------- commands ---------- */

static int cmd_check(pid_t pid)
{
	int n = check_pid(pid, 1);
	if (n) { ctlf("ERR EPERM process %d cannot move (%d reason%s)", pid, n, n > 1 ? "s" : ""); return 3; }
	ctlf("OK");
	return 0;
}

#define SEIZE_OPTS (PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP)

/* The start of dump and deputy: refuse a process that cannot move, seize it and write its image
 * to fd 3. Returns 0 with the process frozen under `t`, or the command's exit status (the process
 * is left running as it was). */
static int seize_and_dump(pid_t pid, const char *target, struct tracee *t, struct dumpres *res, double *t0)
{
	int n = check_pid(pid, 1);
	if (n) { ctlf("ERR EPERM process %d cannot move (%d reason%s)", pid, n, n > 1 ? "s" : ""); return 3; }
	*t0 = now_ms();
	int e = seize(t, pid, SEIZE_OPTS);
	if (e) { if (!t->dead) ptrace(PTRACE_DETACH, pid, 0, 0); return report_err(); }
	e = dump_image(t, 3, target, res);
	if (e) { release_live(t); return report_err(); }
	return 0;
}

static int cmd_dump(pid_t pid, int mode /* 0 kill, 1 leave running */, const char *target)
{
	struct tracee t;
	struct dumpres res;
	double t0;
	int e = seize_and_dump(pid, target, &t, &res, &t0);
	if (e) return e;
	if (mode == 1) release_live(&t);
	else kill_reap(pid);
	free(res.vmas);
	ctlf("STAT freeze_ms=%.3f", now_ms() - t0);
	ctlf("OK");
	return 0;
}

struct restore_opts { int keep_pid, require_pid, wait, eintr; int clock; /* 0 auto, 1 real, 2 continue, 3 explicit */ int64_t mono_off; pid_t stdio_from; };

static int timens_for(struct image *im, struct restore_opts *o, int64_t *off_mono, int64_t *off_boot)
{
	struct compat host;
	host_compat(&host);
	int same_boot = !strcmp(host.boot_id, im->h.c.boot_id);
	int mode = o->clock;
	if (mode == 0) mode = same_boot ? 1 : 2;
	if (mode == 1) {
		if (!same_boot) return 0;	/* no common clock: real means the host's clock */
		*off_mono = im->h.mono_off_ns;
		*off_boot = im->h.boot_off_ns;
		return im->h.mono_off_ns || im->h.boot_off_ns;
	}
	if (mode == 2) {
		*off_mono = im->h.mono_ns - clock_ns(CLOCK_MONOTONIC);
		*off_boot = im->h.boot_ns - clock_ns(CLOCK_BOOTTIME);
		return 1;
	}
	*off_mono = o->mono_off;
	*off_boot = o->mono_off;
	return 1;
}

static char proc_state(pid_t pid)
{
	unsigned long long f[4];
	return stat_fields(pid, f, 4) == 0 ? (char)f[3] : 0;
}

/* is pid traced by a `hpc-ppm-helper dump` (which removes it when the image is complete)? */
static int being_dumped(pid_t pid)
{
	char fn[64], st[4096], v[32], cmd[256];
	snprintf(fn, sizeof fn, "/proc/%d/status", pid);
	if (read_file(fn, st, sizeof st) <= 0 || status_field(st, "TracerPid", v, sizeof v)) return 0;
	pid_t tr = atoi(v);
	if (tr <= 0) return 0;
	snprintf(fn, sizeof fn, "/proc/%d/cmdline", tr);
	ssize_t n = read_file(fn, cmd, sizeof cmd);
	if (n <= 0) return 0;
	size_t a0 = strlen(cmd);
	return (ssize_t)a0 + 1 < n && ends_with(cmd, "hpc-ppm-helper") && !strcmp(cmd + a0 + 1, "dump");
}

/* A streamed restore can start while the dump of the original is still running: the original
 * holds the pid until it is removed at the end of the dump. While the holder is stopped by its
 * dumper (tracing stop) or a zombie, read the stream ahead into memory (so that the dump can
 * finish) and wait for the pid, up to 30 s. A holder that runs on (--leave-running, a deputy)
 * means a new pid at once. */
static void wait_for_pid(struct imgr *r, pid_t pid)
{
	double t0 = now_ms();
	int eof = 0;
	char st;
	while ((st = proc_state(pid)) == 'Z' || st == 'X' || (st && being_dumped(pid))) {
		if (now_ms() - t0 > 30000) break;
		struct pollfd pf = { r->fd, POLLIN, 0 };
		if (eof || poll(&pf, 1, 2) <= 0) { if (eof) usleep(2000); continue; }
		if (r->pre_cap - r->pre_len < CHUNK) {
			r->pre_cap = r->pre_cap ? r->pre_cap * 2 : 4 * CHUNK;
			r->pre = realloc(r->pre, r->pre_cap);
			if (!r->pre) { r->pre_len = r->pre_cap = 0; return; }
		}
		ssize_t n = read(r->fd, r->pre + r->pre_len, r->pre_cap - r->pre_len);
		if (n > 0) r->pre_len += n;
		else if (n == 0) eof = 1;
		else if (errno != EAGAIN && errno != EINTR) eof = 1;
	}
}

static int cmd_restore(struct restore_opts *o)
{
	double t0 = now_ms();
	struct imgr r = { .fd = 3 };
	struct image *im;
	int e = read_meta(&r, &im);
	if (e) return report_err();
	if (validate_image(im, 1)) { fail(ENOTSUP, "this host cannot restore the image faithfully"); return report_err(); }
	int64_t om = 0, ob = 0;
	if (timens_for(im, o, &om, &ob) && (e = setup_timens(om, ob))) return report_err();
	if (o->stdio_from > 0) {
		/* the restored process gets the same stdio objects as the (hollow) original */
		int pfd = syscall(NR_PIDFD_OPEN, o->stdio_from, 0);
		if (pfd < 0) { fail(errno, "pidfd_open(%d): %s", o->stdio_from, strerror(errno)); return report_err(); }
		for (int fd = 0; fd <= 2; fd++) {
			int d = syscall(NR_PIDFD_GETFD, pfd, fd, 0);
			if (d < 0 && errno != EBADF) { fail(errno, "pidfd_getfd(%d, %d): %s", o->stdio_from, fd, strerror(errno)); close(pfd); return report_err(); }
			if (d < 0) { if (fd != fileno(ctl)) close(fd); continue; }
			dup2(d, fd);
			close(d);
		}
		close(pfd);
	}
	if (o->keep_pid) wait_for_pid(&r, im->h.pid);
	struct tracee t;
	int kept = 0;
	e = spawn_stub(&t, o->keep_pid ? im->h.pid : 0, &kept);
	if (e) return report_err();
	if (o->require_pid && !kept) { kill_reap(t.pid); fail(EEXIST, "pid %d is taken", im->h.pid); return report_err(); }
	e = restore_into(&t, im, &r, 0, o->eintr);
	if (e) { kill_reap(t.pid); return report_err(); }
	if (ptrace(PTRACE_DETACH, t.pid, 0, im->c.npend ? im->c.pend[0] : 0)) { fail(errno, "PTRACE_DETACH: %s", strerror(errno)); kill_reap(t.pid); return report_err(); }
	for (uint32_t i = 1; i < im->c.npend && i < 16; i++) kill(t.pid, im->c.pend[i]);
	ctlf("STAT restore_ms=%.3f injections=%ld pid_kept=%d mono_offset_ns=%lld", now_ms() - t0, t.ninject, kept, (long long)om);
	ctlf("PID %d", t.pid);
	free_image(im);
	if (!o->wait) { ctlf("OK"); return 0; }
	int st;
	while (waitpid(t.pid, &st, 0) < 0 && errno == EINTR);
	if (WIFEXITED(st)) ctlf("EXIT %d", WEXITSTATUS(st));
	else ctlf("KILLED %d", WTERMSIG(st));
	return 0;
}

/* ---------- deputy ---------- */

static int interrupt_stop(struct tracee *t)
{
	if (ptrace(PTRACE_INTERRUPT, t->pid, 0, 0)) return fail(errno, "PTRACE_INTERRUPT: %s", strerror(errno));
	for (;;) {
		int st, e = twait(t, &st);
		if (e) return e;
		int sig = WSTOPSIG(st), ev = st >> 16;
		if (ev == PTRACE_EVENT_STOP) return 0;
		if (ev == 0) ctlf("SIGNAL %d", sig);
		if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	}
}

static int deputy_kill(struct tracee *t, int sig)
{
	int e = interrupt_stop(t);
	if (e) return e;
	if (sig == SIGKILL) { kill(t->pid, SIGKILL); goto reap; }
	struct rlimit rl = { 0, 0 };
	prlimit(t->pid, RLIMIT_CORE, &rl, NULL);
	long page;
	if ((e = INJ(t, &page, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))) return e;
	if ((e = INJ(t, NULL, SYS_rt_sigaction, sig, page, 0, 8, 0, 0))) return e;
	uint64_t mask = 0;
	ptrace(PTRACE_GETSIGMASK, t->pid, 8, &mask);
	mask &= ~(1ULL << (sig - 1));
	ptrace(PTRACE_SETSIGMASK, t->pid, 8, &mask);
	if ((e = park(t))) return e;
	syscall(SYS_tgkill, t->pid, t->pid, sig);
	for (;;) {
		int st;
		pid_t w = waitpid(t->pid, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return fail(errno, "waitpid");
		if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
		if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
		int s = WSTOPSIG(st), ev = st >> 16;
		ptrace(PTRACE_CONT, t->pid, 0, ev == 0 && s == sig ? sig : 0);
	}
reap:
	for (;;) {
		int st;
		pid_t w = waitpid(t->pid, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return fail(errno, "waitpid");
		if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
		if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
	}
}

static int deputy_exit(struct tracee *t, int code)
{
	int e = interrupt_stop(t);
	if (e) return e;
	struct user_regs_struct r = t->regs0;
	r.rip = t->sc_ip; r.rax = SYS_exit_group; r.rdi = code; r.orig_rax = -1;
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	for (;;) {
		int st;
		pid_t w = waitpid(t->pid, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return fail(errno, "waitpid");
		if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
		if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
		ptrace(PTRACE_CONT, t->pid, 0, 0);
	}
}

static int deputy_restore(struct tracee *t, const char *path)
{
	int fd, p[2] = { -1, -1 };
	if (path) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) return fail(errno, "open %s: %s", path, strerror(errno));
	} else {
		if (pipe2(p, O_CLOEXEC)) return fail(errno, "pipe: %s", strerror(errno));
		fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
		fd = p[0];
		ctlf("IMAGE-IN /proc/%d/fd/%d", getpid(), p[1]);
	}
	struct imgr r = { .fd = fd };
	struct image *im;
	int e = read_meta(&r, &im);
	if (!e && validate_image(im, 1)) e = fail(ENOTSUP, "this host cannot restore the image faithfully");
	if (!e && (im->c.vdso == 0)) e = fail(EBADMSG, "image has no vDSO");
	if (e) { if (p[1] >= 0) close(p[1]); close(fd); return e; }
	e = interrupt_stop(t);
	if (!e) {
		t->ninject = 0;
		double t0 = now_ms();
		e = restore_into(t, im, &r, 1, 0);
		if (!e) {
			ptrace(PTRACE_DETACH, t->pid, 0, im->c.npend ? im->c.pend[0] : 0);
			for (uint32_t i = 1; i < im->c.npend && i < 16; i++) kill(t->pid, im->c.pend[i]);
			ctlf("STAT restore_ms=%.3f injections=%ld", now_ms() - t0, t->ninject);
			ctlf("RESTORED %d", t->pid);
		} else if (!t->dead) {
			/* back to a parked hollow: the caller may try again or end it */
			char keep[sizeof g_err];
			int ke = g_errno;
			memcpy(keep, g_err, sizeof keep);
			g_err[0] = 0;
			int touched;
			if (!hollow(t, &touched)) park(t);
			memcpy(g_err, keep, sizeof keep);
			g_errno = ke;
		}
	}
	free_image(im);
	if (p[1] >= 0) close(p[1]);
	close(fd);
	return e;
}

static int cmd_deputy(pid_t pid, const char *target)
{
	struct tracee t;
	struct dumpres res;
	double t0;
	int e = seize_and_dump(pid, target, &t, &res, &t0);
	if (e) return e;
	free(res.vmas);
	close(3);
	double t1 = now_ms();
	int touched;
	e = hollow(&t, &touched);
	if (e) {
		/* nothing unmapped yet: the original runs on as before; else it is half-emptied and can
		 * only be removed (the caller has its complete image) */
		if (!touched && !t.dead) {
			release_live(&t);
		} else kill_reap(pid);
		return report_err();
	}
	ptrace(PTRACE_SETOPTIONS, pid, 0, SEIZE_OPTS | PTRACE_O_EXITKILL);
	if ((e = park(&t))) { kill_reap(pid); return report_err(); }
	ctlf("STAT freeze_ms=%.3f hollow_ms=%.3f", t1 - t0, now_ms() - t1);
	for (int i = 0; i < t.npend; i++) ctlf("SIGNAL %d", t.pend[i]);
	ctlf("HOLLOW %d", pid);

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGCHLD);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	int cfd = fcntl(5, F_GETFD) >= 0 ? 5 : 0;
	char cbuf[PATH_MAX + 64];
	size_t clen = 0;
	struct { int src, dst; } rl[3];	/* RELAY: copies between the original's stdio and pipes */
	int nrl = 0;
	static char rbuf[65536];
	for (;;) {
		/* drain tracee events */
		for (;;) {
			int st;
			pid_t w = waitpid(pid, &st, __WALL | WNOHANG);
			if (w <= 0) break;
			if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
			if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
			int sig = WSTOPSIG(st), ev = st >> 16;
			if (ev == 0) ctlf("SIGNAL %d", sig);
			if (ev == PTRACE_EVENT_STOP && sig != SIGTRAP) ptrace(PTRACE_LISTEN, pid, 0, 0);
			else ptrace(PTRACE_CONT, pid, 0, 0);
		}
		char *nl = memchr(cbuf, '\n', clen);
		if (!nl) {
			struct pollfd pf[5] = { { cfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
			for (int i = 0; i < nrl; i++) { pf[2 + i].fd = rl[i].src; pf[2 + i].events = POLLIN; }
			if (poll(pf, 2 + nrl, -1) < 0) { if (errno == EINTR) continue; break; }
			if (pf[1].revents) { struct signalfd_siginfo si; while (read(sfd, &si, sizeof si) > 0); }
			for (int i = nrl - 1; i >= 0; i--) {
				if (!pf[2 + i].revents) continue;
				ssize_t n = read(rl[i].src, rbuf, sizeof rbuf);
				if (n > 0) {
					for (ssize_t off = 0; off < n;) {
						ssize_t w = write(rl[i].dst, rbuf + off, n - off);
						if (w < 0 && errno == EINTR) continue;
						if (w <= 0) break;
						off += w;
					}
				} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
					/* end of this stream: pass the end on where we own the writer */
					if (rl[i].src >= 0) close(rl[i].src);
					close(rl[i].dst);
					rl[i] = rl[--nrl];
				}
			}
			if (!pf[0].revents) continue;
			ssize_t n = read(cfd, cbuf + clen, sizeof cbuf - 1 - clen);
			if (n <= 0) { /* caller gone: nothing can be relayed any more */ kill_reap(pid); ctlf("KILLED 9"); return 1; }
			clen += n;
			if (clen == sizeof cbuf - 1 && !memchr(cbuf, '\n', clen)) clen = 0; /* an overlong line is dropped */
			continue;
		}
		char line[PATH_MAX + 64];
		size_t ll = nl - cbuf;
		memcpy(line, cbuf, ll);
		line[ll] = 0;
		memmove(cbuf, nl + 1, clen - ll - 1);
		clen -= ll + 1;
		g_err[0] = 0; g_errno = 0;
		char arg[PATH_MAX];
		int num;
		if (sscanf(line, "EXIT %d", &num) == 1) {
			if (deputy_exit(&t, num & 255)) return report_err();
			return 0;
		} else if (sscanf(line, "KILL %d", &num) == 1) {
			if (num < 1 || num > 64 || num == SIGSTOP || num == SIGCONT || num == SIGCHLD || num == SIGURG || num == SIGWINCH || num == SIGTSTP || num == SIGTTIN || num == SIGTTOU) {
				ctlf("ERR EINVAL signal %d does not end a process", num);
				continue;
			}
			if (deputy_kill(&t, num)) return report_err();
			return 0;
		} else if (!strcmp(line, "RESTORE") || sscanf(line, "RESTORE %4095s", arg) == 1) {
			e = deputy_restore(&t, strcmp(line, "RESTORE") ? arg : NULL);
			if (!e) { ctlf("OK"); return 0; }
			report_err();
			if (t.dead) return 1;
		} else if (!strcmp(line, "FDS") || !strcmp(line, "RELAY")) {
			int relay = !strcmp(line, "RELAY");
			if (relay && nrl) { ctlf("ERR EBUSY already relaying"); continue; }
			int pfd = syscall(NR_PIDFD_OPEN, pid, 0);
			for (int fd = 0; fd <= 2; fd++) {
				int d = pfd < 0 ? -1 : syscall(NR_PIDFD_GETFD, pfd, fd, 0);
				int p[2];
				if (d < 0) ctlf("FD %d - %s", fd, errname(errno));
				else if (!relay) ctlf("FD %d /proc/%d/fd/%d", fd, getpid(), d);
				else if (pipe2(p, O_CLOEXEC)) { ctlf("FD %d - %s", fd, errname(errno)); close(d); }
				else if (fd == 0) {	/* its input -> a pipe the caller reads */
					rl[nrl].src = d; rl[nrl].dst = p[1]; nrl++;
					ctlf("FD 0 /proc/%d/fd/%d", getpid(), p[0]);
				} else {		/* a pipe the caller writes -> its output */
					rl[nrl].src = p[0]; rl[nrl].dst = d; nrl++;
					ctlf("FD %d /proc/%d/fd/%d", fd, getpid(), p[1]);
				}
			}
			if (pfd >= 0) close(pfd);
			ctlf("OK");
		} else ctlf("ERR EINVAL unknown deputy command '%s'", line);
	}
	return 1;
}

static int cmd_info(void)
{
	struct imgr r = { .fd = 3 };
	struct image *im;
	if (read_meta(&r, &im)) return report_err();
	char cl[256];
	compat_line(&im->h.c, cl, sizeof cl);
	ctlf("INFO version=%u pid=%d comm=%s exe=%s vmas=%d fds=%d filters=%d kernel=%s compat=%s", im->h.version, im->h.pid, im->c.comm, im->c.exe,
	     im->nvma, im->nfd, im->nfilt, im->h.c.release, cl);
	uint64_t pages = 0;
	uint8_t *buf = malloc(CHUNK + 16);
	for (;;) {
		struct rechdr h;
		if (rec_hdr(&r, &h)) { free(buf); return report_err(); }
		if (h.type == R_END) {
			struct img_end end;
			uint32_t nrec = r.nrec;
			if (h.len != sizeof end || rec_body(&r, &h, &end, sizeof end)) { fail(EBADMSG, "bad end record"); free(buf); return report_err(); }
			if (end.nrec != nrec || end.pages != pages) { fail(EBADMSG, "image incomplete"); free(buf); return report_err(); }
			break;
		}
		if (h.type != R_PAGES || rec_body(&r, &h, buf, CHUNK + 16)) { fail(EBADMSG, "bad page record"); free(buf); return report_err(); }
		pages += (h.len - 16) / PAGE;
	}
	free(buf);
	ctlf("STAT pages=%llu bytes=%llu", (unsigned long long)pages, (unsigned long long)r.bytes);
	int n = validate_image(im, 1);
	ctlf(n ? "ERR ENOTSUP cannot be restored on this host" : "OK");
	free_image(im);
	return n ? 3 : 0;
}

/* Raw copy of BYTES through a pipe, for the benchmark: the writer sends BYTES of its own
 * (written, resident) memory, the reader receives them into fresh memory of the same size, as a
 * receiving process would; with hot=1 both sides reuse one 1 MiB buffer instead (cache-hot bound). */
static int cmd_rawpipe(uint64_t bytes, int hot)
{
	int p[2];
	if (pipe(p)) return fail(errno, "pipe"), report_err();
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	uint64_t span = hot ? CHUNK : (bytes + PAGE - 1) / PAGE * PAGE;
	uint8_t *src = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *dst = hot ? src : mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED) return fail(ENOMEM, "mmap"), report_err();
	for (uint64_t i = 0; i < span; i += 8) *(uint64_t *)(src + i) = i * 0x9e3779b97f4a7c15ULL;
	double t0 = now_ms();
	pid_t c = fork();
	if (c == 0) {
		close(p[0]);
		for (uint64_t off = 0; off < bytes;) {
			uint64_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
			ssize_t w = write(p[1], src + (hot ? 0 : off), n);
			if (w <= 0) _exit(1);
			off += w;
		}
		_exit(0);
	}
	close(p[1]);
	uint64_t got = 0;
	for (;;) {
		uint64_t n = bytes - got < CHUNK ? bytes - got : CHUNK;
		if (n == 0) break;
		ssize_t r = read(p[0], dst + (hot ? 0 : got), n);
		if (r <= 0) break;
		got += r;
	}
	int st;
	waitpid(c, &st, 0);
	double ms = now_ms() - t0;
	ctlf("STAT raw_bytes=%llu raw_ms=%.3f", (unsigned long long)got, ms);
	ctlf("OK");
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: hpc-ppm-helper check PID\n"
		"       hpc-ppm-helper dump PID [--leave-running] [--target HOSTINFO]   (image on fd 3)\n"
		"       hpc-ppm-helper deputy PID [--target HOSTINFO]  (image on fd 3, commands on fd 5)\n"
		"       hpc-ppm-helper restore [--new-pid|--require-pid] [--no-wait] [--eintr] [--stdio-from PID]\n"
		"                              [--clock auto|real|continue|OFFSET_NS]  (image on fd 3)\n"
		"       hpc-ppm-helper info    (image on fd 3)\n"
		"       hpc-ppm-helper hostinfo | rawpipe BYTES [--hot]\n"
		"control lines go to fd 4 (or stdout)\n");
}

static int parse_pid(const char *s, pid_t *pid)
{
	char *e;
	long v = strtol(s, &e, 10);
	if (!*s || *e || v <= 0 || v > INT_MAX) return -1;
	*pid = v;
	return 0;
}

int main(int argc, char **argv)
{
	crc_init();
	signal(SIGPIPE, SIG_IGN);
	ctl = fcntl(4, F_GETFD) >= 0 ? fdopen(4, "w") : stdout;
	if (!ctl) ctl = stdout;
	if (argc < 2) { usage(); return 2; }
	const char *cmd = argv[1];
	pid_t pid = 0;
	if (!strcmp(cmd, "hostinfo")) {
		struct compat c;
		char b[256];
		host_compat(&c);
		compat_line(&c, b, sizeof b);
		ctlf("HOSTINFO %s", b);
		ctlf("OK");
		return 0;
	}
	if (!strcmp(cmd, "check") || !strcmp(cmd, "dump") || !strcmp(cmd, "deputy")) {
		if (argc < 3 || parse_pid(argv[2], &pid)) { usage(); return 2; }
		int leave = 0;
		const char *target = NULL;
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--leave-running") && !strcmp(cmd, "dump")) leave = 1;
			else if (!strcmp(argv[i], "--target") && i + 1 < argc && strcmp(cmd, "check")) target = argv[++i];
			else { usage(); return 2; }
		}
		if (strcmp(cmd, "check") && fcntl(3, F_GETFD) < 0) { fprintf(stderr, "hpc-ppm-helper: fd 3 (image) is not open\n"); return 2; }
		if (!strcmp(cmd, "check")) return cmd_check(pid);
		if (!strcmp(cmd, "dump")) return cmd_dump(pid, leave, target);
		return cmd_deputy(pid, target);
	}
	if (!strcmp(cmd, "restore")) {
		struct restore_opts o = { 1, 0, 1, 0, 0, 0, 0 };
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--new-pid")) o.keep_pid = 0;
			else if (!strcmp(argv[i], "--require-pid")) o.require_pid = 1;
			else if (!strcmp(argv[i], "--no-wait")) o.wait = 0;
			else if (!strcmp(argv[i], "--eintr")) o.eintr = 1;
			else if (!strcmp(argv[i], "--stdio-from") && i + 1 < argc) { if (parse_pid(argv[++i], &o.stdio_from)) { usage(); return 2; } }
			else if (!strcmp(argv[i], "--clock") && i + 1 < argc) {
				const char *v = argv[++i];
				char *e;
				if (!strcmp(v, "auto")) o.clock = 0;
				else if (!strcmp(v, "real")) o.clock = 1;
				else if (!strcmp(v, "continue")) o.clock = 2;
				else { o.clock = 3; o.mono_off = strtoll(v, &e, 10); if (*e || !*v) { usage(); return 2; } }
			} else { usage(); return 2; }
		}
		if (fcntl(3, F_GETFD) < 0) { fprintf(stderr, "hpc-ppm-helper: fd 3 (image) is not open\n"); return 2; }
		return cmd_restore(&o);
	}
	if (!strcmp(cmd, "info")) return cmd_info();
	if (!strcmp(cmd, "rawpipe") && (argc == 3 || (argc == 4 && !strcmp(argv[3], "--hot")))) return cmd_rawpipe(strtoull(argv[2], NULL, 10), argc == 4);
	usage();
	return 2;
}
