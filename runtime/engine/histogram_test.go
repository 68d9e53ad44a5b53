package engine

import "testing"

func TestHistogramBuckets(t *testing.T) {
	prev := int64(-1)
	for i := 0; i < 40*histSub; i++ {
		up := HistogramBucketUpper(i)
		if up <= prev {
			t.Fatalf("bucket %d upper %d not above bucket %d's %d", i, up, i-1, prev)
		}
		if b := HistogramBucket(up); b != i {
			t.Fatalf("HistogramBucket(%d) = %d, want %d", up, b, i)
		}
		if b := HistogramBucket(prev + 1); b != i {
			t.Fatalf("HistogramBucket(%d) = %d, want %d", prev+1, b, i)
		}
		prev = up
	}
	var h Histogram
	for v := int64(1); v <= 1000; v++ {
		h.Record(v * 1000)
	}
	p50, n := HistogramQuantile(h.Snapshot(), 0.5)
	if n != 1000 || p50 < 500_000 || p50 > 500_000*1.07 {
		t.Errorf("p50 = %d of %d values, want within 7%% above 500000", p50, n)
	}
}
