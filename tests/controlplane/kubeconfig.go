package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// user is one static-token identity; the apiserver adds system:authenticated itself.
type user struct {
	Name   string
	Token  string
	Groups []string
}

// readUsers reads back the token file of an earlier start on the same dir.
func readUsers(path string) ([]user, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var users []user
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.SplitN(line, ",", 4)
		if len(fields) < 3 {
			return nil, false
		}
		u := user{Token: fields[0], Name: fields[1]}
		if len(fields) == 4 {
			u.Groups = strings.Split(strings.Trim(fields[3], "\""), ",")
		}
		users = append(users, u)
	}
	return users, len(users) > 0
}

func newUsers() ([]user, error) {
	users := []user{
		{Name: "admin", Groups: []string{"system:masters"}},
		{Name: "alice"},
		{Name: "bob"},
	}
	for i := range users {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		users[i].Token = hex.EncodeToString(b)
	}
	return users, nil
}

// writeTokenFile writes the --token-auth-file CSV: token,user,uid,"group1,group2".
func writeTokenFile(path string, users []user) error {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,%s", u.Token, u.Name, u.Name)
		if len(u.Groups) > 0 {
			fmt.Fprintf(&b, ",\"%s\"", strings.Join(u.Groups, ","))
		}
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeKubeconfig writes one cluster and one context per user (named like the
// user); the first user (admin) is the current context.
func writeKubeconfig(path, server string, caPEM []byte, users []user) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["controlplane"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	for _, u := range users {
		cfg.AuthInfos[u.Name] = &clientcmdapi.AuthInfo{Token: u.Token}
		cfg.Contexts[u.Name] = &clientcmdapi.Context{Cluster: "controlplane", AuthInfo: u.Name, Namespace: "default"}
	}
	cfg.CurrentContext = users[0].Name
	return clientcmd.WriteToFile(*cfg, path)
}
