package check

import (
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// prod encrypts every NATS connection and verifies the servers on routes; dev, on one
// machine's cluster, does neither. Each breakage of prod's TLS is caught by the nats rule.
func TestProdNATSTLS(t *testing.T) {
	rule, _ := RuleByName("nats cluster")
	prodDir := filepath.Join(k8sDir, "overlays", "prod")
	prodKust := filepath.Join(prodDir, "kustomization.yaml")
	t.Run("shipped", func(t *testing.T) {
		for _, o := range overlays {
			c := buildOverlay(t, filesys.MakeFsOnDisk(), filepath.Join(k8sDir, "overlays", o))
			for _, err := range rule.Check(c) {
				t.Errorf("%s: %v", o, err)
			}
			for _, sc := range c.ServiceContainers() {
				url := c.ContainerEnv(sc.Container).Values["NATS_URL"]
				if got, want := strings.HasPrefix(url, "tls://"), o == "prod"; got != want {
					t.Errorf("%s: %s dials %s", o, sc.Service.Name, url)
				}
			}
		}
	})
	tests := []struct {
		name string
		edit func(filesys.FileSystem)
		want string
	}{
		{"routes without TLS", replaceIn(filepath.Join(prodDir, "kustomization.yaml"), "      - nats/route-tls.conf\n", ""), "both or neither"},
		{"services dialling in plain text", replaceIn(prodKust, "NATS_URL=tls://nats:4222", "NATS_URL=nats://nats:4222"),
			"the service must dial tls://"},
		{"certificate not naming the host dialled", replaceIn(filepath.Join(prodDir, "certificates.yaml"), "    - nats\n", ""),
			"which Certificate nats-tls"},
		{"certificate not naming the routes", replaceIn(filepath.Join(prodDir, "certificates.yaml"), `    - "*.nats-headless"`+"\n", ""),
			"does not name the routes' hosts"},
		{"key file not mounted", replaceIn(prodKust, "mountPath: /etc/nats-tls", "mountPath: /etc/nats-certs"),
			"is not a key of a Secret mounted"},
		{"the import job dialling in plain text", replaceIn(prodKust, "      # The base mounts the export: these append.\n",
			"      # The base mounts the export: these append.\n      - op: add\n        path: /spec/jobTemplate/spec/template/spec/containers/0/env/-\n"+
				"        value: {name: NATS_URL, value: nats://nats:4222}\n"), "CronJob preapprovals-import: NATS_URL"},
		{"the import job's CA not mounted", replaceIn(prodKust, "      - op: add\n        path: /spec/jobTemplate/spec/template/spec/containers/0/volumeMounts/-\n"+
			"        value: {name: nats-ca, mountPath: /etc/nats-ca, readOnly: true}\n", ""), "CronJob preapprovals-import: NATS_CA_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := brokenFS(t, "", tt.edit)
			c := buildOverlay(t, fs, prodDir)
			errs := rule.Check(c)
			if len(errs) == 0 {
				t.Fatal("no complaint")
			}
			for _, err := range errs {
				if strings.Contains(err.Error(), tt.want) {
					return
				}
			}
			t.Errorf("no complaint mentions %q; got %v", tt.want, errs)
		})
	}
}
