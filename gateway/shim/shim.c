/*
 * gateway-shim: stands in for sh, bash, dash and named programs. Before anything
 * runs it asks the gateway's decision API (docs/decision-api.md) whether this exact
 * argv may run; on `"blocks":false` it execs the real program with the same argv,
 * environment and file descriptors, otherwise it prints one line and exits 126.
 *
 * Installed as DIR/gateway-shim with one symlink per shimmed name (DIR/bash ->
 * gateway-shim); `gateway shim install` builds and configures it.
 *
 * Configuration is never taken from the environment, which the agent controls: it is
 * the path baked in at build time (GATEWAY_SHIM_CONFIG: `gateway shim install` bakes
 * in the config it writes) or else `gateway-shim.conf` beside the real executable
 * (/proc/self/exe); if that does not exist, /etc/gateway/shim.conf. One setting per line, `#` starts a comment:
 *
 *     api unix:/run/gateway/api.sock   (or tcp:127.0.0.1:7000, tcp:[::1]:7000)
 *     timeout_ms 2000                  connect + reply deadline
 *     fail_open 0                      1: run unchecked when the gateway is unreachable
 *     spool /var/lib/gateway/shim-spool.jsonl
 *     real bash /bin/bash              NAME ABSOLUTE-PATH, one per shimmed name
 *
 * Fails closed: no configuration, no `real` entry, an argument or working directory
 * that is not UTF-8, a request over the API's 256 KiB line limit, a gateway that does
 * not answer within timeout_ms (unless fail_open), a garbled reply, an "error" in
 * the reply or anything but "blocks":false: all deny.
 *
 * The shim judges what it execs, nothing more. A script operand is read when the shim
 * runs and again by the shell: a script rewritten in between runs unjudged. The shim is
 * a checkpoint on the paths that lead through it, not a kernel boundary.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define EXIT_DENIED 126
#define MAX_LINE (256 * 1024)            /* the API's limit, newline excluded */
#define MAX_SCRIPT (64 * 1024)           /* a larger script is not sent: the gateway denies */
#define MAX_CONFIG (1024 * 1024)
#define MAX_REPLY (4 * 1024 * 1024)
#define MAX_SPOOL_DRAIN (1024 * 1024)    /* spooled bytes sent per invocation, at most */
#define SYSTEM_CONFIG "/etc/gateway/shim.conf"
#define CONFIG_NAME "gateway-shim.conf"

/* --- messages -------------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof msg - 2 ? (size_t)n : sizeof msg - 2;
    msg[len++] = '\n';
    ssize_t w;
    do
        w = write(STDERR_FILENO, msg, len);
    while (w < 0 && errno == EINTR);
}

#define deny(...) do { say("gateway: denied: " __VA_ARGS__); exit(EXIT_DENIED); } while (0)

/* --- growable buffer ------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 2)
            deny("out of memory; nothing was run");
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        deny("out of memory; nothing was run");
    b->p = p;
    b->cap = cap;
}

static void buf_put(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_putc(buf_t *b, char c) { buf_put(b, &c, 1); }

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else
            return 0;
        if (n - i <= k)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

/* A JSON string; `s` is valid UTF-8, so only '"', '\\' and controls need escapes. */
static void buf_json(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    buf_putc(b, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_put(b, s + start, i - start);
        start = i + 1;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\t': esc[1] = 't'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        buf_put(b, esc, elen);
    }
    buf_put(b, s + start, n - start);
    buf_putc(b, '"');
}

/* --- configuration --------------------------------------------------------------- */

typedef struct {
    const char *name, *path;
} real_t;

typedef struct {
    char file[PATH_MAX];
    const char *api;
    int timeout_ms;
    int fail_open;
    const char *spool;
    real_t *reals;
    size_t nreals;
} config_t;

static char *next_line(char **cursor)
{
    char *line = *cursor;
    if (!*line)
        return NULL;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else
        *cursor = line + strlen(line);
    return line;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && is_space(e[-1]))
        *--e = '\0';
    return s;
}

/* Read the file at `path` (NUL-terminated); 0 on success, else errno. */
static int read_small_file(const char *path, buf_t *out, size_t limit)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno;
    int err = 0;
    for (;;) {
        buf_reserve(out, 65536);
        ssize_t r = read(fd, out->p + out->len, 65536);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = errno;
            break;
        }
        if (r == 0)
            break;
        out->len += (size_t)r;
        out->p[out->len] = '\0';
        if (out->len > limit) {
            err = EFBIG;
            break;
        }
    }
    close(fd);
    return err;
}

