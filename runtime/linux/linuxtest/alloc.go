package linuxtest

import goruntime "runtime"

// Allocated returns how many bytes the process allocated while fn ran: the
// measure of "the agent's read stays bounded" when fn reads a file a
// container may have filled. Other goroutines count too, so tests compare
// it with the size the container wrote, orders of magnitude apart.
func Allocated(fn func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	fn()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
