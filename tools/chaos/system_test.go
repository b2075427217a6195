package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Every user of the shipped users.conf gets a password: a server missing one does not start.
func TestNATSUsersAreReadFromTheShippedConf(t *testing.T) {
	conf, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "k8s", "base", "nats", "users.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := natsUsers(string(conf)), []string{"gateway", "scoring", "offers", "conversions", "catalog", "importer", "auditor", "provision"}; !slices.Equal(got, want) {
		t.Fatalf("users %v, want %v", got, want)
	}
}
