package hugepage

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestMakeSmallIsPlain(t *testing.T) {
	s := Make[uint64](100)
	if len(s) != 100 || cap(s) != 100 {
		t.Fatalf("len %d cap %d, want 100", len(s), cap(s))
	}
	if z := Make[struct{}](10); len(z) != 10 {
		t.Fatalf("zero-size elements: len %d", len(z))
	}
}

// TestMakeLayout checks, for element sizes that do and do not divide the
// huge page size, that the slice is zeroed, exactly n long, and capped so
// an append cannot run into the padding.
func TestMakeLayout(t *testing.T) {
	check := func(name string, n, l, c int, zero bool) {
		t.Helper()
		if l != n || c != n {
			t.Fatalf("%s: len %d cap %d, want %d", name, l, c, n)
		}
		if !zero {
			t.Fatalf("%s: not zeroed", name)
		}
	}
	a := Make[[8]uint64](MinBytes / 64 * 3)
	check("64-byte", MinBytes/64*3, len(a), cap(a), allZero(a))
	b := Make[[3]uint64](MinBytes/24 + 7)
	check("24-byte", MinBytes/24+7, len(b), cap(b), allZero(b))
	if uintptr(unsafe.Pointer(&a[0]))%Size != 0 {
		t.Fatalf("64-byte elements start at %#x, not on a huge page", uintptr(unsafe.Pointer(&a[0])))
	}
	if off := uintptr(unsafe.Pointer(&b[0])) % Size; off >= 24 {
		t.Fatalf("24-byte elements start %d bytes past a boundary, want under one element", off)
	}
	b[len(b)-1] = [3]uint64{1, 2, 3}
	if c := append(b, [3]uint64{}); &c[0] == &b[0] {
		t.Fatal("append reused the padding")
	}
}

func allZero[T comparable](s []T) bool {
	var z T
	for _, v := range s {
		if v != z {
			return false
		}
	}
	return true
}

// TestMakeGetsHugePages checks with the kernel's own accounting that a
// large slice is backed by huge pages once touched. It skips where
// transparent huge pages are off.
func TestMakeGetsHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("transparent huge pages unavailable (%q, %v)", mode, err)
	}
	s := Make[[8]uint64](64 << 20 / 64)
	for i := range s {
		s[i][0] = uint64(i)
	}
	kb, err := anonHugeKB(uintptr(unsafe.Pointer(&s[0])))
	if err != nil {
		t.Fatal(err)
	}
	// Memory fragmentation can deny some huge pages; none at all means
	// the advice was not given.
	if kb < 2048 {
		t.Fatalf("the slice's mapping has %d KiB in huge pages, want at least one 2 MiB page", kb)
	}
	t.Logf("%d of 65536 KiB in huge pages", kb)
}

// anonHugeKB reads AnonHugePages of the mapping holding addr.
func anonHugeKB(addr uintptr) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := mappingRange(line); ok {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			return strconv.Atoi(strings.Fields(line)[1])
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no mapping holds %#x", addr)
}

func mappingRange(line string) (lo, hi uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return 0, 0, false
	}
	a, b, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uintptr(x), uintptr(y), true
}

func TestAdvise(t *testing.T) {
	if Advise([]byte(nil)) {
		t.Fatal("advised an empty slice")
	}
	if Advise(make([]byte, Size/2)) {
		t.Fatal("advised a slice smaller than a huge page")
	}
}
