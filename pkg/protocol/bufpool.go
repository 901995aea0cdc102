package protocol

import (
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// bufferPool is the pool gRPC takes its message and frame buffers from, on
// both ends of a worker's stream. gRPC's default pool clears each buffer it
// hands out, to its whole capacity: a 1 MiB buffer for every 256 KiB output
// batch, on the worker to marshal it and on the master to receive it, which
// was the largest single item of both programs' CPU while a step streamed
// its log. Every buffer gRPC takes from a pool is written in full before it
// is read (a message marshalled into it, or bytes read from the
// connection), so this pool does not clear; and its tiers fit the batches.
type bufferPool struct {
	tiers []*poolTier // by size, ascending
	// batches counts the buffers handed out for messages of more than
	// 32 KiB (output batches), so that tests see the pool in use.
	batches atomic.Int64
}

type poolTier struct {
	size int
	pool sync.Pool // of *[]byte with cap size
}

// bufferTiers are the pool's buffer sizes: gRPC's small tiers, then one
// for an output batch (batchSize and its message's few bytes of framing)
// and 1 MiB.
var bufferTiers = []int{256, 4 << 10, 16 << 10, 32 << 10, 2 * batchSize, 1 << 20}

// buffers is the pool of every worker stream, the master's and the
// worker's.
var buffers = newBufferPool(bufferTiers...)

// newBufferPool returns a pool with the given tier sizes, ascending.
func newBufferPool(sizes ...int) *bufferPool {
	p := &bufferPool{}
	for _, s := range sizes {
		p.tiers = append(p.tiers, &poolTier{size: s})
	}
	return p
}

var _ mem.BufferPool = (*bufferPool)(nil)

// Get returns a buffer of length n, from the smallest tier it fits; one
// larger than every tier is made for the occasion and not kept.
func (p *bufferPool) Get(n int) *[]byte {
	if n > 32<<10 {
		p.batches.Add(1)
	}
	for _, t := range p.tiers {
		if n > t.size {
			continue
		}
		if b, ok := t.pool.Get().(*[]byte); ok {
			*b = (*b)[:n]
			return b
		}
		b := make([]byte, n, t.size)
		return &b
	}
	b := make([]byte, n)
	return &b
}

// Put keeps a buffer that Get took from a tier for the next Get of that
// tier.
func (p *bufferPool) Put(b *[]byte) {
	c := cap(*b)
	for _, t := range p.tiers {
		if c == t.size {
			t.pool.Put(b)
			return
		}
	}
}

// codec is gRPC's proto codec with its buffers from the pool above (gRPC's
// own takes them from its global default pool, whatever the connection's
// pool). Both ends of a worker's stream use it.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("protocol: cannot marshal a %T", v)
	}
	size := proto.Size(m)
	// UseCachedSize: the size was just computed, and nobody changes the
	// message meanwhile.
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := buffers.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		buffers.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, buffers)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("protocol: cannot unmarshal into a %T", v)
	}
	buf := data.MaterializeToBuffer(buffers)
	defer buf.Free()
	// proto.Unmarshal copies what it keeps: the buffer goes back at once.
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
