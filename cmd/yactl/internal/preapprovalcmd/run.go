package preapprovalcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/services/scoring/preapproval"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

const usage = `usage:
  yactl preapprovals import FILE
      store the bank's export FILE as the pre-approvals every scoring replica serves
  yactl preapprovals generate [-seed S] [-bad-every K] [-all-products] N FILE
      write a plausible export of N rows to FILE ("-": standard output)
`

// errUsage marks a command line that makes no sense.
var errUsage = cli.Usage("yactl preapprovals import FILE | generate [-seed S] [-bad-every K] [-all-products] N FILE")

func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "import":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return errUsage
		}
		return runImport(ctx, args[1], getenv, stdout, stderr)
	case "generate":
		return runGenerate(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// importConfig is what import reads from its environment.
type importConfig struct {
	PhoneHashKey     []byte
	NATS             config.NATS
	ProgressInterval time.Duration
}

func loadImportConfig(getenv config.Getenv) (importConfig, error) {
	r := config.NewReader(getenv)
	c := importConfig{
		PhoneHashKey:     []byte(r.Secret("PHONE_HASH_KEY", "")),
		NATS:             config.ReadNATS(r),
		ProgressInterval: r.Duration("PROGRESS_INTERVAL", 10*time.Second, 0, 24*time.Hour),
	}
	if len(c.PhoneHashKey) < phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEY", "required, at least %d bytes, the same as the gateway's", phone.MinKeyBytes)
	}
	return c, r.Err()
}

func runImport(ctx context.Context, path string, getenv config.Getenv, stdout, stderr io.Writer) error {
	cfg, err := loadImportConfig(getenv)
	if err != nil {
		return err
	}
	hasher, err := phone.NewHasher(cfg.PhoneHashKey)
	if err != nil {
		return err
	}
	// Fail on a missing file before dialling anything.
	if _, err := os.Stat(path); err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, cfg.NATS, "preapprovals-import")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	obs, err := snapshotstore.Open(ctx, js)
	if err != nil {
		return err
	}

	src := snapshotstore.FileSource(path)
	prog := newProgress(stderr, isTerminal(stderr), cfg.ProgressInterval, time.Now)
	start := time.Now()
	res, err := snapshotstore.Import(ctx, obs, contracts.PreapprovalsObject, src, snapshotstore.Options{
		Hasher: hasher,
		OnBadRow: func(e *preapproval.RowError) {
			// The reason names the field, never its content: no phone reaches the terminal.
			prog.clear()
			fmt.Fprintf(stderr, "%s:%d: %s\n", src.Name, e.Line, e.Reason)
		},
		OnProgress: prog.update,
		// Chunks as large as the server takes, up to 512 KiB: fewer synced writes.
		ChunkSize: int(min(nc.MaxPayload()-1024, 512<<10)),
	})
	prog.clear()
	if err != nil {
		return err
	}
	summarize(stdout, src.Name, res, time.Since(start))
	return nil
}

func summarize(w io.Writer, source string, res *snapshotstore.Result, took time.Duration) {
	where := contracts.BucketPreapprovals + "/" + contracts.PreapprovalsObject
	rows := res.Records + res.BadRows
	rate := float64(rows) / max(took.Seconds(), 1e-9)
	if res.Unchanged {
		fmt.Fprintf(w, "unchanged: %s already holds the content of %s; nothing was written\n", where, source)
	} else {
		fmt.Fprintf(w, "stored %s as %s\n", source, where)
	}
	fmt.Fprintf(w, "  records    %s (%s bad rows skipped; repeated phone and product pairs are dropped at load, the later row winning)\n",
		thousands(res.Records), thousands(res.BadRows))
	fmt.Fprintf(w, "  export     %s, %s rows in %s (%s rows/s, two passes)\n",
		mib(res.SourceBytes), thousands(rows), took.Round(time.Millisecond), thousands(int(rate)))
	if i := res.Info; i != nil {
		fmt.Fprintf(w, "  object     %s in %d chunks, nuid %s, stored %s\n", mib(int64(i.Size)), i.Chunks, i.NUID, i.ModTime.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "  digest     %s\n", i.Digest)
	}
	fmt.Fprintf(w, "  content    sha256:%s\n", res.Content)
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Int64("seed", 1, "the same seed always gives the same file")
	badEvery := fs.Int("bad-every", 0, "make every K-th row bad (0: none)")
	allProducts := fs.Bool("all-products", false, "give every client both a loan and a card offer")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 2 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	n, err := strconv.Atoi(fs.Arg(0))
	if err != nil || n < 0 || *badEvery < 0 {
		return fmt.Errorf("%w: N and -bad-every must be whole numbers, not negative", errUsage)
	}
	opts := preapproval.GenerateOptions{Rows: n, Seed: *seed, BadEvery: *badEvery, AllProducts: *allProducts}
	if fs.Arg(1) == "-" {
		return preapproval.GenerateWith(stdout, opts)
	}
	f, err := os.Create(fs.Arg(1))
	if err != nil {
		return err
	}
	if err := preapproval.GenerateWith(f, opts); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// thousands writes n with thin separators: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
