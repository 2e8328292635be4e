/* echolab load generator: one thread, epoll, non-blocking sockets, many connections.
 *
 * Every reply is checked: a 27-byte "[ctime] " prefix, then the exact request. Each request
 * carries its connection id and sequence number, and the expected reply is regenerated from
 * (connection, next expected sequence), so a reordered, dropped or duplicated reply fails.
 *
 * Closed loop (default): each connection keeps --depth requests outstanding and sends a new
 * one per reply; latency = reply time - send time. Open loop (--rate R, total req/s): each
 * request has an intended send time on a fixed schedule and latency counts from that
 * intended time, so a stalled server cannot hide its stall (no coordinated omission).
 *
 * Phases: connect in batches of 500, each connection verified by one exchange; warm up;
 * measure; stop sending and drain every outstanding reply (checked too). --idle instead
 * holds all connections open and reports the servers' VmRSS before and after.
 * Result: one JSON object on stdout. Exit 1 on any protocol error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PREFIX 27
#define HIST_US 2000000 /* 1 us buckets up to 2 s; slower replies land in the last one */
#define MAX_PIDS 64

typedef struct {
    int fd;
    uint32_t id;
    uint64_t next_send, next_recv; /* sequence numbers */
    uint64_t *sent_at;             /* ring of depth: send (or intended) time, ns */
    uint64_t next_intended;        /* open loop only */
    char *rbuf, *wbuf, *expect;
    size_t rlen, rcap, wlen, woff, wcap;
    int want_out, dead;
} conn_t;

static int n_conns = 1, depth = 1, size = 64, raw = 0, idle = 0, port = 0;
/* Loopback unless --host names the lab's own server container (benchmarks/server/container.py). */
static const char *host = "127.0.0.1";
static double duration = 3.0, warmup = 0.5, rate = 0.0, hold = 1.0;
static int pids[MAX_PIDS], n_pids = 0;
static conn_t *conns;
static int ep;
static int sending = 0, measuring = 0; /* sending: refill after each reply */
static uint64_t errors = 0, replies_measured = 0, replies_total = 0, late_lat_max = 0;
static uint32_t *hist;
static char filler[1 << 16];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void fail(conn_t *c, const char *why, const char *got, size_t n) {
    if (errors < 5) {
        fprintf(stderr, "loadgen: conn %u seq %llu: %s: got %.*s\n", c->id,
                (unsigned long long)c->next_recv, why, (int)(n > 80 ? 80 : n), got);
    }
    errors++;
    c->dead = 1;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void put_hex(char *out, uint64_t value, int digits) {
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, value >>= 4) out[i] = hex[value & 15];
}

/* request: "<id 8 hex>:<seq 16 hex>:" + filler, newline-terminated unless raw. Written by
 * hand, not snprintf: it runs twice per message (to send, then to check the reply), and at
 * 700k msg/s snprintf alone would take a large share of the load generator's one core. */
#define HEAD 26
static void make_request(conn_t *c, uint64_t seq, char *out) {
    put_hex(out, c->id, 8);
    out[8] = ':';
    put_hex(out + 9, seq, 16);
    out[25] = ':';
    memcpy(out + HEAD, filler, (size_t)size - HEAD);
    if (!raw) out[size - 1] = '\n';
}

static int prefix_ok(const unsigned char *p) {
    /* "[Thu Jan  1 00:00:00 1970] "; the stamp changes once a second, so a prefix equal to
     * the last one that passed the shape check passes without the per-byte check. */
    static const char shape[] = "[aaa aaa _d dd:dd:dd dddd] ";
    static unsigned char last_ok[PREFIX];
    static int have_last = 0;
    if (have_last && memcmp(p, last_ok, PREFIX) == 0) return 1;
    for (int i = 0; i < PREFIX; i++) {
        char s = shape[i];
        unsigned char ch = p[i];
        if (s == 'a' && !isalpha(ch)) return 0;
        if (s == 'd' && !isdigit(ch)) return 0;
        if (s == '_' && !(ch == ' ' || isdigit(ch))) return 0;
        if (s != 'a' && s != 'd' && s != '_' && ch != (unsigned char)s) return 0;
    }
    memcpy(last_ok, p, PREFIX);
    have_last = 1;
    return 1;
}

