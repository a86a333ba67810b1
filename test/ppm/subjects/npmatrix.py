# Test subject: numpy matrix products on OpenBLAS's threads (OPENBLAS_NUM_THREADS, set by the
# caller); deterministic matrices, one checksum line per round; the output depends only on ROUNDS
# and N (and the BLAS thread count, which splits the work the same way every run).
# usage: python3 npmatrix.py ROUNDS N
import sys, time
import numpy as np
rounds, n = int(sys.argv[1]), int(sys.argv[2])
i = np.arange(n * n, dtype=np.float64).reshape(n, n)
a = np.sin(i * 0.001) + np.cos(i.T * 0.0007)
b = np.eye(n) * 0.5 + a / n
for r in range(rounds):
    b = a @ b
    b /= np.abs(b).max()
    print(r, '%.9e %.9e' % (np.trace(b), b[r % n].sum()), flush=True)
    time.sleep(0.02)
print('done', b.shape, flush=True)
sys.exit(5)
