package main

import (
	"slices"
	"testing"

	"github.com/demobank/yacredits/tools/topology"
)

// Every user of the shipped users.conf gets a password: a server missing one does not start.
func TestNATSUsersAreReadFromTheShippedConf(t *testing.T) {
	users, err := topology.LoadShippedUsers()
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(users.Users))
	if want := []string{"auditor", "catalog", "conversions", "gateway", "importer", "offers", "provision", "scoring"}; !slices.Equal(got, want) {
		t.Fatalf("users %v, want %v", got, want)
	}
}
