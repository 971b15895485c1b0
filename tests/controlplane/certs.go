package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pkiFiles are the paths of everything generateCerts writes into the state dir.
type pkiFiles struct {
	CACert, CAKey           string // self-signed CA; signs the serving cert
	ServingCert, ServingKey string // kube-apiserver serving cert for 127.0.0.1/localhost
	SAKey, SAPub            string // RSA key pair for service account tokens
	CAPEM                   []byte
}

// generateCerts creates a fresh CA, a serving certificate signed by it and a
// service-account RSA key pair in dir/pki. A restart on the same dir reuses
// them, so clients (and tokens signed by the SA key) keep working.
func generateCerts(dir string) (*pkiFiles, error) {
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	f := &pkiFiles{
		CACert: filepath.Join(pki, "ca.crt"), CAKey: filepath.Join(pki, "ca.key"),
		ServingCert: filepath.Join(pki, "apiserver.crt"), ServingKey: filepath.Join(pki, "apiserver.key"),
		SAKey: filepath.Join(pki, "sa.key"), SAPub: filepath.Join(pki, "sa.pub"),
	}
	if reused, err := reuseCerts(f); reused || err != nil {
		return f, err
	}
	now := time.Now().Add(-time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vworkspace-controlplane-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	f.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}

	writes := []struct {
		path, typ string
		der       []byte
	}{
		{f.CACert, "CERTIFICATE", caDER},
		{f.CAKey, "EC PRIVATE KEY", mustEC(caKey)},
		{f.ServingCert, "CERTIFICATE", srvDER},
		{f.ServingKey, "EC PRIVATE KEY", mustEC(srvKey)},
		{f.SAKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)},
		{f.SAPub, "PUBLIC KEY", saPub},
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func mustEC(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return der
}

// reuseCerts loads the CA of an earlier start when every file is present.
func reuseCerts(f *pkiFiles) (bool, error) {
	for _, p := range []string{f.CACert, f.CAKey, f.ServingCert, f.ServingKey, f.SAKey, f.SAPub} {
		if _, err := os.Stat(p); err != nil {
			return false, nil
		}
	}
	ca, err := os.ReadFile(f.CACert)
	if err != nil {
		return false, err
	}
	f.CAPEM = ca
	return true, nil
}
