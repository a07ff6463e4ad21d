package kubeapi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// A printer is server-side printing for one kind: the columns kubectl shows
// (priority 1 only with -o wide) and the cells of one object's row.
type printer struct {
	columns []metav1.TableColumnDefinition
	cells   func(o object, now time.Time) []any
	// conditions marks rows kubectl may treat specially (completed pods).
	conditions func(o object) []metav1.TableRowCondition
}

func col(name, typ, format, desc string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Format: format, Description: desc, Priority: priority}
}

var (
	metaDoc = metav1.ObjectMeta{}.SwaggerDoc()
	nameCol = col("Name", "string", "name", metaDoc["name"], 0)
	ageCol  = col("Age", "string", "", metaDoc["creationTimestamp"], 0)
)

// since is kubectl's age: "45s", "3m12s", "5h", "2d", or <unknown>.
func since(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var podPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
		col("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
		col("Restarts", "string", "", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
		ageCol,
		col("IP", "string", "", corev1.PodStatus{}.SwaggerDoc()["podIP"], 1),
		col("Node", "string", "", corev1.PodSpec{}.SwaggerDoc()["nodeName"], 1),
		col("Nominated Node", "string", "", corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"], 1),
		col("Readiness Gates", "string", "", corev1.PodSpec{}.SwaggerDoc()["readinessGates"], 1),
	},
	cells: func(o object, now time.Time) []any {
		pod := o.(*corev1.Pod)
		ready, total, status, restarts, last := podSummary(pod)
		rs := strconv.Itoa(restarts)
		if restarts != 0 && !last.IsZero() {
			rs = fmt.Sprintf("%d (%s ago)", restarts, since(last, now))
		}
		ip := ""
		if len(pod.Status.PodIPs) > 0 {
			ip = pod.Status.PodIPs[0].IP
		}
		gates := "<none>"
		if n := len(pod.Spec.ReadinessGates); n > 0 {
			ok := 0
			for _, g := range pod.Spec.ReadinessGates {
				for _, c := range pod.Status.Conditions {
					if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
						ok++
					}
				}
			}
			gates = fmt.Sprintf("%d/%d", ok, n)
		}
		return []any{pod.Name, fmt.Sprintf("%d/%d", ready, total), status, rs, since(pod.CreationTimestamp, now),
			orNone(ip), orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates}
	},
	conditions: func(o object) []metav1.TableRowCondition {
		switch o.(*corev1.Pod).Status.Phase {
		case corev1.PodSucceeded, corev1.PodFailed:
			return []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue,
				Reason: string(o.(*corev1.Pod).Status.Phase), Message: "The pod has completed successfully."}}
		}
		return nil
	},
}

// podSummary computes READY, STATUS and RESTARTS as kubectl does: the
// status is the phase, replaced by the most telling reason of an init
// container (Init:N/M, Init:Error...) or of an app container
// (CrashLoopBackOff, Completed...), and by Terminating once the pod is
// being deleted.
func podSummary(pod *corev1.Pod) (ready, total int, status string, restarts int, last metav1.Time) {
	total = len(pod.Spec.Containers)
	status = string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		status = pod.Status.Reason
	}
	noteRestart := func(cs corev1.ContainerStatus) {
		restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(last.Time) {
			last = t.FinishedAt
		}
	}
	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		noteRestart(cs)
		t, w := cs.State.Terminated, cs.State.Waiting
		switch {
		case t != nil && t.ExitCode == 0:
			continue
		case t != nil:
			switch {
			case t.Reason != "":
				status = "Init:" + t.Reason
			case t.Signal != 0:
				status = fmt.Sprintf("Init:Signal:%d", t.Signal)
			default:
				status = fmt.Sprintf("Init:ExitCode:%d", t.ExitCode)
			}
		case w != nil && w.Reason != "" && w.Reason != "PodInitializing":
			status = "Init:" + w.Reason
		default:
			status = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}
	if !initializing || podCondition(pod, corev1.PodInitialized) {
		restarts, last = 0, metav1.Time{}
		running := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := pod.Status.ContainerStatuses[i]
			noteRestart(cs)
			t, w := cs.State.Terminated, cs.State.Waiting
			switch {
			case w != nil && w.Reason != "":
				status = w.Reason
			case t != nil && t.Reason != "":
				status = t.Reason
			case t != nil && t.Signal != 0:
				status = fmt.Sprintf("Signal:%d", t.Signal)
			case t != nil:
				status = fmt.Sprintf("ExitCode:%d", t.ExitCode)
			case cs.Ready && cs.State.Running != nil:
				running = true
				ready++
			}
		}
		if status == "Completed" && running {
			status = "NotReady"
			if podCondition(pod, corev1.PodReady) {
				status = "Running"
			}
		}
	}
	if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		status = "Terminating"
	}
	return ready, total, status, restarts, last
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

var eventPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		col("Last Seen", "string", "", corev1.Event{}.SwaggerDoc()["lastTimestamp"], 0),
		col("Type", "string", "", corev1.Event{}.SwaggerDoc()["type"], 0),
		col("Reason", "string", "", corev1.Event{}.SwaggerDoc()["reason"], 0),
		col("Object", "string", "", corev1.Event{}.SwaggerDoc()["involvedObject"], 0),
		col("Subobject", "string", "", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"], 1),
		col("Source", "string", "", corev1.Event{}.SwaggerDoc()["source"], 1),
		col("Message", "string", "", corev1.Event{}.SwaggerDoc()["message"], 0),
		col("First Seen", "string", "", corev1.Event{}.SwaggerDoc()["firstTimestamp"], 1),
		col("Count", "string", "", corev1.Event{}.SwaggerDoc()["count"], 1),
		col("Name", "string", "", metaDoc["name"], 1),
	},
	cells: func(o object, now time.Time) []any {
		ev := o.(*corev1.Event)
		first := since(ev.FirstTimestamp, now)
		if ev.FirstTimestamp.IsZero() {
			first = since(metav1.Time(ev.EventTime), now)
		}
		lastSeen := since(ev.LastTimestamp, now)
		if ev.LastTimestamp.IsZero() {
			lastSeen = first
		}
		count := ev.Count
		if ev.Series != nil {
			lastSeen, count = since(metav1.Time(ev.Series.LastObservedTime), now), ev.Series.Count
		} else if count == 0 {
			count = 1
		}
		target := strings.ToLower(ev.InvolvedObject.Kind)
		if ev.InvolvedObject.Name != "" {
			target += "/" + ev.InvolvedObject.Name
		}
		source := ev.Source.Component
		if ev.Source.Host != "" {
			source += ", " + ev.Source.Host
		}
		return []any{lastSeen, ev.Type, ev.Reason, target, ev.InvolvedObject.FieldPath, source,
			strings.TrimSpace(ev.Message), first, int64(count), ev.Name}
	},
}

var nodePrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Status", "string", "", "The status of the node", 0),
		col("Roles", "string", "", "The roles of the node", 0),
		ageCol,
		col("Version", "string", "", corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"], 0),
		col("Internal-IP", "string", "", corev1.NodeStatus{}.SwaggerDoc()["addresses"], 1),
		col("External-IP", "string", "", corev1.NodeStatus{}.SwaggerDoc()["addresses"], 1),
		col("OS-Image", "string", "", corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"], 1),
		col("Kernel-Version", "string", "", corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"], 1),
		col("Container-Runtime", "string", "", corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"], 1),
	},
	cells: func(o object, now time.Time) []any {
		n := o.(*corev1.Node)
		status := "Unknown"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				status = "NotReady"
				if c.Status == corev1.ConditionTrue {
					status = "Ready"
				}
			}
		}
		if n.Spec.Unschedulable {
			status += ",SchedulingDisabled"
		}
		var roles []string
		for k := range n.Labels {
			if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
				roles = append(roles, r)
			}
		}
		sort.Strings(roles)
		addr := func(t corev1.NodeAddressType) string {
			for _, a := range n.Status.Addresses {
				if a.Type == t {
					return a.Address
				}
			}
			return "<none>"
		}
		info := n.Status.NodeInfo
		return []any{n.Name, status, orNone(strings.Join(roles, ",")), since(n.CreationTimestamp, now), info.KubeletVersion,
			addr(corev1.NodeInternalIP), addr(corev1.NodeExternalIP), orNone(info.OSImage), orNone(info.KernelVersion),
			orNone(info.ContainerRuntimeVersion)}
	},
}

var namespacePrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Status", "string", "", "The status of the namespace", 0),
		ageCol,
	},
	cells: func(o object, now time.Time) []any {
		ns := o.(*corev1.Namespace)
		return []any{ns.Name, string(ns.Status.Phase), since(ns.CreationTimestamp, now)}
	},
}

var configMapPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Data", "string", "", corev1.ConfigMap{}.SwaggerDoc()["data"], 0),
		ageCol,
	},
	cells: func(o object, now time.Time) []any {
		cm := o.(*corev1.ConfigMap)
		return []any{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), since(cm.CreationTimestamp, now)}
	},
}

var secretPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Type", "string", "", corev1.Secret{}.SwaggerDoc()["type"], 0),
		col("Data", "string", "", corev1.Secret{}.SwaggerDoc()["data"], 0),
		ageCol,
	},
	cells: func(o object, now time.Time) []any {
		s := o.(*corev1.Secret)
		return []any{s.Name, string(s.Type), int64(len(s.Data)), since(s.CreationTimestamp, now)}
	},
}

// defaultPrinter is the API server's table for kinds without their own:
// the name and the creation time.
var defaultPrinter = printer{
	columns: []metav1.TableColumnDefinition{
		nameCol,
		col("Created At", "date", "", metaDoc["creationTimestamp"], 0),
	},
	cells: func(o object, _ time.Time) []any {
		created := ""
		if ts := o.GetCreationTimestamp(); !ts.IsZero() {
			created = ts.UTC().Format(time.RFC3339)
		}
		return []any{o.GetName(), created}
	},
}
