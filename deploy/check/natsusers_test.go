package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/logtest"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/conversions"
	"github.com/demobank/yacredits/services/gateway"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/audit"
	"github.com/demobank/yacredits/services/scoring"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

// natsPasswords are the test's passwords for every variable the shipped configurations use.
var natsPasswords = map[string]string{
	"NATS_GATEWAY_PASSWORD": "gw0123456789abcdef", "NATS_SCORING_PASSWORD": "sc0123456789abcdef",
	"NATS_OFFERS_PASSWORD":      "of0123456789abcdef",
	"NATS_CONVERSIONS_PASSWORD": "cv0123456789abcdef", "NATS_PROVISION_PASSWORD": "pv0123456789abcdef",
	"NATS_CATALOG_PASSWORD": "ca0123456789abcdef", "NATS_IMPORTER_PASSWORD": "im0123456789abcdef",
	"NATS_AUDITOR_PASSWORD": "au0123456789abcdef",
	"NATS_ROUTE_PASSWORD":   "rt0123456789abcdef", "POD_NAME": "nats-0",
	"NATS_ROUTE_0": "nats://route:rt0123456789abcdef@127.0.0.1:1", "NATS_ROUTE_1": "nats://route:rt0123456789abcdef@127.0.0.1:2",
	"NATS_ROUTE_2": "nats://route:rt0123456789abcdef@127.0.0.1:3",
}

func password(user string) string { return natsPasswords["NATS_"+strings.ToUpper(user)+"_PASSWORD"] }

// shippedServer starts a real nats-server from a shipped configuration: its users and their
// permissions exactly as shipped, and only what cannot run here changed (the listen port, the
// store directory; for the cluster's configuration, a server of its own instead of three).
func shippedServer(t *testing.T, confPath string) *server.Server {
	t.Helper()
	opts := shippedOptions(t, confPath, "check")
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	return startServer(t, opts)
}

