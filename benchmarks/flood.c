/* Open-loop HTTP/1.1 load over thousands of pre-opened keep-alive connections, on one thread
 * (epoll). benchmarks/flood.py builds it, runs it and reads its samples.
 *
 *   flood -p PORT -c CONNECTIONS -r REQUEST_FILE -o SAMPLES_FILE [-w WARM_CHUNK] [-t WAIT_S]
 *         SECONDS:RATE [SECONDS:RATE ...]
 *
 * REQUEST_FILE holds the exact bytes of the one request sent every time. Before the measured
 * phases every connection to 127.0.0.1:PORT is opened and makes one round trip, WARM_CHUNK
 * connections at a time: a connect storm of thousands overflows the server's listen backlog,
 * and a connection still unaccepted would cost its first measured request seconds of SYN-ACK
 * retransmits (the generator's artefact, not the server's).
 *
 * Invariants:
 * - request i is due at start + its slot: the phases run one after another, phase p sends
 *   floor(seconds * rate) requests at slots phase_start + k / rate. At its due time an idle
 *   connection takes it, or it waits in a FIFO for the next connection to finish; that wait
 *   counts in its latency, which runs from the due time to the response's last byte
 *   (CLOCK_MONOTONIC), so neither the server's queue nor the generator's can hide.
 * - one request in flight per connection (no pipelining); responses are framed by
 *   Content-Length and may arrive in any number of pieces.
 * - every scheduled request gets exactly one record: its HTTP status; 0 when its connection
 *   was lost (closed, reset, or an answer that is not Content-Length framed HTTP/1.x); -1
 *   when it had no answer WAIT_S after the last due time, or could not be sent because every
 *   connection was lost. A lost connection is not reopened.
 * - SAMPLES_FILE: one struct record per request, in schedule order, native byte order; one
 *   JSON summary line goes to stdout; errors to stderr with exit status 2.
 *
 * It pins nothing: the caller runs it under taskset.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct record {
    int64_t scheduled_ns; /* due time, from the start of the first phase */
    int64_t latency_ns;   /* due time -> the response's last byte; -1 unanswered */
    int64_t sent_ns;      /* due time -> first byte written; -1 never sent */
    int32_t status;       /* HTTP status; 0 connection lost; -1 unanswered */
    int32_t connection;   /* the connection that carried it; -1 never sent */
};
_Static_assert(sizeof(struct record) == 32, "benchmarks/flood.py reads 32-byte records");

enum state { CONNECTING, BUSY, IDLE, DEAD };
#define WARM (-2) /* the pending "request" of a connection's warm-up round trip */
#define TIMER_TAG UINT32_MAX
#define MAX_HEAD 65536
#define MAX_RESPONSE (64L << 20)
#define WARM_TIMEOUT_NS (30 * 1000000000LL)

struct conn {
    int fd;
    enum state state;
    int64_t pending; /* request index, WARM, or -1 */
    size_t written;  /* bytes of the request written so far */
    char *buf;
    size_t len, cap;
};

