package image

// PullWaiters exposes how many EnsureImage callers wait for a running pull
// of the canonical reference, so tests can prove the second pull waited.
func PullWaiters(s *Store, canonicalRef string) int { return s.flights.waiting("pull:" + canonicalRef) }

// SetBeforeFinish installs a hook Unpack runs after its last entry, while
// it still holds what it keeps for the end (directory times); it returns
// the function that removes it.
func SetBeforeFinish(f func()) func() {
	beforeFinish = f
	return func() { beforeFinish = nil }
}
