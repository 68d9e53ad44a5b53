package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weirstream/weir/internal/tlsconf"
)

// Mutual TLS: --tls-cert, --tls-key and --tls-ca on every command that
// opens a connection (jobmanager, taskmanager, local, job, cluster), all
// three or none. The files are re-read when they change (package tlsconf).

// tlsFlags are --tls-cert, --tls-key and --tls-ca.
type tlsFlags struct {
	cert, key, ca string

	loaded bool
	cfg    *tlsconf.Config
}

func (f *tlsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate this process presents, as server and as client; with --tls-key and --tls-ca turns on mutual TLS (re-read when it changes)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.ca, "tls-ca", "", "PEM CA certificate(s) that sign every certificate of the cluster; peers not signed by it are refused")
}

// config loads the files once per command: nil without the flags, an error
// when only some are given or the files do not load.
func (f *tlsFlags) config() (*tlsconf.Config, error) {
	if f.loaded {
		return f.cfg, nil
	}
	if f.cert == "" && f.key == "" && f.ca == "" {
		f.loaded = true
		return nil, nil
	}
	c, err := tlsconf.Load(tlsconf.Files{Cert: f.cert, Key: f.key, CA: f.ca})
	if err != nil {
		return nil, err
	}
	f.loaded, f.cfg = true, c
	return c, nil
}

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make TLS certificates for trying mutual TLS locally",
	}
	var out, hosts string
	var validity time.Duration
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Create a CA, a certificate for every process (node.pem) and one for the CLI (client.pem)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			var hs []string
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					hs = append(hs, h)
				}
			}
			g, err := tlsconf.Generate(out, hs, validity)
			if err != nil {
				return err
			}
			printGenerated(cmd.OutOrStdout(), g, append(append([]string(nil), tlsconf.DefaultHosts...), hs...), validity)
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "directory to write the files into")
	gen.Flags().StringVar(&hosts, "hosts", "", "host names and IP addresses the processes are reached at, comma-separated (127.0.0.1, ::1 and localhost are always included)")
	gen.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "how long the certificates are valid")
	cmd.AddCommand(gen)
	return cmd
}

func printGenerated(w io.Writer, g tlsconf.Generated, hosts []string, validity time.Duration) {
	fmt.Fprintf(w, "wrote, valid for %v:\n", validity)
	fmt.Fprintf(w, "  %-28s CA certificate: every process trusts it\n", g.CA)
	fmt.Fprintf(w, "  %-28s CA key: keep it safe, it signs new certificates\n", g.CAKey)
	fmt.Fprintf(w, "  %-28s certificate of the JobManagers and TaskManagers (server and client), for %s\n", g.NodeCert, strings.Join(hosts, ", "))
	fmt.Fprintf(w, "  %-28s its key\n", g.NodeKey)
	fmt.Fprintf(w, "  %-28s certificate of the CLI\n", g.ClientCert)
	fmt.Fprintf(w, "  %-28s its key\n", g.ClientKey)
	fmt.Fprintf(w, "\nJobManagers and TaskManagers:\n  --tls-cert %s --tls-key %s --tls-ca %s\n", g.NodeCert, g.NodeKey, g.CA)
	fmt.Fprintf(w, "the CLI (weir job ..., weir cluster status):\n  --tls-cert %s --tls-key %s --tls-ca %s\n", g.ClientCert, g.ClientKey, g.CA)
}
