/* Threaded program (a negative case): a second thread counts while main prints.
 * usage: threads SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>

static volatile unsigned long n;
static void *spin(void *a) { (void)a; for (;;) { n++; usleep(1000); } return NULL; }

int main(int argc, char **argv)
{
	pthread_t t;
	pthread_create(&t, NULL, spin, NULL);
	int s = argc > 1 ? atoi(argv[1]) : 5;
	for (int i = 0; i < s * 10; i++) usleep(100000);
	printf("threads done\n");
	return 0;
}
