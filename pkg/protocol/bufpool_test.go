package protocol

import "testing"

// TestBufferPool: a buffer comes from the smallest tier it fits, with the
// length asked for; one larger than every tier is made to measure; a
// buffer of no tier's capacity put back never comes out of a tier.
func TestBufferPool(t *testing.T) {
	p := newBufferPool(256, 4<<10, 2*batchSize)
	for range 3 { // fresh buffers, then ones put back
		for _, tc := range []struct{ n, cap int }{
			{0, 256}, {1, 256}, {256, 256}, {257, 4 << 10}, {batchSize + 100, 2 * batchSize}, {2*batchSize + 1, 2*batchSize + 1},
		} {
			b := p.Get(tc.n)
			if len(*b) != tc.n || cap(*b) != tc.cap {
				t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.cap)
			}
			p.Put(b)
		}
	}
	for range 10 {
		odd := make([]byte, 300)
		p.Put(&odd)
		if b := p.Get(200); cap(*b) != 256 {
			t.Fatalf("Get(200) cap = %d after a 300-byte buffer was put back: want the 256 tier's", cap(*b))
		}
	}
}
