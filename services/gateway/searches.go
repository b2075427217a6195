package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/capacity"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/pkg/testphones"
)

// searches is the gateway's work, free of HTTP: accept a search, answer a poll.
//
// A search costs one durable write in the common path. The record is read first: a retry is
// answered from it and publishes nothing. A new search's request is published (to the memory
// work stream: a search is accepted only once it has been passed on), and the POST waits for
// the record the offers service creates, done. Only when the sync budget
// runs out does the gateway write the record itself, pending, so that its 200 is backed by
// a durable record; offers then finishes that record. Either way a 200 is sent only once a
// record is on disk.
type searches struct {
	store    *search.Store
	pub      *bus.Publisher
	notifier *notifier
	flights  flights
	keys     *phone.Keyring  // PHONE_HASH_KEY, and the earlier keys after a rotation
	tests    *testphones.Set // TEST_PHONES: their searches are marked as tests
	conn     *nats.Conn
	// spaces follow how full the searches bucket and the audit trail are: from
	// capacity.ShedAt of either a new search is refused, so that the searches in flight keep
	// room for their done records and their decisions (none is made that cannot be kept).
	spaces   []*capacity.Gauge
	shed     metric.Int64Counter
	budget   time.Duration
	deadline time.Duration
	now      func() time.Time
	log      zerolog.Logger
}

// submit accepts a new search, or recognises a retry, and waits up to the sync budget for
// it to be done. It returns a search that is pending or done; the error is an *Error.
func (s *searches) submit(ctx context.Context, in *loanApproval) (*contracts.Search, error) {
	now := s.now().UTC()
	current := s.keys.Current()
	hash := current.Sum(in.Phone)
	var earlier map[string]string // during a rotation: for a snapshot still under an earlier key
	for _, h := range s.keys.Old() {
		if earlier == nil {
			earlier = make(map[string]string, len(s.keys.Old()))
		}
		earlier[h.ID()] = h.Hex(in.Phone)
	}
	spelling := ""
	if in.SearchID != in.key() {
		spelling = in.SearchID // carried back to Yandex as it was sent (links, conversions)
	}
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID:      in.key(),
		Spelling:      spelling,
		PhoneHash:     hex.EncodeToString(hash[:]),
		PhoneKey:      current.ID(),
		EarlierHashes: earlier,
		PhoneMasked:   in.Phone.Masked(),
		ProductType:   in.ProductType,
		Amount:        in.Amount,
		Term:          in.Term,
		Props:         in.Props,
		RequestedAt:   now,
		Deadline:      now.Add(s.deadline),
		Test:          s.tests.Lookup(hash) != nil,
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
	conflict := &Error{Code: EConflict, SearchID: in.SearchID, Message: "search_id уже использован для другого запроса"}
	// A different request for an id this gateway is still working on is a conflict at once;
	// the same one joins the first.
	ctx, endTask := telemetry.SearchTask(ctx, telemetry.TaskPOST, req.SearchID)
	defer endTask()
	release, ok := s.flights.claim(*req)
	if !ok {
		return nil, conflict
	}
	defer release()
	w, stop := s.notifier.wait(req.SearchID)
	defer stop()

	// The retry rule (spec §5), before anything is published: a search the bucket holds is
	// answered from its record whenever the retry comes, and starts no new work; only a
	// search it does not hold is published. One read from the bucket's leader per POST.
	region := telemetry.Region(ctx, telemetry.RegionRetryRead)
	stored, _, err := s.store.Answer(ctx, req.SearchID)
	region.End()
	switch {
	case errors.Is(err, search.ErrNotFound):
		// A new search, or one a POST is still working on (this gateway's or another's): the
		// publish's de-duplication makes the two one.
		if full := capacity.FirstFull(s.spaces); full != nil {
			return nil, s.storeFull(ctx, full.Stream, full.Used())
		}
		region := telemetry.Region(ctx, telemetry.RegionPublish)
		_, err := s.pub.Publish(ctx, contracts.SubjectRequested, req.SearchID, contracts.RequestMsgID(*req, 0), req)
		region.End()
		if err != nil {
			return nil, unavailable(err) // accepted only once passed on: a 503 promises nothing
		}
	case err != nil:
		return nil, unavailable(err)
	case !s.sameAs(stored.Request, *req, in.Phone):
		return nil, conflict
	case stored.DoneAt != nil:
		return stored, nil
	}
	// Wait within the budget for the record to be done. A pending record already stored
	// answers when the budget runs out; otherwise the gateway writes one.
	if s.budget > 0 {
		region := telemetry.Region(ctx, telemetry.RegionWait)
		defer region.End()
		timer := time.NewTimer(s.budget)
		defer timer.Stop()
	wait:
		for {
			select {
			case <-w.wake:
				cur := w.next()
				if !s.sameAs(cur.Request, *req, in.Phone) {
					return nil, conflict
				}
				if cur.DoneAt != nil {
					return cur, nil
				}
				stored = cur
			case <-timer.C:
				break wait
			case <-ctx.Done():
				// The caller is gone: nobody will read a 200, and the search finishes
				// anyway, so there is nothing to write.
				return nil, unavailable(ctx.Err())
			}
		}
	}
	if stored != nil {
		// A record stored pending answers pending, but only as it stands now: the watch that
		// would have woken this POST may be replaying or stalled while the search finished,
		// or an operator may have deleted the record. One more read of a search that is
		// still pending (a retry's, or a concurrent POST's).
		cur, _, err := s.store.Answer(ctx, req.SearchID)
		switch {
		case errors.Is(err, search.ErrNotFound):
			// Gone: written again below, so that the 200 is backed by a record.
		case err != nil:
			return nil, unavailable(err)
		case !s.sameAs(cur.Request, *req, in.Phone):
			return nil, conflict
		default:
			return cur, nil
		}
	}
	return s.recordPending(context.WithoutCancel(ctx), req, in.Phone, conflict)
}

