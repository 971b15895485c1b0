// Command controlplane runs etcd and kube-apiserver in one process for
// integration tests. See README.md for flags and outputs.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		dir        = flag.String("dir", "", "state dir (certs, kubeconfig, etcd data); default: a new temp dir")
		port       = flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 = pick a free one)")
		compaction = flag.String("etcd-compaction-interval", "", "passed to kube-apiserver --etcd-compaction-interval (empty = upstream default 5m)")
		noFsync    = flag.Bool("etcd-unsafe-no-fsync", true, "disable fsync in etcd (faster; test data only)")
		cleanup    = flag.Bool("cleanup", false, "delete the state dir on exit")
		verbosity  = flag.Int("v", 0, "kube-apiserver log verbosity")
		stdinEOF   = flag.Bool("exit-on-stdin-eof", false, "shut down cleanly when stdin closes (the parent died or let go)")
	)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: controlplane [flags] [-- extra kube-apiserver flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	extra := flag.Args()

	// NewAPIServerCommand installs the SIGTERM/SIGINT handler (it may only be
	// installed once per process); its context is cancelled on the first signal,
	// which is what stops the apiserver, our readiness poll and etcd startup.
	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()
	if *stdinEOF {
		// Same path as SIGTERM, so a test process that dies never leaves a server behind.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}()
	}

	if *dir == "" {
		d, err := os.MkdirTemp("", "controlplane-")
		if err != nil {
			return fail(err)
		}
		*dir = d
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fail(err)
	}
	*dir = abs
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fail(err)
	}
	if *cleanup {
		defer os.RemoveAll(*dir)
	}

	if *port == 0 {
		if *port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)
	kubeconfig := filepath.Join(*dir, "kubeconfig")
	tokenFile := filepath.Join(*dir, "tokens.csv")

	pki, err := generateCerts(*dir)
	if err != nil {
		return fail(fmt.Errorf("certs: %w", err))
	}
	users, reused := readUsers(tokenFile)
	if !reused {
		if users, err = newUsers(); err != nil {
			return fail(err)
		}
	}
	if err := writeTokenFile(tokenFile, users); err != nil {
		return fail(err)
	}

	start := time.Now()
	etcd, etcdURL, err := startEtcd(*dir, *noFsync)
	if err != nil {
		return fail(fmt.Errorf("etcd: %w", err))
	}
	defer func() {
		done := make(chan struct{})
		go func() { etcd.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "controlplane: etcd did not stop within 15s")
		}
	}()

	fmt.Fprintf(os.Stderr, "controlplane: etcd ready at %s after %s\n", etcdURL, time.Since(start).Round(time.Millisecond))
	if err := writeKubeconfig(kubeconfig, server, pki.CAPEM, users); err != nil {
		return fail(err)
	}
	if err := writeEnv(*dir, server, *port, kubeconfig, etcdURL, pki.CACert, users); err != nil {
		return fail(err)
	}

	args := []string{
		"--etcd-servers=" + etcdURL,
		"--cert-dir=" + filepath.Join(*dir, "pki"),
		"--tls-cert-file=" + pki.ServingCert,
		"--tls-private-key-file=" + pki.ServingKey,
		"--client-ca-file=" + pki.CACert,
		fmt.Sprintf("--secure-port=%d", *port),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The lease/master-count reconcilers reject a loopback advertise address.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--token-auth-file=" + tokenFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.SAPub,
		"--service-account-signing-key-file=" + pki.SAKey,
		fmt.Sprintf("--v=%d", *verbosity),
	}
	if *compaction != "" {
		args = append(args, "--etcd-compaction-interval="+*compaction)
	}
	args = append(args, extra...)
	cmd.SetArgs(args)

	apiErr := make(chan error, 1)
	go func() { apiErr <- cmd.Execute() }()

	readyCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		if waitReady(readyCtx, server, pki.CAPEM, users[0].Token) == nil {
			fmt.Fprintf(os.Stderr, "controlplane: kube-apiserver ready at %s after %s\n", server, time.Since(start).Round(time.Millisecond))
			fmt.Printf("READY %s\n", kubeconfig)
		}
	}()

	err = <-apiErr
	stopPoll()
	if ctx.Err() != nil { // stopped by SIGTERM/SIGINT: a clean shutdown
		return 0
	}
	if err == nil {
		err = errors.New("kube-apiserver exited")
	}
	return fail(fmt.Errorf("kube-apiserver: %w", err))
}

// waitReady polls /readyz with the admin token until it answers 200.
func waitReady(ctx context.Context, server string, caPEM []byte, token string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeEnv writes DIR/env (shell "export K=V" lines) and DIR/env.json.
func writeEnv(dir, server string, port int, kubeconfig, etcdURL, caFile string, users []user) error {
	m := map[string]string{
		"CONTROLPLANE_SERVER":     server,
		"CONTROLPLANE_PORT":       fmt.Sprint(port),
		"CONTROLPLANE_KUBECONFIG": kubeconfig,
		"CONTROLPLANE_ETCD_URL":   etcdURL,
		"CONTROLPLANE_CA_FILE":    caFile,
		"CONTROLPLANE_DIR":        dir,
		"CONTROLPLANE_PID":        fmt.Sprint(os.Getpid()),
	}
	for _, u := range users {
		m["CONTROLPLANE_"+strings.ToUpper(u.Name)+"_TOKEN"] = u.Token
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, m[k])
	}
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(m, "", "  ")
	return os.WriteFile(filepath.Join(dir, "env.json"), append(js, '\n'), 0o600)
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "controlplane:", err)
	return 1
}
