#!/usr/bin/env python3
"""How long a packet worker waits between being woken and running, and
behind which thread: read from a `perf` trace of the scheduler.

Record (as root) and print the trace, then read it:

    perf record -a -g -e sched:sched_switch -e sched:sched_waking -o sched.data -- COMMAND
    perf script -i sched.data -F comm,tid,cpu,time,event,trace,ip,sym > sched.txt
    python3 bench/tools/worker_wakeups.py sched.txt [WORKER] [THRESHOLD_US]

Each `sched_waking` of WORKER (default `sluice-net-0`) is paired with the
next `sched_switch` onto it. The delay between them is grouped by the
thread its core was running until then (the switch's `prev_comm`). For
delays over THRESHOLD_US (default 50), the output counts that thread's
state as it left the core and the top kernel frames it left from. `S` and a
futex wait mean it blocked of its own accord: the worker was not
preempting it. `R` from a reschedule IPI means it was preempted. The
delay includes the machine's own wake-up latency; a thread that only spins
(`core-awake` in `webrtc_burst`) shows that floor.
"""

import collections
import re
import sys

HEADER = re.compile(r"^(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
SKIP = {"__schedule", "schedule", "preempt_schedule_irq", "__cond_resched"}


def events(path):
    """Yields (comm, cpu, time, event, trace, frames) per trace record."""
    current = None
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            m = HEADER.match(line)
            if m:
                if current:
                    yield current
                current = (m.group(1), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6), [])
            elif line.strip() and current is not None:
                parts = line.split()
                current[5].append(parts[1] if len(parts) > 1 else parts[0])
    if current:
        yield current


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    path = sys.argv[1]
    worker = sys.argv[2] if len(sys.argv) > 2 else "sluice-net-0"
    threshold = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0
    woken_at = None
    behind = collections.defaultdict(list)
    for _comm, _cpu, time, event, trace, frames in events(path):
        if event == "sched:sched_waking" and f"comm={worker} " in trace + " ":
            woken_at = time
        elif event == "sched:sched_switch" and f"next_comm={worker} " in trace and woken_at is not None:
            delay = (time - woken_at) * 1e6
            woken_at = None
            prev = re.search(r"prev_comm=(.*?) prev_pid", trace).group(1)
            state = re.search(r"prev_state=(\S+)", trace).group(1)
            where = [f for f in frames if not f.startswith("[") and f not in SKIP][:3]
            behind[prev].append((delay, state, " < ".join(where)))
    for prev, waits in sorted(behind.items(), key=lambda kv: -len(kv[1])):
        waits.sort()
        delays = [w[0] for w in waits]
        print(
            f"{prev:18} {len(waits):7} wake-ups: p50 {percentile(delays, .5):6.0f}  "
            f"p99 {percentile(delays, .99):6.0f}  max {delays[-1]:7.0f} µs"
        )
        slow = [w for w in waits if w[0] > threshold]
        if slow and len(waits) >= 100:
            print(f"    {len(slow)} over {threshold:.0f} µs, as {prev} left the core:")
            for (state, where), n in collections.Counter((w[1], w[2]) for w in slow).most_common(4):
                print(f"      {n:5}  {state}  {where}")


if __name__ == "__main__":
    main()
