package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/audit"
	"github.com/demobank/yacredits/services/scoring"
)

var writeFixture = flag.Bool("write-explain-fixture", false,
	"record a loan search through the binary into cmd/internal/explain/testdata (the audit batch and the documents it was decided with)")

// TestRecordExplainFixture records what explain needs of a search a year on, from the binary:
// an audit batch as the real trail wrote it, holding the search with its basis, and the
// catalog, policy and ceiling table revisions the basis names. With -write-explain-fixture it
// writes them to cmd/internal/explain/testdata, the fixture that package replays.
func TestRecordExplainFixture(t *testing.T) {
	// A ceiling table with the quarters a link made now reaches, as a bank runs with.
	table := filepath.Join(t.TempDir(), "ceilings.json")
	quarters := ""
	for i, q := range ceilingQuarters(time.Now()) {
		if i > 0 {
			quarters += ","
		}
		quarters += `{"quarter": "` + q + `", "source": "fixture", "categories": [
			{"row": "1", "product_type": "loan", "amount_over": 0, "amount_up_to": 0, "average": 33.5, "limit": 44.667},
			{"row": "2", "product_type": "credit_card", "amount_over": 0, "amount_up_to": 0, "average": 45, "limit": 60}]}`
	}
	if err := os.WriteFile(table, []byte(`{"version": 1, "quarters": [`+quarters+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := natstest.FreeAddr(t)
	sys := startSystem(t, t.TempDir(), map[string]string{"NATS_LISTEN": natsAddr, "CEILINGS_FILE": table})
	_, js := natstest.JetStream(t, "nats://"+natsAddr)
	ctx := natstest.Context(t, 60*time.Second)
	id := uuid.NewString()
	if status, body := sys.call(t, "POST", path, request(id, "9330445040", "loan")); status != 200 || body["decision"] != "has_approve" {
		t.Fatalf("POST = %d %v", status, body)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		_, _, err := audit.Find(ctx, js, id, time.Time{})
		return err
	})
	stream, err := js.Stream(ctx, contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, contracts.SubjectAudit)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := audit.Find(ctx, js, id, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Basis.Quarters) == 0 {
		t.Fatalf("no quarter of the ceiling table applied: %+v", rec.Basis)
	}
	// The fixture keeps the batch's JSON: explain's test stores it as a batch written before
	// the trail was compressed, which the trail still reads.
	plain, err := contracts.AuditBatchJSON(msg.Header.Get(contracts.AuditEncodingHeader), msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := contracts.DecodeAuditBatch(plain)
	if err != nil || len(batch.Records) == 0 || batch.Records[len(batch.Records)-1].SearchID != id {
		t.Fatalf("the trail's last batch = %v, %v; want it to end with %s", batch, err, id)
	}
	if rec.Basis == nil || rec.Request.PhoneMasked != "" || rec.Request.Props != nil {
		t.Fatalf("the trail's record: basis %v, masked phone %q, props %v", rec.Basis, rec.Request.PhoneMasked, rec.Request.Props)
	}
	dir := t.TempDir()
	if *writeFixture {
		dir = filepath.Join("..", "internal", "explain", "testdata")
	}
	files := map[string][]byte{"audit-batch.json": plain, "search-id.txt": []byte(id)}
	for name, doc := range map[string]struct {
		bucket, key string
		rev         uint64
	}{
		"catalog.json":  {offers.CatalogDocument.Bucket, offers.CatalogDocument.Key, rec.Basis.Catalog},
		"ceilings.json": {offers.CeilingDocument.Bucket, offers.CeilingDocument.Key, rec.Basis.Ceilings},
		"policy.json":   {scoring.PolicyDocument.Bucket, scoring.PolicyDocument.Key, rec.Basis.Policy},
	} {
		kv, err := js.KeyValue(ctx, doc.bucket)
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.GetRevision(ctx, doc.key, doc.rev)
		if err != nil {
			t.Fatalf("%s revision %d: %v", name, doc.rev, err)
		}
		if e.Revision() != 1 {
			t.Fatalf("%s is at revision %d: the replay test puts each document once", name, e.Revision())
		}
		files[name] = e.Value()
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ceilingQuarters names the quarter of at and the next ("2026-Q4", "2027-Q1").
func ceilingQuarters(at time.Time) []string {
	var out []string
	for _, t := range []time.Time{at, at.AddDate(0, 3, 0)} {
		out = append(out, fmt.Sprintf("%d-Q%d", t.Year(), (int(t.Month())-1)/3+1))
	}
	return out
}
