package offers

import (
	"errors"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/services/offers/pricing"
)

// CatalogDocument is the product catalog as a versioned document (package document): the
// bucket, its key, and how a revision is checked. Only what holds whatever the ceiling table
// says is checked here (pricing.ParseCatalog), so that a new ceiling table never makes a
// service refuse the catalog it prices with: pricing narrows or drops what the table forbids,
// and yactl catalog refuses such a catalog before it is put.
var CatalogDocument = document.Spec[*catalog.Catalog]{
	Bucket: contracts.BucketCatalog, Key: contracts.CatalogKey, Name: "catalog",
	Parse:    pricing.ParseCatalog,
	Problems: validationProblems,
	Describe: func(e *zerolog.Event, c *catalog.Catalog) *zerolog.Event {
		return e.Int("products", len(c.Products))
	},
}

// CeilingDocument is the ПСК ceiling table (package ceiling) as a versioned document.
var CeilingDocument = document.Spec[*ceiling.Table]{
	Bucket: contracts.BucketCeilings, Key: contracts.CeilingsKey, Name: "ceiling table",
	Parse:    ceiling.Parse,
	Problems: validationProblems,
}

// validationProblems lists the problems of a refused catalog or ceiling table; a file that
// does not decode stops at its first problem.
func validationProblems(err error) []string {
	var invalid *catalog.ValidationError
	if errors.As(err, &invalid) {
		return invalid.Problems
	}
	var table *ceiling.InvalidError
	if errors.As(err, &table) {
		return table.Problems
	}
	return nil
}

// readSeed returns the file at path, or builtin when path is empty, after checking it with
// parse. It is read at every start, although it is written only to an empty bucket, so that
// a broken file is found when it is deployed, not on the day it is needed.
func readSeed[T any](path string, builtin []byte, parse func([]byte) (T, error), what string) ([]byte, error) {
	if path == "" {
		return builtin, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seed %s: %w", what, err)
	}
	if _, err := parse(data); err != nil {
		return nil, fmt.Errorf("seed %s %s: %w", what, path, err)
	}
	return data, nil
}
