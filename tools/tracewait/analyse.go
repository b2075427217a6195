package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// storeFrame is where JetStream's file store writes a message; an fsync below it is the
// per-write sync of sync_always.
const storeFrame = "(*msgBlock).writeMsgRecordLocked"

// Report is what a trace says about the goroutines that store messages.
type Report struct {
	Span    time.Duration
	Writers []Writer        // goroutines that synced a stored message, busiest first
	Syncs   []time.Duration // every store fsync, ascending
	Longest []Sync          // the longest store fsyncs, longest first
	// Searches are the searches the trace holds whole, by their POST's time, ascending.
	Searches []Search
	// Beside is the background work the searches' record writes ran beside.
	Beside []Beside
}

// Writer is one storing goroutine's time: in the store's fsync, running, waiting for a
// processor, in other system calls, and blocked, by what it blocked at.
type Writer struct {
	ID                       trace.GoID
	Fsync, Running, Runnable time.Duration
	Syscall                  time.Duration
	Blocked                  map[string]time.Duration
	Writes                   int
}

// Sync is one store fsync and the other system calls in flight beside it.
type Sync struct {
	Took   time.Duration
	Beside []Call
}

// Call is a system call: when it started relative to the fsync, how long it took, where.
type Call struct {
	At, Took time.Duration
	Where    string
}

type call struct {
	g          trace.GoID
	start, end trace.Time
	where      string
	store      bool
}

// Read reads a trace.
func Read(in io.Reader) (*Report, error) {
	r, err := trace.NewReader(in)
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	type gstate struct {
		since   trace.Time
		state   trace.GoState
		blocked string
		w       *Writer
	}
	gs := map[trace.GoID]*gstate{}
	open := map[trace.GoID]*call{}
	var calls []*call
	var first, last trace.Time
	var ts tasks
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read trace: %w", err)
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		ts.observe(ev)
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &gstate{since: ev.Time(), state: from, w: &Writer{ID: id, Blocked: map[string]time.Duration{}}}
			gs[id] = g
		}
		d := ev.Time().Sub(g.since)
		switch g.state {
		case trace.GoRunning:
			g.w.Running += d
		case trace.GoRunnable:
			g.w.Runnable += d
		case trace.GoWaiting:
			g.w.Blocked[g.blocked] += d
		case trace.GoSyscall:
			if c := open[id]; c != nil {
				c.end = ev.Time()
				calls = append(calls, c)
				delete(open, id)
				if c.store {
					g.w.Fsync += d
					g.w.Writes++
					break
				}
			}
			g.w.Syscall += d
		}
		g.since, g.state, g.blocked = ev.Time(), to, ""
		switch to {
		case trace.GoWaiting:
			g.blocked = st.Reason + " at " + where(st.Stack, 3)
			if st.Reason == "" {
				g.blocked = "since before the trace"
			}
		case trace.GoSyscall:
			stack := frames(st.Stack)
			c := &call{g: id, start: ev.Time(), where: caller(stack)}
			c.store = len(stack) > 0 && strings.HasSuffix(stack[0], "syscall.Fsync") && slices.ContainsFunc(stack, func(f string) bool { return strings.HasSuffix(f, storeFrame) })
			open[id] = c
		}
	}
	rep := &Report{Span: last.Sub(first), Searches: ts.searches()}
	rep.Beside = beside(ts.background, rep.Searches)
	for _, g := range gs {
		if g.w.Writes > 0 {
			rep.Writers = append(rep.Writers, *g.w)
		}
	}
	slices.SortFunc(rep.Writers, func(a, b Writer) int { return b.Writes - a.Writes })
	var stores []*call
	for _, c := range calls {
		if c.store {
			stores = append(stores, c)
			rep.Syncs = append(rep.Syncs, c.end.Sub(c.start))
		}
	}
	slices.Sort(rep.Syncs)
	slices.SortFunc(stores, func(a, b *call) int { return int(b.end.Sub(b.start) - a.end.Sub(a.start)) })
	for _, s := range stores[:min(10, len(stores))] {
		sync := Sync{Took: s.end.Sub(s.start)}
		for _, c := range calls {
			// The signal handler's goroutine sits in a system call for good.
			if c != s && c.start < s.end && c.end > s.start && c.end.Sub(c.start) >= 200*time.Microsecond && !strings.Contains(c.where, "signal_recv") {
				sync.Beside = append(sync.Beside, Call{At: c.start.Sub(s.start), Took: c.end.Sub(c.start), Where: c.where})
			}
		}
		rep.Longest = append(rep.Longest, sync)
	}
	return rep, nil
}