static void load_config(config_t *cfg, const char *exe)
{
#ifdef GATEWAY_SHIM_CONFIG
    /* Baked in by `gateway shim install`: found wherever the shim runs from, also when
     * it is mounted over /bin/sh. */
    (void)exe;
    int n = snprintf(cfg->file, sizeof cfg->file, "%s", GATEWAY_SHIM_CONFIG);
#else
    const char *slash = strrchr(exe, '/');
    size_t dirlen = slash ? (size_t)(slash - exe) : 0;
    int n = snprintf(cfg->file, sizeof cfg->file, "%.*s/%s", (int)dirlen, exe, CONFIG_NAME);
#endif
    buf_t text = {0};
    int err = n > 0 && (size_t)n < sizeof cfg->file ? read_small_file(cfg->file, &text, MAX_CONFIG)
                                                    : ENOENT;
    if (err == ENOENT) {
        char first[PATH_MAX];
        snprintf(first, sizeof first, "%s", cfg->file);
        snprintf(cfg->file, sizeof cfg->file, "%s", SYSTEM_CONFIG);
        text.len = 0;
        err = read_small_file(cfg->file, &text, MAX_CONFIG);
        if (err == ENOENT)
            deny("no shim configuration (neither %s nor %s exists); nothing was run", first,
                 SYSTEM_CONFIG);
    }
    if (err)
        deny("cannot read the shim configuration %s: %s; nothing was run", cfg->file,
             strerror(err));
    if (strlen(text.p) != text.len)
        deny("%s: contains a NUL byte; nothing was run", cfg->file);

    cfg->timeout_ms = 2000;
    size_t cap = 0;
    char *cursor = text.p, *line;
    for (int lineno = 1; (line = next_line(&cursor)); lineno++) {
        /* a comment starts at '#' at the start of a line or after white space */
        for (char *h = line; (h = strchr(h, '#')); h++)
            if (h == line || is_space(h[-1])) {
                *h = '\0';
                break;
            }
        char *key = trim(line);
        if (!*key)
            continue;
        char *value = key;
        while (*value && !is_space(*value))
            value++;
        if (*value)
            *value++ = '\0';
        value = trim(value);
        if (!*value)
            deny("%s:%d: '%s' needs a value; nothing was run", cfg->file, lineno, key);
        if (!strcmp(key, "api")) {
            cfg->api = value;
        } else if (!strcmp(key, "timeout_ms") || !strcmp(key, "fail_open")) {
            char *end;
            errno = 0;
            long v = strtol(value, &end, 10);
            int is_timeout = key[0] == 't';
            if (errno || *end || v < 0 || v > (is_timeout ? 600000 : 1) || (is_timeout && v == 0))
                deny("%s:%d: bad %s '%s' (%s); nothing was run", cfg->file, lineno, key, value,
                     is_timeout ? "1 to 600000" : "0 or 1");
            if (is_timeout)
                cfg->timeout_ms = (int)v;
            else
                cfg->fail_open = (int)v;
        } else if (!strcmp(key, "spool")) {
            if (value[0] != '/')
                deny("%s:%d: spool must be an absolute path; nothing was run", cfg->file, lineno);
            cfg->spool = value;
        } else if (!strcmp(key, "real")) {
            char *path = value;
            while (*path && !is_space(*path))
                path++;
            if (*path)
                *path++ = '\0';
            path = trim(path);
            if (path[0] != '/')
                deny("%s:%d: 'real %s' needs an absolute path; nothing was run", cfg->file,
                     lineno, value);
            if (cfg->nreals == cap) {
                cap = cap ? cap * 2 : 16;
                real_t *r = realloc(cfg->reals, cap * sizeof *r);
                if (!r)
                    deny("out of memory; nothing was run");
                cfg->reals = r;
            }
            cfg->reals[cfg->nreals].name = value;
            cfg->reals[cfg->nreals++].path = path;
        } else {
            deny("%s:%d: unknown setting '%s' (api, timeout_ms, fail_open, spool, real); "
                 "nothing was run", cfg->file, lineno, key);
        }
    }
    if (!cfg->api)
        deny("%s: no 'api' line; nothing was run", cfg->file);
}

