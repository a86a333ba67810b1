/* CPU-and-memory counter: ROUNDS rounds over an array, each round prints a checksum.
 * Around each sleep it also checks that rseq is registered: it scribbles on the rseq area's
 * cpu_id_start, which the kernel rewrites after a sleep only for a registered area.
 * usage: counter ROUNDS ARRAY_KB EXIT_CODE [ROUND_USEC] */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <time.h>
#include <sys/rseq.h>

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10;
	size_t kb = argc > 2 ? strtoul(argv[2], NULL, 10) : 400;
	int code = argc > 3 ? atoi(argv[3]) : 7;
	long usec = argc > 4 ? atol(argv[4]) : 100000;
	size_t n = kb * 1024 / sizeof(uint64_t);
	uint64_t *a = malloc(n * sizeof *a), h = 1469598103934665603ULL;
	int lost = 0;
	for (size_t i = 0; i < n; i++) a[i] = i * 2654435761u;
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int r = 0; r < rounds; r++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			for (size_t i = 0; i < n; i++) { a[i] = a[i] * 6364136223846793005ULL + 1442695040888963407ULL + r; h = (h ^ a[i]) * 1099511628211ULL; }
			clock_gettime(CLOCK_MONOTONIC, &t1);
		} while ((t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000 < usec && (h & 0));
		volatile struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
		if (__rseq_size) rs->cpu_id_start = 0xdeadbeef;
		usleep(usec > 0 ? usec : 1);
		/* rewritten by the kernel after a switch; a sleep without one proves nothing: a few more */
		for (int k = 0; k < 5 && __rseq_size && rs->cpu_id_start == 0xdeadbeef; k++) usleep(200);
		if (__rseq_size && rs->cpu_id_start == 0xdeadbeef) lost++;
		printf("round %d %016llx\n", r, (unsigned long long)h);
	}
	printf("done %016llx rseq %s\n", (unsigned long long)h, !__rseq_size ? "none" : lost ? "LOST" : "ok");
	return code;
}
