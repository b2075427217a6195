// Package explain tells a person how a past search was decided and proves it would be
// decided the same way again: it finds the search's record (in the searches bucket while it
// is retained, then in the audit trail for a year), prints its decision trail, and replays
// it (scoring from the recorded pre-approval row and policy revision, pricing from the
// recorded catalog and ceiling table revisions, both still within their buckets' history),
// reporting byte-identical or every difference. It never sees a raw phone: the record holds
// only the keyed hash and, while retained, the masked number.
package explain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/audit"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/services/scoring"
	"github.com/demobank/yacredits/services/scoring/policy"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// Report is what Explain found.
type Report struct {
	Source  string // where the record was found
	Record  *contracts.Search
	Scoring Replay
	Pricing Replay
}

// Replay is the outcome of deciding one step again.
type Replay struct {
	Done  bool     // replayed at all
	Why   string   // why not, when not
	Diffs []string // empty: the same
}

func (r Replay) String() string {
	switch {
	case !r.Done:
		return "not replayed: " + r.Why
	case len(r.Diffs) == 0:
		return "identical"
	}
	return fmt.Sprintf("DIFFERS (%d):\n    %s", len(r.Diffs), strings.Join(r.Diffs, "\n    "))
}

// ErrNotFound: neither the bucket nor the trail holds the search.
var ErrNotFound = errors.New("search not found in the searches bucket nor in the audit trail")

// Explain finds the search id (reading the trail from since, zero: from its start), writes
// its trail and replay to w and returns the report.
func Explain(ctx context.Context, js jetstream.JetStream, id string, since time.Time, w io.Writer) (*Report, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	rep := &Report{}
	rec, src, err := find(ctx, js, id, since)
	if err != nil {
		return nil, err
	}
	rep.Record, rep.Source = rec, src
	writeTrail(w, rec, src)
	if rec.Basis == nil {
		why := "recorded before decisions kept what they were made from"
		if len(rec.Offers) == 0 && len(rec.Reasons) == 1 &&
			(rec.Reasons[0] == contracts.ReasonDeadline || rec.Reasons[0] == contracts.ReasonDeadLetter) {
			why = "no decision made it: the search was finished as " + rec.Reasons[0]
		}
		rep.Scoring = Replay{Why: why}
		rep.Pricing = rep.Scoring
	} else {
		var scored *contracts.Scored
		scored, rep.Scoring = replayScoring(ctx, js, rec)
		rep.Pricing = replayPricing(ctx, js, rec, scored)
	}
	fmt.Fprintf(w, "replay:\n  scoring: %s\n  pricing: %s\n", rep.Scoring, rep.Pricing)
	return rep, nil
}

func find(ctx context.Context, js jetstream.JetStream, id string, since time.Time) (*contracts.Search, string, error) {
	rec, seq, err := search.Lookup(ctx, js.Conn(), id)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("read the searches bucket: %w", err)
	case rec != nil && rec.Status() != contracts.Done:
		return nil, "", fmt.Errorf("search %s is still pending (deadline %s)", id, rec.Request.Deadline.UTC().Format(time.RFC3339))
	case rec != nil:
		return rec, fmt.Sprintf("the searches bucket (sequence %d)", seq), nil
	}
	rec, batches, err := audit.Find(ctx, js, id, since)
	if errors.Is(err, audit.ErrNotFound) {
		return nil, "", fmt.Errorf("%w (%d audit batches read)", ErrNotFound, batches)
	}
	if err != nil {
		return nil, "", err
	}
	return rec, fmt.Sprintf("the audit trail (batch %d read from %s)", batches, sinceText(since)), nil
}

func sinceText(t time.Time) string {
	if t.IsZero() {
		return "its start"
	}
	return t.UTC().Format(time.RFC3339)
}

