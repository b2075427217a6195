//go:build unix

package topology

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Node is one nats-server process of a cluster.
type Node struct {
	*Proc
	Client  string // client host:port
	Route   string // cluster route host:port
	Monitor string // monitoring host:port (/healthz, /jsz)
	Prof    string // profiling host:port (/debug/pprof)
}

// Cluster is a JetStream cluster of nats-server processes on loopback: file storage,
// every write synced (sync_interval: always), routes between all members, monitoring on.
type Cluster struct {
	Nodes []*Node
}

// ClusterOptions shape the cluster's configuration.
type ClusterOptions struct {
	Size int
	// Conf is added to every node's configuration (accounts and users, for example).
	Conf string
	// Env is every node's environment (the passwords Conf refers to, say).
	Env []string
	// NoSync leaves writes to the server's default sync (every two minutes) instead of
	// syncing each (the load generator's unsynced comparison).
	NoSync bool
}

const natsConf = `server_name: %s
listen: %s
http: %s
prof_port: %s
jetstream {
  store_dir: %q
  %s
  max_memory_store: 2GB
  max_file_store: 50GB
}
cluster {
  name: chaos
  listen: %s
  # Clients must keep the addresses they were given: a service behind a fault proxy must not
  # learn the servers' real addresses and walk around the fault.
  no_advertise: true
  routes: [%s]
}
%s
`

// StartCluster writes each node's configuration under dir, starts them and waits until
// every node reports JetStream healthy.
func StartCluster(ctx context.Context, bin Binaries, dir string, o ClusterOptions) (*Cluster, error) {
	c := &Cluster{}
	var routes []string
	for i := 0; i < o.Size; i++ {
		addrs, err := FreeAddrs(4)
		if err != nil {
			return nil, err
		}
		n := &Node{Client: addrs[0], Route: addrs[1], Monitor: addrs[2], Prof: addrs[3]}
		routes = append(routes, "nats-route://"+n.Route)
		c.Nodes = append(c.Nodes, n)
	}
	for i, n := range c.Nodes {
		name := fmt.Sprintf("n%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		_, profPort, _ := net.SplitHostPort(n.Prof)
		sync := "sync_interval: always"
		if o.NoSync {
			sync = "" // the server's default: a sync every two minutes
		}
		data := fmt.Sprintf(natsConf, name, n.Client, n.Monitor, profPort, filepath.Join(dir, name), sync, n.Route,
			strings.Join(routes, ", "), o.Conf)
		if err := os.WriteFile(conf, []byte(data), 0o600); err != nil {
			return nil, err
		}
		n.Proc = &Proc{Name: "nats-" + name, Path: bin.Path("nats-server"), Args: []string{"-c", conf},
			Env: o.Env, LogPath: filepath.Join(dir, name+".log")}
		if err := n.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

const serverConf = `server_name: single
listen: %s
http: %s
prof_port: %s
jetstream {
  store_dir: %q
  %s
  max_memory_store: 2GB
  max_file_store: 100GB
}
`

// StartServer starts one nats-server process with JetStream, storing under dir, every write
// synced when sync is set (else the server's default, a sync every two minutes), and waits
// until it is healthy.
func StartServer(ctx context.Context, bin Binaries, dir string, sync bool) (*Node, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addrs, err := FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	n := &Node{Client: addrs[0], Monitor: addrs[1], Prof: addrs[2]}
	syncLine := ""
	if sync {
		syncLine = "sync_interval: always"
	}
	_, profPort, _ := net.SplitHostPort(n.Prof)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(serverConf, n.Client, n.Monitor, profPort, filepath.Join(dir, "store"), syncLine)), 0o600); err != nil {
		return nil, err
	}
	n.Proc = &Proc{Name: "nats", Path: bin.Path("nats-server"), Args: []string{"-c", conf}, LogPath: filepath.Join(dir, "nats.log")}
	if err := n.Start(); err != nil {
		return nil, err
	}
	if err := WaitFor(ctx, 60*time.Second, func() error { return n.Healthy(ctx) }); err != nil {
		_ = n.Kill()
		return nil, fmt.Errorf("nats-server: %w\n%s", err, n.Tail(20))
	}
	return n, nil
}

// URLs is every member's client URL.
func (c *Cluster) URLs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, "nats://"+n.Client)
	}
	return out
}

