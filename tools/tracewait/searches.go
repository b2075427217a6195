package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/exp/trace"
)

// The gateway's task for a POST, and the regions the stages are cut at (see
// telemetry.SearchTask: every service's task is logged with its search's id).
const (
	postTask     = "POST"
	retryRegion  = "retry rule read"
	createRegion = "create record"
)

// Search is one search whose every step the trace holds: the stages of its POST, in order.
type Search struct {
	ID     string
	POST   time.Duration
	Stages []Stage
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

// tasks follows the tasks, their logs and regions, as Read passes every event.
type tasks struct {
	byID map[trace.TaskID]*task
}

func (t *tasks) observe(ev trace.Event) {
	if t.byID == nil {
		t.byID = map[trace.TaskID]*task{}
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
		}
	case trace.EventRegionEnd:
		r := ev.Region()
		if tk := t.byID[r.Task]; tk != nil {
			if s, ok := tk.regions[r.Type]; ok && s.end == 0 {
				s.end = ev.Time()
				tk.regions[r.Type] = s
			}
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
		if len(ts) != 3 || ts[0].kind != postTask {
			continue // a retry, a poll, a redelivery, or cut by the trace's ends
		}
		post, first, second := ts[0], ts[1], ts[2]
		read, ok1 := post.regions[retryRegion]
		create, ok2 := second.regions[createRegion]
		if !ok1 || !ok2 || read.end == 0 || create.end == 0 || second.end > post.end {
			continue
		}
		// The first consumer's task ends with its ack, which can come after the second has
		// its message: its stage ends at whichever is first.
		handed := min(first.end, second.start)
		out = append(out, Search{ID: id, POST: post.end.Sub(post.start), Stages: []Stage{
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
