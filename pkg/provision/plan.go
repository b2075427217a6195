// Package provision is the one description of what the system keeps in JetStream (every
// stream, bucket, object store and durable consumer, with its settings), and the two things
// done with it: Apply, the administrator's act (`yactl provision`, run by the provisioner
// with the one NATS user allowed to change streams, and the standalone, which is its own
// administrator), creating what is missing and bringing settings up to date; and Check, the
// services' act, which only reads and says what is missing or differs.
//
// No service may create or change a stream: a stream's configuration can name other
// streams (sources, a mirror, republish), so the right to change one is the right to read
// and write all of them (deploy/k8s/base/nats/users.conf, docs/security.md).
package provision

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// Settings are the operators' choices the plan depends on. Each is read from the same
// variable by the provisioner and by the service it concerns; a zero value is one a service
// does not know (the searches' retention, for scoring), which Check then does not compare.
type Settings struct {
	Replicas             int           // NATS_REPLICAS
	SearchRetention      time.Duration // SEARCH_RETENTION
	ConversionsRetention time.Duration // CONVERSIONS_RETENTION
	AuditRetention       time.Duration // AUDIT_RETENTION
	DeliveryAckWait      time.Duration // DELIVERY_ACK_WAIT
	// The bounds of the file streams that grow with the traffic, in bytes (docs/operating.md,
	// "Storage", sizes them from the bytes a search keeps).
	SearchMaxBytes       int64 // SEARCH_MAX_BYTES
	AuditMaxBytes        int64 // AUDIT_MAX_BYTES
	ConversionsMaxBytes  int64 // CONVERSIONS_MAX_BYTES
	PreapprovalsMaxBytes int64 // PREAPPROVALS_MAX_BYTES
}

// ReadSettings reads every setting of the plan: the provisioner's configuration.
func ReadSettings(r *config.Reader, replicas int) Settings {
	return Settings{
		Replicas:             replicas,
		SearchRetention:      ReadSearchRetention(r),
		ConversionsRetention: ReadConversionsRetention(r),
		AuditRetention:       ReadAuditRetention(r),
		DeliveryAckWait:      ReadDeliveryAckWait(r),
		SearchMaxBytes:       r.Bytes("SEARCH_MAX_BYTES", DefaultSearchMaxBytes, minMaxBytes, maxMaxBytes),
		AuditMaxBytes:        r.Bytes("AUDIT_MAX_BYTES", DefaultAuditMaxBytes, minMaxBytes, maxMaxBytes),
		ConversionsMaxBytes:  r.Bytes("CONVERSIONS_MAX_BYTES", DefaultConversionsMaxBytes, minMaxBytes, maxMaxBytes),
		PreapprovalsMaxBytes: r.Bytes("PREAPPROVALS_MAX_BYTES", DefaultPreapprovalsMaxBytes, minMaxBytes, maxMaxBytes),
	}
}

// The bounds of the file streams by default, a laptop's (the standalone, docker compose):
// with the fixed ones (FileBytes) 1.75GiB, which a JetStream server reserves at once. The
// manifests set a cluster's (deploy/k8s/base/config/plan-storage.env); docs/operating.md,
// "Storage", sizes them from the bytes a search keeps (about 2.9KB in its bucket: 512MiB
// hold a day of 2 searches a second).
const (
	DefaultSearchMaxBytes       = 512 << 20
	DefaultAuditMaxBytes        = 512 << 20
	DefaultConversionsMaxBytes  = 64 << 20
	DefaultPreapprovalsMaxBytes = 256 << 20
	// minMaxBytes leaves the tenth the gateway keeps for searches in flight (capacity.ShedAt)
	// room for thousands of them; maxMaxBytes is a volume no one provisions by mistake.
	minMaxBytes = 64 << 20
	maxMaxBytes = 64 << 40
)

// The bounds of the file streams that do not grow with the traffic (the dead letters':
// bus.DeadLetterStream).
const (
	// A document's bucket: DocumentHistory revisions of a document of up to the broker's
	// 1MiB max_payload (they are kilobytes).
	DocumentMaxBytes = DocumentHistory << 20
	GatewayMaxBytes  = 1 << 20 // one checkpoint
)