// WaitHealthy waits until every running node answers its health endpoint: connected to
// the cluster, with a JetStream meta leader and its streams current.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if err := WaitFor(ctx, 60*time.Second, func() error { return n.Healthy(ctx) }); err != nil {
			return fmt.Errorf("%s: %w\n%s", n.Name, err, n.Tail(20))
		}
	}
	return nil
}

// Healthy asks the node's monitoring endpoint whether its JetStream is healthy.
func (n *Node) Healthy(ctx context.Context) error {
	return getOK(ctx, "http://"+n.Monitor+"/healthz")
}

// Goroutines is the server's goroutine count, from its profiling port.
func (n *Node) Goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Prof+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	res, err := monitorClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var total int
	_, err = fmt.Fscanf(res.Body, "goroutine profile: total %d", &total)
	return total, err
}

// HeapInUse is the server's Go heap in use right after a garbage collection (from its
// profiling port): what it really keeps, which its resident size overstates by whatever
// garbage has not been collected yet.
func (n *Node) HeapInUse(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Prof+"/debug/pprof/heap?debug=1&gc=1", nil)
	if err != nil {
		return 0, err
	}
	res, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no HeapInuse in the heap profile")
}

// StreamLeader finds the node that leads stream (a KV bucket's stream is KV_<bucket>), as
// the monitoring endpoint of any running node reports it.
func (c *Cluster) StreamLeader(ctx context.Context, stream string) (*Node, error) {
	var lastErr error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		var jsz struct {
			Accounts []struct {
				Streams []struct {
					Name    string `json:"name"`
					Cluster *struct {
						Leader string `json:"leader"`
					} `json:"cluster"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		if err := getJSON(ctx, "http://"+n.Monitor+"/jsz?accounts=true&streams=true", &jsz); err != nil {
			lastErr = err
			continue
		}
		for _, a := range jsz.Accounts {
			for _, s := range a.Streams {
				if s.Name != stream || s.Cluster == nil || s.Cluster.Leader == "" {
					continue
				}
				for _, m := range c.Nodes {
					if m.Name == "nats-"+s.Cluster.Leader {
						return m, nil
					}
				}
			}
		}
		lastErr = fmt.Errorf("stream %s has no leader on %s's view", stream, n.Name)
	}
	if lastErr == nil {
		lastErr = errors.New("no node running")
	}
	return nil, lastErr
}

// Stop kills every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		if n.Proc != nil && n.Running() {
			_ = n.Terminate(10 * time.Second)
		}
	}
}

// WaitFor calls cond until it returns nil, timeout passes or ctx ends, and returns cond's
// last error in the latter cases.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not met after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var monitorClient = &http.Client{Timeout: 2 * time.Second}

func getOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := monitorClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var b [512]byte
		k, _ := res.Body.Read(b[:])
		return fmt.Errorf("GET %s: %d %s", url, res.StatusCode, strings.TrimSpace(string(b[:k])))
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := monitorClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// FreeAddrs returns n loopback addresses with ports nothing listens on now, and never one
// it returned before in this process: a killed process must find its ports again when it
// is restarted, so none may go to another. The ports are closed before they are used, so a
// program outside the harness could take one in between; on loopback in a test run that
// does not happen in practice.
func FreeAddrs(n int) ([]string, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	var out []string
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("no free loopback port: %w", err)
		}
		addr := l.Addr().String()
		defer l.Close() // held until all are chosen, so that none is chosen twice
		if handedOut.ports[addr] {
			continue
		}
		handedOut.ports[addr] = true
		out = append(out, addr)
	}
	return out, nil
}

var handedOut = struct {
	mu    sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}
