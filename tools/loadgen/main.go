//go:build unix

// Command loadgen plays Yandex against a deployment and measures it: new searches (a fresh
// search_id each, from the demo data's clients), each POSTed, retried on 503 and polled until
// done, as Yandex does. A closed model (N clients, each sending its next search when the
// last is done) finds the rate the system sustains; an open model (a fixed arrival rate)
// measures latency at a given load. It prints searches/s, POST and time-to-done p50/p99/max,
// the share answered done by the first POST, and what was lost or went wrong.
//
// The machine this runs on is noisy (the disk's synced-write rate moved from 3,400 to
// 6,300/s within one hour), so -standalone quotes the stack as ratios of figures taken in
// the same run: JetStream's own synced publish rate on one file stream with 16 publishers,
// and the same stack with the per-write sync turned off.
//
//	go run ./tools/loadgen -url http://127.0.0.1:8080 -clients 64 -duration 20s
//	go run ./tools/loadgen -url http://127.0.0.1:8080 -rate 500 -duration 20s
//	go run ./tools/loadgen -baseline                  # JetStream alone, 16 publishers
//	go run ./tools/loadgen -baseline -rate 750        # JetStream alone's latency at a fixed rate
//	go run ./tools/loadgen -baseline -streams 4       # the same publishers spread over 4 streams
//	go run ./tools/loadgen -standalone                # all of it, with the ratios
//	go run ./tools/loadgen -processes                 # the same, nats-server and each service a process
//	go run ./tools/loadgen -cluster                   # the same, a 3-node cluster and two replicas of each
//	go run ./tools/loadgen -retained 1000000          # disk and server memory per kept record
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/demobank/yacredits/tools/internal/yandex"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type options struct {
	urls       []string
	token      string
	clients    int
	rate       float64
	duration   time.Duration
	baseline   bool
	standalone bool
	processes  bool
	cluster    bool
	users      bool
	retained   int
	publishers int
	streams    int
	dir        string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	urls := fs.String("url", "", "the gateways' base URLs, comma-separated (http://127.0.0.1:8080)")
	token := fs.String("token", "", "a bearer token for the API, if it wants one")
	clients := fs.Int("clients", 64, "closed model: this many concurrent clients")
	rate := fs.Float64("rate", 0, "open model: new searches per second (instead of -clients)")
	duration := fs.Duration("duration", 20*time.Second, "how long each measurement runs")
	baseline := fs.Bool("baseline", false, "measure JetStream's synced publish rate alone (with -rate: its latency at that rate)")
	standalone := fs.Bool("standalone", false, "build and run the standalone binary and measure it against the baseline")
	processes := fs.Bool("processes", false, "build and run nats-server and each service as processes of their own and measure them against the baseline")
	cluster := fs.Bool("cluster", false, "build and run a 3-node JetStream cluster and two replicas of each service, as processes, and measure them against the baseline")
	users := fs.Bool("users", false, "with -cluster: the NATS users and accounts as shipped (deploy/k8s/base/nats/users.conf), each service with its own")
	retained := fs.Int("retained", 0, "fill a searches bucket with this many finished records and measure what they cost")
	publishers := fs.Int("publishers", 16, "baseline: concurrent publishers")
	streams := fs.Int("streams", 1, "baseline: file streams the publishers are spread over (what sharding the searches bucket would give)")
	dir := fs.String("dir", "", "where servers keep their data (default: a temporary directory, on the disk measured)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{token: *token, clients: *clients, rate: *rate, duration: *duration, baseline: *baseline,
		standalone: *standalone, processes: *processes, cluster: *cluster, users: *users, retained: *retained, publishers: *publishers, streams: *streams, dir: *dir}
	for _, u := range strings.Split(*urls, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			o.urls = append(o.urls, u)
		}
	}
	if o.users && !o.cluster {
		return o, errors.New("-users goes with -cluster")
	}
	if o.streams < 1 || o.streams > o.publishers {
		return o, errors.New("-streams is from 1 to -publishers")
	}
	if len(o.urls) == 0 && !o.baseline && !o.standalone && !o.processes && !o.cluster && o.retained == 0 {
		return o, errors.New("say what to measure: -url, -baseline, -standalone, -processes, -cluster or -retained")
	}
	return o, nil
}

