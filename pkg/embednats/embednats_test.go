package embednats

import (
	"net"
	"strings"
	"testing"
	"time"
)

// A port already taken must fail the start with the reason, at once: the server drops its
// fatal errors without a logger and would otherwise wait out the 30 s as "not ready".
func TestStartReportsAPortItCannotBind(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	began := time.Now()
	s, err := Start(Options{StoreDir: t.TempDir(), Listen: l.Addr().String()})
	if err == nil {
		Stop(s)
		t.Fatal("started on a port another socket listens on")
	}
	if !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("error %q does not name the port", err)
	}
	if waited := time.Since(began); waited > 10*time.Second {
		t.Errorf("the start took %s to give up", waited)
	}
}
