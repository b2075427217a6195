package topology

import "syscall"

// sysProcAttr puts a child in its own process group and has the kernel kill it if the
// harness dies, so that no server outlives a crashed run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
