/* File writer: reads INPUT in 1 KiB chunks, writes a transformed copy to OUT1 with write(2)
 * (O_WRONLY|O_CLOEXEC) and a summary line per chunk to OUT2 through a stdio FILE opened "a"
 * (O_APPEND, fully buffered, so most of it sits in memory until exit).
 * usage: filewriter INPUT OUT1 OUT2 DELAY_US EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <ctype.h>

int main(int argc, char **argv)
{
	if (argc < 6) return 2;
	int in = open(argv[1], O_RDONLY);
	int o1 = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FILE *o2 = fopen(argv[3], "a");
	long delay = atol(argv[4]);
	if (in < 0 || o1 < 0 || !o2) { perror("open"); return 2; }
	setvbuf(o2, NULL, _IOFBF, 1 << 20);
	char buf[1024];
	unsigned long chunk = 0, sum = 0;
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) { sum = sum * 31 + (unsigned char)buf[i]; buf[i] = toupper((unsigned char)buf[i]); }
		if (write(o1, buf, n) != n) { perror("write"); return 2; }
		fprintf(o2, "chunk %lu bytes %zd sum %016lx\n", chunk++, n, sum);
		if (chunk % 16 == 0) usleep(delay);
	}
	fclose(o2);
	close(o1);
	return atoi(argv[5]);
}