static const char *real_for(const config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nreals; i++)
        if (!strcmp(cfg->reals[i].name, name))
            return cfg->reals[i].path;
    return NULL;
}

/* --- the address ----------------------------------------------------------------- */

typedef struct {
    struct sockaddr_storage sa;
    socklen_t len;
} address_t;

static void parse_address(const config_t *cfg, address_t *a)
{
    const char *api = cfg->api;
    memset(a, 0, sizeof *a);
    if (!strncmp(api, "unix:", 5) || api[0] == '/') {
        const char *path = api[0] == '/' ? api : api + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
        if (path[0] != '/' || strlen(path) >= sizeof un->sun_path)
            deny("%s: api %s: a Unix socket needs an absolute path of at most %zu bytes; "
                 "nothing was run", cfg->file, api, sizeof un->sun_path - 1);
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        return;
    }
    if (!strncmp(api, "tcp:", 4)) {
        char host[INET6_ADDRSTRLEN + 2];
        const char *h = api + 4, *colon = strrchr(h, ':');
        size_t hlen = colon ? (size_t)(colon - h) : 0;
        if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
            h++, hlen -= 2;
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon && hlen && hlen < sizeof host && *end == '\0' && colon[1] && port > 0
            && port < 65536) {
            memcpy(host, h, hlen);
            host[hlen] = '\0';
            struct sockaddr_in *in4 = (struct sockaddr_in *)&a->sa;
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;
            if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t)port);
                a->len = sizeof *in4;
                return;
            }
            if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                a->len = sizeof *in6;
                return;
            }
        }
    }
    deny("%s: bad api '%s' (unix:/PATH, tcp:IPV4:PORT or tcp:[IPV6]:PORT); nothing was run",
         cfg->file, api);
}

/* --- which shell operand is a script --------------------------------------------- */

static int is_posix_shell(const char *name)
{
    static const char *const shells[] = {"sh", "bash", "dash", "ash", "ksh", "mksh",
                                         "zsh", "rbash", "yash", "posh", NULL};
    for (const char *const *s = shells; *s; s++)
        if (!strcmp(*s, name))
            return 1;
    return 0;
}

/*
 * The index of the script operand of a shell invocation, or -1 when the shell runs
 * a -c string, reads stdin (-s, or no operand) or has no script at all.
 *
 * Letters that take a value (o, O, R, T across the shells) and the long options
 * --rcfile, --init-file and --emulate consume the next argument. Taking a value where
 * a shell takes none can only hide the script, and a shell run without a script is
 * denied; missing one could judge the wrong file. `--` and a lone `-` end the options
 * (bash, dash and POSIX sh all run `sh - FILE` as FILE).
 */
static int script_operand(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        const char *a = argv[i];
        if (!strcmp(a, "--") || !strcmp(a, "-"))
            return i + 1 < argc ? i + 1 : -1;
        if (a[0] == '-' && a[1] == '-') {
            if (!strcmp(a, "--rcfile") || !strcmp(a, "--init-file") || !strcmp(a, "--emulate"))
                i++;
            i++;
            continue;
        }
        if ((a[0] == '-' || a[0] == '+') && a[1]) {
            int values = 0;
            for (const char *c = a + 1; *c; c++) {
                if (a[0] == '-' && (*c == 'c' || *c == 's'))
                    return -1;
                if (strchr("oORT", *c))
                    values++;
            }
            i += 1 + values;
            continue;
        }
        return i;
    }
    return -1;
}

/* The script's text when it is a regular file of at most MAX_SCRIPT bytes in UTF-8. */
static int read_script(const char *path, buf_t *out)
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) /* no FIFO or device is opened */
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return 0;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= MAX_SCRIPT;
    if (ok) {
        buf_reserve(out, MAX_SCRIPT + 1);
        while (out->len <= MAX_SCRIPT) {
            ssize_t r = read(fd, out->p + out->len, MAX_SCRIPT + 1 - out->len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                ok = r == 0;
                break;
            }
            out->len += (size_t)r;
        }
        ok = ok && out->len <= MAX_SCRIPT
             && utf8_valid((const unsigned char *)out->p, out->len);
    }
    close(fd);
    return ok;
}

/* --- the request ----------------------------------------------------------------- */

