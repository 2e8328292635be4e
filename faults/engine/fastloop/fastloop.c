/* echolab_fastloop: the fault engine's packet path, compiled.
 *
 * Python stays the control plane: it decides (Schedule, seeded) and answers the control socket.
 * This module owns what happens per packet: reading NFQUEUE messages (recvmmsg, many a call),
 * holding each packet until its release time (a binary heap), waking for the next deadline
 * (an absolute CLOCK_MONOTONIC timerfd: an hrtimer with no slack), a short spin before it,
 * and the verdicts (several in one sendmsg; with keep_order one NFQNL_MSG_VERDICT_BATCH).
 *
 * Python is called once per batch of packets read (on_batch(arrivals) -> releases, None to
 * drop), once per `every` timer wakes (on_wakes(lates) -> the spin to use), and when the
 * control socket is readable (serve()). Samples (lateness, drawn and held delay, receive lag,
 * wake lateness) are kept here and handed to Python by drain(). Only the metadata of a packet
 * is copied (NFQNL_COPY_META): the engine never reads a payload.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define BATCH 64            /* messages per recvmmsg */
#define MSG_BYTES 2048      /* one metadata message fits with room to spare */
#define SEND_BYTES 65536    /* verdicts per sendmsg: ~2,000 */
#define KEPT 1000000        /* samples kept per series, as the Python engine */
#define RCVBUF (8 << 20)
#define EXPIRED (-1.0)      /* armed_at of a timer that fired and was not re-armed yet */

enum { S_LATE, S_DRAWN, S_HELD, S_LAG, S_WAKE, S_SEND, NSERIES };
static const char *SERIES[NSERIES] = {"late_us", "drawn_us", "held_us", "recv_lag_us",
                                      "wake_late_us", "send_us"};

typedef struct {
    double release, read_at;
    uint64_t order;
    uint32_t id;
} Held;

typedef struct {
    double *v;
    Py_ssize_t n, cap;
    long long total; /* ever appended: the cap is on the total, as in the Python engine */
} Series;

typedef struct {
    PyObject_HEAD
    struct mnl_socket *nl;
    int fd, tfd;
    uint32_t queue, portid, seq;
    int keep_order, kernel_clock;
    Held *heap;
    Py_ssize_t nheld, capheld;
    uint64_t order;
    long long seen, dropped, released, stamped, verdict_errors, enobufs;
    /* Where the loop's time goes, counted here (no profiler runs in a sidecar): system calls by
     * kind, and the time spent inside the verdict sends, which carry each accepted packet on
     * through the rest of the stack (nf_reinject runs the output path and, when bottom halves
     * are re-enabled, the receiver's softirq, all in this thread) and in Python callbacks. */
    long long n_poll, n_timer, n_recv, n_send, n_arm;
    double send_s, recv_s, python_s;
    Series s[NSERIES];
    double armed_at; /* the timerfd's expiry, 0 when disarmed, EXPIRED when it fired */
    double spin;     /* seconds before a deadline at which the loop stops sleeping */
    double fixed;    /* >= 0: every packet gets this delay, decided here (set_fixed) */
    double last_release; /* the latest release decided here (keep_order holds to it) */
    int every;       /* wakes between calls of on_wakes */
    double *wakes;   /* the lates since the last on_wakes */
    int nwakes;
    char *in;        /* BATCH x MSG_BYTES */
    char *out;       /* SEND_BYTES */
} Loop;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sample(Loop *self, int which, double value) {
    Series *s = &self->s[which];
    if (s->total >= KEPT)
        return;
    if (s->n == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 4096;
        double *v = PyMem_RawRealloc(s->v, cap * sizeof(double));
        if (v == NULL)
            return; /* a lost sample, never a lost packet */
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = value;
    s->total++;
}

/* -- the heap: (release, order) ascending ------------------------------------------------------ */

static int before(const Held *a, const Held *b) {
    return a->release < b->release || (a->release == b->release && a->order < b->order);
}

static int push(Loop *self, Held h) {
    if (self->nheld == self->capheld) {
        Py_ssize_t cap = self->capheld ? self->capheld * 2 : 1024;
        Held *heap = PyMem_RawRealloc(self->heap, cap * sizeof(Held));
        if (heap == NULL)
            return -1;
        self->heap = heap, self->capheld = cap;
    }
    Py_ssize_t i = self->nheld++;
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!before(&h, &self->heap[parent]))
            break;
        self->heap[i] = self->heap[parent];
        i = parent;
    }
    self->heap[i] = h;
    return 0;
}

