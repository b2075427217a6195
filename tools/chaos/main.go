//go:build unix

// Command chaos proves the system under faults. It builds nats-server (from the module the
// project pins) and the project's binaries, runs the production topology from them (three
// nats-server processes in a JetStream cluster, file storage, every write synced; two
// gateway, two scoring and two offers replicas as separate processes, NATS_REPLICAS=3), or
// the standalone binary on a data dir, and plays Yandex against it: new searches at a fixed
// arrival rate over both gateways, each retried on 503 or a lost connection with the same
// search_id and body, then polled until done. One fault per run, from real signals and TCP
// proxies; then every search is accounted for, one table line per run, and the command
// exits 1 if any search was lost or doubled, any answer unexpected, or any pre-approved
// client rejected because of the fault.
//
//	go run ./tools/chaos                     # every scenario, seeds 1, 2 and 3
//	go run ./tools/chaos -short -seeds 1     # what CI runs: seconds of load per scenario
//	go run ./tools/chaos -run 'quorum|leader' -seeds 7
//	go run ./tools/chaos -soak 30m           # a random fault every minute; memory and goroutines
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/demobank/yacredits/tools/topology"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if err := run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

type options struct {
	short  bool
	seeds  []uint64
	only   *regexp.Regexp
	dir    string // where runs keep their files; empty: a temporary directory
	keep   bool   // keep every run's files, not only a failed one's
	soak   time.Duration
	every  time.Duration // soak: a fault this often
	rate   float64       // overrides the pass's arrival rate
	binDir string        // prebuilt binaries (tests build once)
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	short := fs.Bool("short", false, "the CI pass: seconds of load and short faults")
	seeds := fs.String("seeds", "1,2,3", "comma-separated seeds; each scenario runs once per seed")
	only := fs.String("run", "", "run only the scenarios matching this regular expression")
	dir := fs.String("dir", "", "keep run files here (default: a temporary directory)")
	keep := fs.Bool("keep", false, "keep the files of runs that passed too")
	soak := fs.Duration("soak", 0, "instead of the scenarios, run this long with a random fault every -every")
	every := fs.Duration("every", time.Minute, "soak: time between faults")
	rate := fs.Float64("rate", 0, "new searches per second (default: 100, or 40 with -short)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{short: *short, dir: *dir, keep: *keep, soak: *soak, every: *every, rate: *rate}
	for _, s := range strings.Split(*seeds, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return options{}, fmt.Errorf("-seeds: %q is not a number", s)
		}
		o.seeds = append(o.seeds, n)
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return options{}, fmt.Errorf("-run: %w", err)
		}
		o.only = re
	}
	return o, nil
}

// errFailed is returned when a run broke a promise; the table says which.
var errFailed = errors.New("a promise was broken (see the table)")

func run(ctx context.Context, o options, stdout io.Writer) error {
	root := o.dir
	if root == "" {
		tmp, err := os.MkdirTemp("", "chaos-")
		if err != nil {
			return err
		}
		root = tmp
	}
	bin := topology.Binaries{Dir: o.binDir}
	if o.binDir == "" {
		fmt.Fprintln(stdout, "building nats-server and the services ...")
		var err error
		if bin, err = topology.Build(ctx, filepath.Join(root, "bin")); err != nil {
			return err
		}
	}
	t := fullTiming
	if o.short {
		t = shortTiming
	}
	if o.rate > 0 {
		t.rate = o.rate
	}
	if o.soak > 0 {
		return soak(ctx, bin, root, o, t, stdout)
	}
	var results []result
	w := newTable(stdout)
	for _, sc := range scenarios {
		if o.only != nil && !o.only.MatchString(sc.name) {
			continue
		}
		for _, seed := range o.seeds {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res := runScenario(ctx, bin, root, sc, seed, t)
			results = append(results, res)
			w.line(res)
			if !res.failed() && !o.keep {
				_ = os.RemoveAll(res.dir)
			}
		}
	}
	w.flush()
	failed := false
	for _, res := range results {
		if !res.failed() {
			continue
		}
		failed = true
		fmt.Fprintf(stdout, "\n%s seed %d failed; logs in %s\n", res.scenario, res.seed, res.dir)
		for _, p := range append(res.problems, res.report.Problems...) {
			fmt.Fprintln(stdout, "  -", p)
		}
	}
	if failed {
		return errFailed
	}
	if o.dir == "" && !o.keep {
		_ = os.RemoveAll(root)
	}
	return nil
}

// table prints one line per run as soon as the run ends, aligned once all have.
type table struct {
	out   io.Writer
	lines []string
}

const tableHeader = "scenario\tseed\tsearches\taccepted\tdone\tlost\tdoubled\tunexpected\t503s\trejected by fault\tdone p50\tdone p99\tlongest gap\taccepted below quorum\tresult"

func newTable(out io.Writer) *table {
	fmt.Fprintln(out, strings.ReplaceAll(tableHeader, "\t", " | "))
	return &table{out: out}
}

func (t *table) line(res result) {
	r := res.report
	verdict := "ok"
	if res.failed() {
		verdict = "FAIL"
	}
	l := fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s",
		res.scenario, res.seed, r.Searches, r.Accepted, r.Done, r.Lost, r.Doubled, r.Unexpected,
		r.Unavailable, r.RejectedByFault, ms(r.TimeToDone.P50), ms(r.TimeToDone.P99), ms(r.LongestGap),
		r.AcceptedInWindows, verdict)
	t.lines = append(t.lines, l)
	fmt.Fprintln(t.out, strings.ReplaceAll(l, "\t", " | "), "  ("+res.took.Round(time.Second).String()+": "+res.phases+")")
}

// flush prints the whole table again, aligned, in Markdown.
func (t *table) flush() {
	fmt.Fprintln(t.out)
	markdown(t.out, append([]string{tableHeader}, t.lines...))
}

// markdown prints tab-separated rows as a Markdown table, the first row its header.
func markdown(out io.Writer, rows []string) {
	var cells [][]string
	var widths []int
	for _, r := range rows {
		c := strings.Split(r, "\t")
		for i, v := range c {
			if i == len(widths) {
				widths = append(widths, 3)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(v))
		}
		cells = append(cells, c)
	}
	for n, c := range cells {
		var b strings.Builder
		for i, v := range c {
			fmt.Fprintf(&b, "| %s%s ", v, strings.Repeat(" ", widths[i]-utf8.RuneCountInString(v)))
		}
		fmt.Fprintln(out, b.String()+"|")
		if n == 0 {
			b.Reset()
			for _, w := range widths {
				b.WriteString("|" + strings.Repeat("-", w+2))
			}
			fmt.Fprintln(out, b.String()+"|")
		}
	}
}

func ms(d time.Duration) string {
	if d < 10*time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	}
	return d.Round(100 * time.Millisecond).String()
}
