package conversions

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/logtest"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/conversions/yandex"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// answer is one scripted reply of the Yandex double.
type answer struct {
	status     int
	retryAfter string
	slow       bool // answer only after the client has given up
	body       string
}

// yandexDouble is a real HTTP server playing Yandex's confirmation endpoint: it answers
// from a script (then 200), refuses any batch holding a poisoned id, and remembers every
// batch it was sent and when.
type yandexDouble struct {
	mu       sync.Mutex
	script   []answer
	perItem  map[string][]answer // for a send of that conversion alone, before the script
	poisoned map[string]bool
	sick     map[string]bool // a batch holding one is answered 500: Yandex's side fails on it
	accepted map[string]int  // how often each conversion was in a batch answered 2xx
	batches  []yandex.Batch
	times    []time.Time
	auth     []string
	release  chan struct{}
	*httptest.Server
}

func newYandex(t *testing.T, script ...answer) *yandexDouble {
	y := &yandexDouble{script: script, perItem: map[string][]answer{}, poisoned: map[string]bool{}, sick: map[string]bool{},
		accepted: map[string]int{}, release: make(chan struct{})}
	y.Server = httptest.NewServer(http.HandlerFunc(y.serve))
	t.Cleanup(func() { close(y.release); y.Close() })
	return y
}

