package yandex

import (
	"context"
	"sync"
	"time"
)

// Open sends new searches at a fixed rate for d, each run to its end by Run: an open model,
// in which arrivals never wait for earlier answers, as Yandex's users do not. next makes
// the i-th request. It returns every search once all have ended, or ctx has.
func (c *Client) Open(ctx context.Context, rate float64, d time.Duration, next func(i int) Request) []*Search {
	var (
		mu  sync.Mutex
		all []*Search
		wg  sync.WaitGroup
	)
	every := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * every)
		if at.Sub(start) >= d || !sleep(ctx, time.Until(at)) {
			break
		}
		s := &Search{Request: next(i)}
		mu.Lock()
		all = append(all, s)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(ctx, s)
		}()
	}
	wg.Wait()
	return all
}

// Closed runs n clients for d, each sending its next search once its last one is done: a
// closed model, which finds the rate the system sustains.
func (c *Client) Closed(ctx context.Context, n int, d time.Duration, next func(i int) Request) []*Search {
	var (
		mu  sync.Mutex
		all []*Search
		wg  sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) && ctx.Err() == nil {
				mu.Lock()
				s := &Search{Request: next(len(all))}
				all = append(all, s)
				mu.Unlock()
				c.Run(ctx, s)
			}
		}()
	}
	wg.Wait()
	return all
}
