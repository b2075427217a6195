// Command tracewait reads a Go execution trace of a process that embeds JetStream (the
// standalone, from PPROF_ADDR's /debug/pprof/trace) and says what a synced search waited
// on: how each goroutine that stores messages with an fsync spent its time (storing,
// waiting for a processor, in the fsync, idle for want of a message, waiting for a lock),
// the distribution of those fsyncs, and, for the longest, what else was in a system call
// beside them. It is the runtime/trace reading of docs/performance.md, "The tail".
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
