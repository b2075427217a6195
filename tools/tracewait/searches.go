package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"

	"github.com/demobank/yacredits/pkg/telemetry"
)

// Search is one search whose every step the trace holds: the stages of its POST, in order.
type Search struct {
	ID     string
	POST   time.Duration
	Stages []Stage
	write  span // the record's write, for what ran beside it
}

// Stage is a stretch of a search's POST.
type Stage struct {
	Name string
	Took time.Duration
}

type span struct{ start, end trace.Time }

type task struct {
	kind, search string
	span
	regions map[string]span
}

// tasks follows the tasks, their logs and regions, as Read passes every event; and the
// regions outside any task (background work such as the audit trail's batch writes), by type.
type tasks struct {
	byID       map[trace.TaskID]*task
	background map[string][]span
	open       map[trace.GoID]map[string]trace.Time
}

func (t *tasks) observe(ev trace.Event) {
	if t.byID == nil {
		t.byID = map[trace.TaskID]*task{}
		t.background = map[string][]span{}
		t.open = map[trace.GoID]map[string]trace.Time{}
	}
	switch ev.Kind() {
	case trace.EventTaskBegin:
		tk := ev.Task()
		t.byID[tk.ID] = &task{kind: tk.Type, span: span{start: ev.Time()}, regions: map[string]span{}}
	case trace.EventTaskEnd:
		if tk := t.byID[ev.Task().ID]; tk != nil {
			tk.end = ev.Time()
		}
	case trace.EventLog:
		if l := ev.Log(); l.Category == "search_id" {
			if tk := t.byID[l.Task]; tk != nil {
				tk.search = l.Message
			}
		}
	case trace.EventRegionBegin:
		r := ev.Region()
		if tk := t.byID[r.Task]; tk != nil {
			if _, seen := tk.regions[r.Type]; !seen {
				tk.regions[r.Type] = span{start: ev.Time()}
			}
		} else if r.Task == trace.BackgroundTask {
			g := ev.Goroutine()
			if t.open[g] == nil {
				t.open[g] = map[string]trace.Time{}
			}
			t.open[g][r.Type] = ev.Time()
		}
	case trace.EventRegionEnd:
		r := ev.Region()
		if tk := t.byID[r.Task]; tk != nil {
			if s, ok := tk.regions[r.Type]; ok && s.end == 0 {
				s.end = ev.Time()
				tk.regions[r.Type] = s
			}
		} else if start, ok := t.open[ev.Goroutine()][r.Type]; ok && r.Task == trace.BackgroundTask {
			delete(t.open[ev.Goroutine()], r.Type)
			t.background[r.Type] = append(t.background[r.Type], span{start: start, end: ev.Time()})
		}
	}
}

// searches joins each POST with the consumers' tasks of its search, in the order they
// began, and cuts it into stages at: the retry rule's read, each consumer's start and end,
// and the record's create. A search is left out unless the trace holds all of it: its POST
// from start to end, two consumers after it, the create.
func (t *tasks) searches() []Search {
	bySearch := map[string][]*task{}
	for _, tk := range t.byID {
		if tk.search != "" && tk.start != 0 && tk.end != 0 {
			bySearch[tk.search] = append(bySearch[tk.search], tk)
		}
	}
	var out []Search
	for id, ts := range bySearch {
		slices.SortFunc(ts, func(a, b *task) int { return int(a.start - b.start) })
		if len(ts) != 3 || ts[0].kind != telemetry.TaskPOST {
			continue // a retry, a poll, a redelivery, or cut by the trace's ends
		}
		post, first, second := ts[0], ts[1], ts[2]
		read, ok1 := post.regions[telemetry.RegionRetryRead]
		create, ok2 := second.regions[telemetry.RegionCreate]
		if !ok1 || !ok2 || read.end == 0 || create.end == 0 || second.end > post.end {
			continue
		}
		// The first consumer's task ends with its ack, which can come after the second has
		// its message: its stage ends at whichever is first.
		handed := min(first.end, second.start)
		out = append(out, Search{ID: id, POST: post.end.Sub(post.start), write: create, Stages: []Stage{
			{"gateway: checks and the retry rule's read", read.end.Sub(post.start)},
			{"publish, queue, delivery to " + first.kind, first.start.Sub(read.end)},
			{first.kind, handed.Sub(first.start)},
			{"queue, delivery to " + second.kind, second.start.Sub(handed)},
			{second.kind + " until its write", create.start.Sub(second.start)},
			{"the record's write, sync and ack", create.end.Sub(create.start)},
			{"back to the POST's answer", post.end.Sub(create.end)},
		}})
	}
	slices.SortFunc(out, func(a, b Search) int { return int(a.POST - b.POST) })
	return out
}

