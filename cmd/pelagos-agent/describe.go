package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/pelagos-containers/pelagos-agent/reconcile/api"
	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
)

func init() { registerCommand(newDescribeCommand) }

// clock is the time ages are measured against; tests fix it.
var clock = time.Now

func newDescribeCommand(g *globalOptions) *cobra.Command {
	var namespace string
	var all, showEvents bool
	cmd := &cobra.Command{
		Use:   "describe pod [NAME...]",
		Short: "Show pods as kubectl describe pod does: spec, status, agent facts, events",
		Long: `Show pods as kubectl describe pod does: containers with their command,
args, ports, environment (values from Secrets hidden), mounts, limits,
probes and state; volumes, conditions, QoS class and the pod's events, read
from the agent's Kubernetes API. The agent adds what only it knows: the
manifest file, the sandbox, its network namespace and pause process, and
the manifest's last error.

Without NAME every pod of the namespace is described (-A: of every
namespace), without events unless --show-events is given, as kubectl does.
A NAME that no pod has describes the pods whose names begin with it.`,
		Example: `  pelagos-agent describe pod web
  pelagos-agent describe pods -A`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeResourceThenPods(g, "pod", "pods", "po"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if r := args[0]; r != "pod" && r != "pods" && r != "po" {
				return &exitError{code: exitUsage, err: fmt.Errorf("unknown resource %q: only pod", r)}
			}
			ns := namespace
			if all {
				ns = ""
			}
			c := g.client()
			pods, err := selectPods(cmd.Context(), c, ns, args[1:])
			if len(pods) == 0 && err == nil {
				if all {
					fmt.Fprintln(g.stderr, "No resources found")
				} else {
					fmt.Fprintf(g.stderr, "No resources found in %s namespace.\n", namespace)
				}
				return nil
			}
			events := showEvents
			if len(pods) > 1 && !cmd.Flags().Changed("show-events") {
				events = false
			}
			now := clock()
			for i := range pods {
				p := &pods[i]
				var evs []corev1.Event
				if events {
					if evs, err = c.KubeEvents(cmd.Context(), p.Namespace, p.Name); err != nil {
						return err
					}
				}
				if i > 0 {
					fmt.Fprint(g.stdout, "\n\n")
				}
				describePod(g.stdout, p, evs, events, now)
			}
			return err
		},
	}
	addSocketFlag(cmd.Flags(), g)
	addNamespaceFlags(cmd, g, &namespace, &all)
	cmd.Flags().BoolVar(&showEvents, "show-events", true, "show the pods' events; for several pods only when given")
	return cmd
}

