//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/demobank/yacredits/tools/internal/yandex"
	"github.com/demobank/yacredits/tools/topology"
)

// soakFaults are the scenarios a soak draws from: those that leave the production topology
// whole again when they end.
var soakFaults = []string{"kill-scoring", "kill-offers", "kill-gateway", "stop-scoring",
	"kill-bucket-leader", "quorum-loss", "partition", "slow-handler"}

// soak runs the production topology for o.soak under load with a random fault every
// o.every, then prints the accounting and each process's memory and goroutines over time.
func soak(ctx context.Context, bin topology.Binaries, root string, o options, t timing, stdout io.Writer) error {
	seed := o.seeds[0]
	r := &trial{scenario: scenario{name: "soak"}, seed: seed, timing: t, rand: rand.New(rand.NewPCG(seed, 0x50a1c)),
		next: yandex.DemoRequests(seed)}
	sys, err := startSystem(ctx, bin, root+"/soak", seed, setup{proxied: []string{"gw1", "sc1"}})
	if err != nil {
		return err
	}
	r.sys = sys
	sys.client.Pick = func() int { return r.intn(len(sys.gateways)) }
	byName := map[string]scenario{}
	for _, sc := range scenarios {
		byName[sc.name] = sc
	}
	fmt.Fprintf(stdout, "soak: %s at %.0f searches/s, a fault every %s; files in %s\n", o.soak, t.rate, o.every, root)

	loadCtx, cancel := context.WithTimeout(ctx, o.soak+t.settle)
	defer cancel()
	var (
		wg      sync.WaitGroup
		samples []sample
		faults  []string
	)
	stopSampling := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			samples = append(samples, takeSample(ctx, sys))
			select {
			case <-tick.C:
			case <-stopSampling:
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		end := time.Now().Add(o.soak - o.every/2)
		for time.Now().Add(o.every).Before(end) {
			select {
			case <-loadCtx.Done():
				return
			case <-time.After(o.every - t.faultFor):
			}
			name := soakFaults[r.intn(len(soakFaults))]
			start := time.Now()
			err := byName[name].fault(loadCtx, r)
			line := fmt.Sprintf("%s %s (%s)", start.Format(time.TimeOnly), name, time.Since(start).Round(time.Second))
			if err != nil {
				line += ": " + err.Error()
			}
			faults = append(faults, line)
			fmt.Fprintln(stdout, "  fault:", line)
		}
	}()
	searches := sys.client.Open(loadCtx, t.rate, o.soak, r.next)
	close(stopSampling)
	wg.Wait()

	report := yandex.Account(searches, slowAnswer, r.windows...)
	res := result{scenario: "soak", seed: seed, report: report, problems: sys.crashes()}
	res.problems = append(res.problems, sys.stop()...)
	w := newTable(io.Discard)
	w.line(res)
	w.out = stdout
	w.flush()
	fmt.Fprintln(stdout, "\nfaults:")
	for _, f := range faults {
		fmt.Fprintln(stdout, "  "+f)
	}
	printSamples(stdout, samples)
	if res.failed() {
		for _, p := range append(res.problems, report.Problems...) {
			fmt.Fprintln(stdout, "  -", p)
		}
		return errFailed
	}
	return nil
}

// sample is every process's resident memory and goroutines at one moment.
type sample struct {
	at    time.Time
	procs map[string]string
}

func takeSample(ctx context.Context, sys *system) sample {
	s := sample{at: time.Now(), procs: map[string]string{}}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for name, svc := range sys.services {
		rss, err := svc.RSS()
		if err != nil {
			s.procs[name] = "down"
			continue
		}
		g, err := svc.Metric(ctx, "go_goroutines")
		cell := fmt.Sprintf("%d MiB", rss>>20)
		if err == nil {
			cell += fmt.Sprintf(", %.0f g", g)
		}
		s.procs[name] = cell
	}
	for _, n := range sys.cluster.Nodes {
		rss, err := n.RSS()
		if err != nil {
			s.procs[n.Name] = "down"
			continue
		}
		cell := fmt.Sprintf("%d MiB", rss>>20)
		if g, err := n.Goroutines(ctx); err == nil {
			cell += fmt.Sprintf(", %d g", g)
		}
		s.procs[n.Name] = cell
	}
	return s
}

// printSamples prints one line a minute: memory and goroutines per process.
func printSamples(out io.Writer, samples []sample) {
	if len(samples) == 0 {
		return
	}
	var names []string
	for n := range samples[0].procs {
		names = append(names, n)
	}
	sort.Strings(names)
	rows := []string{"time\t" + strings.Join(names, "\t")}
	var last time.Time
	for i, s := range samples {
		if i != len(samples)-1 && s.at.Sub(last) < time.Minute {
			continue
		}
		last = s.at
		row := []string{s.at.Sub(samples[0].at).Round(time.Second).String()}
		for _, n := range names {
			row = append(row, s.procs[n])
		}
		rows = append(rows, strings.Join(row, "\t"))
	}
	fmt.Fprintln(out, "\nresident memory and goroutines (g) per process:")
	markdown(out, rows)
}
