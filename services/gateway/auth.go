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
		ip := clientIP(r, a.ClientIPHeader, a.TrustedProxies)
		if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
			info.client = ip
		}
		if len(a.AllowedNetworks) > 0 && !allowed(a.AllowedNetworks, ip) {
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

// clientIP is the caller's address. The connection's peer is the caller, unless the peer is
// one of our own proxies (TRUSTED_PROXIES): then the client IP header is read from its right
// end, where our proxies append, skipping the addresses of our proxies, and the first other
// address is the caller. What lies left of it was written by the client and is never
// believed; a header from a peer that is not our proxy is not read at all.
func clientIP(r *http.Request, header string, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(r)
	if header == "" || !allowed(trusted, peer) {
		return peer
	}
	var parts []string
	for _, v := range r.Header.Values(header) {
		parts = append(parts, strings.Split(v, ",")...)
	}
	for i := len(parts) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
		if err != nil {
			return peer // our proxy wrote nothing we can read: the peer is all we know
		}
		if a = a.Unmap(); !allowed(trusted, a) {
			return a
		}
	}
	return peer
}

func peerAddr(r *http.Request) netip.Addr {
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

// newLimiter is the one RATE_LIMIT for the whole API, all callers, paths and methods
// together: the limit protects the bank's JetStream write budget, which all of them share.
// Nil when there is no limit.
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// rateLimit answers 429 with the seconds until the next request is allowed.
func (g *gateway) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.limiter == nil {
			next.ServeHTTP(w, r)
			return
		}
		if res := g.limiter.Reserve(); res.Delay() > 0 {
			wait := res.Delay()
			res.Cancel()
			g.fail(w, r, "", &Error{Code: ERateLimit, Message: "Слишком много запросов; повторите позже", RetryAfter: wait})
			return
		}
		next.ServeHTTP(w, r)
	})
}
