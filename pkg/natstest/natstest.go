// Package natstest starts real NATS JetStream servers for tests, in the shape of
// nats-server's own test helpers: port -1, t.TempDir() storage, torn down with t.Cleanup.
// There is no fake broker here on purpose: the tests exercise the server we ship.
package natstest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/embednats"
)

// Server is a running single JetStream server.
type Server struct {
	t         testing.TB
	storeDir  string
	listen    string
	configure func(*server.Options)
	*server.Server
}

// RunServer starts a JetStream server on a random loopback port with a fresh store and
// every write synced, as in production.
func RunServer(t testing.TB) *Server { return RunServerWith(t, nil) }

// RunServerWith is RunServer with configure applied to the server's options (users and
// permissions, say), at every start.
func RunServerWith(t testing.TB, configure func(*server.Options)) *Server {
	t.Helper()
	s := &Server{t: t, storeDir: t.TempDir(), listen: "127.0.0.1:0", configure: configure}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := embednats.Start(embednats.Options{StoreDir: s.storeDir, Listen: s.listen, Configure: s.configure})
	if err != nil {
		s.t.Fatalf("start nats: %v", err)
	}
	s.Server = srv
	// A restart must come back on the same port so that clients reconnect to it.
	s.listen = srv.Addr().String()
}

func (s *Server) stop() {
	if s.Server != nil && s.Running() {
		embednats.Stop(s.Server)
	}
}

// Restart stops the server and starts it again on the same port and store, as after a
// crash of the broker: file-backed streams come back, memory-backed ones do not.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	s.start()
}

// Connect opens a client connection closed at cleanup. It reconnects forever, so that a
// test can restart the server under it.
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream connects to url and returns its JetStream context.
func JetStream(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Cluster is a running JetStream cluster.
type Cluster struct {
	t       testing.TB
	Servers []*server.Server
	opts    []embednats.Options
}

// RunCluster starts an n-node JetStream cluster on loopback and waits for a meta leader.
// Every listener takes its port from the kernel as it binds: ports picked beforehand and
// released can be handed out twice, and a server that cannot bind never becomes ready (a
// CI run most likely lost a node that way). So the first node starts alone, the others are
// given its route address as a seed and find the rest by gossip, as a NATS cluster does in
// production.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Servers: make([]*server.Server, n)}
	// The stores first: cleanups run last-registered first, so the servers must be stopped
	// by a cleanup registered after the directories', or those are removed under them.
	stores := make([]string, n)
	for i := range stores {
		stores[i] = t.TempDir()
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil && s.Running() {
				embednats.Stop(s)
			}
		}
	})
	for i := 0; i < n; i++ {
		o := embednats.Options{
			Name:     fmt.Sprintf("n%d", i+1),
			StoreDir: stores[i],
			Listen:   "127.0.0.1:0",
			Cluster:  &embednats.ClusterOptions{Name: "test", Listen: "127.0.0.1:0"},
		}
		if i > 0 {
			o.Cluster.Routes = []string{c.opts[0].Cluster.Listen}
		}
		c.opts = append(c.opts, o)
		c.startNode(i)
	}
	// A restarted node comes back on its ports and routes to every member, as it would
	// with a full route list in a configuration file.
	routes := make([]string, n)
	for i, o := range c.opts {
		routes[i] = o.Cluster.Listen
	}
	for i := range c.opts {
		c.opts[i].Cluster.Routes = routes
	}
	c.WaitForMetaLeader()
	return c
}

func (c *Cluster) startNode(i int) {
	c.t.Helper()
	s, err := embednats.Start(c.opts[i])
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.Servers[i] = s
	// Ports chosen at bind time are pinned so that a restart comes back on them.
	c.opts[i].Listen = s.Addr().String()
	c.opts[i].Cluster.Listen = s.ClusterAddr().String()
}

// URLs returns every member's client URL, comma-separated, for nats.Connect.
func (c *Cluster) URLs() string {
	out := ""
	for i, o := range c.opts {
		if i > 0 {
			out += ","
		}
		out += "nats://" + o.Listen
	}
	return out
}

// Restart stops node i and starts it again on the same ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	embednats.Stop(c.Servers[i])
	c.startNode(i)
}

// WaitForMetaLeader waits until the cluster has a JetStream meta leader.
func (c *Cluster) WaitForMetaLeader() {
	c.t.Helper()
	Eventually(c.t, 30*time.Second, func() error {
		for _, s := range c.Servers {
			if s.Running() && s.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no meta leader")
	})
}

// Eventually calls cond until it returns nil or timeout passes, then fails the test with
// cond's last error. It polls a condition; it never stands in for one.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context returns a context cancelled at cleanup or after timeout, whichever comes first.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// FreeAddr is a loopback address with a port free a moment ago, for a server the test
// starts that must be told its address before it listens.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