// FileBytes is what the plan's file streams may hold together with these settings: what
// every NATS server's max_file_store must allow, since each holds a replica of every stream.
func FileBytes(s Settings) int64 {
	var n int64
	for _, it := range Plan(s) {
		switch {
		case it.Kind == Bucket && it.Bucket.Storage == jetstream.FileStorage:
			n += it.Bucket.MaxBytes
		case it.Kind == Objects && it.Objects.Storage == jetstream.FileStorage:
			n += it.Objects.MaxBytes
		case it.Kind == Stream && it.Stream.Storage == jetstream.FileStorage:
			n += it.Stream.MaxBytes
		}
	}
	return n
}

// ReadSearchRetention reads SEARCH_RETENTION: how long a search is kept.
func ReadSearchRetention(r *config.Reader) time.Duration {
	return r.Duration("SEARCH_RETENTION", 24*time.Hour, time.Minute, 90*24*time.Hour)
}

// ReadConversionsRetention reads CONVERSIONS_RETENTION: how long a conversion is kept,
// delivered or not.
func ReadConversionsRetention(r *config.Reader) time.Duration {
	return r.Duration("CONVERSIONS_RETENTION", 366*24*time.Hour, 30*24*time.Hour, 10*366*24*time.Hour)
}

// DefaultAuditRetention is how long decisions are kept: a year and a day, so that a
// complaint made on a search's anniversary still finds it.
const DefaultAuditRetention = 366 * 24 * time.Hour

// ReadAuditRetention reads AUDIT_RETENTION: how long the audit trail keeps a decision.
func ReadAuditRetention(r *config.Reader) time.Duration {
	return r.Duration("AUDIT_RETENTION", DefaultAuditRetention, 24*time.Hour, 10*366*24*time.Hour)
}

// ReadDeliveryAckWait reads DELIVERY_ACK_WAIT: how long a conversion taken by a replica
// that died waits before another replica gets it.
func ReadDeliveryAckWait(r *config.Reader) time.Duration {
	return r.Duration("DELIVERY_ACK_WAIT", 2*time.Minute, time.Second, time.Hour)
}

// Kind is what an Item is.
type Kind int

// The kinds of item.
const (
	Stream Kind = iota
	Bucket
	Objects
	Consumer
)

// Item is one thing provisioned.
type Item struct {
	Kind     Kind
	Stream   jetstream.StreamConfig      // Kind Stream
	Bucket   jetstream.KeyValueConfig    // Kind Bucket
	Objects  jetstream.ObjectStoreConfig // Kind Objects
	On       string                      // Kind Consumer: the stream it reads
	Consumer jetstream.ConsumerConfig    // Kind Consumer
	// LeaderReads is a bucket read from its stream's leader only (bus.BindLeaderRead).
	LeaderReads bool
	// NeverShorten is a stream whose age limit Apply never lowers: shortening the audit
	// trail or the conversions deletes them at once, and is an administrator's act of its
	// own (docs/operating.md).
	NeverShorten bool
	// ageKnown says whether the age limit was known when the item was made (a zero
	// Settings field is not compared by Check).
	ageKnown bool
}

// Name names the item for people and logs: "stream LOAN", "bucket searches",
// "object store preapprovals", "consumer LOAN/scoring".
func (it Item) Name() string {
	switch it.Kind {
	case Bucket:
		return "bucket " + it.Bucket.Bucket
	case Objects:
		return "object store " + it.Objects.Bucket
	case Consumer:
		return "consumer " + it.On + "/" + it.Consumer.Durable
	}
	return "stream " + it.Stream.Name
}

// StreamName is the stream the item is, or is kept in.
func (it Item) StreamName() string {
	switch it.Kind {
	case Bucket:
		return "KV_" + it.Bucket.Bucket
	case Objects:
		return "OBJ_" + it.Objects.Bucket
	case Consumer:
		return it.On
	}
	return it.Stream.Name
}

func stream(cfg jetstream.StreamConfig) Item { return Item{Kind: Stream, Stream: cfg, ageKnown: true} }

func consumer(on string, cfg jetstream.ConsumerConfig) Item {
	return Item{Kind: Consumer, On: on, Consumer: cfg, ageKnown: true}
}

// The streams of the work in flight.
func loan(s Settings) []Item {
	return []Item{stream(bus.LoanStream(s.Replicas)), stream(bus.AdvisoryStream(s.Replicas)), stream(bus.DeadLetterStream(s.Replicas))}
}

// Searches is the searches bucket, read from its leader (a lagging replica would show a
// done search as pending again, which the spec forbids).
func Searches(s Settings) Item {
	b := search.BucketConfig(s.SearchRetention, s.Replicas)
	b.MaxBytes = s.SearchMaxBytes
	return Item{Kind: Bucket, Bucket: b, LeaderReads: true, ageKnown: s.SearchRetention > 0}
}

