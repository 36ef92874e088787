#!/usr/bin/env python3
"""Which thread was slow when: each chunk's time, step by step, from a step-timers build.

    CARGO_TARGET_DIR=/tmp/tt cargo build --release -p snnc --features step-timers
    SNNC_CHUNK_TIMES=/tmp/chunks.tsv /tmp/tt/release/snnc bench sim NET.snn --method euler \
        --duration 2s --threads 2
    python3 bench/chunk_times.py /tmp/chunks.tsv [--window 100] [--skip 1000]

Prints, per population and chunk (on the thread that ran it most), the percentiles of
its time a step and what the steps over 1.2x its median added a step; per population,
the mean wait between its chunks a step (slowest less fastest) and its slowest chunk's
mean time (docs/benchmarks.md, sixteenth round), the wait's p75, p90 and p99 and the
correlation of the first two chunks' times (eighteenth round), and the steps whose wait
exceeds 5 and 50 us: how many, their share of the total wait and which chunk was the
slower (twentieth round); then, per window
of steps, each chunk's median time, one character a window (`.` within 10 % of the
chunk's fastest window, digits: 1 = 10-20 % slower ... 9 = 90 % or more): a core that
runs slower for a while shows as a run of digits on its chunk's line only.
(docs/benchmarks.md, thirteenth round.)
"""
import argparse
import collections
import signal
import statistics as st


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--window", type=int, default=100, help="steps a character of the time line stands for")
    ap.add_argument("--skip", type=int, default=1000, help="first steps left out (caches and pages warming up)")
    a = ap.parse_args()
    times = collections.defaultdict(dict)
    threads = collections.defaultdict(collections.Counter)
    with open(a.file) as f:
        next(f)
        for line in f:
            step, pop, chunk, thread, ns = map(int, line.split())
            if step < a.skip:
                continue
            # A population gathered and stepped in two stages logs its chunk twice (its
            # thread counted once a step, by the first).
            if step not in times[(pop, chunk)]:
                threads[(pop, chunk)][thread] += 1
            times[(pop, chunk)][step] = times[(pop, chunk)].get(step, 0) + ns
    for key in sorted(times):
        pop, chunk = key
        by_step = times[key]
        v = sorted(by_step.values())
        n = len(v)
        med = st.median(v)
        pct = " ".join(f"p{int(q * 100)} {v[min(n - 1, int(n * q))] / 1e3:.1f}" for q in (0.5, 0.75, 0.9, 0.99))
        tail = sum(x - med for x in v if x > 1.2 * med) / n / 1e3
        thread, runs = threads[key].most_common(1)[0]
        print(f"pop {pop} chunk {chunk} (thread {thread}, {runs} of {n} steps): us {pct}; tail over 1.2x median {tail:.2f} us a step")
    # Each step's wait between a population's chunks: its slowest chunk's time less its
    # fastest's (what the earlier thread waits at the stage's end, starts aside).
    pops = sorted({pop for pop, _ in times})
    for pop in pops:
        chunks = [times[k] for k in sorted(times) if k[0] == pop]
        steps = set.intersection(*(set(c) for c in chunks))
        if len(chunks) < 2 or not steps:
            continue
        waits = sorted(max(c[s] for c in chunks) - min(c[s] for c in chunks) for s in steps)
        slowest = [max(c[s] for c in chunks) for s in steps]
        n = len(waits)
        pct = " ".join(f"p{int(q * 100)} {waits[min(n - 1, int(n * q))] / 1e3:.2f}" for q in (0.75, 0.9, 0.99))
        # Whether the chunks are slow together (the host) or apart (one core): the
        # correlation of the first two chunks' times, step by step.
        order = sorted(steps)
        corr = st.correlation([chunks[0][s] for s in order], [chunks[1][s] for s in order]) if n > 1 else float("nan")
        print(f"pop {pop}: wait between its chunks mean {st.mean(waits) / 1e3:.2f} us, median {st.median(waits) / 1e3:.2f} us, {pct}; "
              f"its slowest chunk mean {st.mean(slowest) / 1e3:.2f} us a step ({len(steps)} steps); first two chunks' correlation {corr:.2f}")
        # What makes the mean: the steps of long waits, their share of the total wait,
        # and which chunk was the slow one (one core always, or either by turns).
        for over in (5e3, 5e4):
            long = [s for s in steps if max(c[s] for c in chunks) - min(c[s] for c in chunks) > over]
            slow = collections.Counter(max(range(len(chunks)), key=lambda k: chunks[k][s]) for s in long)
            share = sum(max(c[s] for c in chunks) - min(c[s] for c in chunks) for s in long) / max(1, sum(waits))
            print(f"  waits over {over / 1e3:.0f} us: {len(long)} steps ({100 * len(long) / n:.1f} %), {100 * share:.0f} % of the total wait; "
                  "slower chunk: " + ", ".join(f"{k} in {slow[k]}" for k in range(len(chunks))))
    print(f"\nmedian a window of {a.window} steps, against the chunk's fastest window ('.' within 10 %):")
    for key in sorted(times):
        steps = sorted(times[key])
        meds = [st.median(times[key][s] for s in steps[i:i + a.window]) for i in range(0, len(steps), a.window)]
        best = min(meds)
        line = "".join("." if m < 1.1 * best else str(min(9, int((m / best - 1) * 10))) for m in meds)
        print(f"pop {key[0]} chunk {key[1]}: {line}")


if __name__ == "__main__":
    main()