/* Everything up to and including `"details":`; the details object closes the line. */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void build_request(buf_t *b, int argc, char **argv, const char *name)
{
    buf_puts(b, "{\"action\":\"shell_exec\",\"argv\":[");
    for (int i = 0; i < (argc > 0 ? argc : 1); i++) {
        /* argv[0] is the caller's choice: the gateway judges the program that will
         * really run, so a name the configuration did not pick is replaced by it. */
        const char *arg = argc > 0 ? argv[i] : name;
        if (i == 0) {
            const char *called = base_name(arg);
            if (*called == '-')
                called++;
            if (strcmp(called, name) != 0)
                arg = name;
        }
        size_t n = strlen(arg);
        if (!utf8_valid((const unsigned char *)arg, n))
            deny("argument is not valid UTF-8");
        if (i)
            buf_putc(b, ',');
        buf_json(b, arg, n);
    }
    buf_putc(b, ']');
    char *cwd = getcwd(NULL, 0);
    if (cwd) {
        size_t n = strlen(cwd);
        if (!utf8_valid((const unsigned char *)cwd, n))
            deny("the working directory is not valid UTF-8");
        buf_puts(b, ",\"cwd\":");
        buf_json(b, cwd, n);
        free(cwd);
    }
    buf_puts(b, ",\"source\":\"shim\"");
    static const char *const creds[][2] = {{"GATEWAY_AGENT", "agent"}, {"GATEWAY_TOKEN", "token"}};
    for (size_t i = 0; i < 2; i++) {
        const char *v = getenv(creds[i][0]);
        if (v && utf8_valid((const unsigned char *)v, strlen(v))) {
            buf_puts(b, ",\"");
            buf_puts(b, creds[i][1]);
            buf_puts(b, "\":");
            buf_json(b, v, strlen(v));
        }
    }
    buf_puts(b, ",\"env\":[");
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        if (!utf8_valid((const unsigned char *)*e, n))
            deny("an environment variable's name is not valid UTF-8");
        if (e != environ)
            buf_putc(b, ',');
        buf_json(b, *e, n);
    }
    buf_putc(b, ']');
    if (is_posix_shell(name)) {
        int k = script_operand(argc, argv);
        if (k > 0) {
            buf_t script = {0};
            if (read_script(argv[k], &script)) {
                buf_puts(b, ",\"script\":");
                buf_json(b, script.p, script.len);
            }
            free(script.p);
            buf_puts(b, ",\"script_path\":");
            buf_json(b, argv[k], strlen(argv[k]));
        }
    }
    buf_puts(b, ",\"details\":");
}

/* --- talking to the gateway ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    int fd;
    int64_t deadline;
    int timeout_ms;
    char why[256];
} conn_t;

/* 1 when `fd` is ready for `events` (or has an error to report), 0 at the deadline. */
static int wait_for(conn_t *c, short events)
{
    for (;;) {
        int64_t left = c->deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = c->fd, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR) {
            snprintf(c->why, sizeof c->why, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

static int gateway_connect(conn_t *c, const address_t *a)
{
    int family = a->sa.ss_family;
    c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(c->why, sizeof c->why, "socket: %s", strerror(errno));
        return 0;
    }
    for (;;) {
        if (connect(c->fd, (const struct sockaddr *)&a->sa, a->len) == 0)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && family == AF_UNIX) { /* listen backlog full: retry */
            if (now_ms() >= c->deadline)
                break;
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
            continue;
        }
        if (errno != EINPROGRESS) {
            snprintf(c->why, sizeof c->why, "cannot connect: %s", strerror(errno));
            return 0;
        }
        int r = wait_for(c, POLLOUT);
        if (r < 0)
            return 0;
        if (r == 0)
            break;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            snprintf(c->why, sizeof c->why, "cannot connect: %s", strerror(err));
            return 0;
        }
        return 1;
    }
    snprintf(c->why, sizeof c->why, "no connection within %d ms", c->timeout_ms);
    return 0;
}