static void queue_send(conn_t *c, uint64_t intended) {
    if (c->wlen + (size_t)size > c->wcap) {
        c->wcap = (c->wlen + (size_t)size) * 2;
        c->wbuf = realloc(c->wbuf, c->wcap);
        if (!c->wbuf) die("realloc");
    }
    make_request(c, c->next_send, c->wbuf + c->wlen);
    c->wlen += (size_t)size;
    c->sent_at[c->next_send % (uint64_t)depth] = intended;
    c->next_send++;
}

static void set_out(conn_t *c, int on) {
    if (c->want_out == on || c->dead) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = on;
}

static void flush(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(c, 1);
                return;
            }
            fail(c, strerror(errno), "", 0);
            return;
        }
        c->woff += (size_t)n;
    }
    c->woff = c->wlen = 0;
    set_out(c, 0);
}

/* closed loop: top up to depth outstanding; open loop: send what the schedule allows */
static void top_up(conn_t *c, uint64_t now) {
    if (!sending || c->dead) return;
    while (c->next_send - c->next_recv < (uint64_t)depth) {
        if (rate > 0) {
            if (c->next_intended > now) break;
            queue_send(c, c->next_intended);
            c->next_intended += (uint64_t)(1e9 * n_conns / rate);
        } else {
            queue_send(c, now);
        }
    }
    flush(c);
}

static void on_readable(conn_t *c) {
    size_t reply = PREFIX + (size_t)size;
    for (;;) {
        if (c->rcap - c->rlen < 4096) {
            c->rcap *= 2;
            c->rbuf = realloc(c->rbuf, c->rcap);
            if (!c->rbuf) die("realloc");
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n == 0) {
            fail(c, "server closed the connection", c->rbuf, c->rlen);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            fail(c, strerror(errno), "", 0);
            return;
        }
        c->rlen += (size_t)n;
        if ((size_t)n < c->rcap - c->rlen) break; /* short read: the socket is drained */
    }
    uint64_t now = now_ns();
    size_t off = 0;
    while (c->rlen - off >= reply) {
        const char *r = c->rbuf + off;
        if (c->next_recv >= c->next_send) {
            fail(c, "reply to a request never sent", r, reply);
            return;
        }
        if (!prefix_ok((const unsigned char *)r)) {
            fail(c, "bad [ctime] prefix", r, reply);
            return;
        }
        make_request(c, c->next_recv, c->expect);
        if (memcmp(r + PREFIX, c->expect, (size_t)size) != 0) {
            fail(c, "echo mismatch or out of order", r, reply);
            return;
        }
        uint64_t lat = now - c->sent_at[c->next_recv % (uint64_t)depth];
        c->next_recv++;
        replies_total++;
        if (measuring) {
            uint64_t us = lat / 1000;
            if (us >= HIST_US) us = HIST_US - 1;
            if (lat > late_lat_max) late_lat_max = lat;
            hist[us]++;
            replies_measured++;
        }
        off += reply;
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    top_up(c, now);
}

static double pct(double p) {
    uint64_t want = (uint64_t)(p * (double)replies_measured), seen = 0;
    if (want >= replies_measured && replies_measured) want = replies_measured - 1;
    for (int i = 0; i < HIST_US; i++) {
        seen += hist[i];
        if (seen > want) return i + 0.5;
    }
    return -1;
}

static double pids_cpu(void) { /* utime+stime of every server pid, seconds */
    double total = 0;
    long tck = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < n_pids; i++) {
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/stat", pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')'); /* comm may hold spaces */
        unsigned long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                        &st) == 2)
            total += (double)(ut + st) / (double)tck;
    }
    return total;
}

