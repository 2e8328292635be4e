/* Reference (c): a single-threaded C epoll echo server with echolab's protocol, the one-core
 * limit for a Python server to be measured against.
 *
 * Line framing: each newline-terminated request gets "[ctime] " + request, replies of one
 * read joined into one write; a line over 65536 bytes gets "ERROR line too long" and a
 * close. Raw framing (--raw): each read of up to 1024 bytes is a request. Unsent replies are
 * buffered; above 1 MiB pending the connection stops being read until the client catches up.
 * usage: epoll_server PORT [--raw]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PREFIX 27
#define MAX_LINE 65536
#define MAX_PENDING (1 << 20)

typedef struct {
    int fd, paused, closing;
    char *line; /* incomplete request carried between reads */
    size_t llen, lcap;
    char *out; /* unsent replies */
    size_t olen, ooff, ocap;
} conn_t;

static int ep, raw;
static char stamp[PREFIX + 1];
static time_t stamp_sec = -1;
static char inbuf[1 << 16];

static void refresh_stamp(void) {
    time_t t = time(NULL);
    if (t != stamp_sec) {
        char c[32];
        ctime_r(&t, c); /* "Thu Jan  1 00:00:00 1970\n" */
        snprintf(stamp, sizeof stamp, "[%.24s] ", c);
        stamp_sec = t;
    }
}

static void put(conn_t *c, const char *p, size_t n) {
    if (c->olen + n > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + n) cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out) abort();
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, p, n);
    c->olen += n;
}

static void drop(conn_t *c) {
    close(c->fd); /* closing removes it from the epoll set */
    free(c->line);
    free(c->out);
    free(c);
}

static void watch(conn_t *c) {
    unsigned ev = (c->paused ? 0 : EPOLLIN) | (c->olen > c->ooff ? EPOLLOUT : 0);
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* returns 0 when the connection was dropped */
static int flush(conn_t *c) {
    while (c->ooff < c->olen) {
        ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            drop(c);
            return 0;
        }
        c->ooff += (size_t)n;
    }
    if (c->ooff == c->olen) {
        c->ooff = c->olen = 0;
        if (c->closing) {
            drop(c);
            return 0;
        }
        if (c->ocap > (1 << 16)) { /* give back a burst's buffer */
            free(c->out);
            c->out = NULL;
            c->ocap = 0;
        }
    }
    c->paused = c->olen - c->ooff > MAX_PENDING || c->closing;
    watch(c);
    return 1;
}

static void on_data(conn_t *c, const char *p, size_t n) {
    if (raw) {
        for (size_t i = 0; i < n; i += 1024) {
            put(c, stamp, PREFIX);
            put(c, p + i, n - i < 1024 ? n - i : 1024);
        }
        return;
    }
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
        if (c->llen + take > MAX_LINE + (nl ? 1 : 0)) {
            static const char err[] = "ERROR line too long (limit 65536 bytes)\n";
            put(c, err, sizeof err - 1);
            c->closing = 1;
            shutdown(c->fd, SHUT_RD);
            return;
        }
        if (!nl) { /* keep the tail */
            if (c->llen + take > c->lcap) {
                c->lcap = (c->llen + take) * 2;
                c->line = realloc(c->line, c->lcap);
                if (!c->line) abort();
            }
            memcpy(c->line + c->llen, p, take);
            c->llen += take;
            return;
        }
        put(c, stamp, PREFIX);
        if (c->llen) {
            put(c, c->line, c->llen);
            c->llen = 0;
        }
        put(c, p, take);
        p += take;
    }
}

static void on_readable(conn_t *c) {
    ssize_t n = recv(c->fd, inbuf, raw ? 1024 : sizeof inbuf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        if (n == 0 && c->olen > c->ooff) { /* half-close: flush what is owed, then close */
            c->closing = 1;
            flush(c);
            return;
        }
        drop(c);
        return;
    }
    if (n < 0) return;
    refresh_stamp();
    on_data(c, inbuf, (size_t)n);
    flush(c);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: epoll_server PORT [--raw]\n");
        return 2;
    }
    raw = argc > 2 && !strcmp(argv[2], "--raw");
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0) {
        perror("listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("listening %d\n", atoi(argv[1]));
    fflush(stdout);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    if (!nc) abort();
                    nc->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (!flush(c)) continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (c->closing) {
                    if (evs[i].events & (EPOLLERR | EPOLLHUP)) drop(c);
                    continue;
                }
                on_readable(c);
            }
        }
    }
}
