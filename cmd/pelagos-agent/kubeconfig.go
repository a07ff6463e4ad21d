package main

import (
	"encoding/base64"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
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
The certificates live under <root>/kubeapi, which only root can read; the
state root is the one the agent on --socket (or $PELAGOS_SOCKET) reports,
unless --root is given:

  sudo pelagos-agent kubeconfig > ~/.kube/pelagos.yaml
  KUBECONFIG=~/.kube/pelagos.yaml kubectl get pods -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.locateState(cmd); err != nil {
				return err
			}
			if server == "" {
				addr, err := agent.Endpoint(g.Root)
				if err != nil {
					return err
				}
				server = "https://" + addr
			}
			cred, err := agent.ClientCredentials(g.Root, readOnly)
			if err != nil {
				return err
			}
			b64 := base64.StdEncoding.EncodeToString
			cfg := map[string]any{
				"apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": map[string]any{},
				"clusters": []any{map[string]any{"name": name, "cluster": map[string]any{
					"server": server, "certificate-authority-data": b64(cred.CA)}}},
				"users": []any{map[string]any{"name": cred.User + "@" + name, "user": map[string]any{
					"client-certificate-data": b64(cred.ClientCert), "client-key-data": b64(cred.Key)}}},
				"contexts": []any{map[string]any{"name": name, "context": map[string]any{
					"cluster": name, "user": cred.User + "@" + name, "namespace": "default"}}},
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
	addSocketFlag(f, g)
	addRootFlags(f, g)
	f.StringVar(&server, "server", "", "the API's URL (default: the address the running agent recorded)")
	f.StringVar(&name, "name", "pelagos", "name of the cluster, user and context in the kubeconfig")
	f.BoolVar(&readOnly, "read-only", false, "embed the viewer certificate: no Secrets, no writes, no exec")
	return cmd
}
