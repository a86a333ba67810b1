/*
 * ptyrun CMD [ARG...]: run CMD on a new 80x24 pty. Standard input is copied to the pty, the pty
 * to standard output. It keeps reading until the pty reports EIO, which the kernel does only once
 * every slave fd is closed and all buffered output has been read, so nothing the program wrote
 * last is lost (script(1) stops reading 10 ms after its child dies). Exits with the child's
 * status, or 128 + the signal that killed it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, ssize_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += w;
		len -= w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: ptyrun CMD [ARG...]\n");
		return 2;
	}
	struct winsize ws = { .ws_row = 24, .ws_col = 80 };
	int master;
	pid_t pid = forkpty(&master, NULL, NULL, &ws);
	if (pid < 0) {
		perror("ptyrun: forkpty");
		return 1;
	}
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		fprintf(stderr, "ptyrun: %s: %s\n", argv[1], strerror(errno));
		_exit(127);
	}
	struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = master, .events = POLLIN } };
	char buf[65536];
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("ptyrun: poll");
			break;
		}
		if (p[0].revents) {
			ssize_t r = read(0, buf, sizeof buf);
			if (r <= 0 || write_all(master, buf, r) < 0)
				p[0].fd = -1; /* no more input; keep reading the pty */
		}
		if (p[1].revents) {
			ssize_t r = read(master, buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break; /* EIO: no slave left and nothing buffered */
			if (write_all(1, buf, r) < 0)
				break;
		}
	}
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			perror("ptyrun: waitpid");
			return 1;
		}
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
