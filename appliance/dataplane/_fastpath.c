/*
 * The vrlab fast path: the per-packet work of the router, in C.
 *
 * The contract (verdicts, check order, table records) is written down in
 * appliance/dataplane/twin.py, the pure-Python twin; this file implements the same thing for
 * speed and tests/unit/test_fastpath_diff.py holds both to identical output.
 *
 * What is here and why:
 * - judge(): RFC 1812 §5.2.2 header checks, longest prefix match, the punt decisions.
 * - IPv4 LPM is DIR-24-8 (Gupta, Lin, McKeown 1998): one 2^24 table of 16-bit entries plus
 *   256-entry groups for prefixes longer than /24, so a lookup is one or two loads. The big
 *   table comes from mmap (fresh zero pages), entry 0 means "the /0 route", so a table with
 *   few routes touches few pages even with a default route.
 * - IPv6 LPM is a hash table per prefix length present, probed longest first. A lab or edge
 *   table has a handful of distinct lengths (/128 own addresses, /64 links, /48 sites, /0),
 *   so a lookup is a handful of probes; each table is sized to its own routes, so the small
 *   ones stay in cache; memory is proportional to the routes. A stride trie would pay 8-16
 *   dependent loads for a /64, or 128 MB for a 16-bit first stride. poll() prefetches the
 *   slots a frame a few places ahead will probe, and big tables sit on huge pages.
 * - Neighbors: an open-addressed hash of (ifindex, family, address) -> 14-byte Ethernet
 *   header, the illumos NCE "fastpath" header copied in front of each forwarded packet.
 * - Every table is built aside and swapped in with one pointer store, then the old one is
 *   freed. All calls run with the GIL held, so poll() never sees a table being replaced.
 * - Rings: TPACKET_V2 RX/TX rings mapped by appliance/io (we borrow the mapping through the
 *   buffer protocol). poll() copies forwarded frames straight from an RX slot to a TX slot:
 *   no allocation and no Python call per forwarded frame; only punts become bytes objects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

/* Verdicts: the numbering of fastpath_py.Verdict. */
enum {
    V_FORWARD = 0,
    V_PUNT_NONIP,
    V_PUNT_MALFORMED,
    V_PUNT_MULTICAST,
    V_PUNT_MARTIAN,
    V_PUNT_LOCAL,
    V_PUNT_OPTIONS,
    V_PUNT_EXTHDR,
    V_PUNT_NOFORWARD,
    V_PUNT_TTL,
    V_PUNT_NOROUTE,
    V_PUNT_REJECT,
    V_PUNT_SCOPE,
    V_PUNT_TOOBIG,
    V_PUNT_REDIRECT,
    V_PUNT_NEIGHBOR,
    V_PUNT_NORING,
    V_PUNT_UNKNOWN_IF,
    V_DROP_OTHERHOST,
    V_DROP_TXFULL,
    V_COUNT
};

static const char *const verdict_names[V_COUNT] = {
    "FORWARD", "PUNT_NONIP", "PUNT_MALFORMED", "PUNT_MULTICAST", "PUNT_MARTIAN",
    "PUNT_LOCAL", "PUNT_OPTIONS", "PUNT_EXTHDR", "PUNT_NOFORWARD", "PUNT_TTL",
    "PUNT_NOROUTE", "PUNT_REJECT", "PUNT_SCOPE", "PUNT_TOOBIG", "PUNT_REDIRECT",
    "PUNT_NEIGHBOR", "PUNT_NORING", "PUNT_UNKNOWN_IF", "DROP_OTHERHOST", "DROP_TXFULL",
};

enum { NH_GATEWAY = 1, NH_ONLINK, NH_LOCAL, NH_BLACKHOLE, NH_REJECT };
enum { FLAG_FORWARDING4 = 1, FLAG_FORWARDING6 = 2, FLAG_REDIRECT4 = 4, FLAG_REDIRECT6 = 8 };

/* Record sizes; layouts in fastpath_py (INTERFACE, NEXTHOP, ROUTE4, ROUTE6, NEIGHBOR). */
#define INTERFACE_SIZE 16
#define NEXTHOP_SIZE 24
#define ROUTE4_SIZE 12
#define ROUTE6_SIZE 24
#define NEIGHBOR_SIZE 40

/* Counters beyond the per-verdict ones. */
enum { C_RX = 0, C_FORWARD4, C_FORWARD6, C_TX_SLOW, C_TX_KICKS, C_RX_RING_DROPS, C_TRACE_LOST,
       C_FORWARD_STALE, C_TX_BACKLOG, C_RX_WAKEUPS, C_RX_WAIT_NS, C_TX_KICK_NS, C_EXTRA };
static const char *const extra_names[C_EXTRA] = {
    "rx", "forward4", "forward6", "tx_slow", "tx_kicks", "rx_ring_drops", "trace_lost",
    "forward_stale", "tx_backlog", "rx_wakeups", "rx_wait_ns", "tx_kick_ns",
};

/* NEIGHBOR record flags (byte 38). A STALE neighbor is still used to forward (RFC 4861
   §7.3.3); the first frame sent to it is noted for stale_neighbors(), so the control plane
   moves the entry to DELAY and probes it. NOTED is ours: set once the note is taken. */
#define NEIGH_STALE 1u
#define NEIGH_NOTED 2u
#define STALE_CAPACITY 64 /* notes held until stale_neighbors(); more wait for a later frame */

/* The packet trace ring: a record per frame that matches the trace filter (its addresses, or
   every IP frame), filled only while a trace runs, so a traced packet takes the path it would
   have taken anyway. Layout: twin.TRACE_RECORD; stage times are CLOCK_MONOTONIC ns, 0 for a
   stage the frame did not reach. */
#define TRACE_CAPACITY 64
#define TRACE_MAX_ADDRS 8
#define TRACE_ADDRESS_SIZE 17 /* family (4|6), address (IPv4 in the first 4 bytes) */
enum { TS_RX = 0, TS_VERIFY, TS_ROUTE, TS_NEIGHBOR, TS_TX, TS_COUNT };
typedef struct {
    uint32_t ifindex, out_ifindex;
    uint16_t verdict;
    uint8_t family, proto, ttl, nh_kind;
    uint16_t length;
    uint16_t ident; /* ICMP echo identifier, or the TCP/UDP source port */
    uint16_t aux;   /* ICMP type << 8 | code, or the TCP/UDP destination port */
    uint8_t src[16], dst[16], nexthop[16];
    uint8_t pad[4];
    uint64_t t[TS_COUNT];
} trace_rec_t;
_Static_assert(sizeof(trace_rec_t) == 112, "twin.TRACE_RECORD is 112 bytes");

#define MAX_RINGS 64
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4 /* frames: enough to cover a memory access at our per-frame cost */
#endif
#define TPACKET2_TX_DATA 32 /* TPACKET2_HDRLEN - sizeof(struct sockaddr_ll) */
#define VNET_HDR_LEN 10     /* sizeof(struct virtio_net_hdr), before the frame with PACKET_VNET_HDR */

static PyObject *FastPathError;

static inline uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------ */
/* small helpers                                                                          */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rd64(const uint8_t *p) { return ((uint64_t)rd32(p) << 32) | rd32(p + 4); }

