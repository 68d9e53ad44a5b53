package fraud

import (
	"math"
	"testing"
)

// FuzzCodecs decodes arbitrary transactions and alerts.
func FuzzCodecs(f *testing.F) {
	f.Add(TransactionCodec{}.Append(nil, Transaction{AccountID: 3, Timestamp: 1_700_000_000_000, Amount: 0.5}))
	f.Add(AlertCodec{}.Append(nil, Alert{ID: 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if tx, err := (TransactionCodec{}).Decode(data); err == nil {
			again, err := TransactionCodec{}.Decode(TransactionCodec{}.Append(nil, tx))
			if err != nil || again.AccountID != tx.AccountID || again.Timestamp != tx.Timestamp ||
				math.Float64bits(again.Amount) != math.Float64bits(tx.Amount) {
				t.Fatalf("transaction %+v: round trip %+v, %v", tx, again, err)
			}
		}
		if a, err := (AlertCodec{}).Decode(data); err == nil {
			if again, err := (AlertCodec{}).Decode(AlertCodec{}.Append(nil, a)); err != nil || again != a {
				t.Fatalf("alert %+v: round trip %+v, %v", a, again, err)
			}
		}
	})
}
