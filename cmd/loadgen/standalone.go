//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/demobank/yacredits/cmd/internal/topology"
)

// runStandalone measures the standalone binary against what the disk allows, all in one run
// so that the disk's moods cancel out: JetStream's synced publish rate before and after, the
// stack's sustained rate with every write synced and with the sync off, and latency at half
// the sustained rate.
func runStandalone(ctx context.Context, o options, dir string, out io.Writer) error {
	fmt.Fprintln(out, "building the standalone binary ...")
	bin, err := topology.Build(ctx, filepath.Join(dir, "bin"), "github.com/demobank/yacredits/cmd/standalone")
	if err != nil {
		return err
	}
	before, err := jetStreamRate(ctx, dir, o.publishers, o.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "JetStream, every write synced, %d publishers, one file stream: %.0f publishes/s\n", o.publishers, before)
	synced, err := stackRun(ctx, bin, dir, o, false, 0, out)
	if err != nil {
		return err
	}
	unsynced, err := stackRun(ctx, bin, dir, o, true, 0, out)
	if err != nil {
		return err
	}
	after, err := jetStreamRate(ctx, dir, o.publishers, o.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "JetStream again: %.0f publishes/s\n", after)
	half, err := stackRun(ctx, bin, dir, o, false, synced.rate()/2, out)
	if err != nil {
		return err
	}
	base := (before + after) / 2
	fmt.Fprintf(out, "\nsummary (this machine, this run):\n")
	fmt.Fprintf(out, "  sustained, every write synced:  %.0f searches/s = %.2f × JetStream's synced rate (%.0f/s)\n", synced.rate(), synced.rate()/base, base)
	fmt.Fprintf(out, "  sustained, NATS_NO_SYNC=true:   %.0f searches/s; synced ÷ unsynced = %.2f\n", unsynced.rate(), synced.rate()/unsynced.rate())
	r := half.report
	fmt.Fprintf(out, "  at half that (%.0f/s, open model): POST p99 %s, done in the first POST %d of %d, lost %d, errors %d\n",
		synced.rate()/2, ms(r.POST.P99), r.DoneInFirstPOST, r.Searches, r.Lost, half.errors())
	return nil
}

// stackRun starts a fresh standalone binary (the per-write sync off when noSync), warms it
// up, runs the closed model (or the open model at rate) and stops it.
func stackRun(ctx context.Context, bin topology.Binaries, dir string, o options, noSync bool, rate float64, out io.Writer) (measurement, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	name := "standalone-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	svc, err := topology.NewService(bin, dir, "standalone", name, map[string]string{
		"DATA_DIR": filepath.Join(dir, name), "PHONE_HASH_KEY": hex.EncodeToString(key),
		"NATS_NO_SYNC": strconv.FormatBool(noSync),
	})
	if err != nil {
		return measurement{}, err
	}
	if err := svc.Start(); err != nil {
		return measurement{}, err
	}
	defer func() { _ = svc.Terminate(30 * time.Second) }()
	if err := topology.WaitFor(ctx, 60*time.Second, func() error { return svc.Ready(ctx) }); err != nil {
		return measurement{}, fmt.Errorf("standalone not ready: %w\n%s", err, svc.Tail(10))
	}
	c := newClient([]string{svc.URL()}, "", o.clients)
	measure(ctx, c, o.clients, 0, 2*time.Second) // warm-up: connections, caches, the first GC cycles
	cpu0, _ := svc.CPUTime()
	self0, _ := topology.SelfCPUTime()
	m := measure(ctx, c, o.clients, rate, o.duration)
	cpu1, _ := svc.CPUTime()
	self1, _ := topology.SelfCPUTime()
	sync := "every write synced"
	if noSync {
		sync = "NATS_NO_SYNC=true"
	}
	fmt.Fprintf(out, "\nstandalone, %s, ", sync)
	m.print(out)
	fmt.Fprintf(out, "  cores busy: standalone %.2f, loadgen %.2f\n",
		(cpu1-cpu0).Seconds()/m.took.Seconds(), (self1-self0).Seconds()/m.took.Seconds())
	return m, nil
}
