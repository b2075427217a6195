package phone

import (
	"regexp"
	"strings"
	"testing"
)

var canonicalForm = regexp.MustCompile(`^\+7[0-9]{10}$`)

// Whatever is typed, an accepted number is canonical, parses back to itself, keeps the
// digits that were typed, and its masked form shows only the last four of them.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"9330445040", "+7 933 044-50-40", "8 (933) 044.50.40", "79330445040", "+8 933", "", "+", "٣٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			if n != (Number{}) {
				t.Fatalf("Parse(%q) failed with a number %#v", s, n)
			}
			return
		}
		c := n.Canonical()
		if !canonicalForm.MatchString(c) {
			t.Fatalf("Parse(%q).Canonical() = %q", s, c)
		}
		if again, err := Parse(c); err != nil || again != n {
			t.Fatalf("Parse(%q) = %#v, %v; want the number itself", c, again, err)
		}
		var typed strings.Builder
		for _, r := range s {
			if r >= '0' && r <= '9' {
				typed.WriteRune(r)
			}
		}
		if !strings.HasSuffix(typed.String(), c[2:]) {
			t.Fatalf("Parse(%q) = %s: not the digits typed", s, c)
		}
		if m := n.Masked(); m != "+7******"+c[8:] || n.String() != m || strings.Contains(n.GoString(), c[2:8]) {
			t.Fatalf("masked forms of %s: %q %q %q", c, m, n.String(), n.GoString())
		}
	})
}
