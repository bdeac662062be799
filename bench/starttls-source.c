/*
 * bench/starttls-source.c — a lean load generator for the "seed pattern": every message on a new
 * connection with STARTTLS (and optionally AUTH PLAIN), one message, QUIT.
 *
 * Why C and OpenSSL, not Node.js or Python: the client shares the machine's two cores with the
 * server, and a TLS client handshake costs more CPU than the server's. Node's TLS client costs
 * more per session than Petrel's whole server side, so a Node load measures the client; Python's
 * ssl module is the same OpenSSL under an interpreter (plus ~1 ms per session of Python). This
 * client is OpenSSL's handshake and blocking reads/writes, nothing else, and it is the same client
 * for every server in a run (Petrel, Postfix's smtpd, the bare Node.js baseline), so ratios are fair.
 * Postfix's smtp-source cannot do STARTTLS; swaks forks Perl per message.
 *
 * Sessions are POSIX threads, each looping: connect (TCP_NODELAY) → 220 → EHLO → STARTTLS →
 * handshake (certificate verification off: load tool on loopback) → EHLO → [AUTH PLAIN] →
 * MAIL/RCPT/DATA → 250 → QUIT. With -r a thread offers the session it got last time (TLS session
 * tickets / resumption); without it every handshake is full. With -b ("bare") the session is only
 * 220 → STARTTLS → handshake → QUIT → 221: the baseline of a bare TLS session.
 *
 * Prints one JSON line: messages, errors, seconds, rate, client CPU ms per message, resumed count,
 * and p50/p99 of connect → 250-after-DATA in ms.
 *
 * Build: cc -O2 -o starttls-source bench/starttls-source.c -lssl -lcrypto -lpthread
 * Usage: starttls-source -p PORT [-h 127.0.0.1] [-s 20] [-m 2000] [-a user:pass] [-r] [-b] [-l 2048]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port = 0, sessions = 20, messages = 2000, resume = 0, bare = 0, size = 2048;
static const char *auth = NULL;
static char auth_b64[512];
static char *body;
static SSL_CTX *ctx;
static atomic_int next_msg = 0, errors = 0, resumed = 0, done_msgs = 0;
static double *latencies;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Line-buffered reader over either the plain fd or the SSL object. */
struct conn {
  int fd;
  SSL *ssl;
  char buf[4096];
  int len, pos;
};

static int conn_fill(struct conn *c) {
  int n = c->ssl ? SSL_read(c->ssl, c->buf, sizeof c->buf) : (int)read(c->fd, c->buf, sizeof c->buf);
  if (n <= 0) return -1;
  c->len = n;
  c->pos = 0;
  return 0;
}

/* Reads one SMTP reply (all lines up to "NNN "), returns its code or -1. */
static int read_reply(struct conn *c) {
  char line[1024];
  for (;;) {
    int l = 0;
    for (;;) {
      if (c->pos >= c->len && conn_fill(c) < 0) return -1;
      char ch = c->buf[c->pos++];
      if (l < (int)sizeof line - 1) line[l++] = ch;
      if (ch == '\n') break;
    }
    line[l] = 0;
    if (l >= 4 && line[3] == ' ') return atoi(line);
    if (l < 4 || line[3] != '-') return -1;
  }
}

static int send_all(struct conn *c, const char *data, int len) {
  while (len > 0) {
    int n = c->ssl ? SSL_write(c->ssl, data, len) : (int)write(c->fd, data, len);
    if (n <= 0) return -1;
    data += n;
    len -= n;
  }
  return 0;
}

static int cmd(struct conn *c, const char *line, int expect) {
  if (line && send_all(c, line, (int)strlen(line)) < 0) return -1;
  int code = read_reply(c);
  return code == expect ? 0 : -1;
}