static Held pop(Loop *self) {
    Held top = self->heap[0], last = self->heap[--self->nheld];
    Py_ssize_t i = 0, n = self->nheld;
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && before(&self->heap[child + 1], &self->heap[child]))
            child++;
        if (!before(&self->heap[child], &last))
            break;
        self->heap[i] = self->heap[child];
        i = child;
    }
    if (n > 0)
        self->heap[i] = last;
    return top;
}

/* -- netlink ------------------------------------------------------------------------------------- */

static int send_all(Loop *self, const void *buf, size_t len) {
    if (len == 0)
        return 0;
    double t0 = mono();
    ssize_t sent = mnl_socket_sendto(self->nl, buf, len);
    double took = mono() - t0;
    self->send_s += took;
    sample(self, S_SEND, took * 1e6);
    self->n_send++;
    if (sent < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* A batch of verdict messages in self->out, sent when full or flushed. */
typedef struct {
    struct mnl_nlmsg_batch *b;
} Verdicts;

static int verdict(Loop *self, Verdicts *v, int type, uint32_t id, int what) {
    if (v->b == NULL)
        v->b = mnl_nlmsg_batch_start(self->out, SEND_BYTES);
    struct nlmsghdr *nlh = nfq_nlmsg_put((char *)mnl_nlmsg_batch_current(v->b), type, self->queue);
    nfq_nlmsg_verdict_put(nlh, id, what);
    if (!mnl_nlmsg_batch_next(v->b)) { /* full: send all but the last, which starts anew */
        size_t len = mnl_nlmsg_batch_size(v->b);
        if (send_all(self, mnl_nlmsg_batch_head(v->b), len) < 0)
            return -1;
        mnl_nlmsg_batch_reset(v->b);
    }
    return 0;
}

static int flush(Loop *self, Verdicts *v) {
    if (v->b == NULL)
        return 0;
    int rc = send_all(self, mnl_nlmsg_batch_head(v->b), mnl_nlmsg_batch_size(v->b));
    mnl_nlmsg_batch_stop(v->b);
    v->b = NULL;
    return rc;
}

/* Send one config message and wait for its acknowledgement; OSError if refused. */
static int configure(Loop *self, struct nlmsghdr *nlh) {
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = ++self->seq;
    if (send_all(self, nlh, nlh->nlmsg_len) < 0)
        return -1;
    for (;;) {
        ssize_t got = mnl_socket_recvfrom(self->nl, self->in, MSG_BYTES);
        if (got < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        int len = (int)got;
        struct nlmsghdr *m = (struct nlmsghdr *)self->in;
        for (; mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
            if (m->nlmsg_type == NLMSG_ERROR && m->nlmsg_seq == self->seq) {
                struct nlmsgerr *err = mnl_nlmsg_get_payload(m);
                if (err->error != 0) {
                    errno = -err->error;
                    PyErr_SetFromErrno(PyExc_OSError);
                    return -1;
                }
                return 0;
            }
        }
    }
}

static int bind_queue(Loop *self, int max_len) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, self->queue);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if (configure(self, nlh) < 0)
        return -1;
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, self->queue);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0xffff);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, (uint32_t)max_len);
    /* GSO: a large segment is queued whole instead of cut up first (only metadata is read) */
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
    return configure(self, nlh);
}

/* -- the object ---------------------------------------------------------------------------------- */

static PyObject *Loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Loop *self = (Loop *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->tfd = -1;
    return (PyObject *)self;
}

