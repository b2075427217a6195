package conversions

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/capacity"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/search"
)

// maxBody bounds a report or a verification request: a few hundred bytes in practice.
const maxBody = 16 << 10

// intake serves the internal address: link verification for the bank's site, and the
// conversions the bank's application system reports.
type intake struct {
	store    func() *Store        // nil until the bucket is bound
	searches func() *search.Store // nil until the searches bucket is bound
	verifier *offerlink.Verifier
	window   time.Duration // LINK_REPORTING_WINDOW
	// tokens admit the application system (reporting and reading a conversion), site the
	// bank's site (verification alone), ops the operators (listing and queueing failed
	// conversions again): sha256 of each accepted bearer token.
	tokens, site, ops [][32]byte
	metrics           *metrics
	log               zerolog.Logger
	now               func() time.Time
}

// routes lists every path of the internal address.
func (in *intake) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(in.recoverer)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such path", nil)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", nil)
	})
	// Verification answers an offer's figures: a client's credit decision, for the bank's
	// site and the application system alone.
	r.With(in.authenticate(in.tokens, in.site)).Post("/v1/links/verify", in.handleVerify)
	r.Group(func(r chi.Router) {
		r.Use(in.authenticate(in.tokens))
		r.Post("/v1/conversions", in.handleReport)
		r.Get("/v1/conversions/{search_id}/{offer}", in.handleGet)
	})
	// The operators' (yactl conversions): what is recorded, and failed ones queued again,
	// through the service, which checks each change, never by writes to the bucket.
	r.Group(func(r chi.Router) {
		r.Use(in.authenticate(in.ops))
		r.Get("/v1/conversions", in.handleList)
		r.Post("/v1/conversions/retry", in.handleRetry)
	})
	return r
}

// handleList answers every conversion recorded, or those in the state ?state= names, as a
// JSON array written as the bucket is read, one conversion at a time: a year of them need
// not fit in the service's memory.
func (in *intake) handleList(w http.ResponseWriter, r *http.Request) {
	state := contracts.ConversionState(r.URL.Query().Get("state"))
	switch state {
	case "", contracts.ConversionQueued, contracts.ConversionDelivered, contracts.ConversionFailed, contracts.ConversionRefused:
	default:
		writeError(w, http.StatusBadRequest, "unknown state", []Problem{{Field: "state", Message: "one of queued, delivered, failed, refused"}})
		return
	}
	store := in.store()
	if store == nil {
		in.unavailable(w, errors.New("the conversions bucket is not bound yet"))
		return
	}
	// The answer starts at once, and each conversion written moves the write deadline on
	// (the server's is 30 s for a whole answer): a long list is sent to its end, and a
	// stalled one is cut off.
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "[")
	_ = rc.Flush()
	sep := ""
	err := store.Each(r.Context(), func(c *contracts.Conversion) error {
		if state != "" && c.State != state {
			return nil
		}
		b, err := jsonv2.Marshal(c)
		if err != nil {
			return err
		}
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err = io.WriteString(w, sep+string(b))
		sep = ","
		return err
	})
	if err != nil {
		// The answer has begun: cut it short, so that the client sees a broken array rather
		// than a complete one.
		if r.Context().Err() == nil {
			in.log.Error().Err(err).Msg("listing conversions broke off")
		}
		panic(http.ErrAbortHandler)
	}
	_, _ = io.WriteString(w, "]\n")
}

// RetryRequest names the failed conversions to queue again: by id, or every failed one.
type RetryRequest struct {
	IDs    []string `json:"ids,omitempty"`
	Failed bool     `json:"failed,omitempty"`
}

// RetryAnswer is what was queued again, and why the others were not.
type RetryAnswer struct {
	Queued   []string  `json:"queued"`
	Problems []Problem `json:"problems,omitempty"`
}

