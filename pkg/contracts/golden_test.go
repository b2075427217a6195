package contracts

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	json "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/money"
)

// update rewrites the golden files of today's encodings: go test ./pkg/contracts -update.
// The files of earlier versions (*.v1.*) are never rewritten: they are yesterday's bytes,
// which today's code must still read.
var update = flag.Bool("update", false, "rewrite the golden files of the current encodings")

const goldenID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// golden compares data with testdata/name, after writing it there with -update.
func golden(t *testing.T, name string, data []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(filepath.Join("testdata", name), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := bytes.TrimSpace(read(t, name)); !bytes.Equal(data, want) {
		t.Errorf("%s changed:\n got %s\nwant %s\n(a new encoding is a new version: keep reading this one)", name, data, want)
	}
}

// Records written by schema 1 (until the lifecycle change) decode into today's record,
// field for field.
func TestSchema1RecordsStillDecode(t *testing.T) {
	pending, err := DecodeSearch(goldenID, read(t, "search.v1.pending.json"))
	if err != nil {
		t.Fatal(err)
	}
	if pending.Status() != Pending || pending.Request.SearchID != goldenID || pending.Request.PhoneMasked != "+7933***5040" ||
		*pending.Request.Amount != money.Roubles(500000) || *pending.Request.Term != 36 ||
		len(pending.Request.Props) != 1 || pending.Request.Props[0] != "yandex-props-1" ||
		pending.Trace != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" ||
		!pending.Request.Deadline.Equal(pending.Request.RequestedAt.Add(10*time.Second)) {
		t.Fatalf("pending v1 = %+v", pending)
	}
	done, err := DecodeSearch(goldenID, read(t, "search.v1.done.json"))
	if err != nil {
		t.Fatal(err)
	}
	offers, err := DecodeOffers(done.Offers)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status() != Done || done.Decision() != HasApprove || len(offers) != 1 ||
		offers[0].TotalCost.Min != 21457 || !strings.Contains(offers[0].ProposalLink.Link, "offer=cash-standard") ||
		len(done.Reasons) != 1 || done.Reasons[0] != "term_out_of_bounds" {
		t.Fatalf("done v1 = %+v, offers %+v", done, offers)
	}
	if err := offers[0].Validate(); err != nil {
		t.Fatal(err)
	}
	rejected, err := DecodeSearch(goldenID, read(t, "search.v1.rejected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rejected.Status() != Done || rejected.Decision() != Rejected || rejected.Offers != nil ||
		rejected.Reasons[0] != ReasonDeadline {
		t.Fatalf("rejected v1 = %+v", rejected)
	}
}

// Messages on the stream during a rolling deploy were written by the previous version.
func TestMessagesStillDecode(t *testing.T) {
	req, err := DecodeLoanRequested(read(t, "loan.v1.requested.json"))
	if err != nil || req.SearchID != goldenID || req.ProductType != ProductLoan || *req.Term != 36 {
		t.Fatalf("requested = %+v, %v", req, err)
	}
	sc, err := DecodeScored(read(t, "loan.v1.scored.json"))
	if err != nil || sc.Verdict != Approved || sc.Grade != "A" || sc.Amount.Max != money.Roubles(1000000) || !sc.Request.SameAs(*req) {
		t.Fatalf("scored = %+v, %v", sc, err)
	}
	if sc.ValidUntil != nil {
		t.Fatalf("a verdict of before valid_until has one: %v", sc.ValidUntil)
	}
	// Since proposal links expire with the pre-approval, a verdict says when it lapses.
	sc, err = DecodeScored(read(t, "loan.v1.scored.valid_until.json"))
	if err != nil || sc.ValidUntil == nil || !sc.ValidUntil.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.FixedZone("MSK", 3*3600))) {
		t.Fatalf("scored with valid_until = %+v, %v", sc, err)
	}
	dl, err := DecodeDeadLetter(read(t, "loan.v1.deadletter.json"))
	if err != nil || dl.SearchID != goldenID || dl.Deliveries != 5 || dl.Consumer != "scoring" {
		t.Fatalf("dead letter = %+v, %v", dl, err)
	}
}

func goldenRequest() LoanRequested {
	at := time.Date(2026, 12, 1, 12, 0, 0, 123000000, time.UTC)
	amount, term := money.Roubles(500000), 36
	return LoanRequested{SearchID: goldenID, PhoneHash: strings.Repeat("5d41402abc4b2a76", 4), PhoneMasked: "+7933***5040",
		ProductType: ProductLoan, Amount: &amount, Term: &term, Props: []string{"yandex-props-1"},
		RequestedAt: at, Deadline: at.Add(10 * time.Second)}
}

// Today's record encoding is pinned by golden files, and reads back as written.
func TestSchema2Golden(t *testing.T) {
	req := goldenRequest()
	pending := NewSearch(req, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	offers, err := EncodeOffers([]Offer{goldenOffer()})
	if err != nil {
		t.Fatal(err)
	}
	done, err := pending.Finish(offers, []string{"approved"}, req.RequestedAt.Add(40*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Search{"search.v2.pending.json": pending, "search.v2.done.json": done} {
		data, err := EncodeSearch(s)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, data)
		back, err := DecodeSearch(goldenID, read(t, name))
		if err != nil {
			t.Fatal(err)
		}
		again, _ := EncodeSearch(back)
		if !bytes.Equal(again, data) {
			t.Errorf("%s does not read back as written:\n got %s\nwant %s", name, again, data)
		}
	}
	if n, inLinks := bytes.Count(read(t, "search.v2.done.json"), []byte(goldenID)), bytes.Count(offers, []byte(goldenID)); n != inLinks {
		t.Errorf("the v2 record holds the search id %d times, its links %d: the id is the key, not stored again", n, inLinks)
	}
}

// A done search with offers is written as version 3: each offer's reference stored once, in
// refs, and put in its links (web and deep) when the answer is sent.
func TestSchema3Golden(t *testing.T) {
	req := goldenRequest()
	o := goldenOffer()
	o.ProposalLink = ProposalLink{Link: "https://bank.example/apply?ref=" + RefMarker, Deep: "demobank://apply?ref=" + RefMarker}
	card := goldenOffer()
	card.SpecialConditions = []string{`a literal \u0000 and "propousal_link":{ in a text`}
	card.ProposalLink = ProposalLink{Link: "https://bank.example/card?ref=" + RefMarker}
	offers, err := EncodeOffers([]Offer{o, card})
	if err != nil {
		t.Fatal(err)
	}
	refs := []string{"2026-12~first", "2026-12~second"}
	done, err := NewSearch(req, "").FinishOffered(offers, refs, []string{"approved"}, nil, req.RequestedAt.Add(40*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeSearch(done)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "search.v3.done.json", data)
	back, err := DecodeSearch(goldenID, read(t, "search.v3.done.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if n := bytes.Count(data, []byte(ref)); n != 1 {
			t.Errorf("the record holds %s %d times, want once", ref, n)
		}
	}
	sent, err := DecodeOffers(back.Data())
	if err != nil {
		t.Fatal(err)
	}
	want := []ProposalLink{{Link: "https://bank.example/apply?ref=2026-12~first", Deep: "demobank://apply?ref=2026-12~first"},
		{Link: "https://bank.example/card?ref=2026-12~second"}}
	for i := range want {
		if sent[i].ProposalLink != want[i] {
			t.Errorf("offer %d sent with %+v, want %+v", i, sent[i].ProposalLink, want[i])
		}
	}
	if sent[1].SpecialConditions[0] != card.SpecialConditions[0] {
		t.Errorf("a text that looks like a marker was changed: %q", sent[1].SpecialConditions[0])
	}

	// A record whose references do not match its offers is refused, written or read.
	if _, err := NewSearch(req, "").FinishOffered(offers, refs[:1], nil, nil, req.RequestedAt); !errors.Is(err, ErrInvalid) {
		t.Errorf("one reference for two offers: %v", err)
	}
	if _, err := NewSearch(req, "").FinishOffered(offers, nil, nil, nil, req.RequestedAt); !errors.Is(err, ErrInvalid) {
		t.Errorf("links with the marker and no references (the marker would reach Yandex): %v", err)
	}
	if _, err := NewSearch(req, "").FinishOffered(offers, []string{"2026-12~fi\"rst", "x"}, nil, nil, req.RequestedAt); !errors.Is(err, ErrInvalid) {
		t.Errorf("a reference with a quote (it would break the answer's JSON): %v", err)
	}
	for name, bad := range map[string][]byte{
		"v3 without refs":   bytes.Replace(data, []byte(`"refs":["2026-12~first","2026-12~second"],`), nil, 1),
		"a reference short": bytes.Replace(data, []byte(`,"2026-12~second"`), nil, 1),
		"v2 with refs":      bytes.Replace(data, []byte(`"schema":3`), []byte(`"schema":2`), 1),
	} {
		if bytes.Equal(bad, data) {
			t.Fatalf("%s: the edit changed nothing", name)
		}
		if _, err := DecodeSearch(goldenID, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
}

func goldenOffer() Offer {
	pay1, pay2 := money.Amount(90685), money.Amount(8871212)
	return Offer{ProductType: ProductLoan, Decision: PreApproved,
		Amount: AmountRange{Min: money.Roubles(30000), Max: money.Roubles(1000000)},
		Term:   &TermRange{Min: 12, Max: 60}, Rate: RateRange{Min: 19900, Max: 27900}, TotalCost: RateRange{Min: 21457, Max: 30118},
		Payment:           Payment{Min: &pay1, Max: &pay2},
		SpecialConditions: []string{"Ставка действует при оформлении страховки"}, RequiredDocuments: []string{"Паспорт РФ"},
		ProposalLink: ProposalLink{Link: "https://bank.example/apply?search_id=" + goldenID + "&offer=cash-standard"}}
}

// Every kept record, of either version, peeks done exactly when it decodes done, and decodes
// for an answer exactly as it decodes whole, less the basis.
func TestPeekAndAnswerDecodeAgreeWithDecode(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "search.v*.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("golden records: %v, %v", files, err)
	}
	// A prop is Yandex's opaque text: one that looks like a member must not fool the peek.
	tricky := bytes.Replace(read(t, "search.v2.pending.json"), []byte(`"yandex-props-1"`), []byte(`"\"done_at\":\"2026-12-01T12:00:00Z\"}"`), 1)
	records := map[string][]byte{"tricky props": tricky}
	for _, f := range files {
		records[filepath.Base(f)] = read(t, filepath.Base(f))
	}
	for name, data := range records {
		whole, err := DecodeSearch(goldenID, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		done, err := PeekSearchDone(data)
		if err != nil || done != (whole.DoneAt != nil) {
			t.Errorf("%s: peek done = %v, %v; decoded done %v", name, done, err, whole.DoneAt != nil)
		}
		answer, err := DecodeSearchAnswer(goldenID, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if answer.Basis != nil {
			t.Errorf("%s: the answer's decode read the basis", name)
		}
		whole.Basis = nil
		a, _ := EncodeSearch(answer)
		w, _ := EncodeSearch(whole)
		if !bytes.Equal(a, w) {
			t.Errorf("%s: answer decode differs:\n got %s\nwant %s", name, a, w)
		}
	}
	for _, bad := range []string{``, `[]`, `{"schema":2,`, `{"done_at":`, `nonsense`} {
		if _, err := PeekSearchDone([]byte(bad)); err == nil {
			t.Errorf("PeekSearchDone(%q) found no fault", bad)
		}
	}
}

func goldenBasis(at time.Time) *Basis {
	until := time.Date(2026, 12, 31, 0, 0, 0, 0, time.FixedZone("MSK", 3*3600))
	lapse := until.AddDate(0, 0, 1)
	return &Basis{
		ScoreBasis: ScoreBasis{Snapshot: "sha256:" + strings.Repeat("0f", 16),
			Row:    &PreapprovalRow{Kind: PreApproved, Limit: money.Roubles(1000000), Grade: "A", ValidUntil: until},
			Policy: 3},
		ScoredAt: at.Add(5 * time.Millisecond), Verdict: Approved, Kind: PreApproved, Grade: "A",
		Amount: &AmountRange{Min: money.Roubles(30000), Max: money.Roubles(1000000)}, Term: &TermRange{Min: 12, Max: 60},
		ValidUntil: &lapse, Catalog: 7, Ceilings: 2, Quarters: []string{"2026-Q4", "2027-Q1"}, Pricing: PricingVersion,
		MaxOffers: 10, PricedAt: at.Add(9 * time.Millisecond), LinksUntil: lapse,
		Trail: map[string]string{"cash-standard": "offered", "cash-premium": "grade_not_priced"},
	}
}

// What outlives a deploy longest is pinned too: a done record with its decision's basis (kept
// 24 hours in the bucket, a year in the audit trail), the verdict message with its basis, and
// an audit batch, which explain reads back for a year.
func TestKeptLongestGolden(t *testing.T) {
	req := goldenRequest()
	offers, err := EncodeOffers([]Offer{goldenOffer()})
	if err != nil {
		t.Fatal(err)
	}
	done, err := NewSearch(req, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").Finish(offers, []string{"approved"}, req.RequestedAt.Add(40*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done.Basis = goldenBasis(req.RequestedAt)
	b := done.Basis
	scored := &Scored{Request: req, Verdict: b.Verdict, Kind: b.Kind, Amount: b.Amount, Term: b.Term, Grade: b.Grade,
		Reasons: []string{"preapproved"}, ScoredAt: b.ScoredAt, ValidUntil: b.ValidUntil, Basis: &b.ScoreBasis}
	rejectedAt := req.RequestedAt.Add(10 * time.Second)
	rejected, _ := NewSearch(req, "").Finish(nil, []string{ReasonDeadline}, rejectedAt)
	rejected.Request.SearchID = "6f0e2d1c-3b4a-4958-8776-a5b4c3d2e1f0"
	record, _ := EncodeSearch(AuditRecord(done))
	rejectedRecord, _ := EncodeSearch(AuditRecord(rejected))
	batch := &AuditBatch{Records: []AuditEntry{{SearchID: goldenID, Record: record}, {SearchID: rejected.Request.SearchID, Record: rejectedRecord}}}

	encode := map[string]func() ([]byte, error){
		"search.v2.done.basis.json": func() ([]byte, error) { return EncodeSearch(done) },
		"loan.v1.scored.basis.json": func() ([]byte, error) { return json.Marshal(scored) },
		"audit.v1.decisions.json":   func() ([]byte, error) { return json.Marshal(batch) },
		// The payload as the writer stores it (S2 of the JSON), in base64 to keep the file text.
		"audit.v1.decisions.s2.base64": func() ([]byte, error) {
			data, err := json.Marshal(batch)
			return []byte(base64.StdEncoding.EncodeToString(CompressAuditBatch(data))), err
		},
	}
	for name, enc := range encode {
		data, err := enc()
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, data)
	}

	// And they read back, field for field.
	back, err := DecodeSearch(goldenID, read(t, "search.v2.done.basis.json"))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := EncodeSearch(back); !bytes.Equal(again, bytes.TrimSpace(read(t, "search.v2.done.basis.json"))) {
		t.Errorf("the record with its basis does not read back as written:\n%s", again)
	}
	if got := back.Basis; got == nil || got.Row == nil || got.Row.Limit != money.Roubles(1000000) || got.Policy != 3 || got.Catalog != 7 ||
		got.Ceilings != 2 || len(got.Quarters) != 2 || got.Trail["cash-premium"] != "grade_not_priced" || !got.LinksUntil.Equal(b.LinksUntil) ||
		!got.Row.ValidUntil.Equal(b.Row.ValidUntil) || got.Pricing != PricingVersion {
		t.Errorf("basis read back = %+v", got)
	}
	sc, err := DecodeScored(read(t, "loan.v1.scored.basis.json"))
	if err != nil || sc.Basis == nil || sc.Basis.Snapshot != b.Snapshot || sc.Basis.Row.Grade != "A" || sc.Basis.Policy != 3 || !sc.Request.SameAs(req) {
		t.Errorf("scored with its basis = %+v, %v", sc, err)
	}
	ab, err := DecodeAuditBatch(read(t, "audit.v1.decisions.json"))
	if err != nil || len(ab.Records) != 2 {
		t.Fatalf("audit batch = %+v, %v", ab, err)
	}
	kept, err := DecodeSearch(ab.Records[0].SearchID, ab.Records[0].Record)
	if err != nil || kept.Request.PhoneMasked != "" || kept.Request.Props != nil || kept.Basis == nil || kept.Basis.Catalog != 7 ||
		kept.Decision() != HasApprove {
		t.Errorf("the audit batch's first record = %+v, %v", kept, err)
	}
	gone, err := DecodeSearch(ab.Records[1].SearchID, ab.Records[1].Record)
	if err != nil || gone.Decision() != Rejected || gone.Reasons[0] != ReasonDeadline || !gone.DoneAt.Equal(rejectedAt) {
		t.Errorf("the audit batch's second record = %+v, %v", gone, err)
	}
	// The compressed payload reads back as the same batch, and only under its header.
	payload, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(read(t, "audit.v1.decisions.s2.base64"))))
	if err != nil {
		t.Fatal(err)
	}
	ab2, err := DecodeAuditMsg(AuditEncodingS2, payload)
	if err != nil || !reflect.DeepEqual(ab2, ab) {
		t.Errorf("compressed audit batch = %+v, %v; want %+v", ab2, err, ab)
	}
	if plain, err := DecodeAuditMsg("", read(t, "audit.v1.decisions.json")); err != nil || !reflect.DeepEqual(plain, ab) {
		t.Errorf("a batch written before compression, without the header = %+v, %v", plain, err)
	}
	if _, err := DecodeAuditMsg("", payload); !errors.Is(err, ErrInvalid) {
		t.Errorf("a compressed payload read without its header: %v; want ErrInvalid", err)
	}
	if _, err := DecodeAuditMsg("gzip", payload); !errors.Is(err, ErrInvalid) {
		t.Errorf("an unknown encoding: %v; want ErrInvalid", err)
	}
	// A payload claiming to decode to more than a batch can be is refused before decoding.
	bomb := binary.AppendUvarint(nil, maxAuditBatch+1)
	if _, err := DecodeAuditMsg(AuditEncodingS2, append(bomb, 0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an s2 payload of %d bytes decoded: %v; want ErrInvalid", maxAuditBatch+1, err)
	}
}

// What a gateway spends on each write its watch delivers, on a done record with its basis:
// a peek (no waiter: the common case on every replica but one), the answer's decode (a
// waiter), or the whole decode (what it did before):
//
//	go test ./pkg/contracts -run '^$' -bench Record -benchmem
func BenchmarkRecord(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "search.v2.done.basis.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("peek", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if done, err := PeekSearchDone(data); err != nil || !done {
				b.Fatal(done, err)
			}
		}
	})
	b.Run("decode-answer", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := DecodeSearchAnswer(goldenID, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-whole", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := DecodeSearch(goldenID, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The search id as Yandex spelled it travels beside the key: a spelling that is not the id's
// is refused, the record keeps it, and a retry spelled otherwise is the same request.
func TestSearchIDAsSent(t *testing.T) {
	req := goldenRequest()
	upper := strings.ToUpper(goldenID)
	req.Spelling = upper
	if _, err := NewLoanRequested(req); err != nil {
		t.Fatalf("a capitalised spelling of the id: %v", err)
	}
	other := req
	other.Spelling = strings.ToUpper("6f0e2d1c-3b4a-4958-8776-a5b4c3d2e1f0")
	if _, err := NewLoanRequested(other); err == nil {
		t.Error("a spelling of another id was accepted")
	}
	data, err := EncodeSearch(NewSearch(req, ""))
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeSearch(goldenID, data)
	if err != nil || back.Request.AsSent() != upper || back.Request.SearchID != goldenID {
		t.Fatalf("read back as %q spelled %q, %v", back.Request.SearchID, back.Request.AsSent(), err)
	}
	if _, err := DecodeSearch(goldenID, bytes.Replace(data, []byte(upper), []byte(strings.ToUpper("6f0e2d1c-3b4a-4958-8776-a5b4c3d2e1f0")), 1)); err == nil {
		t.Error("a record spelling its id as another was read")
	}
	lower := goldenRequest()
	if !lower.SameAs(req) || lower.AsSent() != goldenID {
		t.Errorf("a retry spelled otherwise is another request, or the lowercase one has a spelling %q", lower.AsSent())
	}
}

// A request names the key its phone hash is made with and, during a rotation, carries the
// hash under each earlier key; a record keeps the key's name and never the earlier hashes.
func TestRequestKeys(t *testing.T) {
	req := goldenRequest()
	req.PhoneKey = "0123456789abcdef"
	req.EarlierHashes = map[string]string{"fedcba9876543210": strings.Repeat("ab", 32)}
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "loan.v1.requested.keys.json", data)
	got, err := DecodeLoanRequested(read(t, "loan.v1.requested.keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"0123456789abcdef": req.PhoneHash, "fedcba9876543210": strings.Repeat("ab", 32), "1111111111111111": ""} {
		if h, ok := got.HashUnder(id); h != want || ok != (want != "") {
			t.Errorf("HashUnder(%s) = %q, %v", id, h, ok)
		}
	}
	if h, ok := goldenRequest().HashUnder("1111111111111111"); !ok || h != req.PhoneHash {
		t.Error("a request naming no key is not taken for any")
	}
	rec, err := EncodeSearch(NewSearch(*got, ""))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rec), "earlier") || !strings.Contains(string(rec), `"phone_key":"0123456789abcdef"`) {
		t.Errorf("record %s", rec)
	}
	back, err := DecodeSearch(goldenID, rec)
	if err != nil || back.Request.PhoneKey != req.PhoneKey {
		t.Fatalf("record read back: %+v, %v", back, err)
	}
	for name, mutate := range map[string]func(*LoanRequested){
		"a key id not in hex":           func(r *LoanRequested) { r.PhoneKey = "not-a-key-id-123" },
		"earlier hashes without a key":  func(r *LoanRequested) { r.PhoneKey = "" },
		"an earlier hash under its key": func(r *LoanRequested) { r.EarlierHashes = map[string]string{r.PhoneKey: r.PhoneHash} },
		"an earlier hash not a hash":    func(r *LoanRequested) { r.EarlierHashes = map[string]string{"fedcba9876543210": "x"} },
		"too many earlier hashes": func(r *LoanRequested) {
			r.EarlierHashes = map[string]string{"1111111111111111": r.PhoneHash, "2222222222222222": r.PhoneHash, "3333333333333333": r.PhoneHash}
		},
	} {
		bad := req
		mutate(&bad)
		if _, err := NewLoanRequested(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The written-out shapes accept and refuse what the regular expressions they replace did.
func TestShapesAsTheRegularExpressions(t *testing.T) {
	for _, tc := range []struct {
		re    *regexp.Regexp
		shape func(string) bool
		in    []string
	}{
		{regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`), searchIDPattern.MatchString,
			[]string{goldenID, strings.ToUpper(goldenID), goldenID + "0", goldenID[:35], strings.ReplaceAll(goldenID, "-", "_"),
				"e2b4948b-7d8a-4eec-875c-b1c11d7d837g", "e2b4948b7d8a-4eec-875c-b1c11d7d83722", "", "e2b4948b-7d8a-4eec-875c-b1c11d7d837\n"}},
		{regexp.MustCompile(`^[0-9a-f]{64}$`), phoneHashPattern.MatchString,
			[]string{strings.Repeat("ab", 32), strings.Repeat("AB", 32), strings.Repeat("ab", 31), strings.Repeat("ab", 32) + "a", strings.Repeat("g", 64), ""}},
		{regexp.MustCompile(`^[0-9a-f]{16}$`), phoneKeyPattern.MatchString,
			[]string{"0123456789abcdef", "0123456789abcde", "0123456789abcdeF", "0123456789abcdef0", ""}},
	} {
		for _, s := range tc.in {
			if got, want := tc.shape(s), tc.re.MatchString(s); got != want {
				t.Errorf("%q: %v, the expression %s says %v", s, got, tc.re, want)
			}
		}
	}
}

// A link reference holds its alphabet's characters and nothing else, a byte at a time.
func TestRefAlphabet(t *testing.T) {
	for ref, ok := range map[string]bool{
		"k2026-12~AbC_d-e.f": true, refAlphabet: true, "": false, "a b": false, `a"b`: false,
		"é": false, "a\x00": false, "a/b": false, "a+b": false, "a=": false, "\xff": false,
	} {
		if got := ref != "" && inRefAlphabet(ref); got != ok {
			t.Errorf("%q: accepted %v, want %v", ref, got, ok)
		}
	}
	if err := checkRefs(nil, []string{"a b"}); err == nil || !strings.Contains(err.Error(), "is not one") {
		t.Errorf("a reference outside the alphabet: %v", err)
	}
}
