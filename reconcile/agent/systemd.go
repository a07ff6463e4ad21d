package agent

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/reconcile/agent/internal/sdnotify"
)

// notifyReady tells systemd that the agent is up (after start-up recovery
// was queued and the manifests were loaded, or after a reload), with what
// it does in `systemctl status`.
func notifyReady(log zerolog.Logger, rec *reconcile.Reconciler, manifests string) {
	status := "watching " + manifests
	if rec.DirError() != nil {
		status = "waiting for " + manifests
	}
	notify(log, sdnotify.Ready(status))
}

func notify(log zerolog.Logger, err error) {
	if err != nil {
		log.Warn().Err(err).Msg("cannot tell systemd")
	}
}

// watchdog pings systemd's watchdog for as long as the reconciler lives.
func watchdog(ctx context.Context, log zerolog.Logger, rec *reconcile.Reconciler, loopDone <-chan struct{}) {
	err := sdnotify.Watchdog(ctx, reconcilerAlive(rec, loopDone), func(err error) {
		log.Error().Err(err).Msg("reconciler not alive; not pinging the systemd watchdog")
	})
	if err != nil {
		log.Warn().Err(err).Msg("systemd watchdog")
	}
}

// reconcilerAlive is the watchdog's liveness check: the reconcile loop is
// still running and its state lock answers. A deadlocked reconciler, or a
// loop that returned, stops the pings, and systemd restarts the agent,
// which adopts every pod as it is. A pass that takes long for one pod is
// not a dead agent — other pods go on on other workers, and an image pull
// or a 30 s grace period are normal — so the check does not wait for
// passes.
//
// The watchdog runs one check at a time; a lock probe still blocked from
// an earlier check is waited on again rather than joined by another.
func reconcilerAlive(rec *reconcile.Reconciler, loopDone <-chan struct{}) func(context.Context) error {
	var probe chan struct{} // closed when the lock probe in flight returns
	return func(ctx context.Context) error {
		select {
		case <-loopDone:
			return errors.New("the reconcile loop has returned")
		default:
		}
		if probe == nil {
			probe = make(chan struct{})
			go func(done chan<- struct{}) {
				rec.Ready() // takes the reconciler's lock
				close(done)
			}(probe)
		}
		select {
		case <-probe:
			probe = nil
			return nil
		case <-ctx.Done():
			return errors.New("the reconciler's lock is held: the loop is stuck")
		}
	}
}
