/* Threaded program: a second thread counts while main prints at the end. With MODE, the second
 * thread first makes something of its own that cannot move: `files` a descriptor table
 * (unshare(CLONE_FILES)), `creds` an effective uid (a raw setresuid, which glibc would otherwise
 * apply to every thread); with `leader` the main thread exits at once (pthread_exit) and the
 * second thread prints and ends the process instead.
 * The second thread says "ready" on stderr once it runs.
 * usage: threads SECONDS [files|creds|leader] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>

static volatile unsigned long n;
static const char *mode = "";
static int seconds;

static void *spin(void *a)
{
	(void)a;
	if (!strcmp(mode, "files") && unshare(CLONE_FILES)) perror("unshare");
	if (!strcmp(mode, "creds") && syscall(SYS_setresuid, -1, 65534, -1)) perror("setresuid");
	fprintf(stderr, "ready\n");
	for (;;) {
		n++;
		usleep(1000);
		if (!strcmp(mode, "leader") && n >= (unsigned long)seconds * 1000) { printf("threads done\n"); exit(0); }
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	if (argc > 2) mode = argv[2];
	seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_create(&t, NULL, spin, NULL);
	if (!strcmp(mode, "leader")) pthread_exit(NULL);
	for (int i = 0; i < seconds * 10; i++) usleep(100000);
	printf("threads done\n");
	return 0;
}
