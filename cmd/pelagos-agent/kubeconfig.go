package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func init() { registerCommand(newKubeconfigCommand) }

func newKubeconfigCommand(g *globalOptions) *cobra.Command {
	var server, name string
	var readOnly bool
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print a kubeconfig for kubectl, k9s and client-go against this node",
		Long: `Print a kubeconfig that reaches the agent's Kubernetes API over TCP with TLS,
with a client certificate embedded (the admin one, or with --read-only one
that may read everything but Secrets and may not write, exec, attach or
port-forward). kubectl cannot open a unix socket, so the TCP endpoint
(run --api-listen, 127.0.0.1:6448 by default) is how it reaches the node.
The certificates live under <root>/kubeapi, which only root can read:

  sudo pelagos-agent kubeconfig > ~/.kube/pelagos.yaml
  KUBECONFIG=~/.kube/pelagos.yaml kubectl get pods -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := tlsDir(g.Root)
			if server == "" {
				b, err := os.ReadFile(filepath.Join(dir, endpointFile))
				switch {
				case errors.Is(err, os.ErrNotExist):
					return fmt.Errorf("no TCP endpoint recorded in %s: the agent serves the Kubernetes API over TCP only with `run --api-listen ADDRESS` (on by default); start it, or pass --server", dir)
				case err != nil:
					return fmt.Errorf("read the agent's endpoint: %w", err)
				}
				server = "https://" + strings.TrimSpace(string(b))
			}
			cc := adminClient
			if readOnly {
				cc = viewerClient
			}
			ca, err := loadPair(dir, "ca")
			if err != nil {
				return fmt.Errorf("the agent's CA (made at the first start with --api-listen): %w", err)
			}
			client, err := loadPair(dir, cc.file)
			if err != nil {
				return fmt.Errorf("client certificate: %w", err)
			}
			key, err := client.keyPEM()
			if err != nil {
				return err
			}
			b64 := base64.StdEncoding.EncodeToString
			cfg := map[string]any{
				"apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": map[string]any{},
				"clusters": []any{map[string]any{"name": name, "cluster": map[string]any{
					"server": server, "certificate-authority-data": b64(ca.certPEM())}}},
				"users": []any{map[string]any{"name": cc.user + "@" + name, "user": map[string]any{
					"client-certificate-data": b64(client.certPEM()), "client-key-data": b64(key)}}},
				"contexts": []any{map[string]any{"name": name, "context": map[string]any{
					"cluster": name, "user": cc.user + "@" + name, "namespace": "default"}}},
			}
			out, err := yaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	addRootFlags(f, g)
	f.StringVar(&server, "server", "", "the API's URL (default: the address the running agent recorded)")
	f.StringVar(&name, "name", "pelagos", "name of the cluster, user and context in the kubeconfig")
	f.BoolVar(&readOnly, "read-only", false, "embed the viewer certificate: no Secrets, no writes, no exec")
	return cmd
}
