package helperbin

import "embed"

// files holds the helpers built for arm64 by make helpers (or only the
// placeholder on a fresh clone).
//
//go:embed bin/arm64
var files embed.FS

const dir = "bin/arm64"
