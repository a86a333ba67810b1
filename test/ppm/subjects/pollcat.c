/* cat as an event loop: waits for stdin with poll(2) or select(2), then takes what is there with
 * one non-blocking read of up to 64 KiB, and writes it to stdout; ends at EOF. The shape of Node's
 * or Python's asyncio's stdin readers, without their epoll descriptor (the engine refuses those).
 * usage: pollcat poll|select */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

static char buf[65536];

int main(int argc, char **argv)
{
	int use_select = argc > 1 && !strcmp(argv[1], "select");
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	for (;;) {
		if (use_select) {
			fd_set r;
			FD_ZERO(&r);
			FD_SET(0, &r);
			if (select(1, &r, NULL, NULL, NULL) < 0 && errno != EINTR) return 2;
		} else {
			struct pollfd p = { 0, POLLIN, 0 };
			if (poll(&p, 1, -1) < 0 && errno != EINTR) return 2;
		}
		/* one read per wakeup, as an event loop's callback does */
		ssize_t n = read(0, buf, sizeof buf);
		if (n == 0) return 0;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) continue;
			return 3;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(1, buf + off, n - off);
			if (w < 0 && errno == EINTR) continue;
			if (w <= 0) return 4;
			off += w;
		}
	}
}
