/* Raw TCP from memory into memory, the second reference of scripts/bench-migrate: the client sends
 * BYTES from a mapping of its own that it has written (resident, distinct pages, as a process's
 * memory is), the server reads them into a fresh anonymous mapping of that size (new pages, as a
 * restored process's are) and acknowledges with one byte; the client times connect .. ack.
 *   bench-migrate-tcp server ADDR PORT             (prints "listening", serves until killed)
 *   bench-migrate-tcp client ADDR PORT BYTES REPS  (prints a JSON array of ms)
 * The bench's other reference (node, one reused 1 MiB buffer each side) has neither cost. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int full(int fd, void *p, size_t n, int rd)
{
	while (n) {
		ssize_t r = rd ? read(fd, p, n) : write(fd, p, n);
		if (r <= 0) return -1;
		p = (char *)p + r;
		n -= r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[1], "server") && (strcmp(argv[1], "client") || argc < 6))) {
		fprintf(stderr, "usage: bench-migrate-tcp server ADDR PORT | client ADDR PORT BYTES REPS\n");
		return 2;
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", argv[2]); return 2; }
	if (!strcmp(argv[1], "server")) {
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) { perror("listen"); return 1; }
		printf("listening\n");
		fflush(stdout);
		for (;;) {
			int c = accept(s, NULL, NULL);
			if (c < 0) continue;
			uint64_t n;
			char *m = MAP_FAILED;
			if (!full(c, &n, 8, 1) && n > 0 && n < (1ULL << 40))
				m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (m != MAP_FAILED && !full(c, m, n, 1)) full(c, "k", 1, 0);
			if (m != MAP_FAILED) munmap(m, n);
			close(c);
		}
	}
	uint64_t n = strtoull(argv[4], NULL, 10);
	int reps = atoi(argv[5]);
	char *src = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (src == MAP_FAILED) { perror("mmap"); return 1; }
	for (uint64_t i = 0; i + 8 <= n; i += 8) *(uint64_t *)(src + i) = i * 0x9e3779b97f4a7c15ULL;
	printf("[");
	for (int r = 0; r < reps; r++) {
		double t0 = now_ms();
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		char k;
		if (full(s, &n, 8, 0) || full(s, src, n, 0) || full(s, &k, 1, 1)) { fprintf(stderr, "transfer failed\n"); return 1; }
		close(s);
		printf("%s%.3f", r ? "," : "", now_ms() - t0);
	}
	printf("]\n");
	return 0;
}
