/*
 * amqp_test_util.h - helpers shared by the tests/unit/test_amqp_*.c tests:
 * run an event loop until a predicate holds, bounded by a timeout event
 * (no sleeps).
 */
#ifndef GW_AMQP_TEST_UTIL_H
#define GW_AMQP_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

typedef bool (*gw_test_pred_fn)(void *arg);

static void gw_test_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Run base until pred(arg) is true (returns true) or timeout_ms elapsed (false). */
static inline bool gw_test_run_until(struct event_base *base, gw_test_pred_fn pred, void *arg,
                                     int timeout_ms)
{
    bool expired = false;
    struct event *t = evtimer_new(base, gw_test_timeout_cb, &expired);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!pred(arg) && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return pred(arg);
}

static inline int64_t gw_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
