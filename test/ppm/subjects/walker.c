/* Memory walker: MB megabytes of anonymous memory, ROUNDS walks that read and modify every page.
 * With THREADS > 1 the memory is cut in THREADS slices, each walked by a thread of its own (the
 * main thread walks the first and prints); they all run before the first line.
 * usage: walker MB ROUNDS DELAY_US EXIT_CODE [THREADS] */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/mman.h>

static uint8_t *m;
static size_t n, slice;
static int rounds;
static long delay;

static uint64_t walk(size_t from, size_t to, int r)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = from; i < to; i += 4096) {
		uint64_t *p = (uint64_t *)(m + i + (r * 64) % 4096);
		h = (h ^ *p) * 1099511628211ULL;
		*p += h;
	}
	return h;
}

static void *walker(void *a)
{
	size_t k = (size_t)a;
	for (int r = 0; r < rounds; r++) { walk(k * slice, k * slice + slice, r); usleep(delay); }
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 5) return 2;
	size_t mb = atol(argv[1]);
	n = mb << 20;
	rounds = atoi(argv[2]);
	delay = atol(argv[3]);
	int nt = argc > 5 ? atoi(argv[5]) : 1;
	if (nt < 1 || nt > 256) return 2;
	m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return 2;
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < n; i += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *(uint64_t *)(m + i) = x; }
	slice = n / nt / 4096 * 4096;
	pthread_t t;
	for (size_t k = 1; k < (size_t)nt; k++) if (pthread_create(&t, NULL, walker, (void *)k)) return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	for (int r = 0; r < rounds; r++) {
		uint64_t h = walk(0, nt > 1 ? slice : n, r);
		printf("walk %d %016llx\n", r, (unsigned long long)h);
		usleep(delay);
	}
	return atoi(argv[4]);
}
