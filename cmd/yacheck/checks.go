package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// paths are the three spellings the contract serves every method on (§2).
var paths = []string{
	"/integrations/v1/api/loan_approval",
	"/api/banking/loan_approval",
	"/integrations/api/banking/loan_approval",
}

// phones are the test phones whose outcomes are known in advance (TEST_PHONES on the
// deployment); an empty one skips the checks that need it.
type phones struct {
	approved string // approved for a loan and a card
	rejected string // rejected
	delayed  string // approved, after a delay longer than the sync budget: answered pending first
	deadline string // never decided: finished rejected at the deadline
}

// checker holds what every check needs.
type checker struct {
	c        *client
	phones   phones
	within   time.Duration // how long a search may take to be done (the deployment's deadline, plus slack)
	searches int           // the timing check's sample
	postP99  time.Duration // the timing check's budgets
	doneP99  time.Duration
}

// check is one rule of the contract, tested against the deployment.
type check struct {
	id      string // stable, for CI: group.name
	section string // where the contract says so
	title   string
	run     func(ctx context.Context, k *checker) error
}

// errSkip marks a check that could not be run here (a test phone not given, say).
var errSkip = errors.New("skipped")

func skip(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSkip, fmt.Sprintf(format, args...))
}

func body(id, phone, product string, extra ...string) string {
	fields := []string{
		fmt.Sprintf(`"search_id":%q`, id),
		fmt.Sprintf(`"phone_number":%q`, phone),
		fmt.Sprintf(`"product_type":%q`, product),
	}
	return "{" + strings.Join(append(fields, extra...), ",") + "}"
}

func fail(format string, args ...any) error { return fmt.Errorf(format, args...) }

func problemsErr(what string, a *answer, list []string) error {
	if len(list) == 0 {
		return nil
	}
	return fmt.Errorf("%s departs from the contract: %s\n  got: %s", what, strings.Join(list, "; "), a)
}

// search submits a search and waits for it to be done, through pending if need be,
// holding every pending answer to §4.2 on the way.
func (k *checker) search(ctx context.Context, path, id, phone, product string, extra ...string) (first, done *answer, err error) {
	first, err = k.c.post(ctx, path, body(id, phone, product, extra...))
	if err != nil {
		return nil, nil, err
	}
	if first.status != http.StatusOK {
		return first, nil, fail("POST answered %s; want 200 (§4.1)", first)
	}
	if st, _ := first.str("status"); st == "done" {
		return first, first, nil
	}
	if err := problemsErr("the pending answer", first, pendingProblems(first.obj, id)); err != nil {
		return first, nil, err
	}
	done, err = k.c.untilDone(ctx, path, id, k.within, func(a *answer) error {
		return problemsErr("a pending poll", a, pendingProblems(a.obj, id))
	})
	if errors.Is(err, errPending) {
		return first, done, fail("not done within %s of the POST (§5: a search is finished by its deadline)", k.within)
	}
	return first, done, err
}

func needs(phone, what string) error {
	if phone == "" {
		return skip("no %s test phone given", what)
	}
	return nil
}

