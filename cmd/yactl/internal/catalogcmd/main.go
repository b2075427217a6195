// Package catalogcmd is yactl catalog, policy and ceilings: it checks and changes the bank's documents the services decide with: the
// product catalog (the default), the credit policy and the ПСК ceiling table. Each lives in
// its own JetStream bucket (contracts.BucketCatalog, BucketPolicy, BucketCeilings); every
// running replica of the service that uses it watches it and takes a new revision within a
// second, without a restart. The formats are documented in packages
// services/offers/catalog, services/scoring/policy and services/offers/ceiling.
//
//	yactl catalog|policy|ceilings validate FILE    check a file and list every problem
//	yactl catalog|policy|ceilings put FILE         check it, then store it as the one in force
//	yactl catalog|policy|ceilings get [REVISION]   print the stored one, or an earlier revision
//
// get writes the document exactly as it was put to standard output and its revision to
// standard error, so `yactl catalog get 7 > old.json && yactl catalog put old.json` rolls back.
// The buckets keep the last 64 revisions, which is also how far back a past search can be
// replayed (yactl search).
//
// put checks what one document means for the others in force: a catalog with a product that
// can exceed its category's ПСК ceiling (in the table in force, over the quarters a link made
// now can be followed in, LINK_LIFETIME) is refused, as validate refuses one above 292 %; a
// ceiling table that the catalog in force exceeds, and a policy or catalog where the policy
// approves loan terms or products that no product sells, are put with a warning. put and get
// connect with the services' NATS_* variables (NATS_URL, NATS_USER, NATS_PASSWORD,
// NATS_REPLICAS, NATS_CONNECT_TIMEOUT).
//
// The exit status is 0 on success, 1 on failure (an invalid document included) and 2 for a
// command line it does not understand.
package catalogcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/services/offers/pricing"
	"github.com/demobank/yacredits/services/scoring"
	"github.com/demobank/yacredits/services/scoring/policy"
)

var errUsage = cli.Usage("yactl catalog|policy|ceilings validate FILE | put FILE | get [REVISION]")

// doc is what the commands need of one document.
type doc struct {
	name, bucket, key string
	bind              func(context.Context, jetstream.JetStream) (jetstream.KeyValue, error)
	// check parses and validates a revision, with a summary for people ("5 products").
	check    func([]byte) (string, error)
	problems func(error) []string
	// against checks a revision about to be put against the other documents in force:
	// refusals stop the put, warnings are printed.
	against func(ctx context.Context, js jetstream.JetStream, getenv config.Getenv, data []byte) (refuse, warn []string, err error)
}

func specDoc[T any](s document.Spec[T], summary func(T) string) doc {
	return doc{
		name: s.Name, bucket: s.Bucket, key: s.Key, bind: s.Bind, problems: s.Problems,
		check: func(data []byte) (string, error) {
			v, err := s.Parse(data)
			if err != nil {
				return "", err
			}
			return summary(v), nil
		},
	}
}

func docs() map[string]doc {
	cat := specDoc(offers.CatalogDocument, func(c *catalog.Catalog) string { return fmt.Sprintf("%d products", len(c.Products)) })
	cat.against = catalogAgainst
	pol := specDoc(scoring.PolicyDocument, func(*policy.Policy) string { return "valid policy" })
	pol.against = policyAgainst
	ceil := specDoc(offers.CeilingDocument, func(t *ceiling.Table) string { return fmt.Sprintf("%d quarters", len(t.Quarters)) })
	ceil.against = ceilingsAgainst
	return map[string]doc{"": cat, "policy": pol, "ceilings": ceil}
}

// run carries out one command. Problems with a document go to stderr one per line; the
// returned error sums them up.
func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	d := docs()[""]
	if len(args) > 0 {
		if named, ok := docs()[args[0]]; ok && args[0] != "" {
			d, args = named, args[1:]
		}
	}
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch {
	case cmd == "validate" && len(rest) == 1:
		summary, _, err := d.read(rest[0], stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: valid, %s\n", rest[0], summary)
		return nil
	case cmd == "put" && len(rest) == 1:
		return d.put(ctx, rest[0], getenv, stdout, stderr)
	case cmd == "get" && len(rest) <= 1:
		var revision uint64
		if len(rest) == 1 {
			r, err := strconv.ParseUint(rest[0], 10, 64)
			if err != nil || r == 0 {
				return fmt.Errorf("%w (REVISION is a positive whole number, not %q)", errUsage, rest[0])
			}
			revision = r
		}
		return d.get(ctx, revision, getenv, stdout, stderr)
	}
	return errUsage
}

// lines are the problems of err one per line.
func (d doc) lines(err error) []string {
	if d.problems != nil {
		if p := d.problems(err); len(p) > 0 {
			return p
		}
	}
	return nil
}

// read reads and validates a file, writing every problem to stderr.
func (d doc) read(path string, stderr io.Writer) (string, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	summary, err := d.check(data)
	if err != nil {
		problems := d.lines(err)
		if problems == nil {
			// The file does not decode: there is nothing yet to list problems of.
			return "", nil, fmt.Errorf("%s: refused: %w", path, err)
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "%s: %s\n", path, p)
		}
		return "", nil, fmt.Errorf("%s: refused, %d problem(s)", path, len(problems))
	}
	return summary, data, nil
}

