// Package searchcmd is yactl search: it explains a past search to the bank's support desk, risk team or the
// regulator: how it was decided, from what, and whether it would be decided the same way
// again.
//
//	yactl search explain [-since TIME] SEARCH_ID
//
// It finds the search in the searches bucket while it is retained (SEARCH_RETENTION), and
// then in the audit trail (AUDIT_RETENTION, a year), and prints the request (with the masked
// phone while the bucket holds it, the keyed hash always, never the number), scoring's
// verdict from the recorded pre-approval row and policy revision, every catalog product of
// the asked type and what became of it, and the offers' figures. It then replays the
// decision from the recorded revisions and says "identical" (the offers byte for byte, with
// the links' recorded tokens) or lists every difference. -since (2006-01-02 or RFC 3339)
// starts the audit trail's scan at that time instead of its beginning: a search made on a
// known day is found without reading the year.
//
// It connects with the services' NATS_* variables (the auditor user in production). Exit
// status: 0 found and identical; 1 not found, a difference, or a failure; 2 usage.
package searchcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/cmd/internal/explain"
	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
)

var errUsage = cli.Usage("yactl search explain [-since TIME] SEARCH_ID")

// errDiffers is the answer for a search that would not be decided the same way again.
var errDiffers = errors.New("the replay differs from the recorded decision")

func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "explain" {
		return errUsage
	}
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sinceText := fs.String("since", "", "read the audit trail from this time (2006-01-02 or RFC 3339), not from its start")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
		return errUsage
	}
	var since time.Time
	if *sinceText != "" {
		var err error
		if since, err = parseTime(*sinceText); err != nil {
			return fmt.Errorf("%w (-since %q: %v)", errUsage, *sinceText, err)
		}
	}
	return bus.WithJetStream(ctx, getenv, "yactl search", func(js jetstream.JetStream, _ config.NATS) error {
		rep, err := explain.Explain(ctx, js, fs.Arg(0), since, stdout)
		if err != nil {
			return err
		}
		if len(rep.Scoring.Diffs)+len(rep.Pricing.Diffs) > 0 {
			return errDiffers
		}
		return nil
	})
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02", s, time.FixedZone("MSK", 3*60*60))
}
