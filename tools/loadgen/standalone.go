//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/tools/topology"
)

// stack is one running system under test: the gateways' URLs, its processes (whose
// processor time is reported), and how to stop it.
type stack struct {
	urls     []string
	services []*topology.Service
	brokers  []*topology.Node // nats-server processes of their own, if there are
	stop     func()
}

// procs are the stack's processes by name, for the processor time each used.
func (s *stack) procs() (names []string, procs []*topology.Proc) {
	for i, b := range s.brokers {
		name := "nats-server"
		if len(s.brokers) > 1 {
			name = fmt.Sprintf("nats-%d", i+1)
		}
		names, procs = append(names, name), append(procs, b.Proc)
	}
	for _, svc := range s.services {
		names, procs = append(names, svc.Name), append(procs, svc.Proc)
	}
	return names, procs
}

// starter starts a fresh stack, every JetStream write synced unless noSync.
type starter func(ctx context.Context, noSync bool) (*stack, error)

// runStandalone measures the standalone binary against what the disk allows.
func runStandalone(ctx context.Context, o options, dir string, out io.Writer) error {
	fmt.Fprintln(out, "building the standalone binary ...")
	bin, err := topology.Build(ctx, filepath.Join(dir, "bin"), "github.com/demobank/yacredits/cmd/standalone")
	if err != nil {
		return err
	}
	return compare(ctx, o, dir, out, "standalone", func(ctx context.Context, noSync bool) (*stack, error) {
		name := "standalone-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		svc, err := topology.NewService(bin, dir, "standalone", name, map[string]string{
			"DATA_DIR": filepath.Join(dir, name), "PHONE_HASH_KEY": randomKey(),
			"NATS_NO_SYNC": strconv.FormatBool(noSync),
		})
		if err != nil {
			return nil, err
		}
		s := &stack{urls: []string{svc.URL()}, services: []*topology.Service{svc}, stop: func() { _ = svc.Terminate(30 * time.Second) }}
		return s, startAll(ctx, s)
	})
}

// runProcesses measures the production shape on one machine: a nats-server process of its
// own and each service a process of its own. Apart from the cluster and the NATS users,
// that is how a bank runs it, and the broker's write loop then no longer shares a Go scheduler with pricing
// and signing.
func runProcesses(ctx context.Context, o options, dir string, out io.Writer) error {
	bin, linkKeys, err := buildServices(ctx, dir, out)
	if err != nil {
		return err
	}
	return compare(ctx, o, dir, out, "separate processes", func(ctx context.Context, noSync bool) (*stack, error) {
		run := filepath.Join(dir, "processes-"+strconv.FormatInt(time.Now().UnixNano(), 36))
		node, err := topology.StartServer(ctx, bin, filepath.Join(run, "nats"), !noSync)
		if err != nil {
			return nil, err
		}
		s := &stack{brokers: []*topology.Node{node}}
		s.stop = func() {
			for _, p := range s.services {
				_ = p.Terminate(30 * time.Second)
			}
			_ = node.Terminate(30 * time.Second)
		}
		if err := s.addServices(ctx, bin, run, map[string]string{"NATS_URL": "nats://" + node.Client}, linkKeys, 1, false); err != nil {
			s.stop()
			return nil, err
		}
		return s, startAll(ctx, s)
	})
}

// addServices provisions what the services check, with the NATS settings nats, and adds
// replicas of the gateway, scoring and offers to s (named program, or program-n when there
// are more than one), with one phone-hash key for all and the trail's key for offers alone,
// as deployed.
// With users, each process logs in as its own NATS user of the shipped users file, the
// provisioning as provision.
func (s *stack) addServices(ctx context.Context, bin topology.Binaries, run string, nats map[string]string, linkKeys []byte, replicas int, users bool) error {
	provision := maps.Clone(nats)
	if users {
		provision["NATS_USER"], provision["NATS_PASSWORD"] = "provision", topology.Password("provision")
	}
	if err := topology.Provision(ctx, bin, provision); err != nil {
		return err
	}
	env := maps.Clone(nats)
	env["PHONE_HASH_KEY"], env["LINK_KEYS"] = randomKey(), string(linkKeys)
	auditKey := randomKey()
	for _, program := range []string{"gateway", "scoring", "offers"} {
		for replica := 1; replica <= replicas; replica++ {
			penv := maps.Clone(env)
			if users {
				penv["NATS_USER"], penv["NATS_PASSWORD"] = program, topology.Password(program)
			}
			if program == "offers" {
				penv["AUDIT_PSEUDONYM_KEY"] = auditKey
			}
			name := program
			if replicas > 1 {
				name = fmt.Sprintf("%s-%d", program, replica)
			}
			svc, err := topology.NewService(bin, run, program, name, penv)
			if err != nil {
				return err
			}
			s.services = append(s.services, svc)
			if program == "gateway" {
				s.urls = append(s.urls, svc.URL())
			}
		}
	}
	return nil
}

