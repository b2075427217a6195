// Package embednats runs a NATS server with JetStream inside the calling process: the
// standalone binary's broker and the tests' real server. Every JetStream write is synced to
// disk before it is acknowledged unless the caller opts out, because an acknowledged search
// must survive a power cut.
package embednats

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Name is the server's name; a cluster needs them unique.
	Name string
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Listen is the client host:port. Empty means no network listener at all: clients connect
	// in-process (nats.InProcessServer), which is faster and exposes nothing.
	Listen string
	// NoSync turns off the per-write fsync. Only for throughput experiments.
	NoSync bool
	// Cluster, when set, makes the server a member of a JetStream cluster.
	Cluster *ClusterOptions
	// Logs, when true, routes the server's own log to standard error.
	Logs bool
	// Configure, when set, adjusts the server's options last: users and their permissions,
	// for example.
	Configure func(*server.Options)
}

// ClusterOptions place a server in a cluster.
type ClusterOptions struct {
	Name   string   // the cluster's name, the same on every member
	Listen string   // this member's route host:port
	Routes []string // every member's route host:port (its own may be included)
}

// Start starts the server and waits until it accepts clients. In a cluster it does not
// wait for the JetStream meta leader; callers that need one wait for it themselves.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: a store directory is required")
	}
	opts := &server.Options{
		ServerName:         o.Name,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		SyncAlways:         !o.NoSync,
		NoSigs:             true,
		NoLog:              !o.Logs,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: -1,
		JetStreamMaxStore:  -1,
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if c := o.Cluster; c != nil {
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: cluster address: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		opts.Routes = server.RoutesFromStr(routeURLs(c.Routes))
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	fatal := make(chan string, 1)
	if o.Logs {
		s.ConfigureLogger()
	} else {
		// Silent, except that a fatal error (a port it cannot bind) ends the wait below with
		// its reason: without a logger the server drops it and is simply never ready.
		s.SetLoggerV2(fatalLogger(fatal), false, false, false)
	}
	s.Start()
	for deadline := time.Now().Add(30 * time.Second); !s.ReadyForConnections(50 * time.Millisecond); {
		select {
		case msg := <-fatal:
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, errors.New("embedded nats: not ready for connections after 30s")
		}
	}
	return s, nil
}

// fatalLogger discards the server's log and passes on its first fatal error.
type fatalLogger chan string

func (l fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l <- fmt.Sprintf(format, v...):
	default:
	}
}
func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}

// Stop shuts the server down and waits until it has, so that its store can be reopened.
func Stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = -1 // the server's spelling of "any free port"
	}
	return host, port, nil
}

func routeURLs(addrs []string) string {
	s := ""
	for i, a := range addrs {
		if i > 0 {
			s += ","
		}
		s += "nats-route://" + a
	}
	return s
}
