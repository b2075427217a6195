package preapproval

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/demobank/yacredits/pkg/phone"
)

// importExport streams an export into a snapshot, as the import command will; every
// 64 Ki rows it calls probe, which the tests use to watch the heap.
func importExport(r io.Reader, h *phone.Hasher, w io.Writer, probe func(rows int)) (rows, bad int, err error) {
	sw := NewSnapshotWriter(w, KeyFingerprint(h), epoch)
	pr := NewReader(r, h)
	for {
		rec, err := pr.Next()
		if err == io.EOF {
			break
		}
		if errors.As(err, new(*RowError)) {
			bad++
			continue
		}
		if err == nil {
			err = sw.Write(rec)
		}
		if err != nil {
			return rows, bad, err
		}
		if rows++; rows%(64<<10) == 0 && probe != nil {
			probe(rows)
		}
	}
	return rows, bad, sw.Close()
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestImportMemoryIsFlat fails if the reader or the snapshot writer keeps anything per
// row: 200 000 rows kept at even 16 bytes each would add 3 MiB of live heap.
func TestImportMemoryIsFlat(t *testing.T) {
	var export bytes.Buffer
	if err := GenerateWith(&export, GenerateOptions{Rows: 200_000, Seed: 9, BadEvery: 1000}); err != nil {
		t.Fatal(err)
	}
	var first, last uint64
	rows, bad, err := importExport(&export, testHasher(t), io.Discard, func(rows int) {
		if first == 0 {
			first = liveHeap()
		} else {
			last = liveHeap()
		}
	})
	if err != nil || rows != 199_800 || bad != 200 {
		t.Fatalf("imported %d rows, %d bad, %v", rows, bad, err)
	}
	if last > first+1<<20 {
		t.Fatalf("live heap grew from %d to %d bytes over the import", first, last)
	}
}

// The 1M-row export for BenchmarkImport, written once per test binary run.
var (
	exportOnce sync.Once
	exportPath string
	exportErr  error
)

const importRows = 1_000_000

func benchExport(b *testing.B) string {
	exportOnce.Do(func() {
		dir, err := os.MkdirTemp("", "preapproval-bench")
		if err != nil {
			exportErr = err
			return
		}
		exportPath = filepath.Join(dir, "export.csv") // TestMain removes dir
		f, err := os.Create(exportPath)
		if err != nil {
			exportErr = err
			return
		}
		if err := GenerateWith(f, GenerateOptions{Rows: importRows, Seed: 42, BadEvery: 10_000}); err != nil {
			exportErr = err
		}
		if err := f.Close(); err != nil && exportErr == nil {
			exportErr = err
		}
	})
	if exportErr != nil {
		b.Fatal(exportErr)
	}
	return exportPath
}

// BenchmarkImport streams a 1M-row export into a snapshot written to io.Discard. It reports
// rows/s, the peak heap sampled every 64 Ki rows, and the peak RSS of the same import run
// alone in a child process (the figure the import's 150 MiB budget is about).
func BenchmarkImport(b *testing.B) {
	path := benchExport(b)
	h := testHasher(b)
	var peak uint64
	var m runtime.MemStats
	rows := 0
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		n, bad, err := importExport(f, h, io.Discard, func(int) {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		})
		f.Close()
		if err != nil || n+bad != importRows {
			b.Fatalf("imported %d rows, %d bad: %v", n, bad, err)
		}
		rows += n + bad
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(childImportRSS(b, path), "peak-RSS-MiB")
}

const childEnv = "PREAPPROVAL_IMPORT_CHILD"

// childImportRSS runs this test binary again as a bare import of path (see TestMain) and
// returns its peak resident set in MiB.
func childImportRSS(b *testing.B, path string) float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("import child: %v: %s", err, out)
	}
	kib, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("import child said %q", out)
	}
	return kib / 1024
}

// runImportChild imports path into io.Discard and prints the process's peak RSS in KiB, read
// from /proc (Linux, where the service runs).
func runImportChild(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := phone.NewHasher(testKey)
	if err != nil {
		return err
	}
	if _, _, err := importExport(f, h, io.Discard, nil); err != nil {
		return err
	}
	status, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("peak RSS needs /proc: %w", err)
	}
	defer status.Close()
	s := bufio.NewScanner(status)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			fmt.Println(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return nil
		}
	}
	return errors.New("no VmHWM in /proc/self/status")
}

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		if err := runImportChild(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if exportPath != "" {
		os.RemoveAll(filepath.Dir(exportPath))
	}
	os.Exit(code)
}

// The snapshot of one million clients with both products each, made once per run.
var (
	snapOnce sync.Once
	snapData []byte
	snapErr  error
)

const benchClients = 1_000_000

func benchSnapshot(b *testing.B) []byte {
	snapOnce.Do(func() {
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(GenerateWith(pw, GenerateOptions{Rows: 2 * benchClients, Seed: 43, AllProducts: true}))
		}()
		var buf bytes.Buffer
		var n int
		n, _, snapErr = importExport(pr, testHasher(b), &buf, nil)
		pr.Close()
		if snapErr == nil && n != 2*benchClients {
			snapErr = fmt.Errorf("snapshot holds %d records", n)
		}
		snapData = buf.Bytes()
	})
	if snapErr != nil {
		b.Fatal(snapErr)
	}
	return snapData
}

// BenchmarkReadSnapshot loads one million clients, each with a loan and a card offer, and
// reports the live heap the resulting index holds and what loading it allocated.
func BenchmarkReadSnapshot(b *testing.B) {
	snap := benchSnapshot(b)
	before := liveHeap()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	allocated := m.TotalAlloc
	ix, err := ReadSnapshot(bytes.NewReader(snap))
	if err != nil {
		b.Fatal(err)
	}
	runtime.ReadMemStats(&m)
	allocated = m.TotalAlloc - allocated
	held := liveHeap() - before
	if ix.Len() != 2*benchClients {
		b.Fatalf("index holds %d entries", ix.Len())
	}
	ix = nil
	b.SetBytes(int64(len(snap)))
	for b.Loop() {
		if ix, err = ReadSnapshot(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(held)/(1<<20), "index-MiB")
	// Everything the load allocated, garbage included: the most it can add to a replica
	// that still holds the index in use.
	b.ReportMetric(float64(allocated)/(1<<20), "load-alloc-MiB")
	b.ReportMetric(float64(held)/float64(benchClients*2), "B/entry")
}
