package runtime

// setBenchKey makes k the key being processed, as processOperator.Collect
// does for a record.
func setBenchKey(c *KeyedContext[int64], k int64, maxP int) {
	h := Int64Key.Hash(k)
	c.key, c.kg, c.hash = k, KeyGroupForHash(h, maxP), h
}
