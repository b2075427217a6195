package search

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/demobank/yacredits/pkg/contracts"
)

// Lookup reads a search's record from the searches bucket with one message get by
// its key: binding the bucket would read the stream's info, which lists every key (search
// ids), which the auditor's user may not read. nil when the bucket holds none (or it was deleted).
func Lookup(ctx context.Context, nc *nats.Conn, id string) (*contracts.Search, uint64, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + contracts.BucketSearches + "." + id})
	if err != nil {
		return nil, 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET.KV_"+contracts.BucketSearches, req)
	if err != nil {
		return nil, 0, err
	}
	var res struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return nil, 0, fmt.Errorf("decode the answer: %w", err)
	}
	switch {
	case res.Error != nil && res.Error.Code == 404:
		return nil, 0, nil // no such key, or no such bucket
	case res.Error != nil:
		return nil, 0, errors.New(res.Error.Description)
	case res.Message == nil:
		return nil, 0, errors.New("an empty answer")
	case bytes.Contains(res.Message.Hdrs, []byte("KV-Operation")):
		return nil, 0, nil // deleted or purged
	}
	rec, err := contracts.DecodeSearch(id, res.Message.Data)
	return rec, res.Message.Seq, err
}
