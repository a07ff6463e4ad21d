package image

// PullWaiters exposes how many EnsureImage callers wait for a running pull
// of the canonical reference, so tests can prove the second pull waited.
func PullWaiters(s *Store, canonicalRef string) int { return s.flights.waiting("pull:" + canonicalRef) }
