#define _GNU_SOURCE
#include "CProxyShims.h"
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <malloc.h>
#include <openssl/ssl.h>

int cps_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) { return accept4(fd, addr, len, flags); }
int cps_dup3_cloexec(int oldfd, int newfd) { return dup3(oldfd, newfd, O_CLOEXEC); }
int cps_pipe2_cloexec_nonblock(int fds[2]) { return pipe2(fds, O_CLOEXEC | O_NONBLOCK); }
int cps_sock_nonblock(void) { return SOCK_NONBLOCK; }
int cps_sock_cloexec(void) { return SOCK_CLOEXEC; }
uint32_t cps_epollin(void) { return EPOLLIN; }
uint32_t cps_epollout(void) { return EPOLLOUT; }
uint32_t cps_epollerr(void) { return EPOLLERR; }
uint32_t cps_epollhup(void) { return EPOLLHUP; }
uint32_t cps_epollrdhup(void) { return EPOLLRDHUP; }
uint32_t cps_epollet(void) { return EPOLLET; }

static void cps_fill(sigset_t *set, const int *signals, int count) {
    sigemptyset(set);
    for (int i = 0; i < count; i++) sigaddset(set, signals[i]);
}
int cps_sigmask_block(const int *signals, int count) {
    sigset_t set; cps_fill(&set, signals, count);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}
int cps_signalfd(const int *signals, int count) {
    sigset_t set; cps_fill(&set, signals, count);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}
int cps_signalfd_read_signo(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    return n == (ssize_t)sizeof info ? (int)info.ssi_signo : -1;
}

int cps_malloc_trim(void) { return malloc_trim(0); }

/* A socket BIO of an earlier connection, pointed at `fd` and put back in the state BIO_new(BIO_s_socket()) leaves it
   in: sock_new sets no flags, so every flag (retry, EOF seen) is cleared. BIO_NOCLOSE as SSL_set_fd uses. */
void cps_BIO_reuse_socket(BIO *bio, int fd) {
    BIO_set_fd(bio, fd, BIO_NOCLOSE);
    BIO_clear_flags(bio, ~0);
    BIO_set_data(bio, NULL);
}

/* The socket BIO of every TLS connection (accepted clients, TLS origins): OpenSSL's socket BIO whose read also notes
   whether it left the socket empty (fewer bytes than asked for, or EAGAIN). On an edge-triggered socket, bytes that
   arrive after such a read bring a new edge, so a connection that has consumed everything OpenSSL buffered can wait
   for that edge instead of calling SSL_read once more only to see EAGAIN: one system call and one SSL_read less per
   read, as nginx's `rev->ready = 0` after a short recv. The note lives in the BIO's data pointer, which the socket
   BIO leaves unused (sock_new sets it to NULL; nothing else reads it). Every other operation is the socket BIO's. */
static BIO_METHOD *draining_socket;
static int (*socket_read)(BIO *, char *, int);
static pthread_once_t draining_socket_once = PTHREAD_ONCE_INIT;

static int draining_read(BIO *b, char *out, int outl) {
    int n = socket_read(b, out, outl);
    int emptied = (n > 0 && n < outl) || (n < 0 && BIO_should_retry(b));
    BIO_set_data(b, emptied ? (void *)1 : NULL);
    return n;
}

static void draining_socket_init(void) {
    const BIO_METHOD *s = BIO_s_socket();
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "socket (edgeproxy)");
    if (m == NULL) return;
    socket_read = BIO_meth_get_read(s);
    if (socket_read == NULL || !BIO_meth_set_read(m, draining_read) || !BIO_meth_set_write(m, BIO_meth_get_write(s)) ||
        !BIO_meth_set_puts(m, BIO_meth_get_puts(s)) || !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(s)) ||
        !BIO_meth_set_create(m, BIO_meth_get_create(s)) || !BIO_meth_set_destroy(m, BIO_meth_get_destroy(s))) {
        BIO_meth_free(m);
        return;
    }
    draining_socket = m;
}