// GatewayBucket is the gateway's bookkeeping (the sweeper's checkpoint).
func GatewayBucket(s Settings) Item {
	return Item{Kind: Bucket, Bucket: jetstream.KeyValueConfig{
		Bucket: contracts.BucketGateway, Description: "gateway bookkeeping", History: 1,
		Storage: jetstream.FileStorage, Replicas: s.Replicas, MaxBytes: GatewayMaxBytes,
	}, ageKnown: true}
}

// DocumentHistory is how many revisions a document's bucket keeps: the most JetStream
// allows, so that a past decision can be replayed with the very revision that made it for
// as long as possible. The documents are small (kilobytes) and change rarely.
const DocumentHistory = jetstream.KeyValueMaxHistory

// document is the bucket of one of the bank's documents: on disk, because the document is
// the bank's decision and must outlive a broker restart.
func document(bucket, description string, s Settings) Item {
	return Item{Kind: Bucket, Bucket: jetstream.KeyValueConfig{
		Bucket: bucket, Description: description, History: DocumentHistory,
		Storage: jetstream.FileStorage, Replicas: s.Replicas, MaxBytes: DocumentMaxBytes,
	}, ageKnown: true}
}

// Catalog, Ceilings and Policy are the buckets of the bank's documents.
func Catalog(s Settings) Item {
	return document(contracts.BucketCatalog, "the offers service's product catalog under key "+contracts.CatalogKey, s)
}

func Ceilings(s Settings) Item {
	return document(contracts.BucketCeilings, "the Bank of Russia's ПСК ceilings by category under key "+contracts.CeilingsKey, s)
}

func Policy(s Settings) Item {
	return document(contracts.BucketPolicy, "the scoring service's credit policy under key "+contracts.PolicyKey, s)
}

// Preapprovals is the object store of pre-approval snapshots: on disk, since it is the
// bank's data and must outlive a broker restart, with no age limit (a replaced object's
// chunks are purged by Put, after the new ones are written: the bound holds two snapshots).
func Preapprovals(s Settings) Item {
	return Item{Kind: Objects, Objects: jetstream.ObjectStoreConfig{
		Bucket:      contracts.BucketPreapprovals,
		Description: "pre-approval snapshots: " + contracts.PreapprovalsObject + " (imported)",
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		MaxBytes:    s.PreapprovalsMaxBytes,
	}, ageKnown: true}
}

// Conversions is the conversions bucket: on disk, replicated, one revision per key (the
// delivery consumer sees every revision as it is written), kept for its retention, read
// from its leader (a lagging replica's older revision would make the worker skip a
// conversion still to send, or a repeat look like a new report). Never shortened by a pass:
// the contracts it holds are what the bank reports to Yandex.
func Conversions(s Settings) Item {
	return Item{Kind: Bucket, Bucket: jetstream.KeyValueConfig{
		Bucket:      contracts.BucketConversions,
		Description: "Contracts signed after a Yandex offer, and their delivery to Yandex",
		History:     1,
		TTL:         s.ConversionsRetention,
		MaxBytes:    s.ConversionsMaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}, LeaderReads: true, NeverShorten: true, ageKnown: s.ConversionsRetention > 0}
}

// ConversionsDeliveryMaxAckPending covers four batches of the largest DELIVERY_BATCH.
const ConversionsDeliveryMaxAckPending = 4 * 1000

// ConversionsDelivery is the delivery consumer: every revision, from the first,
// acknowledged one by one, redelivered without limit (a conversion is never given up on by
// the broker; only Yandex's refusal ends its delivery).
func ConversionsDelivery(s Settings) Item {
	it := consumer(contracts.StreamConversions, jetstream.ConsumerConfig{
		Durable:       contracts.ConsumerConversionsDelivery,
		Description:   "Delivers queued conversions to Yandex",
		FilterSubject: contracts.SubjectConversions,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.DeliveryAckWait,
		MaxDeliver:    -1,
		MaxAckPending: ConversionsDeliveryMaxAckPending,
	})
	it.ageKnown = s.DeliveryAckWait > 0
	return it
}

// AuditMaxBatch is the most searches one audit message holds.
const AuditMaxBatch = 500