/* Folded one's complement sum (RFC 1071), odd length padded with a zero byte. */
static uint16_t ones_sum(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    while (n >= 2) {
        s += rd16(p);
        p += 2;
        n -= 2;
    }
    if (n)
        s += (uint32_t)p[0] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* RFC 1624 eqn. 3; unchanged when the word is unchanged (the errata's -0 case). */
static inline uint16_t csum_update(uint16_t hc, uint16_t m, uint16_t m2) {
    if (m == m2)
        return hc;
    uint32_t s = (uint16_t)~hc + (uint16_t)~m + m2;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* Complete a TCP/UDP checksum left partial by a local sender (see fastpath_py). */
static void complete_l4(uint8_t *f, size_t n) {
    size_t start, end, field;
    uint8_t proto;
    if (n < 14)
        return;
    uint16_t et = rd16(f + 12);
    if (et == 0x0800) {
        if (n < 34 || f[14] >> 4 != 4)
            return;
        size_t hl = (size_t)(f[14] & 15) * 4, total = rd16(f + 16);
        if (hl < 20 || total < hl || 14 + total > n || (f[20] & 0x3f) || f[21])
            return;
        proto = f[23];
        start = 14 + hl;
        end = 14 + total;
    } else if (et == 0x86dd) {
        if (n < 54 || f[14] >> 4 != 6)
            return;
        proto = f[20];
        start = 54;
        end = 54 + (size_t)rd16(f + 18);
        if (end > n)
            return;
    } else {
        return;
    }
    if (proto == 6)
        field = start + 16;
    else if (proto == 17)
        field = start + 6;
    else
        return;
    if (field + 2 > end)
        return;
    uint16_t v = (uint16_t)~ones_sum(f + start, end - start);
    if (v == 0)
        v = 0xffff;
    f[field] = v >> 8;
    f[field + 1] = v & 0xff;
}

/* ------------------------------------------------------------------------------------ */
/* tables                                                                                 */

typedef struct {
    uint32_t ifindex;
    uint32_t mtu;
    uint8_t mac[6];
} iface_t;

typedef struct {
    int n;
    unsigned flags;
    iface_t ifs[];
} iftab_t;

typedef struct {
    uint8_t kind;
    uint32_t ifindex;
    uint8_t gw[16];
} nexthop_t;

typedef struct {
    uint64_t hi, lo;
    uint32_t nh1; /* next-hop index + 1; 0 = empty slot */
} ent6_t;

typedef struct {
    ent6_t *slots;
    uint32_t mask;
} tab6_t;

typedef struct {
    uint32_t n_nh;
    nexthop_t *nh;
    /* IPv4 DIR-24-8: value 0 = fall back to default4; bit 15 = tbl8 group; else nh + 1. */
    uint16_t *tbl24;
    uint16_t *tbl8;
    size_t tbl8_bytes;
    uint32_t n_groups;
    uint32_t default4; /* nh + 1 of the /0 route, 0 = none */
    /* IPv6: an open-addressed table per prefix length present, each sized to its routes,
       so the lengths with few routes (own /128s, links) stay in cache whatever the others. */
    tab6_t t6[129];
    int n_lengths6;
    uint8_t lengths6[129]; /* descending */
} fib_t;

typedef struct {
    uint32_t ifindex;
    uint8_t family;
    uint8_t used;
    uint8_t flags; /* NEIGH_STALE, NEIGH_NOTED */
    uint8_t addr[16];
    uint8_t hdr[14];
} neigh_t;

typedef struct {
    uint32_t ifindex;
    uint8_t family;
    uint8_t addr[16];
} stale_note_t;

typedef struct {
    uint32_t mask;
    neigh_t slots[];
} neightab_t;

#define TBL24_SIZE (1u << 24)
#define GROUP_FLAG 0x8000u
#define MAX_NEXTHOPS 0x7ffeu
#define MAX_GROUPS 0x7fffu

/* Zeroed memory for a table, from mmap (fresh zero pages: untouched parts cost nothing).
   A big table that lookups hit all over gets transparent huge pages: with 4 KiB pages each
   lookup in a table of tens of MB is also a TLB miss (a nested page walk in a VM). */
static void *table_alloc(size_t size, int dense) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (dense && size >= (2u << 20))
        madvise(p, size, MADV_HUGEPAGE);
    return p;
}

static void table_free(void *p, size_t size) {
    if (p)
        munmap(p, size);
}

static void fib_free(fib_t *f) {
    if (!f)
        return;
    free(f->nh);
    table_free(f->tbl24, TBL24_SIZE * sizeof(uint16_t));
    table_free(f->tbl8, f->tbl8_bytes);
    for (int l = 0; l <= 128; l++)
        table_free(f->t6[l].slots, ((size_t)f->t6[l].mask + 1) * sizeof(ent6_t));
    free(f);
}

static inline uint32_t fib_lookup4(const fib_t *f, uint32_t dst) {
    uint32_t v = f->tbl24[dst >> 8];
    if (v & GROUP_FLAG)
        v = f->tbl8[((v & 0x7fffu) << 8) | (dst & 0xff)];
    return v ? v : f->default4;
}

static inline uint64_t hash6(uint64_t hi, uint64_t lo, uint8_t plen) {
    uint64_t h = hi * 0x9e3779b97f4a7c15ull ^ (lo + plen) * 0xc2b2ae3d27d4eb4full;
    return h ^ (h >> 29);
}

static inline void mask6(uint64_t *hi, uint64_t *lo, unsigned plen) {
    if (plen <= 64) {
        *hi = plen ? *hi & (~0ull << (64 - plen)) : 0;
        *lo = 0;
    } else {
        *lo &= ~0ull << (128 - plen);
    }
}

static inline uint32_t fib_lookup6(const fib_t *f, const uint8_t *dst) {
    uint64_t ahi = rd64(dst), alo = rd64(dst + 8);
    for (int i = 0; i < f->n_lengths6; i++) {
        uint8_t plen = f->lengths6[i];
        const tab6_t *t = &f->t6[plen];
        uint64_t hi = ahi, lo = alo;
        mask6(&hi, &lo, plen);
        for (uint32_t s = (uint32_t)hash6(hi, lo, plen) & t->mask;; s = (s + 1) & t->mask) {
            const ent6_t *e = &t->slots[s];
            if (!e->nh1)
                break;
            if (e->hi == hi && e->lo == lo)
                return e->nh1;
        }
    }
    return 0;
}

/* The slot holding (ifindex, family, addr), or the empty slot where it would go (open
   addressing, linear probing; the table always has empty slots). */
static const neigh_t *neigh_find(const neightab_t *t, uint32_t ifindex, uint8_t family,
                                 const uint8_t *addr) {
    size_t alen = family == 4 ? 4 : 16;
    uint64_t h = ifindex * 0x9e3779b97f4a7c15ull ^ family;
    for (size_t i = 0; i < alen; i++)
        h = (h ^ addr[i]) * 0x100000001b3ull;
    for (uint32_t s = (uint32_t)(h ^ (h >> 32)) & t->mask;; s = (s + 1) & t->mask) {
        const neigh_t *e = &t->slots[s];
        if (!e->used || (e->ifindex == ifindex && e->family == family && !memcmp(e->addr, addr, alen)))
            return e;
    }
}

static inline const neigh_t *neigh_lookup(const neightab_t *t, uint32_t ifindex,
                                          uint8_t family, const uint8_t *addr) {
    const neigh_t *e = neigh_find(t, ifindex, family, addr);
    return e->used ? e : NULL;
}

static inline const iface_t *iface_find(const iftab_t *t, uint32_t ifindex) {
    for (int i = 0; i < t->n; i++)
        if (t->ifs[i].ifindex == ifindex)
            return &t->ifs[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* the object                                                                             */

typedef struct {
    uint32_t ifindex;
    int fd;
    Py_buffer view;
    PyObject *ring;
    uint8_t *base;
    uint32_t frame_size, rx_frames, tx_frames, rx_head, tx_head;
    uint32_t tx_data; /* where a TX frame starts in its slot: after the virtio_net_hdr if any */
    int vnet;         /* the socket has PACKET_VNET_HDR (ring.tx_vnet_hdr) */
    int dirty;        /* frames were queued on the TX ring since the last kick */
    int backlog;      /* the last kick left frames on the TX ring (see kick()) */
} ring_t;

typedef struct {
    PyObject_HEAD
    iftab_t *ift;
    fib_t *fib;
    neightab_t *nt;
    unsigned long long generation;
    uint64_t counts[V_COUNT + C_EXTRA];
    int n_rings;
    int next_ring;
    ring_t rings[MAX_RINGS];
    int trace_on; /* 0 off, 1 frames from or to trace_addrs, 2 every IP frame */
    int n_trace4, n_trace6;
    uint32_t trace4[TRACE_MAX_ADDRS]; /* as rd32 reads them */
    uint64_t trace6[TRACE_MAX_ADDRS][2];
    uint32_t trace_head, trace_len;
    trace_rec_t trace[TRACE_CAPACITY];
    int n_stale;
    stale_note_t stale[STALE_CAPACITY];
    uint64_t last_frame_ns; /* when serve() last found frames: its spin counts from there */
    int ep_valid;           /* ep_fd holds the rings and ep_other (attach/detach clear it) */
    int ep_fd, ep_other;    /* serve()'s epoll set: every ring's fd and other_fd */
    int woke;               /* serve() slept since walk() last saw a frame (rx_wait_ns) */
} FastPath;

#define COUNT(fp, i) ((fp)->counts[V_COUNT + (i)])

/* What judge() found for a frame it forwards. */
typedef struct {
    uint32_t out_ifindex;
    const uint8_t *hdr; /* 14 bytes */
    size_t ip_len;
    int family;
    const nexthop_t *nh; /* the route's next hop, for the trace (NULL: no route) */
    const neigh_t *ne;   /* the neighbor it goes to (V_FORWARD) */
} fwd_t;

/* The checks after the TTL, the same for both families in fastpath_py's order: a usable
   route, the egress interface and its MTU, redirect territory (`redirect` is the family's
   FLAG_REDIRECT bit), a resolved neighbor. Fills `out` for V_FORWARD. */
static inline int judge_egress(const FastPath *fp, uint32_t ifindex, const nexthop_t *nh,
                               size_t ip_len, unsigned redirect, int family,
                               const uint8_t *dst, fwd_t *out, uint64_t *ts) {
    if (!nh)
        return V_PUNT_NOROUTE;
    if (nh->kind == NH_BLACKHOLE || nh->kind == NH_REJECT)
        return V_PUNT_REJECT;
    uint32_t out_ifindex = nh->ifindex;
    const iface_t *oif = iface_find(fp->ift, out_ifindex);
    if (!oif)
        return V_PUNT_NOROUTE;
    if (ip_len > oif->mtu)
        return V_PUNT_TOOBIG;
    if (out_ifindex == ifindex && redirect)
        return V_PUNT_REDIRECT;
    const uint8_t *hop = nh->kind == NH_GATEWAY ? nh->gw : dst;
    const neigh_t *ne = neigh_lookup(fp->nt, out_ifindex, family, hop);
    if (ts)
        ts[TS_NEIGHBOR] = monotonic_ns();
    if (!ne)
        return V_PUNT_NEIGHBOR;
    out->out_ifindex = out_ifindex;
    out->ne = ne;
    out->hdr = ne->hdr;
    out->ip_len = ip_len;
    out->family = family;
    return V_FORWARD;
}

/* Decide what to do with one frame; the order of the checks is fastpath_py's. `ts` is NULL
   except for a traced frame, whose stage times it receives (TS_*). */
static int judge(const FastPath *fp, uint32_t ifindex, const uint8_t *f, size_t n, fwd_t *out,
                 uint64_t *ts) {
    const iface_t *in = iface_find(fp->ift, ifindex);
    if (!in)
        return V_PUNT_UNKNOWN_IF;
    if (n < 14)
        return V_PUNT_MALFORMED;
    if (f[0] & 1)
        return V_PUNT_MULTICAST;
    if (memcmp(f, in->mac, 6))
        return V_DROP_OTHERHOST;
    const fib_t *fib = fp->fib;
    unsigned flags = fp->ift->flags;
    uint16_t et = rd16(f + 12);
    uint32_t nh1, ttl_or_hlim;
    const nexthop_t *nh;
    if (et == 0x0800) {
        if (n < 34 || f[14] >> 4 != 4)
            return V_PUNT_MALFORMED;
        size_t hl = (size_t)(f[14] & 15) * 4;
        if (hl < 20 || n < 14 + hl || ones_sum(f + 14, hl) != 0xffff)
            return V_PUNT_MALFORMED;
        size_t total = rd16(f + 16);
        if (total < hl || 14 + total > n)
            return V_PUNT_MALFORMED;
        if (ts)
            ts[TS_VERIFY] = monotonic_ns();
        uint32_t src = rd32(f + 26), dst = rd32(f + 30);
        if (dst >> 28 == 0xe || dst == 0xffffffffu)
            return V_PUNT_MULTICAST;
        if (src >> 28 >= 0xe || src >> 24 == 0 || src >> 24 == 127 || dst >> 24 == 0 ||
            dst >> 24 == 127 || dst >> 28 == 0xf)
            return V_PUNT_MARTIAN;
        nh1 = fib_lookup4(fib, dst);
        nh = nh1 ? &fib->nh[nh1 - 1] : NULL;
        out->nh = nh;
        if (ts)
            ts[TS_ROUTE] = monotonic_ns();
        if (nh && nh->kind == NH_LOCAL)
            return V_PUNT_LOCAL;
        /* a source that is one of ours or a directed broadcast of one of our subnets (the
           tables hold both as local host routes): the slow path decides (BSD ip_input drops
           a broadcast source, RFC 1812 §5.3.7) */
        uint32_t src1 = fib_lookup4(fib, src);
        if (src1 && fib->nh[src1 - 1].kind == NH_LOCAL)
            return V_PUNT_MARTIAN;
        if (hl > 20)
            return V_PUNT_OPTIONS;
        if (!(flags & FLAG_FORWARDING4))
            return V_PUNT_NOFORWARD;
        ttl_or_hlim = f[22];
        if (ttl_or_hlim <= 1)
            return V_PUNT_TTL;
        return judge_egress(fp, ifindex, nh, total, flags & FLAG_REDIRECT4, 4, f + 30, out, ts);
    }
    if (et == 0x86dd) {
        static const uint8_t zero[16], loopback[16] = {[15] = 1},
                             mapped[12] = {[10] = 0xff, [11] = 0xff}; /* ::ffff:0:0/96 */
        if (n < 54 || f[14] >> 4 != 6)
            return V_PUNT_MALFORMED;
        size_t payload = rd16(f + 18);
        if (54 + payload > n)
            return V_PUNT_MALFORMED;
        if (ts)
            ts[TS_VERIFY] = monotonic_ns();
        const uint8_t *src = f + 22, *dst = f + 38;
        if (dst[0] == 0xff)
            return V_PUNT_MULTICAST;
        if (src[0] == 0xff || !memcmp(src, zero, 16) || !memcmp(src, loopback, 16) ||
            !memcmp(dst, zero, 16) || !memcmp(dst, loopback, 16) || !memcmp(src, mapped, 12) ||
            !memcmp(dst, mapped, 12))
            return V_PUNT_MARTIAN;
        nh1 = fib_lookup6(fib, dst);
        nh = nh1 ? &fib->nh[nh1 - 1] : NULL;
        out->nh = nh;
        if (ts)
            ts[TS_ROUTE] = monotonic_ns();
        if (nh && nh->kind == NH_LOCAL)
            return V_PUNT_LOCAL;
        switch (f[20]) {
        case 0: case 43: case 44: case 60: case 135: case 139: case 140: case 253: case 254:
            return V_PUNT_EXTHDR;
        }
        if (!(flags & FLAG_FORWARDING6))
            return V_PUNT_NOFORWARD;
        ttl_or_hlim = f[21];
        if (ttl_or_hlim <= 1)
            return V_PUNT_TTL;
        if ((src[0] == 0xfe && (src[1] & 0xc0) == 0x80) || (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80))
            return V_PUNT_SCOPE;
        return judge_egress(fp, ifindex, nh, 40 + payload, flags & FLAG_REDIRECT6, 6, dst, out,
                            ts);
    }
    return V_PUNT_NONIP;
}

/* A frame whose 802.1Q tag the kernel stripped: what judge() says of the frame with the tag
   put back (EtherType 0x8100, so never IP): our untagged interfaces do not take it. */
static int judge_tagged(const FastPath *fp, uint32_t ifindex, const uint8_t *f, size_t n) {
    const iface_t *in = iface_find(fp->ift, ifindex);
    if (!in)
        return V_PUNT_UNKNOWN_IF;
    if (n + 4 < 14 || n < 6)
        return V_PUNT_MALFORMED;
    if (f[0] & 1)
        return V_PUNT_MULTICAST;
    if (memcmp(f, in->mac, 6))
        return V_DROP_OTHERHOST;
    return V_PUNT_NONIP;
}

/* Start loading the table entries a frame's lookup will read (poll() calls this a few
   frames ahead): with a big table they are cache misses, and this overlaps them. */
static inline void prefetch_route(const fib_t *fib, const uint8_t *f, size_t n) {
    if (n < 34)
        return;
    uint16_t et = rd16(f + 12);
    if (et == 0x0800) {
        __builtin_prefetch(&fib->tbl24[rd32(f + 30) >> 8]);
    } else if (et == 0x86dd && n >= 54) {
        uint64_t ahi = rd64(f + 38), alo = rd64(f + 46);
        for (int i = 0; i < fib->n_lengths6; i++) {
            uint8_t plen = fib->lengths6[i];
            uint64_t hi = ahi, lo = alo;
            mask6(&hi, &lo, plen);
            const tab6_t *t = &fib->t6[plen];
            __builtin_prefetch(&t->slots[(uint32_t)hash6(hi, lo, plen) & t->mask]);
        }
    }
}

/* Write the forwarded frame to `dst` (14 + ip_len bytes): cached header, TTL/hop limit - 1. */
static size_t emit(const fwd_t *w, const uint8_t *f, uint8_t *dst, int csum_partial) {
    memcpy(dst, w->hdr, 14);
    memcpy(dst + 14, f + 14, w->ip_len);
    if (w->family == 4) {
        uint8_t ttl = f[22];
        uint16_t word = (uint16_t)((ttl << 8) | f[23]);
        uint16_t c = csum_update(rd16(f + 24), word, (uint16_t)(word - 0x100));
        dst[22] = ttl - 1;
        dst[24] = c >> 8;
        dst[25] = c & 0xff;
    } else {
        dst[21] = f[21] - 1;
    }
    if (csum_partial)
        complete_l4(dst, 14 + w->ip_len);
    return 14 + w->ip_len;
}

/* Is this frame one the running trace wants? (Checked only while a trace runs.) */
static int trace_match(const FastPath *fp, const uint8_t *f, size_t n) {
    if (n < 14)
        return 0;
    uint16_t et = rd16(f + 12);
    if (et == 0x0800 && n >= 34) {
        if (fp->trace_on == 2)
            return 1;
        uint32_t s = rd32(f + 26), d = rd32(f + 30);
        for (int i = 0; i < fp->n_trace4; i++)
            if (fp->trace4[i] == s || fp->trace4[i] == d)
                return 1;
    } else if (et == 0x86dd && n >= 54) {
        if (fp->trace_on == 2)
            return 1;
        uint64_t sh = rd64(f + 22), sl = rd64(f + 30), dh = rd64(f + 38), dl = rd64(f + 46);
        for (int i = 0; i < fp->n_trace6; i++) {
            const uint64_t *a = fp->trace6[i];
            if ((a[0] == sh && a[1] == sl) || (a[0] == dh && a[1] == dl))
                return 1;
        }
    }
    return 0;
}

/* Append the record of a traced frame (the oldest is overwritten when the ring is full). */
static void trace_put(FastPath *fp, uint32_t ifindex, const uint8_t *f, size_t n, int v,
                      const fwd_t *w, const uint64_t *ts) {
    if (v == V_DROP_OTHERHOST)
        return; /* another host's frame on a shared segment: not something we handled */
    trace_rec_t *r = &fp->trace[fp->trace_head];
    fp->trace_head = (fp->trace_head + 1) % TRACE_CAPACITY;
    if (fp->trace_len < TRACE_CAPACITY)
        fp->trace_len++;
    else
        COUNT(fp, C_TRACE_LOST)++;
    memset(r, 0, sizeof *r);
    r->ifindex = ifindex;
    r->verdict = (uint16_t)v;
    r->out_ifindex = v == V_FORWARD || v == V_DROP_TXFULL ? w->out_ifindex : 0;
    memcpy(r->t, ts, sizeof r->t);
    size_t l4 = 0, alen;
    if (rd16(f + 12) == 0x0800) {
        r->family = 4, r->proto = f[23], r->ttl = f[22], r->length = rd16(f + 16), alen = 4;
        memcpy(r->src, f + 26, 4);
        memcpy(r->dst, f + 30, 4);
        if (!(rd16(f + 20) & 0x1fff)) /* not a later fragment: a transport header follows */
            l4 = 14 + (size_t)(f[14] & 15) * 4;
    } else {
        r->family = 6, r->proto = f[20], r->ttl = f[21], r->length = (uint16_t)(40 + rd16(f + 18));
        alen = 16;
        memcpy(r->src, f + 22, 16);
        memcpy(r->dst, f + 38, 16);
        l4 = 54;
    }
    if (l4 && (r->proto == 1 || r->proto == 58) && l4 + 8 <= n) {
        r->aux = rd16(f + l4);
        r->ident = rd16(f + l4 + 4);
    } else if (l4 && (r->proto == 6 || r->proto == 17) && l4 + 4 <= n) {
        r->ident = rd16(f + l4);
        r->aux = rd16(f + l4 + 2);
    }
    if (w->nh) {
        r->nh_kind = w->nh->kind;
        memcpy(r->nexthop, w->nh->kind == NH_GATEWAY ? w->nh->gw : r->dst, alen);
    }
}

/* A frame went to `w->ne`: if that neighbor is STALE, count it and note the neighbor once
   (per table load) for stale_neighbors(); a full note list leaves it for a later frame. */
static inline void note_sent(FastPath *fp, const fwd_t *w) {
    neigh_t *ne = (neigh_t *)w->ne; /* the flags byte is the fast path's own to change */
    if (!(ne->flags & NEIGH_STALE))
        return;
    COUNT(fp, C_FORWARD_STALE)++;
    if ((ne->flags & NEIGH_NOTED) || fp->n_stale >= STALE_CAPACITY)
        return;
    ne->flags |= NEIGH_NOTED;
    stale_note_t *note = &fp->stale[fp->n_stale++];
    note->ifindex = ne->ifindex;
    note->family = ne->family;
    memcpy(note->addr, ne->addr, 16);
}

static void count_verdict(FastPath *fp, int v, int family) {
    if (v == V_FORWARD)
        COUNT(fp, family == 4 ? C_FORWARD4 : C_FORWARD6)++;
    else
        fp->counts[v]++;
}

/* ------------------------------------------------------------------------------------ */
/* Python methods: tables                                                                 */

static int get_records(PyObject *obj, Py_buffer *view, size_t size, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if ((size_t)view->len % size) {
        PyErr_Format(FastPathError, "%s: %zd bytes is not a multiple of %zu", what, view->len, size);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *FastPath_load_interfaces(FastPath *self, PyObject *args) {
    PyObject *obj;
    unsigned int flags;
    unsigned long long generation;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "OIK:load_interfaces", &obj, &flags, &generation))
        return NULL;
    if (get_records(obj, &view, INTERFACE_SIZE, "interfaces") < 0)
        return NULL;
    size_t n = (size_t)view.len / INTERFACE_SIZE;
    iftab_t *t = calloc(1, sizeof(iftab_t) + n * sizeof(iface_t));
    if (!t) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const uint8_t *p = view.buf;
    t->flags = flags;
    for (size_t i = 0; i < n; i++, p += INTERFACE_SIZE) {
        uint32_t ifindex = le32(p);
        /* a repeated ifindex replaces the earlier record, as in the twin's dict */
        iface_t *e = (iface_t *)iface_find(t, ifindex);
        if (!e)
            e = &t->ifs[t->n++];
        e->ifindex = ifindex;
        memcpy(e->mac, p + 4, 6);
        e->mtu = le32(p + 12);
    }
    PyBuffer_Release(&view);
    iftab_t *old = self->ift;
    self->ift = t;
    self->generation = generation;
    free(old);
    Py_RETURN_NONE;
}

typedef struct {
    uint32_t addr;
    uint8_t plen;
    uint32_t nh;
    uint32_t order;
} r4_t;

static int r4_cmp(const void *a, const void *b) {
    const r4_t *x = a, *y = b;
    if (x->plen != y->plen)
        return x->plen < y->plen ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int fill4(fib_t *f, const r4_t *r) {
    uint16_t v = (uint16_t)(r->nh + 1);
    if (r->plen == 0) {
        f->default4 = v;
        return 0;
    }
    if (r->plen <= 24) {
        uint32_t first = r->addr >> 8, count = 1u << (24 - r->plen);
        /* routes come sorted by length, so no /24 slot has been split into a group yet */
        for (uint32_t i = first; i < first + count; i++)
            f->tbl24[i] = v;
        return 0;
    }
    uint32_t slot = r->addr >> 8;
    uint16_t cur = f->tbl24[slot];
    if (!(cur & GROUP_FLAG)) {
        if (f->n_groups >= MAX_GROUPS) {
            PyErr_SetString(FastPathError, "too many IPv4 prefixes longer than /24");
            return -1;
        }
        uint32_t g = f->n_groups++;
        uint16_t *grp = &f->tbl8[g << 8];
        for (int j = 0; j < 256; j++)
            grp[j] = cur;
        f->tbl24[slot] = (uint16_t)(GROUP_FLAG | g);
        cur = f->tbl24[slot];
    }
    uint16_t *grp = &f->tbl8[(cur & 0x7fffu) << 8];
    uint32_t first = r->addr & 0xff, count = 1u << (32 - r->plen);
    for (uint32_t j = first; j < first + count; j++)
        grp[j] = v;
    return 0;
}

static PyObject *FastPath_load_fib(FastPath *self, PyObject *args) {
    PyObject *o_nh, *o_r4, *o_r6;
    unsigned long long generation;
    Py_buffer vnh, v4, v6;
    r4_t *r4 = NULL;
    fib_t *f = NULL;
    if (!PyArg_ParseTuple(args, "OOOK:load_fib", &o_nh, &o_r4, &o_r6, &generation))
        return NULL;
    if (get_records(o_nh, &vnh, NEXTHOP_SIZE, "nexthops") < 0)
        return NULL;
    if (get_records(o_r4, &v4, ROUTE4_SIZE, "routes4") < 0) {
        PyBuffer_Release(&vnh);
        return NULL;
    }
    if (get_records(o_r6, &v6, ROUTE6_SIZE, "routes6") < 0) {
        PyBuffer_Release(&vnh);
        PyBuffer_Release(&v4);
        return NULL;
    }
    size_t n_nh = (size_t)vnh.len / NEXTHOP_SIZE, n4 = (size_t)v4.len / ROUTE4_SIZE,
           n6 = (size_t)v6.len / ROUTE6_SIZE;
    if (n_nh > MAX_NEXTHOPS) {
        PyErr_Format(FastPathError, "%zu next hops: at most %u", n_nh, MAX_NEXTHOPS);
        goto fail;
    }
    f = calloc(1, sizeof(fib_t));
    if (!f)
        goto nomem;
    f->n_nh = (uint32_t)n_nh;
    f->nh = calloc(n_nh ? n_nh : 1, sizeof(nexthop_t));
    if (!f->nh)
        goto nomem;
    const uint8_t *p = vnh.buf;
    for (size_t i = 0; i < n_nh; i++, p += NEXTHOP_SIZE) {
        if (p[0] < NH_GATEWAY || p[0] > NH_REJECT) {
            PyErr_Format(FastPathError, "nexthop %zu: unknown kind %u", i, p[0]);
            goto fail;
        }
        f->nh[i].kind = p[0];
        f->nh[i].ifindex = le32(p + 4);
        memcpy(f->nh[i].gw, p + 8, 16);
    }

    /* IPv4: sort by length (stable), then paint shorter prefixes first. */
    r4 = malloc((n4 ? n4 : 1) * sizeof(r4_t));
    if (!r4)
        goto nomem;
    size_t longer = 0;
    p = v4.buf;
    for (size_t i = 0; i < n4; i++, p += ROUTE4_SIZE) {
        uint8_t plen = p[4];
        uint32_t nh = le32(p + 8);
        if (plen > 32) {
            PyErr_Format(FastPathError, "prefix length %u > 32", plen);
            goto fail;
        }
        if (nh >= n_nh) {
            PyErr_Format(FastPathError, "next-hop index %u out of range", nh);
            goto fail;
        }
        r4[i].addr = plen ? rd32(p) & (0xffffffffu << (32 - plen)) : 0;
        r4[i].plen = plen;
        r4[i].nh = nh;
        r4[i].order = (uint32_t)i;
        longer += plen > 24;
    }
    qsort(r4, n4, sizeof(r4_t), r4_cmp);
    /* huge pages for the big table only when there are many routes: a lab's few routes
       touch a few 4 KiB pages, and a huge page each would cost 2 MiB of memory apiece */
    f->tbl24 = table_alloc(TBL24_SIZE * sizeof(uint16_t), n4 > 100000);
    size_t groups = longer < MAX_GROUPS ? longer : MAX_GROUPS;
    f->tbl8_bytes = (groups ? groups : 1) * 256 * sizeof(uint16_t);
    f->tbl8 = table_alloc(f->tbl8_bytes, 1);
    if (!f->tbl24 || !f->tbl8)
        goto nomem;
    for (size_t i = 0; i < n4; i++)
        if (fill4(f, &r4[i]) < 0)
            goto fail;
    free(r4);
    r4 = NULL;

    /* IPv6: count per length, size each table (at most half full), then insert; a
       repeated prefix replaces the earlier one. */
    size_t per_length[129] = {0};
    p = v6.buf;
    for (size_t i = 0; i < n6; i++, p += ROUTE6_SIZE) {
        if (p[16] > 128) {
            PyErr_Format(FastPathError, "prefix length %u > 128", p[16]);
            goto fail;
        }
        if (le32(p + 20) >= n_nh) {
            PyErr_Format(FastPathError, "next-hop index %u out of range", le32(p + 20));
            goto fail;
        }
        per_length[p[16]]++;
    }
    for (int l = 128; l >= 0; l--) {
        if (!per_length[l])
            continue;
        uint32_t size = 8;
        while (size < 2 * per_length[l])
            size <<= 1;
        f->t6[l].mask = size - 1;
        f->t6[l].slots = table_alloc(size * sizeof(ent6_t), 1);
        if (!f->t6[l].slots)
            goto nomem;
        f->lengths6[f->n_lengths6++] = (uint8_t)l;
    }
    p = v6.buf;
    for (size_t i = 0; i < n6; i++, p += ROUTE6_SIZE) {
        uint8_t plen = p[16];
        tab6_t *t = &f->t6[plen];
        uint64_t hi = rd64(p), lo = rd64(p + 8);
        mask6(&hi, &lo, plen);
        uint32_t s = (uint32_t)hash6(hi, lo, plen) & t->mask;
        while (t->slots[s].nh1 && !(t->slots[s].hi == hi && t->slots[s].lo == lo))
            s = (s + 1) & t->mask;
        t->slots[s].hi = hi;
        t->slots[s].lo = lo;
        t->slots[s].nh1 = le32(p + 20) + 1;
    }

    PyBuffer_Release(&vnh);
    PyBuffer_Release(&v4);
    PyBuffer_Release(&v6);
    fib_t *old = self->fib;
    self->fib = f;
    self->generation = generation;
    fib_free(old);
    Py_RETURN_NONE;

nomem:
    PyErr_NoMemory();
fail:
    free(r4);
    fib_free(f);
    PyBuffer_Release(&vnh);
    PyBuffer_Release(&v4);
    PyBuffer_Release(&v6);
    return NULL;
}

static PyObject *FastPath_load_neighbors(FastPath *self, PyObject *args) {
    PyObject *obj;
    unsigned long long generation;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "OK:load_neighbors", &obj, &generation))
        return NULL;
    if (get_records(obj, &view, NEIGHBOR_SIZE, "neighbors") < 0)
        return NULL;
    size_t n = (size_t)view.len / NEIGHBOR_SIZE;
    uint32_t size = 16;
    while (size < 2 * n + 2)
        size <<= 1;
    neightab_t *t = calloc(1, sizeof(neightab_t) + size * sizeof(neigh_t));
    if (!t) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    t->mask = size - 1;
    const uint8_t *p = view.buf;
    for (size_t i = 0; i < n; i++, p += NEIGHBOR_SIZE) {
        uint8_t family = p[4];
        if (family != 4 && family != 6) {
            PyErr_Format(FastPathError, "neighbor family %u is not 4 or 6", family);
            PyBuffer_Release(&view);
            free(t);
            return NULL;
        }
        if (p[38] & ~NEIGH_STALE) {
            PyErr_Format(FastPathError, "neighbor flags %u: only 1 (STALE) is defined", p[38]);
            PyBuffer_Release(&view);
            free(t);
            return NULL;
        }
        uint8_t addr[16] = {0};
        memcpy(addr, p + 8, family == 4 ? 4 : 16);
        neigh_t *e = (neigh_t *)neigh_find(t, le32(p), family, addr); /* t is ours to fill */
        e->used = 1;
        e->ifindex = le32(p);
        e->family = family;
        memcpy(e->addr, addr, 16);
        memcpy(e->hdr, p + 24, 14);
        e->flags = p[38];
    }
    PyBuffer_Release(&view);
    neightab_t *old = self->nt;
    self->nt = t;
    self->generation = generation;
    free(old);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* Python methods: one frame                                                             */

/* Tables exist once __init__ ran; a subclass that skipped it gets an error, not a crash. */
static int ready(const FastPath *self) {
    if (self->ift && self->fib && self->nt)
        return 1;
    PyErr_SetString(FastPathError, "FastPath.__init__ was not called");
    return 0;
}

static PyObject *FastPath_process(FastPath *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ifindex", "frame", "csum_partial", NULL};
    unsigned int ifindex;
    Py_buffer view;
    int csum_partial = 0;
    if (!ready(self) ||
        !PyArg_ParseTupleAndKeywords(args, kwds, "Iy*|p:process", kwlist, &ifindex, &view,
                                     &csum_partial))
        return NULL;
    fwd_t w = {0};
    const uint8_t *f = view.buf;
    size_t n = (size_t)view.len;
    uint64_t ts[TS_COUNT] = {0};
    int traced = self->trace_on && trace_match(self, f, n);
    if (traced)
        ts[TS_RX] = monotonic_ns();
    int v = judge(self, ifindex, f, n, &w, traced ? ts : NULL);
    count_verdict(self, v, w.family);
    PyObject *out;
    uint32_t out_ifindex = 0;
    if (v == V_FORWARD) {
        out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(14 + w.ip_len));
        if (out)
            emit(&w, f, (uint8_t *)PyBytes_AS_STRING(out), csum_partial);
        out_ifindex = w.out_ifindex;
        note_sent(self, &w);
        if (traced)
            ts[TS_TX] = monotonic_ns();
    } else if (v >= V_DROP_OTHERHOST) {
        out = PyBytes_FromStringAndSize(NULL, 0);
    } else {
        out = PyBytes_FromStringAndSize((const char *)f, (Py_ssize_t)n);
        if (out && csum_partial)
            complete_l4((uint8_t *)PyBytes_AS_STRING(out), n);
    }
    if (traced)
        trace_put(self, ifindex, f, n, v, &w, ts);
    PyBuffer_Release(&view);
    if (!out)
        return NULL;
    return Py_BuildValue("(iIN)", v, out_ifindex, out);
}

/* ------------------------------------------------------------------------------------ */
/* Python methods: rings                                                                  */

static ring_t *ring_find(FastPath *self, uint32_t ifindex) {
    for (int i = 0; i < self->n_rings; i++)
        if (self->rings[i].ifindex == ifindex)
            return &self->rings[i];
    return NULL;
}

static int attr_u32(PyObject *o, const char *name, uint32_t *out) {
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v)
        return -1;
    unsigned long x = PyLong_AsUnsignedLong(v);
    Py_DECREF(v);
    if (x == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (x > UINT32_MAX) {
        PyErr_Format(FastPathError, "ring.%s out of range", name);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

static PyObject *FastPath_attach(FastPath *self, PyObject *ring) {
    ring_t r;
    memset(&r, 0, sizeof r);
    uint32_t fd;
    if (attr_u32(ring, "ifindex", &r.ifindex) < 0 || attr_u32(ring, "fd", &fd) < 0 ||
        attr_u32(ring, "frame_size", &r.frame_size) < 0 ||
        attr_u32(ring, "rx_frames", &r.rx_frames) < 0 ||
        attr_u32(ring, "tx_frames", &r.tx_frames) < 0 || attr_u32(ring, "rx_head", &r.rx_head) < 0 ||
        attr_u32(ring, "tx_head", &r.tx_head) < 0)
        return NULL;
    r.fd = (int)fd;
    PyObject *vnet = PyObject_GetAttrString(ring, "tx_vnet_hdr");
    if (vnet) {
        r.vnet = PyObject_IsTrue(vnet);
        Py_DECREF(vnet);
        if (r.vnet < 0)
            return NULL;
    } else if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear(); /* a ring without the attribute has no virtio_net_hdr */
    } else {
        return NULL;
    }
    r.tx_data = TPACKET2_TX_DATA + (r.vnet ? VNET_HDR_LEN : 0);
    if (ring_find(self, r.ifindex))
        return PyErr_Format(FastPathError, "interface %u already has a ring attached", r.ifindex);
    if (self->n_rings >= MAX_RINGS)
        return PyErr_Format(FastPathError, "at most %d rings", MAX_RINGS);
    if (r.frame_size < 256 || r.frame_size % 16 || !r.rx_frames || !r.tx_frames ||
        r.rx_head >= r.rx_frames || r.tx_head >= r.tx_frames)
        return PyErr_Format(FastPathError, "bad ring geometry");
    PyObject *map = PyObject_GetAttrString(ring, "map");
    if (!map)
        return NULL;
    int rc = PyObject_GetBuffer(map, &r.view, PyBUF_WRITABLE);
    Py_DECREF(map);
    if (rc < 0)
        return NULL;
    if ((size_t)r.view.len < (size_t)r.frame_size * ((size_t)r.rx_frames + r.tx_frames)) {
        PyBuffer_Release(&r.view);
        return PyErr_Format(FastPathError, "ring mapping is smaller than its frames");
    }
    if (PyObject_SetAttrString(ring, "attached", Py_True) < 0) {
        PyBuffer_Release(&r.view);
        return NULL;
    }
    r.base = r.view.buf;
    Py_INCREF(ring);
    r.ring = ring;
    self->rings[self->n_rings++] = r;
    self->ep_valid = 0;
    Py_RETURN_NONE;
}

static void ring_release(ring_t *r, int write_back) {
    if (write_back) {
        PyObject *rx = PyLong_FromUnsignedLong(r->rx_head), *tx = PyLong_FromUnsignedLong(r->tx_head);
        if (rx && tx) {
            if (PyObject_SetAttrString(r->ring, "rx_head", rx) < 0 ||
                PyObject_SetAttrString(r->ring, "tx_head", tx) < 0 ||
                PyObject_SetAttrString(r->ring, "attached", Py_False) < 0)
                PyErr_Clear();
        } else {
            PyErr_Clear();
        }
        Py_XDECREF(rx);
        Py_XDECREF(tx);
    }
    PyBuffer_Release(&r->view);
    Py_CLEAR(r->ring);
}

static PyObject *FastPath_detach(FastPath *self, PyObject *arg) {
    unsigned long ifindex = PyLong_AsUnsignedLong(arg);
    if (ifindex == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    for (int i = 0; i < self->n_rings; i++) {
        if (self->rings[i].ifindex == ifindex) {
            ring_release(&self->rings[i], 1);
            self->rings[i] = self->rings[--self->n_rings];
            self->next_ring = 0;
            self->ep_valid = 0;
            Py_RETURN_NONE;
        }
    }
    return PyErr_Format(FastPathError, "interface %lu has no ring attached", ifindex);
}

/* The next free TX slot of `r`, or NULL when the ring is full. */
static uint8_t *tx_slot(ring_t *r) {
    uint8_t *slot = r->base + (size_t)r->frame_size * (r->rx_frames + r->tx_head);
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)slot;
    uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    if (st != TP_STATUS_AVAILABLE && st != TP_STATUS_WRONG_FORMAT)
        return NULL;
    return slot;
}

static void tx_commit(ring_t *r, uint8_t *slot, size_t len) {
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)slot;
    if (r->vnet) {
        /* no offload asked (flags, gso_type, gso_size, csum_* zero); hdr_len = the whole
           frame, so the kernel copies it into the skb's linear buffer rather than attaching
           the ring page as a zero-copy fragment (which veth would copy again into a fresh
           page). Little-endian: virtio 1.0, and what the kernel expects on x86. */
        uint8_t *v = slot + TPACKET2_TX_DATA;
        memset(v, 0, VNET_HDR_LEN);
        v[2] = (uint8_t)(len & 0xff);
        v[3] = (uint8_t)(len >> 8);
        len += VNET_HDR_LEN;
    }
    h->tp_len = (uint32_t)len;
    __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    r->tx_head = r->tx_head + 1 == r->tx_frames ? 0 : r->tx_head + 1;
    r->dirty = 1;
}

/* Ask the kernel to send what the TX rings hold. A kick need not take every frame: the
   socket's send buffer (sk_sndbuf, ~280 small frames in flight) or a full device queue (the
   bypass path gives the frame back as SEND_REQUEST, -ENOBUFS) ends it early, and the kernel
   says nothing when room comes back (POLLOUT on a TX ring means "the kernel's next slot is
   free", i.e. no backlog at all). So a kick that leaves the newest frame unsent keeps the ring
   marked: the next pass kicks it again, and serve() sleeps at most BACKLOG_WAIT_MS meanwhile.
   Measured under TCG before this: a UDP flood stranded up to 2,048 frames per ring until the
   next forwarded frame came (the receiver saw them seconds late), and the full ring dropped
   ~10% of the flood as drop.txfull. Returns whether any ring still has a backlog. */
static int kick(FastPath *self) {
    int backlog = 0;
    for (int i = 0; i < self->n_rings; i++) {
        ring_t *r = &self->rings[i];
        if (r->dirty || r->backlog) {
            /* MSG_DONTWAIT: without it the kick waits until the frames are sent */
            uint64_t started = monotonic_ns();
            int failed = send(r->fd, NULL, 0, MSG_DONTWAIT) < 0 ? errno : 0;
            COUNT(self, C_TX_KICK_NS) += monotonic_ns() - started;
            r->dirty = 0;
            COUNT(self, C_TX_KICKS)++;
            uint32_t last = r->tx_head ? r->tx_head - 1 : r->tx_frames - 1;
            const struct tpacket2_hdr *h = (const struct tpacket2_hdr *)(
                r->base + (size_t)r->frame_size * (r->rx_frames + last));
            /* Only a full buffer or queue is worth kicking again soon; a link that is down
               (ENETDOWN, ENXIO) keeps its frames until a frame for it is queued again, or
               serve() would wake every millisecond for as long as the link stays down. */
            r->backlog = (!failed || failed == EAGAIN || failed == EWOULDBLOCK ||
                          failed == ENOBUFS) &&
                         __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) ==
                         TP_STATUS_SEND_REQUEST;
            if (r->backlog) {
                COUNT(self, C_TX_BACKLOG)++;
                backlog = 1;
            }
        }
    }
    return backlog;
}

/* A punt as (ifindex, verdict, frame); a stripped VLAN tag is put back first. */
static int punt(PyObject *list, uint32_t ifindex, int v, const uint8_t *f, size_t n,
                const struct tpacket2_hdr *h, int csum_partial) {
    int tagged = (h->tp_status & TP_STATUS_VLAN_VALID) && n >= 12;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n + (tagged ? 4 : 0)));
    if (!b)
        return -1;
    uint8_t *d = (uint8_t *)PyBytes_AS_STRING(b);
    if (tagged) {
        uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) && h->tp_vlan_tpid
                            ? h->tp_vlan_tpid : 0x8100;
        memcpy(d, f, 12);
        d[12] = tpid >> 8;
        d[13] = tpid & 0xff;
        d[14] = h->tp_vlan_tci >> 8;
        d[15] = h->tp_vlan_tci & 0xff;
        memcpy(d + 16, f + 12, n - 12);
    } else {
        memcpy(d, f, n);
        if (csum_partial)
            complete_l4(d, n);
    }
    PyObject *t = Py_BuildValue("(IiN)", ifindex, v, b);
    if (!t)
        return -1;
    int rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc;
}

