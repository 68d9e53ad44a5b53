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

// TestBarrierEncodingBase: a barrier with a base checkpoint takes version
// 2; one without stays version 1, readable by builds without incremental
// checkpoints.
func TestBarrierEncodingBase(t *testing.T) {
	b := Barrier{ID: 43, TimestampMs: 1700000000001, Location: "s3://bucket/p/job/chk-43", BaseID: 41}
	enc := EncodeBarrier(nil, b)
	got, err := DecodeBarrier(enc)
	if err != nil || got != b || enc[0] != 2 {
		t.Fatalf("round trip: %+v, %v (version %d); want %+v", got, err, enc[0], b)
	}
	if v := EncodeBarrier(nil, Barrier{ID: 1, Location: "x"})[0]; v != 1 {
		t.Errorf("a barrier without a base is version %d", v)
	}
	for _, bad := range [][]byte{enc[:len(enc)-1], append(enc, 0)} {
		if _, err := DecodeBarrier(bad); err == nil {
			t.Errorf("DecodeBarrier(%v) accepted garbage", bad)
		}
	}
}
