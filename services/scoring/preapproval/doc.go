// Package preapproval reads the bank's nightly export of pre-approved offers, keeps it as a
// compact in-memory index keyed by the phone's keyed hash, and carries it from the import to
// the scoring replicas as a versioned binary snapshot. A phone number is hashed as soon as
// its row is read: no Record, error, index or snapshot ever holds it raw.
//
// # The export (CSV)
//
// UTF-8 (a leading byte-order mark is ignored), comma-separated, RFC 4180 quoting, one offer
// per row, CRLF or LF line ends:
//
//	phone,product_type,decision,limit,grade,valid_until
//	+7 916 123-45-67,loan,pre_approved,1000000,A,2026-12-31
//	89161234567,credit_card,full_approved,150000.50,B,2026-12-31
//
// The first line names the six columns, in any order, each exactly once.
//
//   - phone: a Russian number in any form phone.Parse accepts (9161234567, 8 (916) 123-45-67,
//     +79161234567, …).
//   - product_type: loan or credit_card.
//   - decision: pre_approved or full_approved (the spec's data[].decision).
//   - limit: the approved limit in roubles, above zero, at most two decimals.
//   - grade: the risk grade, 1 to 8 of A-Z a-z 0-9 + - _ ; case matters, since the credit
//     policy names the same tokens.
//   - valid_until: YYYY-MM-DD, the last day the offer stands, in Moscow time (UTC+3; Russia
//     has kept no daylight saving since 2014, so a fixed offset needs no time-zone database).
//     The offer is valid through 23:59:59 that day and expired from 00:00 the next.
//
// Spaces around a field are ignored; blank lines are skipped but still counted. When one phone
// and product appear on several rows, the later row wins: the bank may append corrections to
// an export, and only the index, not the streaming reader, can see both rows.
//
// A bad row is reported as a *RowError with its physical line (the header is line 1) and a
// reason that names the field, never its content: a shifted column could put a phone number
// in any field. Reading goes on after it. A broken header, an I/O error, or a record longer
// than MaxRecordBytes (typically an unclosed quote swallowing the rest of the file) stops
// the reader, because memory must not grow with the file.
//
// # The snapshot (binary, version 1)
//
// The import writes one snapshot per export; scoring replicas load it into an Index. All
// integers are big-endian.
//
//	header   "YCPREAPP" | version uint16 = 1 | created int64 (Unix ms) | key fingerprint [8]byte
//	record   0x01 | hash [32]byte | flags uint8 | limit int64 (kopecks) |
//	         valid_until int32 (days since 1970-01-01) | grade length uint8 | grade
//	trailer  0x00 | record count uint64 | CRC-32C (Castagnoli) uint32 of every byte before it
//
// Flags: bit 0 set for credit_card (else loan), bit 1 set for full_approved (else
// pre_approved); other bits are zero. The count and the checksum sit in a trailer because a
// streaming writer learns them only at the end. A snapshot that is truncated, has a bad
// checksum, an unknown record or trailing bytes is refused as a whole (ErrCorrupt); one of a
// newer version is refused with ErrVersion. The checksum detects damage, not forgery: the
// object store's access control is what keeps the file honest.
//
// The key fingerprint (see KeyFingerprint) lets scoring refuse a snapshot whose phones were
// hashed with another key: every look-up would miss, silently rejecting every client.
package preapproval
