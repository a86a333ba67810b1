/* Thread churn: each round the main thread starts THREADS threads that each start one more
 * thread and join it, every thread hashing (round, its number); then main joins them and prints
 * the round's hash. Threads are created and end all the time, so a freeze comes while some are
 * being made (by threads that are themselves new) and others are exiting.
 * usage: tchurn ROUNDS THREADS EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <pthread.h>

static int rnd;

static uint64_t work(int k)
{
	uint64_t h = 1469598103934665603ULL ^ ((uint64_t)rnd << 20 | (uint64_t)k);
	for (int i = 0; i < 20000; i++) h = (h ^ (uint64_t)i) * 1099511628211ULL;
	return h;
}

static void *inner(void *a)
{
	*(uint64_t *)a = work(1000 + (int)*(uint64_t *)a);
	return NULL;
}

static void *outer(void *a)
{
	uint64_t *r = a, sub = *r;
	pthread_t t;
	if (pthread_create(&t, NULL, inner, &sub)) { *r = 0; return NULL; }
	*r = work((int)*r);
	pthread_join(t, NULL);
	*r ^= sub;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) { fprintf(stderr, "usage: tchurn ROUNDS THREADS EXIT_CODE\n"); return 2; }
	int rounds = atoi(argv[1]), n = atoi(argv[2]);
	if (n < 1 || n > 64) return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t[64];
	uint64_t r[64];
	for (rnd = 0; rnd < rounds; rnd++) {
		for (int k = 0; k < n; k++) {
			r[k] = k;
			if (pthread_create(&t[k], NULL, outer, &r[k])) { printf("pthread_create failed\n"); return 1; }
		}
		uint64_t h = 0;
		for (int k = 0; k < n; k++) { pthread_join(t[k], NULL); h = (h ^ r[k]) * 1099511628211ULL; }
		printf("round %d %016llx\n", rnd, (unsigned long long)h);
	}
	return atoi(argv[3]);
}
