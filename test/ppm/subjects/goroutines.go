// Test subject: goroutines spread over several OS threads (GOMAXPROCS 4), each round a fan-out of
// CPU work joined by a WaitGroup, results through a channel, a ticker and a sleep between rounds.
// Prints one line per round and a summary; the output depends only on ROUNDS.
// usage: goroutines ROUNDS
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func mix(seed uint64, n int) uint64 {
	x := seed
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

func main() {
	rounds, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: goroutines ROUNDS")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(4)
	const workers = 6
	ticks := 0
	tk := time.NewTicker(10 * time.Millisecond)
	done := make(chan struct{})
	var tmu sync.Mutex
	go func() {
		for {
			select {
			case <-tk.C:
				tmu.Lock()
				ticks++
				tmu.Unlock()
			case <-done:
				return
			}
		}
	}()
	var total uint64
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		res := make(chan [2]uint64, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				res <- [2]uint64{uint64(w), mix(uint64(r*workers+w+1), 400000)}
			}(w)
		}
		wg.Wait()
		close(res)
		out := make([]uint64, workers)
		for p := range res {
			out[p[0]] = p[1]
		}
		for _, v := range out {
			total += v % 1000003
		}
		fmt.Printf("round %d %x\n", r, out)
		time.Sleep(40 * time.Millisecond)
	}
	tk.Stop()
	close(done)
	tmu.Lock()
	fmt.Printf("total %d ticked %v\n", total, ticks > 0)
	tmu.Unlock()
	os.Exit(4)
}
