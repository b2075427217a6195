// Package money holds the two fixed-point quantities the API deals in: roubles counted in
// kopecks, and percentages counted in thousandths of a percent. Both are integers so that
// stored and transmitted values never carry binary floating-point drift; arithmetic that
// needs fractions (annuities, the full cost of credit) works in float64 or big.Rat and
// rounds once, into one of these types.
package money

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// Amount is a sum of money in kopecks (1/100 of a rouble).
type Amount int64

// Rate is a percentage in thousandths of a percent: 19.9 % is Rate(19900). Interest rates
// and the full cost of credit are published with three decimals, so this is exact for them.
type Rate int64

// ErrSyntax is returned for text that is not a plain decimal number.
var ErrSyntax = errors.New("not a decimal number")

// ErrPrecision is returned when a number has more decimals than the type can hold exactly.
var ErrPrecision = errors.New("too many decimal places")

// ErrRange is returned when a number does not fit in 64 bits.
var ErrRange = errors.New("number out of range")

// Roubles returns the Amount of n whole roubles.
func Roubles(n int64) Amount { return Amount(n * 100) }

// Percent returns the Rate of p whole percent.
func Percent(p int64) Rate { return Rate(p * 1000) }

// ParseAmount reads a decimal such as "500000", "500000.5" or "500000.00" (at most two
// decimals, no exponent, no sign other than a leading '-') into kopecks.
func ParseAmount(s string) (Amount, error) {
	v, err := parseFixed(s, 2)
	return Amount(v), err
}

// ParseRate reads a decimal percentage with at most three decimals, such as "19.9".
func ParseRate(s string) (Rate, error) {
	v, err := parseFixed(s, 3)
	return Rate(v), err
}

// Float returns the amount in roubles as a float64, for formulas that need one.
func (a Amount) Float() float64 { return float64(a) / 100 }

// Float returns the rate in percent as a float64, for formulas that need one.
func (r Rate) Float() float64 { return float64(r) / 1000 }

// String formats the amount in roubles with the fewest decimals that keep it exact:
// "30000", "906.85", "906.5".
func (a Amount) String() string { return formatFixed(int64(a), 2) }

// String formats the rate in percent with the fewest decimals that keep it exact: "19.9".
func (r Rate) String() string { return formatFixed(int64(r), 3) }

// MarshalJSON writes the amount as a JSON number of roubles.
func (a Amount) MarshalJSON() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalJSON reads a JSON number of roubles with at most two decimals.
func (a *Amount) UnmarshalJSON(b []byte) error {
	v, err := parseFixed(string(b), 2)
	if err != nil {
		return fmt.Errorf("amount %s: %w", b, err)
	}
	*a = Amount(v)
	return nil
}

// MarshalJSON writes the rate as a JSON number of percent.
func (r Rate) MarshalJSON() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalJSON reads a JSON number of percent with at most three decimals.
func (r *Rate) UnmarshalJSON(b []byte) error {
	v, err := parseFixed(string(b), 3)
	if err != nil {
		return fmt.Errorf("rate %s: %w", b, err)
	}
	*r = Rate(v)
	return nil
}

// MarshalJSONTo writes the amount for the strict JSON encoder (go-json-experiment/json), the
// one the services use, without the detour through MarshalJSON's bytes.
func (a Amount) MarshalJSONTo(enc *jsontext.Encoder) error {
	return enc.WriteValue(jsontext.Value(a.String()))
}

// UnmarshalJSONFrom reads the amount for the strict JSON decoder.
func (a *Amount) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	return a.UnmarshalJSON(v)
}

// MarshalJSONTo writes the rate for the strict JSON encoder.
func (r Rate) MarshalJSONTo(enc *jsontext.Encoder) error {
	return enc.WriteValue(jsontext.Value(r.String()))
}

// UnmarshalJSONFrom reads the rate for the strict JSON decoder.
func (r *Rate) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	return r.UnmarshalJSON(v)
}

// parseFixed reads s as a decimal with at most decimals fraction digits and returns it
// scaled by 10^decimals. Trailing zeros beyond the precision are accepted ("1.500" for two
// decimals), so a number written with extra zeros still parses.
func parseFixed(s string, decimals int) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	whole, frac, hasDot := strings.Cut(body, ".")
	if whole == "" || (hasDot && frac == "") || !digitsOnly(whole) || !digitsOnly(frac) {
		return 0, ErrSyntax
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > decimals {
		return 0, ErrPrecision
	}
	frac += strings.Repeat("0", decimals-len(frac))
	v, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return 0, ErrRange
	}
	if neg {
		v = -v
	}
	return v, nil
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func formatFixed(v int64, decimals int) string {
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", uint64(-v)
	}
	scale := uint64(1)
	for i := 0; i < decimals; i++ {
		scale *= 10
	}
	whole, frac := u/scale, u%scale
	if frac == 0 {
		return sign + strconv.FormatUint(whole, 10)
	}
	fs := strconv.FormatUint(frac, 10)
	fs = strings.Repeat("0", decimals-len(fs)) + fs
	return sign + strconv.FormatUint(whole, 10) + "." + strings.TrimRight(fs, "0")
}
