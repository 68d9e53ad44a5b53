package storage

import (
	"context"
	"fmt"
	"io"
	"os"
)

// readerPutter is implemented by the storages that can write an object
// streamed from a reader of known size.
type readerPutter interface {
	putReader(ctx context.Context, name string, r io.Reader, size int64) error
}

// PutFile writes the local file at localPath as the object name, streaming
// it from disk, so a large file never sits in memory whole (a storage
// without streaming gets it read whole). It returns the bytes written.
func PutFile(ctx context.Context, st Storage, name, localPath string) (int64, error) {
	f, err := os.Open(localPath)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", name, err)
	}
	if p, ok := st.(readerPutter); ok {
		return fi.Size(), p.putReader(ctx, name, f, fi.Size())
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", name, err)
	}
	return int64(len(data)), st.Put(ctx, name, data)
}

// getChunk is the size of the ranged reads of GetFile.
const getChunk = 8 << 20

// GetFile copies the object name, of size bytes, to a new local file at
// localPath with ranged reads of at most 8 MiB, so memory stays bounded
// whatever the object's size. A missing object is an error wrapping
// ErrNotExist.
func GetFile(ctx context.Context, st Storage, name string, size int64, localPath string) error {
	f, err := os.OpenFile(localPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("get %s: %w", name, err)
	}
	err = func() error {
		if size == 0 {
			// GetRange of nothing still checks that the object exists.
			_, err := st.GetRange(ctx, name, 0, 0)
			return err
		}
		for off := int64(0); off < size; off += getChunk {
			b, err := st.GetRange(ctx, name, off, min(getChunk, size-off))
			if err != nil {
				return err
			}
			if _, err := f.Write(b); err != nil {
				return fmt.Errorf("get %s: %w", name, err)
			}
		}
		return nil
	}()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("get %s: %w", name, cerr)
	}
	if err != nil {
		os.Remove(localPath)
	}
	return err
}
