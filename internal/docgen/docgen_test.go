package docgen

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/powernode/fedgate/agent"
)

// TestConfigDocUpToDate: docs/config.md is what the generator makes from
// the current agent.Config. After changing the config, run
// `go run ./cmd/fedgate-docgen config -o docs/config.md` (make docs).
func TestConfigDocUpToDate(t *testing.T) {
	c, err := ParseComments("../../agent")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ConfigReference(agent.DefaultConfig(), c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("docs/config.md is stale: run `go run ./cmd/fedgate-docgen config -o docs/config.md` (-generated +committed):\n%s", diff)
	}
}

// yamlKeys returns the dotted keys of a YAML document (list items as key[]).
func yamlKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			out[k] = true
			yamlKeys(n.Content[i+1], k, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix+"[]", out)
		}
	}
}

// TestExampleConfig: fedgate.example.yaml (installed as
// /etc/fedgate/fedgated.yaml) loads with agent.LoadConfig, sets every
// section, and uses only documented keys.
func TestExampleConfig(t *testing.T) {
	const path = "../../fedgate.example.yaml"
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatalf("example config refused: %v", err)
	}
	if cfg.Node.DataDir != "/var/lib/fedgate" || cfg.API.Socket != agent.DefaultSocket || cfg.Metrics.Listen == "" {
		t.Errorf("example does not match the packaged layout: %+v", cfg)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	yamlKeys(&root, "", keys)

	c, err := ParseComments("../../agent")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ConfigReference(agent.DefaultConfig(), c)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range sectionNames(ref) {
		if !keys[sec] {
			t.Errorf("example config has no %s: section", sec)
		}
	}
	for k := range keys {
		if !strings.Contains(string(ref), "`"+k+"`") && !strings.Contains(string(ref), "## "+k+"\n") {
			t.Errorf("example config key %s is not in the reference", k)
		}
	}

	// The refusal path the reference promises: an unknown key names the line.
	bad := strings.Replace(string(b), "  site_name: example-site\n", "  site_name: example-site\n  colour: blue\n", 1)
	_, err = agent.ParseConfig("fedgated.yaml", []byte(bad))
	if !errors.Is(err, agent.ErrConfig) || !strings.Contains(err.Error(), "colour") || !strings.Contains(err.Error(), "line ") {
		t.Errorf("unknown key in the example: %v", err)
	}
}

func sectionNames(ref []byte) []string {
	var out []string
	for _, line := range strings.Split(string(ref), "\n") {
		if s, ok := strings.CutPrefix(line, "## "); ok {
			out = append(out, s)
		}
	}
	return out
}

type innerCfg struct {
	// Wait is how long.
	Wait  time.Duration `yaml:"wait"`
	Names []string      `yaml:"names"`
	On    *bool         `yaml:"on"`
	//lint:ignore U1000 an unexported field: the test checks it stays out of the docs
	skip int
}

type itemCfg struct {
	// Name of the item.
	Name string `yaml:"name"`
	Port int    `yaml:"port"` // port | number
}

type testCfg struct {
	// Inner is the inner section.
	Inner innerCfg  `yaml:"inner"`
	Items []itemCfg `yaml:"items"`
	// Plain is a scalar section.
	Plain  string `yaml:"plain"`
	Hidden string `yaml:"-"`
}