// selectPods finds the pods to describe as kubectl does: every pod of ns
// ("" for all) without names; else each named pod, and for a single name
// that no pod has, the pods whose names begin with it. Pods not found
// make the error; the others are still returned.
func selectPods(ctx context.Context, c *api.Client, ns string, names []string) ([]corev1.Pod, error) {
	if len(names) == 0 || ns == "" {
		list, err := c.KubePods(ctx, ns)
		if err != nil || len(names) == 0 {
			return list, err
		}
		var keep []corev1.Pod
		for _, p := range list {
			if slices.Contains(names, p.Name) {
				keep = append(keep, p)
			}
		}
		if len(keep) == 0 && len(names) == 1 {
			keep = byPrefix(list, names[0])
		}
		if len(keep) == 0 {
			return nil, fmt.Errorf("pods %q not found", strings.Join(names, ", "))
		}
		return keep, nil
	}
	var out []corev1.Pod
	var errs []error
	for _, name := range names {
		p, err := c.KubePod(ctx, ns, name)
		if err == nil {
			out = append(out, *p)
			continue
		}
		if len(names) == 1 {
			list, lerr := c.KubePods(ctx, ns)
			if match := byPrefix(list, name); lerr == nil && len(match) > 0 {
				return match, nil
			}
		}
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

func byPrefix(pods []corev1.Pod, prefix string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if strings.HasPrefix(p.Name, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// terminalEscaper keeps what a manifest or a container wrote (an env
// value, a termination message) from driving the terminal, as kubectl's
// printers do.
var terminalEscaper = strings.NewReplacer("\x1b", "^[", "\r", "\\r")

// describer writes kubectl's describe layout: levels indented by two
// spaces, and one tabwriter over the whole text, so that the values of
// consecutive "Key:\tvalue" lines line up.
type describer struct{ tw *tabwriter.Writer }

func (d describer) line(level int, format string, args ...any) {
	s := strings.Repeat("  ", level) + fmt.Sprintf(format, args...)
	_, _ = io.WriteString(d.tw, terminalEscaper.Replace(s))
}

// describePod prints a served Pod in kubectl's describe layout and order.
// The agent's facts, which kubectl shows as annotations, get lines of
// their own; a waiting container's message is shown too (kubectl keeps it
// to the events): it says why the pod does not run.
func describePod(out io.Writer, pod *corev1.Pod, events []corev1.Event, showEvents bool, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	w := describer{tw}
	since := func(t time.Time) string {
		if t.IsZero() {
			return "<unknown>"
		}
		return duration.HumanDuration(now.Sub(t))
	}
	spec, st := &pod.Spec, &pod.Status
	w.line(0, "Name:\t%s\n", pod.Name)
	w.line(0, "Namespace:\t%s\n", pod.Namespace)
	if spec.Priority != nil {
		w.line(0, "Priority:\t%d\n", *spec.Priority)
	}
	if spec.PriorityClassName != "" {
		w.line(0, "Priority Class Name:\t%s\n", spec.PriorityClassName)
	}
	if spec.RuntimeClassName != nil && *spec.RuntimeClassName != "" {
		w.line(0, "Runtime Class Name:\t%s\n", *spec.RuntimeClassName)
	}
	if spec.ServiceAccountName != "" {
		w.line(0, "Service Account:\t%s\n", spec.ServiceAccountName)
	}
	if spec.NodeName == "" {
		w.line(0, "Node:\t<none>\n")
	} else {
		w.line(0, "Node:\t%s\n", spec.NodeName+"/"+st.HostIP)
	}
	if st.StartTime != nil {
		w.line(0, "Start Time:\t%s\n", st.StartTime.Format(time.RFC1123Z))
	}
	w.multiline("Labels", pod.Labels)
	w.annotations(pod.Annotations)
	if pod.DeletionTimestamp != nil && st.Phase != corev1.PodFailed && st.Phase != corev1.PodSucceeded {
		w.line(0, "Status:\tTerminating (lasts %s)\n", since(pod.DeletionTimestamp.Time))
		if pod.DeletionGracePeriodSeconds != nil {
			w.line(0, "Termination Grace Period:\t%ds\n", *pod.DeletionGracePeriodSeconds)
		}
	} else {
		w.line(0, "Status:\t%s\n", st.Phase)
	}
	if st.Reason != "" {
		w.line(0, "Reason:\t%s\n", st.Reason)
	}
	if st.Message != "" {
		w.line(0, "Message:\t%s\n", st.Message)
	}
	if sc := spec.SecurityContext; sc != nil && sc.SeccompProfile != nil {
		w.seccomp(0, sc.SeccompProfile)
	}
	ag := kubeapi.AgentStatus(pod.Annotations)
	if ag.SourceFile != "" {
		w.line(0, "Manifest:\t%s\n", ag.SourceFile)
	}
	if ag.SandboxID != "" {
		w.line(0, "Sandbox:\t%s\n", ag.SandboxID)
	}
	if ag.NetNS != "" {
		w.line(0, "Netns:\t%s\n", ag.NetNS)
	}
	if ag.PausePID != 0 {
		w.line(0, "Pause PID:\t%d\n", ag.PausePID)
	}
	if e := ag.LastError; e != nil {
		msg := e.Message
		if ag.Stale {
			msg += " (the pod runs its last good version)"
		}
		w.line(0, "Last Error:\t%s\n", msg)
	}
	w.line(0, "IP:\t%s\n", st.PodIP)
	if len(st.PodIPs) == 0 {
		w.line(0, "IPs:\t<none>\n")
	} else {
		w.line(0, "IPs:\n")
		for _, ip := range st.PodIPs {
			w.line(1, "IP:\t%s\n", ip.IP)
		}
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			w.line(0, "Controlled By:\t%s/%s\n", ref.Kind, ref.Name)
		}
	}
	if spec.Resources != nil {
		w.line(0, "Resources:\n")
		w.resources(1, spec.Resources)
	}
	if len(spec.InitContainers) > 0 {
		w.containers("Init Containers", pod, spec.InitContainers, st.InitContainerStatuses)
	}
	w.containers("Containers", pod, spec.Containers, st.ContainerStatuses)
	if len(spec.ReadinessGates) > 0 {
		w.line(0, "Readiness Gates:\n  Type\tStatus\n")
		for _, g := range spec.ReadinessGates {
			status := "<none>"
			for _, c := range st.Conditions {
				if c.Type == g.ConditionType {
					status = string(c.Status)
					break
				}
			}
			w.line(1, "%v \t%v \n", g.ConditionType, status)
		}
	}
	if len(st.Conditions) > 0 {
		w.line(0, "Conditions:\n  Type\tStatus\n")
		for _, c := range st.Conditions {
			w.line(1, "%v \t%v \n", c.Type, c.Status)
		}
	}
	w.volumes(spec.Volumes)
	w.line(0, "QoS Class:\t%s\n", st.QOSClass)
	w.multiline("Node-Selectors", spec.NodeSelector)
	w.tolerations(spec.Tolerations)
	if showEvents {
		w.events(events, since)
	}
	tw.Flush()
}

// mapField prints a map as kubectl does: under one title, the entries
// of the keys keep admits, sorted, one a line, or <none>.
func (w describer) mapField(title string, m map[string]string, keep func(string) bool, entry func(k, v string)) {
	w.line(0, "%s:\t", title)
	keys := make([]string, 0, len(m))
	for k := range m {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		w.line(0, "<none>\n")
		return
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			w.line(0, "\t")
		}
		entry(k, m[k])
	}
}

// multiline prints a map as key=value lines.
func (w describer) multiline(title string, m map[string]string) {
	w.mapField(title, m, func(string) bool { return true }, func(k, v string) { w.line(0, "%s=%s\n", k, v) })
}

// maxAnnotationLen is where kubectl breaks an annotation onto lines of
// its own and shortens them.
const maxAnnotationLen = 140

// annotations prints the pod's own annotations (not the agent's, which
// have lines of their own, nor kubectl's last-applied configuration).
func (w describer) annotations(m map[string]string) {
	own := func(k string) bool { return !kubeapi.IsAgentAnnotation(k) && k != corev1.LastAppliedConfigAnnotation }
	w.mapField("Annotations", m, own, func(k, v string) {
		v = strings.TrimSuffix(v, "\n")
		if len(v)+len(k)+2 <= maxAnnotationLen && !strings.Contains(v, "\n") {
			w.line(0, "%s: %s\n", k, v)
			return
		}
		w.line(0, "%s:\n", k)
		for _, s := range strings.Split(v, "\n") {
			if len(s) > maxAnnotationLen-2 {
				s = s[:maxAnnotationLen-2] + "..."
			}
			w.line(0, "\t  %s\n", s)
		}
	})
}

func (w describer) seccomp(level int, p *corev1.SeccompProfile) {
	w.line(level, "SeccompProfile:\t%s\n", p.Type)
	if p.Type == corev1.SeccompProfileTypeLocalhost && p.LocalhostProfile != nil {
		w.line(level+1, "LocalhostProfile:\t%s\n", *p.LocalhostProfile)
	}
}

func (w describer) containers(title string, pod *corev1.Pod, cs []corev1.Container, statuses []corev1.ContainerStatus) {
	byName := map[string]corev1.ContainerStatus{}
	for _, s := range statuses {
		byName[s.Name] = s
	}
	if len(cs) == 0 {
		w.line(0, "%s: <none>\n", title)
	} else {
		w.line(0, "%s:\n", title)
	}
	for i := range cs {
		c := &cs[i]
		s, ok := byName[c.Name]
		w.line(1, "%s:\n", c.Name)
		if ok {
			w.line(2, "Container ID:\t%s\n", s.ContainerID)
		}
		w.line(2, "Image:\t%s\n", c.Image)
		if ok {
			w.line(2, "Image ID:\t%s\n", s.ImageID)
		}
		ports, hostPorts := portList(c.Ports, false), portList(c.Ports, true)
		if strings.Contains(ports, ",") {
			w.line(2, "Ports:\t%s\n", ports)
		} else {
			w.line(2, "Port:\t%s\n", orNone(ports))
		}
		if strings.Contains(hostPorts, ",") {
			w.line(2, "Host Ports:\t%s\n", hostPorts)
		} else {
			w.line(2, "Host Port:\t%s\n", orNone(hostPorts))
		}
		if sc := c.SecurityContext; sc != nil && sc.SeccompProfile != nil {
			w.seccomp(2, sc.SeccompProfile)
		}
		for _, part := range []struct {
			title string
			words []string
		}{{"Command", c.Command}, {"Args", c.Args}} {
			if len(part.words) == 0 {
				continue
			}
			w.line(2, "%s:\n", part.title)
			for _, word := range part.words {
				for _, l := range strings.Split(word, "\n") {
					w.line(3, "%s\n", l)
				}
			}
		}
		if ok {
			w.state("State", s.State)
			if s.LastTerminationState.Terminated != nil {
				w.state("Last State", s.LastTerminationState)
			}
			w.line(2, "Ready:\t%s\n", trueFalse(s.Ready))
			w.line(2, "Restart Count:\t%d\n", s.RestartCount)
		}
		w.resources(2, &c.Resources)
		for _, p := range []struct {
			title string
			probe *corev1.Probe
		}{{"Liveness", c.LivenessProbe}, {"Readiness", c.ReadinessProbe}, {"Startup", c.StartupProbe}} {
			if p.probe != nil {
				w.line(2, "%s:\t%s\n", p.title, describeProbe(p.probe))
			}
		}
		if len(c.EnvFrom) > 0 {
			w.line(2, "Environment Variables from:\n")
			for _, e := range c.EnvFrom {
				from, name, optional := "", "", false
				switch {
				case e.ConfigMapRef != nil:
					from, name, optional = "ConfigMap", e.ConfigMapRef.Name, isTrue(e.ConfigMapRef.Optional)
				case e.SecretRef != nil:
					from, name, optional = "Secret", e.SecretRef.Name, isTrue(e.SecretRef.Optional)
				}
				if e.Prefix != "" {
					from += " with prefix '" + e.Prefix + "'"
				}
				w.line(3, "%s\t%s\tOptional: %t\n", name, from, optional)
			}
		}
		w.env(pod, c)
		if len(c.VolumeMounts) == 0 {
			w.line(2, "Mounts:\t<none>\n")
		} else {
			w.line(2, "Mounts:\n")
		}
		mounts := slices.Clone(c.VolumeMounts)
		slices.SortStableFunc(mounts, func(a, b corev1.VolumeMount) int { return strings.Compare(a.MountPath, b.MountPath) })
		for _, m := range mounts {
			flags := "rw"
			if m.ReadOnly {
				flags = "ro"
			}
			if m.SubPath != "" {
				flags += fmt.Sprintf(",path=%q", m.SubPath)
			}
			w.line(3, "%s from %s (%s)\n", m.MountPath, m.Name, flags)
		}
	}
}

func portList(ports []corev1.ContainerPort, host bool) string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		n := p.ContainerPort
		if host {
			n = p.HostPort
		}
		s := fmt.Sprintf("%d/%s", n, p.Protocol)
		if p.Name != "" {
			s += " (" + p.Name + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func trueFalse(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func isTrue(b *bool) bool { return b != nil && *b }

func (w describer) state(title string, s corev1.ContainerState) {
	switch {
	case s.Running != nil:
		w.line(2, "%s:\tRunning\n", title)
		w.line(3, "Started:\t%s\n", s.Running.StartedAt.Format(time.RFC1123Z))
	case s.Waiting != nil:
		w.line(2, "%s:\tWaiting\n", title)
		if s.Waiting.Reason != "" {
			w.line(3, "Reason:\t%s\n", s.Waiting.Reason)
		}
		if s.Waiting.Message != "" {
			w.line(3, "Message:\t%s\n", s.Waiting.Message)
		}
	case s.Terminated != nil:
		t := s.Terminated
		w.line(2, "%s:\tTerminated\n", title)
		if t.Reason != "" {
			w.line(3, "Reason:\t%s\n", t.Reason)
		}
		if t.Message != "" {
			w.line(3, "Message:\t%s\n", t.Message)
		}
		w.line(3, "Exit Code:\t%d\n", t.ExitCode)
		if t.Signal > 0 {
			w.line(3, "Signal:\t%d\n", t.Signal)
		}
		w.line(3, "Started:\t%s\n", t.StartedAt.Format(time.RFC1123Z))
		w.line(3, "Finished:\t%s\n", t.FinishedAt.Format(time.RFC1123Z))
	default:
		w.line(2, "%s:\tWaiting\n", title)
	}
}

func (w describer) resources(level int, r *corev1.ResourceRequirements) {
	for _, part := range []struct {
		title string
		list  corev1.ResourceList
	}{{"Limits", r.Limits}, {"Requests", r.Requests}} {
		if len(part.list) == 0 {
			continue
		}
		w.line(level, "%s:\n", part.title)
		names := make([]string, 0, len(part.list))
		for n := range part.list {
			names = append(names, string(n))
		}
		sort.Strings(names)
		for _, n := range names {
			q := part.list[corev1.ResourceName(n)]
			w.line(level+1, "%s:\t%s\n", n, q.String())
		}
	}
}

// describeProbe is kubectl's one-line form of a probe.
func describeProbe(p *corev1.Probe) string {
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds successThreshold=%d failureThreshold=%d",
		p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
	switch {
	case p.Exec != nil:
		return fmt.Sprintf("exec %v %s", p.Exec.Command, attrs)
	case p.HTTPGet != nil:
		u := url.URL{Scheme: strings.ToLower(string(p.HTTPGet.Scheme)), Host: p.HTTPGet.Host, Path: p.HTTPGet.Path}
		if port := p.HTTPGet.Port.String(); port != "" {
			u.Host = net.JoinHostPort(p.HTTPGet.Host, port)
		}
		return fmt.Sprintf("http-get %s %s", u.String(), attrs)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.TCPSocket.Host, p.TCPSocket.Port.String(), attrs)
	case p.GRPC != nil:
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		return fmt.Sprintf("grpc <pod>:%d %s %s", p.GRPC.Port, service, attrs)
	}
	return "unknown " + attrs
}

// env prints a container's environment as kubectl does: values from
// Secrets and ConfigMaps by reference only, never their data.
func (w describer) env(pod *corev1.Pod, c *corev1.Container) {
	if len(c.Env) == 0 {
		w.line(2, "Environment:\t<none>\n")
		return
	}
	w.line(2, "Environment:\n")
	for _, e := range c.Env {
		vf := e.ValueFrom
		switch {
		case vf == nil:
			for i, s := range strings.Split(e.Value, "\n") {
				if i == 0 {
					w.line(3, "%s:\t%s\n", e.Name, s)
				} else {
					w.line(3, "\t%s\n", s)
				}
			}
		case vf.FieldRef != nil:
			w.line(3, "%s:\t%s (%s:%s)\n", e.Name, fieldValue(pod, vf.FieldRef.FieldPath), vf.FieldRef.APIVersion, vf.FieldRef.FieldPath)
		case vf.ResourceFieldRef != nil:
			w.line(3, "%s:\t%s (%s)\n", e.Name, resourceValue(pod, c, vf.ResourceFieldRef), vf.ResourceFieldRef.Resource)
		case vf.SecretKeyRef != nil:
			r := vf.SecretKeyRef
			w.line(3, "%s:\t<set to the key '%s' in secret '%s'>\tOptional: %t\n", e.Name, r.Key, r.Name, isTrue(r.Optional))
		case vf.ConfigMapKeyRef != nil:
			r := vf.ConfigMapKeyRef
			w.line(3, "%s:\t<set to the key '%s' of config map '%s'>\tOptional: %t\n", e.Name, r.Key, r.Name, isTrue(r.Optional))
		}
	}
}

// fieldValue is the value of a downward-API field of the pod.
func fieldValue(pod *corev1.Pod, path string) string {
	inBrackets := func(prefix string) (string, bool) {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			return path[len(prefix)+2 : len(path)-2], true
		}
		return "", false
	}
	if k, ok := inBrackets("metadata.labels"); ok {
		return pod.Labels[k]
	}
	if k, ok := inBrackets("metadata.annotations"); ok {
		return pod.Annotations[k]
	}
	ips := func(list []string) string { return strings.Join(list, ",") }
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "status.hostIP":
		return pod.Status.HostIP
	case "status.hostIPs":
		var l []string
		for _, ip := range pod.Status.HostIPs {
			l = append(l, ip.IP)
		}
		return ips(l)
	case "status.podIP":
		return pod.Status.PodIP
	case "status.podIPs":
		var l []string
		for _, ip := range pod.Status.PodIPs {
			l = append(l, ip.IP)
		}
		return ips(l)
	}
	return ""
}

// resourceValue is a container's limit or request in the divisor's units,
// rounded up, as the kubelet hands it to the container: an unset limit is
// the pod-level limit, else the node's allocatable amount.
func resourceValue(pod *corev1.Pod, c *corev1.Container, r *corev1.ResourceFieldSelector) string {
	kind, name, _ := strings.Cut(r.Resource, ".")
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok && kind == "limits" && pod.Spec.Resources != nil {
		q, ok = pod.Spec.Resources.Limits[corev1.ResourceName(name)]
	}
	divisor := r.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if !ok {
		if kind == "limits" && (name == "cpu" || name == "memory") {
			return "node allocatable"
		}
		return "0"
	}
	// a/b rounded up, never wrapping: quantities reach 8Ei.
	ceil := func(a, b int64) string {
		n := a / b
		if a%b != 0 {
			n++
		}
		return strconv.FormatInt(n, 10)
	}
	if name == "cpu" {
		return ceil(q.MilliValue(), divisor.MilliValue())
	}
	return ceil(q.Value(), divisor.Value())
}

func (w describer) volumes(vs []corev1.Volume) {
	if len(vs) == 0 {
		w.line(0, "Volumes:\t<none>\n")
		return
	}
	w.line(0, "Volumes:\n")
	for _, v := range vs {
		w.line(1, "%s:\n", v.Name)
		field := func(k string, v any) { w.line(2, "%s:\t%v\n", k, v) }
		switch s := v.VolumeSource; {
		case s.HostPath != nil:
			t := "<none>"
			if s.HostPath.Type != nil {
				t = string(*s.HostPath.Type)
			}
			field("Type", "HostPath (bare host directory volume)")
			field("Path", s.HostPath.Path)
			field("HostPathType", t)
		case s.EmptyDir != nil:
			limit := "<unset>"
			if l := s.EmptyDir.SizeLimit; l != nil && l.Sign() > 0 {
				limit = l.String()
			}
			field("Type", "EmptyDir (a temporary directory that shares a pod's lifetime)")
			field("Medium", s.EmptyDir.Medium)
			field("SizeLimit", limit)
		case s.Secret != nil:
			field("Type", "Secret (a volume populated by a Secret)")
			field("SecretName", s.Secret.SecretName)
			field("Optional", isTrue(s.Secret.Optional))
		case s.ConfigMap != nil:
			field("Type", "ConfigMap (a volume populated by a ConfigMap)")
			field("Name", s.ConfigMap.Name)
			field("Optional", isTrue(s.ConfigMap.Optional))
		case s.PersistentVolumeClaim != nil:
			field("Type", "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)")
			field("ClaimName", s.PersistentVolumeClaim.ClaimName)
			field("ReadOnly", s.PersistentVolumeClaim.ReadOnly)
		case s.DownwardAPI != nil:
			field("Type", "DownwardAPI (a volume populated by information about the pod)")
			w.line(2, "Items:\n")
			for _, it := range s.DownwardAPI.Items {
				if it.FieldRef != nil {
					w.line(3, "%v -> %v\n", it.FieldRef.FieldPath, it.Path)
				}
				if it.ResourceFieldRef != nil {
					w.line(3, "%v -> %v\n", it.ResourceFieldRef.Resource, it.Path)
				}
			}
		case s.Projected != nil:
			field("Type", "Projected (a volume that contains injected data from multiple sources)")
			for _, src := range s.Projected.Sources {
				switch {
				case src.Secret != nil:
					field("SecretName", src.Secret.Name)
					field("Optional", isTrue(src.Secret.Optional))
				case src.DownwardAPI != nil:
					field("DownwardAPI", true)
				case src.ConfigMap != nil:
					field("ConfigMapName", src.ConfigMap.Name)
					field("Optional", isTrue(src.ConfigMap.Optional))
				case src.ServiceAccountToken != nil && src.ServiceAccountToken.ExpirationSeconds != nil:
					field("TokenExpirationSeconds", *src.ServiceAccountToken.ExpirationSeconds)
				}
			}
		case s.Image != nil:
			field("Type", "Image (a container image or OCI artifact)")
			field("Reference", s.Image.Reference)
			field("PullPolicy", s.Image.PullPolicy)
		default:
			w.line(1, "<unknown>\n")
		}
	}
}

func (w describer) tolerations(ts []corev1.Toleration) {
	w.line(0, "Tolerations:\t")
	if len(ts) == 0 {
		w.line(0, "<none>\n")
		return
	}
	ts = slices.Clone(ts)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Key < ts[j].Key })
	for i, t := range ts {
		if i > 0 {
			w.line(0, "\t")
		}
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if t.Operator == corev1.TolerationOpExists && t.Value == "" {
			if t.Key != "" || t.Effect != "" {
				s += " "
			}
			s += "op=Exists"
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		w.line(0, "%s\n", s)
	}
}

