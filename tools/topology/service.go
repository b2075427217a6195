//go:build unix

package topology

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Service is one process of ours: a gateway, scoring, offers or conversions replica, the
// provisioner, or the standalone binary.
type Service struct {
	*Proc
	Program  string // the binary: gateway, scoring, offers, conversions or standalone
	API      string // HTTP_ADDR, for a gateway or the standalone binary
	Internal string // CONVERSIONS_ADDR, for a conversions replica or the standalone binary
	Health   string // HEALTH_ADDR: /healthz, /readyz, /metrics
}

// NewService prepares (does not start) a process of program named name, configured by env
// alone: HTTP_ADDR (gateways and standalone), CONVERSIONS_ADDR (conversions and standalone)
// and HEALTH_ADDR are chosen here on free loopback ports; its log goes to dir/name.log.
func NewService(bin Binaries, dir, program, name string, env map[string]string) (*Service, error) {
	addrs, err := FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	s := &Service{Program: program, Health: addrs[1]}
	vars := map[string]string{"HEALTH_ADDR": s.Health, "LOG_FORMAT": "json"}
	if program == "gateway" || program == "standalone" {
		s.API = addrs[0]
		vars["HTTP_ADDR"] = s.API
	}
	if program == "conversions" || program == "standalone" {
		s.Internal = addrs[2]
		vars["CONVERSIONS_ADDR"] = s.Internal
	}
	for k, v := range env {
		vars[k] = v
	}
	var list []string
	for k, v := range vars {
		list = append(list, k+"="+v)
	}
	sort.Strings(list)
	s.Proc = &Proc{Name: name, Path: bin.Path(program), Env: list, LogPath: filepath.Join(dir, name+".log")}
	return s, nil
}

// NewProvisioner prepares the provisioner as its Deployment runs it: yactl provision -watch 5s,
// keeping the streams, buckets and consumers as planned (again after every reconnect, and
// every 5 s), with /readyz on HEALTH_ADDR.
func NewProvisioner(bin Binaries, dir, name string, env map[string]string) (*Service, error) {
	s, err := NewService(bin, dir, "yactl", name, env)
	if err != nil {
		return nil, err
	}
	s.Args = []string{"provision", "-watch", "5s"}
	return s, nil
}

// Provision runs yactl provision once, as an administrator would before starting the
// services, with env (NATS_URL, and NATS_USER and NATS_PASSWORD where the server has users).
func Provision(ctx context.Context, bin Binaries, env map[string]string) error {
	cmd := exec.CommandContext(ctx, bin.Path("yactl"), "provision")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("yactl provision: %v\n%s", err, out)
	}
	return nil
}

// URL is the service's API base URL.
func (s *Service) URL() string { return "http://" + s.API }

// Ready asks /readyz.
func (s *Service) Ready(ctx context.Context) error {
	return getOK(ctx, "http://"+s.Health+"/readyz")
}

// Metric reads one series without labels (go_goroutines, say) from /metrics.
func (s *Service) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Health+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := monitorClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no series %s", s.Name, name)
}
