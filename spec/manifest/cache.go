package manifest

import (
	"sync"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// Cache remembers each file's parsed documents by path and content digest,
// so a pass over a directory where little changed only re-reads bytes and
// re-parses the files that did change. Reading stays: the digest of what is
// on disk now is the only trustworthy "unchanged". Safe for concurrent use.
//
// Objects (pods, ConfigMaps, Secrets, their errors) are shared between
// snapshots taken with the same Cache: treat them as read-only.
type Cache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	digest   string
	limits   spec.Limits
	docs     []*spec.Document
	fileErrs spec.FieldErrors
}

// NewCache returns an empty cache for Options.Cache.
func NewCache() *Cache { return &Cache{entries: map[string]cacheEntry{}} }

func (c *Cache) get(path, digest string, lim spec.Limits) ([]*spec.Document, spec.FieldErrors, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[path]
	if !ok || e.digest != digest || e.limits != lim {
		return nil, nil, false
	}
	return e.docs, e.fileErrs, true
}

func (c *Cache) put(path, digest string, lim spec.Limits, docs []*spec.Document, fileErrs spec.FieldErrors) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[path] = cacheEntry{digest: digest, limits: lim, docs: docs, fileErrs: fileErrs}
}

// retain forgets every path not in keep, so removed files do not pin memory.
func (c *Cache) retain(keep map[string]*FileResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.entries {
		if _, ok := keep[p]; !ok {
			delete(c.entries, p)
		}
	}
}
