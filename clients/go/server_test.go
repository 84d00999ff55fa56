package sesame_test

// The tests run the real `sesame` binary: $SESAME_BIN, or
// ../../target/debug/sesame relative to clients/go. A missing binary fails
// the tests (they are never skipped). Each server runs in its own temporary
// folder with a fresh SQLite database and SESAME_MAIL_TRANSPORT=log; it is
// stopped with SIGTERM at the end of its test, and its log is printed when
// the test failed.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	keyPattern       = regexp.MustCompile(`sesame_[A-Za-z0-9_-]+`)
	listeningPattern = regexp.MustCompile(`sesame listening.*addr=127\.0\.0\.1:(\d+)`)
)

// sesameBinary returns the server binary, failing the test when it is missing.
func sesameBinary(t testing.TB) string {
	t.Helper()
	path, origin := os.Getenv("SESAME_BIN"), "from $SESAME_BIN"
	if path == "" {
		path, origin = filepath.Join("..", "..", "target", "debug", "sesame"), "default: ../../target/debug/sesame"
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(abs)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("sesame server binary not found at %s (%s). Build it with `cargo build --bin sesame` "+
			"at the repository root, or point SESAME_BIN at it.", abs, origin)
	}
	return abs
}

// testServer is one `sesame serve` process, restartable on the same
// database and port.
type testServer struct {
	t           testing.TB
	binary      string
	dir         string
	databaseURL string
	port        string
	adminKey    string
	cmd         *exec.Cmd
	exited      chan error // receives the process's end
	starts      int
}

// startServer starts a server for the test and stops it when the test ends.
func startServer(t testing.TB) *testServer {
	t.Helper()
	dir := t.TempDir()
	s := &testServer{
		t:           t,
		binary:      sesameBinary(t),
		dir:         dir,
		databaseURL: "sqlite://" + filepath.Join(dir, "sesame.db"),
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Log(s.logs())
		}
	})
	s.start()
	return s
}

// target is host:port of the server (plaintext).
func (s *testServer) target() string { return "127.0.0.1:" + s.port }

func (s *testServer) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SESAME_") || strings.HasPrefix(kv, "RUST_LOG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "SESAME_MAIL_TRANSPORT=log")
}

// start starts the server on its previous port (a free one the first time)
// and waits until it listens.
func (s *testServer) start() {
	s.t.Helper()
	if err := s.tryStart(); err != nil {
		s.t.Fatal(err)
	}
}

// tryStart is start for another goroutine than the test's (which may not
// call t.Fatal).
func (s *testServer) tryStart() error {
	if s.cmd != nil {
		return fmt.Errorf("server already running")
	}
	port := s.port
	if port == "" {
		port = "0"
	}
	s.starts++
	stdoutPath := filepath.Join(s.dir, fmt.Sprintf("server-%d.stdout", s.starts))
	stderrPath := filepath.Join(s.dir, fmt.Sprintf("server-%d.stderr", s.starts))
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		return err
	}
	stderr, err := os.Create(stderrPath)
	if err != nil {
		stdout.Close()
		return err
	}
	cmd := exec.Command(s.binary, "serve", "--listen", "127.0.0.1:"+port, "--database-url", s.databaseURL)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = s.dir, s.env(), stdout, stderr
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return fmt.Errorf("starting %s: %w", s.binary, err)
	}
	exited := make(chan error, 1)
	go func() {
		exited <- cmd.Wait()
		stdout.Close()
		stderr.Close()
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, _ := os.ReadFile(stderrPath)
		if match := listeningPattern.FindSubmatch(log); match != nil {
			s.port = string(match[1])
			break
		}
		select {
		case err := <-exited:
			s.cmd, s.exited = nil, nil
			return fmt.Errorf("sesame exited (%v) before listening:\n%s", err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("sesame did not log 'sesame listening' within 30s")
		}
	}
	if s.adminKey == "" {
		out, _ := os.ReadFile(stdoutPath)
		key := keyPattern.Find(out)
		if key == nil {
			return fmt.Errorf("sesame printed no admin API key on its first start:\n%s", out)
		}
		s.adminKey = string(key)
	}
	return nil
}

// stop sends SIGTERM and waits (SIGKILL after 20 s, failing the test).
func (s *testServer) stop() {
	if s.cmd == nil {
		return
	}
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		s.t.Error("sesame did not stop within 20s of SIGTERM")
	}
}

// restart stops the server and starts it again on the same database and port.
func (s *testServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// createKey makes an API key with `sesame keys create`.
func (s *testServer) createKey(name, role string) string {
	s.t.Helper()
	cmd := exec.Command(s.binary, "--database-url", s.databaseURL, "keys", "create", "--name", name, "--role", role)
	cmd.Dir, cmd.Env = s.dir, s.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	key := keyPattern.Find(stdout.Bytes())
	if err != nil || key == nil {
		s.t.Fatalf("keys create failed (%v): %s%s", err, stdout.String(), stderr.String())
	}
	return string(key)
}

// logs is the output of every start of the server.
func (s *testServer) logs() string {
	var b strings.Builder
	for n := 1; n <= s.starts; n++ {
		for _, stream := range []string{"stdout", "stderr"} {
			path := filepath.Join(s.dir, fmt.Sprintf("server-%d.%s", n, stream))
			text, err := os.ReadFile(path)
			if err == nil {
				fmt.Fprintf(&b, "--- start %d %s (%s) ---\n%s\n", n, stream, path, text)
			}
		}
	}
	return b.String()
}

// startDelayProxy runs clients/testing/delay_proxy.py in front of srv: on its
// first connection the server's answers are held holdMs from the client's
// first request on (see the script's header). It is stopped with the test.
func startDelayProxy(t testing.TB, srv *testServer, holdMs int) string {
	t.Helper()
	portFile := filepath.Join(t.TempDir(), "port")
	script := filepath.Join("..", "testing", "delay_proxy.py")
	cmd := exec.Command("python3", script, portFile, srv.target(), fmt.Sprint(holdMs))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the delay proxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		port, err := os.ReadFile(portFile)
		if err == nil {
			return "127.0.0.1:" + strings.TrimSpace(string(port))
		}
		select {
		case <-exited:
			t.Fatal("the delay proxy exited before writing its port")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the delay proxy wrote no port")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
