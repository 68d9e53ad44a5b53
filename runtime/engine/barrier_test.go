package engine

import "testing"

func TestBarrierEncoding(t *testing.T) {
	b := Barrier{ID: 42, TimestampMs: 1700000000000, Location: "s3://bucket/p/job/chk-42", Savepoint: true, Drain: true}
	got, err := DecodeBarrier(EncodeBarrier(nil, b))
	if err != nil || got != b {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, b)
	}
	enc := EncodeBarrier(nil, b)
	for _, bad := range [][]byte{nil, {9, 0}, enc[:len(enc)-1], append(enc, 0)} {
		if _, err := DecodeBarrier(bad); err == nil {
			t.Errorf("DecodeBarrier(%v) accepted garbage", bad)
		}
	}
}
