// Package packaging holds what the .deb ships besides the binary — the
// systemd unit, the default settings file, nfpm's package definition and
// the maintainer scripts — and the test that builds the package with
// `make package`, installs it on this machine and removes it again.
package packaging
