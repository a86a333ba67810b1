/* A memfd sealed against writes (F_SEAL_WRITE, SHRINK, GROW, SEAL) and then mapped read-only
 * MAP_SHARED: a mapping that cannot become writable (the kernel clears VM_MAYWRITE), as a
 * sandbox hands out a read-only blob. Each round prints a sum over the mapping; at the end it
 * checks that the seals, the contents and the refusals (write, mprotect to writable) are as they
 * were, and prints "memseal ok".
 * usage: memseal ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }
#define SIZE (256 << 10)
#define SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	setvbuf(stdout, NULL, _IONBF, 0);
	int m = memfd_create("hpc-test-sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (m < 0 || ftruncate(m, SIZE)) die("memfd");
	static unsigned char b[SIZE];
	for (int i = 0; i < SIZE; i++) b[i] = (unsigned char)(i * 7 + 3);
	if (pwrite(m, b, SIZE, 0) != SIZE) die("pwrite");
	if (fcntl(m, F_ADD_SEALS, SEALS)) die("seal");
	const unsigned char *p = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, m, 0);
	if (p == MAP_FAILED) die("mmap");
	for (int r = 0; r < rounds; r++) {
		unsigned long sum = 0;
		for (int i = 0; i < SIZE; i += 64) sum += p[i] * (unsigned long)(i + r);
		printf("round %d sum %lu\n", r, sum);
		nap(us);
	}
	if (fcntl(m, F_GET_SEALS) != SEALS) die("seals changed");
	for (int i = 0; i < SIZE; i++) if (p[i] != (unsigned char)(i * 7 + 3)) die("contents changed");
	if (pwrite(m, b, 1, 0) != -1 || errno != EPERM) die("a write to the sealed memfd did not fail with EPERM");
	if (mprotect((void *)p, SIZE, PROT_READ | PROT_WRITE) != -1 || errno != EACCES) die("the read-only mapping could be made writable");
	printf("memseal ok\n");
	return atoi(argv[3]);
}
