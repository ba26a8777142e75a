/*
 * gcra.c - GCRA with reservations: the arithmetic behind both limiters
 * (SPEC §4). Callers pass the time in; nothing here reads a clock.
 */
#include "gcra.h"

#include <math.h>
#include <stddef.h>

#define US_PER_S INT64_C(1000000)

/*
 * Why at most ceil(rate) + burst grants can start in any window
 * [a, a + 1 s), with T = interval_us, tau = tolerance_us = burst * T.
 *
 * A granted call k arriving at n_k sees t_k = max(TAT, n_k), starts at
 * s_k = n_k + wait = max(n_k, t_k - tau) and leaves TAT = t_k + T.
 * (1) t_k - tau <= s_k <= t_k, the right side because n_k <= t_k.
 * (2) TAT never decreases (reserve adds T, pause only raises it, a
 *     refused call changes nothing), so t_{k+1} >= TAT_k = t_k + T, and
 *     for grants m < n: t_n >= t_m + (n - m) T. No ordering of the
 *     arrival times n_k is needed.
 * Let m and n be the first and last grant (in grant order) starting in
 * the window; every grant in it has an index in [m, n], so it holds at
 * most N = n - m + 1. By (1) and (2):
 *     s_n - s_m >= (t_n - tau) - t_m >= (n - m) T - burst T,
 * and both in a half-open window of 1 s means s_n - s_m < 1 s, so
 *     (N - 1 - burst) T < 1 s,  i.e.  N - 1 - burst < 1 s / T.
 * T is rounded UP (T >= 1 s / rate), so 1 s / T <= rate and
 * N - 1 - burst < rate gives N <= ceil(rate) + burst. Rounding T to
 * the nearest microsecond instead would break this: at rate 95,
 * T = 10526 us and 95 T = 999970 us < 1 s fits 96 grants in a second.
 * For a fractional rate (2.5/s) ceil(rate) is the honest bound: calls
 * at 0, 0.4 s and 0.8 s are three in one second.
 */

void
agw_gcra_init(struct agw_gcra *g, double rate, int burst)
{
    agw_gcra_init_margin(g, rate, burst, 0);
}

/*
 * With a margin M, T = ceil((1 s + M) / rate) is still >= 1 s / rate, so
 * the bound above holds; and by (1) and (2) grants m < n = m + rate +
 * burst start s_n - s_m >= (n - m - burst) T = rate T >= 1 s + M apart.
 */
void
agw_gcra_init_margin(struct agw_gcra *g, double rate, int burst,
                     int64_t margin_us)
{
    /* Config validation keeps rate positive; stay finite regardless. */
    if (!(rate >= 1e-3)) {
        rate = 1e-3;
    }
    if (rate > 1e6) {
        rate = 1e6;
    }
    if (burst < 0) {
        burst = 0;
    }
    if (margin_us < 0) {
        margin_us = 0;
    }
    g->interval_us = (int64_t)ceil((1e6 + (double)margin_us) / rate);
    g->tolerance_us = (int64_t)burst * g->interval_us;
    g->tat_us = 0;
    g->rate_per_s = (int)ceil(rate);
}

static int64_t
max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

bool
agw_gcra_reserve(struct agw_gcra *g, int64_t now_us, int64_t max_wait_us,
                 int64_t *wait_us)
{
    int64_t tat = max64(g->tat_us, now_us);
    int64_t wait = max64(0, tat - g->tolerance_us - now_us);

    *wait_us = wait;
    if (wait > max_wait_us) {
        return false;
    }
    g->tat_us = tat + g->interval_us;
    return true;
}

/* A refused call asks again at its turn in Q (the first free one from
 * READY_US), or later than its max wait (no turn taken): the wait. A
 * RETRY refused only by the lateness of its own timer (the room comes
 * within a quarter of a spacing) asks again then, without a new turn. */
