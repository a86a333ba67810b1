/* Subject of scripts/bench-migrate (compiled at run time into a temp dir).
 * usage: bench-migrate-subject MIB [KIB_PER_S]
 * Maps MIB MiB of anonymous memory and writes every page with pseudo-random words (a different
 * seed per page: no page is zero and no two pages are alike, so nothing can be deduplicated or
 * skipped), then loops forever: without KIB_PER_S, sleep 10 ms and touch one page; with it, wake
 * every 4 ms and write one word in as many pages (the next ones, round the mapping) as keep it
 * at KIB_PER_S KiB of pages dirtied per second (the pre-copy case: 1024 = 1 MiB/s). Prints
 * nothing. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) return 2;
	long mib = strtol(argv[1], NULL, 10);
	long rate = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
	if (mib < 1 || mib > 65536 || rate < 0 || rate > 1 << 20) return 2;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (size_t)mib << 20, npages = len / page;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) return 1;
	for (size_t p = 0; p < npages; p++) {
		uint64_t x = 0x9e3779b97f4a7c15ULL * (p + 1) ^ (uint64_t)getpid() << 32;
		uint64_t *w = (uint64_t *)(mem + p * page);
		for (size_t i = 0; i < page / 8; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17; /* xorshift64 */
			w[i] = x;
		}
	}
	if (rate == 0) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		for (uint64_t n = 0;; n++) {
			nanosleep(&ts, NULL);
			uint64_t *w = (uint64_t *)(mem + (n % npages) * page);
			w[n % (page / 8)] += n | 1;
		}
	}
	/* pages due by now at the rate; a process that was frozen (moved) catches up at once */
	double per_s = rate * 1024.0 / page, t0 = now_s();
	struct timespec ts = { 0, 4 * 1000 * 1000 };
	for (uint64_t n = 0;;) {
		nanosleep(&ts, NULL);
		uint64_t due = (uint64_t)((now_s() - t0) * per_s);
		for (; n < due; n++) {
			uint64_t *w = (uint64_t *)(mem + (n % npages) * page);
			w[n % (page / 8)] += n | 1;
		}
	}
}
