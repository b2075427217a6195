//go:build unix

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/demobank/yacredits/tools/internal/yandex"
	"github.com/demobank/yacredits/tools/topology"
)

// timing is how a pass paces every scenario.
type timing struct {
	rate     float64       // new searches per second, an open model
	load     time.Duration // how long new searches keep arriving
	faultAt  time.Duration // when the fault starts (plus up to a second, by seed)
	faultFor time.Duration // how long the fault holds
	settle   time.Duration // after the last arrival, how long searches may take to end
}

// The full pass is the one the README's table comes from; the short one is what CI runs.
var (
	fullTiming = timing{rate: 100, load: 45 * time.Second, faultAt: 10 * time.Second, faultFor: 15 * time.Second, settle: 40 * time.Second}
	// The short pass: every fault still lands while searches arrive (at 1.5 to 2.5 s, for 3 s,
	// with a second of load after it at least) and every search is still accounted for.
	shortTiming = timing{rate: 40, load: 6 * time.Second, faultAt: 1500 * time.Millisecond, faultFor: 3 * time.Second, settle: 30 * time.Second}
)

// slowAnswer is the longest an answer may take before it counts as unexpected.
const slowAnswer = 10 * time.Second

// trial is one scenario run with one seed.
type trial struct {
	scenario  scenario
	seed      uint64
	timing    timing
	rand      *rand.Rand
	sys       *system
	collector string // where services send traces (the collector scenario's stand-in)

	mu        sync.Mutex
	windows   []yandex.Window
	notes     []string
	extra     []*yandex.Search
	poisonIDs []string
	next      func(int) yandex.Request // new searches, from the demo data's clients
}

// result is one table line.
type result struct {
	scenario string
	seed     uint64
	report   yandex.Report
	problems []string // beyond the accounting: the scenario's checks, crashes, set-up errors
	notes    []string
	took     time.Duration
	phases   string
	dir      string
}

func (res result) failed() bool { return res.report.Failed() || len(res.problems) > 0 }

// intn draws from the trial's seeded source; goroutines share it, so it is locked.
func (r *trial) intn(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rand.IntN(n)
}

func (r *trial) pick(names ...string) string { return names[r.intn(len(names))] }

func (r *trial) hold(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(r.timing.faultFor):
	}
}

func (r *trial) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

func (r *trial) window(from, to time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.windows = append(r.windows, yandex.Window{From: from, To: to})
}

func (r *trial) addExtra(s *yandex.Search) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.extra = append(r.extra, s)
}

func runScenario(ctx context.Context, bin topology.Binaries, root string, sc scenario, seed uint64, t timing) (res result) {
	start := time.Now()
	res = result{scenario: sc.name, seed: seed, dir: filepath.Join(root, fmt.Sprintf("%s-%d", sc.name, seed))}
	defer func() { res.took = time.Since(start) }()
	r := &trial{scenario: sc, seed: seed, timing: t, rand: rand.New(rand.NewPCG(seed, uint64(len(sc.name)))),
		next: yandex.DemoRequests(seed)}
	addrs, err := topology.FreeAddrs(1)
	if err != nil {
		res.problems = append(res.problems, err.Error())
		return res
	}
	r.collector = addrs[0]
	var s setup
	if sc.setup != nil {
		s = sc.setup(r)
	}
	r.sys, err = startSystem(ctx, bin, res.dir, seed, s)
	if err != nil {
		res.problems = append(res.problems, "start: "+err.Error())
		return res
	}
	started := time.Now()
	stopped := false
	defer func() {
		if !stopped {
			_ = r.sys.stop()
		}
	}()
	r.sys.client.Pick = func() int { return r.intn(len(r.sys.gateways)) }

	loadCtx, cancel := context.WithTimeout(ctx, t.load+t.settle)
	defer cancel()
	faultDone := make(chan error, 1)
	jitter := time.Duration(r.intn(1000)) * time.Millisecond
	go func() {
		if sc.fault == nil {
			faultDone <- nil
			return
		}
		select {
		case <-loadCtx.Done():
			faultDone <- loadCtx.Err()
			return
		case <-time.After(t.faultAt + jitter):
		}
		faultDone <- sc.fault(loadCtx, r)
	}()
	searches := r.sys.client.Open(loadCtx, t.rate, t.load, r.next)
	if err := <-faultDone; err != nil {
		res.problems = append(res.problems, "fault: "+err.Error())
	}
	r.mu.Lock()
	searches = append(searches, r.extra...)
	windows := r.windows
	res.notes = r.notes
	r.mu.Unlock()
	res.report = yandex.Account(searches, slowAnswer, windows...)
	if sc.check != nil {
		res.problems = append(res.problems, sc.check(ctx, r)...)
	}
	res.problems = append(res.problems, r.sys.crashes()...)
	checked := time.Now()
	stopped = true
	res.problems = append(res.problems, r.sys.stop()...)
	if res.failed() {
		res.problems = append(res.problems, r.sys.tails()...)
	}
	res.phases = fmt.Sprintf("start %s, load and fault %s, stop %s", started.Sub(start).Round(100*time.Millisecond),
		checked.Sub(started).Round(100*time.Millisecond), time.Since(checked).Round(100*time.Millisecond))
	return res
}
