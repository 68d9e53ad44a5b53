package cli

import (
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Release builds set these with the linker, as the Makefile's build does:
//
//	go build -ldflags "-X github.com/weirstream/weir/internal/cli.version=v1.2.0
//	  -X github.com/weirstream/weir/internal/cli.commit=$(git rev-parse HEAD)" ./cmd/weir
//
// Otherwise they come from the build info Go records: the main module's
// version (a tag for `go install ...@v1.2.0`, "(devel)" for a work tree)
// and the VCS revision.
var (
	version  string
	commit   string
	modified string // "true" when the work tree had changes
)

// versionView is this binary's version, commit and Go toolchain.
func versionView() VersionView {
	v := VersionView{Version: version, Commit: commit, Modified: modified == "true",
		GoVersion: goruntime.Version(), OS: goruntime.GOOS, Arch: goruntime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && v.Commit == "":
				v.Commit = s.Value
			case s.Key == "vcs.modified" && modified == "":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print weir's version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return printJSON(cmd.OutOrStdout(), versionView())
			}
			printVersion(cmd.OutOrStdout(), versionView())
			return nil
		},
	}
	jsonFlag(cmd, &asJSON)
	return cmd
}

func printVersion(w io.Writer, v VersionView) {
	fmt.Fprintf(w, "weir %s\n", v.Version)
	c := v.Commit
	if c == "" {
		c = "unknown"
	}
	if v.Modified {
		c += " (modified)"
	}
	fmt.Fprintf(w, "commit %s\n", c)
	fmt.Fprintf(w, "go %s %s/%s\n", v.GoVersion, v.OS, v.Arch)
}
