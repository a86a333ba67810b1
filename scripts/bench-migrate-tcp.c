/* The C reference pairs of scripts/bench-migrate, one program for both:
 * - raw TCP (`client ... hot`): the client sends BYTES from one 1 MiB buffer, reused; the server
 *   reads them into one 1 MiB buffer, reused, and acknowledges with one byte. The bytes on the wire
 *   and nothing else: no memory is read or filled but what stays in the caches.
 * - memory to memory (`client ...`): the client sends BYTES from a mapping of its own that it has
 *   written (resident, distinct pages, as a process's memory is), the server reads them into a
 *   fresh anonymous mapping of that size (new pages, as a restored process's are).
 * The client times connect .. ack. The length it sends first has its top bit set for `hot`.
 *   bench-migrate-tcp server ADDR PORT                  (prints "listening", serves until killed)
 *   bench-migrate-tcp client ADDR PORT BYTES REPS [hot] (prints a JSON array of ms) */
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

#define HOT (1ULL << 63)	/* in the length: the server reads into its one buffer */
#define HOT_BUF (1 << 20)

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
	if (argc < 4 || (strcmp(argv[1], "server") && (strcmp(argv[1], "client") || argc < 6 || (argc > 6 && strcmp(argv[6], "hot"))))) {
		fprintf(stderr, "usage: bench-migrate-tcp server ADDR PORT | client ADDR PORT BYTES REPS [hot]\n");
		return 2;
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", argv[2]); return 2; }
	if (!strcmp(argv[1], "server")) {
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) { perror("listen"); return 1; }
		static char buf[HOT_BUF];
		printf("listening\n");
		fflush(stdout);
		for (;;) {
			int c = accept(s, NULL, NULL);
			if (c < 0) continue;
			uint64_t n = 0;
			if (full(c, &n, 8, 1)) { close(c); continue; }
			int hot = !!(n & HOT), ok = 0;
			n &= ~HOT;
			if (hot) {
				uint64_t left = n;
				while (left && !full(c, buf, left < HOT_BUF ? left : HOT_BUF, 1)) left -= left < HOT_BUF ? left : HOT_BUF;
				ok = !left;
			} else if (n > 0 && n < (1ULL << 40)) {
				char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (m != MAP_FAILED) { ok = !full(c, m, n, 1); munmap(m, n); }
			}
			if (ok) full(c, "k", 1, 0);
			close(c);
		}
	}
	uint64_t n = strtoull(argv[4], NULL, 10);
	int reps = atoi(argv[5]), hot = argc > 6;
	uint64_t len = hot ? HOT_BUF : n;
	char *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (src == MAP_FAILED) { perror("mmap"); return 1; }
	for (uint64_t i = 0; i + 8 <= len; i += 8) *(uint64_t *)(src + i) = i * 0x9e3779b97f4a7c15ULL;
	uint64_t head = hot ? n | HOT : n;
	printf("[");
	for (int r = 0; r < reps; r++) {
		double t0 = now_ms();
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		char k;
		int e = full(s, &head, 8, 0);
		for (uint64_t off = 0; !e && off < n; off += len) e = full(s, hot ? src : src + off, n - off < len ? n - off : len, 0);
		if (e || full(s, &k, 1, 1)) { fprintf(stderr, "transfer failed\n"); return 1; }
		close(s);
		printf("%s%.3f", r ? "," : "", now_ms() - t0);
	}
	printf("]\n");
	return 0;
}
