package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// The answer shapes of the contract (../shared/spec/credits-api.md §4), written from the
// contract alone: each function returns every way a body departs from it, each naming the
// field and the rule, empty when it conforms.

// doneProblems holds a done answer to the contract (§4.1) for a search of product asked
// under id; decision is the one the test phone promises ("" when any will do).
func doneProblems(obj map[string]any, id, product, decision string) []string {
	var p problems
	p.str(obj, "search_id", id)
	p.str(obj, "status", "done")
	if name, ok := obj["name"].(string); !ok || strings.TrimSpace(name) == "" {
		p.add("name: want the bank's name, a non-empty string; got %s", show(obj["name"]))
	}
	dec, _ := obj["decision"].(string)
	if dec != "has_approve" && dec != "rejected" {
		p.add(`decision: want "has_approve" or "rejected"; got %s`, show(obj["decision"]))
	}
	data, isArray := obj["data"].([]any)
	if !isArray {
		p.add("data: want an array (on rejection []); got %s", show(obj["data"]))
	}
	switch {
	case dec == "has_approve" && isArray && len(data) == 0:
		p.add(`decision "has_approve" with no offers in data; the contract says "rejected" then`)
	case dec == "rejected" && isArray && len(data) > 0:
		p.add(`decision "rejected" with %d offers in data; want data: []`, len(data))
	}
	if decision != "" && dec != decision {
		p.add("decision: the test phone promises %q; got %q", decision, dec)
	}
	prevCost := -1.0
	for i, o := range data {
		offer, ok := o.(map[string]any)
		if !ok {
			p.add("data[%d]: want an object; got %s", i, show(o))
			continue
		}
		p.offer(fmt.Sprintf("data[%d]", i), offer, id, product)
		if tc, ok := offer["total_cost"].(map[string]any); ok {
			if c, ok := number(tc["min"]); ok {
				if c < prevCost {
					p.add("data[%d]: offers are not best first (total_cost.min %g after %g)", i, c, prevCost)
				}
				prevCost = c
			}
		}
	}
	return p.list
}

// pendingProblems holds a pending answer to §4.2: the id and status only.
func pendingProblems(obj map[string]any, id string) []string {
	var p problems
	p.str(obj, "search_id", id)
	p.str(obj, "status", "pending")
	for _, f := range []string{"name", "decision", "data"} {
		if _, ok := obj[f]; ok {
			p.add("%s: absent while pending; got %s", f, show(obj[f]))
		}
	}
	return p.list
}

// errorProblems holds an error answer to §4.3: search_id (the request's, or "" when it
// could not be read) and a message; a 400 adds properties and details, and names want.
func errorProblems(obj map[string]any, status int, id string, want ...string) []string {
	var p problems
	if obj == nil {
		return []string{"the body is not a JSON object; the contract (§4.3) wants {search_id, message}"}
	}
	if s, ok := obj["search_id"].(string); !ok {
		p.add("search_id: want a string (the request's, or \"\"); got %s", show(obj["search_id"]))
	} else if id != "" && s != id {
		p.add("search_id: want %q, the request's; got %q", id, s)
	}
	if m, ok := obj["message"].(string); !ok || strings.TrimSpace(m) == "" {
		p.add("message: want a sentence naming what is wrong; got %s", show(obj["message"]))
	}
	if status != 400 {
		return p.list
	}
	props, ok := obj["properties"].([]any)
	if !ok || len(props) == 0 {
		p.add("properties: a 400 carries the names of the invalid fields; got %s", show(obj["properties"]))
	}
	named := map[string]bool{}
	for _, v := range props {
		s, ok := v.(string)
		if !ok {
			p.add("properties: want strings; got %s", show(v))
		}
		named[s] = true
	}
	details, ok := obj["details"].([]any)
	if !ok {
		p.add("details: a 400 carries [{property, message}] per problem; got %s", show(obj["details"]))
	}
	inDetails := map[string]bool{}
	for i, v := range details {
		d, _ := v.(map[string]any)
		prop, ok1 := d["property"].(string)
		msg, ok2 := d["message"].(string)
		if !ok1 || !ok2 || msg == "" {
			p.add("details[%d]: want {property, message}; got %s", i, show(v))
			continue
		}
		inDetails[prop] = true
		if !named[prop] {
			p.add("details[%d] names %q, which properties does not", i, prop)
		}
	}
	for _, w := range want {
		if !named[w] {
			p.add("properties: want %q among them; got %s", w, show(obj["properties"]))
		} else if !inDetails[w] {
			p.add("details: want an entry for %q", w)
		}
	}
	return p.list
}

type problems struct{ list []string }

