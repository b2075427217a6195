package contracts

import "time"

// Subjects, streams, consumers and buckets. Names follow NATS ADR-6: dot-separated tokens,
// the version in the subject so that old and new producers can run side by side.
const (
	// SubjectRequested carries LoanRequested: a search the gateway accepted.
	SubjectRequested = "loan.v1.requested"
	// SubjectScored carries Scored: the credit decision for a search.
	SubjectScored = "loan.v1.scored"
	// SubjectDeadLetter carries DeadLetter: a message no retry could process.
	SubjectDeadLetter = "loan.v1.deadletter"

	// StreamLoan holds the requested and scored messages. It is kept in memory: every message
	// on it can be derived again from the durable search record, so it costs no disk sync
	// (see the README's "durable writes" section).
	StreamLoan = "LOAN"
	// StreamDeadLetter keeps dead letters on disk for people to inspect.
	StreamDeadLetter = "LOAN_DLQ"

	// ConsumerScoring is the durable consumer that all scoring replicas share.
	ConsumerScoring = "scoring"
	// ConsumerOffers is the durable consumer that all offers replicas share.
	ConsumerOffers = "offers"

	// BucketSearches is the key-value bucket of search records, keyed by the lowercase
	// search_id. It is the system of record: the only durable state a search has.
	BucketSearches = "searches"
	// BucketGateway holds the gateway's own bookkeeping (the sweeper's checkpoint).
	BucketGateway = "gateway"
	// BucketCatalog holds the bank's product catalog, a JSON document whose format the
	// offers service defines, under CatalogKey. Every offers replica watches it, so a catalog
	// put there is priced with at once and without a restart. It keeps a few revisions, so
	// that earlier catalogs can be read back and put again.
	BucketCatalog = "catalog"
	// CatalogKey is the key of the catalog in BucketCatalog.
	CatalogKey = "current"
)

// Stages name the steps that publish a message; with the search id they make the
// Nats-Msg-Id that JetStream de-duplicates on.
const (
	StageRequested = "requested"
	StageScored    = "scored"
)

// MsgID is the de-duplication id of the message that stage publishes for a search.
func MsgID(searchID, stage string) string { return searchID + "." + stage }

// Redelivery policy shared by the two work consumers. JetStream redelivers on its own; our
// code never loops. With BackOff set, the server waits BackOff[n-1] for the ack of delivery
// n, so BackOff[0] is the time a crashed replica's message waits before another replica
// gets it: short enough to finish well within the default 10 s search deadline, long
// enough that a slow handler is not handed to a second replica while it still works.
var (
	AckWait    = 5 * time.Second
	MaxDeliver = 5
	BackOff    = []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second}
	// DuplicateWindow must outlast the longest redelivery, sum(BackOff) = 65 s, so that a
	// publish repeated by a redelivered message is still recognised as a duplicate.
	DuplicateWindow = 2 * time.Minute
)

// HandlerTimeout bounds one attempt at a message, below BackOff[0] so that an attempt ends
// before the server hands the message to another replica.
const HandlerTimeout = 4 * time.Second

// The bank's pre-approvals, as snapshots in a JetStream object store.
const (
	// BucketPreapprovals is the JetStream object store (file storage) of the bank's
	// pre-approvals, each object one snapshot in the format of
	// services/scoring/preapproval. Phones in it are keyed hashes, never raw numbers.
	BucketPreapprovals = "preapprovals"
	// PreapprovalsObject is the snapshot the import command (cmd/preapprovals) writes.
	// Every import replaces it as a whole; scoring serves it whenever it exists.
	PreapprovalsObject = "current"
	// PreapprovalsSeedObject is the snapshot a scoring replica writes into a store that
	// holds none (from its PREAPPROVALS_FILE or the built-in demo data), so that a fresh
	// system works with no manual step. Scoring serves it only while PreapprovalsObject
	// does not exist, and only scoring writes it: a seed never overwrites an import.
	PreapprovalsSeedObject = "seed"
)
