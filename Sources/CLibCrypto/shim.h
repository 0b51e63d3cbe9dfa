// OpenSSL's libcrypto, from Debian's libssl-dev: HMAC-SHA256 for the mesh handshake and SHA-1
// for the WebSocket accept value. A system library rather than swift-crypto, whose vendored
// BoringSSL was a third of every fresh build (~210 CPU-s of a debug build on 2 cores) for two
// one-shot digests.
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