func (p *problems) add(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

func (p *problems) str(obj map[string]any, field, want string) {
	if got, ok := obj[field].(string); !ok || got != want {
		p.add("%s: want %q; got %s", field, want, show(obj[field]))
	}
}

// offer holds one offer to §4.1's table.
func (p *problems) offer(at string, o map[string]any, id, product string) {
	if got, _ := o["product_type"].(string); got != product {
		p.add("%s.product_type: a %s search gets %s offers only; got %s", at, product, product, show(o["product_type"]))
	}
	if d, _ := o["decision"].(string); d != "pre_approved" && d != "full_approved" {
		p.add(`%s.decision: want "pre_approved" or "full_approved"; got %s`, at, show(o["decision"]))
	}
	p.rangeOf(at+".amount", o["amount"], false, true)
	rate := p.rangeOf(at+".rate", o["rate"], false, true)
	cost := p.rangeOf(at+".total_cost", o["total_cost"], false, true)
	if rate != nil && cost != nil && (cost[0] < rate[0] || cost[1] < rate[1]) {
		p.add("%s.total_cost (%g–%g) below the rate (%g–%g); the ПСК is never below the matching rate", at, cost[0], cost[1], rate[0], rate[1])
	}
	if cost != nil && (decimals(o["total_cost"], "min") > 3 || decimals(o["total_cost"], "max") > 3) {
		p.add("%s.total_cost: three decimals at most; got %s", at, show(o["total_cost"]))
	}
	payment, _ := o["payment"].(map[string]any)
	switch product {
	case "loan":
		p.rangeOf(at+".term", o["term"], true, true)
		if payment == nil {
			p.add("%s.payment: a loan offer carries {min, max}, the monthly payment; got %s", at, show(o["payment"]))
		} else {
			p.rangeOf(at+".payment", o["payment"], false, true)
			if _, ok := payment["cc_rate"]; ok {
				p.add("%s.payment.cc_rate: cards only", at)
			}
			if decimals(o["payment"], "min") > 2 || decimals(o["payment"], "max") > 2 {
				p.add("%s.payment: money is rounded to kopecks; got %s", at, show(o["payment"]))
			}
		}
		if _, ok := o["grace_period"]; ok {
			p.add("%s.grace_period: cards only", at)
		}
	case "credit_card":
		if _, ok := o["term"]; ok {
			p.add("%s.term: loans only (omitted for cards); got %s", at, show(o["term"]))
		}
		if v, ok := number(payment["cc_rate"]); !ok || v <= 0 || v > 100 {
			p.add("%s.payment: a card offer carries {cc_rate}, a percent of the debt; got %s", at, show(o["payment"]))
		}
		if _, ok := payment["min"]; ok {
			p.add("%s.payment.min: loans only; a card's payment is {cc_rate}", at)
		}
		if g, present := o["grace_period"]; present {
			if n, ok := g.(json.Number); !ok || strings.ContainsAny(n.String(), ".eE") || strings.HasPrefix(n.String(), "-") {
				p.add("%s.grace_period: whole days; got %s", at, show(g))
			}
		}
	}
	for _, f := range []string{"special_conditions", "required_documents", "choosable_documents"} {
		v, present := o[f]
		if !present {
			continue
		}
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			p.add("%s.%s: an array of strings, omitted when empty; got %s", at, f, show(v))
			continue
		}
		for _, s := range list {
			if _, ok := s.(string); !ok {
				p.add("%s.%s: strings only; got %s", at, f, show(s))
			}
		}
	}
	if _, ok := o["proposal_link"]; ok {
		p.add(`%s.proposal_link: the contract spells it "propousal_link", as the pages do`, at)
	}
	link, _ := o["propousal_link"].(map[string]any)
	web, _ := link["link"].(string)
	deep, _ := link["deep"].(string)
	switch {
	case web == "" && deep == "":
		p.add("%s.propousal_link: want {link} and/or {deep}; got %s", at, show(o["propousal_link"]))
	case !strings.Contains(strings.ToLower(web+deep), strings.ToLower(id)) && !hasRef(web) && !hasRef(deep):
		p.add("%s.propousal_link: carries the search_id, in clear or sealed in a ref parameter, so that an application can be traced back; got %s", at, show(o["propousal_link"]))
	}
}

// hasRef reports whether link carries a reference the bank resolves to its search and offer
// (a "ref" query parameter): how a link traces an application back without showing the
// search id, or anything else, to whoever reads the URL.
func hasRef(link string) bool {
	u, err := url.Parse(link)
	return err == nil && u.Query().Get("ref") != ""
}

// rangeOf holds a {min, max} of numbers, min ≤ max (and positive, when positive; whole,
// when whole); it returns them, or nil after reporting what is wrong.
func (p *problems) rangeOf(at string, v any, whole, positive bool) []float64 {
	m, ok := v.(map[string]any)
	if !ok {
		p.add("%s: want {min, max}; got %s", at, show(v))
		return nil
	}
	lo, ok1 := number(m["min"])
	hi, ok2 := number(m["max"])
	if !ok1 || !ok2 {
		p.add("%s: min and max are numbers (never null); got %s", at, show(v))
		return nil
	}
	if lo > hi {
		p.add("%s: min %g above max %g", at, lo, hi)
	}
	if positive && lo <= 0 {
		p.add("%s: want positive; got min %g", at, lo)
	}
	if whole && (decimals(v, "min") > 0 || decimals(v, "max") > 0) {
		p.add("%s: whole months; got %s", at, show(v))
	}
	return []float64{lo, hi}
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// decimals counts the fraction digits of obj[field] as written on the wire.
func decimals(obj any, field string) int {
	m, _ := obj.(map[string]any)
	n, ok := m[field].(json.Number)
	if !ok {
		return 0
	}
	s := n.String()
	if strings.ContainsAny(s, "eE") {
		return 99 // an exponent is not how money or a percentage is written
	}
	if _, frac, ok := strings.Cut(s, "."); ok {
		return len(strings.TrimRight(frac, "0"))
	}
	return 0
}

// show prints a JSON value the way it came, for a failure message.
func show(v any) string {
	if v == nil {
		return "nothing (absent or null)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
