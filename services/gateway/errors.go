package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/rs/zerolog"
)

// Code classifies what went wrong; codeStatus is the one place that turns it into HTTP.
type Code string

const (
	EInvalid     Code = "invalid"     // the request is malformed or a field is wrong
	EForbidden   Code = "forbidden"   // authentication or source address refused
	ENotFound    Code = "not_found"   // no such search
	EMethod      Code = "method"      // a method the path does not serve
	ETooLarge    Code = "too_large"   // body over 64 KiB
	EMediaType   Code = "media_type"  // not JSON
	ETimeout     Code = "timeout"     // the client did not send its request in time
	EConflict    Code = "conflict"    // the search id was used for another request
	ERateLimit   Code = "rate_limit"  // over the configured rate
	EUnavailable Code = "unavailable" // the search could not be recorded now
	EInternal    Code = "internal"    // a bug
)

var codeStatus = map[Code]int{
	EInvalid:     http.StatusBadRequest,
	EForbidden:   http.StatusForbidden,
	ENotFound:    http.StatusNotFound,
	EMethod:      http.StatusMethodNotAllowed,
	ETooLarge:    http.StatusRequestEntityTooLarge,
	EMediaType:   http.StatusUnsupportedMediaType,
	ETimeout:     http.StatusRequestTimeout,
	EConflict:    http.StatusUnprocessableEntity,
	ERateLimit:   http.StatusTooManyRequests,
	EUnavailable: http.StatusServiceUnavailable,
	EInternal:    http.StatusInternalServerError,
}

// FieldError is one problem with one field, in the form of Yandex's newer loans API.
type FieldError struct {
	Property string `json:"property"`
	Message  string `json:"message"`
}

// Error is an answer the client is meant to read. Its Message is written for Yandex's
// engineers; an error without a Code is internal and its text is never sent.
type Error struct {
	Code     Code
	Message  string
	SearchID string
	Details  []FieldError
	// RetryAfter is when a 429 or 503 may be retried (at least a second).
	RetryAfter time.Duration
	// Allow lists the methods the path of a 405 serves.
	Allow []string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// requestError is a 400 about the body as a whole (not JSON, not an object): like every 400
// it names what is wrong in properties and details, here the property "body".
func requestError(msg string) error {
	return &Error{Code: EInvalid, Message: msg, Details: []FieldError{{Property: "body", Message: msg}}}
}

func invalidFields(searchID string, details []FieldError) error {
	msg := "Некорректные поля запроса"
	if len(details) == 1 {
		msg = details[0].Message
	}
	return &Error{Code: EInvalid, Message: msg, SearchID: searchID, Details: details}
}

func tooLarge() error {
	return &Error{Code: ETooLarge, Message: "Тело запроса больше 64 КиБ"}
}

// errorBody is the spec's error shape (§4.3).
type errorBody struct {
	SearchID   string       `json:"search_id"`
	Message    string       `json:"message"`
	Properties []string     `json:"properties,omitempty"`
	Details    []FieldError `json:"details,omitempty"`
}

// writeError answers err in the spec's shape. It is the only place errors are logged: an
// internal one at error level with its text, which the client never sees.
func writeError(w http.ResponseWriter, log *zerolog.Logger, searchID string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: EInternal, Message: "Внутренняя ошибка; повторите запрос позже"}
	}
	switch {
	case errors.Is(err, context.Canceled):
		// The caller went away: nothing failed on our side.
		log.Info().Err(err).Str("search_id", searchID).Msg("request abandoned by the client")
	case e.Code == EInternal || e.Code == EUnavailable:
		// The cause (joined to e, or e itself) is for our logs, never for the client.
		log.Error().Err(err).Str("search_id", searchID).Msg("request failed")
	case err != error(e):
		// A client's fault with a cause of its own (a body cut short, a read timed out):
		// worth a look if it recurs, not an error of ours.
		log.Warn().Err(err).Str("search_id", searchID).Msg("request refused: the client's fault")
	}
	if e.SearchID != "" {
		searchID = e.SearchID
	}
	body := errorBody{SearchID: searchID, Message: e.Message, Details: e.Details}
	for _, d := range e.Details {
		if !contains(body.Properties, d.Property) {
			body.Properties = append(body.Properties, d.Property)
		}
	}
	status, ok := codeStatus[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	switch e.Code {
	case EUnavailable, ERateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(e.RetryAfter.Seconds())))))
	case EMethod:
		w.Header().Set("Allow", strings.Join(e.Allow, ", "))
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	// The strict encoder escapes no HTML: proposal links carry '&', and \u0026 is unkind.
	_ = json.MarshalWrite(w, v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
