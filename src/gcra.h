/*
 * gcra.h - the Generic Cell Rate Algorithm with reservations: pure
 * arithmetic on a theoretical arrival time (TAT), no clock of its own.
 * RATE calls/second with BURST extra: in any one-second window at most
 * RATE + BURST calls are granted.
 */
#ifndef AGW_GCRA_H
#define AGW_GCRA_H

#include <stdbool.h>
#include <stdint.h>

struct agw_gcra {
    int64_t interval_us;  /* emission interval T = 1 s / rate */
    int64_t tolerance_us; /* burst * T */
    int64_t tat_us;       /* theoretical arrival time of the next call */
    int rate_per_s;       /* for the RateLimit-Limit header */
};

void agw_gcra_init(struct agw_gcra *g, double rate, int burst);

/*
 * As agw_gcra_init, but spaces grants so that any RATE + BURST + 1 of
 * them span at least 1 s + MARGIN_US: a call delayed on its way by up to
 * MARGIN_US more than an earlier one still cannot make a second at the
 * receiver hold more than RATE + BURST. Costs MARGIN_US / 1 s of rate.
 */
void agw_gcra_init_margin(struct agw_gcra *g, double rate, int burst,
                          int64_t margin_us);

/*
 * Reserves the next slot for a call arriving at NOW_US. When the slot is
 * at most MAX_WAIT_US away: takes it, sets *WAIT_US (0: go now) and
 * returns true. Otherwise takes nothing, sets *WAIT_US to how far away
 * the slot is, and returns false.
 */
bool agw_gcra_reserve(struct agw_gcra *g, int64_t now_us, int64_t max_wait_us,
                      int64_t *wait_us);

/*
 * Priority classes and per-caller caps (SPEC §11): what a call asks of
 * agw_gcra_reserve_as() beyond a slot within MAX_WAIT_US.
 */
struct agw_gcra_ask {
    int64_t max_wait_us;
    /* -1: interactive. Else batch: books only while the backlog (TAT -
     * now) with its own slot added stays at most this (or the schedule
     * is idle), and then only when no refused batch call is due before
     * it (unless RETRY: it is such a call). */
    int64_t batch_backlog_us;
    bool retry; /* asking again after the wait a refusal gave it */
};

/* Where refused calls take their turn to ask again: the next turn's time
 * (0: none), each turn one interval after the one before, so that calls
 * waiting together do not all ask together. */
struct agw_gcra_queue {
    int64_t next_us;
};

/*
 * agw_gcra_reserve() for a call of a class, with its caller's cap CAP
 * (burst 0; NULL: none) and their wake queues: the arithmetic the fleet's
 * Lua script repeats. Granted (true): both G and CAP grant the slot,
 * which starts after *WAIT_US; both are taken. Refused (false): nothing
 * of G or CAP is taken; *WAIT_US is either past ASK's max wait (the slot
 * is that far: give up) or how long to wait before asking again (a batch
 * call behind the backlog, a call over its cap), a turn then taken in
 * BATCH_Q or CAP_Q when it is within the max wait (also by a RETRY:
 * refused again, it takes a new turn).
 */
bool agw_gcra_reserve_as(struct agw_gcra *g, struct agw_gcra_queue *batch_q,
                         struct agw_gcra *cap, struct agw_gcra_queue *cap_q,
                         int64_t now_us, const struct agw_gcra_ask *ask,
                         int64_t *wait_us);

/* No slot is granted before NOW_US + PAUSE_US (an upstream 429). */
void agw_gcra_pause(struct agw_gcra *g, int64_t now_us, int64_t pause_us);

/*
 * For the RateLimit-* headers: how many calls arriving at NOW_US would
 * still be granted one after another with MAX_WAIT_US (so 0 exactly when
 * the next call would be refused), at most rate + burst; and whole
 * seconds (rounded up) until the limiter is back to full.
 */
void agw_gcra_state(const struct agw_gcra *g, int64_t now_us,
                    int64_t max_wait_us, int *remaining, int *reset_s);

#endif
