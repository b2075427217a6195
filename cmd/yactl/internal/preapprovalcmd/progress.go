package preapprovalcmd

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

// redrawEvery is how often a terminal's progress line is redrawn.
const redrawEvery = 200 * time.Millisecond

// progress shows an import's progress: on a terminal one line redrawn in place, elsewhere
// (a log file, a CI job) a plain line every interval, or nothing when interval is 0.
type progress struct {
	w        io.Writer
	terminal bool
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	pass  int
	start time.Time // of the pass
	last  time.Time // of the last line written
	drawn bool      // a live line is on the terminal
}

func newProgress(w io.Writer, terminal bool, interval time.Duration, now func() time.Time) *progress {
	return &progress{w: w, terminal: terminal, interval: interval, now: now}
}

// update is snapshotstore.Options.OnProgress.
func (p *progress) update(pr snapshotstore.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if pr.Pass != p.pass {
		p.pass, p.start, p.last = pr.Pass, now, now
	}
	switch {
	case p.terminal:
		if !pr.Done && now.Sub(p.last) < redrawEvery {
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "\r\x1b[K%s", p.line(pr, now))
		p.drawn = true
	case p.interval > 0:
		if pr.Done || now.Sub(p.last) < p.interval {
			return
		}
		p.last = now
		fmt.Fprintln(p.w, p.line(pr, now))
	}
}

// clear takes the live line off the terminal, before another message is written.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func (p *progress) line(pr snapshotstore.Progress, now time.Time) string {
	phase := "checking"
	if pr.Pass == 2 {
		phase = "uploading"
	}
	rows := pr.Records + pr.BadRows
	rate := float64(rows) / max(now.Sub(p.start).Seconds(), 1e-3)
	return fmt.Sprintf("%s (pass %d of 2): %s rows, %s rows/s, %s bad, %s read",
		phase, pr.Pass, thousands(rows), thousands(int(rate)), thousands(pr.BadRows), mib(pr.Bytes))
}
