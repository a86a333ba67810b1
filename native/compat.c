/* The host compatibility record: what an image needs from the CPU (XSAVE features, CPUID bits),
 * the kernel's vDSO, its release and boot id; and the comparison of an image's with a host's. */
#include "ppm.h"
#include <cpuid.h>
#include <sys/utsname.h>

void host_compat(struct compat *c)
{
	memset(c, 0, sizeof *c);
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	c->xcr0 = (uint64_t)hi << 32 | lo;
	unsigned a, b, cc, d;
	__cpuid_count(0xd, 0, a, b, cc, d);
	c->xsave_len = b;
	__cpuid(1, a, b, cc, d);
	c->cpuid[0] = cc & ~(1u << 31 | 1u << 27);	/* hypervisor, OSXSAVE: not features */
	c->cpuid[1] = d;
	__cpuid_count(7, 0, a, b, cc, d);
	c->cpuid[2] = b;
	c->cpuid[3] = cc;
	c->cpuid[4] = d;
	struct vma *v;
	int n = parse_maps(getpid(), &v);
	for (int i = 0; i < n; i++) {
		uint32_t len = v[i].end - v[i].start;
		if (!strcmp(v[i].path, "[vvar]")) c->vvar_len = len;
		else if (!strcmp(v[i].path, "[vvar_vclock]")) c->vclock_len = len;
		else if (!strcmp(v[i].path, "[vdso]")) { c->vdso_len = len; c->vdso_crc = crc32c(0, (void *)v[i].start, len); }
	}
	if (n > 0) free(v);
	struct utsname u;
	uname(&u);
	snprintf(c->release, sizeof c->release, "%s", u.release);
	char b2[40];
	if (read_file("/proc/sys/kernel/random/boot_id", b2, sizeof b2) > 0) { b2[strcspn(b2, "\n")] = 0; snprintf(c->boot_id, sizeof c->boot_id, "%s", b2); }
}

void compat_line(const struct compat *c, char *out, size_t cap)
{
	snprintf(out, cap, "xcr0=%#llx,xsave=%u,cpuid=%x.%x.%x.%x.%x,vdso=%u.%u.%u.%08x", (unsigned long long)c->xcr0, c->xsave_len,
		 c->cpuid[0], c->cpuid[1], c->cpuid[2], c->cpuid[3], c->cpuid[4], c->vvar_len, c->vclock_len, c->vdso_len, c->vdso_crc);
}

int compat_parse(const char *s, struct compat *c)
{
	memset(c, 0, sizeof *c);
	unsigned long long x;
	if (sscanf(s, "xcr0=%llx,xsave=%u,cpuid=%x.%x.%x.%x.%x,vdso=%u.%u.%u.%x", &x, &c->xsave_len, &c->cpuid[0], &c->cpuid[1], &c->cpuid[2],
		   &c->cpuid[3], &c->cpuid[4], &c->vvar_len, &c->vclock_len, &c->vdso_len, &c->vdso_crc) != 11)
		return fail(EINVAL, "bad host info string '%s'", s);
	c->xcr0 = x;
	return 0;
}

/* Can an image recorded on `img` run on `host`? Prints REASON lines, returns the count. */
int compat_check(const struct compat *img, const struct compat *host, int print)
{
	int n = 0;
	if (img->xcr0 & ~host->xcr0) {
		n++;
		if (print) ctlf("REASON xstate image uses XSAVE features %#llx that the target CPU lacks (target XCR0 %#llx)",
				(unsigned long long)(img->xcr0 & ~host->xcr0), (unsigned long long)host->xcr0);
	}
	static const char *leaf[5] = { "1.ecx", "1.edx", "7.ebx", "7.ecx", "7.edx" };
	for (int i = 0; i < 5; i++)
		if (img->cpuid[i] & ~host->cpuid[i]) {
			n++;
			if (print) ctlf("REASON cpu-features target CPU lacks CPUID %s bits %#x used on the source", leaf[i], img->cpuid[i] & ~host->cpuid[i]);
		}
	if (img->vvar_len != host->vvar_len || img->vclock_len != host->vclock_len || img->vdso_len != host->vdso_len || img->vdso_crc != host->vdso_crc) {
		n++;
		if (print) ctlf("REASON vdso target kernel's vDSO differs (image %u/%u/%u bytes crc %08x, target %u/%u/%u crc %08x)", img->vvar_len,
				img->vclock_len, img->vdso_len, img->vdso_crc, host->vvar_len, host->vclock_len, host->vdso_len, host->vdso_crc);
	}
	return n;
}

/* size of this CPU's XSAVE buffer for the enabled features */
uint32_t host_xsave_len(void)
{
	unsigned a, b, c, d;
	__cpuid_count(0xd, 0, a, b, c, d);
	return b;
}
