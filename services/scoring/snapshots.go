package scoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/services/scoring/preapproval"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

// loadTimeout bounds the download and indexing of one snapshot; a million clients take a
// second or two. A download overtaken by a newer version is abandoned at once (see
// loader); this is the backstop for one that stalls with nothing to overtake it.
const loadTimeout = 2 * time.Minute

// served is the index in use and the object it came from.
type served struct {
	ix      *preapproval.Index
	name    string // contracts.PreapprovalsObject, or contracts.PreapprovalsSeedObject: built here
	nuid    string
	content string    // snapshotstore.ContentID
	stored  time.Time // when the object was written: the snapshot's age
}

// snapshots serves the pre-approval index and keeps it current. It reads the object store
// every checkInterval, loads each new snapshot beside the index in use, checks it, and
// swaps it in with one atomic store: a search is scored wholly with the old index or
// wholly with the new. On any problem the index in use stays.
//
// What to serve: the imported object when it exists, else the seed: PREAPPROVALS_FILE or
// the demo data, which each replica builds into its own index (the same content, from the
// same file and key) and never writes to the store, so that scoring may read the store and
// nothing more: no right to write or purge what the import put there.
type snapshots struct {
	js   jetstream.JetStream
	keys *phone.Keyring // the seed is made with the current key; a snapshot with any is served
	seed snapshotstore.Source
	log  zerolog.Logger

	cur   atomic.Pointer[served]
	ready chan struct{} // closed once the first index is in place

	// The rest belongs to run's goroutine.
	refused  string // the content last refused: not downloaded again at every look
	noSeed   bool   // the seed export holds no record: not built again at every look
	warnedOn string // the served import whose deletion was last warned of
}

func newSnapshots(js jetstream.JetStream, keys *phone.Keyring, seed snapshotstore.Source, log zerolog.Logger) *snapshots {
	return &snapshots{js: js, keys: keys, seed: seed, log: log, ready: make(chan struct{})}
}

// index is the index to score with; nil until the first snapshot is loaded.
func (s *snapshots) index() *preapproval.Index {
	if c := s.cur.Load(); c != nil {
		return c.ix
	}
	return nil
}

// describe is the readiness of the pre-approvals: which snapshot is in force, how many
// entries it holds and how old it is.
func (s *snapshots) describe(context.Context) (string, error) {
	c := s.cur.Load()
	if c == nil {
		return "", errors.New("no pre-approval snapshot loaded yet")
	}
	return fmt.Sprintf("%s (content %s, key %s), %d entries, stored %s ago", c.name, c.content, c.ix.Key(), c.ix.Len(),
		time.Since(c.stored).Round(time.Second)), nil
}

// run follows the store until ctx ends. A read that fails (the broker away) is started
// again a second later; the index in use keeps answering meanwhile.
func (s *snapshots) run(ctx context.Context) error {
	for {
		err := s.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn().Err(err).Msg("reading the pre-approval store failed; starting again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (s *snapshots) follow(ctx context.Context) error {
	obs, err := snapshotstore.Open(ctx, s.js)
	if err != nil {
		return err
	}
	l := &loader{s: s, obs: obs, done: make(chan loaded, 1)}
	defer l.abandon()
	check := time.NewTicker(checkInterval)
	defer check.Stop()
	for {
		latest, err := s.look(ctx, obs)
		if err != nil {
			return err
		}
		if err := s.settle(ctx, obs, l, latest); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
		case res := <-l.done:
			l.busy = nil
			if err := s.finish(ctx, obs, res); err != nil {
				return err
			}
		}
	}
}

// checkInterval is how often the store is read for a new snapshot. It is read, not watched:
// a watch's consumer could be set to deliver anywhere, and scoring may make none
// (docs/security.md). A snapshot comes once a day; two seconds before it is loaded cost
// nothing, and the read is two small requests.
const checkInterval = 2 * time.Second

// look reads which snapshot the store holds now: the imported one, by its latest metadata.
// (A "seed" object an earlier release wrote is not read: the seed is built here.)
func (s *snapshots) look(ctx context.Context, obs *snapshotstore.Store) (map[string]*jetstream.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, checkInterval+bus.GetMsgTimeout)
	defer cancel()
	latest := map[string]*jetstream.ObjectInfo{}
	for _, name := range []string{contracts.PreapprovalsObject} {
		info, err := obs.GetInfo(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
		case err != nil:
			return nil, fmt.Errorf("read object store %s: %w", contracts.BucketPreapprovals, err)
		default:
			latest[name] = info
		}
	}
	return latest, nil
}

