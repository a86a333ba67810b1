/* Speaker on stdout: LINES lines, one every DELAY_US, flushed each time.
 * usage: speaker LINES DELAY_US EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int lines = atoi(argv[1]);
	unsigned long h = 5381;
	for (int i = 0; i < lines; i++) {
		h = h * 33 + i;
		printf("line %d %08lx\n", i, h & 0xffffffff);
		fflush(stdout);
		usleep(atol(argv[2]));
	}
	return atoi(argv[3]);
}
