package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkSearch is the whole path: an HTTP POST answered done (gateway → JetStream →
// scoring → offers → the bucket), with every JetStream write synced to disk, from many
// clients at once. Each search costs two synced writes; searches/s is what that budget buys:
//
//	go test ./cmd/standalone -run '^$' -bench Search -benchtime 2000x
func BenchmarkSearch(b *testing.B) {
	sys := startSystem(b, b.TempDir(), nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.SetParallelism(32) // 64 clients on two cores: Yandex's calls arrive concurrently
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := request(uuid.NewString(), "9330445040", "loan")
			res, err := client.Post(sys.url+path, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(got), `"status":"done"`) {
				b.Error(fmt.Sprintf("%d %s", res.StatusCode, got))
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
}