func (y *yandexDouble) serve(w http.ResponseWriter, r *http.Request) {
	var b yandex.Batch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	y.mu.Lock()
	y.batches, y.times, y.auth = append(y.batches, b), append(y.times, time.Now()), append(y.auth, r.Header.Get("Authorization"))
	a := answer{status: http.StatusOK}
	if len(b.Data) == 1 && len(y.perItem[idOf(b.Data[0])]) > 0 {
		id := idOf(b.Data[0])
		a, y.perItem[id] = y.perItem[id][0], y.perItem[id][1:]
	} else if len(y.script) > 0 {
		a, y.script = y.script[0], y.script[1:]
	}
	for _, it := range b.Data {
		if y.poisoned[idOf(it)] {
			a = answer{status: http.StatusBadRequest, body: `{"error":"unknown offer_id ` + it.OfferID + `"}`}
		}
		if y.sick[idOf(it)] {
			a = answer{status: http.StatusInternalServerError, body: `{"error":"internal error"}`}
		}
	}
	if a.status/100 == 2 && !a.slow {
		for _, it := range b.Data {
			y.accepted[idOf(it)]++
		}
	}
	y.mu.Unlock()
	if a.slow {
		<-y.release
		return
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

// idOf is the conversion an item confirms, by the pair Yandex recognises a repeat by.
func idOf(it yandex.Item) string {
	id, _ := contracts.ConversionKey(it.RequestID, it.OfferID)
	return id
}

func (y *yandexDouble) poison(id string) { y.mu.Lock(); y.poisoned[id] = true; y.mu.Unlock() }
func (y *yandexDouble) cure(id string) {
	y.mu.Lock()
	delete(y.poisoned, id)
	delete(y.sick, id)
	y.mu.Unlock()
}
func (y *yandexDouble) sicken(id string) { y.mu.Lock(); y.sick[id] = true; y.mu.Unlock() }

// sent counts how often each conversion id was sent, and in how many sends.
func (y *yandexDouble) sent() (byID map[string]int, sends int) {
	y.mu.Lock()
	defer y.mu.Unlock()
	byID = map[string]int{}
	for _, b := range y.batches {
		for _, it := range b.Data {
			byID[idOf(it)]++
		}
	}
	return byID, len(y.batches)
}

// env is a running conversions service on a real JetStream server.
type env struct {
	t        *testing.T
	url      string // the internal address
	js       jetstream.JetStream
	natsURL  string
	keys     *offerlink.KeySet
	sealer   *offerlink.Sealer
	yandex   *yandexDouble
	store    *Store
	searches *search.Store
	logs     *logtest.Buffer
	vars     map[string]string
	started  bool
	metrics  *sdkmetric.ManualReader // every replica's figures
}

const intakeSecret, siteSecret, opsSecret = "intake-secret", "site-secret", "ops-secret"

func newEnv(t *testing.T, y *yandexDouble, extra ...string) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	k, err := offerlink.GenerateKey("2026-12")
	if err != nil {
		t.Fatal(err)
	}
	keys := offerlink.NewKeySet(k)
	data, _ := keys.Marshal()
	keyFile := filepath.Join(t.TempDir(), "link-keys.json")
	if err := os.WriteFile(keyFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sealer, err := offerlink.NewSealer(keys, "2026-12")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, natsURL: srv.ClientURL(), keys: keys, sealer: sealer, yandex: y, logs: &logtest.Buffer{},
		metrics: sdkmetric.NewManualReader()}
	e.vars = map[string]string{
		"CONVERSIONS_ADDR": natstest.FreeAddr(t), "INTAKE_TOKENS": "old-secret," + intakeSecret, "SITE_TOKENS": siteSecret,
		"OPS_TOKENS": opsSecret,
		"NATS_URL":   srv.ClientURL(), "LINK_KEYS_FILE": keyFile, "LINK_ISSUER": "demobank",
		"YANDEX_TIMEOUT": "200ms", "DELIVERY_BATCH_WAIT": "50ms", "DELIVERY_ACK_WAIT": "1s",
		"DELIVERY_RETRY_BASE": "20ms", "DELIVERY_RETRY_MAX": "200ms",
	}
	if y != nil {
		e.vars["YANDEX_CONVERSIONS_URL"], e.vars["YANDEX_TOKEN"], e.vars["YANDEX_PARTNER_ID"] = y.URL, "yandex-token", "1001"
	}
	for i := 0; i+1 < len(extra); i += 2 {
		e.vars[extra[i]] = extra[i+1]
	}
	_, e.js = natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 10*time.Second)
	// Provisioned from the same variables the service reads, as the provisioner would be.
	provisiontest.Apply(t, e.js, provision.ReadSettings(config.NewReader(func(k string) string { return e.vars[k] }), 1))
	if e.searches, err = search.Open(ctx, e.js, search.Options{}); err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + e.vars["CONVERSIONS_ADDR"]
	e.start(nil)
	e.store, err = BindStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs one replica of the service, on its own NATS connection and internal address
// (the first one's is e.url), until the test ends or stop is called; afterSend is the
// worker's hook.
func (e *env) start(afterSend func(nc interface{ Close() })) (stop func()) {
	t := e.t
	addr := e.vars["CONVERSIONS_ADDR"]
	if e.started {
		addr = natstest.FreeAddr(t)
	}
	e.started = true
	cfg, err := LoadConfig(func(k string) string {
		if k == "CONVERSIONS_ADDR" {
			return addr
		}
		return e.vars[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	nc, js := natstest.JetStream(t, e.natsURL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	deps := Deps{JS: js, Log: zerolog.New(e.logs), Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.metrics))}
	if afterSend != nil {
		deps.afterSend = func() { afterSend(nc) }
	}
	go func() { done <- Run(ctx, cfg, deps) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	natstest.Eventually(t, 10*time.Second, func() error {
		res, err := e.doAt("http://"+addr, "GET", "/v1/conversions/"+testSearchID+"/none", intakeSecret, "")
		if err != nil {
			return err
		}
		if res.status != http.StatusNotFound {
			return fmt.Errorf("not serving yet: %d %s", res.status, res.body)
		}
		return nil
	})
	return stop
}

type result struct {
	status int
	body   string
}

func (e *env) do(method, path, bearer, body string) (result, error) {
	return e.doAt(e.url, method, path, bearer, body)
}

func (e *env) doAt(base, method, path, bearer, body string) (result, error) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return result{}, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return result{res.StatusCode, string(b)}, nil
}

// token is the reference of a link for offer c of search id, made an hour ago.
func (e *env) token(id string, c offerlink.Claims) string {
	e.t.Helper()
	c.SearchID = id
	c.IssuedAt, c.Expiry = time.Now().Add(-time.Hour).Unix(), time.Now().Add(24*time.Hour).Unix()
	_, ref := sealLink(e.t, e.sealer, demoLink, c)
	return ref
}

const demoLink = "https://bank.example/apply"

// sealLink is the link made of template for an offer with claims c, and its reference.
func sealLink(t *testing.T, s *offerlink.Sealer, template string, c offerlink.Claims) (link, ref string) {
	t.Helper()
	o := contracts.Offer{ProductType: c.ProductType, Decision: c.Decision, Amount: c.Amount, Term: c.Term, Rate: c.Rate,
		ProposalLink: contracts.ProposalLink{Link: template}}
	ref, err := s.Seal(&o, c)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(o.ProposalLink.Link, contracts.RefMarker, ref, 1), ref
}

func today() string { return time.Now().In(moscow).Format(dateLayout) }

func (e *env) report(tok string, roubles int64) result {
	e.t.Helper()
	body := fmt.Sprintf(`{"token": %q, "contract_date": %q, "amount": %d, "term": 24, "additional_services": false}`, tok, today(), roubles)
	res, err := e.do("POST", "/v1/conversions", intakeSecret, body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// waitState waits until conversion id is in state, and returns it.
func (e *env) waitState(id string, state contracts.ConversionState) *contracts.Conversion {
	e.t.Helper()
	var c *contracts.Conversion
	natstest.Eventually(e.t, 15*time.Second, func() error {
		var err error
		c, _, err = e.store.Get(context.Background(), id)
		if err != nil {
			return err
		}
		if c.State != state {
			return fmt.Errorf("%s is %s, want %s", id, c.State, state)
		}
		return nil
	})
	return c
}

func newID(i int) string { return fmt.Sprintf("e2b4948b-7d8a-4eec-875c-%012d", i) }

// reportNew reports a contract on search newID(i)'s loan offer, which must be recorded.
func (e *env) reportNew(i int) {
	e.t.Helper()
	if res := e.report(e.token(newID(i), loanClaims()), 300_000); res.status != http.StatusCreated {
		e.t.Fatalf("report %d = %d %s", i, res.status, res.body)
	}
}

// The intake through the real router: what the bank's systems see for each kind of input.
func TestIntake(t *testing.T) {
	e := newEnv(t, nil) // no endpoint: conversions stay queued, which is all this test needs
	good := e.token(testSearchID, loanClaims())
	kid, payload, _ := strings.Cut(good, "~")
	sealed, _ := base64.RawURLEncoding.DecodeString(payload)
	sealed[len(sealed)-20] ^= 1 // a bit of the sealed claims flipped
	tampered := kid + "~" + base64.RawURLEncoding.EncodeToString(sealed)
	now := func() offerlink.Claims {
		c := loanClaims()
		c.IssuedAt, c.Expiry = time.Now().Unix(), time.Now().Add(time.Hour).Unix()
		return c
	}
	foreignKey, _ := offerlink.GenerateKey("2026-12")
	foreignSealer, _ := offerlink.NewSealer(offerlink.NewKeySet(foreignKey), "2026-12")
	_, foreign := sealLink(t, foreignSealer, demoLink, now())
	goneKey, _ := offerlink.GenerateKey("2025-01")
	goneSealer, _ := offerlink.NewSealer(offerlink.NewKeySet(goneKey), "2025-01")
	_, gone := sealLink(t, goneSealer, demoLink, now())
	report := func(token string, rest string) string {
		return fmt.Sprintf(`{"token": %q, "contract_date": %q, %s}`, token, today(), rest)
	}
	okRest := `"amount": 300000, "term": 24, "additional_services": true`

	// A search still retained, whose offer's link we sealed: reportable by its id.
	retained := newID(7)
	link := putSearch(t, e, retained, "https://bank.example/apply?search_id="+retained+"&offer=cash-standard")
	evil := strings.Replace(link, "https://bank.example/apply", "https://evil.example/phish", 1)

	tests := []struct {
		name       string
		method     string
		path       string
		bearer     string
		body       string
		wantStatus int
		want       []string // substrings of the body
	}{
		{"no credentials", "POST", "/v1/conversions", "", report(good, okRest), 401, []string{"bearer token"}},
		{"wrong credentials", "POST", "/v1/conversions", "guess", report(good, okRest), 401, nil},
		{"empty body", "POST", "/v1/conversions", intakeSecret, "", 400, []string{`"field":"body"`}},
		{"not JSON", "POST", "/v1/conversions", intakeSecret, "{amount: 1}", 400, []string{`"field":"body"`}},
		{"unknown field", "POST", "/v1/conversions", intakeSecret, report(good, okRest+`, "amout": 1`), 400, []string{"amout"}},
		{"repeated field", "POST", "/v1/conversions", intakeSecret, report(good, okRest+`, "amount": 1`), 400, []string{`"field":"amount","message":"given twice"`}},
		{"a string amount", "POST", "/v1/conversions", intakeSecret, report(good, `"amount": "300000", "term": 24, "additional_services": true`), 400,
			[]string{`"field":"amount","message":"the wrong type`}},
		{"a bad link and bad figures: all named at once, and refused for good", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"token": %q, "contract_date": "2099-01-01"}`, tampered), 422,
			[]string{`"reason":"forged"`, `"refused":"refused.`, "in the future", `"field":"amount"`, `"field":"additional_services"`}},
		{"a body over 16 KiB", "POST", "/v1/conversions", intakeSecret, `{"link": "` + strings.Repeat("x", 20<<10) + `"}`, 413, []string{`"field":"body"`}},
		{"null", "POST", "/v1/conversions", intakeSecret, "null", 400, []string{`"field":"search_id"`, `"field":"contract_date"`}},
		{"tampered reference", "POST", "/v1/conversions", intakeSecret, report(tampered, okRest), 422, []string{`"reason":"forged"`, "recorded as refused"}},
		{"another's key under our key id", "POST", "/v1/conversions", intakeSecret, report(foreign, okRest), 422, []string{`"reason":"forged"`}},
		{"a key we no longer hold", "POST", "/v1/conversions", intakeSecret, report(gone, okRest), 422, []string{`"reason":"unknown_key"`, `"refused":"refused.`}},
		{"our reference on another site's link", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"link": %q, "contract_date": %q, %s}`, evil, today(), okRest), 422, []string{`"reason":"wrong_address"`}},
		{"neither token nor search", "POST", "/v1/conversions", intakeSecret, `{"contract_date": "2026-12-01", ` + okRest + `}`, 400,
			[]string{`"field":"search_id"`, `"field":"offer"`}},
		{"every problem at once", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"token": %q, "contract_date": "2099-01-01", "amount": 5, "term": 600}`, good), 400,
			[]string{"in the future", "outside the offered 30000", "600 months", "additional_services"}},
		{"token and a search id that disagree", "POST", "/v1/conversions", intakeSecret,
			report(good, okRest+`, "search_id": "`+newID(9)+`"`), 400, []string{`"field":"search_id"`}},
		{"recorded", "POST", "/v1/conversions", intakeSecret, report(good, okRest), 201,
			[]string{`"id":"` + testSearchID + `.cash-standard"`, `"state":"queued"`, `"repeat":false`}},
		{"the same again: idempotent", "POST", "/v1/conversions", intakeSecret, report(good, okRest), 200, []string{`"repeat":true`}},
		{"the same by the old intake token", "POST", "/v1/conversions", "old-secret", report(good, okRest), 200, []string{`"repeat":true`}},
		{"another amount for the same offer", "POST", "/v1/conversions", intakeSecret,
			report(good, `"amount": 310000, "term": 24, "additional_services": true`), 409, []string{"different conversion", `"amount":300000`}},
		{"read back", "GET", "/v1/conversions/" + strings.ToUpper(testSearchID) + "/cash-standard", intakeSecret, "", 200, []string{`"contract_date":"` + today()}},
		{"by search id while retained", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"search_id": %q, "offer": "cash-standard", "contract_date": %q, %s}`, retained, today(), okRest), 201, []string{retained + ".cash-standard"}},
		{"by search id, an offer it did not make", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"search_id": %q, "offer": "card-120", "contract_date": %q, %s}`, retained, today(), okRest), 400, []string{"made no offer"}},
		{"by search id, gone", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"search_id": %q, "offer": "cash-standard", "contract_date": %q, %s}`, newID(8), today(), okRest), 400, []string{"no such search is retained"}},
		{"by the whole link", "POST", "/v1/conversions", intakeSecret,
			fmt.Sprintf(`{"link": %q, "contract_date": %q, %s}`, link, today(), okRest), 200, []string{`"repeat":true`}},
		{"verify a good link, as the site", "POST", "/v1/links/verify", siteSecret, fmt.Sprintf(`{"link": %q}`, link), 200,
			[]string{`"valid":true`, `"search_id":"` + retained, `"offer":"cash-standard"`, `"amount":{"min":30000,"max":1000000}`}},
		{"verify without credentials: an offer's figures are the client's", "POST", "/v1/links/verify", "", fmt.Sprintf(`{"link": %q}`, link), 401, nil},
		{"the site may not report", "POST", "/v1/conversions", siteSecret, report(good, okRest), 401, nil},
		{"the site may not read a conversion", "GET", "/v1/conversions/" + testSearchID + "/cash-standard", siteSecret, "", 401, nil},
		{"verify a tampered reference", "POST", "/v1/links/verify", siteSecret, fmt.Sprintf(`{"token": %q}`, tampered), 422,
			[]string{`"valid":false`, `"reason":"forged"`}},
		{"verify our reference on another site", "POST", "/v1/links/verify", siteSecret, fmt.Sprintf(`{"link": %q}`, evil), 422,
			[]string{`"valid":false`, `"reason":"wrong_address"`}},
		{"verify an edited link", "POST", "/v1/links/verify", intakeSecret, fmt.Sprintf(`{"link": %q}`, strings.Replace(link, "offer=cash-standard", "offer=cash-premium", 1)), 422,
			[]string{`"reason":"link_mismatch"`}},
		{"no JWKS: there is no public key", "GET", "/.well-known/jwks.json", "", "", 404, nil},
		{"unknown path", "GET", "/v1/nothing", "", "", 404, []string{`"message"`}},
		{"wrong method", "PUT", "/v1/conversions", intakeSecret, "", 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.do(tt.method, tt.path, tt.bearer, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if res.status != tt.wantStatus {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, res.status, res.body, tt.wantStatus)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.body, w) {
					t.Errorf("body %s lacks %s", res.body, w)
				}
			}
			if strings.Contains(res.body, `"d":`) {
				t.Errorf("a private key part in %s", res.body)
			}
		})
	}
}

