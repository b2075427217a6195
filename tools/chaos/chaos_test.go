//go:build unix

package main

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestShortPass is the fault suite's CI pass: every scenario once, with seconds of load,
// against binaries built from this tree. It fails when any search was lost or doubled, any
// answer was unexpected, a pre-approved client was rejected because of the fault, a
// scenario's own check failed, or a process crashed or did not shut down cleanly.
func TestShortPass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, options{short: true, seeds: []uint64{1}, dir: t.TempDir()}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
}
