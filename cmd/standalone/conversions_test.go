package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
)

// The whole loop through the real binary: a search's link verifies on the bank's side with
// nothing but the JWKS document, the contract reported for it is recorded, and it reaches a
// Yandex-shaped endpoint (here one that fails first) under its stable id.
func TestConversionLoop(t *testing.T) {
	var mu sync.Mutex
	var items []map[string]any
	calls := 0
	yandex := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first send fails
			return
		}
		var b struct {
			PartnerID int64            `json:"partner_id"`
			Data      []map[string]any `json:"data"`
		}
		if r.Header.Get("Authorization") != "Bearer y-token" || json.NewDecoder(r.Body).Decode(&b) != nil || b.PartnerID != 42 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		items = append(items, b.Data...)
	}))
	defer yandex.Close()
	sys := startSystem(t, t.TempDir(), map[string]string{
		"YANDEX_CONVERSIONS_URL": yandex.URL, "YANDEX_TOKEN": "y-token", "YANDEX_PARTNER_ID": "42",
		"DELIVERY_BATCH_WAIT": "50ms", "DELIVERY_RETRY_BASE": "50ms",
	})

	// Spelled in capitals, as Yandex may: the link and the conversion carry it back as sent.
	id := strings.ToUpper(uuid.NewString())
	status, body := sys.call(t, "POST", path, request(id, "9330445040", "loan"))
	if status != 200 || body["decision"] != "has_approve" {
		t.Fatalf("POST = %d %v", status, body)
	}
	offer := body["data"].([]any)[0].(map[string]any)
	link := offer["propousal_link"].(map[string]any)["link"].(string)

	// The link says nothing of the client: no search id, no figure, under 250 bytes.
	amount := offer["amount"].(map[string]any)
	maxAmount := strconv.FormatFloat(amount["max"].(float64), 'f', -1, 64)
	if len(link) > 250 || strings.Contains(strings.ToLower(link), strings.ToLower(id)) || strings.Contains(link, maxAmount) ||
		strings.Contains(link, "cash-") {
		t.Fatalf("the link %s (%d bytes) gives away the search or the offer", link, len(link))
	}
	// The bank's site learns the offer from the conversions service.
	res, err := http.Post(sys.conversions+"/v1/links/verify", "application/json", strings.NewReader(fmt.Sprintf(`{"link": %q}`, link)))
	if err != nil {
		t.Fatal(err)
	}
	var verdict struct {
		Valid  bool
		Claims offerlink.Claims
	}
	err = json.NewDecoder(res.Body).Decode(&verdict)
	res.Body.Close()
	claims := verdict.Claims
	if err != nil || !verdict.Valid {
		t.Fatalf("the site's verification of %s: %v %+v", link, err, verdict)
	}
	if claims.SearchID != id || claims.Amount.Max.Float() != amount["max"].(float64) || !contracts.ValidOfferID(claims.Offer) {
		t.Fatalf("claims %+v do not state the offer %v", claims, offer)
	}

	today := time.Now().In(time.FixedZone("MSK", 3*3600)).Format("2006-01-02")
	report := fmt.Sprintf(`{"link": %q, "contract_date": %q, "amount": 500000, "term": 36, "additional_services": false}`, link, today)
	for i, want := range []int{http.StatusCreated, http.StatusOK} { // the second is a repeat
		res, err := http.Post(sys.conversions+"/v1/conversions", "application/json", strings.NewReader(report))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("report %d = %d %s, want %d", i+1, res.StatusCode, b, want)
		}
	}
	convID := strings.ToLower(id) + "." + claims.Offer
	natstest.Eventually(t, 20*time.Second, func() error {
		res, err := http.Get(sys.conversions + "/v1/conversions/" + id + "/" + url.PathEscape(claims.Offer))
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var c struct{ State string }
		if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
			return err
		}
		if c.State != "delivered" {
			return fmt.Errorf("conversion is %s", c.State)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(items) != 1 || items[0]["request_id"] != id || items[0]["offer_id"] != claims.Offer ||
		items[0]["amount"] != 500000.0 || items[0]["additional_services"] != false || len(items[0]) != 4 {
		t.Fatalf("Yandex received %v, want the one conversion %s", items, convID)
	}
}
