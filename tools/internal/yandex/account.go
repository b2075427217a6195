package yandex

import (
	"fmt"
	"slices"
	"time"
)

// Window is a stretch of time a fault held, such as NATS below quorum.
type Window struct{ From, To time.Time }

func (w Window) holds(t time.Time) bool { return !t.Before(w.From) && !t.After(w.To) }

// Quantiles summarise a set of durations.
type Quantiles struct{ P50, P99, Max time.Duration }

// QuantilesOf summarises d, which it sorts.
func QuantilesOf(d []time.Duration) Quantiles { return quantiles(d) }

func quantiles(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Quantiles{P50: at(0.50), P99: at(0.99), Max: d[len(d)-1]}
}

// Report accounts for every search of a run by what the system answered.
type Report struct {
	Searches int
	Accepted int // answered 200 at least once: the system promised to finish these
	Done     int // answered done
	// Lost searches were accepted, then answered 404 or never done.
	Lost int
	// Doubled searches got two different done answers, or pending after done.
	Doubled int
	// Unexpected answers: a 5xx other than 503, a status the contract does not give to a
	// valid request, a body outside the documented shape, or an answer slower than Slow.
	Unexpected int
	// Unavailable answers are 503s: nothing was accepted, try again.
	Unavailable int
	// RejectedByFault searches are of a pre-approved client and were answered rejected.
	RejectedByFault int
	// NeverAccepted searches had no 200 before the run gave up on them: nothing was promised.
	NeverAccepted int
	// TimeToDone is from the first POST sent to the first done answer.
	TimeToDone Quantiles
	// POST is the latency of the POSTs answered 200.
	POST Quantiles
	// DoneInFirstPOST searches were answered done by their very first POST.
	DoneInFirstPOST int
	// LongestGap is the longest stretch of the run in which no answer was a 200.
	LongestGap time.Duration
	// AcceptedInWindows counts searches first accepted (their first 200, to a POST) by a
	// request sent and answered while one of the windows held: a promise made while nothing
	// could store it. Polls answered then from records stored before are fine, as is a POST
	// whose record was written before the window began.
	AcceptedInWindows int
	// Problems describes the first few searches that went wrong, for people.
	Problems []string
}

// Failed reports whether the run broke a promise: something lost, doubled, unexpected, or
// a pre-approved client rejected because of a fault.
func (r Report) Failed() bool {
	return r.Lost+r.Doubled+r.Unexpected+r.RejectedByFault > 0
}

// Account judges a run: slow is the longest acceptable answer, windows the stretches whose
// 200s are counted apart (quorum lost).
//
// Searches with the same id (concurrent first POSTs of one search) are judged as one: their
// answers are merged in the order they were sent.
func Account(searches []*Search, slow time.Duration, windows ...Window) Report {
	searches = merge(searches)
	r := Report{Searches: len(searches)}
	var ttd, post []time.Duration
	var oks []time.Time
	var first, last time.Time
	problem := func(s *Search, format string, args ...any) {
		if len(r.Problems) < 8 {
			r.Problems = append(r.Problems, s.SearchID+": "+fmt.Sprintf(format, args...))
		}
	}
	for _, s := range searches {
		if len(s.Answers) == 0 {
			r.NeverAccepted++
			continue
		}
		if first.IsZero() || s.Answers[0].Sent.Before(first) {
			first = s.Answers[0].Sent
		}
		accepted, lost, doubled := false, false, false
		var done *Answer
		for i := range s.Answers {
			a := &s.Answers[i]
			last = maxTime(last, a.Received)
			switch {
			case a.Status == 200:
				oks = append(oks, a.Received)
				if a.Method == "POST" && !accepted {
					for _, w := range windows {
						if w.holds(a.Sent) && w.holds(a.Received) {
							r.AcceptedInWindows++
							break
						}
					}
				}
				if a.Method == "POST" {
					post = append(post, a.Took())
				}
				accepted = true
			case a.Status == 503:
				r.Unavailable++
			case a.Status == 404 && accepted:
				if !lost {
					problem(s, "accepted, then %s answered 404", a.Method)
				}
				lost = true
			case a.Status != 0:
				r.Unexpected++
				problem(s, "%s answered %d: %s", a.Method, a.Status, a.Message)
			}
			if a.Status != 0 && a.Shape != "" {
				r.Unexpected++
				problem(s, "%s %d outside the documented shape: %s", a.Method, a.Status, a.Shape)
			}
			if a.Took() > slow {
				r.Unexpected++
				problem(s, "%s took %s", a.Method, a.Took().Round(time.Millisecond))
			}
			switch {
			case a.Done() && done == nil:
				done = a
			case a.Done() && a.Outcome != done.Outcome:
				doubled = true
				problem(s, "two different done answers")
			case done != nil && a.Status == 200 && !a.Done() && a.Sent.After(done.Received):
				doubled = true
				problem(s, "%s answered %s after done", a.Method, a.State)
			}
		}
		if !accepted {
			r.NeverAccepted++
			continue
		}
		r.Accepted++
		if done == nil && !lost {
			lost = true
			problem(s, "accepted and never done (%d answers)", len(s.Answers))
		}
		if lost {
			r.Lost++
		}
		if doubled {
			r.Doubled++
		}
		if done == nil {
			continue
		}
		r.Done++
		ttd = append(ttd, done.Received.Sub(s.Answers[0].Sent))
		if done == &s.Answers[0] {
			r.DoneInFirstPOST++
		}
		if s.PreApproved && done.Decision == "rejected" {
			r.RejectedByFault++
			problem(s, "a pre-approved client answered rejected after %s", done.Received.Sub(s.Answers[0].Sent).Round(time.Millisecond))
		}
	}
	r.TimeToDone, r.POST = quantiles(ttd), quantiles(post)
	r.LongestGap = longestGap(first, last, oks)
	return r
}

func merge(searches []*Search) []*Search {
	byID := map[string]*Search{}
	var out []*Search
	for _, s := range searches {
		m, ok := byID[s.SearchID]
		if !ok {
			c := *s
			c.Answers = append([]Answer(nil), s.Answers...)
			byID[s.SearchID] = &c
			out = append(out, &c)
			continue
		}
		m.Answers = append(m.Answers, s.Answers...)
		m.PreApproved = m.PreApproved || s.PreApproved
	}
	for _, s := range out {
		slices.SortStableFunc(s.Answers, func(a, b Answer) int { return a.Sent.Compare(b.Sent) })
	}
	return out
}

func longestGap(from, to time.Time, oks []time.Time) time.Duration {
	if from.IsZero() {
		return 0
	}
	slices.SortFunc(oks, func(a, b time.Time) int { return a.Compare(b) })
	gap, prev := time.Duration(0), from
	for _, t := range append(oks, to) {
		gap = max(gap, t.Sub(prev))
		prev = maxTime(prev, t)
	}
	return gap
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
