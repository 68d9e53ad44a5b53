// Package storage is a small blob store in front of object storage, in the
// spirit of pebble's objstorage/remote. Checkpoints write their state files
// and _metadata through it, and the exactly-once file sink stages and
// publishes its part files through it.
//
// A Storage is rooted at a URL and addresses whole objects by
// '/'-separated names relative to that root. Two implementations exist:
//
//   - a local directory (file:///abs/dir or a plain path), where Put writes
//     a temporary file next to the target and renames it, and
//   - S3 or any S3-compatible server such as MinIO (s3://bucket/prefix),
//     through minio-go.
//
// The interface is deliberately the intersection of what both can do
// cheaply and atomically: whole-object Put (S3 has no append), ranged reads
// (restore reads only the key groups a subtask owns), listing by prefix,
// and Rename, which is atomic on a directory but a copy then delete on S3.
// A "directory" is never an object: Get, Size, Delete and Rename of a name
// that only prefixes other objects behave as for a missing object. (One
// difference remains: a directory store cannot hold both "a" and "a/b".)
// Likewise a directory store removes the directories that Delete, DeleteAll
// or Rename leave empty, up to its root, so deleting a checkpoint's files
// leaves no empty chk-N/ behind, as on S3, where a prefix without objects
// does not exist. The root itself stays.
// Callers that need atomic publication on S3 must therefore rely on Put
// (a single PUT is atomic) and treat Rename as "eventually moved".
//
// Credentials come from Options (flags) merged over OptionsFromEnv. The
// secret key never appears in errors, logs or String output. A missing
// bucket is an error unless Options.CreateBucket asks for it to be made,
// which development stores that start empty want and production does not.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNotExist is wrapped by errors for objects that do not exist.
var ErrNotExist = errors.New("object does not exist")

// Options configures S3 access. Secrets must never appear in errors, logs or String().
type Options struct {
	Endpoint  string // "http://host:port" or "https://host" (scheme decides TLS); empty = AWS (https://s3.amazonaws.com)
	AccessKey string
	SecretKey string
	Region    string // optional
	// CreateBucket makes an S3 storage create its bucket when it is
	// missing, once per process and bucket, before its first request.
	// Off by default: a mistyped bucket name must fail, not quietly make
	// a new bucket. Meant for development stores such as the Helm
	// chart's in-cluster MinIO, which start empty.
	CreateBucket bool
}

