package gateway

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json/jsontext"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/contracts"
)

// answer is the 200 body (spec §4.1, §4.2): name, decision and data only once done. Data
// is the record's offers as the offers service encoded them: sent as they are.
type answer struct {
	SearchID string             `json:"search_id"`
	Status   contracts.Status   `json:"status"`
	Name     string             `json:"name,omitempty"`
	Decision contracts.Decision `json:"decision,omitempty"`
	Data     jsontext.Value     `json:"data,omitzero"`
}

// noOffers is a rejection's data: the spec types data as an array, so [] rather than null.
var noOffers = jsontext.Value("[]")

func (g *gateway) render(w http.ResponseWriter, r *http.Request, searchID string, s *contracts.Search) {
	span := trace.SpanFromContext(r.Context())
	span.SetAttributes(attribute.String("search.status", string(s.Status())))
	a := answer{SearchID: searchID, Status: s.Status()}
	if s.DoneAt != nil { // the status, never the decision, on the span (docs/security.md)
		a.Name, a.Decision, a.Data = g.cfg.BankName, s.Decision(), jsontext.Value(s.Data())
		if a.Data == nil {
			a.Data = noOffers
		}
	}
	writeJSON(w, http.StatusOK, a)
}

// working is the gateway's search work once it is set up; until then every API call
// answers 503 (nothing can be recorded yet).
func (g *gateway) working(w http.ResponseWriter, r *http.Request) *searches {
	s := g.searches.Load()
	if s == nil {
		g.fail(w, r, "", unavailable(*g.setupErr.Load()))
	}
	return s
}

func (g *gateway) handleSubmit(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r.Header.Get("Content-Type")) {
		g.fail(w, r, "", &Error{Code: EMediaType, Message: "Content-Type должен быть application/json"})
		return
	}
	body, err := readBody(r.Body)
	if err != nil {
		g.fail(w, r, "", err)
		return
	}
	in, err := parseLoanApproval(body)
	if err != nil {
		g.fail(w, r, "", err)
		return
	}
	noteSearchID(r.Context(), in.key())
	work := g.working(w, r)
	if work == nil {
		return
	}
	s, err := work.submit(r.Context(), in)
	if err != nil {
		g.fail(w, r, in.SearchID, err)
		return
	}
	noteTest(r.Context(), s)
	g.render(w, r, in.SearchID, s)
}

func (g *gateway) handlePoll(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("search_id")
	if raw == "" && r.ContentLength != 0 {
		// One published example polls with {"search_id": …} in the body.
		body, err := readBody(r.Body)
		if err != nil {
			g.fail(w, r, "", err)
			return
		}
		raw = searchIDFromBody(body)
	}
	id, err := parseSearchID(raw)
	if err != nil {
		g.fail(w, r, "", err)
		return
	}
	noteSearchID(r.Context(), normaliseID(id))
	work := g.working(w, r)
	if work == nil {
		return
	}
	s, err := work.poll(r.Context(), id)
	if err != nil {
		g.fail(w, r, id, err)
		return
	}
	noteTest(r.Context(), s)
	g.render(w, r, id, s)
}

func (g *gateway) fail(w http.ResponseWriter, r *http.Request, searchID string, err error) {
	span := trace.SpanFromContext(r.Context())
	var e *Error
	if !errors.As(err, &e) || e.Code == EInternal || e.Code == EUnavailable {
		span.RecordError(err)
		span.SetStatus(codes.Error, "request failed")
	}
	l := g.log.With().Ctx(r.Context()).Logger()
	writeError(w, &l, searchID, err)
}

func (g *gateway) notFound(w http.ResponseWriter, r *http.Request) {
	g.fail(w, r, "", &Error{Code: ENotFound, Message: "Нет такого пути; метод доступен по /integrations/v1/api/loan_approval"})
}

func (g *gateway) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	allow := allowedMethods(r)
	g.fail(w, r, "", &Error{Code: EMethod, Allow: allow,
		Message: "Метод не поддерживается; используйте " + strings.Join(allow, " или ")})
}

// allowedMethods are the methods the router serves on the request's path, asked of the
// router itself: the API's paths serve GET and POST, the health endpoints GET alone.
func allowedMethods(r *http.Request) []string {
	var allow []string
	if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.Routes != nil {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if rctx.Routes.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allow = append(allow, m)
			}
		}
	}
	if len(allow) == 0 {
		allow = []string{http.MethodGet, http.MethodPost} // not reached: chi calls this only for a served path
	}
	return allow
}

func isJSON(contentType string) bool {
	if contentType == "" {
		return true // the spec allows it absent
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

func normaliseID(id string) string { return strings.ToLower(id) }

// requestInfo collects what the access log and the span report about a request once it is
// answered: its search, and the caller's address as authenticate resolved it.
type requestInfo struct {
	searchID string
	test     bool // a test phone's search (TEST_PHONES)
	client   netip.Addr
}

type requestInfoKey struct{}

func noteSearchID(ctx context.Context, id string) {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		info.searchID = id
	}
}

// noteTest marks the request's log line and span when its search is a test phone's.
func noteTest(ctx context.Context, s *contracts.Search) {
	if !s.Request.Test {
		return
	}
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		info.test = true
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("search.test", true))
}

// recoverer turns a panic into a logged 500 in the documented shape.
func (g *gateway) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				g.log.Error().Interface("panic", v).Str("route", r.URL.Path).Msg("handler panicked")
				writeError(w, &g.log, "", &Error{Code: EInternal, Message: "Внутренняя ошибка; повторите запрос позже"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}
