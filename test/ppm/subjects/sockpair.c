/* Socketpairs whose both ends the process holds, with data queued in them: stream, datagram and
 * seqpacket pairs keep a backlog of messages in both directions (boundaries and order checked),
 * one end of the stream pair is shut down for writing halfway (its peer must read the rest and
 * then the end of file), and the socket options set on them must survive.
 * usage: sockpair ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <time.h>
#include <sys/socket.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }

static int mlen(int k) { return 1 + (k * 131) % 900; }
static void fill(unsigned char *b, int k) { for (int j = 0; j < mlen(k); j++) b[j] = (unsigned char)(k * 7 + j); }

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	int st[2], dg[2], sq[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, dg) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq))
		die("socketpair");
	int big = 300000;
	if (setsockopt(dg[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big)) die("SO_SNDBUF");
	int sent[2] = { 0, 0 }, got[2] = { 0, 0 };	/* messages per direction of dg and sq */
	unsigned char wseq = 0, rseq = 0, b[4096];
	long sbacklog = 0, total = 0;
	int shut = 0;
	for (int i = 0; i < rounds; i++) {
		/* datagrams and seqpackets: two sent each way, one received each way */
		for (int dir = 0; dir < 2; dir++) {
			for (int k = 0; k < 2; k++) {
				fill(b, sent[dir]);
				if (send(dg[dir], b, mlen(sent[dir]), 0) != mlen(sent[dir])) die("send dgram");
				if (send(sq[dir], b, mlen(sent[dir]), 0) != mlen(sent[dir])) die("send seqpacket");
				sent[dir]++;
			}
			/* keep 4 to 6 messages queued (the datagram queue is short: max_dgram_qlen) */
			for (int k = sent[dir] - got[dir] > 5 ? 2 : 1; k > 0; k--) {
				unsigned char want[4096];
				fill(want, got[dir]);
				ssize_t r = recv(dg[1 - dir], b, sizeof b, 0);
				if (r != mlen(got[dir]) || memcmp(b, want, r)) die("dgram boundary or content");
				r = recv(sq[1 - dir], b, sizeof b, 0);
				if (r != mlen(got[dir]) || memcmp(b, want, r)) die("seqpacket boundary or content");
				got[dir]++;
			}
		}
		/* stream: bytes in, all but a backlog out; the writer shuts down halfway */
		if (!shut) {
			int n = 300 + (i * 577) % 1500;
			for (int k = 0; k < n; k++) b[k] = wseq++;
			if (write(st[0], b, n) != n) die("write stream");
			sbacklog += n;
			if (i == rounds / 2) { shutdown(st[0], SHUT_WR); shut = 1; }
		}
		while (sbacklog > 2000) {
			ssize_t r = read(st[1], b, sbacklog - 2000 < (long)sizeof b ? sbacklog - 2000 : (long)sizeof b);
			if (r <= 0) die("read stream");
			for (ssize_t k = 0; k < r; k++) if (b[k] != rseq++) die("stream sequence");
			sbacklog -= r;
			total += r;
		}
		int v = 0;
		socklen_t sl = sizeof v;
		if (getsockopt(dg[0], SOL_SOCKET, SO_SNDBUF, &v, &sl) || v != 2 * big) die("SO_SNDBUF lost");
		printf("round %d queued %d/%d stream %ld shut %d\n", i, sent[0] - got[0], sent[1] - got[1], total, shut);
		fflush(stdout);
		nap(us);
	}
	ssize_t r;
	while ((r = read(st[1], b, sizeof b)) > 0) for (ssize_t k = 0; k < r; k++) if (b[k] != rseq++) die("stream tail");
	if (r != 0 || rseq != wseq) die("stream end of file");
	if (send(st[0], "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) die("shut-down end still writes");
	for (int dir = 0; dir < 2; dir++)
		while (got[dir] < sent[dir]) {
			unsigned char want[4096];
			fill(want, got[dir]);
			if (recv(dg[1 - dir], b, sizeof b, 0) != mlen(got[dir]) || memcmp(b, want, mlen(got[dir]))) die("dgram tail");
			if (recv(sq[1 - dir], b, sizeof b, 0) != mlen(got[dir]) || memcmp(b, want, mlen(got[dir]))) die("seqpacket tail");
			got[dir]++;
		}
	if (recv(dg[1], b, sizeof b, MSG_DONTWAIT) != -1 || errno != EAGAIN) die("extra datagram");
	printf("sockets ok\n");
	return atoi(argv[3]);
}
