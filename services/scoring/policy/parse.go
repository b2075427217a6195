package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

//go:embed default.json
var defaultJSON []byte

// DefaultJSON is default.json, the seed of an empty policy bucket.
func DefaultJSON() []byte { return slices.Clone(defaultJSON) }

// Default returns the policy shipped in default.json: loans and cards for grades A to C,
// no offer without a valid pre-approval.
func Default() *Policy {
	p, err := Parse(defaultJSON)
	if err != nil {
		// The file is compiled in and TestDefault parses it, so no binary that passed its
		// tests gets here; like regexp.MustCompile on a literal, a panic is the honest answer.
		panic("policy: embedded default.json: " + err.Error())
	}
	return p
}

// Problem is one thing wrong with a policy file.
type Problem struct {
	Field   string // dotted path, e.g. products.loan.grades.A.max_limit; "" for the whole file
	Message string
}

// String returns "field: message", or the message alone for the whole file.
func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// InvalidError is every problem Parse found in a policy file.
type InvalidError struct {
	Problems []Problem
}

// Lines are the problems one per line.
func (e *InvalidError) Lines() []string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return lines
}

// Error lists every problem on one line, for a start-up log.
func (e *InvalidError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid credit policy: " + strings.Join(lines, "; ")
}

// MaxTerm is the longest loan term a policy may name, in months: the spec's bound on a
// requested term.
const MaxTerm = 360

// Parse reads and validates a policy file. On any problem it returns an *InvalidError
// listing all of them, so that one round of editing fixes the file.
//
// The file is first read into a tree and then checked against the schema by hand, rather
// than decoded into structs: a decoder into structs stops at the first type error and
// reports only the first unknown field, where a person editing the file wants them all.
func Parse(data []byte) (*Policy, error) {
	root, err := decodeTree(data)
	if err != nil {
		return nil, &InvalidError{Problems: []Problem{{Message: err.Error()}}}
	}
	c := &checker{}
	p := c.policy(root)
	if len(c.problems) > 0 {
		return nil, &InvalidError{Problems: c.problems}
	}
	return p, nil
}

type checker struct {
	problems []Problem
}

