package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/services/offers/catalog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func yactl(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestHelpListsEveryCommandAndFlag(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}} {
		out, _, err := yactl(t, nil, args...)
		if err != nil {
			t.Fatalf("yactl %v: %v", args, err)
		}
		for _, want := range []string{"catalog", "policy", "ceilings", "search", "links", "conversions", "preapprovals",
			"-server", "-user", "-password", "-ca", "exit status"} {
			if !strings.Contains(out, want) {
				t.Errorf("yactl %v does not mention %q:\n%s", args, want, out)
			}
		}
	}
	out, _, err := yactl(t, nil, "help", "links")
	if err != nil || !strings.HasPrefix(out, "yactl links keygen KID") {
		t.Errorf("yactl help links = %q, %v", out, err)
	}
}

// Every command's wrong command line is a usage error (exit status 2), named after yactl.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nosuch"}, {"help", "nosuch"}, {"-nosuchflag", "catalog", "get"},
		{"catalog"}, {"catalog", "get", "seven"}, {"policy", "frobnicate"}, {"ceilings"},
		{"search"}, {"search", "explain"}, {"search", "explain", "-since", "yesterday", "id"},
		{"links"}, {"links", "keygen"}, {"links", "verify", "-at", "noon", "https://x"},
		{"conversions"}, {"conversions", "list", "-state", "lost"},
		{"preapprovals"}, {"preapprovals", "import"}, {"preapprovals", "generate", "-1", "f"},
	} {
		_, _, err := yactl(t, nil, args...)
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("yactl %q: %v, want a usage error", args, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "usage: yactl") {
			t.Errorf("yactl %q: %q does not start with the tool's usage", args, err)
		}
	}
}

// The exit status is the same for every command: usage 2, any other failure 1.
func TestExitCodes(t *testing.T) {
	_, _, usage := yactl(t, nil, "catalog", "get", "seven")
	file := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(file, []byte(`{"products": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, invalid := yactl(t, nil, "catalog", "validate", file)
	keys, _, err := yactl(t, nil, "links", "keygen", "k")
	if err != nil {
		t.Fatal(err)
	}
	_, _, refused := yactl(t, map[string]string{"LINK_KEYS": keys}, "links", "verify", "https://bank.example/apply?ref=k~x")
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"done", nil, 0}, {"usage", usage, 2}, {"an invalid document", invalid, 1}, {"a refused link", refused, 1},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("%s (%v): exit %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
	if invalid == nil || refused == nil {
		t.Errorf("invalid document %v, refused link %v: both should fail", invalid, refused)
	}
}

// The connection flags stand for their variables: with NATS_URL pointing nowhere, -server
// reaches the real server, and a put and get go through it.
func TestConnectionFlagsOverrideTheEnvironment(t *testing.T) {
	srv := natstest.RunServer(t)
	file := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(file, catalog.DemoJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1", "NATS_CONNECT_TIMEOUT": "1s"}
	if _, _, err := yactl(t, env, "catalog", "put", file); err == nil {
		t.Fatal("put with NATS_URL pointing nowhere succeeded")
	}
	if _, stderr, err := yactl(t, env, "-server", srv.ClientURL(), "provision"); err != nil {
		t.Fatalf("provision with -server: %v\n%s", err, stderr)
	}
	if _, stderr, err := yactl(t, env, "-server", srv.ClientURL(), "catalog", "put", file); err != nil {
		t.Fatalf("put with -server: %v\n%s", err, stderr)
	}
	out, _, err := yactl(t, env, "-server", srv.ClientURL(), "catalog", "get")
	if err != nil || out != string(catalog.DemoJSON()) {
		t.Fatalf("get with -server = %v; the catalog as put: %v", err, out == string(catalog.DemoJSON()))
	}
}
