package policy

import (
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

const benchClients = 1_000_000

// benchIndex reads a generated export of one million clients, each with a loan and a card
// offer, into an index.
func benchIndex(b *testing.B) (*preapproval.Index, *phone.Hasher) {
	h, err := phone.NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(preapproval.GenerateWith(pw, preapproval.GenerateOptions{Rows: 2 * benchClients, Seed: 44, AllProducts: true, ValidFrom: now}))
	}()
	defer pr.Close()
	r := preapproval.NewReader(pr, h)
	var bld preapproval.Builder
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := bld.Add(rec); err != nil {
			b.Fatal(err)
		}
	}
	return bld.Index(), h
}

// BenchmarkLookupDecide is the per-search work of scoring: read the phone hash off the
// message, look the client up among a million (two million offers), decide. Requests hit
// random clients, so most look-ups miss the CPU caches as they would in service; "miss" asks
// for phones the index does not hold.
func BenchmarkLookupDecide(b *testing.B) {
	ix, _ := benchIndex(b)
	p := Default()
	all := make([][32]byte, 0, ix.Len())
	for rec := range ix.All() {
		all = append(all, rec.Hash)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const pool = 1 << 16
	reqs := func(hit bool) []contracts.LoanRequested {
		out := make([]contracts.LoanRequested, pool)
		for i := range out {
			h := all[rng.IntN(len(all))]
			if !hit {
				h[31] ^= 0x5a
			}
			products := [...]contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard}
			out[i] = request(products[i%2], int64(50_000+rng.IntN(900_000)), 6+rng.IntN(60))
			out[i].PhoneHash = hex.EncodeToString(h[:])
		}
		return out
	}
	for _, bc := range []struct {
		name string
		hit  bool
	}{{"clients=1M,hit", true}, {"clients=1M,miss", false}} {
		b.Run(bc.name, func(b *testing.B) {
			rs := reqs(bc.hit)
			approved := 0
			i := 0
			for b.Loop() {
				req := rs[i%pool]
				i++
				hash, err := phone.ParseHex(req.PhoneHash)
				if err != nil {
					b.Fatal(err)
				}
				var recp *preapproval.Record
				if rec, ok := ix.Lookup(hash, req.ProductType); ok {
					recp = &rec
				}
				if Decide(p, recp, req, now).Verdict == contracts.Approved {
					approved++
				}
			}
			if bc.hit == (approved == 0) {
				b.Fatalf("%d of %d approved", approved, i)
			}
		})
	}
}