// loader runs one snapshot load at a time beside the reads of the store, so that a load overtaken by a
// newer version is abandoned at once: Put purges the chunks of the version it replaces,
// and a download of those would otherwise wait for loadTimeout. The reads go on
// meanwhile, so its buffer never fills during a long load.
type loader struct {
	s    *snapshots
	obs  *snapshotstore.Store
	busy *jetstream.ObjectInfo // the version being loaded, or nil
	stop context.CancelFunc
	done chan loaded
}

type loaded struct {
	want *jetstream.ObjectInfo // as the store was read
	ix   *preapproval.Index
	info *jetstream.ObjectInfo // as downloaded (nil if it never started)
	took time.Duration
	err  error
}

func (l *loader) start(ctx context.Context, want *jetstream.ObjectInfo) {
	lctx, stop := context.WithTimeout(ctx, loadTimeout)
	l.busy, l.stop = want, stop
	go func() {
		defer stop()
		defer tightenGC()()
		start := time.Now()
		ix, info, err := l.obs.LoadAny(lctx, want.Name, l.s.keys)
		l.done <- loaded{want: want, ix: ix, info: info, took: time.Since(start), err: err}
	}()
}

// abandon stops the load under way, if any, and waits for it to end.
func (l *loader) abandon() {
	if l.busy != nil {
		l.stop()
		<-l.done
		l.busy = nil
	}
}

// settle makes the index in use the one latest says to serve, or starts loading it.
func (s *snapshots) settle(ctx context.Context, obs *snapshotstore.Store, l *loader, latest map[string]*jetstream.ObjectInfo) error {
	want := latest[contracts.PreapprovalsObject]
	if l.busy != nil {
		if want != nil && want.Name == l.busy.Name && want.NUID == l.busy.NUID {
			return nil // already on its way
		}
		l.abandon() // overtaken
	}
	if want == nil {
		cur := s.cur.Load()
		switch {
		case cur == nil && !s.noSeed:
			return s.buildSeed(ctx)
		case cur != nil && cur.name != contracts.PreapprovalsSeedObject && s.warnedOn != cur.nuid:
			s.warnedOn = cur.nuid
			s.log.Warn().Str("serving", cur.name).Str("nuid", cur.nuid).
				Msg("the pre-approval store holds no snapshot any more; the index in use stays, and the next start serves the seed")
		}
		return nil
	}
	content := snapshotstore.ContentID(want)
	if cur := s.cur.Load(); cur != nil && cur.content == content {
		if cur.name != want.Name || cur.nuid != want.NUID { // the same content, stored again
			s.cur.Store(&served{ix: cur.ix, name: want.Name, nuid: want.NUID, content: content, stored: want.ModTime})
		}
		return nil
	}
	if content == s.refused {
		return nil
	}
	l.start(ctx, want)
	return nil
}

// finish acts on a load's outcome: swap, refuse, or give up this follow so that it starts
// again and retries.
func (s *snapshots) finish(ctx context.Context, obs *snapshotstore.Store, res loaded) error {
	err := res.err
	switch {
	case err == nil:
		info := res.info
		s.swap(&served{ix: res.ix, name: info.Name, nuid: info.NUID, content: snapshotstore.ContentID(info), stored: info.ModTime}, info.Size, res.took)
		return nil
	case snapshotstore.Refused(err):
		info := res.info
		if info == nil {
			info = res.want
		}
		s.refused = snapshotstore.ContentID(info)
		ev := s.log.Error().Err(err).Str("object", info.Name).Str("nuid", info.NUID).
			Str("key_fingerprint", info.Metadata[snapshotstore.MetaKey]).
			Str("our_key_fingerprint", s.keys.Current().ID())
		if cur := s.cur.Load(); cur != nil {
			ev = ev.Str("serving", cur.name).Str("serving_nuid", cur.nuid)
		}
		ev.Msg("pre-approval snapshot refused; the index in use stays")
		return nil
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil // deleted meanwhile; the next look sees it
	default:
		return fmt.Errorf("load pre-approval snapshot %s: %w", res.want.Name, err)
	}
}

func (s *snapshots) swap(next *served, size uint64, took time.Duration) {
	ix := next.ix
	ev := s.log.Info().Str("object", next.name).Str("nuid", next.nuid).Str("content", next.content).
		Int("entries", ix.Len()).Int("duplicates", ix.Duplicates()).Time("created", ix.Created()).
		Uint64("bytes", size).Dur("took", took)
	msg := "pre-approvals loaded"
	first := s.replace(next, func(prev *served) {
		ev = ev.Str("previous_nuid", prev.nuid).Int("previous_entries", prev.ix.Len())
		msg = "pre-approvals loaded, replacing the previous snapshot"
	})
	// The old index, if any, is garbage once the searches in hand are done with it, and so
	// is what the load read. Collect them and return the memory now rather than at the
	// scavenger's pace, so that a replica holds one index, not two, between daily swaps.
	debug.FreeOSMemory()
	ev.Msg(msg)
	if first {
		close(s.ready)
	}
}

