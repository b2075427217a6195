package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkSearch is the whole path: an HTTP POST answered done (gateway → JetStream →
// scoring → offers → the bucket), with every JetStream write synced to disk, from many
// clients at once. Each search costs two synced writes; searches/s is what that budget buys:
//
//	go test ./cmd/standalone -run '^$' -bench Search -benchtime 2000x
func BenchmarkSearch(b *testing.B) {
	sys := startSystem(b, b.TempDir(), map[string]string{"NATS_NO_SYNC": os.Getenv("BENCH_NO_SYNC")})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.SetParallelism(32) // 64 clients on two cores: Yandex's calls arrive concurrently
	b.ResetTimer()
	cpu0, sys0 := cpuTime(), sysTime()
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
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/search")
	b.ReportMetric(float64((sysTime()-sys0).Microseconds())/float64(b.N), "sys-µs/search")
}

func sysTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Stime.Nano())
}

// cpuTime is the processor time this process (clients and the whole system) has used: per
// search, a figure the disk's moods do not move.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
