/* threads.c: the threads of a process other than its main thread (docs/ppm.md, "Threads").
 *
 * The main thread is the tracee the engine always worked on (struct tracee); its other threads
 * hang off it (t->thr, t->nthr), each a tracee of its own that shares the main thread's
 * /proc/PID/mem descriptor and vDSO `syscall` address. Every function here takes the main
 * thread's tracee.
 */
#ifndef HPC_PPM_THREADS_H
#define HPC_PPM_THREADS_H

#include "ppm.h"

#define MAX_THREADS 1024	/* more threads than this cannot move (reason `threads`) */

/* check.c: the reasons a multi-threaded process cannot move (threads that do not share the
 * fd table, fs, SysV semaphores; differing credentials, seccomp, namespaces; real-time threads;
 * too many threads; a main thread that has exited). Returns the number of reasons. */
int threads_check(pid_t pid, int print);

/* After seize(main): seizes and stops every other thread, rescanning /proc/PID/task until no new
 * thread shows up (threads created during the freeze are caught too). */
int threads_freeze(struct tracee *t);

/* Detaches every other thread (put back as it was by tracee_back before); the signals its stops
 * took out of the kernel are sent to it again (sigq_resend). Part of release_live. */
void threads_release(struct tracee *t);

/* dump: the state of every other thread (dump_thread each), into a new array of t->nthr;
 * *xfeatures gets the XSAVE features they use */
int threads_dump(struct tracee *t, uint64_t scratch, struct image_thread **out, uint64_t *xfeatures);

/* hollow: makes every other thread exit (signals blocked, rseq unregistered, exit(0) injected)
 * and reaps it; threads not stopped yet are seized first. *touched is set once one is ended. */
int threads_exit(struct tracee *t, int *touched);

/* restore, in the restored main thread (memory, handlers, seccomp in place, still privileged):
 * recreates the image's other threads with clone3 (the image's tids by set_tid per t->keep_tids)
 * and their own state (restore_thread); where a tid changed, patches the words the kernel wrote
 * it into (the clear_child_tid word, robust futex words). */
int threads_create(struct tracee *t, struct image *im, uint64_t scr);

/* restore, last: registers and XSTATE of every other thread; they stay stopped, as the main
 * thread does, until the caller lets the process run (threads_run) */
int threads_finish(struct tracee *t, struct image *im, int eintr_policy);

/* a restored process runs: its other threads are detached (the main thread is the caller's,
 * detached next; their pending signals were queued by sigq_restore); those that could not be
 * (gone, killed) stay in t->thr for the caller to reap */
void threads_run(struct tracee *t);

#endif
