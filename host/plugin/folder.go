package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	// Loading is the slow part of a reload (compiling, warming an
	// instance), so the files that need it are read and loaded in parallel
	// first; the pass below then settles names in file-name order exactly
	// as if it had loaded them one by one.
	work := f.prepare(ctx, entries)
	next := map[string]*fileState{}
	cat := &Catalog{}
	pluginFile := map[string]string{}
	toolFile := map[string]string{}
	var retire []*Plugin
	for _, e := range entries {
		if !isPluginEntry(e) {
			continue
		}
		path := filepath.Join(f.dir, e.Name())
		w := work[e.Name()]
		st := w.stamp
		prev := f.files[e.Name()]
		var cur fileState
		switch {
		case !w.needed:
			cur = *prev // serving as loaded, or failed at these bytes and reported then
		default:
			spec, err := w.spec, w.readErr
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
				if w.loaded {
					p, err = w.plugin, w.loadErr
				} else {
					// Its name may collide, so it was left for this pass.
					p, err = f.host.Load(ctx, spec)
				}
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

// isPluginEntry reports whether a folder entry is a plugin file.
func isPluginEntry(e os.DirEntry) bool {
	return !e.IsDir() && strings.HasSuffix(e.Name(), ".wasm")
}

// pending is what prepare learned about one plugin file.
type pending struct {
	path  string
	stamp stamp
	// needed: the file changed since it was last loaded or failed.
	needed  bool
	spec    *Spec
	readErr error
	// loaded: Load ran, and plugin and loadErr are its result.
	loaded  bool
	plugin  *Plugin
	loadErr error
}

// prepare stamps every plugin file, then reads, in parallel, those that
// changed, and loads, in parallel, those whose plugin name no other file
// can claim. A name that two files may claim decides which one loads, so
// those are left for reload's in-order pass, which loads them one by one
// as before.
func (f *Folder) prepare(ctx context.Context, entries []os.DirEntry) map[string]*pending {
	work := map[string]*pending{}
	var todo []*pending
	owners := map[string][]string{} // plugin name -> files whose serving version has it
	for _, e := range entries {
		if !isPluginEntry(e) {
			continue
		}
		path := filepath.Join(f.dir, e.Name())
		w := &pending{path: path, stamp: stampOf(path)}
		prev := f.files[e.Name()]
		kept := prev != nil && prev.plugin != nil && prev.stamp == w.stamp
		knownBroken := prev != nil && prev.failed == w.stamp
		w.needed = !kept && !knownBroken
		if prev != nil && prev.plugin != nil {
			owners[prev.plugin.Manifest.Name] = append(owners[prev.plugin.Manifest.Name], path)
		}
		work[e.Name()] = w
		if w.needed {
			todo = append(todo, w)
		}
	}
	parallel(todo, func(w *pending) { w.spec, w.readErr = Read(w.path) })

	claims := map[string]int{}
	for _, w := range todo {
		if w.readErr == nil {
			claims[w.spec.Manifest.Name]++
		}
	}
	var load []*pending
	for _, w := range todo {
		if w.readErr != nil {
			continue
		}
		name := w.spec.Manifest.Name
		if claims[name] == 1 && !slices.ContainsFunc(owners[name], func(p string) bool { return p != w.path }) {
			load = append(load, w)
		}
	}
	// Largest first, so a big Go guest does not start last and leave the
	// other workers idle while it compiles.
	slices.SortStableFunc(load, func(a, b *pending) int { return len(b.spec.Wasm) - len(a.spec.Wasm) })
	parallel(load, func(w *pending) {
		w.plugin, w.loadErr = f.host.Load(ctx, w.spec)
		w.loaded = true
	})
	return work
}

// parallel runs do on every item, on at most GOMAXPROCS goroutines: each
// load is CPU-bound, so more would only contend.
func parallel(items []*pending, do func(*pending)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(items)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				do(items[i])
			}
		})
	}
	wg.Wait()
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
