package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// checkKeys walks the document and refuses an object that repeats a key. encoding/json
// keeps the last of two equal keys without a word, which would let a second "A" grade or a
// second "fees" quietly replace the first.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are only skipped here; do not round them through float64
	err := walkValue(dec, "")
	if errors.Is(err, io.EOF) { // Token's EOF here means the document ended early (or was empty)
		return io.ErrUnexpectedEOF
	}
	return err
}

func walkValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := make(map[string]bool)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key := kt.(string) // the decoder only yields string keys inside an object
			if seen[key] {
				return fmt.Errorf("%s: duplicate key %q", pathOrTop(path), key)
			}
			seen[key] = true
			if err := walkValue(dec, join(path, key)); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func pathOrTop(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
