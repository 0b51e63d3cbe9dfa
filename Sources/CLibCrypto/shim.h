// OpenSSL's libcrypto, from Debian's libssl-dev: HMAC-SHA256 for the mesh handshake and SHA-1
// for the WebSocket accept value. A system library rather than swift-crypto, whose vendored
// BoringSSL was a third of every fresh build (~210 CPU-s of a debug build on 2 cores) for two
// one-shot digests.
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
// ClusterSecurity: `chatmesh gen-certs` (P-256 keys, X.509 certificates) and the checks of
// the PEM files cluster.conf names (parse, key/certificate match, chain, validity, SAN).
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
