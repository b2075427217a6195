package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/kvstore"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// searches is the gateway's work, free of HTTP: accept a search, answer a poll.
type searches struct {
	store    *kvstore.Store
	pub      *bus.Publisher
	tracker  *tracker
	hasher   *phone.Hasher
	conn     *nats.Conn
	budget   time.Duration
	deadline time.Duration
	now      func() time.Time
	log      zerolog.Logger
}

// submit records a new search, or recognises a retry, and waits up to the sync budget for
// it to be done. It returns a search that is pending or done; the error is an *Error.
func (s *searches) submit(ctx context.Context, in *loanApproval) (*contracts.Search, error) {
	now := s.now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID:    in.key(),
		PhoneHash:   s.hasher.Hex(in.Phone),
		PhoneMasked: in.Phone.Masked(),
		ProductType: in.ProductType,
		Amount:      in.Amount,
		Term:        in.Term,
		RequestedAt: now,
		Deadline:    now.Add(s.deadline),
	})
	if err != nil {
		return nil, err // validation let through what the contract refuses: a bug
	}
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.String("search_id", req.SearchID),
		attribute.String("search.product_type", string(req.ProductType)),
		attribute.String("search.phone_masked", req.PhoneMasked))
	if !s.connected() {
		return nil, unavailable(errors.New("not connected to NATS"))
	}
	done, stop := s.tracker.wait(req.SearchID)
	defer stop()

	storeCtx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	search := contracts.NewSearch(*req, in.Props)
	search.Trace = telemetry.InjectMap(ctx)
	_, err = s.store.Create(storeCtx, search)
	switch {
	case err == nil:
		// Stored durably: from here the search will finish even if this publish fails,
		// because the sweeper sends stalled searches again.
		s.publish(ctx, req)
	case errors.Is(err, kvstore.ErrExists):
		cur, _, err := s.store.Get(storeCtx, req.SearchID)
		if err != nil {
			return nil, unavailable(err)
		}
		if !cur.Request.SameAs(*req) {
			return nil, &Error{Code: EConflict, SearchID: in.SearchID,
				Message: "search_id уже использован для другого запроса"}
		}
		if cur.Status == contracts.Done {
			return cur, nil
		}
		if cur.Overdue(now) {
			return s.finishOverdue(ctx, req.SearchID, now)
		}
		s.publish(ctx, &cur.Request) // a retry re-sends; de-duplication keeps it single
	default:
		return nil, unavailable(err)
	}
	return s.await(ctx, req.SearchID, done)
}

func (s *searches) publish(ctx context.Context, req *contracts.LoanRequested) {
	if err := publishRequested(ctx, s.pub, req); err != nil {
		s.log.Warn().Err(err).Str("search_id", req.SearchID).Msg("request not published; the sweeper will re-send it")
	}
}

// await waits for done within the budget and otherwise reports the search pending.
func (s *searches) await(ctx context.Context, key string, done <-chan *contracts.Search) (*contracts.Search, error) {
	if s.budget > 0 {
		timer := time.NewTimer(s.budget)
		defer timer.Stop()
		select {
		case d := <-done:
			return d, nil
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	return &contracts.Search{Status: contracts.Pending}, nil
}

// poll answers a GET from the bucket alone.
func (s *searches) poll(ctx context.Context, searchID string) (*contracts.Search, error) {
	if !s.connected() {
		return nil, unavailable(errors.New("not connected to NATS"))
	}
	key := normaliseID(searchID)
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	cur, _, err := s.store.Get(ctx, key)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, &Error{Code: ENotFound, SearchID: searchID, Message: "Поиск с таким search_id не найден"}
	}
	if err != nil {
		return nil, unavailable(err)
	}
	// A poll is its own short trace, linked to the search it asks about.
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("search_id", key))
	if sc := trace.SpanContextFromContext(telemetry.ExtractMap(ctx, cur.Trace)); sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc})
	}
	if now := s.now(); cur.Overdue(now) {
		return s.finishOverdue(ctx, key, now)
	}
	return cur, nil
}

// finishOverdue makes a search past its deadline done at the moment it is looked at,
// rather than when the sweeper next passes: no caller ever sees it pending too long.
func (s *searches) finishOverdue(ctx context.Context, key string, now time.Time) (*contracts.Search, error) {
	cur, err := finishOverdue(ctx, s.store, key, now, s.log)
	if err != nil {
		return nil, unavailable(err)
	}
	return cur, nil
}

// storeTimeout bounds one request's work on the bucket, so that a broker that does not
// answer turns into a 503 the caller can retry rather than a hung request.
const storeTimeout = 3 * time.Second

// connected is false while the client is reconnecting: answering 503 at once beats
// buffering the write and timing out.
func (s *searches) connected() bool { return s.conn.Status() == nats.CONNECTED }

// unavailable reports a store failure as 503: nothing was accepted, try again.
func unavailable(err error) error {
	return errors.Join(&Error{Code: EUnavailable, Message: "Сервис временно недоступен; повторите запрос"}, err)
}
