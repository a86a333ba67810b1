# Test subject: python worker threads on queues (hashing), a thread ticking on an Event's timeout,
# a lock-protected counter; one line per round, then a summary; the output depends only on ROUNDS.
# usage: python3 pyworkers.py ROUNDS
import hashlib, queue, sys, threading, time
rounds = int(sys.argv[1])
tasks, done = queue.Queue(), queue.Queue()
lock, count = threading.Lock(), [0]
def worker():
    while True:
        t = tasks.get()
        if t is None:
            return
        h = hashlib.sha256(b'%d' % t[1])
        for j in range(3000):
            h.update(b'%d-%d' % (t[0], j))
        with lock:
            count[0] += 1
        done.put((t[1], h.hexdigest()[:12]))
ev, ticks = threading.Event(), [0]
def ticker():
    while not ev.wait(0.01):
        ticks[0] += 1
ws = [threading.Thread(target=worker, name='worker%d' % n) for n in range(4)]
tk = threading.Thread(target=ticker, name='ticker')
for t in ws + [tk]:
    t.start()
for r in range(rounds):
    for k in range(4):
        tasks.put((r, k))
    got = sorted(done.get() for k in range(4))
    print(r, ' '.join(g[1] for g in got), flush=True)
    time.sleep(0.04)
for t in ws:
    tasks.put(None)
for t in ws:
    t.join()
ev.set()
tk.join()
print('tasks', count[0], 'threads', threading.active_count(), 'ticked', ticks[0] > 0, flush=True)
sys.exit(3)