/* Send `out` and read until `lines` reply lines have arrived, both by the deadline. */
static int exchange(conn_t *c, const buf_t *out, size_t lines, buf_t *in)
{
    size_t sent = 0, seen = 0;
    while (seen < lines) {
        short events = POLLIN | (sent < out->len ? POLLOUT : 0);
        int r = wait_for(c, events);
        if (r < 0)
            return 0;
        if (r == 0) {
            snprintf(c->why, sizeof c->why, "no reply within %d ms", c->timeout_ms);
            return 0;
        }
        if (sent < out->len) {
            ssize_t w = send(c->fd, out->p + sent, out->len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
                sent = out->len; /* closed: read whatever it said before closing */
            else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(c->why, sizeof c->why, "send: %s", strerror(errno));
                return 0;
            }
        }
        buf_reserve(in, 65536);
        ssize_t n = recv(c->fd, in->p + in->len, 65536, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            snprintf(c->why, sizeof c->why, "recv: %s", strerror(errno));
            return 0;
        }
        if (n == 0) {
            snprintf(c->why, sizeof c->why, "the connection closed before a reply");
            return 0;
        }
        for (ssize_t i = 0; i < n; i++)
            seen += in->p[in->len + (size_t)i] == '\n';
        in->len += (size_t)n;
        in->p[in->len] = '\0';
        if (in->len > MAX_REPLY) {
            snprintf(c->why, sizeof c->why, "replies longer than %d bytes", MAX_REPLY);
            return 0;
        }
    }
    return 1;
}

/* --- the reply ------------------------------------------------------------------- */

typedef struct {
    int blocks_false, blocks_other, error;
    buf_t part, command, target, reason, error_text;
} reply_t;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * A JSON string at `p` (on '"'); decoded into `out` for display when `out` is not
 * NULL: printable ASCII and UTF-8 as they are, \n and \t as such escapes, any other
 * control or \u escape beyond ASCII as '?'. Returns the position after it, or NULL.
 */
static const char *json_string(const char *p, const char *end, buf_t *out)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c != '\\') {
            if (out)
                buf_putc(out, (char)c);
            continue;
        }
        if (++p >= end)
            return NULL;
        const char *shown;
        char one[2] = {0, 0};
        switch (*p) {
        case '"': case '\\': case '/': one[0] = *p; shown = one; break;
        case 'n': shown = "\\n"; break;
        case 't': shown = "\\t"; break;
        case 'r': shown = "\\r"; break;
        case 'b': case 'f': shown = "?"; break;
        case 'u': {
            if (end - p < 5)
                return NULL;
            int v = 0;
            for (int i = 1; i <= 4; i++) {
                int h = hexval(p[i]);
                if (h < 0)
                    return NULL;
                v = v * 16 + h;
            }
            p += 4;
            one[0] = v >= 0x20 && v < 0x7f ? (char)v : '?';
            shown = one;
            break;
        }
        default:
            return NULL;
        }
        if (out)
            buf_puts(out, shown);
    }
    return NULL;
}

static const char *json_skip(const char *p, const char *end, int depth)
{
    p = skip_ws(p, end);
    if (p >= end || depth > 64)
        return NULL;
    if (*p == '"')
        return json_string(p, end, NULL);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = json_string(skip_ws(p, end), end, NULL);
                if (!p || (p = skip_ws(p, end)) >= end || *p++ != ':')
                    return NULL;
            }
            if (!(p = json_skip(p, end, depth + 1)) || (p = skip_ws(p, end)) >= end)
                return NULL;
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(end - p) >= n && !memcmp(p, words[i], n))
            return p + n;
    }
    const char *start = p;
    while (p < end && strchr("+-0123456789.eE", *p))
        p++;
    return p > start ? p : NULL;
}

/* Parse one reply line (a JSON object); 0 when it is not one. */
static int parse_reply(const char *p, const char *end, reply_t *r)
{
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = skip_ws(p, end);
    if (p < end && *p == '}')
        return skip_ws(p + 1, end) == end;
    buf_t key = {0};
    for (;;) {
        key.len = 0;
        buf_reserve(&key, 0);
        key.p[0] = '\0';
        if (!(p = json_string(skip_ws(p, end), end, &key)))
            return 0;
        if ((p = skip_ws(p, end)) >= end || *p++ != ':')
            return 0;
        p = skip_ws(p, end);
        buf_t *text = NULL;
        if (!strcmp(key.p, "blocks")) {
            if ((size_t)(end - p) >= 5 && !memcmp(p, "false", 5))
                r->blocks_false = 1;
            else
                r->blocks_other = 1;
        } else if (!strcmp(key.p, "error")) {
            r->error = 1;
            text = &r->error_text;
        } else if (!strcmp(key.p, "part"))
            text = &r->part;
        else if (!strcmp(key.p, "command"))
            text = &r->command;
        else if (!strcmp(key.p, "target"))
            text = &r->target;
        else if (!strcmp(key.p, "reason"))
            text = &r->reason;
        if (text && p < end && *p == '"') {
            text->len = 0;
            p = json_string(p, end, text);
        } else
            p = json_skip(p, end, 1);
        if (!p || (p = skip_ws(p, end)) >= end)
            return 0;
        if (*p == '}')
            break;
        if (*p++ != ',')
            return 0;
    }
    free(key.p);
    return skip_ws(p + 1, end) == end;
}

