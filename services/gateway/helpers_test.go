package gateway

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// pipeline plays scoring and offers: it takes each request off the stream and, after
// delay, finishes its search the way the offers service does (search.Store.Finish), with
// one offer, or none once reject is called.
type pipeline struct {
	rejecting atomic.Bool
	last      atomic.Pointer[contracts.LoanRequested] // the last request taken
}

func (p *pipeline) reject() { p.rejecting.Store(true) }

func startPipeline(t *testing.T, js jetstream.JetStream, store *search.Store, delay time.Duration) *pipeline {
	t.Helper()
	p := &pipeline{}
	c := &bus.Consumer[contracts.LoanRequested]{
		Name: contracts.ConsumerScoring, Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Log: zerolog.Nop(),
		Handle: func(ctx context.Context, req *contracts.LoanRequested) error {
			p.last.Store(req)
			time.Sleep(delay)
			var offers []byte
			if !p.rejecting.Load() {
				var err error
				if offers, err = contracts.EncodeOffers([]contracts.Offer{testOffer(req.SearchID)}); err != nil {
					return err
				}
			}
			_, err := store.Finish(ctx, *req, telemetry.Traceparent(ctx), offers, nil, nil, nil, time.Now())
			if err != nil && !strings.Contains(err.Error(), contracts.ErrAlreadyDone.Error()) {
				return err
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx, js)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p
}

// bucketWrites is how many records the searches bucket has had written: its stream's last
// sequence, every write a message.
func (h *harness) bucketWrites() uint64 {
	h.t.Helper()
	s, err := h.js.Stream(context.Background(), "KV_"+contracts.BucketSearches)
	if err != nil {
		h.t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// testRequest is a valid accepted request, as the gateway would publish it.
func testRequest(t testing.TB, deadline time.Duration) contracts.LoanRequested {
	t.Helper()
	amount := money.Roubles(1000)
	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7933***5040",
		ProductType: contracts.ProductLoan, Amount: &amount, RequestedAt: now, Deadline: now.Add(deadline),
	})
	if err != nil {
		t.Fatal(err)
	}
	return *req
}

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
		ProposalLink: contracts.ProposalLink{Link: "https://bank.example/apply?search_id=" + id + "&offer=cash"},
	}
}

func mustPrefixes(t *testing.T, s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}