// events prints the pod's events as kubectl does: oldest last-seen first,
// a repeated one as "LAST (xN over FIRST)", the container's field path
// before the message. The table is aligned on its own.
func (w describer) events(evs []corev1.Event, since func(time.Time) string) {
	if len(evs) == 0 {
		w.line(0, "Events:\t<none>\n")
		return
	}
	w.tw.Flush()
	evs = slices.Clone(evs)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].LastTimestamp.Before(&evs[j].LastTimestamp) })
	w.line(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
	w.line(1, "----\t------\t----\t----\t-------\n")
	for _, e := range evs {
		w.line(1, "%s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, eventAge(e, since), eventSource(e), eventMessage(e))
	}
}

// eventAge is kubectl's age of an event: "8s", or "8s (x7 over 20s)" for
// one seen several times.
func eventAge(e corev1.Event, since func(time.Time) string) string {
	first := since(e.EventTime.Time)
	if e.EventTime.IsZero() {
		first = since(e.FirstTimestamp.Time)
	}
	switch {
	case e.Series != nil:
		return fmt.Sprintf("%s (x%d over %s)", since(e.Series.LastObservedTime.Time), e.Series.Count, first)
	case e.Count > 1:
		return fmt.Sprintf("%s (x%d over %s)", since(e.LastTimestamp.Time), e.Count, first)
	}
	return first
}

func eventSource(e corev1.Event) string {
	if e.Source.Component != "" {
		return e.Source.Component
	}
	return e.ReportingController
}

func eventMessage(e corev1.Event) string {
	msg := strings.TrimSpace(e.Message)
	if fp := e.InvolvedObject.FieldPath; fp != "" {
		msg = fp + ": " + msg
	}
	return msg
}