/* --- the fail-open spool ----------------------------------------------------------
 *
 * With fail_open 1 and a `spool` file, a command run while the gateway did not
 * answer is remembered as its request line, with "failed_open":true and "at" (unix
 * seconds) in its details, appended (O_APPEND, created 0600) under flock. The
 * spool holds the agent's token: keep it where only that user can read it.
 *
 * The next invocation that connects to the gateway takes the lock without waiting
 * (another invocation draining it: skip), sends the spooled lines (at most
 * MAX_SPOOL_DRAIN bytes of them; blank lines and lines over the API's limit are
 * dropped) ahead of its own request on the same connection, ignores their replies
 * and, once its own reply has come (replies come in order, so all before it have
 * too), removes the lines it sent, keeping any appended since. A connection lost
 * midway leaves the spool as it was, so a line is sent at least once and may be
 * recorded twice; the gateway records each as it decides it, so the audit log shows
 * what ran unchecked and what the policy would have said.
 */

static void spool_append(const config_t *cfg, const buf_t *line)
{
    int fd = open(cfg->spool, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        say("gateway: WARNING: cannot write the spool %s: %s", cfg->spool, strerror(errno));
        return;
    }
    /* a drainer holds the lock at most for one exchange; then append regardless */
    int64_t until = now_ms() + 2 * (int64_t)cfg->timeout_ms + 1000;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0 && now_ms() < until) {
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
    }
    ssize_t w = write(fd, line->p, line->len);
    if (w != (ssize_t)line->len)
        say("gateway: WARNING: cannot write the spool %s: %s", cfg->spool,
            w < 0 ? strerror(errno) : "short write");
    close(fd);
}

typedef struct {
    int fd;          /* locked spool, or -1 */
    size_t consumed; /* bytes of it that were sent or dropped */
} drain_t;

/* Append the spooled lines to `out`; how many were appended. */
static size_t spool_take(const config_t *cfg, drain_t *d, buf_t *out)
{
    d->fd = -1;
    d->consumed = 0;
    if (!cfg->spool)
        return 0;
    int fd = open(cfg->spool, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return 0;
    struct stat st;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)
        || st.st_size == 0) {
        close(fd);
        return 0;
    }
    buf_t data = {0};
    size_t want = st.st_size < MAX_SPOOL_DRAIN ? (size_t)st.st_size : MAX_SPOOL_DRAIN;
    buf_reserve(&data, want);
    while (data.len < want) {
        ssize_t r = pread(fd, data.p + data.len, want - data.len, (off_t)data.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        data.len += (size_t)r;
    }
    char *last = data.len ? memrchr(data.p, '\n', data.len) : NULL;
    if (last)
        d->consumed = (size_t)(last - data.p) + 1;
    else /* no line end: a fragment at the end of the file, or an unsendable line */
        d->consumed = data.len;
    size_t count = 0;
    for (size_t at = 0; at < d->consumed;) {
        char *nl = memchr(data.p + at, '\n', d->consumed - at);
        size_t n = (nl ? (size_t)(nl - data.p) : d->consumed) - at;
        const char *s = data.p + at;
        at += n + 1;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
            k++;
        if (k == n || n > MAX_LINE)
            continue;
        buf_put(out, s, n);
        buf_putc(out, '\n');
        count++;
    }
    free(data.p);
    d->fd = fd;
    return count;
}

/* Remove the first `consumed` bytes, keeping what was appended after them. */
static void spool_done(drain_t *d, int answered)
{
    if (d->fd < 0)
        return;
    struct stat st;
    if (answered && fstat(d->fd, &st) == 0) {
        size_t size = (size_t)st.st_size;
        buf_t rest = {0};
        if (size > d->consumed) {
            buf_reserve(&rest, size - d->consumed);
            while (rest.len < size - d->consumed) {
                ssize_t r = pread(d->fd, rest.p + rest.len, size - d->consumed - rest.len,
                                  (off_t)(d->consumed + rest.len));
                if (r <= 0 && !(r < 0 && errno == EINTR))
                    break;
                if (r > 0)
                    rest.len += (size_t)r;
            }
        }
        if (ftruncate(d->fd, 0) == 0 && rest.len) {
            ssize_t w = pwrite(d->fd, rest.p, rest.len, 0);
            (void)w;
        }
        free(rest.p);
    }
    close(d->fd);
    d->fd = -1;
}

