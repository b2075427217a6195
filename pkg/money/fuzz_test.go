package money

import (
	"errors"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

// An accepted decimal prints as one that parses back to the same value, in text and in
// JSON; a refused one is refused with one of the documented errors.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"500000", "500000.5", "500000.00", "-1.25", "0.001", "1e5", "9223372036854775808", "-0", ".5", "1."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAmount(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrPrecision) && !errors.Is(err, ErrRange) {
				t.Fatalf("ParseAmount(%q) = undocumented error %v", s, err)
			}
			return
		}
		if back, err := ParseAmount(a.String()); err != nil || back != a {
			t.Fatalf("ParseAmount(%q) = %d, prints %q, which parses to %d, %v", s, a, a.String(), back, err)
		}
		data, err := jsonv2.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var decoded Amount
		if err := jsonv2.Unmarshal(data, &decoded); err != nil || decoded != a {
			t.Fatalf("JSON %s of %d decodes to %d, %v", data, a, decoded, err)
		}
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %d, prints %q, which parses to %d, %v", s, r, r.String(), back, err)
		}
	})
}
