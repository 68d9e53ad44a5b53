//go:build !amd64 && !arm64

package prefetch

import "unsafe"

// Line does nothing on this architecture: Go has no portable prefetch.
func Line(p unsafe.Pointer) {}
