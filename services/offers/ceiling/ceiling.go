// Package ceiling is the legal ceiling of the full cost of credit (ПСК): the Bank of
// Russia's average market values by category of consumer credit, quarter by quarter, and
// the ceiling they imply for an offer.
//
// Federal Law 353-FZ art. 6 part 11: when a contract is concluded, its ПСК may not exceed
// the lower of 292 % a year and the Bank of Russia's average market value for its category,
// applied in that calendar quarter, by more than one third. The Bank of Russia publishes
// the values (and the limits, the averages plus one third) every quarter, separately for
// credit organisations, at least 45 days before the quarter they apply in; the categories
// are set by its Ordinance 5112-U. A bank's cash loans fall in the unsecured categories
// banded by term (up to a year, over a year) and amount (up to 30 000 ₽, to 100 000 ₽, to
// 300 000 ₽, over 300 000 ₽); its credit cards in the categories of credit with a credit
// limit, banded by the limit.
//
// # The table file
//
// JSON, strict (an unknown field is an error, and Parse reports every problem at once):
//
//	{
//	  "version": 1,
//	  "quarters": [
//	    {
//	      "quarter": "2026-Q1",                   // the calendar quarter the values apply in
//	      "source": "https://www.cbr.ru/…",       // where they were published
//	      "categories": [
//	        {"row": "1.1", "product_type": "credit_card",
//	         "amount_over": 0, "amount_up_to": 30000,      // roubles: (over, up_to]; up_to 0 = no bound
//	         "average": 48.123, "limit": 64.164},          // % a year, as published
//	        {"row": "3.1.1", "product_type": "loan",
//	         "term_over": 0, "term_up_to": 12,             // months: (over, up_to]; loans only
//	         "amount_over": 0, "amount_up_to": 30000, "average": …, "limit": …}
//	      ]
//	    }
//	  ]
//	}
//
// A category whose ceiling the Bank of Russia's board has suspended for the quarter (as it
// did for credit cards in 2025-Q1) says "suspended": true and has no average or limit: only
// 292 % applies to it.
//
// Within a quarter, the categories of a product type must tile every amount (and, for
// loans, every term) exactly once; the published limit must be the average plus one third
// to the published three decimals. A quarter that lists no category of a product type, or a
// quarter missing from the table, leaves only the absolute 292 % for it.
package ceiling

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// Absolute is the ПСК no consumer credit may exceed whatever its category: 292 % a year
// (353-FZ art. 6 part 11, as amended by Federal Law 601-FZ of 29.12.2022, since 1 July 2023;
// 365 % before). It holds with no table at all.
var Absolute = money.Percent(292)

// Table is a validated ceiling table. Treat it as read-only.
type Table struct {
	Quarters []Quarter // in time order, no two alike
}

// Quarter is the values applied in one calendar quarter.
type Quarter struct {
	Name       string    // "2026-Q1"
	Start, End time.Time // [Start, End), Moscow time
	Source     string
	Categories []Category
}

// Category is one row of the publication.
type Category struct {
	Row         string
	ProductType contracts.ProductType
	// Amounts in (AmountOver, AmountUpTo]; AmountUpTo 0 has no upper bound.
	AmountOver, AmountUpTo money.Amount
	// Terms in months in (TermOver, TermUpTo] (loans); TermUpTo 0 has no upper bound.
	TermOver, TermUpTo int
	Average, Limit     money.Rate
	// Suspended: the board suspended the category's ceiling for the quarter; 292 % alone.
	Suspended bool
}

func (c Category) holds(amount money.Amount, term int) bool {
	return amount > c.AmountOver && (c.AmountUpTo == 0 || amount <= c.AmountUpTo) &&
		(c.ProductType != contracts.ProductLoan || term > c.TermOver && (c.TermUpTo == 0 || term <= c.TermUpTo))
}

