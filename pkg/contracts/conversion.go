package contracts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/money"
)

// Conversions: contracts signed after a click on a proposal link, reported back to Yandex.
const (
	// BucketConversions is the key-value bucket of conversions (file storage), keyed by
	// ConversionKey. A key is created once, so a conversion is recorded once per search and
	// offer however often the bank's application system reports it; the record then moves
	// from queued to delivered (or failed) as the delivery worker sends it to Yandex.
	BucketConversions = "conversions"
	// StreamConversions is the stream behind BucketConversions (a KV bucket is a stream).
	StreamConversions = "KV_" + BucketConversions
	// SubjectConversions is every conversion record's subject in that stream.
	SubjectConversions = "$KV." + BucketConversions + ".>"
	// ConsumerConversionsDelivery is the durable consumer every conversions replica shares:
	// it sees each record revision, and delivers the queued ones.
	ConsumerConversionsDelivery = "conversions-delivery"
)

// ConversionState is where a conversion stands.
type ConversionState string

const (
	// ConversionQueued is recorded and not yet confirmed by Yandex.
	ConversionQueued ConversionState = "queued"
	// ConversionDelivered was accepted by Yandex's endpoint.
	ConversionDelivered ConversionState = "delivered"
	// ConversionFailed was refused by Yandex for good (a 4xx other than 429): a dead letter
	// kept with Yandex's answer for people to look at and, once fixed, queue again.
	ConversionFailed ConversionState = "failed"
	// ConversionRefused is a report whose offer could not be established: its link's
	// reference was sealed with a key no longer held, was not ours, or the contract came
	// after the reporting window. Never sent (Yandex could not be told which offer it
	// followed); kept with the reason and the reference as reported, for people and an
	// alert, so that no report is dropped unseen.
	ConversionRefused ConversionState = "refused"
)

// Conversion is a signed contract that followed an offer of a search: what the bank's
// application system reported, what the token said was offered, and how delivery went. It
// holds no personal data: ids, dates and figures.
type Conversion struct {
	// ID is the conversion's stable id, its key: the lowercase search id and the offer, the
	// pair Yandex recognises a repeat by (ConversionKey).
	ID string `json:"id"`
	// SearchID is the search's id as Yandex spelled it: sent back as request_id (spec §9).
	SearchID    string        `json:"search_id"`
	Offer       string        `json:"offer"` // the catalog's product id
	ProductType ProductType   `json:"product_type"`
	Decision    OfferDecision `json:"decision"`
	// ContractDate is the day the contract was signed (YYYY-MM-DD, Moscow).
	ContractDate       string       `json:"contract_date"`
	Amount             money.Amount `json:"amount"`
	Term               *int         `json:"term,omitempty"` // months; loans only
	AdditionalServices bool         `json:"additional_services"`
	// Offered is what the token said was offered, kept so that the check can be repeated.
	Offered    OfferedRanges   `json:"offered"`
	ReportedAt time.Time       `json:"reported_at"`
	State      ConversionState `json:"state"`
	// Attempts counts sends to Yandex; LastError is the last failure, for a failed one
	// Yandex's status and answer.
	Attempts    int        `json:"attempts,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	FailedAt    *time.Time `json:"failed_at,omitempty"`
	// A refused report's reason code and the reference it named its offer by (which reveals
	// nothing without the key).
	Reason string `json:"reason,omitempty"`
	Ref    string `json:"ref,omitempty"`
}

// OfferedRanges are the ranges an offer was made with.
type OfferedRanges struct {
	Amount AmountRange `json:"amount"`
	Term   *TermRange  `json:"term,omitempty"`
	Rate   RateRange   `json:"rate"`
}

var offerIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// ValidOfferID reports whether offer can be a catalog product id.
func ValidOfferID(offer string) bool { return offerIDPattern.MatchString(offer) }

// ConversionKey is the key of search searchID's conversion of offer: the lowercase search
// id and the product id, which KV keys and Yandex's ids both allow as they are.
func ConversionKey(searchID, offer string) (string, error) {
	id := strings.ToLower(searchID)
	if !searchIDPattern.MatchString(id) {
		return "", fmt.Errorf("%w: search_id %q is not a UUID", ErrInvalid, searchID)
	}
	if !ValidOfferID(offer) {
		return "", fmt.Errorf("%w: offer %q is not a product id", ErrInvalid, offer)
	}
	return id + "." + offer, nil
}

// SameReport reports whether two conversions report the same contract: what the bank's
// system said, not how delivery went.
func (c Conversion) SameReport(o Conversion) bool {
	return c.ID == o.ID && c.ContractDate == o.ContractDate && c.Amount == o.Amount &&
		(c.Term == nil) == (o.Term == nil) && (c.Term == nil || *c.Term == *o.Term) &&
		c.AdditionalServices == o.AdditionalServices
}

// Undelivered reports whether Yandex has yet to confirm the conversion (a refused report
// is never sent: it is not owed to Yandex).
func (c Conversion) Undelivered() bool {
	return c.State == ConversionQueued || c.State == ConversionFailed
}

// RefusedKey is the key of a refused report: the report, hashed (one report sent again is one
// record, however often it comes).
func RefusedKey(report string) string {
	sum := sha256.Sum256([]byte(report))
	return "refused." + hex.EncodeToString(sum[:16])
}

// EncodeConversion writes a record for the bucket.
func EncodeConversion(c *Conversion) ([]byte, error) { return json.Marshal(c) }

// DecodeConversion reads a record from the bucket.
func DecodeConversion(data []byte) (*Conversion, error) {
	var c Conversion
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: decode conversion: %v", ErrInvalid, err)
	}
	switch c.State {
	case ConversionQueued, ConversionDelivered, ConversionFailed:
	case ConversionRefused: // its offer could not be established: it may name none
		if c.ID == "" || c.Reason == "" {
			return nil, errors.Join(ErrInvalid, errors.New("refused conversion without its id or reason"))
		}
		return &c, nil
	default:
		return nil, fmt.Errorf("%w: conversion %s: state %q", ErrInvalid, c.ID, c.State)
	}
	if c.ID == "" || c.SearchID == "" || c.Offer == "" {
		return nil, errors.Join(ErrInvalid, errors.New("conversion without its ids"))
	}
	return &c, nil
}
