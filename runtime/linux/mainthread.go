package linux

import goruntime "runtime"

// Goroutines that enter a pod's namespaces (startInit, sysctls) lock their
// thread and exit without unlocking it, so that Go throws the thread away
// instead of running other goroutines in the pod's namespaces. That only
// works on threads other than the main one: when such a goroutine happens to
// run on the main thread, Go cannot end that thread and parks it
// ("wedged"). It stays in the pod's network namespace for good, the
// namespace outlives its sandbox, and the kernel never frees the veth. The
// root tests of pod volumes hit this about two runs in three.
//
// Locking the main goroutine to the main thread during package
// initialisation keeps every other goroutine off that thread for the life
// of the process.
func init() { goruntime.LockOSThread() }
