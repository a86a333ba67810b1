/* XSTATE keeper: loads a pattern into ymm8-ymm15 (and, with AVX-512, zmm24 and k2), spins for a
 * while without any syscall, then checks the registers still hold it. A checkpoint taken while
 * it spins must carry the full vector state. usage: xstate BLOCKS SPIN_ITERATIONS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <cpuid.h>

static int has_avx512(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
	if (!(b & (1u << 16))) return 0;
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 0xe6) == 0xe6;
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	int blocks = atoi(argv[1]);
	long spin = atol(argv[2]);
	int z = has_avx512();
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int r = 0; r < blocks; r++) {
		uint64_t pat[8] __attribute__((aligned(64))), got[8 * 8] __attribute__((aligned(64))), zgot[8] __attribute__((aligned(64)));
		uint64_t kgot = 0;
		for (int i = 0; i < 8; i++) pat[i] = 0x0123456789abcdefULL * (r + 1) + i * 0x1111111111111111ULL;
		__asm__ volatile(
			"vmovdqa (%[p]), %%ymm8\n vpaddq %%ymm8, %%ymm8, %%ymm9\n vpaddq %%ymm9, %%ymm8, %%ymm10\n vpaddq %%ymm10, %%ymm8, %%ymm11\n"
			"vpaddq %%ymm11, %%ymm8, %%ymm12\n vpaddq %%ymm12, %%ymm8, %%ymm13\n vpaddq %%ymm13, %%ymm8, %%ymm14\n vpaddq %%ymm14, %%ymm8, %%ymm15\n"
			"1: dec %[n]\n jnz 1b\n"
			"vmovdqu %%ymm8, 0(%[g])\n vmovdqu %%ymm9, 32(%[g])\n vmovdqu %%ymm10, 64(%[g])\n vmovdqu %%ymm11, 96(%[g])\n"
			"vmovdqu %%ymm12, 128(%[g])\n vmovdqu %%ymm13, 160(%[g])\n vmovdqu %%ymm14, 192(%[g])\n vmovdqu %%ymm15, 224(%[g])\n"
			: [n] "+r"(spin) : [p] "r"(pat), [g] "r"(got)
			: "ymm8", "ymm9", "ymm10", "ymm11", "ymm12", "ymm13", "ymm14", "ymm15", "memory", "cc");
		spin = atol(argv[2]);
		int ok = 1;
		for (int k = 0; k < 8; k++)
			for (int i = 0; i < 4; i++) ok &= got[k * 4 + i] == pat[i] * (k + 1);
		if (z) {
			long n = spin;
			__asm__ volatile(
				".byte 0x62, 0x61, 0xfd, 0x48, 0x6f, 0x00\n"	/* vmovdqa64 (%rax), %zmm24 */
				"movl $0x5a, %%ecx\n .byte 0xc5, 0xf8, 0x92, 0xd1\n"	/* kmovw %ecx, %k2 */
				"1: dec %[n]\n jnz 1b\n"
				".byte 0x62, 0x61, 0xfe, 0x48, 0x7f, 0x07\n"	/* vmovdqu64 %zmm24, (%rdi) */
				".byte 0xc5, 0xf8, 0x93, 0xc2\n"	/* kmovw %k2, %eax */
				: [n] "+r"(n), "=a"(kgot) : "a"(pat), "D"(zgot) : "ecx", "memory", "cc");
			ok &= memcmp(zgot, pat, 64) == 0 && (kgot & 0xffff) == 0x5a;
		}
		printf("block %d %s\n", r, ok ? "ok" : "CORRUPT");
	}
	return 0;
}
