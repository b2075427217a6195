//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// baseImages are the images made here, by tag, in place of what a laptop pulls.
type baseImages struct {
	builder, runtime, nats, jaeger string
}

const inputsLabel = "yacredits.composeup.inputs"

// makeImages makes each image from files on this machine with docker import, unless the
// engine holds one made from the same inputs (the label says which).
func makeImages(ctx context.Context, eng *engine, o options, p programs) (baseImages, error) {
	var b baseImages
	busybox, err := busyboxApplets(ctx)
	if err != nil {
		return b, err
	}
	// The builder: this machine's Go toolchain (the same as the tests'), busybox for the
	// Dockerfile's RUN, and a module proxy in a directory holding exactly the modules the
	// build needs, so that the build in the engine reaches no network.
	goroot, err := output(ctx, nil, o.root, "go", "env", "GOROOT")
	if err != nil {
		return b, err
	}
	goroot = strings.TrimSpace(goroot)
	proxy, err := os.MkdirTemp("", "composeup-goproxy-")
	if err != nil {
		return b, err
	}
	defer os.RemoveAll(proxy)
	if err := fillProxy(ctx, o.root, proxy); err != nil {
		return b, err
	}
	proxyDir := filepath.Join(proxy, "cache", "download")
	b.builder = "yacredits-local/golang:" + strings.TrimPrefix(runtime.Version(), "go")
	err = importImage(ctx, eng, b.builder, func(t *tarball) error {
		t.busybox(busybox)
		t.passwd("root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n")
		t.dir("root", 0o700)
		t.dir("go", 0o777)
		t.dir("tmp", 0o1777)
		if err := t.tree(goroot, "usr/local/go"); err != nil {
			return err
		}
		return t.tree(proxyDir, "goproxy")
	}, []string{
		"ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"ENV HOME=/root", "ENV GOPATH=/go", "ENV GOTOOLCHAIN=local",
		// go.sum and go.work.sum still check every module's hash; the checksum database is
		// not reachable from a build.
		"ENV GOPROXY=file:///goproxy", "ENV GOSUMDB=off",
		"WORKDIR /go",
	})
	if err != nil {
		return b, err
	}
	// The runtime: what distroless static holds that the services use, CA certificates
	// (the conversions service calls Yandex over TLS) and the nonroot user.
	b.runtime = "yacredits-local/static:nonroot"
	err = importImage(ctx, eng, b.runtime, func(t *tarball) error {
		t.passwd("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
			"root:x:0:\nnonroot:x:65532:\n")
		t.dir("tmp", 0o1777)
		t.dir("home", 0o755)
		t.header(&tar.Header{Typeflag: tar.TypeDir, Name: "home/nonroot/", Mode: 0o700, Uid: 65532, Gid: 65532}, nil) //nolint:errcheck // kept in t.err
		return t.file("etc/ssl/certs/ca-certificates.crt", 0o644, "/etc/ssl/certs/ca-certificates.crt")
	}, nil)
	if err != nil {
		return b, err
	}
	// nats-server and Jaeger as their images run them, with busybox's wget for the compose
	// file's health checks (the official images are alpine's, or have it).
	b.nats = "yacredits-local/nats:" + strings.TrimPrefix(p.natsVersion, "v")
	err = importImage(ctx, eng, b.nats, func(t *tarball) error {
		t.busybox(busybox)
		return t.file("usr/local/bin/nats-server", 0o755, p.nats)
	}, []string{"ENV PATH=/usr/local/bin:/usr/bin:/bin", `CMD ["nats-server"]`})
	if err != nil {
		return b, err
	}
	b.jaeger = "yacredits-local/jaeger:module-" + p.jaegerVersion
	err = importImage(ctx, eng, b.jaeger, func(t *tarball) error {
		t.busybox(busybox)
		t.dir("tmp", 0o1777)
		return t.file("cmd/jaeger/jaeger-linux", 0o755, p.jaeger)
	}, []string{
		"ENV PATH=/usr/bin:/bin",
		// As Jaeger's own Dockerfile: listen beyond the container's loopback, not as root.
		"ENV JAEGER_LISTEN_HOST=0.0.0.0", "USER 10001",
		`ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]`,
	})
	return b, err
}

// fillProxy downloads into dir/cache/download (a module proxy's layout) the modules that
// building every command of the workspace needs, from the local module cache where it has
// them and the module proxy otherwise.
func fillProxy(ctx context.Context, root, dir string) error {
	gomodcache, err := output(ctx, nil, root, "go", "env", "GOMODCACHE")
	if err != nil {
		return err
	}
	goproxy, err := output(ctx, nil, root, "go", "env", "GOPROXY")
	if err != nil {
		return err
	}
	env := append(os.Environ(), "GOMODCACHE="+dir, "GOFLAGS=-modcacherw -buildvcs=false",
		"GOPROXY=file://"+filepath.Join(strings.TrimSpace(gomodcache), "cache", "download")+","+strings.TrimSpace(goproxy))
	_, err = output(ctx, env, root, "go", "list", "-deps", "./services/gateway/...", "./services/scoring/...",
		"./services/offers/...", "./services/conversions/...", "./cmd/...", "./deploy/cmd/...")
	return err
}

