package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusOK)
		case "/slow":
			time.Sleep(200 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name, path string
		wantErr    bool
	}{
		{"ready", "/readyz", false},
		{"unavailable", "/down", true},
		{"too slow", "/slow", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(context.Background(), srv.URL+tt.path, 100*time.Millisecond)
			if (err != nil) != tt.wantErr {
				t.Fatalf("check(%s) = %v, want error %v", tt.path, err, tt.wantErr)
			}
		})
	}
	if err := run(nil); err == nil {
		t.Error("run without a URL succeeded")
	}
}
