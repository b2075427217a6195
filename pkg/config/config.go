// Package config reads settings from environment variables with defaults and collects
// every problem, so that a service refuses to start with one message naming all bad
// variables instead of failing on them one at a time. Only a main reads the environment;
// it passes os.Getenv (or a test's map) in as a Getenv.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Getenv looks a variable up; os.Getenv fits.
type Getenv func(string) string

// Reader reads typed variables and remembers what was wrong with them.
type Reader struct {
	getenv Getenv
	errs   []error
}

// NewReader returns a Reader over getenv.
func NewReader(getenv Getenv) *Reader { return &Reader{getenv: getenv} }

// Err returns every problem found so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Fail records a problem with a variable that the caller checked itself.
func (r *Reader) Fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (r *Reader) lookup(name string) (string, bool) {
	v := strings.TrimSpace(r.getenv(name))
	return v, v != ""
}

// String returns the variable, or def when it is unset or blank.
func (r *Reader) String(name, def string) string {
	if v, ok := r.lookup(name); ok {
		return v
	}
	return def
}

// Secret returns the variable untrimmed (a secret may have meaningful spaces), or def.
func (r *Reader) Secret(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// List returns the comma-separated variable as trimmed, non-empty items.
func (r *Reader) List(name string) []string {
	v, _ := r.lookup(name)
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Int returns the variable as an integer in [min, max], or def.
func (r *Reader) Int(name string, def, min, max int) int {
	v, ok := r.lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.Fail(name, "%q is not a whole number from %d to %d", v, min, max)
		return def
	}
	return n
}

// Float returns the variable as a number in [min, max], or def.
func (r *Reader) Float(name string, def, min, max float64) float64 {
	v, ok := r.lookup(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < min || f > max {
		r.Fail(name, "%q is not a number from %g to %g", v, min, max)
		return def
	}
	return f
}

// Bool returns the variable as a boolean (1/0, true/false, yes/no), or def.
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.lookup(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	r.Fail(name, "%q is not a boolean (true/false)", v)
	return def
}

// Duration returns the variable as a Go duration ("1.5s", "24h") in [min, max], or def.
func (r *Reader) Duration(name string, def, min, max time.Duration) time.Duration {
	v, ok := r.lookup(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min || d > max {
		r.Fail(name, "%q is not a duration from %s to %s (for example 1.5s)", v, min, max)
		return def
	}
	return d
}

// Bytes returns the variable as a size in [min, max], or def: a whole number of bytes, or
// one with a binary unit, "512MiB", "8GiB", "1TiB" (the units JetStream's own limits are
// read in; a decimal "GB" is refused rather than guessed at).
func (r *Reader) Bytes(name string, def, min, max int64) int64 {
	v, ok := r.lookup(name)
	if !ok {
		return def
	}
	n, err := ParseBytes(v)
	if err != nil || n < min || n > max {
		r.Fail(name, "%q is not a size from %s to %s (for example 8GiB)", v, FormatBytes(min), FormatBytes(max))
		return def
	}
	return n
}

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}, {"", 0}}

// ParseBytes reads a size as Bytes does.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64>>u.shift {
			return 0, fmt.Errorf("%q is not a size (for example 8GiB)", s)
		}
		return n << u.shift, nil
	}
	return 0, fmt.Errorf("%q is not a size (for example 8GiB)", s)
}

// FormatBytes writes n in the largest binary unit that divides it.
func FormatBytes(n int64) string {
	for _, u := range byteUnits[:4] {
		if n > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Addr returns the variable as a host:port listen address, or def.
func (r *Reader) Addr(name, def string) string {
	v := r.String(name, def)
	if v == "" {
		return v
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		r.Fail(name, "%q is not a host:port address", v)
		return def
	}
	return v
}

// Prefixes returns the comma-separated CIDR networks in the variable.
func (r *Reader) Prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, item := range r.List(name) {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			r.Fail(name, "%q is not a CIDR network such as 203.0.113.0/24", item)
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

// OneOf returns the variable if it is one of allowed, or def.
func (r *Reader) OneOf(name, def string, allowed ...string) string {
	v := r.String(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.Fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

// Loopback reports whether a listen or dial address (host:port, or a URL like
// nats://host:port) stays on this machine. An empty host listens on every interface: not
// loopback.
func Loopback(addr string) bool {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	if at := strings.LastIndex(addr, "@"); at >= 0 {
		addr = addr[at+1:] // credentials in a URL
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
