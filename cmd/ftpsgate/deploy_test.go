package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestKubernetesManifests: the configuration in deploy/kubernetes's
// ConfigMap is valid, and the passive ports it names are exactly the ones
// the Deployment's container and the Service expose, as are its listeners'
// ports (the Service's targetPorts). A Service lists ports one by one, so
// these drift apart easily, and a passive port left out is a transfer that
// hangs. The configuration validates without a warning (the admin
// listener has its token); the Secrets are mounted where it reads them,
// root's with mode 0440 and the pod's fsGroup; the NetworkPolicy lets
// anyone reach the listeners and passive ports and only Prometheus the
// admin port.
func TestKubernetesManifests(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/ftpsgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	doc := func(kind string) string {
		for _, d := range docs {
			if strings.Contains(d, "\nkind: "+kind+"\n") {
				return d
			}
		}
		t.Fatalf("no %s in the manifests", kind)
		return ""
	}
	// The HCL: the block scalar under "ftpsgate.hcl: |", indented 4.
	cm := doc("ConfigMap")
	_, body, ok := strings.Cut(cm, "  ftpsgate.hcl: |\n")
	if !ok {
		t.Fatal("the ConfigMap holds no ftpsgate.hcl")
	}
	var hcl []string
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "    ") {
			break
		}
		hcl = append(hcl, strings.TrimPrefix(line, "    "))
	}
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	src := strings.ReplaceAll(strings.Join(hcl, "\n"), "/etc/ftpsgate/tls/tls.crt", certs.CertFile)
	src = strings.ReplaceAll(src, "/etc/ftpsgate/tls/tls.key", certs.KeyFile)
	const tokenPath = "/etc/ftpsgate/admin/token"
	if !strings.Contains(src, "bearer_token_file = \""+tokenPath+"\"") {
		t.Fatalf("the admin listener does not read its token from %s", tokenPath)
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	src = strings.ReplaceAll(src, tokenPath, token)
	cfg, diags := config.Parse([]byte(src), "configmap.hcl")
	if len(diags) != 0 {
		t.Fatalf("the ConfigMap's configuration: %s", diags.Error())
	}
	var passive, control []int
	for _, l := range cfg.Listeners {
		for p := int(l.PassivePorts.First); p <= int(l.PassivePorts.Last); p++ {
			if !slices.Contains(passive, p) {
				passive = append(passive, p)
			}
		}
		_, port, _ := strings.Cut(l.Address, ":")
		n, _ := strconv.Atoi(port)
		control = append(control, n)
	}
	slices.Sort(passive)
	slices.Sort(control)

	named := func(d, field string) (passivePorts, other []int) {
		re := regexp.MustCompile(`\{name: ([a-z]+(?:-[a-z]+)*)(?:-(\d+))?, ` + field + `: (\d+)`)
		for _, m := range re.FindAllStringSubmatch(d, -1) {
			n, _ := strconv.Atoi(m[3])
			if m[1] == "passive" {
				if m[2] != m[3] {
					t.Fatalf("%s: port %s named passive-%s", field, m[3], m[2])
				}
				passivePorts = append(passivePorts, n)
			} else {
				other = append(other, n)
			}
		}
		slices.Sort(passivePorts)
		return passivePorts, other
	}
	cp, cother := named(doc("Deployment"), "containerPort")
	sp, _ := named(doc("Service"), "port")
	if !slices.Equal(cp, passive) || !slices.Equal(sp, passive) {
		t.Fatalf("passive ports: configuration %v, container %v, Service %v", passive, cp, sp)
	}
	for _, p := range control {
		if !slices.Contains(cother, p) {
			t.Fatalf("listener port %d is not a container port %v", p, cother)
		}
		if !strings.Contains(doc("Service"), "targetPort: "+strconv.Itoa(p)+"}") {
			t.Fatalf("no Service port targets listener port %d", p)
		}
	}
	dep := doc("Deployment")
	if !strings.Contains(dep, "mountPath: /etc/ftpsgate/tls,") {
		t.Fatal("the certificate Secret is not mounted where the configuration reads it")
	}
	if !strings.Contains(dep, "{name: admin-token, mountPath: /etc/ftpsgate/admin, readOnly: true}") ||
		!strings.Contains(dep, "secret: {secretName: ftpsgate-admin, defaultMode: 0440}") ||
		!strings.Contains(docs[slices.IndexFunc(docs, func(d string) bool { return strings.Contains(d, "name: ftpsgate-admin\n") })], "\n  token: ") {
		t.Fatal("the admin token Secret is not mounted where the configuration reads it")
	}
	if n := strings.Count(dep, "secret: {"); n != 2 || strings.Count(dep, "defaultMode: 0440}") != n || !strings.Contains(dep, "fsGroup: 65532") {
		t.Fatal("a Secret volume lacks defaultMode: 0440, or the pod its fsGroup: the key would be readable by other users")
	}

	np := doc("NetworkPolicy")
	open, restricted, ok := strings.Cut(np, "    - from:")
	if !ok {
		t.Fatal("the NetworkPolicy restricts no port")
	}
	_, adminPort, _ := strings.Cut(cfg.Admin, ":")
	for _, p := range control {
		if !strings.Contains(open, "{port: "+strconv.Itoa(p)+", protocol: TCP}") {
			t.Errorf("the NetworkPolicy does not open listener port %d", p)
		}
	}
	if want := fmt.Sprintf("{port: %d, endPort: %d, protocol: TCP}", passive[0], passive[len(passive)-1]); !strings.Contains(open, want) ||
		passive[len(passive)-1]-passive[0]+1 != len(passive) {
		t.Errorf("the NetworkPolicy does not open the passive ports %d-%d as %s", passive[0], passive[len(passive)-1], want)
	}
	if strings.Contains(open, "port: "+adminPort+",") || !strings.Contains(restricted, "{port: "+adminPort+", protocol: TCP}") ||
		!strings.Contains(restricted, "namespaceSelector:") {
		t.Errorf("the NetworkPolicy does not keep admin port %s to the monitoring namespace", adminPort)
	}
}
