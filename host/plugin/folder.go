package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/alterhost/alterhost/abi"
)

// Folder is a plugins folder kept loaded. Reload brings the catalog in line
// with the files: a new, changed or removed plugin (or sidecar manifest, or
// settings file) is loaded, swapped or dropped while the rest keep serving.
// A replaced version finishes the calls it has started; a new version that
// does not load leaves the old one serving. Folder is safe for concurrent
// use; reloads run one at a time.
type Folder struct {
	dir  string
	host *Host

	mu    sync.Mutex // serializes Reload and Close
	files map[string]*fileState
	cat   atomic.Pointer[Catalog]
	// retiring counts replaced versions still finishing their calls.
	retiring sync.WaitGroup
}

// fileState is what the folder knows of one plugin file.
type fileState struct {
	stamp  stamp   // of the files the serving version was loaded from
	plugin *Plugin // the serving version, or nil
	// failed is the stamp of a version that did not load, so the same
	// bytes are neither loaded nor reported again.
	failed stamp
}

// stamp identifies the state of a plugin's files on disk.
type stamp struct{ wasm, sidecar, settings fileStamp }

type fileStamp struct {
	size   int64
	mod    time.Time
	exists bool
}

func stampOf(wasmPath string) stamp {
	one := func(p string) fileStamp {
		fi, err := os.Stat(p)
		if err != nil {
			return fileStamp{}
		}
		return fileStamp{size: fi.Size(), mod: fi.ModTime(), exists: true}
	}
	return stamp{one(wasmPath), one(SidecarPath(wasmPath)), one(ConfigPath(wasmPath))}
}

// OpenFolder returns the folder dir, with nothing loaded until Reload.
func (h *Host) OpenFolder(dir string) *Folder {
	f := &Folder{dir: dir, host: h, files: map[string]*fileState{}}
	f.cat.Store(&Catalog{})
	return f
}

// Catalog returns the plugins and tools serving now.
func (f *Folder) Catalog() *Catalog { return f.cat.Load() }

// Reload loads what changed on disk since the last reload and swaps it in.
// It reports whether the catalog changed, and every plugin that could not
// be loaded (each error names its file; a broken new version says that the
// old one keeps serving). Plugin and tool name collisions are settled by
// file-name order, as at start.
func (f *Folder) Reload(ctx context.Context) (changed bool, errs []error) {
	return f.reload(ctx, nil)
}

// reload is Reload, calling onChange with a changed catalog before it
// retires the versions replaced: by then the caller's view (the MCP
// server's tools) has moved to the new versions, so a call turned away by
// a retired version finds the new one when it looks again.
func (f *Folder) reload(ctx context.Context, onChange func(*Catalog)) (changed bool, errs []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return false, []error{fmt.Errorf("plugins folder: %w", err)}
	}
	next := map[string]*fileState{}
	cat := &Catalog{}
	pluginFile := map[string]string{}
	toolFile := map[string]string{}
	var retire []*Plugin
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		path := filepath.Join(f.dir, e.Name())
		st := stampOf(path)
		prev := f.files[e.Name()]
		var cur fileState
		switch {
		case prev != nil && prev.plugin != nil && prev.stamp == st:
			cur = *prev
		case prev != nil && prev.failed == st:
			cur = *prev // reported when it failed; the old version, if any, serves on
		default:
			spec, err := Read(path)
			if err == nil {
				if first, dup := pluginFile[spec.Manifest.Name]; dup {
					// Not marked failed: once the other file gives the name up,
					// this one loads at the next reload.
					errs = append(errs, dupPlugin(path, spec.Manifest.Name, first))
					if prev != nil && prev.plugin != nil {
						retire = append(retire, prev.plugin)
					}
					continue
				}
			}
			var p *Plugin
			if err == nil {
				p, err = f.host.Load(ctx, spec)
			}
			f.host.Metrics.PluginLoaded(err == nil)
			switch {
			case err == nil:
				cur = fileState{stamp: st, plugin: p}
				if prev != nil && prev.plugin != nil {
					retire = append(retire, prev.plugin)
				}
			case prev != nil && prev.plugin != nil:
				errs = append(errs, fmt.Errorf("%w (the version loaded before keeps serving)", err))
				cur = fileState{stamp: prev.stamp, plugin: prev.plugin, failed: st}
			default:
				errs = append(errs, err)
				cur = fileState{failed: st}
			}
		}
		next[e.Name()] = &cur
		p := cur.plugin
		if p == nil {
			continue
		}
		if first, dup := pluginFile[p.Manifest.Name]; dup {
			// A kept version whose name an earlier file has taken since.
			errs = append(errs, dupPlugin(path, p.Manifest.Name, first))
			retire = append(retire, p)
			delete(next, e.Name())
			continue
		}
		pluginFile[p.Manifest.Name] = path
		cat.Plugins = append(cat.Plugins, p)
		for i := range p.Manifest.Tools {
			t := &p.Manifest.Tools[i]
			if first, dup := toolFile[t.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: tool %q is already served by %s; this plugin's copy is skipped (rename one of them)",
					path, t.Name, first))
				continue
			}
			toolFile[t.Name] = path
			cat.Tools = append(cat.Tools, Binding{Plugin: p, Tool: t})
		}
	}
	for name, st := range f.files {
		if _, ok := next[name]; !ok && st.plugin != nil && !slices.Contains(retire, st.plugin) {
			retire = append(retire, st.plugin)
		}
	}
	old := f.cat.Load()
	changed = !sameCatalog(old, cat)
	f.files = next
	f.cat.Store(cat)
	f.host.Metrics.SetLoaded(len(cat.Plugins), len(cat.Tools))
	if changed && onChange != nil {
		onChange(cat)
	}
	for _, p := range retire {
		f.retire(p)
	}
	return changed, errs
}

