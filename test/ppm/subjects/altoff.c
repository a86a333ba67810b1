/* An alternate signal stack given up while the process is away: it sets one up, prints "ready";
 * once the file OFF exists it turns it off (SS_DISABLE) and prints "off"; once the file ASK
 * exists it prints what the kernel says of its alternate stack ("altstack disabled" or
 * "altstack enabled") and exits 0.
 * usage: altoff OFF ASK */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static char stack[65536];

static void nap(void) { struct timespec d = { 0, 5000000 }; nanosleep(&d, NULL); }

int main(int argc, char **argv)
{
	if (argc != 3) { fprintf(stderr, "usage: altoff OFF ASK\n"); return 2; }
	setvbuf(stdout, NULL, _IONBF, 0);
	stack_t ss = { .ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL)) return 1;
	printf("ready\n");
	while (access(argv[1], F_OK)) nap();
	stack_t off = { .ss_flags = SS_DISABLE };
	if (sigaltstack(&off, NULL)) return 1;
	printf("off\n");
	while (access(argv[2], F_OK)) nap();
	stack_t now;
	if (sigaltstack(NULL, &now)) return 1;
	printf("altstack %s\n", now.ss_flags & SS_DISABLE ? "disabled" : "enabled");
	return 0;
}