func run(ctx context.Context, o options, out io.Writer) error {
	dir := o.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "loadgen-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	switch {
	case o.standalone:
		return runStandalone(ctx, o, dir, out)
	case o.processes:
		return runProcesses(ctx, o, dir, out)
	case o.cluster:
		return runCluster(ctx, o, dir, out)
	case o.baseline && o.rate > 0:
		q, err := jetStreamLatency(ctx, dir, o.rate, o.duration)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "JetStream, every write synced, %.0f publishes/s on one file stream: publish p50 %s  p99 %s  max %s\n", o.rate, ms(q.P50), ms(q.P99), ms(q.Max))
		return nil
	case o.baseline:
		rate, err := jetStreamRate(ctx, dir, o.publishers, o.streams, o.duration)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "JetStream, every write synced, %d publishers on %d file stream(s): %.0f publishes/s\n", o.publishers, o.streams, rate)
		return nil
	case o.retained > 0:
		return runRetained(ctx, o, dir, out)
	}
	m := measure(ctx, newClient(o.urls, o.token, o.clients), o.clients, o.rate, o.duration)
	m.print(out)
	if m.report.Lost+m.errors() > 0 {
		return errors.New("searches were lost or answered with errors")
	}
	return nil
}

func newClient(urls []string, token string, conns int) *yandex.Client {
	c := &yandex.Client{Bases: urls, Light: true, PollEvery: 50 * time.Millisecond, HTTP: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 4 * conns, MaxIdleConnsPerHost: 4 * conns},
	}}
	if token != "" {
		c.Header = http.Header{"Authorization": {"Bearer " + token}}
	}
	return c
}

// measurement is one run of load and what it found.
type measurement struct {
	model    string
	took     time.Duration
	report   yandex.Report
	searches []*yandex.Search
}

// measure runs the closed model with clients, or the open model at rate when it is set.
func measure(ctx context.Context, c *yandex.Client, clients int, rate float64, d time.Duration) measurement {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	gen := yandex.DemoRequests(uint64(time.Now().UnixNano()))
	start := time.Now()
	var m measurement
	if rate > 0 {
		m.model = fmt.Sprintf("open model, %.0f new searches/s", rate)
		m.searches = c.Open(ctx, rate, d, gen)
	} else {
		m.model = fmt.Sprintf("closed model, %d clients", clients)
		m.searches = c.Closed(ctx, clients, d, gen)
	}
	m.took = time.Since(start)
	m.report = yandex.Account(m.searches, 10*time.Second)
	return m
}

// rate is searches done per second of the run.
func (m measurement) rate() float64 { return float64(m.report.Done) / m.took.Seconds() }

// errors counts answers that were neither 200 nor 503, or outside the documented shape.
func (m measurement) errors() int { return m.report.Unexpected }

func (m measurement) print(out io.Writer) {
	r := m.report
	share := 0.0
	if r.Searches > 0 {
		share = 100 * float64(r.DoneInFirstPOST) / float64(r.Searches)
	}
	fmt.Fprintf(out, "%s for %s: %d searches, %.0f done/s\n", m.model, m.took.Round(100*time.Millisecond), r.Searches, m.rate())
	fmt.Fprintf(out, "  POST         p50 %s  p99 %s  max %s\n", ms(r.POST.P50), ms(r.POST.P99), ms(r.POST.Max))
	fmt.Fprintf(out, "  time to done p50 %s  p99 %s  max %s\n", ms(r.TimeToDone.P50), ms(r.TimeToDone.P99), ms(r.TimeToDone.Max))
	fmt.Fprintf(out, "  done in the first POST %.1f %%, lost %d, 503s %d, errors %d, never accepted %d\n",
		share, r.Lost, r.Unavailable, m.errors(), r.NeverAccepted)
	for _, p := range r.Problems {
		fmt.Fprintln(out, "  -", p)
	}
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}
