package check

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/mod/modfile"
)

// Dockerfile is a Dockerfile as BuildKit reads it, for one set of build arguments: its
// stages with their base images and instructions expanded, and what BuildKit's own linter
// says of it. Parsing, instruction syntax and the generic rules are BuildKit's
// (frontend/dockerfile/parser, instructions, linter, shell); what is left here is what only
// this project can check.
type Dockerfile struct {
	Path   string
	Stages []Stage
	// Lint holds BuildKit's lint warnings (rule: message), the ones `docker build` prints.
	Lint []string
}

// Stage is one FROM and the instructions after it.
type Stage struct {
	From     string // the base image, its arguments expanded
	Commands []instructions.Command
	args     env // the stage's ARGs in force, to expand RUN lines with
}

// ParseDockerfile reads the Dockerfile at path with BuildKit's parser, as `docker build
// --build-arg K=V` would with buildArgs: the global ARGs' defaults, overridden by buildArgs,
// expand FROM; a stage's ARGs take a build argument or their default.
func ParseDockerfile(path string, buildArgs map[string]string) (*Dockerfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &Dockerfile{Path: path}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, _ []parser.Range) {
		d.Lint = append(d.Lint, rule+": "+msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	lex := shell.NewLex(res.EscapeToken)
	global := env{}
	for _, a := range metaArgs {
		declare(lex, global, a, buildArgs)
	}
	for _, st := range stages {
		from, _, err := lex.ProcessWord(st.BaseName, global)
		if err != nil {
			return nil, fmt.Errorf("%s: FROM %s: %w", path, st.BaseName, err)
		}
		stage := Stage{From: from, Commands: st.Commands, args: env{}}
		for _, c := range st.Commands {
			if a, ok := c.(*instructions.ArgCommand); ok {
				declare(lex, stage.args, *a, buildArgs)
			}
		}
		d.Stages = append(d.Stages, stage)
	}
	return d, nil
}

// declare puts an ARG's value in scope: the build argument if given, else its default
// expanded with what is already in scope.
func declare(lex *shell.Lex, scope env, a instructions.ArgCommand, buildArgs map[string]string) {
	for _, kv := range a.Args {
		if v, ok := buildArgs[kv.Key]; ok {
			scope[kv.Key] = v
		} else if kv.Value != nil {
			v, _, _ := lex.ProcessWord(*kv.Value, scope)
			scope[kv.Key] = v
		} else if _, ok := scope[kv.Key]; !ok {
			scope[kv.Key] = ""
		}
	}
}

// env is a set of variables as BuildKit's shell lexer reads them.
type env map[string]string

func (e env) Get(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e env) Keys() []string              { return slices.Collect(maps.Keys(e)) }

// Final is the stage that becomes the image.
func (d *Dockerfile) Final() Stage { return d.Stages[len(d.Stages)-1] }

// Runs returns the stage's RUN command lines, with the stage's ARGs expanded as the shell
// that runs them would.
func (s Stage) Runs() []string {
	lex := shell.NewLex('\\')
	var out []string
	for _, c := range s.Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			line := strings.Join(r.CmdLine, " ")
			if exp, _, err := lex.ProcessWord(line, s.args); err == nil {
				line = exp
			}
			out = append(out, line)
		}
	}
	return out
}

// Copies returns the stage's COPY instructions.
func (s Stage) Copies() []*instructions.CopyCommand {
	var out []*instructions.CopyCommand
	for _, c := range s.Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok {
			out = append(out, cp)
		}
	}
	return out
}

// User is the stage's last USER, or "" (root) when it sets none.
func (s Stage) User() string {
	user := ""
	for _, c := range s.Commands {
		if u, ok := c.(*instructions.UserCommand); ok {
			user = u.User
		}
	}
	return user
}

// Exposed lists the ports the stage EXPOSEs.
func (s Stage) Exposed() []string {
	var out []string
	for _, c := range s.Commands {
		if e, ok := c.(*instructions.ExposeCommand); ok {
			out = append(out, e.Ports...)
		}
	}
	return out
}

// Entrypoint is the stage's last ENTRYPOINT, or nil, and whether it is in shell form (run
// by /bin/sh -c).
func (s Stage) Entrypoint() (cmd []string, shellForm bool) {
	for _, c := range s.Commands {
		if e, ok := c.(*instructions.EntrypointCommand); ok {
			cmd, shellForm = e.CmdLine, e.PrependShell
		}
	}
	return cmd, shellForm
}