func dupPlugin(path, name, first string) error {
	return fmt.Errorf("%s: plugin name %q is already used by %s; skipped (rename one of them)", path, name, first)
}

// sameCatalog reports whether a and b serve the same tools from the same
// plugin versions.
func sameCatalog(a, b *Catalog) bool {
	return slices.EqualFunc(a.Tools, b.Tools, func(x, y Binding) bool { return x == y }) &&
		slices.Equal(a.Plugins, b.Plugins)
}

// retire closes p once the calls it has started finish, in the background,
// waiting at most its call timeout (and a second): a call cannot run longer.
func (f *Folder) retire(p *Plugin) {
	f.retiring.Add(1)
	go func() {
		defer f.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), p.Manifest.Limits.Timeout()+time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			f.host.logger().Warn("closing a replaced plugin version", "file", p.File, "error", err)
		}
	}()
}

// Close retires every plugin and waits for their calls to finish, until ctx
// ends.
func (f *Folder) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, p := range slices.Backward(f.cat.Load().Plugins) {
		errs = append(errs, p.Close(ctx))
	}
	f.cat.Store(&Catalog{})
	f.files = map[string]*fileState{}
	done := make(chan struct{})
	go func() { f.retiring.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// settle is how long the folder must be quiet before a reload: a file being
// copied in changes many times, and loading it half-written would only
// fail. A copy that pauses longer yields a module that does not parse; it
// is reported, and loaded once the copy completes.
const settle = 300 * time.Millisecond

// Watch reloads the folder whenever its plugin, sidecar or settings files
// change, until ctx ends. onChange is called after each reload that
// changed the catalog; every reload's errors go to report.
func (f *Folder) Watch(ctx context.Context, onChange func(*Catalog), report func([]error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", f.dir, err)
	}
	defer w.Close()
	if err := w.Add(f.dir); err != nil {
		return fmt.Errorf("watching %s: %w", f.dir, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if relevant(ev.Name) {
				timer.Reset(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflowed event queue lost changes: reload to catch up.
			report([]error{fmt.Errorf("watching %s: %w", f.dir, err)})
			timer.Reset(settle)
		case <-timer.C:
			if _, errs := f.reload(ctx, onChange); len(errs) > 0 {
				report(errs)
			}
		}
	}
}

// relevant reports whether a change to path can change the catalog.
func relevant(path string) bool {
	name := filepath.Base(path)
	for _, suffix := range []string{".wasm", abi.SidecarSuffix, abi.ConfigSuffix} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}
