/* Memory walker: MB megabytes of anonymous memory, ROUNDS walks that read and modify every page.
 * usage: walker MB ROUNDS DELAY_US EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	if (argc < 5) return 2;
	size_t mb = atol(argv[1]), n = mb << 20;
	int rounds = atoi(argv[2]);
	uint8_t *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return 2;
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < n; i += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *(uint64_t *)(m + i) = x; }
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	for (int r = 0; r < rounds; r++) {
		uint64_t h = 1469598103934665603ULL;
		for (size_t i = 0; i < n; i += 4096) {
			uint64_t *p = (uint64_t *)(m + i + (r * 64) % 4096);
			h = (h ^ *p) * 1099511628211ULL;
			*p += h;
		}
		printf("walk %d %016llx\n", r, (unsigned long long)h);
		usleep(atol(argv[3]));
	}
	return atoi(argv[4]);
}
