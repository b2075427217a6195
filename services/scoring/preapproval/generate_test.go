package preapproval

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestGenerate(t *testing.T) {
	tests := []struct {
		name      string
		o         GenerateOptions
		wantGood  int
		wantBad   int
		wantTwice float64 // share of clients with both products, ±0.05; -1: not checked
	}{
		{"plain", GenerateOptions{Rows: 3000, Seed: 7}, 3000, 0, 0.6},
		{"bad rows", GenerateOptions{Rows: 3000, Seed: 7, BadEvery: 10}, 2700, 300, -1}, // bad rows break pairs
		{"all products", GenerateOptions{Rows: 3000, Seed: 8, AllProducts: true}, 3000, 0, 1},
		{"empty", GenerateOptions{Seed: 7}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a, b bytes.Buffer
			if err := GenerateWith(&a, tt.o); err != nil {
				t.Fatal(err)
			}
			if err := GenerateWith(&b, tt.o); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("the same options gave different files (%v)", err)
			}
			if lines := strings.Count(a.String(), "\n"); lines != tt.o.Rows+1 {
				t.Fatalf("%d lines, want %d", lines, tt.o.Rows+1)
			}
			r := NewReader(&a, testHasher(t))
			seen := make(map[key]bool)
			clients := make(map[[32]byte]int)
			var good, bad int
			for {
				rec, err := r.Next()
				if err == io.EOF {
					break
				}
				if errors.As(err, new(*RowError)) {
					bad++
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				good++
				k := key{rec.Hash, rec.Product}
				if seen[k] {
					t.Fatalf("row %d repeats a phone and product", good+bad)
				}
				seen[k] = true
				clients[rec.Hash]++
				if d := rec.ValidUntil.Sub(time.Date(2026, 7, 1, 0, 0, 0, 0, moscow)); d < 24*time.Hour || d > 120*24*time.Hour {
					t.Fatalf("valid_until %v outside the documented window", rec.ValidUntil)
				}
			}
			if good != tt.wantGood || bad != tt.wantBad {
				t.Fatalf("%d good and %d bad rows, want %d and %d", good, bad, tt.wantGood, tt.wantBad)
			}
			twice := 0
			for _, n := range clients {
				if n == 2 {
					twice++
				}
			}
			if len(clients) > 0 && tt.wantTwice >= 0 {
				if share := float64(twice) / float64(len(clients)); share < tt.wantTwice-0.05 || share > tt.wantTwice+0.05 {
					t.Errorf("%.2f of clients hold both products, want about %.2f", share, tt.wantTwice)
				}
			}
		})
	}
	var a, b bytes.Buffer
	Generate(&a, 100, 1)
	Generate(&b, 100, 2)
	if bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two seeds gave the same file")
	}
	if err := Generate(io.Discard, -1, 1); err == nil {
		t.Error("negative rows accepted")
	}
}