/* One pass over the RX rings: up to `budget - *done` frames; forwarded ones are placed on the
   TX rings (not kicked), punts appended to `punts`. Returns -1 on a Python error. */
static int walk(FastPath *self, long budget, PyObject *punts, long *done_out) {
    long done = *done_out;
    int n_rings = self->n_rings, err = 0;
    for (int k = 0; k < n_rings && done < budget && !err; k++) {
        ring_t *r = &self->rings[(self->next_ring + k) % n_rings];
        while (done < budget) {
            uint8_t *slot = r->base + (size_t)r->frame_size * r->rx_head;
            struct tpacket2_hdr *h = (struct tpacket2_hdr *)slot;
            uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
            if (!(st & TP_STATUS_USER))
                break;
            if (PREFETCH_AHEAD) {
                /* two stages: the slot twice as far ahead is only prefetched (its header and
                   the start of its frame), so that reading the one PREFETCH_AHEAD ahead to
                   find its route does not stall */
                /* no `%`: a division is a helper call per frame under TCG */
                uint32_t far_i = r->rx_head + 2 * PREFETCH_AHEAD;
                while (far_i >= r->rx_frames)
                    far_i -= r->rx_frames;
                const uint8_t *far = r->base + (size_t)r->frame_size * far_i;
                __builtin_prefetch(far);
                __builtin_prefetch(far + 64);
                __builtin_prefetch(far + 128);
                uint32_t ahead = r->rx_head + PREFETCH_AHEAD;
                while (ahead >= r->rx_frames)
                    ahead -= r->rx_frames;
                uint8_t *aslot = r->base + (size_t)r->frame_size * ahead;
                const struct tpacket2_hdr *ah = (const struct tpacket2_hdr *)aslot;
                if ((__atomic_load_n(&ah->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) &&
                    (size_t)ah->tp_mac + ah->tp_snaplen <= r->frame_size)
                    prefetch_route(self->fib, aslot + ah->tp_mac, ah->tp_snaplen);
            }
            if (self->woke) {
                /* the first frame after serve() slept: how long it waited since the kernel
                   put it on the ring (tp_sec/tp_nsec, CLOCK_REALTIME) */
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                int64_t waited = ((int64_t)now.tv_sec - h->tp_sec) * 1000000000LL +
                                 ((int64_t)now.tv_nsec - h->tp_nsec);
                if (waited >= 0 && waited < 1000000000LL) { /* a clock step is not a wait */
                    COUNT(self, C_RX_WAKEUPS)++;
                    COUNT(self, C_RX_WAIT_NS) += (uint64_t)waited;
                }
                self->woke = 0;
            }
            size_t n = h->tp_snaplen;
            if ((size_t)h->tp_mac + n > r->frame_size)
                n = h->tp_mac < r->frame_size ? r->frame_size - h->tp_mac : 0;
            const uint8_t *f = slot + h->tp_mac;
            const struct sockaddr_ll *sll =
                (const struct sockaddr_ll *)(slot + TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
            int csum_partial = (st & TP_STATUS_CSUMNOTREADY) != 0;
            if (sll->sll_pkttype != PACKET_OUTGOING) { /* (none with IGNORE_OUTGOING) */
                done++;
                COUNT(self, C_RX)++;
                fwd_t w = {0};
                int v;
                uint64_t ts[TS_COUNT];
                int traced = self->trace_on && !(st & TP_STATUS_VLAN_VALID) &&
                             trace_match(self, f, n);
                if (traced) {
                    memset(ts, 0, sizeof ts);
                    ts[TS_RX] = monotonic_ns();
                }
                if (st & TP_STATUS_VLAN_VALID)
                    v = judge_tagged(self, r->ifindex, f, n);
                else
                    v = judge(self, r->ifindex, f, n, &w, traced ? ts : NULL);
                if (v == V_FORWARD) {
                    ring_t *o = ring_find(self, w.out_ifindex);
                    uint8_t *out;
                    if (!o) {
                        v = V_PUNT_NORING;
                    } else if (14 + w.ip_len > o->frame_size - o->tx_data ||
                               !(out = tx_slot(o))) {
                        v = V_DROP_TXFULL;
                    } else {
                        size_t len = emit(&w, f, out + o->tx_data, csum_partial);
                        tx_commit(o, out, len);
                        note_sent(self, &w);
                        if (traced)
                            ts[TS_TX] = monotonic_ns();
                    }
                }
                count_verdict(self, v, w.family);
                if (traced)
                    trace_put(self, r->ifindex, f, n, v, &w, ts);
                if (v != V_FORWARD && v < V_DROP_OTHERHOST &&
                    punt(punts, r->ifindex, v, f, n, h, csum_partial) < 0)
                    err = 1;
            }
            __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            r->rx_head = r->rx_head + 1 == r->rx_frames ? 0 : r->rx_head + 1;
            if (err)
                break;
        }
    }
    if (n_rings)
        self->next_ring = (self->next_ring + 1) % n_rings;
    *done_out = done;
    return err ? -1 : 0;
}

#define KICK_BATCH 32 /* frames queued on the TX rings before a busy-polling poll() kicks */

static PyObject *FastPath_poll(FastPath *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"budget", "spin", NULL};
    long budget;
    double spin = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "l|d:poll", kwlist, &budget, &spin))
        return NULL;
    if (!ready(self))
        return NULL;
    if (budget <= 0)
        return PyErr_Format(FastPathError, "budget must be positive");
    if (!(spin >= 0.0 && spin <= 1.0))
        return PyErr_Format(FastPathError, "spin must be 0 to 1 second");
    PyObject *punts = PyList_New(0);
    if (!punts)
        return NULL;
    long done = 0;
    int err = walk(self, budget, punts, &done);
    if (!err && spin > 0.0) {
        /* busy-poll: more passes until the budget is met, a frame needs the slow path, or
           `spin` seconds are up, so the caller's loop runs a few hundred times a second
           rather than once per frame or two. The TX rings are kicked when a pass finds the RX
           rings empty (nothing waits for a batch that is not coming) or once KICK_BATCH
           frames wait: one send(2) for many frames when they come fast. */
        uint64_t end = monotonic_ns() + (uint64_t)(spin * 1e9);
        long kicked_at = 0;
        while (!err && done < budget && PyList_GET_SIZE(punts) == 0 && !self->n_stale) {
            long before = done;
            err = walk(self, budget, punts, &done);
            if (done != before) {
                if (done - kicked_at >= KICK_BATCH) {
                    kick(self);
                    kicked_at = done;
                }
            } else if (done != kicked_at) {
                kick(self);
                kicked_at = done;
            } else if (monotonic_ns() >= end) {
                break;
            } else {
                __builtin_ia32_pause();
            }
        }
    }
    kick(self);
    if (err) {
        Py_DECREF(punts);
        return NULL;
    }
    return Py_BuildValue("(lN)", done, punts);
}

