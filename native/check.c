/* The can't-move analysis: one REASON line per obstacle, before anything is touched.
 * Descriptors are judged by files.c (fds_check), which knows what it can recreate; threads by
 * threads.c (threads_check). */
#include "ppm.h"
#include "threads.h"

int reason(int print, const char *code, const char *fmt, ...)
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

/* A guest in the pid namespace its restore made for it (restore.c guest_pidns): one level below
 * ours, with a guest's real uid. It moves on like any other process; its image keeps the ids it
 * has in there (its home ids). st: its status. */
static int guest_ns(pid_t pid, const char *st)
{
	char v[128];
	unsigned long long uid;
	int a, b, c;
	if (status_field(st, "Uid", v, sizeof v) || sscanf(v, "%llu", &uid) != 1 || uid < GUEST_ID_BASE) return 0;
	if (status_field(st, "NSpid", v, sizeof v) || sscanf(v, "%d %d %d", &a, &b, &c) != 2) return 0;
	return a == pid;
}

/* Prints one REASON line per obstacle; returns the number of obstacles. Touches nothing. */
int check_pid(pid_t pid, int print)
{
	int n = 0;
	char fn[PATH_MAX], st[8192], v[256];
	if (pid <= 1 || pid == getpid() || pid == getppid()) return reason(print, "self", "pid %d is init, the engine itself or its caller", pid);
	snprintf(fn, sizeof fn, "/proc/%d/status", pid);
	if (read_file(fn, st, sizeof st) <= 0) return reason(print, "no-process", "no process %d", pid);
	unsigned long long f[52];
	if (stat_fields(pid, f, 52) == 0) {
		if (f[9] & 0x00200000) return reason(print, "kernel-thread", "pid %d is a kernel thread", pid);
		int nthreads = !status_field(st, "Threads", v, sizeof v) ? atoi(v) : 1;
		if ((f[3] == 'Z' || f[3] == 'X') && nthreads <= 1) return reason(print, "zombie", "process %d has exited (zombie)", pid);
		if (f[3] == 'T') n += reason(print, "stopped", "process is stopped (job control)");
		if (f[41] == 1 || f[41] == 2 || f[41] == 6) n += reason(print, "realtime", "process uses real-time scheduling (policy %llu)", f[41]);
	}
	n += threads_check(pid, print);
	if (!status_field(st, "TracerPid", v, sizeof v) && atoi(v) != 0) n += reason(print, "traced", "process is already traced by pid %d", atoi(v));
	if (!status_field(st, "VmLck", v, sizeof v) && atoi(v) != 0) n += reason(print, "locked-memory", "process has locked memory (VmLck %s)", v);
	if (!status_field(st, "Seccomp", v, sizeof v) && atoi(v) == 1) n += reason(print, "seccomp-strict", "process is in strict seccomp mode");
	snprintf(fn, sizeof fn, "/proc/%d/task/%d/children", pid, pid);
	/* with --family its children keep the deputy as their parent (family.c) */
	if (!g_family && read_file(fn, v, sizeof v) > 0 && strspn(v, " \n") != strlen(v)) n += reason(print, "children", "process has child processes (%.40s)", v);
	static const char *nss[] = { "mnt", "pid", "net", "user", "ipc", "uts", "cgroup" };
	for (unsigned i = 0; i < sizeof nss / sizeof *nss; i++)
		if (ns_differs(pid, nss[i]) && !(i == 1 && guest_ns(pid, st)))
			n += reason(print, "namespace", "process is in a different %s namespace", nss[i]);
	char lk[PATH_MAX];
	snprintf(fn, sizeof fn, "/proc/%d/exe", pid);
	ssize_t ll = readlink(fn, lk, sizeof lk - 1);
	if (ll > 0) { lk[ll] = 0; if (ends_with(lk, " (deleted)")) n += reason(print, "exe-deleted", "its executable %s was deleted or replaced", lk); }
	snprintf(fn, sizeof fn, "/proc/%d/cwd", pid);
	ll = readlink(fn, lk, sizeof lk - 1);
	if (ll > 0) { lk[ll] = 0; if (ends_with(lk, " (deleted)")) n += reason(print, "cwd-deleted", "its working directory %s was deleted", lk); }
	n += timers_check(pid, print);

	struct vma *m;
	int nm = parse_maps(pid, &m);
	if (nm < 0) { clear_err(); return n + reason(print, "no-process", "cannot read the memory map of %d", pid); }
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

	struct fdtab tab;
	if (fdtab_read(pid, &tab)) { clear_err(); return n + reason(print, "no-process", "cannot read the descriptors of %d", pid); }
	n += fds_check(&tab, print);
	fdtab_free(&tab);
	return n;
}
