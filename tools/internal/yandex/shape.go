package yandex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Body is an answer's JSON object as the contract documents it (§4): a done or pending
// search, or an error. Fields the contract does not name make an answer invalid.
type Body struct {
	SearchID   string            `json:"search_id"`
	Status     string            `json:"status,omitempty"`
	Name       string            `json:"name,omitempty"`
	Decision   string            `json:"decision,omitempty"`
	Data       []json.RawMessage `json:"data,omitempty"`
	Message    string            `json:"message,omitempty"`
	Properties []string          `json:"properties,omitempty"`
	Details    []json.RawMessage `json:"details,omitempty"`
}

// Done reports whether the body is a finished search.
func (b *Body) Done() bool { return b != nil && b.Status == "done" }

// Outcome is what a done answer says, in a form two answers can be compared by: the decision
// and the offers as sent.
func (b *Body) Outcome() string {
	if !b.Done() {
		return ""
	}
	var buf bytes.Buffer
	buf.WriteString(b.Decision)
	for _, o := range b.Data {
		buf.WriteByte('|')
		_ = json.Compact(&buf, o)
	}
	return buf.String()
}

// Parse reads an answer and checks it against the documented shape for its status: a 200 is
// a done or a pending search, anything else an error body. The body is returned even when
// the shape is wrong, so that a caller can still account for what it says.
func Parse(status int, raw []byte) (*Body, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("body is not a JSON object: %.80q", raw)
	}
	var b Body
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("body fields have the wrong types: %v", err)
	}
	var allowed []string
	switch {
	case status == 200 && b.Status == "done":
		allowed = []string{"search_id", "status", "name", "decision", "data"}
	case status == 200 && b.Status == "pending":
		allowed = []string{"search_id", "status"}
	case status == 200:
		return &b, fmt.Errorf("200 with status %q, want done or pending", b.Status)
	case status == 400:
		allowed = []string{"search_id", "message", "properties", "details"}
	default:
		allowed = []string{"search_id", "message"}
	}
	for k := range fields {
		if !slices.Contains(allowed, k) {
			return &b, fmt.Errorf("%d answer has field %q the contract does not document", status, k)
		}
	}
	if _, ok := fields["search_id"]; !ok {
		return &b, errors.New("no search_id")
	}
	switch {
	case status == 200 && b.Status == "done":
		return &b, checkDone(&b, fields)
	case status != 200 && b.Message == "":
		return &b, fmt.Errorf("%d answer without a message", status)
	case status == 400 && (len(b.Properties) == 0 || len(b.Details) == 0):
		return &b, errors.New("400 answer without properties and details")
	}
	return &b, nil
}

func checkDone(b *Body, fields map[string]json.RawMessage) error {
	if b.Name == "" {
		return errors.New("done answer without the bank's name")
	}
	if string(bytes.TrimSpace(fields["data"])) == "null" || fields["data"] == nil {
		return errors.New("done answer without a data array")
	}
	switch {
	case b.Decision == "rejected" && len(b.Data) != 0:
		return errors.New("rejected with offers")
	case b.Decision == "has_approve" && len(b.Data) == 0:
		return errors.New("has_approve without offers")
	case b.Decision != "rejected" && b.Decision != "has_approve":
		return fmt.Errorf("decision %q", b.Decision)
	}
	for i, raw := range b.Data {
		if err := CheckOffer(raw); err != nil {
			return fmt.Errorf("data[%d]: %w", i, err)
		}
	}
	return nil
}

type span struct {
	Min *float64 `json:"min"`
	Max *float64 `json:"max"`
}

func (s *span) check(name string) error {
	switch {
	case s == nil:
		return fmt.Errorf("%s missing", name)
	case s.Min == nil || s.Max == nil:
		return fmt.Errorf("%s.min and %s.max must be numbers", name, name)
	case *s.Min > *s.Max:
		return fmt.Errorf("%s.min %g > max %g", name, *s.Min, *s.Max)
	}
	return nil
}

// CheckOffer checks one element of a done answer's data against the contract's §4.1.
func CheckOffer(raw json.RawMessage) error {
	var o struct {
		ProductType string `json:"product_type"`
		Decision    string `json:"decision"`
		Amount      *span  `json:"amount"`
		Term        *span  `json:"term"`
		Rate        *span  `json:"rate"`
		TotalCost   *span  `json:"total_cost"`
		Payment     *struct {
			Min    *float64 `json:"min"`
			Max    *float64 `json:"max"`
			CCRate *float64 `json:"cc_rate"`
		} `json:"payment"`
		GracePeriod *int `json:"grace_period"`
		Link        *struct {
			Link string `json:"link"`
			Deep string `json:"deep"`
		} `json:"propousal_link"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return fmt.Errorf("offer fields have the wrong types: %v", err)
	}
	if o.ProductType != "loan" && o.ProductType != "credit_card" {
		return fmt.Errorf("product_type %q", o.ProductType)
	}
	if o.Decision != "pre_approved" && o.Decision != "full_approved" {
		return fmt.Errorf("decision %q", o.Decision)
	}
	for _, s := range []struct {
		name string
		v    *span
	}{{"amount", o.Amount}, {"rate", o.Rate}, {"total_cost", o.TotalCost}} {
		if err := s.v.check(s.name); err != nil {
			return err
		}
	}
	if *o.TotalCost.Min < *o.Rate.Min || *o.TotalCost.Max < *o.Rate.Max {
		return errors.New("total_cost below the rate")
	}
	if o.Payment == nil {
		return errors.New("payment missing")
	}
	if o.ProductType == "loan" {
		if err := o.Term.check("term"); err != nil {
			return err
		}
		if err := (&span{o.Payment.Min, o.Payment.Max}).check("payment"); err != nil || o.Payment.CCRate != nil {
			return errors.New("a loan's payment is {min, max}")
		}
		if o.GracePeriod != nil {
			return errors.New("a loan has no grace_period")
		}
	} else {
		if o.Term != nil {
			return errors.New("a card has no term")
		}
		if o.Payment.CCRate == nil || o.Payment.Min != nil || o.Payment.Max != nil {
			return errors.New("a card's payment is {cc_rate}")
		}
		if o.GracePeriod == nil {
			return errors.New("a card needs grace_period")
		}
	}
	if o.Link == nil || (o.Link.Link == "" && o.Link.Deep == "") {
		return errors.New("propousal_link needs link or deep")
	}
	return nil
}