var checks = []check{
	{"paths.post-and-poll", "§2", "POST submits and GET ?search_id= polls, on each of the three paths", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		for _, p := range paths {
			id := uuid.NewString()
			if _, _, err := k.search(ctx, p, id, k.phones.approved, "loan"); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			a, err := k.c.get(ctx, p, id)
			if err != nil {
				return err
			}
			if st, _ := a.str("status"); a.status != 200 || st != "done" {
				return fail("%s: GET of a done search answered %s; want 200 done", p, a)
			}
		}
		return nil
	}},
	{"paths.poll-body", "§2", "a GET may carry {\"search_id\"} as a JSON body instead of the query", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		id := uuid.NewString()
		if _, _, err := k.search(ctx, paths[1], id, k.phones.approved, "loan"); err != nil {
			return err
		}
		a, err := k.c.do(ctx, request{method: http.MethodGet, path: paths[1], contentType: "application/json", body: fmt.Sprintf(`{"search_id":%q}`, id)})
		if err != nil {
			return err
		}
		if st, _ := a.str("status"); a.status != 200 || st != "done" {
			return fail("GET with the id in a JSON body answered %s; want 200 done", a)
		}
		return nil
	}},
	{"paths.other-methods", "§2", "any other method answers 405 with Allow: GET, POST", func(ctx context.Context, k *checker) error {
		for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
			a, err := k.c.do(ctx, request{method: m, path: paths[0], contentType: "application/json", body: "{}"})
			if err != nil {
				return err
			}
			if a.status != http.StatusMethodNotAllowed {
				return fail("%s answered %s; want 405", m, a)
			}
			allow := strings.ReplaceAll(strings.Join(a.header.Values("Allow"), ","), " ", "")
			got := strings.Split(allow, ",")
			if !slices.Contains(got, "GET") || !slices.Contains(got, "POST") {
				return fail("%s: 405 with Allow %q; want GET and POST", m, allow)
			}
			if err := problemsErr("the 405", a, errorProblems(a.obj, 405, "")); err != nil {
				return err
			}
		}
		return nil
	}},
	{"done.loan", "§4.1", "a pre-approved client's loan: has_approve, every offer in the loan shape", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		id := uuid.NewString()
		_, done, err := k.search(ctx, paths[0], id, k.phones.approved, "loan", `"amount":300000`, `"term":24`)
		if err != nil {
			return err
		}
		return problemsErr("the done answer", done, doneProblems(done.obj, id, "loan", "has_approve"))
	}},
	{"done.credit_card", "§4.1", "a pre-approved client's card: has_approve, payment {cc_rate}, no term", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		id := uuid.NewString()
		_, done, err := k.search(ctx, paths[1], id, k.phones.approved, "credit_card", `"amount":100000`)
		if err != nil {
			return err
		}
		return problemsErr("the done answer", done, doneProblems(done.obj, id, "credit_card", "has_approve"))
	}},
	{"done.rejected", "§4.1", "a rejected client: decision rejected and data: [] (an array, not null)", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.rejected, "rejected"); err != nil {
			return err
		}
		id := uuid.NewString()
		_, done, err := k.search(ctx, paths[0], id, k.phones.rejected, "loan")
		if err != nil {
			return err
		}
		return problemsErr("the done answer", done, doneProblems(done.obj, id, "loan", "rejected"))
	}},
	{"async.pending-then-done", "§1, §4.2", "a slow search answers pending ({search_id, status} only), then done by polling, never back to pending", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.delayed, "delayed"); err != nil {
			return err
		}
		id := uuid.NewString()
		first, err := k.c.post(ctx, paths[0], body(id, k.phones.delayed, "loan"))
		if err != nil {
			return err
		}
		if st, _ := first.str("status"); first.status != 200 || st != "pending" {
			return fail("the delayed phone's POST answered %s; want 200 pending (its decision comes after the sync budget)", first)
		}
		if err := problemsErr("the pending answer", first, pendingProblems(first.obj, id)); err != nil {
			return err
		}
		done, err := k.c.untilDone(ctx, paths[1], id, k.within, func(a *answer) error {
			return problemsErr("a pending poll", a, pendingProblems(a.obj, id))
		})
		if errors.Is(err, errPending) {
			return fail("not done within %s", k.within)
		}
		if err != nil {
			return err
		}
		if err := problemsErr("the done answer", done, doneProblems(done.obj, id, "loan", "has_approve")); err != nil {
			return err
		}
		again, err := k.c.get(ctx, paths[2], id)
		if err != nil {
			return err
		}
		if st, _ := again.str("status"); st != "done" {
			return fail("polled after done, the search answered %s; done is final (§4.2)", again)
		}
		return nil
	}},
	{"deadline.rejected", "§5", "a search nothing decides is finished rejected by its deadline", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.deadline, "deadline"); err != nil {
			return err
		}
		id := uuid.NewString()
		_, done, err := k.search(ctx, paths[0], id, k.phones.deadline, "loan")
		if err != nil {
			return err
		}
		return problemsErr("the deadline's answer", done, doneProblems(done.obj, id, "loan", "rejected"))
	}},
	{"retry.same-state", "§5", "the same search POSTed again is answered from the stored search: the same decision and offers", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		id := uuid.NewString()
		_, done, err := k.search(ctx, paths[0], id, k.phones.approved, "loan", `"amount":250000`, `"term":12`)
		if err != nil {
			return err
		}
		// props are not compared (§5): a retry with others is still the same search.
		again, err := k.c.post(ctx, paths[1], body(id, k.phones.approved, "loan", `"amount":250000`, `"term":12`, `"props":["retry"]`))
		if err != nil {
			return err
		}
		if again.status != 200 {
			return fail("the retry answered %s; want 200 from the stored search", again)
		}
		for _, f := range []string{"status", "decision", "data", "name"} {
			if !sameJSON(done.obj[f], again.obj[f]) {
				return fail("the retry's %s differs: first %s, retry %s", f, show(done.obj[f]), show(again.obj[f]))
			}
		}
		return nil
	}},
	{"retry.echoes-spelling", "§3", "an id sent in upper case is the same search, echoed as the request spelled it", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		id := uuid.NewString()
		upper := strings.ToUpper(id)
		_, done, err := k.search(ctx, paths[0], upper, k.phones.approved, "loan")
		if err != nil {
			return err
		}
		if got, _ := done.str("search_id"); got != upper {
			return fail("search_id echoed %q; want %q, as sent", got, upper)
		}
		a, err := k.c.get(ctx, paths[0], id)
		if err != nil {
			return err
		}
		if st, _ := a.str("status"); a.status != 200 || st != "done" {
			return fail("the lower-case id polls %s; want the same done search", a)
		}
		return nil
	}},
	{"error.422-reused-id", "§5, §4.3", "a search_id reused for a different request answers 422, and the stored search stands", func(ctx context.Context, k *checker) error {
		if err := needs(k.phones.approved, "approved"); err != nil {
			return err
		}
		id := uuid.NewString()
		if _, _, err := k.search(ctx, paths[0], id, k.phones.approved, "loan"); err != nil {
			return err
		}
		a, err := k.c.post(ctx, paths[0], body(id, k.phones.approved, "credit_card"))
		if err != nil {
			return err
		}
		if a.status != http.StatusUnprocessableEntity {
			return fail("another product under the same id answered %s; want 422", a)
		}
		if err := problemsErr("the 422", a, errorProblems(a.obj, 422, id)); err != nil {
			return err
		}
		stored, err := k.c.get(ctx, paths[0], id)
		if err != nil {
			return err
		}
		if data, _ := stored.obj["data"].([]any); len(data) > 0 {
			if o, _ := data[0].(map[string]any); o["product_type"] != "loan" {
				return fail("after the 422 the stored search changed: %s", stored)
			}
		}
		return nil
	}},
	{"error.404-unknown", "§4.3", "a poll of an unknown search_id answers 404", func(ctx context.Context, k *checker) error {
		id := uuid.NewString()
		a, err := k.c.get(ctx, paths[1], id)
		if err != nil {
			return err
		}
		if a.status != http.StatusNotFound {
			return fail("GET of a never-seen id answered %s; want 404", a)
		}
		return problemsErr("the 404", a, errorProblems(a.obj, 404, id))
	}},
	{"error.413-too-large", "§3", "a body over 64 KiB answers 413", func(ctx context.Context, k *checker) error {
		big := body(uuid.NewString(), k.anyPhone(), "loan", `"props":["`+strings.Repeat("x", 70<<10)+`"]`)
		a, err := k.c.post(ctx, paths[0], big)
		if err != nil {
			return err
		}
		if a.status != http.StatusRequestEntityTooLarge {
			return fail("a 70 KiB body answered %s; want 413", a)
		}
		return problemsErr("the 413", a, errorProblems(a.obj, 413, ""))
	}},
	{"error.415-content-type", "§3", "a Content-Type that is not JSON answers 415", func(ctx context.Context, k *checker) error {
		a, err := k.c.do(ctx, request{method: http.MethodPost, path: paths[0], contentType: "text/plain",
			body: body(uuid.NewString(), k.anyPhone(), "loan")})
		if err != nil {
			return err
		}
		if a.status != http.StatusUnsupportedMediaType {
			return fail("text/plain answered %s; want 415", a)
		}
		return problemsErr("the 415", a, errorProblems(a.obj, 415, ""))
	}},
	{"error.400-poll", "§4.3", "a GET without a search_id, or with a malformed one, answers 400", func(ctx context.Context, k *checker) error {
		for _, q := range []string{"", "?search_id=not-a-uuid"} {
			a, err := k.c.do(ctx, request{method: http.MethodGet, path: paths[1] + q})
			if err != nil {
				return err
			}
			if a.status != 400 {
				return fail("GET %s answered %s; want 400", paths[1]+q, a)
			}
			if err := problemsErr("the 400", a, errorProblems(a.obj, 400, "", "search_id")); err != nil {
				return err
			}
		}
		return nil
	}},
}

