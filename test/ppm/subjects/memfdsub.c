/* memfd: a 4 MiB sparse memfd mapped MAP_SHARED and also used through its descriptor, with a
 * second open file description (opened read-only through /proc/self/fd); writes through the
 * mapping must be seen through the descriptors and the other way round, its size is sealed
 * (F_SEAL_SHRINK | F_SEAL_GROW), and a second memfd that is only a descriptor keeps its
 * contents and offset.
 * usage: memfdsub ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }
#define SIZE (4 << 20)

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	int m = memfd_create("hpc-test-map", MFD_ALLOW_SEALING | MFD_CLOEXEC), log = memfd_create("hpc-test-log", 0);
	if (m < 0 || log < 0 || ftruncate(m, SIZE)) die("memfd");
	if (fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)) die("seal");
	unsigned char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	if (p == MAP_FAILED) die("mmap");
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", m);
	int ro = open(path, O_RDONLY);
	if (ro < 0) die("reopen");
	long sum = 0;
	for (int i = 0; i < rounds; i++) {
		size_t off = (size_t)(i * 7 + 3) % 1000 * 4096;
		memset(p + off, i + 1, 100);	/* through the mapping */
		unsigned char b[100];
		if (pread(ro, b, 100, off) != 100 || b[0] != i + 1 || b[99] != i + 1) die("mapping not seen through the descriptor");
		unsigned char w = 0xa0 + i;
		if (pwrite(m, &w, 1, off + 200) != 1 || p[off + 200] != w) die("descriptor write not seen in the mapping");
		char line[64];
		int n = snprintf(line, sizeof line, "entry %d\n", i);
		if (write(log, line, n) != n) die("log");
		for (size_t k = 0; k < SIZE; k += 4096) sum += p[k];
		printf("round %d sum %ld\n", i, sum);
		fflush(stdout);
		nap(us);
	}
	if (ftruncate(m, SIZE / 2) != -1 || errno != EPERM) die("seal lost");
	if (fcntl(m, F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW)) die("seals differ");
	struct stat a, b;
	fstat(m, &a);
	fstat(ro, &b);
	if (a.st_ino != b.st_ino || a.st_size != SIZE) die("not one memfd any more");
	off_t end = lseek(log, 0, SEEK_CUR);
	char all[4096];
	if (pread(log, all, sizeof all, 0) != end) die("log offset or size");
	all[end] = 0;
	if (strncmp(all, "entry 0\n", 8)) die("log contents");
	if (!(fcntl(m, F_GETFD) & FD_CLOEXEC) || (fcntl(ro, F_GETFL) & O_ACCMODE) != O_RDONLY) die("flags lost");
	printf("memfd ok, %ld bytes logged\n", (long)end);
	return atoi(argv[3]);
}
