/* inotify: watches a directory (IN_CREATE | IN_DELETE) and a file in it (IN_MODIFY), with a gap
 * in the watch numbers (a watch added and removed first); each round creates and removes a file
 * and writes to the watched one, and checks every event (watch number, mask, name). Events are
 * read at once, so none is unread while it sleeps.
 * usage: inotifysub DIR ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>
#include <sys/inotify.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }

static void expect(int fd, int wd, uint32_t mask, const char *name)
{
	union { struct inotify_event e; char b[sizeof(struct inotify_event) + 256]; } u;
	ssize_t r = read(fd, &u, sizeof u);
	if (r < (ssize_t)sizeof u.e) die("read event");
	if (u.e.wd != wd || !(u.e.mask & mask) || (name && strcmp(u.e.name, name))) {
		printf("FAIL event wd %d mask %#x name %s, expected wd %d mask %#x name %s\n", u.e.wd, u.e.mask, u.e.len ? u.e.name : "-", wd, mask, name ? name : "-");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc < 5) return 2;
	const char *dir = argv[1];
	int rounds = atoi(argv[2]), us = atoi(argv[3]);
	char file[4096], p[4096];
	snprintf(file, sizeof file, "%s/watched", dir);
	int wf = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int fd = inotify_init1(IN_CLOEXEC);
	if (wf < 0 || fd < 0) die("setup");
	int gap = inotify_add_watch(fd, "/", IN_CREATE);
	inotify_rm_watch(fd, gap);
	expect(fd, gap, IN_IGNORED, NULL);
	int dwd = inotify_add_watch(fd, dir, IN_CREATE | IN_DELETE), fwd = inotify_add_watch(fd, file, IN_MODIFY);
	if (dwd < 0 || fwd < 0) die("inotify_add_watch");
	for (int i = 0; i < rounds; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%d", i);
		snprintf(p, sizeof p, "%s/%s", dir, name);
		int t = open(p, O_WRONLY | O_CREAT, 0644);
		if (t < 0) die("create");
		close(t);
		expect(fd, dwd, IN_CREATE, name);
		unlink(p);
		expect(fd, dwd, IN_DELETE, name);
		if (write(wf, "x", 1) != 1) die("write");
		expect(fd, fwd, IN_MODIFY, NULL);
		printf("round %d wd %d %d\n", i, dwd, fwd);
		fflush(stdout);
		nap(us);
	}
	printf("inotify ok\n");
	return atoi(argv[4]);
}
