/*
 * Traffic generator for bench/forward.py: small UDP datagrams through the kernel stack with
 * sendmmsg(2), BATCH per call, for a fixed time. Compiled by the bench with gcc into a
 * temporary directory and run pinned to one CPU inside the sender namespace.
 *
 *     gen DST PORT SECONDS PAYLOAD [NDST]
 *
 * DST is an IPv4 or IPv6 address; with NDST > 1 the destinations cycle through NDST
 * addresses: DST, DST+1, ... for IPv4; for IPv6 the second 32-bit word counts up (DST's
 * /64 network changes: 2001:db8:0:0::2, 2001:db8:0:1::2, ...), so each destination can hit a
 * different route. Prints "sent N errors E" at the end.
 * Send errors (ENOBUFS, EAGAIN when the queue is full) are counted and the loop goes on.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: gen DST PORT SECONDS PAYLOAD [NDST]\n");
        return 2;
    }
    int port = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int payload = atoi(argv[4]);
    uint32_t ndst = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 1;
    if (payload < 0 || payload > 1400 || ndst == 0 || ndst > 65536) {
        fprintf(stderr, "gen: bad payload or NDST\n");
        return 2;
    }
    struct sockaddr_storage *dsts = calloc(ndst, sizeof *dsts);
    socklen_t dlen;
    int family;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, argv[1], &a4) == 1) {
        family = AF_INET;
        dlen = sizeof(struct sockaddr_in);
        for (uint32_t i = 0; i < ndst; i++) {
            struct sockaddr_in *s = (struct sockaddr_in *)&dsts[i];
            s->sin_family = AF_INET;
            s->sin_port = htons(port);
            s->sin_addr.s_addr = htonl(ntohl(a4.s_addr) + i);
        }
    } else if (inet_pton(AF_INET6, argv[1], &a6) == 1) {
        family = AF_INET6;
        dlen = sizeof(struct sockaddr_in6);
        uint32_t word;
        memcpy(&word, &a6.s6_addr[4], 4);
        for (uint32_t i = 0; i < ndst; i++) {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&dsts[i];
            s->sin6_family = AF_INET6;
            s->sin6_port = htons(port);
            s->sin6_addr = a6;
            uint32_t v = htonl(ntohl(word) + i);
            memcpy(&s->sin6_addr.s6_addr[4], &v, 4);
        }
    } else {
        fprintf(stderr, "gen: bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    if (ndst == 1 && connect(fd, (struct sockaddr *)&dsts[0], dlen) < 0) {
        perror("connect");
        return 1;
    }
    static char buf[1500];
    memset(buf, 'v', sizeof buf);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buf;
        iov[i].iov_len = (size_t)payload;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long sent = 0, errors = 0;
    uint32_t next = 0;
    double end = now() + seconds;
    while (now() < end) {
        if (ndst > 1) {
            for (int i = 0; i < BATCH; i++) {
                msgs[i].msg_hdr.msg_name = &dsts[next];
                msgs[i].msg_hdr.msg_namelen = dlen;
                next = next + 1 == ndst ? 0 : next + 1;
            }
        }
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n < 0)
            errors++;
        else
            sent += (unsigned)n;
    }
    printf("sent %llu errors %llu\n", sent, errors);
    return 0;
}
