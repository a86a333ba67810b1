/* Caught on its alternate signal stack: it sets one up and a SIGUSR1 handler that runs on it
 * (SA_ONSTACK), prints "ready"; the handler prints "in handler" and waits there until the file GO
 * exists, checks that it still runs on the alternate stack, prints "handler done" (or "handler off
 * its stack"); then main prints "bye" and exits 0.
 * usage: onalt GO */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char stack[65536];
static const char *go;
static volatile sig_atomic_t done;

static void nap(void) { struct timespec d = { 0, 5000000 }; nanosleep(&d, NULL); }

static void on_usr1(int s)
{
	(void)s;
	char here;
	printf("in handler\n");
	while (access(go, F_OK)) nap();
	stack_t now;
	int on = !sigaltstack(NULL, &now) && (now.ss_flags & SS_ONSTACK) && &here >= stack && &here < stack + sizeof stack;
	printf("handler %s\n", on ? "done" : "off its stack");
	done = 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) { fprintf(stderr, "usage: onalt GO\n"); return 2; }
	go = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	stack_t ss = { .ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL)) return 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready\n");
	while (!done) nap();
	printf("bye\n");
	return 0;
}