func (c *checker) fail(field, format string, args ...any) {
	c.problems = append(c.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fields calls known[key] for every field of the object n in the file's order, reports
// unknown ones, and returns which known ones were present. It reports a non-object and
// returns nil.
func (c *checker) fields(path string, n *node, known map[string]func(path string, v *node)) map[string]bool {
	if n.kind != kindObject {
		c.fail(path, "want an object")
		return nil
	}
	seen := make(map[string]bool, len(n.keys))
	for i, k := range n.keys {
		f, ok := known[k]
		if !ok {
			c.fail(join(path, k), "unknown field")
			continue
		}
		seen[k] = true
		f(join(path, k), n.vals[i])
	}
	return seen
}

func (c *checker) require(path string, seen map[string]bool, names ...string) {
	if seen == nil {
		return // not an object, already reported
	}
	for _, name := range names {
		if !seen[name] {
			c.fail(join(path, name), "required")
		}
	}
}

// amount reads a positive amount of roubles; ok is false when it reported a problem.
func (c *checker) amount(path string, n *node) (money.Amount, bool) {
	if n.kind != kindNumber {
		c.fail(path, "want a number of roubles")
		return 0, false
	}
	a, err := money.ParseAmount(n.text)
	if err != nil || a <= 0 {
		c.fail(path, "want roubles above zero with at most 2 decimals, got %s", n.text)
		return 0, false
	}
	return a, true
}

func (c *checker) whole(path string, n *node) (int, bool) {
	if n.kind != kindNumber {
		c.fail(path, "want a whole number")
		return 0, false
	}
	v, err := strconv.Atoi(n.text)
	if err != nil {
		c.fail(path, "want a whole number, got %s", n.text)
		return 0, false
	}
	return v, true
}

// oneOf reads a string that must be one of choices.
func (c *checker) oneOf(path string, n *node, choices ...string) (string, bool) {
	quoted := make([]string, len(choices))
	for i, s := range choices {
		quoted[i] = strconv.Quote(s)
	}
	want := strings.Join(quoted, " or ")
	if n.kind != kindString {
		c.fail(path, "want %s", want)
		return "", false
	}
	for _, s := range choices {
		if n.text == s {
			return s, true
		}
	}
	c.fail(path, "want %s, got %q", want, n.text)
	return "", false
}

func (c *checker) policy(root *node) *Policy {
	p := &Policy{}
	seen := c.fields("", root, map[string]func(string, *node){
		"version": func(path string, n *node) {
			if v, ok := c.whole(path, n); ok && v != 1 {
				c.fail(path, "version %d is not supported, want 1", v)
			}
		},
		"products": func(path string, n *node) {
			s := c.fields(path, n, map[string]func(string, *node){
				"loan":        func(path string, n *node) { p.Loan = c.product(path, n, contracts.ProductLoan) },
				"credit_card": func(path string, n *node) { p.CreditCard = c.product(path, n, contracts.ProductCreditCard) },
			})
			if s != nil && !s["loan"] && !s["credit_card"] {
				c.fail(path, "name at least one of loan and credit_card")
			}
		},
	})
	if root.kind != kindObject {
		return nil
	}
	c.require("", seen, "version", "products")
	return p
}

func (c *checker) product(path string, n *node, t contracts.ProductType) *Product {
	p := &Product{
		NoPreapproval: Fallback{Action: Reject},
		Expired:       Fallback{Action: Reject},
		Grades:        map[string]Grade{},
	}
	// Cross-field checks run only on fields that were read cleanly, so that one mistake
	// is not reported again as a consequence.
	var minOK, maxOK bool
	var fallbacks []fallbackNode
	seen := c.fields(path, n, map[string]func(string, *node){
		"min_amount": func(path string, n *node) { p.MinAmount, minOK = c.amount(path, n) },
		"max_amount": func(path string, n *node) { p.MaxAmount, maxOK = c.amount(path, n) },
		"term": func(path string, n *node) {
			if t != contracts.ProductLoan {
				c.fail(path, "a credit card has no term")
				return
			}
			p.Term = c.term(path, n)
		},
		"over_limit": func(path string, n *node) {
			v, _ := c.oneOf(path, n, string(OfferLimit), string(RejectOverLimit))
			p.OverLimit = OverLimit(v)
		},
		"grades": func(path string, n *node) { c.grades(path, n, p.Grades) },
		"no_preapproval": func(path string, n *node) {
			fallbacks = append(fallbacks, fallbackNode{path, n, &p.NoPreapproval})
		},
		"expired": func(path string, n *node) {
			fallbacks = append(fallbacks, fallbackNode{path, n, &p.Expired})
		},
	})
	if seen == nil {
		return nil
	}
	c.require(path, seen, "min_amount", "max_amount", "over_limit", "grades")
	if t == contracts.ProductLoan {
		c.require(path, seen, "term")
	}
	if minOK && maxOK && p.MaxAmount < p.MinAmount {
		c.fail(join(path, "max_amount"), "below min_amount (%s)", p.MinAmount)
	}
	if seen["grades"] && n.field("grades").kind == kindObject && len(n.field("grades").keys) == 0 {
		c.fail(join(path, "grades"), "name at least one accepted grade")
	}
	if minOK {
		for _, name := range n.field("grades").keysOrNil() {
			if g, ok := p.Grades[name]; ok && g.MaxLimit < p.MinAmount {
				c.fail(join(path, "grades."+name+".max_limit"), "below min_amount (%s): the grade could never be approved", p.MinAmount)
			}
		}
	}
	// Fallbacks last: an offer must name an accepted grade, known only now.
	for _, f := range fallbacks {
		c.fallback(f, p, minOK)
	}
	return p
}

func (c *checker) term(path string, n *node) *contracts.TermRange {
	var t contracts.TermRange
	var minOK, maxOK bool
	bound := func(v *int, ok *bool) func(string, *node) {
		return func(path string, n *node) {
			if *v, *ok = c.whole(path, n); *ok && (*v < 1 || *v > MaxTerm) {
				c.fail(path, "want 1 to %d months, got %d", MaxTerm, *v)
				*ok = false
			}
		}
	}
	seen := c.fields(path, n, map[string]func(string, *node){
		"min": bound(&t.Min, &minOK),
		"max": bound(&t.Max, &maxOK),
	})
	c.require(path, seen, "min", "max")
	if minOK && maxOK && t.Min > t.Max {
		c.fail(join(path, "max"), "below min (%d)", t.Min)
	}
	return &t
}

func (c *checker) grades(path string, n *node, into map[string]Grade) {
	if n.kind != kindObject {
		c.fail(path, "want an object of grades")
		return
	}
	for i, name := range n.keys {
		gpath := join(path, name)
		if !preapproval.ValidGrade(name) {
			c.fail(path, "%q is not a grade: want 1-8 letters, digits, '+', '-' or '_'", name)
			continue
		}
		var g Grade
		var ok bool
		seen := c.fields(gpath, n.vals[i], map[string]func(string, *node){
			"max_limit": func(path string, n *node) { g.MaxLimit, ok = c.amount(path, n) },
		})
		c.require(gpath, seen, "max_limit")
		if ok {
			into[name] = g
		}
	}
}

type fallbackNode struct {
	path string
	n    *node
	into *Fallback
}

func (c *checker) fallback(f fallbackNode, p *Product, minOK bool) {
	var gradeNode, limitNode *node
	seen := c.fields(f.path, f.n, map[string]func(string, *node){
		"action": func(path string, n *node) {
			v, _ := c.oneOf(path, n, string(Reject), string(Offer))
			f.into.Action = Action(v)
		},
		"grade": func(path string, n *node) { gradeNode = n },
		"limit": func(path string, n *node) { limitNode = n },
	})
	c.require(f.path, seen, "action")
	switch f.into.Action {
	case Reject:
		if gradeNode != nil {
			c.fail(join(f.path, "grade"), "only with action \"offer\"")
		}
		if limitNode != nil {
			c.fail(join(f.path, "limit"), "only with action \"offer\"")
		}
	case Offer:
		if gradeNode == nil {
			c.fail(join(f.path, "grade"), "required with action \"offer\"")
		} else if gradeNode.kind != kindString {
			c.fail(join(f.path, "grade"), "want a string")
		} else if _, ok := p.Grades[gradeNode.text]; !ok {
			c.fail(join(f.path, "grade"), "%q is not among the accepted grades", gradeNode.text)
		} else {
			f.into.Grade = gradeNode.text
		}
		if limitNode == nil {
			c.fail(join(f.path, "limit"), "required with action \"offer\"")
		} else if a, ok := c.amount(join(f.path, "limit"), limitNode); ok {
			f.into.Limit = a
			if minOK && a < p.MinAmount {
				c.fail(join(f.path, "limit"), "below min_amount (%s)", p.MinAmount)
			}
		}
	default:
		f.into.Action = Reject // already reported; keeps the half-read product harmless
	}
}

// A node is a JSON value with its object keys in the file's order.
type node struct {
	kind nodeKind
	text string // a string's value, a number's literal
	keys []string
	vals []*node
}

type nodeKind uint8

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (n *node) field(name string) *node {
	for i, k := range n.keys {
		if k == name {
			return n.vals[i]
		}
	}
	return &node{}
}

func (n *node) keysOrNil() []string {
	if n.kind != kindObject {
		return nil
	}
	return n.keys
}

// decodeTree reads exactly one JSON value with the strict decoder (go-json-experiment's
// jsontext, the prototype of encoding/json/v2's), which refuses a repeated name (that
// encoding/json would silently resolve to the last one) and invalid UTF-8; bad JSON is an
// error naming where it is.
func decodeTree(data []byte) (*node, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the file is empty")
	}
	d := jsontext.NewDecoder(bytes.NewReader(data))
	n, err := decodeValue(d)
	if err != nil {
		return nil, invalidJSON(data, err)
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the policy object")
	}
	return n, nil
}

// invalidJSON words a decoding error with the line and column people look for in an editor.
func invalidJSON(data []byte, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return errors.New("invalid JSON: the file ends too soon")
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && se.ByteOffset <= int64(len(data)) {
		before := data[:se.ByteOffset]
		line := bytes.Count(before, []byte("\n")) + 1
		col := len(before) - bytes.LastIndexByte(before, '\n')
		msg, _, _ := strings.Cut(strings.TrimPrefix(se.Error(), "jsontext: "), " after offset ")
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, msg)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

func decodeValue(d *jsontext.Decoder) (*node, error) {
	tok, err := d.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{', '[':
		n := &node{kind: kindObject}
		if tok.Kind() == '[' {
			n.kind = kindArray
		}
		for d.PeekKind() != '}' && d.PeekKind() != ']' {
			if n.kind == kindObject {
				kt, err := d.ReadToken()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, kt.String()) // inside an object the decoder yields only names
			}
			e, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, e)
		}
		if _, err := d.ReadToken(); err != nil { // the closing ] or }
			return nil, err
		}
		return n, nil
	case '0':
		return &node{kind: kindNumber, text: tok.String()}, nil // the literal as written
	case '"':
		return &node{kind: kindString, text: tok.String()}, nil
	case 't', 'f':
		return &node{kind: kindBool}, nil
	default:
		return &node{kind: kindNull}, nil
	}
}
