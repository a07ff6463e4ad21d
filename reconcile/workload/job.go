package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

// jobRun is the controller of a Job: it runs pods until completions of
// them succeed (or, without completions, until one succeeds and the rest
// finish), parallelism at a time, and fails the Job when too many fail or
// it runs too long, as Kubernetes' Job controller does:
//
//   - restartPolicy Never: a failed pod stays (for its logs) and a new one
//     replaces it after a back-off; more than backoffLimit failed pods fail
//     the Job (BackoffLimitExceeded).
//   - restartPolicy OnFailure: the pod restarts its containers in place;
//     when their restarts reach backoffLimit the Job fails.
//   - activeDeadlineSeconds from the Job's start fails it
//     (DeadlineExceeded). A failed Job's running pods are removed.
//   - ttlSecondsAfterFinished after it completes or fails, its pods are
//     removed. The Job itself stays, finished: its manifest is still there.
//
// The progress is recorded in the Store before any pod is made, so a
// restart of the agent (or of the node) continues the run instead of
// starting it over, and a finished Job is never run again. Editing the
// Job's spec starts a new run; removing its manifest forgets it.
type jobRun struct {
	rec    *jobRecord
	loaded bool
	saved  []byte
}

// jobRecord is a Job's progress, as stored.
type jobRecord struct {
	Spec       string    `json:"spec"` // the spec the record belongs to
	Start      time.Time `json:"start"`
	Next       int       `json:"next"`   // pods made so far: the next one's index
	Active     []string  `json:"active"` // pods running (or about to)
	Done       []donePod `json:"done"`   // finished pods, kept until the TTL
	Succeeded  int       `json:"succeeded"`
	Failed     int       `json:"failed"`
	LastFail   time.Time `json:"lastFail,omitzero"`
	Finished   string    `json:"finished,omitempty"` // Complete or Failed
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	CleanedUp  bool      `json:"cleanedUp,omitempty"` // the TTL ran out: its pods are gone
}

type donePod struct {
	Name      string `json:"name"`
	Succeeded bool   `json:"succeeded"`
}

