/* Mapping mix: a shared-anonymous region, a MAP_SHARED file mapping, a private file mapping with
 * copy-on-write pages, and private data behind PROT_NONE; each round changes them all and prints
 * their checksums. usage: mapmix SHARED_FILE PRIVATE_FILE ROUNDS DELAY_US EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>

static uint64_t sum(const uint8_t *p, size_t n) { uint64_t h = 1469598103934665603ULL; for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL; return h; }

int main(int argc, char **argv)
{
	if (argc < 6) return 2;
	size_t n = 1 << 20;
	int fs = open(argv[1], O_RDWR), fp = open(argv[2], O_RDONLY);
	if (fs < 0 || fp < 0) return 2;
	uint8_t *sh = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t *sf = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fs, 0);
	uint8_t *pf = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE, fp, 0);
	uint8_t *pn = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	close(fs); close(fp);
	for (size_t i = 0; i < 65536; i++) pn[i] = i * 7;
	mprotect(pn, 65536, PROT_NONE);
	setvbuf(stdout, NULL, _IONBF, 0);
	int rounds = atoi(argv[3]);
	for (int r = 0; r < rounds; r++) {
		for (size_t i = r; i < n; i += 4093) sh[i] += r + 1;
		sf[(r * 811) % 65536] += 3;
		pf[(r * 4099) % 65536] += 5;
		mprotect(pn, 65536, PROT_READ | PROT_WRITE);
		pn[(r * 977) % 65536] ^= 0x5a;
		uint64_t hn = sum(pn, 65536);
		mprotect(pn, 65536, PROT_NONE);
		printf("round %d sh %016llx sf %016llx pf %016llx pn %016llx\n", r, (unsigned long long)sum(sh, n), (unsigned long long)sum(sf, 65536),
		       (unsigned long long)sum(pf, 65536), (unsigned long long)hn);
		usleep(atol(argv[4]));
	}
	msync(sf, 65536, MS_SYNC);
	return atoi(argv[5]);
}
