package catalogcmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/logtest"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/catalog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// files writes the catalogs the tests use into a temporary directory.
type files struct{ demo, cheaper, invalid, broken, missing string }

// invalidCatalog has two problems: an inverted rate range and a card with no grace period.
func invalidCatalog(t *testing.T) (data []byte, problems []string) {
	t.Helper()
	s := strings.Replace(string(catalog.DemoJSON()), `"A": {"min": 21.9, "max": 24.9}`, `"A": {"min": 31.9, "max": 24.9}`, 1)
	s = strings.Replace(s, `"grace_period": 120`, `"grace_period": 0`, 1)
	var invalid *catalog.ValidationError
	if _, err := catalog.Parse([]byte(s)); !errors.As(err, &invalid) || len(invalid.Problems) != 2 {
		t.Fatalf("the invalid test catalog should have two problems, got %v", err)
	}
	return []byte(s), invalid.Problems
}

func writeFiles(t *testing.T) files {
	t.Helper()
	dir := t.TempDir()
	invalid, _ := invalidCatalog(t)
	f := files{
		demo: filepath.Join(dir, "demo.json"), cheaper: filepath.Join(dir, "cheaper.json"),
		invalid: filepath.Join(dir, "invalid.json"), broken: filepath.Join(dir, "broken.json"),
		missing: filepath.Join(dir, "missing.json"),
	}
	cheaper := strings.Replace(string(catalog.DemoJSON()), `"A": {"min": 21.9, "max": 24.9}`, `"A": {"min": 11.9, "max": 12.9}`, 1)
	for path, data := range map[string][]byte{
		f.demo: catalog.DemoJSON(), f.cheaper: []byte(cheaper), f.invalid: invalid, f.broken: []byte(`{"products": [`),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type result struct {
	err            error
	stdout, stderr string
}

// provisionedServer is a server with everything provisioned, as yactl finds it.
func provisionedServer(t *testing.T) *natstest.Server {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	provisiontest.Defaults(t, js, 1)
	return srv
}

func runCtl(t *testing.T, url string, args ...string) result {
	t.Helper()
	env := map[string]string{"NATS_URL": url, "NATS_CONNECT_TIMEOUT": "2s"}
	var stdout, stderr bytes.Buffer
	err := Run(natstest.Context(t, 20*time.Second), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return result{err: err, stdout: stdout.String(), stderr: stderr.String()}
}

// check compares a result with what a row wants: an error (or none) containing wantErr, and
// every wanted fragment in stdout and stderr.
func (r result) check(t *testing.T, wantErr string, wantStdout, wantStderr []string) {
	t.Helper()
	switch {
	case wantErr == "" && r.err != nil:
		t.Fatalf("error %v\nstderr:\n%s", r.err, r.stderr)
	case wantErr != "" && (r.err == nil || !strings.Contains(r.err.Error(), wantErr)):
		t.Fatalf("error %v, want one containing %q", r.err, wantErr)
	}
	for _, w := range wantStdout {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	for _, w := range wantStderr {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
}

// validate needs no broker: the URL points nowhere.
func TestValidate(t *testing.T) {
	f := writeFiles(t)
	_, problems := invalidCatalog(t)
	tests := []struct {
		name       string
		args       []string
		wantErr    string
		wantStdout []string
		wantStderr []string
	}{
		{name: "valid file", args: []string{"validate", f.demo}, wantStdout: []string{f.demo + ": valid, 5 products"}},
		{name: "invalid file lists every problem", args: []string{"validate", f.invalid},
			wantErr: "refused, 2 problem(s)", wantStderr: []string{f.invalid + ": " + problems[0], f.invalid + ": " + problems[1]}},
		{name: "file that does not decode", args: []string{"validate", f.broken}, wantErr: f.broken + ": refused: catalog:"},
		{name: "missing file", args: []string{"validate", f.missing}, wantErr: "no such file"},
		{name: "no file", args: []string{"validate"}, wantErr: errUsage.Error()},
		{name: "no command", args: nil, wantErr: errUsage.Error()},
		{name: "unknown command", args: []string{"delete"}, wantErr: errUsage.Error()},
		{name: "bad revision", args: []string{"get", "latest"}, wantErr: "REVISION is a positive whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCtl(t, "nats://127.0.0.1:1", tt.args...)
			r.check(t, tt.wantErr, tt.wantStdout, tt.wantStderr)
			if tt.wantErr != "" && r.stdout != "" {
				t.Errorf("a failure wrote to stdout: %q", r.stdout)
			}
		})
	}
}

// put and get against a real JetStream server, one step after another: a refused put
// leaves the bucket as it was, and every stored revision can be read back.
func TestPutAndGet(t *testing.T) {
	srv := provisionedServer(t)
	url := srv.ClientURL()
	f := writeFiles(t)
	_, problems := invalidCatalog(t)
	demo, _ := os.ReadFile(f.demo)
	cheaper, _ := os.ReadFile(f.cheaper)
	steps := []struct {
		name       string
		args       []string
		wantErr    string
		wantStdout []string
		wantStderr []string
		wantExact  []byte // stdout, byte for byte
	}{
		{name: "get before any catalog", args: []string{"get"}, wantErr: "no catalog in the bucket"},
		{name: "put invalid into an empty bucket", args: []string{"put", f.invalid}, wantErr: "refused, 2 problem(s)",
			wantStderr: []string{problems[0], problems[1]}},
		{name: "put the first", args: []string{"put", f.demo}, wantStdout: []string{"put as revision 1, 5 products"}},
		{name: "put a change", args: []string{"put", f.cheaper}, wantStdout: []string{"put as revision 2, 5 products"}},
		{name: "put invalid is refused", args: []string{"put", f.invalid}, wantErr: "refused, 2 problem(s)",
			wantStderr: []string{f.invalid + ": " + problems[0], f.invalid + ": " + problems[1]}},
		{name: "put missing file", args: []string{"put", f.missing}, wantErr: "no such file"},
		{name: "get the current one", args: []string{"get"}, wantExact: cheaper, wantStderr: []string{"revision 2, put "}},
		{name: "get an earlier one", args: []string{"get", "1"}, wantExact: demo, wantStderr: []string{"revision 1, put "}},
		{name: "get one never stored", args: []string{"get", "9"}, wantErr: "revision 9 is not in the bucket's history"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := runCtl(t, url, st.args...)
			r.check(t, st.wantErr, st.wantStdout, st.wantStderr)
			if st.wantExact != nil && r.stdout != string(st.wantExact) {
				t.Errorf("stdout is not the catalog as put:\n%.200s", r.stdout)
			}
		})
	}
}

// A catalog stored around yactl catalog that does not validate is shown with a warning and
// its problems, since the services do not price with it.
func TestGetWarnsOfAnInvalidRevision(t *testing.T) {
	srv := provisionedServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	invalid, problems := invalidCatalog(t)
	kv, err := offers.CatalogDocument.Bind(natstest.Context(t, 10*time.Second), js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(natstest.Context(t, 10*time.Second), contracts.CatalogKey, invalid); err != nil {
		t.Fatal(err)
	}
	r := runCtl(t, srv.ClientURL(), "get")
	r.check(t, "", nil, []string{"warning: revision 1 is not a valid catalog", "revision 1: " + problems[0], "revision 1: " + problems[1]})
}

// What the command puts is what a running offers service prices with, within a second.
func TestPutReachesRunningOffersService(t *testing.T) {
	srv := provisionedServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	key, err := offerlink.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := offerlink.NewKeySet(key).Marshal()
	cfg, err := offers.LoadConfig(func(k string) string {
		switch k {
		case "LINK_KEYS":
			return string(keys)
		case "AUDIT_PSEUDONYM_KEY":
			return strings.Repeat("3c", 32)
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- offers.Run(runCtx, cfg, offers.Deps{JS: js, Log: zerolog.New(logs)}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("offers.Run: %v", err)
		}
	})
	natstest.Eventually(t, 10*time.Second, func() error { // consuming, streams in place
		if !strings.Contains(logs.String(), `"offers consuming"`) {
			return errors.New("offers not started")
		}
		_, err := js.Consumer(ctx, contracts.StreamLoan, contracts.ConsumerOffers)
		return err
	})

	f := writeFiles(t)
	r := runCtl(t, srv.ClientURL(), "put", f.cheaper)
	r.check(t, "", []string{"put as revision 2, 5 products"}, nil) // revision 1 is the seed
	natstest.Eventually(t, time.Second, func() error {
		if !strings.Contains(logs.String(), `"revision":2,"products":5,"previous_revision":1,"message":"catalog in force"`) {
			return errors.New("revision 2 not in force:\n" + logs.String())
		}
		return nil
	})
}