// CheckDockerfile checks the image of one of our services, d as parsed with SERVICE set to
// it, against the repository: BuildKit's linter has nothing to say; the workspace is copied
// whole enough to build in workspace mode; everything copied exists and is in the build
// context (.dockerignore); the service's binary is built static; the runtime image is
// distroless and non-root, exposes ports and runs a binary it installs. It returns every
// problem.
func CheckDockerfile(bc BuildContext, service string, d *Dockerfile, ports []string) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (SERVICE=%s): %s", d.Path, service, fmt.Sprintf(format, args...)))
	}
	for _, w := range d.Lint {
		fail("BuildKit's linter: %s", w)
	}
	root := bc.Root
	build := d.Stages[0]
	var copied []string
	for _, c := range build.Copies() {
		if c.From != "" {
			continue
		}
		for _, src := range c.SourcePaths {
			copied = append(copied, filepath.Clean(src))
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				fail("COPY %s: not in the repository", src)
			} else if excluded, _ := bc.Ignore.MatchesOrParentMatches(filepath.Clean(src)); excluded {
				fail("COPY %s: excluded from the build context by .dockerignore", src)
			}
		}
	}
	uses, err := WorkspaceModules(root)
	if err != nil {
		return append(errs, err)
	}
	for _, dir := range append([]string{"go.work"}, uses...) {
		mod := dir
		if dir != "go.work" {
			mod = filepath.Join(dir, "go.mod")
		}
		if !slices.ContainsFunc(copied, func(src string) bool {
			return src == mod || src == dir || strings.HasPrefix(dir, src+"/")
		}) {
			fail("does not COPY %s, which the workspace needs to build", mod)
		}
	}
	runs := strings.Join(build.Runs(), "\n")
	pkg := "./services/" + service + "/cmd/" + service
	if svc, ok := ServiceByName(service); ok {
		pkg = svc.Package
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "go build", pkg} {
		if !strings.Contains(runs, want) {
			fail("the build does not have %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
		fail("builds %s, which does not exist", pkg)
	}

	final := d.Final()
	if final.From != RuntimeImage {
		fail("runtime image is %s, want %s", final.From, RuntimeImage)
	}
	if isRoot(final.User()) {
		fail("the runtime stage does not set a non-root USER")
	}
	exposed := final.Exposed()
	for _, p := range ports {
		if !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
			fail("does not EXPOSE %s", p)
		}
	}
	if ep, shellForm := final.Entrypoint(); len(ep) == 0 {
		fail("no ENTRYPOINT")
	} else if shellForm {
		fail("ENTRYPOINT %s is in shell form, and the runtime image has no shell: write it as JSON", ep[0])
	} else if !final.Installs(ep[0]) {
		fail("ENTRYPOINT runs %s, which the image does not install", ep[0])
	}
	return errs
}

// RuntimeImage is the base of every service image: no shell, no package manager, non-root.
const RuntimeImage = "gcr.io/distroless/static-debian12:nonroot"

// Installs reports whether the stage puts a file at path (a COPY destination).
func (s Stage) Installs(path string) bool {
	for _, c := range s.Copies() {
		if c.DestPath == path || (strings.HasSuffix(c.DestPath, "/") && len(c.SourcePaths) == 1 &&
			c.DestPath+filepath.Base(c.SourcePaths[0]) == path) {
			return true
		}
	}
	return false
}

func isRoot(user string) bool {
	u, _, _ := strings.Cut(user, ":")
	return u == "" || u == "0" || u == "root"
}

// WorkspaceModules returns the module directories go.work at root uses, cleaned.
func WorkspaceModules(root string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		return nil, err
	}
	wf, err := modfile.ParseWork("go.work", data, nil)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, u := range wf.Use {
		dirs = append(dirs, filepath.Clean(u.Path))
	}
	return dirs, nil
}

// BuildContext is what docker build sends: the repository root less what .dockerignore
// excludes.
type BuildContext struct {
	Root   string
	Ignore *patternmatcher.PatternMatcher
}

// NewBuildContext reads root's .dockerignore as docker does.
func NewBuildContext(root string) (BuildContext, error) {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return BuildContext{}, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return BuildContext{}, fmt.Errorf(".dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return BuildContext{}, fmt.Errorf(".dockerignore: %w", err)
	}
	return BuildContext{Root: root, Ignore: pm}, nil
}
