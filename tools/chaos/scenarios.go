//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/tools/internal/yandex"
	"github.com/demobank/yacredits/tools/topology"
)

// scenario is one fault, injected once into a system under a steady load.
type scenario struct {
	name  string
	about string
	setup func(r *trial) setup
	// fault runs once the load has gone on for a while, and returns when the fault is over
	// and the system is whole again.
	fault func(ctx context.Context, r *trial) error
	// check looks, after the load, for what the scenario promises beyond the accounting.
	check func(ctx context.Context, r *trial) []string
}

var scenarios = []scenario{
	{name: "baseline", about: "no fault: the yardstick for every other line"},
	{name: "kill-scoring", about: "SIGKILL of a scoring replica mid-load, restarted later",
		fault: func(ctx context.Context, r *trial) error { return r.killAndRestart(ctx, r.pick("sc1", "sc2")) }},
	{name: "kill-offers", about: "SIGKILL of an offers replica mid-load, restarted later",
		fault: func(ctx context.Context, r *trial) error { return r.killAndRestart(ctx, r.pick("of1", "of2")) }},
	{name: "kill-gateway", about: "SIGKILL of a gateway replica mid-load, restarted later",
		fault: func(ctx context.Context, r *trial) error { return r.killAndRestart(ctx, r.pick("gw1", "gw2")) }},
	{name: "stop-scoring", about: "SIGSTOP of a scoring replica, SIGCONT after the fault time",
		fault: func(ctx context.Context, r *trial) error {
			svc := r.sys.services[r.pick("sc1", "sc2")]
			if err := svc.Stop(); err != nil {
				return err
			}
			r.hold(ctx)
			return svc.Cont()
		}},
	{name: "kill-bucket-leader", about: "SIGKILL of the NATS server leading the searches bucket, restarted later",
		fault: func(ctx context.Context, r *trial) error {
			leader, err := r.sys.cluster.StreamLeader(ctx, "KV_searches")
			if err != nil {
				return err
			}
			r.note("killed " + leader.Name)
			if err := leader.Kill(); err != nil {
				return err
			}
			r.hold(ctx)
			return r.restartNodes(ctx, leader)
		}},
	{name: "quorum-loss", about: "2 of 3 NATS servers down for the fault time, then both restarted",
		fault: func(ctx context.Context, r *trial) error {
			nodes := r.sys.cluster.Nodes
			skip := r.intn(len(nodes))
			var down []*topology.Node
			for i, n := range nodes {
				if i != skip {
					down = append(down, n)
				}
			}
			for _, n := range down {
				if err := n.Kill(); err != nil {
					return err
				}
			}
			lost := time.Now()
			r.hold(ctx)
			// Below quorum until the servers come back: a 200 in between would be a promise
			// no disk backs.
			r.window(lost, time.Now())
			for _, n := range down {
				if err := n.Start(); err != nil {
					return err
				}
			}
			// Quorum is back once the searches bucket and the work stream have leaders again.
			err := topology.WaitFor(ctx, 60*time.Second, func() error {
				for _, stream := range []string{"KV_searches", "LOAN"} {
					if _, err := r.sys.cluster.StreamLeader(ctx, stream); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			return r.sys.cluster.WaitHealthy(ctx)
		}},
	{name: "restart-all-nats", about: "every NATS server killed at once and restarted: the memory work streams are gone until the provisioner makes them again",
		fault: func(ctx context.Context, r *trial) error {
			nodes := r.sys.cluster.Nodes
			for _, n := range nodes {
				if err := n.Kill(); err != nil {
					return err
				}
			}
			lost := time.Now()
			if err := r.restartNodes(ctx, nodes...); err != nil {
				return err
			}
			// No service makes a stream: the work streams and their consumers are back once
			// the provisioner's next pass has made them, and the searches bucket has a leader.
			err := topology.WaitFor(ctx, 60*time.Second, func() error {
				for _, stream := range []string{"KV_searches", "LOAN", "LOAN_ADVISORIES"} {
					if _, err := r.sys.cluster.StreamLeader(ctx, stream); err != nil {
						return err
					}
				}
				return nil
			})
			r.window(lost, time.Now())
			return err
		}},
	{name: "partition", about: "a gateway cut off from every NATS server (its proxies stop forwarding), then healed",
		setup: func(r *trial) setup { return setup{proxied: []string{"gw1"}} },
		fault: func(ctx context.Context, r *trial) error {
			for _, p := range r.sys.proxies["gw1"] {
				p.Partition()
			}
			r.hold(ctx)
			for _, p := range r.sys.proxies["gw1"] {
				p.Heal()
			}
			return nil
		}},
	{name: "slow-handler", about: "a scoring replica whose every exchange with NATS takes 2.5 s more: its handler outlasts the ack wait",
		setup: func(r *trial) setup { return setup{proxied: []string{"sc1"}} },
		fault: func(ctx context.Context, r *trial) error {
			for _, p := range r.sys.proxies["sc1"] {
				p.Delay(2500 * time.Millisecond)
			}
			r.hold(ctx)
			for _, p := range r.sys.proxies["sc1"] {
				p.Heal()
			}
			return nil
		}},
	{name: "collector", about: "the trace collector unreachable, then accepting and never answering, then gone again",
		setup: func(r *trial) setup {
			return setup{env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + r.collector,
				"OTEL_TRACES_SAMPLER":         "always_on",
			}}
		},
		fault: func(ctx context.Context, r *trial) error {
			stall, err := stallingServer(r.collector)
			if err != nil {
				return err
			}
			r.hold(ctx)
			stall.close()
			return nil
		}},
	{name: "poison", about: "undecodable and invalid messages published on both work subjects",
		fault: func(ctx context.Context, r *trial) error { return r.poison(ctx) },
		check: func(ctx context.Context, r *trial) []string { return r.checkPoison(ctx) }},
	{name: "concurrent-first-posts", about: "50 concurrent first POSTs of each of 20 new search ids, over both gateways",
		fault: func(ctx context.Context, r *trial) error { r.concurrentFirstPosts(ctx, 20, 50); return nil },
		check: func(ctx context.Context, r *trial) []string { return r.checkConcurrent() }},
	{name: "kill-standalone", about: "SIGKILL of the standalone binary mid-load, restarted on the same data dir",
		setup: func(r *trial) setup { return setup{standalone: true} },
		fault: func(ctx context.Context, r *trial) error {
			svc := r.sys.services["standalone"]
			if err := svc.Kill(); err != nil {
				return err
			}
			if err := svc.Start(); err != nil {
				return err
			}
			return topology.WaitFor(ctx, 60*time.Second, func() error { return svc.Ready(ctx) })
		}},
}

func (r *trial) killAndRestart(ctx context.Context, name string) error {
	svc := r.sys.services[name]
	r.note("killed " + name)
	if err := svc.Kill(); err != nil {
		return err
	}
	r.hold(ctx)
	if err := svc.Start(); err != nil {
		return err
	}
	return topology.WaitFor(ctx, 60*time.Second, func() error { return svc.Ready(ctx) })
}

func (r *trial) restartNodes(ctx context.Context, nodes ...*topology.Node) error {
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	return r.sys.cluster.WaitHealthy(ctx)
}

// stalling is a server that accepts connections and never answers: a collector that hangs.
type stalling struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func stallingServer(addr string) (*stalling, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &stalling{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s, nil
}

func (s *stalling) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// poisonIDs are the search ids the poison scenario's messages claim; no such search exists.
func (r *trial) poison(ctx context.Context) error {
	// Poison as the services that may publish on each subject would send it: a bug of ours,
	// not an outsider (who cannot publish there at all).
	publishers := map[string]jetstream.JetStream{}
	for subject, user := range map[string]string{"loan.v1.requested": "gateway", "loan.v1.scored": "scoring"} {
		nc, err := nats.Connect(strings.Join(r.sys.cluster.URLs(), ","), nats.Timeout(5*time.Second),
			nats.UserInfo(user, topology.Password(user)), nats.CustomInboxPrefix("_INBOX_"+user))
		if err != nil {
			return err
		}
		defer nc.Close()
		if publishers[subject], err = jetstream.New(nc); err != nil {
			return err
		}
	}
	payloads := []struct{ subject, data string }{
		{"loan.v1.requested", `{"search_id": "not json`},
		{"loan.v1.requested", `{"search_id":"%s","phone_hash":"zz","product_type":"mortgage"}`},
		{"loan.v1.scored", `[1, 2, 3]`},
		{"loan.v1.scored", `{"request":{"search_id":"%s"},"verdict":"maybe"}`},
	}
	for _, p := range payloads {
		id := uuid.NewString()
		r.poisonIDs = append(r.poisonIDs, id)
		data := p.data
		if strings.Contains(data, "%s") {
			data = fmt.Sprintf(data, id)
		}
		msg := &nats.Msg{Subject: p.subject, Data: []byte(data), Header: nats.Header{"Search-Id": []string{id}}}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := publishers[p.subject].PublishMsg(pctx, msg)
		cancel()
		if err != nil {
			return fmt.Errorf("publish poison on %s: %w", p.subject, err)
		}
	}
	return nil
}

// checkPoison: every poison message reaches the dead-letter stream, none of them makes a
// search appear, and (checked for every scenario) no process died of them.
func (r *trial) checkPoison(ctx context.Context) []string {
	nc, err := nats.Connect(strings.Join(r.sys.cluster.URLs(), ","), nats.Timeout(5*time.Second),
		nats.UserInfo("auditor", topology.Password("auditor")), nats.CustomInboxPrefix("_INBOX_auditor"))
	if err != nil {
		return []string{err.Error()}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return []string{err.Error()}
	}
	missing := map[string]bool{}
	for _, id := range r.poisonIDs {
		missing[id] = true
	}
	err = topology.WaitFor(ctx, 30*time.Second, func() error {
		stream, err := js.Stream(ctx, "LOAN_DLQ")
		if err != nil {
			return err
		}
		info := stream.CachedInfo()
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(missing) > 0; seq++ {
			m, err := stream.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			var dl struct {
				SearchID string `json:"search_id"`
			}
			if json.Unmarshal(m.Data, &dl) == nil {
				delete(missing, dl.SearchID)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d poison messages not dead-lettered", len(missing), len(r.poisonIDs))
		}
		return nil
	})
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, id := range r.poisonIDs {
		s := &yandex.Search{Request: yandex.Request{SearchID: id}}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r.sys.client.Poll(pctx, s)
		cancel()
		if a := s.Answers; len(a) == 0 || a[0].Status != 404 {
			problems = append(problems, fmt.Sprintf("poison id %s: a poll answered %+v, want 404", id, a))
		}
	}
	return problems
}

func (r *trial) concurrentFirstPosts(ctx context.Context, ids, each int) {
	var wg sync.WaitGroup
	for range ids {
		req := r.next(-1)
		for range each {
			s := &yandex.Search{Request: req}
			r.addExtra(s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.sys.client.Run(ctx, s)
			}()
		}
	}
	wg.Wait()
}

// checkConcurrent: no concurrent first POST was told 503; the accounting already checks that
// all of them agree.
func (r *trial) checkConcurrent() []string {
	n := 0
	for _, s := range r.extra {
		for _, a := range s.Answers {
			if a.Method == "POST" && a.Status == 503 {
				n++
			}
		}
	}
	if n > 0 {
		return []string{fmt.Sprintf("%d concurrent first POSTs answered 503", n)}
	}
	return nil
}
