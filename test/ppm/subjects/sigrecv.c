/* Takes COUNT signals of SIGUSR1 and SIGRTMIN..SIGRTMIN+3 (all blocked) as they come, with
 * sigwaitinfo, printing for each its number, code, value and sender pid; exits 0.
 * Prints "ready" first. usage: sigrecv COUNT */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 2) return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	for (int i = 0; i < 4; i++) sigaddset(&s, SIGRTMIN + i);
	sigprocmask(SIG_BLOCK, &s, NULL);
	printf("ready\n");
	for (int n = atoi(argv[1]); n > 0; n--) {
		siginfo_t si;
		int sig = sigwaitinfo(&s, &si);
		if (sig < 0 && errno == EINTR) { n++; continue; }	/* (a stop, such as a dump's, interrupts it) */
		if (sig < 0) { perror("sigwaitinfo"); return 1; }
		printf("sig %d code %d value %lld pid %d\n", sig, si.si_code, (long long)(long)si.si_value.sival_ptr, (int)si.si_pid);
	}
	return 0;
}