// badRequests are the classes of bad input (§3), each a 400 naming its fields (§4.3); a
// body that is not a request object at all must name something too, whatever the server
// calls it. Each is built with a fresh id and the approved test phone, so that a server
// that wrongly accepts one stores nothing under an id a later run reuses, nor a real phone.
var badRequests = []struct {
	name  string
	body  func(id, phone string) string
	props []string
}{
	{"missing-fields", func(string, string) string { return `{}` }, []string{"search_id", "phone_number", "product_type"}},
	{"phone", func(id, _ string) string { return body(id, "12345", "loan") }, []string{"phone_number"}},
	{"phone-other-country", func(id, _ string) string { return body(id, "+380501234567", "loan") }, []string{"phone_number"}},
	{"product-type", func(id, ph string) string { return body(id, ph, "mortgage") }, []string{"product_type"}},
	{"search-id-braces", func(id, ph string) string { return body("{"+id+"}", ph, "loan") }, []string{"search_id"}},
	{"amount", func(id, ph string) string { return body(id, ph, "loan", `"amount":-5`) }, []string{"amount"}},
	{"amount-decimals", func(id, ph string) string { return body(id, ph, "loan", `"amount":100.005`) }, []string{"amount"}},
	{"term-fraction", func(id, ph string) string { return body(id, ph, "loan", `"term":"36.5"`) }, []string{"term"}},
	{"term-range", func(id, ph string) string { return body(id, ph, "loan", `"term":361`) }, []string{"term"}},
	{"props-not-strings", func(id, ph string) string { return body(id, ph, "loan", `"props":[1]`) }, []string{"props"}},
	{"every-field-at-once", func(id, _ string) string { return body(id, "12345", "loan", `"amount":-5`, `"term":0`) }, []string{"phone_number", "amount", "term"}},
	{"malformed-json", func(string, string) string { return `{"search_id":` }, nil},
	{"empty-body", func(string, string) string { return `` }, nil},
	{"not-an-object", func(string, string) string { return `[1,2]` }, nil},
	{"duplicate-key", func(id, ph string) string {
		return `{"search_id":"` + id + `","search_id":"` + id + `","phone_number":"` + ph + `","product_type":"loan"}`
	}, nil},
	{"trailing-data", func(id, ph string) string { return body(id, ph, "loan") + ` {}` }, nil},
}