static long pids_rss_kb(void) {
    long total = 0;
    for (int i = 0; i < n_pids; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmRSS:", 6) == 0) total += atol(line + 6);
        fclose(f);
    }
    return total;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int live(void) {
    int n = 0;
    for (int i = 0; i < n_conns; i++) n += !conns[i].dead;
    return n;
}

static int outstanding(void) {
    int n = 0;
    for (int i = 0; i < n_conns; i++)
        if (!conns[i].dead && conns[i].next_recv < conns[i].next_send) n++;
    return n;
}

static void poll_once(int timeout_ms, int tfd) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) { /* the open-loop timer */
            uint64_t ticks;
            if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("timerfd");
            continue;
        }
        conn_t *c = evs[i].data.ptr;
        if (c->dead) continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        if (!c->dead && (evs[i].events & EPOLLOUT)) flush(c);
    }
}

static void arm_timer(int tfd, uint64_t now) {
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < n_conns; i++) {
        conn_t *c = &conns[i];
        if (c->dead) continue;
        if (c->next_send - c->next_recv < (uint64_t)depth) {
            if (c->next_intended <= now) top_up(c, now);
            if (c->next_intended < next && c->next_send - c->next_recv < (uint64_t)depth)
                next = c->next_intended;
        }
    }
    if (next == UINT64_MAX) return;
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(next / 1000000000ull);
    its.it_value.tv_nsec = (long)(next % 1000000000ull);
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host IPV4] [--conns N] [--depth D] [--size BYTES] [--duration S]\n"
            "  [--warmup S] [--rate REQ_PER_S] [--raw] [--idle] [--hold S] [--pids 1,2]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--idle")) idle = 1;
        else if (!v) usage();
        else if (!strcmp(a, "--port")) port = atoi(v), i++;
        else if (!strcmp(a, "--host")) host = v, i++;
        else if (!strcmp(a, "--conns")) n_conns = atoi(v), i++;
        else if (!strcmp(a, "--depth")) depth = atoi(v), i++;
        else if (!strcmp(a, "--size")) size = atoi(v), i++;
        else if (!strcmp(a, "--duration")) duration = atof(v), i++;
        else if (!strcmp(a, "--warmup")) warmup = atof(v), i++;
        else if (!strcmp(a, "--rate")) rate = atof(v), i++;
        else if (!strcmp(a, "--hold")) hold = atof(v), i++;
        else if (!strcmp(a, "--pids")) {
            for (char *s = argv[++i]; s && *s && n_pids < MAX_PIDS;) {
                pids[n_pids++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
            }
        } else usage();
    }
    if (port <= 0 || n_conns < 1 || depth < 1 || size < 32 || size > (int)sizeof filler ||
        duration <= 0 || duration > 60)
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)n_conns + 16 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: fd limit %lu too low for %d connections\n",
                (unsigned long)rl.rlim_cur, n_conns);
        return 2;
    }
    for (size_t i = 0; i < sizeof filler; i++) filler[i] = (char)('a' + i % 26);
    hist = calloc(HIST_US, sizeof *hist);
    conns = calloc((size_t)n_conns, sizeof *conns);
    if (!hist || !conns) die("calloc");
    ep = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (ep < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    long rss_before = pids_rss_kb();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address, got %s\n", host);
        return 2;
    }
    uint64_t t_connect = now_ns();
    /* connect in batches; each connection's first exchange proves the server accepted it */
    int saved_depth = depth;
    for (int base = 0; base < n_conns; base += 500) {
        int end = base + 500 < n_conns ? base + 500 : n_conns;
        for (int i = base; i < end; i++) {
            conn_t *c = &conns[i];
            c->id = (uint32_t)i;
            c->fd = socket(AF_INET, SOCK_STREAM, 0);
            if (c->fd < 0) die("socket");
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
            fcntl(c->fd, F_SETFL, O_NONBLOCK);
            c->rcap = (size_t)saved_depth * (PREFIX + (size_t)size) * 2 + 4096;
            c->rbuf = malloc(c->rcap);
            c->wcap = (size_t)saved_depth * (size_t)size * 2;
            c->wbuf = malloc(c->wcap);
            c->expect = malloc((size_t)size);
            c->sent_at = calloc((size_t)saved_depth, sizeof *c->sent_at);
            if (!c->rbuf || !c->wbuf || !c->expect || !c->sent_at) die("malloc");
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
            queue_send(c, now_ns());
            flush(c);
        }
        uint64_t deadline = now_ns() + 10000000000ull;
        while (outstanding() && now_ns() < deadline) poll_once(100, tfd);
        if (outstanding()) {
            fprintf(stderr, "loadgen: connections %d-%d got no first reply in 10 s\n", base, end);
            return 2;
        }
    }
    double connect_s = (double)(now_ns() - t_connect) / 1e9;
    double cpu0 = 0, self0 = 0, cpu1 = 0, self1 = 0;
    uint64_t measured_ns = 0;
    long rss_kb = 0;
    if (errors) goto report;

    if (idle) {
        uint64_t until = now_ns() + (uint64_t)(hold * 1e9);
        while (now_ns() < until) poll_once(100, tfd); /* any traffic now would be an error */
        long rss_after = pids_rss_kb();
        int held = live();
        printf("{\"mode\": \"idle\", \"conns\": %d, \"held\": %d, \"errors\": %llu, "
               "\"connect_s\": %.3f, \"rss_before_kb\": %ld, \"rss_after_kb\": %ld, "
               "\"bytes_per_conn\": %.1f}\n",
               n_conns, held, (unsigned long long)errors, connect_s, rss_before, rss_after,
               held ? (double)(rss_after - rss_before) * 1024.0 / held : 0.0);
        return errors ? 1 : 0;
    }

    sending = 1;
    uint64_t start = now_ns();
    for (int i = 0; i < n_conns; i++) { /* spread open-loop schedules over one interval */
        conns[i].next_intended = start + (uint64_t)(1e9 * i / (rate > 0 ? rate : 1));
        top_up(&conns[i], start);
    }
    uint64_t t_measure = start + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure) {
            measuring = 1;
            cpu0 = pids_cpu();
            self0 = self_cpu();
        }
        if (now >= t_end) break;
        if (rate > 0) arm_timer(tfd, now);
        poll_once(10, tfd);
    }
    measured_ns = now_ns() - t_measure;
    measuring = 0;
    cpu1 = pids_cpu();
    self1 = self_cpu();
    rss_kb = pids_rss_kb();
    sending = 0;
    uint64_t drain_until = now_ns() + 5000000000ull;
    while (outstanding() && now_ns() < drain_until) poll_once(50, tfd);
    int unanswered = outstanding();
    if (unanswered) {
        fprintf(stderr, "loadgen: %d connections still awaiting replies after 5 s\n",
                unanswered);
        errors += (uint64_t)unanswered;
    }
report:;
    double secs = (double)measured_ns / 1e9;
    printf("{\"mode\": \"%s\", \"conns\": %d, \"depth\": %d, \"size\": %d, \"rate\": %.0f, "
           "\"errors\": %llu, \"replies\": %llu, \"replies_total\": %llu, \"seconds\": %.3f, "
           "\"msgs_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f, \"server_cpu_pct\": %.1f, \"loadgen_cpu_pct\": %.1f, "
           "\"server_rss_kb\": %ld, \"connect_s\": %.3f}\n",
           raw ? "raw" : "line", n_conns, depth, size, rate, (unsigned long long)errors,
           (unsigned long long)replies_measured, (unsigned long long)replies_total, secs,
           secs > 0 ? (double)replies_measured / secs : 0.0, pct(0.50), pct(0.99), pct(0.999),
           (double)late_lat_max / 1000.0, secs > 0 ? 100.0 * (cpu1 - cpu0) / secs : 0.0,
           secs > 0 ? 100.0 * (self1 - self0) / secs : 0.0, rss_kb,
           connect_s);
    return errors ? 1 : 0;
}
