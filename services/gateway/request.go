package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

// Limits from the spec (§3).
const (
	maxBodyBytes  = 64 << 10
	maxAmount     = 100_000_000 * 100 // kopecks
	maxTermMonths = 360
	maxProps      = 32
	maxPropRunes  = 256
)

// searchIDPattern is the only spelling of a search id we accept: hyphenated, any case. A
// general UUID parser would also take braces, urn:uuid: and 32 bare hex digits, which would
// give one search several keys.
var searchIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// loanApproval is a POST body that passed validation.
type loanApproval struct {
	SearchID    string // as the request spelled it, echoed in answers
	Phone       phone.Number
	ProductType contracts.ProductType
	Amount      *money.Amount
	Term        *int
	Props       []string
}

// key is the search's key in the bucket: the id in lowercase.
func (r loanApproval) key() string { return strings.ToLower(r.SearchID) }

// parseLoanApproval reads a POST body by the spec's rules: strict JSON, a lenient schema
// (unknown fields ignored, null is absent), every invalid field reported at once.
func parseLoanApproval(body []byte) (*loanApproval, error) {
	fields, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	var (
		out      loanApproval
		problems []FieldError
	)
	fail := func(property, message string) {
		problems = append(problems, FieldError{Property: property, Message: message})
	}

	if s, ok, bad := stringField(fields, "search_id"); bad || !ok {
		fail("search_id", "Поле search_id обязательно и должно быть строкой с UUID")
	} else if !searchIDPattern.MatchString(s) {
		fail("search_id", "Поле search_id должно быть UUID вида e2b4948b-7d8a-4eec-875c-b1c11d7d8372")
	} else {
		out.SearchID = s
	}

	if s, ok, bad := stringField(fields, "phone_number"); bad || !ok {
		fail("phone_number", "Поле phone_number обязательно и должно быть строкой из 10 цифр")
	} else if n, err := phone.Parse(s); err != nil {
		fail("phone_number", "Поле phone_number должно содержать российский номер: 10 цифр, можно с +7 или 8 впереди")
	} else {
		out.Phone = n
	}

	if s, ok, bad := stringField(fields, "product_type"); bad || !ok {
		fail("product_type", "Поле product_type обязательно: loan или credit_card")
	} else if p := contracts.ProductType(s); !p.Valid() {
		fail("product_type", "Поле product_type должно быть loan или credit_card")
	} else {
		out.ProductType = p
	}

	if raw, ok := fields["amount"]; ok && !isNull(raw) {
		v, err := decimal(raw)
		if err == nil {
			v.Mul(v, big.NewRat(100, 1))
		}
		switch {
		case err != nil:
			fail("amount", "Поле amount должно быть числом")
		case !v.IsInt():
			fail("amount", "Поле amount должно содержать не больше двух знаков после запятой")
		case v.Sign() <= 0 || v.Cmp(big.NewRat(maxAmount, 1)) > 0:
			fail("amount", "Поле amount должно быть больше 0 и не больше 100 000 000")
		default:
			a := money.Amount(v.Num().Int64())
			out.Amount = &a
		}
	}

	if raw, ok := fields["term"]; ok && !isNull(raw) {
		v, err := decimal(raw)
		switch {
		case err != nil:
			fail("term", "Поле term должно быть целым числом месяцев")
		case !v.IsInt() || v.Sign() <= 0 || v.Cmp(big.NewRat(maxTermMonths, 1)) > 0:
			fail("term", "Поле term должно быть целым числом месяцев от 1 до 360")
		default:
			n := int(v.Num().Int64())
			out.Term = &n
		}
	}

	if raw, ok := fields["props"]; ok && !isNull(raw) {
		props, err := stringArray(raw)
		switch {
		case err != nil:
			fail("props", "Поле props должно быть массивом строк")
		case len(props) > maxProps:
			fail("props", fmt.Sprintf("Поле props может содержать не больше %d строк", maxProps))
		default:
			for _, p := range props {
				if utf8.RuneCountInString(p) > maxPropRunes {
					fail("props", fmt.Sprintf("Строки в поле props не длиннее %d символов", maxPropRunes))
					break
				}
			}
			out.Props = props
		}
	}

	if len(problems) > 0 {
		return nil, invalidFields(out.SearchID, problems)
	}
	return &out, nil
}

