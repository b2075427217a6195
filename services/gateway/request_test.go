package gateway

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/demobank/yacredits/pkg/money"
)

func TestParseLoanApproval(t *testing.T) {
	const id = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"
	base := `"search_id":"` + id + `","phone_number":"9330445040","product_type":"loan"`
	amount := func(a int64) *money.Amount { m := money.Amount(a); return &m }
	term := func(n int) *int { return &n }
	tests := []struct {
		name        string
		body        string
		wantProps   []string // invalid properties, in order; nil means valid
		wantMessage string   // for errors that are not about one field
		wantAmount  *money.Amount
		wantTerm    *int
	}{
		{name: "minimal", body: `{` + base + `}`},
		{name: "spec example", body: `{` + base + `,"amount":500000.00,"term":36,"props":["a"]}`, wantAmount: amount(50000000), wantTerm: term(36)},
		{name: "numeric strings", body: `{` + base + `,"amount":"1500.5","term":"36"}`, wantAmount: amount(150050), wantTerm: term(36)},
		{name: "term 36.0", body: `{` + base + `,"term":36.0}`, wantTerm: term(36)},
		{name: "amount with exponent", body: `{` + base + `,"amount":5e5}`, wantAmount: amount(50000000)},
		{name: "nulls are absent", body: `{` + base + `,"amount":null,"term":null,"props":null}`},
		{name: "unknown fields ignored", body: `{` + base + `,"channel":"web","extra":{"a":[1,2]}}`},
		{name: "uppercase id", body: `{"search_id":"E2B4948B-7D8A-4EEC-875C-B1C11D7D8372","phone_number":"9330445040","product_type":"loan"}`},

		{name: "empty object", body: `{}`, wantProps: []string{"search_id", "phone_number", "product_type"}},
		{name: "every field wrong", body: `{"search_id":"nope","phone_number":"12345","product_type":"mortgage","amount":-1,"term":"36.5","props":"x"}`,
			wantProps: []string{"search_id", "phone_number", "product_type", "amount", "term", "props"}},
		{name: "null required", body: `{"search_id":null,"phone_number":null,"product_type":null}`, wantProps: []string{"search_id", "phone_number", "product_type"}},
		{name: "phone as number", body: `{"search_id":"` + id + `","phone_number":9330445040,"product_type":"loan"}`, wantProps: []string{"phone_number"}},
		{name: "props with a null element", body: `{` + base + `,"props":["a",null]}`, wantProps: []string{"props"}},
		{name: "props with a number", body: `{` + base + `,"props":["a",1]}`, wantProps: []string{"props"}},
		{name: "braced uuid", body: `{"search_id":"{` + id + `}","phone_number":"9330445040","product_type":"loan"}`, wantProps: []string{"search_id"}},
		{name: "urn uuid", body: `{"search_id":"urn:uuid:` + id + `","phone_number":"9330445040","product_type":"loan"}`, wantProps: []string{"search_id"}},
		{name: "32 hex uuid", body: `{"search_id":"` + strings.ReplaceAll(id, "-", "") + `","phone_number":"9330445040","product_type":"loan"}`, wantProps: []string{"search_id"}},
		{name: "field names are exact-case", body: `{"Search_Id":"` + id + `","phone_number":"9330445040","product_type":"loan"}`, wantProps: []string{"search_id"}},
		{name: "product case", body: `{"search_id":"` + id + `","phone_number":"9330445040","product_type":"Loan"}`, wantProps: []string{"product_type"}},
		{name: "amount zero", body: `{` + base + `,"amount":0}`, wantProps: []string{"amount"}},
		{name: "amount three decimals", body: `{` + base + `,"amount":10.005}`, wantProps: []string{"amount"}},
		{name: "amount too big", body: `{` + base + `,"amount":100000000.01}`, wantProps: []string{"amount"}},
		{name: "amount at the cap", body: `{` + base + `,"amount":100000000}`, wantAmount: amount(10000000000)},
		{name: "amount huge exponent", body: `{` + base + `,"amount":1e999999999}`, wantProps: []string{"amount"}},
		{name: "amount bool", body: `{` + base + `,"amount":true}`, wantProps: []string{"amount"}},
		{name: "amount text", body: `{` + base + `,"amount":"lots"}`, wantProps: []string{"amount"}},
		{name: "amount padded string", body: `{` + base + `,"amount":" 100"}`, wantProps: []string{"amount"}},
		{name: "term zero", body: `{` + base + `,"term":0}`, wantProps: []string{"term"}},
		{name: "term 361", body: `{` + base + `,"term":361}`, wantProps: []string{"term"}},
		{name: "term fraction", body: `{` + base + `,"term":12.5}`, wantProps: []string{"term"}},
		{name: "props not strings", body: `{` + base + `,"props":[1]}`, wantProps: []string{"props"}},
		{name: "props too many", body: `{` + base + `,"props":[` + strings.Repeat(`"a",`, 32) + `"a"]}`, wantProps: []string{"props"}},
		{name: "props item too long", body: `{` + base + `,"props":["` + strings.Repeat("ж", 257) + `"]}`, wantProps: []string{"props"}},
		{name: "props item at the cap", body: `{` + base + `,"props":["` + strings.Repeat("ж", 256) + `"]}`},

		{name: "empty body", body: ``, wantMessage: "Пустое тело"},
		{name: "whitespace body", body: " \n", wantMessage: "Пустое тело"},
		{name: "malformed", body: `{"search_id":`, wantMessage: "корректным JSON"},
		{name: "array", body: `[1,2]`, wantMessage: "JSON-объектом"},
		{name: "string", body: `"x"`, wantMessage: "JSON-объектом"},
		{name: "number", body: `42`, wantMessage: "JSON-объектом"},
		{name: "null", body: `null`, wantMessage: "JSON-объектом"},
		{name: "trailing data", body: `{` + base + `} {}`, wantMessage: "корректным JSON"},
		{name: "duplicate key", body: `{` + base + `,"product_type":"credit_card"}`, wantMessage: `повторяется ключ "product_type"`},
		{name: "nested duplicate key", body: `{` + base + `,"x":{"a":1,"a":2}}`, wantMessage: `повторяется ключ "a"`},
		{name: "invalid UTF-8", body: `{` + base + `,"props":["` + "\xff\xfe" + `"]}`, wantMessage: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLoanApproval([]byte(tt.body))
			if tt.wantProps == nil && tt.wantMessage == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if !reflect.DeepEqual(got.Amount, tt.wantAmount) || !reflect.DeepEqual(got.Term, tt.wantTerm) {
					t.Fatalf("amount, term = %v, %v; want %v, %v", got.Amount, got.Term, tt.wantAmount, tt.wantTerm)
				}
				if got.Phone.Canonical() != "+79330445040" {
					t.Fatalf("phone = %s", got.Phone.Masked())
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != EInvalid {
				t.Fatalf("error = %v, want an invalid-request error", err)
			}
			var props []string
			for _, d := range e.Details {
				props = append(props, d.Property)
			}
			want := tt.wantProps
			if want == nil {
				want = []string{"body"} // a problem with the body as a whole names the body
			}
			if !reflect.DeepEqual(props, want) {
				t.Errorf("properties = %v, want %v", props, want)
			}
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("message %q does not contain %q", e.Message, tt.wantMessage)
			}
		})
	}
}

