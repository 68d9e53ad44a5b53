package prefetch

import (
	"testing"
	"unsafe"
)

// TestLineAnyAddress: a prefetch never faults, whatever it is given.
func TestLineAnyAddress(t *testing.T) {
	var x [128]byte
	Line(nil)
	Line(unsafe.Pointer(&x[0]))
	Line(unsafe.Pointer(&x[127]))
	big := make([]byte, 1<<20)
	Line(unsafe.Pointer(unsafe.SliceData(big)))
	if x != [128]byte{} {
		t.Fatal("prefetch changed memory")
	}
}
