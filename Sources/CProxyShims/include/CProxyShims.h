// CProxyShims: one-line forwarders for what Swift cannot import directly.
// Function-like OpenSSL macros, SSL_OP_* constants (built with SSL_OP_BIT and therefore not imported),
// and the Linux headers that Swift's Glibc module leaves out (epoll, eventfd, signalfd, accept4).
// No logic lives here: anything that needs a comment longer than itself belongs in Swift.
#ifndef EDGEPROXY_CPROXYSHIMS_H
#define EDGEPROXY_CPROXYSHIMS_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <signal.h>
#include <openssl/ssl.h>

// --- Linux ----------------------------------------------------------------------------------------
int cps_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int cps_sock_nonblock(void);
int cps_sock_cloexec(void);
uint32_t cps_epollin(void);
uint32_t cps_epollout(void);
uint32_t cps_epollerr(void);
uint32_t cps_epollhup(void);
uint32_t cps_epollrdhup(void);
uint32_t cps_epollet(void);
int cps_sigmask_block(const int *signals, int count);  // pthread_sigmask(SIG_BLOCK, ...)
int cps_signalfd(const int *signals, int count);        // signalfd over the same set, non-blocking
int cps_signalfd_read_signo(int fd);                    // -1 when nothing to read
int cps_malloc_trim(void);                              // malloc_trim(0) (malloc.h is not in Glibc's module)
void cps_BIO_reuse_socket(BIO *bio, int fd);            // a freed connection's socket BIO, reset for `fd`
BIO *cps_BIO_new_socket(int fd);                        // a socket BIO that notes reads that emptied the socket
int cps_SSL_socket_emptied(const SSL *ssl);             // nothing buffered, and the last socket read emptied it
int cps_dup3_cloexec(int oldfd, int newfd);             // dup3(oldfd, newfd, O_CLOEXEC) (a GNU extension)
int cps_pipe2_cloexec_nonblock(int fds[2]);             // pipe2(fds, O_CLOEXEC | O_NONBLOCK) (a GNU extension)

// --- OpenSSL function-like macros -----------------------------------------------------------------
int cps_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
int cps_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
long cps_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
long cps_SSL_set_mode(SSL *ssl, long mode);
void cps_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes);
long cps_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode);
int cps_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list);
int cps_SSL_CTX_set1_sigalgs_list(SSL_CTX *ctx, const char *list);
int cps_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert);
int cps_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *, int *, void *));
int cps_SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg);
int cps_SSL_get_ex_new_index(void);
int cps_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
long cps_SSL_set_tlsext_status_type(SSL *ssl, int type);   // client: send status_request (OCSP)
long cps_SSL_CTX_get_extra_chain_certs_count(SSL_CTX *ctx);
void cps_OPENSSL_free(void *ptr);
long cps_SSL_CTX_set1_chain(SSL_CTX *ctx, STACK_OF(X509) *chain);
STACK_OF(X509) *cps_sk_X509_new_null(void);
int cps_sk_X509_push(STACK_OF(X509) *sk, X509 *x);
void cps_sk_X509_pop_free(STACK_OF(X509) *sk);
// OCSP stapling (server side).
long cps_SSL_CTX_set_tlsext_status_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *));
long cps_SSL_set_tlsext_status_ocsp_resp(SSL *ssl, unsigned char *der, long len);  // takes ownership of der
void *cps_OPENSSL_malloc(size_t n);

// SSL_OP_* constants.
uint64_t cps_SSL_OP_NO_COMPRESSION(void);
uint64_t cps_SSL_OP_NO_RENEGOTIATION(void);
uint64_t cps_SSL_OP_CIPHER_SERVER_PREFERENCE(void);
uint64_t cps_SSL_OP_NO_TICKET(void);
uint64_t cps_SSL_OP_ALL(void);
uint64_t cps_SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION(void);
uint64_t cps_SSL_OP_IGNORE_UNEXPECTED_EOF(void);
uint64_t cps_SSL_OP_ENABLE_MIDDLEBOX_COMPAT(void);
uint64_t cps_SSL_OP_NO_ENCRYPT_THEN_MAC(void);
uint64_t cps_SSL_OP_TLSEXT_PADDING(void);

#endif
