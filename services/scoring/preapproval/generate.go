package preapproval

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
)

// GenerateOptions shape a generated export.
type GenerateOptions struct {
	Rows int   // data rows, not counting the header
	Seed int64 // the same options always give the same bytes
	// BadEvery makes every BadEvery-th row deliberately bad (0: none), cycling through a
	// bad phone, product, decision, limit, grade, date and field count.
	BadEvery int
	// AllProducts gives every client both a loan and a card offer: the most entries for a
	// number of clients, which is what sizing the index needs.
	AllProducts bool
	// ValidFrom is the first day valid_until dates count from; zero means 2026-07-01.
	// Dates fall 1 to 120 days later.
	ValidFrom time.Time
}

// Generate writes an export of n plausible rows for tests, benchmarks and demos.
func Generate(w io.Writer, n int, seed int64) error {
	return GenerateWith(w, GenerateOptions{Rows: n, Seed: seed})
}

// BadKinds is how many different bad rows GenerateWith cycles through.
const BadKinds = 7

// GenerateWith writes an export shaped by o. Clients hold a loan offer, a card offer or
// both (about 60 %, unless AllProducts), their phones are distinct and spelled in the forms banks export, and a
// client's rows are adjacent.
func GenerateWith(w io.Writer, o GenerateOptions) error {
	if o.Rows < 0 || o.BadEvery < 0 {
		return errors.New("preapproval: generate: negative rows or bad-row interval")
	}
	from := o.ValidFrom
	if from.IsZero() {
		from = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	}
	fromDay := dayOf(time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, moscow))
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x9e3779b97f4a7c15))
	// An offset from the seed, then a stride coprime with 10^9, maps client numbers to
	// distinct nine-digit tails.
	offset := rng.Uint64() % 1_000_000_000

	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(Header + "\n")
	var line []byte
	row, bad := 0, 0
	for client := uint64(0); row < o.Rows; client++ {
		products := []string{"loan", "credit_card"}
		switch p := rng.IntN(100); {
		case o.AllProducts:
		case p < 25:
			products = products[:1]
		case p < 40:
			products = products[1:]
		}
		tail := (client*387_420_489 + offset) % 1_000_000_000 // 3^18, coprime with 10^9
		for _, product := range products {
			if row == o.Rows {
				break
			}
			row++
			line = appendRow(line[:0], rng, client, tail, product, fromDay)
			if o.BadEvery > 0 && row%o.BadEvery == 0 {
				line = appendBadRow(line[:0], bad%BadKinds)
				bad++
			}
			bw.Write(line)
		}
	}
	return bw.Flush()
}

func appendRow(b []byte, rng *rand.Rand, client, tail uint64, product string, fromDay int32) []byte {
	digits := strconv.AppendUint(make([]byte, 0, 16), 9_000_000_000+tail, 10)
	switch client % 4 {
	case 0:
		b = append(b, digits...)
	case 1:
		b = append(append(b, "+7"...), digits...)
	case 2:
		b = append(append(b, '8'), digits...)
	default:
		b = append(b, `"+7 (`...)
		b = append(b, digits[0:3]...)
		b = append(b, ") "...)
		b = append(b, digits[3:6]...)
		b = append(b, '-')
		b = append(b, digits[6:8]...)
		b = append(b, '-')
		b = append(b, digits[8:10]...)
		b = append(b, '"')
	}
	b = append(b, ',')
	b = append(b, product...)
	if rng.IntN(5) == 0 {
		b = append(b, ",full_approved,"...)
	} else {
		b = append(b, ",pre_approved,"...)
	}
	thousands := 10 + rng.IntN(990) // cards: 10 000 to 999 000 roubles
	if product == "loan" {
		thousands = 30 + rng.IntN(2971) // loans: 30 000 to 3 000 000
	}
	b = strconv.AppendInt(b, int64(thousands)*1000, 10)
	b = append(b, ',')
	switch g := rng.IntN(100); {
	case g < 20:
		b = append(b, 'A')
	case g < 55:
		b = append(b, 'B')
	case g < 85:
		b = append(b, 'C')
	default:
		b = append(b, 'D')
	}
	b = append(b, ',')
	b = moscowMidnight(fromDay+1+int32(rng.IntN(120))).AppendFormat(b, time.DateOnly)
	return append(b, '\n')
}

var badRows = [BadKinds]string{
	"12345,loan,pre_approved,100000,A,2026-12-31\n",
	"9001234567,mortgage,pre_approved,100000,A,2026-12-31\n",
	"9001234567,loan,approved,100000,A,2026-12-31\n",
	"9001234567,loan,pre_approved,-5000,A,2026-12-31\n",
	"9001234567,loan,pre_approved,100000,A grade,2026-12-31\n",
	"9001234567,loan,pre_approved,100000,A,2026-02-30\n",
	"9001234567,loan,pre_approved,100000\n",
}

func appendBadRow(b []byte, kind int) []byte { return append(b, badRows[kind]...) }
