"""CPython's figures for `cargo xtask bench`: the same rows as the Rust
benchmark, measured the same way (calibrate the iteration count to a target
time, several runs, median and min-max of ns per operation).

The bench binary feeds this file to `python3 -` and reads one JSON object
from stdout:

    {"version": "3.11.7", "implementation": "CPython",
     "rows": {"lock/uncontended": {"name": "threading.Lock", "iters": N,
                                   "median_ns": x, "min_ns": x, "max_ns": x,
                                   "runs_ns": [...]}, ...}}

Run it by hand with: python3 bench/python/bench_threading.py --runs 3 --target-ms 20
"""

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

now = time.perf_counter_ns


def on_threads(threads, iters, work):
    """Run work(index, ops) on `threads` threads sharing `iters` operations;
    return the wall time in ns from a common start (spawning excluded)."""
    barrier = threading.Barrier(threads + 1)
    per, extra = divmod(iters, threads)

    def body(t, ops):
        barrier.wait()
        work(t, ops)

    ts = [
        threading.Thread(target=body, args=(t, per + (1 if t < extra else 0)))
        for t in range(threads)
    ]
    for t in ts:
        t.start()
    barrier.wait()
    start = now()
    for t in ts:
        t.join()
    return now() - start


def lock_uncontended(n):
    lock = threading.Lock()
    start = now()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return now() - start


def lock_contended_2(n):
    lock = threading.Lock()
    counter = [0]

    def work(_, ops):
        for _ in range(ops):
            with lock:
                counter[0] += 1

    elapsed = on_threads(2, n, work)
    assert counter[0] == n
    return elapsed


def rlock_reentrant(n):
    rlock = threading.RLock()
    rlock.acquire()
    start = now()
    for _ in range(n):
        rlock.acquire()
        rlock.release()
    elapsed = now() - start
    rlock.release()
    return elapsed


def semaphore_uncontended(n):
    sem = threading.Semaphore(1)
    start = now()
    for _ in range(n):
        sem.acquire()
        sem.release()
    return now() - start


def condition_ping_pong(n):
    cond = threading.Condition()
    turn = [0]

    def player(me, _):
        with cond:
            for _ in range(n):
                while turn[0] != me:
                    cond.wait()
                turn[0] = 1 - me
                cond.notify()

    return on_threads(2, 2 * n, player)


def event_round_trip(n):
    ping, pong = threading.Event(), threading.Event()

    def player(me, _):
        for _ in range(n):
            if me == 0:
                ping.set()
                pong.wait()
                pong.clear()
            else:
                ping.wait()
                ping.clear()
                pong.set()

    return on_threads(2, 2 * n, player)


def pool_submit(n):
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as ex:
        # Workers start lazily: start them before timing.
        for f in [ex.submit(int) for _ in range(workers)]:
            f.result()
        start = now()
        futures = [ex.submit(int, i) for i in range(n)]
        total = sum(f.result() for f in futures)
        elapsed = now() - start
    assert total == n * (n - 1) // 2
    return elapsed


# ProcessPoolExecutor rows. The task is a builtin (`abs`): it pickles by
# name whatever the start method, although this script is read from stdin.


def procpool_round_trip(n):
    with ProcessPoolExecutor(max_workers=1) as ex:
        for i in range(100):  # start the worker, warm it up
            ex.submit(abs, -i).result()
        start = now()
        for i in range(n):
            assert ex.submit(abs, -i).result() == i
        return now() - start


def procpool_submit(n):
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for f in [ex.submit(abs, 0) for _ in range(workers)]:
            f.result()
        start = now()
        futures = [ex.submit(abs, -i) for i in range(n)]
        total = sum(f.result() for f in futures)
        elapsed = now() - start
    assert total == n * (n - 1) // 2
    return elapsed


def procpool_startup(n):
    total = 0
    for i in range(n):
        start = now()
        ex = ProcessPoolExecutor(max_workers=2)
        assert ex.submit(abs, -i).result() == i
        total += now() - start
        ex.shutdown(wait=True)  # not timed
    return total


PROCESS_POOL = "ProcessPoolExecutor (%s)" % multiprocessing.get_context().get_start_method()

# id -> (what is measured, function, fixed iterations (full, quick) or None)
ROWS = {
    "lock/uncontended": ("threading.Lock", lock_uncontended, None),
    "lock/contended-2": ("threading.Lock", lock_contended_2, None),
    "rlock/reentrant": ("threading.RLock", rlock_reentrant, None),
    "semaphore/uncontended": ("threading.Semaphore", semaphore_uncontended, None),
    "condition/ping-pong": ("threading.Condition", condition_ping_pong, None),
    "event/round-trip": ("threading.Event", event_round_trip, None),
    # Far fewer tasks than the Rust row's 200 000 (CPython needs ~10 us a
    # task); the figure is per task all the same.
    "pool/submit-200k": ("ThreadPoolExecutor", pool_submit, (20_000, 2_000)),
    "procpool/round-trip": (PROCESS_POOL, procpool_round_trip, None),
    "procpool/submit-20k": (PROCESS_POOL, procpool_submit, (20_000, 2_000)),
    "procpool/startup": (PROCESS_POOL, procpool_startup, None),
}


def calibrate(fn, target_ns):
    iters = 1
    while True:
        elapsed = max(fn(iters), 1)
        if elapsed >= target_ns / 4 or iters >= 1 << 40:
            scale = min(max(target_ns / elapsed, 0.25), 4.0)
            return max(1, round(iters * scale))
        scale = min(max(target_ns / elapsed, 2.0), 100.0)
        iters = max(iters + 1, round(iters * scale))


def measure(fn, fixed, runs, target_ns):
    if fixed is None:
        iters = calibrate(fn, target_ns)
    else:
        iters = fixed
        fn(iters)  # warm-up
    per_op = [fn(iters) / iters for _ in range(max(1, runs))]
    return {
        "iters": iters,
        "median_ns": statistics.median(per_op),
        "min_ns": min(per_op),
        "max_ns": max(per_op),
        "runs_ns": per_op,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--quick", action="store_true", help="small fixed batches")
    ap.add_argument("--rows", default=None, help="comma-separated row ids (default: all)")
    args = ap.parse_args()
    wanted = args.rows.split(",") if args.rows else list(ROWS)
    rows = {}
    for row_id in wanted:
        if row_id not in ROWS:
            continue
        name, fn, fixed = ROWS[row_id]
        if fixed is not None:
            fixed = fixed[1] if args.quick else fixed[0]
        print(f"  CPython {row_id}", file=sys.stderr, flush=True)
        rows[row_id] = dict(name=name, **measure(fn, fixed, args.runs, args.target_ms * 1e6))
    json.dump(
        {
            "implementation": platform.python_implementation(),
            "version": platform.python_version(),
            "rows": rows,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
