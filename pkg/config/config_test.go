package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestReaderDefaultsAndValues(t *testing.T) {
	r := NewReader(env(map[string]string{
		"A": " 42 ", "D": "1.5s", "B": "yes", "L": "a, b,,c", "N": "10.0.0.1/8",
	}))
	if got := r.Int("A", 0, 0, 100); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Int("MISSING", 7, 0, 100); got != 7 {
		t.Errorf("Int default = %d", got)
	}
	if got := r.Duration("D", 0, 0, time.Minute); got != 1500*time.Millisecond {
		t.Errorf("Duration = %s", got)
	}
	if !r.Bool("B", false) {
		t.Error("Bool = false")
	}
	if got := strings.Join(r.List("L"), "|"); got != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	if p := r.Prefixes("N"); len(p) != 1 || p[0].String() != "10.0.0.0/8" {
		t.Errorf("Prefixes = %v", p)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestReaderReportsEveryBadVariable(t *testing.T) {
	r := NewReader(env(map[string]string{
		"A": "many", "D": "soon", "B": "perhaps", "N": "10.0.0.1", "O": "z", "ADDR": "nohost",
	}))
	r.Int("A", 1, 0, 10)
	r.Duration("D", time.Second, 0, time.Hour)
	r.Bool("B", false)
	r.Prefixes("N")
	r.OneOf("O", "x", "x", "y")
	r.Addr("ADDR", ":1")
	err := r.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"A:", "D:", "B:", "N:", "O:", "ADDR:"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestReadNATSNeedsUserAndPasswordTogether(t *testing.T) {
	r := NewReader(env(map[string]string{"NATS_USER": "u"}))
	ReadNATS(r)
	if r.Err() == nil {
		t.Fatal("a user without a password was accepted")
	}
}

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"8GiB", 8 << 30, true},
		{" 512 MiB ", 512 << 20, true},
		{"1TiB", 1 << 40, true},
		{"4096", 4096, true},
		{"4096B", 4096, true},
		{"3KiB", 3 << 10, true},
		{"8GB", 0, false}, // decimal units are not guessed at
		{"8G", 0, false},
		{"-1GiB", 0, false},
		{"1.5GiB", 0, false},
		{"", 0, false},
		{"9999999999TiB", 0, false}, // overflows
	} {
		got, err := ParseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for n, want := range map[int64]string{8 << 30: "8GiB", 1536 << 20: "1536MiB", 1000: "1000B", 0: "0B", 3 << 10: "3KiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	r := NewReader(env(map[string]string{"S": "2GiB", "BAD": "2GB", "SMALL": "1KiB"}))
	if got := r.Bytes("S", 1, 1<<20, 1<<40); got != 2<<30 {
		t.Errorf("Bytes = %d", got)
	}
	if got := r.Bytes("MISSING", 5<<20, 1<<20, 1<<40); got != 5<<20 {
		t.Errorf("Bytes default = %d", got)
	}
	r.Bytes("BAD", 1<<20, 1<<20, 1<<40)
	r.Bytes("SMALL", 1<<20, 1<<20, 1<<40)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "BAD") || !strings.Contains(err.Error(), "SMALL") ||
		!strings.Contains(err.Error(), "from 1MiB to 1TiB") {
		t.Errorf("Err = %v", err)
	}
}
