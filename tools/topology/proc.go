//go:build unix

package topology

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one operating-system process of the topology, started from a real binary. Faults
// are real signals: Kill is SIGKILL, Stop and Cont are SIGSTOP and SIGCONT.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // the whole environment; nothing is inherited
	LogPath string   // stdout and stderr, appended across restarts

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	exitErr  error
	expected bool // the harness stopped it: not a crash
	crashes  []string
}

// Start starts the process (again, after a Kill).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running", p.Name)
		}
	}
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "\n=== %s start %s\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.Env, log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.done, p.expected, p.exitErr = cmd, make(chan struct{}), false, nil
	done := p.done
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.exitErr = err
		if !p.expected {
			p.crashes = append(p.crashes, fmt.Sprintf("%s exited by itself: %v", p.Name, err))
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// PID is the running process's id, or 0.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is alive (a stopped process is alive).
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

func (p *Proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Crashes lists the times the process exited without the harness asking it to.
func (p *Proc) Crashes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

func (p *Proc) signal(sig syscall.Signal, expectExit bool) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return nil, fmt.Errorf("%s: not running", p.Name)
	}
	if expectExit {
		p.expected = true
	}
	return p.done, p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() error {
	done, err := p.signal(syscall.SIGKILL, true)
	if err != nil {
		return err
	}
	<-done
	return nil
}

// Stop freezes the process with SIGSTOP; Cont thaws it.
func (p *Proc) Stop() error { _, err := p.signal(syscall.SIGSTOP, false); return err }

// Cont resumes a process frozen by Stop.
func (p *Proc) Cont() error { _, err := p.signal(syscall.SIGCONT, false); return err }

// Terminate sends SIGTERM and waits up to grace for the process to exit, then kills it. It
// returns an error when the process had to be killed or exited with a failure.
func (p *Proc) Terminate(grace time.Duration) error {
	done, err := p.signal(syscall.SIGTERM, true)
	if err != nil {
		return nil // already gone
	}
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.Name, grace)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var exit *exec.ExitError
	if errors.As(p.exitErr, &exit) && exit.ExitCode() != 0 {
		return fmt.Errorf("%s exited with %d after SIGTERM", p.Name, exit.ExitCode())
	}
	return nil
}

// RSS is the process's resident memory in bytes, read from /proc.
func (p *Proc) RSS() (int64, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s: not running", p.Name)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// CPUTime is the processor time the process has used so far (user and system), read from
// /proc: the difference over a run says how many cores it kept busy.
func (p *Proc) CPUTime() (time.Duration, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s: not running", p.Name)
	}
	return cpuTime(pid)
}

// SelfCPUTime is this process's own processor time.
func SelfCPUTime() (time.Duration, error) { return cpuTime(os.Getpid()) }

func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are plain.
	rest := string(data[bytes.LastIndexByte(data, ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticks = 100 // USER_HZ, 100 on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// Tail returns the last n lines of the process's log, for a report of what went wrong.
func (p *Proc) Tail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
