package money

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseAmount(t *testing.T) {
	tests := []struct {
		in      string
		want    Amount
		wantErr error
	}{
		{"500000", 50000000, nil},
		{"500000.00", 50000000, nil},
		{"906.85", 90685, nil},
		{"906.5", 90650, nil},
		{"0.01", 1, nil},
		{"1.500", 150, nil},
		{"-3", -300, nil},
		{"1.005", 0, ErrPrecision},
		{"1e5", 0, ErrSyntax},
		{"", 0, ErrSyntax},
		{".5", 0, ErrSyntax},
		{"5.", 0, ErrSyntax},
		{"+5", 0, ErrSyntax},
		{"1 000", 0, ErrSyntax},
		{"99999999999999999999", 0, ErrRange},
	}
	for _, tt := range tests {
		got, err := ParseAmount(tt.in)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{Amount(3000000).String(), "30000"},
		{Amount(90685).String(), "906.85"},
		{Amount(90650).String(), "906.5"},
		{Amount(5).String(), "0.05"},
		{Amount(-5).String(), "-0.05"},
		{Rate(19900).String(), "19.9"},
		{Rate(21457).String(), "21.457"},
		{Rate(1).String(), "0.001"},
		{Percent(5).String(), "5"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := struct {
		A Amount `json:"a"`
		R Rate   `json:"r"`
	}{Amount(123456), Rate(27900)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"a":1234.56,"r":27.9}` {
		t.Fatalf("marshal = %s", b)
	}
	out := in
	out.A, out.R = 0, 0
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("unmarshal = %+v, %v", out, err)
	}
}
