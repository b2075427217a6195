package gateway

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// requestedCount counts the loan.v1.requested messages of one search on the stream.
func requestedCount(t *testing.T, js jetstream.JetStream, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contracts.StreamLoan)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(contracts.SubjectRequested))
	if err != nil || info.State.Msgs == 0 {
		return 0
	}
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if m.Subject == contracts.SubjectRequested && m.Header.Get("Search-Id") == id {
			n++
		}
	}
	return n
}

func testOffer(id string) contracts.Offer {
	pay := money.Roubles(16607)
	return contracts.Offer{
		ProductType: contracts.ProductLoan, Decision: contracts.PreApproved,
		Amount: contracts.AmountRange{Min: money.Roubles(30000), Max: money.Roubles(1000000)},
		Term:   &contracts.TermRange{Min: 12, Max: 60},
		Rate:   contracts.RateRange{Min: money.Percent(20), Max: money.Percent(25)}, TotalCost: contracts.RateRange{Min: money.Percent(20), Max: money.Percent(25)},
		Payment:      contracts.Payment{Min: &pay, Max: &pay},
		ProposalLink: contracts.ProposalLink{Link: "https://bank.example/apply?search_id=" + id},
	}
}

func mustPrefixes(t *testing.T, s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// syncWriter lets a test read logs that goroutines are still writing.
type syncWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