static struct {
    const char *request;
    size_t request_len;
    int epoll_fd, timer_fd;
    struct conn *conns;
    int n_conns;
    int *idle; /* a stack of connection indices */
    int n_idle;
    int64_t *fifo; /* due requests waiting for a connection; each enters once */
    int64_t fifo_head, fifo_tail;
    struct record *records;
    int64_t n_records, done;
    int64_t start_ns;
    int live, warmed, failed, lost_conns, bad_responses;
    int64_t lag_max_ns; /* how late the generator dispatched a due request */
} g;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("flood: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static void watch(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - g.conns)};
    if (epoll_ctl(g.epoll_fd, op, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void record(int64_t i, int status)
{
    struct record *r = &g.records[i];
    r->status = status;
    r->latency_ns = now_ns() - (g.start_ns + r->scheduled_ns);
    g.done++;
}

/* The connection is gone: its pending request (if any) is lost; it is never reused (an idle
 * one stays on the idle stack, where dispatch skips it). */
static void drop(struct conn *c)
{
    int was_live = c->state == IDLE || (c->state == BUSY && c->pending != WARM);
    if (c->pending >= 0)
        record(c->pending, 0);
    if (was_live) {
        g.live--;
        g.lost_conns++;
    } else {
        g.failed++; /* it never made its warm-up round trip */
    }
    close(c->fd);
    c->state = DEAD;
    c->pending = -1;
    c->len = 0;
}

static void flush(struct conn *c)
{
    while (c->written < g.request_len) {
        ssize_t n = send(c->fd, g.request + c->written, g.request_len - c->written, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return;
            }
            drop(c);
            return;
        }
        c->written += (size_t)n;
    }
}

static void send_request(struct conn *c, int64_t i)
{
    c->state = BUSY;
    c->pending = i;
    c->written = 0;
    if (i >= 0) {
        struct record *r = &g.records[i];
        r->sent_ns = now_ns() - (g.start_ns + r->scheduled_ns);
        r->connection = (int32_t)(c - g.conns);
    }
    flush(c);
}

/* A connection became free: the oldest waiting request takes it, else it goes idle. */
static void release(struct conn *c)
{
    if (g.fifo_head < g.fifo_tail) {
        send_request(c, g.fifo[g.fifo_head++]);
        return;
    }
    c->state = IDLE;
    c->pending = -1;
    g.idle[g.n_idle++] = (int)(c - g.conns);
}

static void dispatch(int64_t i)
{
    while (g.n_idle > 0) {
        struct conn *c = &g.conns[g.idle[--g.n_idle]];
        if (c->state == IDLE) {
            send_request(c, i);
            return;
        }
    }
    g.fifo[g.fifo_tail++] = i;
}

/* One response at the front of buf: its length, 0 while incomplete, -1 when not HTTP/1.x
 * framed by Content-Length. */
static long parse(const char *buf, size_t len, int *status, int *closes)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len > MAX_HEAD ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4;
    if (head < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    int code = 0;
    for (int k = 9; k < 12; k++) {
        if (buf[k] < '0' || buf[k] > '9')
            return -1;
        code = code * 10 + (buf[k] - '0');
    }
    long length = 0;
    *closes = buf[7] == '0'; /* HTTP/1.0 closes unless it says keep-alive; we never ask */
    const char *line = memchr(buf, '\n', head) + 1;
    while (line < end) {
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        size_t n = (size_t)(eol - line);
        if (n > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            const char *p = line + 15;
            while (p < eol && (*p == ' ' || *p == '\t'))
                p++;
            if (p == eol)
                return -1;
            length = 0;
            for (; p < eol && *p >= '0' && *p <= '9'; p++) {
                length = length * 10 + (*p - '0');
                if (length > MAX_RESPONSE)
                    return -1;
            }
        } else if (n > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            return -1; /* chunked: not what the servers under test send */
        } else if (n > 11 && strncasecmp(line, "connection:", 11) == 0) {
            *closes = memmem(line, n, "close", 5) != NULL;
        }
        line = eol + 2;
    }
    *status = code;
    return len < head + (size_t)length ? 0 : (long)(head + (size_t)length);
}

static void on_readable(struct conn *c)
{
    if (c->len == c->cap) {
        if (c->cap >= (size_t)MAX_RESPONSE) {
            g.bad_responses++;
            drop(c);
            return;
        }
        c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf)
            die("out of memory");
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        drop(c);
        return;
    }
    c->len += (size_t)n;
    if (c->pending == -1) { /* nothing asked: the stream is out of step */
        g.bad_responses++;
        drop(c);
        return;
    }
    int status = 0, closes = 0;
    long size = parse(c->buf, c->len, &status, &closes);
    if (size == 0)
        return;
    if (size < 0 || c->written < g.request_len || (size_t)size < c->len) {
        /* garbage, an answer before the request was out, or more than one answer */
        g.bad_responses++;
        drop(c);
        return;
    }
    c->len = 0;
    int64_t i = c->pending;
    if (i >= 0)
        record(i, status);
    else
        g.warmed++, g.live++;
    c->pending = -1;
    if (closes) {
        drop(c);
        return;
    }
    release(c);
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t n = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &n) < 0 || err != 0) {
        drop(c);
        return;
    }
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
    send_request(c, WARM);
}

