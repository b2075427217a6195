package searchcmd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
)

// The command line: usage errors exit 2, a search neither bucket nor trail holds is named as
// such. (cmd/standalone's TestExplainAndReplay explains real searches.)
func TestRun(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	if _, err := provisiontest.Searches(t, js, 1, search.Options{}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NATS_URL": srv.ClientURL(), "NATS_CONNECT_TIMEOUT": "2s"}
	tests := []struct {
		args  []string
		usage bool
		want  string
	}{
		{nil, true, ""},
		{[]string{"explain"}, true, ""},
		{[]string{"replay", uuid.NewString()}, true, ""},
		{[]string{"explain", "-since", "yesterday", uuid.NewString()}, true, `-since "yesterday"`},
		{[]string{"explain", uuid.NewString()}, false, "not found in the searches bucket nor in the audit trail"},
		{[]string{"explain", "-since", "2026-11-30", uuid.NewString()}, false, "not found"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := Run(natstest.Context(t, 20*time.Second), tt.args, func(k string) string { return env[k] }, &out, &out)
		if errors.Is(err, errUsage) != tt.usage || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%q) = %v, want usage %v and %q", tt.args, err, tt.usage, tt.want)
		}
	}
}
