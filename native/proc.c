/* /proc parsing: memory maps, stat and status fields, the process attributes of the core record,
 * time namespace offsets, pending signals, namespaces. Reads only; touches no process. */
#include "ppm.h"

int parse_maps(pid_t pid, struct vma **out)
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

int is_special(const char *p)
{
	return !strcmp(p, "[vvar]") || !strcmp(p, "[vvar_vclock]") || !strcmp(p, "[vdso]") || !strcmp(p, "[vsyscall]");
}

int stat_fields(pid_t pid, unsigned long long *f, int nf)
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

char proc_state(pid_t pid)
{
	unsigned long long f[4];
	return stat_fields(pid, f, 4) == 0 ? (char)f[3] : 0;
}

int shmem_shared_elsewhere(pid_t pid, uint64_t ino)
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

int ns_differs(pid_t pid, const char *ns)
{
	char a[64], b[64];
	struct stat sa, sb;
	snprintf(a, sizeof a, "/proc/%d/ns/%s", pid, ns);
	snprintf(b, sizeof b, "/proc/self/ns/%s", ns);
	if (stat(a, &sa) || stat(b, &sb)) return 0;
	return sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev;
}

/* /proc/PID/task/TID/status into buf: 0, or -1 (gone) */
int task_status(pid_t pid, pid_t tid, char *buf, size_t cap)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/task/%d/status", pid, tid);
	return read_file(fn, buf, cap) > 0 ? 0 : -1;
}

/* the id task tid has in its own (innermost) pid namespace: the last NSpid entry of its status;
 * tid itself when there is none to read. A guest in its pid namespace (restore.c guest_pidns)
 * has its home ids there, and images keep those. */
pid_t ns_inner(pid_t tid)
{
	char fn[64], st[8192], v[128];
	snprintf(fn, sizeof fn, "/proc/%d/status", tid);
	if (read_file(fn, st, sizeof st) <= 0 || status_field(st, "NSpid", v, sizeof v)) return tid;
	char *last = strrchr(v, '\t');
	last = last ? last + 1 : v;
	if (strrchr(last, ' ')) last = strrchr(last, ' ') + 1;
	int id = atoi(last);
	return id > 0 ? id : tid;
}

/* the process-wide attributes of the core record that /proc shows */
int read_core_proc(pid_t pid, struct img_core *c)
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
	snprintf(fn, sizeof fn, "/proc/%d/personality", pid);
	if (read_file(fn, v, sizeof v) > 0) c->personality = strtoul(v, NULL, 16);
	int n = read_limits(pid, c->rlim);
	if (n < 0) return n;
	c->nrlim = n;
	return 0;
}

/* /proc/PID/limits (readable where the process may be traced; prlimit needs its uid or
 * CAP_SYS_RESOURCE): soft and hard, RLIM_INFINITY for "unlimited", in RLIMIT_ order; how many */
int read_limits(pid_t pid, uint64_t lim[16][2])
{
	char fn[64], buf[4096];
	snprintf(fn, sizeof fn, "/proc/%d/limits", pid);
	if (read_file(fn, buf, sizeof buf) <= 0) return fail(ESRCH, "cannot read %s", fn);
	int n = 0;
	char *line = strchr(buf, '\n');	/* (the header) */
	while (line && n < 16) {
		line++;
		char *end = strchr(line, '\n');
		if (!end || end - line < 47) break;
		/* "%-25s %-20s %-20s %-10s": the soft limit at column 26, the hard one at 47 */
		for (int k = 0; k < 2; k++) {
			const char *v = line + (k ? 47 : 26);
			lim[n][k] = !strncmp(v, "unlimited", 9) ? RLIM_INFINITY : strtoull(v, NULL, 10);
		}
		n++;
		line = end;
	}
	return n;
}

/* is pid traced by a `hpc-ppm-helper dump` (which removes it when the image is complete)? */
int being_dumped(pid_t pid)
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

/* the name of thread tid of pid */
int read_comm(pid_t pid, pid_t tid, char comm[16])
{
	char fn[64], v[64];
	snprintf(fn, sizeof fn, "/proc/%d/task/%d/comm", pid, tid);
	memset(comm, 0, 16);
	if (read_file(fn, v, sizeof v) <= 0) return fail(ESRCH, "cannot read %s", fn);
	v[strcspn(v, "\n")] = 0;
	memcpy(comm, v, 15);
	return 0;
}

/* the offsets of the time namespace pid is in (0 outside one) */
void read_timens(pid_t pid, int64_t *mono_off, int64_t *boot_off)
{
	char fn[64], buf[512];
	*mono_off = *boot_off = 0;
	snprintf(fn, sizeof fn, "/proc/%d/timens_offsets", pid);
	if (read_file(fn, buf, sizeof buf) <= 0) return;
	for (char *p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		char name[32];
		long long s, ns;
		if (sscanf(p, "%31s %lld %lld", name, &s, &ns) == 3) {
			if (!strcmp(name, "monotonic") || !strcmp(name, "1")) *mono_off = s * 1000000000LL + ns;
			if (!strcmp(name, "boottime") || !strcmp(name, "7")) *boot_off = s * 1000000000LL + ns;
		}
	}
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* the descriptor numbers of process pid, ascending: how many (*out malloc'd), or -1 */
int fd_numbers(pid_t pid, int **out)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/fd", pid);
	DIR *d = opendir(fn);
	if (!d) return -1;
	int n = 0, cap = 64, *v = malloc(cap * sizeof *v);
	for (struct dirent *de; v && (de = readdir(d));) {
		if (de->d_name[0] == '.') continue;
		if (n == cap) {
			int *nv = realloc(v, (cap *= 2) * sizeof *v);
			if (!nv) { free(v); v = NULL; break; }
			v = nv;
		}
		v[n++] = atoi(de->d_name);
	}
	closedir(d);
	if (!v) return -1;
	qsort(v, n, sizeof *v, int_cmp);
	*out = v;
	return n;
}
