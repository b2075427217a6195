package catalog

import (
	"reflect"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

// Whatever the file says, Parse returns a valid catalog or an error, never a panic; an
// accepted catalog written back out reads as the same catalog.
func FuzzParse(f *testing.F) {
	f.Add(DemoJSON())
	f.Add([]byte(`{"products":[]}`))
	f.Add([]byte(`{"products":[{"id":"a","id":"b"}]}`))
	f.Add([]byte("{\"products\":[{\"id\":\"\xff\"}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a catalog with its error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a catalog that does not validate: %v", err)
		}
		out, err := jsonv2.Marshal(c)
		if err != nil {
			t.Fatalf("an accepted catalog does not encode: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("an accepted catalog, written out, is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip changed the catalog:\n%+v\n%+v", c, back)
		}
	})
}
