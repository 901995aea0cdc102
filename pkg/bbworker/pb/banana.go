package pb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Banana's type bytes (twisted/spread/banana.py).
const (
	typeList    = 0x80
	typeInt     = 0x81
	typeString  = 0x82
	typeNeg     = 0x83
	typeFloat   = 0x84
	typeLongInt = 0x85
	typeLongNeg = 0x86
	typeVocab   = 0x87
)

// Limits on what a peer may send. sizeLimit and prefixLimit are banana's
// own (SIZE_LIMIT, the default prefix limit); the others bound what one
// expression may cost us, which banana leaves unbounded.
const (
	sizeLimit   = 640 * 1024 // longest string, longest list
	prefixLimit = 64         // bytes of a header's number
	maxDepth    = 32         // nesting of lists in one expression
	maxExprSize = 4 << 20    // bytes of one top-level expression
	maxExprItem = 1 << 16    // items (strings, numbers, lists) of one expression
)

// vocabulary is the "pb" dialect's table of abbreviated strings.
var vocabulary = [...]string{
	1: "None", 2: "class", 3: "dereference", 4: "reference", 5: "dictionary",
	6: "function", 7: "instance", 8: "list", 9: "module", 10: "persistent",
	11: "tuple", 12: "unpersistable", 13: "copy", 14: "cache", 15: "cached",
	16: "remote", 17: "local", 18: "lcache", 19: "version", 20: "login",
	21: "password", 22: "challenge", 23: "logged_in", 24: "not_logged_in",
	25: "cachemessage", 26: "message", 27: "answer", 28: "error", 29: "decref",
	30: "decache", 31: "uncache",
}

var vocabIndex = func() map[string]int {
	m := make(map[string]int, len(vocabulary))
	for i, w := range vocabulary {
		if w != "" {
			m[w] = i
		}
	}
	return m
}()

// ErrBanana is wrapped by every error about malformed or oversized banana
// input; the connection that sent it is dropped.
var ErrBanana = errors.New("pb: bad banana")

// A banana value is one of: []byte (a string), int64, float64, []any (a
// list). The encoder also takes string (sent as bytes) and int.

// decoder reads banana expressions from a stream.
type decoder struct {
	r     *bufio.Reader
	vocab bool // the "pb" dialect is selected
	size  int  // bytes read of the current expression
	items int  // items read of the current expression
}

func newDecoder(r io.Reader) *decoder { return &decoder{r: bufio.NewReaderSize(r, 32<<10)} }

// expr reads one top-level expression.
func (d *decoder) expr() (any, error) {
	d.size, d.items = 0, 0
	return d.item(0)
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBanana, fmt.Sprintf(format, args...))
}

