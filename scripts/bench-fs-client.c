/*
 * bench-fs-client: the measuring client of scripts/bench-fs (compiled at run time with cc -O2).
 * One time-bounded loop of one operation; every latency is recorded and the summary printed as
 * one line of `key=value` pairs on stdout:
 *
 *   bench-fs-client read    PATH SECONDS          open(O_RDONLY), read 4 KiB until EOF, close
 *   bench-fs-client readdir PATH SECONDS          opendir, readdir all, closedir
 *   bench-fs-client write   PATH VALUE SECONDS    open(O_WRONLY|O_TRUNC), write VALUE, close
 *                                                 (VALUE "@comm": this process's own comm, so
 *                                                 writing /proc/self/comm changes nothing)
 *   bench-fs-client cat     PATH SECONDS          posix_spawn /bin/cat PATH > /dev/null, waitpid
 *
 * Output: op= ops= errors= elapsed_ns= med_ns= p90_ns= p99_ns= bytes=
 * (bytes: of the last read, or entries of the last readdir). Exit 1 if every operation failed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static uint32_t *lat;
static size_t nlat, caplat;

static void record(uint64_t ns)
{
	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 65536;
		lat = realloc(lat, caplat * sizeof *lat);
		if (!lat) { perror("realloc"); exit(2); }
	}
	lat[nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static char buf[4096];

/* Each op returns >= 0 on success (bytes or entries), -1 on failure. */
static long op_read(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) return -1;
	long total = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
	close(fd);
	return n < 0 ? -1 : total;
}

static long op_readdir(const char *path)
{
	DIR *d = opendir(path);
	if (!d) return -1;
	long n = 0;
	while (readdir(d)) n++;
	closedir(d);
	return n;
}

static const char *wvalue;
static size_t wlen;

static long op_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0) return -1;
	ssize_t n = write(fd, wvalue, wlen);
	int rc = close(fd);
	return n == (ssize_t)wlen && rc == 0 ? n : -1;
}

static posix_spawn_file_actions_t cat_actions;

static long op_cat(const char *path)
{
	char *argv[] = { "cat", (char *)path, NULL };
	pid_t pid;
	if (posix_spawn(&pid, "/bin/cat", &cat_actions, NULL, argv, environ) != 0) return -1;
	int st;
	while (waitpid(pid, &st, 0) < 0) if (errno != EINTR) return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-fs-client read|readdir|cat PATH SECONDS\n"
			"       bench-fs-client write PATH VALUE SECONDS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 4) usage();
	const char *mode = argv[1], *path = argv[2];
	long (*op)(const char *) = NULL;
	double secs;
	static char comm[64];

	if (strcmp(mode, "write") == 0) {
		if (argc != 5) usage();
		wvalue = argv[3];
		if (strcmp(wvalue, "@comm") == 0) {
			int fd = open("/proc/self/comm", O_RDONLY);
			ssize_t n = fd < 0 ? -1 : read(fd, comm, sizeof comm - 1);
			if (fd >= 0) close(fd);
			if (n <= 0) { perror("/proc/self/comm"); return 2; }
			comm[n] = 0;
			wvalue = comm;
		}
		wlen = strlen(wvalue);
		secs = atof(argv[4]);
		op = op_write;
	} else {
		if (argc != 4) usage();
		secs = atof(argv[3]);
		if (strcmp(mode, "read") == 0) op = op_read;
		else if (strcmp(mode, "readdir") == 0) op = op_readdir;
		else if (strcmp(mode, "cat") == 0) {
			op = op_cat;
			posix_spawn_file_actions_init(&cat_actions);
			posix_spawn_file_actions_addopen(&cat_actions, 1, "/dev/null", O_WRONLY, 0);
		} else usage();
	}
	if (!(secs > 0)) usage();

	/* One untimed warm-up operation (dentry/attr caches, page faults). */
	long last = op(path);
	long errors = 0, first_errno = 0;
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;
	while (t < end) {
		uint64_t t0 = t;
		long r = op(path);
		t = now_ns();
		if (r < 0) {
			if (!errors) first_errno = errno;
			errors++;
			if (errors > 1000 && nlat == 0) break;
			continue;
		}
		last = r;
		record(t - t0);
	}
	uint64_t elapsed = t - start;
	if (nlat == 0) {
		fprintf(stderr, "bench-fs-client: %s %s: every operation failed: %s\n", mode, path, strerror((int)first_errno));
		return 1;
	}
	qsort(lat, nlat, sizeof *lat, cmp_u32);
	printf("op=%s ops=%zu errors=%ld elapsed_ns=%llu med_ns=%u p90_ns=%u p99_ns=%u bytes=%ld\n",
	       mode, nlat, errors, (unsigned long long)elapsed, lat[nlat / 2], lat[nlat * 9 / 10],
	       lat[nlat * 99 / 100], last);
	return 0;
}
