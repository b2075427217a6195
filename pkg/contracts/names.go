package contracts

import "strconv"

// Subjects, streams, consumers and buckets. Names follow NATS ADR-6: dot-separated tokens,
// the version in the subject so that old and new producers can run side by side.
const (
	// SubjectRequested carries LoanRequested: a search the gateway accepted.
	SubjectRequested = "loan.v1.requested"
	// SubjectScored carries Scored: the credit decision for a search.
	SubjectScored = "loan.v1.scored"
	// SubjectDeadLetter carries DeadLetter: a message no retry could process.
	SubjectDeadLetter = "loan.v1.deadletter"

	// StreamLoan holds the requested and scored messages that are still being worked on (a
	// work queue: a message leaves it when its consumer acknowledges it). It is kept in
	// memory: a search answered 200 has a durable record from which its messages can be
	// derived again, so a disk sync here would buy nothing (see the README's "durable writes").
	StreamLoan = "LOAN"
	// StreamLoanAdvisories keeps JetStream's advisories of LOAN messages that reached their
	// delivery limit, so that their searches are finished even when the replica holding the
	// last delivery died with it.
	StreamLoanAdvisories = "LOAN_ADVISORIES"
	// StreamDeadLetter keeps dead letters on disk for people to inspect.
	StreamDeadLetter = "LOAN_DLQ"

	// ConsumerScoring is the durable consumer that all scoring replicas share.
	ConsumerScoring = "scoring"
	// ConsumerOffers is the durable consumer that all offers replicas share.
	ConsumerOffers = "offers"

	// BucketSearches is the key-value bucket of search records, keyed by the lowercase
	// search_id. It is the system of record: the only durable state a search has.
	BucketSearches = "searches"
	// SubjectSearchWritten is where the searches bucket's stream republishes each write once
	// stored, under the key ("searches.v1.written.<key>", the record as written, with the
	// stream's Nats-Sequence header): what the gateway's watch follows without a consumer of
	// its own. Only the stream publishes it and only the gateway reads it.
	SubjectSearchWritten = "searches.v1.written"
	// BucketGateway holds the gateway's own bookkeeping (the sweeper's checkpoint).
	BucketGateway = "gateway"
	// BucketCatalog holds the bank's product catalog, a JSON document whose format the
	// offers service defines, under CatalogKey. Every offers replica follows it, so a catalog
	// put there is priced with at once and without a restart. It keeps a few revisions, so
	// that earlier catalogs can be read back, put again, and priced with again to replay a
	// past search.
	BucketCatalog = "catalog"
	// CatalogKey is the key of the catalog in BucketCatalog.
	CatalogKey = "current"
	// BucketPolicy holds the bank's credit policy (services/scoring/policy) under PolicyKey,
	// followed by every scoring replica the way the catalog is.
	BucketPolicy = "policy"
	PolicyKey    = "current"
	// BucketCeilings holds the Bank of Russia's ПСК ceilings by category
	// (services/offers/ceiling) under CeilingsKey, followed by every offers replica.
	BucketCeilings = "ceilings"
	CeilingsKey    = "current"
	// StreamAudit keeps every finished search's decision, without personal data beyond the
	// keyed phone hash, for AUDIT_RETENTION (a year): written in batches on SubjectAudit.
	StreamAudit = "AUDIT"
	// SubjectAudit carries one batch of decisions (AuditBatch).
	SubjectAudit = "audit.v1.decisions"
	// ConsumerAudit is the durable consumer of the searches bucket that writes the batches.
	ConsumerAudit = "audit"
)

// RequestMsgID is the de-duplication id (Nats-Msg-Id) of a search's request message. Every
// POST under one search id shares attempt 0: a retry never starts a second pipeline while
// the first is in flight, and a different request reusing the id within the window is
// recognised as such (the gateway then answers it from the first one's record: 422). The
// sweeper's n-th re-send of a pending search uses attempt n, so that a message JetStream
// still remembers but no longer holds (or that waits in a long back-off) is processed again
// at once, which is harmless because a search is finished only once.
func RequestMsgID(r LoanRequested, attempt int) string {
	if attempt > 0 {
		return r.SearchID + "." + strconv.Itoa(attempt)
	}
	return r.SearchID
}

// ScoredMsgID is the de-duplication id of the verdict scoring publishes for the request
// message whose id is requestMsgID: a redelivered request yields the same verdict id.
func ScoredMsgID(requestMsgID string) string { return requestMsgID + ".scored" }

// The bank's pre-approvals, as snapshots in a JetStream object store.
const (
	// BucketPreapprovals is the JetStream object store (file storage) of the bank's
	// pre-approvals, each object one snapshot in the format of
	// services/scoring/preapproval. Phones in it are keyed hashes, never raw numbers.
	BucketPreapprovals = "preapprovals"
	// PreapprovalsObject is the snapshot the import command (cmd/yactl) writes.
	// Every import replaces it as a whole; scoring serves it whenever it exists.
	PreapprovalsObject = "current"
	// PreapprovalsSeedObject names the seed a scoring replica serves while the store holds
	// no PreapprovalsObject: its PREAPPROVALS_FILE or the built-in demo data, built in its
	// own memory, so that a fresh system works with no manual step and scoring writes
	// nothing to the store. (Earlier releases wrote it to the store under this name; such
	// an object is left alone.)
	PreapprovalsSeedObject = "seed"
)
