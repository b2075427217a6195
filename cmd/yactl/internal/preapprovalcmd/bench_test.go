package preapprovalcmd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/demobank/yacredits/pkg/natstest"
)

// childEnv makes this test binary a bare import of the file it names (see TestMain), so
// that the peak RSS measured is the import's alone, not the test server's.
const childEnv = "PREAPPROVALS_BENCH_IMPORT"

// BenchmarkImport runs `preapprovals import` on generated exports (one bad row in 10,000)
// against a JetStream server that syncs every write to disk, as production does. Each
// import runs in a child process and reports its peak resident set (VmHWM). "new" imports
// alternate between two exports, so every one stores a new version; "unchanged" imports
// the stored export again, which reads it once and writes nothing.
//
//	go test ./cmd/yactl -run '^$' -bench Import -benchtime 3x
func BenchmarkImport(b *testing.B) {
	srv := natstest.RunServer(b)
	dir := b.TempDir()
	env := append(os.Environ(), "NATS_URL="+srv.ClientURL(), "PHONE_HASH_KEY="+testKey, "PROGRESS_INTERVAL=0")
	for _, rows := range []int{200_000, 1_000_000} {
		files := [2]string{}
		for i := range files {
			files[i] = filepath.Join(dir, fmt.Sprintf("export-%d-%d.csv", rows, i))
			args := []string{"generate", "-seed", strconv.Itoa(i + 1), "-bad-every", "10000", strconv.Itoa(rows), files[i]}
			if err := Run(context.Background(), args, nil, io.Discard, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		name := fmt.Sprintf("rows=%dk,sync=always", rows/1000)
		b.Run(name+",new", func(b *testing.B) {
			importChild(b, env, files[1]) // so that the first import in the loop is new
			peak, n := 0.0, 0
			for b.Loop() {
				out, rss := importChild(b, env, files[n%2])
				if !strings.HasPrefix(out, "stored ") {
					b.Fatalf("not stored:\n%s", out)
				}
				peak = max(peak, rss)
				n++
			}
			b.ReportMetric(float64(rows*n)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(peak, "peak-RSS-MiB")
		})
		b.Run(name+",unchanged", func(b *testing.B) {
			importChild(b, env, files[0])
			peak := 0.0
			for b.Loop() {
				out, rss := importChild(b, env, files[0])
				if !strings.HasPrefix(out, "unchanged: ") {
					b.Fatalf("written again:\n%s", out)
				}
				peak = max(peak, rss)
			}
			b.ReportMetric(peak, "peak-RSS-MiB")
		})
	}
}

// importChild imports path in a child process and returns its summary and peak RSS in MiB.
func importChild(b *testing.B, env []string, path string) (string, float64) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(env, childEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("import child: %v\n%s", err, stderr.String())
	}
	summary, last, _ := strings.Cut(strings.TrimSpace(string(out)), "\npeak-rss-kib ")
	kib, err := strconv.ParseFloat(last, 64)
	if err != nil {
		b.Fatalf("import child said:\n%s", out)
	}
	return summary, kib / 1024
}

// runChild is the child's whole life: the command, then its peak RSS from /proc (Linux,
// where the import runs).
func runChild(path string) int {
	if err := Run(context.Background(), []string{"import", path}, os.Getenv, os.Stdout, io.Discard); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	status, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "peak RSS needs /proc:", err)
		return 1
	}
	defer status.Close()
	s := bufio.NewScanner(status)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			fmt.Printf("peak-rss-kib %s\n", strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return 0
		}
	}
	fmt.Fprintln(os.Stderr, "no VmHWM in /proc/self/status")
	return 1
}
