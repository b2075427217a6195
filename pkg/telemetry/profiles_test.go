package telemetry

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/demobank/yacredits/pkg/config"
)

// Profiles are served on loopback alone: an address beyond it is refused at start.
func TestProfileAddrIsLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"": true, "127.0.0.1:6060": true, "localhost:6060": true, "[::1]:6060": true,
		"0.0.0.0:6060": false, ":6060": false, "10.0.0.7:6060": false} {
		r := config.NewReader(func(k string) string {
			if k == "PPROF_ADDR" {
				return addr
			}
			return ""
		})
		got := ReadProfileAddr(r)
		if err := r.Err(); (err == nil) != ok || (ok && got != addr) {
			t.Errorf("PPROF_ADDR=%q: %q, %v", addr, got, err)
		}
	}
	if _, err := ServeProfiles("0.0.0.0:0"); err == nil {
		t.Error("profiles served beyond loopback")
	}
}

// With an address the profiles answer, block and mutex ones included; closed, they do not.
func TestProfilesServeAndStop(t *testing.T) {
	p, err := ServeProfiles("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + p.Addr() + "/debug/pprof/"
	for path, want := range map[string]string{"goroutine?debug=1": "goroutine profile:", "block?debug=1": "--- contention:",
		"mutex?debug=1": "--- mutex:", "heap?debug=1": "heap profile:"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s = %d %.80s", path, res.StatusCode, body)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := http.Get(base); err == nil {
		res.Body.Close()
		t.Error("profiles still served after Close")
	}
	if p, err := ServeProfiles(""); p != nil || err != nil || p.Close() != nil {
		t.Errorf("no address: %v, %v", p, err)
	}
}
