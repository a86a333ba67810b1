/* Locked memory and shared memory (negative cases). usage: mlocker lock|share SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	int s = atoi(argv[2]);
	if (!strcmp(argv[1], "lock")) {
		char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mlock(p, 65536)) { perror("mlock"); return 2; }
	} else {
		char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		p[0] = 1;
		if (fork() == 0) { p[1] = 2; for (int i = 0; i < s * 10; i++) usleep(100000); _exit(0); }
		/* parent and child share p; the child is the parent's child too */
	}
	for (int i = 0; i < s * 10; i++) usleep(100000);
	printf("done\n");
	return 0;
}