#define SERVE_PASSES 4096 /* bound on one serve() call's passes (each walks, spins or sleeps) */
#define BACKLOG_WAIT_MS 1 /* longest sleep while a TX ring holds frames a kick left (kick()) */
#define SPIN_LOOK 256     /* spinning passes between looks at other_fd */

/* serve()'s epoll set: one epoll_wait per sleep instead of a poll(2) that registers on and
   unregisters from every ring and other_fd each time (what a wake-up costs a TCG vCPU).
   Rebuilt when a ring is attached or detached, or other_fd changes. -1 with errno set. */
static int epoll_set(FastPath *self, int other_fd) {
    if (self->ep_valid && self->ep_other == other_fd)
        return 0;
    if (self->ep_valid)
        close(self->ep_fd);
    self->ep_valid = 0;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -1;
    for (int i = 0; i <= self->n_rings; i++) {
        int fd = i < self->n_rings ? self->rings[i].fd : other_fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            int saved = errno;
            close(ep);
            errno = saved;
            return -1;
        }
    }
    self->ep_fd = ep;
    self->ep_other = other_fd;
    self->ep_valid = 1;
    return 0;
}

/* Appends (fd, revents) to serve()'s `events`; -1 on a Python error. */
static int add_event(PyObject *events, int fd, short revents) {
    PyObject *item = Py_BuildValue("(ih)", fd, revents);
    int rc = item && PyList_Append(events, item) == 0 ? 0 : -1;
    Py_XDECREF(item);
    return rc;
}

