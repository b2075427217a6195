// Package logtest holds a log sink for tests: services write their log lines into a Buffer
// from their own goroutines while the test reads what has been written so far.
package logtest

import (
	"strings"
	"sync"
)

// Buffer is an io.Writer safe for concurrent writers and readers. Its zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