func writeTrail(w io.Writer, rec *contracts.Search, src string) {
	r := rec.Request
	phone := r.PhoneMasked
	if phone == "" {
		phone = "not kept"
	}
	fmt.Fprintf(w, "search %s, found in %s\n", r.SearchID, src)
	fmt.Fprintf(w, "  request: %s", r.ProductType)
	if r.Amount != nil {
		fmt.Fprintf(w, ", %s ₽", *r.Amount)
	}
	if r.Term != nil {
		fmt.Fprintf(w, ", %d months", *r.Term)
	}
	fmt.Fprintf(w, ", at %s; phone %s, hash %s…", r.RequestedAt.UTC().Format(time.RFC3339), phone, r.PhoneHash[:min(12, len(r.PhoneHash))])
	if r.Test {
		fmt.Fprint(w, " (a test phone)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  answer: %s at %s, reasons %s\n", rec.Decision(), rec.DoneAt.UTC().Format(time.RFC3339Nano), strings.Join(rec.Reasons, ", "))
	b := rec.Basis
	if b == nil {
		return
	}
	fmt.Fprintf(w, "  scoring at %s: pre-approval snapshot %s, policy revision %d\n", b.ScoredAt.UTC().Format(time.RFC3339Nano), orNone(b.Snapshot), b.Policy)
	if b.Row != nil {
		fmt.Fprintf(w, "    pre-approval row: %s, limit %s ₽, grade %s, valid until %s\n", b.Row.Kind, b.Row.Limit, b.Row.Grade, preapproval.Day(b.Row.ValidUntil))
	} else {
		fmt.Fprintln(w, "    no pre-approval row for the phone and product")
	}
	fmt.Fprintf(w, "    verdict %s", b.Verdict)
	if b.Verdict == contracts.Approved {
		fmt.Fprintf(w, " %s, grade %s, amount %s…%s ₽", b.Kind, b.Grade, b.Amount.Min, b.Amount.Max)
		if b.Term != nil {
			fmt.Fprintf(w, ", term %d…%d months", b.Term.Min, b.Term.Max)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  pricing at %s: catalog revision %d, ceiling table revision %d (%s), rules %s, at most %d offers, links until %s\n",
		b.PricedAt.Format(time.RFC3339Nano), b.Catalog, b.Ceilings, quarters(b.Quarters), b.Pricing, b.MaxOffers, b.LinksUntil.Format(time.RFC3339))
	offered, _ := contracts.DecodeOffers(rec.Offers)
	byProduct := map[string]contracts.Offer{}
	for i, o := range offered {
		if i < len(b.Offered) {
			byProduct[b.Offered[i]] = o
		}
	}
	for _, id := range slices.Sorted(maps.Keys(b.Trail)) {
		fmt.Fprintf(w, "    %-24s %s", id, b.Trail[id])
		if o, ok := byProduct[id]; ok {
			fmt.Fprintf(w, ": %s, amount %s…%s ₽", o.Decision, o.Amount.Min, o.Amount.Max)
			if o.Term != nil {
				fmt.Fprintf(w, ", term %d…%d", o.Term.Min, o.Term.Max)
			}
			fmt.Fprintf(w, ", rate %s…%s %%, ПСК %s…%s %%", o.Rate.Min, o.Rate.Max, o.TotalCost.Min, o.TotalCost.Max)
			if o.Payment.Min != nil {
				fmt.Fprintf(w, ", payment %s…%s ₽", *o.Payment.Min, *o.Payment.Max)
			}
		}
		fmt.Fprintln(w)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func quarters(q []string) string {
	if len(q) == 0 {
		return "no quarter's values: 292 % alone"
	}
	return "quarters " + strings.Join(q, ", ")
}

// replayScoring decides again from the recorded row and policy revision.
func replayScoring(ctx context.Context, js jetstream.JetStream, rec *contracts.Search) (*contracts.Scored, Replay) {
	b := rec.Basis
	if b.Snapshot == contracts.SnapshotTestPhones && b.Row == nil {
		return nil, Replay{Why: "decided by TEST_PHONES, not by the policy"}
	}
	if b.Policy == 0 {
		return nil, Replay{Why: "the record names no policy revision (made before revisions were recorded)"}
	}
	pol, err := revision(ctx, js, scoring.PolicyDocument, b.Policy)
	if err != nil {
		return nil, Replay{Why: err.Error()}
	}
	var row *preapproval.Record
	if b.Row != nil {
		row = &preapproval.Record{Product: rec.Request.ProductType, Kind: b.Row.Kind, Limit: b.Row.Limit, Grade: b.Row.Grade, ValidUntil: b.Row.ValidUntil}
	}
	got := policy.Decide(pol, row, rec.Request, b.ScoredAt)
	var diffs []string
	want := b.ScoredFrom(rec.Request)
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"verdict", got.Verdict, want.Verdict}, {"kind", got.Kind, want.Kind}, {"grade", got.Grade, want.Grade},
		{"amount", got.Amount, want.Amount}, {"term", got.Term, want.Term}, {"valid_until", unixOf(got.ValidUntil), unixOf(want.ValidUntil)},
	} {
		if !reflect.DeepEqual(f.got, f.want) {
			diffs = append(diffs, fmt.Sprintf("%s: recorded %v, now %v", f.name, show(f.want), show(f.got)))
		}
	}
	if n := len(got.Reasons); n > len(rec.Reasons) || !slices.Equal(got.Reasons, rec.Reasons[:n]) {
		diffs = append(diffs, fmt.Sprintf("reasons: recorded %v, now begin %v", rec.Reasons, got.Reasons))
	}
	return &got, Replay{Done: true, Diffs: diffs}
}

func unixOf(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Unix()
}

func show(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

// replayPricing prices again from the recorded revisions and compares the offers with the
// ones sent byte for byte, after giving the replayed offers the tokens the sent ones carry
// (the signature needs the bank's private key, which a person explaining a search must not
// hold); each token's claims are checked to state the replayed offer.
func replayPricing(ctx context.Context, js jetstream.JetStream, rec *contracts.Search, scored *contracts.Scored) Replay {
	b := rec.Basis
	if b.Pricing != contracts.PricingVersion {
		return Replay{Why: fmt.Sprintf("priced with rules %s; these are %s", b.Pricing, contracts.PricingVersion)}
	}
	cat, err := revision(ctx, js, offers.CatalogDocument, b.Catalog)
	if err != nil {
		return Replay{Why: err.Error()}
	}
	ceil, err := revision(ctx, js, offers.CeilingDocument, b.Ceilings)
	if err != nil {
		return Replay{Why: err.Error()}
	}
	s := b.ScoredFrom(rec.Request)
	if scored != nil {
		s.Reasons = scored.Reasons
	}
	priced := offers.Price(document.InForce[*catalog.Catalog]{Value: cat, Revision: b.Catalog},
		document.InForce[*ceiling.Table]{Value: ceil, Revision: b.Ceilings}, &s, b.PricedAt, b.LinksUntil.Sub(b.PricedAt), b.MaxOffers)
	var diffs []string
	sent, err := contracts.DecodeOffers(rec.Offers)
	if err != nil {
		return Replay{Done: true, Diffs: []string{"the recorded offers do not decode: " + err.Error()}}
	}
	quotes := priced.Quotes
	if len(quotes) != len(sent) {
		diffs = append(diffs, fmt.Sprintf("offers: recorded %d, now %d", len(sent), len(quotes)))
	}
	again := make([]contracts.Offer, 0, len(quotes))
	for i, q := range quotes {
		o := q.Offer
		switch {
		case len(rec.Refs) > 0: // the record keeps the links' references apart, as Seal left them
			offerlink.Placeholders(&o)
		case i < len(sent): // a record from before sealed references: its links are its own
			o.ProposalLink = sent[i].ProposalLink
		}
		again = append(again, o)
	}
	data, err := contracts.EncodeOffers(again)
	if err != nil {
		return Replay{Done: true, Diffs: append(diffs, "encode: "+err.Error())}
	}
	if !bytes.Equal(data, rec.Offers) {
		diffs = append(diffs, offerDiffs(sent, again)...)
		if len(diffs) == 0 {
			diffs = append(diffs, fmt.Sprintf("offers: the same values, other bytes:\n      recorded %s\n      now      %s", rec.Offers, data))
		}
	}
	if len(b.Offered) > 0 && !slices.Equal(priced.Basis.Offered, b.Offered) {
		diffs = append(diffs, fmt.Sprintf("offered products: recorded %v, now %v", b.Offered, priced.Basis.Offered))
	}
	if !maps.Equal(priced.Basis.Trail, b.Trail) {
		diffs = append(diffs, fmt.Sprintf("trail: recorded %v, now %v", b.Trail, priced.Basis.Trail))
	}
	if scored != nil && !slices.Equal(priced.Reasons, rec.Reasons) {
		diffs = append(diffs, fmt.Sprintf("reasons: recorded %v, now %v", rec.Reasons, priced.Reasons))
	}
	return Replay{Done: true, Diffs: diffs}
}

// offerDiffs names the fields of each offer that differ.
func offerDiffs(sent, again []contracts.Offer) []string {
	var out []string
	for i := range min(len(sent), len(again)) {
		a, b := reflect.ValueOf(sent[i]), reflect.ValueOf(again[i])
		for f := range a.NumField() {
			x, y := a.Field(f).Interface(), b.Field(f).Interface()
			if !reflect.DeepEqual(x, y) {
				out = append(out, fmt.Sprintf("offer %d %s: recorded %v, now %v", i+1, a.Type().Field(f).Name, show(x), show(y)))
			}
		}
	}
	return out
}

// revision reads one revision of a document from its bucket's history.
func revision[T any](ctx context.Context, js jetstream.JetStream, s document.Spec[T], rev uint64) (T, error) {
	if rev == 0 {
		var zero T
		return zero, fmt.Errorf("the record names no %s revision", s.Name)
	}
	return s.Fetch(ctx, js, rev)
}
