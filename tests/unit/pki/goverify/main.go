// goverify: verify a leaf certificate with Go's crypto/x509, as Caddy and Envoy's
// Go-based tooling would. A referee for meshops' chains in tests/unit/pki.
//
// usage: goverify -roots R.pem -intermediates I.pem -leaf L.pem -usage server|client
//                 [-dns NAME] -time UNIX
package main

import (
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"time"
)

func pool(path string) *x509.CertPool {
	p := x509.NewCertPool()
	if path == "" {
		return p
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	if !p.AppendCertsFromPEM(data) {
		fail(fmt.Errorf("%s: no certificate", path))
	}
	return p
}

func fail(err error) {
	fmt.Println(err)
	os.Exit(1)
}

func main() {
	roots := flag.String("roots", "", "trusted roots (PEM)")
	inter := flag.String("intermediates", "", "intermediates (PEM)")
	leafPath := flag.String("leaf", "", "the leaf (PEM)")
	usage := flag.String("usage", "server", "server or client")
	dns := flag.String("dns", "", "a DNS name the leaf must hold")
	at := flag.Int64("time", 0, "verification time (unix seconds)")
	flag.Parse()

	data, err := os.ReadFile(*leafPath)
	if err != nil {
		fail(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		fail(fmt.Errorf("%s: no PEM block", *leafPath))
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fail(err)
	}
	eku := x509.ExtKeyUsageServerAuth
	if *usage == "client" {
		eku = x509.ExtKeyUsageClientAuth
	}
	opts := x509.VerifyOptions{
		Roots:         pool(*roots),
		Intermediates: pool(*inter),
		CurrentTime:   time.Unix(*at, 0),
		KeyUsages:     []x509.ExtKeyUsage{eku},
		DNSName:       *dns,
	}
	if _, err := leaf.Verify(opts); err != nil {
		fail(err)
	}
	fmt.Println("OK")
}
