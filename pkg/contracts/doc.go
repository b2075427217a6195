// Package contracts owns everything the services agree on: the messages they exchange over
// NATS JetStream, the search record they keep in the key-value bucket, and the names of the
// subjects, streams, consumers and buckets those live in. Nothing here knows about NATS or
// HTTP; the types are plain data with JSON encodings that are versioned in the subject (a
// breaking change is a new subject, loan.v2.…) and pinned by golden files in testdata/.
//
// Constructors (NewLoanRequested, …) check the invariants a producer must keep; the Decode
// functions read what came off the wire and check the same invariants, so a consumer never
// works on a message that a correct producer could not have sent.
package contracts