/* --- main ------------------------------------------------------------------------ */


static void details(buf_t *b, int failed_open)
{
    char text[96];
    if (failed_open)
        snprintf(text, sizeof text, "{\"pid\":%ld,\"failed_open\":true,\"at\":%lld}}\n",
                 (long)getpid(), (long long)time(NULL));
    else
        snprintf(text, sizeof text, "{\"pid\":%ld}}\n", (long)getpid());
    buf_puts(b, text);
}

static void run(const char *real, char **argv)
{
    execv(real, argv);
    int err = errno;
    say("gateway: cannot run %s: %s", real, strerror(err));
    exit(err == ENOENT ? 127 : 126);
}

int main(int argc, char **argv)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        deny("cannot find the shim's own executable (/proc/self/exe): %s; nothing was run",
             n < 0 ? strerror(errno) : "empty");
    exe[n] = '\0';

    config_t cfg = {0};
    load_config(&cfg, exe);

    /* the name this program was invoked as (a login shell's argv[0] starts with '-') */
    const char *name = argc > 0 && argv[0] ? base_name(argv[0]) : "";
    if (name[0] == '-')
        name++;
    const char *real = real_for(&cfg, name);
    if (!real) {
        const char *own = base_name(exe);
        real = real_for(&cfg, own);
        if (real)
            name = own;
    }
    if (!real)
        deny("no real program is configured for '%s' in %s; nothing was run", name, cfg.file);
    struct stat self, target;
    if (stat(exe, &self) == 0 && stat(real, &target) == 0 && self.st_dev == target.st_dev
        && self.st_ino == target.st_ino)
        deny("the real program for '%s' (%s) is the shim itself; nothing was run", name, real);

    address_t addr;
    parse_address(&cfg, &addr);

    buf_t head = {0};
    build_request(&head, argc, argv, name);
    buf_t line = {0};
    buf_put(&line, head.p, head.len);
    details(&line, 0);
    if (line.len - 1 > MAX_LINE)
        deny("the request is %zu bytes, over the gateway's limit of %d; nothing was run",
             line.len - 1, MAX_LINE);

    conn_t c = {.fd = -1, .timeout_ms = cfg.timeout_ms};
    c.deadline = now_ms() + cfg.timeout_ms;
    buf_t out = {0}, in = {0};
    drain_t drain = {.fd = -1};
    int answered = 0;
    size_t spooled = 0;
    if (gateway_connect(&c, &addr)) {
        spooled = spool_take(&cfg, &drain, &out);
        buf_put(&out, line.p, line.len);
        answered = exchange(&c, &out, spooled + 1, &in);
        spool_done(&drain, answered);
    }
    if (c.fd >= 0)
        close(c.fd);

    if (!answered) {
        if (!cfg.fail_open)
            deny("the gateway at %s did not answer (%s); nothing was run", cfg.api, c.why);
        say("gateway: WARNING: the gateway at %s did not answer; running unchecked (fail_open)",
            cfg.api);
        if (cfg.spool) {
            buf_t spooled = {0};
            buf_put(&spooled, head.p, head.len);
            details(&spooled, 1);
            spool_append(&cfg, &spooled);
        }
        run(real, argv);
    }

    /* the reply to this request follows one reply per spooled line */
    char *start = in.p, *stop = in.p + in.len;
    for (size_t skip = spooled; skip; skip--)
        start = (char *)memchr(start, '\n', (size_t)(stop - start)) + 1;
    char *end = memchr(start, '\n', (size_t)(stop - start));
    reply_t r = {0};
    if (!parse_reply(start, end, &r))
        deny("the gateway at %s sent a garbled reply; nothing was run", cfg.api);
    if (r.blocks_false && !r.blocks_other && !r.error)
        run(real, argv);

    const char *what = r.part.len ? r.part.p : r.command.len ? r.command.p
                       : r.target.len ? r.target.p : name;
    const char *why = r.reason.len ? r.reason.p : r.error_text.len ? r.error_text.p
                      : "no reason given";
    deny("%s (%s)", what, why);
}