func frames(s trace.Stack) []string {
	var out []string
	for f := range s.Frames() {
		out = append(out, f.Func)
	}
	return out
}

// caller names a system call by the first frame above the standard library's file and
// network layers: the code that asked for it.
func caller(stack []string) string {
	for _, f := range stack {
		if !strings.HasPrefix(f, "syscall.") && !strings.HasPrefix(f, "internal/") && !strings.HasPrefix(f, "os.") &&
			!strings.HasPrefix(f, "net.") && !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "bufio.") {
			return f[strings.LastIndex(f, "/")+1:]
		}
	}
	if len(stack) > 0 {
		return stack[len(stack)-1]
	}
	return "?"
}

// where names a stack by its innermost frames, without package paths.
func where(s trace.Stack, n int) string {
	var out []string
	for f := range s.Frames() {
		out = append(out, f.Func[strings.LastIndex(f.Func, "/")+1:])
		if len(out) == n {
			break
		}
	}
	if len(out) == 0 {
		return "?"
	}
	return strings.Join(out, " < ")
}

// Print writes the report for a reader.
func (r *Report) Print(out io.Writer, top int) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(out, "trace of %s\n", r.Span.Round(time.Millisecond))
	printSearches(out, r.Searches)
	printBeside(out, r.Beside)
	if len(r.Writers) == 0 {
		fmt.Fprintln(out, "no goroutine synced a stored message: was sync_always on (NATS_NO_SYNC unset)?")
		return
	}
	for _, w := range r.Writers[:min(3, len(r.Writers))] {
		fmt.Fprintf(out, "\ngoroutine %d stored and synced %d messages (%.0f/s); of its time:\n", w.ID, w.Writes, float64(w.Writes)/r.Span.Seconds())
		share := func(d time.Duration) string { return fmt.Sprintf("%5.1f %%", 100*d.Seconds()/r.Span.Seconds()) }
		fmt.Fprintf(out, "  %s in the store's fsync\n", share(w.Fsync))
		fmt.Fprintf(out, "  %s running\n", share(w.Running))
		fmt.Fprintf(out, "  %s waiting for a processor\n", share(w.Runnable))
		fmt.Fprintf(out, "  %s in other system calls\n", share(w.Syscall))
		keys := make([]string, 0, len(w.Blocked))
		for k := range w.Blocked {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return int(w.Blocked[b] - w.Blocked[a]) })
		for _, k := range keys[:min(4, len(keys))] {
			fmt.Fprintf(out, "  %s blocked: %s\n", share(w.Blocked[k]), k)
		}
	}
	n := len(r.Syncs)
	var sum time.Duration
	for _, d := range r.Syncs {
		sum += d
	}
	at := func(q float64) time.Duration { return r.Syncs[min(n-1, int(q*float64(n)))] }
	fmt.Fprintf(out, "\nstore fsyncs: %d, mean %s, p50 %s, p90 %s, p99 %s, max %s\n", n, ms(sum/time.Duration(n)), ms(at(0.5)), ms(at(0.9)), ms(at(0.99)), ms(r.Syncs[n-1]))
	for _, s := range r.Longest[:min(top, len(r.Longest))] {
		fmt.Fprintf(out, "an fsync of %s; beside it:", ms(s.Took))
		if len(s.Beside) == 0 {
			fmt.Fprint(out, " no other system call over 0.2 ms")
		}
		fmt.Fprintln(out)
		for _, c := range s.Beside {
			fmt.Fprintf(out, "  from %+.1f ms for %s: %s\n", float64(c.At.Microseconds())/1000, ms(c.Took), c.Where)
		}
	}
}