// handleRetry queues failed conversions again: only a conversion Yandex refused moves back
// to queued (Store.Requeue), under the same id.
func (in *intake) handleRetry(w http.ResponseWriter, r *http.Request) {
	var req RetryRequest
	if problems, status := decode(w, r, &req); problems != nil {
		writeError(w, status, "the request cannot be read", problems)
		return
	}
	if (len(req.IDs) > 0) == req.Failed {
		writeError(w, http.StatusBadRequest, "name the conversions, or ask for every failed one", []Problem{{Field: "ids", Message: "give ids, or failed: true, not both"}})
		return
	}
	store := in.store()
	if store == nil {
		in.unavailable(w, errors.New("the conversions bucket is not bound yet"))
		return
	}
	ids := req.IDs
	if req.Failed {
		if err := store.Each(r.Context(), func(c *contracts.Conversion) error {
			if c.State == contracts.ConversionFailed {
				ids = append(ids, c.ID)
			}
			return nil
		}); err != nil {
			in.unavailable(w, err)
			return
		}
	}
	ans := RetryAnswer{Queued: []string{}}
	for i, id := range ids {
		sid, offer, _ := strings.Cut(id, ".")
		key, err := contracts.ConversionKey(sid, offer)
		if err != nil {
			ans.Problems = append(ans.Problems, Problem{Field: fmt.Sprintf("ids[%d]", i), Message: "not a conversion's id (search_id.offer): " + err.Error()})
			continue
		}
		id = key
		_, err = store.Requeue(r.Context(), id)
		switch {
		case err == nil:
			ans.Queued = append(ans.Queued, id)
			in.log.Info().Str("conversion", id).Msg("queued again by an operator")
		case errors.Is(err, ErrNotFound):
			ans.Problems = append(ans.Problems, Problem{Field: fmt.Sprintf("ids[%d]", i), Message: "no such conversion"})
		case errors.Is(err, errNotFailed):
			ans.Problems = append(ans.Problems, Problem{Field: fmt.Sprintf("ids[%d]", i), Message: err.Error()})
		default:
			in.unavailable(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

type verifyRequest struct {
	Link  string `json:"link,omitempty"`
	Token string `json:"token,omitempty"`
}

type verifyAnswer struct {
	Valid   bool              `json:"valid"`
	Reason  string            `json:"reason,omitempty"`
	Message string            `json:"message,omitempty"`
	Claims  *offerlink.Claims `json:"claims,omitempty"`
}

// handleVerify opens a link (or its bare reference) for the bank's site: 200 with the
// offer's claims while the link is valid; 422 with the reason it is refused, and for an
// expired link its claims too (the back office may still need them).
func (in *intake) handleVerify(w http.ResponseWriter, r *http.Request) {
	var req verifyRequest
	if problems, status := decode(w, r, &req); problems != nil {
		writeError(w, status, "the request was not understood", problems)
		return
	}
	if (req.Link == "") == (req.Token == "") {
		writeError(w, http.StatusBadRequest, "the request was not understood",
			[]Problem{{Field: "link", Message: "give the link or its ref as token, one of them"}})
		return
	}
	c, err := in.verifier.Verify(req.Link + req.Token)
	switch {
	case errors.Is(err, offerlink.ErrExpired):
		writeJSON(w, http.StatusUnprocessableEntity, verifyAnswer{Reason: offerlink.Reason(err), Message: err.Error(), Claims: &c})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, verifyAnswer{Reason: offerlink.Reason(err), Message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, verifyAnswer{Valid: true, Claims: &c})
	}
}

// reportAnswer is what the intake answers a recorded conversion with.
type reportAnswer struct {
	Conversion *contracts.Conversion `json:"conversion"`
	// Repeat is true when the same report was recorded before: nothing was changed.
	Repeat bool `json:"repeat"`
}

// handleReport checks a reported contract and records it: 201 the first time, 200 with
// the same record for a repeat, 409 for a different report of the same search and offer,
// 400 listing every problem a resend can mend. A report no resend can mend (its link's key
// is gone, the link is not ours, the contract came too late) is recorded as refused and
// answered 422 with its id, never dropped. Only a recorded report is acknowledged.
func (in *intake) handleReport(w http.ResponseWriter, r *http.Request) {
	var rep Report
	if problems, status := decode(w, r, &rep); problems != nil {
		writeError(w, status, "the conversion was not recorded", problems)
		return
	}
	offered, problems, err := in.offer(r.Context(), rep)
	if err != nil {
		in.unavailable(w, err)
		return
	}
	var known *offerlink.Claims
	if problems == nil {
		known = &offered
	}
	conv, more := Check(rep, known, in.window, in.now())
	if problems = append(problems, more...); problems == nil {
		in.record(w, r.Context(), &conv)
		return
	}
	for _, p := range problems {
		if p.Reason != "" {
			in.refuse(w, r.Context(), rep, known, p, problems)
			return
		}
	}
	writeError(w, http.StatusBadRequest, "the conversion was not recorded", problems)
}

// refuse records a report that no resend can mend, with the first such problem's reason;
// offered is what its link said, when it could be read (a contract too late).
func (in *intake) refuse(w http.ResponseWriter, ctx context.Context, rep Report, offered *offerlink.Claims, why Problem, problems []Problem) {
	store := in.store()
	if store == nil {
		in.unavailable(w, errors.New("the conversions bucket is not bound yet"))
		return
	}
	ref := rep.Token
	if rep.Link != "" {
		ref = offerlink.RefOf(rep.Link)
	}
	if offered != nil {
		rep.SearchID, rep.Offer = offered.SearchID, offered.Offer
	}
	// Keyed by the whole report: one report sent again is one record, two reports are two.
	whole, _ := jsonv2.Marshal(rep, jsonv2.Deterministic(true))
	c := &contracts.Conversion{ID: contracts.RefusedKey(string(whole)), SearchID: rep.SearchID, Offer: rep.Offer,
		ContractDate: rep.ContractDate, Term: rep.Term, ReportedAt: in.now().UTC(), State: contracts.ConversionRefused,
		Reason: why.Reason, LastError: why.Message, Ref: ref}
	if rep.Amount != nil {
		c.Amount = *rep.Amount
	}
	if rep.AdditionalServices != nil {
		c.AdditionalServices = *rep.AdditionalServices
	}
	stored, created, err := store.Record(ctx, c)
	if err != nil { // a conflict cannot be: the key is the report's own hash
		in.unavailable(w, err)
		return
	}
	if created {
		in.metrics.refused(ctx, why.Reason)
		in.log.Error().Str("conversion", stored.ID).Str("reason", why.Reason).
			Msg("conversion refused: its offer cannot be established; recorded as refused, not sent to Yandex")
	}
	writeJSON(w, http.StatusUnprocessableEntity, struct {
		Message  string    `json:"message"`
		Refused  string    `json:"refused"`
		Reason   string    `json:"reason"`
		Problems []Problem `json:"problems"`
	}{"the offer this contract followed cannot be established: the report is recorded as refused, and will not reach Yandex",
		stored.ID, why.Reason, problems})
}

func (in *intake) record(w http.ResponseWriter, ctx context.Context, conv *contracts.Conversion) {
	store := in.store()
	if store == nil {
		in.unavailable(w, errors.New("the conversions bucket is not bound yet"))
		return
	}
	stored, created, err := store.Record(ctx, conv)
	switch {
	case errors.Is(err, ErrConflict):
		writeJSON(w, http.StatusConflict, struct {
			Message    string                `json:"message"`
			Conversion *contracts.Conversion `json:"conversion"`
		}{"a different conversion is already recorded for this search and offer", stored})
	case err != nil:
		in.unavailable(w, err)
	case created:
		in.metrics.recorded.Add(ctx, 1)
		in.log.Info().Str("conversion", stored.ID).Str("contract_date", stored.ContractDate).Msg("conversion recorded")
		writeJSON(w, http.StatusCreated, reportAnswer{Conversion: stored})
	default:
		writeJSON(w, http.StatusOK, reportAnswer{Conversion: stored, Repeat: true})
	}
}

// offer finds what was offered: from the link (given whole, or its reference as token), or
// from the search record while it is retained. problems name what is wrong with the
// report's offer; err is a failure of ours.
func (in *intake) offer(ctx context.Context, rep Report) (offerlink.Claims, []Problem, error) {
	if rep.Link != "" && rep.Token != "" {
		return offerlink.Claims{}, []Problem{{Field: "link", Message: "give the link or its ref as token, not both"}}, nil
	}
	if named := rep.Link + rep.Token; named != "" {
		// The check the site's verification makes, less the expiry: a contract may be
		// signed weeks after the click (Check's reporting window).
		c, err := in.verifier.Check(named)
		if err != nil {
			field := "link"
			if rep.Token != "" {
				field = "token"
			}
			return c, []Problem{{Field: field, Reason: offerlink.Reason(err), Message: err.Error()}}, nil
		}
		var problems []Problem
		if rep.SearchID != "" && !strings.EqualFold(rep.SearchID, c.SearchID) {
			problems = append(problems, Problem{Field: "search_id", Message: fmt.Sprintf("%q, but the link is of %q", rep.SearchID, c.SearchID)})
		}
		if rep.Offer != "" && rep.Offer != c.Offer {
			problems = append(problems, Problem{Field: "offer", Message: fmt.Sprintf("%q, but the link is of %q", rep.Offer, c.Offer)})
		}
		return c, problems, nil
	}
	var problems []Problem
	if rep.SearchID == "" {
		problems = append(problems, Problem{Field: "search_id", Message: "required, with offer, when there is no link"})
	}
	if rep.Offer == "" {
		problems = append(problems, Problem{Field: "offer", Message: "required, with search_id, when there is no link"})
	}
	if problems != nil {
		return offerlink.Claims{}, problems, nil
	}
	return in.offerOfSearch(ctx, rep.SearchID, rep.Offer)
}

// offerOfSearch reads the offer from the search's record: its links' reference, which we
// sealed, says what was offered.
func (in *intake) offerOfSearch(ctx context.Context, searchID, offer string) (offerlink.Claims, []Problem, error) {
	if _, err := contracts.ConversionKey(searchID, offer); err != nil {
		return offerlink.Claims{}, []Problem{{Field: keyField(offer), Message: err.Error()}}, nil
	}
	searches := in.searches()
	if searches == nil {
		return offerlink.Claims{}, nil, errors.New("the searches bucket is not bound yet")
	}
	s, _, err := searches.Get(ctx, strings.ToLower(searchID))
	if errors.Is(err, search.ErrNotFound) {
		return offerlink.Claims{}, []Problem{{Field: "search_id", Message: "no such search is retained (searches are kept SEARCH_RETENTION); report it with the link"}}, nil
	}
	if err != nil {
		return offerlink.Claims{}, nil, err
	}
	offers, err := contracts.DecodeOffers(s.Data())
	if err != nil {
		return offerlink.Claims{}, nil, err
	}
	for _, o := range offers {
		link := o.ProposalLink.Link
		if link == "" {
			link = o.ProposalLink.Deep
		}
		if c, err := in.verifier.Check(link); err == nil && c.Offer == offer {
			return c, nil, nil
		}
	}
	return offerlink.Claims{}, []Problem{{Field: "offer", Message: fmt.Sprintf("search %s made no offer %q that we can verify", searchID, offer)}}, nil
}

func (in *intake) handleGet(w http.ResponseWriter, r *http.Request) {
	key, err := contracts.ConversionKey(chi.URLParam(r, "search_id"), chi.URLParam(r, "offer"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "not a conversion's id", []Problem{{Field: keyField(chi.URLParam(r, "offer")), Message: err.Error()}})
		return
	}
	store := in.store()
	if store == nil {
		in.unavailable(w, errors.New("the conversions bucket is not bound yet"))
		return
	}
	c, _, err := store.Get(r.Context(), key)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no conversion is recorded for this search and offer", nil)
	case err != nil:
		in.unavailable(w, err)
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// authenticate admits a caller by its bearer token, one of those of any of the lists. With
// no tokens configured at all (allowed on loopback only) everything is admitted.
func (in *intake) authenticate(lists ...[][32]byte) func(http.Handler) http.Handler {
	var accepted [][32]byte
	for _, l := range lists {
		accepted = append(accepted, l...)
	}
	open := len(in.tokens) == 0 // the application system's tokens are required beyond loopback
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !open {
				scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
				ok = ok && strings.EqualFold(scheme, "Bearer")
				sum := sha256.Sum256([]byte(token))
				match := 0
				for _, t := range accepted {
					match |= subtle.ConstantTimeCompare(sum[:], t[:])
				}
				if !ok || match != 1 {
					w.Header().Set("WWW-Authenticate", `Bearer realm="conversions"`)
					writeError(w, http.StatusUnauthorized, "a valid bearer token is required", nil)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func (in *intake) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				in.log.Error().Interface("panic", v).Str("path", r.URL.Path).Msg("intake handler panicked")
				writeError(w, http.StatusInternalServerError, "internal error", nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// unavailable answers a failure of ours (JetStream unreachable, most likely): logged once
// here, answered 503 so that the bank's system tries again; the cause is not sent.
func (in *intake) unavailable(w http.ResponseWriter, err error) {
	in.log.Error().Err(err).Msg("conversion intake failed")
	retry := "5"
	if capacity.IsFull(err) {
		// The conversions bucket at its bound (CONVERSIONS_MAX_BYTES) or the server's store
		// full: room comes back when an operator raises it, in minutes (the StoreFull alert).
		retry = "60"
	}
	w.Header().Set("Retry-After", retry)
	writeError(w, http.StatusServiceUnavailable, "the conversion could not be recorded now; send it again", nil)
}

// decode reads a JSON object strictly (unknown or repeated members, trailing data and
// invalid UTF-8 are refused), or says what is wrong with the body and with which status.
func decode(w http.ResponseWriter, r *http.Request, into any) ([]Problem, int) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return []Problem{{Field: "body", Message: fmt.Sprintf("over %d bytes", maxBody)}}, http.StatusRequestEntityTooLarge
	case err != nil:
		return []Problem{{Field: "body", Message: "unreadable: the request was cut short"}}, http.StatusBadRequest
	case len(strings.TrimSpace(string(body))) == 0:
		return []Problem{{Field: "body", Message: "empty; a JSON object is expected"}}, http.StatusBadRequest
	}
	if err := jsonv2.Unmarshal(body, into, jsonv2.RejectUnknownMembers(true)); err != nil {
		return []Problem{decodeProblem(err)}, http.StatusBadRequest
	}
	return nil, 0
}

// decodeProblem says what is wrong with a body in our words: the decoder's own message
// names Go types.
func decodeProblem(err error) Problem {
	var sem *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &sem) && errors.Is(err, jsonv2.ErrUnknownName):
		return Problem{Field: strings.TrimPrefix(string(sem.JSONPointer), "/"), Message: "not a field of this request"}
	case errors.As(err, &sem) && sem.JSONPointer != "":
		return Problem{Field: strings.TrimPrefix(string(sem.JSONPointer), "/"), Message: "the wrong type (" + sem.JSONKind.String() + ")"}
	case errors.As(err, &sem):
		return Problem{Field: "body", Message: "not a JSON object"}
	case errors.As(err, &syn) && errors.Is(err, jsontext.ErrDuplicateName):
		return Problem{Field: strings.TrimPrefix(string(syn.JSONPointer), "/"), Message: "given twice"}
	default:
		return Problem{Field: "body", Message: fmt.Sprintf("not valid JSON (at byte %d)", inputOffset(err))}
	}
}

func inputOffset(err error) int64 {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		return syn.ByteOffset
	}
	return 0
}

// keyField is the field a ConversionKey error is about: the offer when it is not a
// product id, else the search id.
func keyField(offer string) string {
	if !contracts.ValidOfferID(offer) {
		return "offer"
	}
	return "search_id"
}

type errorBody struct {
	Message  string    `json:"message"`
	Problems []Problem `json:"problems,omitempty"`
}

func writeError(w http.ResponseWriter, status int, message string, problems []Problem) {
	writeJSON(w, status, errorBody{Message: message, Problems: problems})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = jsonv2.MarshalWrite(w, v)
}