// InvalidError lists every problem of a table.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string {
	return fmt.Sprintf("ceiling table: %d problem(s): %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

//go:embed default.json
var defaultJSON []byte

// DefaultJSON is the table a fresh system starts with (see default.json and the README for
// what it holds and why).
func DefaultJSON() []byte { return bytes.Clone(defaultJSON) }

// moscow: the quarter of a contract is its Moscow calendar quarter. Fixed at UTC+3: Russia
// has had no daylight saving since 2014.
var moscow = time.FixedZone("MSK", 3*60*60)

var quarterPattern = regexp.MustCompile(`^(20[0-9]{2})-Q([1-4])$`)

type tableWire struct {
	Version  int           `json:"version"`
	Quarters []quarterWire `json:"quarters"`
}

type quarterWire struct {
	Quarter    string         `json:"quarter"`
	Source     string         `json:"source"`
	Categories []categoryWire `json:"categories"`
}

type categoryWire struct {
	Row         string                `json:"row"`
	ProductType contracts.ProductType `json:"product_type"`
	AmountOver  money.Amount          `json:"amount_over"`
	AmountUpTo  money.Amount          `json:"amount_up_to"`
	TermOver    int                   `json:"term_over"`
	TermUpTo    int                   `json:"term_up_to"`
	Average     money.Rate            `json:"average"`
	Limit       money.Rate            `json:"limit"`
	Suspended   bool                  `json:"suspended,omitzero"`
}

// Parse decodes and validates a table, reporting every problem in one *InvalidError.
func Parse(data []byte) (*Table, error) {
	var w tableWire
	if err := jsonv2.Unmarshal(data, &w, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, &InvalidError{Problems: []string{fmt.Sprintf("not a ceiling table: %v", err)}}
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if w.Version != 1 {
		fail("version %d is not supported, want 1", w.Version)
	}
	t := &Table{}
	seen := map[string]bool{}
	for i, qw := range w.Quarters {
		at := fmt.Sprintf("quarters[%d]", i)
		m := quarterPattern.FindStringSubmatch(qw.Quarter)
		if m == nil {
			fail("%s.quarter %q is not YEAR-Qn", at, qw.Quarter)
			continue
		}
		if seen[qw.Quarter] {
			fail("%s: quarter %s listed twice", at, qw.Quarter)
			continue
		}
		seen[qw.Quarter] = true
		year, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		start := time.Date(year, time.Month(3*n-2), 1, 0, 0, 0, 0, moscow)
		q := Quarter{Name: qw.Quarter, Start: start, End: start.AddDate(0, 3, 0), Source: qw.Source}
		if strings.TrimSpace(qw.Source) == "" {
			fail("%s (%s): source is empty: say where the values were published", at, qw.Quarter)
		}
		for j, cw := range qw.Categories {
			cat := fmt.Sprintf("%s (%s) categories[%d] (row %q)", at, qw.Quarter, j, cw.Row)
			c := Category{Row: cw.Row, ProductType: cw.ProductType, AmountOver: cw.AmountOver, AmountUpTo: cw.AmountUpTo,
				TermOver: cw.TermOver, TermUpTo: cw.TermUpTo, Average: cw.Average, Limit: cw.Limit, Suspended: cw.Suspended}
			if !c.ProductType.Valid() {
				fail("%s: product_type %q is unknown", cat, c.ProductType)
				continue
			}
			if c.AmountOver < 0 || c.AmountUpTo != 0 && c.AmountUpTo <= c.AmountOver {
				fail("%s: amount band (%s, %s] is empty", cat, c.AmountOver, c.AmountUpTo)
			}
			if c.ProductType == contracts.ProductLoan {
				if c.TermOver < 0 || c.TermUpTo != 0 && c.TermUpTo <= c.TermOver {
					fail("%s: term band (%d, %d] is empty", cat, c.TermOver, c.TermUpTo)
				}
			} else if c.TermOver != 0 || c.TermUpTo != 0 {
				fail("%s: a card's category has no term band", cat)
			}
			if c.Suspended {
				if c.Average != 0 || c.Limit != 0 {
					fail("%s: a suspended category has no average or limit", cat)
				}
			} else if c.Average <= 0 || c.Limit <= 0 {
				fail("%s: average and limit must be positive", cat)
			} else if want := plusOneThird(c.Average); absDiff(c.Limit, want) > 1 {
				fail("%s: limit %s is not the average %s plus one third (%s)", cat, c.Limit, c.Average, want)
			}
			q.Categories = append(q.Categories, c)
		}
		problems = append(problems, tiling(at+" ("+qw.Quarter+")", q.Categories)...)
		t.Quarters = append(t.Quarters, q)
	}
	if len(problems) > 0 {
		return nil, &InvalidError{Problems: problems}
	}
	slices.SortFunc(t.Quarters, func(a, b Quarter) int { return a.Start.Compare(b.Start) })
	return t, nil
}

// plusOneThird is the average plus one third, to the published three decimals.
func plusOneThird(avg money.Rate) money.Rate {
	return money.Rate(math.Round(float64(avg) * 4 / 3))
}

func absDiff(a, b money.Rate) money.Rate {
	if a > b {
		return a - b
	}
	return b - a
}

// tiling checks that, for each product type listed, every amount (and a loan's every term)
// falls in exactly one category: probed at each band's edges, where a gap or an overlap
// shows.
func tiling(at string, cats []Category) []string {
	var problems []string
	for _, pt := range []contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard} {
		var amounts []money.Amount
		terms := []int{1}
		for _, c := range cats {
			if c.ProductType != pt {
				continue
			}
			amounts = append(amounts, c.AmountOver+1)
			if c.AmountUpTo > 0 {
				amounts = append(amounts, c.AmountUpTo, c.AmountUpTo+1)
			}
			if pt == contracts.ProductLoan {
				terms = append(terms, c.TermOver+1)
				if c.TermUpTo > 0 {
					terms = append(terms, c.TermUpTo, c.TermUpTo+1)
				}
			}
		}
		if len(amounts) == 0 {
			continue
		}
		amounts = append(amounts, 1, math.MaxInt64)
		slices.Sort(amounts)
		slices.Sort(terms)
		amounts, terms = slices.Compact(amounts), slices.Compact(terms)
		for _, a := range amounts {
			for _, n := range terms {
				var rows []string
				for _, c := range cats {
					if c.ProductType == pt && c.holds(a, n) {
						rows = append(rows, c.Row)
					}
				}
				if len(rows) != 1 {
					where := fmt.Sprintf("%s ₽", a)
					if a == math.MaxInt64 {
						where = "the largest amounts"
					}
					if pt == contracts.ProductLoan {
						where += fmt.Sprintf(" for %d months", n)
					}
					problems = append(problems, fmt.Sprintf("%s: %s at %s falls in %d categories %v, want exactly 1", at, pt, where, len(rows), rows))
				}
			}
		}
	}
	return problems
}

// Quarter returns the quarter of the table that applies at t, or nil.
func (t *Table) Quarter(at time.Time) *Quarter {
	if t == nil {
		return nil
	}
	for i := range t.Quarters {
		if q := &t.Quarters[i]; !at.Before(q.Start) && at.Before(q.End) {
			return q
		}
	}
	return nil
}

// Limits are the ceilings an offer made now is held to: an offer's link stands from now
// until its expiry and a contract may be concluded at any moment of that, so every quarter
// the window touches applies, the lowest limit winning.
type Limits struct {
	quarters []*Quarter
	// edges are each product type's band edges, made once per search by Between: pricing
	// asks for them for every product it prices.
	edges map[contracts.ProductType][]money.Amount
}

// Between is the Limits of the window [from, to): a link made at from and expiring at to (it
// is dead at that instant, so a quarter starting then does not apply), or of the instant from
// when to equals it. A nil table gives the absolute ceiling alone.
func (t *Table) Between(from, to time.Time) Limits {
	var l Limits
	if t == nil {
		return l
	}
	for i := range t.Quarters {
		q := &t.Quarters[i]
		if from.Before(q.End) && (q.Start.Before(to) || !q.Start.After(from)) {
			l.quarters = append(l.quarters, q)
		}
	}
	for _, q := range l.quarters {
		for _, c := range q.Categories {
			if c.AmountUpTo > 0 {
				if l.edges == nil {
					l.edges = make(map[contracts.ProductType][]money.Amount, 2)
				}
				l.edges[c.ProductType] = append(l.edges[c.ProductType], c.AmountUpTo)
			}
		}
	}
	for pt, e := range l.edges {
		slices.Sort(e)
		l.edges[pt] = slices.Compact(e)
	}
	return l
}

// Quarters names the quarters whose values apply, for the record of a decision.
func (l Limits) Quarters() []string {
	names := make([]string, len(l.quarters))
	for i, q := range l.quarters {
		names[i] = q.Name
	}
	return names
}

// At is the ceiling of a product at one amount and term (months; ignored for cards).
func (l Limits) At(pt contracts.ProductType, amount money.Amount, term int) money.Rate {
	ceiling := Absolute
	for _, q := range l.quarters {
		for _, c := range q.Categories {
			if c.ProductType == pt && !c.Suspended && c.holds(amount, term) {
				ceiling = min(ceiling, c.Limit)
			}
		}
	}
	return ceiling
}

// Edges are the amounts at which a product type's ceiling can change, ascending: the upper
// bounds of its amount bands. Between two edges the ceiling depends on the term alone.
func (l Limits) Edges(pt contracts.ProductType) []money.Amount { return l.edges[pt] }
