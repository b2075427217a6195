package check

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/semver"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/provision"
)

// MinNATSVersion is the oldest NATS server we run: older ones lose acknowledged writes in
// known cases (see the issue "Deployable for real").
const MinNATSVersion = "v2.12.6"

// NATSConfig parses a nats-server configuration the way the server does (pedantic, unknown
// fields fail), with env as the environment its $VARIABLES come from. The variables are
// defined at the top of the text rather than set in the process's environment, which the
// parser treats the same way (an unquoted value parsed as a value), so that checks can run
// in parallel.
//
// include resolves the configuration's include directives (a file name as written, relative
// to the configuration's directory) to their text, which is put in place of the directive,
// as the server does. tlsFile, if not nil, maps the certificate and key files the TLS blocks
// name to files the parser can load (the server loads them while parsing); its error is
// the configuration's.
func NATSConfig(text string, env map[string]string, include func(name string) (string, bool), tlsFile func(path string) (string, error)) (*server.Options, error) {
	var err error
	if text, err = inlineIncludes(text, include); err != nil {
		return nil, err
	}
	if tlsFile != nil {
		if text, err = replaceTLSFiles(text, tlsFile); err != nil {
			return nil, err
		}
	}
	var defs strings.Builder
	for _, name := range referencedVars(text) {
		v, ok := env[name]
		if !ok {
			return nil, fmt.Errorf("the configuration uses $%s, which the server's environment does not set", name)
		}
		fmt.Fprintf(&defs, "%s = %s\n", name, v)
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(defs.String() + text); err != nil {
		return nil, err
	}
	return opts, nil
}

var includeDirective = regexp.MustCompile(`(?m)^\s*include\s+"?([^"\s#]+)"?\s*(#.*)?$`)

func inlineIncludes(text string, include func(string) (string, bool)) (string, error) {
	var missing error
	out := includeDirective.ReplaceAllStringFunc(text, func(line string) string {
		name := includeDirective.FindStringSubmatch(line)[1]
		body, ok := "", false
		if include != nil {
			body, ok = include(name)
		}
		if !ok {
			missing = fmt.Errorf("the configuration includes %s, which is not mounted beside it", name)
		}
		return body
	})
	return out, missing
}

var tlsFileLine = regexp.MustCompile(`(?m)^(\s*(?:cert_file|key_file|ca_file)\s*[:=]?\s*)"?([^"\s#]+)"?`)

func replaceTLSFiles(text string, tlsFile func(string) (string, error)) (string, error) {
	var failed error
	out := tlsFileLine.ReplaceAllStringFunc(text, func(line string) string {
		m := tlsFileLine.FindStringSubmatch(line)
		local, err := tlsFile(m[2])
		if err != nil {
			failed = errors.Join(failed, err)
			return line
		}
		return m[1] + strconv.Quote(local)
	})
	return out, failed
}

var quoted = regexp.MustCompile(`"[^"]*"`)

var varRef = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

// referencedVars lists the $VARIABLES used outside comments, sorted.
func referencedVars(text string) []string {
	var names []string
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexAny(line, "#"); i >= 0 {
			line = line[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "//") {
			continue
		}
		line = quoted.ReplaceAllString(line, `""`) // a variable is never substituted inside quotes
		for _, m := range varRef.FindAllStringSubmatch(line, -1) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// CheckNATSImage checks that image names a pinned NATS server of MinNATSVersion or newer.
func CheckNATSImage(image string) error {
	v, ok := ImageVersion(image)
	if !ok {
		return fmt.Errorf("NATS image %q is not pinned to a version tag", image)
	}
	if semver.Compare(v, MinNATSVersion) < 0 {
		return fmt.Errorf("NATS image %q is older than %s", image, MinNATSVersion)
	}
	return nil
}

// ImageVersion returns the semantic version in an image's tag ("nats:2.15.2-alpine" is
// v2.15.2), if the tag starts with one.
func ImageVersion(image string) (string, bool) {
	name, _, _ := strings.Cut(image, "@")
	i := strings.LastIndex(name, ":")
	if i < 0 || strings.Contains(name[i:], "/") {
		return "", false
	}
	tag := name[i+1:]
	core, _, _ := strings.Cut(tag, "-")
	v := "v" + strings.TrimPrefix(core, "v")
	if !semver.IsValid(v) || semver.Canonical(v) != v {
		return "", false
	}
	return v, true
}

// Pinned reports whether image names a tag other than latest, or a digest.
func Pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	return image[i+1:] != "latest"
}

// MemoryStreamBytes is what the streams the services create may hold in memory on each
// server: the sum of their MaxBytes. The server refuses a stream it cannot reserve that for
// ("insufficient memory resources"), so max_memory_store must be at least this.
func MemoryStreamBytes() (int64, error) {
	var sum int64
	for _, cfg := range []jetstream.StreamConfig{bus.LoanStream(1), bus.DeadLetterStream(1)} {
		if cfg.Storage != jetstream.MemoryStorage {
			continue
		}
		if cfg.MaxBytes <= 0 {
			return 0, fmt.Errorf("memory stream %s has no MaxBytes: no max_memory_store is enough", cfg.Name)
		}
		sum += cfg.MaxBytes
	}
	return sum, nil
}

// StoreOverhead is the room a NATS volume keeps above max_file_store for the file store's
// own files (indexes, a block's slack, the meta store): a tenth.
const StoreOverhead = 0.1

// CheckNATSFileStore checks the server's JetStream file store against what the provisioning
// plan's file streams may hold with settings: each server keeps a replica of every stream,
// and a stream is refused by a server that cannot reserve its max_bytes. A zero volume is
// not compared.
func CheckNATSFileStore(opts *server.Options, settings provision.Settings, volume int64) error {
	need := provision.FileBytes(settings)
	switch {
	case opts.JetStreamMaxStore <= 0:
		return fmt.Errorf("no max_file_store: the file streams would be bounded by nothing but the disk")
	case opts.JetStreamMaxStore < need:
		return fmt.Errorf("max_file_store %s is less than the %s the plan's file streams may hold (SEARCH_MAX_BYTES, AUDIT_MAX_BYTES, CONVERSIONS_MAX_BYTES, PREAPPROVALS_MAX_BYTES and the fixed bounds)",
			config.FormatBytes(opts.JetStreamMaxStore), config.FormatBytes(need))
	case volume > 0 && float64(volume) < float64(opts.JetStreamMaxStore)*(1+StoreOverhead):
		return fmt.Errorf("a volume of %s leaves less than a tenth above max_file_store %s for the store's own files",
			config.FormatBytes(volume), config.FormatBytes(opts.JetStreamMaxStore))
	}
	return nil
}

// CheckNATSMemory checks the server's JetStream memory against the memory streams.
func CheckNATSMemory(opts *server.Options) error {
	need, err := MemoryStreamBytes()
	if err != nil {
		return err
	}
	switch {
	case opts.JetStreamMaxMemory <= 0:
		return fmt.Errorf("no max_memory_store: the server would take a share of the host's memory, not the container's")
	case opts.JetStreamMaxMemory < need:
		return fmt.Errorf("max_memory_store %d MiB is less than the %d MiB the memory streams reserve", opts.JetStreamMaxMemory>>20, need>>20)
	}
	return nil
}
