// Package preapprovalcmd is yactl preapprovals: it loads the bank's nightly pre-approval export into the JetStream
// object store that every scoring replica serves from.
//
//	yactl preapprovals import FILE
//	yactl preapprovals generate [-seed S] [-bad-every K] [-all-products] N FILE
//
// import reads FILE (the CSV format is documented in services/scoring/preapproval), hashes
// every phone with PHONE_HASH_KEY, and stores the result as one snapshot, the object
// contracts.PreapprovalsObject of the object store contracts.BucketPreapprovals (which the
// provisioner makes; NATS user importer). It streams: memory stays flat whatever the size of FILE. Each bad row is
// reported on standard error with its line and reason, never its content, and skipped.
// Importing the same content again writes nothing; a newer export replaces the old one as a
// whole. Scoring replicas swap to the new snapshot on their own, without a restart.
//
// generate writes a plausible export of N rows to FILE ("-": standard output), for
// benchmarks and demos.
//
// Environment (import):
//
//	PHONE_HASH_KEY        the gateway's phone-hashing key, at least 32 bytes (required)
//	NATS_URL, NATS_USER, NATS_PASSWORD, NATS_CONNECT_TIMEOUT
//	                      as for the services
//	NATS_REPLICAS         replicas of the object store, if this creates it (default 1)
//	PROGRESS_INTERVAL     on a terminal progress is redrawn in place; elsewhere a line is
//	                      written this often (default 10s; 0 for none)
package preapprovalcmd
