//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/tools/internal/tcpproxy"
	"github.com/demobank/yacredits/tools/internal/yandex"
	"github.com/demobank/yacredits/tools/topology"
)

// phoneHashKey is the key every process of a run hashes phones with. It is made per run: the
// suite's data are throw-away, and no committed key is accepted outside a laptop.
func phoneHashKey(seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	return fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64())
}

// system is one run's processes: the production topology (a 3-node cluster and two replicas
// of each service) or the standalone binary alone.
type system struct {
	dir      string
	cluster  *topology.Cluster
	services map[string]*topology.Service // gw1, gw2, sc1, sc2, of1, of2, or standalone
	proxies  map[string][]*tcpproxy.Proxy // a service's own way to each NATS server
	gateways []*topology.Service
	client   *yandex.Client
}

// setup says how a scenario wants its system built.
type setup struct {
	standalone bool
	// proxied services reach NATS through fault proxies (one per server).
	proxied []string
	// env is added to every service's environment.
	env map[string]string
}

var serviceNames = []struct{ name, program string }{
	{"gw1", "gateway"}, {"gw2", "gateway"},
	{"sc1", "scoring"}, {"sc2", "scoring"},
	{"of1", "offers"}, {"of2", "offers"},
}

func startSystem(ctx context.Context, bin topology.Binaries, dir string, seed uint64, s setup) (_ *system, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sys := &system{dir: dir, services: map[string]*topology.Service{}, proxies: map[string][]*tcpproxy.Proxy{}}
	defer func() {
		if err != nil {
			_ = sys.stop()
		}
	}()
	env := map[string]string{"PHONE_HASH_KEY": phoneHashKey(seed), "LOG_LEVEL": "info"}
	for k, v := range s.env {
		env[k] = v
	}
	if s.standalone {
		env["DATA_DIR"] = filepath.Join(dir, "data")
		svc, err := topology.NewService(bin, dir, "standalone", "standalone", env)
		if err != nil {
			return nil, err
		}
		sys.services["standalone"], sys.gateways = svc, []*topology.Service{svc}
	} else {
		// The NATS users and permissions exactly as shipped: every path the faults drive the
		// system down (dead letters, re-sends, advisories) runs with the rights it has in
		// production.
		users, err := topology.LoadShippedUsers()
		if err != nil {
			return nil, err
		}
		if sys.cluster, err = topology.StartCluster(ctx, bin, dir, topology.ClusterOptions{Size: 3, Conf: users.Conf, Env: users.Env()}); err != nil {
			return nil, err
		}
		env["NATS_REPLICAS"] = "3"
		// One link key set for both offers replicas, as a Secret gives them.
		linkKey, err := offerlink.GenerateKey("chaos")
		if err != nil {
			return nil, err
		}
		linkKeys, err := offerlink.NewKeySet(linkKey).Marshal()
		if err != nil {
			return nil, err
		}
		for _, sn := range serviceNames {
			e := map[string]string{"NATS_URL": strings.Join(sys.cluster.URLs(), ","),
				"NATS_USER": sn.program, "NATS_PASSWORD": topology.Password(sn.program)}
			if sn.program == "offers" {
				e["LINK_KEYS"] = string(linkKeys)
				// The trail's own key, offers' alone, as a Secret gives it.
				e["AUDIT_PSEUDONYM_KEY"] = "4f1c9a7e2d6b8053c1e9f7a2b4d6e8f0a1c3e5f7092b4d6f8e0a2c4e6f8b0d21"
			}
			for k, v := range env {
				e[k] = v
			}
			if containsString(s.proxied, sn.name) {
				var urls []string
				for _, n := range sys.cluster.Nodes {
					p, err := tcpproxy.New("127.0.0.1:0", n.Client)
					if err != nil {
						return nil, err
					}
					sys.proxies[sn.name] = append(sys.proxies[sn.name], p)
					urls = append(urls, "nats://"+p.Addr())
				}
				e["NATS_URL"] = strings.Join(urls, ",")
			}
			svc, err := topology.NewService(bin, dir, sn.program, sn.name, e)
			if err != nil {
				return nil, err
			}
			sys.services[sn.name] = svc
			if sn.program == "gateway" {
				sys.gateways = append(sys.gateways, svc)
			}
		}
		// The provisioner, with the one user that may make streams, as its Deployment runs
		// it: after a restart of every broker it makes the memory streams again.
		prov, err := topology.NewProvisioner(bin, dir, "prov", map[string]string{
			"NATS_URL": strings.Join(sys.cluster.URLs(), ","), "NATS_USER": "provision",
			"NATS_PASSWORD": topology.Password("provision"), "NATS_REPLICAS": "3", "LOG_LEVEL": "info"})
		if err != nil {
			return nil, err
		}
		sys.services["prov"] = prov
	}
	// Every service at once, as an orchestrator starts them, the provisioner among them:
	// none may exit while what they share is not provisioned yet.
	for _, svc := range sys.services {
		if err := svc.Start(); err != nil {
			return nil, err
		}
	}
	if err := sys.waitReady(ctx); err != nil {
		return nil, err
	}
	var bases []string
	for _, g := range sys.gateways {
		bases = append(bases, g.URL())
	}
	sys.client = &yandex.Client{Bases: bases, HTTP: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0},
	}}
	return sys, nil
}

// waitReady waits for every running service's /readyz.
func (sys *system) waitReady(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(sys.services))
	for _, svc := range sys.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := topology.WaitFor(ctx, 60*time.Second, func() error {
				if !svc.Running() {
					return errExited
				}
				return svc.Ready(ctx)
			})
			if err != nil {
				errs <- fmt.Errorf("%s not ready: %w\n%s", svc.Name, err, svc.Tail(15))
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

var errExited = errors.New("the process exited")

// tails are the last lines of every process's log, for the report of a failed run (a CI
// run keeps no files).
func (sys *system) tails() []string {
	var out []string
	for _, svc := range sys.services {
		out = append(out, "last lines of "+svc.Name+":\n"+svc.Tail(6))
	}
	return out
}

// crashes lists every process that exited without being asked to.
func (sys *system) crashes() []string {
	var out []string
	for _, svc := range sys.services {
		out = append(out, svc.Crashes()...)
	}
	if sys.cluster != nil {
		for _, n := range sys.cluster.Nodes {
			out = append(out, n.Crashes()...)
		}
	}
	return out
}

// stop sends every service SIGTERM at once, as an orchestrator would, then stops the
// proxies and the cluster. It reports every service that did not exit cleanly within its
// grace: a shutdown that hangs or fails is a defect too.
func (sys *system) stop() []string {
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		problems []string
	)
	for _, svc := range sys.services {
		if !svc.Running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = svc.Cont() // a stopped process cannot take its SIGTERM
			if err := svc.Terminate(20 * time.Second); err != nil {
				mu.Lock()
				problems = append(problems, "shutdown: "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, ps := range sys.proxies {
		for _, p := range ps {
			p.Close()
		}
	}
	if sys.cluster != nil {
		sys.cluster.Stop()
	}
	return problems
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