// startAll starts every process of s and waits until each is ready; it stops s on failure.
func startAll(ctx context.Context, s *stack) error {
	for _, p := range s.services {
		if err := p.Start(); err != nil {
			s.stop()
			return err
		}
	}
	for _, p := range s.services {
		if err := topology.WaitFor(ctx, 60*time.Second, func() error { return p.Ready(ctx) }); err != nil {
			s.stop()
			return fmt.Errorf("%s not ready: %w\n%s", p.Name, err, p.Tail(10))
		}
	}
	return nil
}

func randomKey() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return hex.EncodeToString(key)
}

// compare measures a stack against what the disk allows, all in one run so that the disk's
// moods cancel out: JetStream's synced publish rate before and after, the stack's sustained
// rate with every write synced and with the sync off, and latency at half the sustained rate.
func compare(ctx context.Context, o options, dir string, out io.Writer, name string, start starter) error {
	before, err := jetStreamRate(ctx, dir, o.publishers, 1, o.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "JetStream, every write synced, %d publishers, one file stream: %.0f publishes/s\n", o.publishers, before)
	synced, err := stackRun(ctx, start, name, o, false, 0, out)
	if err != nil {
		return err
	}
	unsynced, err := stackRun(ctx, start, name, o, true, 0, out)
	if err != nil {
		return err
	}
	after, err := jetStreamRate(ctx, dir, o.publishers, 1, o.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "JetStream again: %.0f publishes/s\n", after)
	half, err := stackRun(ctx, start, name, o, false, synced.rate()/2, out)
	if err != nil {
		return err
	}
	disk, err := jetStreamLatency(ctx, dir, synced.rate()/2, o.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nJetStream alone at the same rate, every write synced: publish p50 %s  p99 %s  max %s\n", ms(disk.P50), ms(disk.P99), ms(disk.Max))
	base := (before + after) / 2
	fmt.Fprintf(out, "\nsummary (%s, this machine, this run):\n", name)
	fmt.Fprintf(out, "  sustained, every write synced:  %.0f searches/s = %.2f × JetStream's synced rate (%.0f/s)\n", synced.rate(), synced.rate()/base, base)
	fmt.Fprintf(out, "  sustained, NATS_NO_SYNC=true:   %.0f searches/s; synced ÷ unsynced = %.2f\n", unsynced.rate(), synced.rate()/unsynced.rate())
	r := half.report
	fmt.Fprintf(out, "  at half that (%.0f/s, open model): POST p99 %s, done in the first POST %d of %d, lost %d, errors %d\n",
		synced.rate()/2, ms(r.POST.P99), r.DoneInFirstPOST, r.Searches, r.Lost, half.errors())
	fmt.Fprintf(out, "  JetStream alone at that rate: publish p99 %s; the stack's POST p99 is %.1f × it\n", ms(disk.P99), float64(r.POST.P99)/float64(max(disk.P99, 1)))
	return nil
}

// stackRun starts a fresh stack, warms it up, runs the closed model (or the open model at
// rate) and stops it.
func stackRun(ctx context.Context, start starter, name string, o options, noSync bool, rate float64, out io.Writer) (measurement, error) {
	s, err := start(ctx, noSync)
	if err != nil {
		return measurement{}, err
	}
	defer s.stop()
	c := newClient(s.urls, "", o.clients)
	measure(ctx, c, o.clients, 0, 2*time.Second) // warm-up: connections, caches, the first GC cycles
	names, procs := s.procs()
	cpu0 := cpuTimes(procs)
	self0, _ := topology.SelfCPUTime()
	m := measure(ctx, c, o.clients, rate, o.duration)
	cpu1 := cpuTimes(procs)
	self1, _ := topology.SelfCPUTime()
	sync := "every write synced"
	if noSync {
		sync = "NATS_NO_SYNC=true"
	}
	fmt.Fprintf(out, "\n%s, %s, ", name, sync)
	m.print(out)
	var busy, per []string
	done := max(m.report.Done, 1)
	for i, name := range names {
		cpu := cpu1[i] - cpu0[i]
		busy = append(busy, fmt.Sprintf("%s %.2f", name, cpu.Seconds()/m.took.Seconds()))
		per = append(per, fmt.Sprintf("%s %.0f", name, float64(cpu.Microseconds())/float64(done)))
	}
	fmt.Fprintf(out, "  cores busy: %s, loadgen %.2f\n", strings.Join(busy, ", "), (self1-self0).Seconds()/m.took.Seconds())
	// The budget a search costs each process, whatever the machine's cores (issue: ≤ 300 µs
	// for the standalone, unsynced).
	fmt.Fprintf(out, "  CPU per search done: %s µs, loadgen %.0f µs\n", strings.Join(per, ", "), float64((self1-self0).Microseconds())/float64(done))
	return m, nil
}

func cpuTimes(procs []*topology.Proc) []time.Duration {
	out := make([]time.Duration, len(procs))
	for i, p := range procs {
		out[i], _ = p.CPUTime()
	}
	return out
}

// runCluster measures the production shape on one machine: a 3-node JetStream cluster with
// every stream replicated three times, and two replicas of each service, each a process of
// its own, the load spread over both gateways. The same load and ratios as the other shapes;
// every server's disk is this machine's one disk.
func runCluster(ctx context.Context, o options, dir string, out io.Writer) error {
	bin, linkKeys, err := buildServices(ctx, dir, out)
	if err != nil {
		return err
	}
	var users topology.ShippedUsers
	name := "3-node cluster, two replicas of each service"
	if o.users {
		if users, err = topology.LoadShippedUsers(); err != nil {
			return err
		}
		name += ", the shipped NATS users"
	}
	return compare(ctx, o, dir, out, name, func(ctx context.Context, noSync bool) (*stack, error) {
		run := filepath.Join(dir, "cluster-"+strconv.FormatInt(time.Now().UnixNano(), 36))
		if err := os.MkdirAll(filepath.Join(run, "nats"), 0o755); err != nil {
			return nil, err
		}
		cluster, err := topology.StartCluster(ctx, bin, filepath.Join(run, "nats"), topology.ClusterOptions{Size: 3, NoSync: noSync, Conf: users.Conf, Env: users.Env()})
		if err != nil {
			return nil, err
		}
		s := &stack{brokers: cluster.Nodes}
		s.stop = func() {
			for _, p := range s.services {
				_ = p.Terminate(30 * time.Second)
			}
			cluster.Stop()
		}
		nats := map[string]string{"NATS_URL": strings.Join(cluster.URLs(), ","), "NATS_REPLICAS": "3"}
		if err := s.addServices(ctx, bin, run, nats, linkKeys, 2, o.users); err != nil {
			s.stop()
			return nil, err
		}
		return s, startAll(ctx, s)
	})
}

// buildServices builds nats-server, the services and yactl, and makes the link keys the
// offers replicas share.
func buildServices(ctx context.Context, dir string, out io.Writer) (topology.Binaries, []byte, error) {
	fmt.Fprintln(out, "building nats-server and the services ...")
	bin, err := topology.Build(ctx, filepath.Join(dir, "bin"), "github.com/nats-io/nats-server/v2",
		"github.com/demobank/yacredits/services/gateway/cmd/gateway",
		"github.com/demobank/yacredits/services/scoring/cmd/scoring",
		"github.com/demobank/yacredits/services/offers/cmd/offers",
		"github.com/demobank/yacredits/cmd/yactl")
	if err != nil {
		return bin, nil, err
	}
	key, err := offerlink.GenerateKey("loadgen")
	if err != nil {
		return bin, nil, err
	}
	linkKeys, err := offerlink.NewKeySet(key).Marshal()
	return bin, linkKeys, err
}