/* Whether `fd` is ready now (poll(2) without waiting); appends (fd, revents) to `events`.
   Returns 1 if ready, 0 if not, -1 on a Python error. */
static int look_at(int fd, PyObject *events) {
    if (fd < 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0 || !p.revents)
        return 0;
    return add_event(events, p.fd, p.revents) < 0 ? -1 : 1;
}

/* serve(budget, timeout, other_fd, spin=0.0): the daemon's wait and forward in one call, so a
   frame the fast path forwards never wakes Python. Sleeps in epoll_wait on the RX rings and
   `other_fd` (the daemon's epoll of its own descriptors: control, link notifications, signal
   pipe), GIL released; whenever the rings have frames, walks them and kicks the TX rings, then
   walks again before sleeping (NAPI's rule). With `spin` > 0 it keeps walking (busy-polling,
   no system call) until `spin` seconds have passed since the last frame before it sleeps: a
   frame that comes meanwhile costs no wake-up, no context switch and no epoll_wait (Linux's
   net.core.busy_poll, for a ring). While a kick left frames on a TX ring it sleeps at most
   BACKLOG_WAIT_MS before kicking again. Returns to Python when a frame needs the slow path, a
   STALE neighbor was noted (stale_neighbors()), `other_fd` is ready, a ring reports an error,
   `budget` frames are done, SERVE_PASSES passes went by (other_fd is looked at first) or
   `timeout` seconds have passed: (frames, punts, [(fd, revents), ...] of other_fd and erroring
   rings). Measured under TCG (bench vm-forward): a Python loop iteration per wake-up cost a
   router VM ~0.3-1 ms of its one vCPU per forwarded echo, and spikes of several ms. */