func TestParseLoanApprovalKeepsIDSpelling(t *testing.T) {
	got, err := parseLoanApproval([]byte(`{"search_id":"E2B4948B-7D8A-4EEC-875C-B1C11D7D8372","phone_number":"+7 (933) 044-50-40","product_type":"credit_card"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.SearchID != "E2B4948B-7D8A-4EEC-875C-B1C11D7D8372" || got.key() != "e2b4948b-7d8a-4eec-875c-b1c11d7d8372" {
		t.Fatalf("id = %q, key = %q", got.SearchID, got.key())
	}
}

func FuzzParseLoanApproval(f *testing.F) {
	f.Add([]byte(`{"search_id":"e2b4948b-7d8a-4eec-875c-b1c11d7d8372","phone_number":"9330445040","product_type":"loan","amount":500000.00,"term":36}`))
	f.Add([]byte(`{"a":{"a":[1,{"b":2,"b":3}]}}`))
	f.Add([]byte(`{"amount":"1e20","term":"-0"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseLoanApproval(body)
		if err == nil {
			if got.SearchID == "" || !got.ProductType.Valid() || got.Phone.Canonical() == "" {
				t.Fatalf("accepted an incomplete request: %+v", got)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != EInvalid {
			t.Fatalf("non-400 error: %v", err)
		}
	})
}

// A number is a number however far its exponent goes: out of range or too precise, never
// "not a number".
func TestFarExponentsAreNumbersOutOfRange(t *testing.T) {
	base := `"search_id":"e2b4948b-7d8a-4eec-875c-b1c11d7d8372","phone_number":"9330445040","product_type":"loan"`
	for _, tt := range []struct{ field, value, want string }{
		{"amount", "1e-21", "не больше двух знаков после запятой"},
		{"amount", "1e-999999999", "не больше двух знаков после запятой"},
		{"amount", "1e21", "больше 0 и не больше 100 000 000"},
		{"amount", "-1e999", "больше 0 и не больше 100 000 000"},
		{"amount", "0e-999", "больше 0 и не больше 100 000 000"},
		{"amount", `"1e-21"`, "не больше двух знаков после запятой"},
		{"term", "1e-21", "целым числом месяцев"},
		{"term", "1e400", "от 1 до 360"},
		{"amount", "1e99999999999999999999", "больше 0 и не больше 100 000 000"},
		{"amount", "1e-99999999999999999999", "не больше двух знаков после запятой"},
	} {
		_, err := parseLoanApproval([]byte(`{` + base + `,"` + tt.field + `":` + tt.value + `}`))
		var e *Error
		if !errors.As(err, &e) || len(e.Details) != 1 || e.Details[0].Property != tt.field || !strings.Contains(e.Details[0].Message, tt.want) {
			t.Errorf("%s %s: %v, want a message on %s saying %q", tt.field, tt.value, err, tt.field, tt.want)
		}
	}
}
