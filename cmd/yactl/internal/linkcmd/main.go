// Package linkcmd is yactl links: it makes the keys that sign proposal links and checks links the way the
// bank's site does (package pkg/offerlink).
//
//	yactl links keygen KID              print a new key set (private: keep it in a Secret)
//	yactl links add FILE KID            print FILE's set with a new key KID added
//	yactl links public FILE             print FILE's public keys: the JWKS document
//	yactl links verify [-jwks URL|FILE] [-issuer ISS] [-at TIME] LINK
//	                                check a link: its claims, or why it is refused
//
// verify checks against the JWKS document at -jwks (a URL, such as the conversions
// service's /.well-known/jwks.json, or a file); without it, against LINK_KEYS_FILE.
// -issuer defaults to LINK_ISSUER (yacredits); -at (RFC 3339) judges expiry at another
// time than now. It prints the claims as JSON and exits 0 for a valid link, prints the
// reason and exits 1 for a refused one, and exits 2 for a command line it does not
// understand.
//
// Rotation, with no broken links: `yactl links add keys.json 2027-01 > new.json`; put the new
// set's public half where links are verified first (the conversions service's
// LINK_KEYS_FILE, and any site that caches the JWKS); then give offers the new set with
// LINK_KEY_ID=2027-01; drop the old key once LINK_LIFETIME has passed.
package linkcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/offerlink"
)

var errUsage = cli.Usage("yactl links keygen KID | add FILE KID | public FILE | verify [-jwks URL|FILE] [-issuer ISS] [-at TIME] LINK")

func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch {
	case cmd == "keygen" && len(rest) == 1:
		k, err := offerlink.GenerateKey(rest[0])
		if err != nil {
			return err
		}
		return printSet(stdout, offerlink.NewKeySet(k))
	case cmd == "add" && len(rest) == 2:
		set, err := readSet(rest[0])
		if err != nil {
			return err
		}
		if !set.Private() {
			return fmt.Errorf("%s holds public keys: add keys to the private set", rest[0])
		}
		for _, id := range set.IDs() {
			if id == rest[1] {
				return fmt.Errorf("%s already has a key %q", rest[0], rest[1])
			}
		}
		k, err := offerlink.GenerateKey(rest[1])
		if err != nil {
			return err
		}
		return printSet(stdout, set.With(k))
	case cmd == "public" && len(rest) == 1:
		set, err := readSet(rest[0])
		if err != nil {
			return err
		}
		data, err := json.MarshalIndent(set.Public(), "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", data)
		return err
	case cmd == "verify":
		return verify(ctx, rest, getenv, stdout, stderr)
	}
	return errUsage
}

func verify(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jwks := fs.String("jwks", "", "the JWKS document: a URL or a file (default: LINK_KEYS_FILE)")
	issuer := fs.String("issuer", "", "the issuer links must name (default: LINK_ISSUER, or yacredits)")
	at := fs.String("at", "", "judge expiry at this RFC 3339 time instead of now")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return errUsage
	}
	r := config.NewReader(getenv)
	cfg := offerlink.ReadConfig(r)
	if *jwks == "" {
		if err := r.Err(); err != nil {
			return err
		}
	}
	if *issuer == "" {
		*issuer = cfg.Issuer
	}
	now := time.Now
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("%w (-at is RFC 3339, not %q)", errUsage, *at)
		}
		now = func() time.Time { return t }
	}
	keys := cfg.Keys
	if *jwks != "" {
		var err error
		if keys, err = fetchSet(ctx, *jwks); err != nil {
			return err
		}
	}
	if keys == nil {
		return errors.New("no keys: give -jwks, or set LINK_KEYS_FILE")
	}
	claims, err := offerlink.NewVerifier(keys, *issuer, now).VerifyLink(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("refused (%s): %w", offerlink.Reason(err), err)
	}
	data, _ := json.MarshalIndent(claims, "", "  ")
	_, err = fmt.Fprintf(stdout, "valid until %s\n%s\n", time.Unix(claims.Expiry, 0).UTC().Format(time.RFC3339), data)
	return err
}

func printSet(w io.Writer, set *offerlink.KeySet) error {
	data, err := set.Marshal()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

func readSet(path string) (*offerlink.KeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return offerlink.ParseKeySet(data)
}

// fetchSet reads a JWKS document from a URL or a file.
func fetchSet(ctx context.Context, from string) (*offerlink.KeySet, error) {
	if !strings.HasPrefix(from, "http://") && !strings.HasPrefix(from, "https://") {
		return readSet(from)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, from, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the JWKS: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the JWKS: %s", res.Status)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return offerlink.ParseKeySet(data)
}
