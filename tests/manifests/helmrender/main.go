// helmrender renders a Helm chart the way `helm template` does, for tests
// that run without Helm: Go text/template with sprig, Helm's built-in
// objects (Values, Release, Chart, Capabilities, Files, Template) and the
// functions Helm adds (include, tpl, required, toYaml, fromYaml, toJson,
// fromJson, lookup). It prints the CRDs (with --include-crds) and every
// rendered template as a multi-document YAML stream on stdout.
//
// Values: values.yaml, then each -f file, then each --set a.b.c=v (v typed
// as Helm's --set does: true/false, integers, null deletes, else a string).
// lookup answers from the objects of --objects FILE (a YAML stream standing
// for the live cluster); without it, as under `helm template`, it finds
// nothing.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

type files map[string][]byte

func (f files) Get(name string) string { return string(f[name]) }

type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// normalize turns yaml.v2's map[interface{}]interface{} into
// map[string]interface{}, as Helm's JSON-based YAML decoding yields.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, x := range t {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case map[string]interface{}:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case []interface{}:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a map", path)
	}
	return m, nil
}

// merge lays src over dst, recursing into maps (Helm's values coalescing;
// a null in src deletes the key).
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			merge(dm, sm)
		} else {
			dst[k] = v
		}
	}
}

// setValue applies one --set assignment "a.b.c=value" to values.
func setValue(values map[string]interface{}, assignment string) error {
	eq := strings.Index(assignment, "=")
	if eq <= 0 {
		return fmt.Errorf("--set %q: want key=value", assignment)
	}
	path := strings.Split(assignment[:eq], ".")
	raw := assignment[eq+1:]
	var v interface{} = raw
	switch {
	case raw == "true":
		v = true
	case raw == "false":
		v = false
	case raw == "null":
		v = nil
	default:
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			v = n
		}
	}
	m := values
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[k] = next
		}
		m = next
	}
	last := path[len(path)-1]
	if v == nil {
		delete(m, last)
	} else {
		m[last] = v
	}
	return nil
}

// readObjects loads a YAML stream of Kubernetes objects for lookup.
func readObjects(path string) ([]map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []map[string]interface{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v interface{}
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if m, ok := normalize(v).(map[string]interface{}); ok {
			objs = append(objs, m)
		}
	}
}

// lookupIn mimics Helm's lookup: one object by name, or {"items": [...]}
// of every match when name is empty; an empty map when nothing matches.
func lookupIn(objs []map[string]interface{}, apiVersion, kind, namespace, name string) map[string]interface{} {
	var items []interface{}
	for _, o := range objs {
		md, _ := o["metadata"].(map[string]interface{})
		if o["apiVersion"] != apiVersion || o["kind"] != kind {
			continue
		}
		if namespace != "" && fmt.Sprint(md["namespace"]) != namespace {
			continue
		}
		if name == "" {
			items = append(items, o)
		} else if fmt.Sprint(md["name"]) == name {
			return o
		}
	}
	if name == "" && len(items) > 0 {
		return map[string]interface{}{"items": items}
	}
	return map[string]interface{}{}
}

func toYAML(v interface{}) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

func run() error {
	var valueFiles, sets multiFlag
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	includeCRDs := flag.Bool("include-crds", false, "print crds/ first")
	notes := flag.Bool("notes", false, "render NOTES.txt instead of the manifests")
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Var(&sets, "set", "a.b.c=value over the values files (repeatable)")
	objectsFile := flag.String("objects", "", "YAML stream of live objects that lookup finds")
	flag.Parse()
	if *chartDir == "" {
		return errors.New("--chart is required")
	}

	chart, err := readYAML(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(*chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		v, err := readYAML(f)
		if err != nil {
			return err
		}
		merge(values, v)
	}
	for _, a := range sets {
		if err := setValue(values, a); err != nil {
			return err
		}
	}
	var live []map[string]interface{}
	if *objectsFile != "" {
		if live, err = readObjects(*objectsFile); err != nil {
			return err
		}
	}

	all := files{}
	var templates []string
	err = filepath.Walk(*chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		all[filepath.ToSlash(rel)] = b
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(templates)

	chartName := fmt.Sprint(chart["name"])
	chartObj := map[string]interface{}{
		"Name": chartName, "Version": chart["version"], "AppVersion": chart["appVersion"],
		"Description": chart["description"], "Type": chart["type"], "APIVersion": chart["apiVersion"],
		"KubeVersion": chart["kubeVersion"], "Keywords": chart["keywords"],
	}
	chartFiles := files{}
	for k, v := range all {
		if !strings.HasPrefix(k, "templates/") && k != "Chart.yaml" && k != "values.yaml" {
			chartFiles[k] = v
		}
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chartObj,
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.29.0", "Major": "1", "Minor": "29", "GitVersion": "v1.29.0"},
			"APIVersions": apiVersions{"v1", "apps/v1", "rbac.authorization.k8s.io/v1",
				"apiextensions.k8s.io/v1", "discovery.k8s.io/v1", "monitoring.coreos.com/v1"},
			"HelmVersion": map[string]interface{}{"Version": "v3.14.0"},
		},
		"Files": chartFiles,
	}

	root := template.New("gotpl")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includeDepth := 0
	funcs["include"] = func(n string, data interface{}) (string, error) {
		includeDepth++
		defer func() { includeDepth-- }()
		if includeDepth > 100 {
			return "", fmt.Errorf("include %q: too deep", n)
		}
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, n, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		var v interface{}
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := normalize(v).(map[string]interface{})
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) map[string]interface{} {
		return lookupIn(live, apiVersion, kind, namespace, name)
	}
	root.Funcs(funcs).Option("missingkey=zero")

	for _, n := range templates {
		if _, err := root.New(n).Parse(string(all[n])); err != nil {
			return err
		}
	}

	render := func(n string) (string, error) {
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": "templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}

	if *notes {
		out, err := render("templates/NOTES.txt")
		if err != nil {
			return err
		}
		fmt.Print(out)
		return nil
	}

	var out strings.Builder
	if *includeCRDs {
		var crds []string
		for k := range all {
			if strings.HasPrefix(k, "crds/") && (strings.HasSuffix(k, ".yaml") || strings.HasSuffix(k, ".yml")) {
				crds = append(crds, k)
			}
		}
		sort.Strings(crds)
		for _, k := range crds {
			fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s\n", chartName, k, strings.TrimSpace(string(all[k])))
		}
	}
	for _, n := range templates {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "_") || !(strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || strings.HasSuffix(base, ".tpl")) {
			continue
		}
		if strings.HasSuffix(base, ".tpl") {
			continue
		}
		s, err := render(n)
		if err != nil {
			return err
		}
		if strings.TrimSpace(s) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s\n", chartName, n, strings.TrimSpace(s))
	}
	fmt.Print(out.String())
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "helmrender:", err)
		os.Exit(1)
	}
}