static int64_t
take_turn(struct agw_gcra_queue *q, int64_t ready_us, int64_t spacing_us,
          int64_t now_us, const struct agw_gcra_ask *ask)
{
    int64_t turn = max64(q->next_us, ready_us);

    if (ask->retry && ready_us - now_us <= spacing_us / 4) {
        return ready_us - now_us;
    }
    if (turn - now_us <= ask->max_wait_us) {
        q->next_us = turn + spacing_us;
    }
    return turn - now_us;
}

/*
 * Refusals take nothing of G or CAP, so a call that cannot go spends no
 * budget. A batch call's turn comes when the backlog will have drained
 * to its bound less its own slot; a capped call's when the cap's TAT is
 * its slot's time. A RETRY at its turn does not wait for the turns due
 * before it; refused again (another call took the room), it takes a new
 * turn like any other: one request per turn, turns one interval apart,
 * never a herd of calls asking at every drain (only one refused merely
 * by its own lateness asks again at once: take_turn()).
 */
bool
agw_gcra_reserve_as(struct agw_gcra *g, struct agw_gcra_queue *batch_q,
                    struct agw_gcra *cap, struct agw_gcra_queue *cap_q,
                    int64_t now_us, const struct agw_gcra_ask *ask,
                    int64_t *wait_us)
{
    int64_t tat = max64(g->tat_us, now_us);
    int64_t wait = max64(0, tat - g->tolerance_us - now_us);
    int64_t ctat = cap != NULL ? max64(cap->tat_us, now_us) : 0;
    /* A batch call starts no later than this: its own slot then ends
     * within the bound, so an interactive call never queues behind more
     * than the bound of batch work (one interval when the bound is
     * shorter: a slot is never split). */
    int64_t room = max64(ask->batch_backlog_us - g->interval_us, 0);
    int64_t ready;

    *wait_us = wait;
    if (wait > ask->max_wait_us) {
        return false;
    }
    if (ask->batch_backlog_us >= 0 &&
        (tat - now_us > room || (!ask->retry && batch_q->next_us > now_us))) {
        ready = max64(tat - room, now_us);
        *wait_us = take_turn(batch_q, ready, g->interval_us, now_us, ask);
        return false;
    }
    if (cap != NULL &&
        (ctat > now_us + wait || (!ask->retry && cap_q->next_us > now_us))) {
        ready = max64(ctat - wait, now_us);
        *wait_us = take_turn(cap_q, ready, cap->interval_us, now_us, ask);
        return false;
    }
    if (cap != NULL) {
        cap->tat_us = max64(ctat, now_us + wait) + cap->interval_us;
    }
    g->tat_us = tat + g->interval_us;
    return true;
}

void
agw_gcra_pause(struct agw_gcra *g, int64_t now_us, int64_t pause_us)
{
    /* A grant starts no earlier than TAT - tolerance: push that past the
     * pause. */
    g->tat_us = max64(g->tat_us, now_us + max64(pause_us, 0) + g->tolerance_us);
}

/*
 * The j-th call (j = 0, 1, ...) reserved now would wait
 * max(0, t0 + j T - tau - now) with t0 = max(TAT, now); it is granted
 * exactly when j T <= D = now + max_wait + tau - t0, i.e. for
 * j = 0 .. floor(D / T) when D >= 0.
 */
void
agw_gcra_state(const struct agw_gcra *g, int64_t now_us, int64_t max_wait_us,
               int *remaining, int *reset_s)
{
    int64_t t0 = max64(g->tat_us, now_us);
    int64_t d = now_us + max_wait_us + g->tolerance_us - t0;
    int64_t full = g->rate_per_s + g->tolerance_us / g->interval_us;
    int64_t n = d < 0 ? 0 : d / g->interval_us + 1;

    *remaining = (int)(n > full ? full : n);
    *reset_s = (int)((t0 - now_us + US_PER_S - 1) / US_PER_S);
}
