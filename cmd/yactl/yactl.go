package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/demobank/yacredits/cmd/yactl/internal/catalogcmd"
	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/cmd/yactl/internal/conversioncmd"
	"github.com/demobank/yacredits/cmd/yactl/internal/linkcmd"
	"github.com/demobank/yacredits/cmd/yactl/internal/preapprovalcmd"
	"github.com/demobank/yacredits/cmd/yactl/internal/provisioncmd"
	"github.com/demobank/yacredits/cmd/yactl/internal/searchcmd"
	"github.com/demobank/yacredits/pkg/config"
)

// runFunc is the shape every command has: its arguments after its name, the environment
// (with the connection flags applied) and the two writers.
type runFunc func(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error

// command is one of yactl's commands, in the order the help lists them.
type command struct {
	name, synopsis, about string
	run                   runFunc
}

// prefixed runs a command that takes the document's name as its own first argument.
func prefixed(name string, run runFunc) runFunc {
	return func(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
		return run(ctx, append([]string{name}, args...), getenv, stdout, stderr)
	}
}

var commands = []command{
	{"catalog", "validate FILE | put FILE | get [REVISION]",
		"the product catalog offers prices with (format: services/offers/catalog)", catalogcmd.Run},
	{"policy", "validate FILE | put FILE | get [REVISION]",
		"the credit policy scoring decides with (format: services/scoring/policy)", prefixed("policy", catalogcmd.Run)},
	{"ceilings", "validate FILE | put FILE | get [REVISION]",
		"the ПСК ceiling table pricing is held to (format: services/offers/ceiling)", prefixed("ceilings", catalogcmd.Run)},
	{"search", "explain [-since TIME] SEARCH_ID",
		"how a past search was decided, replayed from the recorded revisions", searchcmd.Run},
	{"links", "keygen KID | add FILE KID | retire FILE KID | prune FILE | verify [-at TIME] LINK",
		"the keys that seal proposal links, and a link opened as the bank's site opens it", linkcmd.Run},
	{"conversions", "list [-state S] | export [-state S] | retry ID... | retry -failed",
		"the contracts reported to Yandex: list, CSV export, retry of refused ones", conversioncmd.Run},
	{"provision", "[-check | -watch INTERVAL]",
		"every stream, bucket and consumer as planned: the administrator's act (package provision)", provisioncmd.Run},
	{"preapprovals", "import FILE | generate [-seed S] [-bad-every K] [-all-products] N FILE",
		"the bank's nightly pre-approval export, loaded for every scoring replica", preapprovalcmd.Run},
}

// connection are the flags every command shares, each standing for its NATS_* variable.
var connection = []struct{ flag, env, help string }{
	{"server", "NATS_URL", "the NATS servers, nats://host:4222 or tls://… (NATS_URL)"},
	{"user", "NATS_USER", "the NATS user (NATS_USER)"},
	{"password", "NATS_PASSWORD", "the user's password (NATS_PASSWORD; prefer the variable: a flag shows in the process list)"},
	{"ca", "NATS_CA_FILE", "PEM CA the servers' certificates must chain to (NATS_CA_FILE)"},
	{"timeout", "NATS_CONNECT_TIMEOUT", "one connection attempt's timeout, e.g. 10s (NATS_CONNECT_TIMEOUT)"},
	{"replicas", "NATS_REPLICAS", "replicas of every stream yactl provision makes (NATS_REPLICAS)"},
}

func run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("yactl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	set := map[string]*string{}
	for _, c := range connection {
		set[c.env] = fs.String(c.flag, "", c.help)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			help(stdout)
			return nil
		}
		return cli.Usage(fmt.Sprintf("yactl [flags] COMMAND … (%v; yactl help)", err))
	}
	args = fs.Args()
	if len(args) == 0 {
		help(stderr)
		return cli.Usage("yactl [flags] COMMAND …")
	}
	env := func(key string) string {
		if v, ok := set[key]; ok && *v != "" {
			return *v
		}
		return getenv(key)
	}
	if args[0] == "help" {
		if len(args) == 1 {
			help(stdout)
			return nil
		}
		c, ok := find(args[1])
		if !ok {
			return cli.Usage(fmt.Sprintf("yactl help [COMMAND] (no command %q)", args[1]))
		}
		fmt.Fprintf(stdout, "yactl %s %s\n\n%s\n", c.name, c.synopsis, c.about)
		return nil
	}
	c, ok := find(args[0])
	if !ok {
		return cli.Usage(fmt.Sprintf("yactl [flags] COMMAND … (no command %q)", args[0]))
	}
	return c.run(ctx, args[1:], env, stdout, stderr)
}

func find(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func help(w io.Writer) {
	var b strings.Builder
	b.WriteString("yactl: the operators' tool of the Yandex Credits partner API\n\nusage: yactl [flags] COMMAND …\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-13s %s\n  %-13s   %s\n", c.name, c.synopsis, "", c.about)
	}
	b.WriteString("\nflags (each overrides its variable; the commands that need no NATS ignore them):\n")
	for _, c := range connection {
		fmt.Fprintf(&b, "  -%-9s %s\n", c.flag, c.help)
	}
	b.WriteString("\nexit status: 0 done, 1 failed (an invalid document, a refused link or a differing replay included), 2 usage\n")
	io.WriteString(w, b.String())
}