static PyObject *FastPath_serve(FastPath *self, PyObject *args) {
    long budget;
    double timeout, spin = 0.0;
    int other_fd;
    if (!PyArg_ParseTuple(args, "ldi|d:serve", &budget, &timeout, &other_fd, &spin))
        return NULL;
    if (!ready(self))
        return NULL;
    if (budget <= 0)
        return PyErr_Format(FastPathError, "budget must be positive");
    if (!(timeout >= 0.0 && timeout <= 60.0))
        return PyErr_Format(FastPathError, "timeout must be 0 to 60 seconds");
    if (!(spin >= 0.0 && spin <= 1.0))
        return PyErr_Format(FastPathError, "spin must be 0 to 1 second");
    PyObject *punts = PyList_New(0);
    if (!punts)
        return NULL;
    PyObject *events = PyList_New(0);
    if (!events) {
        Py_DECREF(punts);
        return NULL;
    }
    struct epoll_event evs[MAX_RINGS + 1];
    uint64_t end = monotonic_ns() + (uint64_t)(timeout * 1e9);
    uint64_t spin_ns = (uint64_t)(spin * 1e9);
    long done = 0;
    int err = 0;
    for (int pass = 0; !err; pass++) {
        long before = done;
        err = walk(self, budget, punts, &done);
        int backlog = kick(self);
        if (err || PyList_GET_SIZE(punts) > 0 || self->n_stale || done >= budget)
            break;
        uint64_t now = monotonic_ns();
        if (done != before)
            self->last_frame_ns = now;
        if (now >= end)
            break;
        if (pass + 1 >= SERVE_PASSES) {
            err = look_at(other_fd, events) < 0;
            break;
        }
        if (done != before)
            continue; /* frames came: look again before sleeping */
        if (spin_ns && now - self->last_frame_ns < spin_ns) {
            if (pass % SPIN_LOOK == SPIN_LOOK - 1) {
                int seen = look_at(other_fd, events);
                if (seen) {
                    err = seen < 0;
                    break;
                }
            }
            __builtin_ia32_pause();
            continue;
        }
        if (epoll_set(self, other_fd) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            err = 1;
            break;
        }
        /* whole milliseconds, rounded up: never wake just before the deadline */
        int wait_ms = (int)((end - now + 999999) / 1000000);
        if (backlog && wait_ms > BACKLOG_WAIT_MS)
            wait_ms = BACKLOG_WAIT_MS;
        int ready_n;
        Py_BEGIN_ALLOW_THREADS
        ready_n = epoll_wait(self->ep_fd, evs, MAX_RINGS + 1, wait_ms);
        Py_END_ALLOW_THREADS
        self->woke = 1;
        if (ready_n < 0) {
            if (errno != EINTR) {
                PyErr_SetFromErrno(PyExc_OSError);
                err = 1;
            } else if (PyErr_CheckSignals() < 0) {
                err = 1;
            }
            break; /* a signal: the daemon's loop looks at its flags */
        }
        int leave = 0;
        for (int i = 0; i < ready_n && !err; i++) {
            /* EPOLLIN/ERR/HUP have poll(2)'s values: callers read (fd, revents) as poll's */
            short revents = (short)evs[i].events;
            int fd = evs[i].data.fd;
            if (fd == other_fd || (revents & (POLLERR | POLLHUP))) {
                err = add_event(events, fd, revents) < 0;
                leave = 1;
            }
        }
        if (leave)
            break;
    }
    if (err) {
        Py_DECREF(punts);
        Py_DECREF(events);
        return NULL;
    }
    return Py_BuildValue("(lNN)", done, punts, events);
}

