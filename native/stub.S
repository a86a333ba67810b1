/* hpc-ppm restore stub: no libc, no TLS, no rseq. It only parks in pause() until the
 * restorer (its ptrace tracer) has turned it into the image. Linked at 0x2a0000000000,
 * away from where image regions usually live. */
	.globl _start
	.text
_start:
	mov $34, %eax		/* __NR_pause */
	syscall
	jmp _start
	.section .note.GNU-stack,"",@progbits
