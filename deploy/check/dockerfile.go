package check

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/mod/modfile"
)

// Dockerfile is what the checks need of a Dockerfile: its instructions, by stage.
type Dockerfile struct {
	Path   string
	Stages []Stage
}

// Stage is one FROM and the instructions after it.
type Stage struct {
	From         string
	Instructions []Instruction
}

// Instruction is one instruction, continuation lines joined.
type Instruction struct {
	Cmd  string // upper case: COPY, RUN, ...
	Args string
}

// ParseDockerfile reads the instructions of a Dockerfile: comments dropped, lines ending
// in a backslash joined, and instructions before the first FROM (ARG) kept in no stage.
func ParseDockerfile(path string) (*Dockerfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &Dockerfile{Path: path}
	var line strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line.WriteString(cont + " ")
			continue
		}
		line.WriteString(text)
		cmd, args, _ := strings.Cut(strings.TrimSpace(line.String()), " ")
		line.Reset()
		in := Instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			from := strings.Fields(in.Args)
			from = slices.DeleteFunc(from, func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(from) == 0 {
				return nil, fmt.Errorf("%s: FROM without an image", path)
			}
			d.Stages = append(d.Stages, Stage{From: from[0]})
			continue
		}
		if len(d.Stages) > 0 {
			st := &d.Stages[len(d.Stages)-1]
			st.Instructions = append(st.Instructions, in)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d.Stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	return d, nil
}

// Final is the stage that becomes the image.
func (d *Dockerfile) Final() Stage { return d.Stages[len(d.Stages)-1] }

// All returns the stage's instructions named cmd.
func (s Stage) All(cmd string) []Instruction {
	var out []Instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// Copy is one COPY: where from (a build stage, or the context when From is empty).
type Copy struct {
	From    string
	Sources []string
	Dest    string
}

// Copies returns the stage's COPY instructions.
func (s Stage) Copies() []Copy {
	var out []Copy
	for _, in := range s.All("COPY") {
		var c Copy
		var words []string
		for _, w := range strings.Fields(in.Args) {
			if from, ok := strings.CutPrefix(w, "--from="); ok {
				c.From = from
			} else if !strings.HasPrefix(w, "--") {
				words = append(words, w)
			}
		}
		if len(words) >= 2 {
			c.Sources, c.Dest = words[:len(words)-1], words[len(words)-1]
		}
		out = append(out, c)
	}
	return out
}

// CheckDockerfile checks one of our service images against the repository at root: the
// workspace is copied whole enough to build in workspace mode, everything copied exists
// and is in the build context (.dockerignore), the binary is static and the runtime
// image distroless and non-root, and ports are exposed. It returns every problem.
func CheckDockerfile(bc BuildContext, service string, d *Dockerfile, ports []string) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", d.Path, fmt.Sprintf(format, args...)))
	}
	root := bc.Root
	build := d.Stages[0]
	var copied []string
	for _, c := range build.Copies() {
		if c.From != "" {
			continue
		}
		for _, src := range c.Sources {
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
	runs := strings.Join(argsOf(build.All("RUN")), "\n")
	pkg := "./services/" + service + "/cmd/" + service
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
	users := argsOf(final.All("USER"))
	if len(users) == 0 || isRoot(users[len(users)-1]) {
		fail("the runtime stage does not set a non-root USER")
	}
	exposed := strings.Fields(strings.Join(argsOf(final.All("EXPOSE")), " "))
	for _, p := range ports {
		if !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
			fail("does not EXPOSE %s", p)
		}
	}
	if len(final.All("ENTRYPOINT")) == 0 {
		fail("no ENTRYPOINT")
	}
	return errs
}

// RuntimeImage is the base of every service image: no shell, no package manager, non-root.
const RuntimeImage = "gcr.io/distroless/static-debian12:nonroot"

// Installs reports whether the stage puts a file at path (a COPY destination).
func (s Stage) Installs(path string) bool {
	for _, c := range s.Copies() {
		if c.Dest == path || (strings.HasSuffix(c.Dest, "/") && len(c.Sources) == 1 &&
			c.Dest+filepath.Base(c.Sources[0]) == path) {
			return true
		}
	}
	return false
}

func argsOf(ins []Instruction) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.Args
	}
	return out
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
