// Command spawn_proc is the Go peer of weft-bench's spawn_proc workload:
// n runs of /bin/true (exec.Command("/bin/true").Run(): fork/exec, wait,
// reap), 10 at a time (10 goroutines taking from one counter).
//
// Usage: GOMAXPROCS=1 spawn_proc [N]        (N: processes, default 1000)
// GOMAXPROCS picks the peer name as the kit's micro.go does: 1 gives
// "go-X.Y", P > 1 gives "go-mpP-X.Y". Prints one JSON line in the kit's
// format (shared/bench/peers/README.md); the timed region is the
// goroutines' start to the last reap.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type line struct {
	Peer       string  `json:"peer"`
	Workload   string  `json:"workload"`
	N          int     `json:"n"`
	NsPerOp    float64 `json:"ns_per_op"`
	WallS      float64 `json:"wall_s"`
	PeakRSSKiB int64   `json:"peak_rss_kib"`
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

const workers = 10

func main() {
	n := 1000
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: spawn_proc [N]")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 1 {
			fmt.Fprintln(os.Stderr, "usage: spawn_proc [N]")
			os.Exit(2)
		}
		n = v
	}
	ver := strings.Split(strings.TrimPrefix(runtime.Version(), "go"), ".")
	peer := "go-" + strings.Join(ver[:2], ".")
	if p := runtime.GOMAXPROCS(0); p != 1 {
		peer = fmt.Sprintf("go-mp%d-%s", p, strings.Join(ver[:2], "."))
	}

	var left int64 = int64(n)
	var failed int32
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(workers)
	for i := 0; i < workers; i++ {
		go func() {
			defer wg.Done()
			for atomic.AddInt64(&left, -1) >= 0 {
				if err := exec.Command("/bin/true").Run(); err != nil {
					fmt.Fprintln(os.Stderr, "spawn_proc:", err)
					atomic.StoreInt32(&failed, 1)
					return
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	if failed != 0 {
		os.Exit(1)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out, _ := json.Marshal(line{peer, "spawn_proc", n, round(wall/float64(n)*1e9, 1),
		round(wall, 4), ru.Maxrss})
	fmt.Println(string(out))
}