BIO *cps_BIO_new_socket(int fd) {
    pthread_once(&draining_socket_once, draining_socket_init);
    BIO *b = BIO_new(draining_socket != NULL ? draining_socket : BIO_s_socket());
    if (b != NULL) BIO_set_fd(b, fd, BIO_NOCLOSE);
    return b;
}

int cps_SSL_socket_emptied(const SSL *ssl) {
    if (SSL_has_pending(ssl)) return 0;
    BIO *b = SSL_get_rbio(ssl);
    return b != NULL && BIO_get_data(b) != NULL;
}

int cps_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_min_proto_version(ctx, v); }
int cps_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_max_proto_version(ctx, v); }
long cps_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
long cps_SSL_set_mode(SSL *ssl, long mode) { return SSL_set_mode(ssl, mode); }
void cps_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes) { SSL_CTX_set_read_ahead(ctx, yes); }
long cps_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
int cps_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
int cps_SSL_CTX_set1_sigalgs_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_sigalgs_list(ctx, list); }
int cps_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert) { return (int)SSL_CTX_add1_chain_cert(ctx, cert); }
int cps_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, int (*cb)(SSL *, int *, void *)) {
    return (int)SSL_CTX_set_tlsext_servername_callback(ctx, cb);
}
int cps_SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg) { return (int)SSL_CTX_set_tlsext_servername_arg(ctx, arg); }
int cps_SSL_get_ex_new_index(void) { return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }
int cps_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
long cps_SSL_set_tlsext_status_type(SSL *ssl, int type) { return SSL_set_tlsext_status_type(ssl, type); }
long cps_SSL_CTX_get_extra_chain_certs_count(SSL_CTX *ctx) {
    STACK_OF(X509) *sk = NULL; SSL_CTX_get_extra_chain_certs(ctx, &sk); return sk ? sk_X509_num(sk) : 0;
}
void cps_OPENSSL_free(void *ptr) { OPENSSL_free(ptr); }
long cps_SSL_CTX_set1_chain(SSL_CTX *ctx, STACK_OF(X509) *chain) { return SSL_CTX_set1_chain(ctx, chain); }
STACK_OF(X509) *cps_sk_X509_new_null(void) { return sk_X509_new_null(); }
int cps_sk_X509_push(STACK_OF(X509) *sk, X509 *x) { return sk_X509_push(sk, x); }
void cps_sk_X509_pop_free(STACK_OF(X509) *sk) { sk_X509_pop_free(sk, X509_free); }
long cps_SSL_CTX_set_tlsext_status_cb(SSL_CTX *ctx, int (*cb)(SSL *, void *)) { return SSL_CTX_set_tlsext_status_cb(ctx, cb); }
long cps_SSL_set_tlsext_status_ocsp_resp(SSL *ssl, unsigned char *der, long len) { return SSL_set_tlsext_status_ocsp_resp(ssl, der, len); }
void *cps_OPENSSL_malloc(size_t n) { return OPENSSL_malloc(n); }

uint64_t cps_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
uint64_t cps_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
uint64_t cps_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
uint64_t cps_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }
uint64_t cps_SSL_OP_ALL(void) { return SSL_OP_ALL; }
uint64_t cps_SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION(void) { return SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION; }
uint64_t cps_SSL_OP_IGNORE_UNEXPECTED_EOF(void) { return SSL_OP_IGNORE_UNEXPECTED_EOF; }
uint64_t cps_SSL_OP_ENABLE_MIDDLEBOX_COMPAT(void) { return SSL_OP_ENABLE_MIDDLEBOX_COMPAT; }
uint64_t cps_SSL_OP_NO_ENCRYPT_THEN_MAC(void) { return SSL_OP_NO_ENCRYPT_THEN_MAC; }
uint64_t cps_SSL_OP_TLSEXT_PADDING(void) { return SSL_OP_TLSEXT_PADDING; }
