package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage builds an image of a tiny stand-in binary, writes both forms
// and reads them back: the tarball under its tag, the layout's one image,
// its config and its files.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "weir")
	if err := os.WriteFile(bin, []byte("#!weir\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	o := options{binary: bin, caCerts: certs, version: "v1.2.3+dirty", arch: "arm64", created: time.Unix(0, 0).UTC()}
	if err := run(o, out); err != nil {
		t.Fatal(err)
	}

	tarPath := filepath.Join(out, "weir-v1.2.3-dirty.tar")
	tm, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tarPath) })
	if err != nil {
		t.Fatal(err)
	}
	if len(tm) != 1 || !slices.Equal(tm[0].RepoTags, []string{"weir:v1.2.3-dirty"}) {
		t.Fatalf("tarball manifest %+v, want one image tagged weir:v1.2.3-dirty (as docker load shows it)", tm)
	}
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/weir"}) ||
		c.Labels["org.opencontainers.image.version"] != "v1.2.3+dirty" || cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Errorf("config: user %q entrypoint %q labels %v platform %s/%s", c.User, c.Entrypoint, c.Labels, cf.OS, cf.Architecture)
	}

	p, err := layout.FromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1.2.3-dirty" {
		t.Fatalf("OCI layout index %+v, want one image named v1.2.3-dirty", m.Manifests)
	}
	want := m.Manifests[0].Digest
	ociImg, err := p.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := ociImg.ConfigName()
	c2, _ := img.ConfigName()
	if c1 != c2 {
		t.Errorf("the layout's config %s, the tarball's %s: not the same image", c1, c2)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		b, _ := io.ReadAll(tr)
		contents[h.Name] = string(b)
	}
	if h := files["usr/local/bin/weir"]; h == nil || h.Mode != 0o755 || contents[h.Name] != "#!weir\n" {
		t.Errorf("usr/local/bin/weir: %+v", h)
	}
	if h := files["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v, want mode 1777", h)
	}
	if h := files["data/"]; h == nil || h.Uid != 65532 || h.Gid != 65532 {
		t.Errorf("data/: %+v, want owned by 65532", h)
	}
	if !strings.Contains(contents["etc/passwd"], "weir:x:65532:65532:") {
		t.Errorf("etc/passwd: %q", contents["etc/passwd"])
	}
	if contents["etc/ssl/certs/ca-certificates.crt"] == "" {
		t.Error("no CA bundle")
	}
	if _, ok := files["bin/sh"]; ok {
		t.Error("the image has a shell")
	}

	// The same inputs give the same image.
	again, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("rebuilt image %s, first %s: not reproducible", d, want)
	}
}

func TestTagOf(t *testing.T) {
	for in, want := range map[string]string{"v1.0.0": "v1.0.0", "f11a02c-dirty": "f11a02c-dirty", "v1+x/y": "v1-x-y", "-x": "v-x", "": "v"} {
		if got := tagOf(in); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", in, got, want)
		}
	}
}