// putSearch records a done search id that offered loanClaims' offer with a link made of
// template, as the offers service does, and returns the link as Yandex was sent it.
func putSearch(t *testing.T, e *env, id, template string) string {
	t.Helper()
	ctx := natstest.Context(t, 10*time.Second)
	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{SearchID: id, PhoneHash: strings.Repeat("ab", 32),
		PhoneMasked: "+7999***0000", ProductType: contracts.ProductLoan, RequestedAt: now, Deadline: now.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	c := loanClaims()
	c.SearchID, c.IssuedAt, c.Expiry = id, now.Unix(), now.Add(time.Hour).Unix()
	o := contracts.Offer{ProductType: contracts.ProductLoan, Decision: contracts.PreApproved,
		Amount: c.Amount, Term: c.Term, Rate: c.Rate, TotalCost: c.Rate, Payment: contracts.Payment{Min: amount(1000), Max: amount(90_000)},
		ProposalLink: contracts.ProposalLink{Link: template}}
	ref, err := e.sealer.Seal(&o, c)
	if err != nil {
		t.Fatal(err)
	}
	offers, err := contracts.EncodeOffers([]contracts.Offer{o})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.searches.Finish(ctx, *req, "", offers, []string{ref}, []string{"approved"}, nil, now); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(o.ProposalLink.Link, contracts.RefMarker, ref, 1)
}

// counted sums counter name's points by their attribute attr's value.
func (e *env) counted(name, attr string) map[string]int64 {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.metrics.Collect(context.Background(), &rm); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, p := range d.DataPoints {
					v, _ := p.Attributes.Value(attribute.Key(attr))
					out[v.AsString()] += p.Value
				}
			}
		}
	}
	return out
}