// replace puts next in use and shows the one it replaces, if any, to describe. No
// reference to that one outlives this call, so that swap can collect it.
func (s *snapshots) replace(next *served, describe func(prev *served)) (first bool) {
	prev := s.cur.Swap(next)
	if prev == nil {
		return true
	}
	describe(prev)
	return false
}

// loadGCPercent is the garbage collector's target while a snapshot loads. A load holds two
// indexes at once (the one in use and the one being built) and reads the whole snapshot
// through buffers that are garbage as soon as they are parsed; at the default 100 the heap
// may grow to twice the two indexes before a collection. The indexes hold no pointers, so
// collecting more often costs little.
const loadGCPercent = 10

// gcTight counts the loads under way in the process (tests run several replicas in one),
// so that the last to end restores the target the first one found.
var gcTight struct {
	sync.Mutex
	loads int
	prev  int
}

// tightenGC lowers the collector's target for a load and returns what restores it.
func tightenGC() (restore func()) {
	gcTight.Lock()
	if gcTight.loads == 0 {
		gcTight.prev = debug.SetGCPercent(loadGCPercent)
	}
	gcTight.loads++
	gcTight.Unlock()
	return func() {
		gcTight.Lock()
		if gcTight.loads--; gcTight.loads == 0 {
			debug.SetGCPercent(gcTight.prev)
		}
		gcTight.Unlock()
	}
}

// buildSeed builds the seed export into the index in use, with the current key: what a
// replica serves while the store holds no import. It writes nothing to the store.
func (s *snapshots) buildSeed(ctx context.Context) error {
	// Bounded like a load: a build that never ends must not hold the follow for ever.
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	defer tightenGC()()
	start := time.Now()
	ix, res, err := snapshotstore.Build(ctx, s.seed, snapshotstore.Options{
		Hasher: s.keys.Current(),
		OnBadRow: func(e *preapproval.RowError) {
			s.log.Warn().Str("source", s.seed.Name).Int("line", e.Line).Str("reason", e.Reason).Msg("pre-approval row skipped")
		},
	})
	if errors.Is(err, snapshotstore.ErrNoRecords) {
		// Building again cannot help; the operator imports an export, and a look finds it.
		s.noSeed = true
		s.log.Error().Err(err).Str("source", s.seed.Name).Msg("no pre-approval seed to serve")
		return nil
	}
	if err != nil {
		return fmt.Errorf("build the pre-approval seed from %s: %w", s.seed.Name, err)
	}
	s.log.Info().Str("source", s.seed.Name).Int("records", res.Records).Int("bad_rows", res.BadRows).
		Msg("the pre-approval store holds no import: serving the seed")
	s.swap(&served{ix: ix, name: contracts.PreapprovalsSeedObject, content: res.Content, stored: time.Now()}, uint64(res.SourceBytes), time.Since(start))
	return nil
}

func demoSeed() snapshotstore.Source {
	return snapshotstore.BytesSource("demo_preapprovals.csv", demoPreapprovals)
}

// seedSource is the export that seeds an empty store: the file at path, or the demo data.
// The file is opened and its header read at start-up, so that a wrong PREAPPROVALS_FILE is
// found when it is deployed rather than on the day a store turns out empty.
func seedSource(path string) (snapshotstore.Source, error) {
	if path == "" {
		return demoSeed(), nil
	}
	src := snapshotstore.FileSource(path)
	f, err := src.Open()
	if err != nil {
		return src, fmt.Errorf("pre-approvals seed: %w", err)
	}
	defer f.Close()
	// The first row is read with a throwaway key and dropped: only the header and the
	// presence of a row are checked here; the seeding reports bad rows.
	h, err := phone.NewHasher(make([]byte, phone.MinKeyBytes))
	if err != nil {
		return src, err
	}
	var rowErr *preapproval.RowError
	_, err = preapproval.NewReader(f, h).Next()
	switch {
	case errors.Is(err, io.EOF):
		return src, fmt.Errorf("pre-approvals seed %s: no rows after the header", path)
	case err != nil && !errors.As(err, &rowErr):
		return src, fmt.Errorf("pre-approvals seed %s: %w", path, err)
	}
	return src, nil
}
