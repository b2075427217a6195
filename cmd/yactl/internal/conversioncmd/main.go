// Package conversioncmd is yactl conversions: it lists, exports and retries the conversions the conversions service
// keeps (the JetStream bucket contracts.BucketConversions).
//
//	yactl conversions list [-state queued|delivered|failed|refused]   one line per conversion
//	yactl conversions export [-state queued|delivered|failed]         CSV of Yandex's fields, for an upload by hand
//	yactl conversions retry ID... | -failed                     queue failed conversions again
//
// An ID is search_id.offer, as list prints it. retry moves a failed conversion (one Yandex
// refused) back to queued, once the cause is fixed; the delivery worker then sends it again
// under the same id. export writes what the worker sends (request_id is the search_id,
// offer_id the product id), so that the conversions can reach Yandex another way while its
// endpoint is down; after such an upload, the worker's later sends are repeats of the same
// ids. It connects with the services' NATS_* variables (NATS_URL, NATS_USER, NATS_PASSWORD,
// NATS_CONNECT_TIMEOUT, NATS_CA_FILE). Exit status: 0 success, 1 failure, 2 usage.
package conversioncmd

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/services/conversions"
	"github.com/demobank/yacredits/services/conversions/yandex"
)

var errUsage = cli.Usage("yactl conversions list [-state S] | export [-state S] | retry ID... | retry -failed")

func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "", "only conversions in this state: queued, delivered, failed or refused (list only)")
	failed := fs.Bool("failed", false, "retry: every failed conversion")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	switch contracts.ConversionState(*state) {
	case "", contracts.ConversionQueued, contracts.ConversionDelivered, contracts.ConversionFailed:
	case contracts.ConversionRefused: // no offer Yandex could be told of: listed, never exported
		if args[0] != "list" {
			return fmt.Errorf("%w (-state refused is for list)", errUsage)
		}
	default:
		return fmt.Errorf("%w (-state %q)", errUsage, *state)
	}
	want := func(c *contracts.Conversion) bool {
		if *state == "" {
			return args[0] == "list" || c.State != contracts.ConversionRefused
		}
		return string(c.State) == *state
	}
	switch {
	case args[0] == "list" && fs.NArg() == 0 && !*failed:
		return withStore(ctx, getenv, func(s *conversions.Store) error { return list(ctx, s, want, stdout) })
	case args[0] == "export" && fs.NArg() == 0 && !*failed:
		return withStore(ctx, getenv, func(s *conversions.Store) error { return export(ctx, s, want, stdout) })
	case args[0] == "retry" && *state == "" && (fs.NArg() > 0) != *failed:
		return withStore(ctx, getenv, func(s *conversions.Store) error { return retry(ctx, s, fs.Args(), *failed, stdout) })
	}
	return errUsage
}

func withStore(ctx context.Context, getenv config.Getenv, fn func(*conversions.Store) error) error {
	return bus.WithJetStream(ctx, getenv, "yactl conversions", func(js jetstream.JetStream, _ config.NATS) error {
		s, err := conversions.BindStore(ctx, js)
		if err != nil {
			return err
		}
		return fn(s)
	})
}

func list(ctx context.Context, s *conversions.Store, want func(*contracts.Conversion) bool, out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATE\tCONTRACT\tAMOUNT\tREPORTED\tATTEMPTS\tLAST ERROR")
	err := s.Each(ctx, func(c *contracts.Conversion) error {
		if want(c) {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.ID, c.State, c.ContractDate, c.Amount,
				c.ReportedAt.Format("2006-01-02 15:04"), c.Attempts, c.LastError)
		}
		return nil
	})
	return errors.Join(err, w.Flush())
}

// export writes the items as the delivery worker sends them (spec §9: request_id, offer_id,
// amount, additional_services), one per row, then what an operator uploading them needs beside
// them and Yandex is not sent: the contract's date and the conversion's state.
func export(ctx context.Context, s *conversions.Store, want func(*contracts.Conversion) bool, out io.Writer) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"request_id", "offer_id", "amount", "additional_services", "contract_date", "state"})
	err := s.Each(ctx, func(c *contracts.Conversion) error {
		if !want(c) {
			return nil
		}
		it := yandex.ItemOf(*c)
		return w.Write([]string{it.RequestID, it.OfferID, it.Amount.String(), strconv.FormatBool(it.AdditionalServices),
			c.ContractDate, string(c.State)})
	})
	w.Flush()
	return errors.Join(err, w.Error())
}

func retry(ctx context.Context, s *conversions.Store, ids []string, allFailed bool, out io.Writer) error {
	if allFailed {
		if err := s.Each(ctx, func(c *contracts.Conversion) error {
			if c.State == contracts.ConversionFailed {
				ids = append(ids, c.ID)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	var errs []error
	for _, id := range ids {
		if _, err := s.Requeue(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "%s: queued again\n", id)
	}
	if allFailed && len(ids) == 0 {
		fmt.Fprintln(out, "no failed conversions")
	}
	return errors.Join(errs...)
}
