/* Counts SIGUSR1 (a SA_RESTART handler) while it holds MB MiB of memory it wrote: every 5 ms it
 * prints "usr1 N" when the count has changed, until it gets SIGUSR2; then "done N" and exit 0.
 * For the test of a signal that comes while the process is being restored (its memory filled).
 * usage: usr1 MB */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t usr1, usr2;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2 = 1; }

int main(int argc, char **argv)
{
	if (argc != 2) { fprintf(stderr, "usage: usr1 MB\n"); return 2; }
	size_t len = (size_t)atol(argv[1]) << 20;
	unsigned char *m = malloc(len ? len : 1);
	if (!m) return 1;
	for (size_t i = 0; i < len; i++) m[i] = (unsigned char)(i * 131 + 7);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	int seen = 0;
	while (!usr2) {
		struct timespec d = { 0, 5000000 };
		nanosleep(&d, NULL);
		if (usr1 != seen) { seen = usr1; printf("usr1 %d\n", seen); }
	}
	unsigned sum = 0;
	for (size_t i = 0; i < len; i += 4096) sum += m[i];
	printf("done %d %u\n", (int)usr1, sum);
	return 0;
}