func writeKeys(t *testing.T, set *offerlink.KeySet) string {
	t.Helper()
	data, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// The rotation as docs/operating.md has it: a new key seals, the old one is retired and kept
// for the link lifetime and the reporting window. A contract signed after its link expired,
// on a link the retired key sealed, is recorded and reaches Yandex under the search id as
// Yandex spelled it. Had the key been dropped too early, the report is recorded as refused,
// counted and logged as an error: never lost unseen.
func TestLateConversionAfterARotationReachesYandex(t *testing.T) {
	const lifetime = 7 * 24 * time.Hour
	old, _ := offerlink.GenerateKey("2026-11")
	newer, _ := offerlink.GenerateKey("2026-12")
	now := time.Now()
	rotatedAt := now.Add(-20 * 24 * time.Hour)
	rotated, err := offerlink.NewKeySet(old).With(newer).Retire("2026-11", rotatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, dropped := rotated.Prune(now.Add(-lifetime - window)); len(dropped) != 0 {
		t.Fatalf("pruned %v within the window", dropped)
	}
	oldSealer, _ := offerlink.NewSealer(offerlink.NewKeySet(old), "2026-11")
	spelled := strings.ToUpper(newID(3))
	c := loanClaims()
	c.SearchID, c.IssuedAt, c.Expiry = spelled, rotatedAt.Add(-time.Hour).Unix(), rotatedAt.Add(lifetime-time.Hour).Unix()
	link, _ := sealLink(t, oldSealer, demoLink, c)
	late := now.Add(-5 * 24 * time.Hour).In(moscow).Format(dateLayout) // after the link's expiry, within the window
	body := fmt.Sprintf(`{"link": %q, "contract_date": %q, "amount": 300000, "term": 24, "additional_services": false}`, link, late)

	y := newYandex(t)
	e := newEnv(t, y, "LINK_KEYS_FILE", writeKeys(t, rotated), "LINK_KEY_ID", "2026-12")
	if res, err := e.do("POST", "/v1/conversions", intakeSecret, body); err != nil || res.status != http.StatusCreated {
		t.Fatalf("late report = %v %+v", err, res)
	}
	e.waitState(newID(3)+".cash-standard", contracts.ConversionDelivered)
	y.mu.Lock()
	sent := y.batches[len(y.batches)-1].Data[0]
	y.mu.Unlock()
	if sent.RequestID != spelled {
		t.Errorf("sent request_id %q, Yandex spelled it %q", sent.RequestID, spelled)
	}
	if res, _ := e.do("POST", "/v1/links/verify", siteSecret, fmt.Sprintf(`{"link": %q}`, link)); res.status != 422 ||
		!strings.Contains(res.body, `"reason":"expired"`) || !strings.Contains(res.body, `"offer":"cash-standard"`) {
		t.Errorf("verify of the expired link = %+v, want expired with its claims", res)
	}

	// The old key dropped before its time.
	early := newEnv(t, y, "LINK_KEYS_FILE", writeKeys(t, offerlink.NewKeySet(newer)))
	res, err := early.do("POST", "/v1/conversions", intakeSecret, body)
	if err != nil || res.status != http.StatusUnprocessableEntity || !strings.Contains(res.body, `"reason":"unknown_key"`) {
		t.Fatalf("report on a dropped key = %v %+v", err, res)
	}
	var answer struct{ Refused string }
	if err := json.Unmarshal([]byte(res.body), &answer); err != nil {
		t.Fatal(err)
	}
	kept := early.waitState(answer.Refused, contracts.ConversionRefused)
	if kept.Reason != "unknown_key" || kept.Ref != offerlink.RefOf(link) || kept.ContractDate != late {
		t.Errorf("refused record %+v", kept)
	}
	if got := early.counted("credits.conversions.refused", "reason"); got["unknown_key"] != 1 {
		t.Errorf("refused counted %v, want unknown_key: 1", got)
	}
	if !strings.Contains(early.logs.String(), "conversion refused") {
		t.Error("the refusal was not logged")
	}
	if again, _ := early.do("POST", "/v1/conversions", intakeSecret, body); again.status != 422 ||
		early.counted("credits.conversions.refused", "reason")["unknown_key"] != 1 || !strings.Contains(again.body, answer.Refused) {
		t.Errorf("a repeat of the refused report: %+v, counted again or recorded apart", again)
	}
	// Another contract on the same link is another record, not folded into the first.
	other := strings.Replace(body, `"amount": 300000`, `"amount": 310000`, 1)
	if res, _ := early.do("POST", "/v1/conversions", intakeSecret, other); res.status != 422 || strings.Contains(res.body, answer.Refused) ||
		early.counted("credits.conversions.refused", "reason")["unknown_key"] != 2 {
		t.Errorf("a second refused report: %+v", res)
	}
}

// The site's verification and the intake make one check: for every link, the intake records
// a contract exactly when verify finds the link ours (valid, or expired within the window),
// and refuses it for the same reason otherwise.
func TestIntakeAndVerifyAgree(t *testing.T) {
	e := newEnv(t, nil)
	fresh := loanClaims()
	fresh.IssuedAt, fresh.Expiry = time.Now().Add(-time.Hour).Unix(), time.Now().Add(time.Hour).Unix()
	expired := fresh
	expired.IssuedAt, expired.Expiry = time.Now().Add(-72*time.Hour).Unix(), time.Now().Add(-48*time.Hour).Unix()
	tooOld := fresh // expired before the window: 393 days ago
	tooOld.IssuedAt, tooOld.Expiry = time.Now().Add(-400*24*time.Hour).Unix(), time.Now().Add(-393*24*time.Hour).Unix()
	withQuery := "https://bank.example/apply?offer=cash-standard"
	links := map[string]string{}
	for i, tc := range []struct {
		name, template string
		c              offerlink.Claims
	}{{"fresh", demoLink, fresh}, {"expired", demoLink, expired}, {"too old", demoLink, tooOld}, {"with a query", withQuery, fresh}} {
		tc.c.SearchID = newID(100 + i)
		links[tc.name], _ = sealLink(t, e.sealer, tc.template, tc.c)
	}
	links["another site"] = strings.Replace(links["fresh"], "bank.example", "evil.example", 1)
	links["query edited"] = strings.Replace(links["with a query"], "offer=cash-standard", "offer=card-120", 1)
	links["no reference"] = demoLink + "?offer=cash-standard"
	links["garbage reference"] = demoLink + "?ref=2026-12~AAAA"
	for name, link := range links {
		t.Run(name, func(t *testing.T) {
			v, err := e.do("POST", "/v1/links/verify", siteSecret, fmt.Sprintf(`{"link": %q}`, link))
			if err != nil {
				t.Fatal(err)
			}
			var verdict struct {
				Valid  bool
				Reason string
			}
			if err := json.Unmarshal([]byte(v.body), &verdict); err != nil {
				t.Fatal(err)
			}
			r, err := e.do("POST", "/v1/conversions", intakeSecret,
				fmt.Sprintf(`{"link": %q, "contract_date": %q, "amount": 300000, "term": 24, "additional_services": false}`, link, today()))
			if err != nil {
				t.Fatal(err)
			}
			recorded := r.status == http.StatusCreated
			ours := verdict.Valid || verdict.Reason == "expired"
			switch {
			case name == "too old": // ours, but the contract is dated past the window
				if recorded || !strings.Contains(r.body, `"reason":"too_late"`) || verdict.Reason != "expired" {
					t.Fatalf("verify %s; intake %d %s", v.body, r.status, r.body)
				}
			case recorded != ours:
				t.Fatalf("verify says %s, the intake %d %s", v.body, r.status, r.body)
			case !ours && !strings.Contains(r.body, `"reason":"`+verdict.Reason+`"`):
				t.Fatalf("verify refuses for %q, the intake %s", verdict.Reason, r.body)
			}
		})
	}
}

// Delivery against Yandex's double: what reaches it, and what the record says after.
func TestDelivery(t *testing.T) {
	tests := []struct {
		name      string
		script    []answer
		wantSends int           // at least
		wantGap   time.Duration // between the first two sends, at least
	}{
		{name: "accepted at once", wantSends: 1},
		{name: "500 twice, then accepted", script: []answer{{status: 500}, {status: 502}}, wantSends: 3},
		{name: "429 with Retry-After: 1", script: []answer{{status: 429, retryAfter: "1"}}, wantSends: 2, wantGap: time.Second},
		{name: "slower than YANDEX_TIMEOUT, then accepted", script: []answer{{slow: true}}, wantSends: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := newYandex(t, tt.script...)
			e := newEnv(t, y)
			if res := e.report(e.token(testSearchID, loanClaims()), 300_000); res.status != http.StatusCreated {
				t.Fatalf("report = %d %s", res.status, res.body)
			}
			c := e.waitState(testSearchID+".cash-standard", contracts.ConversionDelivered)
			byID, sends := y.sent()
			if sends < tt.wantSends || byID[c.ID] != sends || c.DeliveredAt == nil || c.Attempts != sends {
				t.Fatalf("%d sends (%v), record %+v; want %d sends of the one id, all counted", sends, byID, c, tt.wantSends)
			}
			y.mu.Lock()
			defer y.mu.Unlock()
			if tt.wantGap > 0 && y.times[1].Sub(y.times[0]) < tt.wantGap {
				t.Errorf("sent again after %s, before the %s Yandex asked for", y.times[1].Sub(y.times[0]), tt.wantGap)
			}
			b := y.batches[len(y.batches)-1]
			if b.PartnerID != 1001 || y.auth[0] != "Bearer yandex-token" || b.Data[0].RequestID != testSearchID ||
				b.Data[0].OfferID != "cash-standard" || b.Data[0].Amount != money.Roubles(300_000) {
				t.Errorf("sent %+v with %q", b, y.auth[0])
			}
		})
	}
}

// A refusal for good keeps the conversion as failed with Yandex's answer, without taking
// the others of its batch down with it; an operator's requeue, through the service with an
// operator's token, delivers it once fixed, and only a failed conversion is queued again.
func TestRefusedConversionIsKeptAndCanBeRequeued(t *testing.T) {
	y := newYandex(t)
	bad := newID(2) + ".cash-standard"
	y.poison(bad)
	e := newEnv(t, y, "DELIVERY_BATCH_WAIT", "300ms")
	for i := 1; i <= 3; i++ {
		e.reportNew(i)
	}
	failed := e.waitState(bad, contracts.ConversionFailed)
	if !strings.Contains(failed.LastError, "400") || !strings.Contains(failed.LastError, "unknown offer_id cash-standard") || failed.FailedAt == nil {
		t.Fatalf("failed record %+v does not keep Yandex's answer", failed)
	}
	for _, i := range []int{1, 3} {
		e.waitState(newID(i)+".cash-standard", contracts.ConversionDelivered)
	}
	if !strings.Contains(e.logs.String(), "Yandex refused a conversion") {
		t.Error("the refusal was not logged")
	}

	// The operators list through the service; the application system's token does not.
	if res, err := e.do("GET", "/v1/conversions?state=failed", opsSecret, ""); err != nil || res.status != 200 ||
		!strings.Contains(res.body, `"id":"`+bad+`"`) || strings.Contains(res.body, newID(1)) {
		t.Fatalf("the failed conversions as an operator lists them: %+v, %v", res, err)
	}
	for _, call := range []struct{ method, path, bearer, body string }{
		{"GET", "/v1/conversions", intakeSecret, ""},
		{"POST", "/v1/conversions/retry", intakeSecret, `{"ids":["` + bad + `"]}`},
		{"POST", "/v1/conversions/retry", siteSecret, `{"failed":true}`},
		{"POST", "/v1/conversions", opsSecret, `{}`},
	} {
		if res, err := e.do(call.method, call.path, call.bearer, call.body); err != nil || res.status != http.StatusUnauthorized {
			t.Errorf("%s %s with another role's token = %+v, %v; want 401", call.method, call.path, res, err)
		}
	}
	if res, err := e.do("GET", "/v1/conversions?state=lost", opsSecret, ""); err != nil || res.status != http.StatusBadRequest {
		t.Errorf("an unknown state = %+v, %v", res, err)
	}

	y.cure(bad)
	res, err := e.do("POST", "/v1/conversions/retry", opsSecret, `{"ids":["`+bad+`"]}`)
	if err != nil || res.status != 200 || !strings.Contains(res.body, `"queued":["`+bad+`"]`) {
		t.Fatalf("retry = %+v, %v", res, err)
	}
	e.waitState(bad, contracts.ConversionDelivered)
	res, err = e.do("POST", "/v1/conversions/retry", opsSecret, `{"ids":["`+strings.ToUpper(bad[:8])+bad[8:]+`","`+newID(99)+`.cash-standard","a b*"]}`)
	if err != nil || res.status != 200 || !strings.Contains(res.body, `"queued":[]`) ||
		!strings.Contains(res.body, "is delivered") || !strings.Contains(res.body, "no such conversion") ||
		!strings.Contains(res.body, `"field":"ids[2]","message":"not a conversion's id`) {
		t.Errorf("a delivered (spelled in capitals), an unknown and a malformed conversion queued again: %+v, %v", res, err)
	}
}

// One conversion Yandex's side keeps failing on (a 500 for any batch holding it) holds back
// none of the others: the halves of its batch are sent once each, the half Yandex takes is
// delivered, and the other is split again down to the one conversion, which is set aside and,
// while Yandex goes on taking others, parked as failed with Yandex's answer; never dropped,
// and delivered once its cause is gone. No conversion is delivered twice on the way.
func TestOneFailingConversionHoldsBackNoOther(t *testing.T) {
	y := newYandex(t)
	sick := newID(2) + ".cash-standard"
	y.sicken(sick)
	e := newEnv(t, y, "DELIVERY_BATCH_WAIT", "300ms")
	for i := 1; i <= 3; i++ {
		e.reportNew(i)
	}
	for _, i := range []int{1, 3} {
		e.waitState(newID(i)+".cash-standard", contracts.ConversionDelivered)
	}
	// The bank goes on signing contracts, and Yandex goes on taking them.
	next := 10
	natstest.Eventually(t, 20*time.Second, func() error {
		e.reportNew(next)
		next++
		c, _, err := e.store.Get(context.Background(), sick)
		if err != nil || c.State != contracts.ConversionFailed {
			return fmt.Errorf("%s not parked yet: %+v, %v", sick, c, err)
		}
		return nil
	})
	parked, _, _ := e.store.Get(context.Background(), sick)
	if !strings.Contains(parked.LastError, "500") || !strings.Contains(parked.LastError, "while others were delivered") {
		t.Errorf("parked with %q, want Yandex's answer and why", parked.LastError)
	}
	if !strings.Contains(e.logs.String(), "set aside") || !strings.Contains(e.logs.String(), "parked as failed") {
		t.Error("neither setting it aside nor parking it was logged")
	}
	for i := 10; i < next; i++ {
		e.waitState(newID(i)+".cash-standard", contracts.ConversionDelivered)
	}
	y.mu.Lock()
	for id, n := range y.accepted {
		if n != 1 {
			t.Errorf("%s delivered %d times, want once", id, n)
		}
	}
	if y.accepted[sick] != 0 || len(y.accepted) != 2+next-10 {
		t.Errorf("Yandex took %v", y.accepted)
	}
	y.mu.Unlock()
	y.cure(sick)
	if _, err := e.store.Requeue(context.Background(), sick); err != nil {
		t.Fatal(err)
	}
	e.waitState(sick, contracts.ConversionDelivered)
}

// Parking needs Yandex to have taken others since the conversion was first set aside: a
// delivery before that (here, its batch-mate's) is no evidence, since an outage may have begun
// after it. Set aside however often, it stays queued, and goes once Yandex takes it.
func TestAnOutageParksNothing(t *testing.T) {
	y := newYandex(t)
	id := newID(1) + ".cash-standard"
	y.sicken(id)
	e := newEnv(t, y, "DELIVERY_BATCH_WAIT", "300ms")
	for i := 1; i <= 2; i++ { // the failing one written first, its batch-mate delivered after
		e.reportNew(i)
	}
	e.waitState(newID(2)+".cash-standard", contracts.ConversionDelivered)
	natstest.Eventually(t, 20*time.Second, func() error {
		if byID, _ := y.sent(); byID[id] <= setAsideAfter*parkAfter+splitAfter {
			return fmt.Errorf("sent %d times", byID[id])
		}
		return nil
	})
	if c, _, err := e.store.Get(context.Background(), id); err != nil || c.State != contracts.ConversionQueued {
		t.Fatalf("after an outage of its own: %+v, %v; want it still queued", c, err)
	}
	y.cure(id)
	e.waitState(id, contracts.ConversionDelivered)
}

// While a replica works through a batch (here: Yandex refused it for one bad conversion,
// and the first of the others takes three answers of "try again in a second"), it keeps
// every conversion of the batch: a second replica, running meanwhile, is handed none of
// them, so none is sent more than the split requires.
func TestBatchIsKeptWhileItsItemsAreRetried(t *testing.T) {
	y := newYandex(t)
	first, bad, third := newID(1)+".cash-standard", newID(2)+".cash-standard", newID(3)+".cash-standard"
	y.poison(bad)
	busy := answer{status: http.StatusServiceUnavailable, retryAfter: "1"}
	y.perItem[first] = []answer{busy, busy, busy}
	e := newEnv(t, nil, "DELIVERY_ACK_WAIT", "1500ms", "DELIVERY_BATCH_WAIT", "400ms")
	for i := 1; i <= 3; i++ {
		e.reportNew(i)
	}
	e.vars["YANDEX_CONVERSIONS_URL"], e.vars["YANDEX_TOKEN"], e.vars["YANDEX_PARTNER_ID"] = y.URL, "yandex-token", "1001"
	e.start(nil) // the replica that takes the batch
	natstest.Eventually(t, 10*time.Second, func() error {
		if byID, _ := y.sent(); byID[first] < 2 {
			return fmt.Errorf("sent %v", byID)
		}
		return nil
	})
	e.start(nil) // a second replica, while the first still holds the batch
	e.waitState(first, contracts.ConversionDelivered)
	e.waitState(third, contracts.ConversionDelivered)
	e.waitState(bad, contracts.ConversionFailed)
	byID, _ := y.sent()
	// The batch once, then each alone: the first four times (three retries), the others once.
	if byID[first] != 5 || byID[bad] != 2 || byID[third] != 2 {
		t.Fatalf("sends per conversion %v, want %s 5, %s 2, %s 2", byID, first, bad, third)
	}
	if c, _, _ := e.store.Get(context.Background(), first); c.Attempts != 5 {
		t.Errorf("recorded %d attempts, want 5", c.Attempts)
	}
}

// A replica that dies after Yandex accepted a batch and before it recorded that leaves
// the conversion to be sent again, under the same id, by the next one: delivered at least
// once, never lost, and recognisable as a repeat.
func TestWorkerKilledBetweenSendingAndRecording(t *testing.T) {
	y := newYandex(t)
	e := newEnv(t, nil) // the replica started by newEnv does not deliver
	e.vars["YANDEX_CONVERSIONS_URL"], e.vars["YANDEX_TOKEN"], e.vars["YANDEX_PARTNER_ID"] = y.URL, "yandex-token", "1001"
	killed := make(chan struct{})
	var once sync.Once
	stop := e.start(func(nc interface{ Close() }) {
		once.Do(func() {
			nc.Close() // as a crash looks to the broker: gone, with the message unacknowledged
			close(killed)
		})
	})
	id := testSearchID + ".cash-standard"
	if res := e.report(e.token(testSearchID, loanClaims()), 300_000); res.status != http.StatusCreated {
		t.Fatalf("report = %d %s", res.status, res.body)
	}
	select {
	case <-killed:
	case <-time.After(15 * time.Second):
		t.Fatal("the worker never sent")
	}
	stop()
	if c, _, err := e.store.Get(context.Background(), id); err != nil || c.State != contracts.ConversionQueued {
		t.Fatalf("after the crash: %+v, %v; want still queued", c, err)
	}
	e.start(nil) // the next replica
	c := e.waitState(id, contracts.ConversionDelivered)
	byID, _ := y.sent()
	if byID[id] != 2 {
		t.Fatalf("sent %d times, want 2 (before the crash and after): %v", byID[id], byID)
	}
	if c.Attempts != 1 {
		t.Errorf("record counts %d attempts by the replica that recorded it, want 1", c.Attempts)
	}
}

// The gauges and the loud log line read the index of undelivered conversions.
func TestOverdueConversionsAreCountedAndLogged(t *testing.T) {
	now := time.Date(2026, 12, 20, 12, 0, 0, 0, time.UTC)
	idx := newIndex()
	for _, c := range []contracts.Conversion{
		{ID: "a", ContractDate: "2026-12-19", State: contracts.ConversionQueued},
		{ID: "b", ContractDate: "2026-12-10", State: contracts.ConversionQueued},
		{ID: "c", ContractDate: "2026-12-01", State: contracts.ConversionFailed},
		{ID: "d", ContractDate: "2026-11-01", State: contracts.ConversionDelivered},
	} {
		idx.put(&c)
	}
	s := idx.summaryOver(now, 7*24*time.Hour)
	slices.Sort(s.overdue)
	// "c": from 00:00 Moscow on 1 December (21:00 UTC on 30 November) to now.
	if s.queued != 2 || s.failed != 1 || s.oldest != 19*24*time.Hour+15*time.Hour || !slices.Equal(s.overdue, []string{"b", "c"}) {
		t.Fatalf("summary %+v", s)
	}
	idx.put(&contracts.Conversion{ID: "c", ContractDate: "2026-12-01", State: contracts.ConversionDelivered})
	if s := idx.summary(now); s.failed != 0 || s.queued != 2 {
		t.Fatalf("after delivery: %+v", s)
	}

	var logs logtest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- warnOverdue(ctx, idx, 7*24*time.Hour, 10*time.Millisecond, func() time.Time { return now }, zerolog.New(&logs))
	}()
	natstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), `"level":"error"`) || !strings.Contains(logs.String(), `"ids":["b"]`) {
			return fmt.Errorf("logged %q", logs.String())
		}
		return nil
	})
	cancel()
	<-done
}