func (j *jobRun) eval(w spec.Workload, in *input) *result {
	job := w.(*spec.Job)
	s := &job.Spec
	res := &result{}
	// What makes a run: the fields Kubernetes does not let change on a
	// Job. Editing the others (parallelism, suspend, deadlines, backoff
	// limit, TTL) applies to the run under way.
	hash := specHash(struct {
		Template    spec.PodTemplateSpec
		Completions *int32
		Mode        *string
		Selector    *spec.LabelSelector
	}{s.Template, s.Completions, s.CompletionMode, s.Selector})
	key := storeKey(in.key)
	if !j.loaded {
		j.loaded = true
		if b, err := in.store.Load(key); err != nil {
			in.log.Warn().Err(err).Msg("cannot read the Job's record; starting it over")
		} else if b != nil {
			var r jobRecord
			if err := json.Unmarshal(b, &r); err != nil {
				in.log.Warn().Err(err).Msg("the Job's record is unreadable; starting it over")
			} else {
				j.rec, j.saved = &r, b
				// Finished pods whose sandbox is gone (a reboot) are not
				// made again: they ran.
				var kept []donePod
				for _, d := range r.Done {
					if in.exists(d.Name) {
						kept = append(kept, d)
					}
				}
				j.rec.Done = kept
			}
		}
	}
	if j.rec == nil || j.rec.Spec != hash {
		if j.rec != nil {
			res.events = append(res.events, event{reconcile.EventNormal, "SpecChanged", "the Job's spec changed: a new run starts"})
		}
		j.rec = &jobRecord{Spec: hash, Start: in.now}
	}
	r := j.rec
	restart := s.Template.Spec.RestartPolicy

	suspended := *s.Suspend
	if r.Finished == "" && suspended {
		if len(r.Active) > 0 {
			res.events = append(res.events, event{reconcile.EventNormal, "Suspended", "Job suspended: its running pods are removed"})
		}
		r.Active = nil
	}
	active, restarts, ready := 0, 0, 0
	if r.Finished == "" && !suspended {
		var still []string
		for _, name := range r.Active {
			ps := in.pod(name)
			switch ps.phase {
			case reconcile.PhaseSucceeded:
				r.Succeeded++
				r.Done = append(r.Done, donePod{Name: name, Succeeded: true})
				continue
			case reconcile.PhaseFailed:
				r.Failed++
				r.LastFail = in.now
				r.Done = append(r.Done, donePod{Name: name})
				continue
			}
			restarts += ps.restarts
			if ps.ready {
				ready++
			}
			still = append(still, name)
		}
		r.Active = still
		limit := int(*s.BackoffLimit)
		complete := false
		if c := s.Completions; c != nil {
			complete = r.Succeeded >= int(*c)
		} else {
			complete = r.Succeeded > 0 && len(r.Active) == 0
		}
		switch {
		case complete:
			r.finish("Complete", "", "", in.now)
			res.events = append(res.events, event{reconcile.EventNormal, "Completed", "Job completed"})
		case r.Failed > limit:
			r.finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", in.now)
		case restart == spec.RestartPolicyOnFailure && ((limit == 0 && restarts > 0) || (limit > 0 && restarts >= limit)):
			r.finish("Failed", "BackoffLimitExceeded", fmt.Sprintf("Job has reached the specified backoff limit (%d restarts)", restarts), in.now)
		case s.ActiveDeadlineSeconds != nil && !in.now.Before(r.Start.Add(time.Duration(*s.ActiveDeadlineSeconds)*time.Second)):
			r.finish("Failed", "DeadlineExceeded", "Job was active longer than specified deadline", in.now)
		}
		if r.Finished == "Failed" {
			res.events = append(res.events, event{reconcile.EventWarning, r.Reason, r.Message})
			r.Active = nil
		}
		if r.Finished == "" {
			want := int(*s.Parallelism)
			if c := s.Completions; c != nil {
				want = min(want, int(*c)-r.Succeeded)
			} else if r.Succeeded > 0 {
				want = len(r.Active) // a work queue: one success, no new pods
			}
			if len(r.Active) < want {
				until := r.LastFail.Add(in.back.Delay(r.Failed))
				if r.Failed > 0 && in.now.Before(until) {
					res.wake = until // back-off before a failed pod's replacement
				} else {
					for len(r.Active) < want {
						name := generatedName(in.key.Name+"-", suffix(in.key.Namespace, in.key.Name, hash, strconv.Itoa(r.Next)))
						r.Next++
						r.Active = append(r.Active, name)
						res.events = append(res.events, event{reconcile.EventNormal, "SuccessfulCreate", "Created pod: " + name})
					}
				}
			}
			if s.ActiveDeadlineSeconds != nil {
				res.wake = earliest(res.wake, r.Start.Add(time.Duration(*s.ActiveDeadlineSeconds)*time.Second))
			}
		}
		active = len(r.Active)
	}
	if r.Finished != "" && !r.CleanedUp && s.TTLSecondsAfterFinished != nil {
		end := r.FinishedAt.Add(time.Duration(*s.TTLSecondsAfterFinished) * time.Second)
		if !in.now.Before(end) {
			r.CleanedUp = true
			res.events = append(res.events, event{reconcile.EventNormal, "Cleaned", "ttlSecondsAfterFinished ran out: the Job's pods are removed"})
		} else {
			res.wake = earliest(res.wake, end)
		}
	}

	// Intent first: the record says which pods exist before they are made.
	if b, err := json.Marshal(r); err == nil && !bytes.Equal(b, j.saved) {
		if err := in.store.Save(key, b); err != nil {
			// Without its record a restart could run the Job again: make
			// nothing new until it can be written.
			in.log.Error().Err(err).Msg("cannot record the Job's progress; no new pod is made until it can be")
			res.events = append(res.events, event{reconcile.EventWarning, "FailedRecord", err.Error()})
			res.wake = earliest(res.wake, in.now.Add(10*time.Second))
			r.Active = trimNew(r.Active, j.saved)
		} else {
			j.saved = b
		}
	}

	labels := map[string]string{"batch.kubernetes.io/job-name": in.key.Name, "job-name": in.key.Name,
		"batch.kubernetes.io/controller-uid": in.uid, "controller-uid": in.uid}
	for _, name := range r.Active {
		res.pods = append(res.pods, genPod{name: name, pod: podFor(job, name, labels)})
	}
	if !r.CleanedUp {
		for _, d := range r.Done {
			res.pods = append(res.pods, genPod{name: d.Name, pod: podFor(job, d.Name, labels), terminal: true})
		}
	}

	st := JobStatus{Active: int32(active), Succeeded: int32(r.Succeeded), Failed: int32(r.Failed), Ready: int32(ready)}
	if !suspended || r.Finished != "" {
		t := r.Start
		st.StartTime = &t
	}
	switch {
	case r.Finished == "Complete":
		t := r.FinishedAt
		st.CompletionTime = &t
		st.Conditions = append(st.Conditions, condition("Complete", true, "", "", r.FinishedAt))
	case r.Finished == "Failed":
		st.Conditions = append(st.Conditions, condition("Failed", true, r.Reason, r.Message, r.FinishedAt))
	case suspended:
		st.Conditions = append(st.Conditions, condition("Suspended", true, "JobSuspended", "Job suspended", in.now))
	}
	res.status = st
	return res
}

func (r *jobRecord) finish(how, reason, message string, now time.Time) {
	r.Finished, r.Reason, r.Message, r.FinishedAt = how, reason, message, now
}

// trimNew drops from active the pods the unsaved record added, so nothing
// is made that the store does not know of. Without a saved record every
// pod is new.
func trimNew(active []string, saved []byte) []string {
	var prev jobRecord
	if saved == nil || json.Unmarshal(saved, &prev) != nil {
		return nil
	}
	var out []string
	for _, a := range active {
		for _, p := range prev.Active {
			if a == p {
				out = append(out, a)
			}
		}
	}
	return out
}