// shippedOptions reads a shipped configuration, its includes beside the k8s one, and
// changes only what cannot run here: the listen ports, the store directory, the name.
func shippedOptions(t *testing.T, confPath, name string) *server.Options {
	t.Helper()
	text, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := NATSConfig(string(text), natsPasswords, func(name string) (string, bool) {
		data, err := os.ReadFile(filepath.Join(k8sDir, "base", "nats", name))
		return string(data), err == nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.ProfPort = "127.0.0.1", -1, 0, 0
	opts.StoreDir, opts.PidFile, opts.NoLog, opts.NoSigs, opts.ServerName = t.TempDir(), "", true, true, name
	return opts
}

// connectAs opens a connection as user, as pkg/bus does, and collects the permission
// violations the server reports on it.
type userConn struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	mu         sync.Mutex
	violations []string
}

func connectAs(t *testing.T, url, user string) *userConn {
	t.Helper()
	u := &userConn{}
	nc, err := nats.Connect(url, nats.UserInfo(user, password(user)), nats.CustomInboxPrefix("_INBOX_"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			u.mu.Lock()
			u.violations = append(u.violations, err.Error())
			u.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("%s cannot connect: %v", user, err)
	}
	t.Cleanup(nc.Close)
	u.nc = nc
	u.js, _ = jetstream.New(nc)
	return u
}

// refused reports whether the server refused an operation on subject within a second.
func (u *userConn) refused(subject string) bool {
	_ = u.nc.Flush()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		u.mu.Lock()
		for _, v := range u.violations {
			if strings.Contains(v, "Permissions Violation") && strings.Contains(v, `"`+subject+`"`) {
				u.mu.Unlock()
				return true
			}
		}
		u.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Each shipped NATS configuration gives each service, each operators' role and the
// provisioner a user of its own, allowed what it needs and refused the rest: with their users the three services run
// a search through to done, and each user is refused what it must not do (before, one user
// held every right: the gateway's credentials could delete the LOAN stream, purge the
// searches bucket, rewrite the catalog and forge scoring's verdict).
func TestShippedNATSUsersAreLeastPrivilege(t *testing.T) {
	for _, conf := range []string{filepath.Join(root, "deploy", "compose", "nats.conf"), filepath.Join(k8sDir, "base", "nats", "nats.conf")} {
		t.Run(filepath.Base(filepath.Dir(conf)), func(t *testing.T) {
			s := shippedServer(t, conf)
			url := s.ClientURL()
			t.Run("the services work with their own users", func(t *testing.T) { runSearchAsServices(t, url) })
			refusals := []struct {
				user, what, subject string
				do                  func(u *userConn) error
			}{
				{"gateway", "delete a stream", "$JS.API.STREAM.DELETE.LOAN_DLQ",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.DELETE.LOAN_DLQ", nil) }},
				{"gateway", "purge the searches bucket", "$JS.API.STREAM.PURGE.KV_searches",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.PURGE.KV_searches", nil) }},
				{"gateway", "write the catalog", "$KV.catalog.current",
					func(u *userConn) error { return u.nc.Publish("$KV.catalog.current", []byte("{}")) }},
				{"gateway", "publish a verdict", "loan.v1.scored",
					func(u *userConn) error { return u.nc.Publish("loan.v1.scored", []byte("{}")) }},
				{"gateway", "subscribe to everything", ">",
					func(u *userConn) error { _, err := u.nc.Subscribe(">", func(*nats.Msg) {}); return err }},
				{"gateway", "write the pre-approvals", "$O.preapprovals.C.x",
					func(u *userConn) error { return u.nc.Publish("$O.preapprovals.C.x", nil) }},
				{"gateway", "read the pre-approvals' stream info", "$JS.API.STREAM.INFO.OBJ_preapprovals",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.INFO.OBJ_preapprovals", nil) }},
				{"auditor", "read the searches' stream info (it lists search ids)", "$JS.API.STREAM.INFO.KV_searches",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.INFO.KV_searches", nil) }},
				{"scoring", "accept a search", "loan.v1.requested",
					func(u *userConn) error { return u.nc.Publish("loan.v1.requested", []byte("{}")) }},
				{"scoring", "write the catalog", "$KV.catalog.current",
					func(u *userConn) error { return u.nc.Publish("$KV.catalog.current", []byte("{}")) }},
				{"scoring", "delete the searches bucket", "$JS.API.STREAM.DELETE.KV_searches",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.DELETE.KV_searches", nil) }},
				{"scoring", "read another service's replies", "_INBOX_gateway.>",
					func(u *userConn) error { _, err := u.nc.Subscribe("_INBOX_gateway.>", func(*nats.Msg) {}); return err }},
				{"offers", "publish a verdict", "loan.v1.scored",
					func(u *userConn) error { return u.nc.Publish("loan.v1.scored", []byte("{}")) }},
				{"offers", "purge the searches bucket", "$JS.API.STREAM.PURGE.KV_searches",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.PURGE.KV_searches", nil) }},
				{"scoring", "write the pre-approvals", "$O.preapprovals.C.x",
					func(u *userConn) error { return u.nc.Publish("$O.preapprovals.C.x", nil) }},
				{"scoring", "replace the pre-approvals' metadata", "$O.preapprovals.M.Y3VycmVudA==",
					func(u *userConn) error { return u.nc.Publish("$O.preapprovals.M.Y3VycmVudA==", nil) }},
				{"offers", "write the pre-approvals", "$O.preapprovals.C.x",
					func(u *userConn) error { return u.nc.Publish("$O.preapprovals.C.x", nil) }},
				{"catalog", "accept a search", "loan.v1.requested",
					func(u *userConn) error { return u.nc.Publish("loan.v1.requested", []byte("{}")) }},
				{"catalog", "write a search", "$KV.searches.x",
					func(u *userConn) error { return u.nc.Publish("$KV.searches.x", []byte("{}")) }},
				{"importer", "delete a stream", "$JS.API.STREAM.DELETE.LOAN",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.DELETE.LOAN", nil) }},
				{"conversions", "accept a search", "loan.v1.requested",
					func(u *userConn) error { return u.nc.Publish("loan.v1.requested", []byte("{}")) }},
				{"conversions", "write a search", "$KV.searches.x",
					func(u *userConn) error { return u.nc.Publish("$KV.searches.x", []byte("{}")) }},
				{"conversions", "read the pre-approvals' stream info", "$JS.API.STREAM.INFO.OBJ_preapprovals",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.INFO.OBJ_preapprovals", nil) }},
				{"conversions", "purge its own bucket", "$JS.API.STREAM.PURGE.KV_conversions",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.PURGE.KV_conversions", nil) }},
				{"gateway", "write a conversion", "$KV.conversions.x",
					func(u *userConn) error { return u.nc.Publish("$KV.conversions.x", []byte("{}")) }},
				{"offers", "write a conversion", "$KV.conversions.x",
					func(u *userConn) error { return u.nc.Publish("$KV.conversions.x", []byte("{}")) }},
				{"scoring", "read the conversions", "$JS.API.STREAM.MSG.GET.KV_conversions",
					func(u *userConn) error { return u.nc.Publish("$JS.API.STREAM.MSG.GET.KV_conversions", nil) }},
			}
			// The indirect routes: no user may create a stream under a name of its own
			// choosing, so none can gather other streams into one through sources or a mirror;
			// no user but the provisioner may create, update, delete or purge any of ours
			// (an update adding sources, republish or a transform, or lowering a limit, would
			// read, forge or erase another stream's messages); none may make or remove a
			// shared durable consumer (one made to deliver elsewhere would leak or starve its
			// work); and no consumer on a stream a user may not consume, whatever subject it
			// would deliver to.
			type refusal = struct {
				user, what, subject string
				do                  func(u *userConn) error
			}
			escape := func(field string) []byte {
				return []byte(`{"name":"ESCAPE","subjects":["escape.>"],` + field + `}`)
			}
			streams := []string{"LOAN", "LOAN_ADVISORIES", "LOAN_DLQ", "KV_searches", "KV_gateway", "KV_catalog",
				"KV_ceilings", "KV_policy", "OBJ_preapprovals", "KV_conversions", "AUDIT"}
			// Each shared durable consumer and the one user that pulls from it.
			durables := map[string]string{"LOAN.scoring": "scoring", "LOAN.offers": "offers",
				"LOAN_ADVISORIES.scoring-max-deliveries": "scoring", "LOAN_ADVISORIES.offers-max-deliveries": "offers",
				"KV_searches.audit": "offers", "KV_conversions.conversions-delivery": "conversions"}
			publish := func(subject string, body []byte) func(u *userConn) error {
				return func(u *userConn) error { return u.nc.Publish(subject, body) }
			}
			// A replaced object's chunks are purged by the object store's own Put: the
			// pre-approvals' one writer, the import, holds that purge. (Scoring builds its seed
			// in memory and may not write or purge the store.)
			purges := map[string]bool{"importer OBJ_preapprovals": true}
			for _, user := range []string{"gateway", "scoring", "offers", "conversions", "catalog", "importer", "auditor"} {
				refusals = append(refusals,
					refusal{user, "create a stream that sources the pre-approvals, the audit trail and the conversions", "$JS.API.STREAM.CREATE.ESCAPE",
						publish("$JS.API.STREAM.CREATE.ESCAPE", escape(`"sources":[{"name":"OBJ_preapprovals"},{"name":"AUDIT"},{"name":"KV_conversions"}]`))},
					refusal{user, "create a mirror of the searches", "$JS.API.STREAM.CREATE.ESCAPE",
						publish("$JS.API.STREAM.CREATE.ESCAPE", []byte(`{"name":"ESCAPE","mirror":{"name":"KV_searches"}}`))})
				for _, st := range streams {
					update := []byte(`{"name":"` + st + `","subjects":["` + st + `.>"],"max_msgs":1,"max_age":1000000000,` +
						`"sources":[{"name":"OBJ_preapprovals"},{"name":"AUDIT"}],"republish":{"src":">","dest":"escape.>"},` +
						`"subject_transform":{"src":">","dest":"escape.>"}}`)
					refusals = append(refusals,
						refusal{user, "update " + st + " with sources, republish, a transform and limits", "$JS.API.STREAM.UPDATE." + st,
							publish("$JS.API.STREAM.UPDATE."+st, update)},
						refusal{user, "create " + st, "$JS.API.STREAM.CREATE." + st, publish("$JS.API.STREAM.CREATE."+st, update)},
						refusal{user, "delete " + st, "$JS.API.STREAM.DELETE." + st, publish("$JS.API.STREAM.DELETE."+st, nil)})
					if !purges[user+" "+st] {
						refusals = append(refusals, refusal{user, "purge " + st, "$JS.API.STREAM.PURGE." + st, publish("$JS.API.STREAM.PURGE."+st, nil)})
					}
				}
				for d, owner := range durables {
					if user != owner {
						// Pulling without acknowledging would hold its messages from the owner.
						refusals = append(refusals, refusal{user, "pull from the durable consumer " + d, "$JS.API.CONSUMER.MSG.NEXT." + d,
							publish("$JS.API.CONSUMER.MSG.NEXT."+d, []byte(`{"batch":1000,"expires":60000000000}`))})
					}
					stream, name, _ := strings.Cut(d, ".")
					body := []byte(`{"stream_name":"` + stream + `","config":{"durable_name":"` + name + `","deliver_subject":"loan.v1.scored","ack_policy":"none"}}`)
					refusals = append(refusals,
						refusal{user, "make the durable consumer " + d + " deliver elsewhere", "$JS.API.CONSUMER.CREATE." + d,
							publish("$JS.API.CONSUMER.CREATE."+d, body)},
						refusal{user, "make the durable consumer " + d + " deliver elsewhere (filtered form)", "$JS.API.CONSUMER.CREATE." + d + ".x",
							publish("$JS.API.CONSUMER.CREATE."+d+".x", body)},
						refusal{user, "delete the durable consumer " + d, "$JS.API.CONSUMER.DELETE." + d,
							publish("$JS.API.CONSUMER.DELETE."+d, nil)})
				}
			}
			// The operators' roles, each to its job: the catalog user changes the documents and
			// reads nothing else; the importer writes the snapshot and reads nothing else; the
			// auditor reads the searches and the trail and writes nothing. (The conversions'
			// operators go through the conversions service: no NATS user.)
			for _, r := range []struct{ user, what, subject string }{
				{"catalog", "read a search", "$JS.API.STREAM.MSG.GET.KV_searches"},
				{"catalog", "read the audit trail", "$JS.API.STREAM.INFO.AUDIT"},
				{"catalog", "read the pre-approvals", "$JS.API.STREAM.MSG.GET.OBJ_preapprovals"},
				{"catalog", "write the pre-approvals", "$O.preapprovals.C.x"},
				{"catalog", "read a conversion", "$JS.API.STREAM.MSG.GET.KV_conversions"},
				{"catalog", "write a conversion", "$KV.conversions.x"},
				{"importer", "read a search", "$JS.API.STREAM.MSG.GET.KV_searches"},
				{"importer", "read the audit trail", "$JS.API.STREAM.INFO.AUDIT"},
				{"importer", "watch the pre-approvals", "$JS.API.CONSUMER.CREATE.OBJ_preapprovals.x1.$O.preapprovals.C.x"},
				{"importer", "write the catalog", "$KV.catalog.current"},
				{"importer", "read the catalog", "$JS.API.DIRECT.GET.KV_catalog.$KV.catalog.current"},
				{"importer", "read a conversion", "$JS.API.STREAM.MSG.GET.KV_conversions"},
				{"importer", "read the dead letters", "$JS.API.STREAM.MSG.GET.LOAN_DLQ"},
				{"importer", "read the pre-approvals' chunks by sequence", "$JS.API.STREAM.MSG.GET.OBJ_preapprovals"},
				{"importer", "read a pre-approvals' chunk", "$JS.API.DIRECT.GET.OBJ_preapprovals.$O.preapprovals.C.x"},
				{"catalog", "make a consumer of the catalog", "$JS.API.CONSUMER.CREATE.KV_catalog.x1.$KV.catalog.current"},
				{"catalog", "make a consumer of the policy", "$JS.API.CONSUMER.CREATE.KV_policy.x1"},
				{"auditor", "make a consumer of the audit trail", "$JS.API.CONSUMER.CREATE.AUDIT.x1"},
				{"auditor", "make a consumer of the audit trail (old form)", "$JS.API.CONSUMER.CREATE.AUDIT"},
				{"auditor", "write the catalog", "$KV.catalog.current"},
				{"auditor", "write the policy", "$KV.policy.current"},
				{"auditor", "write the pre-approvals", "$O.preapprovals.C.x"},
				{"auditor", "read the pre-approvals", "$JS.API.STREAM.MSG.GET.OBJ_preapprovals"},
				{"auditor", "write a search", "$KV.searches.x"},
				{"auditor", "write the audit trail", "audit.v1.decisions"},
				{"auditor", "read a conversion", "$JS.API.STREAM.MSG.GET.KV_conversions"},
				{"auditor", "write a conversion", "$KV.conversions.x"},
				{"auditor", "watch the searches", "$JS.API.CONSUMER.CREATE.KV_searches.x1.$KV.searches.x"},
				// The gateway reads the trail's stream info (its fill, to shed) and nothing of it.
				{"gateway", "read the audit trail by sequence", "$JS.API.STREAM.MSG.GET.AUDIT"},
				{"gateway", "read the audit trail directly", "$JS.API.DIRECT.GET.AUDIT"},
				{"gateway", "make a consumer of the audit trail", "$JS.API.CONSUMER.CREATE.AUDIT.x1"},
				{"gateway", "make a consumer of the audit trail (old form)", "$JS.API.CONSUMER.CREATE.AUDIT"},
			} {
				refusals = append(refusals, refusal{r.user, r.what, r.subject, publish(r.subject, []byte(`{}`))})
			}
			// The provisioner makes and shapes, and is given no right to read or write a message.
			for _, r := range []struct{ what, subject string }{
				{"read a search", "$JS.API.STREAM.MSG.GET.KV_searches"},
				{"read the audit trail", "$JS.API.STREAM.MSG.GET.AUDIT"},
				{"read a conversion", "$JS.API.STREAM.MSG.GET.KV_conversions"},
				{"read the pre-approvals", "$JS.API.STREAM.MSG.GET.OBJ_preapprovals"},
				{"read the catalog directly", "$JS.API.DIRECT.GET.KV_catalog.$KV.catalog.current"},
				{"watch the searches", "$JS.API.CONSUMER.CREATE.KV_searches"},
				{"make a consumer of its own on the searches", "$JS.API.CONSUMER.CREATE.KV_searches.peek.>"},
				{"accept a search", "loan.v1.requested"},
				{"publish a verdict", "loan.v1.scored"},
				{"write a search", "$KV.searches.x"},
				{"write the audit trail", "audit.v1.decisions"},
				{"write a conversion", "$KV.conversions.x"},
				{"write the pre-approvals", "$O.preapprovals.C.x"},
				{"delete the audit trail", "$JS.API.STREAM.DELETE.AUDIT"},
				{"delete the searches", "$JS.API.STREAM.DELETE.KV_searches"},
				{"purge the searches", "$JS.API.STREAM.PURGE.KV_searches"},
				{"purge the pre-approvals", "$JS.API.STREAM.PURGE.OBJ_preapprovals"},
				{"create a stream of its own", "$JS.API.STREAM.CREATE.ESCAPE"},
			} {
				refusals = append(refusals, refusal{"provision", r.what, r.subject, publish(r.subject, []byte(`{}`))})
			}
			refusals = append(refusals, refusal{"provision", "subscribe to everything", ">",
				func(u *userConn) error { _, err := u.nc.Subscribe(">", func(*nats.Msg) {}); return err }})
			// No user but the provisioner makes a consumer of any kind on any stream, in any
			// form of the create subject: JetStream delivers a consumer's messages as the
			// account, to whatever subject its maker names (here the verdicts', which LOAN
			// keeps and offers prices), so that one consumer is a route from any stream into
			// any other and into any user's inbox. The services read by message gets, and the
			// gateway follows the searches through their stream's republish instead.
			for _, user := range []string{"gateway", "scoring", "offers", "conversions", "catalog", "importer", "auditor"} {
				for _, st := range streams {
					body := []byte(`{"stream_name":"` + st + `","config":{"deliver_subject":"loan.v1.scored","ack_policy":"none"}}`)
					for _, form := range []struct{ name, subject string }{
						{"", "$JS.API.CONSUMER.CREATE." + st},
						{" (named form)", "$JS.API.CONSUMER.CREATE." + st + ".x1"},
						{" (filtered form)", "$JS.API.CONSUMER.CREATE." + st + ".x1.>"},
						{" (durable form)", "$JS.API.CONSUMER.DURABLE.CREATE." + st + ".x1"},
					} {
						subject := strings.TrimSuffix(form.subject, ">") + "x"
						refusals = append(refusals, refusal{user, "make " + st + " deliver into the verdicts' subject" + form.name, subject,
							publish(subject, body)})
					}
				}
				// The searches as their stream republishes them are the gateway's alone, and
				// no one may forge one (the gateway answers from it).
				if user != "gateway" {
					refusals = append(refusals, refusal{user, "read the searches as they are written", "searches.v1.written.>",
						func(u *userConn) error {
							_, err := u.nc.Subscribe("searches.v1.written.>", func(*nats.Msg) {})
							return err
						}})
				}
				refusals = append(refusals, refusal{user, "forge a written search", "searches.v1.written.x", publish("searches.v1.written.x", []byte(`{}`))})
			}
			refusals = append(refusals, refusal{"provision", "forge a written search", "searches.v1.written.x", publish("searches.v1.written.x", []byte(`{}`))},
				refusal{"provision", "read the searches as they are written", "searches.v1.written.>",
					func(u *userConn) error {
						_, err := u.nc.Subscribe("searches.v1.written.>", func(*nats.Msg) {})
						return err
					}})
			for _, r := range refusals {
				t.Run(r.user+" may not "+r.what, func(t *testing.T) {
					u := connectAs(t, url, r.user)
					if err := r.do(u); err != nil {
						t.Fatal(err)
					}
					if !u.refused(r.subject) {
						t.Fatalf("%s could %s (%s)", r.user, r.what, r.subject)
					}
				})
			}
			// A reply subject and a pull's reply are not checked against anyone's rights: within
			// one account JetStream would answer into whatever subject the asker names, and a
			// stream there stores it (an answer in the audit trail, scoring's own work in the
			// searches), or another user reads it. Each user but the provisioner is in an
			// account of its own, so an answer goes back through the import into the asker's
			// account alone, where no stream and no other user is.
			t.Run("a reply reaches no stream and no other user", func(t *testing.T) {
				ctx := natstest.Context(t, 30*time.Second)
				// What each user may publish to anyway: a reply into it gains nothing.
				mayPublish := map[string][]string{}
				for _, u := range shippedOptions(t, conf, "rights").Users {
					mayPublish[u.Username] = u.Permissions.Publish.Allow
				}
				admin := connectAs(t, url, "provision")
				held := func() map[string]uint64 {
					t.Helper()
					n := map[string]uint64{}
					for _, st := range streams {
						s, err := admin.js.Stream(ctx, st)
						if err != nil {
							t.Fatalf("%s: %v", st, err)
						}
						n[st] = s.CachedInfo().State.Msgs
					}
					return n
				}
				spy := connectAs(t, url, "scoring") // reads its own inbox, where no one else's answer may come
				stolen, err := spy.nc.SubscribeSync("_INBOX_scoring.stolen")
				if err != nil {
					t.Fatal(err)
				}
				before := held()
				replies := []string{"loan.v1.scored", "loan.v1.requested", "loan.v1.deadletter", "audit.v1.decisions",
					"$KV.searches.forged", "$KV.conversions.forged", "$KV.catalog.current", "$KV.policy.current",
					"$O.preapprovals.C.forged", "_INBOX_scoring.stolen"}
				for _, user := range []string{"gateway", "scoring", "offers", "conversions", "catalog", "importer", "auditor"} {
					u := connectAs(t, url, user)
					for _, reply := range replies {
						if reply == "_INBOX_"+user+".stolen" || slices.ContainsFunc(mayPublish[user], func(allowed string) bool { return subjectMatches(allowed, reply) }) {
							continue
						}
						if err := u.nc.PublishRequest("$JS.API.INFO", reply, nil); err != nil {
							t.Fatal(err)
						}
					}
					if user == "scoring" {
						// Its own work, pulled with a reply into the audit trail.
						if err := u.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.LOAN.scoring", "audit.v1.decisions", []byte(`{"batch":1,"no_wait":true}`)); err != nil {
							t.Fatal(err)
						}
					}
					// The API answers in order: once this is answered, so are the ones before.
					if _, err := u.nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
						t.Fatalf("%s: %v", user, err)
					}
				}
				if after := held(); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("messages held before the replies %v, after %v", before, after)
				}
				if err := spy.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if n, _, _ := stolen.Pending(); n > 0 {
					m, _ := stolen.NextMsg(0)
					t.Errorf("scoring's inbox got %d answers to others' requests, the first on %s", n, m.Subject)
				}
			})
			t.Run("catalog may change the catalog", func(t *testing.T) {
				u := connectAs(t, url, "catalog")
				kv, err := offers.CatalogDocument.Bind(context.Background(), u.js)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kv.Put(context.Background(), "current", []byte(`{"products":[]}`)); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("the importer may import the pre-approvals", func(t *testing.T) {
				u := connectAs(t, url, "importer")
				ctx := natstest.Context(t, 20*time.Second)
				obs, err := snapshotstore.Open(ctx, u.js)
				if err != nil {
					t.Fatal(err)
				}
				h, err := phone.NewHasher([]byte("c5b11e82ed8cd340b41b186c62e4917e03ceed0823e662c2c063a8a80776404a"))
				if err != nil {
					t.Fatal(err)
				}
				export := "phone,product_type,decision,limit,grade,valid_until\n9330445040,loan,pre_approved,1000000,A,2099-12-31\n"
				res, err := snapshotstore.Import(ctx, obs, contracts.PreapprovalsObject, snapshotstore.BytesSource("export.csv", []byte(export)),
					snapshotstore.Options{Hasher: h})
				if err != nil || res == nil {
					t.Fatalf("import as the importer: %+v, %v", res, err)
				}
				if u.refused("$O.preapprovals.>") {
					t.Fatal("the import was refused a write")
				}
			})
			t.Run("the provisioner remakes a consumer it cannot update", func(t *testing.T) {
				u := connectAs(t, url, "provision")
				ctx := natstest.Context(t, 20*time.Second)
				audit := provision.AuditConsumer()
				if err := u.js.DeleteConsumer(ctx, audit.On, audit.Consumer.Durable); err != nil {
					t.Fatal(err)
				}
				other := audit.Consumer
				other.DeliverPolicy = jetstream.DeliverNewPolicy
				if _, err := u.js.CreateConsumer(ctx, audit.On, other); err != nil {
					t.Fatal(err)
				}
				done, err := provision.Apply(ctx, u.js, provision.Plan(provision.Defaults(1)))
				if err != nil || !slices.Contains(done, "replaced consumer KV_searches/audit") {
					t.Fatalf("changes %q, %v", done, err)
				}
			})
			t.Run("nobody without a password gets in", func(t *testing.T) {
				if nc, err := nats.Connect(url); err == nil {
					nc.Close()
					t.Fatal("an anonymous client connected")
				}
			})
		})
	}
}

// runSearchAsServices runs the gateway, scoring and offers with their own NATS users, as
// deployed, and a search through them to done.
func runSearchAsServices(t *testing.T, url string) {
	key := "c5b11e82ed8cd340b41b186c62e4917e03ceed0823e662c2c063a8a80776404a"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	linkKey, err := offerlink.GenerateKey("check")
	if err != nil {
		t.Fatal(err)
	}
	keyData, _ := offerlink.NewKeySet(linkKey).Marshal()
	keyFile := filepath.Join(t.TempDir(), "link-keys.json")
	if err := os.WriteFile(keyFile, keyData, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(user string, extra map[string]string) config.Getenv {
		return func(k string) string {
			m := map[string]string{"NATS_URL": url, "NATS_USER": user, "NATS_PASSWORD": password(user), "PHONE_HASH_KEY": key,
				"LINK_KEYS_FILE": keyFile, "AUDIT_PSEUDONYM_KEY": "9d6c1e0f2b8a47d3a5e1c0b9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b"}
			for k, v := range extra {
				m[k] = v
			}
			return m[k]
		}
	}
	connect := func(user string) jetstream.JetStream {
		nc, err := bus.Connect(ctx, config.NATS{URL: url, User: user, Password: password(user), ConnectTimeout: 5 * time.Second}, user)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return js
	}
	// The provisioner first, with its own user: everything the plan holds, which nothing
	// else may make. The services then only check and bind, each with its own user.
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	r := config.NewReader(env("provision", nil))
	if _, err := provision.Apply(pctx, connect("provision"), provision.Plan(provision.ReadSettings(r, 1))); err != nil {
		t.Fatalf("the provision user cannot provision: %v", err)
	}
	logs := &logtest.Buffer{}
	log := zerolog.New(logs)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	gwCfg, err := gateway.LoadConfig(env("gateway", map[string]string{"HTTP_ADDR": "127.0.0.1:0"}))
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	gwJS := connect("gateway")
	run("gateway", func() error {
		return gateway.Run(ctx, gwCfg, gateway.Deps{JS: gwJS, Log: log, Listening: func(api, _ net.Addr) { addr <- api }})
	})
	scCfg, err := scoring.LoadConfig(env("scoring", nil))
	if err != nil {
		t.Fatal(err)
	}
	scJS := connect("scoring")
	var checksMu sync.Mutex
	var checks []health.Check // scoring's and offers' readiness, as their own users see it
	collect := func(prefix string) func([]health.Check) {
		return func(cs []health.Check) {
			checksMu.Lock()
			defer checksMu.Unlock()
			checks = append(checks, health.Named(prefix, cs)...)
		}
	}
	run("scoring", func() error {
		return scoring.Run(ctx, scCfg, scoring.Deps{JS: scJS, Log: log, Checks: collect("scoring: ")})
	})
	ofCfg, err := offers.LoadConfig(env("offers", nil))
	if err != nil {
		t.Fatal(err)
	}
	ofJS := connect("offers")
	run("offers", func() error {
		return offers.Run(ctx, ofCfg, offers.Deps{JS: ofJS, Log: log, Checks: collect("offers: ")})
	})
	delivered := make(chan string, 10)
	yandex := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		delivered <- string(b)
	}))
	t.Cleanup(yandex.Close)
	internal := natstest.FreeAddr(t)
	cvCfg, err := conversions.LoadConfig(env("conversions", map[string]string{"CONVERSIONS_ADDR": internal,
		"YANDEX_CONVERSIONS_URL": yandex.URL, "YANDEX_TOKEN": "t", "YANDEX_PARTNER_ID": "7", "DELIVERY_BATCH_WAIT": "50ms"}))
	if err != nil {
		t.Fatal(err)
	}
	cvJS := connect("conversions")
	run("conversions", func() error {
		return conversions.Run(ctx, cvCfg, conversions.Deps{JS: cvJS, Log: log, Checks: collect("conversions: ")})
	})
	base := "http://" + (<-addr).String()
	searchID := uuid.NewString()
	body := `{"search_id":"` + searchID + `","phone_number":"9330445040","product_type":"loan","amount":500000,"term":36}`
	deadline := time.Now().Add(30 * time.Second)
	var answer []byte
	for {
		res, err := http.Post(base+"/integrations/v1/api/loan_approval", "application/json", strings.NewReader(body))
		if err == nil {
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && strings.Contains(string(raw), `"has_approve"`) {
				answer = raw
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the search was answered %d %s\nlogs:\n%s", res.StatusCode, raw, logs)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The conversion of that search, reported and delivered by the conversions service as
	// its own user.
	var done struct {
		Data []struct {
			Link struct{ Link string } `json:"propousal_link"`
		}
	}
	if err := json.Unmarshal(answer, &done); err != nil || len(done.Data) == 0 {
		t.Fatalf("answer %s: %v", answer, err)
	}
	report := fmt.Sprintf(`{"link": %q, "contract_date": %q, "amount": 500000, "term": 36, "additional_services": false}`,
		done.Data[0].Link.Link, time.Now().In(time.FixedZone("MSK", 3*3600)).Format("2006-01-02"))
	natstest.Eventually(t, 20*time.Second, func() error {
		res, err := http.Post("http://"+internal+"/v1/conversions", "application/json", strings.NewReader(report))
		if err != nil {
			return err
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
			return fmt.Errorf("report = %d %s", res.StatusCode, raw)
		}
		return nil
	})
	select {
	case b := <-delivered:
		if !strings.Contains(b, searchID) {
			t.Errorf("Yandex received %s, not the conversion of %s", b, searchID)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the conversion was not delivered\nlogs:\n%s", logs)
	}
	// The auditor explains that search (yactl search): its record by key, the revisions it
	// was decided with, and, once offers (as its own user) has written it, the audit trail.
	auditor := connect("auditor")
	rec, _, err := search.Lookup(ctx, auditor.Conn(), searchID)
	if err != nil || rec == nil || rec.Basis == nil {
		t.Fatalf("the auditor reads the record: %+v, %v", rec, err)
	}
	for name, read := range map[string]func() error{
		"policy":   func() error { _, err := scoring.PolicyDocument.Fetch(ctx, auditor, rec.Basis.Policy); return err },
		"catalog":  func() error { _, err := offers.CatalogDocument.Fetch(ctx, auditor, rec.Basis.Catalog); return err },
		"ceilings": func() error { _, err := offers.CeilingDocument.Fetch(ctx, auditor, rec.Basis.Ceilings); return err },
	} {
		if err := read(); err != nil {
			t.Errorf("the auditor reads the %s revision the search was decided with: %v", name, err)
		}
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		_, _, err := audit.Find(ctx, auditor, searchID, time.Time{})
		return err
	})
	if strings.Contains(logs.String(), "Permissions Violation") || strings.Contains(logs.String(), "permissions violation") {
		t.Errorf("a service was refused something it needs:\n%s", logs)
	}
	// Readiness reads stream, bucket and consumer state, and the gateway's sweeper the LOAN
	// queue's: each user may, or /readyz would say not ready (a refused request only times out).
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("the gateway's /readyz as user gateway = %d %s", res.StatusCode, raw)
	}
	checksMu.Lock()
	rep := health.Evaluate(context.Background(), checks)
	checksMu.Unlock()
	if len(rep.Checks) == 0 || len(rep.Failing) > 0 {
		t.Errorf("scoring's and offers' readiness as their own users: %+v", rep)
	}
	if strings.Contains(logs.String(), "LOAN queue not read") {
		t.Errorf("the gateway's sweeper may not read the LOAN queue:\n%s", logs)
	}
}

// A server may join the cluster only with the route password: one that tries without it is
// refused, and so its clients never see the cluster's messages; one with it joins (before,
// a rogue server joined the k8s configuration's cluster and its clients read the services'
// messages).
func TestClusterRoutesNeedTheRoutePassword(t *testing.T) {
	opts := shippedOptions(t, filepath.Join(k8sDir, "base", "nats", "nats.conf"), "legit")
	opts.Cluster.Host, opts.Cluster.Port, opts.Routes = "127.0.0.1", -1, nil
	opts.JetStream = false // routes, not storage, are what is tested; a lone clustered JetStream waits for peers
	legit := startServer(t, opts)
	refusals := &errorLog{}
	legit.SetLoggerV2(refusals, false, false, false)
	routeAddr := legit.ClusterAddr().String()
	joiner := func(name, userinfo string) *server.Server {
		return startServer(t, &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: opts.Cluster.Name, Host: "127.0.0.1", Port: -1},
			Routes:  server.RoutesFromStr("nats-route://" + userinfo + routeAddr)})
	}
	rogue := joiner("rogue", "")
	// The rogue has tried, and been refused, once the legit server logs a route's
	// authentication failure.
	deadline := time.Now().Add(10 * time.Second)
	for !refusals.has("authentication") {
		if time.Now().After(deadline) {
			t.Fatalf("no refused route attempt within 10 s: the check below would prove nothing; logged %q", refusals.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := legit.NumRoutes(); n != 0 {
		t.Fatalf("a server without the route password joined: %d routes", n)
	}
	sub, err := nats.Connect(rogue.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got, _ := sub.SubscribeSync("loan.>")
	_ = sub.Flush()
	gw := connectAs(t, legit.ClientURL(), "gateway")
	_ = gw.nc.Publish("loan.v1.requested", []byte("secret"))
	_ = gw.nc.Flush()
	if m, err := got.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("a client of the rogue server read %q", m.Data)
	}
	joiner("member", "route:"+natsPasswords["NATS_ROUTE_PASSWORD"]+"@")
	deadline = time.Now().Add(10 * time.Second)
	for legit.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a server with the route password did not join: the check above proves nothing")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errorLog keeps what a nats-server logs as errors, for a test to wait on.
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}
func (l *errorLog) Noticef(string, ...any) {}
func (l *errorLog) Warnf(string, ...any)   {}
func (l *errorLog) Fatalf(string, ...any)  {}
func (l *errorLog) Debugf(string, ...any)  {}
func (l *errorLog) Tracef(string, ...any)  {}

func (l *errorLog) has(s string) bool { return strings.Contains(strings.ToLower(l.all()), s) }

func (l *errorLog) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// subjectMatches reports whether subject falls under filter ("*" one token, ">" the rest).
func subjectMatches(filter, subject string) bool {
	f, sub := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(sub) > i
		case i >= len(sub) || tok != "*" && tok != sub[i]:
			return false
		}
	}
	return len(f) == len(sub)
}
