// Command image builds Weir's container image without a Docker daemon:
// `make image` runs it on a static linux build of weir. The image has no
// base and no shell, only
//
//	/usr/local/bin/weir   the binary (the entrypoint)
//	/etc/passwd, /etc/group  the non-root user weir (65532:65532)
//	/etc/ssl/certs/ca-certificates.crt  when --ca-certs names a bundle (S3 over https)
//	/tmp                  writable by all (sticky)
//	/data                 owned by weir: the raft directory's home
//
// It writes the image as an OCI layout (--out/oci) and as a tarball
// `docker load` and `podman load` accept (--out/weir-<version>.tar), tagged
// weir:<version>. Files carry a fixed time, so the same binary gives the
// same image digest. The Dockerfile at the repository's root builds the
// same image for those who use Docker.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// UID and GID of the user weir in the image.
const uid = 65532

// Paths in the image.
const (
	binaryPath = "/usr/local/bin/weir"
	dataDir    = "/data"
)

// options say what goes into the image.
type options struct {
	binary  string // the weir binary: static, for linux/arch
	caCerts string // a CA bundle, or ""
	version string
	arch    string
	created time.Time
}

func main() {
	var o options
	var out string
	flag.StringVar(&o.binary, "binary", "", "the weir binary to package (static, GOOS=linux)")
	flag.StringVar(&o.caCerts, "ca-certs", "", "a CA certificate bundle to include as /etc/ssl/certs/ca-certificates.crt (optional)")
	flag.StringVar(&o.version, "version", "devel", "the image's version: its tag and its org.opencontainers.image.version label")
	flag.StringVar(&o.arch, "arch", "amd64", "the binary's GOARCH")
	flag.StringVar(&out, "out", "bin/image", "directory for oci/ and weir-<version>.tar")
	flag.Parse()
	o.created = time.Unix(0, 0).UTC()
	if err := run(o, out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o options, out string) error {
	if o.binary == "" {
		return fmt.Errorf("--binary is required")
	}
	img, err := build(o)
	if err != nil {
		return err
	}
	tag, err := name.NewTag("weir:"+tagOf(o.version), name.WithDefaultRegistry(""))
	if err != nil {
		return err
	}
	oci := filepath.Join(out, "oci")
	if err := os.RemoveAll(oci); err != nil {
		return err
	}
	p, err := layout.Write(oci, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tagOf(o.version),
	})); err != nil {
		return err
	}
	file := filepath.Join(out, "weir-"+tagOf(o.version)+".tar")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s %s\n  OCI layout %s\n  tarball    %s (docker load -i %s)\n", tag, d, oci, file, file)
	return nil
}

var notTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// tagOf makes a version a valid image tag: "v1.2.0+dirty" becomes
// "v1.2.0-dirty".
func tagOf(version string) string {
	t := notTagChars.ReplaceAllString(version, "-")
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "v" + t
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// build makes the image: one layer on an empty base.
func build(o options) (v1.Image, error) {
	files, err := rootfs(o)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.created}, CreatedBy: "weir internal/tools/image", Comment: "weir " + o.version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: o.created}
	cf.Config = v1.Config{
		Entrypoint: []string{binaryPath},
		User:       fmt.Sprintf("%d:%d", uid, uid),
		WorkingDir: dataDir,
		Env: []string{
			"PATH=/usr/local/bin",
			"HOME=" + dataDir,
			"TMPDIR=/tmp",
		},
		Volumes:      map[string]struct{}{dataDir: {}},
		ExposedPorts: map[string]struct{}{"6123/tcp": {}, "7000/tcp": {}, "8080/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "weir",
			"org.opencontainers.image.version":  o.version,
			"org.opencontainers.image.source":   "https://github.com/weirstream/weir",
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer's tar: directories, the user, the binary.
func rootfs(o options) ([]byte, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	var certs []byte
	if o.caCerts != "" {
		if certs, err = os.ReadFile(o.caCerts); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := o.created
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode,
			Uid: owner, Gid: owner, ModTime: mod, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)),
			ModTime: mod, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error {
			return file("etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nweir:x:%d:%d:weir:%s:/sbin/nologin\n", uid, uid, dataDir))
		},
		func() error { return file("etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nweir:x:%d:\n", uid)) },
		func() error {
			if certs == nil {
				return nil
			}
			for _, d := range []string{"etc/ssl", "etc/ssl/certs"} {
				if err := dir(d, 0o755, 0); err != nil {
					return err
				}
			}
			return file("etc/ssl/certs/ca-certificates.crt", 0o644, certs)
		},
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("data", 0o755, uid) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir("usr/local/bin", 0o755, 0) },
		func() error { return file("usr/local/bin/weir", 0o755, bin) },
		tw.Close,
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
