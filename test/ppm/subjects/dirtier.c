/* Keeps writing memory: MB megabytes of anonymous memory, PAGES pages written per step, a step
 * every DELAY_US. Every 64 steps a side region is mapped, written and later unmapped again, and a
 * page of the main memory is zapped (MADV_DONTNEED, it reads as zeros), so that pages sent early in
 * a pre-copy are no longer there at the end; the side region is moved with mremap halfway. STOP is a number of steps, or a path: it runs until
 * the file exists. At the end it prints the number of steps and a hash of the whole memory: the
 * same for any run of the same number of steps.
 * SIDE 0 leaves the side regions and zapped pages out (only the PAGES writes); WORKSET MiB: the
 * writes go round the first WORKSET MiB only.
 * With DIRTIER_EXIT_ON_WP=PATH in its environment, once PATH exists it ends by itself (exit 7, no
 * end line) as soon as its memory is registered for write protection: a pre-copy round has begun.
 * usage: dirtier MB PAGES DELAY_US STOP [SIDE [WORKSET]] */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

/* some mapping of this process is registered for userfaultfd write protection (VmFlags `uw`) */
static int write_protected(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f) return 0;
	char l[512];
	int wp = 0;
	while (!wp && fgets(l, sizeof l, f))
		if (!strncmp(l, "VmFlags:", 8) && strstr(l, " uw")) wp = 1;
	fclose(f);
	return wp;
}

int main(int argc, char **argv)
{
	const char *armed = getenv("DIRTIER_EXIT_ON_WP");
	if (argc < 5 || argc > 7) return 2;
	int churn = argc >= 6 ? atoi(argv[5]) : 1;
	size_t n = (size_t)atol(argv[1]) << 20, np = n / 4096;
	long pages = atol(argv[2]), delay = atol(argv[3]);
	char *e;
	long maxsteps = strtol(argv[4], &e, 10);
	const char *stop = *e ? argv[4] : NULL;
	uint8_t *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || !np) return 2;
	size_t ws = argc == 7 ? (size_t)atol(argv[6]) << 8 : np;	/* pages written round */
	if (!ws || ws > np) return 2;
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < n; i += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *(uint64_t *)(m + i) = x; }
	uint8_t *side = NULL;
	uint64_t sidesum = 0;
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	long s;
	/* stat, not access: a guest's real uid is its guest id, and access(2) checks with that */
	struct stat sst;
	for (s = 0; stop ? stat(stop, &sst) != 0 : s < maxsteps; s++) {
		for (long j = 0; j < pages; j++) {
			size_t pg = ((size_t)s * pages + j) % ws;
			uint64_t *p = (uint64_t *)(m + pg * 4096 + (s % 512) * 8);
			*p = *p * 6364136223846793005ULL + (uint64_t)s;
		}
		if (!churn) ;
		else if (s % 64 == 0) {
			side = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (side == MAP_FAILED) return 3;
			memset(side, (int)(s & 0xff), 1 << 20);
			madvise(m + (size_t)(s / 64 % np) * 4096, 4096, MADV_DONTNEED);
		} else if (s % 64 == 16 && side) {
			/* moved elsewhere with its data (the registration of a tracked region goes) */
			void *d = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (d == MAP_FAILED) return 3;
			side = mremap(side, 1 << 20, 1 << 20, MREMAP_MAYMOVE | MREMAP_FIXED, d);
			if (side == MAP_FAILED) return 3;
			side[4096 * (s / 64 % 256)] ^= 0x5a;
		} else if (s % 64 == 32 && side) {
			for (size_t i = 0; i < (1 << 20); i += 4096) sidesum += side[i];
			munmap(side, 1 << 20);
			side = NULL;
		}
		if (armed && stat(armed, &sst) == 0 && write_protected()) _exit(7);
		if (delay) usleep(delay);
	}
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i += 8) h = (h ^ *(uint64_t *)(m + i)) * 1099511628211ULL;
	printf("steps %ld sum %016llx side %llu\n", s, (unsigned long long)h, (unsigned long long)sidesum);
	return 0;
}