// Audit is the AUDIT stream: on disk, replicated, kept for its retention, and never
// emptied by anyone: the server refuses to delete a message or purge the stream, and
// refuses to turn either back on. Full, it refuses new batches (discard new) rather than
// drop the oldest decisions: a flood of searches must not erase the trail. The writer then
// waits, the searches bucket holding what is still to be written for its retention, and
// the StoreFilling alert has fired long before.
func Audit(s Settings) Item {
	return Item{Kind: Stream, Stream: jetstream.StreamConfig{
		Name:        contracts.StreamAudit,
		Description: "finished searches' decisions, in batches, kept for the audit trail",
		Subjects:    []string{contracts.SubjectAudit},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      s.AuditRetention,
		MaxBytes:    s.AuditMaxBytes,
		Duplicates:  2 * time.Minute,
		Replicas:    s.Replicas,
		// Not compressed: the bound (max_bytes, and each server's max_file_store) counts a
		// message's bytes before compression, so compressing fits no more decisions in the
		// room provisioned for them; and each new block made nats-server read the last one
		// back and write it again compressed, a read of tens of milliseconds that held the
		// searches' synced writes behind it (docs/performance.md).
		Compression: jetstream.NoCompression,
		DenyDelete:  true,
		DenyPurge:   true,
	}, NeverShorten: true, ageKnown: s.AuditRetention > 0}
}

// AuditConsumer reads every record of the searches bucket, from its oldest: the first
// writer to start also keeps what the bucket held before the trail existed.
func AuditConsumer() Item {
	return consumer("KV_"+contracts.BucketSearches, jetstream.ConsumerConfig{
		Durable:       contracts.ConsumerAudit,
		Description:   "writes finished searches to the AUDIT stream",
		FilterSubject: "$KV." + contracts.BucketSearches + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 4 * AuditMaxBatch,
	})
}

// Work is a service's work consumer on the LOAN stream and the consumer of its
// max-deliveries advisories.
func Work(name, subject string) []Item {
	return []Item{
		consumer(contracts.StreamLoan, bus.WorkConsumer(name, subject, bus.DefaultRetry())),
		consumer(contracts.StreamLoanAdvisories, bus.AdvisoryConsumer(name)),
	}
}

// Gateway is what the gateway uses: it publishes to LOAN, and keeps the searches and its
// bookkeeping.
func Gateway(s Settings) []Item {
	return []Item{stream(bus.LoanStream(s.Replicas)), Searches(s), GatewayBucket(s)}
}

// Scoring is what scoring uses.
func Scoring(s Settings) []Item {
	items := append(loan(s), Searches(s), Preapprovals(s), Policy(s))
	return append(items, Work(contracts.ConsumerScoring, contracts.SubjectRequested)...)
}

// Offers is what offers uses, its audit trail writer included.
func Offers(s Settings) []Item {
	items := append(loan(s), Searches(s), Catalog(s), Ceilings(s), Audit(s), AuditConsumer())
	return append(items, Work(contracts.ConsumerOffers, contracts.SubjectScored)...)
}

// ConversionsService is what the conversions service uses.
func ConversionsService(s Settings) []Item {
	return []Item{Searches(s), Conversions(s), ConversionsDelivery(s)}
}

// Plan is everything, each item once, in the order Apply makes them: streams before the
// consumers on them.
func Plan(s Settings) []Item {
	var out []Item
	seen := map[string]bool{}
	for _, items := range [][]Item{Gateway(s), Scoring(s), Offers(s), ConversionsService(s)} {
		for _, it := range items {
			if !seen[it.Name()] {
				seen[it.Name()] = true
				out = append(out, it)
			}
		}
	}
	// Consumers last: their streams first.
	var streams, consumers []Item
	for _, it := range out {
		if it.Kind == Consumer {
			consumers = append(consumers, it)
		} else {
			streams = append(streams, it)
		}
	}
	return append(streams, consumers...)
}

// Defaults are the settings with every variable unset.
func Defaults(replicas int) Settings {
	return ReadSettings(config.NewReader(func(string) string { return "" }), replicas)
}

// Config is the provisioner's configuration (yactl provision).
type Config struct {
	NATS     config.NATS
	Settings Settings
	// HealthAddr (HEALTH_ADDR) serves /healthz and /readyz while it watches; empty: none.
	HealthAddr string
	Log        telemetry.LogConfig
}

// LoadConfig reads and checks the provisioner's variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{NATS: config.ReadNATS(r), HealthAddr: r.Addr("HEALTH_ADDR", ""), Log: telemetry.ReadLogConfig(r)}
	c.Settings = ReadSettings(r, c.NATS.Replicas)
	return c, r.Err()
}