static void Loop_dealloc(Loop *self) {
    if (self->nl != NULL)
        mnl_socket_close(self->nl);
    if (self->tfd >= 0)
        close(self->tfd);
    for (int i = 0; i < NSERIES; i++)
        PyMem_RawFree(self->s[i].v);
    PyMem_RawFree(self->heap);
    PyMem_RawFree(self->wakes);
    PyMem_RawFree(self->in);
    PyMem_RawFree(self->out);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Loop_init(Loop *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"queue", "max_len", "keep_order", "kernel_clock", "spin_s", "every",
                         NULL};
    unsigned int queue = 0;
    int max_len = 10000, keep_order = 1, kernel_clock = 0, every = 32;
    double spin = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Iippdi", kw, &queue, &max_len, &keep_order,
                                     &kernel_clock, &spin, &every))
        return -1;
    if (self->nl != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is bound already");
        return -1;
    }
    if (max_len < 1 || every < 1 || spin < 0) {
        PyErr_SetString(PyExc_ValueError, "max_len and every must be >= 1, spin_s >= 0");
        return -1;
    }
    self->queue = queue, self->keep_order = keep_order, self->kernel_clock = kernel_clock;
    self->spin = spin, self->every = every;
    self->fixed = -1.0, self->last_release = -INFINITY;
    self->in = PyMem_RawMalloc((size_t)BATCH * MSG_BYTES);
    self->out = PyMem_RawMalloc(SEND_BYTES + MNL_SOCKET_BUFFER_SIZE); /* + the one that overflows */
    self->wakes = PyMem_RawMalloc(sizeof(double) * (size_t)every);
    if (self->in == NULL || self->out == NULL || self->wakes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->nl = mnl_socket_open(NETLINK_NETFILTER);
    if (self->nl == NULL || mnl_socket_bind(self->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->fd = mnl_socket_get_fd(self->nl);
    self->portid = mnl_socket_get_portid(self->nl);
    int size = RCVBUF;
    /* FORCE passes rmem_max with CAP_NET_ADMIN (the sidecar has it); else the plain one. */
    if (setsockopt(self->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(self->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    self->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->tfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return bind_queue(self, max_len);
}

/* Accept everything due by `now` (all, with `all`): one sendmsg. */
static int release(Loop *self, double now, int all) {
    Verdicts v = {NULL};
    Held last = {0};
    int any = 0;
    while (self->nheld > 0 && (all || self->heap[0].release <= now)) {
        Held h = pop(self);
        self->released++;
        if (!all) {
            sample(self, S_LATE, (now - h.release) * 1e6);
            sample(self, S_DRAWN, (h.release - h.read_at) * 1e6);
            sample(self, S_HELD, (now - h.read_at) * 1e6);
        }
        if (!self->keep_order && verdict(self, &v, NFQNL_MSG_VERDICT, h.id, NF_ACCEPT) < 0)
            return -1;
        last = h, any = 1;
    }
    /* In order, every packet read before the last released one is released too (dropped ones
     * had their verdict when read): one batch verdict covers them all. */
    if (any && self->keep_order && verdict(self, &v, NFQNL_MSG_VERDICT_BATCH, last.id, NF_ACCEPT) < 0)
        return -1;
    return flush(self, &v);
}

/* Accept ids[from..n): packets read whose decision failed are let through, never left behind. */
static void let_through(Loop *self, const uint32_t *ids, int from, int n) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    Verdicts v = {NULL};
    for (int i = from; i < n; i++)
        if (verdict(self, &v, NFQNL_MSG_VERDICT, ids[i], NF_ACCEPT) < 0)
            break;
    if (flush(self, &v) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* One Python call decides a batch: a release time each, or None to drop (sent at once, before
 * any later batch verdict could cover the id). -1 with a Python error set. */
static int decide(Loop *self, PyObject *on_batch, const uint32_t *ids, const double *arrivals,
                  int n, double read_at) {
    PyObject *list = PyList_New(n);
    if (list == NULL)
        goto fail;
    for (int i = 0; i < n; i++) {
        PyObject *f = PyFloat_FromDouble(arrivals[i]);
        if (f == NULL) {
            Py_DECREF(list);
            goto fail;
        }
        PyList_SET_ITEM(list, i, f);
    }
    double t0 = mono();
    PyObject *decided = PyObject_CallOneArg(on_batch, list);
    self->python_s += mono() - t0;
    Py_DECREF(list);
    if (decided == NULL)
        goto fail;
    PyObject *fast = PySequence_Fast(decided, "on_batch must return a sequence");
    Py_DECREF(decided);
    if (fast == NULL)
        goto fail;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "on_batch must return one decision per packet");
        goto fail;
    }
    Verdicts v = {NULL};
    int i = 0;
    for (; i < n; i++) {
        PyObject *d = PySequence_Fast_GET_ITEM(fast, i);
        if (d == Py_None) {
            self->dropped++;
            if (verdict(self, &v, NFQNL_MSG_VERDICT, ids[i], NF_DROP) < 0)
                break;
            continue;
        }
        double release = PyFloat_AsDouble(d);
        if (release == -1.0 && PyErr_Occurred())
            break;
        Held h = {release, read_at, ++self->order, ids[i]};
        if (push(self, h) < 0) {
            PyErr_NoMemory();
            break;
        }
    }
    Py_DECREF(fast);
    if (i < n) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (flush(self, &v) < 0) /* the drops decided so far */
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
        let_through(self, ids, i, n);
        return -1;
    }
    return flush(self, &v);
fail:
    let_through(self, ids, 0, n);
    return -1;
}

/* What Schedule.decide gives while it draws nothing (Schedule.fixed): arrival + delay, held to
 * the latest release with keep_order; no Python call. -1 with a Python error set. */
static int hold_fixed(Loop *self, const uint32_t *ids, const double *arrivals, int n,
                      double read_at) {
    for (int i = 0; i < n; i++) {
        double release = arrivals[i] + self->fixed;
        if (self->keep_order && release < self->last_release)
            release = self->last_release;
        self->last_release = release;
        Held h = {release, read_at, ++self->order, ids[i]};
        if (push(self, h) < 0) {
            PyErr_NoMemory();
            let_through(self, ids, i, n);
            return -1;
        }
    }
    return 0;
}

/* Read what is waiting (at most `rounds` recvmmsg calls), decide in one Python call per call.
 * Returns the packets read, or -1 with a Python error set. */
static int take(Loop *self, PyObject *on_batch, int rounds) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint32_t ids[BATCH];
    double arrivals[BATCH], read_at_all;
    int total = 0;
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = self->in + (size_t)i * MSG_BYTES;
            iov[i].iov_len = MSG_BYTES;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        double t0 = mono();
        int got = recvmmsg(self->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        self->recv_s += mono() - t0;
        self->n_recv++;
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return total;
            if (errno == ENOBUFS) { /* the socket overflowed: the kernel dropped what it held */
                self->enobufs++;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        read_at_all = mono();
        double now_wall = 0.0;
        int n = 0;
        for (int i = 0; i < got; i++) {
            int len = (int)msgs[i].msg_len;
            struct nlmsghdr *m = (struct nlmsghdr *)iov[i].iov_base;
            for (; mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
                if (m->nlmsg_type == NLMSG_ERROR) {
                    struct nlmsgerr *err = mnl_nlmsg_get_payload(m);
                    self->verdict_errors += err->error != 0;
                    continue;
                }
                if (m->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
                    continue;
                struct nlattr *attr[NFQA_MAX + 1] = {NULL};
                if (nfq_nlmsg_parse(m, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL)
                    continue;
                struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
                double arrival = read_at_all;
                if (attr[NFQA_TIMESTAMP] != NULL) {
                    struct nfqnl_msg_packet_timestamp *ts =
                        mnl_attr_get_payload(attr[NFQA_TIMESTAMP]);
                    double stamp = (double)be64toh(ts->sec) + be64toh(ts->usec) * 1e-6;
                    if (stamp > 0) {
                        if (now_wall == 0.0)
                            now_wall = wall();
                        double lag = now_wall - stamp;
                        self->stamped++;
                        sample(self, S_LAG, lag * 1e6);
                        if (self->kernel_clock && lag >= 0 && lag < 0.01)
                            arrival = read_at_all - lag;
                    }
                }
                ids[n] = ntohl(ph->packet_id);
                arrivals[n++] = arrival;
            }
        }
        if (n == 0) {
            if (got < BATCH)
                break;
            continue;
        }
        self->seen += n;
        total += n;
        int rc = self->fixed >= 0 ? hold_fixed(self, ids, arrivals, n, read_at_all)
                                  : decide(self, on_batch, ids, arrivals, n, read_at_all);
        if (rc < 0)
            return -1;
        if (got < BATCH) /* the socket is drained: no second call only to learn so */
            break;
    }
    return total;
}

static int arm(Loop *self, double at) {
    if (self->armed_at == at)
        return 0;
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (at > 0) {
        its.it_value.tv_sec = (time_t)at;
        its.it_value.tv_nsec = (long)((at - (double)its.it_value.tv_sec) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    self->n_arm++;
    if (timerfd_settime(self->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->armed_at = at;
    return 0;
}

static int woke(Loop *self, double late, PyObject *on_wakes) {
    sample(self, S_WAKE, late * 1e6);
    self->wakes[self->nwakes++] = late;
    if (self->nwakes < self->every)
        return 0;
    PyObject *list = PyList_New(self->nwakes);
    if (list == NULL)
        return -1;
    for (int i = 0; i < self->nwakes; i++) {
        PyObject *f = PyFloat_FromDouble(self->wakes[i]);
        if (f == NULL) {
            Py_DECREF(list);
            return -1;
        }
        PyList_SET_ITEM(list, i, f);
    }
    self->nwakes = 0;
    double t0 = mono();
    PyObject *spin = PyObject_CallOneArg(on_wakes, list);
    self->python_s += mono() - t0;
    Py_DECREF(list);
    if (spin == NULL)
        return -1;
    double s = PyFloat_AsDouble(spin);
    Py_DECREF(spin);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    self->spin = s < 0 ? 0 : s;
    return 0;
}

static PyObject *Loop_run(Loop *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"on_batch", "on_wakes", "control_fd", "serve", NULL};
    PyObject *on_batch, *on_wakes, *serve = Py_None;
    int control_fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|iO", kw, &on_batch, &on_wakes, &control_fd,
                                     &serve))
        return NULL;
    struct pollfd fds[3] = {
        {self->fd, POLLIN, 0}, {self->tfd, POLLIN, 0}, {control_fd, POLLIN, 0}};
    nfds_t nfds = control_fd >= 0 ? 3 : 2;
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            return NULL;
        double now = mono();
        if (release(self, now, 0) < 0)
            return NULL;
        int timeout = 1000; /* nothing held: wake now and then anyway */
        if (self->nheld == 0 && self->armed_at != 0 && arm(self, 0) < 0)
            return NULL;
        if (self->nheld > 0) {
            double wake_at = self->heap[0].release - self->spin;
            if (wake_at <= now) { /* the spin: take new packets while the deadline nears */
                while (self->nheld > 0 && mono() < self->heap[0].release)
                    if (take(self, on_batch, 1) < 0)
                        return NULL;
                continue;
            }
            if (arm(self, wake_at) < 0)
                return NULL;
            timeout = -1;
        }
        double polled_at = mono();
        self->n_poll++;
        int ready = poll(fds, nfds, timeout);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if ((fds[1].revents & POLLIN) && self->armed_at > 0) {
            /* Not read: the next arm() (settime) or disarm clears the expiration, one system
             * call a wake-up fewer. EXPIRED makes sure one of them comes before the next poll. */
            double woke_at = mono(), armed_at = self->armed_at;
            self->n_timer++;
            self->armed_at = EXPIRED;
            if (self->spin == 0 && release(self, woke_at, 0) < 0) /* due now: before reading */
                return NULL;
            /* a wake-up sample only if the timer expired while this poll waited for it */
            if (armed_at >= polled_at && woke(self, woke_at - armed_at, on_wakes) < 0)
                return NULL;
        }
        if ((fds[0].revents & (POLLIN | POLLERR)) && take(self, on_batch, 4) < 0)
            return NULL;
        if (nfds == 3 && (fds[2].revents & POLLIN) && serve != Py_None) {
            double t0 = mono();
            PyObject *r = PyObject_CallNoArgs(serve);
            self->python_s += mono() - t0;
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
        }
    }
}

static PyObject *Loop_release_all(Loop *self, PyObject *unused) {
    if (release(self, 0.0, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Loop_drain(Loop *self, PyObject *unused) {
    PyObject *samples = PyDict_New();
    if (samples == NULL)
        return NULL;
    for (int i = 0; i < NSERIES; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)self->s[i].v,
                                                self->s[i].n * (Py_ssize_t)sizeof(double));
        if (b == NULL || PyDict_SetItemString(samples, SERIES[i], b) < 0) {
            Py_XDECREF(b);
            Py_DECREF(samples);
            return NULL;
        }
        Py_DECREF(b);
        self->s[i].n = 0;
    }
    PyObject *calls = Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:d,s:d,s:d}", "poll", self->n_poll,
                                    "timer", self->n_timer, "recv", self->n_recv, "send",
                                    self->n_send, "arm", self->n_arm, "send_s", self->send_s,
                                    "recv_s", self->recv_s, "python_s", self->python_s);
    if (calls == NULL) {
        Py_DECREF(samples);
        return NULL;
    }
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:n,s:L,s:L,s:d,s:N,s:N}", "seen", self->seen,
                         "dropped", self->dropped, "released", self->released, "stamped",
                         self->stamped, "held", self->nheld, "verdict_errors",
                         self->verdict_errors, "enobufs", self->enobufs, "spin_s", self->spin,
                         "calls", calls, "samples", samples);
}

static PyObject *Loop_set_fixed(Loop *self, PyObject *args) {
    PyObject *delay;
    double last;
    if (!PyArg_ParseTuple(args, "Od", &delay, &last))
        return NULL;
    double fixed = -1.0;
    if (delay != Py_None) {
        fixed = PyFloat_AsDouble(delay);
        if (fixed == -1.0 && PyErr_Occurred())
            return NULL;
        if (fixed < 0) {
            PyErr_SetString(PyExc_ValueError, "a fixed delay is >= 0");
            return NULL;
        }
    }
    self->fixed = fixed, self->last_release = last;
    Py_RETURN_NONE;
}

static PyObject *Loop_last_release(Loop *self, PyObject *unused) {
    return PyFloat_FromDouble(self->last_release);
}

static PyObject *Loop_fileno(Loop *self, PyObject *unused) { return PyLong_FromLong(self->fd); }

static PyObject *Loop_close(Loop *self, PyObject *unused) {
    if (self->nl != NULL) {
        if (release(self, 0.0, 1) < 0)
            PyErr_Clear();
        mnl_socket_close(self->nl);
        self->nl = NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef Loop_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Loop_run, METH_VARARGS | METH_KEYWORDS,
     "run(on_batch, on_wakes, control_fd=-1, serve=None): the packet loop, until an exception"},
    {"release_all", (PyCFunction)Loop_release_all, METH_NOARGS, "accept every held packet"},
    {"drain", (PyCFunction)Loop_drain, METH_NOARGS,
     "counters, and the samples taken since the last drain (C doubles as bytes)"},
    {"set_fixed", (PyCFunction)Loop_set_fixed, METH_VARARGS,
     "set_fixed(delay_s or None, last_release): decide here while the schedule draws nothing"},
    {"last_release", (PyCFunction)Loop_last_release, METH_NOARGS,
     "the latest release decided here (to hand back to the schedule)"},
    {"fileno", (PyCFunction)Loop_fileno, METH_NOARGS, "the queue's netlink socket"},
    {"close", (PyCFunction)Loop_close, METH_NOARGS, "release what is held, unbind"},
    {NULL}};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "echolab_fastloop.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Loop(queue=0, max_len=10000, keep_order=True, kernel_clock=False, spin_s=0.0, "
              "every=32): an NFQUEUE bound, its packets held and released here",
    .tp_new = Loop_new,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_methods = Loop_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "echolab_fastloop",
                                    "The fault engine's packet path, compiled.", -1, NULL};

PyMODINIT_FUNC PyInit_echolab_fastloop(void) {
    if (PyType_Ready(&LoopType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&LoopType);
    if (PyModule_AddObject(m, "Loop", (PyObject *)&LoopType) < 0) {
        Py_DECREF(&LoopType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