static PyObject *FastPath_transmit(FastPath *self, PyObject *args) {
    unsigned int ifindex;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "Iy*:transmit", &ifindex, &view))
        return NULL;
    ring_t *r = ring_find(self, ifindex);
    if (!r) {
        PyBuffer_Release(&view);
        return PyErr_Format(FastPathError, "interface %u has no ring attached", ifindex);
    }
    if ((size_t)view.len > r->frame_size - r->tx_data) {
        PyBuffer_Release(&view);
        return PyErr_Format(FastPathError, "frame of %zd bytes does not fit a ring slot", view.len);
    }
    uint8_t *slot = tx_slot(r);
    if (slot) {
        memcpy(slot + r->tx_data, view.buf, (size_t)view.len);
        tx_commit(r, slot, (size_t)view.len);
        COUNT(self, C_TX_SLOW)++;
    } else {
        self->counts[V_DROP_TXFULL]++;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(slot != NULL);
}

static PyObject *FastPath_flush(FastPath *self, PyObject *unused) {
    return PyBool_FromLong(kick(self));
}

static PyObject *FastPath_set_trace(FastPath *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"addresses", "match_all", NULL};
    Py_buffer view;
    int match_all = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|p:set_trace", kwlist, &view, &match_all))
        return NULL;
    size_t len = (size_t)view.len;
    if (len % TRACE_ADDRESS_SIZE || len / TRACE_ADDRESS_SIZE > TRACE_MAX_ADDRS) {
        PyBuffer_Release(&view);
        return PyErr_Format(FastPathError, "trace addresses: %zu bytes is not 0 to %d records "
                            "of %d", len, TRACE_MAX_ADDRS, TRACE_ADDRESS_SIZE);
    }
    const uint8_t *p = view.buf;
    for (size_t i = 0; i < len; i += TRACE_ADDRESS_SIZE) {
        if (p[i] != 4 && p[i] != 6) {
            PyBuffer_Release(&view);
            return PyErr_Format(FastPathError, "trace address family %d is not 4 or 6", p[i]);
        }
    }
    self->n_trace4 = self->n_trace6 = 0;
    for (size_t i = 0; i < len; i += TRACE_ADDRESS_SIZE) {
        if (p[i] == 4) {
            self->trace4[self->n_trace4++] = rd32(p + i + 1);
        } else {
            self->trace6[self->n_trace6][0] = rd64(p + i + 1);
            self->trace6[self->n_trace6++][1] = rd64(p + i + 9);
        }
    }
    self->trace_on = match_all ? 2 : len ? 1 : 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* stale_neighbors() -> [(ifindex, address), ...]: the STALE neighbors frames were forwarded
   to since the last call (each once per table load), oldest first; empties the list. */