// stringArray reads an array whose every element is a string (a null element is not).
func stringArray(raw jsontext.Value) ([]string, error) {
	var items []jsontext.Value
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, item := range items {
		if item.Kind() != '"' {
			return nil, errMalformed
		}
		if err := json.Unmarshal(item, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseSearchID checks a polled search id.
func parseSearchID(s string) (string, error) {
	if s == "" {
		return "", invalidFields("", []FieldError{{Property: "search_id", Message: "Параметр search_id обязателен"}})
	}
	if !searchIDPattern.MatchString(s) {
		return "", invalidFields("", []FieldError{{Property: "search_id", Message: "Параметр search_id должен быть UUID вида e2b4948b-7d8a-4eec-875c-b1c11d7d8372"}})
	}
	return s, nil
}

// searchIDFromBody reads the search id from a GET body, the form one of the published
// examples uses. Anything that is not an object with a string search_id yields "".
func searchIDFromBody(body []byte) string {
	fields, err := decodeObject(body)
	if err != nil {
		return ""
	}
	s, _, _ := stringField(fields, "search_id")
	return s
}

var errMalformed = errors.New("malformed JSON")

// decodeObject parses body as exactly one JSON object and returns its members by exact name.
// The strict decoder (go-json-experiment/json, the prototype of encoding/json/v2) refuses,
// at any depth, a repeated member name, invalid UTF-8 and anything after the object; member
// names match exactly (encoding/json would match struct fields case-insensitively, which
// the spec forbids).
func decodeObject(body []byte) (map[string]jsontext.Value, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, requestError("Пустое тело запроса: ожидается JSON-объект")
	}
	if !utf8.Valid(body) {
		return nil, requestError("Тело запроса должно быть в кодировке UTF-8")
	}
	var fields map[string]jsontext.Value
	err := json.Unmarshal(body, &fields)
	var syntax *jsontext.SyntacticError
	switch {
	case err == nil && trimmed[0] == '{':
		return fields, nil
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &syntax):
		return nil, requestError(fmt.Sprintf("В JSON-объекте повторяется ключ %q", syntax.JSONPointer.LastToken()))
	case errors.As(err, &syntax):
		return nil, requestError("Тело запроса не является корректным JSON")
	case err == nil || trimmed[0] != '{':
		return nil, requestError("Тело запроса должно быть JSON-объектом")
	}
	return nil, requestError("Тело запроса не является корректным JSON")
}

// stringField returns the string member name; ok is false when it is absent or null, bad
// is true when it is present but not a string.
func stringField(fields map[string]jsontext.Value, name string) (s string, ok, bad bool) {
	raw, present := fields[name]
	if !present || isNull(raw) {
		return "", false, false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, true
	}
	return s, true, false
}

func isNull(raw jsontext.Value) bool { return raw.Kind() == 'n' }

// decimal reads a JSON number, or a string holding one, exactly.
func decimal(raw jsontext.Value) (*big.Rat, error) {
	text := string(raw)
	switch raw.Kind() {
	case '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, err
		}
		// A numeric string must be a JSON number too: no spaces, no "+", no hex.
		if jsontext.Value(text).Kind() != '0' || !jsontext.Value(text).IsValid() {
			return nil, errMalformed
		}
	case '0':
	default:
		return nil, errMalformed
	}
	if len(text) > 64 {
		return nil, errMalformed
	}
	// big.Rat would happily expand 1e999999999. Past an exponent of ±100 a mantissa of at most
	// 64 digits is either zero or beyond every range here, far above (1e101) or far below
	// (1e-101) a kopeck: it stands in for the number, which is still a number, so that the
	// range checks name what is wrong with it.
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(text[i+1:], "+"))
		if errors.Is(err, strconv.ErrRange) { // an exponent no int holds is still a number's
			exp = 101
			if strings.HasPrefix(text[i+1:], "-") {
				exp = -101
			}
		} else if err != nil {
			return nil, errMalformed
		}
		if exp > 100 || exp < -100 {
			m, ok := new(big.Rat).SetString(text[:i])
			if !ok {
				return nil, errMalformed
			}
			if m.Sign() == 0 {
				return m, nil
			}
			far := "1e101"
			if exp < 0 {
				far = "1e-101"
			}
			v, _ := new(big.Rat).SetString(far)
			if m.Sign() < 0 {
				v.Neg(v)
			}
			return v, nil
		}
	}
	v, ok := new(big.Rat).SetString(text)
	if !ok {
		return nil, errMalformed
	}
	return v, nil
}

// readBody reads at most maxBodyBytes. A body the client did not finish sending (shorter
// than its Content-Length, or too slow for the server's read timeout) is the client's fault:
// 400 or 408, never 500.
func readBody(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxBodyBytes+1))
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return nil, errors.Join(&Error{Code: ETimeout, Message: "Тело запроса не получено вовремя"}, err)
	case err != nil:
		return nil, errors.Join(&Error{Code: EInvalid, Message: "Тело запроса получено не полностью",
			Details: []FieldError{{Property: "body", Message: "Тело запроса получено не полностью"}}}, err)
	}
	if len(body) > maxBodyBytes {
		return nil, tooLarge()
	}
	return body, nil
}
