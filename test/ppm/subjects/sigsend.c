/* Queues signal SIG with value VALUE to process PID (sigqueue: si_code SI_QUEUE, si_value VALUE,
 * si_pid this process). usage: sigsend PID SIG VALUE */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 4) { fprintf(stderr, "usage: sigsend PID SIG VALUE\n"); return 2; }
	union sigval v;
	v.sival_ptr = (void *)(long)strtoll(argv[3], NULL, 10);
	if (sigqueue(atoi(argv[1]), atoi(argv[2]), v)) { perror("sigqueue"); return 1; }
	return 0;
}
