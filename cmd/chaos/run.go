//go:build unix

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/demobank/yacredits/cmd/internal/topology"
	"github.com/demobank/yacredits/cmd/internal/yandex"
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
	fullTiming  = timing{rate: 100, load: 45 * time.Second, faultAt: 10 * time.Second, faultFor: 15 * time.Second, settle: 40 * time.Second}
	shortTiming = timing{rate: 40, load: 9 * time.Second, faultAt: 2 * time.Second, faultFor: 4 * time.Second, settle: 30 * time.Second}
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

func (r *trial) pick(names ...string) string { return names[r.rand.IntN(len(names))] }

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

// clients are the demo data's clients (services/scoring/demo_preapprovals.csv): who asks for
// what, and whether the bank's data approve it.
var clients = []struct {
	weight      int
	body        string
	preApproved bool
}{
	{40, `"phone_number":"9330445040","product_type":"loan","amount":500000.00,"term":36`, true},
	{25, `"phone_number":"+7 933 044-50-40","product_type":"credit_card"`, true},
	{20, `"phone_number":"8 (916) 123-45-67","product_type":"loan","amount":300000,"term":24`, true},
	{15, `"phone_number":"9001112233","product_type":"loan","amount":100000,"term":12`, false},
}

// next makes a new search from the seeded mix of clients.
func (r *trial) next(int) yandex.Request {
	r.mu.Lock()
	n := r.rand.IntN(100)
	r.mu.Unlock()
	c := clients[len(clients)-1]
	for _, c = range clients {
		if n -= c.weight; n < 0 {
			break
		}
	}
	id := uuid.NewString()
	return yandex.Request{SearchID: id, PreApproved: c.preApproved,
		Body: []byte(`{"search_id":"` + id + `",` + c.body + `,"props":["chaos"]}`)}
}

func runScenario(ctx context.Context, bin topology.Binaries, root string, sc scenario, seed uint64, t timing) (res result) {
	start := time.Now()
	res = result{scenario: sc.name, seed: seed, dir: filepath.Join(root, fmt.Sprintf("%s-%d", sc.name, seed))}
	defer func() { res.took = time.Since(start) }()
	r := &trial{scenario: sc, seed: seed, timing: t, rand: rand.New(rand.NewPCG(seed, uint64(len(sc.name))))}
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
	r.sys.client.Pick = func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.rand.IntN(len(r.sys.gateways))
	}

	loadCtx, cancel := context.WithTimeout(ctx, t.load+t.settle)
	defer cancel()
	faultDone := make(chan error, 1)
	jitter := time.Duration(r.rand.Int64N(int64(time.Second)))
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
	res.phases = fmt.Sprintf("start %s, load and fault %s, stop %s", started.Sub(start).Round(100*time.Millisecond),
		checked.Sub(started).Round(100*time.Millisecond), time.Since(checked).Round(100*time.Millisecond))
	return res
}
