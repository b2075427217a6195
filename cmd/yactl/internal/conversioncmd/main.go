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
// ids. It asks the conversions service, on its internal address (CONVERSIONS_URL, default
// http://127.0.0.1:8090), with an operator's token (OPS_TOKEN, one of the service's
// OPS_TOKENS): the service checks every change, and no operator writes to the bucket.
// Exit status: 0 success, 1 failure, 2 usage.
package conversioncmd

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
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
	var do func(*client) error
	switch {
	case args[0] == "list" && fs.NArg() == 0 && !*failed:
		do = func(c *client) error { return list(ctx, c, *state, want, stdout) }
	case args[0] == "export" && fs.NArg() == 0 && !*failed:
		do = func(c *client) error { return export(ctx, c, *state, want, stdout) }
	case args[0] == "retry" && *state == "" && (fs.NArg() > 0) != *failed:
		do = func(c *client) error { return retry(ctx, c, fs.Args(), *failed, stdout) }
	default:
		return errUsage
	}
	c, err := newClient(getenv)
	if err != nil {
		return err
	}
	return do(c)
}

// client is the conversions service's operators' API.
type client struct {
	base, token string
	http        *http.Client
}

func newClient(getenv config.Getenv) (*client, error) {
	r := config.NewReader(getenv)
	c := &client{base: strings.TrimSuffix(r.String("CONVERSIONS_URL", "http://127.0.0.1:8090"), "/"),
		token: r.Secret("OPS_TOKEN", ""),
		// A service that does not answer is given up on; a long list is read to its end.
		http: &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			ResponseHeaderTimeout: 30 * time.Second, TLSHandshakeTimeout: 10 * time.Second}}}
	if u, err := url.Parse(c.base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.Fail("CONVERSIONS_URL", "not an http(s) address: %q", c.base)
	}
	return c, r.Err()
}

// call sends body (nil: none) and decodes a 200's JSON into out; any other answer is an
// error with the service's message.
func (c *client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("the conversions service: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		hint := ""
		if res.StatusCode == http.StatusUnauthorized {
			hint = " (is OPS_TOKEN one of the service's OPS_TOKENS?)"
		}
		return fmt.Errorf("the conversions service answered %s%s: %s", res.Status, hint, strings.TrimSpace(string(raw)))
	}
	// Decoded as it arrives: a list of a year's conversions is not held twice.
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("read the conversions service's answer: %w", err)
	}
	return nil
}

// each calls fn with every conversion the service lists, those in state alone if set.
func (c *client) each(ctx context.Context, state string, fn func(*contracts.Conversion) error) error {
	var list []*contracts.Conversion
	path := "/v1/conversions"
	if state != "" {
		path += "?state=" + url.QueryEscape(state)
	}
	if err := c.call(ctx, http.MethodGet, path, nil, &list); err != nil {
		return err
	}
	for _, conv := range list {
		if err := fn(conv); err != nil {
			return err
		}
	}
	return nil
}

func list(ctx context.Context, s *client, state string, want func(*contracts.Conversion) bool, out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATE\tCONTRACT\tAMOUNT\tREPORTED\tATTEMPTS\tLAST ERROR")
	err := s.each(ctx, state, func(c *contracts.Conversion) error {
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
func export(ctx context.Context, s *client, state string, want func(*contracts.Conversion) bool, out io.Writer) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"request_id", "offer_id", "amount", "additional_services", "contract_date", "state"})
	err := s.each(ctx, state, func(c *contracts.Conversion) error {
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

// retry asks the service to queue the conversions again; it answers which it did and why
// not the others.
func retry(ctx context.Context, s *client, ids []string, allFailed bool, out io.Writer) error {
	var ans conversions.RetryAnswer
	if err := s.call(ctx, http.MethodPost, "/v1/conversions/retry", conversions.RetryRequest{IDs: ids, Failed: allFailed}, &ans); err != nil {
		return err
	}
	for _, id := range ans.Queued {
		fmt.Fprintf(out, "%s: queued again\n", id)
	}
	if allFailed && len(ans.Queued) == 0 {
		fmt.Fprintln(out, "no failed conversions")
	}
	var errs []error
	for _, p := range ans.Problems {
		id := p.Field
		if i, ok := strings.CutPrefix(strings.TrimSuffix(p.Field, "]"), "ids["); ok {
			if n, err := strconv.Atoi(i); err == nil && n < len(ids) {
				id = ids[n]
			}
		}
		errs = append(errs, fmt.Errorf("%s: %s", id, p.Message))
	}
	return errors.Join(errs...)
}
