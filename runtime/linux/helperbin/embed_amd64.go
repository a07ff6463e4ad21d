package helperbin

import "embed"

// files holds the helpers built for amd64 by make helpers (or only the
// placeholder on a fresh clone).
//
//go:embed bin/amd64
var files embed.FS

const dir = "bin/amd64"
