package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// An unreachable endpoint must fail in seconds, not minutes. minio-go
// retries a failed request 10 times by default with up to 1 s backoff, and
// its transport waits 30 s for a TCP connect. We set both per client rather
// than the package-level minio.MaxRetry, so other minio-go users in the
// process are unaffected: 3 attempts still ride out a transient blip
// (S3's own "SlowDown" and 5xx are retried too), and 5 s is ample for a
// connect anywhere a checkpoint store is usable.
const (
	s3MaxAttempts = 3
	s3DialTimeout = 5 * time.Second
)

const awsEndpoint = "https://s3.amazonaws.com"

// s3Storage stores objects under a key prefix of one S3 bucket.
type s3Storage struct {
	client   *minio.Client
	endpoint string // scheme://host, for errors
	bucket   string
	base     string // key prefix with a trailing '/', or "" for the whole bucket
	// create is Options.CreateBucket; region is the one to create it in.
	create bool
	region string
}

func newS3(bucket, prefix string, opts Options) (*s3Storage, error) {
	client, endpoint, err := s3Client(opts)
	if err != nil {
		return nil, err
	}
	s := &s3Storage{client: client, endpoint: endpoint, bucket: bucket, create: opts.CreateBucket, region: opts.Region}
	if prefix != "" {
		s.base = prefix + "/"
	}
	return s, nil
}

// clientKey identifies a cached client. The secret is part of it so a
// client built with a wrong secret is never handed out for the right one;
// the map is never printed.
type clientKey struct {
	secure                       bool
	host, access, secret, region string
}

var clients = struct {
	sync.Mutex
	m map[clientKey]*minio.Client
}{m: make(map[clientKey]*minio.Client)}

// s3Client returns the cached client for opts, creating it on first use.
// minio.New does no I/O, so neither does Open.
func s3Client(opts Options) (*minio.Client, string, error) {
	secure, host, err := parseEndpoint(opts.Endpoint)
	if err != nil {
		return nil, "", err
	}
	endpoint := "http://" + host
	if secure {
		endpoint = "https://" + host
	}
	key := clientKey{secure: secure, host: host, access: opts.AccessKey, secret: opts.SecretKey, region: opts.Region}
	clients.Lock()
	defer clients.Unlock()
	if c, ok := clients.m[key]; ok {
		return c, endpoint, nil
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, "", fmt.Errorf("storage: S3 transport for %s: %w", endpoint, err)
	}
	tr.DialContext = (&net.Dialer{Timeout: s3DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	// Path-style ("host/bucket/key") works for MinIO on 127.0.0.1 and any
	// custom endpoint; AWS itself prefers virtual hosts, which Auto picks.
	lookup := minio.BucketLookupPath
	if opts.Endpoint == "" {
		lookup = minio.BucketLookupAuto
	}
	c, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, ""),
		Secure:       secure,
		Transport:    tr,
		Region:       opts.Region,
		BucketLookup: lookup,
		MaxRetries:   s3MaxAttempts,
	})
	if err != nil {
		// minio.New only validates the endpoint; its errors hold no secrets.
		return nil, "", fmt.Errorf("storage: S3 client for %s: %w", endpoint, err)
	}
	clients.m[key] = c
	return c, endpoint, nil
}

// ensured holds the buckets (endpoint + "/" + bucket) that ensureBucket
// has found or made in this process, so each costs one request per
// process rather than one per Open.
var ensured sync.Map

// ensureBucket creates the bucket if it is missing, when the storage was
// opened with Options.CreateBucket; otherwise it does nothing. Every
// operation calls it first, so reads of a fresh store see an empty bucket
// rather than a missing one. Two processes racing to create the same
// bucket both succeed: "already exists" from the loser is success.
func (s *s3Storage) ensureBucket(ctx context.Context) error {
	if !s.create {
		return nil
	}
	key := s.endpoint + "/" + s.bucket
	if _, ok := ensured.Load(key); ok {
		return nil
	}
	exists, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.mapErr("check bucket", "", err)
	}
	if !exists {
		err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && (resp.Code == "BucketAlreadyOwnedByYou" || resp.Code == "BucketAlreadyExists") {
			err = nil
		}
		if err != nil {
			return s.mapErr("create bucket", "", err)
		}
		slog.Info("created S3 bucket", "bucket", s.bucket, "endpoint", s.endpoint)
	}
	ensured.Store(key, struct{}{})
	return nil
}

