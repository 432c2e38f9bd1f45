/*
 * pool.c - worker threads that run PBKDF2 off the event loop.
 *
 * Jobs go into a FIFO guarded by one mutex; workers verify (through the
 * cache) and move the job to a done list. Only the worker that makes the
 * done list non-empty writes the eventfd, so a burst of completions costs
 * one wakeup; the loop side reads the eventfd, takes the whole list and
 * runs the callbacks on its own thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "auth/auth-internal.h"
#include "gw/log.h"

#define POOL_MAX_THREADS 64
#define POOL_MAX_PENDING 1000000u

struct gw_auth_job {
    gw_auth_job_t *next;
    gw_auth_passwd_t *db; /* one reference */
    gw_auth_done_fn done;
    void *arg;
    gw_auth_result_t result;
    bool cancelled;
    size_t user_len, pass_len;
    char data[]; /* user then password */
};

struct gw_auth_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    gw_auth_job_t *todo_head, *todo_tail;
    gw_auth_job_t *done_head, *done_tail;
    bool stop;
    pthread_t *threads;
    unsigned nthreads;
    size_t pending; /* loop thread only */
    size_t max_pending;
    gw_auth_cache_t *cache;
    int efd;
    struct event *ev;
};

static void job_free(gw_auth_job_t *job)
{
    OPENSSL_cleanse(job->data + job->user_len, job->pass_len);
    gw_auth_passwd_free(job->db);
    free(job);
}

static void *worker(void *arg)
{
    gw_auth_pool_t *pool = arg;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stop && !pool->todo_head)
            pthread_cond_wait(&pool->cond, &pool->lock);
        if (pool->stop)
            break;
        gw_auth_job_t *job = pool->todo_head;
        pool->todo_head = job->next;
        if (!pool->todo_head)
            pool->todo_tail = NULL;
        job->next = NULL;
        bool cancelled = job->cancelled;
        pthread_mutex_unlock(&pool->lock);

        if (!cancelled)
            job->result = gw_auth_verify(job->db, pool->cache, job->data, job->user_len,
                                         job->data + job->user_len, job->pass_len,
                                         gw_auth_now_ms());
        OPENSSL_cleanse(job->data + job->user_len, job->pass_len);

        pthread_mutex_lock(&pool->lock);
        bool wake = pool->done_head == NULL;
        if (pool->done_tail)
            pool->done_tail->next = job;
        else
            pool->done_head = job;
        pool->done_tail = job;
        if (wake) {
            uint64_t one = 1;
            /* Cannot fail short of a bug (counter overflow needs 2^64 writes). */
            if (write(pool->efd, &one, sizeof(one)) != sizeof(one))
                GW_LOG_ERROR("auth", NULL, "eventfd write: %s", strerror(errno));
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    gw_auth_pool_t *pool = arg;
    uint64_t n;

    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        GW_LOG_ERROR("auth", NULL, "eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&pool->lock);
    gw_auth_job_t *list = pool->done_head;
    pool->done_head = pool->done_tail = NULL;
    pthread_mutex_unlock(&pool->lock);

    while (list) {
        gw_auth_job_t *job = list;
        list = job->next;
        pool->pending--;
        /* cancelled is only written on this thread, no lock needed to read. */
        if (!job->cancelled)
            job->done(job->result, job->arg);
        job_free(job);
    }
}

gw_err_t gw_auth_pool_new(struct event_base *base, unsigned nthreads, size_t max_pending,
                          gw_auth_cache_t *cache, gw_auth_pool_t **out)
{
    gw_auth_pool_t *pool;
    gw_err_t err = GW_ERR_NOMEM;

    *out = NULL;
    if (!base || nthreads < 1 || nthreads > POOL_MAX_THREADS || max_pending < 1 ||
        max_pending > POOL_MAX_PENDING)
        return GW_ERR_INVAL;
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return GW_ERR_NOMEM;
    pool->efd = -1;
    pool->max_pending = max_pending;
    pool->cache = cache;
    pool->threads = calloc(nthreads, sizeof(pthread_t));
    if (!pool->threads)
        goto fail_alloc;
    if (pthread_mutex_init(&pool->lock, NULL) != 0)
        goto fail_alloc;
    if (pthread_cond_init(&pool->cond, NULL) != 0)
        goto fail_mutex;
    pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pool->efd < 0) {
        err = GW_ERR_IO;
        goto fail_cond;
    }
    pool->ev = event_new(base, pool->efd, EV_READ | EV_PERSIST, on_done, pool);
    if (!pool->ev || event_add(pool->ev, NULL) != 0) {
        err = GW_ERR_IO;
        goto fail_cond;
    }
    for (; pool->nthreads < nthreads; pool->nthreads++) {
        if (pthread_create(&pool->threads[pool->nthreads], NULL, worker, pool) != 0) {
            gw_auth_pool_free(pool);
            return GW_ERR_IO;
        }
    }
    *out = pool;
    return GW_OK;

fail_cond:
    if (pool->ev)
        event_free(pool->ev);
    if (pool->efd >= 0)
        close(pool->efd);
    pthread_cond_destroy(&pool->cond);
fail_mutex:
    pthread_mutex_destroy(&pool->lock);
fail_alloc:
    free(pool->threads);
    free(pool);
    return err;
}

void gw_auth_pool_free(gw_auth_pool_t *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    /* Workers are gone: nothing else touches the lists. */
    for (gw_auth_job_t *lists[2] = {pool->todo_head, pool->done_head}, **l = lists;
         l < lists + 2; l++) {
        while (*l) {
            gw_auth_job_t *job = *l;
            *l = job->next;
            job_free(job);
        }
    }
    event_free(pool->ev);
    close(pool->efd);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

gw_err_t gw_auth_pool_submit(gw_auth_pool_t *pool, gw_auth_passwd_t *db, const char *user,
                             size_t userlen, const void *pass, size_t passlen,
                             gw_auth_done_fn done, void *arg, gw_auth_job_t **out)
{
    gw_auth_job_t *job;

    if (out)
        *out = NULL;
    if (!pool || !db || !done || (!user && userlen) || (!pass && passlen) ||
        userlen > UINT16_MAX || passlen > UINT16_MAX)
        return GW_ERR_INVAL;
    if (pool->pending >= pool->max_pending)
        return GW_ERR_LIMIT;
    job = malloc(sizeof(*job) + userlen + passlen + 1);
    if (!job)
        return GW_ERR_NOMEM;
    job->next = NULL;
    job->db = gw_auth_passwd_ref(db);
    job->done = done;
    job->arg = arg;
    job->result = GW_AUTH_ERROR;
    job->cancelled = false;
    job->user_len = userlen;
    job->pass_len = passlen;
    if (userlen)
        memcpy(job->data, user, userlen);
    if (passlen)
        memcpy(job->data + userlen, pass, passlen);

    pthread_mutex_lock(&pool->lock);
    if (pool->todo_tail)
        pool->todo_tail->next = job;
    else
        pool->todo_head = job;
    pool->todo_tail = job;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    pool->pending++;
    if (out)
        *out = job;
    return GW_OK;
}

void gw_auth_pool_cancel(gw_auth_pool_t *pool, gw_auth_job_t *job)
{
    if (!pool || !job)
        return;
    pthread_mutex_lock(&pool->lock);
    job->cancelled = true;
    pthread_mutex_unlock(&pool->lock);
}

size_t gw_auth_pool_pending(gw_auth_pool_t *pool)
{
    return pool ? pool->pending : 0;
}
