package msgpack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	vmsgpack "github.com/vmihailenco/msgpack/v5"
)

// maxDepth bounds how deeply a peer's message may nest arrays and maps:
// buildbot's messages go four levels deep (an update's args, a pair, a
// log's [name, [text, offsets, times]]); the decoder recurses, so an
// unbounded depth would let a peer exhaust the stack.
const maxDepth = 32

// maxElements bounds the values one message holds: each costs the
// decoder an interface (16 bytes) and more, so a 16 MiB frame of nils
// (one byte each) would take some 260 MB. buildbot's largest messages
// (an output batch with its line offsets and times, a listdir) hold a
// few thousand.
const maxElements = 1 << 18

// elementCost is what the master counts for one decoded value of a
// message queued for handling, besides the message's bytes.
const elementCost = 32

// decode decodes one message from the worker: a msgpack map with string
// keys, its values normalized to the plain Go values bbworker.Conn
// carries (string, int64, float64, bool, nil, []any, map[string]any).
// bin values become string too, except where the caller asks for bytes.
func decode(data []byte) (map[string]any, error) {
	m, _, err := decodeCounted(data)
	return m, err
}

// decodeCounted is decode, also returning how many values the message
// holds.
func decodeCounted(data []byte) (map[string]any, int, error) {
	n, err := check(data)
	if err != nil {
		return nil, 0, err
	}
	m, err := decodeChecked(data)
	return m, n, err
}

func decodeChecked(data []byte) (map[string]any, error) {
	d := vmsgpack.NewDecoder(bytes.NewReader(data))
	d.UseLooseInterfaceDecoding(true)
	v, err := d.DecodeInterfaceLoose()
	if err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decode message: a %T, not a map", v)
	}
	return m, nil
}

// encode encodes one message to the worker.
func encode(msg map[string]any) ([]byte, error) {
	var b bytes.Buffer
	e := vmsgpack.NewEncoder(&b)
	e.SetSortMapKeys(true)
	if err := e.Encode(msg); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b.Bytes(), nil
}

// plain turns a decoded value into the values bbworker.Conn carries:
// bytes become string, unsigned integers int64, and maps with string keys
// map[string]any. It converts in place where it can.
func plain(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case uint64:
		return int64(x)
	case []any:
		for i := range x {
			x[i] = plain(x[i])
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = plain(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(plain(k))] = plain(e)
		}
		return m
	}
	return v
}

var errMalformed = errors.New("malformed msgpack")

// check walks data as one msgpack value without recursing, and refuses
// it when it nests deeper than maxDepth, holds more than maxElements
// values, is truncated, has trailing bytes, or announces more elements
// than it has bytes (so that the decoder never allocates for elements
// that are not there). It returns the number of values.
func check(data []byte) (int, error) {
	values := 0
	var stack []uint64 // elements still expected at each open level
	stack = append(stack, 1)
	p := 0
	need := func(n uint64) error {
		if uint64(len(data)-p) < n {
			return fmt.Errorf("%w: truncated", errMalformed)
		}
		return nil
	}
	length := func(size int) (uint64, error) {
		if err := need(uint64(size)); err != nil {
			return 0, err
		}
		var n uint64
		switch size {
		case 1:
			n = uint64(data[p])
		case 2:
			n = uint64(binary.BigEndian.Uint16(data[p:]))
		case 4:
			n = uint64(binary.BigEndian.Uint32(data[p:]))
		}
		p += size
		return n, nil
	}
	for len(stack) > 0 {
		if stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		stack[len(stack)-1]--
		if values++; values > maxElements {
			return 0, fmt.Errorf("%w: more than %d values", errMalformed, maxElements)
		}
		if err := need(1); err != nil {
			return 0, err
		}
		c := data[p]
		p++
		var skip uint64  // bytes of payload to skip
		var elems uint64 // elements of a container opened here
		container := false
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			container, elems = true, 2*uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			container, elems = true, uint64(c&0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9:
			skip, err = length(1)
		case c == 0xc5 || c == 0xda:
			skip, err = length(2)
		case c == 0xc6 || c == 0xdb:
			skip, err = length(4)
		case c == 0xc7:
			skip, err = length(1)
			skip++
		case c == 0xc8:
			skip, err = length(2)
			skip++
		case c == 0xc9:
			skip, err = length(4)
			skip++
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcf || c == 0xd3:
			skip = 8
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
		case c == 0xdc:
			container = true
			elems, err = length(2)
		case c == 0xdd:
			container = true
			elems, err = length(4)
		case c == 0xde:
			container = true
			elems, err = length(2)
			elems *= 2
		case c == 0xdf:
			container = true
			elems, err = length(4)
			elems *= 2
		default:
			return 0, fmt.Errorf("%w: byte 0x%02x", errMalformed, c)
		}
		if err != nil {
			return 0, err
		}
		if container {
			if uint64(len(data)-p) < elems {
				return 0, fmt.Errorf("%w: %d elements announced, %d bytes left", errMalformed, elems, len(data)-p)
			}
			if len(stack) >= maxDepth {
				return 0, fmt.Errorf("%w: nested deeper than %d", errMalformed, maxDepth)
			}
			stack = append(stack, elems)
			continue
		}
		if err := need(skip); err != nil {
			return 0, err
		}
		p += int(skip)
	}
	if p != len(data) {
		return 0, fmt.Errorf("%w: %d bytes after the message", errMalformed, len(data)-p)
	}
	return values, nil
}
