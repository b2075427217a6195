// Command tracewait reads a Go execution trace of the standalone (PPROF_ADDR's
// /debug/pprof/trace) and says what its searches waited on. For every search the trace
// holds whole, the gateway's and the consumers' tasks (telemetry.SearchTask) are joined by
// the search's id and its POST is cut into stages, whose means it prints over all searches
// and over the slowest hundredth: what a search at the p99 waited on. Then, for each
// goroutine that stores messages with an fsync, how its time split (in the fsync, running,
// waiting for a processor, blocked and at what), the store fsyncs' distribution, and what
// else was in a system call beside the longest. It is the runtime/trace reading of
// docs/performance.md, "The tail".
//
//	curl -so trace.out 'http://127.0.0.1:6060/debug/pprof/trace?seconds=5'
//	go run ./tools/tracewait trace.out
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	top := flag.Int("top", 3, "list what was in a system call beside this many of the longest fsyncs")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tracewait [-top N] trace.out")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracewait:", err)
		os.Exit(1)
	}
	defer f.Close()
	r, err := Read(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracewait:", err)
		os.Exit(1)
	}
	r.Print(os.Stdout, *top)
}
