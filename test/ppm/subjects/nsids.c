/* nsids: a process with two threads besides its main thread that says the ids it has, as it sees
 * them (getpid, and each thread's gettid asked anew), once at start and once per line read from
 * stdin: "pid P tids T1 T2". Lives until its stdin ends. (test/ppm/pidns.test.ts) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static int ask[2][2], answer[2][2];

static void *worker(void *arg)
{
	int k = (int)(long)arg;
	char c;
	while (read(ask[k][0], &c, 1) == 1) {
		int tid = (int)syscall(SYS_gettid);
		if (write(answer[k][1], &tid, sizeof tid) != sizeof tid) break;
	}
	return NULL;
}

static void say(void)
{
	int tids[2];
	for (int k = 0; k < 2; k++) {
		if (write(ask[k][1], "?", 1) != 1 || read(answer[k][0], &tids[k], sizeof tids[k]) != sizeof tids[k]) tids[k] = -1;
	}
	printf("pid %d tids %d %d\n", (int)getpid(), tids[0], tids[1]);
	fflush(stdout);
}

int main(void)
{
	pthread_t th[2];
	for (int k = 0; k < 2; k++) {
		if (pipe(ask[k]) || pipe(answer[k])) return 1;
		pthread_create(&th[k], NULL, worker, (void *)(long)k);
	}
	say();
	char line[256];
	while (fgets(line, sizeof line, stdin)) say();
	return 0;
}
