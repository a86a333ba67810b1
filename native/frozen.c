/* dump --confirm (docs/ppm.md "A guest kept frozen as its copy"): once its image is out, the
 * process is not removed. It stays frozen (DUMPED) as the copy kept until the target runs it,
 * and lines on fd 5 say what becomes of it:
 *   DRAIN PATH...  until those pipes are empty (the ends the caller reads, e.g. /proc/KEEPER/fd/N:
 *                what the process wrote before its freeze has then been read): DRAINED 1, or
 *                DRAINED 0 after FROZEN_DRAIN_MS
 *   KILL         the move is committed: it is removed (OK)
 *   RELEASE      the target could not run it: it runs on as it was (RELEASED)
 *   SAVE         its image is written again, into the copy (fd 6, --copy), then it is removed
 *                (SAVED, or ERR: it is removed all the same, the caller has what the stream had)
 * The end of fd 5 (the caller is gone) is SAVE: the next daemon finds the copy, as it would have
 * found one written beside the stream. Any other line: ERR EINVAL, and it stays frozen. It never
 * runs while this helper is gone (EXITKILL). */
#include "threads.h"
#include <sys/ioctl.h>

int g_keep_fd = -1;

#define FROZEN_DRAIN_MS 10000
#define FROZEN_DRAIN_MAX 128	/* pipes in one DRAIN (stdout, stderr and up to MAX_RELAY relayed ones) */

/* until the listed pipes hold nothing (1), or FROZEN_DRAIN_MS (0); a path that is not a pipe
 * (or is gone) is left out */
static int frozen_drain(char *list)
{
	int fds[FROZEN_DRAIN_MAX], n = 0;
	for (char *save = NULL, *p = strtok_r(list, " ", &save); p && n < FROZEN_DRAIN_MAX; p = strtok_r(NULL, " ", &save)) {
		/* (opened for reading without blocking: a reader more on the pipe, which reads nothing) */
		int d = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		struct stat sb;
		if (d >= 0 && !fstat(d, &sb) && S_ISFIFO(sb.st_mode)) fds[n++] = d;
		else if (d >= 0) close(d);
	}
	double t0 = now_ms();
	int empty = 0;
	for (;;) {
		empty = 1;
		for (int i = 0; i < n && empty; i++) {
			int k = 0;
			if (!ioctl(fds[i], FIONREAD, &k) && k > 0) empty = 0;
		}
		if (empty || now_ms() - t0 > FROZEN_DRAIN_MS) break;
		usleep(200);
	}
	for (int i = 0; i < n; i++) close(fds[i]);
	return empty;
}

/* its image again, into the copy: a second dump of the same freeze (dump_image leaves the tracee
 * as it found it) */
static int frozen_save(struct tracee *t)
{
	if (g_keep_fd < 0) return fail(EBADF, "no copy to write (--copy)");
	/* written for a caller that is gone, or that asked: nothing aborts it now */
	signal(SIGUSR2, SIG_IGN);
	g_orphaned = 0;
	g_stall_ms = -1;
	precopy_done();
	relay_forget();
	/* HPC_PPM_TEST_SAVE_GATE=PATH (tests): the copy is written only once PATH exists (30 s at most),
	 * so that a test can start the next daemon while this helper still holds the process */
	const char *gate = getenv("HPC_PPM_TEST_SAVE_GATE");
	for (int i = 0; gate && *gate && i < 30000 && access(gate, F_OK); i++) usleep(1000);
	if (ftruncate(g_keep_fd, 0) || lseek(g_keep_fd, 0, SEEK_SET) < 0) return fail(errno, "the copy: %s", strerror(errno));
	struct dumpres res;
	int e = dump_image(t, g_keep_fd, NULL, &res, NULL);
	if (!e) free(res.vmas);
	return e;
}

int dump_frozen(struct tracee *t)
{
	pid_t pid = t->pid;
	ptrace(PTRACE_SETOPTIONS, pid, 0, SEIZE_OPTS | PTRACE_O_EXITKILL);
	close(3);	/* the stream is complete: the connection is the caller's alone again */
	ctlf("DUMPED %d", pid);
	static char line[8192];	/* (a DRAIN of FROZEN_DRAIN_MAX paths of up to 60 characters) */
	for (;;) {
		int end = cmd_line(line, sizeof line);
		trace("verdict");
		if (!end && !strncmp(line, "DRAIN", 5) && (line[5] == ' ' || !line[5])) {
			ctlf("DRAINED %d", frozen_drain(line + 5));
			continue;
		}
		if (!end && !strcmp(line, "KILL")) {
			kill_reap(pid);
			precopy_done();
			ctlf("OK");
			return 0;
		}
		if (!end && !strcmp(line, "RELEASE")) {
			precopy_done();
			release_live(t);
			ctlf("RELEASED %d", pid);
			return 0;
		}
		if (!end && strcmp(line, "SAVE")) {
			ctlf("ERR EINVAL unknown command (DRAIN, KILL, RELEASE or SAVE): %.64s", line);
			continue;
		}
		/* SAVE, or the end of fd 5 */
		int e = frozen_save(t);
		kill_reap(pid);
		if (e) return report_err();
		ctlf("SAVED %d", pid);
		return 0;
	}
}
