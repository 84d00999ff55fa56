package sesame_test

// The quickstart, the README and the generated code.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const quickstart = "examples/quickstart/main.go"

// goCommand runs the go tool in dir (outside any go.work) and returns its
// output, failing the test on error.
func goCommand(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-p=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The quickstart, built as a new user would: a scratch module that gets
// sesame.dev/client/go through a replace directive pointing at this folder,
// then run against the real server.
func TestQuickstartFromAScratchModuleRunsAgainstTheServer(t *testing.T) {
	srv := startServer(t)
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	source, err := os.ReadFile(quickstart)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "main.go"), source, 0o644); err != nil {
		t.Fatal(err)
	}
	goCommand(t, scratch, "mod", "init", "example.com/scratch")
	goCommand(t, scratch, "mod", "edit", "-replace", "sesame.dev/client/go="+here)
	goCommand(t, scratch, "get", "sesame.dev/client/go@v0.0.0") // as the README says
	goCommand(t, scratch, "build", "-o", "quickstart", ".")

	cmd := exec.Command(filepath.Join(scratch, "quickstart"))
	cmd.Env = append(os.Environ(), "SESAME_URL=http://"+srv.target(),
		"SESAME_SUBMITTER_KEY="+srv.createKey("backend", "submitter"), "SESAME_ADMIN_KEY="+srv.adminKey)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("quickstart: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("quickstart printed %q", stdout.String())
	}
	submitted := regexp.MustCompile(`^EVENT_TYPE_REQUEST_SUBMITTED (accessRequests/[0-9a-f-]{36})$`).FindStringSubmatch(lines[0])
	approved := regexp.MustCompile(`^EVENT_TYPE_REQUEST_APPROVED (accessRequests/[0-9a-f-]{36})$`).FindStringSubmatch(lines[1])
	if submitted == nil || approved == nil || submitted[1] != approved[1] {
		t.Fatalf("quickstart printed %q", stdout.String())
	}
}

func TestReadmeShowsTheQuickstartVerbatim(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	source, err := os.ReadFile(quickstart)
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1) {
		if string(block[1]) == string(source) {
			return
		}
	}
	t.Fatalf("README.md has no ```go block equal to %s", quickstart)
}

// The committed gen/ is what buf makes from proto/ with the Go plugins of
// the root buf.gen.yaml (.ci/run checks every client the same way).
func TestGeneratedCodeMatchesProto(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	template, err := os.ReadFile(filepath.Join(root, "buf.gen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The Go entries are the last ones; the others need their own clients'
	// installs and are checked by their suites and .ci/run.
	start := strings.Index(string(template), "  - local: clients/go/.bin/protoc-gen-go\n")
	if start < 0 || !strings.Contains(string(template[start:]), "clients/go/.bin/protoc-gen-go-grpc") {
		t.Fatal("buf.gen.yaml: the Go plugins are not its last entries")
	}
	goOnly := "version: v2\ninputs:\n  - directory: proto\nplugins:\n" + string(template[start:])
	for _, plugin := range []string{"protoc-gen-go", "protoc-gen-go-grpc"} {
		if _, err := os.Stat(filepath.Join(".bin", plugin)); err != nil {
			t.Fatalf("%s is not installed in clients/go/.bin: run tools/install-plugins.sh (test.sh does)", plugin)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("npx", "--yes", "@bufbuild/buf@1.75.0", "generate", "--template", goOnly, "--output", out)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, output)
	}
	generated := filepath.Join(out, "clients", "go", "gen")
	compareTrees(t, generated, "gen")
	compareTrees(t, "gen", generated)
}

// compareTrees fails the test for every file of want that got lacks or
// holds differently.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	err := filepath.WalkDir(want, func(path string, entry os.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, path)
		a, _ := os.ReadFile(path)
		b, readErr := os.ReadFile(filepath.Join(got, rel))
		if readErr != nil || !bytes.Equal(a, b) {
			t.Errorf("gen/%s differs from a fresh `buf generate`: run it from the repository root and commit", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
