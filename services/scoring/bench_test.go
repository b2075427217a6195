package scoring_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/scoring"
	"github.com/demobank/yacredits/services/scoring/preapproval"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

// replicaChildEnv makes this test binary a bare scoring replica (see childMain), so that the
// resident set measured is the replica's alone, not the test server's.
const replicaChildEnv = "SCORING_BENCH_REPLICA"

// BenchmarkReplica measures what a scoring replica costs in memory: a replica starts in a
// child process and loads the stored snapshot, then an import of another export makes it
// swap. It reports the replica's resident set after the first load and after the swap,
// and its peak (VmHWM, which includes the moment it held both indexes). "rows=1M" is the
// issue's generated million-row export (about 625,000 clients, 1M offers); "clients=1M"
// gives a million clients both products, 2M offers, the larger index.
//
//	go test ./services/scoring -run '^$' -bench Replica -benchtime 1x
func BenchmarkReplica(b *testing.B) {
	for _, tc := range []struct {
		name        string
		rows        int
		allProducts bool
	}{
		{"rows=1M", 1_000_000, false},
		{"clients=1M,offers=2M", 2_000_000, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := natstest.RunServer(b)
			_, js := natstest.JetStream(b, srv.ClientURL())
			ctx := context.Background()
			if _, err := provisiontest.Searches(b, js, 1, search.Options{}); err != nil {
				b.Fatal(err)
			}
			obs, err := snapshotstore.Open(ctx, js)
			if err != nil {
				b.Fatal(err)
			}
			h, err := phone.NewHasher([]byte(gatewayKey))
			if err != nil {
				b.Fatal(err)
			}
			var files [2]string
			for i := range files {
				files[i] = filepath.Join(b.TempDir(), fmt.Sprintf("export-%d.csv", i))
				f, err := os.Create(files[i])
				if err != nil {
					b.Fatal(err)
				}
				err = preapproval.GenerateWith(f, preapproval.GenerateOptions{Rows: tc.rows, Seed: int64(i + 1), AllProducts: tc.allProducts})
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			store := func(path string) {
				if _, err := snapshotstore.Import(ctx, obs, contracts.PreapprovalsObject, snapshotstore.FileSource(path), snapshotstore.Options{Hasher: h}); err != nil {
					b.Fatal(err)
				}
			}
			store(files[0])
			env := append(os.Environ(), replicaChildEnv+"=1", "NATS_URL="+srv.ClientURL(), "PHONE_HASH_KEY="+gatewayKey)
			var loadRSS, swapRSS, peak, loadMS float64
			n := 0
			for b.Loop() {
				r := startReplica(b, env)
				first := r.next()
				store(files[(n+1)%2])
				second := r.next()
				r.stop()
				loadRSS, swapRSS = max(loadRSS, first.rss), max(swapRSS, second.rss)
				peak, loadMS = max(peak, second.hwm), max(loadMS, first.took)
				n++
			}
			b.ReportMetric(loadRSS, "RSS-after-load-MiB")
			b.ReportMetric(swapRSS, "RSS-after-swap-MiB")
			b.ReportMetric(peak, "peak-RSS-MiB")
			b.ReportMetric(loadMS, "load-ms")
		})
	}
}

type replica struct {
	b     *testing.B
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

type sample struct{ rss, hwm, took float64 }

func startReplica(b *testing.B, env []string) *replica {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &replica{b: b, cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
}

// next waits for the replica's next load and returns what it reported then.
func (r *replica) next() sample {
	r.b.Helper()
	if !r.lines.Scan() {
		r.b.Fatalf("replica ended: %v", r.cmd.Wait())
	}
	var s sample
	if _, err := fmt.Sscanf(r.lines.Text(), "loaded rss=%g hwm=%g took=%g", &s.rss, &s.hwm, &s.took); err != nil {
		r.b.Fatalf("replica said %q", r.lines.Text())
	}
	return s
}

func (r *replica) stop() {
	r.b.Helper()
	r.stdin.Close()
	if err := r.cmd.Wait(); err != nil {
		r.b.Fatal(err)
	}
}

// childMain is the replica's whole life when replicaChildEnv is set: scoring.Run until its
// standard input closes, reporting its memory each time a snapshot is in place.
func childMain() bool {
	if os.Getenv(replicaChildEnv) == "" {
		return false
	}
	if err := runReplica(); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func runReplica() error {
	cfg, err := scoring.LoadConfig(os.Getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, err := bus.Connect(ctx, cfg.NATS, "scoring-bench")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	logs, logw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			var line struct {
				Message string  `json:"message"`
				Took    float64 `json:"took"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil || !strings.HasPrefix(line.Message, "pre-approvals loaded") {
				continue
			}
			// The line is logged once the old index, if any, is collected.
			fmt.Printf("loaded rss=%g hwm=%g took=%g\n", procStatus("VmRSS"), procStatus("VmHWM"), line.Took)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- scoring.Run(ctx, cfg, scoring.Deps{JS: js, Log: zerolog.New(logw)}) }()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	err = <-done
	logw.Close()
	return err
}

// procStatus reads a memory figure of this process from /proc (Linux), in MiB.
func procStatus(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024
		}
	}
	return -1
}
