package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

type outcome string

const (
	passed        outcome = "passed"
	failedOutcome outcome = "failed"
	skipped       outcome = "skipped"
)

// result is one check's outcome, as printed and as written for CI.
type result struct {
	ID      string        `json:"id"`
	Section string        `json:"contract_section"`
	Title   string        `json:"title"`
	Outcome outcome       `json:"outcome"`
	Detail  string        `json:"detail,omitempty"` // what was got and what the contract says; why skipped
	Took    time.Duration `json:"took_ns"`
}

func printResult(w io.Writer, r result) {
	mark := map[outcome]string{passed: "PASS", failedOutcome: "FAIL", skipped: "SKIP"}[r.Outcome]
	fmt.Fprintf(w, "%s  %-36s %-10s %s\n", mark, r.ID, r.Section, r.Title)
	if r.Detail != "" {
		for _, line := range strings.Split(r.Detail, "\n") {
			fmt.Fprintf(w, "      %s\n", strings.TrimSpace(line))
		}
	}
}

func printSummary(w io.Writer, results []result) {
	count := map[outcome]int{}
	for _, r := range results {
		count[r.Outcome]++
	}
	fmt.Fprintf(w, "\n%d checks: %d passed, %d failed, %d skipped\n", len(results), count[passed], count[failedOutcome], count[skipped])
}

func writeJSON(w io.Writer, base string, results []result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		URL     string   `json:"url"`
		Results []result `json:"results"`
	}{base, results})
}

// JUnit XML, the subset CI systems read: one suite, one case per check.
type junitSuites struct {
	XMLName xml.Name   `xml:"testsuites"`
	Suites  []junitSet `xml:"testsuite"`
}

type junitSet struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, results []result) error {
	set := junitSet{Name: "yacheck", Tests: len(results)}
	var total time.Duration
	for _, r := range results {
		total += r.Took
		group, _, _ := strings.Cut(r.ID, ".")
		c := junitCase{Name: r.ID, ClassName: "yacheck." + group, Time: seconds(r.Took)}
		first, _, _ := strings.Cut(r.Detail, "\n")
		switch r.Outcome {
		case failedOutcome:
			set.Failures++
			c.Failure = &junitMessage{Message: first, Text: r.Title + " (" + r.Section + ")\n" + r.Detail}
		case skipped:
			set.Skipped++
			c.Skipped = &junitMessage{Message: first}
		default:
			c.SystemOut = r.Detail
		}
		set.Cases = append(set.Cases, c)
	}
	set.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSet{set}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
