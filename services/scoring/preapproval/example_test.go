package preapproval_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// The export as the bank writes it: a header, then one row per phone and product. Bad rows
// are reported with their line and skipped; the reader goes on.
func ExampleReader() {
	export := `phone,product_type,decision,limit,grade,valid_until
+7 933 044-50-40,loan,pre_approved,1000000,A,2026-12-31
89330445040,credit_card,full_approved,150000.50,B,2026-12-31
9001112233,mortgage,pre_approved,100000,A,2026-12-31
`
	h, _ := phone.NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	r := preapproval.NewReader(strings.NewReader(export), h)
	for {
		rec, err := r.Next()
		var rowErr *preapproval.RowError
		switch {
		case err == io.EOF:
			return
		case errors.As(err, &rowErr):
			fmt.Println("skipped", rowErr)
			continue
		case err != nil:
			fmt.Println(err)
			return
		}
		fmt.Printf("%x… %s %s %s roubles, grade %s, until %s\n", rec.Hash[:4], rec.Product, rec.Kind,
			rec.Limit, rec.Grade, rec.Expires().Add(-time.Second).Format(time.DateTime+" MST"))
	}
	// Output:
	// 2687a8d3… loan pre_approved 1000000 roubles, grade A, until 2026-12-31 23:59:59 MSK
	// 2687a8d3… credit_card full_approved 150000.5 roubles, grade B, until 2026-12-31 23:59:59 MSK
	// skipped line 4: product_type: want loan or credit_card
}

// The import writes a snapshot as it reads; a scoring replica loads it into an index,
// after checking that its phones were hashed with the same key.
func ExampleReadSnapshot() {
	h, _ := phone.NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	export := "phone,product_type,decision,limit,grade,valid_until\n9330445040,loan,pre_approved,500000,B,2026-12-31\n"

	var snapshot bytes.Buffer
	sw := preapproval.NewSnapshotWriter(&snapshot, preapproval.KeyFingerprint(h), time.Date(2026, 7, 1, 3, 0, 0, 0, time.UTC))
	r := preapproval.NewReader(strings.NewReader(export), h)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.As(err, new(*preapproval.RowError)) {
			continue // counted and shown by the import
		}
		if err == nil {
			err = sw.Write(rec)
		}
		if err != nil {
			fmt.Println(err) // no snapshot today
			return
		}
	}
	if err := sw.Close(); err != nil {
		fmt.Println(err)
		return
	}

	ix, err := preapproval.ReadSnapshot(&snapshot)
	if err == nil {
		err = ix.CheckKey(h)
	}
	if err != nil {
		fmt.Println(err) // keep the index in use
		return
	}
	n, _ := phone.Parse("8 (933) 044-50-40")
	rec, ok := ix.Lookup(h.Sum(n), contracts.ProductLoan)
	fmt.Println(ok, rec.Limit, rec.Grade, rec.Expired(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)))
	_, ok = ix.Lookup(h.Sum(n), contracts.ProductCreditCard)
	fmt.Println(ok)
	// Output:
	// true 500000 B true
	// false
}