func TestLoadConfig(t *testing.T) {
	k, _ := offerlink.GenerateKey("k")
	data, _ := offerlink.NewKeySet(k).Marshal()
	testKeys := string(data)
	const strongToken = "5e0b9c3d7a1f4e8b2c6d0a9f3e7b1c5d8a2f6e0b4c9d3a7f1e5b8c2d6a0f4e9b"
	for _, tt := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"link keys inline, the rest defaults", map[string]string{"LINK_KEYS": testKeys}, ""},
		{"no link keys", nil, "LINK_KEYS_FILE"},
		{"an ack wait shorter than three batch waits", map[string]string{"DELIVERY_ACK_WAIT": "2s", "DELIVERY_BATCH_WAIT": "1s"}, "DELIVERY_ACK_WAIT"},
		{"a URL without a host", map[string]string{"YANDEX_CONVERSIONS_URL": "https://", "YANDEX_TOKEN": "t", "YANDEX_PARTNER_ID": "7"}, "YANDEX_CONVERSIONS_URL"},
		{"intake beyond loopback without tokens", map[string]string{"CONVERSIONS_ADDR": ":8090"}, "INTAKE_TOKENS"},
		{"intake beyond loopback with compose's committed token", map[string]string{"LINK_KEYS": testKeys, "CONVERSIONS_ADDR": ":8090", "INTAKE_TOKENS": "compose-intake-not-a-secret"}, "INTAKE_TOKENS"},
		{"intake beyond loopback with a guessable site token", map[string]string{"LINK_KEYS": testKeys, "CONVERSIONS_ADDR": ":8090", "INTAKE_TOKENS": strongToken, "SITE_TOKENS": "site"}, "SITE_TOKENS"},
		{"health beyond loopback counts too", map[string]string{"LINK_KEYS": testKeys, "HEALTH_ADDR": ":8081", "INTAKE_TOKENS": "intake"}, "INTAKE_TOKENS"},
		{"intake beyond loopback, strong tokens", map[string]string{"LINK_KEYS": testKeys, "CONVERSIONS_ADDR": ":8090", "INTAKE_TOKENS": strongToken}, ""},
		{"plain http to Yandex", map[string]string{"YANDEX_CONVERSIONS_URL": "http://yandex.example/conv", "YANDEX_TOKEN": "t", "YANDEX_PARTNER_ID": "7"}, "https"},
		{"endpoint without credentials", map[string]string{"YANDEX_CONVERSIONS_URL": "https://yandex.example/conv"}, "YANDEX_TOKEN"},
		{"a partner id that is not an integer (spec §9)", map[string]string{"YANDEX_CONVERSIONS_URL": "https://yandex.example/conv", "YANDEX_TOKEN": "t", "YANDEX_PARTNER_ID": "demobank"}, "YANDEX_PARTNER_ID"},
		{"retry base over max", map[string]string{"DELIVERY_RETRY_BASE": "10m"}, "DELIVERY_RETRY_MAX"},
		{"missing key file", map[string]string{"LINK_KEYS_FILE": "/nonexistent/keys.json"}, "LINK_KEYS_FILE"},
		{"the site's tokens alone, every route left open", map[string]string{"LINK_KEYS": testKeys, "SITE_TOKENS": "s"}, "SITE_TOKENS"},
		{"one token for the site and the intake", map[string]string{"LINK_KEYS": testKeys, "SITE_TOKENS": "t", "INTAKE_TOKENS": "u,t"}, "SITE_TOKENS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(func(k string) string { return tt.vars[k] })
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("LoadConfig = %v, want %q", err, tt.want)
			}
		})
	}
}