// parseEndpoint splits an S3 endpoint URL into TLS-or-not and host[:port].
func parseEndpoint(ep string) (secure bool, host string, err error) {
	if ep == "" {
		ep = awsEndpoint
	}
	if _, _, ok := splitScheme(ep); !ok {
		return false, "", fmt.Errorf("storage: S3 endpoint %q must start with http:// or https://", ep)
	}
	u, err := url.Parse(ep)
	if err != nil {
		// url.Error quotes the whole input, which might hold user info.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, "", fmt.Errorf("storage: malformed S3 endpoint %q: %w", redactURL(ep), err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return false, "", fmt.Errorf("storage: S3 endpoint %q must start with http:// or https://", redactURL(ep))
	}
	switch {
	case u.User != nil:
		return false, "", fmt.Errorf("storage: S3 endpoint %q must not contain credentials; use --s3-access-key/--s3-secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", redactURL(ep))
	case u.Host == "":
		return false, "", fmt.Errorf("storage: S3 endpoint %q has no host", ep)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return false, "", fmt.Errorf("storage: S3 endpoint %q must be scheme://host[:port] without a path", ep)
	}
	return secure, u.Host, nil
}

// parseS3URL splits "s3://bucket/prefix" (rest is what follows "s3://").
// Keys are taken literally, without percent-decoding, as S3 stores them.
func parseS3URL(rawURL, rest string) (bucket, prefix string, err error) {
	bucket, prefix, _ = strings.Cut(rest, "/")
	if strings.Contains(bucket, "@") {
		return "", "", fmt.Errorf("storage: S3 URL %q must not contain credentials; use --s3-access-key/--s3-secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", redactURL(rawURL))
	}
	if strings.ContainsAny(rest, "?#") {
		return "", "", fmt.Errorf("storage: S3 URL %q has a query or fragment; want s3://bucket/prefix", rawURL)
	}
	if bucket == "" {
		return "", "", fmt.Errorf("storage: S3 URL %q has no bucket; want s3://bucket/prefix", rawURL)
	}
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return "", "", fmt.Errorf("storage: S3 URL %q: %w", rawURL, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := checkElems(prefix); err != nil {
			return "", "", fmt.Errorf("storage: S3 URL %q: %w", rawURL, err)
		}
	}
	return bucket, prefix, nil
}

func (s *s3Storage) URL() string {
	if s.base == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.base, "/")
}

func (s *s3Storage) String() string { return s.URL() }

func (s *s3Storage) key(name string) string { return s.base + name }

// where names an object in errors.
func (s *s3Storage) where(key string) string { return "s3://" + s.bucket + "/" + key }

// mapErr turns minio-go errors into the three failures users can act on
// (missing object, refused credentials, unreachable endpoint) and wraps the
// rest. None of minio-go's errors contain the secret key: it only signs.
func (s *s3Storage) mapErr(op, key string, err error) error {
	where := s.where(key)
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "NoSuchKey":
			return fmt.Errorf("%s %s: %w", op, where, ErrNotExist)
		case "NoSuchBucket":
			return fmt.Errorf("%s %s: bucket %q does not exist (create it, or for a development store run with --s3-create-bucket): %w",
				op, where, s.bucket, ErrNotExist)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return fmt.Errorf("%s %s: the S3 credentials were refused (%s: %w); check --s3-access-key/--s3-secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
				op, where, resp.Code, err)
		}
		return fmt.Errorf("%s %s: %w", op, where, err)
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") || errors.Is(err, syscall.ECONNREFUSED) {
		// Drop url.Error's "Get <request URL>:" preamble; the endpoint says it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: S3 endpoint %s unreachable: %w", op, where, s.endpoint, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

func (s *s3Storage) Put(ctx context.Context, name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	key := s.key(name)
	// A single PUT (or a completed multipart upload for large objects) is
	// atomic on S3: no reader ever sees a partial object.
	_, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return s.mapErr("put", key, err)
	}
	return nil
}

// putReader is Put streaming the object's bytes from r (see PutFile):
// minio-go sends a large object as a multipart upload, buffering one part
// at a time, which completes atomically like a single PUT.
func (s *s3Storage) putReader(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	key := s.key(name)
	_, err := s.client.PutObject(ctx, s.bucket, key, r, size,
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: putPartSize})
	if err != nil {
		return s.mapErr("put", key, err)
	}
	return nil
}

// putPartSize bounds the memory of a streamed upload: minio-go buffers one
// part (S3's minimum part size is 5 MiB).
const putPartSize = 16 << 20

func (s *s3Storage) Get(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	key := s.key(name)
	// Core.GetObject fails on the request itself, unlike Client.GetObject,
	// which defers errors to the first Read.
	body, info, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.mapErr("get", key, err)
	}
	defer body.Close()
	buf := bytes.NewBuffer(make([]byte, 0, max(info.Size, 0)))
	if _, err := io.Copy(buf, body); err != nil {
		return nil, s.mapErr("get", key, err)
	}
	return buf.Bytes(), nil
}

