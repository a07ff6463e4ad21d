// Package sdnotify tells systemd where the agent is in its life (a
// Type=notify service): ready, reloading, stopping, and alive — the
// watchdog, which pings only while a liveness check passes. It speaks the
// sd_notify protocol through go-systemd; without $NOTIFY_SOCKET (not
// started by systemd) every call does nothing.
package sdnotify

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready says start-up is done, with a status line for `systemctl status`.
func Ready(status string) error {
	return send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Reloading says a reload began; Ready must follow when it is done.
// MONOTONIC_USEC lets systemd tell this reload from an earlier one.
func Reloading() error {
	return send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Stopping says the agent is shutting down.
func Stopping() error {
	return send(daemon.SdNotifyStopping)
}

func send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Watchdog pings systemd (WATCHDOG=1) every half of $WATCHDOG_USEC for as
// long as alive reports the agent healthy, until ctx ends. Each check gets
// half an interval; one that fails or hangs skips the ping and is reported
// to onFail, so that systemd restarts an agent that stopped working rather
// than one that merely stopped pinging. A check still hanging from an
// earlier tick counts as a failure, and no second one is started beside
// it. Without a watchdog (no $WATCHDOG_USEC, or one meant for another PID)
// Watchdog returns at once.
func Watchdog(ctx context.Context, alive func(context.Context) error, onFail func(error)) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if interval <= 0 {
		return nil
	}
	period := interval / 2
	t := time.NewTicker(period)
	defer t.Stop()
	var pending chan error // the check in flight, if any
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if pending == nil {
			pending = make(chan error, 1)
			cctx, cancel := context.WithTimeout(ctx, period)
			go func(done chan<- error) {
				defer cancel()
				done <- alive(cctx)
			}(pending)
		}
		timeout := time.NewTimer(period)
		var err error
		select {
		case err = <-pending:
			pending = nil
		case <-timeout.C:
			err = fmt.Errorf("liveness check did not answer within %s", period)
		case <-ctx.Done():
			timeout.Stop()
			return nil
		}
		timeout.Stop()
		if err == nil {
			err = send(daemon.SdNotifyWatchdog)
		}
		if err != nil && ctx.Err() == nil {
			onFail(err)
		}
	}
}
