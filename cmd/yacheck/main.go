// Command yacheck checks a deployment of the Credits partner API against our contract
// (../shared/spec/credits-api.md) the way Yandex's integration check would, before Yandex
// does: every path and method, the full done answer of each product, every documented
// error with its shape, retries, the asynchronous model, the deadline, and latency over a
// sample. It is written from the contract, not from the server's code. It prints one line
// per check (passed, failed with the answer it got and what the contract says, or skipped
// with why), can write JSON and JUnit XML for CI, and exits 1 if any check failed.
//
//	go run ./cmd/yacheck -url http://127.0.0.1:8080
//	go run ./cmd/yacheck -url https://credits.bank.example -token "$TOKEN" -junit yacheck.xml
//
// Its searches use the deployment's test phones (TEST_PHONES), whose outcomes are fixed;
// the defaults are the standalone binary's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yacheck:", err)
		os.Exit(2)
	}
	failed, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yacheck:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

type options struct {
	k        checker
	only     *regexp.Regexp
	jsonOut  string
	junitOut string
}

func parseFlags(args []string, getenv func(string) string) (options, error) {
	fs := flag.NewFlagSet("yacheck", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the deployment's base URL (the paths are the contract's)")
	token := fs.String("token", getenv("YACHECK_TOKEN"), "a bearer token (default $YACHECK_TOKEN)")
	basic := fs.String("basic", getenv("YACHECK_BASIC"), "HTTP Basic credentials, client_id:secret (default $YACHECK_BASIC)")
	approved := fs.String("phone-approved", defaultPhones.approved, "a test phone approved for a loan and a card")
	rejected := fs.String("phone-rejected", defaultPhones.rejected, "a test phone that is rejected")
	delayed := fs.String("phone-delayed", defaultPhones.delayed, "a test phone approved after a delay longer than the sync budget")
	deadline := fs.String("phone-deadline", defaultPhones.deadline, "a test phone nothing decides: rejected at the deadline")
	within := fs.Duration("within", 15*time.Second, "how long a search may take to be done: the deployment's SEARCH_DEADLINE and some slack")
	searches := fs.Int("searches", 20, "searches in the timing sample")
	postP99 := fs.Duration("post-p99", 2*time.Second, "budget for the POST p99")
	doneP99 := fs.Duration("done-p99", 2*time.Second, "budget for the time-to-done p99 of approved searches")
	only := fs.String("run", "", "run only the checks whose id matches this regular expression")
	timeout := fs.Duration("timeout", 30*time.Second, "for one HTTP call")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	junitOut := fs.String("junit", "", "also write the results as JUnit XML to this file")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	// The defaults are the standalone binary's test phones. Elsewhere they may be anybody's
	// number: a deployment is checked with the test phones it was configured with, named.
	named := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { named[f.Name] = true })
	if u, err := url.Parse(*base); err != nil || u.Host == "" {
		return options{}, fmt.Errorf("-url %q: want a base URL such as https://credits.bank.example", *base)
	} else if !loopback(u.Hostname()) {
		for _, f := range []string{"phone-approved", "phone-rejected", "phone-delayed", "phone-deadline"} {
			if !named[f] {
				return options{}, fmt.Errorf("-%s: name the test phone %s is configured with (TEST_PHONES), or -%s '' to skip its checks: the default is the standalone binary's", f, u.Host, f)
			}
		}
	}
	if *token != "" && *basic != "" {
		return options{}, errors.New("-token and -basic: one kind of credentials at a time")
	}
	o := options{jsonOut: *jsonOut, junitOut: *junitOut}
	c := &client{base: strings.TrimRight(*base, "/"), token: *token, http: &http.Client{Timeout: *timeout}}
	if *basic != "" {
		user, secret, ok := strings.Cut(*basic, ":")
		if !ok {
			return options{}, errors.New("-basic: want client_id:secret")
		}
		c.user, c.secret = user, secret
	}
	if *searches < 1 {
		return options{}, errors.New("-searches: at least 1")
	}
	o.k = checker{c: c, phones: phones{*approved, *rejected, *delayed, *deadline}, within: *within,
		searches: *searches, postP99: *postP99, doneP99: *doneP99}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return options{}, fmt.Errorf("-run: %w", err)
		}
		o.only = re
	}
	return o, nil
}

// defaultPhones are the standalone binary's demo test phones (pkg/testphones/demo.json).
var defaultPhones = phones{approved: "+79000000001", rejected: "+79000000002", delayed: "+79000000003", deadline: "+79000000004"}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run runs the checks in order and reports them; failed says whether any failed.
func run(ctx context.Context, o options, out io.Writer) (failed bool, err error) {
	var results []result
	fmt.Fprintf(out, "checking %s against the contract (../shared/spec/credits-api.md)\n\n", o.k.c.base)
	for _, ch := range checks {
		if o.only != nil && !o.only.MatchString(ch.id) {
			continue
		}
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 2*o.k.within+time.Duration(o.k.searches)*o.k.within)
		err := ch.run(cctx, &o.k)
		cancel()
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		r := result{ID: ch.id, Section: ch.section, Title: ch.title, Took: time.Since(start)}
		var note passNote
		switch {
		case err == nil:
			r.Outcome = passed
		case errors.As(err, &note):
			r.Outcome, r.Detail = passed, string(note)
		case errors.Is(err, errSkip):
			r.Outcome, r.Detail = skipped, strings.TrimPrefix(err.Error(), errSkip.Error()+": ")
		default:
			r.Outcome, r.Detail = failedOutcome, err.Error()
			failed = true
		}
		printResult(out, r)
		results = append(results, r)
	}
	if len(results) == 0 {
		return true, errors.New("no check matches -run")
	}
	printSummary(out, results)
	if o.jsonOut != "" {
		if err := writeFile(o.jsonOut, func(w io.Writer) error { return writeJSON(w, o.k.c.base, results) }); err != nil {
			return failed, err
		}
	}
	if o.junitOut != "" {
		if err := writeFile(o.junitOut, func(w io.Writer) error { return writeJUnit(w, results) }); err != nil {
			return failed, err
		}
	}
	return failed, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
