package scoring

import (
	"errors"
	"io"
	"strings"
	"testing"
	"weak"

	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// A swap collects the index it replaces before it returns, so that a replica does not hold
// two indexes until the next collection: a reference left on swap's stack kept a million
// clients alive once.
func TestSwapCollectsTheReplacedIndex(t *testing.T) {
	h, err := phone.NewHasher([]byte("scoring-internal-test-key-0123456789ab"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := phone.NewKeyring([]byte("scoring-internal-test-key-0123456789ab"))
	if err != nil {
		t.Fatal(err)
	}
	s := newSnapshots(nil, keys, demoSeed(), zerolog.Nop())
	first := put(t, s, h, "n1")
	if first.Value() == nil {
		t.Fatal("the index in use was collected")
	}
	put(t, s, h, "n2")
	if first.Value() != nil {
		t.Fatal("the replaced index outlived the swap")
	}
	if s.index() == nil || s.cur.Load().nuid != "n2" {
		t.Fatal("the new index is not in use")
	}
}

// put swaps in an index of the demo data and returns a weak pointer to it, keeping no
// reference of its own.
func put(t *testing.T, s *snapshots, h *phone.Hasher, nuid string) weak.Pointer[preapproval.Index] {
	t.Helper()
	r := preapproval.NewReader(strings.NewReader(string(demoPreapprovals)), h)
	var b preapproval.Builder
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = b.Add(rec)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ix := b.Index()
	s.swap(&served{ix: ix, name: "current", nuid: nuid}, 0, 0)
	return weak.Make(ix)
}
