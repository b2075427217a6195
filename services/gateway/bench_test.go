package gateway

import (
	"testing"
)

// BenchmarkParseLoanApproval measures validating one POST body, the gateway's own CPU cost
// per search: go test -run '^$' -bench ParseLoanApproval -benchmem ./services/gateway
func BenchmarkParseLoanApproval(b *testing.B) {
	bodies := map[string]string{
		"spec_example": `{"search_id":"e2b4948b-7d8a-4eec-875c-b1c11d7d8372","phone_number":"9330445040","product_type":"loan","amount":500000.00,"term":36,"props":["a","b"]}`,
		"all_invalid":  `{"search_id":"x","phone_number":"1","product_type":"car","amount":-1,"term":"x","props":1}`,
	}
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			data := []byte(body)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = parseLoanApproval(data)
			}
		})
	}
}