// anyPhone is a phone for the bodies whose phone does not matter (they are refused for
// something else): the approved test phone, or the standalone's when none is given.
func (k *checker) anyPhone() string {
	if k.phones.approved != "" {
		return k.phones.approved
	}
	return defaultPhones.approved
}

func init() {
	for _, b := range badRequests {
		checks = append(checks, check{"error.400-" + b.name, "§3, §4.3", "bad input answers 400 with properties and details: " + b.name, func(ctx context.Context, k *checker) error {
			a, err := k.c.post(ctx, paths[0], b.body(uuid.NewString(), k.anyPhone()))
			if err != nil {
				return err
			}
			if a.status != 400 {
				return fail("answered %s; want 400", a)
			}
			return problemsErr("the 400", a, errorProblems(a.obj, 400, "", b.props...))
		}})
	}
	checks = append(checks, check{"auth.403-without-credentials", "§7", "with credentials configured, a request without them answers 403", func(ctx context.Context, k *checker) error {
		if k.c.token == "" && k.c.user == "" {
			return skip("no credentials given: the deployment is checked as open")
		}
		a, err := k.c.do(ctx, request{method: http.MethodPost, path: paths[0], contentType: "application/json",
			body: body(uuid.NewString(), k.anyPhone(), "loan"), noAuth: true})
		if err != nil {
			return err
		}
		if a.status != http.StatusForbidden {
			return fail("a POST without credentials answered %s; want 403", a)
		}
		return problemsErr("the 403", a, errorProblems(a.obj, 403, ""))
	}})
	checks = append(checks, check{"timing.latency", "§1", "POST and time-to-done p99 over a sample of searches, within the budgets", timing})
}

// timing sends k.searches searches one after another, as the checks before did, and holds
// the POST and time-to-done p99 to the budgets.
func timing(ctx context.Context, k *checker) error {
	if err := needs(k.phones.approved, "approved"); err != nil {
		return err
	}
	var posts, dones []time.Duration
	for i := range k.searches {
		product := []string{"loan", "credit_card"}[i%2]
		id := uuid.NewString()
		start := time.Now()
		first, _, err := k.search(ctx, paths[i%len(paths)], id, k.phones.approved, product)
		if err != nil {
			return fmt.Errorf("search %d of %d: %w", i+1, k.searches, err)
		}
		posts = append(posts, first.took)
		dones = append(dones, time.Since(start))
	}
	postP99, doneP99 := quantile(posts, 0.99), quantile(dones, 0.99)
	detail := fmt.Sprintf("%d searches: POST p50 %s p99 %s, done p50 %s p99 %s", k.searches,
		round(quantile(posts, 0.5)), round(postP99), round(quantile(dones, 0.5)), round(doneP99))
	if postP99 > k.postP99 || doneP99 > k.doneP99 {
		return fail("%s; budgets: POST p99 %s, done p99 %s", detail, k.postP99, k.doneP99)
	}
	return passWith(detail)
}

// passWith is a pass that has something to say.
type passNote string

func (p passNote) Error() string { return string(p) }

func passWith(note string) error { return passNote(note) }

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
