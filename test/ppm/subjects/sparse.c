/* Two private anonymous regions of MB MiB each: a dense one it writes in full and a sparse one it
 * writes one page of per 2 MiB. It prints "dense ADDR sparse ADDR" (hex) and then, at each SIGUSR1,
 * "sum DENSE SPARSE": checksums of both; SIGUSR2 ends it (exit 0). For the test of the pages it
 * only read (the kernel's zero page), left out of its image (a sparse region read in full must not
 * grow).
 * usage: sparse MB */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

static volatile sig_atomic_t usr1, usr2;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2 = 1; }

static uint64_t sum(const uint8_t *m, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i += 8) h = (h ^ *(const uint64_t *)(m + i)) * 1099511628211ULL;
	return h;
}

int main(int argc, char **argv)
{
	if (argc != 2) { fprintf(stderr, "usage: sparse MB\n"); return 2; }
	size_t len = (size_t)atol(argv[1]) << 20;
	/* one mapping: the dense region, a guard page (two regions, not one), the sparse one */
	uint8_t *d = mmap(NULL, 2 * len + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d == MAP_FAILED || mprotect(d + len, 4096, PROT_NONE)) return 1;
	uint8_t *s = d + len + 4096;
	for (size_t i = 0; i < len; i += 8) *(uint64_t *)(d + i) = i * 0x9E3779B97F4A7C15ULL + 7;
	for (size_t i = 3 * 4096; i < len; i += 2 << 20) s[i] = (uint8_t)(i >> 21) | 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("dense %lx sparse %lx\n", (unsigned long)d, (unsigned long)s);
	int seen = 0;
	while (!usr2) {
		if (usr1 != seen) { seen = usr1; printf("sum %llx %llx\n", (unsigned long long)sum(d, len), (unsigned long long)sum(s, len)); }
		usleep(5000);
	}
	return 0;
}
