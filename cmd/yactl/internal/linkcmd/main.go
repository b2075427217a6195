// Package linkcmd is yactl links: it makes and rotates the keys that seal proposal links'
// references, and opens a link the way the bank's site does (package pkg/offerlink).
//
//	yactl links keygen KID              print a new key set (secret: keep it in a Secret)
//	yactl links add FILE KID            print FILE's set with a new key KID added
//	yactl links retire FILE KID         print FILE's set with key KID retired now
//	yactl links prune FILE              print FILE's set without the keys retired longer
//	                                    ago than LINK_LIFETIME, LINK_REPORTING_WINDOW and
//	                                    12 days (a day's edge and Yandex's 11 days to report)
//	yactl links verify [-at TIME] LINK  open a link: its claims, or why it is refused
//
// Every command reads and writes the whole set; none changes FILE itself. verify opens with
// LINK_KEYS_FILE (or LINK_KEYS); -at (RFC 3339) judges expiry at another time than now. It
// prints the claims as JSON and exits 0 for a valid link, prints the reason and exits 1 for
// a refused one, and exits 2 for a command line it does not understand.
//
// Rotation, with no link lost (docs/operating.md has it with dates): `add` a key and give the
// set to the conversions service first, then to offers with LINK_KEY_ID naming the new key;
// `retire` the old one once offers seals with the new; `prune` drops it once nothing it
// sealed can still be reported, and refuses to before.
package linkcmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/offerlink"
)

var errUsage = cli.Usage("yactl links keygen KID | add FILE KID | retire FILE KID | prune FILE | verify [-at TIME] LINK")

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
		if slices.Contains(set.IDs(), rest[1]) {
			return fmt.Errorf("%s already has a key %q", rest[0], rest[1])
		}
		k, err := offerlink.GenerateKey(rest[1])
		if err != nil {
			return err
		}
		return printSet(stdout, set.With(k))
	case cmd == "retire" && len(rest) == 2:
		set, err := readSet(rest[0])
		if err != nil {
			return err
		}
		if set, err = set.Retire(rest[1], time.Now()); err != nil {
			return err
		}
		return printSet(stdout, set)
	case cmd == "prune" && len(rest) == 1:
		return prune(rest[0], getenv, stdout, stderr)
	case cmd == "verify":
		return verify(rest, getenv, stdout, stderr)
	}
	return errUsage
}

// prune drops the keys retired before now less the link lifetime and the reporting window,
// and says when each key still kept may go.
func prune(file string, getenv config.Getenv, stdout, stderr io.Writer) error {
	r := config.NewReader(getenv)
	keep := offerlink.KeepRetired(offerlink.ReadLifetime(r), offerlink.ReadReportingWindow(r))
	if err := r.Err(); err != nil {
		return err
	}
	set, err := readSet(file)
	if err != nil {
		return err
	}
	now := time.Now()
	kept, dropped := set.Prune(now.Add(-keep))
	for _, kid := range dropped {
		fmt.Fprintf(stderr, "dropped %s, retired %s\n", kid, set.RetiredAt(kid).Format(time.RFC3339))
	}
	for _, kid := range kept.IDs() {
		if at := kept.RetiredAt(kid); !at.IsZero() {
			fmt.Fprintf(stderr, "kept %s, retired %s: it opens links reported until %s\n", kid, at.Format(time.RFC3339), at.Add(keep).Format(time.RFC3339))
		}
	}
	if len(kept.Sealing()) == 0 {
		return fmt.Errorf("%s would have no key left to seal with: add one first", file)
	}
	return printSet(stdout, kept)
}

func verify(args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	at := fs.String("at", "", "judge expiry at this RFC 3339 time instead of now")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return errUsage
	}
	now := time.Now
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("%w (-at is RFC 3339, not %q)", errUsage, *at)
		}
		now = func() time.Time { return t }
	}
	r := config.NewReader(getenv)
	cfg := offerlink.ReadConfig(r)
	cfg.Require(r)
	if err := r.Err(); err != nil {
		return err
	}
	claims, err := cfg.Verifier(now).Verify(fs.Arg(0))
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