// printSearches writes the mean of each stage over every search the trace holds whole and
// over the slowest hundredth of them: what a search at the p99 waited on.
func printSearches(out io.Writer, s []Search) {
	if len(s) == 0 {
		fmt.Fprintln(out, "\nno search whole in the trace: was it taken with the services' tasks (telemetry.SearchTask)?")
		return
	}
	p99 := s[min(len(s)-1, len(s)*99/100)].POST
	slow := s[min(len(s)-1, len(s)*99/100):]
	ms := func(d time.Duration) string { return fmt.Sprintf("%6.2f ms", float64(d.Microseconds())/1000) }
	mean := func(ss []Search, i int) time.Duration {
		var sum time.Duration
		for _, x := range ss {
			sum += x.Stages[i].Took
		}
		return sum / time.Duration(len(ss))
	}
	meanPOST := func(ss []Search) time.Duration {
		var sum time.Duration
		for _, x := range ss {
			sum += x.POST
		}
		return sum / time.Duration(len(ss))
	}
	fmt.Fprintf(out, "\n%d searches whole in the trace, POST p50 %s, p99 %s; the mean of each stage:\n", len(s), ms(s[len(s)/2].POST), ms(p99))
	fmt.Fprintf(out, "  %-48s %10s %12s\n", "", "all", "p99 and up")
	for i, st := range s[0].Stages {
		fmt.Fprintf(out, "  %-48s %10s %12s\n", st.Name, ms(mean(s, i)), ms(mean(slow, i)))
	}
	fmt.Fprintf(out, "  %-48s %10s %12s\n", "the POST", ms(meanPOST(s)), ms(meanPOST(slow)))
}

// Beside is background work of one kind (a region outside any search's task) and how often
// a search's record write ran during it or within Within after it: over every search and
// over the slowest hundredth. A kind the slow writes meet far more often than the rest is
// what they wait behind.
type Beside struct {
	Region       string
	Count        int
	Mean         time.Duration
	All, Slowest float64 // shares of searches
}

// searchRegions are the regions the services mark inside a search's task
// (telemetry.Region): not background work.
var searchRegions = map[string]bool{telemetry.RegionRetryRead: true, telemetry.RegionCreate: true, telemetry.RegionPublish: true, telemetry.RegionWait: true}

// Within is how long after background work a write still counts as beside it: a stall's
// backlog takes that long to drain at the bucket writer's pace.
const Within = 20 * time.Millisecond

func beside(background map[string][]span, s []Search) []Beside {
	if len(s) == 0 {
		return nil
	}
	slow := s[min(len(s)-1, len(s)*99/100):]
	// A search's own regions are background too when its task began before the trace did.
	var out []Beside
	for kind, spans := range background {
		if searchRegions[kind] {
			continue
		}
		b := Beside{Region: kind, Count: len(spans)}
		var sum time.Duration
		for _, sp := range spans {
			sum += sp.end.Sub(sp.start)
		}
		b.Mean = sum / time.Duration(len(spans))
		share := func(ss []Search) float64 {
			n := 0
			for _, x := range ss {
				for _, sp := range spans {
					if x.write.start < sp.end+trace.Time(Within) && x.write.end > sp.start {
						n++
						break
					}
				}
			}
			return float64(n) / float64(len(ss))
		}
		b.All, b.Slowest = share(s), share(slow)
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Beside) int { return strings.Compare(a.Region, b.Region) })
	return out
}

func printBeside(out io.Writer, bs []Beside) {
	if len(bs) == 0 {
		return
	}
	fmt.Fprintf(out, "\nrecord writes during background work or within %v after it:\n", Within)
	for _, b := range bs {
		fmt.Fprintf(out, "  %-24s %4d of it, mean %6.2f ms: %5.1f %% of every search's writes, %5.1f %% of the slowest hundredth's\n",
			b.Region, b.Count, float64(b.Mean.Microseconds())/1000, 100*b.All, 100*b.Slowest)
	}
}
