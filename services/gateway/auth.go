package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/time/rate"
)

// authenticate enforces spec §7: an allowed source network, then a bearer token or the
// Basic client id and secret, whichever are configured. Failures are 403, as the pages
// document.
func (g *gateway) authenticate(next http.Handler) http.Handler {
	a := g.cfg.Auth
	tokens := make([][32]byte, len(a.Tokens))
	for i, t := range a.Tokens {
		tokens[i] = sha256.Sum256([]byte(t))
	}
	id, secret := sha256.Sum256([]byte(a.ClientID)), sha256.Sum256([]byte(a.ClientSecret))
	needCredentials := len(tokens) > 0 || a.ClientID != ""
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.AllowedNetworks) > 0 && !allowed(a.AllowedNetworks, clientIP(r, a.ClientIPHeader)) {
			g.fail(w, r, "", &Error{Code: EForbidden, Message: "Доступ с этого адреса запрещён"})
			return
		}
		if needCredentials && !credentialsOK(r, tokens, a.ClientID != "", id, secret) {
			g.fail(w, r, "", &Error{Code: EForbidden, Message: "Неверные или отсутствующие учётные данные"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// credentialsOK compares hashes of what was sent with hashes of what is configured, in
// constant time: hashing first makes the comparison independent of the lengths too.
func credentialsOK(r *http.Request, tokens [][32]byte, basic bool, id, secret [32]byte) bool {
	h := r.Header.Get("Authorization")
	if scheme, token, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		match := 0
		for _, t := range tokens {
			match |= subtle.ConstantTimeCompare(sum[:], t[:])
		}
		return match == 1
	}
	if user, pass, ok := r.BasicAuth(); ok && basic {
		u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
		return subtle.ConstantTimeCompare(u[:], id[:])&subtle.ConstantTimeCompare(p[:], secret[:]) == 1
	}
	return false
}

// clientIP is the caller's address: the last entry of the configured proxy header (the
// one our own proxy appended; earlier entries are the client's word), else the peer.
func clientIP(r *http.Request, header string) netip.Addr {
	if header != "" {
		if v := r.Header.Values(header); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a.Unmap()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func allowed(nets []netip.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// rateLimit applies RATE_LIMIT across all callers: the limit protects the bank's
// JetStream write budget, which all callers share.
func (g *gateway) rateLimit(next http.Handler) http.Handler {
	if g.cfg.RateLimit <= 0 {
		return next
	}
	lim := rate.NewLimiter(rate.Limit(g.cfg.RateLimit), g.cfg.RateBurst)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !lim.Allow() {
			g.fail(w, r, "", &Error{Code: ERateLimit, Message: "Слишком много запросов; повторите позже"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
