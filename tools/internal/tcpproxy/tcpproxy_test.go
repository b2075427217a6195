package tcpproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo serves a line-echo on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write(append(sc.Bytes(), '\n')); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, timeout time.Duration) (string, error) {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	return r.ReadString('\n')
}

// A partition holds every byte on an open connection until it heals; a delay forwards late.
func TestPartitionAndDelay(t *testing.T) {
	p, err := New("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(t, c, r, time.Second); err != nil || got != "ping\n" {
		t.Fatalf("forwarding: %q %v", got, err)
	}
	p.Partition()
	if got, err := roundTrip(t, c, r, 300*time.Millisecond); err == nil {
		t.Fatalf("a partitioned connection answered %q", got)
	}
	p.Heal()
	// The held ping arrives after the heal, on the same connection.
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("after healing: %q %v", got, err)
	}
	p.Delay(200 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(t, c, r, 2*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("delayed: %q %v", got, err)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("a round trip through a 200 ms delay each way took %s", took)
	}
}
