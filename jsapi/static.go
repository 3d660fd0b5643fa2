package jsapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
)

// The browser client and its demo pages, written in jsapi/static/.
//
//go:embed static
var staticFS embed.FS

// clientAssets are the scripts served at the root: the client (required)
// and its minified copy (when built).
type clientAssets map[string]*asset

func loadClients() (clientAssets, error) {
	out := clientAssets{}
	for _, name := range []string{"CometServerApi.js", "CometServerApi.min.js"} {
		body, err := staticFS.ReadFile("static/" + name)
		if err != nil {
			if name == "CometServerApi.js" {
				return nil, fmt.Errorf("jsapi: embedded client: %w", err)
			}
			continue
		}
		a, err := newAsset(body, "application/javascript; charset=utf-8")
		if err != nil {
			return nil, err
		}
		out[name] = a
	}
	return out, nil
}

// asset is a file served from memory with a strong ETag, precompressed once.
type asset struct {
	body        []byte
	gz          []byte // nil when gzip does not make it smaller
	etag        string
	contentType string
}

func newAsset(body []byte, contentType string) (*asset, error) {
	sum := sha256.Sum256(body)
	a := &asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(body); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() < len(body) {
		a.gz = buf.Bytes()
	}
	return a, nil
}

// serve writes the asset, honouring If-None-Match and Accept-Encoding.
func (a *asset) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: a server upgrade is seen at once
	h.Add("Vary", "Accept-Encoding")
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.contentType)
	body := a.body
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body = a.gz
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 wants for If-None-Match).
func etagMatches(header, etag string) bool {
	for header != "" {
		var t string
		t, header, _ = strings.Cut(header, ",")
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for header != "" {
		var t string
		t, header, _ = strings.Cut(header, ",")
		name, params, _ := strings.Cut(strings.TrimSpace(t), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		params = strings.ReplaceAll(params, " ", "")
		return params != "q=0" && params != "q=0.0" && params != "q=0.00" && params != "q=0.000"
	}
	return false
}

// demoHandler serves jsapi/static/demo/ under /demo/, or nil when the
// directory is not there.
func demoHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static/demo")
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(sub, "."); err != nil {
		return nil
	}
	return http.StripPrefix("/demo", http.FileServerFS(sub))
}
