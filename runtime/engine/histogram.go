package engine

import (
	"math/bits"
	"sync/atomic"
)

// Latency histograms use a fixed log-linear bucket layout (16 sub-buckets
// per power of two, so a bucket's bounds are within 6.25 % of each other),
// which lets TaskManagers ship bucket counts and the JobManager merge them.
const (
	histSubBits   = 4
	histSub       = 1 << histSubBits
	HistogramSize = 64 * histSub
)

// Histogram counts non-negative values (nanoseconds). Record may run
// concurrently with Snapshot.
type Histogram struct {
	counts [HistogramSize]atomic.Int64
}

// HistogramBucket is the bucket index of v.
func HistogramBucket(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // >= 0
	return (e+1)*histSub + int(uint64(v)>>e) - histSub
}

// HistogramBucketUpper is the largest value in bucket i.
func HistogramBucketUpper(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := i/histSub - 1
	m := int64(i%histSub + histSub)
	return (m+1)<<e - 1
}

// Record counts v.
func (h *Histogram) Record(v int64) { h.counts[HistogramBucket(v)].Add(1) }

// Snapshot returns the bucket counts without trailing empty buckets.
func (h *Histogram) Snapshot() []int64 {
	n := 0
	out := make([]int64, HistogramSize)
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			out[i] = c
			n = i + 1
		}
	}
	return out[:n]
}

// HistogramQuantile returns the upper bound of the bucket holding quantile
// q (0..1) of the counts, and the total count.
func HistogramQuantile(counts []int64, q float64) (value, total int64) {
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0, 0
	}
	rank := int64(q*float64(total) + 0.5)
	rank = min(max(rank, 1), total)
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return HistogramBucketUpper(i), total
		}
	}
	return HistogramBucketUpper(len(counts) - 1), total
}

// MergeHistogram adds src's counts to dst's and returns dst.
func MergeHistogram(dst, src []int64) []int64 {
	for len(dst) < len(src) {
		dst = append(dst, 0)
	}
	for i, c := range src {
		dst[i] += c
	}
	return dst
}
