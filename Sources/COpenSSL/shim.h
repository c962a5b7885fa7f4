#ifndef EDGEPROXY_COPENSSL_SHIM_H
#define EDGEPROXY_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/tls1.h>
#include <openssl/ocsp.h>
#include <openssl/http.h>
#endif
