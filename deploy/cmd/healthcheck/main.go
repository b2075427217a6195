// Command healthcheck is the container health check of our distroless images, which have
// no shell, curl or wget: it GETs one URL and exits 0 on a 2xx answer, 1 otherwise.
//
// docker compose runs it as `["CMD", "/healthcheck", "http://127.0.0.1:8081/readyz"]`.
// Kubernetes does not need it: its probes are httpGet against the same endpoints.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: healthcheck URL")
	}
	return check(context.Background(), args[0], 3*time.Second)
}

// check GETs url within timeout and wants a 2xx status.
func check(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