static void on_event(uint32_t tag, uint32_t events)
{
    if (tag == TIMER_TAG) {
        uint64_t expirations;
        if (read(g.timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
            die("timerfd read: %s", strerror(errno));
        return;
    }
    struct conn *c = &g.conns[tag];
    if (c->state == DEAD)
        return;
    if (c->state == CONNECTING) {
        on_connected(c);
        return;
    }
    if (events & EPOLLOUT) {
        flush(c);
        if (c->state == DEAD)
            return;
        if (c->written == g.request_len)
            watch(c, EPOLLIN, EPOLL_CTL_MOD);
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(c);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event events[256];
    int n = epoll_wait(g.epoll_fd, events, 256, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int k = 0; k < n; k++)
        on_event(events[k].data.u32, events[k].events);
}

static void open_conn(struct conn *c, int port)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise the open-file limit?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->state = CONNECTING;
    c->pending = -1;
    c->cap = 4096;
    c->buf = xmalloc(c->cap);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        g.failed++;
        close(c->fd);
        c->state = DEAD;
        return;
    }
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Open every connection and make one round trip on each, `chunk` connections at a time. */
static void warm_up(int port, int chunk)
{
    for (int first = 0; first < g.n_conns; first += chunk) {
        int last = first + chunk < g.n_conns ? first + chunk : g.n_conns;
        for (int k = first; k < last; k++)
            open_conn(&g.conns[k], port);
        int64_t deadline = now_ns() + WARM_TIMEOUT_NS;
        while (g.warmed + g.failed < last && now_ns() < deadline)
            poll_once(10);
    }
}

static void arm(int64_t at_ns)
{
    struct itimerspec spec = {0};
    spec.it_value.tv_sec = at_ns / 1000000000LL;
    spec.it_value.tv_nsec = at_ns % 1000000000LL;
    if (timerfd_settime(g.timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0)
        die("timerfd_settime: %s", strerror(errno));
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void measure(int64_t wait_ns)
{
    int64_t next = 0, armed = -1;
    int64_t end_ns = g.n_records ? g.records[g.n_records - 1].scheduled_ns : 0;
    int64_t deadline = g.start_ns + end_ns + wait_ns;
    while (g.done < g.n_records && g.live > 0) {
        int64_t t = now_ns();
        while (next < g.n_records && g.start_ns + g.records[next].scheduled_ns <= t) {
            int64_t lag = t - (g.start_ns + g.records[next].scheduled_ns);
            if (lag > g.lag_max_ns)
                g.lag_max_ns = lag;
            dispatch(next++);
        }
        if (next == g.n_records && t >= deadline)
            break;
        int64_t wake = next < g.n_records ? g.start_ns + g.records[next].scheduled_ns : deadline;
        if (wake != armed) {
            arm(wake);
            armed = wake;
        }
        poll_once(-1);
    }
    if (g.live == 0 && g.done < g.n_records)
        fprintf(stderr, "flood: every connection was lost; %lld requests unanswered\n",
                (long long)(g.n_records - g.done));
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size <= 0)
        die("%s is empty; expected the request's bytes", path);
    char *buf = xmalloc((size_t)st.st_size);
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        die("short read on %s", path);
    fclose(f);
    *len = (size_t)st.st_size;
    return buf;
}

/* "SECONDS:RATE" arguments -> the due offset of every request. */
static void schedule(int argc, char **argv)
{
    double seconds[argc], rates[argc];
    int64_t total = 0;
    for (int k = 0; k < argc; k++) {
        char *rest;
        seconds[k] = strtod(argv[k], &rest);
        if (*rest != ':' || !(seconds[k] > 0))
            die("phase %s: expected SECONDS:RATE with SECONDS > 0", argv[k]);
        rates[k] = strtod(rest + 1, &rest);
        if (*rest != '\0' || !(rates[k] > 0))
            die("phase %s: expected SECONDS:RATE with RATE > 0", argv[k]);
        total += (int64_t)(seconds[k] * rates[k]);
    }
    g.n_records = total;
    g.records = xmalloc(sizeof(struct record) * (size_t)total);
    g.fifo = xmalloc(sizeof(int64_t) * (size_t)total);
    int64_t i = 0;
    double offset_s = 0;
    for (int k = 0; k < argc; k++) {
        int64_t n = (int64_t)(seconds[k] * rates[k]);
        for (int64_t j = 0; j < n; j++, i++) {
            g.records[i] = (struct record){
                .scheduled_ns = (int64_t)((offset_s + (double)j / rates[k]) * 1e9),
                .latency_ns = -1,
                .sent_ns = -1,
                .status = -1,
                .connection = -1,
            };
        }
        offset_s += seconds[k];
    }
}

static void write_records(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    size_t n = (size_t)g.n_records;
    if (fwrite(g.records, sizeof(struct record), n, f) != n || fclose(f) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
    int port = 0, chunk = 200, opt;
    double wait_s = 60;
    const char *request_path = NULL, *out_path = NULL;
    while ((opt = getopt(argc, argv, "p:c:r:o:w:t:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'c': g.n_conns = atoi(optarg); break;
        case 'r': request_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'w': chunk = atoi(optarg); break;
        case 't': wait_s = strtod(optarg, NULL); break;
        default: die("unknown option");
        }
    }
    if (port <= 0 || port > 65535 || g.n_conns <= 0 || chunk <= 0 || !request_path ||
        !out_path || optind == argc || !(wait_s >= 0))
        die("usage: flood -p PORT -c CONNECTIONS -r REQUEST_FILE -o SAMPLES_FILE "
            "[-w WARM_CHUNK] [-t WAIT_S] SECONDS:RATE ...");
    g.request = read_file(request_path, &g.request_len);
    schedule(argc - optind, argv + optind);

    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max; /* thousands of sockets */
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    prctl(PR_SET_TIMERSLACK, 1000UL); /* wake within ~1 us of a due time, not 50 us */

    g.conns = xmalloc(sizeof(struct conn) * (size_t)g.n_conns);
    g.idle = xmalloc(sizeof(int) * (size_t)g.n_conns);
    g.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    g.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.epoll_fd < 0 || g.timer_fd < 0)
        die("epoll/timerfd: %s", strerror(errno));
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TIMER_TAG};
    if (epoll_ctl(g.epoll_fd, EPOLL_CTL_ADD, g.timer_fd, &tev) < 0)
        die("epoll_ctl: %s", strerror(errno));

    warm_up(port, chunk);
    if (g.live == 0)
        die("no connection to 127.0.0.1:%d made its warm-up round trip (%d failed)", port,
            g.failed);
    g.start_ns = now_ns() + 200000000LL;
    double cpu_before = cpu_s();
    measure((int64_t)(wait_s * 1e9));
    double busy_s = cpu_s() - cpu_before; /* its own CPU time: its ceiling, whatever the host */
    write_records(out_path);

    int64_t answered = 0, lost = 0, unanswered = 0;
    for (int64_t i = 0; i < g.n_records; i++) {
        int s = g.records[i].status;
        answered += s > 0;
        lost += s == 0;
        unanswered += s < 0;
    }
    printf("{\"requests\": %lld, \"answered\": %lld, \"lost\": %lld, \"unanswered\": %lld, "
           "\"connections\": %d, \"connections_warm\": %d, \"connections_failed\": %d, "
           "\"connections_lost\": %d, \"bad_responses\": %d, \"waited_for_connection\": %lld, "
           "\"dispatch_lag_max_us\": %.1f, \"cpu_s\": %.3f}\n",
           (long long)g.n_records, (long long)answered, (long long)lost, (long long)unanswered,
           g.n_conns, g.warmed, g.failed, g.lost_conns, g.bad_responses, (long long)g.fifo_tail,
           g.lag_max_ns / 1e3,
           busy_s);
    return 0;
}
