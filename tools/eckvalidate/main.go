// Command eckvalidate checks ECK custom resources offline: every Elasticsearch, Kibana, Beat and
// Logstash document of a YAML stream is decoded strictly (unknown or duplicate fields, wrong types:
// errors) into ECK's own Go API types, the ones its operator decodes into, and its version must
// parse as ECK parses it. Other kinds are counted and left to a Kubernetes schema validator.
//
//	kubectl kustomize deploy/aks/overlays/eck | eckvalidate
//
// Exit 0: every ECK resource is valid; 1: at least one is not (each problem printed); 2: bad input.
//
// A test tool only (scripts/install builds it into .venv/bin): it links ECK's API packages, which
// Elastic publishes under the Elastic License 2.0; nothing of it ships in the shipper or its image.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	beatv1beta1 "github.com/elastic/cloud-on-k8s/v3/pkg/apis/beat/v1beta1"
	esv1 "github.com/elastic/cloud-on-k8s/v3/pkg/apis/elasticsearch/v1"
	kbv1 "github.com/elastic/cloud-on-k8s/v3/pkg/apis/kibana/v1"
	lsv1alpha1 "github.com/elastic/cloud-on-k8s/v3/pkg/apis/logstash/v1alpha1"
	"github.com/elastic/cloud-on-k8s/v3/pkg/controller/common/version"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// check decodes one ECK resource strictly and returns its problems.
func check(meta typeMeta, doc []byte) ([]string, bool) {
	var target any
	var specVersion func() string
	switch meta.APIVersion + "/" + meta.Kind {
	case "elasticsearch.k8s.elastic.co/v1/Elasticsearch":
		obj := &esv1.Elasticsearch{}
		target, specVersion = obj, func() string { return obj.Spec.Version }
	case "kibana.k8s.elastic.co/v1/Kibana":
		obj := &kbv1.Kibana{}
		target, specVersion = obj, func() string { return obj.Spec.Version }
	case "beat.k8s.elastic.co/v1beta1/Beat":
		obj := &beatv1beta1.Beat{}
		target, specVersion = obj, func() string { return obj.Spec.Version }
	case "logstash.k8s.elastic.co/v1alpha1/Logstash":
		obj := &lsv1alpha1.Logstash{}
		target, specVersion = obj, func() string { return obj.Spec.Version }
	default:
		if strings.Contains(meta.APIVersion, ".k8s.elastic.co/") {
			return []string{fmt.Sprintf("%s %s: not a kind/version this checker knows", meta.APIVersion, meta.Kind)}, true
		}
		return nil, false
	}
	var problems []string
	strict, err := kjson.UnmarshalStrict(doc, target)
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, e := range strict {
		problems = append(problems, e.Error())
	}
	if err == nil {
		if _, verr := version.Parse(specVersion()); verr != nil {
			problems = append(problems, fmt.Sprintf("spec.version %q: %v", specVersion(), verr))
		}
	}
	if es, ok := target.(*esv1.Elasticsearch); ok && err == nil && len(es.Spec.NodeSets) == 0 {
		problems = append(problems, "spec.nodeSets is empty")
	}
	return problems, true
}

func main() {
	var input io.Reader = os.Stdin
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "eckvalidate:", err)
			os.Exit(2)
		}
		defer f.Close()
		input = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(input))
	checked, others, failed := 0, 0, 0
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "eckvalidate: reading YAML:", err)
			os.Exit(2)
		}
		doc, err := yaml.YAMLToJSON(raw)
		if err != nil {
			fmt.Fprintln(os.Stderr, "eckvalidate: not YAML:", err)
			os.Exit(2)
		}
		if strings.TrimSpace(string(doc)) == "null" {
			continue
		}
		var meta typeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(doc, &meta); err != nil {
			fmt.Fprintln(os.Stderr, "eckvalidate: not an object:", err)
			os.Exit(2)
		}
		problems, isECK := check(meta, doc)
		if !isECK {
			others++
			continue
		}
		checked++
		for _, p := range problems {
			fmt.Printf("%s %s/%s: %s\n", meta.APIVersion, meta.Kind, meta.Metadata.Name, p)
		}
		if len(problems) > 0 {
			failed++
		}
	}
	fmt.Printf("eckvalidate: %d ECK resources checked, %d invalid; %d other objects left alone\n", checked, failed, others)
	if failed > 0 {
		os.Exit(1)
	}
}
