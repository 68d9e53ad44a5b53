package seqcheck

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/statebackend/storage"
)

// ReadOutput reads every committed part file in st (names starting with
// "part-" directly under the root; pending files under .pending/ are not
// committed and are skipped) and counts the records per (key, seq). Flagged
// records (with "expected") are counted too, and they and any malformed
// lines are also returned as "file:line: text" for the report.
func ReadOutput(ctx context.Context, st storage.Storage) (map[[2]int64]int, []string, error) {
	objs, err := st.List(ctx, filesink.PartPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("read sequence output: %w", err)
	}
	counts := make(map[[2]int64]int)
	var bad []string
	for _, obj := range objs {
		if strings.Contains(obj.Name, "/") {
			continue // "part-x/...": not a part file
		}
		data, err := st.Get(ctx, obj.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("read sequence output: %w", err)
		}
		for n := 1; len(data) > 0; n++ {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil // a last line without newline: the sink never writes one
			}
			o, ok := parseJSON(line)
			if ok {
				counts[[2]int64{o.Key, o.Seq}]++
			}
			if !ok || o.Expected != 0 {
				bad = append(bad, obj.Name+":"+strconv.Itoa(n)+": "+string(line))
			}
		}
	}
	return counts, bad, nil
}

// parseJSON parses exactly what AppendJSON writes.
func parseJSON(line []byte) (Output, bool) {
	var o Output
	rest, ok := bytes.CutPrefix(line, []byte(`{"key":`))
	if !ok {
		return o, false
	}
	if o.Key, rest, ok = parseInt(rest); !ok {
		return o, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"seq":`)); !ok {
		return o, false
	}
	if o.Seq, rest, ok = parseInt(rest); !ok {
		return o, false
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"expected":`)); found {
		if o.Expected, rest, ok = parseInt(r); !ok || o.Expected == 0 {
			return o, false
		}
	}
	return o, string(rest) == "}"
}

// parseInt parses the decimal integer at the start of b.
func parseInt(b []byte) (int64, []byte, bool) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	v, err := strconv.ParseInt(string(b[:i]), 10, 64)
	return v, b[i:], err == nil
}

// maxReported is how many examples Verify names per kind of fault.
const maxReported = 5

// Verify checks that counts holds every (key, seq) with key in [0, keys)
// and seq in [1, count] exactly once and nothing else. With count 0 (an
// unbounded run that was stopped) each key's numbers must instead be
// exactly 1..n for some n of its own. The error names the first few
// missing, duplicated and unexpected pairs and how many there are.
func Verify(counts map[[2]int64]int, keys, count int64) error {
	var missing, dups, unexpected [][2]int64
	var nMissing, nDups, nUnexpected int
	top := make(map[int64]int64) // highest seq per key, for count 0
	for kv, c := range counts {
		k, s := kv[0], kv[1]
		if k < 0 || k >= keys || s < 1 || (count > 0 && s > count) || c < 1 {
			nUnexpected++
			unexpected = append(unexpected, kv)
			continue
		}
		if count == 0 && s > top[k] {
			top[k] = s
		}
	}
	for k := int64(0); k < keys; k++ {
		last := count
		if count == 0 {
			last = top[k]
		}
		for s := int64(1); s <= last; s++ {
			switch c := counts[[2]int64{k, s}]; {
			case c == 0:
				nMissing++
				if len(missing) < maxReported {
					missing = append(missing, [2]int64{k, s})
				}
			case c > 1:
				nDups++
				if len(dups) < maxReported {
					dups = append(dups, [2]int64{k, s})
				}
			}
		}
	}
	if nMissing+nDups+nUnexpected == 0 {
		return nil
	}
	sort.Slice(unexpected, func(i, j int) bool {
		a, b := unexpected[i], unexpected[j]
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	var parts []string
	add := func(what string, n int, pairs [][2]int64) {
		if n == 0 {
			return
		}
		ex := make([]string, 0, maxReported)
		for _, p := range pairs[:min(len(pairs), maxReported)] {
			e := "key " + strconv.FormatInt(p[0], 10) + " seq " + strconv.FormatInt(p[1], 10)
			if c := counts[p]; c > 1 {
				e += " x" + strconv.Itoa(c)
			}
			ex = append(ex, e)
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", n, what, strings.Join(ex, ", ")))
	}
	add("missing", nMissing, missing)
	add("duplicated", nDups, dups)
	add("unexpected", nUnexpected, unexpected)
	return fmt.Errorf("sequence check failed: %s", strings.Join(parts, "; "))
}