func (s *s3Storage) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkRange(off, n); err != nil {
		return nil, err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	key := s.key(name)
	if n == 0 {
		// An empty Range header is invalid; check existence and bounds.
		size, err := s.Size(ctx, name)
		if err != nil {
			return nil, err
		}
		if off > size {
			return nil, shortRead(s.where(key), off, n, size)
		}
		return []byte{}, nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, fmt.Errorf("get range %s: %w", s.where(key), err)
	}
	body, _, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == "InvalidRange" {
			return nil, s.short(ctx, name, off, n)
		}
		return nil, s.mapErr("get range", key, err)
	}
	defer body.Close()
	// S3 answers a range that starts inside the object but ends past it
	// with the bytes there are, so a short body means a short object.
	buf := make([]byte, n)
	if _, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, s.short(ctx, name, off, n)
		}
		return nil, s.mapErr("get range", key, err)
	}
	return buf, nil
}

// short reports a range beyond the end of an object, with its size.
func (s *s3Storage) short(ctx context.Context, name string, off, n int64) error {
	size, err := s.Size(ctx, name)
	if err != nil {
		return err
	}
	return shortRead(s.where(s.key(name)), off, n, size)
}

func (s *s3Storage) Size(ctx context.Context, name string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return 0, err
	}
	key := s.key(name)
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return 0, s.mapErr("size", key, err)
	}
	return info.Size, nil
}

func (s *s3Storage) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	keys, err := s.list(ctx, s.base+prefix)
	if err != nil {
		return nil, err
	}
	objs := make([]Object, len(keys))
	for i, k := range keys {
		objs[i] = Object{Name: strings.TrimPrefix(k.Key, s.base), Size: k.Size}
	}
	return objs, nil
}

// list returns the objects whose keys start with keyPrefix, sorted by key.
func (s *s3Storage) list(ctx context.Context, keyPrefix string) ([]minio.ObjectInfo, error) {
	// Cancel on return so an early error stops minio-go's lister goroutine.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var objs []minio.ObjectInfo
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: keyPrefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.mapErr("list", keyPrefix, obj.Err)
		}
		// Zero-byte "folder" markers made by consoles are not objects.
		if strings.HasSuffix(obj.Key, "/") {
			continue
		}
		objs = append(objs, obj)
	}
	// S3 lists in key order already; sorting keeps that a promise of ours,
	// not of every S3-compatible server.
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

func (s *s3Storage) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	return s.remove(ctx, s.key(name))
}

// remove deletes one key; S3 already treats a missing key as success. A
// missing bucket stays an error: it is a misconfiguration, not "nothing
// there".
func (s *s3Storage) remove(ctx context.Context, key string) error {
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == "NoSuchKey" {
			return nil
		}
		return s.mapErr("delete", key, err)
	}
	return nil
}

func (s *s3Storage) DeleteAll(ctx context.Context, prefix string) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	// Like os.RemoveAll on a directory store: "p" removes the object p
	// and everything under p/, never p2/.
	keyPrefix := s.base
	if p := strings.TrimSuffix(prefix, "/"); p != "" {
		if err := s.remove(ctx, s.key(p)); err != nil {
			return err
		}
		keyPrefix = s.key(p) + "/"
	}
	objs, err := s.list(ctx, keyPrefix)
	if err != nil || len(objs) == 0 {
		return err
	}
	ch := make(chan minio.ObjectInfo)
	go func() {
		defer close(ch)
		for _, o := range objs {
			select {
			case ch <- o:
			case <-ctx.Done():
				return
			}
		}
	}()
	// RemoveObjects batches up to 1000 keys per request; drain every
	// result so its goroutine finishes, keeping the first error.
	var first error
	for rerr := range s.client.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if first == nil {
			first = s.mapErr("delete all", keyPrefix, rerr.Err)
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func (s *s3Storage) Rename(ctx context.Context, from, to string) error {
	if err := checkName(from); err != nil {
		return err
	}
	if err := checkName(to); err != nil {
		return err
	}
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	src, dst := s.key(from), s.key(to)
	if src == dst {
		// S3 refuses a copy onto itself, and the delete would then lose
		// the object; os.Rename(a, a) is a no-op, so match it.
		_, err := s.Size(ctx, from)
		return err
	}
	// CopyObject is one server-side request (objects up to 5 GiB, far
	// above any checkpoint file). If the delete fails after it, both
	// names exist; repeating the Rename is safe.
	_, err := s.client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: s.bucket, Object: dst},
		minio.CopySrcOptions{Bucket: s.bucket, Object: src})
	if err != nil {
		return s.mapErr("rename", src, err)
	}
	return s.remove(ctx, src)
}
