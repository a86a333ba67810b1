/* Pipes whose both ends the process holds (as xz's self-pipe): a stream pipe that always keeps
 * a backlog of bytes buffered, a packet-mode pipe (O_DIRECT) whose packets must keep their
 * boundaries, a non-blocking read end, a duplicated write end, and a second open file
 * description of the stream pipe's read end (opened through /proc/self/fd). Every read is
 * checked against the sequence that was written.
 * usage: selfpipe ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	int s[2], p[2];
	if (pipe2(s, O_NONBLOCK) || pipe2(p, O_DIRECT)) die("pipe2");
	int wdup = dup(s[1]);	/* a duplicate: the same open file description */
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", s[0]);
	int r2 = open(path, O_RDONLY | O_NONBLOCK);	/* another description of the read end */
	if (wdup < 0 || r2 < 0) die("dup/open");
	unsigned char wseq = 0, rseq = 0;
	long backlog = 0, sum = 0;
	int pk_w = 0, pk_r = 0;
	for (int i = 0; i < rounds; i++) {
		/* stream: write a round's worth, read back all but a backlog of about 3000 bytes */
		unsigned char b[4096];
		int n = 500 + (i * 733) % 2000;
		for (int k = 0; k < n; k++) b[k] = wseq++;
		if (write(i % 2 ? wdup : s[1], b, n) != n) die("write stream");
		backlog += n;
		while (backlog > 3000) {
			int want = backlog - 3000 < (long)sizeof b ? backlog - 3000 : (int)sizeof b;
			ssize_t r = read(i % 3 ? s[0] : r2, b, want);
			if (r <= 0) die("read stream");
			for (ssize_t k = 0; k < r; k++) { if (b[k] != rseq) die("stream out of sequence"); rseq++; sum += b[k]; }
			backlog -= r;
		}
		/* packets: two in, one or two out (a backlog of 3 to 5), each read must return exactly
		 * one packet */
		for (int k = 0; k < 2; k++) {
			int len = 1 + (pk_w * 37) % 300;
			for (int j = 0; j < len; j++) b[j] = (unsigned char)(pk_w + j);
			if (write(p[1], b, len) != len) die("write packet");
			pk_w++;
		}
		for (int k = pk_w - pk_r > 4 ? 2 : 1; k > 0; k--) {
			ssize_t r = read(p[0], b, sizeof b);
			int len = 1 + (pk_r * 37) % 300;
			if (r != len) die("packet boundary lost");
			for (int j = 0; j < len; j++) if (b[j] != (unsigned char)(pk_r + j)) die("packet content");
			pk_r++;
		}
		if (!(fcntl(s[0], F_GETFL) & O_NONBLOCK) || !(fcntl(p[1], F_GETFL) & O_DIRECT)) die("flags lost");
		printf("round %d backlog %ld packets %d sum %ld\n", i, backlog, pk_w - pk_r, sum);
		fflush(stdout);
		nap(us);
	}
	/* the end: drain everything, the write ends closed: end of file */
	close(s[1]);
	close(wdup);
	close(p[1]);
	unsigned char b[4096];
	ssize_t r;
	while ((r = read(s[0], b, sizeof b)) > 0) for (ssize_t k = 0; k < r; k++) if (b[k] != rseq++) die("tail out of sequence");
	if (r != 0 || rseq != wseq) die("stream tail");
	while ((r = read(p[0], b, sizeof b)) > 0) pk_r++;
	if (r != 0 || pk_r != pk_w) die("packet tail");
	printf("pipes ok\n");
	return atoi(argv[3]);
}