static int one_session(SSL_SESSION **saved, int n, double *latency) {
  double t0 = now_ms();
  struct conn c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
  int ok = -1, one = 1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &sa.sin_addr);
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c.fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto out;
  if (cmd(&c, NULL, 220) < 0) goto out;
  if (!bare && cmd(&c, "EHLO bench.example\r\n", 250) < 0) goto out;
  if (cmd(&c, "STARTTLS\r\n", 220) < 0) goto out;
  c.ssl = SSL_new(ctx);
  SSL_set_fd(c.ssl, c.fd);
  if (resume && *saved) SSL_set_session(c.ssl, *saved);
  if (SSL_connect(c.ssl) != 1) goto out;
  if (SSL_session_reused(c.ssl)) resumed++;
  c.len = c.pos = 0;
  if (bare) {
    if (cmd(&c, "QUIT\r\n", 221) < 0) goto out;
    *latency = now_ms() - t0;
    ok = 0;
    goto out;
  }
  if (cmd(&c, "EHLO bench.example\r\n", 250) < 0) goto out;
  if (auth) {
    char line[600];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", auth_b64);
    if (cmd(&c, line, 235) < 0) goto out;
  }
  if (cmd(&c, "MAIL FROM:<bench@bench.example>\r\n", 250) < 0) goto out;
  if (cmd(&c, "RCPT TO:<sink@example.com>\r\n", 250) < 0) goto out;
  if (cmd(&c, "DATA\r\n", 354) < 0) goto out;
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "From: bench@bench.example\r\nTo: sink@example.com\r\nSubject: bench %d\r\n\r\n", n);
  if (send_all(&c, head, hl) < 0 || send_all(&c, body, (int)strlen(body)) < 0) goto out;
  if (cmd(&c, ".\r\n", 250) < 0) goto out;
  *latency = now_ms() - t0;
  if (cmd(&c, "QUIT\r\n", 221) < 0) goto out;
  ok = 0;
out:
  if (c.ssl) {
    /* The SMTP dialogue ended cleanly (221): mark the TLS connection shut down without another
       write, or SSL_free would mark the session not resumable. */
    if (ok == 0) SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    if (resume && ok == 0) {
      SSL_SESSION *s = SSL_get1_session(c.ssl);
      if (*saved) SSL_SESSION_free(*saved);
      *saved = s;
    }
    SSL_free(c.ssl);
  }
  close(c.fd);
  return ok;
}

static void *worker(void *arg) {
  (void)arg;
  SSL_SESSION *saved = NULL;
  for (;;) {
    int n = next_msg++;
    if (n >= messages) break;
    double latency = 0;
    if (one_session(&saved, n, &latency) < 0) {
      errors++;
      if (errors > 100) break;
    } else {
      latencies[done_msgs++] = latency;
    }
  }
  if (saved) SSL_SESSION_free(saved);
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "h:p:s:m:a:rbl:")) != -1) {
    switch (opt) {
      case 'h': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 's': sessions = atoi(optarg); break;
      case 'm': messages = atoi(optarg); break;
      case 'a': auth = optarg; break;
      case 'r': resume = 1; break;
      case 'b': bare = 1; break;
      case 'l': size = atoi(optarg); break;
      default:
        fprintf(stderr, "usage: %s -p PORT [-h HOST] [-s sessions] [-m messages] [-a user:pass] [-r] [-b] [-l size]\n", argv[0]);
        return 2;
    }
  }
  if (!port) return 2;
  if (auth) {
    /* AUTH PLAIN: base64("\0user\0pass") (RFC 4616). */
    const char *colon = strchr(auth, ':');
    if (!colon) return 2;
    unsigned char raw[400];
    int ul = (int)(colon - auth), pl = (int)strlen(colon + 1);
    raw[0] = 0;
    memcpy(raw + 1, auth, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, colon + 1, pl);
    EVP_EncodeBlock((unsigned char *)auth_b64, raw, 2 + ul + pl);
  }
  /* The body: lines of 78 characters + CRLF, about `size` bytes, never a line starting with ".". */
  body = malloc(size + 100);
  int bl = 0;
  while (bl < size) {
    memset(body + bl, 'x', 78);
    memcpy(body + bl + 78, "\r\n", 2);
    bl += 80;
  }
  body[bl] = 0;
  latencies = calloc(messages, sizeof(double));
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  /* Resumption is per thread (-r), never through a shared cache; OpenSSL keeps the tickets a TLS 1.3
     server sends only when the client cache mode is on. */
  SSL_CTX_set_session_cache_mode(ctx, resume ? SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE : SSL_SESS_CACHE_OFF);
  if (!resume) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  pthread_t *threads = calloc(sessions, sizeof(pthread_t));
  double t0 = now_ms();
  for (int i = 0; i < sessions; i++) pthread_create(&threads[i], NULL, worker, NULL);
  for (int i = 0; i < sessions; i++) pthread_join(threads[i], NULL);
  double seconds = (now_ms() - t0) / 1e3;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
  int ok = done_msgs;
  qsort(latencies, ok, sizeof(double), cmp);
  printf("{\"messages\":%d,\"errors\":%d,\"seconds\":%.3f,\"rate\":%.1f,\"clientCpuMsPerMessage\":%.3f,"
         "\"resumed\":%d,\"p50Ms\":%.2f,\"p99Ms\":%.2f}\n",
         ok, (int)errors, seconds, ok / seconds, ok ? cpu / ok : 0, (int)resumed,
         ok ? latencies[ok / 2] : 0, ok ? latencies[(int)(ok * 0.99)] : 0);
  return errors ? 1 : 0;
}
