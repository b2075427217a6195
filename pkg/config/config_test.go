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
