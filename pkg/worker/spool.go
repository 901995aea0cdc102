package worker

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// SpoolDir is the directory, under the worker's basedir, that holds the
// spools of resumable commands (see FileSpools).
const SpoolDir = ".gbb-spool"

// DefaultSpoolMax is FileSpools' default bound on one spool: 1 GiB.
const DefaultSpoolMax = 1 << 30

// FileSpools keeps the output of each resumable command in a file of Dir,
// so that a worker whose master restarts can replay what the master missed
// without holding it in memory. It is a protocol.SpoolStore.
type FileSpools struct {
	Dir string
	// Max bounds the data bytes one spool keeps; the output past it is
	// counted but not kept, and a replay says so. Zero means
	// DefaultSpoolMax.
	Max int64
}

var _ protocol.SpoolStore = (*FileSpools)(nil)

// RemoveStale deletes the spools a previous run of the worker left: their
// commands died with it.
func (f *FileSpools) RemoveStale() error {
	if err := os.RemoveAll(f.Dir); err != nil {
		return fmt.Errorf("remove stale spools: %w", err)
	}
	return nil
}

// Create makes the spool of the command key, in a file named after a hash
// of the key.
func (f *FileSpools) Create(key string) (protocol.Spool, error) {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(f.Dir, hex.EncodeToString(sum[:12])+".spool")
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	max := f.Max
	if max <= 0 {
		max = DefaultSpoolMax
	}
	return &fileSpool{f: file, w: bufio.NewWriterSize(file, 64<<10), max: max}, nil
}

// fileSpool is one spool file: records of a stream byte, the log name's
// length (uvarint) and bytes, the data's length (uvarint) and bytes.
type fileSpool struct {
	f    *os.File
	w    *bufio.Writer
	max  int64
	kept int64 // data bytes in the file
	lost int64 // data bytes past max, not kept
}

func (s *fileSpool) Write(o protocol.Output) error {
	data := o.Data
	if room := s.max - s.kept; int64(len(data)) > room {
		s.lost += int64(len(data)) - max(room, 0)
		data = data[:max(room, 0)]
	}
	if len(data) == 0 {
		return nil
	}
	var hdr [1 + 2*binary.MaxVarintLen64]byte
	hdr[0] = byte(o.Stream)
	n := 1 + binary.PutUvarint(hdr[1:], uint64(len(o.Log)))
	if _, err := s.w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	if _, err := s.w.WriteString(o.Log); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	n = binary.PutUvarint(hdr[:], uint64(len(data)))
	if _, err := s.w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	if _, err := s.w.Write(data); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	s.kept += int64(len(data))
	return nil
}

// Replay reads the file from its start, skipping the bytes before offset.
func (s *fileSpool) Replay(offset int64, fn func(protocol.Output)) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, 1<<62), 64<<10)
	var pos int64
	for {
		st, err := r.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("replay spool: %w", err)
		}
		name, err := readBlock(r)
		if err != nil {
			return fmt.Errorf("replay spool: %w", err)
		}
		data, err := readBlock(r)
		if err != nil {
			return fmt.Errorf("replay spool: %w", err)
		}
		end := pos + int64(len(data))
		if end > offset {
			if pos < offset {
				data = data[offset-pos:]
			}
			fn(protocol.Output{Stream: protocol.Stream(st), Log: string(name), Data: data})
		}
		pos = end
	}
	if s.lost > 0 {
		fn(protocol.Output{Stream: protocol.Header, Data: fmt.Appendf(nil,
			"worker: %d bytes of output past the spool's limit of %d bytes were not kept\n", s.lost, s.max)})
	}
	return nil
}

// maxBlock bounds a spool record's block: no chunk of output is larger.
const maxBlock = 16 << 20

func readBlock(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxBlock {
		return nil, fmt.Errorf("corrupt spool: a record of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *fileSpool) Remove() error {
	err := s.f.Close()
	if rerr := os.Remove(s.f.Name()); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("remove spool: %w", err)
	}
	return nil
}
