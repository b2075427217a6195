//go:build unix

package topology

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// ShippedUsers is the NATS users file every deployment ships (deploy/k8s/base/nats/users.conf,
// which compose mounts too), read from the workspace, with a throw-away password for each of
// its users: Env, for the servers, which read the passwords from their environment, and
// Password, for the clients.
type ShippedUsers struct {
	Conf  string
	Users []string
}

// LoadShippedUsers reads the shipped users file.
func LoadShippedUsers() (ShippedUsers, error) {
	conf, err := os.ReadFile(filepath.Join(RepoRoot(), "deploy", "k8s", "base", "nats", "users.conf"))
	if err != nil {
		return ShippedUsers{}, err
	}
	return ShippedUsers{Conf: string(conf), Users: UsersOf(string(conf))}, nil
}

// Env is the servers' environment: NATS_<USER>_PASSWORD for every user.
func (u ShippedUsers) Env() []string {
	var env []string
	for _, name := range u.Users {
		env = append(env, "NATS_"+strings.ToUpper(name)+"_PASSWORD="+Password(name))
	}
	return env
}

// Password is a user's password in a test's servers: throw-away, like their data.
func Password(user string) string { return "topology" + user + "0123456789" }

// UsersOf are the users a users file defines, so that a user added there gets a password
// too (a server missing one of the passwords its configuration names does not start).
func UsersOf(conf string) []string {
	var users []string
	for _, m := range regexp.MustCompile(`(?m)^\s*user:\s*([A-Za-z0-9_-]+)\s*$`).FindAllStringSubmatch(conf, -1) {
		users = append(users, m[1])
	}
	return users
}

// RepoRoot is the workspace this runs in (go env GOWORK's directory), where the shipped
// configuration lives; the current directory when there is no workspace.
func RepoRoot() string {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "env", "GOWORK").Output()
	if w := strings.TrimSpace(string(out)); err == nil && w != "" && w != "off" {
		return filepath.Dir(w)
	}
	return "."
}