func (d doc) put(ctx context.Context, path string, getenv config.Getenv, stdout, stderr io.Writer) error {
	summary, data, err := d.read(path, stderr)
	if err != nil {
		return err
	}
	return withJetStream(ctx, getenv, func(js jetstream.JetStream, cfg config.NATS) error {
		if d.against != nil {
			refuse, warn, err := d.against(ctx, js, getenv, data)
			if err != nil {
				return err
			}
			for _, p := range refuse {
				fmt.Fprintf(stderr, "%s: %s\n", path, p)
			}
			if len(refuse) > 0 {
				return fmt.Errorf("%s: refused, %d problem(s) with the documents in force", path, len(refuse))
			}
			for _, w := range warn {
				fmt.Fprintf(stderr, "%s: warning: %s\n", path, w)
			}
		}
		kv, err := d.bind(ctx, js)
		if err != nil {
			return err
		}
		rev, err := kv.Put(ctx, d.key, data)
		if err != nil {
			return fmt.Errorf("put %s: %w", d.name, err)
		}
		fmt.Fprintf(stdout, "%s: put as revision %d, %s\n", path, rev, summary)
		return nil
	})
}

func (d doc) get(ctx context.Context, revision uint64, getenv config.Getenv, stdout, stderr io.Writer) error {
	return withJetStream(ctx, getenv, func(js jetstream.JetStream, _ config.NATS) error {
		kv, err := js.KeyValue(ctx, d.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("no %s yet: the %s bucket does not exist (start the service or put one)", d.name, d.bucket)
		}
		if err != nil {
			return fmt.Errorf("open bucket %s: %w", d.bucket, err)
		}
		var e jetstream.KeyValueEntry
		if revision == 0 {
			e, err = kv.Get(ctx, d.key)
		} else {
			e, err = kv.GetRevision(ctx, d.key, revision)
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && revision != 0:
			return fmt.Errorf("revision %d is not in the bucket's history", revision)
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("no %s in the bucket (start the service or put one)", d.name)
		case err != nil:
			return fmt.Errorf("get %s: %w", d.name, err)
		}
		if _, err := stdout.Write(e.Value()); err != nil {
			return err
		}
		if n := len(e.Value()); n > 0 && e.Value()[n-1] != '\n' {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stderr, "revision %d, put %s\n", e.Revision(), e.Created().UTC().Format(time.RFC3339))
		if _, err := d.check(e.Value()); err != nil {
			// Only a put around yactl catalog can store one; the services refused it.
			fmt.Fprintf(stderr, "warning: revision %d is not a valid %s, so the services do not use it:\n", e.Revision(), d.name)
			problems := d.lines(err)
			if problems == nil {
				problems = []string{err.Error()}
			}
			for _, p := range problems {
				fmt.Fprintf(stderr, "revision %d: %s\n", e.Revision(), p)
			}
		}
		return nil
	})
}

// inForce reads the latest revision of a document from its bucket; ok is false when the
// bucket or the key does not exist yet (the services then seed the built-in one).
func inForce[T any](ctx context.Context, js jetstream.JetStream, s document.Spec[T]) (v T, ok bool, err error) {
	v, err = s.Fetch(ctx, js, 0)
	if errors.Is(err, document.ErrNone) {
		return v, false, nil
	}
	return v, err == nil, err
}

// linkWindow is how long a link made now can be followed: the quarters a catalog's ceilings
// must hold in.
func linkWindow(getenv config.Getenv) (time.Duration, error) {
	r := config.NewReader(getenv)
	w := offerlink.ReadLifetime(r)
	return w, r.Err()
}

// catalogAgainst refuses a catalog above the ceilings in force and warns of policy terms
// it does not sell.
func catalogAgainst(ctx context.Context, js jetstream.JetStream, getenv config.Getenv, data []byte) ([]string, []string, error) {
	window, err := linkWindow(getenv)
	if err != nil {
		return nil, nil, err
	}
	table, ok, err := inForce(ctx, js, offers.CeilingDocument)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		if table, err = ceiling.Parse(ceiling.DefaultJSON()); err != nil {
			return nil, nil, err
		}
	}
	c, err := pricing.CheckCeilings(data, table, time.Now(), window)
	var invalid *catalog.ValidationError
	if errors.As(err, &invalid) {
		return invalid.Problems, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	pol, ok, err := inForce(ctx, js, scoring.PolicyDocument)
	if err != nil || !ok {
		pol = policy.Default()
	}
	return nil, Coverage(pol, c), nil
}

// policyAgainst warns of what the policy approves that the catalog in force does not sell.
func policyAgainst(ctx context.Context, js jetstream.JetStream, _ config.Getenv, data []byte) ([]string, []string, error) {
	pol, err := policy.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	c, ok, err := inForce(ctx, js, offers.CatalogDocument)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		if c, err = catalog.Parse(catalog.DemoJSON()); err != nil {
			return nil, nil, err
		}
	}
	return nil, Coverage(pol, c), nil
}

// ceilingsAgainst warns of the catalog products in force a new table narrows or drops.
func ceilingsAgainst(ctx context.Context, js jetstream.JetStream, getenv config.Getenv, data []byte) ([]string, []string, error) {
	window, err := linkWindow(getenv)
	if err != nil {
		return nil, nil, err
	}
	table, err := ceiling.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	c, ok, err := inForce(ctx, js, offers.CatalogDocument)
	if err != nil || !ok {
		return nil, nil, err
	}
	now := time.Now()
	var warn []string
	if table.Quarter(now) == nil {
		warn = append(warn, "the table has no values for this quarter: offers are held to the absolute 292 % alone")
	}
	for _, p := range pricing.PricingProblems(c, table.Between(now, now.Add(window))) {
		warn = append(warn, "the catalog in force: "+p+"; pricing offers it only within the ceiling, or not at all")
	}
	return nil, warn, nil
}

// withJetStream connects as the services do and calls fn.
func withJetStream(ctx context.Context, getenv config.Getenv, fn func(jetstream.JetStream, config.NATS) error) error {
	return bus.WithJetStream(ctx, getenv, "yactl catalog", fn)
}