func (d *decoder) item(depth int) (any, error) {
	d.items++
	if d.items > maxExprItem {
		return nil, bad("more than %d items in one expression", maxExprItem)
	}
	// The header: a base-128 number, least significant digit first, ended
	// by the type byte (high bit set).
	var num uint64
	var big bool
	var typ byte
	for i := 0; ; i++ {
		c, err := d.r.ReadByte()
		if err != nil {
			return nil, err
		}
		d.size++
		if c&0x80 != 0 {
			typ = c
			break
		}
		if i >= prefixLimit {
			return nil, bad("more than %d bytes of prefix", prefixLimit)
		}
		if i > 9 || (i == 9 && c > 1) {
			if c != 0 {
				big = true
			}
			continue
		}
		num |= uint64(c) << (7 * i)
	}
	if d.size > maxExprSize {
		return nil, bad("expression longer than %d bytes", maxExprSize)
	}
	switch typ {
	case typeList:
		if big || num > sizeLimit {
			return nil, bad("list too long")
		}
		if depth >= maxDepth {
			return nil, bad("lists nested deeper than %d", maxDepth)
		}
		// Grow as items arrive: the count is the peer's word.
		l := make([]any, 0, min(num, 16))
		for range num {
			v, err := d.item(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case typeString:
		if big || num > sizeLimit {
			return nil, bad("string too long")
		}
		n := int(num)
		if d.size+n > maxExprSize {
			return nil, bad("expression longer than %d bytes", maxExprSize)
		}
		d.size += n
		// Read in chunks so that a header alone costs no large buffer.
		b := make([]byte, 0, min(n, 4096))
		for len(b) < n {
			k := min(n-len(b), max(cap(b)-len(b), 4096))
			b = append(b, make([]byte, k)...)
			if _, err := io.ReadFull(d.r, b[len(b)-k:]); err != nil {
				return nil, noEOF(err)
			}
		}
		return b, nil
	case typeInt, typeLongInt:
		if big || num > math.MaxInt64 {
			return nil, bad("integer too large")
		}
		return int64(num), nil
	case typeNeg, typeLongNeg:
		if big || num > 1<<63 {
			return nil, bad("integer too small")
		}
		return -int64(num), nil // -(1<<63) wraps to itself: math.MinInt64
	case typeFloat:
		var b [8]byte
		if _, err := io.ReadFull(d.r, b[:]); err != nil {
			return nil, noEOF(err)
		}
		d.size += 8
		return math.Float64frombits(binary.BigEndian.Uint64(b[:])), nil
	case typeVocab:
		if !d.vocab {
			return nil, bad("vocabulary item outside the pb dialect")
		}
		if big || num >= uint64(len(vocabulary)) || vocabulary[num] == "" {
			return nil, bad("unknown vocabulary item %d", num)
		}
		return []byte(vocabulary[num]), nil
	default:
		return nil, bad("unknown type byte %#x", typ)
	}
}

// noEOF turns an EOF in the middle of an item into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// encode appends the banana encoding of v to b. With vocab, the strings
// of the pb vocabulary are abbreviated.
func encode(b []byte, v any, vocab bool) ([]byte, error) {
	switch x := v.(type) {
	case []any:
		if len(x) > sizeLimit {
			return b, fmt.Errorf("pb: list too long to send (%d)", len(x))
		}
		b = appendB128(b, uint64(len(x)), typeList)
		var err error
		for _, e := range x {
			if b, err = encode(b, e, vocab); err != nil {
				return b, err
			}
		}
		return b, nil
	case int:
		return encode(b, int64(x), vocab)
	case int64:
		switch {
		case x < math.MinInt32:
			return appendB128(b, uint64(-(x+1))+1, typeLongNeg), nil
		case x < 0:
			return appendB128(b, uint64(-x), typeNeg), nil
		case x <= math.MaxInt32:
			return appendB128(b, uint64(x), typeInt), nil
		default:
			return appendB128(b, uint64(x), typeLongInt), nil
		}
	case float64:
		b = append(b, typeFloat)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(x)), nil
	case string:
		if i, ok := vocabIndex[x]; ok && vocab {
			return appendB128(b, uint64(i), typeVocab), nil
		}
		if len(x) > sizeLimit {
			return b, fmt.Errorf("pb: string too long to send (%d)", len(x))
		}
		b = appendB128(b, uint64(len(x)), typeString)
		return append(b, x...), nil
	case []byte:
		if i, ok := vocabIndex[string(x)]; ok && vocab {
			return appendB128(b, uint64(i), typeVocab), nil
		}
		if len(x) > sizeLimit {
			return b, fmt.Errorf("pb: string too long to send (%d)", len(x))
		}
		b = appendB128(b, uint64(len(x)), typeString)
		return append(b, x...), nil
	default:
		return b, fmt.Errorf("pb: banana cannot send %T", v)
	}
}

func appendB128(b []byte, n uint64, typ byte) []byte {
	if n == 0 {
		b = append(b, 0)
	}
	for n > 0 {
		b = append(b, byte(n&0x7f))
		n >>= 7
	}
	return append(b, typ)
}