static PyObject *FastPath_stale_neighbors(FastPath *self, PyObject *unused) {
    (void)unused;
    PyObject *out = PyList_New(self->n_stale);
    if (!out)
        return NULL;
    for (int i = 0; i < self->n_stale; i++) {
        const stale_note_t *note = &self->stale[i];
        PyObject *item = Py_BuildValue("(Iy#)", note->ifindex, (const char *)note->addr,
                                       (Py_ssize_t)(note->family == 4 ? 4 : 16));
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    self->n_stale = 0;
    return out;
}

static PyObject *FastPath_trace_records(FastPath *self, PyObject *unused) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(self->trace_len *
                                                                 sizeof(trace_rec_t)));
    if (!out)
        return NULL;
    uint8_t *d = (uint8_t *)PyBytes_AS_STRING(out);
    uint32_t first = (self->trace_head + TRACE_CAPACITY - self->trace_len) % TRACE_CAPACITY;
    for (uint32_t i = 0; i < self->trace_len; i++)
        memcpy(d + i * sizeof(trace_rec_t), &self->trace[(first + i) % TRACE_CAPACITY],
               sizeof(trace_rec_t));
    self->trace_len = 0;
    return out;
}

static PyObject *FastPath_counters(FastPath *self, PyObject *unused) {
    for (int i = 0; i < self->n_rings; i++) {
        struct tpacket_stats st;
        socklen_t len = sizeof st;
        /* PACKET_STATISTICS resets on read, so accumulate */
        if (getsockopt(self->rings[i].fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
            COUNT(self, C_RX_RING_DROPS) += st.tp_drops;
    }
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    char key[64];
    for (int i = 0; i < C_EXTRA; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(COUNT(self, i));
        if (!v || PyDict_SetItemString(d, extra_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    for (int i = 1; i < V_COUNT; i++) {
        const char *name = verdict_names[i];
        const char *kind = name[0] == 'P' ? "punt" : "drop";
        char lower[48];
        size_t j;
        for (j = 0; name[5 + j] && j < sizeof lower - 1; j++)
            lower[j] = (char)(name[5 + j] >= 'A' && name[5 + j] <= 'Z' ? name[5 + j] + 32 : name[5 + j]);
        lower[j] = 0;
        snprintf(key, sizeof key, "%s.%s", kind, lower);
        PyObject *v = PyLong_FromUnsignedLongLong(self->counts[i]);
        if (!v || PyDict_SetItemString(d, key, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

/* ------------------------------------------------------------------------------------ */
/* type and module                                                                        */

static int FastPath_init(FastPath *self, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "FastPath() takes no arguments");
        return -1;
    }
    if (self->ift)
        return 0;
    self->ift = calloc(1, sizeof(iftab_t));
    self->nt = calloc(1, sizeof(neightab_t) + 16 * sizeof(neigh_t));
    self->fib = calloc(1, sizeof(fib_t));
    if (!self->ift || !self->nt || !self->fib) {
        PyErr_NoMemory();
        return -1;
    }
    self->nt->mask = 15;
    self->fib->tbl24 = table_alloc(TBL24_SIZE * sizeof(uint16_t), 0);
    self->fib->tbl8_bytes = 256 * sizeof(uint16_t);
    self->fib->tbl8 = table_alloc(self->fib->tbl8_bytes, 0);
    self->fib->nh = calloc(1, sizeof(nexthop_t));
    if (!self->fib->tbl24 || !self->fib->tbl8 || !self->fib->nh) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void FastPath_dealloc(FastPath *self) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    /* hand the rings back (cursors, attached = False) so their owner can still close them */
    for (int i = 0; i < self->n_rings; i++)
        ring_release(&self->rings[i], 1);
    PyErr_Restore(type, value, tb);
    self->n_rings = 0;
    if (self->ep_valid)
        close(self->ep_fd);
    self->ep_valid = 0;
    free(self->ift);
    free(self->nt);
    fib_free(self->fib);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *FastPath_get_generation(FastPath *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->generation);
}

static PyMethodDef FastPath_methods[] = {
    {"load_interfaces", (PyCFunction)FastPath_load_interfaces, METH_VARARGS,
     "load_interfaces(records, flags, generation): INTERFACE records and FLAG_* bits."},
    {"load_fib", (PyCFunction)FastPath_load_fib, METH_VARARGS,
     "load_fib(nexthops, routes4, routes6, generation): NEXTHOP and ROUTE4/ROUTE6 records."},
    {"load_neighbors", (PyCFunction)FastPath_load_neighbors, METH_VARARGS,
     "load_neighbors(records, generation): NEIGHBOR records."},
    {"process", (PyCFunction)(void (*)(void))FastPath_process, METH_VARARGS | METH_KEYWORDS,
     "process(ifindex, frame, csum_partial=False) -> (verdict, out_ifindex, out_frame)."},
    {"attach", (PyCFunction)FastPath_attach, METH_O, "attach(ring): take over a RingSocket."},
    {"detach", (PyCFunction)FastPath_detach, METH_O, "detach(ifindex): give a ring back."},
    {"poll", (PyCFunction)(void (*)(void))FastPath_poll, METH_VARARGS | METH_KEYWORDS,
     "poll(budget, spin=0.0) -> (frames, [(ifindex, verdict, frame), ...]): walk the RX "
     "rings; with spin, keep walking until budget, a punt or spin seconds."},
    {"serve", (PyCFunction)FastPath_serve, METH_VARARGS,
     "serve(budget, timeout, other_fd, spin=0.0) -> (frames, punts, [(fd, revents), ...]): "
     "sleep on the RX rings and other_fd (after spin seconds of polling since the last frame), "
     "forwarding what comes, until a punt, other_fd ready, a ring error, budget frames or "
     "timeout seconds."},
    {"transmit", (PyCFunction)FastPath_transmit, METH_VARARGS,
     "transmit(ifindex, frame) -> bool: queue a frame on an attached TX ring."},
    {"flush", (PyCFunction)FastPath_flush, METH_NOARGS, "flush() -> bool: kick the TX rings; whether a kick left frames on one (kick again "
     "within a millisecond or so)."},
    {"counters", (PyCFunction)FastPath_counters, METH_NOARGS, "counters() -> dict[str, int]."},
    {"set_trace", (PyCFunction)(void (*)(void))FastPath_set_trace, METH_VARARGS | METH_KEYWORDS,
     "set_trace(addresses, match_all=False): record frames from or to these TRACE_ADDRESS "
     "records (or every IP frame); empty and False: stop."},
    {"stale_neighbors", (PyCFunction)FastPath_stale_neighbors, METH_NOARGS,
     "stale_neighbors() -> [(ifindex, address), ...]: STALE neighbors forwarded to since the "
     "last call (each once per table load); empties the list."},
    {"trace_records", (PyCFunction)FastPath_trace_records, METH_NOARGS,
     "trace_records() -> bytes: the TRACE_RECORDs so far, oldest first; empties the ring."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FastPath_getset[] = {
    {"generation", (getter)FastPath_get_generation, NULL,
     "generation passed with the last table load", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.dataplane._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C fast path: tables, per-frame verdicts, ring forwarding.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_methods = FastPath_methods,
    .tp_getset = FastPath_getset,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "appliance.dataplane._fastpath",
    .m_doc = "The vrlab fast path in C (contract: appliance/dataplane/twin.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FastPathType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (!m)
        return NULL;
    FastPathError = PyErr_NewExceptionWithDoc("appliance.dataplane._fastpath.FastPathError",
                                              "A bad table record or argument.", PyExc_ValueError,
                                              NULL);
    PyObject *names = PyTuple_New(V_COUNT);
    if (!FastPathError || !names)
        goto fail;
    for (int i = 0; i < V_COUNT; i++) {
        PyObject *s = PyUnicode_FromString(verdict_names[i]);
        if (!s)
            goto fail;
        PyTuple_SET_ITEM(names, i, s);
    }
    Py_INCREF(FastPathError);
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPathError", FastPathError) < 0 ||
        PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0 ||
        PyModule_AddObject(m, "VERDICT_NAMES", names) < 0 ||
        PyModule_AddIntConstant(m, "INTERFACE_SIZE", INTERFACE_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "NEXTHOP_SIZE", NEXTHOP_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE4_SIZE", ROUTE4_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE6_SIZE", ROUTE6_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "NEIGHBOR_SIZE", NEIGHBOR_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "TRACE_RECORD_SIZE", (int)sizeof(trace_rec_t)) < 0 ||
        PyModule_AddIntConstant(m, "TRACE_ADDRESS_SIZE", TRACE_ADDRESS_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "TRACE_CAPACITY", TRACE_CAPACITY) < 0)
        goto fail;
    return m;
fail:
    Py_XDECREF(names);
    Py_DECREF(m);
    return NULL;
}