// OptionsFromEnv reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
func OptionsFromEnv() Options {
	return Options{
		Endpoint:  os.Getenv("AWS_ENDPOINT_URL"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		Region:    os.Getenv("AWS_REGION"),
	}
}

// Merge returns o with empty fields taken from d (flags override env: flags.Merge(env)).
func (o Options) Merge(d Options) Options {
	if o.Endpoint == "" {
		o.Endpoint = d.Endpoint
	}
	if o.AccessKey == "" {
		o.AccessKey = d.AccessKey
	}
	if o.SecretKey == "" {
		o.SecretKey = d.SecretKey
	}
	if o.Region == "" {
		o.Region = d.Region
	}
	o.CreateBucket = o.CreateBucket || d.CreateBucket
	return o
}

// String describes o with the secret key redacted.
func (o Options) String() string {
	secret := ""
	if o.SecretKey != "" {
		secret = "REDACTED"
	}
	return fmt.Sprintf("{Endpoint:%s AccessKey:%s SecretKey:%s Region:%s CreateBucket:%t}", o.Endpoint, o.AccessKey, secret, o.Region, o.CreateBucket)
}

// GoString keeps %#v from printing the secret key.
func (o Options) GoString() string { return "storage.Options" + o.String() }

// LogValue keeps slog from printing the secret key.
func (o Options) LogValue() slog.Value {
	secret := ""
	if o.SecretKey != "" {
		secret = "REDACTED"
	}
	return slog.GroupValue(
		slog.String("endpoint", o.Endpoint),
		slog.String("access_key", o.AccessKey),
		slog.String("secret_key", secret),
		slog.String("region", o.Region),
		slog.Bool("create_bucket", o.CreateBucket),
	)
}

// Object is one stored object.
type Object struct {
	Name string // relative to the storage root, '/'-separated
	Size int64
}

// Storage is rooted at a URL; names are '/'-separated paths relative to that root. Safe for concurrent use.
type Storage interface {
	// Put writes the whole object atomically: readers see the old object, or none, or all of data.
	Put(ctx context.Context, name string, data []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
	// GetRange reads n bytes at offset off (a ranged GET on S3); short objects are an error.
	GetRange(ctx context.Context, name string, off, n int64) ([]byte, error)
	Size(ctx context.Context, name string) (int64, error)
	// List returns every object whose name starts with prefix (recursively), sorted by name.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes one object; a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// DeleteAll removes every object under prefix (a "directory"); nothing there is not an error.
	DeleteAll(ctx context.Context, prefix string) error
	// Rename publishes from as to (os.Rename on a directory; server-side copy then delete on S3).
	// A missing source is an error wrapping ErrNotExist.
	Rename(ctx context.Context, from, to string) error
	// URL is the root URL (file:///abs/path or s3://bucket/prefix), without secrets.
	URL() string
}

// Open returns the storage rooted at rawURL: "file:///abs/dir", a plain path ("/abs/dir" or "rel/dir", made absolute) -> directory;
// "s3://bucket" or "s3://bucket/prefix" -> S3. Open does no I/O (the bucket is checked on first use); it fails on
// unknown schemes and malformed URLs with a clear error. S3 clients are cached per (endpoint, key) so opening many
// URLs is cheap.
func Open(rawURL string, opts Options) (Storage, error) {
	if rawURL == "" {
		return nil, errors.New("storage: empty storage URL")
	}
	scheme, rest, ok := splitScheme(rawURL)
	if !ok {
		// No scheme: a plain path. Not parsed as a URL, so '%', '?' and '#'
		// in directory names need no escaping.
		abs, err := filepath.Abs(rawURL)
		if err != nil {
			return nil, fmt.Errorf("storage: directory %q: %w", rawURL, err)
		}
		return newDir(abs), nil
	}
	switch strings.ToLower(scheme) {
	case "file":
		dir, err := parseFileURL(rawURL)
		if err != nil {
			return nil, err
		}
		return newDir(dir), nil
	case "s3":
		bucket, prefix, err := parseS3URL(rawURL, rest)
		if err != nil {
			return nil, err
		}
		return newS3(bucket, prefix, opts)
	default:
		return nil, fmt.Errorf("storage: unsupported scheme %q in %q (want file:///abs/dir, a plain path, or s3://bucket/prefix)",
			scheme, redactURL(rawURL))
	}
}

// Join appends path elements to a storage URL: Join("s3://b/p", "job", "chk-3") == "s3://b/p/job/chk-3";
// works for file:// URLs and plain paths too.
func Join(base string, elem ...string) string {
	var parts []string
	for _, e := range elem {
		if e = strings.Trim(e, "/"); e != "" {
			parts = append(parts, e)
		}
	}
	if len(parts) == 0 {
		return base
	}
	if base == "" {
		return strings.Join(parts, "/")
	}
	// Trimming keeps "s3://b/" from doubling the slash; a bare "/" trims to
	// "" and the join restores it.
	trimmed := strings.TrimRight(base, "/")
	if strings.HasSuffix(trimmed, ":") {
		trimmed += "//" // "file:///" lost its empty authority
	}
	return trimmed + "/" + strings.Join(parts, "/")
}

// IsURL reports whether rawURL starts with a scheme ("s3://", "file://");
// anything else is a plain path to Open.
func IsURL(rawURL string) bool {
	_, _, ok := splitScheme(rawURL)
	return ok
}

// splitScheme splits "scheme:rest" when rawURL starts with an RFC 3986
// scheme followed by "://"; anything else is a plain path.
func splitScheme(rawURL string) (scheme, rest string, ok bool) {
	i := strings.Index(rawURL, "://")
	if i <= 0 {
		return "", "", false
	}
	for j, c := range rawURL[:i] {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case j > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return "", "", false
		}
	}
	return rawURL[:i], rawURL[i+3:], true
}

// redactURL hides any user info ("s3://key:secret@bucket") before a URL is
// quoted in an error.
func redactURL(rawURL string) string {
	_, rest, ok := splitScheme(rawURL)
	if !ok {
		return rawURL
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		start := len(rawURL) - len(rest)
		return rawURL[:start] + "REDACTED@" + rawURL[start+at+1:]
	}
	return rawURL
}

// checkName rejects names that would escape the root or that the two
// implementations would treat differently ("a//b", "a/./b", trailing '/').
func checkName(name string) error {
	if name == "" {
		return errors.New("storage: empty object name")
	}
	if err := checkElems(name); err != nil {
		return err
	}
	if strings.HasSuffix(name, "/") {
		return fmt.Errorf("storage: object name %q ends with '/'", name)
	}
	if strings.HasPrefix(path.Base(name), tmpPrefix) {
		return fmt.Errorf("storage: object name %q: names starting with %q are reserved for temporary files", name, tmpPrefix)
	}
	return nil
}

// checkPrefix accepts "" and anything checkName accepts, plus a trailing '/'
// and a partial last element ("chk-" matches "chk-1/..." and "chk-2/...").
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return checkElems(strings.TrimSuffix(prefix, "/"))
}

func checkElems(name string) error {
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("storage: name %q must be relative (no leading '/')", name)
	}
	for _, e := range strings.Split(name, "/") {
		switch e {
		case "":
			return fmt.Errorf("storage: name %q has an empty path element", name)
		case ".", "..":
			return fmt.Errorf("storage: name %q has a %q path element", name, e)
		}
	}
	return nil
}

// checkRange rejects negative GetRange offsets and lengths.
func checkRange(off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("storage: invalid range: offset %d, length %d", off, n)
	}
	return nil
}

// shortRead reports that an object ended before off+n; it wraps
// io.ErrUnexpectedEOF so callers can tell truncation from other failures.
func shortRead(where string, off, n, size int64) error {
	return fmt.Errorf("get range [%d, %d) of %s: object has %d bytes: %w", off, off+n, where, size, io.ErrUnexpectedEOF)
}