// recordPending writes the pending record that backs a 200 pending, or answers from the
// record that got there first (the offers service's done one, or a concurrent POST's).
func (s *searches) recordPending(ctx context.Context, req *contracts.LoanRequested, n phone.Number, conflict error) (*contracts.Search, error) {
	rec := contracts.NewSearch(*req, telemetry.Traceparent(ctx))
	for range 3 {
		_, err := s.store.CreatePending(ctx, rec)
		if err == nil {
			return rec, nil
		}
		if capacity.IsFull(err) { // filled faster than the gauge saw: refused all the same
			return nil, s.storeFull(ctx, "KV_"+contracts.BucketSearches, 1)
		}
		if !errors.Is(err, search.ErrExists) {
			return nil, unavailable(err)
		}
		cur, _, err := s.store.Settled(ctx, req.SearchID)
		switch {
		case errors.Is(err, search.ErrNotFound):
			continue // taken, then gone (an operator's delete): take it again
		case err != nil:
			return nil, unavailable(err)
		case !s.sameAs(cur.Request, *req, n):
			return nil, conflict
		}
		return cur, nil
	}
	return nil, unavailable(errors.New("search record neither creatable nor readable"))
}

// sameAs is the retry rule's comparison (contracts.LoanRequested.SameAs) of a stored request
// with a new one, under the key the stored one's phone was hashed with: after a rotation, a
// retry of a search stored under the earlier key is the same search. A stored request that
// names no key was made before keys were named, under the current key or an earlier one.
// A key no longer held compares unequal: its searches are past their retention.
func (s *searches) sameAs(stored, req contracts.LoanRequested, n phone.Number) bool {
	if stored.PhoneKey == req.PhoneKey {
		return stored.SameAs(req)
	}
	if stored.PhoneKey != "" {
		h := s.keys.ByID(stored.PhoneKey)
		if h == nil {
			return false
		}
		req.PhoneHash = h.Hex(n)
		return stored.SameAs(req)
	}
	if stored.SameAs(req) {
		return true
	}
	for _, h := range s.keys.Old() {
		if req.PhoneHash = h.Hex(n); stored.SameAs(req) {
			return true
		}
	}
	return false
}

// poll answers a GET from the bucket alone.
func (s *searches) poll(ctx context.Context, searchID string) (*contracts.Search, error) {
	if !s.connected() {
		return nil, unavailable(errors.New("not connected to NATS"))
	}
	key := normaliseID(searchID)
	cur, _, err := s.store.Answer(ctx, key)
	if errors.Is(err, search.ErrNotFound) {
		return nil, &Error{Code: ENotFound, SearchID: searchID, Message: "Поиск с таким search_id не найден"}
	}
	if err != nil {
		return nil, unavailable(err)
	}
	// A poll is its own short trace, linked to the search it asks about.
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("search_id", key))
	if sc := trace.SpanContextFromContext(telemetry.FromTraceparent(ctx, cur.Trace)); sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc})
	}
	return cur, nil
}

// connected is false while the client is reconnecting: answering 503 at once beats
// buffering the write and timing out.
func (s *searches) connected() bool { return s.conn.Status() == nats.CONNECTED }

// unavailable reports a store failure as 503: nothing was accepted, try again.
// storeFull is the 503 of a search refused because stream is nearly full: nothing was
// accepted; the StoreFilling alert has fired before it comes to this.
func (s *searches) storeFull(ctx context.Context, stream string, used float64) error {
	s.shed.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "store_full"), attribute.String("stream", stream)))
	return errors.Join(&Error{Code: EUnavailable, Message: "Сервис временно недоступен; повторите запрос", RetryAfter: storeFullRetry},
		fmt.Errorf("%s is %.0f%% full: new searches are refused from %.0f%%", stream, 100*used, 100*capacity.ShedAt))
}

// storeFullRetry is the Retry-After of storeFull: room comes back as searches age out of
// the bucket or an operator raises a bound, in minutes rather than seconds.
const storeFullRetry = time.Minute

func unavailable(err error) error {
	return errors.Join(&Error{Code: EUnavailable, Message: "Сервис временно недоступен; повторите запрос"}, err)
}

// flights are the searches this gateway is working on, by id: a second POST of the same
// request joins the first, a different one is a conflict before anything is published.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	req contracts.LoanRequested
	n   int
}

func (f *flights) claim(req contracts.LoanRequested) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	cur, found := f.m[req.SearchID]
	if found && !cur.req.SameAs(req) {
		return nil, false
	}
	if !found {
		cur = &flight{req: req}
		f.m[req.SearchID] = cur
	}
	cur.n++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if cur.n--; cur.n == 0 {
			delete(f.m, req.SearchID)
		}
	}, true
}