// busyboxApplets lists the applets of the machine's static busybox.
func busyboxApplets(ctx context.Context) ([]string, error) {
	if !staticBinary("/bin/busybox") {
		return nil, errors.New("/bin/busybox is not a static binary (Debian's busybox-static is)")
	}
	out, err := output(ctx, nil, "", "/bin/busybox", "--list")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// importImage makes tag from the files fill writes, unless the engine already has tag made
// from the same files and changes.
func importImage(ctx context.Context, eng *engine, tag string, fill func(*tarball) error, changes []string) error {
	// A first pass only hashes what would be written: names, modes, sizes and contents.
	hash := sha256.New()
	if err := fill(&tarball{hash: hash}); err != nil {
		return err
	}
	fmt.Fprint(hash, changes)
	sum := hex.EncodeToString(hash.Sum(nil))[:32]
	if got, err := eng.docker(ctx, "image", "inspect", "--format", "{{index .Config.Labels \""+inputsLabel+"\"}}", tag); err == nil && strings.TrimSpace(got) == sum {
		return nil
	}
	args := []string{"import"}
	for _, c := range append(slices.Clone(changes), "LABEL "+inputsLabel+"="+sum) {
		args = append(args, "--change", c)
	}
	args = append(args, "-", tag)
	pr, pw := io.Pipe()
	go func() {
		t := &tarball{tw: tar.NewWriter(pw)}
		err := fill(t)
		if err == nil {
			err = t.tw.Close()
		}
		pw.CloseWithError(err)
	}()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env, cmd.Stdin = eng.env(), pr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops if docker did not read it all
	if err != nil {
		return fmt.Errorf("docker import %s: %w: %s", tag, err, lastLines(stderr.String(), 10))
	}
	return nil
}

// tarball writes an image's file system, or (tw nil) only hashes what it would write.
type tarball struct {
	tw   *tar.Writer
	hash io.Writer
	dirs map[string]bool
	err  error
}

func (t *tarball) header(hdr *tar.Header, body io.Reader) error {
	if t.err != nil {
		return t.err
	}
	if t.tw == nil {
		fmt.Fprintln(t.hash, hdr.Name, hdr.Mode, hdr.Size, hdr.Linkname)
		if body != nil {
			_, t.err = io.Copy(t.hash, body)
		}
		return t.err
	}
	if t.err = t.tw.WriteHeader(hdr); t.err == nil && body != nil {
		_, t.err = io.Copy(t.tw, body)
	}
	return t.err
}

// dir writes name and every parent not written yet.
func (t *tarball) dir(name string, mode int64) {
	if t.dirs == nil {
		t.dirs = map[string]bool{}
	}
	if name == "." || t.dirs[name] {
		return
	}
	t.dir(path.Dir(name), 0o755)
	t.dirs[name] = true
	t.header(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}, nil) //nolint:errcheck // kept in t.err
}

// file writes the file src as name.
func (t *tarball) file(name string, mode int64, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	t.dir(path.Dir(name), 0o755)
	return t.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: st.Size()}, f)
}

func (t *tarball) bytes(name string, mode int64, b []byte) {
	t.dir(path.Dir(name), 0o755)
	t.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b))}, bytes.NewReader(b)) //nolint:errcheck // kept in t.err
}

func (t *tarball) link(name, target string) {
	t.dir(path.Dir(name), 0o755)
	t.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil) //nolint:errcheck // kept in t.err
}

func (t *tarball) passwd(passwd, group string) {
	t.bytes("etc/passwd", 0o644, []byte(passwd))
	t.bytes("etc/group", 0o644, []byte(group))
}

// busybox writes /bin/busybox and a link in /bin for each applet (sh, wget, mv, ...).
func (t *tarball) busybox(applets []string) {
	t.file("bin/busybox", 0o755, "/bin/busybox") //nolint:errcheck // kept in t.err
	for _, a := range applets {
		if a != "busybox" {
			t.link("bin/"+a, "busybox")
		}
	}
	t.dir("usr/bin", 0o755)
}

// tree writes the directory src, recursively, as name, keeping modes and symbolic links.
func (t *tarball) tree(src, name string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := path.Join(name, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(info.Mode().Perm())
		switch {
		case d.IsDir():
			t.dir(dst, mode)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.link(dst, target)
		case info.Mode().IsRegular():
			return t.file(dst, mode, p)
		}
		return t.err
	})
}