func TestConfigReference(t *testing.T) {
	on := true
	c := Comments{"testCfg.Inner": "Inner is the inner section.", "innerCfg.Wait": "Wait is how long.",
		"itemCfg.Name": "Name of the item.", "itemCfg.Port": "port | number", "testCfg.Plain": "Plain is a scalar section."}
	b, err := ConfigReference(testCfg{Inner: innerCfg{Wait: 90 * time.Second, Names: []string{"a", "b"}, On: &on}, Plain: "x"}, c)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| `") {
			rows = append(rows, l)
		}
	}
	want := []string{
		"| `inner.wait` | duration | `1m30s` | Wait is how long. |",
		"| `inner.names` | list of string | `[a, b]` |  |",
		"| `inner.on` | bool | `true` |  |",
		"| `items` | list of object | — |  |",
		"| `plain` | string | `x` | Plain is a scalar section. |",
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if strings.Contains(string(b), "Hidden") || strings.Contains(string(b), "skip") {
		t.Error("hidden or unexported fields documented")
	}
	if _, err := ConfigReference(42, c); err == nil {
		t.Error("non-struct accepted")
	}
}

func TestConfigReferenceNestedList(t *testing.T) {
	type wrap struct {
		Sec testCfg `yaml:"sec"`
	}
	c := Comments{"itemCfg.Name": "Name of the item.", "itemCfg.Port": "port | number"}
	b, err := ConfigReference(wrap{}, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"| `sec.items` | list | — |", "| `sec.items[].name` | string | — | Name of the item. |", `| port \| number |`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("missing %q in:\n%s", w, b)
		}
	}
}

func TestParseComments(t *testing.T) {
	c, err := ParseComments("../../agent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c["LogConfig.Level"], "debug, info, warn or error") {
		t.Errorf("LogConfig.Level comment: %q", c["LogConfig.Level"])
	}
	if _, err := ParseComments(t.TempDir()); !errors.Is(err, ErrSource) {
		t.Errorf("empty dir: %v", err)
	}
}

// fakeHelp is a two-level cobra-like command tree.
var fakeHelp = map[string]string{
	"": `Operate a thing

Usage:
  tool [command]

Available Commands:
  completion  Generate the autocompletion script for the specified shell
  help        Help about any command
  peers       Peers: add, list

Flags:
  -h, --help   help for tool
`,
	"peers": `Peers: add, list

Usage:
  tool peers [command]

Available Commands:
  add         Add a peer
  list        List peers

Flags:
  -h, --help   help for peers
`,
	"peers add": `Add a peer

Usage:
  tool peers add URL [flags]

Flags:
      --name string   peer name (default "x\y")
.dot at line start
`,
	"peers list": "List peers\n\nUsage:\n  tool peers list\n",
	"completion": "Generate the autocompletion script\n\nAvailable Commands:\n  bash        Generate for bash\n  zsh         Generate for zsh\n",
}

func TestManPage(t *testing.T) {
	var asked []string
	help := func(path []string) (string, error) {
		k := strings.Join(path, " ")
		asked = append(asked, k)
		h, ok := fakeHelp[k]
		if !ok {
			return "", fmt.Errorf("no such command %q", k)
		}
		return h, nil
	}
	b, err := ManPage(ManSpec{Name: "tool", Section: 1, Version: "1.2", Date: "2026-01-02", Help: help,
		Extra: []Section{{"Environment", "TOOL_X: something.\n\nSecond para."}}, SeeAlso: []string{"toold(8)"}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	sort.Strings(asked)
	if diff := cmp.Diff([]string{"", "completion", "peers", "peers add", "peers list"}, asked); diff != "" {
		t.Errorf("commands walked (-want +got):\n%s", diff)
	}
	for _, w := range []string{
		`.TH TOOL 1 "2026-01-02" "tool 1.2" "fedgate manual"`,
		"tool \\- operate a thing\n",
		`.SS "tool peers add"`, `.SS "tool peers list"`, `.SS "tool completion"`,
		`\-\-name string   peer name (default "x\ey")`,
		"\\&.dot at line start",
		".SH ENVIRONMENT\nTOOL_X: something.\n.PP\nSecond para.\n",
		".SH SEE ALSO\n.BR toold (8)\n",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("man page lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(s, `.SS "tool help"`) || strings.Contains(s, `.SS "tool completion bash"`) {
		t.Error("help, or each shell of completion, documented as commands")
	}

	fail := func(path []string) (string, error) {
		if len(path) == 2 {
			return "", errors.New("exit status 1")
		}
		return help(path)
	}
	if _, err := ManPage(ManSpec{Name: "tool", Section: 1, Help: fail}); err == nil || !strings.Contains(err.Error(), "tool peers add --help") {
		t.Errorf("failing subcommand: %v", err)
	}
}