// A delivery worker started before the provisioner has made its consumer (a first rollout:
// Kubernetes starts everything at once) waits for it instead of taking the service down.
func TestDeliveryWaitsForItsConsumer(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	w := &worker{cfg: Delivery{AckWait: provision.Defaults(1).DeliveryAckWait}, log: zerolog.Nop()}
	ctx := natstest.Context(t, 30*time.Second)
	bound := make(chan jetstream.Consumer, 1)
	go func() { bound <- w.bind(ctx, js) }()
	select {
	case c := <-bound:
		t.Fatalf("bound to %v before anything was provisioned", c)
	default:
	}
	provisiontest.Defaults(t, js, 1)
	select {
	case c := <-bound:
		if c == nil || c.CachedInfo().Name != contracts.ConsumerConversionsDelivery {
			t.Fatalf("bound to %v", c)
		}
	case <-ctx.Done():
		t.Fatal("the worker did not bind once its consumer was provisioned")
	}
}

// A conversions bucket at its bound answers a report 503 with a Retry-After of a minute,
// the room an operator's raise takes to come, and keeps what it holds.
func TestFullBucketAnswersReports503(t *testing.T) {
	e := newEnv(t, nil)
	ctx := natstest.Context(t, 10*time.Second)
	e.reportNew(1)
	st, err := e.js.Stream(ctx, "KV_"+contracts.BucketConversions)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = int64(st.CachedInfo().State.Bytes) + 256 // room for nothing more
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	res, err := e.do("POST", "/v1/conversions", intakeSecret, fmt.Sprintf(`{"token": %q, "contract_date": %q, "amount": 300000, "term": 24, "additional_services": false}`,
		e.token(newID(2), loanClaims()), today()))
	if err != nil {
		t.Fatal(err)
	}
	if res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "send it again") {
		t.Fatalf("a report to a full bucket: %d %s", res.status, res.body)
	}
	req, _ := http.NewRequest("POST", e.url+"/v1/conversions", strings.NewReader(fmt.Sprintf(`{"token": %q, "contract_date": %q, "amount": 300000, "term": 24, "additional_services": false}`,
		e.token(newID(3), loanClaims()), today())))
	req.Header.Set("Authorization", "Bearer "+intakeSecret)
	raw, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw.Body.Close()
	if got := raw.Header.Get("Retry-After"); raw.StatusCode != http.StatusServiceUnavailable || got != "60" {
		t.Errorf("status %d, Retry-After %q, want 503 and 60", raw.StatusCode, got)
	}
	after, err := e.js.Stream(ctx, "KV_"+contracts.BucketConversions)
	if err != nil {
		t.Fatal(err)
	}
	if before, now := st.CachedInfo().State.Msgs, after.CachedInfo().State.Msgs; now != before || now == 0 {
		t.Errorf("the bucket held %d records, now %d: what it kept was dropped for room", before, now)
	}
}
